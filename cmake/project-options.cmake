# Options and warnings. Tests, benchmarks and examples build by default only
# when weft is the top-level project, so consumers using add_subdirectory
# get just the library.
include(GNUInstallDirs)
string(COMPARE EQUAL "${CMAKE_SOURCE_DIR}" "${PROJECT_SOURCE_DIR}" WEFT_IS_TOP_LEVEL)
option(WEFT_BUILD_TESTS "Build weft's tests" ${WEFT_IS_TOP_LEVEL})
option(WEFT_BUILD_PERF "Build weft's benchmarks" ${WEFT_IS_TOP_LEVEL})
option(WEFT_BUILD_EXAMPLES "Build weft's examples" ${WEFT_IS_TOP_LEVEL})

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# Warnings for weft's own targets (the library, tests, benchmarks,
# examples), never for a consumer's. -Wshadow: a local that hides a member
# or an outer variable is how a lock or a counter gets updated in the wrong
# place. -Wnon-virtual-dtor: a class with virtual functions deleted through
# its base. WEFT_WERROR (on in the presets tools/weft and CI build) makes
# them errors there; a consumer's add_subdirectory keeps its own policy.
# The static checks beyond the compiler's are clang-tidy's: .clang-tidy
# lists them, tools/weft tidy runs them.
option(WEFT_WERROR "Treat warnings in weft's own targets as errors" OFF)
set(WEFT_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wshadow -Wnon-virtual-dtor)
# -Wthread-safety (clang only, so the asan and tsan presets): checks the
# "guarded by" annotations of include/weft/detail/thread_safety.hpp.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND WEFT_WARNINGS -Wthread-safety)
endif()
if(WEFT_WERROR)
  list(APPEND WEFT_WARNINGS -Werror)
endif()
# -Wconversion for the library's own sources (runtime/, netpoll/, hooks/;
# CMakeLists.txt adds it to weft and weft_hooks only): an implicit narrowing
# of a count, an index or a nanosecond value is how a counter wraps. Under
# clang it includes -Wsign-conversion. Tests, benchmarks and examples are
# left out: they convert freely between test sizes and are not shipped.
set(WEFT_LIBRARY_WARNINGS -Wconversion)

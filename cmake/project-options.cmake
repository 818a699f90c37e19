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

set(WEFT_WARNINGS -Wall -Wextra -Wno-unused-parameter)

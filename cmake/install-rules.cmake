# The textbook install/export recipe: after `cmake --install`, consumers use
#   find_package(weft CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE weft::weft)
include(CMakePackageConfigHelpers)

install(TARGETS weft weft_hooks EXPORT weftTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# detail/introspect.hpp is the runtime's test hook, not API: no public
# header includes it, and it is not installed (tools/consumer-check.sh).
install(DIRECTORY include/weft DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        PATTERN "introspect.hpp" EXCLUDE)
install(EXPORT weftTargets NAMESPACE weft:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/weft)
configure_package_config_file(cmake/weftConfig.cmake.in
  ${PROJECT_BINARY_DIR}/weftConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/weft)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/weftConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/weftConfig.cmake ${PROJECT_BINARY_DIR}/weftConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/weft)

# pkg-config, for builds without CMake: the same flags the CMake target
# carries. The file finds its prefix relative to itself (${pcfiledir}), so
# `cmake --install --prefix DIR` works. A static libweft needs its
# dependencies on the link line; a shared one only its own name.
file(RELATIVE_PATH WEFT_PC_PREFIX_FROM_PCDIR "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" WEFT_PC_PREFIX_FROM_PCDIR "${WEFT_PC_PREFIX_FROM_PCDIR}")
set(weft_deps "-lboost_context -ltbb -ltbbmalloc")
get_target_property(weft_type weft TYPE)
if(weft_type STREQUAL "STATIC_LIBRARY")
  set(WEFT_PC_LIBS "${weft_deps}")
  set(WEFT_PC_LIBS_PRIVATE "")
else()
  set(WEFT_PC_LIBS "")
  set(WEFT_PC_LIBS_PRIVATE "${weft_deps}")
endif()
configure_file(cmake/weft.pc.in ${PROJECT_BINARY_DIR}/weft.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/weft.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# The same for the build tree (pkg-config's -uninstalled convention), which
# the tests use to check the file's flags without installing.
file(READ cmake/weft.pc.in weft_pc)
string(REGEX REPLACE "\nprefix=[^\n]*\nlibdir=[^\n]*\nincludedir=[^\n]*\n"
       "\nlibdir=${PROJECT_BINARY_DIR}\nincludedir=${PROJECT_SOURCE_DIR}/include\n" weft_pc
       "${weft_pc}")
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/pkgconfig-uninstalled/weft.pc CONTENT "${weft_pc}" @ONLY)

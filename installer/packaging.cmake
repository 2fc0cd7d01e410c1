# CPack: a .deb with both executables, the .desktop entry and the icon (cpack -G DEB in the build dir).
include(GNUInstallDirs)
if(LORAFLEET_GUI)
    install(FILES ${PROJECT_SOURCE_DIR}/resources/lorafleet.desktop DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
    install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/lorafleet.svg
            DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} OPTIONAL)

set(CPACK_PACKAGE_NAME "lorafleet")
set(CPACK_PACKAGE_VENDOR "LoRA Fleet")
set(CPACK_PACKAGE_CONTACT "LoRA Fleet developers <dev@lorafleet.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_GENERATOR "DEB")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # dependencies from the linked Debian libraries
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
include(CPack)

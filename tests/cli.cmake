# End-to-end tests of the hearth binary: output and exit codes on good and bad files.
add_test(NAME cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh
    $<TARGET_FILE:hearth> ${CMAKE_BINARY_DIR}/demo.gguf ${CMAKE_CURRENT_BINARY_DIR}/tmp)

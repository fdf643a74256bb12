# End-to-end tests of the hearth binary: output and exit codes on good and bad files.
add_test(NAME cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh
    $<TARGET_FILE:hearth> ${CMAKE_BINARY_DIR}/demo.gguf ${CMAKE_CURRENT_BINARY_DIR}/tmp)

# Perplexity of the real model on the fixture text, against llama-perplexity's.
# Under the sanitizers, which run several times slower, only the first chunk.
if(HEARTH_SANITIZE)
    set(HEARTH_PPL_CHUNKS 1)
else()
    set(HEARTH_PPL_CHUNKS "")
endif()
add_test(NAME perplexity COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/perplexity_test.sh
    $<TARGET_FILE:hearth> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/gemma3/perplexity.txt
    ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/text/genesis-1-28.txt ${HEARTH_PPL_CHUNKS})
set_tests_properties(perplexity PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 1500)

/* Byte-level BPE with the smollm pre-tokenizer (every digit alone, then
 * GPT-2's pattern) on the real SmolLM2 vocabulary (49152 tokens) against
 * llama.cpp: the shared corpus in both modes (tests/tokenizer_fixture.h).
 * Needs SmolLM2 135M (scripts/setup.sh installs it); skips without it. */
#include "test.h"

#include "base/paths.h"
#include "tokenizer_fixture.h"

#include <unistd.h>

#define SMOLLM_FILE "smollm2-135m-instruct-q4_1.gguf"

/* <|im_start|> is BOS, <|im_end|> EOS; the file asks for no BOS. */
static void check_smollm2(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_size(v) == 49152);
    CHECK(vocab_bos(v) == 1 && vocab_eos(v) == 2 && !vocab_adds_bos(v) && vocab_is_end_of_generation(v, 2));
}

int main(void)
{
    char dir[4000], model[4096];
    if (!paths_models_dir(dir, sizeof dir))
        TEST_SKIP("no models directory (neither XDG_CACHE_HOME nor HOME is set)");
    snprintf(model, sizeof model, "%s/%s", dir, SMOLLM_FILE);
    if (access(model, R_OK) != 0)
        TEST_SKIP("SmolLM2 135M (%s) is not installed: run scripts/setup.sh", model);
    tokenizer_fixture_check_file(model, "smollm2", check_smollm2);
    return test_finish("test_tokenizer_smollm");
}

/* The tokenizer on the real Gemma 3 vocabulary against llama.cpp: the shared
 * corpus (English, code, CJK, emoji, combining marks, Unicode whitespace,
 * runs of spaces, tabs and newlines, chat markup, invalid UTF-8 and NUL
 * bytes) in both modes (tests/tokenizer_fixture.h). SentencePiece takes any
 * bytes, so every case is compared, the invalid UTF-8 ones too. Needs the
 * default model (scripts/setup.sh installs it); skips without it. */
#include "test.h"

#include "base/paths.h"
#include "tokenizer_fixture.h"

#include <unistd.h>

static void check_gemma3(const vocab *v)
{
    CHECK(vocab_size(v) == 262144 && vocab_bos(v) == 2 && vocab_eos(v) == 1);
    CHECK(vocab_is_end_of_generation(v, 106) && vocab_is_end_of_generation(v, 1)); /* <end_of_turn>, <eos> */
}

int main(void)
{
    char model[4096];
    if (!paths_default_model(model, sizeof model) || access(model, R_OK) != 0)
        TEST_SKIP("the default model (%s) is not installed: run scripts/setup.sh", model);
    tokenizer_fixture_check_file(model, "gemma3", check_gemma3);
    return test_finish("test_tokenizer_gemma");
}

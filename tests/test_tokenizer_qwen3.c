/* Byte-level BPE with Qwen's pre-tokenizer (tokenizer.ggml.pre = qwen2) and
 * Qwen 3's special tokens against llama.cpp: the tiny Qwen 3 model's
 * vocabulary (written by scripts/oracle/make_dense_model.py, the CTest step
 * dense_tiny_models; its merges are random, its pre-tokenizer and added
 * tokens are Qwen 3's) tokenizing the shared corpus in both modes
 * (tests/tokenizer_fixture.h). */
#include "test.h"

#include "tokenizer_fixture.h"

#include <unistd.h>

#define MODEL HEARTH_TEST_TMPDIR "/dense/qwen3-tiny-f16.gguf"

/* Qwen 3 adds no BOS, as llama.cpp's ids show. */
static void check_qwen3(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && !vocab_adds_bos(v));
}

int main(void)
{
    if (access(MODEL, R_OK) != 0)
        TEST_SKIP("no %s: CTest writes it first (the dense_tiny_models step, which needs python3 with gguf)", MODEL);
    tokenizer_fixture_check_file(MODEL, "qwen3-tiny", check_qwen3);
    return test_finish("test_tokenizer_qwen3");
}

/* Byte-level BPE with Qwen's pre-tokenizer (tokenizer.ggml.pre = qwen2) and
 * Qwen 3's special tokens against llama.cpp: the tiny Qwen 3 model's
 * vocabulary (written by scripts/oracle/make_qwen3_model.py, the CTest step
 * qwen3_tiny_models; its merges are random, its pre-tokenizer and added
 * tokens are Qwen 3's) tokenizing the shared corpus in both modes
 * (tests/tokenizer_fixture.h). */
#include "test.h"

#include "tokenizer_fixture.h"

#include <unistd.h>

#define MODEL HEARTH_TEST_TMPDIR "/qwen3/qwen3-tiny-f16.gguf"

int main(void)
{
    if (access(MODEL, R_OK) != 0)
        TEST_SKIP("no %s: CTest writes it first (the qwen3_tiny_models step, which needs python3 with gguf)", MODEL);
    gguf_file *f;
    vocab *v;
    if (!fixture_load_vocab(MODEL, &f, &v))
        return test_finish("test_tokenizer_qwen3");
    /* Qwen 3 adds no BOS, as llama.cpp's ids show. */
    CHECK(vocab_get_kind(v) == VOCAB_BPE && !vocab_adds_bos(v));
    tokenizer_fixture_compare(v, "qwen3-tiny");
    vocab_free(v);
    gguf_close(f);
    return test_finish("test_tokenizer_qwen3");
}

/* The byte-level BPE pre-tokenizers without a small real model, against
 * llama.cpp: qwen35 (Qwen 3.5/3.6: letter runs take combining marks along)
 * and deepseek-llm (six patterns: newlines, listed scripts' letters,
 * punctuation, trailing whitespace, CJK and Hangul, numbers) and gpt-4o
 * (gpt-oss, Llama 4: letter runs cut where the case changes, as llama.cpp
 * reads the cases), each on a
 * synthetic vocabulary that scripts/oracle/make_bpe_vocab.py writes (the
 * CTest step bpe_vocabs; merges learned on the corpus, so they fire on it,
 * and the family's special tokens), tokenizing the shared corpus in both
 * modes (tests/tokenizer_fixture.h). */
#include "test.h"

#include "tokenizer_fixture.h"

#include <unistd.h>

#define VOCAB_DIR HEARTH_TEST_TMPDIR "/bpe-vocab"

/* Qwen adds no BOS; DeepSeek LLM does. */
static void check_qwen35(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && !vocab_adds_bos(v));
}

static void check_deepseek_llm(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_adds_bos(v));
}

/* gpt-oss adds no BOS; its harmony markup is control tokens. */
static void check_gpt_4o(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && !vocab_adds_bos(v));
}

int main(void)
{
    if (access(VOCAB_DIR "/qwen35-vocab.gguf", R_OK) != 0)
        TEST_SKIP("no %s: CTest writes it first (the bpe_vocabs step, which needs python3 with gguf)", VOCAB_DIR);
    tokenizer_fixture_check_file(VOCAB_DIR "/qwen35-vocab.gguf", "qwen35", check_qwen35);
    tokenizer_fixture_check_file(VOCAB_DIR "/deepseek-llm-vocab.gguf", "deepseek-llm", check_deepseek_llm);
    tokenizer_fixture_check_file(VOCAB_DIR "/gpt-4o-vocab.gguf", "gpt-4o", check_gpt_4o);
    return test_finish("test_tokenizer_pre");
}

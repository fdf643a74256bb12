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

/* A harmony conversation (analysis, a tool call, the final answer) with its
 * markup parsed, as llama-tokenize gives it on the same vocabulary. (Without
 * parsing, llama.cpp also takes <|start|>, <|message|>, <|channel|>,
 * <|constrain|> and <|end|> from the text, which it retypes as user-defined
 * for o200k_harmony; hearth keeps them text, like every control token.) */
static void check_harmony(void)
{
    static const char text[] =
        "<|start|>user<|message|>What's 2+2?<|end|><|start|>assistant<|channel|>analysis<|message|>Simple.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.add <|constrain|>json<|message|>{\"a\":2}<|call|>"
        "<|start|>assistant<|channel|>final<|message|>4<|return|>";
    static const int32_t want[] = {
        1464, 966, 1466, 54,  71,  64,  261, 82,   220, 17,   10,  17,   30,   1465, 1464, 939, 962, 1463, 64,  77,
        291,  88,  466,  82,  1466, 50, 535, 960,  13,  1465, 1464, 939,  962,  1463, 260,  76,  76,  499,  433, 88,
        478,  28,  69,   965, 66,  83,  72,  276,  82,  13,   1136, 67,  220,  1461, 73,   82,  276, 1466, 90,  1,
        64,   1,   25,   17,  92,  1470, 1464, 939, 962, 1463, 69,   403, 291,  1466, 19,   1460};
    gguf_file *f;
    vocab *v;
    if (!fixture_load_vocab(&f, &v, "%s", VOCAB_DIR "/gpt-4o-vocab.gguf"))
        return;
    int32_t ids[128];
    hearth_error err = {0};
    int64_t n = vocab_tokenize(v, text, strlen(text), true, true, ids, 128, &err);
    CHECK_MSG(n == (int64_t)(sizeof want / sizeof *want) && memcmp(ids, want, sizeof want) == 0,
              "harmony conversation: %lld ids (%s)", (long long)n, err.message);
    /* A turn ends at <|return|> or <|call|>; <|end|> only closes a message
     * (the analysis before the answer), as llama.cpp decides for harmony. */
    CHECK_MSG(vocab_is_end_of_generation(v, 1460) && vocab_is_end_of_generation(v, 1470),
              "<|return|> and <|call|> end a generation");
    CHECK_MSG(!vocab_is_end_of_generation(v, 1465), "<|end|> must not end a harmony generation");
    vocab_free(v);
    gguf_close(f);
}

int main(void)
{
    if (access(VOCAB_DIR "/qwen35-vocab.gguf", R_OK) != 0)
        TEST_SKIP("no %s: CTest writes it first (the bpe_vocabs step, which needs python3 with gguf)", VOCAB_DIR);
    tokenizer_fixture_check_file(VOCAB_DIR "/qwen35-vocab.gguf", "qwen35", check_qwen35);
    tokenizer_fixture_check_file(VOCAB_DIR "/deepseek-llm-vocab.gguf", "deepseek-llm", check_deepseek_llm);
    tokenizer_fixture_check_file(VOCAB_DIR "/gpt-4o-vocab.gguf", "gpt-4o", check_gpt_4o);
    check_harmony();
    return test_finish("test_tokenizer_pre");
}

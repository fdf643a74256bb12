/* The tokenizers against llama.cpp's published conformance vectors
 * (../shared/data/tokenizer: texts separated by "\n__ggml_vocab_test__\n",
 * one line of expected ids per text, tokenized without BOS and with special
 * tokens as plain text): SentencePiece (llama-spm, phi-3) and byte-level BPE
 * (gpt-2), with detokenisation round trips; and GPT-2's expected ids
 * detokenized back to each text. */
#include "test.h"

#include "tokenizer_fixture.h"

#include <string.h>
#include <unistd.h>

/* Detokenising the ids of a text gives the text back (with the leading space
 * SentencePiece's space-prefix rule added; byte-level BPE adds nothing). */
static void check_round_trip(const vocab *v, const char *text, size_t len, const int32_t *ids, int64_t n)
{
    size_t prefix = vocab_get_kind(v) == VOCAB_SPM;
    size_t cap = len * 4 + 16, at = 0;
    char *back = malloc(cap);
    for (int64_t i = 0; i < n; i++)
        at += vocab_token_to_piece(v, ids[i], false, back + at, cap - at);
    const char *expect = text;
    size_t expect_len = len;
    bool ok = at == expect_len + prefix && (!prefix || back[0] == ' ') && memcmp(back + prefix, expect, expect_len) == 0;
    CHECK_MSG(ok || len == 0, "round trip of '%.*s' gave '%.*s'", (int)len, text, (int)at, back);
    free(back);
}

/* Opens ggml-vocab-NAME.gguf's texts (.inp) and ids (.out). */
static bool open_vectors(const char *name, tokenizer_fixture *fx)
{
    char inp[1024], outp[1024];
    snprintf(inp, sizeof inp, "%s/tokenizer/ggml-vocab-%s.gguf.inp", HEARTH_SHARED_DATA_DIR, name);
    snprintf(outp, sizeof outp, "%s/tokenizer/ggml-vocab-%s.gguf.out", HEARTH_SHARED_DATA_DIR, name);
    return tokenizer_fixture_open(fx, inp, outp);
}

static void check_vectors(const char *name)
{
    gguf_file *f;
    vocab *v;
    if (!fixture_load_vocab(&f, &v, "%s/tokenizer/ggml-vocab-%s.gguf", HEARTH_SHARED_DATA_DIR, name))
        return;
    tokenizer_fixture fx;
    static fixture_case c;
    static int32_t ids[FIXTURE_MAX_IDS];
    int cases = 0, passed = 0;
    for (bool opened = open_vectors(name, &fx); opened && tokenizer_fixture_next(&fx, &c);) {
        hearth_error err = {0};
        int64_t n = vocab_tokenize(v, c.text, c.len, false, false, ids, FIXTURE_MAX_IDS, &err);
        bool same = n == c.n_want && memcmp(ids, c.want, (size_t)n * sizeof *ids) == 0;
        cases++;
        passed += same;
        if (!same) {
            fprintf(stderr, "%s case %d '%.*s': got", name, cases, (int)c.len, c.text);
            for (int64_t i = 0; i < n && i < 40; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want %s\n", c.line);
        }
        check_round_trip(v, c.text, c.len, ids, n);
    }
    printf("  %s: %d/%d vectors identical\n", name, passed, cases);
    CHECK_MSG(cases == 46 && passed == cases, "%s: %d of %d vectors", name, passed, cases);
    tokenizer_fixture_close(&fx);
    vocab_free(v);
    gguf_close(f);
}

static void check_bpe_detokenize(void)
{
    gguf_file *f;
    vocab *v;
    if (!fixture_load_vocab(&f, &v, "%s/tokenizer/ggml-vocab-gpt-2.gguf", HEARTH_SHARED_DATA_DIR))
        return;
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_bos(v) == 50256 && !vocab_adds_bos(v));
    tokenizer_fixture fx;
    static fixture_case c;
    int cases = 0, passed = 0;
    for (bool opened = open_vectors("gpt-2", &fx); opened && tokenizer_fixture_next(&fx, &c);) {
        size_t cap = c.len + 64, at = 0;
        char *back = malloc(cap);
        for (int64_t i = 0; back && i < c.n_want; i++)
            at += vocab_token_to_piece(v, c.want[i], false, back + at, at < cap ? cap - at : 0);
        cases++;
        bool same = back && at == c.len && memcmp(back, c.text, c.len) == 0;
        passed += same;
        if (!same)
            fprintf(stderr, "gpt-2 case %d: '%.*s' detokenized as '%.*s'\n", cases, (int)c.len, c.text,
                    (int)(at < cap ? at : cap), back ? back : "");
        free(back);
    }
    printf("  gpt-2: %d/%d texts detokenized exactly\n", passed, cases);
    CHECK_MSG(cases == 46 && passed == cases, "gpt-2: %d of %d texts", passed, cases);
    tokenizer_fixture_close(&fx);
    vocab_free(v);
    gguf_close(f);
}

int main(void)
{
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/tokenizer", HEARTH_SHARED_DATA_DIR);
    if (access(probe, R_OK) != 0)
        TEST_SKIP("%s is absent: the shared test data is not next to this checkout", probe);
    check_vectors("llama-spm");
    check_vectors("phi-3");
    check_vectors("gpt-2");
    check_bpe_detokenize();
    return test_finish("test_tokenizer");
}

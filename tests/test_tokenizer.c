/* The tokenizers against llama.cpp's published conformance vectors
 * (../shared/data/tokenizer: texts separated by "\n__ggml_vocab_test__\n",
 * one line of expected ids per text, tokenized without BOS and with special
 * tokens as plain text): SentencePiece (llama-spm, phi-3) and byte-level BPE
 * (gpt-2), with detokenisation round trips; and GPT-2's expected ids
 * detokenized back to each text. */
#include "test.h"

#include "text/vocab.h"

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

static void check_vectors(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf", HEARTH_SHARED_DATA_DIR, name);
    gguf_file *f;
    vocab *v;
    hearth_error err = {0};
    if (gguf_open(path, &f, &err) != HEARTH_OK) {
        CHECK_MSG(false, "%s", err.message);
        return;
    }
    if (vocab_load(f, &v, &err) != HEARTH_OK) {
        CHECK_MSG(false, "%s: %s", name, err.message);
        gguf_close(f);
        return;
    }
    size_t inp_size, out_size;
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf.inp", HEARTH_SHARED_DATA_DIR, name);
    char *inp = test_read_file(path, &inp_size);
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-%s.gguf.out", HEARTH_SHARED_DATA_DIR, name);
    char *outp = test_read_file(path, &out_size);
    CHECK(inp && outp);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int cases = 0, passed = 0;
    char *text = inp, *line = outp;
    while (inp && outp && *line) {
        char *end = strstr(text, sep);
        char *line_end = strchr(line, '\n');
        if (!end || !line_end)
            break;
        *line_end = '\0';
        size_t len = (size_t)(end - text);
        int32_t ids[4096];
        int64_t n = vocab_tokenize(v, text, len, false, false, ids, 4096, &err);
        /* Expected ids: space-separated. */
        int32_t want[4096];
        int64_t n_want = 0;
        for (char *p = line; *p;) {
            char *next;
            long id = strtol(p, &next, 10);
            if (next == p)
                break;
            want[n_want++] = (int32_t)id;
            p = next;
        }
        bool same = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
        cases++;
        passed += same;
        if (!same) {
            fprintf(stderr, "%s case %d '%.*s': got", name, cases, (int)len, text);
            for (int64_t i = 0; i < n && i < 40; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want %s\n", line);
        }
        check_round_trip(v, text, len, ids, n);
        text = end + strlen(sep);
        line = line_end + 1;
    }
    printf("  %s: %d/%d vectors identical\n", name, passed, cases);
    CHECK_MSG(cases == 46 && passed == cases, "%s: %d of %d vectors", name, passed, cases);
    free(inp);
    free(outp);
    vocab_free(v);
    gguf_close(f);
}

static void check_bpe_detokenize(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gpt-2.gguf", HEARTH_SHARED_DATA_DIR);
    gguf_file *f = NULL;
    vocab *v = NULL;
    hearth_error err = {0};
    if (gguf_open(path, &f, &err) != HEARTH_OK || vocab_load(f, &v, &err) != HEARTH_OK) {
        CHECK_MSG(false, "gpt-2: %s", err.message);
        gguf_close(f);
        return;
    }
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_bos(v) == 50256 && !vocab_adds_bos(v));

    size_t inp_size, out_size;
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gpt-2.gguf.inp", HEARTH_SHARED_DATA_DIR);
    char *inp = test_read_file(path, &inp_size);
    snprintf(path, sizeof path, "%s/tokenizer/ggml-vocab-gpt-2.gguf.out", HEARTH_SHARED_DATA_DIR);
    char *outp = test_read_file(path, &out_size);
    CHECK(inp && outp);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int cases = 0, passed = 0;
    char *text = inp, *line = outp;
    for (char *end, *line_end; inp && outp && (end = strstr(text, sep)) && (line_end = strchr(line, '\n'));
         text = end + strlen(sep), line = line_end + 1) {
        size_t len = (size_t)(end - text), cap = len + 64, at = 0;
        char *back = malloc(cap);
        for (char *p = line, *next; back && p < line_end; p = next) {
            long id = strtol(p, &next, 10);
            if (next == p)
                break;
            at += vocab_token_to_piece(v, (int32_t)id, false, back + at, at < cap ? cap - at : 0);
        }
        cases++;
        bool same = back && at == len && memcmp(back, text, len) == 0;
        passed += same;
        if (!same)
            fprintf(stderr, "gpt-2 case %d: '%.*s' detokenized as '%.*s'\n", cases, (int)len, text,
                    (int)(at < cap ? at : cap), back ? back : "");
        free(back);
    }
    printf("  gpt-2: %d/%d texts detokenized exactly\n", passed, cases);
    CHECK_MSG(cases == 46 && passed == cases, "gpt-2: %d of %d texts", passed, cases);
    free(inp);
    free(outp);
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

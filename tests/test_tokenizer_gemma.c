/* The tokenizer on the real Gemma 3 vocabulary against llama.cpp: the corpus
 * in tests/fixtures/tokenizer/corpus.txt (English, code, CJK, emoji, runs of
 * spaces, tabs and newlines, chat markup, invalid UTF-8 and NUL bytes), tokenized by llama-tokenize in two
 * modes (scripts/oracle/make_tokenizer_fixtures.sh): with BOS and special
 * tokens parsed, and without BOS with special tokens as plain text. Needs the
 * default model (scripts/setup.sh installs it); skips without it. */
#include "test.h"

#include "base/paths.h"
#include "text/vocab.h"

#include <string.h>
#include <unistd.h>

/* Finds needle in [hay, hay_end): the corpus holds NUL bytes, so no strstr. */
static const char *find(const char *hay, const char *hay_end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; p + n <= hay_end; p++)
        if (memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

static int compare_mode(const vocab *v, const char *corpus, size_t corpus_len, const char *expected_path, bool special)
{
    size_t expected_len;
    char *expected = test_read_file(expected_path, &expected_len);
    CHECK_MSG(expected != NULL, "cannot read %s", expected_path);
    if (!expected)
        return 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int cases = 0, same = 0;
    hearth_error err = {0};
    const char *text = corpus;
    char *line = expected;
    for (const char *end; (end = find(text, corpus + corpus_len, sep)) != NULL; text = end + strlen(sep)) {
        char *line_end = strchr(line, '\n');
        if (!line_end)
            break;
        *line_end = '\0';
        int32_t ids[1024], want[1024];
        int64_t n = vocab_tokenize(v, text, (size_t)(end - text), special, special, ids, 1024, &err), n_want = 0;
        for (char *p = line, *next; n_want < 1024; p = next) {
            long id = strtol(p, &next, 10);
            if (next == p)
                break;
            want[n_want++] = (int32_t)id;
        }
        bool ok = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
        cases++;
        same += ok;
        if (!ok) {
            fprintf(stderr, "case %d (%s) '%.*s':\n  got ", cases, special ? "special" : "plain", (int)(end - text), text);
            for (int64_t i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  want %s\n", line);
        }
        line = line_end + 1;
    }
    printf("  %s mode: %d/%d cases identical to llama.cpp\n", special ? "special" : "plain", same, cases);
    CHECK_MSG(cases == 35 && same == cases, "%d of %d cases", same, cases);
    free(expected);
    return cases;
}

int main(void)
{
    char model[4096];
    if (!paths_default_model(model, sizeof model) || access(model, R_OK) != 0)
        TEST_SKIP("the default model (%s) is not installed: run scripts/setup.sh", model);
    gguf_file *f;
    vocab *v;
    hearth_error err = {0};
    if (gguf_open(model, &f, &err) != HEARTH_OK || vocab_load(f, &v, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    CHECK(vocab_size(v) == 262144 && vocab_bos(v) == 2 && vocab_eos(v) == 1);
    CHECK(vocab_is_end_of_generation(v, 106) && vocab_is_end_of_generation(v, 1)); /* <end_of_turn>, <eos> */
    size_t corpus_len = 0;
    char *corpus = test_read_file(HEARTH_FIXTURES_DIR "/tokenizer/corpus.txt", &corpus_len);
    CHECK(corpus != NULL);
    if (corpus) {
        compare_mode(v, corpus, corpus_len, HEARTH_FIXTURES_DIR "/tokenizer/gemma3.special.out", true);
        compare_mode(v, corpus, corpus_len, HEARTH_FIXTURES_DIR "/tokenizer/gemma3.plain.out", false);
    }
    free(corpus);
    vocab_free(v);
    gguf_close(f);
    return test_finish("test_tokenizer_gemma");
}

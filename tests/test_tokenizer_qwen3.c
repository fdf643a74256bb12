/* Byte-level BPE with Qwen's pre-tokenizer (tokenizer.ggml.pre = qwen2) and
 * Qwen 3's special tokens against llama.cpp: the tiny Qwen 3 model's
 * vocabulary (written by scripts/oracle/make_dense_model.py, the CTest step
 * dense_tiny_models; its merges are random, its pre-tokenizer and added
 * tokens are Qwen 3's) tokenizing tests/fixtures/tokenizer/corpus.txt, as
 * llama-tokenize did (scripts/oracle/make_tokenizer_fixtures.sh), with
 * special tokens parsed and as plain text.
 *
 * One deliberate difference: text that is not UTF-8 is an error here, where
 * llama.cpp tokenizes the stray bytes; those cases expect the error. */
#include "test.h"

#include "base/utf8.h"
#include "gguf/gguf.h"
#include "text/vocab.h"

#include <string.h>
#include <unistd.h>

#define MODEL HEARTH_TEST_TMPDIR "/dense/qwen3-tiny-f16.gguf"

static const char *find(const char *hay, const char *hay_end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; p + n <= hay_end; p++)
        if (memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

static bool is_utf8(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode((const uint8_t *)text + i, len - i, &cp);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static void compare_mode(const vocab *v, const char *corpus, size_t corpus_len, const char *expected_path,
                         bool special)
{
    size_t expected_len;
    char *expected = test_read_file(expected_path, &expected_len);
    CHECK_MSG(expected != NULL, "cannot read %s", expected_path);
    if (!expected)
        return;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int cases = 0, same = 0, refused = 0;
    const char *text = corpus;
    char *line = expected;
    for (const char *end; (end = find(text, corpus + corpus_len, sep)) != NULL; text = end + strlen(sep)) {
        char *line_end = strchr(line, '\n');
        if (!line_end)
            break;
        *line_end = '\0';
        size_t len = (size_t)(end - text);
        int32_t ids[1024], want[1024];
        hearth_error err = {0};
        /* add_special too: Qwen 3 adds no BOS, as llama.cpp's ids show. */
        int64_t n = vocab_tokenize(v, text, len, special, special, ids, 1024, &err), n_want = 0;
        for (char *p = line, *next; n_want < 1024; p = next) {
            long id = strtol(p, &next, 10);
            if (next == p)
                break;
            want[n_want++] = (int32_t)id;
        }
        bool ok;
        if (is_utf8(text, len)) {
            ok = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
        } else {
            ok = n == -1 && err.status == HEARTH_ERR_FORMAT && strstr(err.message, "UTF-8") != NULL;
            refused += ok;
        }
        cases++;
        same += ok;
        if (!ok) {
            fprintf(stderr, "case %d (%s) '%.*s':\n  got ", cases, special ? "special" : "plain", (int)len, text);
            for (int64_t i = 0; i < n && i < 1024; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "%s\n  want %s\n", n < 0 ? err.message : "", line);
        }
        line = line_end + 1;
    }
    printf("  %s mode: %d/%d cases as expected (%d identical to llama.cpp, %d not UTF-8 and refused)\n",
           special ? "special" : "plain", same, cases, same - refused, refused);
    CHECK_MSG(cases == 35 && same == cases && refused == 2, "%d of %d cases", same, cases);
    free(expected);
}

int main(void)
{
    if (access(MODEL, R_OK) != 0)
        TEST_SKIP("no %s: CTest writes it first (the dense_tiny_models step, which needs python3 with gguf)", MODEL);
    gguf_file *f;
    vocab *v;
    hearth_error err = {0};
    if (gguf_open(MODEL, &f, &err) != HEARTH_OK || vocab_load(f, &v, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    CHECK(vocab_get_kind(v) == VOCAB_BPE && !vocab_adds_bos(v));
    size_t corpus_len = 0;
    char *corpus = test_read_file(HEARTH_FIXTURES_DIR "/tokenizer/corpus.txt", &corpus_len);
    CHECK(corpus != NULL);
    if (corpus) {
        compare_mode(v, corpus, corpus_len, HEARTH_FIXTURES_DIR "/tokenizer/qwen3-tiny.special.out", true);
        compare_mode(v, corpus, corpus_len, HEARTH_FIXTURES_DIR "/tokenizer/qwen3-tiny.plain.out", false);
    }
    free(corpus);
    vocab_free(v);
    gguf_close(f);
    return test_finish("test_tokenizer_qwen3");
}

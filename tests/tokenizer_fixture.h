/* Tokenizer fixtures, read the one way every tokenizer test reads them: a
 * file of texts, each followed by "\n__ggml_vocab_test__\n" (llama.cpp's
 * format; texts may hold NUL and bytes that are not UTF-8), and a file with
 * one line of space-separated ids per text, as llama.cpp tokenized it.
 *
 * tests/fixtures/tokenizer/corpus.txt is the shared corpus; NAME.special.out
 * holds its ids with BOS (if the model adds one) and special tokens parsed,
 * NAME.plain.out without BOS and with special tokens as plain text, both
 * written by scripts/oracle/make_tokenizer_fixtures.sh MODEL NAME.
 * Include after test.h. */
#ifndef HEARTH_TOKENIZER_FIXTURE_H
#define HEARTH_TOKENIZER_FIXTURE_H

#include "base/utf8.h"
#include "text/vocab.h"

#include <stdarg.h>
#include <string.h>

#define TOKENIZER_CORPUS HEARTH_FIXTURES_DIR "/tokenizer/corpus.txt"
/* Cases in corpus.txt: a fixture that stops short fails instead of passing on fewer. */
enum { TOKENIZER_CORPUS_CASES = 45, FIXTURE_MAX_IDS = 4096 };

typedef struct tokenizer_fixture {
    char *texts, *ids; /* both files, whole */
    size_t texts_len;
    const char *next_text;
    char *next_line;
} tokenizer_fixture;

typedef struct fixture_case {
    const char *text; /* in the texts file, not terminated */
    size_t len;
    const char *line; /* the expected ids as written */
    int32_t want[FIXTURE_MAX_IDS];
    int64_t n_want;
} fixture_case;

static inline void tokenizer_fixture_close(tokenizer_fixture *fx)
{
    free(fx->texts);
    free(fx->ids);
    *fx = (tokenizer_fixture){0};
}

/* False (and a failed CHECK) if either file cannot be read. */
static inline bool tokenizer_fixture_open(tokenizer_fixture *fx, const char *texts_path, const char *ids_path)
{
    *fx = (tokenizer_fixture){0};
    size_t ids_len;
    fx->texts = test_read_file(texts_path, &fx->texts_len);
    fx->ids = test_read_file(ids_path, &ids_len);
    CHECK_MSG(fx->texts && fx->ids, "cannot read %s or %s", texts_path, ids_path);
    if (!fx->texts || !fx->ids) {
        tokenizer_fixture_close(fx);
        return false;
    }
    fx->next_text = fx->texts;
    fx->next_line = fx->ids;
    return true;
}

/* Finds needle in [hay, hay_end): the texts hold NUL bytes, so no strstr. */
static inline const char *fixture_find(const char *hay, const char *hay_end, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; p + n <= hay_end; p++)
        if (memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

/* The next text and its ids; false after the last. */
static inline bool tokenizer_fixture_next(tokenizer_fixture *fx, fixture_case *c)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    if (!fx->texts)
        return false;
    const char *end = fixture_find(fx->next_text, fx->texts + fx->texts_len, sep);
    char *line_end = strchr(fx->next_line, '\n');
    if (!end || !line_end)
        return false;
    *line_end = '\0';
    c->text = fx->next_text;
    c->len = (size_t)(end - fx->next_text);
    c->line = fx->next_line;
    c->n_want = 0;
    for (char *p = fx->next_line, *next; c->n_want < FIXTURE_MAX_IDS; p = next) {
        long id = strtol(p, &next, 10);
        if (next == p)
            break;
        c->want[c->n_want++] = (int32_t)id;
    }
    fx->next_text = end + strlen(sep);
    fx->next_line = line_end + 1;
    return true;
}

/* Tokenizes every case of a file of texts (n_cases of them) in one mode
 * (special: add BOS and parse special tokens; else neither) and compares
 * with the oracle's ids in NAME.special.out or NAME.plain.out. The one
 * deliberate difference: text that is not UTF-8 is an error for BPE here,
 * where llama.cpp tokenizes the stray bytes, so those cases expect the
 * error. Returns the cases identical to llama.cpp. */
static inline int tokenizer_fixture_compare_texts(const vocab *v, const char *texts_path, int n_cases,
                                                  const char *name, bool special)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/%s.%s.out", HEARTH_FIXTURES_DIR, name, special ? "special" : "plain");
    tokenizer_fixture fx;
    if (!tokenizer_fixture_open(&fx, texts_path, path))
        return 0;
    static fixture_case c;
    static int32_t ids[FIXTURE_MAX_IDS];
    int cases = 0, same = 0, refused = 0;
    while (tokenizer_fixture_next(&fx, &c)) {
        hearth_error err = {0};
        int64_t n = vocab_tokenize(v, c.text, c.len, special, special, ids, FIXTURE_MAX_IDS, &err);
        bool ok;
        if (vocab_get_kind(v) == VOCAB_BPE && utf8_first_invalid((const uint8_t *)c.text, c.len) < c.len) {
            ok = n == -1 && err.status == HEARTH_ERR_FORMAT && strstr(err.message, "UTF-8") != NULL;
            refused += ok;
        } else {
            ok = n == c.n_want && memcmp(ids, c.want, (size_t)n * sizeof *ids) == 0;
        }
        cases++;
        same += ok;
        if (!ok) {
            fprintf(stderr, "%s case %d (%s) '%.*s':\n  got ", name, cases, special ? "special" : "plain", (int)c.len,
                    c.text);
            for (int64_t i = 0; i < n && i < FIXTURE_MAX_IDS; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "%s\n  want %s\n", n < 0 ? err.message : "", c.line);
        }
    }
    printf("  %s, %s mode: %d/%d cases as expected (%d identical to llama.cpp, %d not UTF-8 and refused)\n", name,
           special ? "special" : "plain", same, cases, same - refused, refused);
    CHECK_MSG(cases == n_cases && same == cases, "%s: %d of %d cases", name, same, cases);
    tokenizer_fixture_close(&fx);
    return same - refused;
}

/* The shared corpus in one mode. */
static inline int tokenizer_fixture_compare_mode(const vocab *v, const char *name, bool special)
{
    return tokenizer_fixture_compare_texts(v, TOKENIZER_CORPUS, TOKENIZER_CORPUS_CASES, name, special);
}

/* Both modes against NAME.special.out and NAME.plain.out. */
static inline void tokenizer_fixture_compare(const vocab *v, const char *name)
{
    tokenizer_fixture_compare_mode(v, name, true);
    tokenizer_fixture_compare_mode(v, name, false);
}

/* Opens the model or vocabulary file named by the printf-style format and
 * loads its vocabulary; on failure a failed CHECK says why, and there is
 * nothing to free. */
static inline bool fixture_load_vocab(gguf_file **f, vocab **v, const char *format, ...)
{
    char path[4096];
    va_list args;
    va_start(args, format);
    vsnprintf(path, sizeof path, format, args);
    va_end(args);
    hearth_error err = {0};
    *f = NULL;
    *v = NULL;
    if (gguf_open(path, f, &err) == HEARTH_OK && vocab_load(*f, v, &err) == HEARTH_OK)
        return true;
    CHECK_MSG(false, "%s: %s", path, err.message);
    gguf_close(*f);
    *f = NULL;
    return false;
}

/* The whole test of one file: its vocabulary loaded, checked by check (the
 * file's own facts: size, BOS, ...; NULL for none) and compared with NAME's
 * fixtures in both modes. */
static inline void tokenizer_fixture_check_file(const char *path, const char *name, void (*check)(const vocab *v))
{
    gguf_file *f;
    vocab *v;
    if (!fixture_load_vocab(&f, &v, "%s", path))
        return;
    if (check)
        check(v);
    tokenizer_fixture_compare(v, name);
    vocab_free(v);
    gguf_close(f);
}

#endif

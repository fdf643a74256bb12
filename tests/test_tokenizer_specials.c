/* Finding the special tokens written in a text. The tokenizer finds them with
 * a trie and a heap (src/text/tokenize.c); here a vocabulary built for the
 * purpose, with specials that nest, overlap and strip whitespace, is
 * tokenized against the direct transcription of llama.cpp's loop (one scan
 * of the text per special, longest first), on random texts made of those
 * specials' pieces: with and without parse_special, and with guarded spans
 * (control tokens there stay text). vocab_control_spans is checked against
 * a brute-force search. The real vocabularies' special modes are checked
 * against llama.cpp's own output by the test_tokenizer_* tests. */
#include "test.h"

#include "text/vocab_internal.h"

#include <ctype.h>
#include <string.h>

enum { MAX_FRAGS = 512, MAX_IDS = 2048 };

typedef struct ref_fragment {
    int32_t token; /* VOCAB_NO_TOKEN: raw text [off, off + len) */
    size_t off, len;
} ref_fragment;

static bool ref_guarded(const text_span *g, size_t n, size_t off, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (g[i].off < off + len && off < g[i].off + g[i].len)
            return true;
    return false;
}

/* llama.cpp's tokenizer_st_partition, transcribed: for each special in
 * order, every raw fragment is split around that special's occurrences,
 * searched leftmost first. */
static size_t ref_partition(const vocab *v, const char *text, size_t len, bool parse_special, const text_span *guarded,
                            size_t n_guarded, ref_fragment *out)
{
    static ref_fragment a[MAX_FRAGS], b[MAX_FRAGS];
    size_t na = 0, nb;
    a[na++] = (ref_fragment){VOCAB_NO_TOKEN, 0, len};
    for (int32_t k = 0; k < v->n_specials; k++) {
        int32_t id = v->specials[k];
        bool control = v->flags[id] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN);
        if (control && !parse_special)
            continue;
        gguf_string tok = v->texts[id];
        nb = 0;
        for (size_t i = 0; i < na; i++) {
            if (a[i].token != VOCAB_NO_TOKEN) {
                b[nb++] = a[i];
                continue;
            }
            size_t off = a[i].off, end = a[i].off + a[i].len;
            for (size_t at = off; at + tok.len <= end; at++) {
                if (memcmp(text + at, tok.data, tok.len) != 0 ||
                    (control && ref_guarded(guarded, n_guarded, at, tok.len)))
                    continue;
                size_t left = at - off;
                if (v->flags[id] & TOKEN_FLAG_LSTRIP)
                    while (left > 0 && isspace((unsigned char)text[off + left - 1]))
                        left--;
                if (left > 0)
                    b[nb++] = (ref_fragment){VOCAB_NO_TOKEN, off, left};
                b[nb++] = (ref_fragment){id, 0, 0};
                off = at + tok.len;
                if (v->flags[id] & TOKEN_FLAG_RSTRIP)
                    while (off < end && isspace((unsigned char)text[off]))
                        off++;
                at = off - 1;
            }
            if (end > off)
                b[nb++] = (ref_fragment){VOCAB_NO_TOKEN, off, end - off};
        }
        memcpy(a, b, nb * sizeof *b);
        na = nb;
    }
    memcpy(out, a, na * sizeof *a);
    return na;
}

/* The ids the reference partition gives: specials as they are, raw runs
 * tokenized with no specials left in them to find. */
static int64_t ref_tokenize(const vocab *v, const char *text, size_t len, bool parse_special, const text_span *guarded,
                            size_t n_guarded, int32_t *ids)
{
    static ref_fragment frags[MAX_FRAGS];
    size_t nf = ref_partition(v, text, len, parse_special, guarded, n_guarded, frags);
    int64_t n = 0;
    for (size_t i = 0; i < nf; i++) {
        if (frags[i].token != VOCAB_NO_TOKEN) {
            ids[n++] = frags[i].token;
            continue;
        }
        hearth_error err = {0};
        int64_t k = vocab_tokenize(v, text + frags[i].off, frags[i].len, false, false, ids + n, MAX_IDS - (size_t)n,
                                   &err);
        if (k < 0)
            return -1;
        n += k;
    }
    return n;
}

/* A SentencePiece vocabulary: byte tokens, a few characters, and specials
 * chosen to nest ("<|a", "<|a|>", "<|ab|>"), to overlap ("a|>", "|><|",
 * "b|"; "|>b|>>" takes the end of "<|a|>" in "<|a|>b|>>", which leaves "<|a"
 * its turn), to repeat ("\n\n", "\n\n\n") and to share their text with
 * another special of the same length ("xy" twice: the lower id wins). */
static const struct {
    const char *text;
    int32_t type;
} extra_tokens[] = {
    {"a", TOKEN_TYPE_NORMAL},        {"b", TOKEN_TYPE_NORMAL},         {"|", TOKEN_TYPE_NORMAL},
    {"<", TOKEN_TYPE_NORMAL},        {">", TOKEN_TYPE_NORMAL},         {"\xe2\x96\x81", TOKEN_TYPE_NORMAL},
    {"<|a|>", TOKEN_TYPE_CONTROL},   {"<|a", TOKEN_TYPE_CONTROL},      {"a|>", TOKEN_TYPE_CONTROL},
    {"<|ab|>", TOKEN_TYPE_CONTROL},  {"|><|", TOKEN_TYPE_CONTROL},     {"<|a|><|a|>", TOKEN_TYPE_CONTROL},
    {"b|", TOKEN_TYPE_USER_DEFINED}, {"ab", TOKEN_TYPE_USER_DEFINED},  {"aab", TOKEN_TYPE_USER_DEFINED},
    {"\n\n", TOKEN_TYPE_USER_DEFINED}, {"\n\n\n", TOKEN_TYPE_USER_DEFINED}, {"xy", TOKEN_TYPE_CONTROL},
    {"xy", TOKEN_TYPE_USER_DEFINED}, {"<unk>", TOKEN_TYPE_UNKNOWN},  {"|>b|>>", TOKEN_TYPE_CONTROL},
};

static vocab *make_vocab(gguf_file **file, void **memory)
{
    enum { N_BYTES = 256, N_EXTRA = sizeof extra_tokens / sizeof extra_tokens[0], N = 3 + N_BYTES + N_EXTRA };
    static char names[N_BYTES][8];
    const char *texts[N];
    int32_t types[N];
    float scores[N];
    texts[0] = "<pad>", types[0] = TOKEN_TYPE_CONTROL;
    texts[1] = "<s>", types[1] = TOKEN_TYPE_CONTROL;
    texts[2] = "</s>", types[2] = TOKEN_TYPE_CONTROL;
    for (int i = 0; i < N_BYTES; i++) {
        snprintf(names[i], sizeof names[i], "<0x%02X>", i);
        texts[3 + i] = names[i], types[3 + i] = TOKEN_TYPE_BYTE;
    }
    for (int i = 0; i < N_EXTRA; i++)
        texts[3 + N_BYTES + i] = extra_tokens[i].text, types[3 + N_BYTES + i] = extra_tokens[i].type;
    for (int i = 0; i < N; i++)
        scores[i] = -(float)i;
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    size_t size = 0;
    bool ok = gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", &err) == HEARTH_OK &&
              gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", texts, N, &err) == HEARTH_OK &&
              gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N, &err) == HEARTH_OK &&
              gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N, &err) == HEARTH_OK &&
              gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", GGUF_TYPE_UINT32, 1, &err) == HEARTH_OK &&
              gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", GGUF_TYPE_UINT32, 2, &err) == HEARTH_OK &&
              gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, &err) == HEARTH_OK &&
              gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false, &err) == HEARTH_OK &&
              gguf_writer_write_memory(w, memory, &size, &err) == HEARTH_OK;
    gguf_writer_free(w);
    vocab *v = NULL;
    ok = ok && gguf_open_memory(*memory, size, file, &err) == HEARTH_OK && vocab_load(*file, &v, &err) == HEARTH_OK;
    CHECK_MSG(ok, "the test vocabulary: %s", err.message);
    if (!ok)
        return NULL;
    /* Whitespace eating, as Phi-3's specials do (RSTRIP) and others' (LSTRIP). */
    v->flags[vocab_find(v, "<|a|>", 5)] |= TOKEN_FLAG_RSTRIP;
    v->flags[vocab_find(v, "|><|", 4)] |= TOKEN_FLAG_LSTRIP;
    v->flags[vocab_find(v, "ab", 2)] |= TOKEN_FLAG_LSTRIP | TOKEN_FLAG_RSTRIP;
    return v;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static size_t random_text(char *out, size_t cap)
{
    static const char *const pieces[] = {"<|a|>", "<|a", "a|>", "<|ab|>", "|><|", "b|", "ab",    "aab", "\n", "\n\n",
                                         "xy",    "<",   "|",   ">",      "a",    "b",  " ",     "\t",  "<unk>", "<s>",
                                         "b|>>"};
    size_t n = 0, count = 1 + rng(24);
    for (size_t i = 0; i < count; i++) {
        const char *p = pieces[rng(sizeof pieces / sizeof pieces[0])];
        size_t len = strlen(p);
        if (n + len >= cap)
            break;
        memcpy(out + n, p, len);
        n += len;
    }
    return n;
}

static size_t random_spans(size_t len, text_span *spans)
{
    size_t n = 0;
    for (size_t at = 0; at < len && n < 4;) {
        at += rng(8);
        size_t span = 1 + rng(6);
        if (at + span > len)
            break;
        spans[n++] = (text_span){at, span};
        at += span + 1;
    }
    return n;
}

static void check_against_reference(const vocab *v)
{
    static int32_t got[MAX_IDS], want[MAX_IDS];
    char text[256];
    int compared = 0, differed = 0, with_control = 0, guarded_control_as_text = 0;
    int32_t control_a = vocab_find(v, "<|a|>", 5);
    for (int iter = 0; iter < 30000; iter++) {
        size_t len = random_text(text, sizeof text);
        text_span spans[4];
        size_t n_spans = iter % 3 == 2 ? random_spans(len, spans) : 0;
        bool parse_special = iter % 3 != 0;
        hearth_error err = {0};
        int64_t n = n_spans ? vocab_tokenize_guarded(v, text, len, false, spans, n_spans, got, MAX_IDS, &err)
                            : vocab_tokenize(v, text, len, false, parse_special, got, MAX_IDS, &err);
        int64_t m = ref_tokenize(v, text, len, parse_special, spans, n_spans, want);
        compared++;
        bool same = n == m && n >= 0 && memcmp(got, want, (size_t)n * sizeof *got) == 0;
        if (!same && differed++ < 5) {
            fprintf(stderr, "text '%.*s' (parse_special %d, %zu guarded spans):\n  got ", (int)len, text, parse_special,
                    n_spans);
            for (int64_t i = 0; i < n; i++)
                fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n  want");
            for (int64_t i = 0; i < m; i++)
                fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        for (int64_t i = 0; i < n; i++)
            if (got[i] == control_a) {
                with_control++;
                break;
            }
        if (n_spans && strstr(text, "<|a|>"))
            guarded_control_as_text++;
    }
    printf("  %d texts tokenized as the reference does: %d differ; %d held <|a|> as a control token, %d were guarded\n",
           compared, differed, with_control, guarded_control_as_text);
    CHECK(differed == 0);
    CHECK(with_control > 1000 && guarded_control_as_text > 1000); /* the cases the test is for did occur */
}

/* A control token a user typed stays text inside a guarded span and is a
 * control token outside it, in the same text. */
static void check_guarded_example(const vocab *v)
{
    const char *text = "<|a|>x<|a|>";
    int32_t control = vocab_find(v, "<|a|>", 5), ids[32];
    hearth_error err = {0};
    text_span guard = {6, 5};
    int64_t n = vocab_tokenize_guarded(v, text, strlen(text), false, &guard, 1, ids, 32, &err);
    CHECK(n >= 3 && ids[0] == control);
    int controls = 0;
    for (int64_t i = 0; i < n; i++)
        controls += ids[i] == control;
    CHECK_MSG(controls == 1, "%d control tokens, want 1", controls);
}

static void check_control_spans(const vocab *v)
{
    char text[256];
    int checked = 0;
    for (int iter = 0; iter < 5000; iter++) {
        size_t len = random_text(text, sizeof text);
        /* Brute force: every byte some control text covers. */
        bool covered[256] = {0};
        for (int32_t id = 0; id < vocab_size(v); id++) {
            if (!(v->flags[id] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN)))
                continue;
            gguf_string t = vocab_token_text(v, id);
            for (size_t at = 0; at + t.len <= len; at++)
                if (memcmp(text + at, t.data, t.len) == 0)
                    memset(covered + at, 1, t.len);
        }
        text_span *spans = NULL;
        size_t n = 0;
        hearth_error err = {0};
        CHECK(vocab_control_spans(v, text, len, &spans, &n, &err) == HEARTH_OK);
        bool got[256] = {0}, ordered = true;
        for (size_t i = 0; i < n; i++) {
            memset(got + spans[i].off, 1, spans[i].len);
            ordered = ordered && spans[i].len > 0 && (i == 0 || spans[i].off > spans[i - 1].off + spans[i - 1].len);
        }
        bool same = memcmp(got, covered, len) == 0 && ordered;
        CHECK_MSG(same, "control spans of '%.*s'", (int)len, text);
        checked += same;
        free(spans);
    }
    printf("  control spans of %d texts as a brute-force search finds them\n", checked);
}

int main(void)
{
    gguf_file *f = NULL;
    void *memory = NULL;
    vocab *v = make_vocab(&f, &memory);
    if (v) {
        check_against_reference(v);
        check_guarded_example(v);
        check_control_spans(v);
    }
    vocab_free(v);
    gguf_close(f);
    free(memory);
    return test_finish("test_tokenizer_specials");
}

/* libFuzzer target: the tokenizers on arbitrary bytes.
 *
 * Vocabularies: SentencePiece (llama.cpp's llama-spm test vocabulary) and
 * byte-level BPE (GPT-2's), the latter once per pre-tokenizer hearth knows,
 * by writing GPT-2's vocabulary again with another tokenizer.ggml.pre; and
 * Gemma 4's BPE over SentencePiece-style texts, by writing llama-spm's again
 * as tokenizer.ggml.model "gemma4" with a merge for every split of a piece
 * into two pieces (as Gemma 4's own merges were made). They come from the
 * shared test data (../shared/data/tokenizer); without it the target exits
 * 77, which CTest reports as skipped.
 *
 * Each input is tokenized by each vocabulary in both modes (BOS and special
 * tokens parsed; neither) and must keep the promises vocab.h makes, each a
 * trap when broken:
 *   - the count asked for with no buffer is the count a full buffer gets,
 *     and the ids are the same twice over;
 *   - every id is inside the vocabulary;
 *   - BPE (Gemma 4's too) refuses exactly the inputs that are not UTF-8,
 *     with HEARTH_ERR_FORMAT, and SentencePiece refuses nothing;
 *   - valid UTF-8 comes back from the pieces: for BPE in both modes (control
 *     tokens as their text), for SentencePiece without special tokens, with
 *     the one space it prefixes; for both over SentencePiece-style texts
 *     (llama-spm, Gemma 4) if the text has no U+2581 (their space mark,
 *     which comes back as a space).
 *   - with every control token's text guarded (vocab_tokenize_guarded over
 *     vocab_control_spans) the ids are those with special tokens off.
 * Pieces are also cut short at every length, to check the cap is obeyed. */
#include "base/utf8.h"
#include "gguf/gguf.h"
#include "text/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB_DIR HEARTH_SHARED_DATA_DIR "/tokenizer"

typedef struct fuzz_vocab {
    /* BPE: the pre-tokenizer written in; "gemma4": llama-spm's as Gemma 4's
     * (see above); NULL: as the file has it */
    const char *pre;
    void *image;     /* the rewritten file, when pre is set */
    gguf_file *file;
    vocab *v;
} fuzz_vocab;

static fuzz_vocab vocabs[] = {
    {NULL, NULL, NULL, NULL}, /* llama-spm */
    {NULL, NULL, NULL, NULL}, /* gpt-2 */
    {"llama3", NULL, NULL, NULL},       {"qwen2", NULL, NULL, NULL},  {"qwen35", NULL, NULL, NULL},
    {"smollm", NULL, NULL, NULL},       {"deepseek-llm", NULL, NULL, NULL}, {"default", NULL, NULL, NULL},
    {"gemma4", NULL, NULL, NULL},
    {"gpt-4o", NULL, NULL, NULL},
};
enum { N_VOCABS = sizeof vocabs / sizeof vocabs[0] };

static void fail_setup(const char *what, const hearth_error *err)
{
    fprintf(stderr, "fuzz_tokenize: %s: %s\n", what, err->message);
    exit(1);
}

/* GPT-2's vocabulary with tokenizer.ggml.pre = pre, in memory. */
static void *rewrite_pre(const gguf_file *gpt2, const char *pre, size_t *size)
{
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    if (!w)
        fail_setup("writer", &err);
    for (int64_t i = 0; i < gguf_kv_count(gpt2); i++) {
        const gguf_kv *kv = gguf_kv_at(gpt2, i);
        hearth_status st = strcmp(kv->key, "tokenizer.ggml.pre") == 0
                               ? gguf_writer_add_string(w, kv->key, pre, &err)
                               : gguf_writer_add_value(w, kv->key, &kv->value, &err);
        if (st != HEARTH_OK)
            fail_setup(kv->key, &err);
    }
    void *image = NULL;
    if (gguf_writer_write_memory(w, &image, size, &err) != HEARTH_OK)
        fail_setup("writing the vocabulary", &err);
    gguf_writer_free(w);
    return image;
}

static size_t utf8_length_of(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* llama-spm's vocabulary (file and loaded) as tokenizer.ggml.model
 * "gemma4", with a merge "left right" for every split of a normal piece
 * into two normal pieces, by the piece's id, in memory. */
static void *rewrite_gemma4(const gguf_file *spm, const vocab *v, size_t *size)
{
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    if (!w)
        fail_setup("writer", &err);
    for (int64_t i = 0; i < gguf_kv_count(spm); i++) {
        const gguf_kv *kv = gguf_kv_at(spm, i);
        hearth_status st = strcmp(kv->key, "tokenizer.ggml.model") == 0
                               ? gguf_writer_add_string(w, kv->key, "gemma4", &err)
                               : gguf_writer_add_value(w, kv->key, &kv->value, &err);
        if (st != HEARTH_OK)
            fail_setup(kv->key, &err);
    }
    size_t n = 0, cap = 1024;
    char **merges = malloc(cap * sizeof *merges);
    for (int32_t id = 0; merges && id < vocab_size(v); id++) {
        gguf_string t = vocab_token_text(v, id);
        if (vocab_token_type(v, id) != TOKEN_TYPE_NORMAL || memchr(t.data, '\0', t.len) || memchr(t.data, ' ', t.len))
            continue;
        for (size_t k = utf8_length_of((unsigned char)t.data[0]); k < t.len;
             k += utf8_length_of((unsigned char)t.data[k])) {
            int32_t left = vocab_find(v, t.data, k), right = vocab_find(v, t.data + k, t.len - k);
            if (left == VOCAB_NO_TOKEN || right == VOCAB_NO_TOKEN || vocab_token_type(v, left) != TOKEN_TYPE_NORMAL ||
                vocab_token_type(v, right) != TOKEN_TYPE_NORMAL)
                continue;
            if (n == cap) {
                char **grown = realloc(merges, 2 * cap * sizeof *merges);
                if (!grown)
                    fail_setup("merges", &err);
                merges = grown, cap *= 2;
            }
            char *m = malloc(t.len + 2);
            if (!m)
                fail_setup("merges", &err);
            snprintf(m, t.len + 2, "%.*s %.*s", (int)k, t.data, (int)(t.len - k), t.data + k);
            merges[n++] = m;
        }
    }
    if (!merges ||
        gguf_writer_add_string_array(w, "tokenizer.ggml.merges", (const char *const *)merges, n, &err) != HEARTH_OK)
        fail_setup("merges", &err);
    for (size_t i = 0; i < n; i++)
        free(merges[i]);
    free(merges);
    void *image = NULL;
    if (gguf_writer_write_memory(w, &image, size, &err) != HEARTH_OK)
        fail_setup("writing the vocabulary", &err);
    gguf_writer_free(w);
    return image;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const char *const files[] = {VOCAB_DIR "/ggml-vocab-llama-spm.gguf", VOCAB_DIR "/ggml-vocab-gpt-2.gguf"};
    FILE *probe = fopen(files[1], "rb");
    if (!probe) {
        fprintf(stderr, "SKIP: %s is absent: the shared test data is not next to this checkout\n", files[1]);
        exit(77);
    }
    fclose(probe);
    hearth_error err = {0};
    for (int i = 0; i < N_VOCABS; i++) {
        fuzz_vocab *fv = &vocabs[i];
        hearth_status st;
        if (fv->pre) {
            size_t size = 0;
            fv->image = strcmp(fv->pre, "gemma4") == 0 ? rewrite_gemma4(vocabs[0].file, vocabs[0].v, &size)
                                                      : rewrite_pre(vocabs[1].file, fv->pre, &size);
            st = gguf_open_memory(fv->image, size, &fv->file, &err);
        } else {
            st = gguf_open(files[i], &fv->file, &err);
        }
        if (st != HEARTH_OK || vocab_load(fv->file, &fv->v, &err) != HEARTH_OK)
            fail_setup(fv->pre ? fv->pre : files[i], &err);
    }
    return 0;
}

/* The pieces of ids joined; each also written into every shorter buffer,
 * which must get a prefix of it and nothing past its end. */
static char *detokenize(const vocab *v, const int32_t *ids, int64_t n, bool special, size_t *len)
{
    size_t cap = 64, at = 0;
    char *out = malloc(cap);
    for (int64_t i = 0; out && i < n; i++) {
        char piece[512];
        size_t piece_len = vocab_token_to_piece(v, ids[i], special, piece, sizeof piece);
        if (piece_len > sizeof piece)
            __builtin_trap(); /* no token of these vocabularies is this long */
        for (size_t cut = 0; cut < piece_len; cut++) {
            char shorter[sizeof piece];
            memset(shorter, 0xA5, piece_len);
            if (vocab_token_to_piece(v, ids[i], special, shorter, cut) != piece_len || memcmp(shorter, piece, cut))
                __builtin_trap();
            for (size_t k = cut; k < piece_len; k++)
                if ((unsigned char)shorter[k] != 0xA5)
                    __builtin_trap(); /* written past the cap */
        }
        if (at + piece_len > cap) {
            while (at + piece_len > cap)
                cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown)
                break;
            out = grown;
        }
        memcpy(out + at, piece, piece_len);
        at += piece_len;
    }
    *len = at;
    return out;
}

static bool has_space_mark(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 3 <= size; i++)
        if (data[i] == 0xE2 && data[i + 1] == 0x96 && data[i + 2] == 0x81)
            return true;
    return false;
}

static void check_round_trip(const vocab *v, const uint8_t *data, size_t size, const int32_t *ids, int64_t n,
                             bool special, bool space_mark)
{
    bool spm = vocab_get_kind(v) == VOCAB_SPM;
    if (spm && special)
        return; /* a space is prefixed after every special token: no simple inverse */
    if (space_mark && has_space_mark(data, size))
        return; /* SentencePiece's own space mark comes back as a space */
    if (special && n > 0 && vocab_adds_bos(v) && ids[0] == vocab_bos(v))
        ids++, n--;
    size_t len = 0;
    char *back = detokenize(v, ids, n, special, &len);
    size_t prefix = spm && size > 0; /* SentencePiece's leading space */
    if (!back || len != size + prefix || (prefix && back[0] != ' ') || memcmp(back + prefix, data, size) != 0)
        __builtin_trap();
    free(back);
}

/* Guarding every place a control token's text is written (the spans
 * vocab_control_spans finds: in order, apart, inside the text, each starting
 * with a control text) leaves no control token to find: the ids are those of
 * the text with special tokens off. */
static void check_guarded(const vocab *v, const uint8_t *data, size_t size, const int32_t *plain, int64_t n)
{
    hearth_error err = {0};
    text_span *spans = NULL;
    size_t n_spans = 0;
    if (vocab_control_spans(v, (const char *)data, size, &spans, &n_spans, &err) != HEARTH_OK)
        return;
    for (size_t i = 0; i < n_spans; i++)
        if (spans[i].len == 0 || spans[i].off + spans[i].len > size ||
            (i > 0 && spans[i].off <= spans[i - 1].off + spans[i - 1].len))
            __builtin_trap();
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (ids && (vocab_tokenize_guarded(v, (const char *)data, size, false, spans, n_spans, ids, (size_t)n + 1,
                                       &err) != n ||
                memcmp(ids, plain, (size_t)n * sizeof *ids) != 0))
        __builtin_trap();
    free(ids);
    free(spans);
}

static void check_vocab(const vocab *v, const uint8_t *data, size_t size, bool special, bool space_mark)
{
    hearth_error err = {0};
    int64_t n = vocab_tokenize(v, (const char *)data, size, special, special, NULL, 0, &err);
    bool utf8 = utf8_first_invalid(data, size) == size;
    if (n < 0) {
        if (vocab_get_kind(v) == VOCAB_SPM || utf8 || err.status != HEARTH_ERR_FORMAT)
            __builtin_trap(); /* refused what it must take */
        return;
    }
    if (vocab_get_kind(v) == VOCAB_BPE && !utf8)
        __builtin_trap(); /* took what it must refuse */
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    int32_t *again = malloc(((size_t)n + 1) * sizeof *again);
    if (!ids || !again) {
        free(ids);
        free(again);
        return;
    }
    if (vocab_tokenize(v, (const char *)data, size, special, special, ids, (size_t)n, &err) != n ||
        vocab_tokenize(v, (const char *)data, size, special, special, again, (size_t)n + 1, &err) != n ||
        memcmp(ids, again, (size_t)n * sizeof *ids) != 0)
        __builtin_trap(); /* the count or the ids changed between calls */
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size(v))
            __builtin_trap();
    if (utf8)
        check_round_trip(v, data, size, ids, n, special, space_mark);
    if (!special)
        check_guarded(v, data, size, ids, n);
    free(ids);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int i = 0; i < N_VOCABS; i++) {
        /* llama-spm, and Gemma 4's, write spaces as U+2581 */
        bool space_mark = i == 0 || (vocabs[i].pre && strcmp(vocabs[i].pre, "gemma4") == 0);
        check_vocab(vocabs[i].v, data, size, false, space_mark);
        check_vocab(vocabs[i].v, data, size, true, space_mark);
    }
    return 0;
}

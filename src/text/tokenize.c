/* Text -> tokens -> text.
 *
 * Tokenizing is two steps, as in llama.cpp: first the text is split around
 * special tokens written in it (user-defined ones always, control ones when
 * parse_special), then each remaining run of text goes through the model's
 * tokenizer. For SentencePiece that is: spaces become U+2581, a space is
 * prefixed after BOS or a special token (if the model asks), the text is cut
 * into characters, and the adjacent pair whose merge is the highest-scoring
 * token is merged, again and again; characters that end up in no token fall
 * back to their bytes' <0xNN> tokens. Byte-level BPE (tokenizer.ggml.model
 * "gpt2") is in bpe.c: pre-tokenizer regexes, then merges by rank; so is
 * Gemma 4's ("gemma4"), the same merging over SentencePiece's texts. */
#include "text/vocab_internal.h"

#include "text/bpe.h"

#include "base/error.h"
#include "base/heap.h"
#include "base/utf8.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- SentencePiece ------------------------------------------------------------ */

typedef struct spm_bigram {
    float score;
    int left, right;
    size_t size;
} spm_bigram;

/* Max-heap order: higher score first, then the leftmost pair. */
static bool bigram_before(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct spm_session {
    const vocab *v;
    merge_symbol *symbols;
    spm_bigram *heap;
    size_t heap_len;
} spm_session;

HEAP_DEFINE(merge_heap, spm_bigram, bigram_before)

static void try_add_bigram(spm_session *s, int left, int right)
{
    if (left < 0 || right < 0)
        return;
    size_t size = s->symbols[left].n + s->symbols[right].n;
    int32_t id = vocab_find(s->v, s->symbols[left].text, size);
    if (id == VOCAB_NO_TOKEN)
        return;
    merge_heap_push(s->heap, &s->heap_len, (spm_bigram){s->v->scores[id], left, right, size});
}

/* Length of the UTF-8 sequence a byte starts; stray continuation bytes count
 * as one character each, as llama.cpp counts them. */
static size_t utf8_sequence_length(unsigned char c)
{
    static const size_t by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high_nibble[c >> 4];
}

static void emit_symbol(const vocab *v, const merge_symbol *sym, token_sink *sink)
{
    int32_t id = vocab_find(v, sym->text, sym->n);
    if (id != VOCAB_NO_TOKEN) {
        sink_push(sink, id);
        return;
    }
    for (size_t j = 0; j < sym->n; j++) {
        int32_t byte_id = v->byte_tokens[(unsigned char)sym->text[j]];
        sink_push(sink, byte_id != VOCAB_NO_TOKEN ? byte_id : v->unk);
    }
}

static bool spm_tokenize(const vocab *v, const char *text, size_t len, token_sink *sink)
{
    if (len == 0)
        return true;
    spm_session s = {.v = v};
    /* Each merge adds at most two pairs to the n - 1 initial ones. */
    s.symbols = malloc(len * sizeof *s.symbols);
    s.heap = malloc(3 * len * sizeof *s.heap);
    if (!s.symbols || !s.heap) {
        free(s.symbols);
        free(s.heap);
        return false;
    }
    int n_symbols = 0;
    for (size_t off = 0; off < len;) {
        size_t n = utf8_sequence_length((unsigned char)text[off]);
        if (n > len - off)
            n = len - off;
        s.symbols[n_symbols] = (merge_symbol){text + off, n, n_symbols - 1, off + n == len ? -1 : n_symbols + 1};
        n_symbols++;
        off += n;
    }
    for (int i = 1; i < n_symbols; i++)
        try_add_bigram(&s, i - 1, i);
    while (s.heap_len > 0) {
        spm_bigram b = merge_heap_pop(s.heap, &s.heap_len);
        merge_symbol *left = &s.symbols[b.left], *right = &s.symbols[b.right];
        /* A pair is stale once either side has merged into something else. */
        if (left->n == 0 || right->n == 0 || left->n + right->n != b.size)
            continue;
        left->n += right->n;
        right->n = 0;
        left->next = right->next;
        if (right->next >= 0)
            s.symbols[right->next].prev = b.left;
        try_add_bigram(&s, left->prev, b.left);
        try_add_bigram(&s, b.left, left->next);
    }
    for (int i = 0; i != -1; i = s.symbols[i].next)
        emit_symbol(v, &s.symbols[i], sink);
    free(s.symbols);
    free(s.heap);
    return true;
}

char *spm_escape_spaces(const char *text, size_t len, bool prefix, size_t *out_len)
{
    if (len > (SIZE_MAX - 4) / 3) /* every byte a space: 3 each, and the prefix */
        return NULL;
    size_t spaces = prefix;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    char *escaped = malloc(len + 2 * spaces + prefix + 1);
    if (!escaped)
        return NULL;
    size_t k = 0;
    if (prefix)
        memcpy(escaped + k, "\xE2\x96\x81", 3), k += 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(escaped + k, "\xE2\x96\x81", 3), k += 3;
        else
            escaped[k++] = text[i];
    }
    *out_len = k;
    return escaped;
}

/* A run of text through SentencePiece: an optional leading space, and every
 * space as U+2581. */
static bool spm_tokenize_fragment(const vocab *v, const char *text, size_t len, bool space_prefix, token_sink *sink)
{
    size_t escaped_len;
    char *escaped = spm_escape_spaces(text, len, space_prefix, &escaped_len);
    if (!escaped)
        return false;
    bool ok = spm_tokenize(v, escaped, escaped_len, sink);
    free(escaped);
    return ok;
}

/* ---- special tokens in text ------------------------------------------------------ */

typedef struct fragment {
    int32_t token; /* VOCAB_NO_TOKEN: raw text [off, off + len) */
    size_t off, len;
} fragment;

typedef struct fragment_list {
    fragment *items;
    size_t n, cap;
} fragment_list;

static bool fragments_push(fragment_list *l, fragment f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fragment *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown)
            return false;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = f;
    return true;
}

static const char *find_bytes(const char *hay, size_t hay_len, const char *needle, size_t needle_len)
{
    if (needle_len == 0 || needle_len > hay_len)
        return NULL;
    for (const char *p = hay; (size_t)(p - hay) <= hay_len - needle_len;) {
        const char *hit = memchr(p, needle[0], hay_len - needle_len + 1 - (size_t)(p - hay));
        if (!hit)
            return NULL;
        if (memcmp(hit, needle, needle_len) == 0)
            return hit;
        p = hit + 1;
    }
    return NULL;
}

/* Splits every raw fragment of `in` around occurrences of token `id`. */
static bool split_on_special(const vocab *v, const char *text, int32_t id, const fragment_list *in, fragment_list *out)
{
    gguf_string tok = v->texts[id];
    uint8_t flags = v->flags[id];
    for (size_t i = 0; i < in->n; i++) {
        fragment f = in->items[i];
        if (f.token != VOCAB_NO_TOKEN) {
            if (!fragments_push(out, f))
                return false;
            continue;
        }
        size_t off = f.off, end = f.off + f.len;
        for (;;) {
            const char *hit = find_bytes(text + off, end - off, tok.data, tok.len);
            if (!hit) {
                if (end > off && !fragments_push(out, (fragment){VOCAB_NO_TOKEN, off, end - off}))
                    return false;
                break;
            }
            size_t match = (size_t)(hit - text), left_len = match - off;
            if (flags & TOKEN_FLAG_LSTRIP)
                while (left_len > 0 && isspace((unsigned char)text[off + left_len - 1]))
                    left_len--;
            if (left_len > 0 && !fragments_push(out, (fragment){VOCAB_NO_TOKEN, off, left_len}))
                return false;
            if (!fragments_push(out, (fragment){id, 0, 0}))
                return false;
            off = match + tok.len;
            if (flags & TOKEN_FLAG_RSTRIP)
                while (off < end && isspace((unsigned char)text[off]))
                    off++;
        }
    }
    return true;
}

static bool partition(const vocab *v, const char *text, size_t len, bool parse_special, fragment_list *result)
{
    fragment_list a = {0}, b = {0};
    bool ok = fragments_push(&a, (fragment){VOCAB_NO_TOKEN, 0, len});
    for (int32_t k = 0; ok && k < v->n_specials; k++) {
        int32_t id = v->specials[k];
        if (!parse_special && (v->flags[id] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN)))
            continue;
        b.n = 0;
        ok = split_on_special(v, text, id, &a, &b);
        fragment_list t = a;
        a = b;
        b = t;
    }
    free(b.items);
    *result = a;
    return ok;
}

int64_t vocab_tokenize(const vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       int32_t *out, size_t cap, hearth_error *err)
{
    /* The pre-tokenizer regexes work on characters: bytes that are not UTF-8
     * have no meaning there (SentencePiece, by contrast, falls back to bytes). */
    if (v->kind == VOCAB_BPE) {
        size_t bad = utf8_first_invalid((const uint8_t *)text, len);
        if (bad < len) {
            error_set(err, HEARTH_ERR_FORMAT, "tokenizer: text is not valid UTF-8 at byte %zu of %zu", bad, len);
            return -1;
        }
    }
    token_sink sink = {out, cap, 0};
    fragment_list frags = {0};
    if (len > 0 && !partition(v, text, len, parse_special, &frags)) {
        free(frags.items);
        error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        return -1;
    }
    bool prev_special = true; /* the text start counts as after a special token */
    if (add_special && v->add_bos)
        sink_push(&sink, v->bos);
    hearth_status st = HEARTH_OK;
    for (size_t i = 0; st == HEARTH_OK && i < frags.n; i++) {
        fragment f = frags.items[i];
        if (f.token != VOCAB_NO_TOKEN) {
            sink_push(&sink, f.token);
            prev_special = true;
            continue;
        }
        if (v->kind == VOCAB_BPE)
            st = bpe_tokenize_fragment(v, text + f.off, f.len, &sink, err);
        else if (!spm_tokenize_fragment(v, text + f.off, f.len, v->add_space_prefix && prev_special, &sink))
            st = error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        prev_special = false;
    }
    if (add_special && v->add_eos)
        sink_push(&sink, v->eos);
    free(frags.items);
    if (st != HEARTH_OK)
        return -1;
    return (int64_t)sink.n;
}

/* ---- tokens -> text ------------------------------------------------------------ */

static size_t copy_out(char *out, size_t cap, size_t at, const char *src, size_t n)
{
    if (at < cap)
        memcpy(out + at, src, n < cap - at ? n : cap - at);
    return at + n;
}

/* GPT-2's byte-level alphabet gives every byte a visible character: the
 * printable Latin-1 bytes stand for themselves, and the other 68 (controls,
 * space, DEL, no-break space, soft hyphen) were moved, in byte order, to
 * U+0100 onwards. */
static bool gpt2_byte_is_printable(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The byte a character of that alphabet stands for, or -1. */
static int gpt2_byte_of_char(uint32_t cp)
{
    if (cp < 0x100)
        return gpt2_byte_is_printable(cp) ? (int)cp : -1;
    uint32_t moved = cp - 0x100; /* the how-manyth non-printable byte */
    for (uint32_t b = 0; b < 256; b++)
        if (!gpt2_byte_is_printable(b) && moved-- == 0)
            return (int)b;
    return -1;
}

/* A character outside the alphabet is copied as it is (llama.cpp writes a
 * marker instead; a best-effort piece is more useful to a reader). */
static size_t bpe_decode_bytes(gguf_string text, char *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *s = (const uint8_t *)text.data;
    for (uint64_t i = 0; i < text.len;) {
        uint32_t cp = 0;
        size_t len = utf8_decode(s + i, (size_t)(text.len - i), &cp);
        int byte = len ? gpt2_byte_of_char(cp) : -1;
        if (len == 0)
            len = 1;
        if (byte >= 0) {
            char c = (char)byte;
            n = copy_out(out, cap, n, &c, 1);
        } else {
            n = copy_out(out, cap, n, text.data + i, len);
        }
        i += len;
    }
    return n;
}

size_t vocab_token_to_piece(const vocab *v, int32_t id, bool special, char *out, size_t cap)
{
    if (id < 0 || id >= v->n_tokens)
        return 0;
    uint8_t flags = v->flags[id];
    gguf_string text = v->texts[id];
    if (flags & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN))
        return special ? copy_out(out, cap, 0, text.data, text.len) : 0;
    if (flags & TOKEN_FLAG_USER_DEFINED)
        return copy_out(out, cap, 0, text.data, text.len);
    /* Byte-level BPE: byte tokens, like unused ones, have no text here
     * (there are none to validate: the byte alphabet spells every byte). */
    if (!v->spm_text)
        return flags & TOKEN_FLAG_NORMAL ? bpe_decode_bytes(text, out, cap) : 0;
    if (flags & TOKEN_FLAG_BYTE) {
        unsigned value = 0;
        for (int k = 3; k < 5; k++) { /* validated at load: <0xHH> */
            char c = text.data[k];
            value = value * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        char byte = (char)value;
        return copy_out(out, cap, 0, &byte, 1);
    }
    if (!(flags & TOKEN_FLAG_NORMAL))
        return 0;
    /* U+2581 back to a space (SentencePiece, and BPE over its texts). */
    size_t n = 0;
    for (uint64_t i = 0; i < text.len;) {
        if (i + 3 <= text.len && memcmp(text.data + i, "\xE2\x96\x81", 3) == 0) {
            n = copy_out(out, cap, n, " ", 1);
            i += 3;
        } else {
            n = copy_out(out, cap, n, text.data + i, 1);
            i++;
        }
    }
    return n;
}

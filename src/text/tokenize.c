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

/* Which specials a text may contain: user-defined ones always; control and
 * unknown ones when parse_special, and then not where they overlap a guarded
 * span (text that a user wrote, to be read as text). */
typedef struct special_filter {
    bool parse_special;
    const text_span *guarded; /* sorted, disjoint */
    size_t n_guarded;
} special_filter;

static bool overlaps_guarded(const special_filter *f, size_t off, size_t len)
{
    size_t lo = 0, hi = f->n_guarded; /* the first span that ends after off */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->guarded[mid].off + f->guarded[mid].len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->n_guarded && f->guarded[lo].off < off + len;
}

static bool special_allowed(const vocab *v, const special_filter *f, int32_t rank, size_t off, size_t len)
{
    if (!(v->flags[v->specials[rank]] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN)))
        return true;
    return f->parse_special && !(f->n_guarded && overlaps_guarded(f, off, len));
}

static int32_t trie_child(const vocab *v, int32_t node, uint8_t byte)
{
    for (node = v->special_trie[node].child; node >= 0 && v->special_trie[node].byte != byte;)
        node = v->special_trie[node].sibling;
    return node;
}

/* The best-ranked allowed special whose text starts at `at` and is shorter
 * than `below` bytes: its length (0: none), and its rank in *rank. Along one
 * path of the trie a deeper special is a longer one, so the deepest ranks
 * best. */
static size_t special_at(const vocab *v, const special_filter *f, const char *text, size_t len, size_t at,
                         size_t below, int32_t *rank)
{
    size_t best = 0;
    int32_t node = v->special_root[(uint8_t)text[at]];
    for (size_t depth = 1; node >= 0 && depth < below; depth++) {
        const special_node *n = &v->special_trie[node];
        if (n->rank >= 0 && special_allowed(v, f, n->rank, at, depth)) {
            best = depth;
            *rank = n->rank;
        }
        if (at + depth >= len)
            break;
        node = trie_child(v, node, (uint8_t)text[at + depth]);
    }
    return best;
}

typedef struct special_hit {
    int32_t rank;
    size_t at, len;
} special_hit;

static bool hit_before(const special_hit *a, const special_hit *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->at < b->at);
}

HEAP_DEFINE(hits, special_hit, hit_before)

static int compare_hit_order(const void *a, const void *b)
{
    const special_hit *x = a, *y = b;
    return hit_before(x, y) ? -1 : hit_before(y, x);
}

static int compare_hit_position(const void *a, const void *b)
{
    const special_hit *x = a, *y = b;
    return (x->at > y->at) - (x->at < y->at);
}

/* The raw runs of [from, to): the bytes no special took. */
static bool push_raw_runs(fragment_list *l, const uint8_t *taken, size_t from, size_t to)
{
    for (size_t p = from; p < to;) {
        while (p < to && taken[p])
            p++;
        size_t start = p;
        while (p < to && !taken[p])
            p++;
        if (p > start && !fragments_push(l, (fragment){VOCAB_NO_TOKEN, start, p - start}))
            return false;
    }
    return true;
}

/* Splits the text into specials and raw runs as llama.cpp does: specials in
 * rank order (longest text first, then by id), each taking, leftmost first,
 * its occurrences that lie wholly in text no special took yet (with the
 * whitespace that LSTRIP/RSTRIP specials eat). Instead of a scan of the text
 * per special, which is quadratic on Gemma 3's 6,414 specials and a text of
 * '<'s, a heap holds for each position the best-ranked special starting
 * there and yields them in (rank, position) order: the order that loop meets
 * them. One that overlaps taken text gives way to the next shorter special
 * at its position, which waits in the heap for its own rank. */
static bool partition(const vocab *v, const char *text, size_t len, const special_filter *f, fragment_list *result)
{
    *result = (fragment_list){0};
    special_hit *hits = NULL, *kept = NULL;
    size_t n_hits = 0, cap = 0, n_kept = 0;
    uint8_t *taken = NULL;
    bool ok = true;
    for (size_t at = 0; ok && at < len; at++) {
        if (v->special_root[(uint8_t)text[at]] < 0)
            continue;
        special_hit h = {.at = at};
        if (!(h.len = special_at(v, f, text, len, at, SIZE_MAX, &h.rank)))
            continue;
        if (n_hits == cap) {
            cap = cap ? cap * 2 : 64;
            special_hit *grown = realloc(hits, cap * sizeof *grown);
            ok = grown != NULL;
            if (!ok)
                break;
            hits = grown;
        }
        hits[n_hits++] = h;
    }
    if (ok && n_hits == 0) {
        free(hits);
        return fragments_push(result, (fragment){VOCAB_NO_TOKEN, 0, len});
    }
    ok = ok && (kept = malloc(n_hits * sizeof *kept)) != NULL && (taken = calloc(len, 1)) != NULL;
    if (ok) {
        qsort(hits, n_hits, sizeof *hits, compare_hit_order); /* a sorted array is a heap */
        while (n_hits > 0) {
            special_hit h = hits_pop(hits, &n_hits);
            if (taken[h.at])
                continue; /* so does every shorter special here */
            size_t free_run = 0;
            while (free_run < h.len && !taken[h.at + free_run])
                free_run++;
            if (free_run < h.len) {
                special_hit shorter = {.at = h.at};
                if ((shorter.len = special_at(v, f, text, len, h.at, h.len, &shorter.rank)))
                    hits_push(hits, &n_hits, shorter);
                continue;
            }
            memset(taken + h.at, 1, h.len);
            kept[n_kept++] = h;
            uint8_t flags = v->flags[v->specials[h.rank]];
            if (flags & TOKEN_FLAG_LSTRIP)
                for (size_t p = h.at; p > 0 && !taken[p - 1] && isspace((unsigned char)text[p - 1]); p--)
                    taken[p - 1] = 1;
            if (flags & TOKEN_FLAG_RSTRIP)
                for (size_t p = h.at + h.len; p < len && !taken[p] && isspace((unsigned char)text[p]); p++)
                    taken[p] = 1;
        }
        qsort(kept, n_kept, sizeof *kept, compare_hit_position);
        size_t at = 0;
        for (size_t i = 0; ok && i < n_kept; i++) {
            ok = push_raw_runs(result, taken, at, kept[i].at) &&
                 fragments_push(result, (fragment){v->specials[kept[i].rank], 0, 0});
            at = kept[i].at + kept[i].len;
        }
        ok = ok && push_raw_runs(result, taken, at, len);
    }
    free(hits);
    free(kept);
    free(taken);
    return ok;
}

hearth_status vocab_control_spans(const vocab *v, const char *text, size_t len, text_span **out, size_t *n_spans,
                                  hearth_error *err)
{
    text_span *spans = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *n_spans = 0;
    for (size_t at = 0; at < len; at++) {
        size_t found = 0;
        int32_t node = v->special_root[(uint8_t)text[at]];
        for (size_t depth = 1; node >= 0; depth++) {
            int32_t rank = v->special_trie[node].rank;
            if (rank >= 0 && (v->flags[v->specials[rank]] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_UNKNOWN)))
                found = depth;
            if (at + depth >= len)
                break;
            node = trie_child(v, node, (uint8_t)text[at + depth]);
        }
        if (!found)
            continue;
        size_t end = at + found;
        if (n > 0 && spans[n - 1].off + spans[n - 1].len >= at) { /* overlapping or touching: one span */
            if (end > spans[n - 1].off + spans[n - 1].len)
                spans[n - 1].len = end - spans[n - 1].off;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            text_span *grown = realloc(spans, cap * sizeof *grown);
            if (!grown) {
                free(spans);
                return error_set(err, HEARTH_ERR_NOMEM, "tokenizer: out of memory");
            }
            spans = grown;
        }
        spans[n++] = (text_span){at, found};
    }
    *out = spans;
    *n_spans = n;
    return HEARTH_OK;
}

static int64_t tokenize(const vocab *v, const char *text, size_t len, bool add_special, const special_filter *filter,
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
    if (len > 0 && !partition(v, text, len, filter, &frags)) {
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

int64_t vocab_tokenize(const vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       int32_t *out, size_t cap, hearth_error *err)
{
    special_filter filter = {.parse_special = parse_special};
    return tokenize(v, text, len, add_special, &filter, out, cap, err);
}

int64_t vocab_tokenize_guarded(const vocab *v, const char *text, size_t len, bool add_special,
                               const text_span *guarded, size_t n_guarded, int32_t *out, size_t cap,
                               hearth_error *err)
{
    special_filter filter = {.parse_special = true, .guarded = guarded, .n_guarded = n_guarded};
    return tokenize(v, text, len, add_special, &filter, out, cap, err);
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

/* Vocabulary loading and lookup. */
#include "text/vocab_internal.h"

#include "text/bpe.h"

#include "base/error.h"
#include "base/hash.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Texts that mark the end of a generation in the vocabularies we know; such a
 * token is treated as a control token whatever its stored type (as llama.cpp
 * does, so "<end_of_turn>" typed in a prompt stays text unless asked). */
static const char *const end_of_generation_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
};
/* The same list's preference for "the" end-of-turn token, when the file names none. */
static const char *const end_of_turn_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "<end_of_utterance>",
};

/* ---- text -> id ------------------------------------------------------------- */

static bool text_equals(gguf_string s, const char *text, size_t len)
{
    return s.len == len && memcmp(s.data, text, len) == 0;
}

int32_t vocab_find(const vocab *v, const char *text, size_t len)
{
    uint64_t i = hash_bytes(text, len) & v->index_mask;
    for (; v->index[i] != VOCAB_NO_TOKEN; i = (i + 1) & v->index_mask)
        if (text_equals(v->texts[v->index[i]], text, len))
            return v->index[i];
    return VOCAB_NO_TOKEN;
}

/* Later ids win over earlier ones with the same text, as in llama.cpp. */
static void index_insert(vocab *v, int32_t id)
{
    gguf_string s = v->texts[id];
    uint64_t i = hash_bytes(s.data, s.len) & v->index_mask;
    for (; v->index[i] != VOCAB_NO_TOKEN; i = (i + 1) & v->index_mask) {
        if (text_equals(v->texts[v->index[i]], s.data, s.len)) {
            v->index[i] = id;
            return;
        }
    }
    v->index[i] = id;
}

/* ---- loading ------------------------------------------------------------------ */

static hearth_status load_arrays(vocab *v, const gguf_file *f, hearth_error *err)
{
    const gguf_array *tokens = gguf_get_array(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->elem_type != GGUF_TYPE_STRING)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.tokens: missing or not an array of strings");
    if (tokens->count == 0 || tokens->count > INT32_MAX / 4)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.tokens: %llu tokens (must be 1..%d)",
                         (unsigned long long)tokens->count, INT32_MAX / 4);
    v->n_tokens = (int32_t)tokens->count;
    v->texts = tokens->strings;

    const gguf_array *scores = gguf_get_array(f, "tokenizer.ggml.scores");
    const gguf_array *types = gguf_get_array(f, "tokenizer.ggml.token_type");
    if (scores && (scores->elem_type != GGUF_TYPE_FLOAT32 || scores->count != tokens->count))
        return error_set(err, HEARTH_ERR_FORMAT,
                         "key tokenizer.ggml.scores: %llu %s values for %d tokens (must be FLOAT32, one per token)",
                         (unsigned long long)scores->count, gguf_value_type_name(scores->elem_type), v->n_tokens);
    if (types && (types->elem_type != GGUF_TYPE_INT32 || types->count != tokens->count))
        return error_set(err, HEARTH_ERR_FORMAT,
                         "key tokenizer.ggml.token_type: %llu %s values for %d tokens (must be INT32, one per token)",
                         (unsigned long long)types->count, gguf_value_type_name(types->elem_type), v->n_tokens);

    size_t n = (size_t)v->n_tokens;
    v->scores = calloc(n, sizeof *v->scores);
    v->types = calloc(n, sizeof *v->types);
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n)
        cap <<= 1;
    v->index = malloc(cap * sizeof *v->index);
    if (!v->scores || !v->types || !v->index)
        return error_set(err, HEARTH_ERR_NOMEM, "vocabulary: out of memory for %d tokens", v->n_tokens);
    v->index_mask = cap - 1;
    memset(v->index, 0xFF, cap * sizeof *v->index); /* all VOCAB_NO_TOKEN */

    for (int32_t id = 0; id < v->n_tokens; id++) {
        v->scores[id] = scores ? (float)gguf_array_get_float(scores, (uint64_t)id) : 0.0f;
        int64_t t = types ? gguf_array_get_int(types, (uint64_t)id) : TOKEN_TYPE_NORMAL;
        if (t < TOKEN_TYPE_UNDEFINED || t > TOKEN_TYPE_BYTE)
            return error_set(err, HEARTH_ERR_FORMAT, "token %d: unknown token type %lld", id, (long long)t);
        v->types[id] = (uint8_t)t;
        index_insert(v, id);
    }
    return HEARTH_OK;
}

/* Byte tokens must read exactly <0xHH>; each byte's token is found by that
 * text, for SentencePiece falling back to the single character (as
 * llama.cpp does; for Gemma 4's BPE it looks up <0xHH> only). */
static hearth_status load_byte_tokens(vocab *v, bool char_fallback, hearth_error *err)
{
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (v->types[id] != TOKEN_TYPE_BYTE)
            continue;
        gguf_string s = v->texts[id];
        unsigned hi, lo;
        char tail;
        bool ok = s.len == 6 && memcmp(s.data, "<0x", 3) == 0 && s.data[5] == '>';
        char hex[3] = {ok ? s.data[3] : 0, ok ? s.data[4] : 0, 0};
        ok = ok && sscanf(hex, "%1x%1x%c", &hi, &lo, &tail) == 2;
        if (!ok)
            return error_set(err, HEARTH_ERR_FORMAT, "token %d: byte token text '%.*s' is not <0xNN>", id,
                             (int)(s.len > 32 ? 32 : s.len), s.data);
    }
    for (int b = 0; b < 256; b++) {
        char text[8];
        snprintf(text, sizeof text, "<0x%02X>", b);
        int32_t id = vocab_find(v, text, 6);
        if (id == VOCAB_NO_TOKEN && char_fallback) {
            char c = (char)b;
            id = vocab_find(v, &c, 1);
        }
        v->byte_tokens[b] = id;
    }
    return HEARTH_OK;
}

/* A special id from the file must name a token; a default that does not
 * fit this vocabulary is dropped. */
static hearth_status load_special_id(vocab *v, const gguf_file *f, const char *key, int32_t *id, hearth_error *err)
{
    if (*id >= v->n_tokens)
        *id = VOCAB_NO_TOKEN;
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return HEARTH_OK;
    uint64_t value;
    if (!gguf_get_uint(f, key, &value))
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: type %s (must be an unsigned integer)", key,
                         gguf_value_type_name(kv->value.type));
    if (value >= (uint64_t)v->n_tokens)
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: token id %llu is past the vocabulary of %d tokens", key,
                         (unsigned long long)value, v->n_tokens);
    *id = (int32_t)value;
    return HEARTH_OK;
}

static hearth_status load_flag(const gguf_file *f, const char *key, bool *flag, hearth_error *err)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (kv && !gguf_get_bool(f, key, flag))
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: type %s (must be BOOL)", key,
                         gguf_value_type_name(kv->value.type));
    return HEARTH_OK;
}

static bool in_list(gguf_string s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (text_equals(s, list[i], strlen(list[i])))
            return true;
    return false;
}

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static void mark_end_of_generation(vocab *v)
{
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (in_list(v->texts[id], end_of_generation_texts, COUNT_OF(end_of_generation_texts))) {
            v->flags[id] |= TOKEN_FLAG_EOG | TOKEN_FLAG_CONTROL;
            if (v->eot == VOCAB_NO_TOKEN && in_list(v->texts[id], end_of_turn_texts, COUNT_OF(end_of_turn_texts)))
                v->eot = id;
        }
    }
    if (v->eos != VOCAB_NO_TOKEN)
        v->flags[v->eos] |= TOKEN_FLAG_EOG;
    if (v->eot != VOCAB_NO_TOKEN)
        v->flags[v->eot] |= TOKEN_FLAG_EOG;
    /* gpt-oss's harmony format closes every message with <|end|>, the
     * reasoning too; the turn ends at <|return|> (an answer) or <|call|> (a
     * tool call). llama.cpp keys this on the presence of those two tokens,
     * as here; without it a chat would stop after the model's analysis. */
    int32_t end = VOCAB_NO_TOKEN, ret = VOCAB_NO_TOKEN, call = VOCAB_NO_TOKEN;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (!(v->flags[id] & TOKEN_FLAG_EOG))
            continue;
        if (text_equals(v->texts[id], "<|end|>", 7))
            end = id;
        else if (text_equals(v->texts[id], "<|return|>", 10))
            ret = id;
        else if (text_equals(v->texts[id], "<|call|>", 8))
            call = id;
    }
    if (end != VOCAB_NO_TOKEN && ret != VOCAB_NO_TOKEN && call != VOCAB_NO_TOKEN) {
        v->flags[end] &= (uint8_t)~TOKEN_FLAG_EOG;
        if (v->eot == end)
            v->eot = ret;
        if (v->eos == end)
            v->eos = ret;
    }
}

/* Phi-3's special tokens swallow the whitespace after them when matched in
 * text, except these three; llama.cpp keys this on the model's name. */
static void apply_phi3_strip(vocab *v, const gguf_file *f)
{
    const gguf_string *name = gguf_get_string(f, "general.name");
    if (!name)
        return;
    char lower[256];
    size_t n = name->len < sizeof lower - 1 ? (size_t)name->len : sizeof lower - 1;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)tolower((unsigned char)name->data[i]);
    lower[n] = '\0';
    if (!strstr(lower, "phi-3") && !strstr(lower, "phi3"))
        return;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (int32_t id = 0; id < v->n_tokens; id++) {
        bool special = v->flags[id] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_USER_DEFINED | TOKEN_FLAG_UNKNOWN);
        if ((special || text_equals(v->texts[id], "</s>", 4)) && !in_list(v->texts[id], keep, COUNT_OF(keep)))
            v->flags[id] |= TOKEN_FLAG_RSTRIP;
    }
}

/* Control, user-defined and unknown tokens are matched in text before the
 * tokenizer runs; longest first, ties by id, so the order is reproducible. */
typedef struct special_entry {
    uint64_t len;
    int32_t id;
} special_entry;

static int compare_special(const void *a, const void *b)
{
    const special_entry *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool is_special(const vocab *v, int32_t id)
{
    return (v->flags[id] & (TOKEN_FLAG_CONTROL | TOKEN_FLAG_USER_DEFINED | TOKEN_FLAG_UNKNOWN)) && v->texts[id].len;
}

/* Inserts the specials in rank order, so a node keeps the best-ranked of
 * several specials with the same text (the later ones never match). */
static hearth_status build_special_trie(vocab *v, uint64_t text_bytes, hearth_error *err)
{
    for (int b = 0; b < 256; b++)
        v->special_root[b] = -1;
    if (text_bytes >= INT32_MAX)
        return error_set(err, HEARTH_ERR_FORMAT, "vocabulary: the special tokens' texts are %llu bytes in all",
                         (unsigned long long)text_bytes);
    v->special_trie = malloc(((size_t)text_bytes + 1) * sizeof *v->special_trie);
    if (!v->special_trie)
        return error_set(err, HEARTH_ERR_NOMEM, "vocabulary: out of memory");
    int32_t n_nodes = 0;
    for (int32_t rank = 0; rank < v->n_specials; rank++) {
        gguf_string text = v->texts[v->specials[rank]];
        int32_t *link = &v->special_root[(uint8_t)text.data[0]], node = -1;
        for (size_t i = 0; i < text.len; i++) {
            uint8_t byte = (uint8_t)text.data[i];
            node = *link;
            while (node >= 0 && v->special_trie[node].byte != byte)
                node = v->special_trie[node].sibling;
            if (node < 0) {
                node = n_nodes++;
                v->special_trie[node] = (special_node){.child = -1, .sibling = *link, .rank = -1, .byte = byte};
                *link = node;
            }
            link = &v->special_trie[node].child;
        }
        if (v->special_trie[node].rank < 0)
            v->special_trie[node].rank = rank;
    }
    return HEARTH_OK;
}

static hearth_status build_special_list(vocab *v, hearth_error *err)
{
    int32_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++)
        n += is_special(v, id);
    special_entry *entries = malloc(((size_t)n + 1) * sizeof *entries);
    v->specials = malloc(((size_t)n + 1) * sizeof *v->specials);
    if (!entries || !v->specials) {
        free(entries);
        return error_set(err, HEARTH_ERR_NOMEM, "vocabulary: out of memory");
    }
    n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++)
        if (is_special(v, id))
            entries[n++] = (special_entry){v->texts[id].len, id};
    qsort(entries, (size_t)n, sizeof *entries, compare_special);
    uint64_t text_bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        v->specials[i] = entries[i].id;
        text_bytes += entries[i].len;
    }
    v->n_specials = n;
    free(entries);
    return build_special_trie(v, text_bytes, err);
}

static uint8_t flags_of_type(uint8_t type)
{
    switch (type) {
    case TOKEN_TYPE_NORMAL: return TOKEN_FLAG_NORMAL;
    case TOKEN_TYPE_UNKNOWN: return TOKEN_FLAG_UNKNOWN;
    case TOKEN_TYPE_CONTROL: return TOKEN_FLAG_CONTROL;
    case TOKEN_TYPE_USER_DEFINED: return TOKEN_FLAG_USER_DEFINED;
    case TOKEN_TYPE_BYTE: return TOKEN_FLAG_BYTE;
    default: return 0; /* undefined and unused tokens: never emitted as text */
    }
}

hearth_status vocab_load(const gguf_file *f, vocab **out, hearth_error *err)
{
    *out = NULL;
    const gguf_string *model = gguf_get_string(f, "tokenizer.ggml.model");
    if (!model)
        return error_set(err, HEARTH_ERR_FORMAT, "key tokenizer.ggml.model: missing (the file has no tokenizer)");
    /* "gemma4" is BPE over SentencePiece-style texts, its pre-tokenizer
     * fixed (bpe.c); llama.cpp reads no default special ids for it. */
    bool spm = gguf_string_equals(model, "llama"), gemma4 = gguf_string_equals(model, "gemma4");
    bool bpe = gemma4 || gguf_string_equals(model, "gpt2");
    if (!spm && !bpe)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "key tokenizer.ggml.model: tokenizer '%.*s' is not supported yet",
                         (int)(model->len > 64 ? 64 : model->len), model->data);

    vocab *v = calloc(1, sizeof *v);
    if (!v)
        return error_set(err, HEARTH_ERR_NOMEM, "vocabulary: out of memory");
    /* Defaults as llama.cpp sets them for each kind; the file may override. */
    if (spm) {
        v->kind = VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_bos = true, v->add_space_prefix = true;
    } else {
        v->kind = VOCAB_BPE;
        v->bos = gemma4 ? VOCAB_NO_TOKEN : 11, v->eos = gemma4 ? VOCAB_NO_TOKEN : 11, v->unk = VOCAB_NO_TOKEN;
        v->add_bos = false, v->add_space_prefix = false;
    }
    v->eot = VOCAB_NO_TOKEN, v->pad = VOCAB_NO_TOKEN, v->add_eos = false;
    for (int b = 0; b < 256; b++)
        v->byte_tokens[b] = VOCAB_NO_TOKEN;

    hearth_status st = load_arrays(v, f, err);
    /* <0xNN> byte tokens are SentencePiece's fallback, and Gemma 4's;
     * byte-level BPE spells every byte as a character of its own alphabet
     * instead, and merges by rank. */
    if (st == HEARTH_OK && bpe)
        st = bpe_load(f, gemma4 ? "gemma4" : NULL, &v->bpe, err);
    if (st == HEARTH_OK) {
        v->spm_text = spm || bpe_spm_text(v->bpe);
        if (v->spm_text)
            st = load_byte_tokens(v, spm, err);
    }
    if (st == HEARTH_OK && !spm)
        v->add_bos = bpe_adds_bos_by_default(v->bpe);
    static const struct {
        const char *key;
        size_t offset;
    } special_keys[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(vocab, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(vocab, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(vocab, eot)},
        {"tokenizer.ggml.unknown_token_id", offsetof(vocab, unk)},
        {"tokenizer.ggml.padding_token_id", offsetof(vocab, pad)},
    };
    for (size_t i = 0; st == HEARTH_OK && i < COUNT_OF(special_keys); i++)
        st = load_special_id(v, f, special_keys[i].key, (int32_t *)((char *)v + special_keys[i].offset), err);
    if (st == HEARTH_OK)
        st = load_flag(f, "tokenizer.ggml.add_bos_token", &v->add_bos, err);
    if (st == HEARTH_OK && !spm && bpe_forces_bos(v->bpe))
        v->add_bos = true;
    if (st == HEARTH_OK)
        st = load_flag(f, "tokenizer.ggml.add_eos_token", &v->add_eos, err);
    if (st == HEARTH_OK)
        st = load_flag(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err);
    if (st == HEARTH_OK && v->add_bos && v->bos == VOCAB_NO_TOKEN)
        st = error_set(err, HEARTH_ERR_FORMAT,
                       "vocabulary: adds BOS%s but has no BOS token (key tokenizer.ggml.bos_token_id)",
                       gemma4 ? " (as Gemma 4's always does)" : "");
    if (st == HEARTH_OK && v->add_eos && v->eos == VOCAB_NO_TOKEN)
        st = error_set(err, HEARTH_ERR_FORMAT,
                       "vocabulary: adds EOS but has no EOS token (key tokenizer.ggml.eos_token_id)");
    if (st == HEARTH_OK) {
        v->flags = calloc((size_t)v->n_tokens, sizeof *v->flags);
        if (!v->flags)
            st = error_set(err, HEARTH_ERR_NOMEM, "vocabulary: out of memory");
    }
    if (st == HEARTH_OK) {
        for (int32_t id = 0; id < v->n_tokens; id++)
            v->flags[id] = flags_of_type(v->types[id]);
        mark_end_of_generation(v);
        apply_phi3_strip(v, f);
        st = build_special_list(v, err);
    }
    if (st != HEARTH_OK) {
        vocab_free(v);
        return st;
    }
    *out = v;
    return HEARTH_OK;
}

void vocab_free(vocab *v)
{
    if (!v)
        return;
    free(v->scores);
    free(v->types);
    free(v->flags);
    free(v->index);
    free(v->specials);
    free(v->special_trie);
    bpe_free(v->bpe);
    free(v);
}

int32_t vocab_size(const vocab *v) { return v->n_tokens; }
vocab_kind vocab_get_kind(const vocab *v) { return v->kind; }
int32_t vocab_bos(const vocab *v) { return v->bos; }
int32_t vocab_eos(const vocab *v) { return v->eos; }
int32_t vocab_eot(const vocab *v) { return v->eot; }
bool vocab_adds_bos(const vocab *v) { return v->add_bos; }
bool vocab_adds_eos(const vocab *v) { return v->add_eos; }

bool vocab_is_end_of_generation(const vocab *v, int32_t id)
{
    return id >= 0 && id < v->n_tokens && (v->flags[id] & TOKEN_FLAG_EOG);
}

gguf_string vocab_token_text(const vocab *v, int32_t id)
{
    return v->texts[id];
}

token_type vocab_token_type(const vocab *v, int32_t id)
{
    return (token_type)v->types[id];
}

/* The vocabulary's private state, shared by the text/ files only. */
#ifndef HEARTH_TEXT_VOCAB_INTERNAL_H
#define HEARTH_TEXT_VOCAB_INTERNAL_H

#include "text/vocab.h"

/* Per-token behaviour, derived from the stored type and from the text. */
enum {
    TOKEN_FLAG_NORMAL = 1 << 0,
    TOKEN_FLAG_UNKNOWN = 1 << 1,
    TOKEN_FLAG_CONTROL = 1 << 2,
    TOKEN_FLAG_USER_DEFINED = 1 << 3,
    TOKEN_FLAG_BYTE = 1 << 4,
    TOKEN_FLAG_EOG = 1 << 5,    /* ends a generation */
    TOKEN_FLAG_LSTRIP = 1 << 6, /* when matched in text, eats the whitespace before it */
    TOKEN_FLAG_RSTRIP = 1 << 7, /* ... and after it */
};

struct bpe_tokenizer;

/* A trie over the special tokens' texts, so that finding the specials
 * written in a text is one walk per byte rather than one scan of the text
 * per special (Gemma 3 has 6,414 of them). */
typedef struct special_node {
    int32_t child;   /* first child, -1 for none */
    int32_t sibling; /* next child of the same parent, -1 for none */
    int32_t rank;    /* index in specials of the first special whose text ends here, -1 for none */
    uint8_t byte;
} special_node;

struct vocab {
    vocab_kind kind;
    int32_t n_tokens;
    const gguf_string *texts; /* in the GGUF map */
    float *scores;
    uint8_t *types;  /* token_type as stored */
    uint8_t *flags;  /* TOKEN_FLAG_* */
    int32_t *index;  /* open-addressing text -> id table, VOCAB_NO_TOKEN = empty */
    uint64_t index_mask;
    int32_t byte_tokens[256];
    int32_t *specials; /* control, user-defined, unknown: longest text first */
    int32_t n_specials;
    special_node *special_trie;
    int32_t special_root[256]; /* the trie's node for each first byte, -1 for none */
    int32_t bos, eos, eot, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    /* Token texts are SentencePiece's: U+2581 for a space, <0xNN> byte
     * tokens (validated, in byte_tokens). True for VOCAB_SPM and for BPE
     * over such texts (Gemma 4), false for byte-level BPE. */
    bool spm_text;
    struct bpe_tokenizer *bpe; /* VOCAB_BPE only: merges and pre-tokenizer */
};

/* Where tokenizers put ids: up to cap are stored, all are counted, so the
 * caller learns how large a buffer the text needs. */
typedef struct token_sink {
    int32_t *out;
    size_t cap;
    size_t n; /* tokens produced, possibly more than cap */
} token_sink;

static inline void sink_push(token_sink *s, int32_t id)
{
    if (s->n < s->cap)
        s->out[s->n] = id;
    s->n++;
}

/* SentencePiece's view of text: every space as U+2581 (3 bytes), and one
 * more in front if prefix. Returns a malloc'd copy of *out_len bytes, or
 * NULL if out of memory. */
char *spm_escape_spaces(const char *text, size_t len, bool prefix, size_t *out_len);

/* A piece of text while a tokenizer merges: a doubly linked list over the
 * pre-token's symbols (SentencePiece's and byte-level BPE's alike). */
typedef struct merge_symbol {
    const char *text;
    size_t n; /* 0 once merged into its left neighbour */
    int prev, next;
} merge_symbol;

#endif

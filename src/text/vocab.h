/* The vocabulary of a model, read from its GGUF metadata (tokenizer.ggml.*),
 * and the tokenizers over it.
 *
 * Token texts stay in the GGUF map (the file must outlive the vocab). Loading
 * validates what a hostile file could get wrong: array lengths that disagree,
 * special ids out of range, malformed <0xNN> byte tokens. Behaviour follows
 * llama.cpp's, which is the reference the tests compare to. */
#ifndef HEARTH_TEXT_VOCAB_H
#define HEARTH_TEXT_VOCAB_H

#include "gguf/gguf.h"
#include "text/text_span.h"
#include "hearth.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VOCAB_NO_TOKEN (-1)

/* tokenizer.ggml.token_type values. */
typedef enum token_type {
    TOKEN_TYPE_UNDEFINED = 0,
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
} token_type;

typedef enum vocab_kind {
    VOCAB_SPM, /* tokenizer.ggml.model = "llama": SentencePiece with byte fallback */
    VOCAB_BPE, /* "gpt2": byte-level BPE (GPT-2, Llama 3, Qwen, ...), pre-tokenizer per tokenizer.ggml.pre;
                * "gemma4": BPE over SentencePiece-style texts (U+2581, <0xNN> byte tokens) */
} vocab_kind;

typedef struct vocab vocab;

hearth_status vocab_load(const gguf_file *file, vocab **out, hearth_error *err);
void vocab_free(vocab *v);

int32_t vocab_size(const vocab *v);
vocab_kind vocab_get_kind(const vocab *v);
int32_t vocab_bos(const vocab *v);
int32_t vocab_eos(const vocab *v);
int32_t vocab_eot(const vocab *v); /* end of turn, VOCAB_NO_TOKEN if none */
bool vocab_adds_bos(const vocab *v);
bool vocab_adds_eos(const vocab *v);
/* True for tokens that end generation (EOS, EOT and their kin). */
bool vocab_is_end_of_generation(const vocab *v, int32_t id);

/* The stored text of a token (for SPM, with U+2581 for spaces); id must be in range. */
gguf_string vocab_token_text(const vocab *v, int32_t id);
token_type vocab_token_type(const vocab *v, int32_t id);
/* The id of a token with exactly this text, or VOCAB_NO_TOKEN. */
int32_t vocab_find(const vocab *v, const char *text, size_t len);

/* Tokenizes len bytes of text. add_special adds BOS/EOS as the model asks;
 * parse_special lets control tokens written in the text ("<start_of_turn>")
 * become those tokens (user-defined tokens always do, as in llama.cpp).
 * Writes up to cap ids and returns how many the text needs (so a caller may
 * retry with a larger buffer), or -1 with *err filled: out of memory, or,
 * for BPE (Gemma 4's too), text that is not valid UTF-8 (HEARTH_ERR_FORMAT). */
int64_t vocab_tokenize(const vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       int32_t *out, size_t cap, hearth_error *err);

/* As vocab_tokenize with parse_special, except that a control token whose
 * text overlaps one of the guarded spans (sorted, disjoint) stays text there:
 * a prompt rendered from a chat template keeps the control tokens the
 * template writes while those a user typed into a message stay text. */
int64_t vocab_tokenize_guarded(const vocab *v, const char *text, size_t len, bool add_special,
                               const text_span *guarded, size_t n_guarded, int32_t *out, size_t cap,
                               hearth_error *err);

/* The spans of the text where control (or unknown) tokens' texts are
 * written, overlapping and touching ones merged, in order: *spans malloc'd
 * (NULL when there are none), *n_spans of them. */
hearth_status vocab_control_spans(const vocab *v, const char *text, size_t len, text_span **spans, size_t *n_spans,
                                  hearth_error *err);

/* The bytes a token stands for: for SentencePiece (and Gemma 4), spaces
 * restored and byte tokens as their byte; for byte-level BPE, each character of GPT-2's byte
 * alphabet back to its byte. Control and unknown tokens are empty unless
 * `special`. Writes up to cap bytes
 * (no terminator) and returns the piece's length. */
size_t vocab_token_to_piece(const vocab *v, int32_t id, bool special, char *out, size_t cap);

#endif

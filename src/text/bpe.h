/* BPE by merge rank: byte-level (tokenizer.ggml.model = "gpt2") with the
 * pre-tokenizer named by tokenizer.ggml.pre, or over SentencePiece-style
 * texts (model "gemma4"). Private to text/: vocab.c loads it, tokenize.c
 * runs it on each run of text between special tokens. */
#ifndef HEARTH_TEXT_BPE_H
#define HEARTH_TEXT_BPE_H

#include "text/vocab_internal.h"

typedef struct bpe_tokenizer bpe_tokenizer;

/* Reads tokenizer.ggml.merges and the pre-tokenizer: `pre` if not NULL (the
 * tokenizer model fixes it, as "gemma4" does), else tokenizer.ggml.pre
 * (absent: "default", as llama.cpp does), and compiles its regexes. An
 * unknown pre is HEARTH_ERR_UNSUPPORTED naming it. The merge texts stay in
 * the GGUF map. */
hearth_status bpe_load(const gguf_file *f, const char *pre, bpe_tokenizer **out, hearth_error *err);
void bpe_free(bpe_tokenizer *b);
/* Whether the pre-tokenizer's family adds BOS when tokenizer.ggml.add_bos_token
 * is absent. */
bool bpe_adds_bos_by_default(const bpe_tokenizer *b);
/* Whether it adds BOS whatever the file says (llama.cpp overrides
 * tokenizer.ggml.add_bos_token = false for Gemma 4). */
bool bpe_forces_bos(const bpe_tokenizer *b);
/* Whether it merges SentencePiece-style texts (Gemma 4): spaces written as
 * U+2581, merges over the raw UTF-8, and characters that end up in no
 * token written as <0xNN> byte tokens; else GPT-2's byte alphabet. */
bool bpe_spm_text(const bpe_tokenizer *b);

/* Tokenizes len bytes of valid UTF-8 (the caller checks) containing no
 * special tokens, appending ids to sink. */
hearth_status bpe_tokenize_fragment(const vocab *v, const char *text, size_t len, token_sink *sink,
                                    hearth_error *err);

#endif

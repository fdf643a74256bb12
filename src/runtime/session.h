/* A session: one sequence being run through a model — its state (KV cache),
 * how many positions are filled, and the logits of the last token. */
#ifndef HEARTH_RUNTIME_SESSION_H
#define HEARTH_RUNTIME_SESSION_H

#include "model/model.h"
#include "runtime/prefix_cache.h"

typedef struct session session;

typedef struct session_params {
    int32_t n_ctx;   /* 0: the model's training context, capped at 4096 */
    int32_t n_batch; /* tokens per forward pass; 0: 512 */
    hearth_kv_type kv_type; /* 0: f16 */
    /* When set, session_eval restores what the prefix cache holds of its
     * tokens and keeps what it evaluates there (see prefix_cache.h). */
    const prefix_cache_params *prefix_cache;
} session_params;

/* The pool is the caller's and must outlive the session. */
hearth_status session_create(const model *m, threadpool *pool, const session_params *params, session **out,
                             hearth_error *err);
void session_free(session *s);

int32_t session_n_ctx(const session *s);
int32_t session_n_past(const session *s);
size_t session_state_bytes(const session *s);
/* Forgets every position (the cache is reused from the start). */
void session_reset(session *s);

/* Keeps the longest common prefix of what the session holds and tokens[0..n),
 * at most n - 1 tokens so that at least one is left to evaluate (and give
 * logits), and forgets the rest; returns how many it kept. A conversation
 * re-rendered each turn then costs only the tokens after the prefix. A
 * recurrent model (model_is_recurrent) keeps all it holds or nothing. */
int32_t session_keep_common_prefix(session *s, const int32_t *tokens, int32_t n);

/* Appends n tokens to the sequence, in batches, and keeps the logits of the
 * last one (session_logits); with a prefix cache, the longest cached prefix
 * of the tokens so far is restored instead of evaluated. Filling past the context is an error that leaves
 * the session as it was. */
hearth_status session_eval(session *s, const int32_t *tokens, int32_t n, hearth_error *err);
const float *session_logits(const session *s);
/* How many of the last session_eval's tokens came from the prefix cache
 * instead of being evaluated. */
int32_t session_last_restored(const session *s);
/* The session's prefix cache, or NULL. */
const prefix_cache *session_prefix_cache(const session *s);
/* The session_n_past tokens the session holds. */
const int32_t *session_tokens(const session *s);

/* Appends n tokens and writes the logits of every token from first_output on
 * into `logits` (n - first_output rows of the vocabulary size). */
hearth_status session_eval_all_logits(session *s, const int32_t *tokens, int32_t n, int32_t first_output,
                                      float *logits, hearth_error *err);

#endif

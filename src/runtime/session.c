#include "runtime/session.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

struct session {
    const model *model;
    threadpool *pool;
    model_state *state;
    int32_t n_ctx, n_batch, n_past;
    float *logits; /* the last token's */
    int32_t *tokens; /* the n_past tokens the state holds, in order */
    prefix_cache *cache;
    int32_t last_restored;
};

hearth_status session_create(const model *m, threadpool *pool, const session_params *params, session **out,
                             hearth_error *err)
{
    *out = NULL;
    int32_t n_ctx = params && params->n_ctx > 0 ? params->n_ctx : model_n_ctx_train(m);
    if (!(params && params->n_ctx > 0) && n_ctx > 4096)
        n_ctx = 4096;
    int32_t n_batch = params && params->n_batch > 0 ? params->n_batch : 512;
    if (params && (params->n_ctx < 0 || params->n_batch < 0))
        return error_set(err, HEARTH_ERR_ARG, "context size and batch size must not be negative");
    session *s = calloc(1, sizeof *s);
    if (!s || !(s->logits = calloc((size_t)model_n_vocab(m), sizeof(float))) ||
        !(s->tokens = malloc((size_t)n_ctx * sizeof *s->tokens))) {
        if (s)
            free(s->logits);
        free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    hearth_status st =
        model_state_create_kv(m, 1, n_ctx, n_batch, params ? params->kv_type : HEARTH_KV_F16, &s->state, err);
    if (st != HEARTH_OK) {
        free(s->logits);
        free(s->tokens);
        free(s);
        return st;
    }
    if (params && params->prefix_cache &&
        (st = prefix_cache_create(m, s->state, params->prefix_cache, &s->cache, err)) != HEARTH_OK) {
        session_free(s);
        return st;
    }
    s->model = m;
    s->pool = pool;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch < n_ctx ? n_batch : n_ctx;
    *out = s;
    return HEARTH_OK;
}

void session_free(session *s)
{
    if (!s)
        return;
    prefix_cache_free(s->cache);
    model_state_free(s->state);
    free(s->logits);
    free(s->tokens);
    free(s);
}

int32_t session_n_ctx(const session *s) { return s->n_ctx; }
int32_t session_n_past(const session *s) { return s->n_past; }
size_t session_state_bytes(const session *s) { return model_state_bytes(s->state); }
void session_reset(session *s) { s->n_past = 0; }

/* The positions past the prefix need no clearing: attention reads a cache
 * row only once the position is filled again. A recurrent model's state
 * cannot be taken back to an earlier position: it keeps all or nothing. */
int32_t session_keep_common_prefix(session *s, const int32_t *tokens, int32_t n)
{
    int32_t limit = n - 1 < s->n_past ? n - 1 : s->n_past, keep = 0;
    while (keep < limit && s->tokens[keep] == tokens[keep])
        keep++;
    keep = model_state_resume_point(s->state, keep);
    s->n_past = keep;
    return keep;
}
const float *session_logits(const session *s) { return s->logits; }
int32_t session_last_restored(const session *s) { return s->last_restored; }
const prefix_cache *session_prefix_cache(const session *s) { return s->cache; }
const int32_t *session_tokens(const session *s) { return s->tokens; }

static hearth_status check_room(const session *s, int32_t n, hearth_error *err)
{
    if (n < 0)
        return error_set(err, HEARTH_ERR_ARG, "negative token count");
    if (n > s->n_ctx - s->n_past)
        return error_set(err, HEARTH_ERR_ARG, "context full: %d tokens already, %d more do not fit in a context of %d",
                         s->n_past, n, s->n_ctx);
    return HEARTH_OK;
}

hearth_status session_eval_all_logits(session *s, const int32_t *tokens, int32_t n, int32_t first_output,
                                      float *logits, hearth_error *err)
{
    hearth_status st = check_room(s, n, err);
    if (st == HEARTH_OK && (first_output < 0 || first_output > n))
        st = error_set(err, HEARTH_ERR_ARG, "first output %d of %d tokens", first_output, n);
    size_t n_vocab = (size_t)model_n_vocab(s->model);
    for (int32_t done = 0; st == HEARTH_OK && done < n;) {
        int32_t count = n - done < s->n_batch ? n - done : s->n_batch;
        /* A recurrent state is kept only where a batch ends. */
        if (s->cache) {
            int32_t end = prefix_cache_batch_end(s->cache, s->n_past, s->n_past + n - done);
            if (end - s->n_past < count)
                count = end - s->n_past;
        }
        int32_t first = first_output > done ? first_output - done : 0;
        if (first > count)
            first = count;
        /* Batches before first_output give no logits: no row to point at
         * (the offset would be negative). */
        float *rows = first < count ? logits + (size_t)(done + first - first_output) * n_vocab : NULL;
        st = model_forward(s->model, s->state, s->pool, tokens + done, count, s->n_past, first, rows, err);
        if (st == HEARTH_OK) {
            memcpy(s->tokens + s->n_past, tokens + done, (size_t)count * sizeof *tokens);
            if (s->cache)
                prefix_cache_store(s->cache, s->state, 0, s->tokens, s->n_past, s->n_past + count);
            s->n_past += count;
            done += count;
        }
    }
    return st;
}

hearth_status session_eval(session *s, const int32_t *tokens, int32_t n, hearth_error *err)
{
    s->last_restored = 0;
    if (s->cache && n > 1 && check_room(s, n, err) == HEARTH_OK) {
        memcpy(s->tokens + s->n_past, tokens, (size_t)n * sizeof *tokens);
        int32_t held = prefix_cache_restore(s->cache, s->state, 0, s->tokens, s->n_past + n, s->n_past);
        s->last_restored = held - s->n_past;
        tokens += s->last_restored;
        n -= s->last_restored;
        s->n_past = held;
    }
    /* The last token's logits: the one row of all_logits with first_output n - 1. */
    return session_eval_all_logits(s, tokens, n, n > 0 ? n - 1 : 0, s->logits, err);
}

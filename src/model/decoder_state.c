#include "model/decoder_state.h"

#include "base/checked.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>

void decoder_state_free(void *p)
{
    decoder_state *s = p;
    if (!s)
        return;
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->positions);
    free(s->act_scratch);
    free(s->router_logits);
    free(s->moe_scratch);
    free(s);
}

typedef struct scratch_need {
    int32_t n_batch;
    size_t bytes;
} scratch_need;

static void need_scratch(ops_matrix *m, void *ctx)
{
    scratch_need *need = ctx;
    size_t bytes = ops_matmul_scratch_bytes(m, need->n_batch);
    if (bytes > need->bytes)
        need->bytes = bytes;
}

size_t decoder_act_scratch_bytes(void (*for_each_matrix)(void *weights, void (*visit)(ops_matrix *m, void *ctx),
                                                         void *ctx),
                                 const void *weights, int32_t n_batch)
{
    /* for_each_matrix only reads here: the cast lets one visitor serve
     * repacking (which writes) and sizing. */
    scratch_need need = {.n_batch = n_batch};
    for_each_matrix((void *)weights, need_scratch, &need);
    return need.bytes;
}

hearth_status decoder_state_create(const decoder_dims *dims,
                                   void (*for_each_matrix)(void *weights, void (*visit)(ops_matrix *m, void *ctx),
                                                           void *ctx),
                                   const void *weights,
                                   int32_t n_ctx, int32_t n_batch, decoder_state **out, model_memory *memory,
                                   hearth_error *err)
{
    *out = NULL;
    decoder_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->k_layer = (size_t)n_ctx * (size_t)dims->k_dim;
    s->v_layer = (size_t)n_ctx * (size_t)dims->v_dim;
    uint64_t k_bytes, v_bytes;
    bool fits = checked_mul_u64(s->k_layer, (uint64_t)dims->n_layers * sizeof(uint16_t), &k_bytes) &&
                checked_mul_u64(s->v_layer, (uint64_t)dims->n_layers * sizeof(uint16_t), &v_bytes) &&
                k_bytes < SIZE_MAX / 4 && v_bytes < SIZE_MAX / 4;

    size_t b = (size_t)n_batch, d = (size_t)dims->n_embd;
    size_t floats = b * (3 * d + (size_t)(dims->q_dim + dims->k_dim + dims->v_dim + dims->attn_dim) +
                         2 * (size_t)dims->n_ff);
    const size_t scratch_bytes = decoder_act_scratch_bytes(for_each_matrix, weights, n_batch);
    if (fits) {
        s->k_cache = malloc(k_bytes);
        s->v_cache = malloc(v_bytes);
        s->x = malloc(floats * sizeof(float));
        s->positions = malloc(b * sizeof *s->positions);
        s->act_scratch = malloc(scratch_bytes ? scratch_bytes : 1);
    }
    bool moe_ok = true;
    if (fits && dims->n_experts > 0) {
        s->router_logits = malloc(b * (size_t)dims->n_experts * sizeof(float));
        s->moe_scratch = malloc(dims->moe_scratch_bytes);
        moe_ok = s->router_logits && s->moe_scratch;
    }
    if (!fits || !moe_ok || !s->k_cache || !s->v_cache || !s->x || !s->positions || !s->act_scratch) {
        decoder_state_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a context of %d tokens (KV cache %.1f MiB)",
                         n_ctx, fits ? (double)(k_bytes + v_bytes) / 1048576.0 : INFINITY);
    }
    float *cursor = s->x + b * d;
    s->xn = cursor, cursor += b * d;
    s->proj = cursor, cursor += b * d;
    s->q = cursor, cursor += b * (size_t)dims->q_dim;
    s->k = cursor, cursor += b * (size_t)dims->k_dim;
    s->v = cursor, cursor += b * (size_t)dims->v_dim;
    s->attn = cursor, cursor += b * (size_t)dims->attn_dim;
    s->gate = cursor, cursor += b * (size_t)dims->n_ff;
    s->up = cursor;
    *memory = (model_memory){.kv_cache = k_bytes + v_bytes, .scratch = floats * sizeof(float) + scratch_bytes};
    if (dims->n_experts > 0)
        memory->scratch += b * (size_t)dims->n_experts * sizeof(float) + dims->moe_scratch_bytes;
    *out = s;
    return HEARTH_OK;
}

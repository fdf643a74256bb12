#include "model/decoder_state.h"

#include "base/checked.h"
#include "base/error.h"
#include "ops/dot.h"
#include "quant/quant.h"

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
    free(s->cache_rows);
    free(s->outputs);
    free(s->act_scratch);
    free(s->router_logits);
    free(s->moe_scratch);
    free(s);
}

int32_t decoder_state_parts(const void *weights, void *state, model_state_part *parts, int32_t max)
{
    (void)weights;
    decoder_state *s = state;
    const int32_t n = 2 * (int32_t)s->n_layers;
    for (int32_t i = 0; i < n && i < max; i++) {
        const bool keys = i % 2 == 0;
        const size_t layer = (size_t)(i / 2), row = keys ? s->k_row_bytes : s->v_row_bytes;
        char *cache = keys ? s->k_cache : s->v_cache;
        parts[i] = (model_state_part){.base = cache + layer * (keys ? s->k_layer_bytes : s->v_layer_bytes),
                                      .row_bytes = row,
                                      .seq_stride = (size_t)s->n_ctx * row};
    }
    return n;
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

size_t decoder_act_scratch_bytes(decoder_matrix_walk for_each_matrix, const void *weights, int32_t n_batch)
{
    /* for_each_matrix only reads here: the cast lets one visitor serve
     * repacking (which writes) and sizing. */
    scratch_need need = {.n_batch = n_batch};
    for_each_matrix((void *)weights, need_scratch, &need);
    return need.bytes;
}

/* Bytes of one cache row of n values. */
static size_t kv_row_bytes(ops_kv_type type, int64_t n)
{
    return type == OPS_KV_Q8_0 ? (size_t)(n / QK8_0) * sizeof(block_q8_0) : (size_t)n * sizeof(uint16_t);
}

hearth_status decoder_state_create_multi(const decoder_dims *dims, decoder_matrix_walk for_each_matrix,
                                         const void *weights, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                         ops_kv_type kv_type, decoder_state **out, model_memory *memory,
                                         hearth_error *err)
{
    *out = NULL;
    if (kv_type == OPS_KV_Q8_0 && (dims->head_dim_k % QK8_0 != 0 || dims->head_dim_v % QK8_0 != 0))
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "KV cache type q8_0 needs head sizes that are multiples of %d; this model's are %lld "
                         "(keys) and %lld (values): use f16",
                         QK8_0, (long long)dims->head_dim_k, (long long)dims->head_dim_v);
    decoder_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_seq = n_seq;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->kv_type = kv_type;
    s->n_layers = dims->n_layers;
    s->k_dim = dims->k_dim;
    s->v_dim = dims->v_dim;
    s->k_row_bytes = kv_row_bytes(kv_type, dims->k_dim);
    s->v_row_bytes = kv_row_bytes(kv_type, dims->v_dim);
    const size_t rows = (size_t)n_seq * (size_t)n_ctx; /* model.c bounds it by INT32_MAX */
    uint64_t k_bytes, v_bytes;
    bool fits = checked_mul_u64(rows, s->k_row_bytes, &k_bytes) && checked_mul_u64(rows, s->v_row_bytes, &v_bytes) &&
                k_bytes < SIZE_MAX / 4 && v_bytes < SIZE_MAX / 4;
    if (fits) {
        s->k_layer_bytes = k_bytes;
        s->v_layer_bytes = v_bytes;
        fits = checked_mul_u64(k_bytes, dims->n_layers, &k_bytes) &&
               checked_mul_u64(v_bytes, dims->n_layers, &v_bytes) && k_bytes < SIZE_MAX / 4 && v_bytes < SIZE_MAX / 4;
    }

    size_t b = (size_t)n_batch, d = (size_t)dims->n_embd;
    size_t floats = b * (3 * d + (size_t)(dims->q_dim + dims->k_dim + dims->v_dim + dims->attn_dim) +
                         2 * (size_t)dims->n_ff);
    const size_t scratch_bytes = decoder_act_scratch_bytes(for_each_matrix, weights, n_batch);
    if (fits) {
        s->k_cache = malloc(k_bytes);
        s->v_cache = malloc(v_bytes);
        s->x = malloc(floats * sizeof(float));
        s->positions = malloc(b * sizeof *s->positions);
        s->cache_rows = malloc(b * sizeof *s->cache_rows);
        s->outputs = malloc(b * sizeof *s->outputs);
        s->act_scratch = malloc(scratch_bytes ? scratch_bytes : 1);
    }
    bool moe_ok = true;
    if (fits && dims->n_experts > 0) {
        s->router_logits = malloc(b * (size_t)dims->n_experts * sizeof(float));
        s->moe_scratch = malloc(dims->moe_scratch_bytes);
        moe_ok = s->router_logits && s->moe_scratch;
    }
    if (!fits || !moe_ok || !s->k_cache || !s->v_cache || !s->x || !s->positions || !s->cache_rows ||
        !s->outputs || !s->act_scratch) {
        decoder_state_free(s);
        double mib = fits ? (double)(k_bytes + v_bytes) / 1048576.0 : INFINITY;
        if (n_seq > 1)
            return error_set(err, HEARTH_ERR_NOMEM,
                             "out of memory for %d sequences of %d tokens (KV cache %.1f MiB)", n_seq, n_ctx, mib);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a context of %d tokens (KV cache %.1f MiB)",
                         n_ctx, mib);
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
    *memory = (model_memory){
        .kv_cache = k_bytes + v_bytes,
        .scratch = floats * sizeof(float) + scratch_bytes + 3 * b * sizeof(int32_t),
    };
    if (dims->n_experts > 0)
        memory->scratch += b * (size_t)dims->n_experts * sizeof(float) + dims->moe_scratch_bytes;
    *out = s;
    return HEARTH_OK;
}

hearth_status decoder_state_create(const decoder_dims *dims, decoder_matrix_walk for_each_matrix,
                                   const void *weights, int32_t n_ctx, int32_t n_batch, decoder_state **out,
                                   model_memory *memory, hearth_error *err)
{
    return decoder_state_create_multi(dims, for_each_matrix, weights, 1, n_ctx, n_batch, OPS_KV_F16, out, memory,
                                      err);
}

void decoder_state_plan_run(decoder_state *s, int32_t n, int32_t pos0, int32_t first_output)
{
    for (int32_t t = 0; t < n; t++)
        s->positions[t] = s->cache_rows[t] = pos0 + t;
    s->runs[0] = (decoder_run){.seq = 0, .first = 0, .last = n};
    s->n_runs = 1;
    s->n_outputs = 0;
    for (int32_t t = first_output; t < n; t++)
        s->outputs[s->n_outputs++] = t;
}

void decoder_state_plan_batch(decoder_state *s, const model_batch *b)
{
    s->n_runs = 0;
    s->n_outputs = 0;
    for (int32_t t = 0; t < b->n; t++) {
        int32_t seq = b->seq[t];
        s->positions[t] = b->pos[t];
        s->cache_rows[t] = seq * s->n_ctx + b->pos[t];
        if (b->output && b->output[t])
            s->outputs[s->n_outputs++] = t;
        if (t == 0 || seq != b->seq[t - 1])
            s->runs[s->n_runs++] = (decoder_run){.seq = seq, .first = t, .last = t + 1};
        else
            s->runs[s->n_runs - 1].last = t + 1;
    }
}

void decoder_state_store_kv(const decoder_state *s, uint32_t il, int32_t t, const float *k, const float *v)
{
    const size_t row = (size_t)s->cache_rows[t];
    char *k_row = (char *)s->k_cache + il * s->k_layer_bytes + row * s->k_row_bytes;
    char *v_row = (char *)s->v_cache + il * s->v_layer_bytes + row * s->v_row_bytes;
    if (s->kv_type == OPS_KV_Q8_0) {
        /* The rounding of the Q8_0 activations (ops/dot.c), which is also
         * how llama.cpp's x86 build fills a Q8_0 cache. */
        ops_quantize_activation(QUANT_Q8_0, k, k_row, s->k_dim);
        ops_quantize_activation(QUANT_Q8_0, v, v_row, s->v_dim);
    } else {
        ops_store_f16((uint16_t *)k_row, k, s->k_dim);
        ops_store_f16((uint16_t *)v_row, v, s->v_dim);
    }
}

void decoder_state_kv_args(const decoder_state *s, uint32_t il, ops_attention_args *args)
{
    const char *k = (const char *)s->k_cache + il * s->k_layer_bytes;
    const char *v = (const char *)s->v_cache + il * s->v_layer_bytes;
    args->kv_type = s->kv_type;
    args->k_stride = s->k_dim;
    args->v_stride = s->v_dim;
    if (s->kv_type == OPS_KV_Q8_0) {
        args->k_q8 = (const block_q8_0 *)k;
        args->v_q8 = (const block_q8_0 *)v;
        args->k = args->v = NULL;
    } else {
        args->k = (const uint16_t *)k;
        args->v = (const uint16_t *)v;
        args->k_q8 = args->v_q8 = NULL;
    }
}

void decoder_attention(threadpool *pool, const decoder_state *s, const ops_attention_args *args)
{
    ops_attention_args runs[MODEL_MAX_SEQUENCES];
    for (int32_t r = 0; r < s->n_runs; r++) {
        const decoder_run *run = &s->runs[r];
        const size_t seq_row = (size_t)run->seq * (size_t)s->n_ctx;
        ops_attention_args *a = &runs[r];
        *a = *args;
        a->q += run->first * args->q_stride;
        a->out += run->first * args->out_stride;
        a->positions += run->first;
        a->n_tokens = run->last - run->first;
        if (args->kv_type == OPS_KV_Q8_0) {
            a->k_q8 += seq_row * (size_t)args->k_stride / QK8_0;
            a->v_q8 += seq_row * (size_t)args->v_stride / QK8_0;
        } else {
            a->k += seq_row * (size_t)args->k_stride;
            a->v += seq_row * (size_t)args->v_stride;
        }
    }
    ops_attention_many(pool, runs, s->n_runs);
}

void decoder_output_norm_rows(decoder_state *s, int64_t n_embd, const float *weight, float eps, int64_t first,
                              int64_t last)
{
    /* Outputs that are consecutive in the batch (a prefill's all-logits
     * run) go through the norm together. */
    for (int64_t i = first, end; i < last; i = end) {
        for (end = i + 1; end < last && s->outputs[end] == s->outputs[i] + (end - i); end++)
            ;
        ops_rmsnorm_rows(s->x + s->outputs[i] * n_embd, n_embd, weight, n_embd, eps, s->xn + i * n_embd, n_embd,
                         end - i);
    }
}

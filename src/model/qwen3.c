/* Qwen 3 (dense), as llama.cpp runs it (llm_build_qwen3):
 *
 *   x = embed(tokens)
 *   per layer:  h = norm(x);  q, k, v = h Wq, h Wk, h Wv
 *               q, k = rope(norm_per_head(q)), rope(norm_per_head(k))
 *               x = x + attention(q, k, v) Wo          -- causal, grouped-query
 *               h = norm(x);  x = x + (silu(h Wgate) * (h Wup)) Wdown
 *   logits = norm(x) Wout    -- Wout is the embedding when output.weight is absent
 *
 * Every norm is RMSNorm with its stored weight; the per-head norms of q and k
 * (attn_q_norm, attn_k_norm) are what set Qwen 3 apart from Qwen 2, which had
 * biases on q, k and v instead. RoPE is the NEOX layout over the whole head.
 * The head size is its own hyper-parameter (key_length): the 0.6B model has
 * 16 heads of 128 over an embedding of 1024. */
#include "model/arch.h"

#include "base/checked.h"
#include "base/error.h"
#include "base/fp16.h"
#include "ops/attention.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "qwen3"
#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024

typedef struct qwen3_layer {
    const float *attn_norm, *q_norm, *k_norm, *ffn_norm; /* [E], [D], [D], [E] */
    ops_matrix wq, wk, wv, wo;                          /* E -> H*D, E -> Hkv*D, E -> Hkv*D, H*D -> E */
    ops_matrix gate, up, down;                          /* E -> F, E -> F, F -> E */
} qwen3_layer;

typedef struct qwen3 {
    uint32_t n_vocab, n_embd, n_layers, n_ff, n_heads, n_kv_heads, head_dim, n_ctx_train;
    float eps, rope_base, rope_scale, attn_scale;
    ops_matrix embed, output; /* V rows of E */
    const float *output_norm; /* [E] */
    qwen3_layer *layers;
} qwen3;

typedef struct qwen3_state {
    int32_t n_ctx, n_batch;
    uint16_t *k_cache, *v_cache; /* per layer n_ctx rows of n_kv_heads * head_dim, f16 */
    size_t kv_layer;             /* elements per layer, in each cache */
    /* T rows each: x, xn, proj [E]; q, attn [H*D]; k, v [Hkv*D]; gate, up [F] */
    float *x, *xn, *proj, *q, *k, *v, *attn, *gate, *up;
    int32_t *positions;
    void *act_scratch;
} qwen3_state;

/* The RoPE frequency scale: none, or linear (also what a bare factor means
 * to llama.cpp); YaRN, which long-context Qwen 3 configurations ask for, is
 * not implemented. */
static hearth_status read_rope_scale(const gguf_file *f, float *scale, hearth_error *err)
{
    *scale = 1.0f;
    const gguf_kv *kv = gguf_find_kv(f, ARCH ".rope.scaling.type");
    const gguf_string *type = gguf_get_string(f, ARCH ".rope.scaling.type");
    if (kv && !type)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".rope.scaling.type: not a string");
    if (type && gguf_string_equals(type, "none"))
        return HEARTH_OK;
    if (type && !gguf_string_equals(type, "linear"))
        return error_set(err, HEARTH_ERR_UNSUPPORTED, ARCH ".rope.scaling.type: '%.*s' is not supported (none, linear)",
                         (int)(type->len > 32 ? 32 : type->len), type->data);
    float factor;
    hearth_status st = model_get_f32(f, ARCH, "rope.scaling.factor", false, 0.0f, &factor, err);
    if (st != HEARTH_OK)
        return st;
    if (factor < 0.0f)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".rope.scaling.factor: %g must be positive", factor);
    if (factor > 0.0f)
        *scale = 1.0f / factor;
    return HEARTH_OK;
}

static hearth_status read_hparams(const gguf_file *f, qwen3 *m, hearth_error *err)
{
    hearth_status st;
    if ((st = model_get_u32(f, ARCH, "embedding_length", true, 0, &m->n_embd, err)) ||
        (st = model_get_u32(f, ARCH, "block_count", true, 0, &m->n_layers, err)) ||
        (st = model_get_u32(f, ARCH, "feed_forward_length", true, 0, &m->n_ff, err)) ||
        (st = model_get_u32(f, ARCH, "attention.head_count", true, 0, &m->n_heads, err)) ||
        (st = model_get_u32(f, ARCH, "context_length", true, 0, &m->n_ctx_train, err)) ||
        (st = model_get_f32(f, ARCH, "attention.layer_norm_rms_epsilon", true, 0.0f, &m->eps, err)) ||
        (st = model_get_f32(f, ARCH, "rope.freq_base", false, 10000.0f, &m->rope_base, err)) ||
        (st = read_rope_scale(f, &m->rope_scale, err)))
        return st;
    if (m->n_embd == 0 || m->n_embd > 65536 || m->n_layers == 0 || m->n_layers > MAX_LAYERS || m->n_ff == 0 ||
        m->n_ff > 1048576 || m->n_heads == 0 || m->n_heads > 1024)
        return error_set(err, HEARTH_ERR_FORMAT,
                         ARCH ": implausible sizes (embedding %u, layers %u, feed-forward %u, heads %u)", m->n_embd,
                         m->n_layers, m->n_ff, m->n_heads);
    if (m->n_ctx_train == 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".context_length: must be positive");
    if (!(m->eps >= 0.0f) || m->eps > 1.0f)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.layer_norm_rms_epsilon: %g is not in [0, 1]",
                         m->eps);
    if (!(m->rope_base > 0.0f))
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".rope.freq_base: %g must be positive", m->rope_base);

    uint32_t head_dim_v, rope_dims;
    if ((st = model_get_u32(f, ARCH, "attention.head_count_kv", false, m->n_heads, &m->n_kv_heads, err)) ||
        (st = model_get_u32(f, ARCH, "attention.key_length", false, m->n_embd / m->n_heads, &m->head_dim, err)) ||
        (st = model_get_u32(f, ARCH, "attention.value_length", false, m->head_dim, &head_dim_v, err)) ||
        (st = model_get_u32(f, ARCH, "rope.dimension_count", false, m->head_dim, &rope_dims, err)))
        return st;
    if (m->n_kv_heads == 0 || m->n_heads % m->n_kv_heads != 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.head_count_kv: %u does not divide %u heads",
                         m->n_kv_heads, m->n_heads);
    if (m->head_dim == 0 || m->head_dim > MAX_HEAD_DIM || m->head_dim % 2)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.key_length: %u must be even and 2 to %d",
                         m->head_dim, MAX_HEAD_DIM);
    /* llama.cpp's graph for this architecture assumes both (it asserts them). */
    if (head_dim_v != m->head_dim)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, ARCH ".attention.value_length: %u differs from key_length %u",
                         head_dim_v, m->head_dim);
    if (rope_dims != m->head_dim)
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         ARCH ".rope.dimension_count: %u, but this architecture rotates whole heads of %u", rope_dims,
                         m->head_dim);
    m->attn_scale = 1.0f / sqrtf((float)m->head_dim);
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, const qwen3 *m, uint32_t il, qwen3_layer *l, hearth_error *err)
{
    char name[96];
    hearth_status st = HEARTH_OK;
    int64_t d = m->n_embd, q_dim = (int64_t)m->n_heads * m->head_dim, kv_dim = (int64_t)m->n_kv_heads * m->head_dim;
#define VEC(field, suffix, n) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_vector(f, name, n, &l->field, err))
#define MAT(field, suffix, cols, rows) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_matrix(f, name, cols, rows, &l->field, err))
    if ((st = VEC(attn_norm, "attn_norm", d)) || (st = VEC(q_norm, "attn_q_norm", m->head_dim)) ||
        (st = VEC(k_norm, "attn_k_norm", m->head_dim)) || (st = VEC(ffn_norm, "ffn_norm", d)) ||
        (st = MAT(wq, "attn_q", d, q_dim)) || (st = MAT(wk, "attn_k", d, kv_dim)) ||
        (st = MAT(wv, "attn_v", d, kv_dim)) || (st = MAT(wo, "attn_output", q_dim, d)) ||
        (st = MAT(gate, "ffn_gate", d, m->n_ff)) || (st = MAT(up, "ffn_up", d, m->n_ff)) ||
        (st = MAT(down, "ffn_down", m->n_ff, d)))
        return st;
#undef VEC
#undef MAT
    return HEARTH_OK;
}

static void qwen3_free_weights(void *p)
{
    qwen3 *m = p;
    if (m)
        free(m->layers);
    free(m);
}

static hearth_status qwen3_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    *out = NULL;
    qwen3 *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    hearth_status st = read_hparams(f, m, err);
    if (st == HEARTH_OK) {
        m->n_vocab = (uint32_t)vocab_size(v);
        m->layers = calloc(m->n_layers, sizeof *m->layers);
        if (!m->layers)
            st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK)
        st = model_bind_embedding_and_output(f, m->n_embd, m->n_vocab, &m->embed, &m->output_norm, &m->output,
                                             err);
    for (uint32_t il = 0; st == HEARTH_OK && il < m->n_layers; il++)
        st = bind_layer(f, m, il, &m->layers[il], err);
    if (st != HEARTH_OK) {
        qwen3_free_weights(m);
        return st;
    }
    *out = m;
    return HEARTH_OK;
}

static int32_t qwen3_n_ctx_train(const void *p)
{
    const qwen3 *m = p;
    return m->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)m->n_ctx_train;
}

static void qwen3_state_free(void *p)
{
    qwen3_state *s = p;
    if (!s)
        return;
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->positions);
    free(s->act_scratch);
    free(s);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static hearth_status qwen3_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out, size_t *bytes,
                                        hearth_error *err)
{
    const qwen3 *m = p;
    *out = NULL;
    qwen3_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    size_t kv_dim = (size_t)m->n_kv_heads * m->head_dim;
    s->kv_layer = (size_t)n_ctx * kv_dim;
    uint64_t cache_bytes;
    bool fits = checked_mul_u64(s->kv_layer, (uint64_t)m->n_layers * sizeof(uint16_t), &cache_bytes) &&
                cache_bytes < SIZE_MAX / 4;

    /* Activations: one block of floats carved into the batch's buffers. */
    size_t b = (size_t)n_batch, d = m->n_embd, q_dim = (size_t)m->n_heads * m->head_dim;
    size_t floats = b * (3 * d + 2 * q_dim + 2 * kv_dim + 2 * (size_t)m->n_ff);
    size_t act = ops_matmul_scratch_bytes(&m->output, n_batch);
    for (uint32_t il = 0; il < m->n_layers; il++) {
        const qwen3_layer *l = &m->layers[il];
        const ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->gate, &l->up, &l->down};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            act = max_size(act, ops_matmul_scratch_bytes(ms[i], n_batch));
    }
    if (fits) {
        s->k_cache = malloc(cache_bytes);
        s->v_cache = malloc(cache_bytes);
        s->x = malloc(floats * sizeof(float));
        s->positions = malloc(b * sizeof *s->positions);
        s->act_scratch = malloc(act);
    }
    if (!fits || !s->k_cache || !s->v_cache || !s->x || !s->positions || !s->act_scratch) {
        qwen3_state_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a context of %d tokens (KV cache %.1f MiB)",
                         n_ctx, fits ? 2.0 * (double)cache_bytes / 1048576.0 : INFINITY);
    }
    float *cursor = s->x + b * d;
    s->xn = cursor, cursor += b * d;
    s->proj = cursor, cursor += b * d;
    s->q = cursor, cursor += b * q_dim;
    s->attn = cursor, cursor += b * q_dim;
    s->k = cursor, cursor += b * kv_dim;
    s->v = cursor, cursor += b * kv_dim;
    s->gate = cursor, cursor += b * m->n_ff;
    s->up = cursor;
    *bytes = 2 * cache_bytes + floats * sizeof(float) + act;
    *out = s;
    return HEARTH_OK;
}

/* One layer's per-token work between its matrix products, in steps that
 * ops_parallel_rows runs over token ranges. */
typedef struct qwen3_step {
    const qwen3 *m;
    qwen3_state *s;
    const qwen3_layer *l;
    const int32_t *tokens;
    int32_t pos0, first_output;
    uint16_t *k_cache, *v_cache;
} qwen3_step;

static void embed_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t d = st->m->n_embd;
    for (int64_t t = first; t < last; t++) {
        ops_matrix_row_f32(&st->m->embed, st->tokens[t], st->s->x + t * d);
        st->s->positions[t] = st->pos0 + (int32_t)t;
    }
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t d = st->m->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->m->eps, st->s->xn + first * d, d,
                     last - first);
}

/* Q and K: norm per head, rotate; then K and V go into the f16 cache. */
static void qk_rope_store_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const qwen3 *m = st->m;
    const qwen3_state *s = st->s;
    const int64_t hd = m->head_dim, q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    ops_rmsnorm_rows(s->q + first * q_dim, hd, st->l->q_norm, hd, m->eps, s->q + first * q_dim, hd,
                     (last - first) * m->n_heads);
    ops_rmsnorm_rows(s->k + first * kv_dim, hd, st->l->k_norm, hd, m->eps, s->k + first * kv_dim, hd,
                     (last - first) * m->n_kv_heads);
    for (int64_t t = first; t < last; t++) {
        float *q = s->q + t * q_dim, *k = s->k + t * kv_dim;
        ops_rope_neox(q, (int32_t)m->n_heads, (int32_t)hd, (int32_t)hd, s->positions[t], m->rope_base,
                      m->rope_scale);
        ops_rope_neox(k, (int32_t)m->n_kv_heads, (int32_t)hd, (int32_t)hd, s->positions[t], m->rope_base,
                      m->rope_scale);
        ops_store_f16(st->k_cache + (size_t)s->positions[t] * kv_dim, k, kv_dim);
        ops_store_f16(st->v_cache + (size_t)s->positions[t] * kv_dim, s->v + t * kv_dim, kv_dim);
    }
}

/* x += attention output; xn = norm(x) for the feed-forward. */
static void attention_residual_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t d = st->m->n_embd;
    qwen3_state *s = st->s;
    ops_add(s->x + first * d, s->proj + first * d, (last - first) * d);
    ops_rmsnorm_rows(s->x + first * d, d, st->l->ffn_norm, d, st->m->eps, s->xn + first * d, d, last - first);
}

static void swiglu_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t ff = st->m->n_ff;
    ops_swiglu(st->s->gate + first * ff, st->s->up + first * ff, (last - first) * ff);
}

static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t d = st->m->n_embd;
    ops_add(st->s->x + first * d, st->s->proj + first * d, (last - first) * d);
}

/* Rows counted from first_output: only those rows need logits. */
static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen3_step *st = p;
    const int64_t d = st->m->n_embd;
    const int64_t t = st->first_output + first;
    ops_rmsnorm_rows(st->s->x + t * d, d, st->m->output_norm, d, st->m->eps, st->s->xn + t * d, d, last - first);
}

static void qwen3_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                          int32_t pos0, int32_t first_output, float *logits)
{
    const qwen3 *m = p;
    qwen3_state *s = state;
    const int64_t d = m->n_embd, ff = m->n_ff, hd = m->head_dim;
    const int64_t q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    qwen3_step step = {.m = m, .s = s, .tokens = tokens, .pos0 = pos0, .first_output = first_output};

    ops_parallel_rows(pool, n, embed_rows, &step);

    for (uint32_t il = 0; il < m->n_layers; il++) {
        const qwen3_layer *l = &m->layers[il];
        step.l = l;
        step.k_cache = s->k_cache + il * s->kv_layer;
        step.v_cache = s->v_cache + il * s->kv_layer;

        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                                (float *[]){s->q, s->k, s->v}, (int64_t[]){q_dim, kv_dim, kv_dim}, s->act_scratch);
        ops_parallel_rows(pool, n, qk_rope_store_rows, &step);
        ops_attention_args attn = {
            .q = s->q, .q_stride = q_dim, .k = step.k_cache, .v = step.v_cache, .k_stride = kv_dim,
            .v_stride = kv_dim, .positions = s->positions, .n_tokens = n, .n_heads = m->n_heads,
            .n_kv_heads = m->n_kv_heads, .head_dim_k = m->head_dim, .head_dim_v = m->head_dim, .window = 0,
            .scale = m->attn_scale, .out = s->attn, .out_stride = q_dim,
        };
        ops_attention(pool, &attn);
        ops_matmul(pool, &l->wo, s->attn, q_dim, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, attention_residual_rows, &step);
        ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->gate, &l->up}, s->xn, d, n,
                                (float *[]){s->gate, s->up}, (int64_t[]){ff, ff}, s->act_scratch);
        ops_parallel_rows(pool, n, swiglu_rows, &step);
        ops_matmul(pool, &l->down, s->gate, ff, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);
    }

    if (first_output >= n)
        return;
    ops_parallel_rows(pool, n - first_output, output_norm_rows, &step);
    ops_matmul(pool, &m->output, s->xn + first_output * d, d, n - first_output, logits, m->n_vocab,
               s->act_scratch);
}

static void qwen3_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    qwen3 *m = p;
    for (uint32_t il = 0; il < m->n_layers; il++) {
        qwen3_layer *l = &m->layers[il];
        ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->gate, &l->up, &l->down};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            visit(ms[i], ctx);
    }
    /* Only the output: the embedding is read by row, from the map. */
    visit(&m->output, ctx);
}

const model_arch model_arch_qwen3 = {
    .name = ARCH,
    .load = qwen3_load,
    .free_weights = qwen3_free_weights,
    .state_create = qwen3_state_create,
    .state_free = qwen3_state_free,
    .forward = qwen3_forward,
    .n_ctx_train = qwen3_n_ctx_train,
    .for_each_matrix = qwen3_for_each_matrix,
};

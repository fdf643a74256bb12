/* Gemma 3, as llama.cpp runs it (llm_build_gemma3_iswa):
 *
 *   x = embed(tokens) * sqrt(n_embd)
 *   per layer:  h = norm(x);  q, k, v = h Wq, h Wk, h Wv
 *               q, k = rope(norm_per_head(q)), rope(norm_per_head(k))
 *               a = attention(q * scale, k, v)  -- sliding window on 5 of 6 layers
 *               x = x + norm(a Wo)
 *               h = norm(x);  x = x + norm(((gelu(h Wgate) * (h Wup)) Wdown)
 *   logits = norm(x) Wout    -- Wout is the embedding when output.weight is absent
 *
 * Every norm is RMSNorm with its weight as stored in the GGUF (the converter
 * already folded Gemma's "1 +" into it). Local (sliding) layers rotate with
 * base 10000, global ones with rope.freq_base and the optional linear scaling. */
#include "model/decoder_state.h"

#include "base/error.h"
#include "ops/attention.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "gemma3"
#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024

typedef struct gemma3_layer {
    const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    ops_matrix wq, wk, wv, wo, gate, up, down;
    bool sliding;
} gemma3_layer;

typedef struct gemma3 {
    uint32_t n_vocab, n_embd, n_layers, n_ff, n_heads, n_kv_heads, head_dim_k, head_dim_v, n_ctx_train, window;
    float eps, attn_scale;
    ops_rope rope_global, rope_local; /* full-attention and sliding-window layers */
    ops_matrix embed, output;
    const float *output_norm;
    gemma3_layer *layers;
} gemma3;


static hearth_status read_hparams(const gguf_file *f, gemma3 *g, hearth_error *err)
{
    hearth_status st;
    if ((st = model_get_u32(f, ARCH, "embedding_length", true, 0, &g->n_embd, err)) ||
        (st = model_get_u32(f, ARCH, "block_count", true, 0, &g->n_layers, err)) ||
        (st = model_get_u32(f, ARCH, "feed_forward_length", true, 0, &g->n_ff, err)) ||
        (st = model_get_u32(f, ARCH, "attention.head_count", true, 0, &g->n_heads, err)) ||
        (st = model_get_u32(f, ARCH, "context_length", false, 8192, &g->n_ctx_train, err)) ||
        (st = model_get_f32(f, ARCH, "attention.layer_norm_rms_epsilon", false, 1e-6f, &g->eps, err)))
        return st;
    if (g->n_embd == 0 || g->n_embd > 65536 || g->n_layers == 0 || g->n_layers > MAX_LAYERS || g->n_ff == 0 ||
        g->n_ff > 1048576 || g->n_heads == 0 || g->n_heads > 1024)
        return error_set(err, HEARTH_ERR_FORMAT,
                         ARCH ": implausible sizes (embedding %u, layers %u, feed-forward %u, heads %u)", g->n_embd,
                         g->n_layers, g->n_ff, g->n_heads);
    if ((st = model_get_u32(f, ARCH, "attention.head_count_kv", false, g->n_heads, &g->n_kv_heads, err)) ||
        (st = model_get_u32(f, ARCH, "attention.key_length", false, g->n_embd / g->n_heads, &g->head_dim_k, err)) ||
        (st = model_get_u32(f, ARCH, "attention.value_length", false, g->head_dim_k, &g->head_dim_v, err)) ||
        (st = model_get_u32(f, ARCH, "attention.sliding_window", false, 4096, &g->window, err)))
        return st;
    if (g->n_kv_heads == 0 || g->n_heads % g->n_kv_heads != 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.head_count_kv: %u does not divide %u heads",
                         g->n_kv_heads, g->n_heads);
    if (g->head_dim_k == 0 || g->head_dim_k > MAX_HEAD_DIM || g->head_dim_k % 2 || g->head_dim_v == 0 ||
        g->head_dim_v > MAX_HEAD_DIM)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ": head sizes %u/%u: must be even and at most %d",
                         g->head_dim_k, g->head_dim_v, MAX_HEAD_DIM);
    if (g->window == 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.sliding_window: must be positive");

    /* Linear RoPE scaling (the 4B and larger checkpoints) applies to global layers only. */
    if ((st = model_read_rope(f, ARCH, 1000000.0f, &g->rope_global, err)))
        return st;
    g->rope_global.layout = g->rope_local.layout = OPS_ROPE_NEOX;
    g->rope_global.n_dims = g->rope_local.n_dims = (int32_t)g->head_dim_k;
    g->rope_local.freq_base = 10000.0f;
    g->rope_local.freq_scale = 1.0f;
    /* Gemma 3 27B scales queries by 1/sqrt(n_embd / n_heads); the others by 1/sqrt(head size). */
    g->attn_scale = g->n_layers == 62 ? 1.0f / sqrtf((float)(g->n_embd / g->n_heads))
                                      : 1.0f / sqrtf((float)g->head_dim_k);
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, const gemma3 *g, uint32_t il, gemma3_layer *l,
                                hearth_error *err)
{
    char name[96];
    hearth_status st = HEARTH_OK;
    int64_t d = g->n_embd, q_dim = (int64_t)g->n_heads * g->head_dim_k;
    int64_t k_dim = (int64_t)g->n_kv_heads * g->head_dim_k, v_dim = (int64_t)g->n_kv_heads * g->head_dim_v;
    int64_t o_dim = (int64_t)g->n_heads * g->head_dim_v;
#define VEC(field, suffix, n) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_vector(f, name, n, &l->field, err))
#define MAT(field, suffix, cols, rows) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_matrix(f, name, cols, rows, &l->field, err))
    if ((st = VEC(attn_norm, "attn_norm", d)) || (st = VEC(q_norm, "attn_q_norm", g->head_dim_k)) ||
        (st = VEC(k_norm, "attn_k_norm", g->head_dim_k)) ||
        (st = VEC(post_attn_norm, "post_attention_norm", d)) || (st = VEC(ffn_norm, "ffn_norm", d)) ||
        (st = VEC(post_ffn_norm, "post_ffw_norm", d)) || (st = MAT(wq, "attn_q", d, q_dim)) ||
        (st = MAT(wk, "attn_k", d, k_dim)) || (st = MAT(wv, "attn_v", d, v_dim)) ||
        (st = MAT(wo, "attn_output", o_dim, d)) || (st = MAT(gate, "ffn_gate", d, g->n_ff)) ||
        (st = MAT(up, "ffn_up", d, g->n_ff)) || (st = MAT(down, "ffn_down", g->n_ff, d)))
        return st;
#undef VEC
#undef MAT
    /* Five local layers, then one global: llama.cpp's swa pattern of 6. */
    l->sliding = il % 6 != 5;
    return HEARTH_OK;
}

static void gemma3_free_weights(void *p)
{
    gemma3 *g = p;
    if (g)
        free(g->layers);
    free(g);
}

static hearth_status gemma3_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    *out = NULL;
    gemma3 *g = calloc(1, sizeof *g);
    if (!g)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    hearth_status st = read_hparams(f, g, err);
    if (st == HEARTH_OK) {
        g->n_vocab = (uint32_t)vocab_size(v);
        g->layers = calloc(g->n_layers, sizeof *g->layers);
        if (!g->layers)
            st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (st == HEARTH_OK)
        st = model_bind_embedding_and_output(f, g->n_embd, g->n_vocab, &g->embed, &g->output_norm, &g->output,
                                             err);
    for (uint32_t il = 0; st == HEARTH_OK && il < g->n_layers; il++)
        st = bind_layer(f, g, il, &g->layers[il], err);
    if (st != HEARTH_OK) {
        gemma3_free_weights(g);
        return st;
    }
    *out = g;
    return HEARTH_OK;
}

static int32_t gemma3_n_ctx_train(const void *p)
{
    const gemma3 *g = p;
    return g->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)g->n_ctx_train;
}

static void gemma3_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx);

static hearth_status gemma3_state_create_multi(const void *p, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                               hearth_kv_type kv_type, void **out, model_memory *memory,
                                               hearth_error *err)
{
    const gemma3 *g = p;
    decoder_dims dims = {
        .n_layers = g->n_layers, .n_embd = g->n_embd, .n_ff = g->n_ff,
        .q_dim = (int64_t)g->n_heads * g->head_dim_k, .k_dim = (int64_t)g->n_kv_heads * g->head_dim_k,
        .v_dim = (int64_t)g->n_kv_heads * g->head_dim_v, .attn_dim = (int64_t)g->n_heads * g->head_dim_v,
        .head_dim_k = g->head_dim_k, .head_dim_v = g->head_dim_v,
    };
    decoder_state *s = NULL;
    hearth_status st = decoder_state_create_multi(&dims, gemma3_for_each_matrix, g, n_seq, n_ctx, n_batch,
                                                  decoder_kv_type(kv_type), &s, memory, err);
    *out = s;
    return st;
}

static hearth_status gemma3_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out,
                                         model_memory *memory, hearth_error *err)
{
    return gemma3_state_create_multi(p, 1, n_ctx, n_batch, HEARTH_KV_F16, out, memory, err);
}

/* One layer's per-token work between its matrix products, in steps that
 * ops_parallel_rows runs over token ranges. */
typedef struct gemma3_step {
    const gemma3 *g;
    decoder_state *s;
    const gemma3_layer *l;
    const int32_t *tokens;
    uint32_t il;
    const ops_rope *rope;
} gemma3_step;

static void embed_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    const int64_t d = st->g->n_embd;
    const float embed_scale = sqrtf((float)d);
    for (int64_t t = first; t < last; t++) {
        ops_matrix_row_f32(&st->g->embed, st->tokens[t], st->s->x + t * d);
        ops_scale(st->s->x + t * d, d, embed_scale);
    }
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    const int64_t d = st->g->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->g->eps, st->s->xn + first * d, d, last - first);
}

/* Q and K: norm per head, rotate; then K and V go into the cache. */
static void qk_rope_store_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    const gemma3 *g = st->g;
    const decoder_state *s = st->s;
    const int64_t q_dim = (int64_t)g->n_heads * g->head_dim_k;
    const int64_t kv_k = (int64_t)g->n_kv_heads * g->head_dim_k, kv_v = (int64_t)g->n_kv_heads * g->head_dim_v;
    const int64_t dk = g->head_dim_k;
    ops_rmsnorm_rows(s->q + first * q_dim, dk, st->l->q_norm, dk, g->eps, s->q + first * q_dim, dk,
                     (last - first) * g->n_heads);
    ops_rmsnorm_rows(s->k + first * kv_k, dk, st->l->k_norm, dk, g->eps, s->k + first * kv_k, dk,
                     (last - first) * g->n_kv_heads);
    for (int64_t t = first; t < last; t++) {
        float *q = s->q + t * q_dim, *k = s->k + t * kv_k;
        ops_rope_apply(st->rope, q, g->n_heads, g->head_dim_k, s->positions[t]);
        ops_rope_apply(st->rope, k, g->n_kv_heads, g->head_dim_k, s->positions[t]);
        decoder_state_store_kv(s, st->il, (int32_t)t, k, s->v + t * kv_v);
    }
}

/* x += norm(proj): Gemma norms each block's output before the residual add. */
static void add_normed_projection(const gemma3_step *st, const float *norm, int64_t first, int64_t last)
{
    const int64_t d = st->g->n_embd;
    decoder_state *s = st->s;
    ops_rmsnorm_rows(s->proj + first * d, d, norm, d, st->g->eps, s->proj + first * d, d, last - first);
    ops_add(s->x + first * d, s->proj + first * d, (last - first) * d);
}

/* x += norm(attention output); xn = norm(x) for the feed-forward. */
static void attention_residual_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    const int64_t d = st->g->n_embd;
    add_normed_projection(st, st->l->post_attn_norm, first, last);
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->ffn_norm, d, st->g->eps, st->s->xn + first * d, d,
                     last - first);
}

static void geglu_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    const int64_t ff = st->g->n_ff;
    ops_geglu(st->s->gate + first * ff, st->s->up + first * ff, (last - first) * ff);
}

static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    add_normed_projection(st, st->l->post_ffn_norm, first, last);
}

/* Rows of the outputs (s->outputs), gathered. */
static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const gemma3_step *st = p;
    decoder_output_norm_rows(st->s, st->g->n_embd, st->g->output_norm, st->g->eps, first, last);
}

/* The pass s has planned, over n tokens of any sequences: logits for the
 * planned outputs, one row each in batch order. */
static void gemma3_pass(const gemma3 *g, decoder_state *s, threadpool *pool, const int32_t *tokens, int32_t n,
                        float *logits)
{
    const int64_t d = g->n_embd, ff = g->n_ff;
    const int64_t q_dim = (int64_t)g->n_heads * g->head_dim_k;
    const int64_t kv_k = (int64_t)g->n_kv_heads * g->head_dim_k, kv_v = (int64_t)g->n_kv_heads * g->head_dim_v;
    const int64_t o_dim = (int64_t)g->n_heads * g->head_dim_v;
    gemma3_step step = {.g = g, .s = s, .tokens = tokens};

    ops_parallel_rows(pool, n, embed_rows, &step);

    for (uint32_t il = 0; il < g->n_layers; il++) {
        const gemma3_layer *l = &g->layers[il];
        step.l = l;
        step.il = il;
        step.rope = l->sliding ? &g->rope_local : &g->rope_global;

        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                                (float *[]){s->q, s->k, s->v}, (int64_t[]){q_dim, kv_k, kv_v}, s->act_scratch);
        ops_parallel_rows(pool, n, qk_rope_store_rows, &step);
        ops_attention_args attn = {
            .q = s->q, .q_stride = q_dim, .positions = s->positions, .n_tokens = n, .n_heads = g->n_heads,
            .n_kv_heads = g->n_kv_heads,
            .head_dim_k = g->head_dim_k, .head_dim_v = g->head_dim_v,
            .window = l->sliding ? (int32_t)g->window : 0, .scale = g->attn_scale,
            .out = s->attn, .out_stride = o_dim,
        };
        decoder_state_kv_args(s, il, &attn);
        decoder_attention(pool, s, &attn);
        ops_matmul(pool, &l->wo, s->attn, o_dim, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, attention_residual_rows, &step);
        ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->gate, &l->up}, s->xn, d, n,
                                (float *[]){s->gate, s->up}, (int64_t[]){ff, ff}, s->act_scratch);
        ops_parallel_rows(pool, n, geglu_rows, &step);
        ops_matmul(pool, &l->down, s->gate, ff, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);
    }

    if (s->n_outputs == 0)
        return;
    ops_parallel_rows(pool, s->n_outputs, output_norm_rows, &step);
    ops_matmul(pool, &g->output, s->xn, d, s->n_outputs, logits, g->n_vocab, s->act_scratch);
}

static void gemma3_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                           int32_t pos0, int32_t first_output, float *logits)
{
    decoder_state_plan_run(state, n, pos0, first_output);
    gemma3_pass(p, state, pool, tokens, n, logits);
}

static void gemma3_forward_batch(const void *p, void *state, threadpool *pool, const model_batch *batch,
                                 float *logits)
{
    decoder_state_plan_batch(state, batch);
    gemma3_pass(p, state, pool, batch->tokens, batch->n, logits);
}

static void gemma3_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    gemma3 *g = p;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        gemma3_layer *l = &g->layers[il];
        ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->gate, &l->up, &l->down};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            visit(ms[i], ctx);
    }
    /* Only the output: the embedding is read by row, from the map. */
    visit(&g->output, ctx);
}

const model_arch model_arch_gemma3 = {
    .name = ARCH,
    .load = gemma3_load,
    .free_weights = gemma3_free_weights,
    .state_create = gemma3_state_create,
    .state_free = decoder_state_free,
    .forward = gemma3_forward,
    .state_create_multi = gemma3_state_create_multi,
    .quantized_kv = true,
    .state_parts = decoder_state_parts,
    .forward_batch = gemma3_forward_batch,
    .n_ctx_train = gemma3_n_ctx_train,
    .for_each_matrix = gemma3_for_each_matrix,
};

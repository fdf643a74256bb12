/* gpt-oss, as llama.cpp runs it (LLM_ARCH_OPENAI_MOE, src/models/openai-moe.cpp):
 *
 *   x = embed(tokens)
 *   per layer:  h = norm(x);  q, k, v = h Wq + bq, h Wk + bk, h Wv + bv
 *               q, k = rope(q), rope(k)                     -- YaRN, NeoX pairs
 *               a = attention(q / sqrt(head), k, v, sinks)  -- sliding window on even layers
 *               x = x + a Wo + bo
 *               h = norm(x)                                 -- post_attention_norm
 *               x = x + moe(h)
 *   logits = norm(x) Wout
 *
 * The mixture: router logits h Wr + br, the 4 (n_used) largest chosen and
 * weighted by a softmax over those alone (SOFTMAX_WEIGHT); each expert is
 * ((swiglu_oai(h Wg_e + bg_e, h Wu_e + bu_e)) Wd_e + bd_e), SwiGLU-OAI
 * being g = min(gate, 7), u = clamp(up, -7, 7), g sigmoid(1.702 g) (u + 1).
 * Every attention head has a learned sink logit that joins its softmax's
 * denominator. Layers alternate: even ones attend within a window of
 * attention.sliding_window keys, odd ones to everything (llama.cpp's
 * pattern of 2, sliding first, unless sliding_window_pattern says otherwise).
 *
 * Keys llama.cpp does not read for this architecture are not read here
 * either, so that the two agree on any file: the converter's
 * rope.scaling.yarn_beta_fast / _slow (llama.cpp's defaults 32 and 1, which
 * gpt-oss's config also has, apply) and expert_weights_scale (none). */
#include "model/decoder_state.h"

#include "base/error.h"
#include "ops/attention.h"
#include "ops/moe.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "gpt-oss"
#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024

typedef struct gpt_oss_layer {
    const float *attn_norm, *post_attn_norm;
    ops_matrix wq, wk, wv, wo, router;
    const float *bq, *bk, *bv, *bo, *router_bias, *sinks;
    ops_matrix *experts; /* gate, up, down: n_experts each */
    ops_moe moe;
    bool sliding;
} gpt_oss_layer;

typedef struct gpt_oss {
    uint32_t n_vocab, n_embd, n_layers, n_heads, n_kv_heads, head_dim, n_ctx_train, window;
    uint32_t n_experts, n_experts_used, n_ff_expert, swa_pattern;
    float eps, attn_scale;
    ops_rope rope_full, rope_sliding; /* the sliding layers may have their own base */
    ops_matrix embed, output;
    const float *output_norm;
    gpt_oss_layer *layers;
} gpt_oss;

static hearth_status read_hparams(const gguf_file *f, gpt_oss *g, hearth_error *err)
{
    hearth_status st;
    uint32_t key_length, value_length, rope_dims;
    if ((st = model_get_u32(f, ARCH, "embedding_length", true, 0, &g->n_embd, err)) ||
        (st = model_get_u32(f, ARCH, "block_count", true, 0, &g->n_layers, err)) ||
        (st = model_get_u32(f, ARCH, "attention.head_count", true, 0, &g->n_heads, err)) ||
        (st = model_get_u32(f, ARCH, "context_length", true, 0, &g->n_ctx_train, err)) ||
        (st = model_get_f32(f, ARCH, "attention.layer_norm_rms_epsilon", true, 0.0f, &g->eps, err)) ||
        (st = model_get_u32(f, ARCH, "attention.sliding_window", true, 0, &g->window, err)) ||
        (st = model_get_u32(f, ARCH, "attention.sliding_window_pattern", false, 2, &g->swa_pattern, err)) ||
        (st = model_get_u32(f, ARCH, "expert_count", true, 0, &g->n_experts, err)) ||
        (st = model_get_u32(f, ARCH, "expert_used_count", true, 0, &g->n_experts_used, err)) ||
        (st = model_get_u32(f, ARCH, "expert_feed_forward_length", true, 0, &g->n_ff_expert, err)))
        return st;
    if (g->n_embd == 0 || g->n_embd > 65536 || g->n_layers == 0 || g->n_layers > MAX_LAYERS || g->n_heads == 0 ||
        g->n_heads > 1024 || g->n_ff_expert == 0 || g->n_ff_expert > 1048576)
        return error_set(err, HEARTH_ERR_FORMAT,
                         ARCH ": implausible sizes (embedding %u, layers %u, heads %u, expert feed-forward %u)",
                         g->n_embd, g->n_layers, g->n_heads, g->n_ff_expert);
    if (g->n_experts == 0 || g->n_experts > OPS_MOE_MAX_EXPERTS || g->n_experts_used == 0 ||
        g->n_experts_used > g->n_experts)
        return error_set(err, HEARTH_ERR_FORMAT,
                         ARCH ": %u experts with %u used per token; need 1 to %d experts and 1 to all of them used",
                         g->n_experts, g->n_experts_used, OPS_MOE_MAX_EXPERTS);
    if (g->n_ctx_train == 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".context_length: must be positive");
    if (!(g->eps >= 0.0f) || g->eps > 1.0f)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.layer_norm_rms_epsilon: %g is not in [0, 1]",
                         g->eps);
    if (g->window == 0 || g->window > INT32_MAX)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.sliding_window: %u is not a usable window",
                         g->window);
    if ((st = model_get_u32(f, ARCH, "attention.head_count_kv", false, g->n_heads, &g->n_kv_heads, err)) ||
        (st = model_get_u32(f, ARCH, "attention.key_length", false, g->n_embd / g->n_heads, &key_length, err)) ||
        (st = model_get_u32(f, ARCH, "attention.value_length", false, key_length, &value_length, err)) ||
        (st = model_get_u32(f, ARCH, "rope.dimension_count", false, key_length, &rope_dims, err)))
        return st;
    if (g->n_kv_heads == 0 || g->n_heads % g->n_kv_heads != 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.head_count_kv: %u does not divide %u heads",
                         g->n_kv_heads, g->n_heads);
    /* llama.cpp sizes q, k, v and the output projection by the rotated
     * dimension, so the three must agree for its graph to be this one. */
    if (key_length != value_length || rope_dims != key_length)
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         ARCH ": key_length %u, value_length %u and rope.dimension_count %u must be equal",
                         key_length, value_length, rope_dims);
    if (key_length == 0 || key_length > MAX_HEAD_DIM || key_length % 2)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.key_length: %u must be even and 2 to %d",
                         key_length, MAX_HEAD_DIM);
    g->head_dim = key_length;
    g->attn_scale = 1.0f / sqrtf((float)g->head_dim);

    /* Both kinds of layer rotate with the file's scaling (YaRN for gpt-oss);
     * the sliding ones may have a base of their own. */
    if ((st = model_read_rope_scaling(f, ARCH, 10000.0f, true, &g->rope_full, err)))
        return st;
    g->rope_full.layout = OPS_ROPE_NEOX;
    g->rope_full.n_dims = (int32_t)g->head_dim;
    g->rope_sliding = g->rope_full;
    if ((st = model_get_f32(f, ARCH, "rope.freq_base_swa", false, g->rope_full.freq_base,
                            &g->rope_sliding.freq_base, err)))
        return st;
    if (!(g->rope_sliding.freq_base > 0.0f))
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".rope.freq_base_swa: %g must be positive",
                         g->rope_sliding.freq_base);
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, const gpt_oss *g, uint32_t il, gpt_oss_layer *l,
                                hearth_error *err)
{
    char name[96];
    hearth_status st = HEARTH_OK;
    const int64_t d = g->n_embd, q_dim = (int64_t)g->n_heads * g->head_dim;
    const int64_t kv_dim = (int64_t)g->n_kv_heads * g->head_dim, ff = g->n_ff_expert;
    const int32_t n_exp = (int32_t)g->n_experts;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, il), name)
#define VEC(field, suffix, n) model_bind_vector(f, NAME(suffix), n, &l->field, err)
#define MAT(field, suffix, cols, rows) model_bind_matrix(f, NAME(suffix ".weight"), cols, rows, &l->field, err)
#define BIAS(field, suffix, n) model_bind_optional_vector(f, NAME(suffix ".bias"), n, &l->field, err)
    l->experts = calloc(3 * (size_t)n_exp, sizeof *l->experts);
    if (!l->experts)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    const float *gate_bias, *up_bias, *down_bias;
    if ((st = VEC(attn_norm, "attn_norm.weight", d)) || (st = VEC(post_attn_norm, "post_attention_norm.weight", d)) ||
        (st = MAT(wq, "attn_q", d, q_dim)) || (st = MAT(wk, "attn_k", d, kv_dim)) ||
        (st = MAT(wv, "attn_v", d, kv_dim)) || (st = MAT(wo, "attn_output", q_dim, d)) ||
        (st = BIAS(bq, "attn_q", q_dim)) || (st = BIAS(bk, "attn_k", kv_dim)) || (st = BIAS(bv, "attn_v", kv_dim)) ||
        (st = VEC(bo, "attn_output.bias", d)) || (st = VEC(sinks, "attn_sinks.weight", g->n_heads)) ||
        (st = MAT(router, "ffn_gate_inp", d, n_exp)) || (st = VEC(router_bias, "ffn_gate_inp.bias", n_exp)) ||
        (st = model_bind_experts(f, NAME("ffn_gate_exps.weight"), d, ff, n_exp, l->experts, err)) ||
        (st = model_bind_experts(f, NAME("ffn_up_exps.weight"), d, ff, n_exp, l->experts + n_exp, err)) ||
        (st = model_bind_experts(f, NAME("ffn_down_exps.weight"), ff, d, n_exp, l->experts + 2 * n_exp, err)) ||
        (st = model_bind_optional_table(f, NAME("ffn_gate_exps.bias"), ff, n_exp, &gate_bias, err)) ||
        (st = model_bind_optional_table(f, NAME("ffn_up_exps.bias"), ff, n_exp, &up_bias, err)) ||
        (st = model_bind_optional_table(f, NAME("ffn_down_exps.bias"), d, n_exp, &down_bias, err)))
        return st;
#undef NAME
#undef VEC
#undef MAT
#undef BIAS
    /* llama.cpp's set_swa_pattern(n, dense_first = false): layer il slides
     * unless il % n == n - 1; a pattern of 0 makes every layer slide. */
    l->sliding = g->swa_pattern == 0 || il % g->swa_pattern < g->swa_pattern - 1;
    /* llama.cpp creates the expert biases as required tensors. */
    if (!gate_bias || !up_bias || !down_bias)
        return error_set(err, HEARTH_ERR_FORMAT, "blk.%u: ffn_{gate,up,down}_exps.bias: missing", il);
    l->moe = (ops_moe){
        .n_experts = n_exp, .n_used = (int32_t)g->n_experts_used, .n_embd = d, .n_ff = ff,
        .gating = OPS_MOE_SOFTMAX_WEIGHT, .normalize = false,
        /* llama.cpp does not read expert_weights_scale for this architecture */
        .scale = 0.0f, .activation = OPS_MOE_SWIGLU_OAI,
        .gate = l->experts, .up = l->experts + n_exp, .down = l->experts + 2 * n_exp,
        .gate_bias = gate_bias, .up_bias = up_bias, .down_bias = down_bias,
    };
    return HEARTH_OK;
}

static void gpt_oss_free_weights(void *p)
{
    gpt_oss *g = p;
    if (g && g->layers)
        for (uint32_t il = 0; il < g->n_layers; il++)
            free(g->layers[il].experts);
    if (g)
        free(g->layers);
    free(g);
}

static hearth_status gpt_oss_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    *out = NULL;
    gpt_oss *g = calloc(1, sizeof *g);
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
        gpt_oss_free_weights(g);
        return st;
    }
    *out = g;
    return HEARTH_OK;
}

static int32_t gpt_oss_n_ctx_train(const void *p)
{
    const gpt_oss *g = p;
    return g->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)g->n_ctx_train;
}

static void gpt_oss_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    gpt_oss *g = p;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        gpt_oss_layer *l = &g->layers[il];
        ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->router};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            visit(ms[i], ctx);
        for (uint32_t e = 0; e < 3 * g->n_experts; e++)
            visit(&l->experts[e], ctx);
    }
    /* Only the output: the embedding is read by row, from the map. */
    visit(&g->output, ctx);
}

static hearth_status gpt_oss_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out,
                                          model_memory *memory, hearth_error *err)
{
    const gpt_oss *g = p;
    const int64_t q_dim = (int64_t)g->n_heads * g->head_dim, kv_dim = (int64_t)g->n_kv_heads * g->head_dim;
    decoder_dims dims = {
        .n_layers = g->n_layers, .n_embd = g->n_embd, .n_ff = 0, /* no dense feed-forward */
        .q_dim = q_dim, .k_dim = kv_dim, .v_dim = kv_dim, .attn_dim = q_dim,
        .n_experts = (int32_t)g->n_experts,
        .moe_scratch_bytes = ops_moe_scratch_bytes(&g->layers[0].moe, n_batch),
        .head_dim_k = g->head_dim, .head_dim_v = g->head_dim,
    };
    decoder_state *s = NULL;
    hearth_status st = decoder_state_create(&dims, gpt_oss_for_each_matrix, g, n_ctx, n_batch, &s, memory, err);
    *out = s;
    return st;
}

/* One layer's per-token work between its matrix products, in steps that
 * ops_parallel_rows runs over token ranges. */
typedef struct gpt_oss_step {
    const gpt_oss *g;
    decoder_state *s;
    const gpt_oss_layer *l;
    const ops_rope *rope;
    const int32_t *tokens;
    int32_t first_output;
    uint32_t il;
} gpt_oss_step;

static void embed_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t d = st->g->n_embd;
    for (int64_t t = first; t < last; t++)
        ops_matrix_row_f32(&st->g->embed, st->tokens[t], st->s->x + t * d);
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t d = st->g->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->g->eps, st->s->xn + first * d, d,
                     last - first);
}

/* rows[r] += bias for count rows of n, when the bias exists. */
static void add_bias(float *rows, int64_t stride, const float *bias, int64_t n, int64_t count)
{
    for (int64_t r = 0; bias && r < count; r++)
        ops_add(rows + r * stride, bias, n);
}

/* Q, K, V: biases; Q and K rotate; then K and V go into the (f16) cache. */
static void qkv_rope_store_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const gpt_oss *g = st->g;
    const gpt_oss_layer *l = st->l;
    const decoder_state *s = st->s;
    const int64_t hd = g->head_dim, q_dim = (int64_t)g->n_heads * hd, kv_dim = (int64_t)g->n_kv_heads * hd;
    float *q = s->q + first * q_dim, *k = s->k + first * kv_dim, *v = s->v + first * kv_dim;
    add_bias(q, q_dim, l->bq, q_dim, last - first);
    add_bias(k, kv_dim, l->bk, kv_dim, last - first);
    add_bias(v, kv_dim, l->bv, kv_dim, last - first);
    for (int64_t t = first; t < last; t++, q += q_dim, k += kv_dim, v += kv_dim) {
        ops_rope_apply(st->rope, q, (int32_t)g->n_heads, (int32_t)hd, s->positions[t]);
        ops_rope_apply(st->rope, k, (int32_t)g->n_kv_heads, (int32_t)hd, s->positions[t]);
        decoder_state_store_kv(s, st->il, (int32_t)t, k, v);
    }
}

/* x += attention output + bo; xn = post_attention_norm(x) for the experts. */
static void attention_residual_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t d = st->g->n_embd;
    decoder_state *s = st->s;
    add_bias(s->proj + first * d, d, st->l->bo, d, last - first);
    ops_add(s->x + first * d, s->proj + first * d, (last - first) * d);
    ops_rmsnorm_rows(s->x + first * d, d, st->l->post_attn_norm, d, st->g->eps, s->xn + first * d, d,
                     last - first);
}

static void router_bias_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t n_exp = st->g->n_experts;
    add_bias(st->s->router_logits + first * n_exp, n_exp, st->l->router_bias, n_exp, last - first);
}

static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t d = st->g->n_embd;
    ops_add(st->s->x + first * d, st->s->proj + first * d, (last - first) * d);
}

/* Rows counted from first_output: only those rows need logits. */
static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const gpt_oss_step *st = p;
    const int64_t d = st->g->n_embd;
    const int64_t t = st->first_output + first;
    ops_rmsnorm_rows(st->s->x + t * d, d, st->g->output_norm, d, st->g->eps, st->s->xn + t * d, d, last - first);
}

static void gpt_oss_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                            int32_t pos0, int32_t first_output, float *logits)
{
    const gpt_oss *g = p;
    decoder_state *s = state;
    const int64_t d = g->n_embd, hd = g->head_dim;
    const int64_t q_dim = (int64_t)g->n_heads * hd, kv_dim = (int64_t)g->n_kv_heads * hd;
    gpt_oss_step step = {.g = g, .s = s, .tokens = tokens, .first_output = first_output};

    decoder_state_plan_run(s, n, pos0, first_output); /* positions and cache rows */
    ops_parallel_rows(pool, n, embed_rows, &step);

    for (uint32_t il = 0; il < g->n_layers; il++) {
        const gpt_oss_layer *l = &g->layers[il];
        step.l = l;
        step.rope = l->sliding ? &g->rope_sliding : &g->rope_full;
        step.il = il;

        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                                (float *[]){s->q, s->k, s->v}, (int64_t[]){q_dim, kv_dim, kv_dim}, s->act_scratch);
        ops_parallel_rows(pool, n, qkv_rope_store_rows, &step);
        ops_attention_args attn = {
            .q = s->q, .q_stride = q_dim, .positions = s->positions, .n_tokens = n, .n_heads = (int32_t)g->n_heads,
            .n_kv_heads = (int32_t)g->n_kv_heads, .head_dim_k = (int32_t)hd, .head_dim_v = (int32_t)hd,
            .window = l->sliding ? (int32_t)g->window : 0, .scale = g->attn_scale, .sinks = l->sinks,
            .out = s->attn, .out_stride = q_dim,
        };
        decoder_state_kv_args(s, il, &attn);
        ops_attention(pool, &attn);
        ops_matmul(pool, &l->wo, s->attn, q_dim, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, attention_residual_rows, &step);
        ops_matmul(pool, &l->router, s->xn, d, n, s->router_logits, g->n_experts, s->act_scratch);
        ops_parallel_rows(pool, n, router_bias_rows, &step);
        ops_moe_forward(pool, &l->moe, s->router_logits, g->n_experts, s->xn, d, n, s->proj, d, s->moe_scratch);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);
    }

    if (first_output >= n)
        return;
    ops_parallel_rows(pool, n - first_output, output_norm_rows, &step);
    ops_matmul(pool, &g->output, s->xn + first_output * d, d, n - first_output, logits, g->n_vocab,
               s->act_scratch);
}

const model_arch model_arch_gpt_oss = {
    .name = ARCH,
    .load = gpt_oss_load,
    .free_weights = gpt_oss_free_weights,
    .state_create = gpt_oss_state_create,
    .state_free = decoder_state_free,
    .state_parts = decoder_state_parts,
    .forward = gpt_oss_forward,
    .n_ctx_train = gpt_oss_n_ctx_train,
    .for_each_matrix = gpt_oss_for_each_matrix,
};

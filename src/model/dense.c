/* The dense decoder of Llama, Qwen 2 and Qwen 3: see dense.h. The head size
 * is its own hyper-parameter (key_length): Qwen 3 0.6B has 16 heads of 128
 * over an embedding of 1024. */
#include "model/dense.h"
#include "model/decoder_state.h"

#include "base/error.h"
#include "ops/attention.h"
#include "ops/moe.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024

typedef struct dense_layer {
    const float *attn_norm, *q_norm, *k_norm, *ffn_norm; /* [E], [D], [D], [E]; the q/k norms may be NULL */
    ops_matrix wq, wk, wv, wo;                          /* E -> H*D, E -> Hkv*D, E -> Hkv*D, H*D -> E */
    ops_matrix gate, up, down;                          /* E -> F, E -> F, F -> E */
    /* Biases, NULL when absent: [H*D], [Hkv*D], [Hkv*D], [E], [F], [F], [E] */
    const float *bq, *bk, *bv, *bo, *b_gate, *b_up, *b_down;
    /* A mixture of experts instead of gate, up and down: the router (E ->
     * n_experts) and the experts' slices (gate, up, down: n_experts each). */
    ops_matrix router;
    ops_matrix *experts;
    ops_moe moe;
} dense_layer;

typedef struct dense {
    const dense_traits *traits;
    uint32_t n_vocab, n_embd, n_layers, n_ff, n_heads, n_kv_heads, head_dim, n_ctx_train;
    uint32_t n_experts, n_experts_used, n_ff_expert; /* 0 experts: a dense feed-forward */
    float eps, attn_scale, expert_weights_scale;
    ops_rope rope;
    ops_matrix embed, output;              /* V rows of E */
    const float *output_norm, *output_bias; /* [E], [V] or NULL */
    dense_layer *layers;
} dense;


static hearth_status read_hparams(const gguf_file *f, dense *m, hearth_error *err)
{
    const char *arch = m->traits->name;
    hearth_status st;
    uint32_t n_experts = 0;
    if ((st = model_get_u32(f, arch, "embedding_length", true, 0, &m->n_embd, err)) ||
        (st = model_get_u32(f, arch, "block_count", true, 0, &m->n_layers, err)) ||
        (st = model_get_u32(f, arch, "feed_forward_length", true, 0, &m->n_ff, err)) ||
        (st = model_get_u32(f, arch, "attention.head_count", true, 0, &m->n_heads, err)) ||
        (st = model_get_u32(f, arch, "context_length", true, 0, &m->n_ctx_train, err)) ||
        (st = model_get_f32(f, arch, "attention.layer_norm_rms_epsilon", true, 0.0f, &m->eps, err)) ||
        (st = model_get_u32(f, arch, "expert_count", false, 0, &n_experts, err)) ||
        (st = model_read_rope(f, arch, 10000.0f, &m->rope, err)))
        return st;
    if (m->traits->experts) {
        m->n_experts = n_experts;
        if ((st = model_get_u32(f, arch, "expert_used_count", true, 0, &m->n_experts_used, err)) ||
            (st = model_get_f32(f, arch, "expert_weights_scale", false, 0.0f, &m->expert_weights_scale, err)))
            return st;
        if (n_experts == 0 || n_experts > OPS_MOE_MAX_EXPERTS || m->n_experts_used == 0 ||
            m->n_experts_used > n_experts)
            return error_set(err, HEARTH_ERR_FORMAT,
                             "%s: %u experts with %u used per token; need 1 to %d experts and 1 to all of them used",
                             arch, n_experts, m->n_experts_used, OPS_MOE_MAX_EXPERTS);
        if ((st = model_get_u32(f, arch, "expert_feed_forward_length", false, m->n_ff / m->n_experts_used,
                                &m->n_ff_expert, err)))
            return st;
        if (m->n_ff_expert == 0 || m->n_ff_expert > 1048576)
            return error_set(err, HEARTH_ERR_FORMAT, "%s.expert_feed_forward_length: implausible %u", arch,
                             m->n_ff_expert);
    }
    if (m->traits->refuse_experts && n_experts > 0)
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "%s.expert_count: %u; mixture-of-experts %s files are not supported", arch, n_experts,
                         arch);
    if (m->n_embd == 0 || m->n_embd > 65536 || m->n_layers == 0 || m->n_layers > MAX_LAYERS || m->n_ff == 0 ||
        m->n_ff > 1048576 || m->n_heads == 0 || m->n_heads > 1024)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "%s: implausible sizes (embedding %u, layers %u, feed-forward %u, heads %u)", arch,
                         m->n_embd, m->n_layers, m->n_ff, m->n_heads);
    if (m->n_ctx_train == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.context_length: must be positive", arch);
    if (!(m->eps >= 0.0f) || m->eps > 1.0f)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.attention.layer_norm_rms_epsilon: %g is not in [0, 1]", arch,
                         m->eps);

    uint32_t head_dim_v, rope_dims;
    if ((st = model_get_u32(f, arch, "attention.head_count_kv", false, m->n_heads, &m->n_kv_heads, err)) ||
        (st = model_get_u32(f, arch, "attention.key_length", false, m->n_embd / m->n_heads, &m->head_dim, err)) ||
        (st = model_get_u32(f, arch, "attention.value_length", false, m->head_dim, &head_dim_v, err)) ||
        (st = model_get_u32(f, arch, "rope.dimension_count", false, m->head_dim, &rope_dims, err)))
        return st;
    if (m->n_kv_heads == 0 || m->n_heads % m->n_kv_heads != 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.attention.head_count_kv: %u does not divide %u heads", arch,
                         m->n_kv_heads, m->n_heads);
    if (m->head_dim == 0 || m->head_dim > MAX_HEAD_DIM || m->head_dim % 2)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.attention.key_length: %u must be even and 2 to %d", arch,
                         m->head_dim, MAX_HEAD_DIM);
    /* llama.cpp's graphs for these architectures assume both (they assert them). */
    if (head_dim_v != m->head_dim)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "%s.attention.value_length: %u differs from key_length %u",
                         arch, head_dim_v, m->head_dim);
    if (rope_dims != m->head_dim)
        return error_set(err, HEARTH_ERR_UNSUPPORTED,
                         "%s.rope.dimension_count: %u, but this architecture rotates whole heads of %u", arch,
                         rope_dims, m->head_dim);
    m->rope.layout = m->traits->rope_layout;
    m->rope.n_dims = (int32_t)m->head_dim;
    m->attn_scale = 1.0f / sqrtf((float)m->head_dim);
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, const dense *m, uint32_t il, dense_layer *l, hearth_error *err)
{
    const dense_traits *tr = m->traits;
    char name[96];
    hearth_status st = HEARTH_OK;
    int64_t d = m->n_embd, ff = m->n_ff;
    int64_t q_dim = (int64_t)m->n_heads * m->head_dim, kv_dim = (int64_t)m->n_kv_heads * m->head_dim;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, il), name)
#define VEC(field, suffix, n) model_bind_vector(f, NAME(suffix ".weight"), n, &l->field, err)
#define MAT(field, suffix, cols, rows) model_bind_matrix(f, NAME(suffix ".weight"), cols, rows, &l->field, err)
#define BIAS(field, suffix, n) model_bind_optional_vector(f, NAME(suffix ".bias"), n, &l->field, err)
    if ((st = VEC(attn_norm, "attn_norm", d)) || (st = VEC(ffn_norm, "ffn_norm", d)) ||
        (st = MAT(wq, "attn_q", d, q_dim)) || (st = MAT(wk, "attn_k", d, kv_dim)) ||
        (st = MAT(wv, "attn_v", d, kv_dim)) || (st = MAT(wo, "attn_output", q_dim, d)) ||
        (st = BIAS(bq, "attn_q", q_dim)) || (st = BIAS(bk, "attn_k", kv_dim)) || (st = BIAS(bv, "attn_v", kv_dim)))
        return st;
    if (m->n_experts > 0) {
        const int32_t n_exp = (int32_t)m->n_experts;
        const int64_t ff_exp = m->n_ff_expert;
        l->experts = calloc(3 * (size_t)n_exp, sizeof *l->experts);
        if (!l->experts)
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        if ((st = MAT(router, "ffn_gate_inp", d, n_exp)) ||
            (st = model_bind_experts(f, NAME("ffn_gate_exps.weight"), d, ff_exp, n_exp, l->experts, err)) ||
            (st = model_bind_experts(f, NAME("ffn_up_exps.weight"), d, ff_exp, n_exp, l->experts + n_exp, err)) ||
            (st = model_bind_experts(f, NAME("ffn_down_exps.weight"), ff_exp, d, n_exp, l->experts + 2 * n_exp,
                                     err)))
            return st;
        l->moe = (ops_moe){
            .n_experts = n_exp, .n_used = (int32_t)m->n_experts_used, .n_embd = d, .n_ff = ff_exp,
            .gating = OPS_MOE_SOFTMAX, .normalize = true, .scale = m->expert_weights_scale,
            .activation = OPS_MOE_SWIGLU,
            .gate = l->experts, .up = l->experts + n_exp, .down = l->experts + 2 * n_exp,
        };
    } else if ((st = MAT(gate, "ffn_gate", d, ff)) || (st = MAT(up, "ffn_up", d, ff)) ||
               (st = MAT(down, "ffn_down", ff, d))) {
        return st;
    }
    if (tr->qk_norm && ((st = VEC(q_norm, "attn_q_norm", m->head_dim)) || (st = VEC(k_norm, "attn_k_norm", m->head_dim))))
        return st;
    if (tr->attn_output_bias && (st = BIAS(bo, "attn_output", d)))
        return st;
    if (tr->ffn_bias &&
        ((st = BIAS(b_gate, "ffn_gate", ff)) || (st = BIAS(b_up, "ffn_up", ff)) || (st = BIAS(b_down, "ffn_down", d))))
        return st;
#undef NAME
#undef VEC
#undef MAT
#undef BIAS
    return HEARTH_OK;
}

void dense_free_weights(void *p)
{
    dense *m = p;
    for (uint32_t il = 0; m && m->layers && il < m->n_layers; il++)
        free(m->layers[il].experts);
    if (m)
        free(m->layers);
    free(m);
}

hearth_status dense_load(const dense_traits *traits, const gguf_file *f, const vocab *v, void **out,
                         hearth_error *err)
{
    *out = NULL;
    dense *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    m->traits = traits;
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
    if (st == HEARTH_OK && traits->output_bias)
        st = model_bind_optional_vector(f, "output.bias", m->n_vocab, &m->output_bias, err);
    if (st == HEARTH_OK && traits->rope_freqs)
        st = model_bind_optional_vector(f, "rope_freqs.weight", m->head_dim / 2, &m->rope.freq_factors, err);
    for (uint32_t il = 0; st == HEARTH_OK && il < m->n_layers; il++)
        st = bind_layer(f, m, il, &m->layers[il], err);
    if (st != HEARTH_OK) {
        dense_free_weights(m);
        return st;
    }
    *out = m;
    return HEARTH_OK;
}

int32_t dense_n_ctx_train(const void *p)
{
    const dense *m = p;
    return m->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)m->n_ctx_train;
}

hearth_status dense_state_create_multi(const void *p, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                       hearth_kv_type kv_type, void **out, model_memory *memory, hearth_error *err)
{
    const dense *m = p;
    int64_t q_dim = (int64_t)m->n_heads * m->head_dim, kv_dim = (int64_t)m->n_kv_heads * m->head_dim;
    decoder_dims dims = {
        .n_layers = m->n_layers, .n_embd = m->n_embd, .n_ff = m->n_experts ? 0 : m->n_ff, /* gate, up buffers */
        .q_dim = q_dim, .k_dim = kv_dim, .v_dim = kv_dim, .attn_dim = q_dim,
        .n_experts = (int32_t)m->n_experts,
        .moe_scratch_bytes = m->n_experts ? ops_moe_scratch_bytes(&m->layers[0].moe, n_batch) : 0,
        .head_dim_k = m->head_dim, .head_dim_v = m->head_dim,
    };
    decoder_state *s = NULL;
    hearth_status st = decoder_state_create_multi(&dims, dense_for_each_matrix, m, n_seq, n_ctx, n_batch,
                                                  decoder_kv_type(kv_type), &s, memory, err);
    *out = s;
    return st;
}

hearth_status dense_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out, model_memory *memory,
                                 hearth_error *err)
{
    return dense_state_create_multi(p, 1, n_ctx, n_batch, HEARTH_KV_F16, out, memory, err);
}

/* One layer's per-token work between its matrix products, in steps that
 * ops_parallel_rows runs over token ranges. */
typedef struct dense_step {
    const dense *m;
    decoder_state *s;
    const dense_layer *l;
    const int32_t *tokens;
    uint32_t il;
} dense_step;

static void embed_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const int64_t d = st->m->n_embd;
    for (int64_t t = first; t < last; t++)
        ops_matrix_row_f32(&st->m->embed, st->tokens[t], st->s->x + t * d);
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const int64_t d = st->m->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->m->eps, st->s->xn + first * d, d,
                     last - first);
}

/* rows[r] += bias for count rows of n, when the bias exists. */
static void add_bias(float *rows, const float *bias, int64_t n, int64_t count)
{
    for (int64_t r = 0; bias && r < count; r++)
        ops_add(rows + r * n, bias, n);
}

/* Q, K, V: biases; Q and K: norm per head, rotate; then K and V go into the
 * cache. */
static void qkv_rope_store_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const dense *m = st->m;
    const dense_layer *l = st->l;
    const decoder_state *s = st->s;
    const int64_t hd = m->head_dim, q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    float *q = s->q + first * q_dim, *k = s->k + first * kv_dim, *v = s->v + first * kv_dim;
    add_bias(q, l->bq, q_dim, last - first);
    add_bias(k, l->bk, kv_dim, last - first);
    add_bias(v, l->bv, kv_dim, last - first);
    if (l->q_norm) {
        ops_rmsnorm_rows(q, hd, l->q_norm, hd, m->eps, q, hd, (last - first) * m->n_heads);
        ops_rmsnorm_rows(k, hd, l->k_norm, hd, m->eps, k, hd, (last - first) * m->n_kv_heads);
    }
    for (int64_t t = first; t < last; t++, q += q_dim, k += kv_dim, v += kv_dim) {
        ops_rope_apply(&m->rope, q, (int32_t)m->n_heads, (int32_t)hd, s->positions[t]);
        ops_rope_apply(&m->rope, k, (int32_t)m->n_kv_heads, (int32_t)hd, s->positions[t]);
        decoder_state_store_kv(s, st->il, (int32_t)t, k, v);
    }
}

/* x += attention output; xn = norm(x) for the feed-forward. */
static void attention_residual_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const int64_t d = st->m->n_embd;
    decoder_state *s = st->s;
    add_bias(s->proj + first * d, st->l->bo, d, last - first);
    ops_add(s->x + first * d, s->proj + first * d, (last - first) * d);
    ops_rmsnorm_rows(s->x + first * d, d, st->l->ffn_norm, d, st->m->eps, s->xn + first * d, d, last - first);
}

static void swiglu_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const int64_t ff = st->m->n_ff;
    add_bias(st->s->gate + first * ff, st->l->b_gate, ff, last - first);
    add_bias(st->s->up + first * ff, st->l->b_up, ff, last - first);
    ops_swiglu(st->s->gate + first * ff, st->s->up + first * ff, (last - first) * ff);
}

static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    const int64_t d = st->m->n_embd;
    add_bias(st->s->proj + first * d, st->l->b_down, d, last - first);
    ops_add(st->s->x + first * d, st->s->proj + first * d, (last - first) * d);
}

/* Rows of the outputs (s->outputs), gathered. */
static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const dense_step *st = p;
    decoder_output_norm_rows(st->s, st->m->n_embd, st->m->output_norm, st->m->eps, first, last);
}

/* The pass s has planned, over n tokens of any sequences: logits for the
 * planned outputs, one row each in batch order. */
static void dense_pass(const dense *m, decoder_state *s, threadpool *pool, const int32_t *tokens, int32_t n,
                       float *logits)
{
    const int64_t d = m->n_embd, ff = m->n_ff, hd = m->head_dim;
    const int64_t q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    dense_step step = {.m = m, .s = s, .tokens = tokens};

    ops_parallel_rows(pool, n, embed_rows, &step);

    for (uint32_t il = 0; il < m->n_layers; il++) {
        const dense_layer *l = &m->layers[il];
        step.l = l;
        step.il = il;

        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                                (float *[]){s->q, s->k, s->v}, (int64_t[]){q_dim, kv_dim, kv_dim}, s->act_scratch);
        ops_parallel_rows(pool, n, qkv_rope_store_rows, &step);
        ops_attention_args attn = {
            .q = s->q, .q_stride = q_dim, .positions = s->positions, .n_tokens = n, .n_heads = m->n_heads,
            .n_kv_heads = m->n_kv_heads, .head_dim_k = m->head_dim, .head_dim_v = m->head_dim, .window = 0,
            .scale = m->attn_scale, .out = s->attn, .out_stride = q_dim,
        };
        decoder_state_kv_args(s, il, &attn);
        decoder_attention(pool, s, &attn);
        ops_matmul(pool, &l->wo, s->attn, q_dim, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, attention_residual_rows, &step);
        if (l->experts) {
            ops_matmul(pool, &l->router, s->xn, d, n, s->router_logits, m->n_experts, s->act_scratch);
            ops_moe_forward(pool, &l->moe, s->router_logits, m->n_experts, s->xn, d, n, s->proj, d,
                            s->moe_scratch);
            ops_parallel_rows(pool, n, ffn_residual_rows, &step);
            continue;
        }
        ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->gate, &l->up}, s->xn, d, n,
                                (float *[]){s->gate, s->up}, (int64_t[]){ff, ff}, s->act_scratch);
        ops_parallel_rows(pool, n, swiglu_rows, &step);
        ops_matmul(pool, &l->down, s->gate, ff, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);
    }

    if (s->n_outputs == 0)
        return;
    ops_parallel_rows(pool, s->n_outputs, output_norm_rows, &step);
    ops_matmul(pool, &m->output, s->xn, d, s->n_outputs, logits, m->n_vocab, s->act_scratch);
    add_bias(logits, m->output_bias, m->n_vocab, s->n_outputs);
}

void dense_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n, int32_t pos0,
                   int32_t first_output, float *logits)
{
    decoder_state_plan_run(state, n, pos0, first_output);
    dense_pass(p, state, pool, tokens, n, logits);
}

void dense_forward_batch(const void *p, void *state, threadpool *pool, const model_batch *batch, float *logits)
{
    decoder_state_plan_batch(state, batch);
    dense_pass(p, state, pool, batch->tokens, batch->n, logits);
}

void dense_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    dense *m = p;
    for (uint32_t il = 0; il < m->n_layers; il++) {
        dense_layer *l = &m->layers[il];
        ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            visit(ms[i], ctx);
        if (l->experts) {
            visit(&l->router, ctx);
            for (uint32_t e = 0; e < 3 * m->n_experts; e++)
                visit(&l->experts[e], ctx);
        } else {
            visit(&l->gate, ctx);
            visit(&l->up, ctx);
            visit(&l->down, ctx);
        }
    }
    /* Only the output: the embedding is read by row, from the map. */
    visit(&m->output, ctx);
}

/* Qwen3.5 and Qwen3.6, as llama.cpp runs them (LLM_ARCH_QWEN35, _QWEN35MOE:
 * src/models/qwen35.cpp, qwen35moe.cpp, delta-net-base.cpp): a hybrid of
 * Gated DeltaNet layers and gated full attention, three to one.
 *
 *   x = embed(tokens)
 *   per layer:  h = norm(x)
 *     DeltaNet (unless (il + 1) % full_attention_interval == 0):
 *               qkv = conv(h Wqkv)                         -- causal, SiLU; state: last K-1 inputs
 *               q, k = l2norm(q), l2norm(k)  per key head
 *               beta = sigmoid(h Wbeta),  g = ssm_a * softplus(h Walpha + dt_bias)   per value head
 *               o = delta_rule(q, k, v, g, beta)           -- ops/deltanet.h; state: one matrix per value head
 *               a = (norm(o) * silu(h Wgate)) Wout         -- norm per head
 *     attention:
 *               q|gate = h Wq  (per head: head_dim of query, head_dim of gate)
 *               q, k = rope(norm(q)), rope(norm(k))          -- partial NeoX RoPE (IMRoPE for text)
 *               a = (attention(q, k, v) * sigmoid(gate)) Wo
 *               x = x + a
 *               h = norm(x)                                   -- post_attention_norm
 *               x = x + ffn(h)
 *   logits = norm(x) Wout
 *
 * ffn: SwiGLU (qwen35), or (qwen35moe) the mixture of experts (softmax over
 * all, top n_used, renormalised) plus a shared SwiGLU expert scaled by
 * sigmoid(h . w_shexp_gate).
 *
 * Text positions: llama.cpp's IMRoPE gives all three position components
 * the token's position and the fourth 0, so a rotated pair turns by the
 * token's position unless its section is the fourth, which turns by 0 (a
 * freq factor of infinity here); with the published sections every rotated
 * pair turns.
 *
 * The session state: an f16 KV cache for the attention layers only, and per
 * DeltaNet layer the convolution's last K-1 inputs and the value heads'
 * state matrices (f32). That state sums up the whole past, so a session
 * continues where it stopped or starts again at 0 (model_arch.recurrent).
 *
 * Multi-token prediction blocks (nextn_predict_layers, the last blocks of
 * the file) are not run: llama.cpp skips them too unless asked to draft. */
#include "model/decoder_state.h"

#include "base/error.h"
#include "ops/attention.h"
#include "ops/deltanet.h"
#include "ops/moe.h"
#include "ops/ops.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024

typedef struct qwen35_layer {
    bool recurrent;
    int32_t slot; /* index among the layers of its kind: KV cache or recurrent state */
    const float *attn_norm, *post_norm;
    /* DeltaNet */
    ops_matrix wqkv, wgate, wbeta, walpha, wout;
    const float *conv, *dt_bias, *ssm_a, *ssm_norm;
    /* attention */
    ops_matrix wq, wk, wv, wo;
    const float *q_norm, *k_norm;
    /* feed-forward: dense, or the mixture and its shared expert */
    ops_matrix gate, up, down;
    ops_matrix router, *experts;
    ops_moe moe;
    ops_matrix sh_gate, sh_up, sh_down;
    const float *sh_gate_inp;
} qwen35_layer;

typedef struct qwen35 {
    const char *arch;
    bool moe;
    uint32_t n_vocab, n_embd, n_layers, n_mtp_layers, n_heads, n_kv_heads, head_dim, n_ctx_train, n_ff;
    uint32_t n_attn_layers, n_recurrent_layers;
    /* DeltaNet: key heads, value heads, head size (keys and values), conv kernel */
    uint32_t n_k_heads, n_v_heads, ssm_head, conv_kernel;
    int64_t conv_dim, inner;
    uint32_t n_experts, n_experts_used, n_ff_expert, n_ff_shared;
    float eps, attn_scale, expert_scale;
    ops_rope rope;
    float *rope_factors; /* NULL, or infinity for the pairs of the fourth section */
    ops_matrix embed, output;
    const float *output_norm;
    qwen35_layer *layers;
} qwen35;

static hearth_status read_hparams(const gguf_file *f, qwen35 *m, hearth_error *err)
{
    hearth_status st;
    const char *a = m->arch;
    uint32_t n_blocks, key_length, value_length, rope_dims, interval, inner;
    if ((st = model_get_u32(f, a, "embedding_length", true, 0, &m->n_embd, err)) ||
        (st = model_get_u32(f, a, "block_count", true, 0, &n_blocks, err)) ||
        (st = model_get_u32(f, a, "nextn_predict_layers", false, 0, &m->n_mtp_layers, err)) ||
        (st = model_get_u32(f, a, "attention.head_count", true, 0, &m->n_heads, err)) ||
        (st = model_get_u32(f, a, "context_length", true, 0, &m->n_ctx_train, err)) ||
        (st = model_get_f32(f, a, "attention.layer_norm_rms_epsilon", true, 0.0f, &m->eps, err)) ||
        (st = model_get_u32(f, a, "ssm.conv_kernel", true, 0, &m->conv_kernel, err)) ||
        (st = model_get_u32(f, a, "ssm.inner_size", true, 0, &inner, err)) ||
        (st = model_get_u32(f, a, "ssm.state_size", true, 0, &m->ssm_head, err)) ||
        (st = model_get_u32(f, a, "ssm.time_step_rank", true, 0, &m->n_v_heads, err)) ||
        (st = model_get_u32(f, a, "ssm.group_count", true, 0, &m->n_k_heads, err)) ||
        (st = model_get_u32(f, a, "full_attention_interval", false, 4, &interval, err)))
        return st;
    if (m->n_mtp_layers >= n_blocks)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.nextn_predict_layers: %u of %u blocks leaves no layers", a,
                         m->n_mtp_layers, n_blocks);
    m->n_layers = n_blocks - m->n_mtp_layers;
    if (m->n_embd == 0 || m->n_embd > 65536 || m->n_layers > MAX_LAYERS || m->n_heads == 0 || m->n_heads > 1024)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: implausible sizes (embedding %u, layers %u, heads %u)", a,
                         m->n_embd, m->n_layers, m->n_heads);
    if (m->n_ctx_train == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.context_length: must be positive", a);
    if (!(m->eps >= 0.0f) || m->eps > 1.0f)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.attention.layer_norm_rms_epsilon: %g is not in [0, 1]", a,
                         m->eps);
    if (interval == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.full_attention_interval: must be positive", a);
    /* DeltaNet sizes: llama.cpp takes both head sizes from ssm.state_size and
     * the inner size as value heads x that. */
    if (m->ssm_head == 0 || m->ssm_head > MAX_HEAD_DIM || m->n_k_heads == 0 || m->n_v_heads == 0 ||
        m->n_v_heads > 4096 || m->n_v_heads % m->n_k_heads != 0 || (uint64_t)m->n_v_heads * m->ssm_head != inner)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "%s.ssm: %u key heads, %u value heads of %u and inner size %u do not fit together "
                         "(value heads must be a multiple of key heads, inner = value heads x state size, state size "
                         "at most %d)",
                         a, m->n_k_heads, m->n_v_heads, m->ssm_head, inner, MAX_HEAD_DIM);
    if (m->conv_kernel < 1 || m->conv_kernel > 64)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.ssm.conv_kernel: %u is not 1 to 64", a, m->conv_kernel);
    m->inner = inner;
    char key[96];
    m->conv_dim = 2 * (int64_t)m->n_k_heads * m->ssm_head + m->inner;

    if ((st = model_get_u32(f, a, "attention.head_count_kv", false, m->n_heads, &m->n_kv_heads, err)) ||
        (st = model_get_u32(f, a, "attention.key_length", false, m->n_embd / m->n_heads, &key_length, err)) ||
        (st = model_get_u32(f, a, "attention.value_length", false, key_length, &value_length, err)) ||
        (st = model_get_u32(f, a, "rope.dimension_count", false, key_length, &rope_dims, err)))
        return st;
    if (m->n_kv_heads == 0 || m->n_heads % m->n_kv_heads != 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.attention.head_count_kv: %u does not divide %u heads", a,
                         m->n_kv_heads, m->n_heads);
    if (key_length != value_length || key_length == 0 || key_length > MAX_HEAD_DIM)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: key_length %u and value_length %u must be equal, 1 to %d", a,
                         key_length, value_length, MAX_HEAD_DIM);
    if (rope_dims == 0 || rope_dims % 2 || rope_dims > key_length)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.rope.dimension_count: %u must be even and at most %u", a,
                         rope_dims, key_length);
    m->head_dim = key_length;
    m->attn_scale = 1.0f / sqrtf((float)m->head_dim);
    float attn_scale;
    if ((st = model_get_f32(f, a, "attention.scale", false, 0.0f, &attn_scale, err)))
        return st;
    if (attn_scale != 0.0f)
        m->attn_scale = attn_scale;

    if ((st = model_read_rope(f, a, 10000.0f, &m->rope, err)))
        return st;
    m->rope.layout = OPS_ROPE_NEOX;
    m->rope.n_dims = (int32_t)rope_dims;

    /* IMRoPE's sections (llama.cpp requires all four). */
    snprintf(key, sizeof key, "%s.rope.dimension_sections", a);
    const gguf_array *sec = gguf_get_array(f, key);
    int64_t sections[4] = {0};
    if (!sec || sec->count < 4 || (sec->elem_type != GGUF_TYPE_INT32 && sec->elem_type != GGUF_TYPE_UINT32))
        return error_set(err, HEARTH_ERR_FORMAT, "%s: missing, or not 4 integers", key);
    for (int i = 0; i < 4; i++) {
        sections[i] = gguf_array_get_int(sec, (uint64_t)i);
        if (sections[i] < 0 || sections[i] > 4096)
            return error_set(err, HEARTH_ERR_FORMAT, "%s: %lld is not a section size", key, (long long)sections[i]);
    }
    const int64_t sect_dims = sections[0] + sections[1] + sections[2] + sections[3];
    if (sect_dims == 0 || sect_dims > rope_dims)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.rope.dimension_sections: they sum to %lld; need 1 to %u", a,
                         (long long)sect_dims, rope_dims);
    bool all_turn = true;
    for (uint32_t i = 0; i < rope_dims / 2; i++) {
        int64_t s = i % sect_dims;
        all_turn &= s < 3 * sections[s % 3];
    }
    if (!all_turn) {
        m->rope_factors = malloc(rope_dims / 2 * sizeof *m->rope_factors);
        if (!m->rope_factors)
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < rope_dims / 2; i++) {
            int64_t s = i % sect_dims;
            m->rope_factors[i] = s < 3 * sections[s % 3] ? 1.0f : INFINITY;
        }
        m->rope.freq_factors = m->rope_factors;
    }

    /* The layer pattern: attention.recurrent_layers (one flag per block, the
     * converter's layer_types), else every interval-th layer attends. */
    snprintf(key, sizeof key, "%s.attention.recurrent_layers", a);
    const gguf_array *pattern = gguf_get_array(f, key);
    if (pattern && (pattern->count != n_blocks || (pattern->elem_type != GGUF_TYPE_BOOL &&
                                                   pattern->elem_type != GGUF_TYPE_UINT8 &&
                                                   pattern->elem_type != GGUF_TYPE_INT8 &&
                                                   pattern->elem_type != GGUF_TYPE_UINT32 &&
                                                   pattern->elem_type != GGUF_TYPE_INT32)))
        return error_set(err, HEARTH_ERR_FORMAT, "%s: need %u flags (one per block), as booleans or integers", key,
                         n_blocks);
    if (!pattern && gguf_find_kv(f, key))
        return error_set(err, HEARTH_ERR_FORMAT, "%s: not an array", key);
    for (uint32_t il = 0; il < m->n_layers; il++) {
        bool recurrent = pattern ? gguf_array_get_uint(pattern, il) != 0 : (il + 1) % interval != 0;
        m->layers[il].recurrent = recurrent;
        m->layers[il].slot = (int32_t)(recurrent ? m->n_recurrent_layers++ : m->n_attn_layers++);
    }

    if (!m->moe) {
        if ((st = model_get_u32(f, a, "feed_forward_length", true, 0, &m->n_ff, err)))
            return st;
        if (m->n_ff == 0 || m->n_ff > 1048576)
            return error_set(err, HEARTH_ERR_FORMAT, "%s.feed_forward_length: %u", a, m->n_ff);
        return HEARTH_OK;
    }
    uint32_t n_ff = 0;
    if ((st = model_get_u32(f, a, "expert_count", true, 0, &m->n_experts, err)) ||
        (st = model_get_u32(f, a, "expert_used_count", true, 0, &m->n_experts_used, err)) ||
        (st = model_get_u32(f, a, "feed_forward_length", false, 0, &n_ff, err)))
        return st;
    if (m->n_experts == 0 || m->n_experts > OPS_MOE_MAX_EXPERTS || m->n_experts_used == 0 ||
        m->n_experts_used > m->n_experts)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "%s: %u experts with %u used per token; need 1 to %d experts and 1 to all of them used", a,
                         m->n_experts, m->n_experts_used, OPS_MOE_MAX_EXPERTS);
    if ((st = model_get_u32(f, a, "expert_feed_forward_length", false, n_ff / m->n_experts_used, &m->n_ff_expert,
                            err)) ||
        (st = model_get_u32(f, a, "expert_shared_feed_forward_length", false, n_ff, &m->n_ff_shared, err)) ||
        (st = model_get_f32(f, a, "expert_weights_scale", false, 0.0f, &m->expert_scale, err)))
        return st;
    if (m->n_ff_expert == 0 || m->n_ff_expert > 1048576 || m->n_ff_shared > 1048576)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: expert feed-forward %u, shared %u", a, m->n_ff_expert,
                         m->n_ff_shared);
    return HEARTH_OK;
}

static hearth_status bind_layer(const gguf_file *f, qwen35 *m, uint32_t il, hearth_error *err)
{
    qwen35_layer *l = &m->layers[il];
    char name[96];
    hearth_status st = HEARTH_OK;
    const int64_t d = m->n_embd, hd = m->head_dim;
    const int64_t q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, il), name)
#define VEC(field, suffix, n) model_bind_vector(f, NAME(suffix), n, &l->field, err)
#define MAT(field, suffix, cols, rows) model_bind_matrix(f, NAME(suffix ".weight"), cols, rows, &l->field, err)
    if ((st = VEC(attn_norm, "attn_norm.weight", d)) || (st = VEC(post_norm, "post_attention_norm.weight", d)))
        return st;
    if (l->recurrent) {
        const int64_t hv = m->n_v_heads;
        const gguf_tensor *conv = gguf_find_tensor(f, NAME("ssm_conv1d.weight"));
        if ((st = MAT(wqkv, "attn_qkv", d, m->conv_dim)) || (st = MAT(wgate, "attn_gate", d, m->inner)) ||
            (st = MAT(wbeta, "ssm_beta", d, hv)) || (st = MAT(walpha, "ssm_alpha", d, hv)) ||
            (st = MAT(wout, "ssm_out", m->inner, d)) || (st = VEC(dt_bias, "ssm_dt.bias", hv)) ||
            (st = VEC(ssm_a, "ssm_a", hv)) || (st = VEC(ssm_norm, "ssm_norm.weight", m->ssm_head)))
            return st;
        /* The convolution's weights, K per channel: F32 (llama-quantize
         * leaves them so, and ggml_ssm_conv reads nothing else). */
        if (!conv || conv->type != QUANT_F32 || conv->n_dims != 2 || conv->ne[0] != m->conv_kernel ||
            conv->ne[1] != m->conv_dim)
            return error_set(err, HEARTH_ERR_FORMAT, "tensor blk.%u.ssm_conv1d.weight: %s; expected F32 of %u x %lld",
                             il, conv ? "wrong type or shape" : "missing", m->conv_kernel, (long long)m->conv_dim);
        l->conv = conv->data;
    } else {
        if ((st = MAT(wq, "attn_q", d, 2 * q_dim)) || (st = MAT(wk, "attn_k", d, kv_dim)) ||
            (st = MAT(wv, "attn_v", d, kv_dim)) || (st = MAT(wo, "attn_output", q_dim, d)) ||
            (st = VEC(q_norm, "attn_q_norm.weight", hd)) || (st = VEC(k_norm, "attn_k_norm.weight", hd)))
            return st;
    }
    if (!m->moe)
        return (st = MAT(gate, "ffn_gate", d, m->n_ff)) || (st = MAT(up, "ffn_up", d, m->n_ff)) ||
                       (st = MAT(down, "ffn_down", m->n_ff, d))
                   ? st
                   : HEARTH_OK;

    const int32_t ne = (int32_t)m->n_experts;
    const int64_t ff = m->n_ff_expert, sh = m->n_ff_shared;
    l->experts = calloc(3 * (size_t)ne, sizeof *l->experts);
    if (!l->experts)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    /* gate and up as two tensors, or one merged [gate; up] per expert */
    bool merged = gguf_find_tensor(f, NAME("ffn_gate_up_exps.weight")) != NULL;
    if (merged)
        st = model_bind_experts(f, name, d, 2 * ff, ne, l->experts, err);
    else if (!(st = model_bind_experts(f, NAME("ffn_gate_exps.weight"), d, ff, ne, l->experts, err)))
        st = model_bind_experts(f, NAME("ffn_up_exps.weight"), d, ff, ne, l->experts + ne, err);
    ops_matrix *down = l->experts + (merged ? ne : 2 * ne);
    if (st || (st = model_bind_experts(f, NAME("ffn_down_exps.weight"), ff, d, ne, down, err)) ||
        (st = MAT(router, "ffn_gate_inp", d, ne)))
        return st;
    l->moe = (ops_moe){
        .n_experts = ne, .n_used = (int32_t)m->n_experts_used, .n_embd = d, .n_ff = ff,
        .gating = OPS_MOE_SOFTMAX, .normalize = true, .scale = m->expert_scale, .activation = OPS_MOE_SWIGLU,
        .gate = merged ? NULL : l->experts, .up = merged ? NULL : l->experts + ne,
        .gate_up = merged ? l->experts : NULL, .down = down,
    };
    /* The shared expert: llama.cpp runs it when ffn_up_shexp exists. */
    bool shared = false;
    if ((st = model_bind_optional_matrix(f, NAME("ffn_up_shexp.weight"), d, sh, &l->sh_up, &shared, err)))
        return st;
    if (shared && ((st = MAT(sh_gate, "ffn_gate_shexp", d, sh)) || (st = MAT(sh_down, "ffn_down_shexp", sh, d))))
        return st;
    /* The shared expert's gate: one row of n_embd, F32 (the converter keeps
     * it so), written as [n_embd] or [n_embd, 1]. */
    const gguf_tensor *t = shared ? gguf_find_tensor(f, NAME("ffn_gate_inp_shexp.weight")) : NULL;
    if (shared && (!t || t->type != QUANT_F32 || t->ne[0] != d || t->n_elements != d))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: %s; expected F32 of %lld (x 1)", name,
                         t ? "wrong type or shape" : "missing", (long long)d);
    l->sh_gate_inp = t ? t->data : NULL;
#undef NAME
#undef VEC
#undef MAT
    return HEARTH_OK;
}

static void qwen35_free_weights(void *p)
{
    qwen35 *m = p;
    if (!m)
        return;
    if (m->layers)
        for (uint32_t il = 0; il < m->n_layers; il++)
            free(m->layers[il].experts);
    free(m->layers);
    free(m->rope_factors);
    free(m);
}

static hearth_status load(const gguf_file *f, const vocab *v, const char *arch, bool moe, void **out,
                          hearth_error *err)
{
    *out = NULL;
    qwen35 *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    m->arch = arch;
    m->moe = moe;
    m->layers = calloc(MAX_LAYERS, sizeof *m->layers);
    hearth_status st = m->layers ? read_hparams(f, m, err) : error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    if (st == HEARTH_OK) {
        m->n_vocab = (uint32_t)vocab_size(v);
        st = model_bind_embedding_and_output(f, m->n_embd, m->n_vocab, &m->embed, &m->output_norm, &m->output,
                                             err);
    }
    for (uint32_t il = 0; st == HEARTH_OK && il < m->n_layers; il++)
        st = bind_layer(f, m, il, err);
    if (st != HEARTH_OK) {
        qwen35_free_weights(m);
        return st;
    }
    *out = m;
    return HEARTH_OK;
}

static hearth_status qwen35_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    return load(f, v, "qwen35", false, out, err);
}

static hearth_status qwen35moe_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    return load(f, v, "qwen35moe", true, out, err);
}

static int32_t qwen35_n_ctx_train(const void *p)
{
    const qwen35 *m = p;
    return m->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)m->n_ctx_train;
}

static void qwen35_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    qwen35 *m = p;
    for (uint32_t il = 0; il < m->n_layers; il++) {
        qwen35_layer *l = &m->layers[il];
        if (l->recurrent) {
            ops_matrix *ms[] = {&l->wqkv, &l->wgate, &l->wbeta, &l->walpha, &l->wout};
            for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
                visit(ms[i], ctx);
        } else {
            ops_matrix *ms[] = {&l->wq, &l->wk, &l->wv, &l->wo};
            for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
                visit(ms[i], ctx);
        }
        if (!m->moe) {
            visit(&l->gate, ctx);
            visit(&l->up, ctx);
            visit(&l->down, ctx);
            continue;
        }
        visit(&l->router, ctx);
        int32_t n = (int32_t)m->n_experts * (l->moe.gate_up ? 2 : 3);
        for (int32_t e = 0; e < n; e++)
            visit(&l->experts[e], ctx);
        if (l->sh_gate_inp) {
            visit(&l->sh_gate, ctx);
            visit(&l->sh_up, ctx);
            visit(&l->sh_down, ctx);
        }
    }
    /* Only the output: the embedding is read by row, from the map. */
    visit(&m->output, ctx);
}

/* ---- the session state ---- */

typedef struct qwen35_state {
    int32_t n_ctx, n_batch;
    uint16_t *k_cache, *v_cache; /* per attention layer n_ctx rows of kv_dim */
    size_t kv_layer;
    float *conv_state, *ssm_state; /* per DeltaNet layer */
    size_t conv_layer, ssm_layer;
    /* n_batch rows each: x, xn, proj, shared [n_embd]; mixed [max(conv_dim,
     * 2 q_dim)]: the DeltaNet's qkv before the convolution, or attention's
     * query|gate; conv [conv_dim]; z, core [inner]; beta, g [value heads];
     * q [q_dim], k, v [kv_dim], attn [q_dim]; gate, up [the larger feed-forward];
     * router [n_experts]; shared_gate [1] */
    float *x, *xn, *proj, *shared, *mixed, *conv, *z, *core, *beta, *g, *q, *k, *v, *attn, *gate, *up;
    float *router, *shared_gate;
    int32_t *positions;
    void *moe_scratch, *act_scratch, *dn_scratch;
    void *block;
} qwen35_state;

static void qwen35_state_free(void *p)
{
    qwen35_state *s = p;
    if (s)
        free(s->block);
    free(s);
}

/* Carves the state's buffers from one block: pass 1 (base NULL) counts. */
static size_t carve(qwen35_state *s, char *base, const qwen35 *m, int32_t n_ctx, int32_t n_batch,
                    size_t moe_bytes, size_t act_bytes)
{
    size_t off = 0;
#define TAKE(field, type, count)                                                                                   \
    do {                                                                                                            \
        off = (off + 63) & ~(size_t)63;                                                                             \
        if (base)                                                                                                   \
            s->field = (type *)(void *)(base + off);                                                                \
        off += (size_t)(count) * sizeof(type);                                                                      \
    } while (0)
    const int64_t d = m->n_embd, hd = m->head_dim, q_dim = (int64_t)m->n_heads * hd;
    const int64_t kv_dim = (int64_t)m->n_kv_heads * hd, nb = n_batch;
    const int64_t mixed = m->conv_dim > 2 * q_dim ? m->conv_dim : 2 * q_dim;
    const int64_t ff = m->moe ? (m->n_ff_shared > 0 ? m->n_ff_shared : 1) : m->n_ff;
    TAKE(k_cache, uint16_t, (size_t)m->n_attn_layers * n_ctx * kv_dim);
    TAKE(v_cache, uint16_t, (size_t)m->n_attn_layers * n_ctx * kv_dim);
    TAKE(conv_state, float, (size_t)m->n_recurrent_layers * (m->conv_kernel - 1) * m->conv_dim);
    TAKE(ssm_state, float, (size_t)m->n_recurrent_layers * m->n_v_heads * m->ssm_head * m->ssm_head);
    TAKE(x, float, nb * d);
    TAKE(xn, float, nb * d);
    TAKE(proj, float, nb * d);
    TAKE(shared, float, nb * d);
    TAKE(mixed, float, nb * mixed);
    TAKE(conv, float, nb * m->conv_dim);
    TAKE(z, float, nb * m->inner);
    TAKE(core, float, nb * m->inner);
    TAKE(beta, float, nb * m->n_v_heads);
    TAKE(g, float, nb * m->n_v_heads);
    TAKE(q, float, nb * q_dim);
    TAKE(k, float, nb * kv_dim);
    TAKE(v, float, nb * kv_dim);
    TAKE(attn, float, nb * q_dim);
    TAKE(gate, float, nb * ff);
    TAKE(up, float, nb * ff);
    TAKE(router, float, nb * (m->moe ? m->n_experts : 1));
    TAKE(shared_gate, float, nb);
    TAKE(positions, int32_t, nb);
    TAKE(moe_scratch, char, moe_bytes);
    TAKE(act_scratch, char, act_bytes);
    TAKE(dn_scratch, char, ops_deltanet_chunked_scratch_bytes((int32_t)m->n_v_heads, (int32_t)m->ssm_head));
#undef TAKE
    return off;
}

static hearth_status qwen35_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out, model_memory *memory,
                                         hearth_error *err)
{
    const qwen35 *m = p;
    *out = NULL;
    qwen35_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    const size_t moe_bytes = m->moe ? ops_moe_scratch_bytes(&m->layers[0].moe, n_batch) : 0;
    const size_t act_bytes = decoder_act_scratch_bytes(qwen35_for_each_matrix, m, n_batch);
    size_t total = carve(s, NULL, m, n_ctx, n_batch, moe_bytes, act_bytes);
    s->block = calloc(1, total);
    if (!s->block) {
        free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a session state of %zu bytes", total);
    }
    carve(s, s->block, m, n_ctx, n_batch, moe_bytes, act_bytes);
    s->kv_layer = (size_t)n_ctx * m->n_kv_heads * m->head_dim;
    s->conv_layer = (size_t)(m->conv_kernel - 1) * m->conv_dim;
    s->ssm_layer = (size_t)m->n_v_heads * m->ssm_head * m->ssm_head;
    const size_t kv = 2 * (size_t)m->n_attn_layers * s->kv_layer * sizeof(uint16_t);
    const size_t recurrent = m->n_recurrent_layers * (s->conv_layer + s->ssm_layer) * sizeof(float);
    *memory = (model_memory){.kv_cache = kv, .recurrent = recurrent, .scratch = total - kv - recurrent};
    *out = s;
    return HEARTH_OK;
}

/* Every attention layer's keys, then its values; then the DeltaNet layers'
 * convolution and delta-rule states, each as one row of all layers'. */
static int32_t qwen35_state_parts(const void *p, void *state, model_state_part *parts, int32_t max)
{
    const qwen35 *m = p;
    qwen35_state *s = state;
    const size_t kv_row = (size_t)m->n_kv_heads * m->head_dim * sizeof(uint16_t);
    int32_t n = 0;
    for (uint32_t il = 0; il < m->n_attn_layers; il++) {
        for (int kv = 0; kv < 2; kv++, n++)
            if (n < max)
                parts[n] = (model_state_part){
                    .base = (char *)(kv ? s->v_cache : s->k_cache) + il * s->kv_layer * sizeof(uint16_t),
                    .row_bytes = kv_row,
                    .seq_stride = (size_t)s->n_ctx * kv_row};
    }
    const size_t conv = m->n_recurrent_layers * s->conv_layer * sizeof(float);
    const size_t ssm = m->n_recurrent_layers * s->ssm_layer * sizeof(float);
    if (n < max)
        parts[n] = (model_state_part){.base = (char *)s->conv_state, .row_bytes = conv, .seq_stride = conv, .recurrent = true};
    n++;
    if (n < max)
        parts[n] = (model_state_part){.base = (char *)s->ssm_state, .row_bytes = ssm, .seq_stride = ssm, .recurrent = true};
    return n + 1;
}

/* ---- the forward pass ---- */

typedef struct qwen35_step {
    const qwen35 *m;
    qwen35_state *s;
    const qwen35_layer *l;
    const int32_t *tokens;
    int32_t pos0, first_output;
    uint16_t *k_cache, *v_cache;
} qwen35_step;

static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static inline float silu(float x)
{
    return x / (1.0f + expf(-x));
}

static inline float softplus(float x)
{
    return x > 20.0f ? x : logf(1.0f + expf(x));
}

static void embed_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    for (int64_t t = first; t < last; t++) {
        ops_matrix_row_f32(&st->m->embed, st->tokens[t], st->s->x + t * d);
        st->s->positions[t] = st->pos0 + (int32_t)t;
    }
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->m->eps, st->s->xn + first * d, d,
                     last - first);
}

/* beta = sigmoid(beta logit); g = ssm_a * softplus(alpha + dt_bias), in place. */
static void gates_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t hv = st->m->n_v_heads;
    const qwen35_layer *l = st->l;
    for (int64_t t = first; t < last; t++) {
        float *beta = st->s->beta + t * hv, *g = st->s->g + t * hv;
        for (int64_t h = 0; h < hv; h++) {
            beta[h] = sigmoid(beta[h]);
            g[h] = softplus(g[h] + l->dt_bias[h]) * l->ssm_a[h];
        }
    }
}

/* q and k heads to unit length: llama.cpp's rms_norm(x, eps / n) / sqrt(n),
 * i.e. x / sqrt(sum x^2 + eps). */
static void l2norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const qwen35 *m = st->m;
    const int64_t n = m->ssm_head, heads = 2 * (int64_t)m->n_k_heads;
    const float scale = 1.0f / sqrtf((float)n);
    for (int64_t t = first; t < last; t++) {
        float *row = st->s->conv + t * m->conv_dim;
        ops_rmsnorm_rows(row, n, NULL, n, m->eps / (float)n, row, n, heads);
        ops_scale(row, heads * n, scale);
    }
}

/* core = norm(core) * silu(z), per value head. */
static void gated_norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const qwen35 *m = st->m;
    const int64_t inner = m->inner;
    for (int64_t t = first; t < last; t++) {
        float *o = st->s->core + t * inner;
        const float *z = st->s->z + t * inner;
        ops_rmsnorm_rows(o, m->ssm_head, st->l->ssm_norm, m->ssm_head, m->eps, o, m->ssm_head, m->n_v_heads);
        for (int64_t i = 0; i < inner; i++)
            o[i] *= silu(z[i]);
    }
}

/* Query|gate per head split; q and k normed per head and rotated; k and v
 * into the f16 cache. */
static void qkv_rope_store_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const qwen35 *m = st->m;
    const qwen35_layer *l = st->l;
    const qwen35_state *s = st->s;
    const int64_t hd = m->head_dim, q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    for (int64_t t = first; t < last; t++) {
        const float *qg = s->mixed + t * 2 * q_dim;
        float *q = s->q + t * q_dim, *k = s->k + t * kv_dim, *v = s->v + t * kv_dim;
        ops_rmsnorm_rows(qg, 2 * hd, l->q_norm, hd, m->eps, q, hd, m->n_heads);
        ops_rmsnorm_rows(k, hd, l->k_norm, hd, m->eps, k, hd, m->n_kv_heads);
        ops_rope_apply(&m->rope, q, (int32_t)m->n_heads, (int32_t)hd, s->positions[t]);
        ops_rope_apply(&m->rope, k, (int32_t)m->n_kv_heads, (int32_t)hd, s->positions[t]);
        ops_store_f16(st->k_cache + (size_t)s->positions[t] * kv_dim, k, kv_dim);
        ops_store_f16(st->v_cache + (size_t)s->positions[t] * kv_dim, v, kv_dim);
    }
}

/* attn *= sigmoid(gate), the gate being each head's second half of Wq's output. */
static void output_gate_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const qwen35 *m = st->m;
    const int64_t hd = m->head_dim, q_dim = (int64_t)m->n_heads * hd;
    for (int64_t t = first; t < last; t++) {
        float *a = st->s->attn + t * q_dim;
        const float *qg = st->s->mixed + t * 2 * q_dim;
        for (int64_t h = 0; h < m->n_heads; h++)
            for (int64_t i = 0; i < hd; i++)
                a[h * hd + i] *= sigmoid(qg[h * 2 * hd + hd + i]);
    }
}

/* x += the mixer's output; xn = post_attention_norm(x). */
static void mixer_residual_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    qwen35_state *s = st->s;
    ops_add(s->x + first * d, s->proj + first * d, (last - first) * d);
    ops_rmsnorm_rows(s->x + first * d, d, st->l->post_norm, d, st->m->eps, s->xn + first * d, d, last - first);
}

static void swiglu_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t ff = st->m->moe ? st->m->n_ff_shared : st->m->n_ff;
    ops_swiglu(st->s->gate + first * ff, st->s->up + first * ff, (last - first) * ff);
}

/* The shared expert's gate: sigmoid(xn . w), one per token. */
static void shared_gate_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    for (int64_t t = first; t < last; t++) {
        const float *x = st->s->xn + t * d;
        float sum = 0.0f;
        for (int64_t i = 0; i < d; i++)
            sum += x[i] * st->l->sh_gate_inp[i];
        st->s->shared_gate[t] = sigmoid(sum);
    }
}

/* x += proj (+ shared * its gate): the feed-forward's output. */
static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    qwen35_state *s = st->s;
    for (int64_t t = first; t < last; t++) {
        float *x = s->x + t * d, *y = s->proj + t * d;
        if (st->l->sh_gate_inp) {
            const float *sh = s->shared + t * d, gate = s->shared_gate[t];
            for (int64_t i = 0; i < d; i++)
                y[i] += sh[i] * gate;
        }
        ops_add(x, y, d);
    }
}

static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const qwen35_step *st = p;
    const int64_t d = st->m->n_embd;
    const int64_t t = st->first_output + first;
    ops_rmsnorm_rows(st->s->x + t * d, d, st->m->output_norm, d, st->m->eps, st->s->xn + t * d, d, last - first);
}

static void deltanet_layer(const qwen35 *m, qwen35_state *s, threadpool *pool, qwen35_step *step, int32_t n)
{
    const qwen35_layer *l = step->l;
    const int64_t d = m->n_embd, hv = m->n_v_heads, kd = (int64_t)m->n_k_heads * m->ssm_head;
    ops_matmul_shared_input(pool, 4, (const ops_matrix *[]){&l->wqkv, &l->wgate, &l->wbeta, &l->walpha}, s->xn, d, n,
                            (float *[]){s->mixed, s->z, s->beta, s->g},
                            (int64_t[]){m->conv_dim, m->inner, hv, hv}, s->act_scratch);
    ops_parallel_rows(pool, n, gates_rows, step);
    ops_deltanet_conv(pool, s->mixed, m->conv_dim, n, m->conv_dim, (int32_t)m->conv_kernel, l->conv,
                      s->conv_state + (size_t)l->slot * s->conv_layer, s->conv, m->conv_dim);
    ops_parallel_rows(pool, n, l2norm_rows, step);
    ops_deltanet_args dn = {
        .n_tokens = n, .n_k_heads = (int32_t)m->n_k_heads, .n_v_heads = (int32_t)hv, .head_dim = (int32_t)m->ssm_head,
        .q = s->conv, .k = s->conv + kd, .v = s->conv + 2 * kd, .qkv_stride = m->conv_dim,
        .g = s->g, .beta = s->beta, .gb_stride = hv,
        .state = s->ssm_state + (size_t)l->slot * s->ssm_layer, .out = s->core, .out_stride = m->inner,
    };
    /* Prefill by chunks, decode by the recurrence. */
    if (n > 1)
        ops_deltanet_chunked(pool, &dn, s->dn_scratch);
    else
        ops_deltanet_recurrent(pool, &dn);
    ops_parallel_rows(pool, n, gated_norm_rows, step);
    ops_matmul(pool, &l->wout, s->core, m->inner, n, s->proj, d, s->act_scratch);
}

static void attention_layer(const qwen35 *m, qwen35_state *s, threadpool *pool, qwen35_step *step, int32_t n)
{
    const qwen35_layer *l = step->l;
    const int64_t d = m->n_embd, hd = m->head_dim;
    const int64_t q_dim = (int64_t)m->n_heads * hd, kv_dim = (int64_t)m->n_kv_heads * hd;
    step->k_cache = s->k_cache + (size_t)l->slot * s->kv_layer;
    step->v_cache = s->v_cache + (size_t)l->slot * s->kv_layer;
    ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                            (float *[]){s->mixed, s->k, s->v}, (int64_t[]){2 * q_dim, kv_dim, kv_dim},
                            s->act_scratch);
    ops_parallel_rows(pool, n, qkv_rope_store_rows, step);
    ops_attention_args attn = {
        .q = s->q, .q_stride = q_dim, .k = step->k_cache, .v = step->v_cache, .k_stride = kv_dim,
        .v_stride = kv_dim, .positions = s->positions, .n_tokens = n, .n_heads = (int32_t)m->n_heads,
        .n_kv_heads = (int32_t)m->n_kv_heads, .head_dim_k = (int32_t)hd, .head_dim_v = (int32_t)hd, .window = 0,
        .scale = m->attn_scale, .out = s->attn, .out_stride = q_dim,
    };
    ops_attention(pool, &attn);
    ops_parallel_rows(pool, n, output_gate_rows, step);
    ops_matmul(pool, &l->wo, s->attn, q_dim, n, s->proj, d, s->act_scratch);
}

static void feed_forward(const qwen35 *m, qwen35_state *s, threadpool *pool, qwen35_step *step, int32_t n)
{
    const qwen35_layer *l = step->l;
    const int64_t d = m->n_embd;
    if (!m->moe) {
        const int64_t ff = m->n_ff;
        ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->gate, &l->up}, s->xn, d, n,
                                (float *[]){s->gate, s->up}, (int64_t[]){ff, ff}, s->act_scratch);
        ops_parallel_rows(pool, n, swiglu_rows, step);
        ops_matmul(pool, &l->down, s->gate, ff, n, s->proj, d, s->act_scratch);
        return;
    }
    ops_matmul(pool, &l->router, s->xn, d, n, s->router, m->n_experts, s->act_scratch);
    ops_moe_forward(pool, &l->moe, s->router, m->n_experts, s->xn, d, n, s->proj, d, s->moe_scratch);
    if (!l->sh_gate_inp)
        return;
    const int64_t sh = m->n_ff_shared;
    ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->sh_gate, &l->sh_up}, s->xn, d, n,
                            (float *[]){s->gate, s->up}, (int64_t[]){sh, sh}, s->act_scratch);
    ops_parallel_rows(pool, n, swiglu_rows, step);
    ops_matmul(pool, &l->sh_down, s->gate, sh, n, s->shared, d, s->act_scratch);
    ops_parallel_rows(pool, n, shared_gate_rows, step);
}

static void qwen35_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                           int32_t pos0, int32_t first_output, float *logits)
{
    const qwen35 *m = p;
    qwen35_state *s = state;
    const int64_t d = m->n_embd;
    qwen35_step step = {.m = m, .s = s, .tokens = tokens, .pos0 = pos0, .first_output = first_output};

    /* A sequence from its start: the recurrent state starts empty
     * (model_forward allows no other rewind for a recurrent model). */
    if (pos0 == 0) {
        memset(s->conv_state, 0, m->n_recurrent_layers * s->conv_layer * sizeof(float));
        memset(s->ssm_state, 0, m->n_recurrent_layers * s->ssm_layer * sizeof(float));
    }

    ops_parallel_rows(pool, n, embed_rows, &step);
    for (uint32_t il = 0; il < m->n_layers; il++) {
        step.l = &m->layers[il];
        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        if (step.l->recurrent)
            deltanet_layer(m, s, pool, &step, n);
        else
            attention_layer(m, s, pool, &step, n);
        ops_parallel_rows(pool, n, mixer_residual_rows, &step);
        feed_forward(m, s, pool, &step, n);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);
    }

    if (first_output >= n)
        return;
    ops_parallel_rows(pool, n - first_output, output_norm_rows, &step);
    ops_matmul(pool, &m->output, s->xn + first_output * d, d, n - first_output, logits, m->n_vocab,
               s->act_scratch);
}

#define QWEN35_ARCH(arch_name, load_fn)                                                                        \
    {                                                                                                          \
        .name = arch_name, .load = load_fn, .free_weights = qwen35_free_weights,                              \
        .state_create = qwen35_state_create, .state_free = qwen35_state_free, .forward = qwen35_forward,      \
        .n_ctx_train = qwen35_n_ctx_train, .for_each_matrix = qwen35_for_each_matrix, .recurrent = true,      \
        .state_parts = qwen35_state_parts,                                                                     \
    }
const model_arch model_arch_qwen35 = QWEN35_ARCH("qwen35", qwen35_load);
const model_arch model_arch_qwen35moe = QWEN35_ARCH("qwen35moe", qwen35moe_load);

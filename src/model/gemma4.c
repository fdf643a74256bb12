/* Gemma 4, as llama.cpp runs it (src/models/gemma4.cpp):
 *
 *   x = embed(tokens) * sqrt(n_embd)
 *   per-layer inputs (when embedding_length_per_layer_input > 0), per token:
 *     ple[l] = (norm((x Wple_proj)[l] / sqrt(n_embd)) + ple_embed(token)[l] * sqrt(n_pl)) / sqrt(2)
 *   per layer:  h = norm(x);  q = h Wq;  k = h Wk;  v = h Wv, or k itself (K is V)
 *               q, k = rope(norm_per_head(q)), rope(norm_per_head(k));  v = norm_per_head(v), no weight
 *               a = attention(q, k, v), scale 1   -- sliding window on the sliding layers
 *               x = x + norm(a Wo)
 *               dense:  f = ((gelu(norm(x) Wgate) * (norm(x) Wup)) Wdown
 *               MoE:    f = norm1(shared GeGLU MLP of norm(x)) + norm2(experts(norm_2(x)))
 *                       router logits = (rmsnorm(x) / sqrt(n_embd) * gate_inp_scale) Wgate_inp
 *               x = x + norm(f)
 *               x = x + norm(((gelu(x Winp_gate) * ple[layer]) Wproj)    (per-layer inputs)
 *               x = x * layer_output_scale                               (when present)
 *   logits = cap * tanh((norm(x) Wout) / cap)                             (soft-capping)
 *
 * Layers differ: sliding layers and full-attention layers have their own
 * head size, KV head count and RoPE (sliding: rope.freq_base_swa over
 * rope.dimension_count_swa dims; full: rope.freq_base over all dims, with
 * rope_freqs making it "proportional": the pairs past the rotated fraction
 * get a factor of 1e30, an angle of zero); the feed-forward width may differ
 * per layer. The last attention.shared_kv_layers layers compute no K and V:
 * they read the cache of the last layer of their kind that has one. Every
 * norm is RMSNorm with its weight as stored (Gemma 4's converter shifts
 * nothing). */
#include "model/decoder_state.h"

#include "base/checked.h"
#include "base/error.h"
#include "ops/attention.h"
#include "ops/moe.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "gemma4"
#define MAX_LAYERS 512
#define MAX_HEAD_DIM 1024
#define MAX_EXPERTS 512 /* within OPS_MOE_MAX_EXPERTS */

typedef struct gemma4_layer {
    bool sliding, has_kv, has_v, moe;
    int32_t n_heads, n_kv_heads, head_dim;
    int64_t n_ff;
    uint32_t kv_layer; /* whose cache it attends over: itself, or an earlier layer */
    const float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffn_norm;
    const float *out_scale; /* NULL or one float */
    ops_matrix wq, wk, wv, wo, gate, up, down;
    /* per-layer inputs */
    ops_matrix inp_gate, proj;
    const float *post_norm;
    /* MoE */
    const float *pre_norm_2, *post_norm_1, *post_norm_2, *gate_inp_scale, *down_exps_scale;
    ops_matrix gate_inp;
    ops_matrix *experts; /* n_experts each: gate_up (or gate, then up), then down */
    ops_moe moe_ffn;
} gemma4_layer;

typedef struct gemma4 {
    uint32_t n_vocab, n_embd, n_layers, n_ctx_train, window, n_pl, n_experts, n_used;
    uint32_t head_dim_full, head_dim_swa;
    float eps, softcap;
    ops_rope rope_full, rope_swa;
    ops_matrix embed, output, ple_embed, ple_model_proj;
    const float *output_norm, *ple_proj_norm, *rope_freqs;
    gemma4_layer *layers;
    /* the widest layer's sizes, for the state's buffers */
    int64_t max_q, max_kv, max_ff;
} gemma4;

/* ---- hyper-parameters ---- */

/* "<arch>.<key>" as one unsigned integer for every layer, or an array of one
 * per layer (llama.cpp's get_key_or_arr). */
static hearth_status get_u32_per_layer(const gguf_file *f, const char *key, bool required, uint32_t fallback,
                                       uint32_t n_layers, uint32_t *out, hearth_error *err)
{
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    const gguf_array *arr = gguf_get_array(f, full);
    if (!arr) {
        uint32_t v;
        hearth_status st = model_get_u32(f, ARCH, key, required, fallback, &v, err);
        for (uint32_t il = 0; st == HEARTH_OK && il < n_layers; il++)
            out[il] = v;
        return st;
    }
    if (arr->count != n_layers || gguf_value_type_size(arr->elem_type) == 0 || arr->elem_type == GGUF_TYPE_FLOAT32 ||
        arr->elem_type == GGUF_TYPE_FLOAT64 || arr->elem_type == GGUF_TYPE_BOOL)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: an array of %llu %s, expected %u integers (one per layer)", full,
                         (unsigned long long)arr->count, gguf_value_type_name(arr->elem_type), n_layers);
    for (uint32_t il = 0; il < n_layers; il++) {
        uint64_t v = gguf_array_get_uint(arr, il);
        if (v > UINT32_MAX)
            return error_set(err, HEARTH_ERR_FORMAT, "%s[%u]: %llu is too large", full, il, (unsigned long long)v);
        out[il] = (uint32_t)v;
    }
    return HEARTH_OK;
}

static hearth_status read_swa_pattern(const gguf_file *f, gemma4 *g, hearth_error *err)
{
    const char *key = ARCH ".attention.sliding_window_pattern";
    const gguf_array *arr = gguf_get_array(f, key);
    if (!arr)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: %s", key, gguf_find_kv(f, key) ? "not an array" : "missing");
    if (arr->count != g->n_layers || gguf_value_type_size(arr->elem_type) == 0 ||
        arr->elem_type == GGUF_TYPE_FLOAT32 || arr->elem_type == GGUF_TYPE_FLOAT64)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: an array of %llu %s, expected %u booleans (one per layer)", key,
                         (unsigned long long)arr->count, gguf_value_type_name(arr->elem_type), g->n_layers);
    for (uint32_t il = 0; il < g->n_layers; il++)
        g->layers[il].sliding = gguf_array_get_uint(arr, il) != 0;
    return HEARTH_OK;
}

static hearth_status check_rope_dims(const char *key, uint32_t n_rot, uint32_t head_dim, hearth_error *err)
{
    if (n_rot == 0 || n_rot % 2 || n_rot > head_dim)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".%s: %u must be even, positive and at most the head size %u",
                         key, n_rot, head_dim);
    return HEARTH_OK;
}

static hearth_status read_hparams(const gguf_file *f, gemma4 *g, hearth_error *err)
{
    hearth_status st;
    if ((st = model_get_u32(f, ARCH, "embedding_length", true, 0, &g->n_embd, err)) ||
        (st = model_get_u32(f, ARCH, "block_count", true, 0, &g->n_layers, err)) ||
        (st = model_get_u32(f, ARCH, "context_length", false, 131072, &g->n_ctx_train, err)) ||
        (st = model_get_f32(f, ARCH, "attention.layer_norm_rms_epsilon", true, 1e-6f, &g->eps, err)) ||
        (st = model_get_u32(f, ARCH, "attention.sliding_window", true, 0, &g->window, err)) ||
        (st = model_get_u32(f, ARCH, "embedding_length_per_layer_input", true, 0, &g->n_pl, err)) ||
        (st = model_get_f32(f, ARCH, "final_logit_softcapping", false, 0.0f, &g->softcap, err)) ||
        (st = model_get_u32(f, ARCH, "expert_count", false, 0, &g->n_experts, err)) ||
        (st = model_get_u32(f, ARCH, "expert_used_count", false, 0, &g->n_used, err)))
        return st;
    if (g->n_embd == 0 || g->n_embd > 65536 || g->n_layers == 0 || g->n_layers > MAX_LAYERS || g->n_pl > 65536)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ": implausible sizes (embedding %u, layers %u, per-layer input %u)",
                         g->n_embd, g->n_layers, g->n_pl);
    if (g->window == 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.sliding_window: must be positive");
    if (g->softcap < 0.0f)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".final_logit_softcapping: %g must not be negative", g->softcap);
    if (g->n_experts > MAX_EXPERTS || g->n_used > g->n_experts)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".expert_used_count: %u of %u experts", g->n_used,
                         g->n_experts);

    g->layers = calloc(g->n_layers, sizeof *g->layers);
    uint32_t *heads = calloc(g->n_layers, sizeof *heads), *kv_heads = calloc(g->n_layers, sizeof *kv_heads);
    uint32_t *ff = calloc(g->n_layers, sizeof *ff);
    if (!g->layers || !heads || !kv_heads || !ff) {
        st = error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = read_swa_pattern(f, g, err)) ||
        (st = get_u32_per_layer(f, "attention.head_count", true, 0, g->n_layers, heads, err)) ||
        (st = get_u32_per_layer(f, "feed_forward_length", true, 0, g->n_layers, ff, err)))
        goto done;
    /* head_count_kv defaults to head_count, layer by layer. */
    if (gguf_find_kv(f, ARCH ".attention.head_count_kv")) {
        if ((st = get_u32_per_layer(f, "attention.head_count_kv", true, 0, g->n_layers, kv_heads, err)))
            goto done;
    } else {
        memcpy(kv_heads, heads, g->n_layers * sizeof *heads);
    }

    uint32_t dim_full, dim_v_full, dim_swa, dim_v_swa, n_shared;
    if ((st = model_get_u32(f, ARCH, "attention.key_length", false, g->n_embd / (heads[0] ? heads[0] : 1), &dim_full,
                            err)) ||
        (st = model_get_u32(f, ARCH, "attention.value_length", false, dim_full, &dim_v_full, err)) ||
        (st = model_get_u32(f, ARCH, "attention.key_length_swa", true, 0, &dim_swa, err)) ||
        (st = model_get_u32(f, ARCH, "attention.value_length_swa", true, 0, &dim_v_swa, err)) ||
        (st = model_get_u32(f, ARCH, "attention.shared_kv_layers", false, 0, &n_shared, err)))
        goto done;
    if (dim_v_full != dim_full || dim_v_swa != dim_swa) {
        st = error_set(err, HEARTH_ERR_FORMAT,
                       ARCH ".attention.value_length: key and value sizes differ (%u/%u, sliding %u/%u); Gemma 4 "
                            "has them equal",
                       dim_full, dim_v_full, dim_swa, dim_v_swa);
        goto done;
    }
    if (dim_full == 0 || dim_full > MAX_HEAD_DIM || dim_full % 2 || dim_swa == 0 || dim_swa > MAX_HEAD_DIM ||
        dim_swa % 2) {
        st = error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.key_length: head sizes %u (sliding %u) must be even "
                       "and at most %d", dim_full, dim_swa, MAX_HEAD_DIM);
        goto done;
    }
    g->head_dim_full = dim_full, g->head_dim_swa = dim_swa;

    uint32_t n_rot_full, n_rot_swa;
    if ((st = model_get_u32(f, ARCH, "rope.dimension_count", false, dim_full, &n_rot_full, err)) ||
        (st = model_get_u32(f, ARCH, "rope.dimension_count_swa", false, n_rot_full, &n_rot_swa, err)) ||
        (st = check_rope_dims("rope.dimension_count", n_rot_full, dim_full, err)) ||
        (st = check_rope_dims("rope.dimension_count_swa", n_rot_swa, dim_swa, err)) ||
        (st = model_read_rope(f, ARCH, 10000.0f, &g->rope_full, err)) ||
        (st = model_get_f32(f, ARCH, "rope.freq_base_swa", false, 10000.0f, &g->rope_swa.freq_base, err)))
        goto done;
    if (!(g->rope_swa.freq_base > 0.0f)) {
        st = error_set(err, HEARTH_ERR_FORMAT, ARCH ".rope.freq_base_swa: %g must be positive", g->rope_swa.freq_base);
        goto done;
    }
    g->rope_full.layout = g->rope_swa.layout = OPS_ROPE_NEOX;
    g->rope_full.n_dims = (int32_t)n_rot_full;
    g->rope_swa.n_dims = (int32_t)n_rot_swa;
    g->rope_swa.freq_scale = 1.0f;

    if (n_shared >= g->n_layers || (n_shared > 0 && g->n_layers - n_shared < 2)) {
        st = error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.shared_kv_layers: %u of %u layers leaves too few "
                       "with a KV cache of their own", n_shared, g->n_layers);
        goto done;
    }
    const uint32_t n_with_kv = g->n_layers - n_shared;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        gemma4_layer *l = &g->layers[il];
        l->head_dim = (int32_t)(l->sliding ? dim_swa : dim_full);
        l->n_heads = (int32_t)heads[il];
        l->n_kv_heads = (int32_t)kv_heads[il];
        l->n_ff = ff[il];
        if (heads[il] == 0 || heads[il] > 1024 || kv_heads[il] == 0 || heads[il] % kv_heads[il] != 0) {
            st = error_set(err, HEARTH_ERR_FORMAT, ARCH ".attention.head_count_kv: layer %u: %u KV heads for %u heads",
                           il, kv_heads[il], heads[il]);
            goto done;
        }
        if (ff[il] == 0 || ff[il] > 1048576) {
            st = error_set(err, HEARTH_ERR_FORMAT, ARCH ".feed_forward_length: layer %u: implausible %u", il, ff[il]);
            goto done;
        }
        /* llama.cpp's reuse rule: a shared sliding layer reads the
         * second-to-last layer with a cache, a shared full layer the last. */
        l->has_kv = il < n_with_kv;
        l->kv_layer = l->has_kv ? il : n_with_kv - (l->sliding ? 2 : 1);
        const gemma4_layer *src = &g->layers[l->kv_layer];
        if (!l->has_kv && (src->sliding != l->sliding || src->n_kv_heads != l->n_kv_heads)) {
            st = error_set(err, HEARTH_ERR_FORMAT,
                           ARCH ".attention.shared_kv_layers: layer %u (%s, %d KV heads) would read the cache of "
                                "layer %u (%s, %d KV heads)",
                           il, l->sliding ? "sliding" : "full", l->n_kv_heads, l->kv_layer,
                           src->sliding ? "sliding" : "full", src->n_kv_heads);
            goto done;
        }
        int64_t q = (int64_t)l->n_heads * l->head_dim, kv = (int64_t)l->n_kv_heads * l->head_dim;
        g->max_q = q > g->max_q ? q : g->max_q;
        g->max_kv = kv > g->max_kv ? kv : g->max_kv;
        g->max_ff = l->n_ff > g->max_ff ? l->n_ff : g->max_ff;
    }
done:
    free(heads);
    free(kv_heads);
    free(ff);
    return st;
}

/* ---- tensors ---- */

static hearth_status bind_moe(const gguf_file *f, gemma4 *g, uint32_t il, gemma4_layer *l, hearth_error *err)
{
    char name[96];
    hearth_status st;
    const int64_t d = g->n_embd;
    uint32_t *ff_exp = calloc(g->n_layers, sizeof *ff_exp);
    if (!ff_exp)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    st = get_u32_per_layer(f, "expert_feed_forward_length", true, 0, g->n_layers, ff_exp, err);
    const int64_t n_ff = ff_exp[il];
    free(ff_exp);
    if (st != HEARTH_OK)
        return st;
    if (g->n_experts == 0 || g->n_used == 0)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".expert_count: layer %u has a router but the file says %u "
                         "experts, %u used", il, g->n_experts, g->n_used);
    if (n_ff == 0 || n_ff > 1048576)
        return error_set(err, HEARTH_ERR_FORMAT, ARCH ".expert_feed_forward_length: implausible %lld", (long long)n_ff);
    const int32_t ne = (int32_t)g->n_experts;
    l->experts = calloc(3 * (size_t)ne, sizeof *l->experts);
    if (!l->experts)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
#define VEC(field, suffix, n) \
    (snprintf(name, sizeof name, "blk.%u." suffix, il), model_bind_vector(f, name, n, &l->field, err))
    if ((st = VEC(gate_inp_scale, "ffn_gate_inp.scale", d)) || (st = VEC(pre_norm_2, "pre_ffw_norm_2.weight", d)) ||
        (st = VEC(post_norm_1, "post_ffw_norm_1.weight", d)) || (st = VEC(post_norm_2, "post_ffw_norm_2.weight", d)))
        return st;
#undef VEC
    snprintf(name, sizeof name, "blk.%u.ffn_down_exps.scale", il);
    if ((st = model_bind_optional_vector(f, name, ne, &l->down_exps_scale, err)))
        return st;
    ops_moe *m = &l->moe_ffn;
    *m = (ops_moe){.n_experts = ne, .n_used = (int32_t)g->n_used, .n_embd = d, .n_ff = n_ff,
                   .gating = OPS_MOE_SOFTMAX, .normalize = true, .scale = 1.0f, .activation = OPS_MOE_GEGLU,
                   .down_scale = l->down_exps_scale};
    snprintf(name, sizeof name, "blk.%u.ffn_gate_up_exps.weight", il);
    if (gguf_find_tensor(f, name)) {
        st = model_bind_experts(f, name, d, 2 * n_ff, ne, l->experts, err);
        m->gate_up = l->experts;
    } else {
        snprintf(name, sizeof name, "blk.%u.ffn_gate_exps.weight", il);
        st = model_bind_experts(f, name, d, n_ff, ne, l->experts, err);
        snprintf(name, sizeof name, "blk.%u.ffn_up_exps.weight", il);
        if (st == HEARTH_OK)
            st = model_bind_experts(f, name, d, n_ff, ne, l->experts + ne, err);
        m->gate = l->experts, m->up = l->experts + ne;
    }
    /* down after gate_up, or after gate and up: for_each_matrix visits the
     * first 2 or 3 n_experts. */
    ops_matrix *down = l->experts + (m->gate_up ? ne : 2 * ne);
    snprintf(name, sizeof name, "blk.%u.ffn_down_exps.weight", il);
    if (st == HEARTH_OK)
        st = model_bind_experts(f, name, n_ff, d, ne, down, err);
    m->down = down;
    return st;
}

static hearth_status bind_layer(const gguf_file *f, gemma4 *g, uint32_t il, gemma4_layer *l, hearth_error *err)
{
    char name[96];
    hearth_status st = HEARTH_OK;
    const int64_t d = g->n_embd, hd = l->head_dim;
    const int64_t q_dim = (int64_t)l->n_heads * hd, kv_dim = (int64_t)l->n_kv_heads * hd;
#define VEC(field, suffix, n) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_vector(f, name, n, &l->field, err))
#define MAT(field, suffix, cols, rows) \
    (snprintf(name, sizeof name, "blk.%u." suffix ".weight", il), model_bind_matrix(f, name, cols, rows, &l->field, err))
    if ((st = VEC(attn_norm, "attn_norm", d)) || (st = VEC(q_norm, "attn_q_norm", hd)) ||
        (st = VEC(post_attn_norm, "post_attention_norm", d)) || (st = VEC(ffn_norm, "ffn_norm", d)) ||
        (st = VEC(post_ffn_norm, "post_ffw_norm", d)) || (st = MAT(wq, "attn_q", d, q_dim)) ||
        (st = MAT(wo, "attn_output", q_dim, d)) || (st = MAT(gate, "ffn_gate", d, l->n_ff)) ||
        (st = MAT(up, "ffn_up", d, l->n_ff)) || (st = MAT(down, "ffn_down", l->n_ff, d)))
        return st;
    /* Layers that read another layer's cache need no K, V or k norm (the
     * converter still writes them; they are left unread). */
    if (l->has_kv) {
        if ((st = VEC(k_norm, "attn_k_norm", hd)) || (st = MAT(wk, "attn_k", d, kv_dim)))
            return st;
        snprintf(name, sizeof name, "blk.%u.attn_v.weight", il);
        if ((st = model_bind_optional_matrix(f, name, d, kv_dim, &l->wv, &l->has_v, err)))
            return st;
    }
    if (g->n_pl > 0 && ((st = MAT(inp_gate, "inp_gate", d, g->n_pl)) || (st = MAT(proj, "proj", g->n_pl, d)) ||
                        (st = VEC(post_norm, "post_norm", d))))
        return st;
#undef VEC
#undef MAT
    snprintf(name, sizeof name, "blk.%u.layer_output_scale.weight", il);
    if ((st = model_bind_optional_vector(f, name, 1, &l->out_scale, err)))
        return st;
    snprintf(name, sizeof name, "blk.%u.ffn_gate_inp.weight", il);
    if ((st = model_bind_optional_matrix(f, name, d, g->n_experts, &l->gate_inp, &l->moe, err)))
        return st;
    return l->moe ? bind_moe(f, g, il, l, err) : HEARTH_OK;
}

static void gemma4_free_weights(void *p)
{
    gemma4 *g = p;
    if (!g)
        return;
    for (uint32_t il = 0; g->layers && il < g->n_layers; il++)
        free(g->layers[il].experts);
    free(g->layers);
    free(g);
}

static hearth_status bind_globals(const gguf_file *f, gemma4 *g, hearth_error *err)
{
    hearth_status st = model_bind_embedding_and_output(f, g->n_embd, g->n_vocab, &g->embed, &g->output_norm,
                                                       &g->output, err);
    if (st == HEARTH_OK && g->n_pl > 0) {
        const int64_t all = (int64_t)g->n_pl * g->n_layers;
        if ((st = model_bind_matrix(f, "per_layer_token_embd.weight", all, g->n_vocab, &g->ple_embed, err)) ||
            (st = model_bind_matrix(f, "per_layer_model_proj.weight", g->n_embd, all, &g->ple_model_proj, err)) ||
            (st = model_bind_vector(f, "per_layer_proj_norm.weight", g->n_pl, &g->ple_proj_norm, err)))
            return st;
    }
    bool any_full = false;
    for (uint32_t il = 0; il < g->n_layers; il++)
        any_full |= !g->layers[il].sliding;
    /* Required where a full-attention layer is, as llama.cpp requires it. */
    if (st == HEARTH_OK && any_full) {
        st = model_bind_vector(f, "rope_freqs.weight", g->head_dim_full / 2, &g->rope_freqs, err);
        g->rope_full.freq_factors = g->rope_freqs;
    }
    return st;
}

static hearth_status gemma4_load(const gguf_file *f, const vocab *v, void **out, hearth_error *err)
{
    *out = NULL;
    gemma4 *g = calloc(1, sizeof *g);
    if (!g)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    g->n_vocab = (uint32_t)vocab_size(v);
    hearth_status st = read_hparams(f, g, err);
    if (st == HEARTH_OK)
        st = bind_globals(f, g, err);
    for (uint32_t il = 0; st == HEARTH_OK && il < g->n_layers; il++)
        st = bind_layer(f, g, il, &g->layers[il], err);
    if (st != HEARTH_OK) {
        gemma4_free_weights(g);
        return st;
    }
    *out = g;
    return HEARTH_OK;
}

static int32_t gemma4_n_ctx_train(const void *p)
{
    const gemma4 *g = p;
    return g->n_ctx_train > INT32_MAX ? INT32_MAX : (int32_t)g->n_ctx_train;
}

static void gemma4_for_each_matrix(void *p, void (*visit)(ops_matrix *m, void *ctx), void *ctx)
{
    gemma4 *g = p;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        gemma4_layer *l = &g->layers[il];
        ops_matrix *ms[] = {&l->wq, &l->wo, &l->gate, &l->up, &l->down};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            visit(ms[i], ctx);
        if (l->has_kv)
            visit(&l->wk, ctx);
        if (l->has_v)
            visit(&l->wv, ctx);
        if (g->n_pl > 0) {
            visit(&l->inp_gate, ctx);
            visit(&l->proj, ctx);
        }
        if (l->moe) {
            visit(&l->gate_inp, ctx);
            int32_t n = l->moe_ffn.n_experts * (l->moe_ffn.gate_up ? 2 : 3);
            for (int32_t e = 0; e < n; e++)
                visit(&l->experts[e], ctx);
        }
    }
    if (g->n_pl > 0)
        visit(&g->ple_model_proj, ctx);
    /* Only the output: the embeddings are read by row, from the map. */
    visit(&g->output, ctx);
}

/* ---- session state ---- */

typedef struct gemma4_state {
    int32_t n_ctx, n_batch;
    uint16_t *kv;                        /* one block for every cache */
    uint16_t **k_cache, **v_cache;       /* per layer, n_ctx rows; shared layers point at their source's */
    /* n_batch rows each: x, xn, proj, moe_in, moe_out [n_embd]; q, attn [max_q];
     * k, v [max_kv]; gate, up [max_ff]; ple, ple_proj [n_pl * n_layers];
     * ple_gate [n_pl]; router [n_experts] */
    float *x, *xn, *proj, *moe_in, *moe_out, *q, *attn, *k, *v, *gate, *up, *ple, *ple_proj, *ple_gate, *router;
    int32_t *positions;
    void *act_scratch, *moe_scratch;
} gemma4_state;

static void gemma4_state_free(void *p)
{
    gemma4_state *s = p;
    if (!s)
        return;
    free(s->kv);
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->positions);
    free(s->act_scratch);
    free(s->moe_scratch);
    free(s);
}

/* The keys, then the values, of every layer with a cache of its own (the
 * layers that share an earlier one's have nothing to keep). */
static int32_t gemma4_state_parts(const void *p, void *state, model_state_part *parts, int32_t max)
{
    const gemma4 *g = p;
    gemma4_state *s = state;
    int32_t n = 0;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        const gemma4_layer *l = &g->layers[il];
        if (!l->has_kv)
            continue;
        const size_t row = (size_t)l->n_kv_heads * (size_t)l->head_dim * sizeof(uint16_t);
        for (int kv = 0; kv < 2; kv++, n++)
            if (n < max)
                parts[n] = (model_state_part){.base = (char *)(kv ? s->v_cache[il] : s->k_cache[il]),
                                              .row_bytes = row,
                                              .seq_stride = (size_t)s->n_ctx * row};
    }
    return n;
}

static hearth_status gemma4_state_create(const void *p, int32_t n_ctx, int32_t n_batch, void **out, model_memory *memory,
                                         hearth_error *err)
{
    const gemma4 *g = p;
    *out = NULL;
    gemma4_state *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    s->n_ctx = n_ctx, s->n_batch = n_batch;
    uint64_t kv_elems = 0;
    for (uint32_t il = 0; il < g->n_layers; il++)
        if (g->layers[il].has_kv)
            kv_elems += 2 * (uint64_t)g->layers[il].n_kv_heads * (uint64_t)g->layers[il].head_dim;
    uint64_t kv_bytes;
    bool fits = checked_mul_u64(kv_elems, (uint64_t)n_ctx * sizeof(uint16_t), &kv_bytes) && kv_bytes < SIZE_MAX / 4;

    const size_t b = (size_t)n_batch, d = g->n_embd, ple_all = (size_t)g->n_pl * g->n_layers;
    const size_t floats = b * (5 * d + 2 * (size_t)g->max_q + 2 * (size_t)g->max_kv + 2 * (size_t)g->max_ff +
                               2 * ple_all + g->n_pl + g->n_experts);
    const size_t scratch_bytes = decoder_act_scratch_bytes(gemma4_for_each_matrix, g, n_batch);
    size_t moe_bytes = 0;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        if (g->layers[il].moe) {
            size_t mb = ops_moe_scratch_bytes(&g->layers[il].moe_ffn, n_batch);
            moe_bytes = mb > moe_bytes ? mb : moe_bytes;
        }
    }
    if (fits) {
        s->kv = malloc(kv_bytes ? kv_bytes : 1);
        s->k_cache = calloc(g->n_layers, sizeof *s->k_cache);
        s->v_cache = calloc(g->n_layers, sizeof *s->v_cache);
        s->x = malloc(floats * sizeof(float));
        s->positions = malloc(b * sizeof *s->positions);
        s->act_scratch = malloc(scratch_bytes ? scratch_bytes : 1);
        s->moe_scratch = moe_bytes ? malloc(moe_bytes) : NULL;
    }
    if (!fits || !s->kv || !s->k_cache || !s->v_cache || !s->x || !s->positions || !s->act_scratch ||
        (moe_bytes && !s->moe_scratch)) {
        gemma4_state_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for a context of %d tokens (KV cache %.1f MiB)", n_ctx,
                         fits ? (double)kv_bytes / 1048576.0 : INFINITY);
    }
    uint16_t *kv = s->kv;
    for (uint32_t il = 0; il < g->n_layers; il++) {
        const gemma4_layer *l = &g->layers[il];
        if (!l->has_kv)
            continue;
        size_t rows = (size_t)n_ctx * (size_t)l->n_kv_heads * (size_t)l->head_dim;
        s->k_cache[il] = kv, kv += rows;
        s->v_cache[il] = kv, kv += rows;
    }
    for (uint32_t il = 0; il < g->n_layers; il++) {
        s->k_cache[il] = s->k_cache[g->layers[il].kv_layer];
        s->v_cache[il] = s->v_cache[g->layers[il].kv_layer];
    }
    float *c = s->x + b * d;
    s->xn = c, c += b * d;
    s->proj = c, c += b * d;
    s->moe_in = c, c += b * d;
    s->moe_out = c, c += b * d;
    s->q = c, c += b * (size_t)g->max_q;
    s->attn = c, c += b * (size_t)g->max_q;
    s->k = c, c += b * (size_t)g->max_kv;
    s->v = c, c += b * (size_t)g->max_kv;
    s->gate = c, c += b * (size_t)g->max_ff;
    s->up = c, c += b * (size_t)g->max_ff;
    s->ple = c, c += b * ple_all;
    s->ple_proj = c, c += b * ple_all;
    s->ple_gate = c, c += b * g->n_pl;
    s->router = c;
    *memory = (model_memory){.kv_cache = kv_bytes, .scratch = floats * sizeof(float) + scratch_bytes + moe_bytes};
    *out = s;
    return HEARTH_OK;
}

/* ---- the forward pass ---- */

/* One layer's per-token work between its matrix products, in steps that
 * ops_parallel_rows runs over token ranges. */
typedef struct gemma4_step {
    const gemma4 *g;
    gemma4_state *s;
    const gemma4_layer *l;
    uint32_t il;
    const int32_t *tokens;
    int32_t pos0, first_output;
    float *logits;
} gemma4_step;

/* x = embed * sqrt(n_embd); the per-layer token embeddings * sqrt(n_pl). */
static void embed_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const int64_t d = g->n_embd, all = (int64_t)g->n_pl * g->n_layers;
    for (int64_t t = first; t < last; t++) {
        ops_matrix_row_f32(&g->embed, st->tokens[t], st->s->x + t * d);
        ops_scale(st->s->x + t * d, d, sqrtf((float)d));
        st->s->positions[t] = st->pos0 + (int32_t)t;
        if (g->n_pl > 0) {
            ops_matrix_row_f32(&g->ple_embed, st->tokens[t], st->s->ple + t * all);
            ops_scale(st->s->ple + t * all, all, sqrtf((float)g->n_pl));
        }
    }
}

/* ple = (norm(proj / sqrt(n_embd)) + ple) / sqrt(2), per layer's slice. */
static void ple_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const int64_t all = (int64_t)g->n_pl * g->n_layers;
    for (int64_t t = first; t < last; t++) {
        float *proj = st->s->ple_proj + t * all, *ple = st->s->ple + t * all;
        ops_scale(proj, all, 1.0f / sqrtf((float)g->n_embd));
        ops_rmsnorm_rows(proj, g->n_pl, g->ple_proj_norm, g->n_pl, g->eps, proj, g->n_pl, g->n_layers);
        for (int64_t i = 0; i < all; i++)
            ple[i] = (proj[i] + ple[i]) * (1.0f / sqrtf(2.0f));
    }
}

static void attention_norm_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const int64_t d = st->g->n_embd;
    ops_rmsnorm_rows(st->s->x + first * d, d, st->l->attn_norm, d, st->g->eps, st->s->xn + first * d, d, last - first);
}

/* Q: norm per head, rotate. K and V, where the layer has them: K normed and
 * rotated, V normed without a weight (or K's raw values, when K is V); both
 * into the layer's f16 cache. */
static void qkv_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const gemma4_layer *l = st->l;
    gemma4_state *s = st->s;
    const int64_t hd = l->head_dim, q_dim = (int64_t)l->n_heads * hd, kv_dim = (int64_t)l->n_kv_heads * hd;
    const ops_rope *rope = l->sliding ? &g->rope_swa : &g->rope_full;
    ops_rmsnorm_rows(s->q + first * q_dim, hd, l->q_norm, hd, g->eps, s->q + first * q_dim, hd,
                     (last - first) * l->n_heads);
    for (int64_t t = first; t < last; t++)
        ops_rope_apply(rope, s->q + t * q_dim, l->n_heads, (int32_t)hd, s->positions[t]);
    if (!l->has_kv)
        return;
    if (!l->has_v)
        memcpy(s->v + first * kv_dim, s->k + first * kv_dim, (size_t)((last - first) * kv_dim) * sizeof(float));
    ops_rmsnorm_rows(s->k + first * kv_dim, hd, l->k_norm, hd, g->eps, s->k + first * kv_dim, hd,
                     (last - first) * l->n_kv_heads);
    ops_rmsnorm_rows(s->v + first * kv_dim, hd, NULL, hd, g->eps, s->v + first * kv_dim, hd,
                     (last - first) * l->n_kv_heads);
    for (int64_t t = first; t < last; t++) {
        float *k = s->k + t * kv_dim;
        ops_rope_apply(rope, k, l->n_kv_heads, (int32_t)hd, s->positions[t]);
        ops_store_f16(s->k_cache[st->il] + (size_t)s->positions[t] * kv_dim, k, kv_dim);
        ops_store_f16(s->v_cache[st->il] + (size_t)s->positions[t] * kv_dim, s->v + t * kv_dim, kv_dim);
    }
}

/* x += norm(attention output); then the feed-forward's input norms (and,
 * for MoE layers, the router's input). */
static void attention_residual_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const gemma4_layer *l = st->l;
    gemma4_state *s = st->s;
    const int64_t d = g->n_embd, n = last - first;
    float *x = s->x + first * d, *proj = s->proj + first * d;
    ops_rmsnorm_rows(proj, d, l->post_attn_norm, d, g->eps, proj, d, n);
    ops_add(x, proj, n * d);
    ops_rmsnorm_rows(x, d, l->ffn_norm, d, g->eps, s->xn + first * d, d, n);
    if (!l->moe)
        return;
    ops_rmsnorm_rows(x, d, l->pre_norm_2, d, g->eps, s->moe_in + first * d, d, n);
    /* The router's input, in moe_out until the experts write there. */
    float *r = s->moe_out + first * d;
    ops_rmsnorm_rows(x, d, NULL, d, g->eps, r, d, n);
    ops_scale(r, n * d, 1.0f / sqrtf((float)d));
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < d; i++)
            r[t * d + i] *= l->gate_inp_scale[i];
}

static void geglu_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const int64_t ff = st->l->n_ff;
    ops_geglu(st->s->gate + first * ff, st->s->up + first * ff, (last - first) * ff);
}

/* x += norm(feed-forward): for MoE layers the norms of the shared MLP's and
 * the experts' outputs, summed, first. */
static void ffn_residual_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const gemma4_layer *l = st->l;
    gemma4_state *s = st->s;
    const int64_t d = g->n_embd, n = last - first;
    float *proj = s->proj + first * d;
    if (l->moe) {
        float *moe = s->moe_out + first * d;
        ops_rmsnorm_rows(proj, d, l->post_norm_1, d, g->eps, proj, d, n);
        ops_rmsnorm_rows(moe, d, l->post_norm_2, d, g->eps, moe, d, n);
        ops_add(proj, moe, n * d);
    }
    ops_rmsnorm_rows(proj, d, l->post_ffn_norm, d, g->eps, proj, d, n);
    ops_add(s->x + first * d, proj, n * d);
}

/* gelu(x Winp_gate) * this layer's per-layer input. */
static void ple_gate_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const int64_t npl = g->n_pl, all = npl * g->n_layers;
    for (int64_t t = first; t < last; t++)
        ops_geglu(st->s->ple_gate + t * npl, st->s->ple + t * all + (int64_t)st->il * npl, npl);
}

/* x += norm(ple projection), where there are per-layer inputs; then the
 * layer's output scale. */
static void layer_end_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const gemma4 *g = st->g;
    const gemma4_layer *l = st->l;
    const int64_t d = g->n_embd, n = last - first;
    float *x = st->s->x + first * d, *proj = st->s->proj + first * d;
    if (g->n_pl > 0) {
        ops_rmsnorm_rows(proj, d, l->post_norm, d, g->eps, proj, d, n);
        ops_add(x, proj, n * d);
    }
    if (l->out_scale)
        ops_scale(x, n * d, l->out_scale[0]);
}

/* Rows counted from first_output: only those rows need logits. */
static void output_norm_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const int64_t d = st->g->n_embd;
    const int64_t t = st->first_output + first;
    ops_rmsnorm_rows(st->s->x + t * d, d, st->g->output_norm, d, st->g->eps, st->s->xn + t * d, d, last - first);
}

static void softcap_rows(void *p, int64_t first, int64_t last)
{
    const gemma4_step *st = p;
    const float cap = st->g->softcap, inv = 1.0f / cap;
    float *l = st->logits + first * (int64_t)st->g->n_vocab;
    for (int64_t i = 0; i < (last - first) * (int64_t)st->g->n_vocab; i++)
        l[i] = tanhf(l[i] * inv) * cap;
}

static void gemma4_forward(const void *p, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                           int32_t pos0, int32_t first_output, float *logits)
{
    const gemma4 *g = p;
    gemma4_state *s = state;
    const int64_t d = g->n_embd, all = (int64_t)g->n_pl * g->n_layers;
    gemma4_step step = {.g = g, .s = s, .tokens = tokens, .pos0 = pos0, .first_output = first_output,
                        .logits = logits};

    ops_parallel_rows(pool, n, embed_rows, &step);
    if (g->n_pl > 0) {
        ops_matmul(pool, &g->ple_model_proj, s->x, d, n, s->ple_proj, all, s->act_scratch);
        ops_parallel_rows(pool, n, ple_rows, &step);
    }

    for (uint32_t il = 0; il < g->n_layers; il++) {
        const gemma4_layer *l = &g->layers[il];
        const int64_t hd = l->head_dim, q_dim = (int64_t)l->n_heads * hd, kv_dim = (int64_t)l->n_kv_heads * hd;
        const int64_t ff = l->n_ff;
        step.l = l, step.il = il;

        ops_parallel_rows(pool, n, attention_norm_rows, &step);
        if (!l->has_kv)
            ops_matmul(pool, &l->wq, s->xn, d, n, s->q, q_dim, s->act_scratch);
        else if (l->has_v)
            ops_matmul_shared_input(pool, 3, (const ops_matrix *[]){&l->wq, &l->wk, &l->wv}, s->xn, d, n,
                                    (float *[]){s->q, s->k, s->v}, (int64_t[]){q_dim, kv_dim, kv_dim},
                                    s->act_scratch);
        else
            ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->wq, &l->wk}, s->xn, d, n,
                                    (float *[]){s->q, s->k}, (int64_t[]){q_dim, kv_dim}, s->act_scratch);
        ops_parallel_rows(pool, n, qkv_rows, &step);
        ops_attention_args attn = {
            .q = s->q, .q_stride = q_dim, .k = s->k_cache[il], .v = s->v_cache[il], .k_stride = kv_dim,
            .v_stride = kv_dim, .positions = s->positions, .n_tokens = n, .n_heads = l->n_heads,
            .n_kv_heads = l->n_kv_heads, .head_dim_k = (int32_t)hd, .head_dim_v = (int32_t)hd,
            .window = l->sliding ? (int32_t)g->window : 0, .scale = 1.0f, .out = s->attn, .out_stride = q_dim,
        };
        ops_attention(pool, &attn);
        ops_matmul(pool, &l->wo, s->attn, q_dim, n, s->proj, d, s->act_scratch);
        ops_parallel_rows(pool, n, attention_residual_rows, &step);

        ops_matmul_shared_input(pool, 2, (const ops_matrix *[]){&l->gate, &l->up}, s->xn, d, n,
                                (float *[]){s->gate, s->up}, (int64_t[]){ff, ff}, s->act_scratch);
        if (l->moe)
            ops_matmul(pool, &l->gate_inp, s->moe_out, d, n, s->router, g->n_experts, s->act_scratch);
        ops_parallel_rows(pool, n, geglu_rows, &step);
        ops_matmul(pool, &l->down, s->gate, ff, n, s->proj, d, s->act_scratch);
        if (l->moe)
            ops_moe_forward(pool, &l->moe_ffn, s->router, g->n_experts, s->moe_in, d, n, s->moe_out, d,
                            s->moe_scratch);
        ops_parallel_rows(pool, n, ffn_residual_rows, &step);

        if (g->n_pl > 0) {
            ops_matmul(pool, &l->inp_gate, s->x, d, n, s->ple_gate, g->n_pl, s->act_scratch);
            ops_parallel_rows(pool, n, ple_gate_rows, &step);
            ops_matmul(pool, &l->proj, s->ple_gate, g->n_pl, n, s->proj, d, s->act_scratch);
        }
        ops_parallel_rows(pool, n, layer_end_rows, &step);
    }

    if (first_output >= n)
        return;
    ops_parallel_rows(pool, n - first_output, output_norm_rows, &step);
    ops_matmul(pool, &g->output, s->xn + first_output * d, d, n - first_output, logits, g->n_vocab,
               s->act_scratch);
    if (g->softcap > 0.0f)
        ops_parallel_rows(pool, n - first_output, softcap_rows, &step);
}

const model_arch model_arch_gemma4 = {
    .name = ARCH,
    .load = gemma4_load,
    .free_weights = gemma4_free_weights,
    .state_create = gemma4_state_create,
    .state_free = gemma4_state_free,
    .state_parts = gemma4_state_parts,
    .forward = gemma4_forward,
    .n_ctx_train = gemma4_n_ctx_train,
    .for_each_matrix = gemma4_for_each_matrix,
};

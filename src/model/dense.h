/* The dense decoder that Llama, Qwen 2 and Qwen 3 share (llama.cpp's
 * llm_build_llama, llm_build_qwen2, llm_build_qwen3):
 *
 *   x = embed(tokens)
 *   per layer:  h = norm(x);  q, k, v = h Wq + bq, h Wk + bk, h Wv + bv
 *               q, k = rope(norm_per_head(q)), rope(norm_per_head(k))
 *               x = x + attention(q, k, v) Wo + bo       -- causal, grouped-query
 *               h = norm(x)
 *               x = x + (silu(h Wgate + bgate) * (h Wup + bup)) Wdown + bdown
 *                   -- or, in a mixture of experts (Qwen 3 MoE), x = x + moe(h)
 *   logits = norm(x) Wout + bout  -- Wout is the embedding when output.weight is absent
 *
 * Every norm is RMSNorm with its stored weight. What differs between the
 * architectures is which of these parts exist (the biases are optional
 * tensors, each only where the architecture's llama.cpp loader looks for
 * it), the RoPE layout, and Llama 3's rope frequency factors. An
 * architecture file describes its differences in a dense_traits and takes
 * the rest from here. */
#ifndef HEARTH_MODEL_DENSE_H
#define HEARTH_MODEL_DENSE_H

#include "model/decoder_state.h"

typedef struct dense_traits {
    const char *name; /* general.architecture, and the prefix of its keys */
    ops_rope_layout rope_layout;
    bool qk_norm;          /* attn_q_norm, attn_k_norm: RMSNorm per head (required) */
    bool attn_output_bias; /* attn_output.bias (optional) */
    bool ffn_bias;         /* ffn_gate.bias, ffn_up.bias, ffn_down.bias (optional) */
    bool output_bias;      /* output.bias (optional) */
    bool rope_freqs;       /* rope_freqs.weight, per-pair frequency divisors (optional) */
    bool refuse_experts;   /* "<arch>.expert_count" > 0 is a mixture-of-experts file */
    /* The feed-forward is a mixture of experts (ffn_gate_inp, ffn_{gate,up,down}_exps):
     * softmax routing, the chosen weights renormalised, SwiGLU experts. */
    bool experts;
} dense_traits;

hearth_status dense_load(const dense_traits *traits, const gguf_file *file, const vocab *v, void **weights,
                         hearth_error *err);
void dense_free_weights(void *weights);
hearth_status dense_state_create(const void *weights, int32_t n_ctx, int32_t n_batch, void **state, model_memory *memory,
                                 hearth_error *err);
hearth_status dense_state_create_multi(const void *weights, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                       hearth_kv_type kv_type, void **state, model_memory *memory, hearth_error *err);
void dense_forward(const void *weights, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                   int32_t pos0, int32_t first_output, float *logits);
void dense_forward_batch(const void *weights, void *state, threadpool *pool, const model_batch *batch,
                         float *logits);
int32_t dense_n_ctx_train(const void *weights);
void dense_for_each_matrix(void *weights, void (*visit)(ops_matrix *m, void *ctx), void *ctx);

/* The model_arch of a dense architecture whose load calls dense_load. */
#define DENSE_MODEL_ARCH(arch_name, load_fn)                                                          \
    {                                                                                                 \
        .name = (arch_name), .load = (load_fn), .free_weights = dense_free_weights,                   \
        .state_create = dense_state_create, .state_free = decoder_state_free, .forward = dense_forward, \
        .state_create_multi = dense_state_create_multi, .forward_batch = dense_forward_batch,          \
        .quantized_kv = true, .state_parts = decoder_state_parts,                                     \
        .n_ctx_train = dense_n_ctx_train, .for_each_matrix = dense_for_each_matrix,                   \
    }

#endif

/* Qwen 3 MoE (Qwen3-30B-A3B, Qwen3-235B-A22B), as llama.cpp runs it
 * (llm_build_qwen3moe): Qwen 3's attention (per-head q/k norms, NEOX RoPE)
 * with every feed-forward a mixture of experts: softmax over the router's
 * logits (ffn_gate_inp), the top expert_used_count experts, their weights
 * renormalised to sum to one, SwiGLU experts of expert_feed_forward_length,
 * and no shared expert. */
#include "model/dense.h"

static const dense_traits qwen3moe_traits = {
    .name = "qwen3moe",
    .rope_layout = OPS_ROPE_NEOX,
    .qk_norm = true,
    .experts = true,
};

static hearth_status qwen3moe_load(const gguf_file *file, const vocab *v, void **weights, hearth_error *err)
{
    return dense_load(&qwen3moe_traits, file, v, weights, err);
}

const model_arch model_arch_qwen3moe = DENSE_MODEL_ARCH("qwen3moe", qwen3moe_load);

/* Qwen 3 (dense), as llama.cpp runs it (llm_build_qwen3): the dense decoder
 * of dense.h with an RMSNorm per head on q and k before RoPE (attn_q_norm,
 * attn_k_norm), which is what sets it apart from Qwen 2. RoPE is the NEOX
 * layout over the whole head. */
#include "model/dense.h"

static const dense_traits qwen3_traits = {
    .name = "qwen3",
    .rope_layout = OPS_ROPE_NEOX,
    .qk_norm = true,
};

static hearth_status qwen3_load(const gguf_file *file, const vocab *v, void **weights, hearth_error *err)
{
    return dense_load(&qwen3_traits, file, v, weights, err);
}

const model_arch model_arch_qwen3 = DENSE_MODEL_ARCH("qwen3", qwen3_load);

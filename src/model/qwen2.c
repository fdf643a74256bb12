/* Qwen 2 and 2.5, as llama.cpp runs them (llm_build_qwen2): the dense decoder
 * of dense.h with biases on q, k and v (optional, as llama.cpp loads them;
 * every published checkpoint has them) and optionally on the output. RoPE is
 * the NEOX layout over the whole head. */
#include "model/dense.h"

static const dense_traits qwen2_traits = {
    .name = "qwen2",
    .rope_layout = OPS_ROPE_NEOX,
    .output_bias = true,
};

static hearth_status qwen2_load(const gguf_file *file, const vocab *v, void **weights, hearth_error *err)
{
    return dense_load(&qwen2_traits, file, v, weights, err);
}

const model_arch model_arch_qwen2 = DENSE_MODEL_ARCH("qwen2", qwen2_load);

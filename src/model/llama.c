/* Llama 2 and 3.x and the models converted as their architecture (SmolLM,
 * Mistral 7B, TinyLlama...), as llama.cpp runs them (llm_build_llama): the
 * dense decoder of dense.h with RoPE on pairs of consecutive elements, and
 * optional biases on every projection. Llama 3.1 and later stretch long
 * wavelengths for long contexts: the converter stores the per-pair frequency
 * divisors as rope_freqs.weight, which RoPE applies. The mixture-of-experts
 * form of this architecture (Mixtral) is refused. */
#include "model/dense.h"

static const dense_traits llama_traits = {
    .name = "llama",
    .rope_layout = OPS_ROPE_NORM,
    .attn_output_bias = true,
    .ffn_bias = true,
    .rope_freqs = true,
    .refuse_experts = true,
};

static hearth_status llama_load(const gguf_file *file, const vocab *v, void **weights, hearth_error *err)
{
    return dense_load(&llama_traits, file, v, weights, err);
}

const model_arch model_arch_llama = DENSE_MODEL_ARCH("llama", llama_load);

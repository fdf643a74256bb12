#include "quant/quant.h"

#include "base/checked.h"
#include "quant/quant_ref.h"

static const quant_traits quant_table[QUANT_TYPE_COUNT] = {
    [QUANT_F32] = {"F32", 1, 4, dequantize_f32_ref, quantize_f32_ref},
    [QUANT_F16] = {"F16", 1, 2, dequantize_f16_ref, quantize_f16_ref},
    [QUANT_Q4_0] = {"Q4_0", 32, 18, dequantize_q4_0_ref, quantize_q4_0_ref},
    [QUANT_Q4_1] = {"Q4_1", 32, 20, dequantize_q4_1_ref, quantize_q4_1_ref},
    [QUANT_Q5_0] = {"Q5_0", 32, 22, dequantize_q5_0_ref, quantize_q5_0_ref},
    [QUANT_Q5_1] = {"Q5_1", 32, 24, dequantize_q5_1_ref, quantize_q5_1_ref},
    [QUANT_Q8_0] = {"Q8_0", 32, 34, dequantize_q8_0_ref, quantize_q8_0_ref},
    [QUANT_Q8_1] = {"Q8_1", 32, 40, dequantize_q8_1_ref, NULL},
    [QUANT_Q2_K] = {"Q2_K", 256, 84, dequantize_q2_K_ref, NULL},
    [QUANT_Q3_K] = {"Q3_K", 256, 110, dequantize_q3_K_ref, NULL},
    [QUANT_Q4_K] = {"Q4_K", 256, 144, dequantize_q4_K_ref, quantize_q4_K_ref},
    [QUANT_Q5_K] = {"Q5_K", 256, 176, dequantize_q5_K_ref, quantize_q5_K_ref},
    [QUANT_Q6_K] = {"Q6_K", 256, 210, dequantize_q6_K_ref, quantize_q6_K_ref},
    [QUANT_Q8_K] = {"Q8_K", 256, 292, dequantize_q8_K_ref, quantize_q8_K_ref},
    [QUANT_IQ2_XXS] = {"IQ2_XXS", 256, 66, NULL, NULL},
    [QUANT_IQ2_XS] = {"IQ2_XS", 256, 74, NULL, NULL},
    [QUANT_IQ3_XXS] = {"IQ3_XXS", 256, 98, NULL, NULL},
    [QUANT_IQ1_S] = {"IQ1_S", 256, 50, NULL, NULL},
    [QUANT_IQ4_NL] = {"IQ4_NL", 32, 18, dequantize_iq4_nl_ref, NULL},
    [QUANT_IQ3_S] = {"IQ3_S", 256, 110, NULL, NULL},
    [QUANT_IQ2_S] = {"IQ2_S", 256, 82, NULL, NULL},
    [QUANT_IQ4_XS] = {"IQ4_XS", 256, 136, dequantize_iq4_xs_ref, NULL},
    [QUANT_I8] = {"I8", 1, 1, NULL, NULL},
    [QUANT_I16] = {"I16", 1, 2, NULL, NULL},
    [QUANT_I32] = {"I32", 1, 4, NULL, NULL},
    [QUANT_I64] = {"I64", 1, 8, NULL, NULL},
    [QUANT_F64] = {"F64", 1, 8, NULL, NULL},
    [QUANT_IQ1_M] = {"IQ1_M", 256, 56, NULL, NULL},
    [QUANT_BF16] = {"BF16", 1, 2, dequantize_bf16_ref, quantize_bf16_ref},
    [QUANT_TQ1_0] = {"TQ1_0", 256, 54, NULL, NULL},
    [QUANT_TQ2_0] = {"TQ2_0", 256, 66, NULL, NULL},
    [QUANT_MXFP4] = {"MXFP4", 32, 17, dequantize_mxfp4_ref, quantize_mxfp4_ref},
    [QUANT_NVFP4] = {"NVFP4", 64, 36, NULL, NULL},
    [QUANT_Q1_0] = {"Q1_0", 128, 18, NULL, NULL},
};

const quant_traits *quant_get_traits(uint32_t type)
{
    if (type >= QUANT_TYPE_COUNT || quant_table[type].name == NULL)
        return NULL;
    return &quant_table[type];
}

bool quant_bytes(uint32_t type, uint64_t n, uint64_t *bytes)
{
    const quant_traits *t = quant_get_traits(type);
    if (!t || n % t->block_size != 0)
        return false;
    return checked_mul_u64(n / t->block_size, t->type_size, bytes);
}

/* The scalar reference converters behind quant_traits. n is the element
 * count, a multiple of the format's block size. */
#ifndef HEARTH_QUANT_REF_H
#define HEARTH_QUANT_REF_H

#include <stdint.h>

#define QUANT_REF_DECLARE_DEQUANT(name) void dequantize_##name##_ref(const void *blocks, float *out, int64_t n);
#define QUANT_REF_DECLARE_QUANT(name) void quantize_##name##_ref(const float *in, void *blocks, int64_t n);

QUANT_REF_DECLARE_DEQUANT(f32)
QUANT_REF_DECLARE_DEQUANT(f16)
QUANT_REF_DECLARE_DEQUANT(bf16)
QUANT_REF_DECLARE_DEQUANT(q4_0)
QUANT_REF_DECLARE_DEQUANT(q4_1)
QUANT_REF_DECLARE_DEQUANT(q5_0)
QUANT_REF_DECLARE_DEQUANT(q5_1)
QUANT_REF_DECLARE_DEQUANT(q8_0)
QUANT_REF_DECLARE_DEQUANT(q8_1)
QUANT_REF_DECLARE_DEQUANT(iq4_nl)
QUANT_REF_DECLARE_DEQUANT(mxfp4)
QUANT_REF_DECLARE_DEQUANT(q2_K)
QUANT_REF_DECLARE_DEQUANT(q3_K)
QUANT_REF_DECLARE_DEQUANT(q4_K)
QUANT_REF_DECLARE_DEQUANT(q5_K)
QUANT_REF_DECLARE_DEQUANT(q6_K)
QUANT_REF_DECLARE_DEQUANT(q8_K)
QUANT_REF_DECLARE_DEQUANT(iq4_xs)

QUANT_REF_DECLARE_QUANT(f32)
QUANT_REF_DECLARE_QUANT(f16)
QUANT_REF_DECLARE_QUANT(bf16)
QUANT_REF_DECLARE_QUANT(q4_0)
QUANT_REF_DECLARE_QUANT(q4_1)
QUANT_REF_DECLARE_QUANT(q5_0)
QUANT_REF_DECLARE_QUANT(q5_1)
QUANT_REF_DECLARE_QUANT(q8_0)
QUANT_REF_DECLARE_QUANT(mxfp4)
QUANT_REF_DECLARE_QUANT(q4_K)
QUANT_REF_DECLARE_QUANT(q5_K)
QUANT_REF_DECLARE_QUANT(q6_K)
QUANT_REF_DECLARE_QUANT(q8_K)

/* Scale and min of sub-block j (0..7) from the 12 packed scale bytes of
 * Q4_K/Q5_K, shared with the kernels' dot products and repacking. */
void quant_k4_scale_min(const uint8_t packed[12], int j, int *scale, int *min);

/* Round to nearest, ties to even, for |x| < 2^22: the rounding every
 * K-quant reference uses. */
static inline int quant_nearest_int(float x)
{
    float shifted = x + 12582912.0f; /* 1.5 * 2^23: the integer lands in the low mantissa bits */
    int32_t bits;
    __builtin_memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007FFFFF) - 0x00400000;
}

#endif

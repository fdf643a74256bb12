/* IEEE half (f16) and bfloat16 conversions, bit-exact and portable.
 *
 * f32 -> f16 rounds to nearest even, overflows to infinity, keeps NaN a NaN
 * (with the top payload bits), like numpy's astype(float16) and ggml's
 * software path. f32 -> bf16 rounds to nearest even and quiets NaN, as ggml
 * does. The reverse directions are exact. */
#ifndef HEARTH_BASE_FP16_H
#define HEARTH_BASE_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fp32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float fp32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    if (exp == 0x1F) /* infinity or NaN: keep the payload */
        return fp32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0)
        return fp32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0)
        return fp32_from_bits(sign);
    /* Subnormal half: man * 2^-24, exact in f32. */
    float mag = (float)man * 5.9604644775390625e-8f;
    return sign ? -mag : mag;
}

/* Shifts m right by `shift` bits, rounding to nearest, ties to even. */
static inline uint32_t fp16_round_shift(uint32_t m, uint32_t shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

static inline uint16_t fp32_to_fp16(float f)
{
    uint32_t x = fp32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7FFFFFFFu;
    if (x > 0x7F800000u) { /* NaN: top payload bits, and never a zero payload */
        uint16_t payload = (uint16_t)((x >> 13) & 0x3FF);
        return sign | 0x7C00 | (payload ? payload : 1);
    }
    if (x >= 0x477FF000u) /* at or past the midpoint above 65504: infinity */
        return sign | 0x7C00;
    if (x < 0x38800000u) { /* below 2^-14: a subnormal half or zero */
        if (x < 0x33000000u) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t e = x >> 23;
        uint32_t m = (x & 0x7FFFFFu) | 0x800000u;
        return sign | (uint16_t)fp16_round_shift(m, 126 - e);
    }
    /* Normal: rebias the exponent, round the mantissa; a carry moves into the
     * exponent, which is the right answer. */
    uint32_t biased = ((x >> 23) - 112) << 10 | ((x & 0x7FFFFFu) >> 13);
    uint32_t rem = x & 0x1FFF;
    biased += rem > 0x1000 || (rem == 0x1000 && (biased & 1));
    return sign | (uint16_t)biased;
}

static inline float bf16_to_fp32(uint16_t h)
{
    return fp32_from_bits((uint32_t)h << 16);
}

static inline uint16_t fp32_to_bf16(float f)
{
    uint32_t x = fp32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: force quiet */
        return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

#endif

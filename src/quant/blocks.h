/* Block layouts of the weight formats, byte for byte as GGUF stores them.
 * f16 fields are raw IEEE half bits (base/fp16.h converts). Legend: a block
 * holds QK elements; "sub-block" is the group that shares one scale. */
#ifndef HEARTH_QUANT_BLOCKS_H
#define HEARTH_QUANT_BLOCKS_H

#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_MXFP4 32
#define QK_K 256 /* super-block of the K-quants and IQ4_XS */
#define K_SCALE_BYTES 12

typedef struct block_q4_0 {
    uint16_t d;           /* scale */
    uint8_t qs[QK4_0 / 2]; /* element j in the low nibble of qs[j], j+16 in the high */
} block_q4_0;

typedef struct block_q4_1 {
    uint16_t d, m; /* x = q*d + m */
    uint8_t qs[QK4_1 / 2];
} block_q4_1;

typedef struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4]; /* bit j: fifth bit of element j (little-endian u32) */
    uint8_t qs[QK5_0 / 2];
} block_q5_0;

typedef struct block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;

typedef struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

/* Q8_1, 40 bytes as the GGUF type table (gguf-py's) sizes it: ggml's first
 * layout, an f32 scale, s = d * sum(qs) as a second f32, then the values
 * (ggml's own code has since moved to 36 bytes with f16 fields; published
 * files store no Q8_1 weights either way). Dequantizing reads only d and qs.
 * It is the activation format of Q4_1 and Q5_1 (ops/dot.h): s carries their
 * min term, m * s per block, and hearth computes it from the exact integer
 * sum, so it is rounded once. */
typedef struct block_q8_1 {
    float d;
    float s;
    int8_t qs[QK8_1];
} block_q8_1;

typedef struct block_iq4_nl {
    uint16_t d;
    uint8_t qs[QK4_NL / 2]; /* indices into the non-linear table */
} block_iq4_nl;

typedef struct block_mxfp4 {
    uint8_t e;                /* E8M0 shared exponent */
    uint8_t qs[QK_MXFP4 / 2]; /* E2M1 codes, as block_q4_0 nibbles */
} block_mxfp4;

/* 16 sub-blocks of 16: 4-bit scale and 4-bit min per sub-block, 2-bit quants. */
typedef struct block_q2_K {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} block_q2_K;

/* 16 sub-blocks of 16: 6-bit scales, 2 low bits in qs + 1 high bit in hmask. */
typedef struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[K_SCALE_BYTES];
    uint16_t d;
} block_q3_K;

/* 8 sub-blocks of 32: 6-bit scale and 6-bit min each, packed in 12 bytes. */
typedef struct block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_BYTES];
    uint8_t qs[QK_K / 2];
} block_q4_K;

typedef struct block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_BYTES];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

/* 16 sub-blocks of 16: int8 scales, 4 low bits in ql + 2 high bits in qh. */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

/* The activation format of K-quant dot products: f32 scale, int8 values and
 * the sums of each group of 16 (so a min term costs one multiply per group). */
typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

typedef struct block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;        /* 2 high bits of each sub-block's 6-bit scale */
    uint8_t scales_l[QK_K / 64]; /* 4 low bits, two per byte */
    uint8_t qs[QK_K / 2];
} block_iq4_xs;

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "Q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "Q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 layout");
_Static_assert(sizeof(block_q8_1) == 40, "Q8_1 layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL layout");
_Static_assert(sizeof(block_mxfp4) == 17, "MXFP4 layout");
_Static_assert(sizeof(block_q2_K) == 84, "Q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "Q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "Q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "Q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "Q8_K layout");
_Static_assert(sizeof(block_iq4_xs) == 136, "IQ4_XS layout");

/* The 16 levels of IQ4_NL / IQ4_XS, and the doubled E2M1 values of MXFP4
 * (doubled so they are integers; the E8M0 scale is halved to match). */
extern const int8_t quant_iq4nl_levels[16];
extern const int8_t quant_mxfp4_levels[16];

/* E8M0 exponent e as the half-scale 2^(e-128) that pairs with the doubled
 * E2M1 levels (ggml's GGML_E8M0_TO_FP32_HALF); e = 0 and 1 give the f32
 * subnormals 2^-128 and 2^-127. Exact, so every kernel gets the same float. */
static inline float quant_mxfp4_half_scale(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

#endif

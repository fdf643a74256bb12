/* Scalar reference row dot products and the per-type dispatch.
 *
 * The integer kernels follow ggml's generic C versions: inside a block (or a
 * K-quant super-block) every product is an exact integer sum, and only the
 * per-block combination with the f16/f32 scales happens in float. That makes
 * the SIMD variants comparable to these up to the order of a few float
 * additions, and keeps the results within rounding of llama.cpp's.
 *
 * Float weights accumulate in double: the reference should be the most
 * accurate answer, not the fastest. */
#include "ops/dot.h"

#include "ops/dot_kernels.h"

#include "base/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_ref.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ---- 32-element formats against Q8_0 --------------------------------------- */

static void dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q8_0 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK8_0; j++)
            isum += wb[i].qs[j] * xb[i].qs[j];
        sum += (float)isum * (fp16_to_fp32(wb[i].d) * fp16_to_fp32(xb[i].d));
    }
    *out = sum;
}

static void dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q4_0 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((wb[i].qs[j] & 0x0F) - 8) * xb[i].qs[j];
            isum += ((wb[i].qs[j] >> 4) - 8) * xb[i].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * (fp16_to_fp32(wb[i].d) * fp16_to_fp32(xb[i].d));
    }
    *out = sum;
}

/* MXFP4: the doubled E2M1 levels are integers, so a block's sum is exact
 * and its scale is the Q8_0 block's times the halved E8M0 one, as ggml. */
static void dot_mxfp4_q8_0_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_mxfp4 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_MXFP4; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            isum += quant_mxfp4_levels[wb[i].qs[j] & 0x0F] * xb[i].qs[j];
            isum += quant_mxfp4_levels[wb[i].qs[j] >> 4] * xb[i].qs[j + QK_MXFP4 / 2];
        }
        sum += (float)isum * (fp16_to_fp32(xb[i].d) * quant_mxfp4_half_scale(wb[i].e));
    }
    *out = sum;
}

static void dot_q5_0_q8_0_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q5_0 *wb = w;
    const block_q8_0 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        uint32_t qh;
        memcpy(&qh, wb[i].qh, sizeof qh);
        int32_t isum = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo = (int)((wb[i].qs[j] & 0x0F) | (qh >> j & 1) << 4) - 16;
            int hi = (int)((wb[i].qs[j] >> 4) | (qh >> (j + 16) & 1) << 4) - 16;
            isum += lo * xb[i].qs[j] + hi * xb[i].qs[j + QK5_0 / 2];
        }
        sum += (float)isum * (fp16_to_fp32(wb[i].d) * fp16_to_fp32(xb[i].d));
    }
    *out = sum;
}

/* ---- Q4_1 and Q5_1 against Q8_1 ------------------------------------------- */

/* w = d*q + m with q unsigned (0..15, or 0..31 with Q5_1's fifth bit from
 * qh; qh is NULL for Q4_1), so a block is d_w*d_a*sum(q*a) + m_w*d_a*sum(a):
 * the first an exact integer sum, the second m_w*s with s = d_a*sum(a) from
 * the Q8_1 block. */
static float dot_min_32_block(uint16_t d, uint16_t m, const uint8_t qs[16], const uint8_t *qh, const block_q8_1 *a)
{
    uint32_t high = 0;
    if (qh)
        memcpy(&high, qh, sizeof high);
    int32_t isum = 0;
    for (int j = 0; j < 16; j++) {
        isum += (int)((qs[j] & 0x0F) | (high >> j & 1) << 4) * a->qs[j];
        isum += (int)((qs[j] >> 4) | (high >> (j + 16) & 1) << 4) * a->qs[j + 16];
    }
    return (float)isum * (fp16_to_fp32(d) * a->d) + fp16_to_fp32(m) * a->s;
}

static void dot_q4_1_q8_1_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q4_1 *wb = w;
    const block_q8_1 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_1; i++)
        sum += dot_min_32_block(wb[i].d, wb[i].m, wb[i].qs, NULL, &xb[i]);
    *out = sum;
}

static void dot_q5_1_q8_1_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q5_1 *wb = w;
    const block_q8_1 *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_1; i++)
        sum += dot_min_32_block(wb[i].d, wb[i].m, wb[i].qs, wb[i].qh, &xb[i]);
    *out = sum;
}

/* ---- K-quants against Q8_K ------------------------------------------------- */

/* Q4_K and Q5_K: x = d*sc*q - dmin*m per sub-block of 32. The min term needs
 * only the activation sums, which Q8_K carries per 16 (bsums). qh is NULL for
 * Q4_K; for Q5_K bit j of qh[l] is the fifth bit of element 32j + l. */
static float dot_k4_block(uint16_t d16, uint16_t dmin16, const uint8_t scales[K_SCALE_BYTES], const uint8_t *qs,
                          const uint8_t *qh, const block_q8_K *xb)
{
    int32_t scaled = 0, mins = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        quant_k4_scale_min(scales, j, &sc, &m);
        /* Sub-block j is nibble j%2 of qs[32*(j/2) .. +32]. */
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        int32_t sub = 0;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift & 0x0F) | (qh ? (qh[l] >> j & 1) << 4 : 0);
            sub += v * xb->qs[32 * j + l];
        }
        scaled += sc * sub;
        mins += m * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
    }
    float d = fp16_to_fp32(d16) * xb->d, dmin = fp16_to_fp32(dmin16) * xb->d;
    return d * (float)scaled - dmin * (float)mins;
}

static void dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q4_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sum += dot_k4_block(wb[i].d, wb[i].dmin, wb[i].scales, wb[i].qs, NULL, &xb[i]);
    *out = sum;
}

static void dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q5_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sum += dot_k4_block(wb[i].d, wb[i].dmin, wb[i].scales, wb[i].qs, wb[i].qh, &xb[i]);
    *out = sum;
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; values stored with offset 32.
 * Element e = 128h + r: low 4 bits are nibble r/64 of ql[64h + r%64], high 2
 * bits are bits 2(r/32).. of qh[32h + r%32]. */
static void dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q6_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t scaled = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int32_t sub = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int h = e / 128, r = e % 128;
                int low = wb[i].ql[64 * h + r % 64] >> (4 * (r / 64)) & 0x0F;
                int high = wb[i].qh[32 * h + r % 32] >> (2 * (r / 32)) & 3;
                sub += ((low | high << 4) - 32) * xb[i].qs[e];
            }
            scaled += wb[i].scales[g] * sub;
        }
        sum += (fp16_to_fp32(wb[i].d) * xb[i].d) * (float)scaled;
    }
    *out = sum;
}

/* Q2_K: 16 sub-blocks of 16, x = d*(sc&15)*q - dmin*(sc>>4). Element
 * e = 128h + 32s + l is bits 2s..2s+1 of qs[32h + l]. */
static void dot_q2_K_q8_K_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q2_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t scaled = 0, mins = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int32_t sub = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int h = e / 128, s = e % 128 / 32, l = e % 32;
                sub += (wb[i].qs[32 * h + l] >> (2 * s) & 3) * xb[i].qs[e];
            }
            scaled += (wb[i].scales[g] & 0x0F) * sub;
            mins += (wb[i].scales[g] >> 4) * xb[i].bsums[g];
        }
        float d = fp16_to_fp32(wb[i].d) * xb[i].d, dmin = fp16_to_fp32(wb[i].dmin) * xb[i].d;
        sum += d * (float)scaled - dmin * (float)mins;
    }
    *out = sum;
}

/* Q3_K: 16 sub-blocks of 16 with signed 6-bit scales; element e = 128h +
 * 32s + l has 2 bits at 2s of qs[32h + l] and a third bit, bit e/32 of
 * hmask[l], whose being clear means "minus 4". */
static void dot_q3_K_q8_K_ref(int64_t n, const void *w, const void *x, float *out)
{
    const block_q3_K *wb = w;
    const block_q8_K *xb = x;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *packed = wb[i].scales;
        int32_t scaled = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int low = g < 8 ? packed[g] & 0x0F : packed[g - 8] >> 4;
            int high = packed[8 + g % 4] >> (2 * (g / 4)) & 3;
            int scale = (low | high << 4) - 32;
            int32_t sub = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int h = e / 128, s = e % 128 / 32, l = e % 32;
                int q = (wb[i].qs[32 * h + l] >> (2 * s) & 3) - (wb[i].hmask[l] >> (e / 32) & 1 ? 0 : 4);
                sub += q * xb[i].qs[e];
            }
            scaled += scale * sub;
        }
        sum += (fp16_to_fp32(wb[i].d) * xb[i].d) * (float)scaled;
    }
    *out = sum;
}

/* ---- float weights against f32 --------------------------------------------- */

static void dot_f32_f32_ref(int64_t n, const void *w, const void *x, float *out)
{
    const float *wf = w, *xf = x;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)wf[i] * (double)xf[i];
    *out = (float)sum;
}

static void dot_f16_f32_ref(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)fp16_to_fp32(wh[i]) * (double)xf[i];
    *out = (float)sum;
}

static void dot_bf16_f32_ref(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)bf16_to_fp32(wh[i]) * (double)xf[i];
    *out = (float)sum;
}

/* Formats without an integer kernel: dequantize a chunk at a time into the
 * stack (every such format's block size divides the chunk) and dot in double.
 * Slow, but any format the loader accepts can be multiplied. */
#define DEQUANT_CHUNK 256

static void dot_dequantized_f32(uint32_t type, int64_t n, const void *w, const void *x, float *out)
{
    const quant_traits *traits = quant_get_traits(type);
    assert(traits && traits->dequantize && DEQUANT_CHUNK % traits->block_size == 0);
    const uint8_t *wbytes = w;
    const float *xf = x;
    float chunk[DEQUANT_CHUNK];
    double sum = 0;
    for (int64_t start = 0; start < n; start += DEQUANT_CHUNK) {
        int64_t len = n - start < DEQUANT_CHUNK ? n - start : DEQUANT_CHUNK;
        traits->dequantize(wbytes + start / traits->block_size * traits->type_size, chunk, len);
        for (int64_t i = 0; i < len; i++)
            sum += (double)chunk[i] * (double)xf[start + i];
    }
    *out = (float)sum;
}

#define DOT_DEQUANTIZED(name, type)                                                   \
    static void dot_##name##_f32_ref(int64_t n, const void *w, const void *x, float *out) \
    {                                                                                 \
        dot_dequantized_f32(type, n, w, x, out);                                      \
    }
DOT_DEQUANTIZED(q8_1, QUANT_Q8_1)
DOT_DEQUANTIZED(q8_K, QUANT_Q8_K)
DOT_DEQUANTIZED(iq4_nl, QUANT_IQ4_NL)
DOT_DEQUANTIZED(iq4_xs, QUANT_IQ4_XS)

/* ---- dispatch -------------------------------------------------------------- */

typedef struct dot_pairing {
    uint32_t activation; /* quant_type of the activation row */
    ops_dot_fn ref;      /* NULL: this weight type cannot be multiplied */
} dot_pairing;

static const dot_pairing dot_pairings[QUANT_TYPE_COUNT] = {
    [QUANT_F32] = {QUANT_F32, dot_f32_f32_ref},
    [QUANT_F16] = {QUANT_F32, dot_f16_f32_ref},
    [QUANT_BF16] = {QUANT_F32, dot_bf16_f32_ref},
    [QUANT_Q4_0] = {QUANT_Q8_0, dot_q4_0_q8_0_ref},
    [QUANT_Q5_0] = {QUANT_Q8_0, dot_q5_0_q8_0_ref},
    [QUANT_Q8_0] = {QUANT_Q8_0, dot_q8_0_q8_0_ref},
    [QUANT_Q2_K] = {QUANT_Q8_K, dot_q2_K_q8_K_ref},
    [QUANT_Q3_K] = {QUANT_Q8_K, dot_q3_K_q8_K_ref},
    [QUANT_Q4_K] = {QUANT_Q8_K, dot_q4_K_q8_K_ref},
    [QUANT_Q5_K] = {QUANT_Q8_K, dot_q5_K_q8_K_ref},
    [QUANT_Q6_K] = {QUANT_Q8_K, dot_q6_K_q8_K_ref},
    [QUANT_Q4_1] = {QUANT_Q8_1, dot_q4_1_q8_1_ref},
    [QUANT_Q5_1] = {QUANT_Q8_1, dot_q5_1_q8_1_ref},
    [QUANT_Q8_1] = {QUANT_F32, dot_q8_1_f32_ref},
    [QUANT_Q8_K] = {QUANT_F32, dot_q8_K_f32_ref},
    [QUANT_IQ4_NL] = {QUANT_F32, dot_iq4_nl_f32_ref},
    [QUANT_IQ4_XS] = {QUANT_F32, dot_iq4_xs_f32_ref},
    [QUANT_MXFP4] = {QUANT_Q8_0, dot_mxfp4_q8_0_ref},
};

uint32_t ops_activation_type(uint32_t weight_type)
{
    if (weight_type < QUANT_TYPE_COUNT && dot_pairings[weight_type].ref)
        return dot_pairings[weight_type].activation;
    return QUANT_F32;
}

ops_dot_fn ops_dot_ref(uint32_t weight_type)
{
    return weight_type < QUANT_TYPE_COUNT ? dot_pairings[weight_type].ref : NULL;
}

/* SIMD variants by level; a type missing from a level's table falls to the
 * next level down. Static tables: nothing to initialise but the CPU level,
 * which base/cpu.c detects once. */
#if defined(__x86_64__)
#define DOT_VARIANTS(isa)                                   \
    {                                                       \
        [QUANT_F32] = ops_dot_f32_f32_##isa,                \
        [QUANT_F16] = ops_dot_f16_f32_##isa,                \
        [QUANT_BF16] = ops_dot_bf16_f32_##isa,              \
        [QUANT_Q4_0] = ops_dot_q4_0_q8_0_##isa,             \
        [QUANT_Q5_0] = ops_dot_q5_0_q8_0_##isa,             \
        [QUANT_Q8_0] = ops_dot_q8_0_q8_0_##isa,             \
        [QUANT_MXFP4] = ops_dot_mxfp4_q8_0_##isa,           \
        [QUANT_Q4_1] = ops_dot_q4_1_q8_1_##isa,             \
        [QUANT_Q5_1] = ops_dot_q5_1_q8_1_##isa,             \
        [QUANT_Q4_K] = ops_dot_q4_K_q8_K_##isa,             \
        [QUANT_Q5_K] = ops_dot_q5_K_q8_K_##isa,             \
        [QUANT_Q6_K] = ops_dot_q6_K_q8_K_##isa,             \
    }
static const ops_dot_fn dot_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT] = {
    [CPU_LEVEL_AVX2] = DOT_VARIANTS(avx2),
    [CPU_LEVEL_AVX512] = DOT_VARIANTS(avx512),
};
#define DOT4_VARIANTS(isa)                                  \
    {                                                       \
        [QUANT_Q4_0] = ops_dot4_q4_0_q8_0_##isa,            \
        [QUANT_Q5_0] = ops_dot4_q5_0_q8_0_##isa,            \
        [QUANT_Q8_0] = ops_dot4_q8_0_q8_0_##isa,            \
        [QUANT_MXFP4] = ops_dot4_mxfp4_q8_0_##isa,          \
        [QUANT_Q4_1] = ops_dot4_q4_1_q8_1_##isa,            \
        [QUANT_Q5_1] = ops_dot4_q5_1_q8_1_##isa,            \
        [QUANT_Q4_K] = ops_dot4_q4_K_q8_K_##isa,            \
        [QUANT_Q5_K] = ops_dot4_q5_K_q8_K_##isa,            \
        [QUANT_Q6_K] = ops_dot4_q6_K_q8_K_##isa,            \
    }
static const ops_dot4_fn dot4_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT] = {
    [CPU_LEVEL_AVX2] = DOT4_VARIANTS(avx2),
    [CPU_LEVEL_AVX512] = DOT4_VARIANTS(avx512),
};
#define DOT4X2_VARIANTS(isa)                                \
    {                                                       \
        [QUANT_Q4_0] = ops_dot4x2_q4_0_q8_0_##isa,          \
        [QUANT_Q5_0] = ops_dot4x2_q5_0_q8_0_##isa,          \
        [QUANT_Q8_0] = ops_dot4x2_q8_0_q8_0_##isa,          \
        [QUANT_MXFP4] = ops_dot4x2_mxfp4_q8_0_##isa,        \
        [QUANT_Q4_1] = ops_dot4x2_q4_1_q8_1_##isa,          \
        [QUANT_Q5_1] = ops_dot4x2_q5_1_q8_1_##isa,          \
    }
static const ops_dot4x2_fn dot4x2_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT] = {
    [CPU_LEVEL_AVX2] = DOT4X2_VARIANTS(avx2),
    [CPU_LEVEL_AVX512] = DOT4X2_VARIANTS(avx512),
};
#else
static const ops_dot_fn dot_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT];
static const ops_dot4_fn dot4_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT];
static const ops_dot4x2_fn dot4x2_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT];
#endif

ops_dot_fn ops_dot_at_level(uint32_t weight_type, cpu_level level)
{
    if (weight_type >= QUANT_TYPE_COUNT || !dot_pairings[weight_type].ref)
        return NULL;
    for (int l = level; l > CPU_LEVEL_SCALAR; l--)
        if (dot_variants[l][weight_type])
            return dot_variants[l][weight_type];
    return dot_pairings[weight_type].ref;
}

ops_dot_fn ops_dot_best(uint32_t weight_type)
{
    return ops_dot_at_level(weight_type, cpu_best_level());
}

/* From the same level as the one-row kernel, or none: the two must agree
 * bit for bit. */
ops_dot4_fn ops_dot4_at_level(uint32_t weight_type, cpu_level level)
{
    if (weight_type >= QUANT_TYPE_COUNT || !dot_pairings[weight_type].ref)
        return NULL;
    for (int l = level; l > CPU_LEVEL_SCALAR; l--)
        if (dot_variants[l][weight_type])
            return dot4_variants[l][weight_type];
    return NULL;
}

ops_dot4_fn ops_dot4_best(uint32_t weight_type)
{
    return ops_dot4_at_level(weight_type, cpu_best_level());
}

ops_dot4x2_fn ops_dot4x2_at_level(uint32_t weight_type, cpu_level level)
{
    if (weight_type >= QUANT_TYPE_COUNT || !dot_pairings[weight_type].ref)
        return NULL;
    for (int l = level; l > CPU_LEVEL_SCALAR; l--)
        if (dot_variants[l][weight_type])
            return dot4x2_variants[l][weight_type];
    return NULL;
}

ops_dot4x2_fn ops_dot4x2_best(uint32_t weight_type)
{
    return ops_dot4x2_at_level(weight_type, cpu_best_level());
}

/* Activations to Q8_0 the way ggml's x86 build does it at run time, which is
 * not its reference quantizer: the inverse scale is 127/amax rather than
 * 1/(amax/127), and halves round to even. Weights keep the reference
 * (quantize_q8_0_ref, bit-exact with gguf); activations follow the engine we
 * are compared with, because a value that rounds the other way is a whole
 * int8 step, and this model family amplifies such steps into visible logit
 * differences. */
static void quantize_activation_q8_0(const float *x, block_q8_0 *out, int64_t n)
{
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
        out[b].d = fp32_to_fp16(amax / 127.0f);
        for (int i = 0; i < QK8_0; i++)
            out[b].qs[i] = (int8_t)nearbyintf(x[i] * inverse);
    }
}

/* Q8_1: the Q8_0 values and scale (widened to f32), and s = d times the
 * exact sum of the values. */
static void quantize_activation_q8_1(const float *x, block_q8_1 *out, int64_t n)
{
    for (int64_t b = 0; b < n / QK8_1; b++) {
        block_q8_0 q;
        quantize_activation_q8_0(x + QK8_1 * b, &q, QK8_1);
        int32_t sum = 0;
        for (int k = 0; k < QK8_1; k++)
            sum += q.qs[k];
        out[b].d = fp16_to_fp32(q.d);
        out[b].s = out[b].d * (float)sum;
        memcpy(out[b].qs, q.qs, QK8_1);
    }
}

void ops_quantize_activation(uint32_t weight_type, const float *x, void *dst, int64_t n)
{
    switch (ops_activation_type(weight_type)) {
    case QUANT_Q8_0:
        quantize_activation_q8_0(x, dst, n);
        break;
    case QUANT_Q8_1:
        quantize_activation_q8_1(x, dst, n);
        break;
    case QUANT_Q8_K:
        quantize_q8_K_ref(x, dst, n);
        break;
    default:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    }
}

size_t ops_activation_row_bytes(uint32_t weight_type, int64_t n)
{
    switch (ops_activation_type(weight_type)) {
    case QUANT_Q8_0:
        return (size_t)(n / QK8_0) * sizeof(block_q8_0);
    case QUANT_Q8_1:
        return (size_t)(n / QK8_1) * sizeof(block_q8_1);
    case QUANT_Q8_K:
        return (size_t)(n / QK_K) * sizeof(block_q8_K);
    default:
        return (size_t)n * sizeof(float);
    }
}

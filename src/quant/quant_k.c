/* Reference converters of the 256-element super-block formats: the K-quants
 * and IQ4_XS.
 *
 * Element order inside a super-block: the quants are stored in chunks whose
 * low bits sit in one array and high bits in another; each dequantizer below
 * computes, for element e, where its bits are, rather than walking pointers,
 * so the layout can be checked against the comments in blocks.h line by line.
 *
 * The quantizers reproduce ggml's reference search (a weighted least-squares
 * refinement of scale and min per sub-block) operation for operation: the
 * bytes must equal those of files quantized by llama.cpp. */
#include "quant/quant_ref.h"

#include "base/fp16.h"
#include "quant/blocks.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* Below this magnitude a group is treated as all zeros. */
#define GROUP_EPSILON 1e-15f

static inline int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- dequantize ------------------------------------------------------------ */

void dequantize_q2_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q2_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K) {
        float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
        /* Element e = 128h + 32s + l: bits 2s..2s+1 of qs[32h + l]. */
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, s = e % 128 / 32, l = e % 32;
            uint8_t sc = b[i].scales[e / 16];
            float dl = d * (float)(sc & 0x0F), ml = dmin * (float)(sc >> 4);
            out[e] = dl * (float)(b[i].qs[32 * h + l] >> (2 * s) & 3) - ml;
        }
    }
}

/* The 16 signed 6-bit scales of Q3_K: low 4 bits from bytes 0..7 (low
 * nibbles for sub-blocks 0..7, high nibbles for 8..15), high 2 bits from
 * bytes 8..11, two bits per sub-block. */
static void q3_K_scales(const uint8_t packed[K_SCALE_BYTES], int scales[16])
{
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0x0F : packed[j - 8] >> 4;
        int high = packed[8 + j % 4] >> (2 * (j / 4)) & 3;
        scales[j] = (low | high << 4) - 32;
    }
}

void dequantize_q3_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q3_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K) {
        float d = fp16_to_fp32(b[i].d);
        int scales[16];
        q3_K_scales(b[i].scales, scales);
        /* Element e = 128h + 32s + l: 2 bits at 2s of qs[32h + l]; its third
         * bit is bit e/32 of hmask[l], and a clear bit means "minus 4". */
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, s = e % 128 / 32, l = e % 32;
            int q = b[i].qs[32 * h + l] >> (2 * s) & 3;
            int minus4 = b[i].hmask[l] >> (e / 32) & 1 ? 0 : 4;
            float dl = d * (float)scales[e / 16];
            out[e] = dl * (float)(q - minus4);
        }
    }
}

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K:
 * sub-blocks 0..3 keep 6 bits in bytes 0..3 (scale) and 4..7 (min); 4..7 keep
 * their low 4 bits in bytes 8..11 and their top 2 bits in the spare top bits
 * of bytes 0..7. */
void quant_k4_scale_min(const uint8_t packed[K_SCALE_BYTES], int j, int *scale, int *min)
{
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (packed[j + 4] & 0x0F) | (packed[j - 4] >> 6) << 4;
        *min = (packed[j + 4] >> 4) | (packed[j] >> 6) << 4;
    }
}

/* Element e = 64c + 32k + l of Q4_K/Q5_K: nibble k of qs[32c + l]. */
static inline int k4_nibble(const uint8_t *qs, int e)
{
    return qs[32 * (e / 64) + e % 32] >> (4 * (e % 64 / 32)) & 0x0F;
}

/* Q4_K and Q5_K share everything but the fifth bit, which Q5_K keeps as bit
 * e/32 of qh[e % 32]; qh is NULL for Q4_K. */
static void dequantize_k4_block(uint16_t d16, uint16_t dmin16, const uint8_t scales[K_SCALE_BYTES],
                                const uint8_t *qs, const uint8_t *qh, float *out)
{
    float d = fp16_to_fp32(d16), dmin = fp16_to_fp32(dmin16);
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        quant_k4_scale_min(scales, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int e = 32 * j; e < 32 * j + 32; e++) {
            int q = k4_nibble(qs, e) | (qh ? (qh[e % 32] >> j & 1) << 4 : 0);
            out[e] = dl * (float)q - ml;
        }
    }
}

void dequantize_q4_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q4_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K)
        dequantize_k4_block(b[i].d, b[i].dmin, b[i].scales, b[i].qs, NULL, out);
}

void dequantize_q5_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q5_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K)
        dequantize_k4_block(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, out);
}

/* Element e = 128h + r of Q6_K: low 4 bits are nibble r/64 of ql[64h + r%64],
 * high 2 bits are bits 2(r/32).. of qh[32h + r%32]; stored with offset 32. */
static inline int q6_K_value(const block_q6_K *b, int e)
{
    int h = e / 128, r = e % 128;
    int low = b->ql[64 * h + r % 64] >> (4 * (r / 64)) & 0x0F;
    int high = b->qh[32 * h + r % 32] >> (2 * (r / 32)) & 3;
    return (low | high << 4) - 32;
}

void dequantize_q6_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q6_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K) {
        float d = fp16_to_fp32(b[i].d);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * (float)b[i].scales[e / 16];
            out[e] = dl * (float)q6_K_value(&b[i], e);
        }
    }
}

void dequantize_q8_K_ref(const void *blocks, float *out, int64_t n)
{
    const block_q8_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K)
        for (int e = 0; e < QK_K; e++)
            out[e] = b[i].d * (float)b[i].qs[e];
}

void dequantize_iq4_xs_ref(const void *blocks, float *out, int64_t n)
{
    const block_iq4_xs *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, out += QK_K) {
        float d = fp16_to_fp32(b[i].d);
        /* Sub-block j of 32: 6-bit scale (offset 32), nibbles as in IQ4_NL. */
        for (int j = 0; j < QK_K / 32; j++) {
            int low = b[i].scales_l[j / 2] >> (4 * (j % 2)) & 0x0F;
            int high = b[i].scales_h >> (2 * j) & 3;
            float dl = d * (float)((low | high << 4) - 32);
            const uint8_t *qs = b[i].qs + 16 * j;
            for (int l = 0; l < 16; l++) {
                out[32 * j + l] = dl * (float)quant_iq4nl_levels[qs[l] & 0x0F];
                out[32 * j + l + 16] = dl * (float)quant_iq4nl_levels[qs[l] >> 4];
            }
        }
    }
}

/* ---- quantize: the scale searches ------------------------------------------ */

/* Asymmetric search for a group of n values: levels 0..nmax with a scale and
 * a min (min <= 0). Starts from the min/max fit, then tries nstep+1 rescaled
 * grids (nmax + rmin + rdelta*k over the range), keeping the weighted
 * least-squares fit with the smallest weighted squared error. Returns the
 * scale; *neg_min gets -min. */
static float search_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *levels,
                              float *neg_min, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(levels, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        levels[i] = (uint8_t)clamp_int(quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * levels[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    uint8_t trial[32];
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * (float)step + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
            trial[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0)) /* also skips a NaN determinant */
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * trial[i] + this_min - x[i];
            error += weights[i] * (diff * diff);
        }
        if (error < best_error) {
            memcpy(levels, trial, (size_t)n);
            best_error = error;
            scale = this_scale;
            min = this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric search for a group of n values: levels -nmax..nmax-1 (stored
 * + nmax). Weights are x^2. Tries 19 scales around nmax/max and keeps the one
 * maximising (sum w x l)^2 / sum w l^2, i.e. the least-squares optimum. */
static float search_scale_symmetric(int n, int nmax, const float *x, int8_t *levels)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_EPSILON) {
        memset(levels, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max;
    float sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        levels[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sum_lx += w * x[i] * (float)l;
        sum_l2 += w * (float)l * (float)l;
    }
    float scale = sum_l2 ? sum_lx / sum_l2 : 0.0f;
    float best = scale * sum_lx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)step) / max;
        sum_lx = sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sum_lx += w * x[i] * (float)l;
            sum_l2 += w * (float)l * (float)l;
        }
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            for (int i = 0; i < n; i++)
                levels[i] = (int8_t)(clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1) + nmax);
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

/* ---- quantize: Q4_K and Q5_K ----------------------------------------------- */

/* Packs 8 six-bit scales and mins in the layout quant_k4_scale_min reads. */
static void k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t packed[K_SCALE_BYTES])
{
    for (int j = 0; j < 4; j++) {
        packed[j] = ls[j];
        packed[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        packed[j + 4] = (uint8_t)((ls[j] & 0x0F) | (lm[j] & 0x0F) << 4);
        packed[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
        packed[j] |= (uint8_t)((lm[j] >> 4) << 6);
    }
}

/* The shared part of Q4_K and Q5_K: per sub-block of 32, a scale/min search
 * weighted by rms + |x|; scales and mins quantized to 6 bits against the
 * block's largest; then every element re-quantized against the rounded
 * scales. Leaves the levels (0..nmax) in L. */
static void quantize_k4_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out,
                              uint16_t *dmin_out, uint8_t packed[K_SCALE_BYTES], uint8_t L[QK_K])
{
    float scales[QK_K / 32], mins[QK_K / 32], weights[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(xs[l]);
        scales[j] = search_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < QK_K / 32; j++) {
        ls[j] = (uint8_t)quant_nearest_int(inv_scale * scales[j]);
        lm[j] = (uint8_t)quant_nearest_int(inv_min * mins[j]);
        ls[j] = ls[j] > 63 ? 63 : ls[j];
        lm[j] = lm[j] > 63 ? 63 : lm[j];
    }
    k4_pack_scales(ls, lm, packed);
    *d_out = fp32_to_fp16(max_scale / 63.f);
    *dmin_out = fp32_to_fp16(max_min / 63.f);

    /* A sub-block whose rounded scale is zero keeps the levels of its search. */
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        quant_k4_scale_min(packed, j, &sc, &m);
        float d = fp16_to_fp32(*d_out) * (float)sc;
        if (!d)
            continue;
        float dm = fp16_to_fp32(*dmin_out) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clamp_int(quant_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void quantize_q4_K_ref(const float *in, void *blocks, int64_t n)
{
    block_q4_K *b = blocks;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        quantize_k4_block(in, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int e = 0; e < QK_K; e++) { /* inverse of k4_nibble */
            uint8_t *byte = &b[i].qs[32 * (e / 64) + e % 32];
            if (e % 64 < 32)
                *byte = L[e];
            else
                *byte |= (uint8_t)(L[e] << 4);
        }
    }
}

void quantize_q5_K_ref(const float *in, void *blocks, int64_t n)
{
    block_q5_K *b = blocks;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        quantize_k4_block(in, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < QK_K; e++) {
            uint8_t *byte = &b[i].qs[32 * (e / 64) + e % 32];
            uint8_t low = L[e] & 0x0F;
            if (e % 64 < 32)
                *byte = low;
            else
                *byte |= (uint8_t)(low << 4);
            b[i].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        }
    }
}

/* ---- quantize: Q6_K and Q8_K ------------------------------------------------ */

void quantize_q6_K_ref(const float *in, void *blocks, int64_t n)
{
    block_q6_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = search_scale_symmetric(16, 32, in + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs_scale < GROUP_EPSILON)
            continue; /* all zero, d = +0 */
        float iscale = -128.f / max_scale;
        b[i].d = fp32_to_fp16(1 / iscale);
        for (int j = 0; j < QK_K / 16; j++) {
            int s = quant_nearest_int(iscale * scales[j]);
            b[i].scales[j] = (int8_t)(s > 127 ? 127 : s);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            float d = fp16_to_fp32(b[i].d) * (float)b[i].scales[j];
            if (!d)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clamp_int(quant_nearest_int(in[16 * j + l] / d), -32, 31) + 32);
        }
        for (int e = 0; e < QK_K; e++) { /* inverse of q6_K_value */
            int h = e / 128, r = e % 128;
            b[i].ql[64 * h + r % 64] |= (uint8_t)((L[e] & 0x0F) << (4 * (r / 64)));
            b[i].qh[32 * h + r % 32] |= (uint8_t)((L[e] >> 4 & 3) << (2 * (r / 32)));
        }
    }
}

void quantize_q8_K_ref(const float *in, void *blocks, int64_t n)
{
    block_q8_K *b = blocks;
    for (int64_t i = 0; i < n / QK_K; i++, in += QK_K) {
        float max = 0, amax = 0;
        for (int e = 0; e < QK_K; e++) {
            if (fabsf(in[e]) > amax) {
                amax = fabsf(in[e]);
                max = in[e];
            }
        }
        memset(&b[i], 0, sizeof b[i]);
        if (!amax)
            continue;
        /* -127 rather than -128 keeps every value in int8 after negation,
         * which the SIMD dot products rely on. */
        float iscale = -127.f / max;
        for (int e = 0; e < QK_K; e++) {
            int v = quant_nearest_int(iscale * in[e]);
            b[i].qs[e] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += b[i].qs[16 * g + l];
            b[i].bsums[g] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

/* Reference converters of the plain and 32-element block formats. */
#include "quant/quant_ref.h"

#include "base/fp16.h"
#include "quant/blocks.h"

#include <math.h>
#include <string.h>

const int8_t quant_iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
const int8_t quant_mxfp4_levels[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ---- float formats ----------------------------------------------------------- */

void dequantize_f32_ref(const void *blocks, float *out, int64_t n)
{
    memcpy(out, blocks, (size_t)n * sizeof(float));
}

void quantize_f32_ref(const float *in, void *blocks, int64_t n)
{
    memcpy(blocks, in, (size_t)n * sizeof(float));
}

void dequantize_f16_ref(const void *blocks, float *out, int64_t n)
{
    const uint16_t *h = blocks;
    for (int64_t i = 0; i < n; i++)
        out[i] = fp16_to_fp32(h[i]);
}

void quantize_f16_ref(const float *in, void *blocks, int64_t n)
{
    uint16_t *h = blocks;
    for (int64_t i = 0; i < n; i++)
        h[i] = fp32_to_fp16(in[i]);
}

void dequantize_bf16_ref(const void *blocks, float *out, int64_t n)
{
    const uint16_t *h = blocks;
    for (int64_t i = 0; i < n; i++)
        out[i] = bf16_to_fp32(h[i]);
}

void quantize_bf16_ref(const float *in, void *blocks, int64_t n)
{
    uint16_t *h = blocks;
    for (int64_t i = 0; i < n; i++)
        h[i] = fp32_to_bf16(in[i]);
}

/* ---- 32-element blocks ---------------------------------------------------------
 * In every 4-bit format here, byte j holds element j in its low nibble and
 * element j + 16 in its high nibble. */

static inline uint8_t low_nibble(uint8_t b) { return b & 0x0F; }
static inline uint8_t high_nibble(uint8_t b) { return b >> 4; }

/* The element of largest magnitude, with its sign; the first one on ties. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min, float *max)
{
    *min = INFINITY;
    *max = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min)
            *min = x[j];
        if (x[j] > *max)
            *max = x[j];
    }
}

void dequantize_q4_0_ref(const void *blocks, float *out, int64_t n)
{
    const block_q4_0 *b = blocks;
    for (int64_t i = 0; i < n / QK4_0; i++, out += QK4_0) {
        float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            out[j] = (float)(low_nibble(b[i].qs[j]) - 8) * d;
            out[j + QK4_0 / 2] = (float)(high_nibble(b[i].qs[j]) - 8) * d;
        }
    }
}

/* Scale so that the largest-magnitude element maps to -8 exactly; the others
 * are truncated after a +8.5 offset, i.e. rounded half up. */
void quantize_q4_0_ref(const float *in, void *blocks, int64_t n)
{
    block_q4_0 *b = blocks;
    for (int64_t i = 0; i < n / QK4_0; i++, in += QK4_0) {
        float d = signed_absmax(in, QK4_0) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = (int)(in[j] * id + 8.5f), hi = (int)(in[j + QK4_0 / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void dequantize_q4_1_ref(const void *blocks, float *out, int64_t n)
{
    const block_q4_1 *b = blocks;
    for (int64_t i = 0; i < n / QK4_1; i++, out += QK4_1) {
        float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            out[j] = (float)low_nibble(b[i].qs[j]) * d + m;
            out[j + QK4_1 / 2] = (float)high_nibble(b[i].qs[j]) * d + m;
        }
    }
}

void quantize_q4_1_ref(const float *in, void *blocks, int64_t n)
{
    block_q4_1 *b = blocks;
    for (int64_t i = 0; i < n / QK4_1; i++, in += QK4_1) {
        float min, max;
        min_max(in, QK4_1, &min, &max);
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int lo = (int)((in[j] - min) * id + 0.5f), hi = (int)((in[j + QK4_1 / 2] - min) * id + 0.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

static inline uint32_t load_qh(const uint8_t qh[4])
{
    uint32_t v;
    memcpy(&v, qh, 4);
    return v;
}

/* The 5-bit value of element j (0..31) of a Q5 block. */
static inline int q5_value(const uint8_t *qs, uint32_t qh, int j)
{
    int nibble = j < 16 ? low_nibble(qs[j]) : high_nibble(qs[j - 16]);
    return nibble | (int)((qh >> j) & 1) << 4;
}

/* Packs 32 5-bit values into nibbles and the fifth-bit word. */
static void q5_pack(const int q[32], uint8_t qs[16], uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4);
        qh |= (uint32_t)(q[j] >> 4 & 1) << j;
        qh |= (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
    }
    memcpy(qh_out, &qh, 4);
}

void dequantize_q5_0_ref(const void *blocks, float *out, int64_t n)
{
    const block_q5_0 *b = blocks;
    for (int64_t i = 0; i < n / QK5_0; i++, out += QK5_0) {
        float d = fp16_to_fp32(b[i].d);
        uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < QK5_0; j++)
            out[j] = (float)(q5_value(b[i].qs, qh, j) - 16) * d;
    }
}

void quantize_q5_0_ref(const float *in, void *blocks, int64_t n)
{
    block_q5_0 *b = blocks;
    for (int64_t i = 0; i < n / QK5_0; i++, in += QK5_0) {
        float d = signed_absmax(in, QK5_0) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[QK5_0];
        for (int j = 0; j < QK5_0; j++) {
            int v = (int)(in[j] * id + 16.5f);
            q[j] = v > 31 ? 31 : v;
        }
        b[i].d = fp32_to_fp16(d);
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

void dequantize_q5_1_ref(const void *blocks, float *out, int64_t n)
{
    const block_q5_1 *b = blocks;
    for (int64_t i = 0; i < n / QK5_1; i++, out += QK5_1) {
        float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < QK5_1; j++)
            out[j] = (float)q5_value(b[i].qs, qh, j) * d + m;
    }
}

void quantize_q5_1_ref(const float *in, void *blocks, int64_t n)
{
    block_q5_1 *b = blocks;
    for (int64_t i = 0; i < n / QK5_1; i++, in += QK5_1) {
        float min, max;
        min_max(in, QK5_1, &min, &max);
        float d = (max - min) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[QK5_1];
        for (int j = 0; j < QK5_1; j++) {
            int v = (int)((in[j] - min) * id + 0.5f);
            q[j] = v > 31 ? 31 : v;
        }
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(min);
        q5_pack(q, b[i].qs, b[i].qh);
    }
}

void dequantize_q8_0_ref(const void *blocks, float *out, int64_t n)
{
    const block_q8_0 *b = blocks;
    for (int64_t i = 0; i < n / QK8_0; i++, out += QK8_0) {
        float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; j++)
            out[j] = (float)b[i].qs[j] * d;
    }
}

void dequantize_q8_1_ref(const void *blocks, float *out, int64_t n)
{
    const block_q8_1 *b = blocks;
    for (int64_t i = 0; i < n / QK8_1; i++, out += QK8_1)
        for (int j = 0; j < QK8_1; j++)
            out[j] = (float)b[i].qs[j] * b[i].d;
}

/* Symmetric: |x| max maps to 127; values are rounded half away from zero. */
void quantize_q8_0_ref(const float *in, void *blocks, int64_t n)
{
    block_q8_0 *b = blocks;
    for (int64_t i = 0; i < n / QK8_0; i++, in += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fabsf(in[j]) > amax ? fabsf(in[j]) : amax;
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(in[j] * id);
    }
}

void dequantize_iq4_nl_ref(const void *blocks, float *out, int64_t n)
{
    const block_iq4_nl *b = blocks;
    for (int64_t i = 0; i < n / QK4_NL; i++, out += QK4_NL) {
        float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            out[j] = d * (float)quant_iq4nl_levels[low_nibble(b[i].qs[j])];
            out[j + QK4_NL / 2] = d * (float)quant_iq4nl_levels[high_nibble(b[i].qs[j])];
        }
    }
}

static float mxfp4_half_scale(uint8_t e)
{
    return quant_mxfp4_half_scale(e);
}

void dequantize_mxfp4_ref(const void *blocks, float *out, int64_t n)
{
    const block_mxfp4 *b = blocks;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, out += QK_MXFP4) {
        float d = mxfp4_half_scale(b[i].e);
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            out[j] = (float)quant_mxfp4_levels[low_nibble(b[i].qs[j])] * d;
            out[j + QK_MXFP4 / 2] = (float)quant_mxfp4_levels[high_nibble(b[i].qs[j])] * d;
        }
    }
}

static int mxfp4_nearest_level(float x, float d)
{
    int best = 0;
    float best_err = fabsf((float)quant_mxfp4_levels[0] * d - x);
    for (int k = 1; k < 16; k++) {
        float err = fabsf((float)quant_mxfp4_levels[k] * d - x);
        if (err < best_err) {
            best = k;
            best_err = err;
        }
    }
    return best;
}

/* The shared exponent puts the largest magnitude in the top binade of E2M1
 * (values up to 6 = 1.5 * 2^2), then each element takes its nearest level. */
void quantize_mxfp4_ref(const float *in, void *blocks, int64_t n)
{
    block_mxfp4 *b = blocks;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, in += QK_MXFP4) {
        float amax = 0.0f;
        for (int j = 0; j < QK_MXFP4; j++)
            amax = fabsf(in[j]) > amax ? fabsf(in[j]) : amax;
        uint8_t e = amax > 0.0f ? (uint8_t)(floorf(log2f(amax)) - 2 + 127) : 0;
        float d = mxfp4_half_scale(e);
        b[i].e = e;
        for (int j = 0; j < QK_MXFP4 / 2; j++)
            b[i].qs[j] = (uint8_t)(mxfp4_nearest_level(in[j], d) | mxfp4_nearest_level(in[j + QK_MXFP4 / 2], d) << 4);
    }
}

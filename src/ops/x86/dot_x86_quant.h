/* The integer dot kernels shared by the AVX2 and AVX-512 files, written once
 * over 256-bit vectors and included by each with its own primitives:
 *
 *   DOT_ISA(name)          appends the ISA suffix to a kernel name
 *   dot_u8s8_acc(acc, u, s)   acc + per 32-bit lane the sum of four u8*s8
 *                             products (maddubs+madd on AVX2, vpdpbusd with
 *                             VNNI); u must stay <= 128 so the AVX2 pair sums
 *                             cannot saturate int16
 *   dot_u8s8_scaled(u, s, k)  the same sums times a per-lane scale, with k
 *                             from dot_scale_pair(a, b): a for bytes 0..15,
 *                             b for 16..31
 *
 * Every kernel keeps the ggml scheme of the references in ops/dot.c: the
 * integer sum of a block is exact (split over 8 lanes), and one float
 * multiply-add per block applies the scales. Weight and activation rows are
 * not aligned (blocks are 18, 20, 22, 24, 34, 144, 176, 210 bytes): loads
 * are loadu. The activations come from the reference quantizers, whose
 * values stay in -127..127, which the sign trick below relies on. */
#ifndef DOT_ISA
#error "include from a file that defines the ISA primitives"
#endif

#include "base/fp16.h"
#include "quant/blocks.h"

#include <stddef.h>
#include <string.h>

static inline float dot_hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t dot_hsum_epi32_128(__m128i v)
{
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(v);
}

/* 16 packed bytes -> 32 values 0..15: low nibbles first (elements 0..15),
 * then high nibbles (16..31), the Q4_0/Q5_0 element order. */
static inline __m256i dot_nibbles_32(const uint8_t *qs)
{
    __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0x10 where bit i is set: the fifth bit of Q5_0. */
static inline __m256i dot_bit4_from_bits(const uint8_t bits_le[4])
{
    uint32_t bits;
    memcpy(&bits, bits_le, sizeof bits);
    /* Byte i gets byte i/8 of the word, then tests its bit i%8. */
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                         _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                                            0x0202020202020202, 0x0303030303030303));
    const __m256i select = _mm256_set1_epi64x(0x8040201008040201);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* F16C converts a scale in one instruction; the portable fp16_to_fp32 is a
 * branchy function that cost more than the block's integer work. Both are
 * exact, so the results are the same. */
static inline float dot_f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* 32 bits -> 32 five-bit values: the nibbles of qs and the fifth bits of qh
 * (Q5_0 and Q5_1). */
static inline __m256i dot_five_bits_32(const uint8_t *qs, const uint8_t qh[4])
{
    return _mm256_or_si256(dot_nibbles_32(qs), dot_bit4_from_bits(qh));
}

/* The 32-element formats. Q8_0, Q4_0 and Q5_0 weights are signed values
 * (Q4_0 and Q5_0 store q + 8 and q + 16 unsigned), and their products go
 * through the sign trick (|w| times x with w's sign moved onto x): one
 * vpdpbusd per block. Q4_1 and Q5_1 weights (w = d*q + m) are unsigned q and
 * multiply as they are; their min term, m_w * d_a * sum(a), is m_w times the
 * s of the Q8_1 activation block: one scalar multiply-add per block. */
enum dot_32_kind { DOT_Q8_0, DOT_Q4_0, DOT_Q5_0, DOT_Q4_1, DOT_Q5_1, DOT_MXFP4 };

static inline size_t dot_32_block_bytes(int kind)
{
    static const size_t bytes[] = {sizeof(block_q8_0), sizeof(block_q4_0), sizeof(block_q5_0), sizeof(block_q4_1),
                                   sizeof(block_q5_1), sizeof(block_mxfp4)};
    return bytes[kind];
}

/* A block's 32 weights: signed for Q8_0, Q4_0 and Q5_0, unsigned for Q4_1 and Q5_1. */
static inline __m256i dot_weights_32(const void *block, int kind)
{
    switch (kind) {
    case DOT_Q8_0:
        return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)block)->qs);
    case DOT_Q4_0:
        return _mm256_sub_epi8(dot_nibbles_32(((const block_q4_0 *)block)->qs), _mm256_set1_epi8(8));
    case DOT_Q5_0: {
        const block_q5_0 *b = block;
        return _mm256_sub_epi8(dot_five_bits_32(b->qs, b->qh), _mm256_set1_epi8(16));
    }
    case DOT_Q4_1:
        return dot_nibbles_32(((const block_q4_1 *)block)->qs);
    case DOT_MXFP4: {
        /* The doubled E2M1 levels, looked up by nibble in each 128-bit half. */
        __m128i levels = _mm_loadu_si128((const __m128i *)quant_mxfp4_levels);
        return _mm256_shuffle_epi8(_mm256_set_m128i(levels, levels),
                                   dot_nibbles_32(((const block_mxfp4 *)block)->qs));
    }
    default: {
        const block_q5_1 *b = block;
        return dot_five_bits_32(b->qs, b->qh);
    }
    }
}

/* n_w (1 or 2) weight rows, w_stride bytes apart, against n_x (1 or 4)
 * activation rows x_stride bytes apart: out[n_x * r + t]. Each weight block
 * is unpacked once for all activation rows, each activation block loaded once
 * for all weight rows; per (row, activation row) the operations and their
 * order are the same whatever n_w and n_x, so the multi-row kernels give the
 * one-row kernel's results bit for bit. */
static inline __attribute__((always_inline)) void dot_32_rows(int kind, int64_t n, const void *w, size_t w_stride,
                                                              int n_w, const void *x, size_t x_stride, int n_x,
                                                              float *out)
{
    const int has_min = kind == DOT_Q4_1 || kind == DOT_Q5_1;
    const size_t w_bytes = dot_32_block_bytes(kind), x_bytes = has_min ? sizeof(block_q8_1) : sizeof(block_q8_0);
    __m256 acc[8];
    float acc_min[8];
    for (int k = 0; k < n_w * n_x; k++) {
        acc[k] = _mm256_setzero_ps();
        acc_min[k] = 0.0f;
    }
    for (int64_t i = 0; i < n / 32; i++) {
        __m256i q[2], magnitude[2];
        float wd[2], wm[2];
        for (int r = 0; r < n_w; r++) {
            const char *block = (const char *)w + (size_t)r * w_stride + (size_t)i * w_bytes;
            q[r] = dot_weights_32(block, kind);
            magnitude[r] = has_min ? q[r] : _mm256_sign_epi8(q[r], q[r]);
            /* d leads every 32-element block (MXFP4: its E8M0 exponent); m
             * follows it in Q4_1 and Q5_1. */
            wd[r] = kind == DOT_MXFP4 ? quant_mxfp4_half_scale(*(const uint8_t *)block)
                                      : dot_f16(*(const uint16_t *)block);
            wm[r] = has_min ? dot_f16(*(const uint16_t *)(block + 2)) : 0.0f;
        }
        for (int t = 0; t < n_x; t++) {
            const char *a = (const char *)x + (size_t)t * x_stride + (size_t)i * x_bytes;
            __m256i xq;
            float xd, xs = 0.0f;
            if (has_min) {
                const block_q8_1 *a1 = (const block_q8_1 *)a;
                xq = _mm256_loadu_si256((const __m256i *)a1->qs);
                xd = a1->d;
                xs = a1->s;
            } else {
                const block_q8_0 *a0 = (const block_q8_0 *)a;
                xq = _mm256_loadu_si256((const __m256i *)a0->qs);
                xd = dot_f16(a0->d);
            }
            for (int r = 0; r < n_w; r++) {
                __m256i s = has_min ? xq : _mm256_sign_epi8(xq, q[r]);
                __m256i sums = dot_u8s8_acc(_mm256_setzero_si256(), magnitude[r], s);
                acc[n_x * r + t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(wd[r] * xd), acc[n_x * r + t]);
                if (has_min)
                    acc_min[n_x * r + t] += wm[r] * xs;
            }
        }
    }
    for (int k = 0; k < n_w * n_x; k++)
        out[k] = has_min ? dot_hsum_ps(acc[k]) + acc_min[k] : dot_hsum_ps(acc[k]);
}

/* The one-row, four-row and two-by-four kernels of a 32-element format. */
#define DOT_32_KERNELS(wname, aname, kind)                                                                        \
    void DOT_ISA(ops_dot_##wname##_##aname)(int64_t n, const void *w, const void *x, float *out)                  \
    {                                                                                                             \
        dot_32_rows(kind, n, w, 0, 1, x, 0, 1, out);                                                              \
    }                                                                                                             \
    void DOT_ISA(ops_dot4_##wname##_##aname)(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]) \
    {                                                                                                             \
        dot_32_rows(kind, n, w, 0, 1, x, x_stride, 4, out);                                                       \
    }                                                                                                             \
    void DOT_ISA(ops_dot4x2_##wname##_##aname)(int64_t n, const void *w, size_t w_stride, const void *x,         \
                                               size_t x_stride, float out[8])                                     \
    {                                                                                                             \
        dot_32_rows(kind, n, w, w_stride, 2, x, x_stride, 4, out);                                                \
    }

DOT_32_KERNELS(q8_0, q8_0, DOT_Q8_0)
DOT_32_KERNELS(q4_0, q8_0, DOT_Q4_0)
DOT_32_KERNELS(q5_0, q8_0, DOT_Q5_0)
DOT_32_KERNELS(mxfp4, q8_0, DOT_MXFP4)
DOT_32_KERNELS(q4_1, q8_1, DOT_Q4_1)
DOT_32_KERNELS(q5_1, q8_1, DOT_Q5_1)

/* The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (layout in
 * quant/quant_k.c), unpacked four at a time through 32-bit words. */
typedef struct k4_scales {
    uint8_t scale[8];
    uint8_t min[8];
} k4_scales;

static inline k4_scales dot_k4_unpack(const uint8_t packed[K_SCALE_BYTES])
{
    uint32_t p[3], u[4];
    memcpy(p, packed, sizeof p);
    u[0] = p[0] & 0x3F3F3F3F;                                          /* scales 0..3 */
    u[1] = (p[2] & 0x0F0F0F0F) | ((p[0] >> 6 & 0x03030303) << 4);      /* scales 4..7 */
    u[2] = p[1] & 0x3F3F3F3F;                                          /* mins 0..3 */
    u[3] = (p[2] >> 4 & 0x0F0F0F0F) | ((p[1] >> 6 & 0x03030303) << 4); /* mins 4..7 */
    k4_scales s;
    memcpy(&s, u, sizeof s);
    return s;
}

/* sum over sub-blocks j of min[j] * (sum of the 32 activations of j), from
 * the per-16 sums Q8_K carries. */
static inline int32_t dot_k4_min_sum(const uint8_t min[8], const int16_t bsums[16])
{
    __m128i lo = _mm_loadu_si128((const __m128i *)bsums);
    __m128i hi = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i per32 = _mm_hadd_epi16(lo, hi); /* |sum| <= 32 * 127: no overflow */
    __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)min));
    return dot_hsum_epi32_128(_mm_madd_epi16(per32, mins));
}

/* Q4_K and Q5_K (qh_offset 0 for Q4_K): unpacks a super-block into eight
 * vectors of 32 weights 0..31, one per sub-block, with each sub-block's scale
 * as dot_u8s8_scaled wants it. Sub-blocks 2p and 2p+1 are the low and high
 * nibbles of qs[32p .. 32p+32]; the fifth bit of sub-block j is bit j of
 * qh[0..32]. Returns the scales and mins. */
static inline k4_scales dot_k4_unpack_block(const uint8_t *block, size_t qs_offset, size_t qh_offset, __m256i q[8],
                                            __m256i scale[8])
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i bit0 = _mm256_set1_epi8(1);
    k4_scales s = dot_k4_unpack(block + 4);
    const uint8_t *qs = block + qs_offset;
    __m256i high = qh_offset ? _mm256_loadu_si256((const __m256i *)(block + qh_offset)) : _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        /* The next two fifth bits sit at bit 0 after each shift; bits
         * shifted in from the neighbouring byte stay above bit 0. */
        q[2 * p] = _mm256_or_si256(_mm256_and_si256(packed, low4), _mm256_slli_epi16(_mm256_and_si256(high, bit0), 4));
        high = _mm256_srli_epi16(high, 1);
        q[2 * p + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(packed, 4), low4),
                                       _mm256_slli_epi16(_mm256_and_si256(high, bit0), 4));
        high = _mm256_srli_epi16(high, 1);
        scale[2 * p] = dot_scale_pair(s.scale[2 * p], s.scale[2 * p]);
        scale[2 * p + 1] = dot_scale_pair(s.scale[2 * p + 1], s.scale[2 * p + 1]);
    }
    return s;
}

/* The scaled integer sum of one super-block of unpacked weights against 256
 * Q8_K activations, sub-block by sub-block (exact). */
static inline __m256i dot_k_block_sums(const __m256i q[8], const __m256i scale[8], const int8_t *xqs)
{
    __m256i sums = _mm256_setzero_si256();
    for (int k = 0; k < 8; k++)
        sums = _mm256_add_epi32(sums, dot_u8s8_scaled(q[k], _mm256_loadu_si256((const __m256i *)(xqs + 32 * k)),
                                                      scale[k]));
    return sums;
}

/* Q4_K/Q5_K weight row against n_rows (1 or 4) activation rows x_stride
 * bytes apart: each super-block is unpacked once for all of them, and each
 * row's result is the same whatever n_rows is. */
static inline void dot_k4_rows(int64_t n, const uint8_t *wbytes, size_t block_bytes, size_t qs_offset,
                               size_t qh_offset, const void *x, size_t x_stride, int n_rows, float *out)
{
    const block_q8_K *xb[4];
    __m256 acc[4];
    float acc_min[4];
    for (int t = 0; t < n_rows; t++) {
        xb[t] = (const block_q8_K *)((const char *)x + (size_t)t * x_stride);
        acc[t] = _mm256_setzero_ps();
        acc_min[t] = 0;
    }
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *block = wbytes + (size_t)i * block_bytes;
        uint16_t d16, dmin16;
        memcpy(&d16, block, 2);
        memcpy(&dmin16, block + 2, 2);
        __m256i q[8], scale[8];
        k4_scales s = dot_k4_unpack_block(block, qs_offset, qh_offset, q, scale);
        float wd = dot_f16(d16), wdmin = dot_f16(dmin16);
        for (int t = 0; t < n_rows; t++) {
            __m256i sums = dot_k_block_sums(q, scale, xb[t][i].qs);
            float d = wd * xb[t][i].d, dmin = wdmin * xb[t][i].d;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(d), acc[t]);
            acc_min[t] += dmin * (float)dot_k4_min_sum(s.min, xb[t][i].bsums);
        }
    }
    for (int t = 0; t < n_rows; t++)
        out[t] = dot_hsum_ps(acc[t]) - acc_min[t];
}

void DOT_ISA(ops_dot4_q4_K_q8_K)(int64_t n, const void *w, const void *x, size_t x_stride, float out[4])
{
    dot_k4_rows(n, w, sizeof(block_q4_K), offsetof(block_q4_K, qs), 0, x, x_stride, 4, out);
}

void DOT_ISA(ops_dot4_q5_K_q8_K)(int64_t n, const void *w, const void *x, size_t x_stride, float out[4])
{
    dot_k4_rows(n, w, sizeof(block_q5_K), offsetof(block_q5_K, qs), offsetof(block_q5_K, qh), x, x_stride, 4, out);
}

void DOT_ISA(ops_dot_q4_K_q8_K)(int64_t n, const void *w, const void *x, float *out)
{
    dot_k4_rows(n, w, sizeof(block_q4_K), offsetof(block_q4_K, qs), 0, x, 0, 1, out);
}

void DOT_ISA(ops_dot_q5_K_q8_K)(int64_t n, const void *w, const void *x, float *out)
{
    dot_k4_rows(n, w, sizeof(block_q5_K), offsetof(block_q5_K, qs), offsetof(block_q5_K, qh), x, 0, 1, out);
}

/* Q6_K: values are q - 32 with q in 0..63; sum(sc (q - 32) x) is computed as
 * sum(sc q x) - 32 sum(sc * bsum), the second from Q8_K's per-16 sums. In each
 * half of 128 elements, ql[0..32] and ql[32..64] hold the low nibbles of
 * elements 0..63 and the high nibbles of 64..127; qh[0..32] holds two bits
 * for each of the four groups of 32. Unpacks a super-block into eight vectors
 * of 32 weights 0..63, with the scales of their two sub-blocks of 16. */
static inline void dot_q6_unpack_block(const block_q6_K *b, __m256i q[8], __m256i scale[8])
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i bits45 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        q[4 * h] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
        q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
        q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
        q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
        for (int k = 0; k < 4; k++) {
            int g = 8 * h + 2 * k; /* sub-blocks of 16: g for bytes 0..15, g+1 for 16..31 */
            scale[4 * h + k] = dot_scale_pair(b->scales[g], b->scales[g + 1]);
        }
    }
}

/* A Q6_K weight row against n_rows (1 or 4) activation rows, as dot_k4_rows. */
static inline void dot_q6_rows(int64_t n, const block_q6_K *wb, const void *x, size_t x_stride, int n_rows,
                               float *out)
{
    const block_q8_K *xb[4];
    __m256 acc[4];
    for (int t = 0; t < n_rows; t++) {
        xb[t] = (const block_q8_K *)((const char *)x + (size_t)t * x_stride);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i q[8], scale[8];
        dot_q6_unpack_block(&wb[i], q, scale);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb[i].scales));
        float wd = dot_f16(wb[i].d);
        for (int t = 0; t < n_rows; t++) {
            __m256i sums = dot_k_block_sums(q, scale, xb[t][i].qs);
            __m256i bsums = _mm256_loadu_si256((const __m256i *)xb[t][i].bsums);
            sums = _mm256_sub_epi32(sums, _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(wd * xb[t][i].d), acc[t]);
        }
    }
    for (int t = 0; t < n_rows; t++)
        out[t] = dot_hsum_ps(acc[t]);
}

void DOT_ISA(ops_dot_q6_K_q8_K)(int64_t n, const void *w, const void *x, float *out)
{
    dot_q6_rows(n, w, x, 0, 1, out);
}

void DOT_ISA(ops_dot4_q6_K_q8_K)(int64_t n, const void *w, const void *x, size_t x_stride, float out[4])
{
    dot_q6_rows(n, w, x, x_stride, 4, out);
}

/* Attention kernels with AVX2, FMA and F16C (8 floats at a time).
 * accumulate_half and rescale_half round exactly as the scalar references do
 * (one fused multiply-add, then round-to-nearest-even to f16), so the two are
 * bit-identical; dot sums in another order and differs in the last bits.
 * The tile kernels widen exactly; scores and accumulate use fused
 * multiply-adds and exp_sum a polynomial exp (within 2 ulp of expf), so those
 * differ from the scalar ones in the last bits, but not from the AVX-512 ones:
 * both sum every output in the same order. */
#if defined(__x86_64__)

#include "ops/attention_kernels.h"

#include "ops/x86/vexp.h"

#include <immintrin.h>

static inline __m256 load_half8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 round_half8(__m256 x)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static inline float round_half1(float x)
{
    return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

float ops_attention_dot_avx2(const float *q, const uint16_t *k, int32_t n)
{
    __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
    int32_t d = 0;
    for (; d + 16 <= n; d += 16) {
        sum0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_half8(k + d), sum0);
        sum1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), load_half8(k + d + 8), sum1);
    }
    for (; d + 8 <= n; d += 8)
        sum0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_half8(k + d), sum0);
    __m256 sum = _mm256_add_ps(sum0, sum1);
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    float s = _mm_cvtss_f32(half);
    for (; d < n; d++)
        s += q[d] * _cvtsh_ss(k[d]);
    return s;
}

void ops_attention_accumulate_avx2(float *acc, const uint16_t *v, float p, int32_t n)
{
    __m256 vp = _mm256_set1_ps(p);
    int32_t d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(load_half8(v + d), vp, _mm256_loadu_ps(acc + d)));
    for (; d < n; d++)
        acc[d] += p * _cvtsh_ss(v[d]);
}

void ops_attention_accumulate_half_avx2(float *acc, const uint16_t *v, float p, int32_t n)
{
    __m256 vp = _mm256_set1_ps(p);
    int32_t d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(acc + d, round_half8(_mm256_fmadd_ps(load_half8(v + d), vp, _mm256_loadu_ps(acc + d))));
    for (; d < n; d++)
        acc[d] = round_half1(_mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(_cvtsh_ss(v[d])), _mm_set_ss(p),
                                                        _mm_set_ss(acc[d]))));
}

void ops_attention_rescale_half_avx2(float *acc, float c, int32_t n)
{
    __m256 vc = _mm256_set1_ps(c);
    int32_t d = 0;
    for (; d + 8 <= n; d += 8)
        _mm256_storeu_ps(acc + d, round_half8(_mm256_mul_ps(_mm256_loadu_ps(acc + d), vc)));
    for (; d < n; d++)
        acc[d] = round_half1(acc[d] * c);
}

/* Eight int8 of a Q8_0 block times its scale: exact in f32. */
static inline __m256 load_q8x8(const int8_t *q, __m256 scale)
{
    __m256i wide = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(wide), scale);
}

/* One fused multiply-add per value, as accumulate_q8_ref: the same bits. */
void ops_attention_accumulate_q8_avx2(float *acc, const block_q8_0 *v, float p, int32_t n)
{
    __m256 vp = _mm256_set1_ps(p);
    for (int32_t b = 0; b < n / QK8_0; b++, acc += QK8_0) {
        __m256 scale = _mm256_set1_ps(_cvtsh_ss(v[b].d));
        for (int i = 0; i < QK8_0; i += 8)
            _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(load_q8x8(v[b].qs + i, scale), vp, _mm256_loadu_ps(acc + i)));
    }
}

/* ---- tile kernels ---- */

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* The register tiles below are arrays of vectors indexed by small loops;
 * only fully unrolled loops keep them in registers. */
#define UNROLL _Pragma("GCC unroll 16")

/* rows[c] = column c of the 8 x 8 block rows[0..7] (standard unpack,
 * shuffle, lane-swap sequence). */
ALWAYS_INLINE void transpose8(__m256 rows[8])
{
    __m256 t[8], u[8];
    UNROLL
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    UNROLL
    for (int i = 0; i < 2; i++) {
        __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 1]);
        __m256d c = _mm256_castps_pd(t[4 * i + 2]), d = _mm256_castps_pd(t[4 * i + 3]);
        u[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
        u[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
        u[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
        u[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
    UNROLL
    for (int k = 0; k < 4; k++) {
        rows[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        rows[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

static void widen_keys_avx2(float *keys_t, const uint16_t *k, int64_t k_stride, int32_t n_keys, int32_t block,
                            int32_t dim)
{
    for (int32_t j0 = 0; j0 < block; j0 += 8) {
        for (int32_t d0 = 0; d0 < dim; d0 += 8) {
            __m256 rows[8];
            UNROLL
            for (int j = 0; j < 8; j++)
                rows[j] = j0 + j < n_keys ? load_half8(k + (j0 + j) * k_stride + d0) : _mm256_setzero_ps();
            transpose8(rows);
            UNROLL
            for (int d = 0; d < 8; d++)
                _mm256_storeu_ps(keys_t + (d0 + d) * block + j0, rows[d]);
        }
    }
}

static void widen_values_avx2(float *values, const uint16_t *v, int64_t v_stride, int32_t n_keys, int32_t block,
                              int32_t dim)
{
    for (int32_t j = 0; j < block; j++)
        for (int32_t d = 0; d < dim; d += 8)
            _mm256_storeu_ps(values + j * dim + d, j < n_keys ? load_half8(v + j * v_stride + d) : _mm256_setzero_ps());
}

void ops_attention_widen_keys_q8_avx2(float *keys_t, const block_q8_0 *k, int64_t k_stride, int32_t n_keys,
                                      int32_t block, int32_t dim)
{
    for (int32_t j0 = 0; j0 < block; j0 += 8) {
        for (int32_t d0 = 0; d0 < dim; d0 += 8) {
            __m256 rows[8];
            UNROLL
            for (int j = 0; j < 8; j++) {
                if (j0 + j < n_keys) {
                    const block_q8_0 *b = k + (j0 + j) * k_stride + d0 / QK8_0;
                    rows[j] = load_q8x8(b->qs + d0 % QK8_0, _mm256_set1_ps(_cvtsh_ss(b->d)));
                } else {
                    rows[j] = _mm256_setzero_ps();
                }
            }
            transpose8(rows);
            UNROLL
            for (int d = 0; d < 8; d++)
                _mm256_storeu_ps(keys_t + (d0 + d) * block + j0, rows[d]);
        }
    }
}

void ops_attention_widen_values_q8_avx2(float *values, const block_q8_0 *v, int64_t v_stride, int32_t n_keys,
                                        int32_t block, int32_t dim)
{
    for (int32_t j = 0; j < block; j++) {
        for (int32_t b = 0; b < dim / QK8_0; b++) {
            float *out = values + j * dim + b * QK8_0;
            if (j >= n_keys) {
                for (int i = 0; i < QK8_0; i += 8)
                    _mm256_storeu_ps(out + i, _mm256_setzero_ps());
                continue;
            }
            const block_q8_0 *blk = v + j * v_stride + b;
            __m256 scale = _mm256_set1_ps(_cvtsh_ss(blk->d));
            for (int i = 0; i < QK8_0; i += 8)
                _mm256_storeu_ps(out + i, load_q8x8(blk->qs + i, scale));
        }
    }
}

/* 4 query rows x 16 keys in 8 accumulators; rows past n_rows repeat the
 * last row and are not stored. */
static void scores_avx2(float *scores, const float *const *q, int32_t n_rows, const float *keys_t, int32_t block,
                        int32_t dim, float scale)
{
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int32_t r0 = 0; r0 < n_rows; r0 += 4) {
        const float *row[4];
        UNROLL
        for (int r = 0; r < 4; r++)
            row[r] = q[r0 + r < n_rows ? r0 + r : n_rows - 1];
        for (int32_t j0 = 0; j0 < block; j0 += 16) {
            __m256 acc[4][2];
            UNROLL
            for (int r = 0; r < 4; r++)
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();
            for (int32_t d = 0; d < dim; d++) {
                __m256 k0 = _mm256_loadu_ps(keys_t + d * block + j0), k1 = _mm256_loadu_ps(keys_t + d * block + j0 + 8);
                UNROLL
                for (int r = 0; r < 4; r++) {
                    __m256 qd = _mm256_broadcast_ss(row[r] + d);
                    acc[r][0] = _mm256_fmadd_ps(qd, k0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(qd, k1, acc[r][1]);
                }
            }
            UNROLL
            for (int r = 0; r < 4; r++) {
                if (r0 + r < n_rows) {
                    _mm256_storeu_ps(scores + (r0 + r) * block + j0, _mm256_mul_ps(acc[r][0], vscale));
                    _mm256_storeu_ps(scores + (r0 + r) * block + j0 + 8, _mm256_mul_ps(acc[r][1], vscale));
                }
            }
        }
    }
}

static inline float horizontal_max8(__m256 m)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static inline float horizontal_sum8(__m256 s)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static float max_avx2(const float *s, int32_t block)
{
    __m256 m = _mm256_loadu_ps(s);
    for (int32_t j = 8; j < block; j += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
    return horizontal_max8(m);
}

/* Even and odd 8-float chunks summed apart, then together: the order in
 * which 16-lane AVX-512 adds them, so the two levels agree to the bit. */
static float exp_sum_avx2(float *s, int32_t block, float max)
{
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
    for (int32_t j = 0; j < block; j += 16) {
        __m256 p0 = vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmax));
        __m256 p1 = vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), vmax));
        _mm256_storeu_ps(s + j, p0);
        _mm256_storeu_ps(s + j + 8, p1);
        even = _mm256_add_ps(even, p0);
        odd = _mm256_add_ps(odd, p1);
    }
    return horizontal_sum8(_mm256_add_ps(even, odd));
}

/* rows x 16 output dims in accumulators, read once and written once per
 * block; rows is a constant where this is inlined. */
ALWAYS_INLINE void accumulate_rows_avx2(int rows, float *const *acc, const float *correction, const float *p,
                                        const float *values, int32_t block, int32_t dim)
{
    for (int32_t d = 0; d < dim; d += 16) {
        __m256 o[4][2];
        UNROLL
        for (int r = 0; r < rows; r++) {
            __m256 c = _mm256_set1_ps(correction[r]);
            o[r][0] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + d), c);
            o[r][1] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + d + 8), c);
        }
        for (int32_t j = 0; j < block; j++) {
            __m256 v0 = _mm256_loadu_ps(values + j * dim + d), v1 = _mm256_loadu_ps(values + j * dim + d + 8);
            UNROLL
            for (int r = 0; r < rows; r++) {
                __m256 pj = _mm256_broadcast_ss(p + r * block + j);
                o[r][0] = _mm256_fmadd_ps(pj, v0, o[r][0]);
                o[r][1] = _mm256_fmadd_ps(pj, v1, o[r][1]);
            }
        }
        UNROLL
        for (int r = 0; r < rows; r++) {
            _mm256_storeu_ps(acc[r] + d, o[r][0]);
            _mm256_storeu_ps(acc[r] + d + 8, o[r][1]);
        }
    }
}

static void accumulate_block_avx2(float *const *acc, const float *correction, const float *p, int32_t n_rows,
                                  const float *values, int32_t block, int32_t dim)
{
    int32_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
        accumulate_rows_avx2(4, acc + r, correction + r, p + r * block, values, block, dim);
    switch (n_rows - r) {
    case 3:
        accumulate_rows_avx2(3, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    case 2:
        accumulate_rows_avx2(2, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    case 1:
        accumulate_rows_avx2(1, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    }
}

const attention_tile_kernels ops_attention_tile_kernels_avx2 = {
    .widen_keys = widen_keys_avx2,
    .widen_values = widen_values_avx2,
    .widen_keys_q8 = ops_attention_widen_keys_q8_avx2,
    .widen_values_q8 = ops_attention_widen_values_q8_avx2,
    .scores = scores_avx2,
    .max = max_avx2,
    .exp_sum = exp_sum_avx2,
    .accumulate = accumulate_block_avx2,
};

const attention_row_kernels ops_attention_kernels_avx2 = {
    .dot = ops_attention_dot_avx2,
    .dot_half = ops_attention_dot_avx2,
    .accumulate = ops_attention_accumulate_avx2,
    .accumulate_half = ops_attention_accumulate_half_avx2,
    .rescale_half = ops_attention_rescale_half_avx2,
    .accumulate_q8 = ops_attention_accumulate_q8_avx2,
};

#endif

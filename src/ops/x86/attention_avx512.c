/* AVX-512 attention kernels. Of the row kernels only the f16-query dot
 * product is new here: it sums in the order ggml's AVX-512 f16 dot product
 * does (four 16-lane accumulators over steps of 64, folded pairwise, then the
 * lanes), so that decoding, where llama.cpp runs that kernel, matches it bit
 * for bit in this step; the rest is the AVX2 code. The tile kernels are the
 * AVX2 ones twice as wide, with register tiles sized for 32 registers, and
 * give bit-identical results: every output is summed in the same order. */
#if defined(__x86_64__)

#include "ops/attention_kernels.h"

#include "ops/x86/vexp.h"

#include <immintrin.h>

static inline __m512 load_half16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static float dot_half_avx512(const float *q, const uint16_t *k, int32_t n)
{
    __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int32_t whole = n & ~63;
    for (int32_t i = 0; i < whole; i += 64)
        for (int j = 0; j < 4; j++)
            sum[j] = _mm512_fmadd_ps(load_half16(k + i + 16 * j), _mm512_loadu_ps(q + i + 16 * j), sum[j]);
    sum[0] = _mm512_add_ps(sum[0], sum[2]);
    sum[1] = _mm512_add_ps(sum[1], sum[3]);
    sum[0] = _mm512_add_ps(sum[0], sum[1]);
    double total = _mm512_reduce_add_ps(sum[0]);
    for (int32_t i = whole; i < n; i++)
        total += (double)(_cvtsh_ss(k[i]) * q[i]);
    return (float)total;
}

/* ---- tile kernels ---- */

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* The register tiles below are arrays of vectors indexed by small loops;
 * only fully unrolled loops keep them in registers. */
#define UNROLL _Pragma("GCC unroll 16")

/* rows[c] = column c of the 16 x 16 block rows[0..15]: pairs of rows
 * interleaved, then pairs of pairs, then 128-bit lanes gathered in two
 * steps. */
ALWAYS_INLINE void transpose16(__m512 rows[16])
{
    __m512 t[16];
    UNROLL
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
    UNROLL
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        rows[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        rows[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        rows[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        rows[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    UNROLL
    for (int i = 0; i < 2; i++) {
        UNROLL
        for (int k = 0; k < 4; k++) {
            t[8 * i + k] = _mm512_shuffle_f32x4(rows[8 * i + k], rows[8 * i + 4 + k], 0x88);
            t[8 * i + 4 + k] = _mm512_shuffle_f32x4(rows[8 * i + k], rows[8 * i + 4 + k], 0xdd);
        }
    }
    UNROLL
    for (int k = 0; k < 8; k++) {
        rows[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        rows[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
    }
}

static void widen_keys_avx512(float *keys_t, const uint16_t *k, int64_t k_stride, int32_t n_keys, int32_t block,
                              int32_t dim)
{
    for (int32_t j0 = 0; j0 < block; j0 += 16) {
        for (int32_t d0 = 0; d0 < dim; d0 += 16) {
            __m512 rows[16];
            UNROLL
            for (int j = 0; j < 16; j++)
                rows[j] = j0 + j < n_keys ? load_half16(k + (j0 + j) * k_stride + d0) : _mm512_setzero_ps();
            transpose16(rows);
            UNROLL
            for (int d = 0; d < 16; d++)
                _mm512_storeu_ps(keys_t + (d0 + d) * block + j0, rows[d]);
        }
    }
}

static void widen_values_avx512(float *values, const uint16_t *v, int64_t v_stride, int32_t n_keys,
                                int32_t block, int32_t dim)
{
    for (int32_t j = 0; j < block; j++)
        for (int32_t d = 0; d < dim; d += 16)
            _mm512_storeu_ps(values + j * dim + d,
                             j < n_keys ? load_half16(v + j * v_stride + d) : _mm512_setzero_ps());
}

/* 8 query rows x (16 * key_vectors) keys in accumulators; rows past n_rows
 * repeat the last row and are not stored. key_vectors is a constant where
 * this is inlined. */
ALWAYS_INLINE void scores_rows_avx512(int key_vectors, float *scores, const float *const *q, int32_t n_rows,
                                      const float *keys_t, int32_t block, int32_t dim, float scale)
{
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int32_t r0 = 0; r0 < n_rows; r0 += 8) {
        const float *row[8];
        UNROLL
        for (int r = 0; r < 8; r++)
            row[r] = q[r0 + r < n_rows ? r0 + r : n_rows - 1];
        for (int32_t j0 = 0; j0 < block; j0 += 16 * key_vectors) {
            __m512 acc[8][2];
            UNROLL
            for (int r = 0; r < 8; r++)
                UNROLL
                for (int c = 0; c < key_vectors; c++)
                    acc[r][c] = _mm512_setzero_ps();
            for (int32_t d = 0; d < dim; d++) {
                __m512 keys[2];
                UNROLL
                for (int c = 0; c < key_vectors; c++)
                    keys[c] = _mm512_loadu_ps(keys_t + d * block + j0 + 16 * c);
                UNROLL
                for (int r = 0; r < 8; r++) {
                    __m512 qd = _mm512_set1_ps(row[r][d]);
                    UNROLL
                    for (int c = 0; c < key_vectors; c++)
                        acc[r][c] = _mm512_fmadd_ps(qd, keys[c], acc[r][c]);
                }
            }
            UNROLL
            for (int r = 0; r < 8; r++)
                if (r0 + r < n_rows)
                    UNROLL
                    for (int c = 0; c < key_vectors; c++)
                        _mm512_storeu_ps(scores + (r0 + r) * block + j0 + 16 * c, _mm512_mul_ps(acc[r][c], vscale));
        }
    }
}

static void scores_avx512(float *scores, const float *const *q, int32_t n_rows, const float *keys_t,
                          int32_t block, int32_t dim, float scale)
{
    if (block % 32 == 0)
        scores_rows_avx512(2, scores, q, n_rows, keys_t, block, dim, scale);
    else
        scores_rows_avx512(1, scores, q, n_rows, keys_t, block, dim, scale);
}

static float max_avx512(const float *s, int32_t block)
{
    __m512 m = _mm512_loadu_ps(s);
    for (int32_t j = 16; j < block; j += 16)
        m = _mm512_max_ps(m, _mm512_loadu_ps(s + j));
    return _mm512_reduce_max_ps(m);
}

/* The lanes of 8-float chunks c0, c1, c2, c3 of the block as AVX2 sums them:
 * (c0 + c2) + (c1 + c3), then 8 lanes to one in the same tree. */
static float exp_sum_avx512(float *s, int32_t block, float max)
{
    const __m512 vmax = _mm512_set1_ps(max);
    __m512 sum = _mm512_setzero_ps();
    for (int32_t j = 0; j < block; j += 16) {
        __m512 p = vexp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmax));
        _mm512_storeu_ps(s + j, p);
        sum = _mm512_add_ps(sum, p);
    }
    __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1));
    __m256 half = _mm256_add_ps(_mm512_castps512_ps256(sum), high);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* rows x (16 * dim_vectors) output dims in accumulators, read once and
 * written once per block; rows and dim_vectors are constants where this is
 * inlined. */
ALWAYS_INLINE void accumulate_rows_avx512(int rows, int dim_vectors, int32_t d, float *const *acc,
                                          const float *correction, const float *p, const float *values,
                                          int32_t block, int32_t dim)
{
    __m512 o[4][4];
    UNROLL
    for (int r = 0; r < rows; r++) {
        __m512 c = _mm512_set1_ps(correction[r]);
        UNROLL
        for (int i = 0; i < dim_vectors; i++)
            o[r][i] = _mm512_mul_ps(_mm512_loadu_ps(acc[r] + d + 16 * i), c);
    }
    for (int32_t j = 0; j < block; j++) {
        __m512 v[4];
        UNROLL
        for (int i = 0; i < dim_vectors; i++)
            v[i] = _mm512_loadu_ps(values + j * dim + d + 16 * i);
        UNROLL
        for (int r = 0; r < rows; r++) {
            __m512 pj = _mm512_set1_ps(p[r * block + j]);
            UNROLL
            for (int i = 0; i < dim_vectors; i++)
                o[r][i] = _mm512_fmadd_ps(pj, v[i], o[r][i]);
        }
    }
    UNROLL
    for (int r = 0; r < rows; r++)
        UNROLL
        for (int i = 0; i < dim_vectors; i++)
            _mm512_storeu_ps(acc[r] + d + 16 * i, o[r][i]);
}

ALWAYS_INLINE void accumulate_dims_avx512(int rows, float *const *acc, const float *correction, const float *p,
                                          const float *values, int32_t block, int32_t dim)
{
    int32_t d = 0;
    for (; d + 64 <= dim; d += 64)
        accumulate_rows_avx512(rows, 4, d, acc, correction, p, values, block, dim);
    for (; d < dim; d += 16)
        accumulate_rows_avx512(rows, 1, d, acc, correction, p, values, block, dim);
}

static void accumulate_block_avx512(float *const *acc, const float *correction, const float *p, int32_t n_rows,
                                    const float *values, int32_t block, int32_t dim)
{
    int32_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
        accumulate_dims_avx512(4, acc + r, correction + r, p + r * block, values, block, dim);
    switch (n_rows - r) {
    case 3:
        accumulate_dims_avx512(3, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    case 2:
        accumulate_dims_avx512(2, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    case 1:
        accumulate_dims_avx512(1, acc + r, correction + r, p + r * block, values, block, dim);
        break;
    }
}

const attention_tile_kernels ops_attention_tile_kernels_avx512 = {
    .widen_keys = widen_keys_avx512,
    .widen_values = widen_values_avx512,
    .widen_keys_q8 = ops_attention_widen_keys_q8_avx2,
    .widen_values_q8 = ops_attention_widen_values_q8_avx2,
    .scores = scores_avx512,
    .max = max_avx512,
    .exp_sum = exp_sum_avx512,
    .accumulate = accumulate_block_avx512,
};

const attention_row_kernels ops_attention_kernels_avx512 = {
    .dot = ops_attention_dot_avx2,
    .dot_half = dot_half_avx512,
    .accumulate = ops_attention_accumulate_avx2,
    .accumulate_half = ops_attention_accumulate_half_avx2,
    .rescale_half = ops_attention_rescale_half_avx2,
    .accumulate_q8 = ops_attention_accumulate_q8_avx2,
};

#endif

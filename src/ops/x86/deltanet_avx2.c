/* The Gated DeltaNet's inner loops with AVX2 and FMA: 8 lanes, tails under
 * a mask. They serve the AVX-512 level too: these loops are a small part of
 * a layer's time, bound by the state's trips through the cache more than by
 * lane count. */
#if defined(__x86_64__)

#include "ops/deltanet_kernels.h"

#include <immintrin.h>

/* Lanes [0, left) of 8 set (all of them when left >= 8). */
static inline __m256i tail_mask(int32_t left)
{
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - (left < 8 ? left : 8)));
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four vectors share each load of a row: the state is read once per four
 * tokens instead of once per token. */
static void matvec4(float *out, int64_t out_stride, const float *m, int64_t m_stride, int32_t n_rows,
                    const float *x, int64_t x_stride, int32_t n)
{
    const float *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    for (int32_t i = 0; i < n_rows; i++) {
        const float *row = m + i * m_stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int32_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 r = _mm256_loadu_ps(row + j);
            a0 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x0 + j), a0);
            a1 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x1 + j), a1);
            a2 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x2 + j), a2);
            a3 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x3 + j), a3);
        }
        if (j < n) {
            __m256i k = tail_mask(n - j);
            __m256 r = _mm256_maskload_ps(row + j, k);
            a0 = _mm256_fmadd_ps(r, _mm256_maskload_ps(x0 + j, k), a0);
            a1 = _mm256_fmadd_ps(r, _mm256_maskload_ps(x1 + j, k), a1);
            a2 = _mm256_fmadd_ps(r, _mm256_maskload_ps(x2 + j, k), a2);
            a3 = _mm256_fmadd_ps(r, _mm256_maskload_ps(x3 + j, k), a3);
        }
        out[i] = hsum(a0);
        out[out_stride + i] = hsum(a1);
        out[2 * out_stride + i] = hsum(a2);
        out[3 * out_stride + i] = hsum(a3);
    }
}

/* One vector: two accumulators, so the adds of a row form two chains. */
static void matvec1(float *out, const float *m, int64_t m_stride, int32_t n_rows, const float *x, int32_t n)
{
    for (int32_t i = 0; i < n_rows; i++) {
        const float *row = m + i * m_stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        int32_t j = 0;
        for (; j + 16 <= n; j += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + j + 8), _mm256_loadu_ps(x + j + 8), a1);
        }
        for (; j < n; j += 8) {
            __m256i k = tail_mask(n - j);
            a0 = _mm256_fmadd_ps(_mm256_maskload_ps(row + j, k), _mm256_maskload_ps(x + j, k), a0);
        }
        out[i] = hsum(_mm256_add_ps(a0, a1));
    }
}

static void matvec_avx2(float *out, int64_t out_stride, const float *m, int64_t m_stride, int32_t n_rows,
                        const float *x, int64_t x_stride, int32_t n_vecs, int32_t n)
{
    int32_t v = 0;
    for (; v + 4 <= n_vecs; v += 4)
        matvec4(out + v * out_stride, out_stride, m, m_stride, n_rows, x + v * x_stride, x_stride, n);
    for (; v < n_vecs; v++)
        matvec1(out + v * out_stride, m, m_stride, n_rows, x + v * x_stride, n);
}

/* Two vectors of y stay in registers across all the rows they gather. */
static void axpy_multi_avx2(float *y, const float *x, int64_t x_stride, const float *coef, int32_t count, int32_t n)
{
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a0 = _mm256_loadu_ps(y + j), a1 = _mm256_loadu_ps(y + j + 8);
        for (int32_t s = 0; s < count; s++) {
            __m256 c = _mm256_set1_ps(coef[s]);
            a0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x + s * x_stride + j), a0);
            a1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(x + s * x_stride + j + 8), a1);
        }
        _mm256_storeu_ps(y + j, a0);
        _mm256_storeu_ps(y + j + 8, a1);
    }
    for (; j < n; j += 8) {
        __m256i k = tail_mask(n - j);
        __m256 a = _mm256_maskload_ps(y + j, k);
        for (int32_t s = 0; s < count; s++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(coef[s]), _mm256_maskload_ps(x + s * x_stride + j, k), a);
        _mm256_maskstore_ps(y + j, k, a);
    }
}

static void scale_avx2(float *y, float c, int64_t n)
{
    const __m256 vc = _mm256_set1_ps(c);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(y + j), vc));
    for (; j < n; j++)
        y[j] *= c;
}

static float recurrent_row_avx2(float *row, const float *k, const float *q, float v, float beta, float decay,
                                int32_t n)
{
    const __m256 vdecay = _mm256_set1_ps(decay);
    __m256 sk = _mm256_setzero_ps();
    for (int32_t j = 0; j < n; j += 8) {
        __m256i m = tail_mask(n - j);
        __m256 r = _mm256_mul_ps(_mm256_maskload_ps(row + j, m), vdecay);
        _mm256_maskstore_ps(row + j, m, r);
        sk = _mm256_fmadd_ps(r, _mm256_maskload_ps(k + j, m), sk);
    }
    const __m256 delta = _mm256_set1_ps((v - hsum(sk)) * beta);
    __m256 o = _mm256_setzero_ps();
    for (int32_t j = 0; j < n; j += 8) {
        __m256i m = tail_mask(n - j);
        __m256 r = _mm256_fmadd_ps(delta, _mm256_maskload_ps(k + j, m), _mm256_maskload_ps(row + j, m));
        _mm256_maskstore_ps(row + j, m, r);
        o = _mm256_fmadd_ps(r, _mm256_maskload_ps(q + j, m), o);
    }
    return hsum(o);
}

const deltanet_kernels ops_deltanet_kernels_avx2 = {matvec_avx2, axpy_multi_avx2, scale_avx2, recurrent_row_avx2};

#endif

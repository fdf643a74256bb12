/* Attention row kernels with AVX2, FMA and F16C (8 floats at a time).
 * accumulate_half and rescale_half round exactly as the scalar references do
 * (one fused multiply-add, then round-to-nearest-even to f16), so the two are
 * bit-identical; dot sums in another order and differs in the last bits. */
#if defined(__x86_64__)

#include "ops/attention_kernels.h"

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

const attention_row_kernels ops_attention_kernels_avx2 = {
    .dot = ops_attention_dot_avx2,
    .dot_half = ops_attention_dot_avx2,
    .accumulate = ops_attention_accumulate_avx2,
    .accumulate_half = ops_attention_accumulate_half_avx2,
    .rescale_half = ops_attention_rescale_half_avx2,
};

#endif

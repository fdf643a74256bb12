/* Element-wise kernels with AVX2 and F16C. F16C's f32 -> f16 conversion
 * rounds to nearest even like fp32_to_fp16, so the table lookups and stores
 * below are bit-identical to the scalar code (a signalling NaN aside). */
#if defined(__x86_64__)

#include "ops/ops_kernels.h"
#include "ops/x86/vexp.h"

#include <immintrin.h>
#include <math.h>

enum { ROUND_NEAREST = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC };

static inline float geglu_one(float x, float up, const float *gelu_of_half)
{
    if (x <= -10.0f)
        return 0.0f;
    if (x >= 10.0f)
        return x * up;
    return gelu_of_half[_cvtss_sh(x, ROUND_NEAREST)] * up;
}

/* The scalar path's branches become masks: GELU is read from the table for
 * every lane (the index is always in range), then lanes at or past +-10 take
 * x * up or 0 instead. */
void ops_geglu_avx2(float *gate, const float *up, int64_t n, const float *gelu_of_half)
{
    const __m256 low = _mm256_set1_ps(-10.0f), high = _mm256_set1_ps(10.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256i index = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, ROUND_NEAREST));
        __m256 gelu = _mm256_i32gather_ps(gelu_of_half, index, 4);
        gelu = _mm256_blendv_ps(gelu, x, _mm256_cmp_ps(x, high, _CMP_GE_OQ));
        __m256 product = _mm256_mul_ps(gelu, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(gate + i, _mm256_andnot_ps(_mm256_cmp_ps(x, low, _CMP_LE_OQ), product));
    }
    for (; i < n; i++)
        gate[i] = geglu_one(gate[i], up[i], gelu_of_half);
}

/* silu(x) * up. Where e^-x overflows (x < -88.72) it is taken as infinity,
 * as expf gives, so silu is -0 there as in the scalar code. */
static inline __m256 swiglu8(__m256 x, __m256 up)
{
    __m256 minus_x = _mm256_sub_ps(_mm256_setzero_ps(), x);
    __m256 overflow = _mm256_cmp_ps(minus_x, _mm256_set1_ps(88.72f), _CMP_GT_OQ);
    __m256 e = _mm256_blendv_ps(vexp8(minus_x), _mm256_set1_ps(INFINITY), overflow);
    __m256 silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_mul_ps(silu, up);
}

void ops_swiglu_avx2(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(gate + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    /* The tail through the same vector code, so every element rounds alike. */
    if (i < n) {
        float x[8] = {0}, u[8] = {0};
        for (int64_t k = i; k < n; k++)
            x[k - i] = gate[k], u[k - i] = up[k];
        _mm256_storeu_ps(x, swiglu8(_mm256_loadu_ps(x), _mm256_loadu_ps(u)));
        for (int64_t k = i; k < n; k++)
            gate[k] = x[k - i];
    }
}

void ops_store_f16_avx2(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), ROUND_NEAREST));
    for (; i < n; i++)
        dst[i] = _cvtss_sh(src[i], ROUND_NEAREST);
}

#endif

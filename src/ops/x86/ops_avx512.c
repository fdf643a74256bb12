/* Element-wise kernels with AVX-512: the AVX2 ones 16 lanes wide, with the
 * tail done under a mask instead of one element at a time. */
#if defined(__x86_64__)

#include "ops/ops_kernels.h"
#include "ops/x86/vexp.h"

#include <immintrin.h>
#include <math.h>

enum { ROUND_NEAREST = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC };

static inline __m512 geglu16(__m512 x, __m512 up, __mmask16 lanes, const float *gelu_of_half)
{
    __m512i index = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, ROUND_NEAREST));
    __m512 gelu = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, index, gelu_of_half, 4);
    gelu = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(10.0f), _CMP_GE_OQ), gelu, x);
    __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-10.0f), _CMP_LE_OQ);
    return _mm512_maskz_mul_ps((__mmask16)~zero, gelu, up);
}

void ops_geglu_avx512(float *gate, const float *up, int64_t n, const float *gelu_of_half)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(gate + i,
                         geglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i), 0xFFFF, gelu_of_half));
    if (i < n) {
        __mmask16 lanes = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(lanes, gate + i), u = _mm512_maskz_loadu_ps(lanes, up + i);
        _mm512_mask_storeu_ps(gate + i, lanes, geglu16(x, u, lanes, gelu_of_half));
    }
}

/* silu(x) * up. Where e^-x overflows (x < -88.72) it is taken as infinity,
 * as expf gives, so silu is -0 there as in the scalar code. */
static inline __m512 swiglu16(__m512 x, __m512 up)
{
    __m512 minus_x = _mm512_sub_ps(_mm512_setzero_ps(), x);
    __mmask16 overflow = _mm512_cmp_ps_mask(minus_x, _mm512_set1_ps(88.72f), _CMP_GT_OQ);
    __m512 e = _mm512_mask_blend_ps(overflow, vexp16(minus_x), _mm512_set1_ps(INFINITY));
    __m512 silu = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mul_ps(silu, up);
}

void ops_swiglu_avx512(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(gate + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        __mmask16 lanes = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(lanes, gate + i), u = _mm512_maskz_loadu_ps(lanes, up + i);
        _mm512_mask_storeu_ps(gate + i, lanes, swiglu16(x, u));
    }
}

void ops_store_f16_avx512(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), ROUND_NEAREST));
    if (i < n) {
        __mmask16 lanes = (__mmask16)((1u << (n - i)) - 1);
        __m256i half = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(lanes, src + i), ROUND_NEAREST);
        _mm256_mask_storeu_epi16(dst + i, lanes, half);
    }
}

#endif

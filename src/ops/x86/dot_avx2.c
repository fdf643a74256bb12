/* AVX2 + FMA + F16C dot kernels (this file is compiled with those enabled;
 * ops_dot_at_level calls into it only on CPUs that have them). */
#if defined(__x86_64__)

#include "ops/dot_kernels.h"

#include <immintrin.h>

#define DOT_ISA(name) name##_avx2

static inline __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

static inline __m256i dot_scale_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

static inline __m256i dot_u8s8_scaled(__m256i u, __m256i s, __m256i scales)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scales);
}

#include "ops/x86/dot_x86_quant.h"

/* Float rows: four accumulators of 8 lanes hide the FMA latency; the last
 * n % 8 elements are summed one by one. */
#define DOT_F32_ROW(load_w8, load_w1)                                                   \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                      \
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                      \
    int64_t i = 0;                                                                      \
    for (; i + 32 <= n; i += 32) {                                                      \
        acc0 = _mm256_fmadd_ps(load_w8(i), _mm256_loadu_ps(xf + i), acc0);              \
        acc1 = _mm256_fmadd_ps(load_w8(i + 8), _mm256_loadu_ps(xf + i + 8), acc1);      \
        acc2 = _mm256_fmadd_ps(load_w8(i + 16), _mm256_loadu_ps(xf + i + 16), acc2);    \
        acc3 = _mm256_fmadd_ps(load_w8(i + 24), _mm256_loadu_ps(xf + i + 24), acc3);    \
    }                                                                                   \
    for (; i + 8 <= n; i += 8)                                                          \
        acc0 = _mm256_fmadd_ps(load_w8(i), _mm256_loadu_ps(xf + i), acc0);              \
    float sum = dot_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))); \
    for (; i < n; i++)                                                                  \
        sum += load_w1(i) * xf[i];                                                      \
    *out = sum;

void ops_dot_f32_f32_avx2(int64_t n, const void *w, const void *x, float *out)
{
    const float *wf = w, *xf = x;
#define LOAD8(k) _mm256_loadu_ps(wf + (k))
#define LOAD1(k) wf[k]
    DOT_F32_ROW(LOAD8, LOAD1)
#undef LOAD8
#undef LOAD1
}

void ops_dot_f16_f32_avx2(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
#define LOAD8(k) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wh + (k))))
#define LOAD1(k) fp16_to_fp32(wh[k])
    DOT_F32_ROW(LOAD8, LOAD1)
#undef LOAD8
#undef LOAD1
}

/* bf16 is the top half of an f32: widen and shift. */
void ops_dot_bf16_f32_avx2(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
#define LOAD8(k) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(wh + (k)))), 16))
#define LOAD1(k) bf16_to_fp32(wh[k])
    DOT_F32_ROW(LOAD8, LOAD1)
#undef LOAD8
#undef LOAD1
}

#endif

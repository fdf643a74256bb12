/* AVX-512 (F/BW/VL) + VNNI dot kernels (this file is compiled with those
 * enabled; ops_dot_at_level calls into it only on CPUs that have them).
 *
 * The integer kernels use vpdpbusd on 256-bit vectors: one instruction for
 * what AVX2 does in two, and exact in int32 where AVX2's pair sums go
 * through int16. The float kernels use 512-bit vectors and masked tails. */
#if defined(__x86_64__)

#include "ops/dot_kernels.h"

#include <immintrin.h>

#define DOT_ISA(name) name##_avx512

static inline __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s)
{
    return _mm256_dpbusd_epi32(acc, u, s);
}

static inline __m256i dot_scale_pair(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi32(b), _mm_set1_epi32(a));
}

static inline __m256i dot_u8s8_scaled(__m256i u, __m256i s, __m256i scales)
{
    return _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s), scales);
}

#include "ops/x86/dot_x86_quant.h"

/* Float rows: four accumulators of 16 lanes hide the FMA latency; the last
 * n % 16 elements go through one masked step (masked-off lanes load zeros
 * and are never touched in memory). */
#define DOT_F32_ROW(load_w16, load_w16_masked)                                          \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();                      \
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();                      \
    int64_t i = 0;                                                                      \
    for (; i + 64 <= n; i += 64) {                                                      \
        acc0 = _mm512_fmadd_ps(load_w16(i), _mm512_loadu_ps(xf + i), acc0);             \
        acc1 = _mm512_fmadd_ps(load_w16(i + 16), _mm512_loadu_ps(xf + i + 16), acc1);   \
        acc2 = _mm512_fmadd_ps(load_w16(i + 32), _mm512_loadu_ps(xf + i + 32), acc2);   \
        acc3 = _mm512_fmadd_ps(load_w16(i + 48), _mm512_loadu_ps(xf + i + 48), acc3);   \
    }                                                                                   \
    for (; i + 16 <= n; i += 16)                                                        \
        acc0 = _mm512_fmadd_ps(load_w16(i), _mm512_loadu_ps(xf + i), acc0);             \
    if (i < n) {                                                                        \
        __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);                              \
        acc1 = _mm512_fmadd_ps(load_w16_masked(i, tail), _mm512_maskz_loadu_ps(tail, xf + i), acc1); \
    }                                                                                   \
    *out = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));

void ops_dot_f32_f32_avx512(int64_t n, const void *w, const void *x, float *out)
{
    const float *wf = w, *xf = x;
#define LOAD16(k) _mm512_loadu_ps(wf + (k))
#define LOAD16_MASKED(k, m) _mm512_maskz_loadu_ps(m, wf + (k))
    DOT_F32_ROW(LOAD16, LOAD16_MASKED)
#undef LOAD16
#undef LOAD16_MASKED
}

void ops_dot_f16_f32_avx512(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
#define LOAD16(k) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wh + (k))))
#define LOAD16_MASKED(k, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wh + (k)))
    DOT_F32_ROW(LOAD16, LOAD16_MASKED)
#undef LOAD16
#undef LOAD16_MASKED
}

/* bf16 is the top half of an f32: widen and shift. */
static inline __m512 bf16x16_to_ps(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void ops_dot_bf16_f32_avx512(int64_t n, const void *w, const void *x, float *out)
{
    const uint16_t *wh = w;
    const float *xf = x;
#define LOAD16(k) bf16x16_to_ps(_mm256_loadu_si256((const __m256i *)(wh + (k))))
#define LOAD16_MASKED(k, m) bf16x16_to_ps(_mm256_maskz_loadu_epi16(m, wh + (k)))
    DOT_F32_ROW(LOAD16, LOAD16_MASKED)
#undef LOAD16
#undef LOAD16_MASKED
}

#endif

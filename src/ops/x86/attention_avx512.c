/* AVX-512 attention row kernels. Only the f16-query dot product is new here:
 * it sums in the order ggml's AVX-512 f16 dot product does (four 16-lane
 * accumulators over steps of 64, folded pairwise, then the lanes), so that
 * decoding, where llama.cpp runs that kernel, matches it bit for bit in this
 * step. The rest is the AVX2 code. */
#if defined(__x86_64__)

#include "ops/attention_kernels.h"

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

const attention_row_kernels ops_attention_kernels_avx512 = {
    .dot = ops_attention_dot_avx2,
    .dot_half = dot_half_avx512,
    .accumulate = ops_attention_accumulate_avx2,
    .accumulate_half = ops_attention_accumulate_half_avx2,
    .rescale_half = ops_attention_rescale_half_avx2,
};

#endif

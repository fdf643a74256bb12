/* AVX-512 VNNI panel kernels: 16 rows (one zmm lane each) by up to 16 tokens.
 *
 * Per block, the weights are unpacked once into eight zmm of unsigned bytes,
 * one per group of four elements; each token then needs one vpdpbusd per
 * group with its four activation bytes broadcast from memory. Each token has
 * its own accumulator, so the tokens of a tile are independent chains that
 * keep the VNNI unit busy; a lone token (decode) splits its chain in two.
 *
 * The operations per (row, token), and their order, are the scalar
 * references' in ops/packed.c: exact integer sums (any order), then the same
 * float products and fused multiply-adds. Results are bit-identical. */
#include "ops/packed_kernels.h"

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m512i broadcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

ALWAYS_INLINE __m512i broadcast_pair(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

ALWAYS_INLINE __m512 scales_f16(const uint16_t d[16])
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d));
}

/* Four nibble planes -> eight group vectors: low nibbles groups 0..3, high 4..7. */
ALWAYS_INLINE void unpack_nibbles(const uint8_t planes[4][64], __m512i w[8])
{
    const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 16
    for (int g = 0; g < 4; g++) {
        __m512i n = _mm512_loadu_si512(planes[g]);
        w[g] = _mm512_and_si512(n, low4);
        w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(n, 4), low4);
    }
}

/* sum over 8 groups of w[g] * the token's bytes 4g..4g+3, added to init. */
ALWAYS_INLINE __m512i dot_groups(__m512i init, const __m512i w[8], const int8_t *qs, int split)
{
    if (!split) {
        __m512i s = init;
#pragma GCC unroll 16
        for (int g = 0; g < 8; g++)
            s = _mm512_dpbusd_epi32(s, w[g], broadcast4(qs + 4 * g));
        return s;
    }
    __m512i even = init, odd = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int g = 0; g < 8; g += 2) {
        even = _mm512_dpbusd_epi32(even, w[g], broadcast4(qs + 4 * g));
        odd = _mm512_dpbusd_epi32(odd, w[g + 1], broadcast4(qs + 4 * g + 4));
    }
    return _mm512_add_epi32(even, odd);
}

ALWAYS_INLINE const void *token_row(const void *act, size_t act_stride, int t)
{
    return (const char *)act + (size_t)t * act_stride;
}

ALWAYS_INLINE void store_tokens(float *y, size_t y_stride, const __m512 *acc, int n_tokens)
{
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
        _mm512_storeu_ps(y + (size_t)t * y_stride, acc[t]);
}

/* ---- the 32-element formats ---- */

enum { UNPACK_Q4_0, UNPACK_Q5_0, UNPACK_Q8_0 };

/* kind: how to unpack the weights (Q4_1 and Q5_1 blocks begin with a Q4_0 or
 * Q5_0 one); offset: what the stored values exceed the weights by; min_at:
 * where a Q4_1/Q5_1 block keeps its mins, 0 for the other formats, whose
 * activations are act_q8_32 rather than block_q8_1. */
ALWAYS_INLINE void tile_32(int64_t cols, const void *panel, size_t block_bytes, int kind, int offset,
                            size_t min_at, const void *act, size_t act_stride, const int n_tokens, float *y,
                            size_t y_stride)
{
    __m512 acc[OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
        acc[t] = _mm512_setzero_ps();
    const int split = n_tokens < 4;
    for (int64_t b = 0; b < cols / 32; b++) {
        const char *block = (const char *)panel + (size_t)b * block_bytes;
        __m512i w[8];
        if (kind == UNPACK_Q8_0) {
            const panel_q8_0 *p = (const panel_q8_0 *)block;
#pragma GCC unroll 16
            for (int g = 0; g < 8; g++)
                w[g] = _mm512_loadu_si512(p->u[g]);
        } else if (kind == UNPACK_Q5_0) {
            const panel_q5_0 *p = (const panel_q5_0 *)block;
            unpack_nibbles(p->nibbles, w);
            const __m512i fifth_bit = _mm512_set1_epi8(0x10);
#pragma GCC unroll 16
            for (int g = 0; g < 8; g++)
                w[g] = _mm512_mask_add_epi8(w[g], _cvtu64_mask64(p->high[g]), w[g], fifth_bit);
        } else {
            unpack_nibbles(((const panel_q4_0 *)block)->nibbles, w);
        }
        /* d is the first member of every 32-element panel block. */
        __m512 dw = scales_f16((const uint16_t *)block);
        __m512 mw = min_at ? scales_f16((const uint16_t *)(block + min_at)) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int t = 0; t < n_tokens; t++) {
            if (min_at) {
                const block_q8_1 *a = (const block_q8_1 *)token_row(act, act_stride, t) + b;
                __m512i isum = dot_groups(_mm512_setzero_si512(), w, a->qs, split);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(a->d)), acc[t]);
                acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a->s), acc[t]);
            } else {
                const act_q8_32 *a = (const act_q8_32 *)token_row(act, act_stride, t) + b;
                __m512i isum = dot_groups(_mm512_set1_epi32(-offset * a->sum), w, a->qs, split);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(a->d)), acc[t]);
            }
        }
    }
    store_tokens(y, y_stride, acc, n_tokens);
}

/* Each exported kernel dispatches on the token count so that the tile loops
 * above are unrolled with their accumulators in registers. Only tiles of 1,
 * 2, 4, 8 and 16 tokens are compiled (a tile of 13 runs as 8 + 4 + 1): a
 * token's result does not depend on its tile, and every extra specialization
 * costs compile time, which clang's sanitizer build pays dearly for. The
 * K-quant tiles keep two accumulators per token and so stop at 8. */
#define PANEL_BY_TOKENS(name, CALL, MAX_TILE)                                                             \
    void name(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, float *y, \
              size_t y_stride)                                                                            \
    {                                                                                                     \
        for (int done = 0; done < n_tokens;) {                                                            \
            const void *tile_act = (const char *)act + (size_t)done * act_stride;                         \
            float *tile_y = y + (size_t)done * y_stride;                                                  \
            int left = n_tokens - done;                                                                   \
            int tile = left >= 16 && MAX_TILE >= 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1; \
            switch (tile) {                                                                               \
            case 1: CALL(1); break;                                                                       \
            case 2: CALL(2); break;                                                                       \
            case 4: CALL(4); break;                                                                       \
            case 8: CALL(8); break;                                                                       \
            default: CALL(MAX_TILE); break;                                                               \
            }                                                                                             \
            done += tile;                                                                                 \
        }                                                                                                 \
    }

#define CALL_32(T, panel_t, kind, offset, min_at) \
    tile_32(cols, panel, sizeof(panel_t), kind, offset, min_at, tile_act, act_stride, T, tile_y, y_stride)
#define CALL_Q4_0(T) CALL_32(T, panel_q4_0, UNPACK_Q4_0, 8, 0)
#define CALL_Q5_0(T) CALL_32(T, panel_q5_0, UNPACK_Q5_0, 16, 0)
#define CALL_Q8_0(T) CALL_32(T, panel_q8_0, UNPACK_Q8_0, 128, 0)
#define CALL_Q4_1(T) CALL_32(T, panel_q4_1, UNPACK_Q4_0, 0, offsetof(panel_q4_1, m))
#define CALL_Q5_1(T) CALL_32(T, panel_q5_1, UNPACK_Q5_0, 0, offsetof(panel_q5_1, m))
PANEL_BY_TOKENS(ops_panel_q4_0_avx512, CALL_Q4_0, 16)
PANEL_BY_TOKENS(ops_panel_q5_0_avx512, CALL_Q5_0, 16)
PANEL_BY_TOKENS(ops_panel_q8_0_avx512, CALL_Q8_0, 16)
PANEL_BY_TOKENS(ops_panel_q4_1_avx512, CALL_Q4_1, 16)
PANEL_BY_TOKENS(ops_panel_q5_1_avx512, CALL_Q5_1, 16)

/* ---- Q4_K and Q5_K ---- */

/* Q4_K and Q5_K share the tile; `fifth_bit` selects Q5_K's layout. */
ALWAYS_INLINE void tile_k4(int64_t cols, const void *panel, const int fifth_bit, const void *act, size_t act_stride,
                           const int n_tokens, float *y, size_t y_stride)
{
    /* The two layouts agree up to the nibbles; the block sizes differ. */
    const size_t block_bytes = fifth_bit ? sizeof(panel_q5_K) : sizeof(panel_q4_K);
    const panel_q4_K *p = panel;
    __m512 acc[OPS_PANEL_TOKENS];
    __m512i scaled[OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
        acc[t] = _mm512_setzero_ps();
    const int split = n_tokens < 4;
    for (int64_t b = 0; b < cols / 256; b++, p = (const panel_q4_K *)((const char *)p + block_bytes)) {
        __m512i min_pairs[4];
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++)
            min_pairs[q] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p->min_pairs[q]));
        __m512 dmin = scales_f16(p->dmin);
#pragma GCC unroll 8
        for (int t = 0; t < n_tokens; t++) {
            const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
            __m512i mins = _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int q = 0; q < 4; q++)
                mins = _mm512_dpwssd_epi32(mins, min_pairs[q], broadcast_pair(a->sums32 + 2 * q));
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(dmin, _mm512_set1_ps(a->d)), acc[t]);
            scaled[t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++) {
            __m512i w[8];
            if (fifth_bit) {
                const panel_q5_K *p5 = (const panel_q5_K *)p;
                unpack_nibbles(p5->sub[j].nibbles, w);
                const __m512i sixteen = _mm512_set1_epi8(0x10);
#pragma GCC unroll 16
                for (int g = 0; g < 8; g++)
                    w[g] = _mm512_mask_add_epi8(w[g], _cvtu64_mask64(p5->sub[j].high[g]), w[g], sixteen);
            } else {
                unpack_nibbles(p->nibbles[j], w);
            }
            __m512i scale = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p->scales[j]));
#pragma GCC unroll 8
            for (int t = 0; t < n_tokens; t++) {
                const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
                __m512i sub = dot_groups(_mm512_setzero_si512(), w, a->qs + 32 * j, split);
                scaled[t] = _mm512_add_epi32(scaled[t], _mm512_mullo_epi32(sub, scale));
            }
        }
        __m512 d = scales_f16(p->d);
#pragma GCC unroll 8
        for (int t = 0; t < n_tokens; t++) {
            const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(scaled[t]), _mm512_mul_ps(d, _mm512_set1_ps(a->d)), acc[t]);
        }
    }
    store_tokens(y, y_stride, acc, n_tokens);
}

#define CALL_Q4_K(T) tile_k4(cols, panel, 0, tile_act, act_stride, T, tile_y, y_stride)
#define CALL_Q5_K(T) tile_k4(cols, panel, 1, tile_act, act_stride, T, tile_y, y_stride)
PANEL_BY_TOKENS(ops_panel_q4_K_avx512, CALL_Q4_K, 8)
PANEL_BY_TOKENS(ops_panel_q5_K_avx512, CALL_Q5_K, 8)

/* ---- Q6_K ---- */

/* Bits 2k..2k+1 of each byte moved to bits 4..5 (other bits are masked off
 * by the caller, so what the 16-bit shifts carry across bytes is harmless). */
ALWAYS_INLINE __m512i high_pair_to_bit4(__m512i bits, int k)
{
    switch (k) {
    case 0: return _mm512_slli_epi16(bits, 4);
    case 1: return _mm512_slli_epi16(bits, 2);
    case 2: return bits;
    default: return _mm512_srli_epi16(bits, 2);
    }
}

ALWAYS_INLINE void tile_q6_K(int64_t cols, const void *panel, const void *act, size_t act_stride,
                              const int n_tokens, float *y, size_t y_stride)
{
    const panel_q6_K *p = panel;
    const __m512i bits45 = _mm512_set1_epi8(0x30);
    __m512 acc[OPS_PANEL_TOKENS];
    __m512i scaled[OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < cols / 256; b++, p++) {
#pragma GCC unroll 16
        for (int t = 0; t < n_tokens; t++)
            scaled[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int c = 0; c < 8; c++) {
            /* Lane r: the int16 scales of sub-blocks 2c and 2c + 1. */
            __m512i pair = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p->scale_pairs[c]));
            __m512i offset_pair = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(pair, 5));
            __m512i scale_even = _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16);
            __m512i scale_odd = _mm512_srai_epi32(pair, 16);
            __m512i w[8];
            unpack_nibbles(p->chunk[c].nibbles, w);
            __m512i high0 = _mm512_loadu_si512(p->chunk[c].high[0]), high1 = _mm512_loadu_si512(p->chunk[c].high[1]);
#pragma GCC unroll 16
            for (int k = 0; k < 4; k++) {
                /* w | (shifted & 0x30) */
                w[k] = _mm512_ternarylogic_epi32(w[k], high_pair_to_bit4(high0, k), bits45, 0xF8);
                w[k + 4] = _mm512_ternarylogic_epi32(w[k + 4], high_pair_to_bit4(high1, k), bits45, 0xF8);
            }
#pragma GCC unroll 8
            for (int t = 0; t < n_tokens; t++) {
                const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
                const int8_t *qs = a->qs + 32 * c;
                /* -32 * (sc_even * sum16_even + sc_odd * sum16_odd): the offset, exactly. */
                __m512i total = _mm512_dpwssd_epi32(scaled[t], offset_pair, broadcast_pair(a->sums16 + 2 * c));
                __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
#pragma GCC unroll 16
                for (int g = 0; g < 4; g++) {
                    even = _mm512_dpbusd_epi32(even, w[g], broadcast4(qs + 4 * g));
                    odd = _mm512_dpbusd_epi32(odd, w[g + 4], broadcast4(qs + 16 + 4 * g));
                }
                total = _mm512_add_epi32(total, _mm512_mullo_epi32(even, scale_even));
                scaled[t] = _mm512_add_epi32(total, _mm512_mullo_epi32(odd, scale_odd));
            }
        }
        __m512 d = scales_f16(p->d);
#pragma GCC unroll 8
        for (int t = 0; t < n_tokens; t++) {
            const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(scaled[t]), _mm512_mul_ps(d, _mm512_set1_ps(a->d)), acc[t]);
        }
    }
    store_tokens(y, y_stride, acc, n_tokens);
}

#define CALL_Q6_K(T) tile_q6_K(cols, panel, tile_act, act_stride, T, tile_y, y_stride)
PANEL_BY_TOKENS(ops_panel_q6_K_avx512, CALL_Q6_K, 8)

/* ---- activations ---- */

/* As ops/packed.c's reference (ggml's x86 Q8_0): scale amax/127 rounded to
 * f16, values x * (127/amax) rounded half to even, which is what cvtps does
 * in the default rounding mode. One block into d and qs; returns the sum of
 * the values. */
ALWAYS_INLINE int32_t quantize_block_32(const float *x, float *d, int8_t qs[32])
{
    __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
    __m512 scale = _mm512_set1_ps(inverse);
    __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, scale)), qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, scale));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(qlo));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(qhi));
    *d = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
}

void ops_packed_quantize_q8_32_avx512(const float *x, act_q8_32 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++)
        out[b].sum = quantize_block_32(x + 32 * b, &out[b].d, out[b].qs);
}

/* Q8_1 as ops/dot.c makes it: s = d * sum, rounded once. */
void ops_packed_quantize_q8_1_avx512(const float *x, block_q8_1 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++) {
        int32_t sum = quantize_block_32(x + 32 * b, &out[b].d, out[b].qs);
        out[b].s = out[b].d * (float)sum;
    }
}

/* As quantize_q8_K_ref: the scale comes from the first element of largest
 * magnitude, with its sign; values are clamped at 127 on the positive side. */
void ops_packed_quantize_q8_256_avx512(const float *x, act_q8_256 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, x += 256) {
        __m512 v[16], amax_v = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            v[i] = _mm512_loadu_ps(x + 16 * i);
            amax_v = _mm512_max_ps(amax_v, _mm512_abs_ps(v[i]));
        }
        float amax = _mm512_reduce_max_ps(amax_v);
        act_q8_256 *a = &out[b];
        if (!(amax > 0.0f)) {
            memset(a, 0, sizeof *a);
            continue;
        }
        float max = 0.0f;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __mmask16 at = _mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (at) {
                max = x[16 * i + __builtin_ctz(at)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m512 scale = _mm512_set1_ps(iscale);
        const __m512i limit = _mm512_set1_epi32(127);
        __m512i sums16 = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[i], scale)), limit);
            _mm_storeu_si128((__m128i *)(a->qs + 16 * i), _mm512_cvtepi32_epi8(q));
            /* Lane i of sums16 collects group i's sum. */
            sums16 = _mm512_mask_set1_epi32(sums16, (__mmask16)(1u << i), _mm512_reduce_add_epi32(q));
        }
        _mm256_storeu_si256((__m256i *)a->sums16, _mm512_cvtepi32_epi16(sums16));
        /* Pairs of groups: lanes 2j and 2j + 1. */
        __m512i pairs = _mm512_add_epi32(sums16, _mm512_srli_epi64(sums16, 32));
        _mm_storeu_si128((__m128i *)a->sums32, _mm512_cvtepi64_epi16(pairs));
        a->d = 1.0f / iscale;
    }
}

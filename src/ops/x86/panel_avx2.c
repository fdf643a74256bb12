/* AVX2 panel kernels: the AVX-512 VNNI kernels' panels (ops/packed_kernels.h)
 * without vpdpbusd, 8 rows per ymm.
 *
 * A 64-byte group vector is two 32-byte halves, rows 0-7 and rows 8-15; a
 * half is one ymm whose 32-bit lane r holds row r's four bytes. vpmaddubsw
 * multiplies them by the token's four activation bytes (broadcast) and adds
 * adjacent products into 16-bit lanes; vpmaddwd then adds the two 16-bit
 * lanes of each row into 32 bits, multiplied by the row's integer scale
 * (1 for the 32-element formats) on the way.
 *
 * Nothing saturates: activations are -127..127 (both quantizers), so a
 * vpmaddubsw lane is at most 2 * 127 * u. The 16-bit lanes accumulate
 * several groups before vpmaddwd, as many as stay below 32767: all 8 groups
 * of 4-bit values (8 * 2 * 127 * 15 = 30480), 4 of 5-bit (31496), 2 of
 * 6-bit (32004). Q8_0's stored u = q + 128 would saturate, so its groups
 * multiply |q| by the activations with q's sign (vpsignb), one group at a
 * time (2 * 128 * 127 = 32512), which is the sum of q * a itself: the
 * offset the reference takes out through the block sum is never put in.
 *
 * Per (row, token) the integer sums are exact and the float operations are
 * the scalar references' (ops/packed.c), in their order; results are
 * bit-identical to them and to the AVX-512 kernels.
 *
 * Tiles: with two halves the tokens of a tile would need twice the
 * accumulators of the AVX-512 kernels in half the registers, so tiles of
 * more than two tokens go over the panel twice, once per half (from L1: a
 * panel of 16 rows is small); one or two tokens (decode) take both halves
 * in one pass, each weight vector read once. */
#include "ops/packed_kernels.h"

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m256i broadcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

ALWAYS_INLINE const void *token_row(const void *act, size_t act_stride, int t)
{
    return (const char *)act + (size_t)t * act_stride;
}

/* The 8 f16 values of half h of a 16-row array. */
ALWAYS_INLINE __m256 half_f16(const uint16_t d[16], int h)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + 8 * h)));
}

/* Bit k of m -> byte k: 0x10 where set, else 0. */
ALWAYS_INLINE __m256i fifth_bits(uint32_t m)
{
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,
                                            2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int32_t)m), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Group g (0..7) of half h from four nibble planes: low nibbles are groups
 * 0..3, high nibbles 4..7. */
ALWAYS_INLINE __m256i nibble_group(const uint8_t planes[4][64], int h, int g)
{
    __m256i n = _mm256_loadu_si256((const __m256i *)(planes[g % 4] + 32 * h));
    if (g >= 4)
        n = _mm256_srli_epi16(n, 4);
    return _mm256_and_si256(n, _mm256_set1_epi8(0x0F));
}

/* Decode (one pass over both halves) streams each panel from memory once,
 * faster than the hardware prefetcher runs ahead of it: part `part` of 8 of
 * the block blocks_ahead on is asked for now, so the lines arrive before
 * they are multiplied (distances measured best on a Zen 3: 2 blocks of
 * Q4_K, 4 of Q6_K; one thread's Q6_K went from 10.6 to 18 GB/s). Prefetches past the panel's
 * end do not fault. */
ALWAYS_INLINE void prefetch_ahead(const void *block, size_t block_bytes, int blocks_ahead, int part)
{
    const char *ahead = (const char *)block + (size_t)blocks_ahead * block_bytes + (size_t)part * ((block_bytes + 7) / 8);
    for (size_t line = 0; line < (block_bytes + 7) / 8; line += 64)
        _mm_prefetch(ahead + line, _MM_HINT_T0);
}

/* Bits 2k..2k+1 of each byte moved to bits 4..5, the rest cleared. */
ALWAYS_INLINE __m256i high_pair_to_bit4(__m256i bits, int k)
{
    switch (k) {
    case 0: bits = _mm256_slli_epi16(bits, 4); break;
    case 1: bits = _mm256_slli_epi16(bits, 2); break;
    case 2: break;
    default: bits = _mm256_srli_epi16(bits, 2); break;
    }
    return _mm256_and_si256(bits, _mm256_set1_epi8(0x30));
}

/* A 32-bit lane per row whose two 16-bit halves both hold the row's byte. */
ALWAYS_INLINE __m256i scale_u8_pairs(const uint8_t s[8])
{
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)s));
    return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}

ALWAYS_INLINE void store_tokens(float *y, size_t y_stride, __m256 acc[][OPS_PANEL_TOKENS], int h0, int n_halves,
                                int n_tokens)
{
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++)
            _mm256_storeu_ps(y + (size_t)t * y_stride + 8 * (h0 + h), acc[h][t]);
}

/* How a weight group is unpacked, and so how many groups a 16-bit lane
 * accumulates (flush) before vpmaddwd. */
enum { UNPACK_Q4, UNPACK_Q5, UNPACK_Q8, UNPACK_Q6 };

/* One group of a 32-element block (or Q4_K/Q5_K sub-block) for half h:
 * nibbles + 32 h, plus for Q5 the fifth bits; Q8: the group's q = u ^ 0x80. */
ALWAYS_INLINE __m256i unpack_group(int kind, const uint8_t planes[4][64], const uint64_t *high, const uint8_t (*u)[64],
                                   int h, int g)
{
    if (kind == UNPACK_Q8)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(u[g] + 32 * h)), _mm256_set1_epi8((char)0x80));
    __m256i w = nibble_group(planes, h, g);
    if (kind == UNPACK_Q5)
        w = _mm256_or_si256(w, fifth_bits((uint32_t)(high[g] >> (32 * h))));
    return w;
}

/* s[h][t] (+)= the 16-bit pair sums of group g's weights w[h] times token t's
 * bytes 4g..4g+3 at qs[t]. Q8_0 (signed weights): |q| times a with q's sign. */
ALWAYS_INLINE void multiply_group(int kind, const __m256i w[2], int n_halves, const int8_t *const qs[], int g,
                                  int first, int n_tokens, __m256i s[][OPS_PANEL_TOKENS])
{
    __m256i absw[2];
    if (kind == UNPACK_Q8)
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++)
            absw[h] = _mm256_abs_epi8(w[h]);
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++) {
        __m256i a = broadcast4(qs[t] + 4 * g);
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++) {
            __m256i p = kind == UNPACK_Q8 ? _mm256_maddubs_epi16(absw[h], _mm256_sign_epi8(a, w[h]))
                                          : _mm256_maddubs_epi16(w[h], a);
            s[h][t] = first ? p : _mm256_add_epi16(s[h][t], p);
            /* Keeps the sum a running one: reassociated into a tree, the
             * compiler kept every product of the sub-block live and spilled. */
            __asm__("" : "+x"(s[h][t]));
        }
    }
}

/* ---- the 32-element formats ---- */

/* kind: how to unpack (Q4_1 and Q5_1 blocks begin with a Q4_0 or Q5_0 one);
 * offset: what the stored values exceed the weights by (not Q8_0's, see
 * above); min_at: where a Q4_1/Q5_1 block keeps its mins, 0 for the other
 * formats, whose activations are act_q8_32 rather than block_q8_1. Halves
 * h0 .. h0 + n_halves - 1. */
ALWAYS_INLINE void tile_32(int64_t cols, const void *panel, size_t block_bytes, int kind, int offset, size_t min_at,
                           const void *act, size_t act_stride, const int n_tokens, const int h0, const int n_halves,
                           float *y, size_t y_stride)
{
    const int flush = kind == UNPACK_Q8 ? 1 : kind == UNPACK_Q5 ? 4 : 8;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++)
            acc[h][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 32; b++) {
        const char *block = (const char *)panel + (size_t)b * block_bytes;
        const panel_q4_0 *p4 = (const panel_q4_0 *)block;
        const panel_q5_0 *p5 = (const panel_q5_0 *)block;
        const panel_q8_0 *p8 = (const panel_q8_0 *)block;
        const int8_t *qs[OPS_PANEL_TOKENS];
        __m256i isum[2][OPS_PANEL_TOKENS], s[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
        for (int t = 0; t < n_tokens; t++) {
            const void *a = token_row(act, act_stride, t);
            qs[t] = min_at ? ((const block_q8_1 *)a + b)->qs : ((const act_q8_32 *)a + b)->qs;
            __m256i init = min_at || kind == UNPACK_Q8 ? _mm256_setzero_si256()
                                                       : _mm256_set1_epi32(-offset * ((const act_q8_32 *)a + b)->sum);
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++)
                isum[h][t] = init;
        }
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i w[2];
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++)
                w[h] = unpack_group(kind, kind == UNPACK_Q5 ? p5->nibbles : p4->nibbles, p5->high, p8->u, h0 + h, g);
            multiply_group(kind, w, n_halves, qs, g, g % flush == 0, n_tokens, s);
            if (g % flush == flush - 1)
#pragma GCC unroll 16
                for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
                    for (int h = 0; h < n_halves; h++)
                        isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_madd_epi16(s[h][t], ones));
        }
        /* d is the first member of every 32-element panel block. */
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++) {
            __m256 dw = half_f16((const uint16_t *)block, h0 + h);
            __m256 mw = min_at ? half_f16((const uint16_t *)(block + min_at), h0 + h) : _mm256_setzero_ps();
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++) {
                const void *a = token_row(act, act_stride, t);
                float d_a = min_at ? ((const block_q8_1 *)a + b)->d : ((const act_q8_32 *)a + b)->d;
                acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h][t]), _mm256_mul_ps(dw, _mm256_set1_ps(d_a)),
                                            acc[h][t]);
                if (min_at)
                    acc[h][t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(((const block_q8_1 *)a + b)->s), acc[h][t]);
            }
        }
    }
    store_tokens(y, y_stride, acc, h0, n_halves, n_tokens);
}

/* Each exported kernel dispatches on the token count so that the tile loops
 * above are unrolled with their accumulators in registers. Only tiles of 1,
 * 2, 4 and 8 tokens are compiled (a tile of 13 runs as 8 + 4 + 1): a token's
 * result does not depend on its tile. Tiles of 1 and 2 tokens take both
 * halves at once, larger ones one half per pass. */
#define PANEL_BY_TOKENS(name, CALL, MAX_TILE)                                                             \
    void name(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, float *y, \
              size_t y_stride)                                                                            \
    {                                                                                                     \
        for (int done = 0; done < n_tokens;) {                                                            \
            const void *tile_act = (const char *)act + (size_t)done * act_stride;                         \
            float *tile_y = y + (size_t)done * y_stride;                                                  \
            int left = n_tokens - done;                                                                   \
            int tile = left >= 8 && MAX_TILE >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;               \
            switch (tile) {                                                                               \
            case 1: CALL(1, 0, 2); break;                                                                 \
            case 2: CALL(2, 0, 2); break;                                                                 \
            case 4: CALL(4, 0, 1); CALL(4, 1, 1); break;                                                  \
            default: CALL(MAX_TILE, 0, 1); CALL(MAX_TILE, 1, 1); break;                                   \
            }                                                                                             \
            done += tile;                                                                                 \
        }                                                                                                 \
    }

#define CALL_32(T, H0, NH, panel_t, kind, offset, min_at) \
    tile_32(cols, panel, sizeof(panel_t), kind, offset, min_at, tile_act, act_stride, T, H0, NH, tile_y, y_stride)
#define CALL_Q4_0(T, H0, NH) CALL_32(T, H0, NH, panel_q4_0, UNPACK_Q4, 8, 0)
#define CALL_Q5_0(T, H0, NH) CALL_32(T, H0, NH, panel_q5_0, UNPACK_Q5, 16, 0)
#define CALL_Q8_0(T, H0, NH) CALL_32(T, H0, NH, panel_q8_0, UNPACK_Q8, 0, 0)
#define CALL_Q4_1(T, H0, NH) CALL_32(T, H0, NH, panel_q4_1, UNPACK_Q4, 0, offsetof(panel_q4_1, m))
#define CALL_Q5_1(T, H0, NH) CALL_32(T, H0, NH, panel_q5_1, UNPACK_Q5, 0, offsetof(panel_q5_1, m))
PANEL_BY_TOKENS(ops_panel_q4_0_avx2, CALL_Q4_0, 8)
PANEL_BY_TOKENS(ops_panel_q5_0_avx2, CALL_Q5_0, 8)
PANEL_BY_TOKENS(ops_panel_q8_0_avx2, CALL_Q8_0, 8)
PANEL_BY_TOKENS(ops_panel_q4_1_avx2, CALL_Q4_1, 8)
PANEL_BY_TOKENS(ops_panel_q5_1_avx2, CALL_Q5_1, 8)

/* ---- Q4_K and Q5_K ---- */

/* Q4_K and Q5_K share the tile; `fifth_bit` selects Q5_K's layout. */
ALWAYS_INLINE void tile_k4(int64_t cols, const void *panel, const int fifth_bit, const void *act, size_t act_stride,
                           const int n_tokens, const int h0, const int n_halves, float *y, size_t y_stride)
{
    /* The two layouts agree up to the nibbles; the block sizes differ. */
    const size_t block_bytes = fifth_bit ? sizeof(panel_q5_K) : sizeof(panel_q4_K);
    const int kind = fifth_bit ? UNPACK_Q5 : UNPACK_Q4, flush = fifth_bit ? 4 : 8;
    const panel_q4_K *p = panel;
    __m256 acc[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++)
            acc[h][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 256; b++, p = (const panel_q4_K *)((const char *)p + block_bytes)) {
        const int8_t *qs[OPS_PANEL_TOKENS];
        __m256i scaled[2][OPS_PANEL_TOKENS], s[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
        for (int t = 0; t < n_tokens; t++) {
            const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
            qs[t] = a->qs;
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++)
                scaled[h][t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 1
        for (int j = 0; j < 8; j++) {
            if (n_halves == 2)
                prefetch_ahead(p, block_bytes, 2, j);
            const uint8_t(*planes)[64] = fifth_bit ? ((const panel_q5_K *)p)->sub[j].nibbles : p->nibbles[j];
            const uint64_t *high = fifth_bit ? ((const panel_q5_K *)p)->sub[j].high : NULL;
            __m256i scale[2];
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++)
                scale[h] = scale_u8_pairs(p->scales[j] + 8 * (h0 + h));
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i w[2];
#pragma GCC unroll 2
                for (int h = 0; h < n_halves; h++)
                    w[h] = unpack_group(kind, planes, high, NULL, h0 + h, g);
                multiply_group(kind, w, n_halves, qs, g, g % flush == 0, n_tokens, s);
                if (g % flush == flush - 1)
#pragma GCC unroll 16
                    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
                        for (int h = 0; h < n_halves; h++)
                            scaled[h][t] = _mm256_add_epi32(scaled[h][t], _mm256_madd_epi16(s[h][t], scale[h]));
            }
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++)
                qs[t] += 32;
        }
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++) {
            /* Lane r: mins 2q and 2q + 1 of row r, as 16-bit values. */
            __m256i min_pairs[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                min_pairs[q] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p->min_pairs[q][8 * (h0 + h)]));
            __m256 dmin = half_f16(p->dmin, h0 + h), d = half_f16(p->d, h0 + h);
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++) {
                const act_q8_256 *a = (const act_q8_256 *)token_row(act, act_stride, t) + b;
                __m256i mins = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
                    mins = _mm256_add_epi32(mins, _mm256_madd_epi16(min_pairs[q], broadcast4(a->sums32 + 2 * q)));
                __m256 d_a = _mm256_set1_ps(a->d);
                acc[h][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_mul_ps(dmin, d_a), acc[h][t]);
                acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled[h][t]), _mm256_mul_ps(d, d_a), acc[h][t]);
            }
        }
    }
    store_tokens(y, y_stride, acc, h0, n_halves, n_tokens);
}

#define CALL_Q4_K(T, H0, NH) tile_k4(cols, panel, 0, tile_act, act_stride, T, H0, NH, tile_y, y_stride)
#define CALL_Q5_K(T, H0, NH) tile_k4(cols, panel, 1, tile_act, act_stride, T, H0, NH, tile_y, y_stride)
PANEL_BY_TOKENS(ops_panel_q4_K_avx2, CALL_Q4_K, 8)
PANEL_BY_TOKENS(ops_panel_q5_K_avx2, CALL_Q5_K, 8)

/* ---- Q6_K ---- */

ALWAYS_INLINE void tile_q6_K(int64_t cols, const void *panel, const void *act, size_t act_stride, const int n_tokens,
                             const int h0, const int n_halves, float *y, size_t y_stride)
{
    const panel_q6_K *p = panel;
    __m256 acc[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++)
            acc[h][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < cols / 256; b++, p++) {
        const act_q8_256 *a[OPS_PANEL_TOKENS];
        const int8_t *qs[OPS_PANEL_TOKENS];
        __m256i scaled[2][OPS_PANEL_TOKENS], s[2][OPS_PANEL_TOKENS];
#pragma GCC unroll 16
        for (int t = 0; t < n_tokens; t++) {
            a[t] = (const act_q8_256 *)token_row(act, act_stride, t) + b;
            qs[t] = a[t]->qs;
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++)
                scaled[h][t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 1
        for (int c = 0; c < 8; c++) {
            if (n_halves == 2)
                prefetch_ahead(p, sizeof *p, 4, c);
            /* Lane r: the 16-bit scales of sub-blocks 2c and 2c + 1; each one
             * in both halves of the lane; -32 times the pair. */
            __m256i scale_even[2], scale_odd[2], offset_pair[2];
#pragma GCC unroll 2
            for (int h = 0; h < n_halves; h++) {
                __m256i pair = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p->scale_pairs[c][8 * (h0 + h)]));
                scale_even[h] = _mm256_blend_epi16(pair, _mm256_slli_epi32(pair, 16), 0xAA);
                scale_odd[h] = _mm256_blend_epi16(_mm256_srli_epi32(pair, 16), pair, 0xAA);
                offset_pair[h] = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(pair, 5));
            }
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++) {
                __m256i sums = broadcast4(a[t]->sums16 + 2 * c);
#pragma GCC unroll 2
                for (int h = 0; h < n_halves; h++)
                    scaled[h][t] = _mm256_add_epi32(scaled[h][t], _mm256_madd_epi16(offset_pair[h], sums));
            }
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i w[2];
#pragma GCC unroll 2
                for (int h = 0; h < n_halves; h++) {
                    __m256i high = _mm256_loadu_si256((const __m256i *)(p->chunk[c].high[g / 4] + 32 * (h0 + h)));
                    w[h] = _mm256_or_si256(nibble_group(p->chunk[c].nibbles, h0 + h, g), high_pair_to_bit4(high, g % 4));
                }
                multiply_group(UNPACK_Q6, w, n_halves, qs, g, g % 2 == 0, n_tokens, s);
                if (g % 2 == 1)
#pragma GCC unroll 16
                    for (int t = 0; t < n_tokens; t++)
#pragma GCC unroll 2
                        for (int h = 0; h < n_halves; h++)
                            scaled[h][t] = _mm256_add_epi32(
                                scaled[h][t], _mm256_madd_epi16(s[h][t], g < 4 ? scale_even[h] : scale_odd[h]));
            }
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++)
                qs[t] += 32;
        }
#pragma GCC unroll 2
        for (int h = 0; h < n_halves; h++) {
            __m256 d = half_f16(p->d, h0 + h);
#pragma GCC unroll 16
            for (int t = 0; t < n_tokens; t++)
                acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled[h][t]), _mm256_mul_ps(d, _mm256_set1_ps(a[t]->d)),
                                            acc[h][t]);
        }
    }
    store_tokens(y, y_stride, acc, h0, n_halves, n_tokens);
}

#define CALL_Q6_K(T, H0, NH) tile_q6_K(cols, panel, tile_act, act_stride, T, H0, NH, tile_y, y_stride)
PANEL_BY_TOKENS(ops_panel_q6_K_avx2, CALL_Q6_K, 8)

/* ---- activations ---- */

/* The AVX-512 quantizers (panel_avx512.c) on 8 lanes: the same operations
 * per value, so the same bytes as the references. */

ALWAYS_INLINE float max_lanes(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

ALWAYS_INLINE int32_t sum_lanes(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

ALWAYS_INLINE __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* 32 int32 values in -128..127 (four vectors, in order) to 32 bytes. */
ALWAYS_INLINE void store_bytes(int8_t *dst, __m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, b);
}

/* As ops/packed.c's reference (ggml's x86 Q8_0): scale amax/127 rounded to
 * f16, values x * (127/amax) rounded half to even, which is what cvtps does
 * in the default rounding mode. Returns the sum of the values. */
ALWAYS_INLINE int32_t quantize_block_32(const float *x, float *d, int8_t qs[32])
{
    __m256 v[4], amax_v = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax_v = _mm256_max_ps(amax_v, abs_ps(v[i]));
    }
    float amax = max_lanes(amax_v);
    float inverse = amax != 0.0f ? 127.0f / amax : 0.0f;
    __m256 scale = _mm256_set1_ps(inverse);
    __m256i q[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], scale));
    store_bytes(qs, q[0], q[1], q[2], q[3]);
    *d = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
    return sum_lanes(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

void ops_packed_quantize_q8_32_avx2(const float *x, act_q8_32 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++)
        out[b].sum = quantize_block_32(x + 32 * b, &out[b].d, out[b].qs);
}

/* Q8_1 as ops/dot.c makes it: s = d * sum, rounded once. */
void ops_packed_quantize_q8_1_avx2(const float *x, block_q8_1 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++) {
        int32_t sum = quantize_block_32(x + 32 * b, &out[b].d, out[b].qs);
        out[b].s = out[b].d * (float)sum;
    }
}

/* Eight vectors of 8 int32 to the 8 sums, in order. */
ALWAYS_INLINE __m256i sum_each(const __m256i s[8])
{
    __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

/* As quantize_q8_K_ref: the scale comes from the first element of largest
 * magnitude, with its sign; values are clamped at 127 on the positive side. */
void ops_packed_quantize_q8_256_avx2(const float *x, act_q8_256 *out, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, x += 256) {
        __m256 amax_v = _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < 32; i++)
            amax_v = _mm256_max_ps(amax_v, abs_ps(_mm256_loadu_ps(x + 8 * i)));
        float amax = max_lanes(amax_v);
        act_q8_256 *a = &out[b];
        if (!(amax > 0.0f)) {
            memset(a, 0, sizeof *a);
            continue;
        }
        float max = 0.0f;
        for (int i = 0; i < 32; i++) {
            int at = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * i)), _mm256_set1_ps(amax),
                                                      _CMP_EQ_OQ));
            if (at) {
                max = x[8 * i + __builtin_ctz((unsigned)at)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 scale = _mm256_set1_ps(iscale);
        const __m256i limit = _mm256_set1_epi32(127);
        __m256i sums[16]; /* sums[i]: the 8 lanes' part of group i's sum */
#pragma GCC unroll 2
        for (int i = 0; i < 8; i++) {
            __m256i q[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * i + 8 * k), scale)),
                                        limit);
            store_bytes(a->qs + 32 * i, q[0], q[1], q[2], q[3]);
            sums[2 * i] = _mm256_add_epi32(q[0], q[1]);
            sums[2 * i + 1] = _mm256_add_epi32(q[2], q[3]);
        }
        __m256i s16_lo = sum_each(sums), s16_hi = sum_each(sums + 8);
        /* packs_epi32 interleaves 128-bit lanes: put them back in order. */
        _mm256_storeu_si256((__m256i *)a->sums16,
                            _mm256_permute4x64_epi64(_mm256_packs_epi32(s16_lo, s16_hi), 0xD8));
        /* hadd pairs: lanes 0,1 = pairs 0,1 of lo; 2,3 = 0,1 of hi; 4,5 = 2,3 of lo; 6,7 = 2,3 of hi. */
        __m256i pairs = _mm256_permute4x64_epi64(_mm256_hadd_epi32(s16_lo, s16_hi), 0xD8);
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
        _mm_storeu_si128((__m128i *)a->sums32, p16);
        a->d = 1.0f / iscale;
    }
}

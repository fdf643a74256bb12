/* Inside ops/: the packed layouts, shared by packed.c and the per-ISA panel
 * kernels, and the choice among the kernels (tests use the levels).
 *
 * Notation: a panel holds rows r = 0..15. A "group" is four consecutive
 * elements; byte 4r + i of a group vector is element i of the group in row r.
 * Weights are stored unsigned (u = value + offset) because vpdpbusd
 * multiplies unsigned by signed bytes; the offset comes back out through the
 * activation block sums, exactly. */
#ifndef HEARTH_OPS_PACKED_KERNELS_H
#define HEARTH_OPS_PACKED_KERNELS_H

#include "base/cpu.h"
#include "ops/packed.h"
#include "quant/blocks.h"

#include <stdint.h>

/* ---- activations ---- */

/* For the 32-element formats with an offset (Q4_0, Q5_0, Q8_0): the Q8_0
 * activation block, its scale widened to f32 (the f16 value, unchanged) and
 * the sum of its values, which takes the offset back out exactly. Q4_1 and
 * Q5_1 take block_q8_1 (quant/blocks.h): the same but for the second field,
 * s = d * sum, since their min term m * s is a float product anyway; read
 * from memory it costs the kernel one broadcast multiply-add per block. */
typedef struct act_q8_32 {
    float d;
    int32_t sum;
    int8_t qs[32];
} act_q8_32;

/* For the K-quants: the Q8_K block with the sums of each 16 and each 32
 * values, the latter for the 32-element sub-blocks of Q4_K. */
typedef struct act_q8_256 {
    float d;
    int16_t sums32[8];
    int16_t sums16[16];
    int8_t qs[256];
} act_q8_256;

/* ---- weight panels, one struct per block (32 or 256 elements) ---- */

/* Q4_0 (offset 8). nibbles[g]: low nibble group g, high nibble group g + 4. */
typedef struct panel_q4_0 {
    uint16_t d[16];
    uint8_t nibbles[4][64];
} panel_q4_0;

/* Q5_0 (offset 16): Q4_0's nibbles, and bit 4r + i of high[g] is the fifth
 * bit of element i of group g in row r. */
typedef struct panel_q5_0 {
    uint16_t d[16];
    uint8_t nibbles[4][64];
    uint64_t high[8];
} panel_q5_0;

/* Q4_1 and Q5_1 (no offset: w = d*u + m): Q4_0's and Q5_0's panels, and
 * the rows' mins, which multiply the activations' block sums. */
typedef struct panel_q4_1 {
    panel_q4_0 q;
    uint16_t m[16];
} panel_q4_1;

typedef struct panel_q5_1 {
    panel_q5_0 q;
    uint16_t m[16];
} panel_q5_1;

/* Q8_0 (offset 128): u = q + 128. */
typedef struct panel_q8_0 {
    uint16_t d[16];
    uint8_t u[8][64];
} panel_q8_0;

/* Q4_K: sub-block j of 32 is nibbles[j] (groups as in Q4_0), with its
 * 6-bit scale scales[j][r] and min; the mins in pairs (min_pairs[p][r] =
 * mins 2p and 2p + 1) so one vpdpwssd applies two. */
typedef struct panel_q4_K {
    uint16_t d[16], dmin[16];
    uint8_t scales[8][16];
    uint8_t min_pairs[4][16][2];
    uint8_t nibbles[8][4][64];
} panel_q4_K;

/* Q5_K: Q4_K with a fifth bit per element, bit 4r + i of high[j][g] for
 * element i of group g of sub-block j in row r (as in Q5_0). Sub-block j's
 * bytes are contiguous, for the prefetcher. */
typedef struct panel_q5_K {
    uint16_t d[16], dmin[16];
    uint8_t scales[8][16];
    uint8_t min_pairs[4][16][2];
    struct {
        uint8_t nibbles[4][64];
        uint64_t high[8];
    } sub[8];
} panel_q5_K;

/* Q6_K (offset 32): elements 32c .. 32c + 31 are chunk c: their low 4 bits
 * in chunk[c].nibbles (as in Q4_0), their top 2 bits in chunk[c].high[h] at
 * bits 2k of group 4h + k. Chunk c holds sub-blocks 2c and 2c + 1 (16 each),
 * whose int8 scales are scale_pairs[c][r]. A chunk's bytes are contiguous so
 * that the kernel reads the panel front to back, which the hardware
 * prefetcher follows (with the high bits in a second region, one-token
 * decode ran at a third of the bandwidth). */
typedef struct panel_q6_K {
    uint16_t d[16];
    int8_t scale_pairs[8][16][2];
    struct {
        uint8_t nibbles[4][64];
        uint8_t high[2][64];
    } chunk[8];
} panel_q6_K;

_Static_assert(sizeof(act_q8_32) == 40, "act_q8_32 layout");
_Static_assert(sizeof(act_q8_256) == 308, "act_q8_256 layout");
_Static_assert(sizeof(panel_q4_0) == 16 * 18, "panel_q4_0 layout");
_Static_assert(sizeof(panel_q5_0) == 16 * 22, "panel_q5_0 layout");
_Static_assert(sizeof(panel_q4_1) == 16 * 20, "panel_q4_1 layout");
_Static_assert(sizeof(panel_q5_1) == 16 * 24, "panel_q5_1 layout");
_Static_assert(sizeof(panel_q8_0) == 16 * 34, "panel_q8_0 layout");
_Static_assert(sizeof(panel_q4_K) == 16 * 148, "panel_q4_K layout");
_Static_assert(sizeof(panel_q5_K) == 16 * 180, "panel_q5_K layout");
_Static_assert(sizeof(panel_q6_K) == 16 * 210, "panel_q6_K layout");

/* ---- kernels ---- */

/* The reference (NULL for types that are not packed). */
ops_panel_fn ops_panel_ref(uint32_t type);
/* The highest variant at or below the level, else the reference. */
ops_panel_fn ops_panel_at_level(uint32_t type, cpu_level level);

#define OPS_PANEL_DECLARE(isa)                                                                                  \
    void ops_panel_q4_0_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q5_0_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q8_0_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q4_1_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q5_1_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q4_K_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q5_K_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);                                                       \
    void ops_panel_q6_K_##isa(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens, \
                              float *y, size_t y_stride);

#if defined(__x86_64__)
OPS_PANEL_DECLARE(avx2)
void ops_packed_quantize_q8_32_avx2(const float *x, act_q8_32 *out, int64_t n_blocks);
void ops_packed_quantize_q8_1_avx2(const float *x, block_q8_1 *out, int64_t n_blocks);
void ops_packed_quantize_q8_256_avx2(const float *x, act_q8_256 *out, int64_t n_blocks);
OPS_PANEL_DECLARE(avx512)
void ops_packed_quantize_q8_32_avx512(const float *x, act_q8_32 *out, int64_t n_blocks);
void ops_packed_quantize_q8_1_avx512(const float *x, block_q8_1 *out, int64_t n_blocks);
void ops_packed_quantize_q8_256_avx512(const float *x, act_q8_256 *out, int64_t n_blocks);
#endif

/* The activation quantizers at a level (the reference below AVX2): the same
 * bytes at every level. */
void ops_packed_quantize_act_at_level(uint32_t type, const float *x, void *dst, int64_t cols, cpu_level level);

#endif

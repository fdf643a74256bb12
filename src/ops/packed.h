/* Weights repacked once at load for the integer matrix kernels.
 *
 * A packed matrix is a run of panels of OPS_PANEL_ROWS rows (the last one
 * padded with zero rows). Inside a panel, each block's weights are
 * interleaved so that one 64-byte vector holds four consecutive elements of
 * each of the 16 rows: the operand order of vpdpbusd, which sums four byte
 * products per 32-bit lane. One kernel call produces 16 rows for up to
 * OPS_PANEL_TOKENS tokens: each weight vector is unpacked once and used for
 * every token of the tile, each activation value (broadcast) for 16 rows.
 *
 * The packed form holds the same bits as the GGUF blocks, rearranged: the
 * panels are as large as the rows they replace, give or take the scales
 * (Q4_K: 148 bytes per super-block instead of 144).
 *
 * Every (row, token) result is the same sequence of operations whatever the
 * tile: exact integer sums inside a block, then fused multiply-adds into one
 * float accumulator, blocks in order. A token's logits therefore do not
 * depend on the batch it came in, and one-token decode agrees bit for bit
 * with prefill. The scalar references in packed.c define that sequence; the
 * SIMD kernels are tested against them (tests/test_packed.c). */
#ifndef HEARTH_OPS_PACKED_H
#define HEARTH_OPS_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { OPS_PANEL_ROWS = 16, OPS_PANEL_TOKENS = 16 };

/* Whether weights of this type are packed on this CPU: there is a panel
 * kernel for it at the chosen level. */
bool ops_packed_supported(uint32_t type);

/* Bytes of one panel of rows with `cols` elements, and of a packed matrix. */
size_t ops_panel_bytes(uint32_t type, int64_t cols);
size_t ops_packed_bytes(uint32_t type, int64_t rows, int64_t cols);

/* Packs panels [first_panel, end_panel) of a matrix of `rows` rows of `cols`
 * elements stored at `data` (row_bytes apart) into `packed`, which holds the
 * whole packed matrix. Disjoint panel ranges may be packed in parallel. */
void ops_pack_panels(uint32_t type, const void *data, size_t row_bytes, int64_t rows, int64_t cols,
                     int64_t first_panel, int64_t end_panel, void *packed);

/* Activations for the panel kernels: int8 blocks with their scale and block
 * sums, the same int8 values ops_quantize_activation makes for the type. */
size_t ops_packed_act_row_bytes(uint32_t type, int64_t cols);
void ops_packed_quantize_act(uint32_t type, const float *x, void *dst, int64_t cols);
/* Types whose packed activations are the same format share one conversion. */
int ops_packed_act_format(uint32_t type);

/* 16 rows of one panel against n_tokens (1..OPS_PANEL_TOKENS) activation
 * rows act, act + act_stride, ...: y[t * y_stride + r] for r < 16. */
typedef void (*ops_panel_fn)(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens,
                             float *y, size_t y_stride);

/* The fastest panel kernel this CPU runs; NULL when the type is not packed. */
ops_panel_fn ops_panel_best(uint32_t type);

#endif

/* Row dot products between a weight row in its stored format and an
 * activation row, the inner loop of every matrix product.
 *
 * As in ggml, activations are quantized once per matrix product into the
 * format the weight type pairs with (ops_activation_type): Q8_0 blocks for the
 * symmetric 32-element formats, Q8_1 (Q8_0's values with their block sums)
 * for Q4_1 and Q5_1, whose min term needs the sums, Q8_K super-blocks for
 * the K-quants, f32 for float weights and for formats without an integer
 * kernel yet (those are dequantized a row at a time). The scalar references are the ground truth;
 * each SIMD variant is tested against them (tests/test_dot.c). */
#ifndef HEARTH_OPS_DOT_H
#define HEARTH_OPS_DOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out = sum over n elements of w[i] * x[i]; n is a multiple of the weight
 * format's block size (and of the activation format's). */
typedef void (*ops_dot_fn)(int64_t n, const void *w, const void *x, float *out);

/* The activation format (a quant_type) weights of this type are multiplied
 * with: QUANT_Q8_0, QUANT_Q8_1, QUANT_Q8_K or QUANT_F32. */
uint32_t ops_activation_type(uint32_t weight_type);

/* Scalar reference kernel, or NULL when the type cannot be multiplied. */
ops_dot_fn ops_dot_ref(uint32_t weight_type);
/* The fastest kernel this CPU runs (falls back to the reference). */
ops_dot_fn ops_dot_best(uint32_t weight_type);

/* Four activation rows at once (x, x + x_stride, ...) against one weight row,
 * for the matrix products of prefill: the weights are unpacked once for the
 * four. out[i] is bit for bit what ops_dot_best gives for row i. */
typedef void (*ops_dot4_fn)(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);
/* NULL when this CPU has no four-row kernel for the type. */
ops_dot4_fn ops_dot4_best(uint32_t weight_type);

/* Two weight rows (w, w + w_stride) against four activation rows: out[4r + t]
 * is bit for bit what ops_dot_best gives for weight row r, activation row t. */
typedef void (*ops_dot4x2_fn)(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                              float out[8]);
ops_dot4x2_fn ops_dot4x2_best(uint32_t weight_type);

/* Converts one activation row of n floats into ops_activation_type(weight_type)
 * at dst (for QUANT_F32, a copy). */
void ops_quantize_activation(uint32_t weight_type, const float *x, void *dst, int64_t n);
/* Bytes one activation row of n elements takes in that format. */
size_t ops_activation_row_bytes(uint32_t weight_type, int64_t n);

#endif

/* Matrix products against weights in their stored (GGUF) format. */
#ifndef HEARTH_OPS_MATMUL_H
#define HEARTH_OPS_MATMUL_H

#include "base/threadpool.h"

#include <stddef.h>
#include <stdint.h>

/* A 2-D weight: `rows` rows of `cols` elements of `type`, row-major, as GGUF
 * stores them (ne[0] = cols). data points into the model's map. When the
 * model repacked it at load (ops/packed.h), packed holds the panels the
 * products use; data still serves row lookups. */
typedef struct ops_matrix {
    const void *data;
    const void *packed;
    uint32_t type;
    int64_t cols;
    int64_t rows;
    size_t row_bytes;
} ops_matrix;

/* Bytes of scratch ops_matmul needs for n_tokens activation rows of length cols
 * (the same whether or not w is packed yet). */
size_t ops_matmul_scratch_bytes(const ops_matrix *w, int64_t n_tokens);

/* y[t][r] = sum_c w[r][c] * x[t][c] for n_tokens rows of x (each w->cols long,
 * row stride x_stride floats) into y (row stride y_stride floats). Activations
 * are converted once into the weight's activation format in `scratch`; every
 * weight row is then read once for all tokens. Split by rows over the pool. */
void ops_matmul(threadpool *pool, const ops_matrix *w, const float *x, int64_t x_stride, int64_t n_tokens,
                float *y, int64_t y_stride, void *scratch);

/* Several products of one input (Q, K and V of a layer, or its gate and up
 * projections): ys[m] = x ws[m]^T. The input is converted once for each run
 * of matrices that share an activation format, not once per matrix. All ws
 * have the same number of columns. */
void ops_matmul_shared_input(threadpool *pool, int n_matrices, const ops_matrix *const *ws, const float *x,
                             int64_t x_stride, int64_t n_tokens, float *const *ys, const int64_t *y_strides,
                             void *scratch);

/* Row `row` of w as f32 (an embedding lookup). */
void ops_matrix_row_f32(const ops_matrix *w, int64_t row, float *out);

#endif

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

/* Many independent products in one step: the experts of a mixture, each
 * with its own weights and its own few tokens. Activations are converted by
 * the caller (ops_matmul_convert_act) so that rows can be gathered in any
 * order. Work is dealt out by estimated cost (weight rows x tokens, plus the
 * reading of the rows), so small and large products share the threads
 * evenly and the pool meets once for all of them. */
typedef struct ops_matmul_task {
    const ops_matrix *w;
    const void *act; /* n_tokens rows converted for w (ops_matmul_convert_act), act_stride bytes apart */
    size_t act_stride; /* at least ops_matmul_act_row_bytes(w) */
    int64_t n_tokens;
    float *y;        /* n_tokens rows of w->rows, y_stride floats apart */
    int64_t y_stride;
} ops_matmul_task;

void ops_matmul_tasks(threadpool *pool, const ops_matmul_task *tasks, int n_tasks);

/* The activation row w's products read (its packed or plain format), and an
 * id that two matrices share exactly when their converted rows are the same. */
size_t ops_matmul_act_row_bytes(const ops_matrix *w);
uint32_t ops_matmul_act_format(const ops_matrix *w);
void ops_matmul_convert_act(const ops_matrix *w, const float *x, void *act);

/* Row `row` of w as f32 (an embedding lookup). */
void ops_matrix_row_f32(const ops_matrix *w, int64_t row, float *out);

#endif

/* Inside ops/: the inner loops of the Gated DeltaNet, one set per
 * instruction level. All vectors are f32 and contiguous. */
#ifndef HEARTH_OPS_DELTANET_KERNELS_H
#define HEARTH_OPS_DELTANET_KERNELS_H

#include "base/cpu.h"

#include <stdint.h>

typedef struct deltanet_kernels {
    /* out[v * out_stride + i] = sum_j m[i * m_stride + j] * x[v * x_stride + j]
     * for rows i < n_rows, vectors v < n_vecs, j < n: a matrix times several
     * vectors, each row read once for all of them. */
    void (*matvec)(float *out, int64_t out_stride, const float *m, int64_t m_stride, int32_t n_rows,
                   const float *x, int64_t x_stride, int32_t n_vecs, int32_t n);
    /* y[j] += sum_s coef[s] * x[s * x_stride + j], s in order, for j < n. */
    void (*axpy_multi)(float *y, const float *x, int64_t x_stride, const float *coef, int32_t count, int32_t n);
    /* y[j] *= c */
    void (*scale)(float *y, float c, int64_t n);
    /* One row of a state matrix through one token of the recurrence:
     *     row *= decay;  delta = (v - row . k) * beta;  row += delta k
     * and returns row . q (the row's output, unscaled). */
    float (*recurrent_row)(float *row, const float *k, const float *q, float v, float beta, float decay,
                           int32_t n);
} deltanet_kernels;

const deltanet_kernels *ops_deltanet_kernels_at_level(cpu_level level);

#if defined(__x86_64__)
extern const deltanet_kernels ops_deltanet_kernels_avx2;
#endif

#endif

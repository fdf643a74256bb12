/* Inside ops/: the instruction-level variants of the element-wise kernels of
 * ops.h, so that tests can run each against the scalar one. */
#ifndef HEARTH_OPS_OPS_KERNELS_H
#define HEARTH_OPS_OPS_KERNELS_H

#include "base/cpu.h"

#include <stdint.h>

/* ops_geglu and ops_store_f16 with the kernels of a given level (the highest
 * at or below it that exists). Every level gives bit-identical results. */
void ops_geglu_at_level(float *gate, const float *up, int64_t n, cpu_level level);
void ops_store_f16_at_level(uint16_t *dst, const float *src, int64_t n, cpu_level level);
/* ops_swiglu at a level: the vector levels use a polynomial exp (within 2
 * ulp of expf), so they agree with the scalar one to a few ulp, and with
 * each other exactly. */
void ops_swiglu_at_level(float *gate, const float *up, int64_t n, cpu_level level);

#if defined(__x86_64__)
/* gelu_of_half: GELU of every f16 bit pattern, rounded to f16 (see ops.c). */
void ops_geglu_avx2(float *gate, const float *up, int64_t n, const float *gelu_of_half);
void ops_geglu_avx512(float *gate, const float *up, int64_t n, const float *gelu_of_half);
void ops_store_f16_avx2(uint16_t *dst, const float *src, int64_t n);
void ops_store_f16_avx512(uint16_t *dst, const float *src, int64_t n);
void ops_swiglu_avx2(float *gate, const float *up, int64_t n);
void ops_swiglu_avx512(float *gate, const float *up, int64_t n);
#endif

#endif

/* Inside ops/: the inner loops of attention, one set per instruction level.
 * K and V rows are f16; the query and the accumulator are f32. */
#ifndef HEARTH_OPS_ATTENTION_KERNELS_H
#define HEARTH_OPS_ATTENTION_KERNELS_H

#include "base/cpu.h"
#include "ops/attention.h"

#include <stdint.h>

typedef struct attention_row_kernels {
    /* sum of q[i] * k[i] */
    float (*dot)(const float *q, const uint16_t *k, int32_t n);
    /* The same for a query already rounded to f16 (small batches), summed in
     * the order of ggml's f16 dot product at this level where we follow it. */
    float (*dot_half)(const float *q, const uint16_t *k, int32_t n);
    /* acc[i] += p * v[i] */
    void (*accumulate)(float *acc, const uint16_t *v, float p, int32_t n);
    /* acc[i] = f16(fma(v[i], p, acc[i])): llama.cpp's f16 accumulator */
    void (*accumulate_half)(float *acc, const uint16_t *v, float p, int32_t n);
    /* acc[i] = f16(acc[i] * c) */
    void (*rescale_half)(float *acc, float c, int32_t n);
} attention_row_kernels;

/* The kernels of a level (the highest at or below it that exists). */
const attention_row_kernels *ops_attention_kernels_at_level(cpu_level level);
/* ops_attention with the kernels of a given level (tests compare them). */
void ops_attention_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level);

#if defined(__x86_64__)
extern const attention_row_kernels ops_attention_kernels_avx2;
extern const attention_row_kernels ops_attention_kernels_avx512;
float ops_attention_dot_avx2(const float *q, const uint16_t *k, int32_t n);
void ops_attention_accumulate_avx2(float *acc, const uint16_t *v, float p, int32_t n);
void ops_attention_accumulate_half_avx2(float *acc, const uint16_t *v, float p, int32_t n);
void ops_attention_rescale_half_avx2(float *acc, float c, int32_t n);
#endif

#endif

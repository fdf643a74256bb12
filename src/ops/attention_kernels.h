/* Inside ops/: the inner loops of attention, one set per instruction level.
 * K and V rows are f16; the query and the accumulator are f32. */
#ifndef HEARTH_OPS_ATTENTION_KERNELS_H
#define HEARTH_OPS_ATTENTION_KERNELS_H

#include "base/cpu.h"
#include "ops/attention.h"

#include <stdbool.h>
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
    /* acc[i] += p * v[i] for a Q8_0 row of n (a multiple of 32) values; the
     * Q8_0 keys' dot product is ops/dot.h's (the query quantized to Q8_0). */
    void (*accumulate_q8)(float *acc, const block_q8_0 *v, float p, int32_t n);
} attention_row_kernels;

/* The tiled path, for batches of 64 tokens or more: a tile of query rows
 * (the heads of one KV group x a run of tokens) meets the keys a block at a
 * time, and each block is widened from f16 to f32 once for all the rows.
 * Keys are stored transposed, keys_t[d * block + j], so that scores come out
 * a vector of keys at a time with no horizontal sums; values stay row-major,
 * values[j * dim + i]. block is 16 or 32 and dims are multiples of 16;
 * entries for keys past n_keys are zero. */
typedef struct attention_tile_kernels {
    void (*widen_keys)(float *keys_t, const uint16_t *k, int64_t k_stride, int32_t n_keys, int32_t block,
                       int32_t dim);
    void (*widen_values)(float *values, const uint16_t *v, int64_t v_stride, int32_t n_keys, int32_t block,
                         int32_t dim);
    /* The same from Q8_0 rows (strides in blocks, dims multiples of 32):
     * the value d * q is exact in f32, so every level gives the same bits. */
    void (*widen_keys_q8)(float *keys_t, const block_q8_0 *k, int64_t k_stride, int32_t n_keys, int32_t block,
                          int32_t dim);
    void (*widen_values_q8)(float *values, const block_q8_0 *v, int64_t v_stride, int32_t n_keys, int32_t block,
                            int32_t dim);
    /* scores[r * block + j] = scale * sum_d q[r][d] * keys_t[d * block + j] */
    void (*scores)(float *scores, const float *const *q, int32_t n_rows, const float *keys_t, int32_t block,
                   int32_t dim, float scale);
    float (*max)(const float *s, int32_t block);
    /* s[j] = exp(s[j] - max) in place (0 where s[j] is -inf); returns their sum */
    float (*exp_sum)(float *s, int32_t block, float max);
    /* acc[r][i] = acc[r][i] * correction[r] + sum_j p[r * block + j] * values[j * dim + i] */
    void (*accumulate)(float *const *acc, const float *correction, const float *p, int32_t n_rows,
                       const float *values, int32_t block, int32_t dim);
} attention_tile_kernels;

/* The kernels of a level (the highest at or below it that exists). */
const attention_row_kernels *ops_attention_kernels_at_level(cpu_level level);
const attention_tile_kernels *ops_attention_tile_kernels_at_level(cpu_level level);
/* ops_attention with the kernels of a given level (tests compare them). */
void ops_attention_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level);
/* Whether ops_attention takes the tiled path for these arguments; and that
 * path at any batch size, so tests can run it on small ones too (it needs
 * head sizes that are multiples of 16, at most 512). */
bool ops_attention_tiled_fits(const ops_attention_args *args);
void ops_attention_tiled_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level);

#if defined(__x86_64__)
extern const attention_row_kernels ops_attention_kernels_avx2;
extern const attention_row_kernels ops_attention_kernels_avx512;
extern const attention_tile_kernels ops_attention_tile_kernels_avx2;
extern const attention_tile_kernels ops_attention_tile_kernels_avx512;
float ops_attention_dot_avx2(const float *q, const uint16_t *k, int32_t n);
void ops_attention_accumulate_avx2(float *acc, const uint16_t *v, float p, int32_t n);
void ops_attention_accumulate_half_avx2(float *acc, const uint16_t *v, float p, int32_t n);
void ops_attention_rescale_half_avx2(float *acc, float c, int32_t n);
/* The Q8_0 kernels exist at AVX2 only: the AVX-512 tables point at them
 * (widening is exact, so a wider variant would give the same bits). */
void ops_attention_accumulate_q8_avx2(float *acc, const block_q8_0 *v, float p, int32_t n);
void ops_attention_widen_keys_q8_avx2(float *keys_t, const block_q8_0 *k, int64_t k_stride, int32_t n_keys,
                                      int32_t block, int32_t dim);
void ops_attention_widen_values_q8_avx2(float *values, const block_q8_0 *v, int64_t v_stride, int32_t n_keys,
                                        int32_t block, int32_t dim);
#endif

#endif

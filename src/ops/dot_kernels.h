/* Inside ops/: the per-ISA dot kernels and the choice among them. Tests use
 * ops_dot_at_level to run every variant the CPU supports. */
#ifndef HEARTH_OPS_DOT_KERNELS_H
#define HEARTH_OPS_DOT_KERNELS_H

#include "base/cpu.h"
#include "ops/dot.h"

/* The kernel for this weight type at a given level: the highest variant at or
 * below it, else the reference. NULL where ops_dot_ref is NULL. The caller
 * makes sure the CPU supports the level. */
ops_dot_fn ops_dot_at_level(uint32_t weight_type, cpu_level level);

#define OPS_DOT_DECLARE(isa)                                                           \
    void ops_dot_q8_0_q8_0_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q4_0_q8_0_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q5_0_q8_0_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_mxfp4_q8_0_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q4_1_q8_1_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q5_1_q8_1_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q4_K_q8_K_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q5_K_q8_K_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_q6_K_q8_K_##isa(int64_t n, const void *w, const void *x, float *out); \
    void ops_dot_f32_f32_##isa(int64_t n, const void *w, const void *x, float *out);   \
    void ops_dot_f16_f32_##isa(int64_t n, const void *w, const void *x, float *out);   \
    void ops_dot_bf16_f32_##isa(int64_t n, const void *w, const void *x, float *out);

#define OPS_DOT4_DECLARE(isa)                                                                                   \
    void ops_dot4_q8_0_q8_0_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q4_0_q8_0_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q5_0_q8_0_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_mxfp4_q8_0_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);    \
    void ops_dot4_q4_1_q8_1_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q5_1_q8_1_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q4_K_q8_K_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q5_K_q8_K_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);     \
    void ops_dot4_q6_K_q8_K_##isa(int64_t n, const void *w, const void *x, size_t x_stride, float out[4]);

#define OPS_DOT4X2_DECLARE(isa)                                                                      \
    void ops_dot4x2_q8_0_q8_0_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                    float out[8]);                                                   \
    void ops_dot4x2_q4_0_q8_0_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                    float out[8]);                                                   \
    void ops_dot4x2_q5_0_q8_0_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                    float out[8]);                                                   \
    void ops_dot4x2_mxfp4_q8_0_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                     float out[8]);                                                  \
    void ops_dot4x2_q4_1_q8_1_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                    float out[8]);                                                   \
    void ops_dot4x2_q5_1_q8_1_##isa(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                    float out[8]);

/* The four-row kernel at a level (NULL where there is none at or below it). */
ops_dot4_fn ops_dot4_at_level(uint32_t weight_type, cpu_level level);
ops_dot4x2_fn ops_dot4x2_at_level(uint32_t weight_type, cpu_level level);

#if defined(__x86_64__)
OPS_DOT_DECLARE(avx2)
OPS_DOT_DECLARE(avx512)
OPS_DOT4_DECLARE(avx2)
OPS_DOT4_DECLARE(avx512)
OPS_DOT4X2_DECLARE(avx2)
OPS_DOT4X2_DECLARE(avx512)
#endif

#endif

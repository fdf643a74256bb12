/* Element-wise and row-wise kernels of the forward pass. Scalar, written so
 * the compiler can vectorise them; the heavy lifting is in matmul and
 * attention. */
#ifndef HEARTH_OPS_OPS_H
#define HEARTH_OPS_OPS_H

#include "base/threadpool.h"

#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * weight (weight may be NULL: no scaling).
 * The sum of squares is taken in double, as ggml does. out may be x. */
void ops_rmsnorm(const float *x, const float *weight, int64_t n, float eps, float *out);

/* Rotary position embedding: which elements of a head rotate together. */
typedef enum ops_rope_layout {
    OPS_ROPE_NORM, /* pairs of consecutive elements (2i, 2i + 1): Llama */
    OPS_ROPE_NEOX, /* element i pairs with i + n_dims/2: GPT-NeoX, Qwen, Gemma */
} ops_rope_layout;

typedef struct ops_rope {
    ops_rope_layout layout;
    int32_t n_dims; /* only the first n_dims of each head rotate */
    float freq_base, freq_scale;
    /* NULL, or n_dims/2 divisors of the pair frequencies (Llama 3's
     * rope_freqs: long wavelengths slowed down for long contexts). */
    const float *freq_factors;
    /* YaRN (ext_factor != 0; 0 leaves all of this unused): pair i's angle
     * mixes the scaled and the unscaled one by a ramp over the pairs that
     * ops_rope_yarn_corr_dims(n_dims, n_ctx_orig, freq_base, beta_fast,
     * beta_slow) gives, and cos and sin are multiplied by
     * attn_factor * (1 + 0.1 ln(1 / freq_scale)). */
    float ext_factor, attn_factor, beta_fast, beta_slow;
    int32_t n_ctx_orig;
} ops_rope;

/* The first and last pair YaRN's ramp runs over, for a model trained on
 * n_ctx_orig positions, as ggml_rope_yarn_corr_dims computes them. */
void ops_rope_yarn_corr_dims(int32_t n_dims, int32_t n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                             float dims[2]);

/* Rotates n_heads vectors of head_dim floats, in place, for position pos.
 * The angle of pair i is freq_scale * (pos * base^(-2i/n_dims) / factor_i),
 * the power taken by repeated multiplication and the operations in ggml's
 * order, so that angles match llama.cpp's to the bit. */
void ops_rope_apply(const ops_rope *rope, float *x, int32_t n_heads, int32_t head_dim, int32_t pos);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
float ops_gelu_tanh(float x);
/* gate[i] = gelu(gate[i]) * up[i]: the GeGLU of Gemma's feed-forward, with
 * GELU looked up at half precision as llama.cpp's CPU backend does. */
void ops_geglu(float *gate, const float *up, int64_t n);

void ops_scale(float *x, int64_t n, float factor);
/* y[i] += x[i] */
void ops_add(float *y, const float *x, int64_t n);

/* The per-token work between two matrix products of a batch (norms, RoPE,
 * residual adds), run over rows [0, n_rows) split into contiguous ranges
 * across the pool: fn(ctx, first, last) once per thread with rows. A single
 * row (decoding) runs on the caller without waking the pool. Each row is
 * computed as a serial loop would compute it, so results do not depend on
 * the thread count. */
typedef void (*ops_rows_fn)(void *ctx, int64_t first, int64_t last);
void ops_parallel_rows(threadpool *pool, int64_t n_rows, ops_rows_fn fn, void *ctx);

/* dst[i] = f16(src[i]), rounded to nearest even as fp32_to_fp16 does (a
 * KV-cache store); the vector versions differ only in making a signalling
 * NaN quiet. */
void ops_store_f16(uint16_t *dst, const float *src, int64_t n);

/* ops_rmsnorm on n_rows rows of n floats (x row r at x + r * x_stride, out
 * row r at out + r * out_stride), bit-identical to a loop of ops_rmsnorm: each
 * row's sum keeps its order, but four rows' sums advance together, so the
 * adds of one wait on the previous add of the same row only (a norm of one
 * row is bound by that chain of dependent double adds). out may be x, with
 * the same stride. */
void ops_rmsnorm_rows(const float *x, int64_t x_stride, const float *weight, int64_t n, float eps, float *out,
                      int64_t out_stride, int64_t n_rows);

/* gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x): the SwiGLU of
 * Llama- and Qwen-style feed-forwards, as ggml's scalar path computes it. */
void ops_swiglu(float *gate, const float *up, int64_t n);

#endif

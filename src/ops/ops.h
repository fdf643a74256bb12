/* Element-wise and row-wise kernels of the forward pass. Scalar, written so
 * the compiler can vectorise them; the heavy lifting is in matmul and
 * attention. */
#ifndef HEARTH_OPS_OPS_H
#define HEARTH_OPS_OPS_H

#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * weight (weight may be NULL: no scaling).
 * The sum of squares is taken in double, as ggml does. out may be x. */
void ops_rmsnorm(const float *x, const float *weight, int64_t n, float eps, float *out);

/* Rotary position embedding, NEOX layout (element i pairs with i + n_dims/2),
 * in place on n_heads vectors of head_dim floats at position pos; only the
 * first n_dims of each head rotate. The angle for pair i is
 * pos * freq_scale * base^(-2i/n_dims), the power taken by repeated
 * multiplication as ggml does. */
void ops_rope_neox(float *x, int32_t n_heads, int32_t head_dim, int32_t n_dims, int32_t pos, float freq_base,
                   float freq_scale);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
float ops_gelu_tanh(float x);
/* gate[i] = gelu(gate[i]) * up[i]: the GeGLU of Gemma's feed-forward, with
 * GELU looked up at half precision as llama.cpp's CPU backend does. */
void ops_geglu(float *gate, const float *up, int64_t n);

void ops_scale(float *x, int64_t n, float factor);
/* y[i] += x[i] */
void ops_add(float *y, const float *x, int64_t n);

/* gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x): the SwiGLU of
 * Llama- and Qwen-style feed-forwards, as ggml's scalar path computes it. */
void ops_swiglu(float *gate, const float *up, int64_t n);

#endif

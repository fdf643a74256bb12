/* Gated DeltaNet: the linear attention of Qwen3.5 / Qwen3.6 (llama.cpp's
 * qwen35, qwen35moe), with its short causal convolution.
 *
 * Each value head h carries a state matrix S (head_dim x head_dim, row i for
 * value component i, column j for key component j). Per token, with q and k
 * already L2-normalised and g <= 0 the log of the head's decay:
 *
 *     S  = exp(g) S
 *     S += beta (v - S k) k^T          -- the delta rule
 *     o  = S q / sqrt(head_dim)
 *
 * Value head h reads key/query head h % n_k_heads (ggml's broadcast).
 *
 * Two ways to run a batch, which agree to float rounding (tests/test_deltanet.c):
 * - recurrent: the three lines above, token after token (decode);
 * - chunked: tokens in chunks of OPS_DELTANET_CHUNK; within a chunk the
 *   recurrence unrolls into products of the chunk's keys, queries and values
 *   with each other and with the state at the chunk's start (the WY form of
 *   the delta rule: one unit-lower-triangular solve per chunk), and only the
 *   state passes from chunk to chunk (prefill). */
#ifndef HEARTH_OPS_DELTANET_H
#define HEARTH_OPS_DELTANET_H

#include "base/cpu.h"
#include "base/threadpool.h"

#include <stddef.h>
#include <stdint.h>

enum { OPS_DELTANET_CHUNK = 64 };

typedef struct ops_deltanet_args {
    int32_t n_tokens, n_k_heads, n_v_heads, head_dim;
    /* Token t's head h: q + t * qkv_stride + h * head_dim (q and k have
     * n_k_heads heads, v n_v_heads). */
    const float *q, *k, *v;
    int64_t qkv_stride;
    /* Token t, value head h: g[t * gb_stride + h], beta[t * gb_stride + h]. */
    const float *g, *beta;
    int64_t gb_stride;
    /* n_v_heads matrices of head_dim x head_dim, row-major; read and updated. */
    float *state;
    /* Token t, value head h: out + t * out_stride + h * head_dim. */
    float *out;
    int64_t out_stride;
} ops_deltanet_args;

void ops_deltanet_recurrent(threadpool *pool, const ops_deltanet_args *args);
/* scratch: ops_deltanet_chunked_scratch_bytes(n_v_heads, head_dim) bytes. */
void ops_deltanet_chunked(threadpool *pool, const ops_deltanet_args *args, void *scratch);
size_t ops_deltanet_chunked_scratch_bytes(int32_t n_v_heads, int32_t head_dim);

/* The same at a given kernel level (tests compare levels). */
void ops_deltanet_recurrent_at_level(threadpool *pool, const ops_deltanet_args *args, cpu_level level);
void ops_deltanet_chunked_at_level(threadpool *pool, const ops_deltanet_args *args, void *scratch,
                                   cpu_level level);

/* The causal convolution in front of the delta rule, with SiLU:
 *     out[t][c] = silu(sum_j in[t + j][c] * weights[c * kernel + j])
 * where in is the kernel - 1 rows of conv_state (oldest first) followed by
 * the n_tokens rows of x (channels floats each, x_stride apart). conv_state
 * ((kernel - 1) x channels) becomes the last kernel - 1 rows of in. The sum
 * runs in j's order in float, as ggml_ssm_conv does. */
void ops_deltanet_conv(threadpool *pool, const float *x, int64_t x_stride, int32_t n_tokens, int64_t channels,
                       int32_t kernel, const float *weights, float *conv_state, float *out, int64_t out_stride);

#endif

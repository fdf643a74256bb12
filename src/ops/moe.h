/* The mixture-of-experts feed-forward that every MoE architecture calls
 * (llama.cpp's build_moe_ffn):
 *
 *   probs    = gating(router logits)                 softmax, sigmoid, or none
 *   chosen   = the n_used experts of largest probs    per token, in descending order
 *   weights  = probs[chosen]   (softmax over the chosen ones for SOFTMAX_WEIGHT)
 *              / their sum if normalize, * scale if scale is not 0 or 1
 *   y[t]     = sum over k of weights[k] * expert_{chosen[k]}(x[t])
 *   expert_e(x) = ((act(x Wgate_e^T * sg_e + bg_e, x Wup_e^T * su_e + bu_e)) Wdown_e^T) * sd_e + bd_e
 *
 * The router's logits are an input: architectures compute them differently
 * (a product with ffn_gate_inp, plus a bias, or Gemma 4's scaled norm first).
 *
 * Work is grouped by expert, never by token: the batch's (token, expert)
 * pairs are sorted by expert, each chosen expert's rows are multiplied once
 * for all its tokens with the same kernels as a dense matrix (panels when the
 * expert is repacked), and experts no token chose are not read at all. All
 * chosen experts' products of one step are dealt out to the pool together,
 * balanced by their token counts, so a decode step of 8 small experts keeps
 * every thread busy with one meeting instead of one per expert. */
#ifndef HEARTH_OPS_MOE_H
#define HEARTH_OPS_MOE_H

#include "ops/matmul.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most experts a mixture may have (routing keeps one score per expert on
 * the stack); architectures refuse larger files at load. */
enum { OPS_MOE_MAX_EXPERTS = 1024 };

typedef enum ops_moe_gating {
    OPS_MOE_SOFTMAX,        /* probs = softmax over all experts' logits (Qwen 3 MoE, Gemma 4) */
    OPS_MOE_SIGMOID,        /* probs = sigmoid(logit) */
    OPS_MOE_SOFTMAX_WEIGHT, /* top-k of the raw logits, weights = softmax over those k (gpt-oss) */
} ops_moe_gating;

typedef enum ops_moe_activation {
    OPS_MOE_SWIGLU,     /* silu(gate) * up */
    OPS_MOE_GEGLU,      /* gelu(gate) * up, GELU as ops_geglu computes it */
    OPS_MOE_SWIGLU_OAI, /* gpt-oss: g = min(gate, 7), u = clamp(up, -7, 7), g * sigmoid(1.702 g) * (u + 1) */
} ops_moe_activation;

typedef struct ops_moe {
    int32_t n_experts, n_used;
    int64_t n_embd, n_ff; /* n_ff: one expert's hidden size */
    ops_moe_gating gating;
    bool normalize; /* weights /= max(sum of the chosen weights, 6.1e-5) */
    float scale;    /* weights *= scale unless it is 0 or 1 */
    ops_moe_activation activation;
    /* n_experts matrices each, expert e's slice of the 3-D GGUF tensor:
     * gate and up n_ff rows of n_embd, down n_embd rows of n_ff. Either gate
     * and up, or gate_up (2 n_ff rows: the gate's rows, then the up's) with
     * gate and up NULL. */
    const ops_matrix *gate, *up, *gate_up, *down;
    /* Optional (NULL): biases [n_experts][n_ff] (gate, up) and [n_experts][n_embd]
     * (down); per-expert output scales [n_experts]. */
    const float *gate_bias, *up_bias, *down_bias;
    const float *gate_scale, *up_scale, *down_scale;
} ops_moe;

/* Bytes of scratch ops_moe_forward needs for batches of up to n_tokens. */
size_t ops_moe_scratch_bytes(const ops_moe *moe, int64_t n_tokens);

/* y[t] = the mixture's output for x[t], t < n_tokens. logits: n_tokens rows of
 * n_experts (stride logits_stride), already biased where the architecture
 * has a router bias. x rows are n_embd floats, x_stride apart; y rows y_stride
 * apart (y must not overlap x). scratch: ops_moe_scratch_bytes(moe, >= n_tokens). */
void ops_moe_forward(threadpool *pool, const ops_moe *moe, const float *logits, int64_t logits_stride,
                     const float *x, int64_t x_stride, int64_t n_tokens, float *y, int64_t y_stride,
                     void *scratch);

/* The routing alone, for tests and for architectures that need the choice:
 * ids[t * n_used + k] and weights[t * n_used + k], k in descending order of
 * the gating's scores. */
void ops_moe_route(const ops_moe *moe, const float *logits, int64_t logits_stride, int64_t n_tokens,
                   int32_t *ids, float *weights);

/* Expert e's slices of a 3-D expert tensor [n_experts][rows][cols] whose first
 * expert is `whole` (the tensor bound as one matrix of n_experts * rows rows):
 * experts[e] covers rows e*rows .. (e+1)*rows - 1. */
void ops_moe_split_experts(const ops_matrix *whole, int32_t n_experts, ops_matrix *experts);

#endif

/* The session state of the attention decoders (Gemma 3 and the dense
 * families): an f16 KV cache of n_ctx rows per layer, and the buffers one
 * batch's activations pass through, carved from one block. */
#ifndef HEARTH_MODEL_DECODER_STATE_H
#define HEARTH_MODEL_DECODER_STATE_H

#include "model/arch.h"

typedef struct decoder_dims {
    uint32_t n_layers;
    int64_t n_embd, n_ff;
    int64_t q_dim, k_dim, v_dim; /* per token: query heads x key size, KV heads x key / value size */
    int64_t attn_dim;            /* the attention's output, query heads x value size */
    int32_t n_experts;           /* > 0: the feed-forward is a mixture of experts */
    size_t moe_scratch_bytes;    /* ops_moe_scratch_bytes for n_batch tokens */
} decoder_dims;

typedef struct decoder_state {
    int32_t n_ctx, n_batch;
    uint16_t *k_cache, *v_cache; /* per layer n_ctx rows of k_dim / v_dim, f16 */
    size_t k_layer, v_layer;     /* elements per layer */
    /* n_batch rows each: x, xn, proj [n_embd]; q [q_dim]; k [k_dim]; v [v_dim];
     * attn [attn_dim]; gate, up [n_ff] */
    float *x, *xn, *proj, *q, *k, *v, *attn, *gate, *up;
    int32_t *positions;
    /* Mixtures of experts only (else NULL): the router's logits, n_batch rows
     * of n_experts, and the MoE layer's scratch. */
    float *router_logits;
    void *moe_scratch;
    void *act_scratch; /* the matrix products' quantized activations */
} decoder_state;

/* The state for n_ctx positions and batches of n_batch tokens; the activation
 * scratch fits every matrix the architecture's for_each_matrix visits in
 * weights (which it only reads). *bytes is what it allocated. */
hearth_status decoder_state_create(const decoder_dims *dims,
                                   void (*for_each_matrix)(void *weights, void (*visit)(ops_matrix *m, void *ctx),
                                                           void *ctx),
                                   const void *weights,
                                   int32_t n_ctx, int32_t n_batch, decoder_state **out, model_memory *memory,
                                   hearth_error *err);
void decoder_state_free(void *state);

/* Bytes of the matrix products' activation scratch for batches of n_batch:
 * the largest any matrix for_each_matrix visits needs, packed or not. For
 * architectures with a state of their own. */
size_t decoder_act_scratch_bytes(void (*for_each_matrix)(void *weights, void (*visit)(ops_matrix *m, void *ctx),
                                                         void *ctx),
                                 const void *weights, int32_t n_batch);

#endif

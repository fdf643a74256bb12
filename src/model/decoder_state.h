/* The session state of the attention decoders (Gemma 3 and the dense
 * families): an f16 or Q8_0 KV cache of n_seq x n_ctx rows per layer (one cache for
 * all sequences: sequence s's positions from row s x n_ctx), and the buffers
 * one batch's activations pass through, carved from one block.
 *
 * A pass is planned before it runs (decoder_state_plan_*): each batch token's
 * position and cache row, the runs of tokens that attend together (one
 * sequence's consecutive tokens), and which tokens take logits. Everything
 * but attention runs over all the batch's tokens at once, whichever
 * sequences they belong to. */
#ifndef HEARTH_MODEL_DECODER_STATE_H
#define HEARTH_MODEL_DECODER_STATE_H

#include "model/arch.h"
#include "ops/attention.h"

typedef struct decoder_dims {
    uint32_t n_layers;
    int64_t n_embd, n_ff;
    int64_t q_dim, k_dim, v_dim; /* per token: query heads x key size, KV heads x key / value size */
    int64_t attn_dim;            /* the attention's output, query heads x value size */
    int64_t head_dim_k, head_dim_v; /* key / value size of one head: Q8_0 needs multiples of 32 */
    int32_t n_experts;           /* > 0: the feed-forward is a mixture of experts */
    size_t moe_scratch_bytes;    /* ops_moe_scratch_bytes for n_batch tokens */
} decoder_dims;

/* One sequence's tokens in a pass: batch entries [first, last). */
typedef struct decoder_run {
    int32_t seq, first, last;
} decoder_run;

typedef struct decoder_state {
    int32_t n_seq, n_ctx, n_batch;
    /* Per layer n_seq x n_ctx rows of k_dim / v_dim values, f16 or Q8_0
     * (decoder_state_store_kv writes them, decoder_state_kv_args reads). */
    ops_kv_type kv_type;
    uint32_t n_layers;
    void *k_cache, *v_cache;
    int64_t k_dim, v_dim;
    size_t k_row_bytes, v_row_bytes, k_layer_bytes, v_layer_bytes;
    /* n_batch rows each: x, xn, proj [n_embd]; q [q_dim]; k [k_dim]; v [v_dim];
     * attn [attn_dim]; gate, up [n_ff] */
    float *x, *xn, *proj, *q, *k, *v, *attn, *gate, *up;
    /* The planned pass, n_batch entries each: every token's position and its
     * row in a layer's cache (seq x n_ctx + position); the runs; and the
     * batch entries that take logits, in batch order. */
    int32_t *positions, *cache_rows, *outputs;
    int32_t n_runs, n_outputs;
    decoder_run runs[MODEL_MAX_SEQUENCES];
    /* Mixtures of experts only (else NULL): the router's logits, n_batch rows
     * of n_experts, and the MoE layer's scratch. */
    float *router_logits;
    void *moe_scratch;
    void *act_scratch; /* the matrix products' quantized activations */
} decoder_state;

/* The model API's KV cache type as the attention kernels name it. */
static inline ops_kv_type decoder_kv_type(hearth_kv_type type)
{
    return type == HEARTH_KV_Q8_0 ? OPS_KV_Q8_0 : OPS_KV_F16;
}

typedef void (*decoder_matrix_walk)(void *weights, void (*visit)(ops_matrix *m, void *ctx), void *ctx);

/* The state for n_seq sequences of n_ctx positions and batches of n_batch
 * tokens in all, with a KV cache of kv_type; the activation scratch fits
 * every matrix the architecture's for_each_matrix visits in weights (which
 * it only reads). *memory is what it allocated. Q8_0 with head sizes that
 * are not multiples of 32 is an error that says so. */
hearth_status decoder_state_create_multi(const decoder_dims *dims, decoder_matrix_walk for_each_matrix,
                                         const void *weights, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                         ops_kv_type kv_type, decoder_state **out, model_memory *memory,
                                         hearth_error *err);
/* The same for one sequence, with an f16 cache. */
hearth_status decoder_state_create(const decoder_dims *dims, decoder_matrix_walk for_each_matrix,
                                   const void *weights, int32_t n_ctx, int32_t n_batch, decoder_state **out,
                                   model_memory *memory, hearth_error *err);
void decoder_state_free(void *state);
/* model_arch.state_parts: every layer's keys, then its values. */
int32_t decoder_state_parts(const void *weights, void *state, model_state_part *parts, int32_t max);

/* Plans model_forward's pass: n tokens of sequence 0 at pos0.., logits from
 * first_output on. */
void decoder_state_plan_run(decoder_state *s, int32_t n, int32_t pos0, int32_t first_output);
/* Plans a pass over a batch model_forward_batch has checked. */
void decoder_state_plan_batch(decoder_state *s, const model_batch *batch);

/* Stores batch token t's key and value rows (k_dim and v_dim floats) in
 * layer il's cache, at its planned row, in the cache's type. Different
 * tokens may be stored from different threads. */
void decoder_state_store_kv(const decoder_state *s, uint32_t il, int32_t t, const float *k, const float *v);
/* Sets args' cache fields (k and v or k_q8 and v_q8, kv_type, strides) to
 * layer il's cache from row 0. */
void decoder_state_kv_args(const decoder_state *s, uint32_t il, ops_attention_args *args);

/* Attention over the planned pass. args describes the whole batch: q, out
 * and positions from its first token, the cache fields from
 * decoder_state_kv_args.
 * Each run attends on its own, to its own sequence's rows, all in one
 * ops_attention_many. */
void decoder_attention(threadpool *pool, const decoder_state *s, const ops_attention_args *args);

/* Rows [first, last) of the gathered output norm: xn row i = rmsnorm(x row
 * outputs[i]) with weight, so the output matrix runs over n_outputs
 * consecutive rows. An ops_parallel_rows step's body. */
void decoder_output_norm_rows(decoder_state *s, int64_t n_embd, const float *weight, float eps, int64_t first,
                              int64_t last);

/* Bytes of the matrix products' activation scratch for batches of n_batch:
 * the largest any matrix for_each_matrix visits needs, packed or not. For
 * architectures with a state of their own. */
size_t decoder_act_scratch_bytes(decoder_matrix_walk for_each_matrix, const void *weights, int32_t n_batch);

#endif

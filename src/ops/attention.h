/* Causal self-attention of a batch of query tokens over a KV cache, with
 * grouped-query heads and an optional sliding window. */
#ifndef HEARTH_OPS_ATTENTION_H
#define HEARTH_OPS_ATTENTION_H

#include "base/threadpool.h"
#include "quant/blocks.h"

#include <stdint.h>

/* How the K and V cache rows are stored. Q8_0 rows are blocks of 32 int8
 * with an f16 scale (34 bytes per 32 values, 0.53 of f16's bytes); it needs
 * head sizes and strides that are multiples of 32, so that every head starts
 * on a block. */
typedef enum ops_kv_type {
    OPS_KV_F16 = 0,
    OPS_KV_Q8_0,
} ops_kv_type;

typedef struct ops_attention_args {
    const float *q;          /* n_tokens rows of n_heads * head_dim_k, stride q_stride floats */
    int64_t q_stride;
    const uint16_t *k, *v;   /* f16 cache rows by position: n_kv_heads * head_dim_{k,v}, strides in elements */
    int64_t k_stride, v_stride;
    /* OPS_KV_Q8_0: the rows are k_q8 and v_q8 instead (k and v unused),
     * with strides still in elements (multiples of 32). */
    ops_kv_type kv_type;
    const block_q8_0 *k_q8, *v_q8;
    const int32_t *positions; /* of each query token; it sees cache rows 0..position */
    int32_t n_tokens, n_heads, n_kv_heads, head_dim_k, head_dim_v;
    int32_t window;          /* > 0: a query at p sees only keys j with p - j < window */
    float scale;             /* multiplies q before q·k */
    /* NULL, or one learned logit per query head (gpt-oss's attention sinks):
     * a key-less extra term exp(sinks[h]) in the softmax's denominator, which
     * lets a head attend to nothing. */
    const float *sinks;
    float *out;              /* n_tokens rows of n_heads * head_dim_v, stride out_stride */
    int64_t out_stride;
} ops_attention_args;

/* Heads share K/V in groups: head h reads KV head h / (n_heads / n_kv_heads),
 * in place, never copied. The softmax is computed online (one pass, running
 * maximum), so no score matrix is materialised. Precision follows
 * llama.cpp's CPU attention, which hearth is compared with: batches of 64
 * tokens or more in f32; smaller ones (decode) with the query rounded to f16
 * and the value accumulator kept in f16. The f32 batches run as flash
 * attention: tiles of query rows (a KV head's query heads x a run of tokens)
 * over blocks of keys, each f16 key and value widened once per tile rather
 * than once per query; tiles are shared out over the pool. out must not
 * overlap q: its rows are the tiles' accumulators.
 *
 * Q8_0 keys and values follow llama.cpp's CPU attention on a Q8_0 cache
 * where it runs a row at a time: the query is quantized to Q8_0 and meets
 * each key in an integer dot product (scaled after), and the values are
 * accumulated in f32. The tiled path dequantizes each block of keys and
 * values into its f32 tile (exactly: an int8 times an f16 scale fits an
 * f32) and goes on as for f16. */
void ops_attention(threadpool *pool, const ops_attention_args *args);

/* ops_attention on n_args independent problems (the sequences of one batch,
 * each over its own cache), each with the result it gets alone. Those on
 * the row-at-a-time path (under 64 tokens: decode steps) share one meeting
 * of the pool, their (token, head) items dealt out together: a step of
 * many sequences, one token each, would otherwise meet the pool once per
 * sequence for a few items each. */
void ops_attention_many(threadpool *pool, const ops_attention_args *args, int n_args);

#endif

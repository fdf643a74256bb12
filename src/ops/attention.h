/* Causal self-attention of a batch of query tokens over a KV cache, with
 * grouped-query heads and an optional sliding window. */
#ifndef HEARTH_OPS_ATTENTION_H
#define HEARTH_OPS_ATTENTION_H

#include "base/threadpool.h"

#include <stdint.h>

typedef struct ops_attention_args {
    const float *q;          /* n_tokens rows of n_heads * head_dim_k, stride q_stride floats */
    int64_t q_stride;
    const uint16_t *k, *v;   /* f16 cache rows by position: n_kv_heads * head_dim_{k,v}, strides in elements */
    int64_t k_stride, v_stride;
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
 * overlap q: its rows are the tiles' accumulators. */
void ops_attention(threadpool *pool, const ops_attention_args *args);

/* ops_attention on n_args independent problems (the sequences of one batch,
 * each over its own cache), each with the result it gets alone. Those on
 * the row-at-a-time path (under 64 tokens: decode steps) share one meeting
 * of the pool, their (token, head) items dealt out together: a step of
 * many sequences, one token each, would otherwise meet the pool once per
 * sequence for a few items each. */
void ops_attention_many(threadpool *pool, const ops_attention_args *args, int n_args);

#endif

/* The prefix cache: the past of token sequences already evaluated, kept by
 * content, so that a prompt starting with the same tokens restores that past
 * instead of evaluating it again (agents and chat clients resend the same
 * system prompt and history on every request).
 *
 * The past is cut into blocks of block_tokens positions. A block is
 * addressed by a hash chained over every token up to its end, seeded with
 * the model file's identity and the state's layout (model_past_layout), so
 * equal addresses mean the same prefix of the same model in the same cache
 * format. A block holds its positions' KV cache rows; for a model with
 * recurrent layers, whose state cannot be cut at an earlier position, some
 * blocks also hold the recurrent state at their end, and a restored prefix
 * ends at such a block.
 *
 * Two tiers: RAM (bounded, least recently used first out) and a directory
 * on disk (bounded, least recently used by file time first out), so that the
 * cache outlives the process. Files are written whole under a temporary
 * name and renamed; a file that is damaged, truncated, of another format or
 * of another model is ignored with a warning, never trusted: each carries a
 * checksum, its address, its tokens and the model's identity.
 *
 * Sliding-window layers keep every position in hearth's states and
 * layers sharing another's KV cache have no part of their own, so both
 * need nothing special here.
 *
 * One thread uses a cache at a time; several processes may share a
 * directory. */
#ifndef HEARTH_RUNTIME_PREFIX_CACHE_H
#define HEARTH_RUNTIME_PREFIX_CACHE_H

#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct prefix_cache prefix_cache;

/* Small enough that a prompt's last partial block, evaluated again, is a
 * small part of it (a 2,000-token prefix: 1,984 restored); large enough
 * that a block's file is about a megabyte on the small models. */
#define PREFIX_CACHE_BLOCK_TOKENS 64
/* A recurrent state is kept at most this often (it is the size of many
 * blocks: ~60 MiB on Qwen3.6-35B-A3B), and at a prompt's end. */
#define PREFIX_CACHE_SNAPSHOT_TOKENS 1024

typedef struct prefix_cache_params {
    int32_t block_tokens;    /* 0: PREFIX_CACHE_BLOCK_TOKENS */
    int32_t snapshot_tokens; /* 0: PREFIX_CACHE_SNAPSHOT_TOKENS; rounded up to whole blocks */
    size_t ram_bytes;     /* the RAM tier's bound; 0: no RAM tier */
    const char *dir;      /* the disk tier's directory (made if missing); NULL: no disk tier */
    size_t disk_bytes;    /* the disk tier's bound; 0: no disk tier */
} prefix_cache_params;

/* A cache for states shaped as `state` (its layout is fixed from it). Fails
 * only for bad parameters or memory; a directory that cannot be made or read
 * is a warning and leaves the cache without its disk tier. */
hearth_status prefix_cache_create(const model *m, const model_state *state, const prefix_cache_params *params,
                                  prefix_cache **out, hearth_error *err);
void prefix_cache_free(prefix_cache *c);

int32_t prefix_cache_block_tokens(const prefix_cache *c);

/* For a model with recurrent layers, whose state is kept only where a batch
 * ends: where a batch of positions [from, end) should end instead, so that
 * the recurrent state is kept every snapshot_tokens and at the last block
 * boundary before `end` (a resent prompt, a chat's next turn, find one
 * there). `end` when no such point lies inside, and for models without
 * recurrent layers. */
int32_t prefix_cache_batch_end(const prefix_cache *c, int32_t from, int32_t end);

/* Sequence seq holds tokens[0..held); restores into it the longest cached
 * prefix of tokens[0..n) beyond that, leaving at least one token of n to be
 * evaluated (for its logits). Returns how many positions the sequence holds
 * now (held when nothing longer is cached). Rows past the returned count may
 * have been overwritten: they held nothing. */
int32_t prefix_cache_restore(prefix_cache *c, model_state *state, int32_t seq, const int32_t *tokens, int32_t n,
                             int32_t held);

/* Sequence seq has just evaluated tokens[from..to) (it holds tokens[0..to)):
 * keeps every block that ends in (from, to]. A block ending exactly at `to`
 * also keeps the recurrent state when the model has one: callers end their
 * batches at prefix_cache_batch_end's points for that. */
void prefix_cache_store(prefix_cache *c, const model_state *state, int32_t seq, const int32_t *tokens, int32_t from,
                        int32_t to);

typedef struct prefix_cache_stats {
    uint64_t ram_hits, disk_hits, misses; /* blocks looked up */
    uint64_t stored, written, ignored;    /* blocks kept, files written, files refused */
    size_t ram_used, disk_used;
} prefix_cache_stats;
prefix_cache_stats prefix_cache_get_stats(const prefix_cache *c);

#endif

/* A loaded model: its GGUF map, vocabulary, architecture and weights, and the
 * per-sequence state its forward pass needs (the KV cache and scratch).
 *
 * Architectures register in model.c; each lives in one file (gemma3.c, ...)
 * that reads its hyper-parameters, binds and checks its tensors, and runs its
 * forward pass over a batch of tokens. */
#ifndef HEARTH_MODEL_MODEL_H
#define HEARTH_MODEL_MODEL_H

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "hearth.h"
#include "text/vocab.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct model model;
typedef struct model_state model_state;

hearth_status model_load(const char *path, model **out, hearth_error *err);
/* model_load, with the repacking for the matrix kernels left out when
 * !repack: for describing a model (sizes, memory) without computing. */
hearth_status model_open(const char *path, bool repack, model **out, hearth_error *err);
void model_free(model *m);

const vocab *model_vocab(const model *m);
const gguf_file *model_gguf(const model *m);
int32_t model_n_vocab(const model *m);
int32_t model_n_ctx_train(const model *m);

/* Weights repacked at load for the matrix kernels (ops/packed.h): how many
 * bytes the packed copies hold and how long packing took. The map's pages
 * of the packed tensors are released, so the packed bytes replace them. */
typedef struct model_repack_stats {
    int n_matrices;
    size_t bytes;
    double seconds;
} model_repack_stats;
model_repack_stats model_repack(const model *m);

/* How the weights will sit in memory once model_load has packed them,
 * worked out (nothing is packed) from a model opened with or without
 * repacking: what `hearth fit` predicts from. Matrices several names share
 * (a tied output) count once. */
typedef struct model_weight_plan {
    size_t packed;         /* the packed copies, as model_repack's bytes */
    size_t packed_source;  /* map bytes of the packed matrices (released once packed) */
    size_t unpacked;       /* map bytes of the matrices multiplied as stored */
    size_t expert_packed;  /* of packed, the experts' (parts of *_exps tensors) */
    size_t expert_unpacked; /* of unpacked, likewise */
    size_t other;          /* map bytes of every other tensor but the gather tables */
    size_t gather;         /* map bytes of embedding tables only read a row per token */
    size_t gather_row;     /* bytes of one row of each gather table, summed */
    /* The most the weights hold while loading: matrices are packed one at a
     * time, each one's map pages read in full and released when it is
     * packed, so the high point is some matrix's pages beside the copies
     * packed so far (its own included). */
    size_t packing_peak;
} model_weight_plan;
hearth_status model_plan_weights(const model *m, model_weight_plan *out, hearth_error *err);

/* State for one sequence of up to n_ctx tokens, fed at most n_batch at a
 * time. All memory the forward pass uses is allocated here. */
hearth_status model_state_create(const model *m, int32_t n_ctx, int32_t n_batch, model_state **out,
                                 hearth_error *err);
void model_state_free(model_state *s);
/* Bytes the state holds (cache + scratch), for reporting. */
size_t model_state_bytes(const model_state *s);
/* The same by part. */
typedef struct model_memory {
    size_t kv_cache;  /* attention layers' keys and values: grows with the context */
    size_t recurrent; /* recurrent layers' states: the same at any context */
    size_t scratch;   /* one batch's activations and the kernels' work space */
} model_memory;
model_memory model_state_memory(const model_state *s);
/* What a state of model_state_create_multi's arguments would hold, from
 * one created and freed without touching its pages. */
hearth_status model_memory_for(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch, hearth_kv_type kv_type,
                               model_memory *out, hearth_error *err);

/* Whether the model's state sums up the past (recurrent layers): then a
 * sequence can go on only where its last batch ended, or start over at 0. */
bool model_is_recurrent(const model *m);
/* The position nearest below or at pos from which s can go on: pos itself,
 * except for a recurrent model, whose state stands at one position only
 * (else 0: evaluate from the start). */
int32_t model_state_resume_point(const model_state *s, int32_t pos);

#define MODEL_MAX_SEQUENCES 64

/* The KV cache type (hearth.h's hearth_kv_type): Gemma 3 and the dense
 * families (llama, qwen2, qwen3, qwen3moe) take Q8_0, the others keep f16.
 * model_kv_type_name gives "f16", "q8_0"; and back (false for a name that is not one). */
const char *model_kv_type_name(hearth_kv_type type);
bool model_kv_type_parse(const char *name, hearth_kv_type *out);

/* State for n_seq sequences of up to n_ctx tokens each, all fed through one
 * forward pass by model_forward_batch (at most n_batch tokens in all): the
 * server's parallel slots. Sequence 0 is also what model_forward runs. */
hearth_status model_state_create_multi(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                       model_state **out, hearth_error *err);
/* model_state_create_multi with a KV cache of kv_type (the others: f16). An
 * architecture or head size that cannot take it is an error that says so. */
hearth_status model_state_create_kv(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                    hearth_kv_type kv_type, model_state **out, hearth_error *err);
int32_t model_state_n_seq(const model_state *s);
/* model_state_resume_point for sequence seq. */
int32_t model_state_seq_resume_point(const model_state *s, int32_t seq, int32_t pos);

/* ---- a sequence's past, saved and restored (runtime's prefix cache) ---- */

/* What a state keeps of a sequence's past: bytes per position (every KV
 * cache layer's row) and per sequence (recurrent layers' state, 0 when
 * there are none), and a hash of the parts' shapes: a span saved from a
 * state of another layout (another model, KV type) does not fit. */
typedef struct model_past_layout {
    size_t position_bytes, recurrent_bytes;
    uint64_t id;
} model_past_layout;
model_past_layout model_state_past_layout(const model_state *s);
/* The KV cache rows of positions [pos, pos + n) of sequence seq, to or from
 * n x position_bytes at buf (each part's n rows in turn). Loading makes the
 * positions count as evaluated for a model without recurrent layers; with
 * them, model_state_load_recurrent sets where the sequence stands. */
void model_state_save_span(const model_state *s, int32_t seq, int32_t pos, int32_t n, void *buf);
void model_state_load_span(model_state *s, int32_t seq, int32_t pos, int32_t n, const void *buf);
/* Sequence seq's recurrent state (recurrent_bytes) as it stands; loading
 * one taken at position pos makes the sequence go on from pos. */
void model_state_save_recurrent(const model_state *s, int32_t seq, void *buf);
void model_state_load_recurrent(model_state *s, int32_t seq, int32_t pos, const void *buf);
/* The model file's identity: a hash of its size, everything before the
 * tensor data (header, metadata, tensor table) and a sample of every
 * tensor's data. */
uint64_t model_identity(const model *m);

/* One forward pass over tokens of several sequences. Each sequence present
 * holds one run of consecutive batch entries at consecutive positions (the
 * rules of model_forward's pos0 apply to its first); the entries whose
 * output flag is set must end their run (a suffix of it), and their logits
 * are written to consecutive rows of `logits` in batch order. */
typedef struct model_batch {
    int32_t n;
    const int32_t *tokens, *seq, *pos;
    const bool *output; /* NULL: no logits */
} model_batch;
hearth_status model_forward_batch(const model *m, model_state *s, threadpool *pool, const model_batch *batch,
                                  float *logits, hearth_error *err);
/* Whether model_forward_batch runs all sequences' tokens through each
 * matrix product together (else it runs one sequence after another). */
bool model_batches_sequences(const model *m);

/* Runs n tokens (1..n_batch) at positions pos0 .. pos0+n-1, keeping their
 * keys and values in the state (positions before pos0 must have been run;
 * for a recurrent model pos0 must be 0 or where the last batch ended).
 * Writes the logits of tokens first_output .. n-1 into logits, one row of
 * model_n_vocab floats each (first_output == n: no logits, logits may be NULL).
 * Token ids out of range and positions past the context are errors; so is
 * a logit that comes out NaN or infinite (corrupt weights), after the pass
 * has run and the state has taken its tokens. */
hearth_status model_forward(const model *m, model_state *s, threadpool *pool, const int32_t *tokens, int32_t n,
                            int32_t pos0, int32_t first_output, float *logits, hearth_error *err);

#endif

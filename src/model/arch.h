/* What an architecture file provides to model.c. */
#ifndef HEARTH_MODEL_ARCH_H
#define HEARTH_MODEL_ARCH_H

#include "model/model.h"
#include "ops/matmul.h"
#include "ops/ops.h"

/* Where a state keeps one kind of a sequence's past: a KV cache layer (a
 * row per position) or a recurrent layer's state (one row per sequence).
 * Sequence q's row r is at base + q * seq_stride + r * row_bytes. */
typedef struct model_state_part {
    char *base;
    size_t row_bytes, seq_stride;
    bool recurrent;
} model_state_part;

typedef struct model_arch {
    const char *name; /* general.architecture */
    /* Reads hparams and binds tensors; returns the arch's private weights. */
    hearth_status (*load)(const gguf_file *file, const vocab *v, void **weights, hearth_error *err);
    void (*free_weights)(void *weights);
    /* *memory: what the state allocated, by part. */
    hearth_status (*state_create)(const void *weights, int32_t n_ctx, int32_t n_batch, void **state,
                                  model_memory *memory, hearth_error *err);
    void (*state_free)(void *state);
    /* Arguments are checked by model_forward before the call. */
    void (*forward)(const void *weights, void *state, threadpool *pool, const int32_t *tokens, int32_t n,
                    int32_t pos0, int32_t first_output, float *logits);
    /* Optional, both or neither: a state for n_seq sequences (n_ctx
     * positions each) that forward takes as sequence 0 too, and a pass over
     * a batch mixing them (checked by model_forward_batch). Without them,
     * model.c keeps one state per sequence and runs them one by one. */
    hearth_status (*state_create_multi)(const void *weights, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                        hearth_kv_type kv_type, void **state, model_memory *memory,
                                        hearth_error *err);
    void (*forward_batch)(const void *weights, void *state, threadpool *pool, const model_batch *batch,
                          float *logits);
    int32_t (*n_ctx_train)(const void *weights);
    /* Calls visit on every matrix the forward pass multiplies by, so that
     * model.c can repack them (it may set their `packed`). A matrix whose data
     * is also read by row (a tied embedding) is visited once. */
    void (*for_each_matrix)(void *weights, void (*visit)(ops_matrix *m, void *ctx), void *ctx);
    /* The state sums up the whole past (a recurrent layer's state), so a
     * sequence can only go on where the last batch ended or start again at
     * position 0, which the forward pass takes as a reset. */
    bool recurrent;
    /* state_create_multi takes a KV cache type other than f16; without
     * this, model.c refuses one. */
    bool quantized_kv;
    /* The parts of a state that hold its sequences' past (model_state_part),
     * in a fixed order: writes at most max, returns how many there are. */
    int32_t (*state_parts)(const void *weights, void *state, model_state_part *parts, int32_t max);
} model_arch;

extern const model_arch model_arch_gemma3;
extern const model_arch model_arch_gemma4;
extern const model_arch model_arch_gpt_oss;
extern const model_arch model_arch_llama;
extern const model_arch model_arch_qwen2;
extern const model_arch model_arch_qwen3;
extern const model_arch model_arch_qwen3moe;
extern const model_arch model_arch_qwen35;
extern const model_arch model_arch_qwen35moe;

/* Tensor binding helpers: each checks the tensor exists with exactly the
 * expected shape and a type the engine can multiply / read, and says which
 * tensor and why when not. */
hearth_status model_bind_matrix(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                ops_matrix *out, hearth_error *err);
/* A matrix that may be absent (*present says which). */
hearth_status model_bind_optional_matrix(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                         ops_matrix *out, bool *present, hearth_error *err);
/* The n_experts slices of a 3-D expert tensor [n_experts][rows][cols] (GGUF
 * ne = {cols, rows, n_experts}) into experts[0 .. n_experts - 1]. */
hearth_status model_bind_experts(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                 int32_t n_experts, ops_matrix *experts, hearth_error *err);
/* An optional F32 table of count rows of n (GGUF ne = {n, count}): per-expert
 * biases. *out is NULL when absent. */
hearth_status model_bind_optional_table(const gguf_file *file, const char *name, int64_t n, int64_t count,
                                        const float **out, hearth_error *err);
/* The ends every decoder shares: token_embd.weight (n_vocab rows of n_embd),
 * output_norm.weight, and output.weight, which is the embedding itself when
 * the file has none (tied). */
hearth_status model_bind_embedding_and_output(const gguf_file *file, int64_t n_embd, int64_t n_vocab,
                                              ops_matrix *embed, const float **output_norm, ops_matrix *output,
                                              hearth_error *err);
/* An F32 vector of n elements (norm weights). */
hearth_status model_bind_vector(const gguf_file *file, const char *name, int64_t n, const float **out,
                                hearth_error *err);

/* An F32 vector that may be absent (*out is then NULL): biases. */
hearth_status model_bind_optional_vector(const gguf_file *file, const char *name, int64_t n, const float **out,
                                         hearth_error *err);

/* Hyper-parameters "<arch>.<key>"; required ones fail with a message naming the key. */
hearth_status model_get_u32(const gguf_file *file, const char *arch, const char *key, bool required,
                            uint32_t fallback, uint32_t *out, hearth_error *err);
hearth_status model_get_f32(const gguf_file *file, const char *arch, const char *key, bool required,
                            float fallback, float *out, hearth_error *err);

/* "<arch>.rope.freq_base" (default_base when absent) and the RoPE scaling
 * keys into rope's freq_base and freq_scale; the caller sets the rest. */
hearth_status model_read_rope(const gguf_file *file, const char *arch, float default_base, ops_rope *rope,
                              hearth_error *err);
/* The same, and YaRN too when allow_yarn: for the architectures whose
 * YaRN has been checked against llama.cpp (gpt-oss); the others refuse it
 * rather than run unverified angles. */
hearth_status model_read_rope_scaling(const gguf_file *file, const char *arch, float default_base, bool allow_yarn,
                                      ops_rope *rope, hearth_error *err);

#endif

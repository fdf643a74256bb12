/* The server's scheduler: N slots over one multi-sequence model state, and
 * one thread that runs them.
 *
 * Each pass of the scheduler thread is one model_forward_batch holding every
 * generating slot's next token and, in the room left, a chunk of one or more
 * waiting prompts (continuous batching): a new request's prefill goes in
 * chunks of prefill_chunk tokens beside the running streams instead of
 * stalling them. A request that finds no free slot waits in a bounded queue;
 * past it, sched_submit says busy. A slot keeps the tokens it last held, and a
 * new request goes to the free slot sharing the longest prefix with its
 * prompt, so a chat that resends its history evaluates only the new turn.
 *
 * Requests and their output live in sched_job handles. The submitting thread
 * (an HTTP connection) waits for output with sched_job_wait, and calls
 * sched_job_release when it is done with the job; releasing a job that is
 * still running cancels it and frees its slot at the next pass. */
#ifndef HEARTH_SERVER_SCHED_H
#define HEARTH_SERVER_SCHED_H

#include "model/model.h"
#include "runtime/prefix_cache.h"
#include "runtime/sampler.h"
#include "runtime/stop.h"

#include <stdbool.h>
#include <stdint.h>

#define SCHED_MAX_TOP_LOGPROBS 20

typedef struct sched_params {
    int32_t n_slots;       /* parallel sequences */
    int32_t n_ctx;         /* positions per slot */
    int32_t n_batch;       /* tokens per forward pass, all slots together; 0: 512 */
    int32_t prefill_chunk; /* prompt tokens per pass while other slots generate; 0: 128 */
    int32_t max_queued;    /* requests waiting for a slot at most; 0: 4 per slot */
    hearth_kv_type kv_type; /* the slots' KV cache; 0: f16 */
    /* NULL: none. With one, a new request first restores the longest prefix
     * of its prompt the cache holds (in the scheduler thread, before its
     * first chunk), and every slot keeps there the blocks it evaluates. */
    const prefix_cache_params *prefix_cache;
} sched_params;

typedef struct sched_request {
    const int32_t *prompt; /* copied */
    int32_t n_prompt;
    sampler_params sampling;  /* its logit_bias copied */
    int32_t max_tokens;       /* < 0: until the slot's context is full */
    const char *const *stops; /* copied */
    int n_stops;
    bool ignore_eos;      /* end-of-generation tokens do not stop it (benchmarks) */
    bool logprobs;        /* report each generated token's log-probability */
    int32_t top_logprobs; /* and the most likely alternatives, up to SCHED_MAX_TOP_LOGPROBS */
} sched_request;

/* A generated token and, when asked for, its log-probability under the
 * model (a softmax of the raw logits) and the top alternatives. */
typedef struct sched_token {
    int32_t id;
    float logprob;
    int32_t n_top;
    int32_t top_id[SCHED_MAX_TOP_LOGPROBS];
    float top_logprob[SCHED_MAX_TOP_LOGPROBS];
} sched_token;

typedef enum sched_finish {
    SCHED_RUNNING,
    SCHED_FINISH_STOP,      /* end of generation or a stop string */
    SCHED_FINISH_LENGTH,    /* max_tokens, or the context filled */
    SCHED_FINISH_CANCELLED, /* released early, or the scheduler shut down */
    SCHED_FINISH_ERROR,
} sched_finish;

/* What sched_job_wait hands over: the output since the last call. The
 * buffers are the caller's, grown as needed; sched_output_free frees them. */
typedef struct sched_output {
    char *text;
    size_t len, cap;
    sched_token *tokens; /* when logprobs were asked for */
    int32_t n_tokens, cap_tokens;
    sched_finish finish; /* SCHED_RUNNING until the job is done */
    int32_t n_prompt, n_cached, n_generated;
    double queue_seconds, prompt_seconds, generate_seconds;
    hearth_error error; /* with SCHED_FINISH_ERROR */
} sched_output;
void sched_output_free(sched_output *o);

typedef struct sched sched;
typedef struct sched_job sched_job;

/* The model and pool are the caller's and outlive the scheduler, whose
 * thread is the only user of the pool from then on. */
hearth_status sched_create(const model *m, threadpool *pool, const sched_params *params, sched **out,
                           hearth_error *err);
/* Stops the thread (jobs still running end as cancelled). Every job must be
 * released first: stop taking requests, let them end, then free. */
void sched_free(sched *s);

/* Queues a request. HEARTH_ERR_BUSY when the queue is full, HEARTH_ERR_ARG
 * for a prompt that does not fit a slot's context (or is empty). */
hearth_status sched_submit(sched *s, const sched_request *req, sched_job **out, hearth_error *err);
/* Waits up to timeout_ms for new output or the end, and hands over what
 * there is: out->text / out->tokens then hold exactly the output since the
 * last call (buffers are swapped, not copied), the counts and finish are the
 * job's. True when there was anything new or the job is done. */
bool sched_job_wait(sched_job *j, int timeout_ms, sched_output *out);
void sched_job_release(sched_job *j);

typedef struct sched_metrics {
    int32_t n_slots, slots_busy, queued, max_queued;
    int64_t kv_used, kv_capacity; /* positions held by busy slots / all slots' positions */
    uint64_t requests_finished, requests_cancelled, requests_failed, requests_rejected;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    double prefill_seconds, decode_seconds; /* forward-pass time, split by the tokens each pass held */
    uint64_t passes;
} sched_metrics;
sched_metrics sched_get_metrics(sched *s);

#endif

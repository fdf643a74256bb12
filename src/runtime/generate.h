/* The generation loop shared by run, chat and serve: prompt in, text out.
 *
 * Evaluates the prompt, then samples a token at a time until a stop condition:
 * the token budget, an end-of-generation token, a stop string, or the caller
 * cancelling. Text reaches the caller only in whole UTF-8 characters, and never
 * includes a stop string or the beginning of one that may still complete. */
#ifndef HEARTH_RUNTIME_GENERATE_H
#define HEARTH_RUNTIME_GENERATE_H

#include "runtime/sampler.h"
#include "runtime/session.h"

typedef struct generate_params {
    int32_t n_predict;        /* tokens to generate at most; < 0: no limit but the context */
    const char *const *stops; /* stop strings */
    int n_stops;
    /* When the context fills: false stops generation (CONTEXT_FULL); true
     * keeps the first n_keep tokens and the most recent half of the rest, and
     * evaluates them again, so generation can go on. */
    bool context_shift;
    int32_t n_keep;
    bool ignore_eog; /* end-of-generation tokens do not stop (benchmarks, tests) */
} generate_params;

typedef enum generate_finish {
    GENERATE_FINISH_LENGTH,       /* n_predict reached */
    GENERATE_FINISH_CONTEXT_FULL, /* the context filled (and no shift was asked for) */
    GENERATE_FINISH_EOG,       /* the model ended its turn */
    GENERATE_FINISH_STOP,      /* a stop string */
    GENERATE_FINISH_CANCELLED, /* the emit callback asked to stop */
} generate_finish;

typedef struct generate_stats {
    int32_t n_prompt, n_generated;
    int32_t n_restored; /* of n_prompt, restored from the prefix cache */
    double prompt_seconds, generate_seconds; /* wall clock of each phase */
    generate_finish finish;
} generate_stats;

/* Receives text as it is generated; returns false to stop generation. */
typedef bool (*generate_emit_fn)(void *user, const char *text, size_t len);

/* Runs the prompt through the session (appending to what it holds) and
 * generates. The sampler sees the prompt tokens too (for its penalties). */
hearth_status generate_run(session *s, sampler *smp, const vocab *v, const int32_t *prompt, int32_t n_prompt,
                           const generate_params *params, generate_emit_fn emit, void *user, generate_stats *stats,
                           hearth_error *err);

const char *generate_finish_name(generate_finish finish);

#endif

/* Token sampling: the chain llama.cpp's common sampler runs by default.
 *
 *   bias -> penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw
 *   bias -> penalties -> argmax                       (temperature <= 0: greedy)
 *
 * Each stage has llama.cpp's semantics (src/llama-sampling.cpp):
 * - penalties look at the last repeat_last_n accepted tokens; a token seen
 *   `count` times there gets logit/repeat_penalty when its logit is > 0 and
 *   logit*repeat_penalty otherwise, then loses
 *   count*frequency_penalty + presence_penalty.
 * - top-p and min-p measure probabilities at temperature 1 (temperature is
 *   applied after the truncations, as llama.cpp orders them): top-p keeps the
 *   most likely tokens until their mass reaches top_p (at least one token);
 *   min-p keeps tokens whose probability is >= min_p times the largest.
 * - the draw is a softmax of logits/temperature over what is left.
 *
 * What differs from llama.cpp: the random numbers. llama.cpp uses
 * std::mt19937 through the C++ library; hearth uses its own xoshiro256**
 * (seeded through splitmix64), so a seed gives the same stream of numbers on
 * every platform, but not llama.cpp's draws. The default seed is fixed (llama.cpp
 * picks a random one) so that runs are reproducible unless asked otherwise.
 *
 * Logits that are NaN count as -inf (never picked); +inf counts as the largest
 * finite float. Whatever the logits, sampler_sample returns an id in
 * [0, n_vocab).
 *
 * Cost: nothing is allocated per call; scratch for n_vocab candidates and the
 * penalty counts is allocated once by sampler_create. */
#ifndef HEARTH_RUNTIME_SAMPLER_H
#define HEARTH_RUNTIME_SAMPLER_H

#include "hearth.h"

#include <stdint.h>

/* repeat_last_n = -1 means "every token seen", which llama.cpp caps at the
 * context size; hearth caps it here, and refuses explicit windows past it. */
#define SAMPLER_MAX_PENALTY_WINDOW 65536

#define SAMPLER_DEFAULT_SEED 42u

/* A number added to one token's logit before anything else looks at it
 * (llama.cpp's logit-bias stage, first in its chain): -inf bans the token. */
typedef struct sampler_bias {
    int32_t token;
    float bias;
} sampler_bias;

typedef struct sampler_params {
    float temperature;       /* <= 0: greedy (argmax; ties -> lowest id) */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off; in [0, 1) keeps the smallest set with mass >= top_p */
    float min_p;             /* <= 0: off; at most 1 */
    float repeat_penalty;    /* 1: off; > 0 */
    int32_t repeat_last_n;   /* penalty window: 0 off, -1 all seen (capped, see above) */
    float frequency_penalty; /* 0: off */
    float presence_penalty;  /* 0: off */
    uint64_t seed;
    /* Biases (a token may appear more than once: they add up); ids in
     * [0, n_vocab), each bias finite or -inf. sampler_create copies them. */
    const sampler_bias *logit_bias;
    int32_t n_logit_bias;
} sampler_params;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1.0 over the last 64 tokens, no frequency/presence penalty,
 * seed SAMPLER_DEFAULT_SEED. */
sampler_params sampler_default_params(void);

typedef struct sampler sampler;

/* Checks every parameter (finite, in range) and allocates the scratch for
 * n_vocab logits. Fails with HEARTH_ERR_ARG and a message naming the
 * parameter, or HEARTH_ERR_NOMEM. */
hearth_status sampler_create(const sampler_params *params, int32_t n_vocab, sampler **out, hearth_error *err);
void sampler_free(sampler *s);

/* Picks the next token from n_vocab logits, which are only read. Penalties
 * use the tokens recorded with sampler_accept; sampling does not record the
 * token it returns. */
int32_t sampler_sample(sampler *s, const float *logits);

/* Records a token for the penalties (prompt tokens too, as llama.cpp does).
 * Ids outside [0, n_vocab) are ignored. */
void sampler_accept(sampler *s, int32_t token);

/* Forgets the history and restarts the random stream from the seed. */
void sampler_reset(sampler *s);

#endif

/* Token sampling; the chain and its semantics are described in sampler.h.
 *
 * Speed: the candidates live in one array of (logit, id) pairs that each stage
 * narrows to a prefix; nothing sorts the whole vocabulary. A small top-k is a
 * bounded heap (one pass, one comparison per token); top-p, and a large top-k,
 * put tokens in 1024 buckets by distance below the best logit, find the bucket
 * where the cut falls from per-bucket mass (or counts), and sort only that
 * bucket. Measured with bench/sampler_bench.c (hearth-bench-sampler), gcc -O3
 * Release, one core of the shared 2-core AMD EPYC development host, 262,144
 * logits drawn from N(0, 3^2) unless noted, per sampler_sample call:
 *   default chain (top_k 40, top_p 0.95, min_p 0.05)   ~0.4 ms
 *   greedy                                             ~0.3 ms
 *   top_k off, top_p 0.95                              ~2.1 ms (keeps ~23k tokens)
 *   top_k off, top_p 0.95, logits N(0, 1)              ~3.8 ms (keeps ~190k tokens)
 *   no truncation (softmax and draw over everything)   ~1.5 ms
 * The floor is touching 262,144 logits a few times; expf dominates the
 * paths without top-k. */
#include "runtime/sampler.h"

#include "base/error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bucket count for the cuts that may keep many candidates (see
 * gather_through_bucket). */
#define SAMPLER_BUCKETS 1024

typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

struct sampler {
    sampler_params params; /* its logit_bias points at bias below */
    int32_t n_vocab;
    sampler_bias *bias;
    candidate *candidates; /* [n_vocab] scratch, refilled on every sample */

    /* Penalty window: a ring of the last `window` accepted tokens and, per
     * token id, how often it occurs in the ring. Kept up to date on accept so
     * that sampling touches only the tokens in the window. */
    int32_t window;
    int32_t *history;      /* [window] */
    int32_t history_len;   /* tokens in the ring, <= window */
    int32_t history_next;  /* where the next token goes */
    int32_t *token_counts; /* [n_vocab] */

    size_t bucket_count[SAMPLER_BUCKETS]; /* scratch for select_best */
    double bucket_mass[SAMPLER_BUCKETS];  /* scratch for top_p_keep */

    uint64_t rng[4];
};

/* ---- random numbers ------------------------------------------------------------
 * xoshiro256** (Blackman & Vigna), seeded by expanding the 64-bit seed with
 * splitmix64 as its authors recommend. Pure integer arithmetic, so one seed
 * gives one stream everywhere. */

static uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(uint64_t rng[4], uint64_t seed)
{
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        rng[i] = splitmix64_next(&sm);
}

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1): the top 53 bits as a double's mantissa. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- parameters ----------------------------------------------------------------- */

sampler_params sampler_default_params(void)
{
    return (sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .seed = SAMPLER_DEFAULT_SEED,
    };
}

static hearth_status check_params(const sampler_params *p, int32_t n_vocab, hearth_error *err)
{
    if (n_vocab <= 0)
        return error_set(err, HEARTH_ERR_ARG, "sampler: vocabulary size %d must be positive", (int)n_vocab);
    if (!isfinite(p->temperature))
        return error_set(err, HEARTH_ERR_ARG, "sampler: temperature must be a finite number (got %g)", (double)p->temperature);
    if (!(p->top_p >= 0.0f) || isinf(p->top_p))
        return error_set(err, HEARTH_ERR_ARG, "sampler: top_p must be a number >= 0 (got %g; 1 or more turns it off)", (double)p->top_p);
    if (isnan(p->min_p) || p->min_p > 1.0f)
        return error_set(err, HEARTH_ERR_ARG, "sampler: min_p must be at most 1 (got %g; 0 turns it off)", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return error_set(err, HEARTH_ERR_ARG, "sampler: repeat_penalty must be a positive finite number (got %g; 1 turns it off)",
                         (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty))
        return error_set(err, HEARTH_ERR_ARG, "sampler: frequency_penalty must be a finite number (got %g)", (double)p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return error_set(err, HEARTH_ERR_ARG, "sampler: presence_penalty must be a finite number (got %g)", (double)p->presence_penalty);
    if (p->repeat_last_n < -1 || p->repeat_last_n > SAMPLER_MAX_PENALTY_WINDOW)
        return error_set(err, HEARTH_ERR_ARG, "sampler: repeat_last_n must be -1 (all), 0 (off) or up to %d (got %d)",
                         SAMPLER_MAX_PENALTY_WINDOW, (int)p->repeat_last_n);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return error_set(err, HEARTH_ERR_ARG, "sampler: %d logit biases", (int)p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        sampler_bias b = p->logit_bias[i];
        if (b.token < 0 || b.token >= n_vocab)
            return error_set(err, HEARTH_ERR_ARG, "sampler: logit bias for token %d, outside the vocabulary of %d",
                             (int)b.token, (int)n_vocab);
        if (isnan(b.bias) || b.bias == INFINITY)
            return error_set(err, HEARTH_ERR_ARG, "sampler: logit bias for token %d must be finite or -inf (got %g)",
                             (int)b.token, (double)b.bias);
    }
    return HEARTH_OK;
}

static bool penalties_active(const sampler_params *p)
{
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

hearth_status sampler_create(const sampler_params *params, int32_t n_vocab, sampler **out, hearth_error *err)
{
    *out = NULL;
    if (!params)
        return error_set(err, HEARTH_ERR_ARG, "sampler: no parameters given");
    hearth_status st = check_params(params, n_vocab, err);
    if (st != HEARTH_OK)
        return st;

    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(err, HEARTH_ERR_NOMEM, "sampler: out of memory");
    s->params = *params;
    s->n_vocab = n_vocab;
    s->window = params->repeat_last_n < 0 ? SAMPLER_MAX_PENALTY_WINDOW : params->repeat_last_n;
    if (!penalties_active(params))
        s->window = 0; /* nothing would read the history */
    s->candidates = malloc((size_t)n_vocab * sizeof *s->candidates);
    if (params->n_logit_bias > 0) {
        s->bias = malloc((size_t)params->n_logit_bias * sizeof *s->bias);
        if (s->bias)
            memcpy(s->bias, params->logit_bias, (size_t)params->n_logit_bias * sizeof *s->bias);
    }
    s->params.logit_bias = s->bias;
    if (s->window > 0) {
        s->history = malloc((size_t)s->window * sizeof *s->history);
        s->token_counts = calloc((size_t)n_vocab, sizeof *s->token_counts);
    }
    if (!s->candidates || (s->window > 0 && (!s->history || !s->token_counts)) ||
        (params->n_logit_bias > 0 && !s->bias)) {
        sampler_free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d tokens", (int)n_vocab);
    }
    rng_seed(s->rng, params->seed);
    *out = s;
    return HEARTH_OK;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    free(s->candidates);
    free(s->bias);
    free(s->history);
    free(s->token_counts);
    free(s);
}

void sampler_accept(sampler *s, int32_t token)
{
    if (s->window == 0 || token < 0 || token >= s->n_vocab)
        return;
    if (s->history_len == s->window)
        s->token_counts[s->history[s->history_next]]--; /* the oldest leaves the window */
    else
        s->history_len++;
    s->history[s->history_next] = token;
    s->token_counts[token]++;
    s->history_next = (s->history_next + 1) % s->window;
}

void sampler_reset(sampler *s)
{
    for (int32_t i = 0; i < s->history_len; i++)
        s->token_counts[s->history[i]] = 0;
    s->history_len = 0;
    s->history_next = 0;
    rng_seed(s->rng, s->params.seed);
}

/* ---- the chain -------------------------------------------------------------------- */

/* NaN can never win; +inf is kept finite so that softmax arithmetic
 * (logit - max) stays defined. */
static float sanitize_logit(float x)
{
    if (isnan(x))
        return -INFINITY;
    if (x > FLT_MAX)
        return FLT_MAX;
    return x;
}

/* The candidate order every stage uses: higher logit first, equal logits by
 * lower id. A strict total order, so selection and sorting give one answer. */
static inline bool ranks_before(candidate a, candidate b)
{
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int compare_candidates(const void *pa, const void *pb)
{
    const candidate *a = pa, *b = pb;
    return ranks_before(*a, *b) ? -1 : ranks_before(*b, *a) ? 1 : 0;
}

static void sort_candidates(candidate *c, size_t n) { qsort(c, n, sizeof *c, compare_candidates); }

static inline void swap_candidates(candidate *a, candidate *b)
{
    candidate t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k best of c[0..n) to c[0..k), sorted. c[0..k) is kept as a heap
 * whose root is the worst of the best k so far, so each further candidate
 * costs one comparison, and for the usual k = 40 nearly all of them fail:
 * one pass over the vocabulary. */
static void heap_sift_down(candidate *c, size_t k, size_t i)
{
    for (;;) {
        size_t worse = 2 * i + 1;
        if (worse >= k)
            return;
        if (worse + 1 < k && ranks_before(c[worse], c[worse + 1]))
            worse++;
        if (ranks_before(c[worse], c[i]))
            return; /* the parent is already worse than both children */
        swap_candidates(&c[i], &c[worse]);
        i = worse;
    }
}

static void select_best_by_heap(candidate *c, size_t n, size_t k)
{
    for (size_t i = k / 2; i-- > 0;)
        heap_sift_down(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (ranks_before(c[i], c[0])) {
            swap_candidates(&c[i], &c[0]);
            heap_sift_down(c, k, 0);
        }
    }
    sort_candidates(c, k);
}

/* For cuts that may keep many candidates (top-p, a large top-k), a heap or a
 * full sort would cost O(n log n); instead the candidates are put in buckets
 * by their distance below the best logit, the bucket in which the cut falls
 * is found from per-bucket totals, and only that bucket is sorted. Distances
 * past the range all share the last bucket. */
typedef struct bucket_scale {
    float max;   /* the best logit */
    float scale; /* buckets per unit of logit */
} bucket_scale;

static bucket_scale bucket_scale_for(const candidate *c, size_t n, float max_range)
{
    float max = -INFINITY, min = INFINITY;
    for (size_t i = 0; i < n; i++) {
        float l = c[i].logit;
        max = l > max ? l : max;
        if (l > -INFINITY && l < min)
            min = l;
    }
    float range = max - min < max_range ? max - min : max_range;
    /* range is 0 (or NaN: nothing finite) when every finite logit is equal:
     * one bucket holds them all, and -inf still lands in the last one. */
    float scale = range > 0.0f ? (float)(SAMPLER_BUCKETS - 1) / range : 1.0f;
    return (bucket_scale){max, scale};
}

static inline size_t bucket_of(float logit, bucket_scale b)
{
    float distance = (b.max - logit) * b.scale; /* >= 0; inf for -inf logits */
    return distance < (float)(SAMPLER_BUCKETS - 1) ? (size_t)distance : SAMPLER_BUCKETS - 1;
}

/* Reorders c[0..n) so that the candidates of buckets before `cut` come first
 * (in no order), then those of bucket `cut`, sorted. Returns where bucket
 * `cut` starts and stores where it ends in *cut_end. */
static size_t gather_through_bucket(candidate *c, size_t n, bucket_scale b, size_t cut, size_t *cut_end)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (bucket_of(c[i].logit, b) <= cut)
            swap_candidates(&c[kept++], &c[i]);
    size_t above = 0;
    for (size_t i = 0; i < kept; i++)
        if (bucket_of(c[i].logit, b) < cut)
            swap_candidates(&c[above++], &c[i]);
    sort_candidates(c + above, kept - above);
    *cut_end = kept;
    return above;
}

/* Moves the k best of c[0..n) to c[0..k). Returns whether they are sorted:
 * a small k is (heap), a large one is left in bucket order, the sort being
 * the expensive part and none of the later stages needing it. */
static bool select_best(sampler *s, candidate *c, size_t n, size_t k)
{
    if (k <= 1024 || k <= n / 16) {
        select_best_by_heap(c, n, k);
        return true;
    }
    bucket_scale b = bucket_scale_for(c, n, INFINITY);
    size_t *count = s->bucket_count;
    memset(count, 0, SAMPLER_BUCKETS * sizeof *count);
    for (size_t i = 0; i < n; i++)
        count[bucket_of(c[i].logit, b)]++;
    size_t cut = 0, before_cut = 0;
    while (cut < SAMPLER_BUCKETS - 1 && before_cut + count[cut] < k)
        before_cut += count[cut++];
    /* The k best: the buckets before `cut` and the head of the sorted
     * bucket `cut`, which is what the front k are once gathered. */
    size_t cut_end;
    gather_through_bucket(c, n, b, cut, &cut_end);
    return false;
}

/* Candidate i's logit is token i's here: the array is still in id order. */
static void apply_penalties(const sampler *s, candidate *c)
{
    const sampler_params *p = &s->params;
    for (int32_t i = 0; i < s->history_len; i++) {
        int32_t token = s->history[i];
        int32_t count = s->token_counts[token];
        if (count <= 0)
            continue; /* already done: it occurs earlier in the ring */
        float logit = c[token].logit;
        logit = logit <= 0.0f ? logit * p->repeat_penalty : logit / p->repeat_penalty;
        logit -= (float)count * p->frequency_penalty + p->presence_penalty;
        c[token].logit = sanitize_logit(logit);
        /* Mark the token done by negating its count; restored below. */
        s->token_counts[token] = -count;
    }
    for (int32_t i = 0; i < s->history_len; i++) {
        int32_t token = s->history[i];
        if (s->token_counts[token] < 0)
            s->token_counts[token] = -s->token_counts[token];
    }
}

/* Greedy's pick while the candidates are still in id order: the first
 * maximum is the lowest id among ties. */
static int32_t argmax_in_id_order(const candidate *c, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > c[best].logit)
            best = i;
    return c[best].id;
}

/* The best candidate by ranks_before: ties go to the lowest id, in any order. */
static int32_t best_candidate(const candidate *c, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (ranks_before(c[i], c[best]))
            best = i;
    return c[best].id;
}

static float max_logit(const candidate *c, size_t n, bool sorted)
{
    if (sorted)
        return c[0].logit;
    float m = c[0].logit;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > m)
            m = c[i].logit;
    return m;
}

/* Top-p over c[0..n): returns how many candidates to keep, moved to the
 * front. Sorted input is walked from the top. Otherwise probability mass is
 * added up per bucket, and only the bucket in which the mass reaches top_p is
 * sorted and walked; the kept candidates are then in order only if that was
 * the first bucket (*sorted says so). Logits more than 32 below the best
 * weigh < e^-32 each and share the last bucket. */
static size_t top_p_keep(sampler *s, candidate *c, size_t n, bool *sorted, float top_p)
{
    if (*sorted) {
        float max = c[0].logit;
        double total = 0.0;
        for (size_t i = 0; i < n; i++)
            total += expf(c[i].logit - max);
        double target = (double)top_p * total, mass = 0.0;
        for (size_t i = 0; i < n; i++) {
            mass += expf(c[i].logit - max);
            if (mass >= target)
                return i + 1;
        }
        return n;
    }

    bucket_scale b = bucket_scale_for(c, n, 32.0f);
    double *bucket_mass = s->bucket_mass;
    memset(bucket_mass, 0, SAMPLER_BUCKETS * sizeof *bucket_mass);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double w = expf(c[i].logit - b.max);
        bucket_mass[bucket_of(c[i].logit, b)] += w;
        total += w;
    }
    double target = (double)top_p * total, mass = 0.0;
    size_t cut = 0;
    while (cut < SAMPLER_BUCKETS - 1 && mass + bucket_mass[cut] < target)
        mass += bucket_mass[cut++];
    size_t cut_end;
    size_t cut_start = gather_through_bucket(c, n, b, cut, &cut_end);
    if (cut_start == 0)
        *sorted = true; /* the cut fell in the first bucket, which is sorted */
    for (size_t i = cut_start; i < cut_end; i++) {
        mass += expf(c[i].logit - b.max);
        if (mass >= target)
            return i + 1;
    }
    return cut_end;
}

/* Min-p: keeps the candidates whose logit is within log(min_p) of the best,
 * preserving their order. */
static size_t min_p_keep(candidate *c, size_t n, bool sorted, float min_p)
{
    float threshold = max_logit(c, n, sorted) + logf(min_p);
    if (sorted) {
        size_t keep = 1;
        while (keep < n && c[keep].logit >= threshold)
            keep++;
        return keep;
    }
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit >= threshold)
            c[keep++] = c[i];
    return keep; /* >= 1: the best itself passes */
}

/* Softmax of logit/temperature over c[0..n) and one draw from it. Weights are
 * exp((logit - max) / temperature), which cannot overflow however small the
 * temperature. The running sum is compared with `>` so that a zero-weight
 * candidate is never chosen; should rounding leave the target at the very top,
 * the last candidate with weight wins. */
static int32_t draw(candidate *c, size_t n, bool sorted, float temperature, uint64_t rng[4])
{
    float max = max_logit(c, n, sorted);
    if (n == 1 || max == -INFINITY)
        return c[0].id; /* forced: like llama.cpp, no random number is used */
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].logit = expf((c[i].logit - max) / temperature); /* the logit is not needed again */
        total += c[i].logit;
    }
    double target = rng_uniform(rng) * total;
    double running = 0.0;
    size_t last_weighted = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].logit > 0.0f)
            last_weighted = i;
        running += c[i].logit;
        if (running > target)
            return c[i].id;
    }
    return c[last_weighted].id;
}

int32_t sampler_sample(sampler *s, const float *logits)
{
    const sampler_params *p = &s->params;
    candidate *c = s->candidates;
    size_t n = (size_t)s->n_vocab;
    for (size_t i = 0; i < n; i++)
        c[i] = (candidate){sanitize_logit(logits[i]), (int32_t)i};
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        c[s->bias[i].token].logit = sanitize_logit(c[s->bias[i].token].logit + s->bias[i].bias);
    if (s->history_len > 0)
        apply_penalties(s, c);

    if (p->temperature <= 0.0f)
        return argmax_in_id_order(c, n);

    bool sorted = false;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        n = (size_t)p->top_k;
        sorted = select_best(s, c, (size_t)s->n_vocab, n);
    }
    if (max_logit(c, n, sorted) == -INFINITY)
        return sorted ? c[0].id : best_candidate(c, n); /* nothing has any weight */
    if (p->top_p < 1.0f)
        n = top_p_keep(s, c, n, &sorted, p->top_p);
    if (p->min_p > 0.0f)
        n = min_p_keep(c, n, sorted, p->min_p);
    return draw(c, n, sorted, p->temperature, s->rng);
}

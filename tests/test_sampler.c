/* The sampler: each stage of the chain against hand-computed expectations,
 * the draw against softmax(logits/T) by a chi-square bound, reproducibility
 * of the seeded stream, and logits no model should produce (NaN, inf). */
#include "test.h"

#include "runtime/sampler.h"

#include <float.h>
#include <math.h>
#include <string.h>

static sampler *make(sampler_params p, int32_t n_vocab)
{
    sampler *s = NULL;
    hearth_error err = {0};
    hearth_status st = sampler_create(&p, n_vocab, &s, &err);
    CHECK_MSG(st == HEARTH_OK, "%s", err.message);
    return s;
}

/* Only the stages a test names; everything else off. */
static sampler_params plain_params(float temperature)
{
    sampler_params p = sampler_default_params();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

/* A fixed pseudo-random source for test data, independent of the sampler's. */
static uint64_t data_rng_state = 12345;
static double test_uniform(void)
{
    data_rng_state = data_rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(data_rng_state >> 11) * 0x1.0p-53;
}
static float test_normal(float sigma)
{
    double u1 = test_uniform() + 1e-300, u2 = test_uniform();
    return (float)(sigma * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void test_defaults(void)
{
    sampler_params p = sampler_default_params();
    CHECK(p.temperature == 0.8f);
    CHECK(p.top_k == 40);
    CHECK(p.top_p == 0.95f);
    CHECK(p.min_p == 0.05f);
    CHECK(p.repeat_penalty == 1.0f);
    CHECK(p.repeat_last_n == 64);
    CHECK(p.frequency_penalty == 0.0f);
    CHECK(p.presence_penalty == 0.0f);
    CHECK(p.seed == SAMPLER_DEFAULT_SEED);
}

static void expect_rejected(sampler_params p, int32_t n_vocab, const char *needle)
{
    sampler *s = (sampler *)1;
    hearth_error err = {0};
    hearth_status st = sampler_create(&p, n_vocab, &s, &err);
    CHECK_MSG(st == HEARTH_ERR_ARG, "expected a rejection mentioning %s", needle);
    CHECK(s == NULL);
    CHECK_MSG(strstr(err.message, needle) != NULL, "message \"%s\" does not name %s", err.message, needle);
    if (st == HEARTH_OK)
        sampler_free(s);
}

static void test_invalid_params(void)
{
    sampler_params ok = sampler_default_params(), p;
#define REJECT(field, value, needle) (p = ok, p.field = (value), expect_rejected(p, 100, needle))
    REJECT(temperature, NAN, "temperature");
    REJECT(temperature, INFINITY, "temperature");
    REJECT(top_p, -0.1f, "top_p");
    REJECT(top_p, NAN, "top_p");
    REJECT(top_p, INFINITY, "top_p");
    REJECT(min_p, NAN, "min_p");
    REJECT(min_p, 1.5f, "min_p");
    REJECT(repeat_penalty, 0.0f, "repeat_penalty");
    REJECT(repeat_penalty, -1.0f, "repeat_penalty");
    REJECT(repeat_penalty, NAN, "repeat_penalty");
    REJECT(repeat_penalty, INFINITY, "repeat_penalty");
    REJECT(frequency_penalty, NAN, "frequency_penalty");
    REJECT(presence_penalty, -INFINITY, "presence_penalty");
    REJECT(repeat_last_n, -2, "repeat_last_n");
    REJECT(repeat_last_n, SAMPLER_MAX_PENALTY_WINDOW + 1, "repeat_last_n");
#undef REJECT
    expect_rejected(ok, 0, "vocabulary");
    expect_rejected(ok, -5, "vocabulary");

    sampler *s = (sampler *)1;
    hearth_error err = {0};
    CHECK(sampler_create(NULL, 10, &s, &err) == HEARTH_ERR_ARG && s == NULL);

    /* The edges that are valid: off switches and extremes. */
    p = ok;
    p.temperature = -1.0f, p.top_k = -3, p.top_p = 1.5f, p.min_p = -1.0f, p.repeat_last_n = -1;
    p.frequency_penalty = -0.5f, p.presence_penalty = -0.5f, p.repeat_penalty = 0.5f;
    sampler_free(make(p, 1));
    p = ok;
    p.top_p = 0.0f, p.min_p = 1.0f, p.top_k = 1000, p.repeat_last_n = SAMPLER_MAX_PENALTY_WINDOW;
    sampler_free(make(p, 3));
    sampler_free(NULL);
}

static void test_greedy(void)
{
    const float logits[] = {0.5f, 3.0f, -2.0f, 3.0f, 2.9f};
    sampler *s = make(plain_params(0.0f), 5);
    CHECK(sampler_sample(s, logits) == 1); /* tie between 1 and 3 -> lowest id */
    sampler_free(s);

    sampler_params p = sampler_default_params();
    p.temperature = -1.0f; /* negative also means greedy, and the truncations change nothing */
    s = make(p, 5);
    for (int i = 0; i < 10; i++)
        CHECK(sampler_sample(s, logits) == 1);
    sampler_free(s);
}

static void test_top_k_one_is_greedy(void)
{
    enum { N = 1000 };
    static float logits[N];
    const float temperatures[] = {0.1f, 1.0f, 5.0f, 100.0f};
    for (size_t t = 0; t < sizeof temperatures / sizeof *temperatures; t++) {
        sampler_params p = plain_params(temperatures[t]);
        p.top_k = 1;
        sampler *s = make(p, N);
        sampler *greedy = make(plain_params(0.0f), N);
        for (int round = 0; round < 50; round++) {
            for (int i = 0; i < N; i++)
                logits[i] = (float)(int)(test_normal(3.0f) * 2) / 2; /* coarse values: many ties */
            int32_t want = sampler_sample(greedy, logits);
            int32_t got = sampler_sample(s, logits);
            CHECK_MSG(got == want, "T=%g: top_k=1 gave %d, greedy %d", (double)temperatures[t], got, want);
        }
        sampler_free(s);
        sampler_free(greedy);
    }
}

static void draw_many(sampler *s, const float *logits, int32_t *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = sampler_sample(s, logits);
}

static void test_seed_reproducibility(void)
{
    enum { V = 50, DRAWS = 1000 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = test_normal(1.0f);
    static int32_t a[DRAWS], b[DRAWS], c[DRAWS];

    sampler_params p = sampler_default_params();
    p.seed = 7;
    sampler *s1 = make(p, V), *s2 = make(p, V);
    draw_many(s1, logits, a, DRAWS);
    draw_many(s2, logits, b, DRAWS);
    CHECK(memcmp(a, b, sizeof a) == 0);

    sampler_reset(s1); /* re-seeds: the same stream again */
    draw_many(s1, logits, c, DRAWS);
    CHECK(memcmp(a, c, sizeof a) == 0);

    p.seed = 8;
    sampler *s3 = make(p, V);
    draw_many(s3, logits, c, DRAWS);
    int differ = 0;
    for (int i = 0; i < DRAWS; i++)
        differ += a[i] != c[i];
    CHECK_MSG(differ > DRAWS / 4, "seeds 7 and 8 differ in only %d of %d draws", differ, DRAWS);

    int32_t distinct = 0;
    for (int i = 0; i < V; i++) {
        bool seen = false;
        for (int j = 0; j < DRAWS; j++)
            seen = seen || a[j] == i;
        distinct += seen;
    }
    CHECK_MSG(distinct > 3, "only %d distinct tokens in %d draws", distinct, DRAWS);
    sampler_free(s1);
    sampler_free(s2);
    sampler_free(s3);

    /* The stream is pinned: over 16 equal logits every weight is exactly 1,
     * so a draw is the top 4 bits of the generator's output, with no libm in
     * between. Expected: splitmix64-seeded xoshiro256**, seed 7, computed by
     * an independent implementation of the published algorithms. */
    const int32_t pinned[24] = {11, 4, 13, 15, 15, 13, 0, 1, 6, 2, 8, 11, 15, 14, 7, 8, 4, 7, 2, 2, 2, 10, 10, 4};
    float flat[16];
    for (int i = 0; i < 16; i++)
        flat[i] = 0.25f;
    p = plain_params(1.0f);
    p.seed = 7;
    sampler *s4 = make(p, 16);
    for (int i = 0; i < 24; i++) {
        int32_t t = sampler_sample(s4, flat);
        CHECK_MSG(t == pinned[i], "draw %d: %d, expected %d", i, t, pinned[i]);
    }
    sampler_free(s4);
}

/* Draws `draws` tokens and compares the counts with probabilities `want`
 * (zero where a token must never appear) by Pearson's chi-square. The bound
 * of 40 is far above any plausible value for the few degrees of freedom used
 * here (p < 1e-6 for 8 dof); the draws are seeded, so the test is
 * deterministic anyway. */
static void check_distribution(const char *what, sampler *s, const float *logits, int32_t n_vocab, const double *want,
                               int draws)
{
    int32_t counts[16] = {0}, out_of_range = 0;
    for (int i = 0; i < draws; i++) {
        int32_t t = sampler_sample(s, logits);
        if (t >= 0 && t < n_vocab)
            counts[t]++;
        else
            out_of_range++;
    }
    CHECK_MSG(out_of_range == 0, "%s: %d tokens out of range", what, out_of_range);
    double chi2 = 0.0;
    for (int32_t t = 0; t < n_vocab; t++) {
        if (want[t] == 0.0) {
            CHECK_MSG(counts[t] == 0, "%s: token %d was excluded but drawn %d times", what, t, counts[t]);
            continue;
        }
        double expected = want[t] * draws;
        chi2 += (counts[t] - expected) * (counts[t] - expected) / expected;
    }
    CHECK_MSG(chi2 < 40.0, "%s: chi-square %.1f", what, chi2);
}

/* softmax(logits/T) restricted to `keep` (NULL: all). */
static void softmax_over(const float *logits, int32_t n, float temperature, const bool *keep, double *out)
{
    double max = -INFINITY, sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        if ((!keep || keep[i]) && logits[i] > max)
            max = logits[i];
    for (int32_t i = 0; i < n; i++) {
        out[i] = (!keep || keep[i]) ? exp((logits[i] - max) / temperature) : 0.0;
        sum += out[i];
    }
    for (int32_t i = 0; i < n; i++)
        out[i] /= sum;
}

static void test_distribution(void)
{
    enum { V = 6, DRAWS = 100000 };
    const float logits[V] = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 2.0f};
    double want[V];
    const float temperatures[] = {0.7f, 1.0f, 1.5f};
    for (size_t i = 0; i < sizeof temperatures / sizeof *temperatures; i++) {
        sampler *s = make(plain_params(temperatures[i]), V);
        softmax_over(logits, V, temperatures[i], NULL, want);
        check_distribution("plain softmax", s, logits, V, want, DRAWS);
        sampler_free(s);
    }

    /* top_k = 3 keeps tokens 5, 0, 1; temperature applies to what is left. */
    sampler_params p = plain_params(1.3f);
    p.top_k = 3;
    sampler *s = make(p, V);
    const bool top3[V] = {true, true, false, false, false, true};
    softmax_over(logits, V, 1.3f, top3, want);
    check_distribution("top_k 3", s, logits, V, want, DRAWS);
    sampler_free(s);

    /* The default chain on a small vocabulary: top_p 0.95 and min_p 0.05 cut
     * by probabilities at T = 1 (here top-p drops token 4 and min-p nothing
     * more), then the draw at T = 0.8 over what is left. */
    double at_one[V];
    softmax_over(logits, V, 1.0f, NULL, at_one);
    const int order[V] = {5, 0, 1, 2, 3, 4};
    bool keep[V] = {false};
    double mass = 0.0;
    for (int i = 0; i < V; i++) {
        keep[order[i]] = true;
        mass += at_one[order[i]];
        if (mass >= 0.95)
            break;
    }
    for (int i = 0; i < V; i++)
        if (at_one[i] < 0.05 * at_one[5])
            keep[i] = false;
    p = sampler_default_params();
    s = make(p, V);
    softmax_over(logits, V, p.temperature, keep, want);
    check_distribution("default chain", s, logits, V, want, DRAWS);
    sampler_free(s);
}

static void test_top_p_and_min_p_exclude(void)
{
    enum { V = 4, DRAWS = 20000 };
    /* Probabilities .5 .3 .15 .05: top_p 0.75 keeps the first two, whatever
     * the temperature (top-p is measured at T = 1). */
    const float logits[V] = {logf(0.3f), logf(0.5f), logf(0.05f), logf(0.15f)};
    double want[V];
    const bool keep_p[V] = {true, true, false, false};
    for (int with_top_k = 0; with_top_k < 2; with_top_k++) {
        sampler_params p = plain_params(10.0f);
        p.top_p = 0.75f;
        p.top_k = with_top_k ? 3 : 0; /* sorted and unsorted paths */
        sampler *s = make(p, V);
        softmax_over(logits, V, 10.0f, keep_p, want);
        check_distribution("top_p 0.75", s, logits, V, want, DRAWS);
        sampler_free(s);

        /* min_p 0.2: keeps p >= 0.1, i.e. all but 0.05. */
        p = plain_params(10.0f);
        p.min_p = 0.2f;
        p.top_k = with_top_k ? 4 : 0;
        s = make(p, V);
        const bool keep_min[V] = {true, true, false, true};
        softmax_over(logits, V, 10.0f, keep_min, want);
        check_distribution("min_p 0.2", s, logits, V, want, DRAWS);
        sampler_free(s);
    }

    /* top_p 0 keeps only the best. */
    sampler_params p = plain_params(10.0f);
    p.top_p = 0.0f;
    sampler *s = make(p, V);
    for (int i = 0; i < 100; i++)
        CHECK(sampler_sample(s, logits) == 1);
    sampler_free(s);
}

static int compare_desc(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b ? 1 : 0;
}

/* A Gemma-sized vocabulary: the heap (top-k) and bucket (top-p, large top-k)
 * paths must keep exactly the tokens of the definition. */
static void test_large_vocab_truncation(void)
{
    enum { V = 262144, DRAWS = 100 };
    float *logits = malloc(V * sizeof *logits);
    float *sorted_logits = malloc(V * sizeof *sorted_logits);
    if (!logits || !sorted_logits) {
        free(logits);
        free(sorted_logits);
        CHECK(false);
        return;
    }
    for (int i = 0; i < V; i++)
        logits[i] = test_normal(2.0f);
    /* The n-th best logit is sorted_logits[n - 1]; random floats: no ties. */
    for (int i = 0; i < V; i++)
        sorted_logits[i] = logits[i];
    qsort(sorted_logits, V, sizeof *sorted_logits, compare_desc);

    const int32_t ks[] = {1, 40, 1000, 5000, 100000};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        sampler_params p = plain_params(3.0f);
        p.top_k = ks[i];
        sampler *s = make(p, V);
        float lowest = INFINITY;
        for (int d = 0; d < DRAWS; d++) {
            float l = logits[sampler_sample(s, logits)];
            lowest = l < lowest ? l : lowest;
        }
        CHECK_MSG(lowest >= sorted_logits[ks[i] - 1], "top_k %d drew logit %g, below the k-th best %g", ks[i],
                  (double)lowest, (double)sorted_logits[ks[i] - 1]);
        sampler_free(s);
    }

    /* top_p 0.9 without top-k: the kept set is the best m tokens, m from
     * the definition. */
    double total = 0.0;
    for (int i = 0; i < V; i++)
        total += exp((double)sorted_logits[i] - sorted_logits[0]);
    double mass = 0.0;
    int32_t m = 0;
    while (m < V && mass < 0.9 * total)
        mass += exp((double)sorted_logits[m++] - sorted_logits[0]);
    sampler_params p = plain_params(5.0f);
    p.top_p = 0.9f;
    sampler *s = make(p, V);
    float lowest = INFINITY;
    for (int d = 0; d < DRAWS; d++) {
        float l = logits[sampler_sample(s, logits)];
        lowest = l < lowest ? l : lowest;
    }
    /* One token of slack: float rounding of the running sum may move the
     * boundary by one. */
    CHECK_MSG(lowest >= sorted_logits[m], "top_p 0.9 keeps %d tokens but drew logit %g < %g", m, (double)lowest,
              (double)sorted_logits[m]);
    CHECK_MSG(lowest < sorted_logits[m / 2], "top_p 0.9: the draws look too narrow (lowest %g)", (double)lowest);
    sampler_free(s);

    /* min_p alone, unsorted path: nothing below max + log(min_p). */
    p = plain_params(5.0f);
    p.min_p = 0.01f;
    s = make(p, V);
    float threshold = sorted_logits[0] + logf(0.01f);
    for (int d = 0; d < DRAWS; d++) {
        int32_t t = sampler_sample(s, logits);
        CHECK_MSG(logits[t] >= threshold, "min_p drew logit %g below %g", (double)logits[t], (double)threshold);
    }
    sampler_free(s);
    free(logits);
    free(sorted_logits);
}

/* Equal logits: top-p over a flat distribution keeps the lowest ids (ties
 * rank by id), and must not degrade into anything worse than a sort. */
static void test_flat_distribution(void)
{
    enum { V = 4096 };
    static float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = 1.5f;
    sampler_params p = plain_params(1.0f);
    p.top_p = 0.5f;
    sampler *s = make(p, V);
    int32_t highest = 0;
    for (int d = 0; d < 2000; d++) {
        int32_t t = sampler_sample(s, logits);
        highest = t > highest ? t : highest;
    }
    CHECK_MSG(highest < V / 2 && highest > V / 2 - 50, "flat top_p 0.5: highest id drawn %d", highest);
    sampler_free(s);

    p = plain_params(1.0f);
    p.top_k = 2000; /* large k: the bucket path, all in one bucket */
    s = make(p, V);
    highest = 0;
    for (int d = 0; d < 2000; d++) {
        int32_t t = sampler_sample(s, logits);
        highest = t > highest ? t : highest;
    }
    CHECK_MSG(highest < 2000 && highest > 1900, "flat top_k 2000: highest id drawn %d", highest);
    sampler_free(s);
}

/* Greedy on two candidates: token 0 (penalized) against a rival just below
 * or just above the value the penalty should give it. */
static void expect_penalized_value(sampler_params p, const int32_t *accepted, int n_accepted, float logit, float want)
{
    p.temperature = 0.0f;
    for (int side = 0; side < 2; side++) {
        float rival = side ? want + 0.01f : want - 0.01f;
        float logits[3] = {logit, rival, -100.0f};
        sampler *s = make(p, 3);
        for (int i = 0; i < n_accepted; i++)
            sampler_accept(s, accepted[i]);
        int32_t got = sampler_sample(s, logits);
        CHECK_MSG(got == (side ? 1 : 0), "logit %g should become %g: against %g greedy chose %d", (double)logit,
                  (double)want, (double)rival, got);
        sampler_free(s);
    }
}

static void test_penalties(void)
{
    sampler_params p = plain_params(0.0f);
    p.repeat_penalty = 1.25f;
    const int32_t once[] = {0}, twice[] = {0, 2, 0}, others[] = {2, 2};
    expect_penalized_value(p, once, 1, 2.0f, 1.6f);   /* positive: divided */
    expect_penalized_value(p, once, 1, -2.0f, -2.5f); /* negative: multiplied */
    expect_penalized_value(p, twice, 3, 2.0f, 1.6f);  /* the count does not matter */
    expect_penalized_value(p, others, 2, 2.0f, 2.0f); /* not seen: untouched */
    expect_penalized_value(p, once, 1, 0.0f, 0.0f);

    p = plain_params(0.0f);
    p.frequency_penalty = 0.25f;
    expect_penalized_value(p, once, 1, 3.0f, 2.75f);
    expect_penalized_value(p, twice, 3, 3.0f, 2.5f);

    p = plain_params(0.0f);
    p.presence_penalty = 0.5f;
    expect_penalized_value(p, once, 1, 3.0f, 2.5f);
    expect_penalized_value(p, twice, 3, 3.0f, 2.5f);
    expect_penalized_value(p, others, 2, 3.0f, 3.0f);

    /* All three: 3 / 1.5 - 2 * 0.25 - 0.5 = 1.0 */
    p = plain_params(0.0f);
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    expect_penalized_value(p, twice, 3, 3.0f, 1.0f);
    /* Negative penalties reward, as in llama.cpp. */
    p = plain_params(0.0f);
    p.presence_penalty = -0.5f;
    expect_penalized_value(p, once, 1, 3.0f, 3.5f);

    /* The window: with the last 2 tokens only, 0 followed by 2, 2 is forgotten. */
    p = plain_params(0.0f);
    p.repeat_penalty = 1.25f;
    p.repeat_last_n = 2;
    const int32_t aged_out[] = {0, 2, 2};
    expect_penalized_value(p, aged_out, 3, 2.0f, 2.0f);
    const int32_t still_in[] = {2, 0, 2};
    expect_penalized_value(p, still_in, 3, 2.0f, 1.6f);
    /* Frequency counts only what is inside the window: 0,0 then 0 again
     * with last_n 2 -> count 2, not 3. */
    p = plain_params(0.0f);
    p.frequency_penalty = 0.25f;
    p.repeat_last_n = 2;
    const int32_t thrice[] = {0, 0, 0};
    expect_penalized_value(p, thrice, 3, 3.0f, 2.5f);

    /* Off: last_n 0. All seen: -1 remembers a token 1000 tokens back. */
    p = plain_params(0.0f);
    p.repeat_penalty = 1.25f;
    p.repeat_last_n = 0;
    expect_penalized_value(p, once, 1, 2.0f, 2.0f);
    p.repeat_last_n = -1;
    {
        enum { V = 2000 };
        static float logits[V];
        for (int i = 0; i < V; i++)
            logits[i] = -50.0f;
        logits[0] = 2.0f;
        logits[1] = 1.7f;
        sampler *s = make(p, V);
        sampler_accept(s, 0);
        for (int i = 0; i < 1000; i++)
            sampler_accept(s, 2 + i % (V - 2));
        CHECK(sampler_sample(s, logits) == 1);
        sampler_reset(s); /* forgets */
        CHECK(sampler_sample(s, logits) == 0);
        sampler_accept(s, -1); /* out of range: ignored */
        sampler_accept(s, V);
        CHECK(sampler_sample(s, logits) == 0);
        sampler_free(s);
    }

    /* Penalties come before the truncations: with top_k 1 and a penalized
     * favourite, the rival is the only candidate left. */
    p = plain_params(1.0f);
    p.top_k = 1;
    p.repeat_penalty = 2.0f;
    {
        const float logits[3] = {2.0f, 1.5f, 0.0f};
        sampler *s = make(p, 3);
        sampler_accept(s, 0);
        for (int i = 0; i < 50; i++)
            CHECK(sampler_sample(s, logits) == 1);
        sampler_free(s);
    }
}

static void test_nonfinite_logits(void)
{
    enum { V = 300 };
    static float all_nan[V], all_neg_inf[V], one_finite[V], pos_inf[V], mixed[V];
    for (int i = 0; i < V; i++) {
        all_nan[i] = NAN;
        all_neg_inf[i] = -INFINITY;
        one_finite[i] = i % 2 ? NAN : -INFINITY;
        pos_inf[i] = test_normal(1.0f);
        mixed[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? -INFINITY : test_normal(10.0f);
    }
    one_finite[123] = -7.0f;
    pos_inf[77] = INFINITY;
    pos_inf[200] = INFINITY;
    pos_inf[5] = FLT_MAX;

    sampler_params configs[6];
    configs[0] = plain_params(0.0f);
    configs[1] = plain_params(1.0f);
    configs[2] = sampler_default_params();
    configs[3] = plain_params(0.01f);
    configs[3].top_p = 0.5f;
    configs[4] = plain_params(2.0f);
    configs[4].min_p = 0.5f;
    configs[5] = sampler_default_params();
    configs[5].repeat_penalty = 1.3f;
    configs[5].frequency_penalty = -FLT_MAX; /* pushes seen logits towards +inf */
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        sampler *s = make(configs[c], V);
        sampler_accept(s, 10);
        sampler_accept(s, 123);
        for (int d = 0; d < 20; d++) {
            int32_t t = sampler_sample(s, all_nan);
            CHECK_MSG(t >= 0 && t < V, "config %zu, all NaN: %d", c, t);
            t = sampler_sample(s, all_neg_inf);
            CHECK_MSG(t >= 0 && t < V, "config %zu, all -inf: %d", c, t);
            t = sampler_sample(s, mixed);
            CHECK_MSG(t >= 0 && t < V && t % 3 == 2, "config %zu, mixed: %d", c, t);
            if (c != 5) { /* config 5 rewards tokens 10 and 123 without bound */
                t = sampler_sample(s, one_finite);
                CHECK_MSG(t == 123, "config %zu, one finite logit: %d", c, t);
                t = sampler_sample(s, pos_inf);
                CHECK_MSG(t == 77 || t == 200 || t == 5, "config %zu, +inf: %d", c, t);
            } else {
                t = sampler_sample(s, pos_inf);
                CHECK_MSG(t >= 0 && t < V, "config %zu, +inf: %d", c, t);
            }
        }
        sampler_free(s);
    }
}

/* Biases come first: before greedy's argmax, before the penalties and the
 * truncations; -inf bans a token whatever else happens; repeated ids add up;
 * the sampler keeps its own copy. */
static void test_logit_bias(void)
{
    const float logits[] = {0.5f, 3.0f, -2.0f, 2.0f, 2.9f};
    sampler_bias ban_best[] = {{1, -INFINITY}}, lift_worst[] = {{2, 3.0f}, {2, 2.5f}};
    sampler_params p = plain_params(0.0f);
    p.logit_bias = ban_best, p.n_logit_bias = 1;
    sampler *s = make(p, 5);
    CHECK(sampler_sample(s, logits) == 4);
    sampler_free(s);

    sampler_bias *copy = malloc(sizeof lift_worst);
    memcpy(copy, lift_worst, sizeof lift_worst);
    p.logit_bias = copy, p.n_logit_bias = 2;
    s = make(p, 5);
    free(copy); /* -2 + 3 + 2.5 = 3.5 beats 3.0 */
    CHECK(sampler_sample(s, logits) == 2);
    sampler_free(s);

    /* A banned token is never drawn, even at a high temperature with no truncation. */
    p = plain_params(5.0f);
    p.logit_bias = ban_best, p.n_logit_bias = 1;
    s = make(p, 5);
    int drawn_banned = 0;
    for (int i = 0; i < 2000; i++)
        drawn_banned += sampler_sample(s, logits) == 1;
    CHECK(drawn_banned == 0);
    sampler_free(s);

    /* Before the penalties: a repeat penalty of 2 halves the biased logit (3 + 1 = 4 -> 2), not 3 -> 1.5 then + 1. */
    sampler_bias lift_best[] = {{1, 1.0f}};
    p = plain_params(0.0f);
    p.repeat_penalty = 2.0f, p.repeat_last_n = 8;
    p.logit_bias = lift_best, p.n_logit_bias = 1;
    const float near[] = {0.0f, 3.0f, 2.2f};
    s = make(p, 3);
    sampler_accept(s, 1);
    CHECK(sampler_sample(s, near) == 2); /* 2 < 2.2; the other order would give 2.5 > 2.2 */
    sampler_free(s);

    sampler_params bad = plain_params(0.0f);
    sampler_bias out_of_range[] = {{5, 1.0f}}, negative[] = {{-1, 1.0f}}, nan_bias[] = {{0, NAN}},
                 plus_inf[] = {{0, INFINITY}};
    bad.n_logit_bias = 1;
    bad.logit_bias = out_of_range, expect_rejected(bad, 5, "token 5");
    bad.logit_bias = negative, expect_rejected(bad, 5, "token -1");
    bad.logit_bias = nan_bias, expect_rejected(bad, 5, "finite or -inf");
    bad.logit_bias = plus_inf, expect_rejected(bad, 5, "finite or -inf");
    bad.logit_bias = NULL, expect_rejected(bad, 5, "logit biases");
}

int main(void)
{
    test_defaults();
    test_invalid_params();
    test_greedy();
    test_top_k_one_is_greedy();
    test_seed_reproducibility();
    test_distribution();
    test_top_p_and_min_p_exclude();
    test_large_vocab_truncation();
    test_flat_distribution();
    test_penalties();
    test_nonfinite_logits();
    test_logit_bias();
    return test_finish("test_sampler");
}

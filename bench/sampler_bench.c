/* Time per sampler_sample call on a large vocabulary (default 262,144, the
 * Gemma 3 vocabulary), for the chains that matter: llama.cpp's defaults,
 * greedy, top-p without top-k, and a plain softmax draw.
 *
 *   hearth-bench-sampler [n_vocab] [iterations] */
#include "runtime/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Logits ~ N(0, sigma^2) from a fixed LCG + Box-Muller: the shape real
 * logits roughly have, reproducible run to run. */
static void fill_logits(float *logits, int32_t n, float sigma, uint64_t seed)
{
    uint64_t x = seed;
    for (int32_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((double)(x >> 11) + 1.0) * 0x1.0p-53;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (double)(x >> 11) * 0x1.0p-53;
        logits[i] = (float)(sigma * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

static void run(const char *name, sampler_params p, const float *logits, int32_t n_vocab, int iterations)
{
    sampler *s;
    hearth_error err;
    if (sampler_create(&p, n_vocab, &s, &err) != HEARTH_OK) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        exit(1);
    }
    for (int i = 0; i < 64; i++)
        sampler_accept(s, (int32_t)(i * 4099 % n_vocab));
    int64_t checksum = 0;
    double t0 = now_seconds();
    for (int i = 0; i < iterations; i++)
        checksum += sampler_sample(s, logits);
    double per_call_ms = (now_seconds() - t0) * 1e3 / iterations;
    printf("%-44s %8.3f ms/sample  (checksum %lld)\n", name, per_call_ms, (long long)checksum);
    sampler_free(s);
}

int main(int argc, char **argv)
{
    int32_t n_vocab = argc > 1 ? atoi(argv[1]) : 262144;
    int iterations = argc > 2 ? atoi(argv[2]) : 200;
    if (n_vocab <= 0 || iterations <= 0) {
        fprintf(stderr, "usage: %s [n_vocab] [iterations]\n", argv[0]);
        return 2;
    }
    float *narrow = malloc((size_t)n_vocab * sizeof *narrow);
    float *wide = malloc((size_t)n_vocab * sizeof *wide);
    if (!narrow || !wide)
        return 1;
    fill_logits(narrow, n_vocab, 1.0f, 1);
    fill_logits(wide, n_vocab, 3.0f, 2);
    printf("n_vocab %d, %d iterations each\n", (int)n_vocab, iterations);

    sampler_params p = sampler_default_params();
    run("default chain (k 40, p 0.95, min_p 0.05)", p, wide, n_vocab, iterations);
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.1f;
    run("default chain + penalties over 64 tokens", p, wide, n_vocab, iterations);

    p = sampler_default_params();
    p.temperature = 0.0f;
    run("greedy", p, wide, n_vocab, iterations);

    p = sampler_default_params();
    p.top_k = 0;
    p.min_p = 0.0f;
    run("top_k off, top_p 0.95, logits N(0,3)", p, wide, n_vocab, iterations);
    run("top_k off, top_p 0.95, logits N(0,1)", p, narrow, n_vocab, iterations);

    p.min_p = 0.05f;
    run("top_k off, top_p 0.95, min_p 0.05, N(0,3)", p, wide, n_vocab, iterations);

    p = sampler_default_params();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    run("no truncation (softmax draw over all)", p, wide, n_vocab, iterations);

    free(narrow);
    free(wide);
    return 0;
}

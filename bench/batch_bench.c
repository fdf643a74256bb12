/* Decode throughput of several sequences through one forward pass
 * (model_forward_batch), as the server's parallel slots decode: for each
 * count of sequences N, every sequence is first given a prompt of P tokens,
 * then G passes each take one new token of every sequence (N tokens, N rows
 * of logits). Reports the passes' aggregate tokens/s (N x G / seconds) and
 * the ratio to one sequence. Decode reads every weight once per pass, so
 * while the weights' bandwidth bounds it, N sequences cost little more than
 * one. "plain" is one sequence through model_forward, for comparison.
 *
 *   hearth-bench-batch [-m FILE] [-t THREADS] [-p P] [-n G] [-r REPEATS] [N...]
 *
 * Defaults: the default model, physical cores, P 64, G 64, best of 3
 * repetitions (after one untimed), N = 1 4 8. Wall-clock times: run it on a
 * quiet machine. */
#include "base/clock.h"
#include "base/paths.h"
#include "base/threadpool.h"
#include "model/model.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_COUNTS = 16 };

typedef struct bench_config {
    const model *m;
    threadpool *pool;
    int32_t n_prompt, n_gen, repeats;
} bench_config;

static int32_t token_for(const bench_config *c, int32_t seq, int32_t i)
{
    return (int32_t)(100 + ((uint64_t)i * 7919u + (uint64_t)seq * 104729u) % (uint64_t)(model_n_vocab(c->m) - 100));
}

/* One run: n_seq sequences' prompts, then the timed decode passes. plain:
 * one sequence through model_forward instead. Returns seconds, < 0 on error. */
static double run_once(const bench_config *c, model_state *st, int32_t n_seq, bool plain, int32_t *tokens,
                       int32_t *seq, int32_t *pos, bool *output, float *logits, hearth_error *err)
{
    for (int32_t s = 0; s < n_seq; s++) {
        for (int32_t i = 0; i < c->n_prompt; i++) {
            tokens[i] = token_for(c, s, i);
            seq[i] = s;
            pos[i] = i;
            output[i] = i == c->n_prompt - 1;
        }
        model_batch b = {.n = c->n_prompt, .tokens = tokens, .seq = seq, .pos = pos, .output = output};
        if (model_forward_batch(c->m, st, c->pool, &b, logits, err) != HEARTH_OK)
            return -1.0;
    }
    double start = clock_seconds();
    for (int32_t g = 0; g < c->n_gen; g++) {
        for (int32_t s = 0; s < n_seq; s++) {
            tokens[s] = token_for(c, s, c->n_prompt + g);
            seq[s] = s;
            pos[s] = c->n_prompt + g;
            output[s] = true;
        }
        model_batch b = {.n = n_seq, .tokens = tokens, .seq = seq, .pos = pos, .output = output};
        hearth_status st_ = plain ? model_forward(c->m, st, c->pool, tokens, 1, pos[0], 0, logits, err)
                                  : model_forward_batch(c->m, st, c->pool, &b, logits, err);
        if (st_ != HEARTH_OK)
            return -1.0;
    }
    return clock_seconds() - start;
}

/* Best tokens/s of c->repeats runs (after one untimed); < 0 on error. */
static double measure(const bench_config *c, int32_t n_seq, bool plain, hearth_error *err)
{
    const int32_t n_ctx = c->n_prompt + c->n_gen;
    const int32_t n_batch = c->n_prompt > n_seq ? c->n_prompt : n_seq;
    model_state *st = NULL;
    int32_t *tokens = malloc((size_t)n_batch * 3 * sizeof(int32_t));
    bool *output = malloc((size_t)n_batch * sizeof(bool));
    float *logits = malloc((size_t)n_seq * (size_t)model_n_vocab(c->m) * sizeof(float));
    double best = -1.0;
    if (tokens && output && logits &&
        model_state_create_multi(c->m, n_seq, n_ctx, n_batch, &st, err) == HEARTH_OK) {
        best = 0.0;
        for (int r = 0; r <= c->repeats && best >= 0.0; r++) {
            double seconds = run_once(c, st, n_seq, plain, tokens, tokens + n_batch, tokens + 2 * n_batch, output,
                                      logits, err);
            double rate = seconds > 0.0 ? (double)n_seq * c->n_gen / seconds : -1.0;
            if (rate < 0.0)
                best = -1.0;
            else if (r > 0 && rate > best)
                best = rate;
        }
    } else if (!tokens || !output || !logits) {
        snprintf(err->message, sizeof err->message, "out of memory");
    }
    model_state_free(st);
    free(tokens);
    free(output);
    free(logits);
    return best;
}

static bool parse_int(const char *s, long min, long max, int32_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return false;
    *out = (int32_t)v;
    return true;
}

int main(int argc, char **argv)
{
    char default_model[4096];
    const char *path = paths_default_model(default_model, sizeof default_model) ? default_model : NULL;
    int32_t n_threads = threadpool_default_threads(), counts[MAX_COUNTS], n_counts = 0;
    bench_config c = {.n_prompt = 64, .n_gen = 64, .repeats = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool value = i + 1 < argc;
        bool ok = true;
        if (!strcmp(a, "-m") && value)
            path = argv[++i];
        else if (!strcmp(a, "-t") && value)
            ok = parse_int(argv[++i], 1, 1024, &n_threads);
        else if (!strcmp(a, "-p") && value)
            ok = parse_int(argv[++i], 1, 1 << 20, &c.n_prompt);
        else if (!strcmp(a, "-n") && value)
            ok = parse_int(argv[++i], 1, 1 << 20, &c.n_gen);
        else if (!strcmp(a, "-r") && value)
            ok = parse_int(argv[++i], 1, 1000, &c.repeats);
        else if (a[0] != '-' && n_counts < MAX_COUNTS)
            ok = parse_int(a, 1, MODEL_MAX_SEQUENCES, &counts[n_counts++]);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "usage: hearth-bench-batch [-m FILE] [-t THREADS] [-p P] [-n G] [-r REPEATS] "
                            "[N...] (N: 1 to %d sequences)\n",
                    MODEL_MAX_SEQUENCES);
            return 2;
        }
    }
    if (n_counts == 0) {
        counts[0] = 1, counts[1] = 4, counts[2] = 8;
        n_counts = 3;
    }
    if (!path) {
        fprintf(stderr, "hearth-bench-batch: no model (-m FILE)\n");
        return 2;
    }
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    if (model_load(path, &m, &err) != HEARTH_OK || threadpool_create(n_threads, &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth-bench-batch: %s\n", err.message);
        model_free(m);
        return 1;
    }
    c.m = m;
    c.pool = pool;
    printf("%s: %d threads, prompts of %d, %d decode passes, best of %d; %s\n", path, n_threads, c.n_prompt,
           c.n_gen, c.repeats, model_batches_sequences(m) ? "batched" : "one sequence after another");
    printf("%-10s %12s %10s\n", "sequences", "tokens/s", "vs 1");
    int rc = 0;
    double plain = measure(&c, 1, true, &err);
    if (plain < 0.0) {
        fprintf(stderr, "hearth-bench-batch: %s\n", err.message);
        rc = 1;
    } else {
        printf("%-10s %12.1f %10s\n", "1 (plain)", plain, "");
    }
    double one = 0.0;
    for (int i = 0; rc == 0 && i < n_counts; i++) {
        double rate = measure(&c, counts[i], false, &err);
        if (rate < 0.0) {
            fprintf(stderr, "hearth-bench-batch: %d sequences: %s\n", counts[i], err.message);
            rc = 1;
            break;
        }
        if (counts[i] == 1)
            one = rate;
        if (one > 0.0)
            printf("%-10d %12.1f %9.2fx\n", counts[i], rate, rate / one);
        else
            printf("%-10d %12.1f %10s\n", counts[i], rate, "");
    }
    threadpool_free(pool);
    model_free(m);
    return rc;
}

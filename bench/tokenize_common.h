/* The driver bench/tokenize_bench.c (hearth) and bench/tokenize_llama.c
 * (llama.cpp) share, so their figures and id hashes mean the same: each
 * supplies a load and a tokenize function, this does the rest. Plain C:
 * neither hearth's nor llama.cpp's headers.
 *
 *   PROGRAM VOCAB.gguf TEXT [runs]
 *
 * The text is tokenized whole, in one call, without BOS and with special
 * tokens as plain text, runs + 1 times; the first is a warm-up, the fastest
 * of the rest is reported, in one line: tokens, MB/s, ms per MB and a hash
 * of the ids (the same hash: the same ids). */
#ifndef HEARTH_BENCH_TOKENIZE_COMMON_H
#define HEARTH_BENCH_TOKENIZE_COMMON_H

#include "base/clock.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct bench_engine {
    const char *name;
    /* The vocabulary at path, or NULL having said why not. */
    void *(*load)(const char *path);
    /* Tokenizes len bytes into up to cap ids: how many, or -1 having said why. */
    int64_t (*tokenize)(void *vocab, const char *text, size_t len, int32_t *ids, size_t cap);
} bench_engine;

/* FNV-1a over the ids' values. */
static inline uint64_t bench_hash_ids(const int32_t *ids, int64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n; i++) {
        h ^= (uint32_t)ids[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A whole file, or NULL. */
static inline char *bench_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = (char *)malloc((size_t)size + 1)) != NULL && fread(buf, 1, (size_t)size, f) == (size_t)size) {
        *len = (size_t)size;
    } else {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

static inline int bench_main(int argc, char **argv, const bench_engine *e)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s VOCAB.gguf TEXT [runs]\n", argv[0]);
        return 2;
    }
    int runs = argc == 4 ? atoi(argv[3]) : 5;
    size_t len = 0;
    char *text = bench_read_file(argv[2], &len);
    void *vocab = text ? e->load(argv[1]) : NULL;
    if (!text || !vocab) {
        if (!text)
            fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[2]);
        return 1;
    }
    size_t cap = len + 16; /* at most one token per byte */
    int32_t *ids = (int32_t *)malloc(cap * sizeof *ids);
    double best = 0;
    int64_t n = 0;
    for (int r = 0; ids && r <= runs; r++) {
        double t0 = clock_seconds();
        n = e->tokenize(vocab, text, len, ids, cap);
        double dt = clock_seconds() - t0;
        if (n < 0 || (size_t)n > cap)
            return 1;
        if (r > 0 && (best == 0 || dt < best))
            best = dt;
    }
    printf("%-9s %9lld tokens  %8.3f MB/s  %7.1f ms/MB  ids %016llx\n", e->name, (long long)n,
           (double)len / best / 1e6, best * 1e3 / ((double)len / 1e6), (unsigned long long)bench_hash_ids(ids, n));
    free(ids);
    free(text);
    return 0;
}

#endif

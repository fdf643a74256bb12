/* Single-thread throughput of the matrix kernels: one weight matrix (default
 * 2048 x 2048) of each type times a batch of tokens, through ops_matmul as the
 * models call it (activation conversion included), repacked into panels when
 * this CPU packs the type; --rows (or HEARTH_CPU=scalar, which packs nothing)
 * measures the row kernels of ops/dot.h instead.
 *
 *   hearth-bench-matmul [-r REPEATS] [-m ROWS] [-k COLS] [-t TOKENS[,TOKENS...]]
 *                       [--span MIB] [--rows] [TYPE...]
 *
 * Figures, best of REPEATS (after one untimed run):
 *   MAC/cycle  int8 multiply-adds (rows x cols x tokens) per core cycle, the
 *              clock measured just before by a chain of dependent adds (one
 *              per cycle); vpdpbusd on 512 bits peaks at 64 per instruction
 *   GB/s       bytes of the weights as the kernel reads them (packed or
 *              stored) per second: what bounds one-token decode
 * One-token runs cycle through copies of the matrix spanning --span MiB
 * (default 256), so the weights come from memory, as in decode, not from a
 * cache that one small matrix would fit in.
 *
 * Times are the calling thread's CPU time (everything runs on it), so that
 * other jobs sharing the cores are not counted; the hardware they share
 * (caches, memory bandwidth) they still take, so compare types in one run. */
#include "base/cpu.h"
#include "base/threadpool.h"
#include "ops/matmul.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The clock, from register-register adds each depending on the last: one per
 * cycle on every x86 core (bench/limits.c explains the method). */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double clock_ghz(void)
{
#if defined(__x86_64__)
    enum { ADDS = 100, ITERATIONS = 500000 };
    double best = 0;
    for (int r = 0; r < 5; r++) {
        unsigned long chain = (unsigned long)r, step = 1;
        double t0 = cpu_seconds();
        for (int i = 0; i < ITERATIONS; i++)
            __asm__ volatile(".rept 100\n\tadd %1, %0\n\t.endr" : "+r"(chain) : "r"(step));
        double ghz = (double)ADDS * ITERATIONS / (cpu_seconds() - t0) / 1e9;
        best = ghz > best ? ghz : best;
    }
    return best;
#else
    return 0;
#endif
}

/* Roughly normal values from a fixed LCG, with occasional outliers. */
static void fill_values(float *v, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int k = 0; k < 3; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            s += (float)((double)(x >> 11) * 0x1.0p-53 * 2 - 1);
        }
        v[i] = (x >> 7) % 64 == 0 ? 4 * s : s;
    }
}

typedef struct bench_opts {
    int repeats;
    int64_t rows, cols;
    int64_t tokens[8];
    int n_tokens;
    size_t span_bytes;
    bool rows_only; /* never pack */
} bench_opts;

static int bench_type(threadpool *pool, const bench_opts *o, uint32_t type, double ghz)
{
    const quant_traits *t = quant_get_traits(type);
    if (!t || !t->quantize || o->cols % t->block_size != 0) {
        fprintf(stderr, "%s: no reference quantizer, or %lld columns do not divide into its blocks\n",
                t ? t->name : "?", (long long)o->cols);
        return 1;
    }
    size_t row_bytes = (size_t)(o->cols / t->block_size) * t->type_size;
    size_t stored = row_bytes * (size_t)o->rows;
    bool packed = !o->rows_only && ops_packed_supported(type);
    size_t matrix_bytes = packed ? ops_packed_bytes(type, o->rows, o->cols) : stored;
    int64_t max_tokens = 0;
    for (int i = 0; i < o->n_tokens; i++)
        max_tokens = o->tokens[i] > max_tokens ? o->tokens[i] : max_tokens;
    int copies = (int)(o->span_bytes / matrix_bytes) + 1;

    float *values = malloc((size_t)(o->rows * o->cols) * sizeof *values);
    unsigned char *data = malloc(stored), *panels = packed ? malloc(matrix_bytes * (size_t)copies) : NULL;
    float *x = malloc((size_t)(max_tokens * o->cols) * sizeof *x), *y = malloc((size_t)(max_tokens * o->rows) * sizeof *y);
    unsigned char *copies_data = packed ? NULL : malloc(stored * (size_t)copies);
    if (!values || !data || !x || !y || (packed ? !panels : !copies_data)) {
        fprintf(stderr, "%s: out of memory\n", t->name);
        free(values), free(data), free(panels), free(x), free(y), free(copies_data);
        return 1;
    }
    fill_values(values, (size_t)(o->rows * o->cols), 1);
    t->quantize(values, data, o->rows * o->cols);
    fill_values(x, (size_t)(max_tokens * o->cols), 2);
    if (packed) {
        ops_pack_panels(type, data, row_bytes, o->rows, o->cols, 0, (o->rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS,
                        panels);
        for (int c = 1; c < copies; c++)
            memcpy(panels + (size_t)c * matrix_bytes, panels, matrix_bytes);
    } else {
        for (int c = 0; c < copies; c++)
            memcpy(copies_data + (size_t)c * stored, data, stored);
    }
    ops_matrix m = {.type = type, .cols = o->cols, .rows = o->rows, .row_bytes = row_bytes};
    void *scratch = malloc(ops_matmul_scratch_bytes(&m, max_tokens));

    for (int i = 0; i < o->n_tokens; i++) {
        int64_t tokens = o->tokens[i];
        int n_copies = tokens == 1 ? copies : 1;
        double best = 1e30;
        for (int r = 0; r <= o->repeats; r++) {
            double t0 = cpu_seconds();
            for (int c = 0; c < n_copies; c++) {
                m.data = packed ? data : copies_data + (size_t)c * stored;
                m.packed = packed ? panels + (size_t)c * matrix_bytes : NULL;
                ops_matmul(pool, &m, x, o->cols, tokens, y, o->rows, scratch);
            }
            double seconds = (cpu_seconds() - t0) / n_copies;
            if (r > 0 && seconds < best) /* run 0 warms up */
                best = seconds;
        }
        double macs = (double)o->rows * (double)o->cols * (double)tokens;
        printf("%-5s %-6s %5lld tokens  %9.3f ms  %6.1f GMAC/s  %5.1f MAC/cycle", t->name, packed ? "panels" : "rows",
               (long long)tokens, best * 1e3, macs / best / 1e9, ghz > 0 ? macs / best / (ghz * 1e9) : 0.0);
        if (tokens == 1)
            printf("  %5.1f GB/s", (double)matrix_bytes / best / 1e9);
        printf("\n");
    }
    free(values), free(data), free(panels), free(x), free(y), free(copies_data), free(scratch);
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-r REPEATS] [-m ROWS] [-k COLS] [-t TOKENS[,TOKENS...]] [--span MIB] [--rows] [TYPE...]\n",
            argv0);
}

int main(int argc, char **argv)
{
    bench_opts o = {.repeats = 5, .rows = 2048, .cols = 2048, .tokens = {512, 1}, .n_tokens = 2,
                    .span_bytes = (size_t)256 << 20};
    const char *types[QUANT_TYPE_COUNT];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-r") == 0 && v)
            o.repeats = atoi(v), i++;
        else if (strcmp(a, "-m") == 0 && v)
            o.rows = atoll(v), i++;
        else if (strcmp(a, "-k") == 0 && v)
            o.cols = atoll(v), i++;
        else if (strcmp(a, "--span") == 0 && v)
            o.span_bytes = (size_t)atoll(v) << 20, i++;
        else if (strcmp(a, "--rows") == 0)
            o.rows_only = true;
        else if (strcmp(a, "-t") == 0 && v) {
            o.n_tokens = 0;
            for (char *s = argv[++i]; *s && o.n_tokens < 8; s += *s == ',') {
                char *end;
                o.tokens[o.n_tokens++] = strtoll(s, &end, 10);
                s = end;
            }
        } else if (a[0] != '-' && n_types < QUANT_TYPE_COUNT)
            types[n_types++] = a;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    bool sane = o.repeats > 0 && o.rows > 0 && o.cols > 0 && o.n_tokens > 0;
    for (int i = 0; i < o.n_tokens; i++)
        sane = sane && o.tokens[i] > 0;
    if (!sane) {
        usage(argv[0]);
        return 2;
    }
    if (n_types == 0) {
        static const char *const defaults[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
        for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
            types[n_types++] = defaults[i];
    }

    threadpool *pool = NULL;
    hearth_error err = {0};
    if (threadpool_create(1, &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("%lld x %lld, 1 thread, %s%s, best of %d\n", (long long)o.rows, (long long)o.cols,
           cpu_level_name(cpu_best_level()), o.rows_only ? " row kernels" : "", o.repeats);
    int failures = 0;
    for (int i = 0; i < n_types; i++) {
        uint32_t type = QUANT_TYPE_COUNT;
        for (uint32_t k = 0; k < QUANT_TYPE_COUNT; k++)
            if (quant_get_traits(k) && strcmp(quant_get_traits(k)->name, types[i]) == 0)
                type = k;
        if (type == QUANT_TYPE_COUNT) {
            fprintf(stderr, "unknown type %s\n", types[i]);
            failures++;
            continue;
        }
        double ghz = clock_ghz();
        failures += bench_type(pool, &o, type, ghz);
        printf("      (clock %.2f GHz)\n", ghz);
    }
    threadpool_free(pool);
    return failures ? 1 : 0;
}

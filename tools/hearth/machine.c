/* This machine's limits as `hearth fit` reads them: memory from
 * /proc/meminfo, read bandwidth and int8 matrix throughput measured once
 * (well under a second) and kept in the cache dir, keyed by the CPU, the
 * kernel level and the thread count. bench/limits.c measures the same
 * ceilings carefully; this is the quick version a command can afford. */
#define _DEFAULT_SOURCE /* madvise, MAP_ANONYMOUS */
#include "cli.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/cpu.h"
#include "base/paths.h"
#include "base/threadpool.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Four times a big server L3 (32 MiB), so reads come from memory; small enough that
 * touching it and the passes stay well under half a second. */
#define BANDWIDTH_BYTES ((size_t)128 << 20)
#define BANDWIDTH_PASSES 8 /* best of: a shared host takes the CPU away now and then */

/* One panel of a 4096-wide matrix against 16 tokens, over and over: the
 * prefill kernel's inner loop with its operands in cache. */
enum { INT8_COLS = 4096, INT8_PANELS = 4 };
#define INT8_SECONDS 0.1

bool machine_meminfo(uint64_t *total, uint64_t *available)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return false;
    char line[256];
    int found = 0;
    *total = *available = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            *total = (uint64_t)kib * 1024, found |= 1;
        else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            *available = (uint64_t)kib * 1024, found |= 2;
    }
    fclose(f);
    return found == 3;
}

size_t machine_rss(bool peak)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kib = 0;
    const char *key = peak ? "VmHWM: %llu kB" : "VmRSS: %llu kB";
    while (fgets(line, sizeof line, f))
        if (sscanf(line, key, &kib) == 1)
            break;
    fclose(f);
    return (size_t)kib * 1024;
}

static void cpu_model_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, cap, "%s", colon);
            break;
        }
    }
    fclose(f);
}

/* ---- read bandwidth ---------------------------------------------------------- */

typedef struct read_job {
    const uint64_t *words;
    size_t n_words;
    uint64_t sums[64];
} read_job;

static void read_share(void *p, int thread, int n_threads)
{
    read_job *job = p;
    long first, last;
    threadpool_split((long)(job->n_words / 8), 1, thread, n_threads, &first, &last);
    uint64_t s[8] = {0};
    for (size_t i = (size_t)first * 8; i < (size_t)last * 8; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += job->words[i + k];
    job->sums[thread % 64] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static void touch_share(void *p, int thread, int n_threads)
{
    read_job *job = p;
    long first, last;
    threadpool_split((long)job->n_words, 512, thread, n_threads, &first, &last);
    uint64_t *w = (uint64_t *)job->words;
    for (long i = first; i < last; i++)
        w[i] = (uint64_t)i;
}

static double measure_bandwidth(threadpool *pool)
{
    void *buf = mmap(NULL, BANDWIDTH_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return 0;
    madvise(buf, BANDWIDTH_BYTES, MADV_HUGEPAGE); /* as the packed weights: a hint */
    read_job job = {.words = buf, .n_words = BANDWIDTH_BYTES / sizeof(uint64_t)};
    threadpool_run(pool, touch_share, &job); /* each thread's pages near it */
    double best = 0;
    for (int pass = 0; pass < BANDWIDTH_PASSES; pass++) {
        double start = clock_seconds();
        threadpool_run(pool, read_share, &job);
        double s = clock_seconds() - start;
        if (s > 0 && (double)BANDWIDTH_BYTES / s > best)
            best = (double)BANDWIDTH_BYTES / s;
    }
    munmap(buf, BANDWIDTH_BYTES);
    return best;
}

/* ---- int8 throughput ------------------------------------------------------- */

typedef struct int8_job {
    ops_panel_fn kernel;
    const unsigned char *panels; /* INT8_PANELS panels, shared read-only */
    size_t panel_bytes;
    const unsigned char *act; /* OPS_PANEL_TOKENS activation rows */
    size_t act_stride;
    long repeats;
    float y[64][OPS_PANEL_ROWS * OPS_PANEL_TOKENS];
} int8_job;

static void int8_share(void *p, int thread, int n_threads)
{
    (void)n_threads;
    int8_job *job = p;
    float *y = job->y[thread % 64];
    for (long r = 0; r < job->repeats; r++)
        for (int i = 0; i < INT8_PANELS; i++)
            job->kernel(INT8_COLS, job->panels + (size_t)i * job->panel_bytes, job->act, job->act_stride,
                        OPS_PANEL_TOKENS, y, OPS_PANEL_ROWS);
}

/* Multiply-adds x 2 per second through the Q4_K panel kernel (the type of
 * most published files) on all threads; 0 when this CPU packs no Q4_K. */
static double measure_int8(threadpool *pool, int n_threads)
{
    const uint32_t type = QUANT_Q4_K;
    ops_panel_fn kernel = ops_panel_best(type);
    if (!kernel)
        return 0;
    const quant_traits *tr = quant_get_traits(type);
    size_t row_bytes = (size_t)(INT8_COLS / tr->block_size) * tr->type_size;
    int64_t rows = (int64_t)INT8_PANELS * OPS_PANEL_ROWS;
    size_t panel_bytes = ops_panel_bytes(type, INT8_COLS);
    size_t act_stride = ops_packed_act_row_bytes(type, INT8_COLS);
    unsigned char *raw = malloc(row_bytes * (size_t)rows);
    unsigned char *panels = malloc(ops_packed_bytes(type, rows, INT8_COLS));
    unsigned char *act = malloc(act_stride * OPS_PANEL_TOKENS);
    float *x = malloc(INT8_COLS * sizeof *x);
    int8_job *job = calloc(1, sizeof *job);
    double ops_per_s = 0;
    if (raw && panels && act && x && job) {
        /* 0x11 everywhere: small normal scales, no denormals to slow anything. */
        memset(raw, 0x11, row_bytes * (size_t)rows);
        ops_pack_panels(type, raw, row_bytes, rows, INT8_COLS, 0, INT8_PANELS, panels);
        for (int i = 0; i < INT8_COLS; i++)
            x[i] = (float)((i * 37) % 17 - 8) * 0.125f;
        for (int t = 0; t < OPS_PANEL_TOKENS; t++)
            ops_packed_quantize_act(type, x, act + (size_t)t * act_stride, INT8_COLS);
        *job = (int8_job){.kernel = kernel, .panels = panels, .panel_bytes = panel_bytes, .act = act,
                          .act_stride = act_stride, .repeats = 1};
        double ops_per_call = 2.0 * OPS_PANEL_ROWS * INT8_PANELS * INT8_COLS * OPS_PANEL_TOKENS;
        /* Double the repeats until a run takes a tenth of the time, then time
         * one that takes about all of it. */
        double s = 0;
        while (job->repeats < (1L << 24)) {
            double start = clock_seconds();
            threadpool_run(pool, int8_share, job);
            s = clock_seconds() - start;
            if (s > INT8_SECONDS / 10)
                break;
            job->repeats *= 2;
        }
        job->repeats = (long)((double)job->repeats * INT8_SECONDS / (s > 0 ? s : INT8_SECONDS)) + 1;
        double start = clock_seconds();
        threadpool_run(pool, int8_share, job);
        s = clock_seconds() - start;
        if (s > 0)
            ops_per_s = ops_per_call * (double)job->repeats * n_threads / s;
    }
    free(raw);
    free(panels);
    free(act);
    free(x);
    free(job);
    return ops_per_s;
}

/* ---- the cache --------------------------------------------------------------- */

static bool cache_path(char *buf, size_t cap)
{
    char dir[4096];
    if (!paths_cache_dir(dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/machine.json", dir);
    return n > 0 && (size_t)n < cap;
}

static bool cache_read(const char *path, machine_limits *m)
{
    size_t len;
    char why[256];
    FILE *probe = fopen(path, "r");
    if (!probe)
        return false;
    fclose(probe);
    char *text = cli_read_all(path, &len, why, sizeof why);
    if (!text)
        return false;
    cJSON *root = cJSON_Parse(text);
    free(text);
    bool ok = false;
    const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(root, "cpu");
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(root, "level");
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(root, "threads");
    const cJSON *bw = cJSON_GetObjectItemCaseSensitive(root, "read_bytes_per_s");
    const cJSON *int8 = cJSON_GetObjectItemCaseSensitive(root, "int8_ops_per_s");
    if (cJSON_IsString(cpu) && cJSON_IsString(level) && cJSON_IsNumber(threads) && cJSON_IsNumber(bw) &&
        cJSON_IsNumber(int8) && strcmp(cpu->valuestring, m->cpu) == 0 &&
        strcmp(level->valuestring, m->level) == 0 && threads->valuedouble == m->threads && bw->valuedouble > 0) {
        m->read_bytes_per_s = bw->valuedouble;
        m->int8_ops_per_s = int8->valuedouble;
        ok = true;
    }
    cJSON_Delete(root);
    return ok;
}

/* Written whole to a temporary name and renamed over the old file, so a
 * reader never sees half of one; failing to write is only a missed cache. */
static void cache_write(const char *path, const machine_limits *m)
{
    char dir[4096], tmp[4200];
    if (!paths_cache_dir(dir, sizeof dir))
        return;
    /* Failing is left to the fopen after it. */
    paths_make_dirs(dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "{\"cpu\": ");
    out_json_string(f, m->cpu, strlen(m->cpu));
    fprintf(f, ", \"level\": \"%s\", \"threads\": %d, \"read_bytes_per_s\": %.6g, \"int8_ops_per_s\": %.6g}\n",
            m->level, m->threads, m->read_bytes_per_s, m->int8_ops_per_s);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        remove(tmp);
}

hearth_status machine_get_limits(bool remeasure, machine_limits *m, hearth_error *err)
{
    memset(m, 0, sizeof *m);
    cpu_model_name(m->cpu, sizeof m->cpu);
    snprintf(m->level, sizeof m->level, "%s", cpu_level_name(cpu_best_level()));
    m->threads = threadpool_default_threads();
    bool have_path = cache_path(m->cache_path, sizeof m->cache_path);
    if (!have_path)
        m->cache_path[0] = '\0';
    if (!remeasure && have_path && cache_read(m->cache_path, m)) {
        m->cached = true;
        return HEARTH_OK;
    }
    threadpool *pool;
    hearth_status st = threadpool_create(m->threads, &pool, err);
    if (st != HEARTH_OK)
        return st;
    double start = clock_seconds();
    m->read_bytes_per_s = measure_bandwidth(pool);
    m->int8_ops_per_s = measure_int8(pool, m->threads);
    m->seconds = clock_seconds() - start;
    threadpool_free(pool);
    if (m->read_bytes_per_s <= 0)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory measuring the read bandwidth");
    if (have_path)
        cache_write(m->cache_path, m);
    return HEARTH_OK;
}

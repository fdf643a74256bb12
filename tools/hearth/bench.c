/* hearth bench: prompt processing (pp) and generation (tg) speed, measured
 * the way llama-bench measures it, so the two can be put side by side:
 *   pp N: N random tokens from an empty context, in batches, logits for the
 *         last one only;
 *   tg N: N single-token steps from an empty context, the first token BOS;
 * one warm-up run each, then R timed repetitions, mean and sample standard
 * deviation of tokens/s. */
#include "cli.h"

#include "base/clock.h"
#include "base/cpu.h"
#include "runtime/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char bench_usage[] =
    "usage: hearth bench [-m FILE] [-p N] [-n N] [-r N] [-t N] [-b N] [--kv-type T] [--json]\n"
    "\n"
    "Measures prompt processing (pp) and generation (tg) in tokens per second,\n"
    "like llama-bench: mean and standard deviation over the repetitions, after one\n"
    "warm-up run.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE     GGUF model (default: the model scripts/setup.sh installs)\n"
    "  -p, --n-prompt N     prompt tokens for the pp test (default 512; 0: no pp test)\n"
    "  -n, --n-gen N        generated tokens for the tg test (default 128; 0: no tg test)\n"
    "  -r, --repetitions N  timed runs of each test (default 5)\n"
    "  -t, --threads N      threads (default: physical cores)\n"
    "  -b, --batch-size N   tokens per forward pass in pp (default 512)\n"
    "  --kv-type f16|q8_0   KV cache format (default f16)\n"
    "  --json               print a JSON array, one object per test, with llama-bench's\n"
    "                       field names\n"
    "  -h, --help           show this help\n";

#define usage_error(...) cli_usage_error("bench", bench_usage, __VA_ARGS__)

enum { MAX_REPETITIONS = 1000 };

typedef struct bench_test {
    const char *kind; /* "pp" or "tg" */
    int32_t n_prompt, n_gen;
    double samples_ns[MAX_REPETITIONS];
    double samples_ts[MAX_REPETITIONS];
    int n_samples;
    double avg_ns, stddev_ns, avg_ts, stddev_ts;
} bench_test;

/* One run of a test; returns seconds, or a negative value after an error. */
static double run_once(session *s, const bench_test *test, const int32_t *tokens, int32_t bos, hearth_error *err)
{
    session_reset(s);
    double start = clock_seconds();
    if (test->n_prompt > 0) {
        if (session_eval(s, tokens, test->n_prompt, err) != HEARTH_OK)
            return -1.0;
    } else {
        int32_t token = bos;
        for (int32_t i = 0; i < test->n_gen; i++) {
            if (session_eval(s, &token, 1, err) != HEARTH_OK)
                return -1.0;
            token = tokens[i];
        }
    }
    return clock_seconds() - start;
}

static void summarise(bench_test *t)
{
    double sum_ns = 0.0, sum_ts = 0.0;
    for (int i = 0; i < t->n_samples; i++)
        sum_ns += t->samples_ns[i], sum_ts += t->samples_ts[i];
    t->avg_ns = sum_ns / t->n_samples;
    t->avg_ts = sum_ts / t->n_samples;
    double var_ns = 0.0, var_ts = 0.0;
    for (int i = 0; i < t->n_samples; i++) {
        var_ns += (t->samples_ns[i] - t->avg_ns) * (t->samples_ns[i] - t->avg_ns);
        var_ts += (t->samples_ts[i] - t->avg_ts) * (t->samples_ts[i] - t->avg_ts);
    }
    t->stddev_ns = t->n_samples > 1 ? sqrt(var_ns / (t->n_samples - 1)) : 0.0;
    t->stddev_ts = t->n_samples > 1 ? sqrt(var_ts / (t->n_samples - 1)) : 0.0;
}

typedef struct model_facts {
    const char *path, *arch;
    uint64_t size, n_params;
    hearth_kv_type kv_type;
} model_facts;

static void print_json(const model_facts *mf, const bench_test *tests, int n_tests, int n_threads, int n_batch)
{
    printf("[\n");
    for (int i = 0; i < n_tests; i++) {
        const bench_test *t = &tests[i];
        printf("  {\n    \"build_commit\": \"hearth-%s\",\n    \"cpu_info\": \"%s\",\n", HEARTH_VERSION,
               cpu_level_name(cpu_best_level()));
        printf("    \"model_filename\": ");
        out_json_string(stdout, mf->path, strlen(mf->path));
        printf(",\n    \"model_type\": ");
        out_json_string(stdout, mf->arch, strlen(mf->arch));
        printf(",\n    \"model_size\": %llu,\n    \"model_n_params\": %llu,\n", (unsigned long long)mf->size,
               (unsigned long long)mf->n_params);
        printf("    \"n_batch\": %d,\n    \"n_ubatch\": %d,\n    \"n_threads\": %d,\n", n_batch, n_batch, n_threads);
        printf("    \"type_k\": \"%s\",\n    \"type_v\": \"%s\",\n", model_kv_type_name(mf->kv_type),
               model_kv_type_name(mf->kv_type));
        printf("    \"n_prompt\": %d,\n    \"n_gen\": %d,\n", t->n_prompt, t->n_gen);
        printf("    \"avg_ns\": %.0f,\n    \"stddev_ns\": %.0f,\n", t->avg_ns, t->stddev_ns);
        printf("    \"avg_ts\": %.6f,\n    \"stddev_ts\": %.6f,\n", t->avg_ts, t->stddev_ts);
        printf("    \"samples_ns\": [");
        for (int k = 0; k < t->n_samples; k++)
            printf(k ? ", %.0f" : " %.0f", t->samples_ns[k]);
        printf(" ],\n    \"samples_ts\": [");
        for (int k = 0; k < t->n_samples; k++)
            printf(k ? ", %.6f" : " %.6f", t->samples_ts[k]);
        printf(" ]\n  }%s\n", i + 1 < n_tests ? "," : "");
    }
    printf("]\n");
}

static void print_table(const model_facts *mf, const bench_test *tests, int n_tests, int n_threads)
{
    char size[32], params[32], backend[32];
    out_format_bytes(size, sizeof size, mf->size);
    out_format_count(params, sizeof params, mf->n_params);
    /* A KV cache other than f16 shows with the backend (llama-bench adds
     * type_k and type_v columns then). */
    bool quantized = mf->kv_type != HEARTH_KV_F16;
    snprintf(backend, sizeof backend, "CPU %s%s%s", cpu_level_name(cpu_best_level()), quantized ? " kv " : "",
             quantized ? model_kv_type_name(mf->kv_type) : "");
    int width = (int)strlen(backend) > 15 ? (int)strlen(backend) : 15; /* the column widens for a KV type */
    printf("| %-24s | %12s | %12s | %-*s | %7s | %8s | %20s |\n", "model", "size", "params", width, "backend", "threads",
           "test", "t/s");
    printf("| ------------------------ | -----------: | -----------: | %.*s | ------: | -------: "
           "| -------------------: |\n",
           width, "--------------------------------");
    for (int i = 0; i < n_tests; i++) {
        char test[32], speed[48];
        snprintf(test, sizeof test, "%s%d", tests[i].kind, tests[i].n_prompt ? tests[i].n_prompt : tests[i].n_gen);
        /* "±" is two bytes: the field is one wider to line up on screen. */
        snprintf(speed, sizeof speed, "%.2f ± %.2f", tests[i].avg_ts, tests[i].stddev_ts);
        printf("| %-24.24s | %12s | %12s | %-*s | %7d | %8s | %21s |\n", mf->arch, size, params, width, backend,
               n_threads, test, speed);
    }
}

int cli_bench(int argc, char **argv)
{
    const char *model_path = NULL;
    long n_prompt = 512, n_gen = 128, repetitions = 5, n_threads = 0, n_batch = 512;
    bool json = false;
    hearth_kv_type kv_type = HEARTH_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        long *target = NULL, min = 0, max = 0;
        int kv_rc = cli_kv_type_option("bench", bench_usage, argc, argv, &i, &kv_type);
        if (kv_rc > 0)
            return kv_rc;
        if (kv_rc == 0)
            continue;
        if (cli_is_option(a, "-h", "--help")) {
            fputs(bench_usage, stdout);
            return CLI_EXIT_OK;
        } else if (cli_is_option(a, "--json", NULL)) {
            json = true;
            continue;
        } else if (cli_is_option(a, "-m", "--model")) {
            if (!has_value)
                return usage_error("%s needs a file", a);
            model_path = argv[++i];
            continue;
        } else if (cli_is_option(a, "-p", "--n-prompt")) {
            target = &n_prompt, min = 0, max = 1 << 20;
        } else if (cli_is_option(a, "-n", "--n-gen")) {
            target = &n_gen, min = 0, max = 1 << 20;
        } else if (cli_is_option(a, "-r", "--repetitions")) {
            target = &repetitions, min = 1, max = MAX_REPETITIONS;
        } else if (cli_is_option(a, "-t", "--threads")) {
            target = &n_threads, min = 1, max = 1024;
        } else if (cli_is_option(a, "-b", "--batch-size")) {
            target = &n_batch, min = 1, max = 1 << 16;
        } else {
            return usage_error("unknown argument '%s'", a);
        }
        if (!has_value || !cli_parse_long(argv[++i], min, max, target))
            return usage_error("%s: expected a number from %ld to %ld", a, min, max);
    }
    if (n_prompt == 0 && n_gen == 0)
        return usage_error("%s", "nothing to measure: -p and -n are both 0");

    char default_model[4096];
    if (!model_path && !(model_path = cli_default_model(default_model, sizeof default_model, "bench")))
        return CLI_EXIT_USAGE;
    if (n_threads == 0)
        n_threads = threadpool_default_threads();

    int rc = CLI_EXIT_FAILURE;
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    session *s = NULL;
    int32_t *tokens = NULL;
    bench_test *tests = calloc(2, sizeof *tests);
    int n_tests = 0;
    int32_t n_ctx = (int32_t)(n_prompt > n_gen ? n_prompt : n_gen);
    if (!tests || model_load(model_path, &m, &err) != HEARTH_OK ||
        threadpool_create((int)n_threads, &pool, &err) != HEARTH_OK ||
        session_create(m, pool, &(session_params){.n_ctx = n_ctx, .n_batch = (int32_t)n_batch, .kv_type = kv_type},
                       &s, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth bench: %s\n", tests ? err.message : "out of memory");
        goto done;
    }
    /* Random tokens from a fixed generator: what the model reads does not
     * change its speed, only its output. */
    int32_t n_vocab = model_n_vocab(m);
    if (!(tokens = malloc((size_t)n_ctx * sizeof *tokens))) {
        fprintf(stderr, "hearth bench: out of memory\n");
        goto done;
    }
    uint64_t state = 0x853C49E6748FEA9Bull;
    for (int32_t i = 0; i < n_ctx; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((state >> 33) % (uint64_t)n_vocab);
    }
    int32_t bos = vocab_adds_bos(model_vocab(m)) ? vocab_bos(model_vocab(m)) : tokens[0];
    if (n_prompt > 0)
        tests[n_tests++] = (bench_test){.kind = "pp", .n_prompt = (int32_t)n_prompt};
    if (n_gen > 0)
        tests[n_tests++] = (bench_test){.kind = "tg", .n_gen = (int32_t)n_gen};

    for (int i = 0; i < n_tests; i++) {
        bench_test *t = &tests[i];
        if (run_once(s, t, tokens, bos, &err) < 0.0) /* warm-up: page in the weights, fill caches */
            goto eval_failed;
        for (int r = 0; r < repetitions; r++) {
            double seconds = run_once(s, t, tokens, bos, &err);
            if (seconds < 0.0)
                goto eval_failed;
            t->samples_ns[t->n_samples] = seconds * 1e9;
            t->samples_ts[t->n_samples] = (double)(t->n_prompt + t->n_gen) / seconds;
            t->n_samples++;
        }
        summarise(t);
    }

    uint64_t size = 0, n_params = 0;
    const gguf_file *f = model_gguf(m);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        size += gguf_tensor_at(f, i)->size;
        n_params += (uint64_t)gguf_tensor_at(f, i)->n_elements;
    }
    const gguf_string *arch = gguf_get_string(f, "general.architecture");
    char arch_name[64];
    snprintf(arch_name, sizeof arch_name, "%.*s", arch ? (int)(arch->len < 60 ? arch->len : 60) : 1,
             arch ? arch->data : "?");
    model_facts mf = {.path = model_path, .arch = arch_name, .size = size, .n_params = n_params, .kv_type = kv_type};
    if (json)
        print_json(&mf, tests, n_tests, (int)n_threads, (int)n_batch);
    else
        print_table(&mf, tests, n_tests, (int)n_threads);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    goto done;
eval_failed:
    fprintf(stderr, "hearth bench: %s\n", err.message);
done:
    free(tokens);
    free(tests);
    session_free(s);
    threadpool_free(pool);
    model_free(m);
    return rc;
}

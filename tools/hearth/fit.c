/* hearth fit: whether a model fits in this machine's memory at a context,
 * the largest context that does, and how fast it would decode and prefill;
 * from the GGUF header and this machine's measured limits, without loading
 * a weight.
 *
 * What `hearth run`'s peak resident memory consists of, and so what is
 * predicted here:
 *   fixed     the program, the GGUF header's pages and the vocabulary built
 *             from them: measured, as this process's growth across opening
 *             the model without its weights (the same code run runs);
 *   weights   the packed copies of the matrices the panel kernels multiply
 *             (their map pages are released), the map pages of the matrices
 *             multiplied as stored and of the small tensors (norms, ...),
 *             and one row of each embedding table per token of the context;
 *   state     KV cache, recurrent state and work space (model_memory_for);
 *   buffers   the session's logits and token list, the sampler's candidates.
 * Loading packs one matrix at a time, its map pages in beside the copies
 * made so far: when that high point is above the weights plus the state,
 * it is the peak. The state's pages count only once touched, so the total
 * is the peak of a session that fills its context (and a whole batch). */
#include "cli.h"
#include "runtime/prefix_cache.h"

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char fit_usage[] =
    "usage: hearth fit [-m FILE] [-c N] [--parallel N] [--kv-type T] [--json] [--remeasure]\n"
    "\n"
    "Says whether the model fits in this machine's memory, and how fast it\n"
    "would run, from the GGUF header alone: the weights' bytes in memory (as\n"
    "hearth lays them out at load), the KV cache and recurrent state at the\n"
    "context, the work space, their total (the peak resident memory of a\n"
    "session that fills its context) against the RAM available now, the\n"
    "largest context that fits, and estimated decode and prefill tokens/s.\n"
    "The speeds come from this machine's read bandwidth and int8 throughput,\n"
    "measured once (under a second) and cached in ~/.cache/hearth/machine.json.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model (default: the model scripts/setup.sh\n"
    "                     installs, or $HEARTH_MODEL)\n"
    "  -c, --ctx-size N   context per sequence (default: the model's, at most 4096)\n"
    "  --parallel N       N sequences sharing one KV cache, as hearth serve's\n"
    "                     slots (default 1)\n"
    "  --kv-type T        KV cache storage: f16 (default) or q8_0\n"
    "  --json             print one JSON object instead of text\n"
    "  --remeasure        measure this machine again instead of using the cache\n"
    "  -h, --help         show this help\n";

#define usage_error(...) cli_usage_error("fit", fit_usage, __VA_ARGS__)

enum { FIT_DEFAULT_CTX = 4096, FIT_BATCH = 512 };

typedef struct fit_settings {
    int32_t n_ctx, n_seq, n_batch;
    hearth_kv_type kv;
} fit_settings;

typedef struct fit_memory {
    size_t weights;   /* in memory once loaded */
    size_t load_peak; /* the weights' high point while packing */
    size_t kv, recurrent, scratch;
    size_t buffers; /* logits, sampler, token list */
    size_t fixed;   /* program, header, vocabulary: measured */
    size_t total;   /* the peak */
} fit_memory;

/* What the model is, for everything but the context. */
typedef struct fit_model {
    const model *m;
    model_weight_plan plan;
    size_t fixed;
    int32_t n_vocab, n_ctx_train;
    uint64_t n_experts, n_experts_used;
    uint64_t active_params; /* multiplied per token: the experts' scaled by used/count */
    uint64_t prefill_params; /* the same but the output: per prompt token */
    bool huge_pages;        /* the packed arena is in 2 MiB pages, counted whole */
} fit_model;

enum { HUGE_PAGE = 2 << 20 };

static hearth_status predict(const fit_model *fm, const fit_settings *s, fit_memory *out, hearth_error *err)
{
    memset(out, 0, sizeof *out);
    model_memory mem;
    hearth_status st = model_memory_for(fm->m, s->n_seq, s->n_ctx, s->n_batch, s->kv, &mem, err);
    if (st != HEARTH_OK)
        return st;
    const model_weight_plan *p = &fm->plan;
    size_t packed = p->packed, peak = p->packing_peak;
    if (fm->huge_pages) {
        packed = (packed + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        peak = peak - p->packed + packed;
    }
    uint64_t rows = (uint64_t)s->n_ctx * (uint64_t)s->n_seq;
    uint64_t n_vocab = (uint64_t)fm->n_vocab;
    out->weights = packed + p->unpacked + p->other + (size_t)((rows < n_vocab ? rows : n_vocab) * p->gather_row);
    out->load_peak = peak;
    out->kv = mem.kv_cache;
    out->recurrent = mem.recurrent;
    out->scratch = mem.scratch;
    /* session.c's logits (a float per token of the vocabulary) and token
     * list (an int32 per position); sampler.c's candidates (id and logit);
     * the prefix cache's one block file in flight (its KV rows, and a
     * sequence's recurrent state). */
    out->buffers = (size_t)fm->n_vocab * (sizeof(float) + 8) + (size_t)rows * sizeof(int32_t) +
                   mem.kv_cache / rows * PREFIX_CACHE_BLOCK_TOKENS + mem.recurrent / (size_t)s->n_seq;
    out->fixed = fm->fixed;
    size_t running = out->weights + out->kv + out->recurrent + out->scratch + out->buffers;
    out->total = fm->fixed + (running > out->load_peak ? running : out->load_peak);
    return HEARTH_OK;
}

/* The largest context per sequence (up to the trained one) whose total
 * stays within `room`; 0 when not even one token's does. The total grows
 * with the context, so a bisection finds it. */
static int32_t largest_context(const fit_model *fm, fit_settings s, uint64_t room)
{
    int32_t lo = 0, hi = fm->n_ctx_train > 0 ? fm->n_ctx_train : FIT_DEFAULT_CTX;
    if ((int64_t)hi * s.n_seq > INT32_MAX)
        hi = INT32_MAX / s.n_seq;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo + 1) / 2;
        s.n_ctx = mid;
        s.n_batch = mid < FIT_BATCH ? mid : FIT_BATCH;
        fit_memory mem;
        hearth_error err = {0};
        if (predict(fm, &s, &mem, &err) == HEARTH_OK && mem.total <= room)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

typedef struct fit_speed {
    double bytes_per_token;   /* weights read per decode step, plus the KV read on average */
    double kv_read_per_token; /* of that, the KV cache's */
    double decode_tps;        /* all sequences together */
    double prefill_tps;       /* 0: no int8 figure */
} fit_speed;

/* Decode reads every weight once per step (a mixture of experts, the
 * chosen share of its experts) and the KV cache up to each sequence's
 * position; over a generation that fills the context from 0 that is half
 * the cache on average. Prefill is taken as arithmetic-bound: two int8
 * operations per active parameter per token but the output's (a prompt's
 * logits are its last token's), at the panel kernel's in-cache rate:
 * a ceiling, which attention, norms and quantizing the activations lower. */
static fit_speed estimate_speed(const fit_model *fm, const fit_memory *mem, const fit_settings *s,
                                const machine_limits *lim)
{
    const model_weight_plan *p = &fm->plan;
    double experts = (double)(p->expert_packed + p->expert_unpacked);
    double share = fm->n_experts ? (double)fm->n_experts_used / (double)fm->n_experts : 1.0;
    double weights = (double)(p->packed + p->unpacked + p->other) - experts + experts * share +
                     (double)p->gather_row;
    fit_speed sp = {0};
    sp.kv_read_per_token = (double)mem->kv / 2.0;
    sp.bytes_per_token = weights + sp.kv_read_per_token;
    if (lim->read_bytes_per_s > 0)
        sp.decode_tps = (double)s->n_seq * lim->read_bytes_per_s / sp.bytes_per_token;
    if (lim->int8_ops_per_s > 0 && fm->prefill_params)
        sp.prefill_tps = lim->int8_ops_per_s / (2.0 * (double)fm->prefill_params);
    return sp;
}

static uint64_t get_arch_uint(const gguf_file *f, const char *key)
{
    const gguf_string *arch = gguf_get_string(f, "general.architecture");
    char name[256];
    uint64_t v = 0;
    if (!arch || arch->len > 200)
        return 0;
    snprintf(name, sizeof name, "%.*s.%s", (int)arch->len, arch->data, key);
    return gguf_get_uint(f, name, &v) ? v : 0;
}

static bool thp_in_use(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return false;
    char line[128] = "";
    bool on = fgets(line, sizeof line, f) && !strstr(line, "[never]");
    fclose(f);
    return on;
}

static hearth_status describe_model(const model *m, size_t fixed, fit_model *fm, hearth_error *err)
{
    memset(fm, 0, sizeof *fm);
    fm->m = m;
    fm->fixed = fixed;
    fm->n_vocab = model_n_vocab(m);
    fm->n_ctx_train = model_n_ctx_train(m);
    fm->huge_pages = thp_in_use();
    const gguf_file *f = model_gguf(m);
    fm->n_experts = get_arch_uint(f, "expert_count");
    fm->n_experts_used = get_arch_uint(f, "expert_used_count");
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (strcmp(t->name, "token_embd.weight") == 0 || strcmp(t->name, "per_layer_token_embd.weight") == 0)
            continue; /* looked up, not multiplied; a tied output is counted below */
        if (t->n_dims < 2)
            continue;
        if (strstr(t->name, "_exps") && fm->n_experts)
            fm->active_params += (uint64_t)t->n_elements / fm->n_experts * fm->n_experts_used;
        else
            fm->active_params += (uint64_t)t->n_elements;
    }
    const gguf_tensor *output = gguf_find_tensor(f, "output.weight");
    if (!output && (output = gguf_find_tensor(f, "token_embd.weight")))
        fm->active_params += (uint64_t)output->n_elements; /* the tied output multiplies by it */
    /* A prompt's logits are computed for its last token only. */
    fm->prefill_params = fm->active_params - (output ? (uint64_t)output->n_elements : 0);
    return model_plan_weights(m, &fm->plan, err);
}

/* ---- output ------------------------------------------------------------------ */

static void print_text(const char *path, const fit_model *fm, const fit_settings *s, const fit_memory *mem,
                       uint64_t mem_total, uint64_t mem_avail, int32_t max_ctx, const fit_speed *sp,
                       const machine_limits *lim)
{
    char a[32], b[32], c[32], d[32];
    printf("model:           %s\n", path);
    printf("settings:        context %d x %d sequence%s, KV cache %s, batches of %d\n", s->n_ctx, s->n_seq,
           s->n_seq == 1 ? "" : "s", model_kv_type_name(s->kv), s->n_batch);
    out_format_bytes(a, sizeof a, mem->weights);
    out_format_bytes(b, sizeof b, fm->plan.packed);
    out_format_bytes(c, sizeof c, fm->plan.unpacked + fm->plan.other);
    out_format_bytes(d, sizeof d, mem->load_peak);
    printf("weights:         %s (packed %s, from the file %s; at most %s while packing)\n", a, b, c, d);
    out_format_bytes(a, sizeof a, mem->kv);
    printf("KV cache:        %s\n", a);
    out_format_bytes(a, sizeof a, mem->recurrent);
    printf("recurrent state: %s\n", a);
    out_format_bytes(a, sizeof a, mem->scratch);
    out_format_bytes(b, sizeof b, mem->buffers);
    printf("scratch:         %s work space, %s logits and sampler\n", a, b);
    out_format_bytes(a, sizeof a, mem->fixed);
    printf("fixed:           %s (program, header and vocabulary, measured)\n", a);
    out_format_bytes(a, sizeof a, mem->total);
    printf("total:           %s (peak resident, the context full)\n", a);
    out_format_bytes(a, sizeof a, mem_total);
    out_format_bytes(b, sizeof b, mem_avail);
    printf("RAM:             %s, %s available: %s\n", a, b,
           mem->total <= mem_avail ? "fits" : (mem->total <= mem_total ? "does not fit in what is available"
                                                                         : "does not fit"));
    if (max_ctx > 0)
        printf("largest context: %d tokens per sequence fit in the available RAM (trained: %d)\n", max_ctx,
               fm->n_ctx_train);
    else
        printf("largest context: none: the weights alone do not fit in the available RAM\n");
    out_format_bytes(a, sizeof a, (uint64_t)sp->bytes_per_token);
    out_format_bytes(b, sizeof b, (uint64_t)sp->kv_read_per_token);
    printf("decode:          ~%.1f tokens/s%s (%s read per step, %s of it KV at the average position of "
           "a context filled from 0; %.1f GB/s read bandwidth%s)\n",
           sp->decode_tps, s->n_seq > 1 ? " in all" : "", a, b, lim->read_bytes_per_s / 1e9,
           fm->n_experts ? ", experts: the chosen share only" : "");
    if (sp->prefill_tps > 0)
        printf("prefill:         at most ~%.0f tokens/s (2 int8 operations per active parameter but the "
               "output's, at %.0f GOPS; attention left out)\n",
               sp->prefill_tps, lim->int8_ops_per_s / 1e9);
    else
        printf("prefill:         - (no int8 throughput measured at this kernel level)\n");
    if (lim->cached)
        printf("machine:         %s, %s, %d threads (cached in %s; --remeasure to redo)\n", lim->cpu, lim->level,
               lim->threads, lim->cache_path);
    else
        printf("machine:         %s, %s, %d threads (measured in %.2f s)\n", lim->cpu, lim->level, lim->threads,
               lim->seconds);
}

static void print_json(const char *path, const fit_model *fm, const fit_settings *s, const fit_memory *mem,
                       uint64_t mem_total, uint64_t mem_avail, int32_t max_ctx, const fit_speed *sp,
                       const machine_limits *lim)
{
    fputs("{\"file\": ", stdout);
    out_json_string(stdout, path, strlen(path));
    printf(", \"context\": %d, \"parallel\": %d, \"kv_type\": \"%s\", \"batch\": %d", s->n_ctx, s->n_seq,
           model_kv_type_name(s->kv), s->n_batch);
    printf(", \"weights_bytes\": %zu, \"packed_bytes\": %zu, \"load_peak_bytes\": %zu, \"kv_bytes\": %zu"
           ", \"recurrent_bytes\": %zu, \"scratch_bytes\": %zu, \"buffers_bytes\": %zu, \"fixed_bytes\": %zu"
           ", \"total_bytes\": %zu",
           mem->weights, fm->plan.packed, mem->load_peak, mem->kv, mem->recurrent, mem->scratch, mem->buffers,
           mem->fixed, mem->total);
    printf(", \"mem_total_bytes\": %" PRIu64 ", \"mem_available_bytes\": %" PRIu64 ", \"fits\": %s", mem_total,
           mem_avail, mem->total <= mem_avail ? "true" : "false");
    printf(", \"max_context\": %d, \"trained_context\": %d", max_ctx, fm->n_ctx_train);
    printf(", \"experts\": %" PRIu64 ", \"experts_used\": %" PRIu64 ", \"active_parameters\": %" PRIu64
           ", \"prefill_parameters\": %" PRIu64,
           fm->n_experts, fm->n_experts_used, fm->active_params, fm->prefill_params);
    printf(", \"decode_bytes_per_token\": %.0f, \"decode_kv_bytes_per_token\": %.0f, \"decode_tokens_per_s\": %.2f"
           ", \"prefill_tokens_per_s\": %.2f",
           sp->bytes_per_token, sp->kv_read_per_token, sp->decode_tps, sp->prefill_tps);
    fputs(", \"machine\": {\"cpu\": ", stdout);
    out_json_string(stdout, lim->cpu, strlen(lim->cpu));
    printf(", \"level\": \"%s\", \"threads\": %d, \"read_bytes_per_s\": %.6g, \"int8_ops_per_s\": %.6g"
           ", \"cached\": %s}}\n",
           lim->level, lim->threads, lim->read_bytes_per_s, lim->int8_ops_per_s, lim->cached ? "true" : "false");
}

/* ---- command ------------------------------------------------------------------ */

int cli_fit(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false, remeasure = false;
    long n_ctx = 0, n_seq = 1;
    hearth_kv_type kv = HEARTH_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_option(a, "-m", "--model") || cli_is_option(a, "-c", "--ctx-size") ||
            cli_is_option(a, NULL, "--parallel") || cli_is_option(a, NULL, "--kv-type")) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (cli_is_option(a, "-m", "--model")) {
                path = v;
            } else if (cli_is_option(a, "-c", "--ctx-size")) {
                if (!cli_parse_long(v, 1, INT32_MAX, &n_ctx))
                    return usage_error("%s needs a context size from 1 to %d", a, INT32_MAX);
            } else if (cli_is_option(a, NULL, "--parallel")) {
                if (!cli_parse_long(v, 1, MODEL_MAX_SEQUENCES, &n_seq))
                    return usage_error("%s needs a number of sequences from 1 to %d", a, MODEL_MAX_SEQUENCES);
            } else if (!model_kv_type_parse(v, &kv)) {
                return usage_error("--kv-type '%s': f16 or q8_0", v);
            }
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--remeasure") == 0) {
            remeasure = true;
        } else if (cli_is_option(a, "-h", "--help")) {
            fputs(fit_usage, stdout);
            return CLI_EXIT_OK;
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    char default_path[4096];
    if (!path && !(path = cli_default_model(default_path, sizeof default_path, "fit")))
        return CLI_EXIT_FAILURE;

    hearth_error err = {0};
    model *m = NULL;
    if (model_open(path, false, &m, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth fit: %s\n", err.message);
        return CLI_EXIT_FAILURE;
    }
    /* The program, the header's pages and the vocabulary, as `hearth run`
     * holds them: opening the model without its weights touches nothing else. */
    size_t rss_open = machine_rss(false);
    fit_model fm;
    fit_settings s = {.n_seq = (int32_t)n_seq, .kv = kv};
    s.n_ctx = n_ctx ? (int32_t)n_ctx
                    : (model_n_ctx_train(m) > 0 && model_n_ctx_train(m) < FIT_DEFAULT_CTX ? model_n_ctx_train(m)
                                                                                         : FIT_DEFAULT_CTX);
    s.n_batch = s.n_ctx < FIT_BATCH ? s.n_ctx : FIT_BATCH;
    fit_memory mem;
    machine_limits lim;
    uint64_t mem_total = 0, mem_avail = 0;
    int rc = CLI_EXIT_FAILURE;
    if (describe_model(m, rss_open, &fm, &err) != HEARTH_OK || predict(&fm, &s, &mem, &err) != HEARTH_OK ||
        machine_get_limits(remeasure, &lim, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth fit: %s\n", err.message);
        goto done;
    }
    if (!machine_meminfo(&mem_total, &mem_avail)) {
        fprintf(stderr, "hearth fit: cannot read this machine's memory from /proc/meminfo\n");
        goto done;
    }
    int32_t max_ctx = largest_context(&fm, s, mem_avail);
    fit_speed sp = estimate_speed(&fm, &mem, &s, &lim);
    if (json)
        print_json(path, &fm, &s, &mem, mem_total, mem_avail, max_ctx, &sp, &lim);
    else
        print_text(path, &fm, &s, &mem, mem_total, mem_avail, max_ctx, &sp, &lim);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
    model_free(m);
    return rc;
}

/* hearth run: generate text from a prompt, streamed to stdout as it comes,
 * with llama.cpp-style timings on stderr at the end. */
#include "cli.h"

#include "base/clock.h"
#include "runtime/generate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char run_usage[] =
    "usage: hearth run [-m FILE] (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Continues the prompt with the model and streams the text to stdout; load\n"
    "time and prompt/generation speed go to stderr at the end. Special-token\n"
    "text in the prompt (<start_of_turn>, ...) becomes those tokens.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE         GGUF model (default: the model scripts/setup.sh\n"
    "                           installs, or $HEARTH_MODEL)\n"
    "  -p, --prompt TEXT        the prompt; '-p -' reads it from standard input\n"
    "  -f, --file FILE          read the prompt from FILE\n"
    "  -n, --n-predict N        tokens to generate at most (default 256; -1: until\n"
    "                           the model stops or the context is full)\n"
    "  -c, --ctx-size N         context size in tokens (default: the model's, at\n"
    "                           most 4096)\n"
    "  -t, --threads N          threads (default: physical cores)\n"
    CLI_KV_TYPE_USAGE
    CLI_PREFIX_CACHE_USAGE
    CLI_SAMPLER_USAGE
    "  --stop TEXT              stop when TEXT is generated (repeatable, up to 8)\n"
    "  --context-shift          when the context fills, drop the older half and go on\n"
    "  --ignore-eos             do not stop at end-of-generation tokens\n"
    "  --no-bos                 do not add the BOS token\n"
    "  -h, --help               show this help\n";

#define usage_error(...) cli_usage_error("run", run_usage, __VA_ARGS__)

static bool emit_stdout(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !ferror(stdout);
}

enum { MAX_STOPS = 8 };

static bool takes_value(const char *arg)
{
    static const char *const options[] = {
        "-m", "--model", "-p", "--prompt", "-f", "--file", "--stop",
    };
    for (size_t i = 0; i < sizeof options / sizeof *options; i++)
        if (strcmp(arg, options[i]) == 0)
            return true;
    return false;
}

int cli_run(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *file = NULL, *stops[MAX_STOPS];
    int n_stops = 0;
    cli_generation_options gen = {.n_predict = 256};
    bool context_shift = false, add_bos = true, ignore_eos = false;
    sampler_params sp = sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int option_rc = cli_sampler_option("run", run_usage, argc, argv, &i, &sp);
        if (option_rc < 0)
            option_rc = cli_generation_option("run", run_usage, argc, argv, &i, &gen);
        if (option_rc >= 0) {
            if (option_rc != CLI_EXIT_OK)
                return option_rc;
        } else if (cli_is_option(a, "-h", "--help")) {
            fputs(run_usage, stdout);
            return CLI_EXIT_OK;
        } else if (cli_is_option(a, "--context-shift", NULL)) {
            context_shift = true;
        } else if (cli_is_option(a, "--ignore-eos", NULL)) {
            ignore_eos = true;
        } else if (cli_is_option(a, "--no-bos", NULL)) {
            add_bos = false;
        } else if (takes_value(a) && !next) {
            return usage_error("%s needs a value", a);
        } else if (cli_is_option(a, "-m", "--model")) {
            model_path = argv[++i];
        } else if (cli_is_option(a, "-p", "--prompt")) {
            prompt = argv[++i];
        } else if (cli_is_option(a, "-f", "--file")) {
            file = argv[++i];
        } else if (cli_is_option(a, "--stop", NULL)) {
            if (n_stops == MAX_STOPS)
                return usage_error("--stop: at most %d stop strings", MAX_STOPS);
            if (argv[++i][0] == '\0')
                return usage_error("--stop: %s", "the stop string is empty");
            stops[n_stops++] = argv[i];
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (!prompt == !file)
        return usage_error("%s", "give the prompt with exactly one of -p and -f");

    char default_model[4096];
    if (!model_path && !(model_path = cli_default_model(default_model, sizeof default_model, "run")))
        return CLI_EXIT_USAGE;

    int rc = CLI_EXIT_FAILURE;
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    session *s = NULL;
    sampler *smp = NULL;
    int32_t *tokens = NULL;
    size_t len = 0;
    char why[512], *owned = NULL;
    const char *text = prompt;
    if (file || strcmp(prompt, "-") == 0) {
        if (!(owned = cli_read_all(file ? file : "-", &len, why, sizeof why))) {
            fprintf(stderr, "hearth run: %s\n", why);
            return CLI_EXIT_FAILURE;
        }
        text = owned;
    } else {
        len = strlen(prompt);
    }

    prefix_cache_params cache;
    char cache_dir[4096];
    double t_load = clock_seconds();
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        threadpool_create(gen.n_threads ? (int)gen.n_threads : threadpool_default_threads(), &pool, &err) != HEARTH_OK ||
        session_create(m, pool,
                       &(session_params){.n_ctx = (int32_t)gen.n_ctx,
                                         .kv_type = gen.kv_type,
                                         .prefix_cache = cli_prefix_cache_params(&gen, 0, &cache, cache_dir,
                                                                                 sizeof cache_dir)},
                       &s,
                       &err) != HEARTH_OK ||
        sampler_create(&sp, model_n_vocab(m), &smp, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth run: %s\n", err.message);
        goto done;
    }
    t_load = clock_seconds() - t_load;

    const vocab *v = model_vocab(m);
    int64_t n_tokens = vocab_tokenize(v, text, len, add_bos, true, NULL, 0, &err);
    if (n_tokens < 0) {
        fprintf(stderr, "hearth run: %s\n", err.message);
        goto done;
    }
    if (!(tokens = malloc(((size_t)n_tokens + 1) * sizeof *tokens))) {
        fprintf(stderr, "hearth run: out of memory\n");
        goto done;
    }
    vocab_tokenize(v, text, len, add_bos, true, tokens, (size_t)n_tokens, &err);
    if (n_tokens == 0) {
        fprintf(stderr, "hearth run: the prompt is empty (and no BOS token is added)\n");
        goto done;
    }
    if (n_tokens >= session_n_ctx(s)) {
        fprintf(stderr, "hearth run: the prompt has %lld tokens; it does not fit in the context of %d (use -c)\n",
                (long long)n_tokens, session_n_ctx(s));
        goto done;
    }

    /* The prompt is echoed as the user wrote it, as llama.cpp does. */
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    generate_params gp = {
        .n_predict = (int32_t)gen.n_predict, .stops = stops, .n_stops = n_stops,
        .context_shift = context_shift, .n_keep = add_bos ? 1 : 0, .ignore_eog = ignore_eos,
    };
    generate_stats stats;
    if (generate_run(s, smp, v, tokens, (int32_t)n_tokens, &gp, emit_stdout, NULL, &stats, &err) != HEARTH_OK) {
        fprintf(stderr, "\nhearth run: %s\n", err.message);
        goto done;
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "\n");
    model_repack_stats repack = model_repack(m);
    fprintf(stderr, "hearth: load time     = %10.2f ms (of which repacking %d matrices, %.1f MiB: %.2f ms)\n",
            t_load * 1e3, repack.n_matrices, (double)repack.bytes / 1048576.0, repack.seconds * 1e3);
    fprintf(stderr, "hearth: prompt eval   = %10.2f ms / %5d tokens (%8.2f tokens per second)",
            stats.prompt_seconds * 1e3, stats.n_prompt,
            stats.prompt_seconds > 0 ? stats.n_prompt / stats.prompt_seconds : 0.0);
    if (stats.n_restored > 0)
        fprintf(stderr, ", %d of them from the prefix cache", stats.n_restored);
    fprintf(stderr, "\n");
    fprintf(stderr, "hearth: generation    = %10.2f ms / %5d tokens (%8.2f tokens per second)\n",
            stats.generate_seconds * 1e3, stats.n_generated,
            stats.generate_seconds > 0 ? stats.n_generated / stats.generate_seconds : 0.0);
    fprintf(stderr, "hearth: stopped by %s; context %d of %d tokens, state %.1f MiB\n",
            generate_finish_name(stats.finish), session_n_past(s), session_n_ctx(s),
            (double)session_state_bytes(s) / 1048576.0);
    if (stats.finish == GENERATE_FINISH_CONTEXT_FULL)
        fprintf(stderr, "hearth: the context is full; a larger -c, or --context-shift, lets generation go on\n");
    rc = CLI_EXIT_OK;
done:
    free(tokens);
    free(owned);
    sampler_free(smp);
    session_free(s);
    threadpool_free(pool);
    model_free(m);
    return rc;
}

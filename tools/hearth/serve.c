/* hearth serve: an OpenAI-compatible HTTP server with a chat page, over N
 * parallel slots batched together (src/server/). */
#include "cli.h"

#include "model/model.h"
#include "server/server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char serve_usage[] =
    "usage: hearth serve [-m MODEL] [options]\n"
    "\n"
    "Serves the model over HTTP: OpenAI's /v1/chat/completions and /v1/completions\n"
    "(streamed or not), /v1/models, /health, /metrics (Prometheus), /tokenize,\n"
    "/detokenize, and a chat page at /. Requests run in parallel slots whose next\n"
    "tokens go through the model together; more wait in a queue, and past it get\n"
    "503. Ctrl-C (or SIGTERM) stops it.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE         the GGUF model (default: Gemma 3 270M from scripts/setup.sh)\n"
    "  --host ADDR              address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N                 port (default 8080; 0: any free one, printed)\n"
    "  --api-key KEY            require 'Authorization: Bearer KEY' (default: $HEARTH_API_KEY, else none)\n"
    "  -np, --parallel N        parallel slots (default 4)\n"
    "  -c, --ctx-size N         context per slot (default: the model's, at most 4096)\n"
    "  -b, --batch N            tokens per forward pass, all slots together (default 512)\n"
    "  --prefill-chunk N        prompt tokens per pass while others generate (default 128)\n"
    "  --queue N                requests that may wait for a slot (default 4 per slot)\n"
    "  -t, --threads N          threads (default: the cores)\n"
    CLI_KV_TYPE_USAGE
    CLI_PREFIX_CACHE_USAGE
    "  --template FILE          chat template (Jinja2) instead of the model's\n"
    "  --alias NAME             the model's name in the API (default: the file's name)\n"
    "  --timeout S              close connections idle for S seconds, or whose request\n"
    "                           has not arrived in full S seconds after it began (default 60)\n"
    "  --max-body BYTES         largest request body (default 8 MiB; larger: 413)\n"
    "  --max-conns N            open connections at most (default 256; more are closed at once)\n"
    "  --max-conns-per-ip N     open connections one client address may hold (default: no limit\n"
    "                           on a loopback --host, else a quarter of --max-conns)\n"
    "  -h, --help               this help\n"
    "\n"
    "Sampling is per request (temperature, top_p, top_k, min_p, seed, ...); fields\n"
    "left out take llama.cpp's defaults, and a request without a seed draws one.\n";

#define usage_error(...) cli_usage_error("serve", serve_usage, __VA_ARGS__)

/* The model id: the file's name without directories or .gguf. */
static void model_id_of(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
        n -= 5;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, base, n);
    out[n] = '\0';
}

int cli_serve(int argc, char **argv)
{
    const char *model_path = NULL, *host = "127.0.0.1", *api_key = getenv("HEARTH_API_KEY");
    const char *template_path = NULL, *alias = NULL;
    long port = 8080, n_parallel = 4, n_batch = 512, prefill_chunk = 128, queue = 0, timeout = 60;
    long max_body = 8L << 20, max_conns = 256, max_conns_per_ip = 0;
    cli_generation_options gen = {.n_predict = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int option_rc = cli_generation_option("serve", serve_usage, argc, argv, &i, &gen);
        if (option_rc >= 0) {
            if (option_rc != CLI_EXIT_OK)
                return option_rc;
            continue;
        }
        if (cli_is_option(a, "-h", "--help")) {
            fputs(serve_usage, stdout);
            return CLI_EXIT_OK;
        }
        if (a[0] == '-' && i + 1 >= argc)
            return usage_error("%s needs a value", a);
        const char *value = argv[i + 1];
        struct {
            const char *short_name, *long_name;
            long *out, min, max;
        } numbers[] = {
            {NULL, "--port", &port, 0, 65535},
            {"-np", "--parallel", &n_parallel, 1, MODEL_MAX_SEQUENCES},
            {"-b", "--batch", &n_batch, 1, 65536},
            {NULL, "--prefill-chunk", &prefill_chunk, 1, 65536},
            {NULL, "--queue", &queue, 1, 65536},
            {NULL, "--timeout", &timeout, 1, 86400},
            {NULL, "--max-body", &max_body, 1024, 1L << 30},
            {NULL, "--max-conns", &max_conns, 1, 65536},
            {NULL, "--max-conns-per-ip", &max_conns_per_ip, 1, 65536},
        };
        bool matched = false;
        for (size_t k = 0; k < sizeof numbers / sizeof *numbers && !matched; k++)
            if (cli_is_option(a, numbers[k].short_name, numbers[k].long_name)) {
                if (!cli_parse_long(value, numbers[k].min, numbers[k].max, numbers[k].out))
                    return usage_error("%s: '%s' is not a whole number from %ld to %ld", a, value, numbers[k].min,
                                       numbers[k].max);
                matched = true;
            }
        if (matched) {
            i++;
        } else if (cli_is_option(a, "-m", "--model")) {
            model_path = argv[++i];
        } else if (cli_is_option(a, NULL, "--host")) {
            host = argv[++i];
        } else if (cli_is_option(a, NULL, "--api-key")) {
            api_key = argv[++i];
        } else if (cli_is_option(a, NULL, "--template")) {
            template_path = argv[++i];
        } else if (cli_is_option(a, NULL, "--alias")) {
            alias = argv[++i];
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (gen.n_predict != -1)
        return usage_error("-n: each request says how many tokens it wants (max_tokens)");
    char default_model[4096];
    if (!model_path && !(model_path = cli_default_model(default_model, sizeof default_model, "serve")))
        return CLI_EXIT_USAGE;

    /* Every thread started from here on inherits this mask; the main thread
     * then waits for the signals with sigwait. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = CLI_EXIT_FAILURE;
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    sched *sch = NULL;
    chat_template *tmpl = NULL;
    server *srv = NULL;
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        threadpool_create(gen.n_threads ? (int)gen.n_threads : threadpool_default_threads(), &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth serve: %s\n", err.message);
        goto done;
    }
    int32_t n_ctx = gen.n_ctx > 0 ? (int32_t)gen.n_ctx : model_n_ctx_train(m);
    if (gen.n_ctx <= 0 && n_ctx > 4096)
        n_ctx = 4096;
    bool no_template = false;
    tmpl = cli_load_chat_template("serve", m, model_path, template_path, &no_template);
    if (no_template)
        fprintf(stderr, "hearth serve: %s has no chat template: /v1/chat/completions will refuse requests "
                        "(give one with --template FILE)\n", model_path);
    else if (!tmpl)
        goto done;
    prefix_cache_params cache;
    char cache_dir[4096];
    sched_params params = {
        .n_slots = (int32_t)n_parallel, .n_ctx = n_ctx, .n_batch = (int32_t)n_batch,
        .prefill_chunk = (int32_t)prefill_chunk, .max_queued = (int32_t)queue, .kv_type = gen.kv_type,
        .prefix_cache = cli_prefix_cache_params(&gen, (size_t)1 << 30, &cache, cache_dir, sizeof cache_dir),
    };
    if (sched_create(m, pool, &params, &sch, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth serve: %s\n", err.message);
        goto done;
    }
    char model_id[256];
    if (alias)
        snprintf(model_id, sizeof model_id, "%s", alias);
    else
        model_id_of(model_path, model_id, sizeof model_id);
    server_params sp_http = {
        .host = host, .port = (int)port, .api_key = api_key, .model_id = model_id, .n_ctx = n_ctx,
        .max_body = (size_t)max_body, .timeout_seconds = (unsigned)timeout,
        .max_connections = (unsigned)max_conns, .max_connections_per_ip = (unsigned)max_conns_per_ip,
    };
    if (server_start(m, sch, tmpl, &sp_http, &srv, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth serve: %s\n", err.message);
        goto done;
    }
    fprintf(stderr, "hearth serve: %s, %ld slots of %d tokens (%s), listening on http://%s%s%s:%d/\n", model_id,
            n_parallel, n_ctx, model_batches_sequences(m) ? "batched together" : "run in turn",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", server_port(srv));
    if (params.prefix_cache) {
        char ram[32], disk[32];
        out_format_bytes(ram, sizeof ram, cache.ram_bytes);
        out_format_bytes(disk, sizeof disk, cache.disk_bytes);
        fprintf(stderr, "hearth serve: prefix cache: %s in memory, %s on disk%s%s\n", ram, disk,
                cache.disk_bytes ? " in " : "", cache.disk_bytes ? cache.dir : "");
    } else {
        fprintf(stderr, "hearth serve: no prefix cache\n");
    }
    fflush(stderr);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "hearth serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = CLI_EXIT_OK;
done:
    server_stop(srv);
    sched_free(sch);
    chat_template_free(tmpl);
    threadpool_free(pool);
    model_free(m);
    return rc;
}

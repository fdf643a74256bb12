/* hearth perplexity: the perplexity of a model on a text, computed exactly as
 * llama-perplexity does, so the two outputs can be compared line for line:
 * the text is tokenized once (with BOS), cut into chunks of n_ctx tokens
 * (the remainder is dropped), each chunk runs from an empty cache with its
 * first token replaced by BOS, and the tokens of the second half of each chunk
 * are scored by the logits of the token before them. */
#include "cli.h"

#include "base/clock.h"
#include "runtime/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char perplexity_usage[] =
    "usage: hearth perplexity [-m FILE] -f TEXT [-c CTX] [--chunks N] [-t THREADS] [--kv-type T]\n"
    "\n"
    "Prints the running perplexity after each chunk ([1]x,[2]y,...) and, last,\n"
    "'Final estimate: PPL = <value> +/- <error>', as llama-perplexity does.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE    GGUF model (default: the model scripts/setup.sh installs)\n"
    "  -f, --file FILE     the text ('-' reads standard input)\n"
    "  -c, --ctx-size N    tokens per chunk (default 512); the text needs at least 2N\n"
    "  --chunks N          score only the first N chunks (default: all)\n"
    "  -t, --threads N     threads (default: physical cores)\n"
    "  --kv-type f16|q8_0  KV cache format (default f16)\n"
    "  -h, --help          show this help\n";

#define usage_error(...) cli_usage_error("perplexity", perplexity_usage, __VA_ARGS__)

/* Scored rows are evaluated this many at a time, bounding the logits buffer
 * (a row is the whole vocabulary: 1 MiB for Gemma's 262,144 tokens). */
enum { LOGIT_ROWS = 64 };

/* -log p(target) from one row of logits, as llama-perplexity's log_softmax:
 * float maximum, double sum of float exponentials. */
static double negative_log_prob(const float *logits, int32_t n_vocab, int32_t target)
{
    float max_logit = logits[0];
    for (int32_t i = 1; i < n_vocab; i++)
        max_logit = logits[i] > max_logit ? logits[i] : max_logit;
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += expf(logits[i] - max_logit);
    return -((double)(logits[target] - max_logit) - log(sum));
}

int cli_perplexity(int argc, char **argv)
{
    const char *model_path = NULL, *file = NULL;
    long n_ctx = 512, max_chunks = -1, n_threads = 0;
    hearth_kv_type kv_type = HEARTH_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        int kv_rc = cli_kv_type_option("perplexity", perplexity_usage, argc, argv, &i, &kv_type);
        if (kv_rc > 0)
            return kv_rc;
        if (kv_rc == 0)
            continue;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(perplexity_usage, stdout);
            return CLI_EXIT_OK;
        } else if (cli_is_option(a, "-m", "--model")) {
            if (!has_value)
                return usage_error("%s needs a file", a);
            model_path = argv[++i];
        } else if (cli_is_option(a, "-f", "--file")) {
            if (!has_value)
                return usage_error("%s needs a file", a);
            file = argv[++i];
        } else if (cli_is_option(a, "-c", "--ctx-size")) {
            if (!has_value || !cli_parse_long(argv[++i], 2, 1 << 20, &n_ctx))
                return usage_error("%s: expected a number from 2 to 1048576", a);
        } else if (cli_is_option(a, "--chunks", NULL)) {
            if (!has_value || !cli_parse_long(argv[++i], 1, 1 << 30, &max_chunks))
                return usage_error("%s: expected a positive number", a);
        } else if (cli_is_option(a, "-t", "--threads")) {
            if (!has_value || !cli_parse_long(argv[++i], 1, 1024, &n_threads))
                return usage_error("%s: expected a number from 1 to 1024", a);
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (!file)
        return usage_error("%s", "give the text with -f FILE");

    char default_model[4096];
    if (!model_path && !(model_path = cli_default_model(default_model, sizeof default_model, "perplexity")))
        return CLI_EXIT_USAGE;

    int rc = CLI_EXIT_FAILURE;
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    session *s = NULL;
    int32_t *tokens = NULL, *chunk = NULL;
    float *logits = NULL;
    size_t len = 0;
    char why[512];
    char *text = cli_read_all(file, &len, why, sizeof why);
    if (!text) {
        fprintf(stderr, "hearth perplexity: %s\n", why);
        return CLI_EXIT_FAILURE;
    }
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        threadpool_create(n_threads ? (int)n_threads : threadpool_default_threads(), &pool, &err) != HEARTH_OK ||
        session_create(m, pool,
                       &(session_params){.n_ctx = (int32_t)n_ctx, .n_batch = (int32_t)n_ctx, .kv_type = kv_type}, &s,
                       &err) != HEARTH_OK) {
        fprintf(stderr, "hearth perplexity: %s\n", err.message);
        goto done;
    }
    const vocab *v = model_vocab(m);
    int32_t n_vocab = model_n_vocab(m);
    int64_t n_tokens = vocab_tokenize(v, text, len, true, false, NULL, 0, &err);
    if (n_tokens < 0) {
        fprintf(stderr, "hearth perplexity: %s\n", err.message);
        goto done;
    }
    tokens = n_tokens > 0 ? malloc((size_t)n_tokens * sizeof *tokens) : NULL;
    chunk = malloc((size_t)n_ctx * sizeof *chunk);
    logits = malloc((size_t)LOGIT_ROWS * (size_t)n_vocab * sizeof *logits);
    if (!tokens || !chunk || !logits) {
        fprintf(stderr, "hearth perplexity: out of memory\n");
        goto done;
    }
    vocab_tokenize(v, text, len, true, false, tokens, (size_t)n_tokens, &err);
    fprintf(stderr, "perplexity: tokenized the input into %lld tokens\n", (long long)n_tokens);
    if (n_tokens < 2 * n_ctx) {
        fprintf(stderr, "hearth perplexity: the text has %lld tokens; a context of %ld needs at least %ld\n",
                (long long)n_tokens, n_ctx, 2 * n_ctx);
        goto done;
    }
    long n_chunks = (long)(n_tokens / n_ctx);
    if (max_chunks > 0 && max_chunks < n_chunks)
        n_chunks = max_chunks;
    int32_t first = (int32_t)(n_ctx / 2);
    fprintf(stderr, "perplexity: calculating perplexity over %ld chunks, n_ctx=%ld, batch_size=%ld, n_seq=1\n",
            n_chunks, n_ctx, n_ctx);

    double nll = 0.0, nll2 = 0.0, t_start = clock_seconds();
    long count = 0;
    for (long c = 0; c < n_chunks; c++) {
        memcpy(chunk, tokens + c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (vocab_adds_bos(v))
            chunk[0] = vocab_bos(v);
        session_reset(s);
        if (session_eval(s, chunk, first, &err) != HEARTH_OK)
            goto eval_failed;
        /* Logits of positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1. */
        for (int32_t done = first; done < n_ctx; done += LOGIT_ROWS) {
            int32_t rows = (int32_t)(n_ctx - done < LOGIT_ROWS ? n_ctx - done : LOGIT_ROWS);
            if (session_eval_all_logits(s, chunk + done, rows, 0, logits, &err) != HEARTH_OK)
                goto eval_failed;
            for (int32_t r = 0; r < rows && done + r + 1 < n_ctx; r++) {
                double nl = negative_log_prob(logits + (size_t)r * n_vocab, n_vocab, chunk[done + r + 1]);
                nll += nl;
                nll2 += nl * nl;
            }
        }
        count += n_ctx - first - 1;
        if (c == 0)
            fprintf(stderr, "perplexity: %.2f seconds per pass\n", clock_seconds() - t_start);
        printf("[%ld]%.4f,", c + 1, exp(nll / (double)count));
        fflush(stdout);
    }
    printf("\n");
    nll2 /= (double)count;
    nll /= (double)count;
    double ppl = exp(nll);
    nll2 -= nll * nll;
    if (nll2 > 0) {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, sqrt(nll2 / (double)(count - 1)) * ppl);
    } else {
        printf("Final estimate: PPL = %.4f\n", ppl);
        fprintf(stderr, "hearth perplexity: the spread of log-probabilities came out negative; no error estimate\n");
    }
    double elapsed = clock_seconds() - t_start;
    fprintf(stderr, "perplexity: %ld chunks in %.2f s (%.1f tokens/s)\n", n_chunks, elapsed,
            (double)(n_chunks * n_ctx) / elapsed);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    goto done;
eval_failed:
    fprintf(stderr, "hearth perplexity: %s\n", err.message);
done:
    free(logits);
    free(chunk);
    free(tokens);
    session_free(s);
    threadpool_free(pool);
    model_free(m);
    free(text);
    return rc;
}

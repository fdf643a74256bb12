/* Golden logits from llama.cpp itself, through llama.h's public API. Built by
 * the make_*_fixtures.sh scripts against the oracle build; never part of
 * hearth.
 *
 *   logits_oracle greedy MODEL.gguf OUT.txt
 *       the 3 prompts below (the third in Gemma 3's turn format), 64 argmax
 *       tokens after each, one token per decode;
 *   logits_oracle topk MODEL.gguf TEXT.txt OUT.txt
 *       BOS + the first tokens of TEXT, 512 in all;
 *   logits_oracle topk-ids MODEL.gguf IDS.txt OUT.txt [STEP]
 *       the token ids in IDS.txt (whitespace-separated, up to 512), as they
 *       are: for models whose tokenizer hearth does not have yet.
 *
 * The topk modes evaluate the sequence with logits at every position, in one
 * batch (or STEP tokens per call: 1 is decode), and write the top 10 per
 * position. CPU backend, 2 threads,
 * n_batch = n_ubatch = 512, everything else as llama.cpp's defaults. The
 * format of each file is described in its header. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

enum { N_GREEDY = 64, N_TOPK_TOKENS = 512, TOP_K = 10, N_THREADS = 2, N_BATCH = 512 };

static const char *const prompts[] = {
    "Once upon a time, in a small village at the edge of a great forest,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<start_of_turn>user\nWhat is the tallest mountain in the world?<end_of_turn>\n"
    "<start_of_turn>model\n",
};

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

static void die(const char *what)
{
    fprintf(stderr, "logits_oracle: %s\n", what);
    exit(1);
}

/* Tokens of text, BOS added if the model adds it, special tokens parsed. */
static llama_token *tokenize(const struct llama_vocab *vocab, const char *text, size_t len, int *n)
{
    int32_t cap = (int32_t)len + 16;
    llama_token *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids)
        die("out of memory");
    *n = llama_tokenize(vocab, text, (int32_t)len, ids, cap, true, true);
    if (*n < 0)
        die("llama_tokenize failed");
    return ids;
}

static struct llama_context *new_context(struct llama_model *model)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = N_BATCH;
    cp.n_ubatch = N_BATCH;
    cp.n_threads = N_THREADS;
    cp.n_threads_batch = N_THREADS;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama_init_from_model failed");
    return ctx;
}

/* Lowest id wins a tie. */
static llama_token argmax(const float *logits, int n_vocab)
{
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* Writes text as one C-escaped line. */
static void put_escaped(FILE *f, const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\\' || c == '"')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void put_detokenized(FILE *f, const struct llama_vocab *vocab, const llama_token *ids, int n)
{
    static char buf[1 << 16];
    int len = llama_detokenize(vocab, ids, n, buf, (int32_t)sizeof buf, false, true);
    if (len < 0)
        die("llama_detokenize: buffer too small");
    fputc('"', f);
    put_escaped(f, buf, len);
    fputs("\"\n", f);
}

static void write_greedy(struct llama_model *model, const char *path)
{
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the greedy file");
    fprintf(f, "# Greedy continuations from llama.cpp (scripts/oracle/logits_oracle.c).\n"
               "# For each prompt: the prompt text (C-escaped), its token ids (BOS added,\n"
               "# special tokens such as <start_of_turn> parsed), then the %d argmax tokens\n"
               "# after it, decoding one token at a time; EOS does not stop it. Ties go to\n"
               "# the lowest id. The '# continuation' line is llama.cpp's detokenization of\n"
               "# the greedy ids (special tokens rendered). CPU, %d threads, n_ubatch %d.\n"
               "#   text \"...\"\n"
               "#   prompt <n> <ids...>\n"
               "#   greedy <n> <ids...>\n",
            N_GREEDY, N_THREADS, N_BATCH);
    for (size_t p = 0; p < sizeof prompts / sizeof prompts[0]; p++) {
        struct llama_context *ctx = new_context(model);
        int n;
        llama_token *ids = tokenize(vocab, prompts[p], strlen(prompts[p]), &n);
        llama_token out[N_GREEDY];
        if (llama_decode(ctx, llama_batch_get_one(ids, n)) != 0)
            die("llama_decode failed on a prompt");
        for (int i = 0; i < N_GREEDY; i++) {
            out[i] = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
            if (i + 1 < N_GREEDY && llama_decode(ctx, llama_batch_get_one(&out[i], 1)) != 0)
                die("llama_decode failed on a generated token");
        }
        fprintf(f, "\ntext \"");
        put_escaped(f, prompts[p], (int)strlen(prompts[p]));
        fprintf(f, "\"\nprompt %d", n);
        for (int i = 0; i < n; i++)
            fprintf(f, " %d", ids[i]);
        fprintf(f, "\ngreedy %d", N_GREEDY);
        for (int i = 0; i < N_GREEDY; i++)
            fprintf(f, " %d", out[i]);
        fprintf(f, "\n# continuation ");
        put_detokenized(f, vocab, out, N_GREEDY);
        free(ids);
        llama_free(ctx);
    }
    if (fclose(f) != 0)
        die("error writing the greedy file");
}

struct scored {
    int id;
    float logit;
};

/* The TOP_K highest logits, highest first, a tie to the lower id: an insertion
 * into a short sorted list (sorting the whole vocabulary per position is slow). */
static void top_k(const float *logits, int n_vocab, struct scored *best)
{
    int n = 0;
    for (int v = 0; v < n_vocab; v++) {
        if (n == TOP_K && !(logits[v] > best[TOP_K - 1].logit))
            continue;
        int at = n < TOP_K ? n++ : TOP_K - 1;
        while (at > 0 && logits[v] > best[at - 1].logit) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = (struct scored){v, logits[v]};
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *t = fopen(path, "rb");
    if (!t)
        die("cannot open an input file");
    static char text[1 << 20];
    *len = fread(text, 1, sizeof text - 1, t);
    if (*len == sizeof text - 1 || ferror(t))
        die("an input file is unreadable or over 1 MiB");
    fclose(t);
    text[*len] = '\0';
    return text;
}

/* BOS + the first N_TOPK_TOKENS - 1 tokens of the text (tokenized whole, then cut). */
static llama_token *text_ids(const struct llama_model *model, const char *text_path, int *n)
{
    size_t len;
    char *text = read_file(text_path, &len);
    llama_token *ids = tokenize(llama_model_get_vocab(model), text, len, n);
    if (*n < N_TOPK_TOKENS)
        die("the text is too short");
    *n = N_TOPK_TOKENS;
    return ids;
}

static llama_token *file_ids(const struct llama_model *model, const char *ids_path, int *n)
{
    size_t len;
    char *text = read_file(ids_path, &len);
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_token *ids = malloc(N_TOPK_TOKENS * sizeof *ids);
    if (!ids)
        die("out of memory");
    *n = 0;
    for (char *p = text, *end;; p = end) {
        long id = strtol(p, &end, 10);
        if (end == p)
            break;
        if (id < 0 || id >= n_vocab || *n == N_TOPK_TOKENS)
            die("the ids file has an id outside the vocabulary, or too many ids");
        ids[(*n)++] = (llama_token)id;
    }
    if (*n == 0)
        die("the ids file holds no ids");
    return ids;
}

/* The sequence goes in `step` tokens per llama_decode call: all of it in one
 * batch, as prefill runs, or 1, as decode runs (llama.cpp's attention rounds
 * differently for small batches). */
static void write_topk(struct llama_model *model, const llama_token *ids, int n, int step, const char *source,
                       const char *path)
{
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the top-k file");
    char how[128];
    if (step >= n)
        snprintf(how, sizeof how, "in one batch of %d", n);
    else
        snprintf(how, sizeof how, "%d token%s per llama_decode call", step, step == 1 ? "" : "s");
    fprintf(f, "# Top-%d logits from llama.cpp (scripts/oracle/logits_oracle.c).\n"
               "# The sequence is %s,\n"
               "# decoded %s with logits at every position; CPU, %d threads,\n"
               "# n_ubatch %d. Line 'tokens' holds the ids; then one line per position: the\n"
               "# position, then the %d highest (id:logit) pairs for the token after it,\n"
               "# highest first, ties by lower id.\n"
               "#   tokens <n> <ids...>\n"
               "#   <pos> <id>:<logit> ...\n",
            TOP_K, source, how, N_THREADS, N_BATCH, TOP_K);
    fprintf(f, "tokens %d", n);
    for (int i = 0; i < n; i++)
        fprintf(f, " %d", ids[i]);
    fputc('\n', f);

    struct llama_context *ctx = new_context(model);
    struct llama_batch batch = llama_batch_init(step, 0, 1);
    for (int done = 0; done < n; done += step) {
        int rows = n - done < step ? n - done : step;
        for (int i = 0; i < rows; i++) {
            batch.token[i] = ids[done + i];
            batch.pos[i] = done + i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = rows;
        if (llama_decode(ctx, batch) != 0)
            die("llama_decode failed on the sequence");
        for (int i = 0; i < rows; i++) {
            const float *logits = llama_get_logits_ith(ctx, i);
            if (!logits)
                die("no logits for a position");
            struct scored best[TOP_K];
            top_k(logits, n_vocab, best);
            fprintf(f, "%d", done + i);
            for (int k = 0; k < TOP_K; k++)
                fprintf(f, " %d:%.9g", best[k].id, (double)best[k].logit);
            fputc('\n', f);
        }
    }
    if (fclose(f) != 0)
        die("error writing the top-k file");
    llama_batch_free(batch);
    llama_free(ctx);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    bool greedy = strcmp(mode, "greedy") == 0 && argc == 4;
    bool topk = (strcmp(mode, "topk") == 0 && argc == 5) || (strcmp(mode, "topk-ids") == 0 && (argc == 5 || argc == 6));
    int step = argc == 6 ? atoi(argv[5]) : N_BATCH;
    if ((!greedy && !topk) || step < 1 || step > N_BATCH) {
        fprintf(stderr, "usage: logits_oracle greedy MODEL.gguf OUT.txt\n"
                        "       logits_oracle topk MODEL.gguf TEXT.txt OUT.txt\n"
                        "       logits_oracle topk-ids MODEL.gguf IDS.txt OUT.txt [STEP]\n");
        return 2;
    }
    llama_log_set(quiet_log, NULL);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model)
        die("cannot load the model");

    if (greedy) {
        write_greedy(model, argv[3]);
    } else {
        int n;
        char source[4200];
        llama_token *ids;
        if (strcmp(mode, "topk") == 0) {
            ids = text_ids(model, argv[3], &n);
            snprintf(source, sizeof source, "BOS + the first %d tokens of %s\n# (the whole text tokenized, then cut)",
                     n - 1, argv[3]);
        } else {
            ids = file_ids(model, argv[3], &n);
            snprintf(source, sizeof source, "the %d token ids given, as they are", n);
        }
        write_topk(model, ids, n, step, source, argv[4]);
        free(ids);
    }

    llama_model_free(model);
    llama_backend_free();
    return 0;
}

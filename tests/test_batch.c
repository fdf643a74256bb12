/* model_forward_batch: several sequences through one pass give the logits
 * each sequence gets alone.
 *
 * For each model, four sequences (prompts of 37, 5, 90 and 1 tokens, then
 * four decode tokens each) run twice:
 *   (a) each alone, on a state of one sequence, chunk by chunk through
 *       model_forward, recording the logits of every chunk's outputs;
 *   (b) together, on one state of four sequences: every pass holds one
 *       sequence's next prefill chunk (while any is left) and the next decode
 *       token of each sequence past its prompt, in an order that changes from
 *       pass to pass, with outputs exactly where (a) had them.
 * Each sequence's chunks are the same in both, so each attention call sees
 * the same queries, keys and length (its precision depends on the length);
 * what differs is which rows share the matrix products and norms. Those
 * quantize and reduce each activation row on its own, and the panel kernels
 * promise that a token's result does not depend on its tile, so the logits
 * must be equal bit for bit (measured: max |dlogit| 0 on every model, at the
 * AVX2 and scalar levels; the difference is printed). A wrong cache row or
 * attention span moves logits by whole units. The argmax is compared too,
 * for the report.
 *
 * Then: a sequence started again at position 0 with another prompt (a
 * server slot reused) gives a fresh state's logits though its old rows are
 * still in the cache; and model_forward_batch's argument errors.
 *
 * Models: Gemma 3 270M (sliding-window layers) and SmolLM2 135M (llama),
 * real weights, each skipped when absent; the tiny random Qwen 3 MoE of
 * test_dense (the dense family's mixture of experts); and the tiny Qwen 3.5
 * of test_qwen35, an architecture without a batched pass (model.c's
 * fallback, one state per sequence).
 *
 * With the argument q8_0, all of it again on a Q8_0 KV cache (the models
 * that take one; qwen35 refuses it, which is checked), which must hold to
 * the bit as well, and whose cache must take 17/32 of f16's bytes. */
#include "test.h"

#include "base/paths.h"
#include "base/threadpool.h"
#include "model/model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N_SEQ = 4, N_DECODE = 4, MAX_CHUNKS = 8, N_CTX = 128, N_BATCH = 128 };

/* One chunk of a sequence: tokens [start, start + n), logits from first_output. */
typedef struct chunk {
    int32_t start, n, first_output;
    float *logits; /* (a)'s, (n - first_output) rows */
} chunk;

typedef struct sequence {
    int32_t tokens[N_CTX];
    int32_t n_prompt;
    chunk chunks[MAX_CHUNKS];
    int n_chunks, n_prefill_chunks;
} sequence;

typedef struct model_case {
    const char *label, *path;
    int32_t first_token;
} model_case;

static int32_t token_at(int32_t n_vocab, int32_t first_token, int seq, int i, int salt)
{
    if (i == 0)
        return first_token;
    uint64_t h = (uint64_t)(i + 1) * 7919u + (uint64_t)seq * 104729u + (uint64_t)salt * 15485863u;
    return (int32_t)(100 + h % (uint64_t)(n_vocab - 100));
}

/* Prompt lengths, and how each prompt is cut: 90 tokens as 64 (f32
 * attention) and 26; the 26 take logits at every position, to check an
 * output suffix longer than one. */
static void make_sequences(sequence *seqs, int32_t n_vocab, int32_t first_token, int salt)
{
    static const int32_t prompt[N_SEQ] = {37, 5, 90, 1};
    static const int32_t cuts[N_SEQ][3] = {{20, 17, 0}, {5, 0, 0}, {64, 26, 0}, {1, 0, 0}};
    for (int s = 0; s < N_SEQ; s++) {
        sequence *q = &seqs[s];
        memset(q, 0, sizeof *q);
        q->n_prompt = prompt[s];
        for (int i = 0; i < N_CTX; i++)
            q->tokens[i] = token_at(n_vocab, first_token, s, i, salt);
        int32_t start = 0;
        for (int c = 0; c < 3 && cuts[s][c]; c++) {
            int32_t n = cuts[s][c];
            bool all = s == 2 && c == 1;
            q->chunks[q->n_chunks++] = (chunk){.start = start, .n = n, .first_output = all ? 0 : n - 1};
            start += n;
        }
        q->n_prefill_chunks = q->n_chunks;
        for (int i = 0; i < N_DECODE; i++)
            q->chunks[q->n_chunks++] = (chunk){.start = start + i, .n = 1, .first_output = 0};
    }
}

static void free_sequences(sequence *seqs)
{
    for (int s = 0; s < N_SEQ; s++)
        for (int c = 0; c < seqs[s].n_chunks; c++)
            free(seqs[s].chunks[c].logits);
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Compares rows of logits; keeps the largest |d| and counts argmax disagreements. */
static void compare_rows(const float *want, const float *got, int32_t rows, int32_t n_vocab, double *max_delta,
                         int *argmax_differ)
{
    for (int32_t r = 0; r < rows; r++) {
        const float *a = want + (size_t)r * n_vocab, *b = got + (size_t)r * n_vocab;
        for (int32_t i = 0; i < n_vocab; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= *max_delta))
                *max_delta = d == d ? d : INFINITY;
        }
        *argmax_differ += argmax(a, n_vocab) != argmax(b, n_vocab);
    }
}

/* (a): each of the first n_seq sequences alone, chunk by chunk, on a
 * one-sequence state. */
static hearth_kv_type kv_type = HEARTH_KV_F16; /* of every state the checks create */

static bool run_alone(const model *m, threadpool *pool, sequence *seqs, int n_seq)
{
    const int32_t n_vocab = model_n_vocab(m);
    hearth_error err = {0};
    model_state *st = NULL;
    bool ok = model_state_create_kv(m, 1, N_CTX, N_BATCH, kv_type, &st, &err) == HEARTH_OK;
    CHECK_MSG(ok, "%s", err.message);
    for (int s = 0; ok && s < n_seq; s++) {
        for (int c = 0; ok && c < seqs[s].n_chunks; c++) {
            chunk *k = &seqs[s].chunks[c];
            k->logits = malloc((size_t)(k->n - k->first_output) * n_vocab * sizeof(float));
            ok = k->logits && model_forward(m, st, pool, seqs[s].tokens + k->start, k->n, k->start,
                                            k->first_output, k->logits, &err) == HEARTH_OK;
            CHECK_MSG(ok, "sequence %d chunk %d: %s", s, c, err.message);
        }
    }
    model_state_free(st);
    return ok;
}

/* A batch under construction. */
typedef struct batch_buf {
    int32_t tokens[N_BATCH], seq[N_BATCH], pos[N_BATCH];
    bool output[N_BATCH];
    int32_t n, n_outputs;
    const chunk *chunks[N_SEQ]; /* what each run of the batch was, in batch order */
    int n_runs;
} batch_buf;

static void batch_add_chunk(batch_buf *b, const sequence *q, int seq, const chunk *k)
{
    for (int32_t i = 0; i < k->n; i++) {
        b->tokens[b->n] = q->tokens[k->start + i];
        b->seq[b->n] = seq;
        b->pos[b->n] = k->start + i;
        b->output[b->n] = i >= k->first_output;
        b->n++;
    }
    b->n_outputs += k->n - k->first_output;
    b->chunks[b->n_runs++] = k;
}

static hearth_status batch_run(const model *m, model_state *st, threadpool *pool, const batch_buf *b, float *logits,
                               hearth_error *err)
{
    model_batch mb = {.n = b->n, .tokens = b->tokens, .seq = b->seq, .pos = b->pos, .output = b->output};
    return model_forward_batch(m, st, pool, &mb, logits, err);
}

/* (b): all sequences through one state, mixed in each pass. */
static void run_together(const model *m, threadpool *pool, const sequence *seqs, double *max_delta,
                         int *argmax_differ, int *rows_compared, int *passes)
{
    const int32_t n_vocab = model_n_vocab(m);
    hearth_error err = {0};
    model_state *st = NULL;
    CHECK_MSG(model_state_create_kv(m, N_SEQ, N_CTX, N_BATCH, kv_type, &st, &err) == HEARTH_OK, "%s", err.message);
    if (!st)
        return;
    CHECK(model_state_n_seq(st) == N_SEQ);
    float *logits = malloc((size_t)N_BATCH * n_vocab * sizeof(float));
    int next[N_SEQ] = {0}; /* each sequence's next chunk */
    for (int pass = 0; logits; pass++) {
        batch_buf b = {0};
        /* The sequence whose prefill chunk goes in: the first, from a
         * rotating start, with one left; then everyone else past its prompt
         * adds a decode token. The prefill chunk goes first, last or in
         * between, by pass. */
        int prefill = -1;
        for (int i = 0; i < N_SEQ && prefill < 0; i++) {
            int s = (pass + i) % N_SEQ;
            if (next[s] < seqs[s].n_prefill_chunks)
                prefill = s;
        }
        int order[N_SEQ], n_order = 0;
        for (int i = 0; i < N_SEQ; i++) {
            int s = (pass * 3 + i) % N_SEQ;
            if (s != prefill && next[s] >= seqs[s].n_prefill_chunks && next[s] < seqs[s].n_chunks)
                order[n_order++] = s;
        }
        int prefill_at = prefill < 0 ? -1 : pass % (n_order + 1);
        for (int i = 0; i <= n_order; i++) {
            if (i == prefill_at)
                batch_add_chunk(&b, &seqs[prefill], prefill, &seqs[prefill].chunks[next[prefill]++]);
            if (i < n_order)
                batch_add_chunk(&b, &seqs[order[i]], order[i], &seqs[order[i]].chunks[next[order[i]]++]);
        }
        if (b.n == 0)
            break;
        hearth_status s = batch_run(m, st, pool, &b, logits, &err);
        CHECK_MSG(s == HEARTH_OK, "pass %d: %s", pass, err.message);
        if (s != HEARTH_OK)
            break;
        const float *row = logits;
        for (int r = 0; r < b.n_runs; r++) {
            const chunk *k = b.chunks[r];
            compare_rows(k->logits, row, k->n - k->first_output, n_vocab, max_delta, argmax_differ);
            *rows_compared += k->n - k->first_output;
            row += (size_t)(k->n - k->first_output) * n_vocab;
        }
        (*passes)++;
    }
    for (int s = 0; s < N_SEQ; s++)
        CHECK_MSG(next[s] == seqs[s].n_chunks, "sequence %d: %d of %d chunks ran", s, next[s], seqs[s].n_chunks);

    /* Sequence 2 (94 tokens) starts over with another prompt of 37, cut as
     * sequence 0's was, beside decode tokens of the others that take no
     * logits; its cache rows past 37 still hold the old tokens. Its logits
     * must be a fresh state's. */
    sequence fresh[N_SEQ];
    make_sequences(fresh, n_vocab, seqs[0].tokens[0], 1);
    fresh[0].n_chunks = fresh[0].n_prefill_chunks;
    bool ok = run_alone(m, pool, fresh, 1);
    for (int c = 0; ok && c < fresh[0].n_chunks && logits; c++) {
        const chunk *k = &fresh[0].chunks[c];
        batch_buf b = {0};
        for (int s = 0; s < N_SEQ; s++) {
            if (s == 2) {
                batch_add_chunk(&b, &fresh[0], 2, k);
                continue;
            }
            chunk extra = {.start = seqs[s].n_prompt + N_DECODE + c, .n = 1, .first_output = 1};
            batch_add_chunk(&b, &seqs[s], s, &extra);
        }
        hearth_status s = batch_run(m, st, pool, &b, logits, &err);
        CHECK_MSG(s == HEARTH_OK, "reused sequence, chunk %d: %s", c, err.message);
        if (s == HEARTH_OK) {
            compare_rows(k->logits, logits, k->n - k->first_output, n_vocab, max_delta, argmax_differ);
            *rows_compared += k->n - k->first_output;
        }
    }
    free_sequences(fresh);
    free(logits);
    model_state_free(st);
}

/* model_forward_batch refuses what breaks its rules, saying why. */
static void check_errors(const model *m, threadpool *pool)
{
    hearth_error err = {0};
    model_state *st = NULL;
    CHECK_MSG(model_state_create_kv(m, N_SEQ, N_CTX, N_BATCH, kv_type, &st, &err) == HEARTH_OK, "%s", err.message);
    if (!st)
        return;
    const int32_t n_vocab = model_n_vocab(m);
    float *logits = malloc((size_t)4 * n_vocab * sizeof(float));
    int32_t tokens[4] = {1, 2, 3, 4};
    bool all[4] = {true, true, true, true};
    static const struct {
        const char *what, *says;
        int32_t n, seq[4], pos[4];
        bool output[4];
    } cases[] = {
        {"a sequence out of range", "sequence 4 of 4", 2, {0, 4}, {0, 0}, {true, true}},
        {"a negative sequence", "sequence -1 of 4", 1, {-1}, {0}, {true}},
        {"a sequence in two runs", "two runs", 3, {0, 1, 0}, {0, 0, 1}, {true, true, true}},
        {"positions that skip", "does not follow", 2, {2, 2}, {5, 7}, {true, true}},
        {"positions that go back", "does not follow", 2, {2, 2}, {5, 5}, {true, true}},
        {"outputs that are not a suffix", "must end", 3, {3, 3, 3}, {0, 1, 2}, {false, true, false}},
        {"a sequence past its context", "context full", 3, {0, 1, 1}, {0, N_CTX - 1, N_CTX}, {true, true, true}},
        {"a negative position", "context full", 1, {1}, {-1}, {true}},
    };
    for (size_t i = 0; logits && i < sizeof cases / sizeof *cases; i++) {
        err.message[0] = '\0';
        model_batch b = {.n = cases[i].n, .tokens = tokens, .seq = cases[i].seq, .pos = cases[i].pos,
                         .output = cases[i].output};
        hearth_status s = model_forward_batch(m, st, pool, &b, logits, &err);
        CHECK_MSG(s == HEARTH_ERR_ARG && strstr(err.message, cases[i].says), "%s: status %d, '%s'", cases[i].what,
                  (int)s, err.message);
    }
    model_batch no_room = {.n = 2, .tokens = tokens, .seq = (int32_t[]){0, 1}, .pos = (int32_t[]){0, 0},
                           .output = all};
    CHECK(model_forward_batch(m, st, pool, &no_room, NULL, &err) == HEARTH_ERR_ARG);
    model_batch too_many = {.n = N_BATCH + 1, .tokens = tokens, .seq = no_room.seq, .pos = no_room.pos};
    CHECK(model_forward_batch(m, st, pool, &too_many, logits, &err) == HEARTH_ERR_ARG);
    int32_t bad_token[1] = {n_vocab};
    model_batch bad = {.n = 1, .tokens = bad_token, .seq = (int32_t[]){2}, .pos = (int32_t[]){0}, .output = all};
    CHECK(model_forward_batch(m, st, pool, &bad, logits, &err) == HEARTH_ERR_ARG &&
          strstr(err.message, "outside the vocabulary"));
    /* After all that, a good batch still runs. */
    model_batch good = {.n = 2, .tokens = tokens, .seq = (int32_t[]){3, 0}, .pos = (int32_t[]){0, 0}, .output = all};
    CHECK_MSG(model_forward_batch(m, st, pool, &good, logits, &err) == HEARTH_OK, "%s", err.message);
    free(logits);
    model_state_free(st);
}

/* One cache holds every sequence's rows; a batched architecture keeps one
 * scratch, sized by the batch, for all of them. */
static void check_memory(const model *m)
{
    hearth_error err = {0};
    model_state *one = NULL, *multi = NULL;
    CHECK_MSG(model_state_create_kv(m, 1, N_CTX, N_BATCH, kv_type, &one, &err) == HEARTH_OK &&
                  model_state_create_kv(m, N_SEQ, N_CTX, N_BATCH, kv_type, &multi, &err) == HEARTH_OK,
              "%s", err.message);
    if (one && kv_type == HEARTH_KV_Q8_0) {
        model_state *f16 = NULL;
        CHECK_MSG(model_state_create(m, N_CTX, N_BATCH, &f16, &err) == HEARTH_OK, "%s", err.message);
        if (f16)
            CHECK_MSG(model_state_memory(one).kv_cache * 32 == model_state_memory(f16).kv_cache * 17,
                      "q8_0 KV cache %zu bytes, f16 %zu", model_state_memory(one).kv_cache,
                      model_state_memory(f16).kv_cache);
        model_state_free(f16);
    }
    if (one && multi) {
        model_memory a = model_state_memory(one), b = model_state_memory(multi);
        CHECK_MSG(b.kv_cache == N_SEQ * a.kv_cache && b.recurrent == N_SEQ * a.recurrent,
                  "KV cache %zu and recurrent %zu bytes for %d sequences, %zu and %zu for one", b.kv_cache,
                  b.recurrent, N_SEQ, a.kv_cache, a.recurrent);
        if (model_batches_sequences(m))
            CHECK_MSG(b.scratch == a.scratch, "scratch %zu bytes for %d sequences, %zu for one", b.scratch, N_SEQ,
                      a.scratch);
        CHECK(model_state_bytes(multi) == b.kv_cache + b.recurrent + b.scratch);
    }
    model_state_free(one);
    model_state_free(multi);
}

static void check_model(const model_case *mc, threadpool *pool)
{
    hearth_error err = {0};
    model *m = NULL;
    if (access(mc->path, R_OK) != 0) {
        printf("  %s: %s absent, skipped\n", mc->label, mc->path);
        return;
    }
    CHECK_MSG(model_load(mc->path, &m, &err) == HEARTH_OK, "%s: %s", mc->label, err.message);
    if (!m)
        return;
    if (kv_type != HEARTH_KV_F16) {
        model_state *st = NULL;
        if (model_state_create_kv(m, 1, N_CTX, N_BATCH, kv_type, &st, &err) != HEARTH_OK) {
            /* Only the architectures without a quantized cache may refuse. */
            printf("  %s: %s\n", mc->label, err.message);
            CHECK_MSG(err.status == HEARTH_ERR_UNSUPPORTED && !model_batches_sequences(m), "%s: %s", mc->label,
                      err.message);
            model_free(m);
            return;
        }
        model_state_free(st);
    }
    sequence seqs[N_SEQ];
    make_sequences(seqs, model_n_vocab(m), mc->first_token, 0);
    double max_delta = 0.0;
    int argmax_differ = 0, rows = 0, passes = 0;
    if (run_alone(m, pool, seqs, N_SEQ))
        run_together(m, pool, seqs, &max_delta, &argmax_differ, &rows, &passes);
    printf("  %s (%s): %d rows of logits over %d passes, max |dlogit| %.3g, argmax differs in %d\n", mc->label,
           model_batches_sequences(m) ? "batched" : "fallback", rows, passes, max_delta, argmax_differ);
    CHECK_MSG(rows > 0 && max_delta == 0.0, "%s: max |dlogit| %.3g, expected 0", mc->label, max_delta);
    CHECK_MSG(argmax_differ == 0, "%s: argmax differs in %d rows", mc->label, argmax_differ);
    check_errors(m, pool);
    check_memory(m);
    free_sequences(seqs);
    model_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !model_kv_type_parse(argv[1], &kv_type)) {
        fprintf(stderr, "usage: test_batch [f16|q8_0]\n");
        return 2;
    }
    char dir[4096], gemma3[4200], smollm2[4200];
    if (!paths_default_model(gemma3, sizeof gemma3))
        gemma3[0] = '\0';
    if (paths_models_dir(dir, sizeof dir))
        snprintf(smollm2, sizeof smollm2, "%s/smollm2-135m-instruct-q4_1.gguf", dir);
    else
        smollm2[0] = '\0';
    const model_case cases[] = {
        {"gemma3 270M", gemma3, 2},
        {"smollm2 135M", smollm2, 1},
        {"qwen3moe tiny", HEARTH_TEST_TMPDIR "/dense/qwen3moe-tiny-q8_0.gguf", 1},
        {"qwen35 tiny", HEARTH_TEST_TMPDIR "/qwen35/qwen35-tiny-q8_0.gguf", 1},
    };
    int present = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        present += cases[i].path[0] && access(cases[i].path, R_OK) == 0;
    if (!present)
        TEST_SKIP("none of the models is installed");
    hearth_error err = {0};
    threadpool *pool = NULL;
    if (threadpool_create(threadpool_default_threads(), &pool, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return test_finish("test_batch");
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_model(&cases[i], pool);
    threadpool_free(pool);
    return test_finish("test_batch");
}

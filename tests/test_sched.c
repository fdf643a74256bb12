/* The server's scheduler on the real Gemma 3 270M, without HTTP: parallel
 * slots give what one session gives alone (greedy text), a queued request
 * waits its turn, a full queue says busy, a released job frees its slot, a
 * slot keeps a shared prefix, stop strings cut the text, logprobs are those
 * of the token chosen, and a prefix cache gives back a prompt whose slot was
 * taken. */
#include "test.h"

#include "base/paths.h"
#include "runtime/generate.h"
#include "server/sched.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const prompts[] = {
    "The three most important inventions of the nineteenth century were",
    "Once upon a time, in a small village by the sea,",
    "To make bread, you need flour, water and",
};
enum { N_PROMPTS = 3, N_PREDICT = 24 };

typedef struct text_buf {
    char text[4096];
    size_t len;
} text_buf;

static bool collect(void *user, const char *text, size_t len)
{
    text_buf *b = user;
    if (b->len + len < sizeof b->text) {
        memcpy(b->text + b->len, text, len);
        b->len += len;
        b->text[b->len] = '\0';
    }
    return true;
}

static int32_t tokenize(const model *m, const char *text, int32_t *out, int32_t cap)
{
    hearth_error err = {0};
    int64_t n = vocab_tokenize(model_vocab(m), text, strlen(text), true, false, out, (size_t)cap, &err);
    return n > 0 && n <= cap ? (int32_t)n : -1;
}

/* Runs a job to its end; its text into *b. */
static sched_finish finish_job(sched_job *j, text_buf *b, sched_output *last)
{
    sched_output o = {0};
    b->len = 0;
    b->text[0] = '\0';
    for (;;) {
        if (sched_job_wait(j, 1000, &o))
            collect(b, o.text ? o.text : "", o.len);
        if (o.finish != SCHED_RUNNING)
            break;
    }
    sched_finish f = o.finish;
    if (last) {
        *last = o;
        last->text = NULL, last->tokens = NULL;
    }
    sched_output_free(&o);
    return f;
}

static sched_request greedy_request(const int32_t *prompt, int32_t n, int32_t max_tokens)
{
    sched_request r = {.prompt = prompt, .n_prompt = n, .sampling = sampler_default_params(), .max_tokens = max_tokens};
    r.sampling.temperature = 0.0f;
    return r;
}

int main(void)
{
    char path[4096];
    if (!paths_default_model(path, sizeof path) || access(path, R_OK) != 0)
        TEST_SKIP("default model not installed (scripts/setup.sh installs it)");
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    if (model_load(path, &m, &err) != HEARTH_OK || threadpool_create(2, &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int32_t tokens[N_PROMPTS][64], n_tokens[N_PROMPTS];
    text_buf alone[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) {
        n_tokens[i] = tokenize(m, prompts[i], tokens[i], 64);
        CHECK(n_tokens[i] > 0);
        /* The reference: one session, the generation loop of hearth run. */
        session *s = NULL;
        sampler *smp = NULL;
        sampler_params sp = sampler_default_params();
        sp.temperature = 0.0f;
        generate_params gp = {.n_predict = N_PREDICT};
        generate_stats stats;
        alone[i].len = 0;
        CHECK(session_create(m, pool, &(session_params){.n_ctx = 256}, &s, &err) == HEARTH_OK);
        CHECK(sampler_create(&sp, model_n_vocab(m), &smp, &err) == HEARTH_OK);
        CHECK(generate_run(s, smp, model_vocab(m), tokens[i], n_tokens[i], &gp, collect, &alone[i], &stats, &err) ==
              HEARTH_OK);
        CHECK(alone[i].len > 0);
        sampler_free(smp);
        session_free(s);
    }

    sched *sch = NULL;
    sched_params params = {.n_slots = 2, .n_ctx = 256, .n_batch = 64, .prefill_chunk = 8, .max_queued = 2};
    CHECK(sched_create(m, pool, &params, &sch, &err) == HEARTH_OK);

    /* Three requests over two slots: one waits; all give the text alone. */
    sched_job *jobs[N_PROMPTS] = {NULL};
    for (int i = 0; i < N_PROMPTS; i++) {
        sched_request r = greedy_request(tokens[i], n_tokens[i], N_PREDICT);
        CHECK(sched_submit(sch, &r, &jobs[i], &err) == HEARTH_OK);
    }
    for (int i = 0; i < N_PROMPTS && jobs[N_PROMPTS - 1]; i++) {
        text_buf got;
        sched_output last;
        sched_finish f = finish_job(jobs[i], &got, &last);
        CHECK_MSG(strcmp(got.text, alone[i].text) == 0, "prompt %d: slots gave \"%s\", one session \"%s\"", i,
                  got.text, alone[i].text);
        CHECK(f == SCHED_FINISH_LENGTH || f == SCHED_FINISH_STOP);
        CHECK(last.n_prompt == n_tokens[i]);
        CHECK(f != SCHED_FINISH_LENGTH || last.n_generated == N_PREDICT);
        sched_job_release(jobs[i]);
    }

    /* The same prompt again: a slot still holds it (all but the last token). */
    {
        sched_request r = greedy_request(tokens[2], n_tokens[2], N_PREDICT);
        sched_job *j = NULL;
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_OK);
        text_buf got;
        sched_output last;
        finish_job(j, &got, &last);
        CHECK_MSG(last.n_cached == n_tokens[2] - 1, "cached %d of %d", last.n_cached, n_tokens[2]);
        CHECK(strcmp(got.text, alone[2].text) == 0);
        sched_job_release(j);
    }

    /* A stop string cuts the text before it. */
    {
        const char *stop = strstr(alone[0].text + 1, " ");
        char word[16] = "";
        if (stop)
            snprintf(word, sizeof word, "%.*s", (int)strcspn(stop + 1, " ") + 1, stop);
        const char *stops[] = {word};
        sched_request r = greedy_request(tokens[0], n_tokens[0], N_PREDICT);
        r.stops = stops, r.n_stops = 1;
        sched_job *j = NULL;
        CHECK(word[0] && sched_submit(sch, &r, &j, &err) == HEARTH_OK);
        text_buf got;
        CHECK(finish_job(j, &got, NULL) == SCHED_FINISH_STOP);
        CHECK_MSG(got.len == (size_t)(stop - alone[0].text) && memcmp(got.text, alone[0].text, got.len) == 0,
                  "stop \"%s\": \"%s\"", word, got.text);
        sched_job_release(j);
    }

    /* Logprobs: greedy picks the most likely token, and says so. */
    {
        sched_request r = greedy_request(tokens[1], n_tokens[1], 8);
        r.logprobs = true, r.top_logprobs = 5;
        sched_job *j = NULL;
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_OK);
        sched_output o = {0};
        int32_t seen = 0;
        for (;;) {
            sched_job_wait(j, 1000, &o);
            for (int32_t k = 0; k < o.n_tokens; k++, seen++) {
                const sched_token *t = &o.tokens[k];
                CHECK(t->n_top == 5 && t->top_id[0] == t->id && t->logprob <= 0.0f);
                CHECK(t->top_logprob[0] >= t->top_logprob[1] && t->top_logprob[3] >= t->top_logprob[4]);
                CHECK(t->logprob - t->top_logprob[0] < 1e-6f && t->top_logprob[0] - t->logprob < 1e-6f);
            }
            if (o.finish != SCHED_RUNNING)
                break;
        }
        CHECK(seen >= 8);
        sched_output_free(&o);
        sched_job_release(j);
    }

    /* Bad requests are refused at submit. */
    {
        sched_job *j = NULL;
        sched_request r = greedy_request(tokens[0], 0, 8);
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_ERR_ARG && !j);
        int32_t big[300] = {0};
        r = greedy_request(big, 300, 8);
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_ERR_ARG && strstr(err.message, "context"));
        int32_t bad[2] = {2, 1 << 30};
        r = greedy_request(bad, 2, 8);
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_ERR_ARG);
        r = greedy_request(tokens[0], n_tokens[0], 8);
        r.sampling.temperature = nanf("");
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_ERR_ARG);
    }

    /* Past two slots and a queue of two: busy. Releasing the running jobs
     * frees their slots, and the queued ones then run. */
    {
        sched_job *held[6] = {NULL};
        int accepted = 0, busy = 0;
        for (int i = 0; i < 6; i++) {
            sched_request r = greedy_request(tokens[i % N_PROMPTS], n_tokens[i % N_PROMPTS], 200);
            r.ignore_eos = true;
            hearth_status st = sched_submit(sch, &r, &held[i], &err);
            accepted += st == HEARTH_OK;
            busy += st == HEARTH_ERR_BUSY;
        }
        CHECK_MSG(accepted >= 2 && accepted <= 4 && busy == 6 - accepted, "accepted %d, busy %d", accepted, busy);
        for (int i = 0; i < 6; i++)
            sched_job_release(held[i]);
        sched_metrics mt = {0};
        for (int tries = 0; tries < 100; tries++) {
            mt = sched_get_metrics(sch);
            if (mt.slots_busy == 0 && mt.queued == 0)
                break;
            nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        }
        CHECK_MSG(mt.slots_busy == 0 && mt.queued == 0, "busy %d queued %d after releasing", mt.slots_busy, mt.queued);
        CHECK(mt.requests_cancelled >= (uint64_t)accepted);
        CHECK(mt.requests_rejected == (uint64_t)busy);
        /* And the scheduler still serves. */
        sched_request r = greedy_request(tokens[1], n_tokens[1], N_PREDICT);
        sched_job *j = NULL;
        CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_OK);
        text_buf got;
        finish_job(j, &got, NULL);
        CHECK(strcmp(got.text, alone[1].text) == 0);
        sched_job_release(j);
    }

    sched_free(sch);

    /* With a prefix cache (RAM only, blocks of 4): one slot, so a prompt
     * between two runs of the same one takes the slot's tokens away, and the
     * third request restores its whole blocks from the cache instead, and
     * still gives the text alone. */
    {
        prefix_cache_params cache = {.block_tokens = 4, .ram_bytes = 64u << 20};
        sched_params one = {.n_slots = 1, .n_ctx = 256, .n_batch = 64, .prefill_chunk = 8, .prefix_cache = &cache};
        CHECK(sched_create(m, pool, &one, &sch, &err) == HEARTH_OK);
        int order[] = {0, 1, 0};
        for (int k = 0; k < 3 && sch; k++) {
            int i = order[k];
            sched_request r = greedy_request(tokens[i], n_tokens[i], N_PREDICT);
            sched_job *j = NULL;
            CHECK(sched_submit(sch, &r, &j, &err) == HEARTH_OK);
            text_buf got;
            sched_output last;
            finish_job(j, &got, &last);
            int32_t expected = k < 2 ? (k == 0 ? 0 : 1) : (n_tokens[i] - 1) / 4 * 4; /* k == 1: the shared BOS */
            CHECK_MSG(last.n_cached == expected, "request %d: cached %d, expected %d", k, last.n_cached, expected);
            CHECK_MSG(strcmp(got.text, alone[i].text) == 0, "request %d: \"%s\", alone \"%s\"", k, got.text,
                      alone[i].text);
            sched_job_release(j);
        }
        sched_metrics mt = sched_get_metrics(sch);
        CHECK(mt.cached_tokens == (uint64_t)(1 + (n_tokens[0] - 1) / 4 * 4));
        sched_free(sch);
    }
    threadpool_free(pool);
    model_free(m);
    printf("test_sched: %d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* The checks every real model's test makes against its llama.cpp fixtures
 * (scripts/oracle/make_real_model_fixtures.sh NAME writes them into
 * tests/fixtures/NAME/): teacher-forced top-k logits on real text, greedy
 * continuations of three prompts, and positions carried across calls. Each
 * test states its model's thresholds, and why, in a real_model_bounds. */
#ifndef HEARTH_TEST_REAL_MODEL_H
#define HEARTH_TEST_REAL_MODEL_H

#include "test.h"
#include "topk_fixture.h"

#include "runtime/session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct real_model_bounds {
    const char *name; /* its fixtures are in tests/fixtures/<name>/ */
    double min_top1, max_delta, max_mean_delta;
    double clear_margin;   /* logits between llama.cpp's first and second choice */
    int min_clear;         /* positions with that margin, at least */
    double min_clear_top1; /* agreement where llama.cpp's choice is that clear */
    int min_greedy_prefix;
    float near_tie; /* logits */
    int32_t first_token; /* what a sequence starts with: BOS, or a common token */
} real_model_bounds;

static inline void check_topk(const real_model_bounds *b, session *s, int32_t n_vocab)
{
    char path[4096];
    snprintf(path, sizeof path, HEARTH_FIXTURES_DIR "/%s/topk.txt", b->name);
    topk_stats st = topk_compare(s, n_vocab, path, 512, TOPK_FIXTURE_ROWS, b->clear_margin);
    double rate = st.positions ? (double)st.agree / st.positions : 0.0;
    double clear_rate = st.clear ? (double)st.clear_agree / st.clear : 0.0;
    printf("  teacher-forced: %d positions, top-1 agreement %d/%d = %.2f %%; where llama.cpp leads by >= %.1f: "
           "%d/%d = %.2f %%; |dlogit| over its top-%d: max %.4f, mean %.4f\n",
           st.positions, st.agree, st.positions, 100.0 * rate, b->clear_margin, st.clear_agree, st.clear,
           100.0 * clear_rate, TOPK_FIXTURE_K, st.max_delta, st.mean_delta);
    CHECK_MSG(rate >= b->min_top1, "top-1 agreement %.4f below %.2f", rate, b->min_top1);
    CHECK_MSG(st.clear >= b->min_clear && clear_rate >= b->min_clear_top1, "clear-margin agreement %d/%d",
              st.clear_agree, st.clear);
    CHECK_MSG(st.max_delta <= b->max_delta, "max |dlogit| %.4f above %.2f", st.max_delta, b->max_delta);
    CHECK_MSG(st.mean_delta <= b->max_mean_delta, "mean |dlogit| %.4f above %.2f", st.mean_delta,
              b->max_mean_delta);
}

/* One prompt's continuation, twice.
 *
 * Free-running: hearth's own greedy tokens must equal llama.cpp's for the
 * first min_greedy_prefix tokens, unless they part at a near tie (hearth's
 * choice leads llama.cpp's by at most near_tie logits there). Which side of a
 * near tie a token falls on is the noise the teacher-forced figures measure,
 * not a defect: any change in summation order moves it, in llama.cpp as much
 * as here.
 *
 * Teacher-forced along llama.cpp's 64 tokens: at every position llama.cpp's
 * token is hearth's choice or within near_tie of it. This keeps checking
 * after a divergence, where the free-running comparison stops meaning
 * anything; a real defect puts llama.cpp's token logits behind. */
static inline void check_greedy_case(const real_model_bounds *b, session *s, int32_t n_vocab, int number, const int32_t *prompt, int32_t n_prompt,
                              const int32_t *expected, int32_t n_expected)
{
    hearth_error err = {0};
    session_reset(s);
    int same = 0;
    float divergence_gap = 0.0f;
    hearth_status st = session_eval(s, prompt, n_prompt, &err);
    for (int32_t i = 0; st == HEARTH_OK && i < n_expected; i++) {
        const float *logits = session_logits(s);
        int32_t next = argmax(logits, n_vocab);
        if (next != expected[i]) {
            divergence_gap = logits[next] - logits[expected[i]];
            printf("  greedy prompt %d parts from llama.cpp at token %d: hearth's %d leads llama.cpp's %d by %.4f\n",
                   number, i, next, expected[i], divergence_gap);
            break;
        }
        same++;
        st = session_eval(s, &next, 1, &err);
    }
    CHECK_MSG(st == HEARTH_OK, "eval: %s", err.message);
    printf("  greedy prompt %d (%d tokens): first %d of %d tokens identical\n", number, n_prompt, same, n_expected);
    CHECK_MSG(same >= b->min_greedy_prefix || divergence_gap <= b->near_tie,
              "prompt %d: only %d tokens identical, and hearth's choice then leads by %.4f", number, same,
              divergence_gap);

    session_reset(s);
    int agree = 0, within = 0;
    float worst = 0.0f;
    st = session_eval(s, prompt, n_prompt, &err);
    for (int32_t i = 0; st == HEARTH_OK && i < n_expected; i++) {
        const float *logits = session_logits(s);
        int32_t best = argmax(logits, n_vocab);
        float gap = logits[best] - logits[expected[i]];
        agree += best == expected[i];
        within += gap <= b->near_tie;
        worst = gap > worst ? gap : worst;
        st = session_eval(s, &expected[i], 1, &err);
    }
    CHECK_MSG(st == HEARTH_OK, "eval: %s", err.message);
    printf("  greedy prompt %d teacher-forced: top-1 %d/%d, within %.2f of top-1 %d/%d, largest lead over "
           "llama.cpp's token %.4f\n",
           number, agree, n_expected, b->near_tie, within, n_expected, worst);
    CHECK_MSG(within == n_expected, "prompt %d: llama.cpp's token trails hearth's choice by %.4f", number, worst);
}

static inline void check_greedy(const real_model_bounds *b, session *s, int32_t n_vocab)
{
    char path[4096];
    snprintf(path, sizeof path, HEARTH_FIXTURES_DIR "/%s/greedy.txt", b->name);
    char *text = test_read_file(path, NULL);
    CHECK_MSG(text != NULL, "cannot read greedy.txt");
    if (!text)
        return;
    int cases = 0;
    int32_t n_prompt = 0, *prompt = NULL;
    for (char *line = text; line && *line;) {
        int32_t n_expected = 0, *expected = NULL;
        int32_t *ids = parse_ids(line, "prompt", &n_prompt);
        if (ids) {
            free(prompt);
            prompt = ids;
        } else if (prompt && (expected = parse_ids(line, "greedy", &n_expected)) != NULL) {
            check_greedy_case(b, s, n_vocab, cases + 1, prompt, n_prompt, expected, n_expected);
            cases++;
            free(expected);
        }
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    CHECK_MSG(cases == 3, "greedy.txt: %d cases, expected 3", cases);
    free(prompt);
    free(text);
}

/* Positions continue across calls: 128 tokens in one call or in two of 64
 * give the same logits, bit for bit (both run the f32 attention path); and a
 * call that would overflow the context fails and changes nothing. */
static inline void check_session(const real_model_bounds *bounds, const model *m, threadpool *pool)
{
    enum { N = 128 };
    int32_t n_vocab = model_n_vocab(m), tokens[N];
    for (int i = 0; i < N; i++)
        tokens[i] = i == 0 ? bounds->first_token : 1000 + (i * 7919) % 20000;
    hearth_error err = {0};
    session *a = NULL, *b = NULL;
    CHECK(session_create(m, pool, &(session_params){.n_ctx = 160}, &a, &err) == HEARTH_OK);
    CHECK(session_create(m, pool, &(session_params){.n_ctx = 160}, &b, &err) == HEARTH_OK);
    if (!a || !b) {
        session_free(a);
        session_free(b);
        return;
    }
    CHECK(session_eval(a, tokens, N, &err) == HEARTH_OK);
    CHECK(session_eval(b, tokens, N / 2, &err) == HEARTH_OK);
    CHECK(session_eval(b, tokens + N / 2, N / 2, &err) == HEARTH_OK);
    CHECK(session_n_past(a) == N && session_n_past(b) == N);
    CHECK_MSG(memcmp(session_logits(a), session_logits(b), (size_t)n_vocab * sizeof(float)) == 0,
              "logits differ between one call and two");
    CHECK(session_eval(a, tokens, 33, &err) == HEARTH_ERR_ARG && strstr(err.message, "context full") != NULL);
    CHECK(session_n_past(a) == N);
    CHECK(session_eval(a, tokens, 32, &err) == HEARTH_OK && session_n_past(a) == 160);
    int32_t bad = n_vocab;
    session_reset(b);
    CHECK(session_eval(b, &bad, 1, &err) == HEARTH_ERR_ARG && strstr(err.message, "outside the vocabulary"));
    session_free(a);
    session_free(b);
}

/* All of the above on the model at path; returns test_finish's status. */
static inline int real_model_run(const real_model_bounds *b, const char *path, const char *test_name)
{
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    session *s = NULL;
    if (model_load(path, &m, &err) != HEARTH_OK || threadpool_create(threadpool_default_threads(), &pool, &err) ||
        session_create(m, pool, &(session_params){.n_ctx = 1024}, &s, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
    } else {
        check_session(b, m, pool);
        check_topk(b, s, model_n_vocab(m));
        check_greedy(b, s, model_n_vocab(m));
    }
    session_free(s);
    threadpool_free(pool);
    model_free(m);
    return test_finish(test_name);
}

#endif

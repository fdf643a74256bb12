/* Gemma 3 270M end to end against llama.cpp (the oracle): the fixtures in
 * tests/fixtures/gemma3/ come from scripts/oracle/make_gemma3_fixtures.sh.
 *
 *   topk.txt    a teacher-forced sequence of 512 tokens and llama.cpp's top-10
 *               logits at each position.
 *   greedy.txt  3 prompts and llama.cpp's 64 greedy tokens after each: hearth's
 *               greedy continuation must be identical for at least 16 tokens
 *               or part from it only at a near tie, and llama.cpp's tokens,
 *               teacher-forced, must all be hearth's choice or a near tie
 *               (check_greedy_case).
 *
 * Why the top-1 thresholds are what they are. This model, quantized (Q4_K_M)
 * and run with int8 activations as llama.cpp runs it, is numerically chaotic:
 * a last-bit difference in a float sum moves an activation across an int8
 * rounding boundary now and then, and 18 layers of residual stream in the
 * thousands amplify such steps to about half a logit on average. Measured on
 * this sequence (see the note on issue 3):
 *   llama.cpp vs llama.cpp with weight repacking off (only Q4_K's summation
 *     order changes):             top-1 94.7 %, mean |dlogit| 0.62, max 4.4
 *   hearth scalar vs hearth AVX-512 (only our dot products' order changes):
 *                                 top-1 94.3 %, mean 0.62, max 5.4
 *   hearth vs llama.cpp:          top-1 95.1 %, mean 0.65, max 5.0
 * So plain top-1 agreement cannot reach 99 % for any implementation that does
 * not reproduce ggml's summation order bit for bit; it is held to the noise
 * floor (93 %), and the sharper test is agreement where llama.cpp's choice is
 * clear — its top-1 leads by >= 2 logits — which must be >= 99 % (measured
 * 100 %). A real defect (a wrong RoPE base, a missing norm) drops both far
 * below: see the mutation checks in the note. Needs the default model
 * (scripts/setup.sh installs it); skips without it. */
#include "test.h"
#include "topk_fixture.h"

#include "base/paths.h"
#include "runtime/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOP_K TOPK_FIXTURE_K
#define MAX_LOGIT_DELTA 6.5       /* the noise floor above reaches 5.4 */
#define MAX_MEAN_LOGIT_DELTA 0.8  /* noise floor 0.62 */
#define MIN_TOP1_AGREEMENT 0.93
#define CLEAR_MARGIN 2.0          /* logits between llama.cpp's first and second choice */
#define MIN_CLEAR_TOP1_AGREEMENT 0.99
#define MIN_GREEDY_PREFIX 16
#define NEAR_TIE 0.25f            /* logits; well under the mean |dlogit| noise of ~0.65 */
#define LOGIT_ROWS TOPK_FIXTURE_ROWS

static void check_topk(session *s, int32_t n_vocab)
{
    topk_stats st = topk_compare(s, n_vocab, HEARTH_FIXTURES_DIR "/gemma3/topk.txt", 512, LOGIT_ROWS, CLEAR_MARGIN);
    double rate = st.positions ? (double)st.agree / st.positions : 0.0;
    double clear_rate = st.clear ? (double)st.clear_agree / st.clear : 0.0;
    printf("  teacher-forced: %d positions, top-1 agreement %d/%d = %.2f %%; where llama.cpp leads by >= %.1f: "
           "%d/%d = %.2f %%; |dlogit| over its top-%d: max %.4f, mean %.4f\n",
           st.positions, st.agree, st.positions, 100.0 * rate, CLEAR_MARGIN, st.clear_agree, st.clear,
           100.0 * clear_rate, TOP_K, st.max_delta, st.mean_delta);
    CHECK_MSG(rate >= MIN_TOP1_AGREEMENT, "top-1 agreement %.4f below %.2f", rate, MIN_TOP1_AGREEMENT);
    CHECK_MSG(st.clear >= 200 && clear_rate >= MIN_CLEAR_TOP1_AGREEMENT, "clear-margin agreement %d/%d",
              st.clear_agree, st.clear);
    CHECK_MSG(st.max_delta <= MAX_LOGIT_DELTA, "max |dlogit| %.4f above %.2f", st.max_delta, MAX_LOGIT_DELTA);
    CHECK_MSG(st.mean_delta <= MAX_MEAN_LOGIT_DELTA, "mean |dlogit| %.4f above %.2f", st.mean_delta,
              MAX_MEAN_LOGIT_DELTA);
}

/* One prompt's continuation, twice.
 *
 * Free-running: hearth's own greedy tokens must equal llama.cpp's for the
 * first MIN_GREEDY_PREFIX tokens, unless they part at a near tie (hearth's
 * choice leads llama.cpp's by at most NEAR_TIE logits there). Which side of a
 * near tie a token falls on is the noise the teacher-forced figures above
 * measure (mean |dlogit| ~0.65), not a defect: any change in summation order
 * moves it, in llama.cpp as much as here.
 *
 * Teacher-forced along llama.cpp's 64 tokens: at every position llama.cpp's
 * token is hearth's choice or within NEAR_TIE of it. This keeps checking
 * after a divergence, where the free-running comparison stops meaning
 * anything; a real defect puts llama.cpp's token logits behind. */
static void check_greedy_case(session *s, int32_t n_vocab, int number, const int32_t *prompt, int32_t n_prompt,
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
    CHECK_MSG(same >= MIN_GREEDY_PREFIX || divergence_gap <= NEAR_TIE,
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
        within += gap <= NEAR_TIE;
        worst = gap > worst ? gap : worst;
        st = session_eval(s, &expected[i], 1, &err);
    }
    CHECK_MSG(st == HEARTH_OK, "eval: %s", err.message);
    printf("  greedy prompt %d teacher-forced: top-1 %d/%d, within %.2f of top-1 %d/%d, largest lead over "
           "llama.cpp's token %.4f\n",
           number, agree, n_expected, NEAR_TIE, within, n_expected, worst);
    CHECK_MSG(within == n_expected, "prompt %d: llama.cpp's token trails hearth's choice by %.4f", number, worst);
}

static void check_greedy(session *s, int32_t n_vocab)
{
    char *text = test_read_file(HEARTH_FIXTURES_DIR "/gemma3/greedy.txt", NULL);
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
            check_greedy_case(s, n_vocab, cases + 1, prompt, n_prompt, expected, n_expected);
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
static void check_session(const model *m, threadpool *pool)
{
    enum { N = 128 };
    int32_t n_vocab = model_n_vocab(m), tokens[N];
    for (int i = 0; i < N; i++)
        tokens[i] = i == 0 ? 2 : 1000 + (i * 7919) % 20000;
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

int main(void)
{
    char path[4096];
    if (!paths_default_model(path, sizeof path) || access(path, R_OK) != 0)
        TEST_SKIP("default model not installed (scripts/setup.sh installs it)");
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    session *s = NULL;
    if (model_load(path, &m, &err) != HEARTH_OK || threadpool_create(threadpool_default_threads(), &pool, &err) ||
        session_create(m, pool, &(session_params){.n_ctx = 1024}, &s, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return test_finish("test_gemma3");
    }
    check_session(m, pool);
    check_topk(s, model_n_vocab(m));
    check_greedy(s, model_n_vocab(m));
    session_free(s);
    threadpool_free(pool);
    model_free(m);
    return test_finish("test_gemma3");
}

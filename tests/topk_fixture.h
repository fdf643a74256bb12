/* Replaying a top-k fixture of scripts/oracle/logits_oracle.c: a line
 * "tokens <n> <ids...>", then one line per position "<pos> <id>:<logit> ..."
 * holding llama.cpp's highest logits for the token after it, highest first.
 * Lines starting with '#' are comments. The model tests feed the tokens to a
 * session and measure how hearth's logits agree; each test states its own
 * thresholds. */
#ifndef HEARTH_TEST_TOPK_FIXTURE_H
#define HEARTH_TEST_TOPK_FIXTURE_H

#include "test.h"

#include "runtime/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TOPK_FIXTURE_K = 10, TOPK_FIXTURE_ROWS = 64 };

typedef struct topk_stats {
    int positions;      /* compared */
    int agree;          /* hearth's argmax is llama.cpp's top-1 */
    int clear, clear_agree; /* the same, where llama.cpp's top-1 leads by >= the clear margin */
    double max_delta, mean_delta; /* |hearth - llama.cpp| over llama.cpp's top k */
} topk_stats;

/* Parses "<word> <count> <ids...>" at line; returns the ids (malloc'd) or NULL. */
static inline int32_t *parse_ids(const char *line, const char *word, int32_t *count)
{
    size_t wlen = strlen(word);
    if (strncmp(line, word, wlen) != 0 || line[wlen] != ' ')
        return NULL;
    char *end;
    long n = strtol(line + wlen, &end, 10);
    if (n <= 0 || n > 1 << 20)
        return NULL;
    int32_t *ids = (int32_t *)malloc((size_t)n * sizeof *ids);
    for (long i = 0; ids && i < n; i++)
        ids[i] = (int32_t)strtol(end, &end, 10);
    *count = (int32_t)n;
    return ids;
}

static inline int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static inline char *next_line(char *line)
{
    line = strchr(line, '\n');
    return line ? line + 1 : NULL;
}

/* Runs the fixture's tokens through s from an empty context, `step` tokens
 * per call (TOPK_FIXTURE_ROWS for batches, or more up to the session's
 * batch; 1 for decode), and compares the
 * logits at every position. Fixture format errors are CHECK failures. */
static inline topk_stats topk_compare(session *s, int32_t n_vocab, const char *path, int32_t min_tokens,
                                      int32_t step, double clear_margin)
{
    topk_stats st = {0};
    char *text = test_read_file(path, NULL);
    CHECK_MSG(text != NULL, "cannot read %s", path);
    if (!text)
        return st;
    int32_t n = 0, *tokens = NULL;
    char *line = text;
    while (line && *line && !tokens) {
        tokens = parse_ids(line, "tokens", &n);
        line = next_line(line);
    }
    CHECK_MSG(tokens && n >= min_tokens, "%s: no 'tokens' line of >= %d ids", path, min_tokens);
    if (!tokens || n < min_tokens || step < 1) {
        free(tokens);
        free(text);
        return st;
    }
    float *logits = (float *)malloc((size_t)step * (size_t)n_vocab * sizeof *logits);
    double sum_delta = 0.0;
    long deltas = 0;
    hearth_error err = {0};
    session_reset(s);
    for (int32_t done = 0; logits && done < n; done += step) {
        int32_t rows = n - done < step ? n - done : step;
        if (session_eval_all_logits(s, tokens + done, rows, 0, logits, &err) != HEARTH_OK) {
            CHECK_MSG(0, "eval: %s", err.message);
            break;
        }
        for (int32_t r = 0; r < rows && line && *line; r++) {
            char *end;
            long pos = strtol(line, &end, 10);
            CHECK_MSG(pos == done + r, "%s: expected position %d, found %ld", path, done + r, pos);
            const float *row = logits + (size_t)r * n_vocab;
            int32_t best = argmax(row, n_vocab);
            double first_logit = 0.0;
            int32_t first_id = -1;
            for (int k = 0; k < TOPK_FIXTURE_K; k++) {
                long id = strtol(end, &end, 10);
                if (*end != ':' || id < 0 || id >= n_vocab) {
                    CHECK_MSG(0, "%s: bad entry at position %ld", path, pos);
                    break;
                }
                double oracle = strtod(end + 1, &end);
                if (k == 0) {
                    first_id = (int32_t)id;
                    first_logit = oracle;
                    st.agree += best == id;
                } else if (k == 1 && first_logit - oracle >= clear_margin) {
                    st.clear++;
                    st.clear_agree += best == first_id;
                }
                double delta = fabs((double)row[id] - oracle);
                st.max_delta = delta > st.max_delta ? delta : st.max_delta;
                sum_delta += delta;
                deltas++;
            }
            st.positions++;
            line = next_line(line);
        }
    }
    st.mean_delta = deltas ? sum_delta / deltas : 0.0;
    CHECK_MSG(st.positions == n, "%s: %d of %d positions compared", path, st.positions, n);
    free(logits);
    free(tokens);
    free(text);
    return st;
}

#endif

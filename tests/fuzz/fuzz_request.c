/* libFuzzer target: the server's request parsers on arbitrary bytes.
 *
 * Every input goes to all four parsers (chat, completion, tokenize,
 * detokenize). What parses is formatted back (responses, chunks, token
 * lists, with the parsed strings as text, token pieces and logprob tokens,
 * cut at arbitrary bytes so partial characters occur), and what fails has
 * its error formatted. Every formatted string must be JSON that cJSON reads
 * back and valid UTF-8; anything else, a crash or a sanitizer report is a
 * finding. */
#include "base/utf8.h"
#include "server/api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_VOCAB 512

/* Formatted output must exist, be valid UTF-8, and be one JSON value (an SSE
 * event: "data: " + JSON + a blank line). */
static void check_json(char *s, bool sse)
{
    if (!s)
        return; /* out of memory: allowed */
    size_t n = strlen(s);
    if (utf8_first_invalid((const uint8_t *)s, n) != n) {
        fprintf(stderr, "formatted output is not UTF-8: %s\n", s);
        abort();
    }
    const char *json = s;
    if (sse) {
        if (n < 8 || memcmp(s, "data: ", 6) != 0 || memcmp(s + n - 2, "\n\n", 2) != 0) {
            fprintf(stderr, "bad SSE event: %s\n", s);
            abort();
        }
        json = s + 6;
        n -= 8;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(json, n, &end, false);
    if (!j || end != json + n) {
        fprintf(stderr, "formatted output is not JSON: %s\n", s);
        abort();
    }
    cJSON_Delete(j);
    free(s);
}

static void check_error(const api_error *e)
{
    if (e->http_status < 400 || !e->type || !e->message[0]) {
        fprintf(stderr, "error not filled: %d %s\n", e->http_status, e->message);
        abort();
    }
    check_json(api_error_json(e), false);
}

/* Logprobs whose tokens are slices of text, cut every `step` bytes. */
static int make_logprobs(const char *text, size_t len, size_t step, api_token_logprob *lp, int max)
{
    int n = 0;
    for (size_t o = 0; o < len && n < max; o += step, n++) {
        size_t k = len - o < step ? len - o : step;
        memset(&lp[n], 0, sizeof lp[n]);
        lp[n].token = text + o;
        lp[n].len = k;
        lp[n].logprob = -(float)n;
        lp[n].n_top = n % (API_MAX_TOP_LOGPROBS + 1);
        for (int j = 0; j < lp[n].n_top; j++) {
            lp[n].top[j].token = text + o + (k ? (size_t)j % k : 0);
            lp[n].top[j].len = k ? k - (size_t)j % k : 0;
            lp[n].top[j].logprob = j == 3 ? -1.0f / 0.0f : -(float)j;
        }
    }
    return n;
}

static void format_request(const api_request *r, const char *raw, size_t raw_len)
{
    static api_token_logprob lp[8];
    const char *text = r->kind == API_CHAT ? r->messages_json : r->prompt;
    size_t len = text ? strlen(text) : 0;
    /* Raw input bytes as text too: invalid UTF-8 must come out as U+FFFD. */
    int n_lp = make_logprobs(raw, raw_len, 1 + raw_len % 5, lp, 8);
    api_meta m = {r->kind, r->model ? r->model : "", 1700000000, r->model};
    api_usage u = {(int32_t)len, (int32_t)raw_len, (int32_t)(raw_len / 2), (double)len, 0.0};
    const char *reason = r->n_stops ? r->stops[0] : (r->stream ? "length" : NULL);
    check_json(api_format_response(&m, text, len, reason, lp, n_lp, r->logprobs, &u), false);
    check_json(api_format_response(&m, raw, raw_len, "stop", lp, n_lp, true, NULL), false);
    check_json(api_format_chunk(&m, true, raw, raw_len / 2, lp, n_lp, r->logprobs, NULL, NULL), true);
    check_json(api_format_chunk(&m, false, raw + raw_len / 2, raw_len - raw_len / 2, NULL, 0, false, "stop", NULL),
               true);
    check_json(api_format_chunk(&m, false, NULL, 0, NULL, 0, false, NULL, &u), true);
    for (int i = 0; i < r->n_stops; i++)
        check_json(api_format_content(r->stops[i], strlen(r->stops[i])), false);
    if (r->tools_json)
        check_json(api_format_content(r->tools_json, strlen(r->tools_json)), false);
    if (r->template_kwargs_json)
        check_json(api_format_content(r->template_kwargs_json, strlen(r->template_kwargs_json)), false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    api_error e;

    for (int k = 0; k < 2; k++) {
        api_request r;
        memset(&e, 0, sizeof e);
        if (api_parse_request(k ? API_COMPLETION : API_CHAT, body, size, N_VOCAB, &r, &e)) {
            if ((k == 0 && !r.messages_json) || (k == 1 && !r.prompt) || r.n_stops > API_MAX_STOPS ||
                r.top_logprobs < 0 || r.top_logprobs > API_MAX_TOP_LOGPROBS || r.sampling.top_k > N_VOCAB) {
                fprintf(stderr, "parsed request breaks its contract\n");
                abort();
            }
            /* What parses, the sampler takes: logit_bias ids inside the vocabulary, biases in range. */
            sampler *smp = NULL;
            hearth_error err = {0};
            if (sampler_create(&r.sampling, N_VOCAB, &smp, &err) != HEARTH_OK) {
                fprintf(stderr, "a parsed request's sampling is refused: %s\n", err.message);
                abort();
            }
            sampler_free(smp);
            format_request(&r, body, size);
        } else {
            check_error(&e);
        }
        api_request_free(&r);
    }

    api_tokenize t;
    memset(&e, 0, sizeof e);
    if (api_parse_tokenize(body, size, &t, &e)) {
        /* Each byte of the content a token, its piece that byte. */
        size_t n = t.len < 64 ? t.len : 64;
        int32_t ids[64];
        const char *pieces[64];
        size_t lens[64];
        for (size_t i = 0; i < n; i++) {
            ids[i] = (int32_t)(unsigned char)t.content[i];
            pieces[i] = t.content + i;
            lens[i] = t.with_pieces ? 1 : n - i;
        }
        check_json(api_format_tokens(ids, (int32_t)n, pieces, lens), false);
        check_json(api_format_tokens(ids, (int32_t)n, NULL, NULL), false);
    } else {
        check_error(&e);
    }
    api_tokenize_free(&t);

    int32_t *ids = NULL, n_ids = 0;
    memset(&e, 0, sizeof e);
    if (api_parse_detokenize(body, size, N_VOCAB, &ids, &n_ids, &e)) {
        for (int32_t i = 0; i < n_ids; i++)
            if (ids[i] < 0 || ids[i] >= N_VOCAB) {
                fprintf(stderr, "token id %d out of range\n", ids[i]);
                abort();
            }
        check_json(api_format_tokens(ids, n_ids, NULL, NULL), false);
    } else {
        check_error(&e);
    }
    free(ids);
    return 0;
}

/* libFuzzer target: the streaming path of a completion, from token pieces to
 * server-sent events.
 *
 * The input is stop strings and then token pieces (arbitrary bytes, up to the
 * scheduler's PIECE_CAP each). The pieces go through what src/server/sched.c
 * does for each generated token (utf8_stream, then the stop matcher, and at
 * the end the flushes of both) and the outputs, merged into chunks at
 * arbitrary token boundaries as a slow client would see them, through what
 * src/server/server.c does with them: api_format_chunk per chunk, a finish
 * chunk, a usage chunk and [DONE] for the stream; api_format_response over
 * the whole text for the non-streamed answer. Checked:
 *   - every event is "data: " + one JSON value + a blank line, valid UTF-8;
 *     the last is [DONE], the one before it carries the usage, the one
 *     before that the only finish_reason;
 *   - the raw text is the definition's: the whole input cut before the stop
 *     string complete at the earliest byte (the longest of those), or all of
 *     it; it contains no stop string;
 *   - the streamed content, decoded and joined, equals the non-streamed
 *     content, which is the raw text with each invalid subsequence replaced
 *     (api_utf8_sanitize): cutting never changes what a client reads;
 *   - logprob entries keep each token's raw bytes.
 * A crash, a sanitizer report or a failed check is a finding. */
#include "base/utf8.h"
#include "runtime/stop.h"
#include "runtime/utf8_stream.h"
#include "server/api.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PIECE_CAP = 256, MAX_PIECES = 512 }; /* PIECE_CAP: sched.c's */

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), abort())

typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        if (!(t->s = realloc(t->s, t->cap)))
            FAIL("out of memory");
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

/* One SSE event of api_format_chunk: checked, parsed, freed. */
static cJSON *parse_event(char *ev)
{
    if (!ev)
        FAIL("out of memory formatting a chunk");
    size_t n = strlen(ev);
    if (utf8_first_invalid((const uint8_t *)ev, n) != n)
        FAIL("event not UTF-8: %s", ev);
    if (n < 8 || memcmp(ev, "data: ", 6) != 0 || memcmp(ev + n - 2, "\n\n", 2) != 0 ||
        memchr(ev + 6, '\n', n - 8))
        FAIL("bad SSE event: %s", ev);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(ev + 6, n - 8, &end, false);
    if (!j || end != ev + n - 2)
        FAIL("event not JSON: %s", ev);
    free(ev);
    return j;
}

static const cJSON *choice0(const cJSON *j)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) != 1)
        FAIL("chunk without one choice");
    return choices->child;
}

/* The content a chunk or response carries (chat: delta/message.content,
 * completion: text), appended to `out`; whether there was one. */
static bool take_content(const cJSON *choice, api_kind kind, bool whole, text *out)
{
    const cJSON *c = choice;
    if (kind == API_CHAT)
        c = cJSON_GetObjectItemCaseSensitive(choice, whole ? "message" : "delta");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, kind == API_CHAT ? "content" : "text");
    if (!s)
        return false;
    if (!cJSON_IsString(s))
        FAIL("content is not a string");
    text_add(out, s->valuestring, strlen(s->valuestring));
    return true;
}

/* Logprob entries of a chunk: each token's "bytes" are the piece's bytes. */
static void check_logprob_bytes(const cJSON *choice, api_kind kind, const api_token_logprob *lp, int n_lp)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(choice, "logprobs");
    if (kind != API_CHAT || !n_lp)
        return;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(l, "content");
    if (!cJSON_IsArray(content) || cJSON_GetArraySize(content) != n_lp)
        FAIL("logprobs.content: %d entries for %d tokens", cJSON_GetArraySize(content), n_lp);
    int i = 0;
    for (const cJSON *e = content->child; e; e = e->next, i++) {
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(e, "bytes");
        if (!cJSON_IsArray(bytes) || (size_t)cJSON_GetArraySize(bytes) != lp[i].len)
            FAIL("logprobs bytes of token %d: wrong length", i);
        size_t k = 0;
        for (const cJSON *b = bytes->child; b; b = b->next, k++)
            if (!cJSON_IsNumber(b) || b->valueint != (unsigned char)lp[i].token[k])
                FAIL("logprobs bytes of token %d differ at %zu", i, k);
    }
}

/* The definition (as tests/test_stop.c): the stop string complete at the
 * earliest byte, the longest of those; where the shown text ends. */
static size_t reference_end(const char *s, size_t n, char stops[][STOP_MAX_LENGTH + 1], size_t n_stops)
{
    for (size_t end = 1; end <= n; end++) {
        size_t best = 0;
        for (size_t k = 0; k < n_stops; k++) {
            size_t len = strlen(stops[k]);
            if (len <= end && len > best && memcmp(s + end - len, stops[k], len) == 0)
                best = len;
        }
        if (best)
            return end - best;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* Byte 0: kind, logprobs, number of stop strings. Then each stop string:
     * a length byte and its bytes (kept only when the API would take it:
     * 1..128 bytes of valid UTF-8 without NUL). Then pieces: a length byte
     * and its bytes. Where chunks end comes from a running hash of the
     * pieces, so that the same pieces are cut the same way. */
    api_kind kind = (data[0] & 1) ? API_CHAT : API_COMPLETION;
    bool with_logprobs = (data[0] & 2) != 0;
    size_t want_stops = (data[0] >> 2) % (API_MAX_STOPS + 1);
    size_t at = 1;
    char stops[API_MAX_STOPS][STOP_MAX_LENGTH + 1];
    const char *stop_ptrs[API_MAX_STOPS];
    size_t n_stops = 0;
    for (size_t k = 0; k < want_stops && at < size; k++) {
        size_t len = data[at++] % (STOP_MAX_LENGTH + 1);
        if (len > size - at)
            len = size - at;
        const uint8_t *s = data + at;
        at += len;
        if (len == 0 || memchr(s, 0, len) || utf8_first_invalid(s, len) != len)
            continue;
        memcpy(stops[n_stops], s, len);
        stops[n_stops][len] = '\0';
        stop_ptrs[n_stops] = stops[n_stops];
        n_stops++;
    }
    const char *pieces[MAX_PIECES];
    size_t piece_len[MAX_PIECES];
    size_t n_pieces = 0;
    while (at < size && n_pieces < MAX_PIECES) {
        size_t len = data[at++];
        if (len > size - at)
            len = size - at;
        pieces[n_pieces] = (const char *)data + at;
        piece_len[n_pieces++] = len;
        at += len;
    }

    stop_matcher sm;
    hearth_error err = {0};
    if (stop_matcher_init(&sm, stop_ptrs, n_stops, &err) != HEARTH_OK)
        FAIL("stop strings the API takes were refused: %s", err.message);
    utf8_stream us;
    utf8_stream_init(&us);

    api_meta meta = {kind, kind == API_CHAT ? "chatcmpl-1" : "cmpl-1", 1700000000, "m"};
    text whole_input = {0}, raw = {0}, streamed = {0}, pending = {0};
    api_token_logprob lp[MAX_PIECES];
    int n_lp = 0;
    bool first = true, stopped = false;
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n_pieces && !stopped; i++) {
        /* As sched.c for one token (it cuts a piece to PIECE_CAP, the same). */
        char whole[PIECE_CAP + UTF8_STREAM_MAX_HELD];
        char out[PIECE_CAP + UTF8_STREAM_MAX_HELD + 2 * STOP_MAX_LENGTH];
        text_add(&whole_input, pieces[i], piece_len[i]);
        size_t n_whole = utf8_stream_push(&us, pieces[i], piece_len[i], whole, sizeof whole);
        size_t n_out = stop_matcher_push(&sm, whole, n_whole, out, sizeof out);
        bool last = i + 1 == n_pieces;
        stopped = stop_matcher_matched(&sm) >= 0;
        if (last && !stopped) {
            n_whole = utf8_stream_flush(&us, whole, sizeof whole);
            n_out += stop_matcher_push(&sm, whole, n_whole, out + n_out, sizeof out - n_out);
            n_out += stop_matcher_flush(&sm, out + n_out, sizeof out - n_out);
            stopped = stop_matcher_matched(&sm) >= 0;
        }
        text_add(&pending, out, n_out);
        text_add(&raw, out, n_out);
        lp[n_lp] = (api_token_logprob){.token = pieces[i], .len = piece_len[i], .logprob = -(float)i};
        n_lp++;
        /* The client reads (server.c formats what the job has produced so
         * far) after this token, or lets more pile up. */
        for (size_t k = 0; k < piece_len[i]; k++)
            hash = (hash ^ (uint8_t)pieces[i][k]) * 16777619u;
        hash = (hash ^ (uint32_t)i) * 16777619u;
        bool flush_now = last || stopped || (hash >> 29) != 0;
        if (flush_now && (pending.len > 0 || n_lp > 0 || first)) {
            cJSON *j = parse_event(api_format_chunk(&meta, first, pending.s ? pending.s : "", pending.len, lp, n_lp,
                                                    with_logprobs, NULL, NULL));
            const cJSON *c = choice0(j);
            if (!take_content(c, kind, false, &streamed) && pending.len > 0)
                FAIL("a chunk lost its text");
            if (!cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "finish_reason")))
                FAIL("finish_reason before the end");
            if (with_logprobs)
                check_logprob_bytes(c, kind, lp, n_lp);
            cJSON_Delete(j);
            pending.len = 0;
            n_lp = 0;
            first = false;
        }
    }
    const char *reason = stopped ? "stop" : "length";
    cJSON *j = parse_event(api_format_chunk(&meta, first, "", 0, NULL, 0, with_logprobs, reason, NULL));
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(choice0(j), "finish_reason");
    if (!cJSON_IsString(fr) || strcmp(fr->valuestring, reason) != 0)
        FAIL("the last chunk's finish_reason is not %s", reason);
    take_content(choice0(j), kind, false, &streamed);
    cJSON_Delete(j);
    api_usage u = {3, (int32_t)n_pieces, 0, 1.0, 2.0};
    j = parse_event(api_format_chunk(&meta, false, "", 0, NULL, 0, false, NULL, &u));
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "choices")) ||
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "choices")) != 0 ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "usage")))
        FAIL("the usage chunk is not choices: [] and usage");
    cJSON_Delete(j);
    if (strcmp(api_done_event, "data: [DONE]\n\n") != 0)
        FAIL("the stream does not end with [DONE]");

    /* The raw text against the definition, over the whole input. */
    size_t end = reference_end(whole_input.s ? whole_input.s : "", whole_input.len, stops, n_stops);
    if (raw.len != end || (end && memcmp(raw.s, whole_input.s, end) != 0))
        FAIL("shown text: %zu bytes, the definition says %zu of %zu", raw.len, end, whole_input.len);
    if (stopped != (end < whole_input.len))
        FAIL("stopped %d, yet the definition ends the text at %zu of %zu", stopped, end, whole_input.len);
    for (size_t k = 0; k < n_stops; k++)
        for (size_t o = 0, n = strlen(stops[k]); o + n <= raw.len; o++)
            if (memcmp(raw.s + o, stops[k], n) == 0)
                FAIL("the shown text holds stop string %zu at %zu", k, o);

    /* Streamed and not streamed read the same. */
    char *answer = api_format_response(&meta, raw.s ? raw.s : "", raw.len, reason, NULL, 0, false, NULL);
    if (!answer)
        FAIL("out of memory formatting the response");
    size_t n_answer = strlen(answer);
    if (utf8_first_invalid((const uint8_t *)answer, n_answer) != n_answer)
        FAIL("response not UTF-8");
    j = cJSON_Parse(answer);
    if (!j)
        FAIL("response not JSON: %s", answer);
    text unstreamed = {0};
    if (!take_content(choice0(j), kind, true, &unstreamed))
        FAIL("the response has no content");
    cJSON_Delete(j);
    free(answer);
    size_t n_clean = 0;
    char *clean = api_utf8_sanitize(raw.s ? raw.s : "", raw.len, &n_clean);
    if (!clean)
        FAIL("out of memory sanitizing");
    if (unstreamed.len != n_clean || memcmp(unstreamed.s, clean, n_clean) != 0)
        FAIL("the response's content is not the sanitized raw text");
    if (streamed.len != unstreamed.len || (streamed.len && memcmp(streamed.s, unstreamed.s, streamed.len) != 0))
        FAIL("streamed content (%zu bytes) differs from the non-streamed content (%zu bytes)", streamed.len,
             unstreamed.len);
    free(clean);
    free(unstreamed.s);
    free(whole_input.s);
    free(raw.s);
    free(streamed.s);
    free(pending.s);
    return 0;
}

/* The OpenAI-compatible API's JSON: request bodies parsed and validated into
 * C structs, and response bodies and stream events formatted. Pure functions
 * over bytes: no HTTP, no threads, no model. The HTTP layer calls these.
 *
 * Requests come from strangers (SECURITY.md). Every body is checked before a
 * field is read: at most API_MAX_DEPTH levels of nesting, valid JSON with
 * nothing after it, a JSON object, every string valid UTF-8 without NUL
 * (\u0000; cJSON would cut the string there), then each field's type and
 * range. A failure fills an api_error (HTTP 400, invalid_request_error unless
 * said otherwise) naming the field and saying what is allowed and what was
 * given. Unknown fields are ignored.
 *
 * Everything formatted is valid JSON in UTF-8: text that is not valid UTF-8
 * (a token piece that is part of a character, a byte token) has each maximal
 * invalid subsequence replaced by U+FFFD, and a NUL byte becomes U+FFFD too.
 * Logprob "bytes" arrays keep the raw bytes, so a client can still join the
 * pieces of a character. The formatters return malloc'd NUL-terminated
 * strings, NULL only when out of memory. */
#ifndef HEARTH_SERVER_API_H
#define HEARTH_SERVER_API_H

#include "runtime/sampler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_MAX_STOPS 4          /* OpenAI allows up to 4 stop strings */
#define API_MAX_STOP_LENGTH 128  /* bytes per stop string (= STOP_MAX_LENGTH) */
#define API_MAX_TOP_LOGPROBS 20  /* chat top_logprobs; completions allow 5 */
#define API_MAX_DEPTH 64         /* JSON nesting levels in a request body */
#define API_MAX_TEMPERATURE 100.0 /* past this the draw is uniform anyway */

/* ---- errors ---------------------------------------------------------------- */

typedef struct api_error {
    int http_status;     /* 400, 401, 404, 413, 500, 503 ... */
    const char *type;    /* "invalid_request_error", "authentication_error", "not_found_error", "server_error", ... (static) */
    char param[64];      /* the offending field ("messages[2].content", "temperature") or "" */
    char message[400];   /* what a user can act on */
} api_error;

/* The OpenAI error body: {"error":{"message":..,"type":..,"param":..|null,"code":null}}. */
char *api_error_json(const api_error *e);

/* Fills e (param may be NULL or ""; a printf-style message, cut to fit) and
 * returns false, so that a check reads `return api_fail(...)`. */
bool api_fail(api_error *e, int http_status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- requests -------------------------------------------------------------- */

typedef enum api_kind { API_CHAT, API_COMPLETION } api_kind;

typedef struct api_request {
    api_kind kind;
    char *model;                 /* NULL when absent */
    char *messages_json;         /* chat: the "messages" array re-serialised (cJSON_PrintUnformatted), validated */
    char *tools_json;            /* chat: "tools" array, or NULL when absent, null or empty */
    char *template_kwargs_json;  /* "chat_template_kwargs" object or NULL (e.g. {"enable_thinking":false}) */
    char *prompt;                /* completion: the prompt (a string, or an array holding exactly one string) */
    size_t prompt_len;
    bool stream;
    bool include_usage;          /* stream_options.include_usage */
    int32_t max_tokens;          /* max_completion_tokens, else max_tokens (clipped to INT32_MAX); -1 when absent */
    sampler_params sampling;     /* sampler_default_params() then the request's fields; logit_bias is below */
    sampler_bias *logit_bias;    /* "logit_bias", validated: ids < n_vocab, biases in [-100, 100] or -inf */
    int32_t n_logit_bias;
    bool seed_given;             /* false: the caller picks a random seed (seed absent, null or -1) */
    char *stops[API_MAX_STOPS];  /* "stop": a string or an array of up to 4 strings, each 1..128 bytes */
    int n_stops;
    bool logprobs;               /* chat: "logprobs": true; completion: "logprobs": an integer 0..5 */
    int32_t top_logprobs;        /* chat: "top_logprobs" 0..20 (needs logprobs); completion: the integer */
    bool echo;                   /* completion: always false (echo: true is refused) */
    bool ignore_eos;             /* llama.cpp's extension: end-of-generation tokens do not stop (benchmarks) */
} api_request;

/* Parses and validates a body of len bytes (it need not be NUL-terminated).
 * n_vocab bounds top_k. On success *out owns its strings (api_request_free);
 * on failure *out is left empty (safe to free) and *err is filled. Fields
 * read (others are ignored):
 *   both:  model, stream, stream_options.include_usage, max_tokens,
 *          max_completion_tokens, ignore_eos, temperature [0, 100], top_p [0, 1],
 *          top_k 0..n_vocab, min_p [0, 1], repeat_penalty > 0,
 *          repeat_last_n -1..65536, presence_penalty and frequency_penalty
 *          [-2, 2], seed (-1 or an integer >= 0), stop, n (must be 1),
 *          logit_bias ({"id": bias} or [[id, bias]]; bias -100..100, or
 *          false to ban; ids 0..n_vocab-1)
 *   chat:  messages, tools, chat_template_kwargs, logprobs, top_logprobs
 *   completion: prompt, logprobs (0..5), echo (false only)
 * Integers must be JSON numbers with no fraction; null means absent. */
bool api_parse_request(api_kind kind, const char *body, size_t len, int32_t n_vocab, api_request *out, api_error *err);
void api_request_free(api_request *r);

/* llama.cpp's /tokenize: {"content": str, "add_special": bool = false,
 * "parse_special": bool = true, "with_pieces": bool = false}. */
typedef struct api_tokenize {
    char *content;
    size_t len;
    bool add_special;
    bool parse_special;
    bool with_pieces;
} api_tokenize;

bool api_parse_tokenize(const char *body, size_t len, api_tokenize *out, api_error *err);
void api_tokenize_free(api_tokenize *t);

/* llama.cpp's /detokenize: {"tokens": [ids in 0..n_vocab-1]}. *tokens is
 * malloc'd (NULL when n is 0); the caller frees it. */
bool api_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **tokens, int32_t *n, api_error *err);

/* ---- responses ------------------------------------------------------------- */

typedef struct api_top_logprob {
    const char *token; /* the piece's bytes, not necessarily UTF-8 */
    size_t len;
    float logprob;     /* -inf or NaN are written as -9999 (OpenAI's "improbable") */
} api_top_logprob;

typedef struct api_token_logprob {
    const char *token;
    size_t len;
    float logprob;
    int n_top;         /* 0..API_MAX_TOP_LOGPROBS */
    api_top_logprob top[API_MAX_TOP_LOGPROBS];
} api_token_logprob;

typedef struct api_usage {
    int32_t prompt_tokens, completion_tokens, cached_tokens; /* cached: prompt tokens reused from the cache */
    double prompt_ms, generate_ms;
} api_usage;

typedef struct api_meta {
    api_kind kind;
    const char *id;    /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;   /* Unix seconds */
    const char *model;
} api_meta;

/* A whole (non-streamed) response: chat.completion or text_completion.
 * finish_reason: "stop", "length" or NULL. with_logprobs: write the n_lp
 * entries of lp (else "logprobs": null). u: usage (and llama.cpp's
 * "timings"), or NULL to leave them out. */
char *api_format_response(const api_meta *m, const char *text, size_t len, const char *finish_reason,
                          const api_token_logprob *lp, int n_lp, bool with_logprobs, const api_usage *u);

/* One SSE event, "data: {...}\n\n": a chat.completion.chunk (delta: role
 * "assistant" and content in the first, content when there is text after
 * that) or a text_completion for API_COMPLETION. finish_reason is NULL in all
 * but the last. u non-NULL makes the usage chunk instead ("choices": [] and
 * "usage", as OpenAI sends with stream_options.include_usage); text, lp and
 * finish_reason are then ignored. In a completion chunk, logprobs'
 * text_offset counts from the start of this chunk's text. */
char *api_format_chunk(const api_meta *m, bool first, const char *text, size_t len, const api_token_logprob *lp,
                       int n_lp, bool with_logprobs, const char *finish_reason, const api_usage *u);

/* The stream's end: "data: [DONE]\n\n" (a static string, not to be freed). */
extern const char api_done_event[];

/* /v1/models: {"object":"list","data":[{"id","object":"model","created","owned_by":"hearth","meta":{...}}]}.
 * n_params -1: not known (left out of meta). */
char *api_format_models(const char *model_id, int64_t created, int64_t n_ctx, int64_t n_params);

/* /tokenize's answer: {"tokens":[ids]} when pieces is NULL, else
 * {"tokens":[{"id":..,"piece":..}]} where a piece is a string when it is
 * valid UTF-8 without NUL and an array of its bytes otherwise (as llama.cpp). */
char *api_format_tokens(const int32_t *tokens, int32_t n, const char *const *pieces, const size_t *piece_lens);

/* /detokenize's answer: {"content": "..."}. */
char *api_format_content(const char *text, size_t len);

/* text as valid UTF-8 (see above), malloc'd and NUL-terminated; *out_len
 * (may be NULL) gets its length. NULL only when out of memory. */
char *api_utf8_sanitize(const char *text, size_t len, size_t *out_len);

#endif

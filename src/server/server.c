#include "server/server.h"

#include "base/clock.h"
#include "base/error.h"
#include "server/api.h"
#include "text/chat_prompt.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

extern const unsigned char hearth_chat_page[];
extern const size_t hearth_chat_page_len;

enum { PIECE_CAP = 256, WAIT_MS = 200, KEEPALIVE_SECONDS = 10 };

/* HTTP statuses counted for /metrics. */
static const int counted_statuses[] = {200, 400, 401, 404, 405, 408, 413, 500, 503};
#define N_COUNTED (sizeof counted_statuses / sizeof *counted_statuses)

/* One open connection, for the request deadline: while `receiving`, its
 * request (headers and body) must have arrived by `deadline`. MHD's own
 * timeout only closes connections that are idle, and a client that sends one
 * byte a second is never idle (slow-loris). */
typedef struct conn_entry {
    struct conn_entry *prev, *next;
    int fd;
    bool receiving, answered; /* answered: by send_raw_error, and closing */
    bool started;             /* the request line has arrived */
    double deadline;
} conn_entry;

struct server {
    const model *model;
    const vocab *vocab;
    sched *sched;
    const chat_template *tmpl;
    server_params params;
    char *bos, *eos; /* the template's bos_token / eos_token, NULL when none */
    struct MHD_Daemon *daemon;
    int port;
    _Atomic bool stopping; /* waits end early: the server is shutting down */
    pthread_mutex_t stats_lock;
    uint64_t responses[N_COUNTED + 1]; /* the last: any other status */
    uint64_t id_counter;
    /* Open connections, and the watchdog thread that ends those whose request
     * is late. The list's lock is held while the watchdog touches a
     * connection's socket and while MHD's close callback unlinks it (before
     * MHD closes the socket), so the watchdog never touches a closed or
     * reused descriptor. */
    pthread_mutex_t conn_lock;
    pthread_cond_t conn_wake;
    conn_entry *conns;
    pthread_t watchdog;
    bool watchdog_started;
    /* libmicrohttpd's messages: one refused connection each during a flood,
     * so a message the same as the last within LOG_REPEAT_SECONDS is counted,
     * not printed, and the count is said with the next one printed. */
    pthread_mutex_t log_lock;
    char last_log[256];
    double last_log_time;
    unsigned log_repeats;
};

#define LOG_REPEAT_SECONDS 10.0

/* One request: its body as it arrives. */
typedef struct request_ctx {
    char *body;
    size_t len, cap;
} request_ctx;

/* ---- small helpers ---- */

static bool buffer_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t grown_cap = *cap ? *cap : 256;
        while (grown_cap < *len + n + 1)
            grown_cap *= 2;
        char *grown = realloc(*buf, grown_cap);
        if (!grown)
            return false;
        *buf = grown, *cap = grown_cap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

static void count_status(server *srv, int status)
{
    size_t i = 0;
    while (i < N_COUNTED && counted_statuses[i] != status)
        i++;
    pthread_mutex_lock(&srv->stats_lock);
    srv->responses[i]++;
    pthread_mutex_unlock(&srv->stats_lock);
}

/* Queues a response that owns `body` (malloc'd; NULL: out of memory). */
static enum MHD_Result respond(server *srv, struct MHD_Connection *c, int status, char *body, const char *type)
{
    if (!body) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}";
        status = 500;
        body = strdup(oom);
        if (!body)
            return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 503)
        MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count_status(srv, status);
    return ok;
}

static enum MHD_Result respond_json(server *srv, struct MHD_Connection *c, int status, char *json)
{
    return respond(srv, c, status, json, "application/json");
}

static enum MHD_Result respond_error(server *srv, struct MHD_Connection *c, const api_error *e)
{
    return respond_json(srv, c, e->http_status, api_error_json(e));
}

/* An api_error of a printf-style message. */
static void format_error(api_error *e, int status, const char *type, const char *param, const char *fmt, va_list ap)
{
    char message[sizeof e->message];
    vsnprintf(message, sizeof message, fmt, ap);
    api_fail(e, status, type, param, "%s", message);
}

static enum MHD_Result fail(server *srv, struct MHD_Connection *c, int status, const char *type, const char *param,
                            const char *fmt, ...)
{
    api_error e;
    va_list ap;
    va_start(ap, fmt);
    format_error(&e, status, type, param, fmt, ap);
    va_end(ap);
    return respond_error(srv, c, &e);
}

/* Constant time in the key's length: a wrong key's prefix is not timed out. */
static bool key_matches(const char *given, const char *key)
{
    size_t n = strlen(key), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(key[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static bool authorized(const server *srv, struct MHD_Connection *c)
{
    const char *key = srv->params.api_key;
    if (!key || !*key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return h && strncmp(h, "Bearer ", 7) == 0 && key_matches(h + 7, key);
}

/* Whether the client has closed its end (or the connection broke): a request
 * it no longer waits for stops at once. */
static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    /* Readable: the end of the stream (0) or a reset means gone; bytes (a
     * pipelined request) do not. */
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int connection_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

/* ---- the request deadline ---- */

static conn_entry *connection_entry(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* Writes a whole error response straight to the socket, behind MHD's back,
 * for the two cases MHD cannot answer: a request that is late (MHD is still
 * reading it) and a body found to be over the limit while it arrives (MHD
 * takes a response only before the body or after all of it, and reading
 * 100 MB to refuse it is what a client must not be able to make us do). MHD
 * writes nothing while it reads a request, so the bytes do not interleave
 * with its own; the connection is closed right after. Best effort: the
 * socket does not block, and a short answer fits its empty send buffer.
 * Called with conn_lock held, on an entry still receiving. */
static void send_raw_error(server *srv, conn_entry *e, int status, const char *reason, const char *fmt, ...)
{
    e->receiving = false;
    e->answered = true;
    api_error err;
    va_list ap;
    va_start(ap, fmt);
    format_error(&err, status, "invalid_request_error", NULL, fmt, ap);
    va_end(ap);
    char *json = api_error_json(&err), *out = NULL;
    size_t len = 0, cap = 0;
    char head[160];
    snprintf(head, sizeof head,
             "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             status, reason, json ? strlen(json) : 0);
    if (json && buffer_append(&out, &len, &cap, head, strlen(head)) && buffer_append(&out, &len, &cap, json, strlen(json)))
        (void)!send(e->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(out);
    free(json);
    count_status(srv, status);
}

/* The watchdog: every quarter second, ends the connections whose request is
 * late, and shuts their socket so that MHD's thread for it sees the end of
 * the stream and closes it. A request that has begun gets 408; a connection
 * with no request begun (a fresh one, or one kept alive after an answer) is
 * closed without a word, as an idle one would be: a client reusing it must
 * not read a 408 as the answer to its next request. */
static void *watchdog_main(void *arg)
{
    server *srv = arg;
    pthread_mutex_lock(&srv->conn_lock);
    while (!srv->stopping) {
        double now = clock_seconds();
        for (conn_entry *e = srv->conns; e; e = e->next)
            if (e->receiving && now >= e->deadline) {
                if (e->started)
                    send_raw_error(srv, e, 408, "Request Timeout",
                                   "the request did not arrive in full within %u seconds",
                                   srv->params.timeout_seconds);
                e->receiving = false;
                e->answered = true;
                shutdown(e->fd, SHUT_RDWR);
            }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&srv->conn_wake, &srv->conn_lock, &until);
    }
    pthread_mutex_unlock(&srv->conn_lock);
    return NULL;
}

/* MHD's connection notifications: an entry per connection, its deadline
 * running from the start. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    server *srv = cls;
    conn_entry *e = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        /* Out of memory: no deadline for this one, but MHD's idle timeout. */
        if (!(e = calloc(1, sizeof *e)))
            return;
        e->fd = connection_fd(c);
        e->receiving = e->fd >= 0;
        e->deadline = clock_seconds() + srv->params.timeout_seconds;
        pthread_mutex_lock(&srv->conn_lock);
        e->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = e;
        srv->conns = e;
        pthread_mutex_unlock(&srv->conn_lock);
        *socket_context = e;
    } else if (e) {
        pthread_mutex_lock(&srv->conn_lock);
        if (e->prev)
            e->prev->next = e->next;
        else
            srv->conns = e->next;
        if (e->next)
            e->next->prev = e->prev;
        pthread_mutex_unlock(&srv->conn_lock);
        free(e);
        *socket_context = NULL;
    }
}

/* MHD's URI callback: a request line has arrived (its return value is the
 * request's first *con_cls: none). */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)uri;
    server *srv = cls;
    conn_entry *e = connection_entry(c);
    if (e) {
        pthread_mutex_lock(&srv->conn_lock);
        e->started = true;
        pthread_mutex_unlock(&srv->conn_lock);
    }
    return NULL;
}

/* The request is all here (or, with receiving, the next one on this
 * connection may start and its deadline runs from now). */
static void set_receiving(server *srv, struct MHD_Connection *c, bool receiving)
{
    conn_entry *e = connection_entry(c);
    if (!e)
        return;
    pthread_mutex_lock(&srv->conn_lock);
    e->receiving = receiving && !e->answered && e->fd >= 0;
    e->started = false;
    e->deadline = clock_seconds() + srv->params.timeout_seconds;
    pthread_mutex_unlock(&srv->conn_lock);
}

static const char *finish_reason(sched_finish f)
{
    return f == SCHED_FINISH_LENGTH ? "length" : "stop";
}

/* ---- token pieces for logprobs ---- */

/* The api's view of sched_tokens: their pieces are written into one buffer. */
typedef struct logprob_view {
    api_token_logprob *items;
    char *text;
    int n;
} logprob_view;

static void logprob_view_free(logprob_view *v)
{
    free(v->items);
    free(v->text);
    memset(v, 0, sizeof *v);
}

static bool logprob_view_make(const vocab *voc, const sched_token *tokens, int32_t n, logprob_view *v)
{
    memset(v, 0, sizeof *v);
    if (n == 0)
        return true;
    size_t per = (size_t)(1 + SCHED_MAX_TOP_LOGPROBS) * PIECE_CAP;
    if (!(v->items = calloc((size_t)n, sizeof *v->items)) || !(v->text = malloc((size_t)n * per))) {
        logprob_view_free(v);
        return false;
    }
    v->n = n;
    for (int32_t i = 0; i < n; i++) {
        char *at = v->text + (size_t)i * per;
        const sched_token *t = &tokens[i];
        api_token_logprob *lp = &v->items[i];
        size_t len = vocab_token_to_piece(voc, t->id, true, at, PIECE_CAP);
        lp->token = at;
        lp->len = len < PIECE_CAP ? len : PIECE_CAP;
        lp->logprob = t->logprob;
        lp->n_top = t->n_top;
        for (int32_t k = 0; k < t->n_top; k++) {
            at += PIECE_CAP;
            len = vocab_token_to_piece(voc, t->top_id[k], true, at, PIECE_CAP);
            lp->top[k].token = at;
            lp->top[k].len = len < PIECE_CAP ? len : PIECE_CAP;
            lp->top[k].logprob = t->top_logprob[k];
        }
    }
    return true;
}

/* ---- turning a request into tokens ---- */

static char *token_text(const vocab *v, int32_t id)
{
    if (id < 0)
        return NULL;
    char piece[PIECE_CAP];
    size_t n = vocab_token_to_piece(v, id, true, piece, sizeof piece);
    if (n == 0 || n >= sizeof piece)
        return NULL;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, piece, n);
        s[n] = '\0';
    }
    return s;
}

/* The prompt of a chat or completion request as token ids (malloc'd). A
 * completion's prompt is the client's own text, control tokens and all (as
 * llama-server reads it); a chat's is its template's render, where what
 * user and tool messages write stays text. */
static bool prompt_tokens(server *srv, const api_request *req, int32_t **out, int32_t *n_out, api_error *e)
{
    const char *field = req->kind == API_CHAT ? "messages" : "prompt";
    hearth_error err = {0};
    int32_t *tokens = NULL;
    int64_t n = 0;
    hearth_status st;
    if (req->kind == API_CHAT) {
        if (!srv->tmpl)
            return api_fail(e, 400, "invalid_request_error", "messages",
                            "this model has no chat template; use /v1/completions");
        chat_template_inputs in = {
            .messages_json = req->messages_json, .messages_len = strlen(req->messages_json),
            .tools_json = req->tools_json, .tools_len = req->tools_json ? strlen(req->tools_json) : 0,
            .extra_json = req->template_kwargs_json,
            .extra_len = req->template_kwargs_json ? strlen(req->template_kwargs_json) : 0,
            .add_generation_prompt = true, .bos_token = srv->bos, .eos_token = srv->eos, .now = -1,
        };
        st = chat_prompt_tokenize(srv->tmpl, srv->vocab, &in, &tokens, &n, &err);
    } else {
        bool add_bos = vocab_adds_bos(srv->vocab);
        n = vocab_tokenize(srv->vocab, req->prompt, req->prompt_len, add_bos, true, NULL, 0, &err);
        if (n > 0 && n <= INT32_MAX && (tokens = malloc((size_t)n * sizeof *tokens)) != NULL)
            n = vocab_tokenize(srv->vocab, req->prompt, req->prompt_len, add_bos, true, tokens, (size_t)n, &err);
        st = n < 0 ? err.status : n > 0 && !tokens ? HEARTH_ERR_NOMEM : HEARTH_OK;
    }
    if (st == HEARTH_ERR_NOMEM) {
        free(tokens);
        return api_fail(e, 500, "server_error", NULL, "out of memory");
    }
    if (st != HEARTH_OK)
        return api_fail(e, 400, "invalid_request_error", field, "%s", err.message);
    if (n == 0 || n > INT32_MAX) {
        free(tokens);
        return api_fail(e, 400, "invalid_request_error", field,
                        n == 0 ? "the prompt is empty" : "the prompt is over 2^31 tokens");
    }
    *out = tokens;
    *n_out = (int32_t)n;
    return true;
}

/* ---- completions ---- */

/* One streamed response: owned by its MHD response, freed with it. */
typedef struct stream {
    server *srv;
    sched_job *job;
    api_request req;
    api_meta meta;
    char id[48];
    int fd;
    sched_output out;
    char *sse; /* formatted, not yet sent: sse[sent .. len) */
    size_t sent, len, cap;
    bool first, finished;
    double last_send;
} stream;

static bool sse_append(stream *st, const char *s, size_t n)
{
    return buffer_append(&st->sse, &st->len, &st->cap, s, n);
}

static bool sse_append_owned(stream *st, char *s)
{
    bool ok = s && sse_append(st, s, strlen(s));
    free(s);
    return ok;
}

static api_usage usage_of(const sched_output *o)
{
    return (api_usage){
        .prompt_tokens = o->n_prompt, .completion_tokens = o->n_generated, .cached_tokens = o->n_cached,
        .prompt_ms = o->prompt_seconds * 1e3, .generate_ms = o->generate_seconds * 1e3,
    };
}

/* Formats what the job produced since the last call into SSE events. */
static bool stream_format(stream *st)
{
    const sched_output *o = &st->out;
    bool ok = true;
    if (o->len > 0 || o->n_tokens > 0 || (st->first && o->finish == SCHED_RUNNING)) {
        logprob_view lv;
        ok = logprob_view_make(st->srv->vocab, o->tokens, o->n_tokens, &lv);
        ok = ok && sse_append_owned(st, api_format_chunk(&st->meta, st->first, o->text ? o->text : "", o->len,
                                                         lv.items, lv.n, st->req.logprobs, NULL, NULL));
        logprob_view_free(&lv);
        st->first = false;
    }
    if (!ok || o->finish == SCHED_RUNNING)
        return ok;
    if (o->finish == SCHED_FINISH_ERROR) {
        api_error e;
        api_fail(&e, 500, "server_error", NULL, "%s", o->error.message);
        char *json = api_error_json(&e);
        ok = sse_append(st, "data: ", 6) && sse_append_owned(st, json) && sse_append(st, "\n\n", 2);
    } else {
        api_usage u = usage_of(o);
        ok = sse_append_owned(st, api_format_chunk(&st->meta, st->first, "", 0, NULL, 0, st->req.logprobs,
                                                   finish_reason(o->finish), NULL));
        if (ok && st->req.include_usage)
            ok = sse_append_owned(st, api_format_chunk(&st->meta, false, "", 0, NULL, 0, false, NULL, &u));
    }
    ok = ok && sse_append(st, api_done_event, strlen(api_done_event));
    st->finished = true;
    return ok;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *st = cls;
    for (;;) {
        if (st->sent < st->len) {
            size_t n = st->len - st->sent < max ? st->len - st->sent : max;
            memcpy(buf, st->sse + st->sent, n);
            st->sent += n;
            if (st->sent == st->len)
                st->sent = st->len = 0;
            st->last_send = clock_seconds();
            return (ssize_t)n;
        }
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (sched_job_wait(st->job, WAIT_MS, &st->out)) {
            if (!stream_format(st))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        if (client_gone(st->fd) || st->srv->stopping)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        /* A comment now and then while the request waits (queue, a long
         * prompt): it keeps proxies from timing the stream out. */
        if (clock_seconds() - st->last_send > KEEPALIVE_SECONDS && !sse_append(st, ": waiting\n\n", 11))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls)
{
    stream *st = cls;
    sched_job_release(st->job);
    sched_output_free(&st->out);
    api_request_free(&st->req);
    free(st->sse);
    free(st);
}

static void make_id(server *srv, const api_request *req, char *id, size_t cap)
{
    pthread_mutex_lock(&srv->stats_lock);
    uint64_t n = ++srv->id_counter;
    pthread_mutex_unlock(&srv->stats_lock);
    snprintf(id, cap, "%s-%llx%06llx", req->kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)n);
}

static uint64_t random_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static _Atomic uint64_t counter;
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (++counter * 0x9E3779B97F4A7C15ull);
    return x;
}

static enum MHD_Result handle_completion(server *srv, struct MHD_Connection *c, api_kind kind, const request_ctx *rc)
{
    api_request req;
    api_error e;
    if (!api_parse_request(kind, rc->body ? rc->body : "", rc->len, model_n_vocab(srv->model), &req, &e))
        return respond_error(srv, c, &e);
    if (req.model && strcmp(req.model, srv->params.model_id) != 0) {
        api_fail(&e, 404, "invalid_request_error", "model", "the model '%s' does not exist; this server has '%s'",
                 req.model, srv->params.model_id);
        api_request_free(&req);
        return respond_error(srv, c, &e);
    }
    int32_t *tokens = NULL, n_tokens = 0;
    if (!prompt_tokens(srv, &req, &tokens, &n_tokens, &e)) {
        api_request_free(&req);
        return respond_error(srv, c, &e);
    }
    if (!req.seed_given)
        req.sampling.seed = random_seed();
    sched_request sr = {
        .prompt = tokens, .n_prompt = n_tokens, .sampling = req.sampling, .max_tokens = req.max_tokens,
        .stops = (const char *const *)req.stops, .n_stops = req.n_stops, .ignore_eos = req.ignore_eos,
        .logprobs = req.logprobs,
        .top_logprobs = req.top_logprobs,
    };
    sched_job *job = NULL;
    hearth_error err = {0};
    hearth_status s = sched_submit(srv->sched, &sr, &job, &err);
    free(tokens);
    if (s != HEARTH_OK) {
        api_request_free(&req);
        const char *prompt_param = kind == API_CHAT ? "messages" : "prompt";
        if (s == HEARTH_ERR_BUSY)
            return fail(srv, c, 503, "server_error", NULL, "%s", err.message);
        if (s == HEARTH_ERR_ARG)
            return fail(srv, c, 400, "invalid_request_error", n_tokens >= srv->params.n_ctx ? prompt_param : NULL,
                        "%s", err.message);
        return fail(srv, c, 500, "server_error", NULL, "%s", err.message);
    }

    stream *st = calloc(1, sizeof *st);
    if (!st) {
        sched_job_release(job);
        api_request_free(&req);
        return respond_json(srv, c, 500, NULL);
    }
    st->srv = srv;
    st->job = job;
    st->req = req;
    st->fd = connection_fd(c);
    st->first = true;
    st->last_send = clock_seconds();
    make_id(srv, &req, st->id, sizeof st->id);
    st->meta = (api_meta){.kind = kind, .id = st->id, .created = (int64_t)time(NULL), .model = srv->params.model_id};

    if (req.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
        if (!r) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        count_status(srv, 200);
        return ok;
    }

    /* Not streamed: collect it all, stopping early if the client leaves. */
    sched_output all = {0};
    logprob_view lv = {0};
    bool ok = true;
    for (;;) {
        if (sched_job_wait(job, WAIT_MS, &st->out)) {
            ok = ok && (st->out.len == 0 || buffer_append(&all.text, &all.len, &all.cap, st->out.text, st->out.len));
            for (int32_t i = 0; ok && i < st->out.n_tokens; i++) {
                if (all.n_tokens == all.cap_tokens) {
                    int32_t cap = all.cap_tokens ? 2 * all.cap_tokens : 64;
                    sched_token *grown = realloc(all.tokens, (size_t)cap * sizeof *grown);
                    if (!grown) {
                        ok = false;
                        break;
                    }
                    all.tokens = grown, all.cap_tokens = cap;
                }
                all.tokens[all.n_tokens++] = st->out.tokens[i];
            }
            if (st->out.finish != SCHED_RUNNING)
                break;
        }
        /* Asked after every wait, not only idle ones: while tokens flow, a
         * client that left would otherwise hold its slot to the end. */
        if (client_gone(st->fd) || srv->stopping) {
            sched_output_free(&all);
            stream_free(st);
            return MHD_NO; /* nobody to answer */
        }
    }
    enum MHD_Result result;
    if (st->out.finish == SCHED_FINISH_ERROR || !ok) {
        result = fail(srv, c, 500, "server_error", NULL, "%s", ok ? st->out.error.message : "out of memory");
    } else {
        api_usage u = usage_of(&st->out);
        ok = logprob_view_make(srv->vocab, all.tokens, all.n_tokens, &lv);
        result = respond_json(srv, c, 200,
                              ok ? api_format_response(&st->meta, all.text ? all.text : "", all.len,
                                                       finish_reason(st->out.finish), lv.items, lv.n,
                                                       req.logprobs, &u)
                                 : NULL);
    }
    logprob_view_free(&lv);
    sched_output_free(&all);
    stream_free(st);
    return result;
}

/* ---- the other endpoints ---- */

static enum MHD_Result handle_tokenize(server *srv, struct MHD_Connection *c, const request_ctx *rc)
{
    api_tokenize t;
    api_error e;
    if (!api_parse_tokenize(rc->body ? rc->body : "", rc->len, &t, &e))
        return respond_error(srv, c, &e);
    hearth_error err = {0};
    int64_t n = vocab_tokenize(srv->vocab, t.content, t.len, t.add_special, t.parse_special, NULL, 0, &err);
    int32_t *tokens = NULL;
    char **pieces = NULL;
    size_t *lens = NULL;
    char *json = NULL;
    if (n < 0) {
        api_tokenize_free(&t);
        return fail(srv, c, 400, "invalid_request_error", "content", "%s", err.message);
    }
    if ((tokens = malloc((size_t)(n ? n : 1) * sizeof *tokens)) &&
        vocab_tokenize(srv->vocab, t.content, t.len, t.add_special, t.parse_special, tokens, (size_t)n, &err) == n) {
        if (t.with_pieces && (pieces = calloc((size_t)(n ? n : 1), sizeof *pieces)) &&
            (lens = calloc((size_t)(n ? n : 1), sizeof *lens))) {
            bool ok = true;
            for (int64_t i = 0; i < n && ok; i++) {
                ok = (pieces[i] = malloc(PIECE_CAP)) != NULL;
                if (ok) {
                    size_t len = vocab_token_to_piece(srv->vocab, tokens[i], true, pieces[i], PIECE_CAP);
                    lens[i] = len < PIECE_CAP ? len : PIECE_CAP;
                }
            }
            if (ok)
                json = api_format_tokens(tokens, (int32_t)n, (const char *const *)pieces, lens);
        } else if (!t.with_pieces) {
            json = api_format_tokens(tokens, (int32_t)n, NULL, NULL);
        }
    }
    for (int64_t i = 0; pieces && i < n; i++)
        free(pieces[i]);
    free(pieces);
    free(lens);
    free(tokens);
    api_tokenize_free(&t);
    return respond_json(srv, c, 200, json);
}

static enum MHD_Result handle_detokenize(server *srv, struct MHD_Connection *c, const request_ctx *rc)
{
    int32_t *tokens = NULL, n = 0;
    api_error e;
    if (!api_parse_detokenize(rc->body ? rc->body : "", rc->len, model_n_vocab(srv->model), &tokens, &n, &e))
        return respond_error(srv, c, &e);
    char *text = NULL, *json = NULL;
    size_t len = 0, cap = 0;
    bool ok = true;
    char piece[PIECE_CAP];
    for (int32_t i = 0; i < n && ok; i++) {
        size_t k = vocab_token_to_piece(srv->vocab, tokens[i], true, piece, sizeof piece);
        ok = buffer_append(&text, &len, &cap, piece, k < sizeof piece ? k : sizeof piece);
    }
    if (ok)
        json = api_format_content(text ? text : "", len);
    free(text);
    free(tokens);
    return respond_json(srv, c, 200, json);
}

static char *metrics_text(server *srv)
{
    sched_metrics m = sched_get_metrics(srv->sched);
    uint64_t responses[N_COUNTED + 1];
    pthread_mutex_lock(&srv->stats_lock);
    memcpy(responses, srv->responses, sizeof responses);
    pthread_mutex_unlock(&srv->stats_lock);
    char *out = NULL;
    size_t len = 0, cap = 0;
    char line[256];
    bool ok = true;
#define EMIT(...) (snprintf(line, sizeof line, __VA_ARGS__), ok = ok && buffer_append(&out, &len, &cap, line, strlen(line)))
#define METRIC(name, type, help, fmt, value)                                                                    \
    (EMIT("# HELP hearth_" name " " help "\n# TYPE hearth_" name " " type "\n"), EMIT("hearth_" name " " fmt "\n", value))
    EMIT("# HELP hearth_http_responses_total HTTP responses by status.\n# TYPE hearth_http_responses_total counter\n");
    for (size_t i = 0; i < N_COUNTED; i++)
        EMIT("hearth_http_responses_total{code=\"%d\"} %llu\n", counted_statuses[i], (unsigned long long)responses[i]);
    EMIT("hearth_http_responses_total{code=\"other\"} %llu\n", (unsigned long long)responses[N_COUNTED]);
    METRIC("requests_finished_total", "counter", "Generation requests that ran to their end.", "%llu",
           (unsigned long long)m.requests_finished);
    METRIC("requests_cancelled_total", "counter", "Generation requests whose client left first.", "%llu",
           (unsigned long long)m.requests_cancelled);
    METRIC("requests_failed_total", "counter", "Generation requests that ended in an error.", "%llu",
           (unsigned long long)m.requests_failed);
    METRIC("requests_rejected_total", "counter", "Generation requests turned away with 503 (queue full).", "%llu",
           (unsigned long long)m.requests_rejected);
    METRIC("prompt_tokens_total", "counter", "Prompt tokens of the requests admitted to a slot.", "%llu",
           (unsigned long long)m.prompt_tokens);
    METRIC("prompt_tokens_cached_total", "counter", "Prompt tokens a slot already held (not evaluated again).", "%llu",
           (unsigned long long)m.cached_tokens);
    METRIC("generated_tokens_total", "counter", "Tokens generated.", "%llu", (unsigned long long)m.generated_tokens);
    METRIC("prefill_seconds_total", "counter", "Forward-pass time spent on prompt tokens.", "%.6f", m.prefill_seconds);
    METRIC("decode_seconds_total", "counter", "Forward-pass time spent on generated tokens.", "%.6f", m.decode_seconds);
    uint64_t prefilled = m.prompt_tokens - m.cached_tokens;
    METRIC("prefill_tokens_per_second", "gauge", "Prompt tokens evaluated per second of prefill time, so far.", "%.3f",
           m.prefill_seconds > 0 ? (double)prefilled / m.prefill_seconds : 0.0);
    METRIC("decode_tokens_per_second", "gauge", "Tokens generated per second of decode time, so far (all slots).",
           "%.3f", m.decode_seconds > 0 ? (double)m.generated_tokens / m.decode_seconds : 0.0);
    METRIC("forward_passes_total", "counter", "Forward passes (batches) run.", "%llu", (unsigned long long)m.passes);
    METRIC("queue_depth", "gauge", "Requests waiting for a slot.", "%d", m.queued);
    METRIC("queue_capacity", "gauge", "Requests that may wait before 503.", "%d", m.max_queued);
    METRIC("slots_busy", "gauge", "Slots running a request.", "%d", m.slots_busy);
    METRIC("slots_total", "gauge", "Parallel slots.", "%d", m.n_slots);
    METRIC("kv_cache_used_positions", "gauge", "KV cache positions held by busy slots.", "%lld", (long long)m.kv_used);
    METRIC("kv_cache_capacity_positions", "gauge", "KV cache positions of all slots.", "%lld",
           (long long)m.kv_capacity);
    METRIC("kv_cache_usage_ratio", "gauge", "Used over capacity.", "%.6f",
           m.kv_capacity > 0 ? (double)m.kv_used / (double)m.kv_capacity : 0.0);
#undef METRIC
#undef EMIT
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- routing ---- */

typedef enum route {
    ROUTE_NONE, ROUTE_PAGE, ROUTE_FAVICON, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_METRICS,
    ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_TOKENIZE, ROUTE_DETOKENIZE,
} route;

static route find_route(const char *url, bool *post)
{
    static const struct {
        const char *path;
        route r;
        bool post;
    } routes[] = {
        {"/", ROUTE_PAGE, false},
        {"/index.html", ROUTE_PAGE, false},
        {"/favicon.ico", ROUTE_FAVICON, false},
        {"/health", ROUTE_HEALTH, false},
        {"/v1/health", ROUTE_HEALTH, false},
        {"/v1/models", ROUTE_MODELS, false},
        {"/models", ROUTE_MODELS, false},
        {"/metrics", ROUTE_METRICS, false},
        {"/v1/chat/completions", ROUTE_CHAT, true},
        {"/chat/completions", ROUTE_CHAT, true},
        {"/v1/completions", ROUTE_COMPLETIONS, true},
        {"/completions", ROUTE_COMPLETIONS, true},
        {"/tokenize", ROUTE_TOKENIZE, true},
        {"/detokenize", ROUTE_DETOKENIZE, true},
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strcmp(url, routes[i].path) == 0) {
            *post = routes[i].post;
            return routes[i].r;
        }
    return ROUTE_NONE;
}

static enum MHD_Result handle_get(server *srv, struct MHD_Connection *c, route r)
{
    switch (r) {
    case ROUTE_PAGE: {
        struct MHD_Response *resp = MHD_create_response_from_buffer(hearth_chat_page_len, (void *)hearth_chat_page,
                                                                    MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'");
        enum MHD_Result ok = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        count_status(srv, 200);
        return ok;
    }
    case ROUTE_FAVICON: {
        /* No icon: an empty answer keeps browsers from logging a 404. */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        enum MHD_Result ok = MHD_queue_response(c, 204, resp);
        MHD_destroy_response(resp);
        count_status(srv, 204);
        return ok;
    }
    case ROUTE_HEALTH: return respond_json(srv, c, 200, strdup("{\"status\":\"ok\"}"));
    case ROUTE_MODELS:
        return respond_json(srv, c, 200, api_format_models(srv->params.model_id, (int64_t)time(NULL),
                                                            srv->params.n_ctx, -1));
    case ROUTE_METRICS: return respond(srv, c, 200, metrics_text(srv), "text/plain; version=0.0.4");
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    server *srv = cls;
    request_ctx *rc = *con_cls;
    bool post = false;
    route r = find_route(url, &post);
    if (!rc) {
        /* First call: only the headers are here. Refuse what can be refused
         * before reading a body. */
        if (!(rc = calloc(1, sizeof *rc)))
            return MHD_NO;
        *con_cls = rc;
        if (r == ROUTE_NONE)
            return fail(srv, c, 404, "invalid_request_error", NULL, "no such endpoint: %s %s", method, url);
        bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if ((post && !is_post) || (!post && !is_get))
            return fail(srv, c, 405, "invalid_request_error", NULL, "%s %s: use %s", method, url, post ? "POST" : "GET");
        if (r != ROUTE_PAGE && r != ROUTE_FAVICON && r != ROUTE_HEALTH && !authorized(srv, c))
            return fail(srv, c, 401, "authentication_error", NULL,
                        "missing or wrong API key: send the header 'Authorization: Bearer KEY'");
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > srv->params.max_body)
            return fail(srv, c, 413, "invalid_request_error", NULL, "the body of %s bytes is over the limit of %zu",
                        length, srv->params.max_body);
        if (!post)
            return handle_get(srv, c, r);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rc->len + n > srv->params.max_body) {
            /* Only a body without a Content-Length (chunked) gets here: MHD
             * holds the others to theirs, checked above. Answer now and close
             * rather than read the rest. */
            conn_entry *e = connection_entry(c);
            if (e) {
                pthread_mutex_lock(&srv->conn_lock);
                if (!e->answered)
                    send_raw_error(srv, e, 413, "Content Too Large", "the body is over the limit of %zu bytes",
                                   srv->params.max_body);
                pthread_mutex_unlock(&srv->conn_lock);
            }
            return MHD_NO; /* MHD closes the connection */
        }
        if (!buffer_append(&rc->body, &rc->len, &rc->cap, upload_data, n))
            return MHD_NO;
        return MHD_YES;
    }
    /* The request is all here: the deadline no longer applies (an answer may
     * take as long as it takes; MHD's idle timeout still watches the
     * client). */
    set_receiving(srv, c, false);
    switch (r) {
    case ROUTE_CHAT: return handle_completion(srv, c, API_CHAT, rc);
    case ROUTE_COMPLETIONS: return handle_completion(srv, c, API_COMPLETION, rc);
    case ROUTE_TOKENIZE: return handle_tokenize(srv, c, rc);
    case ROUTE_DETOKENIZE: return handle_detokenize(srv, c, rc);
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code)
{
    (void)code;
    /* The next request on this connection (keep-alive) has until the
     * deadline to arrive, from now. */
    set_receiving(cls, c, true);
    request_ctx *rc = *con_cls;
    if (rc) {
        free(rc->body);
        free(rc);
        *con_cls = NULL;
    }
}

static void say_log_repeats(const server *srv)
{
    if (srv->log_repeats)
        fprintf(stderr, "hearth serve: %u more times: %.*s\n", srv->log_repeats,
                (int)strcspn(srv->last_log, "\n"), srv->last_log);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
    server *srv = cls;
    char message[256];
    vsnprintf(message, sizeof message, fmt, ap);
    double now = clock_seconds();
    pthread_mutex_lock(&srv->log_lock);
    if (strcmp(message, srv->last_log) == 0 && now - srv->last_log_time < LOG_REPEAT_SECONDS) {
        srv->log_repeats++;
    } else {
        say_log_repeats(srv);
        fprintf(stderr, "hearth serve: %s", message);
        memcpy(srv->last_log, message, sizeof message);
        srv->last_log_time = now;
        srv->log_repeats = 0;
    }
    pthread_mutex_unlock(&srv->log_lock);
}

/* ---- start, stop ---- */

static bool is_loopback(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)addr)->sin_addr.s_addr) >> 24) == 127;
    if (addr->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr);
    return false;
}

hearth_status server_start(const model *m, sched *s, const chat_template *tmpl, const server_params *params,
                           server **out, hearth_error *err)
{
    *out = NULL;
    server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    srv->model = m;
    srv->vocab = model_vocab(m);
    srv->sched = s;
    srv->tmpl = tmpl;
    srv->params = *params;
    if (!srv->params.host)
        srv->params.host = "127.0.0.1";
    if (!srv->params.max_body)
        srv->params.max_body = 8u << 20;
    if (!srv->params.max_connections)
        srv->params.max_connections = 256;
    if (!srv->params.timeout_seconds)
        srv->params.timeout_seconds = 60;
    srv->bos = token_text(srv->vocab, vocab_bos(srv->vocab));
    srv->eos = token_text(srv->vocab, vocab_eos(srv->vocab));
    pthread_mutex_init(&srv->stats_lock, NULL);
    pthread_mutex_init(&srv->conn_lock, NULL);
    pthread_mutex_init(&srv->log_lock, NULL);
    pthread_cond_init(&srv->conn_wake, NULL);

    char port[16];
    snprintf(port, sizeof port, "%d", params->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(srv->params.host, port, &hints, &ai);
    if (gai != 0) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_ARG, "--host %s: %s", params->host, gai_strerror(gai));
    }
    unsigned per_ip = srv->params.max_connections_per_ip;
    if (!per_ip && !is_loopback(ai->ai_addr))
        per_ip = srv->params.max_connections / 4 ? srv->params.max_connections / 4 : 1;
    srv->params.max_connections_per_ip = per_ip;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)params->port, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, srv, /* first, so that every message goes through it */
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->params.timeout_seconds,
        MHD_OPTION_CONNECTION_LIMIT, srv->params.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, /* 0: none */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, /* request line + headers */
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)512 * 1024,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine)",
                         params->host ? params->host : "127.0.0.1", params->port);
    }
    if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) != 0) {
        server_stop(srv);
        return error_set(err, HEARTH_ERR_NOMEM, "cannot start the server's watchdog thread");
    }
    srv->watchdog_started = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : params->port;
    *out = srv;
    return HEARTH_OK;
}

int server_port(const server *srv) { return srv->port; }

void server_stop(server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->conn_lock);
    srv->stopping = true;
    pthread_cond_signal(&srv->conn_wake);
    pthread_mutex_unlock(&srv->conn_lock);
    if (srv->watchdog_started)
        pthread_join(srv->watchdog, NULL);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    say_log_repeats(srv);
    pthread_cond_destroy(&srv->conn_wake);
    pthread_mutex_destroy(&srv->conn_lock);
    pthread_mutex_destroy(&srv->stats_lock);
    pthread_mutex_destroy(&srv->log_lock);
    free(srv->bos);
    free(srv->eos);
    free(srv);
}

/* hearth serve's HTTP front: libmicrohttpd, one thread per connection, over
 * a scheduler (server/sched.h).
 *
 *   GET  /                      the chat page
 *   GET  /health                {"status":"ok"}
 *   GET  /v1/models             the one model
 *   GET  /metrics               Prometheus text
 *   POST /v1/chat/completions   OpenAI's, streamed as server-sent events on request
 *   POST /v1/completions        likewise, for a plain prompt
 *   POST /tokenize, /detokenize llama.cpp's server's shapes
 *
 * (each /v1/ path also without the prefix). Errors are OpenAI's error object
 * with a fitting status. With an API key every path but / and /health needs
 * "Authorization: Bearer KEY". Connections time out when idle, and a
 * request (headers and body) must arrive in full within the same time (408,
 * then the connection closes: a client sending a byte a second cannot hold a
 * connection); bodies and headers have size limits (413, also for a chunked
 * body, answered as soon as it passes the limit; 431); the number of
 * connections is bounded (past it, new ones are closed at once); a client
 * that goes away ends its request at once. */
#ifndef HEARTH_SERVER_SERVER_H
#define HEARTH_SERVER_SERVER_H

#include "server/sched.h"
#include "text/template.h"

typedef struct server_params {
    const char *host;       /* NULL: 127.0.0.1 */
    int port;               /* 0: any free port (server_port says which) */
    const char *api_key;    /* NULL or "": no key */
    const char *model_id;   /* what /v1/models lists and requests may name */
    int32_t n_ctx;          /* per slot, for /v1/models */
    size_t max_body;        /* request body bytes; 0: 8 MiB */
    unsigned max_connections; /* 0: 256 */
    /* Connections one client address may hold. 0: no limit when listening
     * on a loopback address (every client there has the same one), else a
     * quarter of max_connections. */
    unsigned max_connections_per_ip;
    unsigned timeout_seconds; /* an idle connection is closed after, and a request
                                 must arrive within; 0: 60 */
} server_params;

typedef struct server server;

/* Starts listening. The model, scheduler and template (NULL: no chat
 * template; chat requests then fail with 400) outlive the server. */
hearth_status server_start(const model *m, sched *s, const chat_template *tmpl, const server_params *params,
                           server **out, hearth_error *err);
int server_port(const server *srv);
/* Stops listening and waits for every connection to end (their jobs are
 * released); the scheduler can then be freed. */
void server_stop(server *srv);

#endif

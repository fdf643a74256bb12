/* hearth — local LLM inference. The public C API.
 *
 * Everything a front end (the CLI, the server, an embedding program) may call is
 * declared here. Handles are opaque; every fallible call returns a hearth_status
 * and, when it fails, fills a hearth_error with a message a user can act on. */
#ifndef HEARTH_H
#define HEARTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HEARTH_VERSION "0.1.0"

typedef enum hearth_status {
    HEARTH_OK = 0,
    HEARTH_ERR_IO,          /* cannot open / read / map / write a file */
    HEARTH_ERR_FORMAT,      /* the file or input is malformed */
    HEARTH_ERR_UNSUPPORTED, /* well-formed, but not something hearth handles */
    HEARTH_ERR_NOMEM,
    HEARTH_ERR_ARG,         /* the caller passed a bad argument */
    HEARTH_ERR_BUSY,        /* no room now (a full queue); try again later */
} hearth_status;

typedef struct hearth_error {
    hearth_status status;
    char message[512];
} hearth_error;

const char *hearth_status_name(hearth_status status);

/* How a session keeps the attention layers' keys and values. Q8_0 (32 int8
 * and an f16 scale per 32 values) takes 17/32 of f16's memory, at a small
 * cost in accuracy (perplexity within 0.5 % on Gemma 3 270M). */
typedef enum hearth_kv_type {
    HEARTH_KV_F16 = 0,
    HEARTH_KV_Q8_0,
} hearth_kv_type;

#ifdef __cplusplus
}
#endif
#endif

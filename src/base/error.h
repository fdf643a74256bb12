/* Errors are values: a status plus a message naming what was wrong and where. */
#ifndef HEARTH_BASE_ERROR_H
#define HEARTH_BASE_ERROR_H

#include "hearth.h"

/* Fills *err (when non-NULL) and returns status, so callers can write
 * `return error_set(err, HEARTH_ERR_FORMAT, "key %s: ...", name);`. */
hearth_status error_set(hearth_error *err, hearth_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts `prefix: ` in front of an error message already in *err, for context
 * added on the way up ("model.gguf: tensor x: offset past end of file"). */
hearth_status error_prefix(hearth_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *hearth_status_name(hearth_status status)
{
    switch (status) {
    case HEARTH_OK: return "ok";
    case HEARTH_ERR_IO: return "i/o error";
    case HEARTH_ERR_FORMAT: return "format error";
    case HEARTH_ERR_UNSUPPORTED: return "unsupported";
    case HEARTH_ERR_NOMEM: return "out of memory";
    case HEARTH_ERR_ARG: return "invalid argument";
    case HEARTH_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

hearth_status error_set(hearth_error *err, hearth_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

hearth_status error_prefix(hearth_error *err, const char *fmt, ...)
{
    if (!err)
        return HEARTH_ERR_ARG;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return err->status;
    size_t plen = strlen(prefix);
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    /* Shift the old message right to make room; the tail is cut if too long. */
    size_t cap = sizeof err->message - 1;
    size_t mlen = strnlen(err->message, cap);
    if (plen + mlen > cap)
        mlen = cap - plen;
    memmove(err->message + plen, err->message, mlen);
    memcpy(err->message, prefix, plen);
    err->message[plen + mlen] = '\0';
    return err->status;
}

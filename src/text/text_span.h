/* A stretch of a text, in bytes. */
#ifndef HEARTH_TEXT_TEXT_SPAN_H
#define HEARTH_TEXT_TEXT_SPAN_H

#include <stddef.h>

typedef struct text_span {
    size_t off, len;
} text_span;

#endif

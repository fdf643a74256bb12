/* Stop strings over streamed text.
 *
 * Generation stops when the output contains one of up to STOP_MAX_STRINGS
 * strings; neither the stop string nor anything after it is shown. Text
 * arrives in pieces, and a stop string may be split across them ("</" then
 * "s>"), so the matcher holds back the end of the text while it could still
 * be the beginning of a stop string, and releases it as soon as it cannot.
 *
 * Which match wins: the one that is complete first in the byte stream (the
 * earliest end), and among those ending at the same byte the longest. This
 * makes the result independent of how the text is cut into pieces: "abcd"
 * with stops "bc" and "abcd" stops at "bc", whether it comes as one piece or
 * four, because "bc" is complete first.
 *
 * Feed it text that is already whole UTF-8 characters (after utf8_stream)
 * and, with stop strings that are valid UTF-8, what it releases is whole
 * characters too: it only ever holds back a suffix equal to the start of a
 * stop string. Stop strings are bytes; no case folding or normalisation. */
#ifndef HEARTH_RUNTIME_STOP_H
#define HEARTH_RUNTIME_STOP_H

#include "hearth.h"

#include <stddef.h>

#define STOP_MAX_STRINGS 8
#define STOP_MAX_LENGTH 128 /* bytes per stop string */

typedef struct stop_matcher {
    char stops[STOP_MAX_STRINGS][STOP_MAX_LENGTH];
    size_t stop_len[STOP_MAX_STRINGS];
    size_t n_stops;
    char held[STOP_MAX_LENGTH]; /* a proper prefix of some stop string */
    size_t n_held;
    int matched; /* index of the stop string found, -1 while none */
} stop_matcher;

/* Copies the stop strings (n_stops of them, NUL-terminated, 1 to
 * STOP_MAX_LENGTH bytes each; zero strings is valid and passes text through).
 * Fails with HEARTH_ERR_ARG and a message naming the bad string. */
hearth_status stop_matcher_init(stop_matcher *m, const char *const *stops, size_t n_stops, hearth_error *err);

/* Takes a piece of text and writes to `out` what can be shown now; returns
 * how many bytes. Once a stop string is found, the text before it is written,
 * stop_matcher_matched says which, and every later push writes nothing. At
 * most len + STOP_MAX_LENGTH - 1 bytes are written, and `cap` must allow that
 * (a smaller buffer is a programmer error and is asserted). */
size_t stop_matcher_push(stop_matcher *m, const char *piece, size_t len, char *out, size_t cap);

/* At the end of the text: releases what was held back (it never became a
 * stop string; at most STOP_MAX_LENGTH - 1 bytes). Nothing after a match. */
size_t stop_matcher_flush(stop_matcher *m, char *out, size_t cap);

/* The index of the stop string that matched, or -1. */
static inline int stop_matcher_matched(const stop_matcher *m) { return m->matched; }

/* Forgets the text seen so far and any match, keeping the stop strings. */
void stop_matcher_reset(stop_matcher *m);

#endif

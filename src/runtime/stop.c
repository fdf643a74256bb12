/* Stop strings over streamed text; see stop.h.
 *
 * The text considered at each push is the held bytes followed by the new
 * piece; it is never copied into one buffer (a piece may be long), the two
 * parts are read through text_byte. */
#include "runtime/stop.h"

#include "base/error.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

hearth_status stop_matcher_init(stop_matcher *m, const char *const *stops, size_t n_stops, hearth_error *err)
{
    memset(m, 0, sizeof *m);
    m->matched = -1;
    if (n_stops > STOP_MAX_STRINGS)
        return error_set(err, HEARTH_ERR_ARG, "%zu stop strings given; at most %d are supported", n_stops,
                         STOP_MAX_STRINGS);
    if (n_stops > 0 && !stops)
        return error_set(err, HEARTH_ERR_ARG, "stop strings: none given for a count of %zu", n_stops);
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i])
            return error_set(err, HEARTH_ERR_ARG, "stop string %zu is missing (NULL)", i + 1);
        size_t len = strlen(stops[i]);
        if (len == 0)
            return error_set(err, HEARTH_ERR_ARG, "stop string %zu is empty; it would stop before any text", i + 1);
        if (len > STOP_MAX_LENGTH)
            return error_set(err, HEARTH_ERR_ARG, "stop string %zu is %zu bytes long; at most %d are supported", i + 1,
                             len, STOP_MAX_LENGTH);
        memcpy(m->stops[i], stops[i], len);
        m->stop_len[i] = len;
    }
    m->n_stops = n_stops;
    return HEARTH_OK;
}

void stop_matcher_reset(stop_matcher *m)
{
    m->n_held = 0;
    m->matched = -1;
}

/* Byte i of the text: the held bytes, then the piece. */
static inline char text_byte(const stop_matcher *m, const char *piece, size_t i)
{
    return i < m->n_held ? m->held[i] : piece[i - m->n_held];
}

static bool text_equals(const stop_matcher *m, const char *piece, size_t at, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text_byte(m, piece, at + i) != s[i])
            return false;
    return true;
}

/* Writes text bytes [0, n) to out. */
static void write_text(const stop_matcher *m, const char *piece, size_t n, char *out)
{
    size_t from_held = n < m->n_held ? n : m->n_held;
    if (from_held > 0)
        memcpy(out, m->held, from_held);
    if (n > from_held)
        memcpy(out + from_held, piece, n - from_held);
}

/* The stop string that is complete at text position `end` (exclusive), the
 * longest if several are; -1 if none. */
static int stop_ending_at(const stop_matcher *m, const char *piece, size_t end)
{
    int best = -1;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t len = m->stop_len[k];
        if (len <= end && (best < 0 || len > m->stop_len[best]) && text_equals(m, piece, end - len, m->stops[k], len))
            best = (int)k;
    }
    return best;
}

/* The longest suffix of the text (total bytes) that is the start, but not
 * the whole, of some stop string. */
static size_t longest_partial_stop(const stop_matcher *m, const char *piece, size_t total)
{
    size_t longest = 0;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t len = m->stop_len[k];
        size_t most = len - 1 < total ? len - 1 : total;
        for (size_t n = most; n > longest; n--) {
            if (text_equals(m, piece, total - n, m->stops[k], n)) {
                longest = n;
                break;
            }
        }
    }
    return longest;
}

size_t stop_matcher_push(stop_matcher *m, const char *piece, size_t len, char *out, size_t cap)
{
    assert(cap >= m->n_held + len);
    (void)cap;
    if (m->matched >= 0 || len == 0)
        return 0;
    size_t total = m->n_held + len;

    /* Earliest end first. The held bytes contain no whole stop string, so a
     * match ends inside the new piece. */
    for (size_t end = m->n_held + 1; end <= total; end++) {
        int found = stop_ending_at(m, piece, end);
        if (found >= 0) {
            size_t start = end - m->stop_len[found];
            write_text(m, piece, start, out);
            m->matched = found;
            m->n_held = 0;
            return start;
        }
    }

    /* No match: show everything but what could still grow into one. */
    size_t keep = longest_partial_stop(m, piece, total);
    size_t release = total - keep;
    write_text(m, piece, release, out);
    char kept[STOP_MAX_LENGTH];
    for (size_t i = 0; i < keep; i++)
        kept[i] = text_byte(m, piece, release + i);
    memcpy(m->held, kept, keep);
    m->n_held = keep;
    return release;
}

size_t stop_matcher_flush(stop_matcher *m, char *out, size_t cap)
{
    assert(cap >= m->n_held);
    (void)cap;
    size_t n = m->n_held;
    if (n > 0)
        memcpy(out, m->held, n);
    m->n_held = 0;
    return n;
}

/* Streamed output that never ends mid-character; see utf8_stream.h. */
#include "runtime/utf8_stream.h"

#include <assert.h>
#include <string.h>

typedef enum sequence_kind {
    SEQUENCE_COMPLETE,   /* a whole valid character */
    SEQUENCE_INVALID,    /* bytes that can never be part of a valid character */
    SEQUENCE_UNFINISHED, /* all the bytes there are, and they can still complete */
} sequence_kind;

/* What the `avail` bytes at p begin with, and how many bytes that is. The
 * ranges are those of RFC 3629's table: the second byte of E0, ED, F0 and F4
 * is narrower, which is what rules out overlong forms, surrogates and code
 * points past U+10FFFF without decoding. An invalid result covers the bytes
 * before the first one that breaks the sequence (at least one byte); the
 * breaking byte may start a character of its own. */
static sequence_kind classify(const uint8_t *p, size_t avail, size_t *n)
{
    uint8_t lead = p[0];
    size_t need;
    uint8_t second_lo = 0x80, second_hi = 0xBF;
    if (lead < 0x80) {
        *n = 1;
        return SEQUENCE_COMPLETE;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        if (lead == 0xE0)
            second_lo = 0xA0;
        else if (lead == 0xED)
            second_hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        if (lead == 0xF0)
            second_lo = 0x90;
        else if (lead == 0xF4)
            second_hi = 0x8F;
    } else {
        *n = 1; /* a continuation byte without a lead, C0, C1, F5..FF */
        return SEQUENCE_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i == avail) {
            *n = avail;
            return SEQUENCE_UNFINISHED;
        }
        uint8_t lo = i == 1 ? second_lo : 0x80, hi = i == 1 ? second_hi : 0xBF;
        if (p[i] < lo || p[i] > hi) {
            *n = i;
            return SEQUENCE_INVALID;
        }
    }
    *n = need;
    return SEQUENCE_COMPLETE;
}

void utf8_stream_init(utf8_stream *s) { s->n_held = 0; }

size_t utf8_stream_push(utf8_stream *s, const char *piece, size_t len, char *out, size_t cap)
{
    assert(cap >= s->n_held + len);
    (void)cap;
    const uint8_t *in = (const uint8_t *)piece;
    size_t written = 0, used = 0;
    size_t n;

    if (s->n_held > 0) {
        /* Finish (or give up on) the held character first, with as many new
         * bytes as it could need. */
        uint8_t joined[4];
        size_t n_joined = s->n_held;
        memcpy(joined, s->held, s->n_held);
        while (n_joined < sizeof joined && used < len)
            joined[n_joined++] = in[used++];
        sequence_kind kind = classify(joined, n_joined, &n);
        if (kind == SEQUENCE_UNFINISHED) {
            memcpy(s->held, joined, n_joined); /* the piece was too short to decide */
            s->n_held = n_joined;
            return 0;
        }
        /* The held bytes were a valid start, so whatever broke or completed
         * the sequence lies at or after them: n >= n_held. */
        memcpy(out, joined, n);
        written = n;
        used = n - s->n_held;
        s->n_held = 0;
    }

    while (used < len) {
        sequence_kind kind = classify(in + used, len - used, &n);
        if (kind == SEQUENCE_UNFINISHED) {
            memcpy(s->held, in + used, n);
            s->n_held = n;
            break;
        }
        memcpy(out + written, in + used, n);
        written += n;
        used += n;
    }
    return written;
}

size_t utf8_stream_flush(utf8_stream *s, char *out, size_t cap)
{
    assert(cap >= s->n_held);
    (void)cap;
    size_t n = s->n_held;
    if (n > 0)
        memcpy(out, s->held, n);
    s->n_held = 0;
    return n;
}

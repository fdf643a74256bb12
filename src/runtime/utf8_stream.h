/* Streamed output that never ends mid-character.
 *
 * Token pieces are arbitrary bytes: a byte-fallback vocabulary spells "€" as
 * three tokens <0xE2><0x82><0xAC>, and a BPE token may end in the middle of a
 * character. A utf8_stream sits between the detokenizer and the terminal (or
 * an SSE event): it releases complete UTF-8 characters and holds back the
 * start of one that is still arriving.
 *
 * - Valid UTF-8 is what utf8_decode accepts (strict: no overlong forms, no
 *   surrogates, nothing past U+10FFFF).
 * - Bytes that cannot become valid are released as they are, as soon as that
 *   is certain: a stray continuation byte or 0xC0/0xC1/0xF5..0xFF at once, a
 *   cut-short sequence when the byte that breaks it arrives (that byte is then
 *   looked at afresh). So at most 3 bytes are ever held, and only while they
 *   are the beginning of a character that can still complete.
 * - utf8_stream_flush releases whatever is held at the end of the stream.
 * Concatenated, the output is exactly the input, byte for byte. */
#ifndef HEARTH_RUNTIME_UTF8_STREAM_H
#define HEARTH_RUNTIME_UTF8_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_STREAM_MAX_HELD 3

typedef struct utf8_stream {
    uint8_t held[UTF8_STREAM_MAX_HELD]; /* the start of an unfinished character */
    size_t n_held;
} utf8_stream;

void utf8_stream_init(utf8_stream *s);

/* Takes `len` bytes of `piece` and writes to `out` every byte that is now
 * final; returns how many. At most len + UTF8_STREAM_MAX_HELD bytes are
 * written, and `cap` must allow that (a smaller buffer is a programmer error
 * and is asserted). */
size_t utf8_stream_push(utf8_stream *s, const char *piece, size_t len, char *out, size_t cap);

/* Releases the held bytes (at most UTF8_STREAM_MAX_HELD; they are an
 * unfinished, hence invalid, sequence) and empties the stream for reuse. */
size_t utf8_stream_flush(utf8_stream *s, char *out, size_t cap);

/* How many bytes are being held right now. */
static inline size_t utf8_stream_held(const utf8_stream *s) { return s->n_held; }

#endif

/* UTF-8 decoding, strict: overlong forms, surrogates and code points past
 * U+10FFFF are invalid. Text from models and requests is checked with this
 * before it is trusted to be UTF-8. */
#ifndef HEARTH_BASE_UTF8_H
#define HEARTH_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s (n bytes available). Returns its length (1..4) and
 * stores the code point, or returns 0 when the bytes are not valid UTF-8
 * (including a sequence cut short by n). */
size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* The offset of the first byte of s that does not start a valid sequence,
 * or n when all n bytes are valid UTF-8. */
size_t utf8_first_invalid(const uint8_t *s, size_t n);

#endif

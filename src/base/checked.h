/* Overflow-checked size arithmetic. Every size computed from numbers a file or a
 * request supplied goes through these; they return false when the true result
 * does not fit, and then leave *out unspecified. */
#ifndef HEARTH_BASE_CHECKED_H
#define HEARTH_BASE_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

static inline bool checked_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool checked_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Rounds x up to a multiple of align (a power of two). */
static inline bool checked_align_u64(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t bumped;
    if (!checked_add_u64(x, align - 1, &bumped))
        return false;
    *out = bumped & ~(align - 1);
    return true;
}

#endif

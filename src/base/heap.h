/* A binary heap kept in a caller-sized array: the tokenizers' queues of
 * candidate merges. HEAP_DEFINE(prefix, type, before) defines
 *
 *   static void prefix_push(type *heap, size_t *len, type item);
 *   static type prefix_pop(type *heap, size_t *len);   (len > 0)
 *
 * where before(const type *a, const type *b) says a leaves the heap first.
 * A macro rather than a function over void pointers: the merge loops are hot,
 * and each instance compiles to its type's own compare and swap. */
#ifndef HEARTH_BASE_HEAP_H
#define HEARTH_BASE_HEAP_H

#include <stddef.h>

#define HEAP_DEFINE(prefix, type, before)                                              \
    static void prefix##_push(type *heap, size_t *len, type item)                      \
    {                                                                                  \
        size_t i = (*len)++;                                                           \
        heap[i] = item;                                                                \
        while (i > 0) {                                                                \
            size_t parent = (i - 1) / 2;                                               \
            if (!before(&heap[i], &heap[parent]))                                      \
                break;                                                                 \
            type t = heap[i];                                                          \
            heap[i] = heap[parent];                                                    \
            heap[parent] = t;                                                          \
            i = parent;                                                                \
        }                                                                              \
    }                                                                                  \
                                                                                       \
    static type prefix##_pop(type *heap, size_t *len)                                  \
    {                                                                                  \
        type top = heap[0];                                                            \
        heap[0] = heap[--*len];                                                        \
        for (size_t i = 0;;) {                                                         \
            size_t l = 2 * i + 1, r = l + 1, best = i;                                 \
            if (l < *len && before(&heap[l], &heap[best]))                             \
                best = l;                                                              \
            if (r < *len && before(&heap[r], &heap[best]))                             \
                best = r;                                                              \
            if (best == i)                                                             \
                break;                                                                 \
            type t = heap[i];                                                          \
            heap[i] = heap[best];                                                      \
            heap[best] = t;                                                            \
            i = best;                                                                  \
        }                                                                              \
        return top;                                                                    \
    }

#endif

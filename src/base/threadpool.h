/* One pool of worker threads, created once per engine and reused by every
 * parallel step (matrix products, attention). A step is a function called on
 * every thread with its index; the caller's thread takes part as index 0, and
 * threadpool_run returns when all have finished. Work is split inside the
 * function by rows or tiles, never by ops. */
#ifndef HEARTH_BASE_THREADPOOL_H
#define HEARTH_BASE_THREADPOOL_H

#include "hearth.h"

typedef void (*threadpool_fn)(void *ctx, int thread, int n_threads);

typedef struct threadpool threadpool;

/* n_threads counts the caller: 1 starts no threads at all. */
hearth_status threadpool_create(int n_threads, threadpool **out, hearth_error *err);
void threadpool_free(threadpool *pool);
/* Runs fn on every thread of the pool and waits for all (pool may be NULL:
 * then fn runs once, on the caller, as thread 0 of 1). */
void threadpool_run(threadpool *pool, threadpool_fn fn, void *ctx);

/* The first..last range of `count` items thread `thread` of `n` takes, split
 * as evenly as `grain`-sized pieces allow. */
static inline void threadpool_split(long count, long grain, int thread, int n, long *first, long *last)
{
    long pieces = (count + grain - 1) / grain;
    long per = pieces / n, extra = pieces % n;
    long start = thread * per + (thread < extra ? thread : extra);
    long end = start + per + (thread < extra ? 1 : 0);
    *first = start * grain < count ? start * grain : count;
    *last = end * grain < count ? end * grain : count;
}

/* Physical cores when they can be told apart from SMT siblings, else online CPUs. */
int threadpool_default_threads(void);

#endif

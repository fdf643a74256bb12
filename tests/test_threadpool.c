/* The thread pool: every thread runs every step exactly once, steps do not
 * overlap, results written in a step are visible to the caller after it, and
 * pools come and go cleanly (also after their workers have fallen asleep). */
#include "test.h"

#include "base/threadpool.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

enum { MAX_THREADS = 8 };

typedef struct step_ctx {
    long step;
    long runs[MAX_THREADS];  /* how many steps each thread ran */
    long last[MAX_THREADS];  /* the step each thread last saw */
    int64_t out[4096];
} step_ctx;

static void count_step(void *p, int thread, int n_threads)
{
    step_ctx *c = p;
    c->runs[thread]++;
    c->last[thread] = c->step;
    long first, last;
    threadpool_split(4096, 16, thread, n_threads, &first, &last);
    for (long i = first; i < last; i++)
        c->out[i] = c->step * 4096 + i;
}

static void check_pool(int n_threads, long steps, bool sleep_between)
{
    threadpool *pool = NULL;
    hearth_error err = {0};
    CHECK(threadpool_create(n_threads, &pool, &err) == HEARTH_OK);
    if (!pool)
        return;
    static step_ctx c;
    memset(&c, 0, sizeof c);
    long bad = 0;
    for (c.step = 1; c.step <= steps; c.step++) {
        if (sleep_between && c.step % 4 == 0)
            nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL); /* workers stop spinning and sleep */
        threadpool_run(pool, count_step, &c);
        for (int t = 0; t < n_threads; t++)
            bad += c.last[t] != c.step;
        for (long i = 0; i < 4096; i += 511)
            bad += c.out[i] != c.step * 4096 + i;
    }
    for (int t = 0; t < n_threads; t++)
        CHECK_MSG(c.runs[t] == steps, "%d threads: thread %d ran %ld of %ld steps", n_threads, t, c.runs[t], steps);
    CHECK_MSG(bad == 0, "%d threads: %ld stale results", n_threads, bad);
    threadpool_free(pool);
}

static void check_split(void)
{
    for (long count = 0; count < 100; count += 7)
        for (int n = 1; n <= 5; n++) {
            long covered = 0, prev_last = 0;
            for (int t = 0; t < n; t++) {
                long first, last;
                threadpool_split(count, 4, t, n, &first, &last);
                CHECK(first == prev_last && last >= first);
                covered += last - first;
                prev_last = last;
            }
            CHECK(covered == count);
        }
}

int main(void)
{
    hearth_error err = {0};
    threadpool *pool = NULL;
    CHECK(threadpool_create(0, &pool, &err) == HEARTH_ERR_ARG && pool == NULL);
    check_split();
    check_pool(1, 1000, false);
    check_pool(2, 100000, false);
    check_pool(3, 20000, false);
    check_pool(MAX_THREADS, 2000, false);
    check_pool(2, 12, true);
    for (int i = 0; i < 50; i++) { /* create and free at once: no worker may be left behind */
        CHECK(threadpool_create(3, &pool, &err) == HEARTH_OK);
        threadpool_free(pool);
    }
    CHECK(threadpool_default_threads() >= 1);
    return test_finish("test_threadpool");
}

#include "base/threadpool.h"

#include "base/error.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Steps of a forward pass follow each other within microseconds (hundreds
 * per token), so waking a sleeping thread for each would cost more than the
 * step. Workers spin on the step counter for a while after each step and only
 * then sleep on a condition variable; the caller spins until the step is done. */
enum { SPIN_ROUNDS = 1 << 15 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct threadpool {
    int n_threads;
    pthread_t *threads;
    /* A step is published by bumping `generation` after fn/ctx are set;
     * workers run each generation once and count `pending` down. */
    atomic_ulong generation;
    atomic_int pending;
    atomic_bool stopping;
    atomic_int sleepers;
    /* 0 when there are more threads than CPUs: a spinning thread would then
     * hold a CPU that a thread with work is waiting for. */
    int spin_rounds;
    threadpool_fn fn;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

typedef struct worker_arg {
    threadpool *pool;
    int index;
} worker_arg;

/* Waits until the generation moves past `seen` (or the pool stops): spinning
 * first, then asleep. The sleeper count and the generation are both
 * sequentially consistent, so either the waker sees the sleeper or the
 * sleeper sees the new generation before it waits. */
static unsigned long wait_for_step(threadpool *pool, unsigned long seen)
{
    for (int spin = 0; spin < pool->spin_rounds; spin++) {
        unsigned long g = atomic_load(&pool->generation);
        if (g != seen || atomic_load(&pool->stopping))
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleepers, 1);
    unsigned long g;
    while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping))
        pthread_cond_wait(&pool->wake, &pool->lock);
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->lock);
    return g;
}

static void *worker_main(void *p)
{
    worker_arg arg = *(worker_arg *)p;
    free(p);
    threadpool *pool = arg.pool;
    unsigned long seen = 0;
    for (;;) {
        seen = wait_for_step(pool, seen);
        if (atomic_load(&pool->stopping))
            break;
        pool->fn(pool->ctx, arg.index, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
    return NULL;
}

static void wake_sleepers(threadpool *pool)
{
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
}

hearth_status threadpool_create(int n_threads, threadpool **out, hearth_error *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return error_set(err, HEARTH_ERR_ARG, "thread count %d: must be between 1 and 1024", n_threads);
    threadpool *pool = calloc(1, sizeof *pool);
    if (!pool || !(pool->threads = calloc((size_t)n_threads, sizeof *pool->threads))) {
        free(pool);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory creating %d threads", n_threads);
    }
    pool->n_threads = n_threads;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    pool->spin_rounds = online > 0 && n_threads > online ? 0 : SPIN_ROUNDS;
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stopping, false);
    atomic_init(&pool->sleepers, 0);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        int rc = arg ? 0 : -1;
        if (arg) {
            *arg = (worker_arg){pool, i};
            rc = pthread_create(&pool->threads[i], NULL, worker_main, arg);
        }
        if (rc != 0) {
            free(arg);
            pool->n_threads = i; /* the ones started so far are joined by free */
            threadpool_free(pool);
            return error_set(err, HEARTH_ERR_NOMEM, "cannot start thread %d of %d", i + 1, n_threads);
        }
    }
    *out = pool;
    return HEARTH_OK;
}

void threadpool_free(threadpool *pool)
{
    if (!pool)
        return;
    atomic_store(&pool->stopping, true);
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool);
}

void threadpool_run(threadpool *pool, threadpool_fn fn, void *ctx)
{
    if (!pool || pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n_threads - 1);
    atomic_fetch_add(&pool->generation, 1); /* publishes fn and ctx */
    wake_sleepers(pool);

    fn(ctx, 0, pool->n_threads);

    for (long spin = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spin++) {
        if (spin < pool->spin_rounds)
            cpu_relax();
        else
            sched_yield(); /* a worker was descheduled: let it run */
    }
}

/* Counts distinct (physical id, core id) pairs in /proc/cpuinfo, so SMT
 * siblings do not count twice: two threads on one core only fight over it. */
int threadpool_default_threads(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int fallback = online > 0 ? (int)online : 1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return fallback;
    enum { MAX_CORES = 1024 };
    long seen[MAX_CORES];
    int n_seen = 0;
    long physical = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "physical id : %ld", &v) == 1)
            physical = v;
        else if (sscanf(line, "core id : %ld", &v) == 1) {
            long key = physical * 65536 + v;
            bool dup = false;
            for (int i = 0; i < n_seen && !dup; i++)
                dup = seen[i] == key;
            if (!dup && n_seen < MAX_CORES)
                seen[n_seen++] = key;
        }
    }
    fclose(f);
    return n_seen > 0 && n_seen <= fallback ? n_seen : fallback;
}

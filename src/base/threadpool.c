#include "base/threadpool.h"

#include "base/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t work_ready;
    pthread_cond_t work_done;
    /* A step is identified by its generation: workers run each generation once. */
    unsigned long generation;
    int pending; /* workers still running the current step */
    bool stopping;
    threadpool_fn fn;
    void *ctx;
};

typedef struct worker_arg {
    threadpool *pool;
    int index;
} worker_arg;

static void *worker_main(void *p)
{
    worker_arg arg = *(worker_arg *)p;
    free(p);
    threadpool *pool = arg.pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->generation == seen && !pool->stopping)
            pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->stopping)
            break;
        seen = pool->generation;
        threadpool_fn fn = pool->fn;
        void *ctx = pool->ctx;
        pthread_mutex_unlock(&pool->lock);
        fn(ctx, arg.index, pool->n_threads);
        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->work_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
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
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_cond_init(&pool->work_done, NULL);
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
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work_ready);
    pthread_cond_destroy(&pool->work_done);
    free(pool->threads);
    free(pool);
}

void threadpool_run(threadpool *pool, threadpool_fn fn, void *ctx)
{
    if (!pool || pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->pending = pool->n_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);

    fn(ctx, 0, pool->n_threads);

    pthread_mutex_lock(&pool->lock);
    while (pool->pending > 0)
        pthread_cond_wait(&pool->work_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
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

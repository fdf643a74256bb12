#include "ops/matmul.h"

#include "ops/dot.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <assert.h>
#include <stdatomic.h>
#include <string.h>

static size_t activation_row_bytes(const ops_matrix *w)
{
    return w->packed ? ops_packed_act_row_bytes(w->type, w->cols) : ops_activation_row_bytes(w->type, w->cols);
}

size_t ops_matmul_scratch_bytes(const ops_matrix *w, int64_t n_tokens)
{
    size_t row = ops_activation_row_bytes(w->type, w->cols);
    if (ops_packed_supported(w->type) && ops_packed_act_row_bytes(w->type, w->cols) > row)
        row = ops_packed_act_row_bytes(w->type, w->cols);
    return row * (size_t)n_tokens;
}

typedef struct matmul_job {
    const ops_matrix *w;
    const float *x;
    int64_t x_stride, n_tokens;
    float *y;
    int64_t y_stride;
    unsigned char *act; /* the activations, converted */
    size_t act_row_bytes;
    ops_dot_fn dot;
    ops_dot4_fn dot4;     /* NULL: one token at a time */
    ops_dot4x2_fn dot4x2; /* NULL: one weight row at a time */
    ops_panel_fn panel;   /* set when w is packed */
} matmul_job;

static void quantize_rows(void *p, int thread, int n_threads)
{
    matmul_job *job = p;
    long first, last;
    threadpool_split(job->n_tokens, 1, thread, n_threads, &first, &last);
    for (long t = first; t < last; t++) {
        const float *x = job->x + t * job->x_stride;
        unsigned char *act = job->act + t * job->act_row_bytes;
        if (job->w->packed)
            ops_packed_quantize_act(job->w->type, x, act, job->w->cols);
        else
            ops_quantize_activation(job->w->type, x, act, job->w->cols);
    }
}

/* Tokens are taken in chunks so that a chunk's activations stay in L2 while
 * every panel of the thread's share passes over them; a panel (16 rows) is
 * small enough to stay in L1 across the tiles of a chunk. */
enum { TOKEN_CHUNK = 64 };

static int64_t panel_count(const ops_matrix *w) { return (w->rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS; }

/* Panels [first, last) of one packed matrix, for all the job's tokens. */
static void multiply_panel_range(const matmul_job *job, int64_t first, int64_t last)
{
    const ops_matrix *w = job->w;
    size_t panel_bytes = ops_panel_bytes(w->type, w->cols);
    for (int64_t chunk = 0; chunk < job->n_tokens; chunk += TOKEN_CHUNK) {
        int64_t chunk_end = chunk + TOKEN_CHUNK < job->n_tokens ? chunk + TOKEN_CHUNK : job->n_tokens;
        for (int64_t panel = first; panel < last; panel++) {
            const unsigned char *weights = (const unsigned char *)w->packed + (size_t)panel * panel_bytes;
            int64_t row0 = panel * OPS_PANEL_ROWS;
            int64_t n_rows = w->rows - row0 < OPS_PANEL_ROWS ? w->rows - row0 : OPS_PANEL_ROWS;
            for (int64_t t = chunk; t < chunk_end; t += OPS_PANEL_TOKENS) {
                int n = chunk_end - t < OPS_PANEL_TOKENS ? (int)(chunk_end - t) : OPS_PANEL_TOKENS;
                const unsigned char *act = job->act + t * job->act_row_bytes;
                if (n_rows == OPS_PANEL_ROWS) {
                    job->panel(w->cols, weights, act, job->act_row_bytes, n, job->y + t * job->y_stride + row0,
                               (size_t)job->y_stride);
                } else { /* the padded last panel: only its real rows go out */
                    float tile[OPS_PANEL_TOKENS * OPS_PANEL_ROWS];
                    job->panel(w->cols, weights, act, job->act_row_bytes, n, tile, OPS_PANEL_ROWS);
                    for (int k = 0; k < n; k++)
                        memcpy(job->y + (t + k) * job->y_stride + row0, tile + k * OPS_PANEL_ROWS,
                               (size_t)n_rows * sizeof(float));
                }
            }
        }
    }
}

/* Rows are handed out in groups, so the few tokens of a decode step still
 * spread over all threads while a weight row stays in L1 across tokens. */
enum { ROW_GRAIN = 16 };

/* Packed matrices that share one converted input (Q, K and V; gate and up)
 * run as one step: their panels are dealt out together, so the threads meet
 * once instead of once per matrix, and a small matrix does not leave a
 * thread idle. */
enum { MAX_GROUP = 4 };

/* Work is claimed in chunks from a shared counter rather than split into
 * fixed shares: a thread the OS preempts (a busy desktop, a shared host)
 * then delays its current chunk only, while the others take the rest. About
 * this many chunks per thread: enough to even out, few enough that a chunk
 * still streams a long run of weights. Which thread computes a chunk does
 * not change its result. */
enum { CHUNKS_PER_THREAD = 8 };

static int64_t chunk_size(int64_t total, int n_threads, int64_t grain)
{
    int64_t chunk = total / ((int64_t)n_threads * CHUNKS_PER_THREAD);
    chunk = (chunk + grain - 1) / grain * grain;
    return chunk > grain ? chunk : grain;
}

typedef struct panel_group {
    int n;
    matmul_job jobs[MAX_GROUP];
    int64_t start[MAX_GROUP + 1]; /* panel index where each matrix begins */
    atomic_long next_chunk;
} panel_group;

static void multiply_panel_group(void *p, int thread, int n_threads)
{
    (void)thread;
    panel_group *group = p;
    const int64_t total = group->start[group->n], chunk = chunk_size(total, n_threads, 1);
    for (;;) {
        int64_t first = atomic_fetch_add(&group->next_chunk, 1) * chunk;
        if (first >= total)
            break;
        int64_t last = first + chunk < total ? first + chunk : total;
        for (int m = 0; m < group->n; m++) {
            int64_t lo = first > group->start[m] ? first : group->start[m];
            int64_t hi = last < group->start[m + 1] ? last : group->start[m + 1];
            if (lo < hi)
                multiply_panel_range(&group->jobs[m], lo - group->start[m], hi - group->start[m]);
        }
    }
}

/* Rows [first, last) of an unpacked matrix, for all the job's tokens. */
static void multiply_row_range(const matmul_job *job, int64_t first, int64_t last)
{
    const ops_matrix *w = job->w;
    int64_t r = first;
    /* Pairs of rows where the kernel exists: each activation block is then
     * read once for two rows. A pair covers the tokens in fours; the rest go
     * row by row below. */
    int64_t paired_tokens = job->dot4x2 ? job->n_tokens / 4 * 4 : 0;
    if (paired_tokens > 0) {
        for (; r + 2 <= last; r += 2) {
            const unsigned char *row = (const unsigned char *)w->data + (size_t)r * w->row_bytes;
            for (int64_t t = 0; t < paired_tokens; t += 4) {
                float out[8];
                job->dot4x2(w->cols, row, w->row_bytes, job->act + t * job->act_row_bytes, job->act_row_bytes, out);
                for (int k = 0; k < 4; k++) {
                    job->y[(t + k) * job->y_stride + r] = out[k];
                    job->y[(t + k) * job->y_stride + r + 1] = out[4 + k];
                }
            }
            for (int64_t t = paired_tokens; t < job->n_tokens; t++) {
                job->dot(w->cols, row, job->act + t * job->act_row_bytes, &job->y[t * job->y_stride + r]);
                job->dot(w->cols, row + w->row_bytes, job->act + t * job->act_row_bytes,
                         &job->y[t * job->y_stride + r + 1]);
            }
        }
    }
    for (; r < last; r++) {
        const unsigned char *row = (const unsigned char *)w->data + (size_t)r * w->row_bytes;
        int64_t t = 0;
        if (job->dot4) {
            for (; t + 4 <= job->n_tokens; t += 4) {
                float out[4];
                job->dot4(w->cols, row, job->act + t * job->act_row_bytes, job->act_row_bytes, out);
                for (int k = 0; k < 4; k++)
                    job->y[(t + k) * job->y_stride + r] = out[k];
            }
        }
        for (; t < job->n_tokens; t++)
            job->dot(w->cols, row, job->act + t * job->act_row_bytes, &job->y[t * job->y_stride + r]);
    }
}

typedef struct row_job {
    matmul_job job;
    atomic_long next_chunk;
} row_job;

/* Chunks are whole ROW_GRAIN groups, so rows pair up as a fixed split would
 * pair them. */
static void multiply_rows(void *p, int thread, int n_threads)
{
    (void)thread;
    row_job *rows = p;
    const int64_t total = rows->job.w->rows, chunk = chunk_size(total, n_threads, ROW_GRAIN);
    for (;;) {
        int64_t first = atomic_fetch_add(&rows->next_chunk, 1) * chunk;
        if (first >= total)
            break;
        multiply_row_range(&rows->job, first, first + chunk < total ? first + chunk : total);
    }
}

static void run_group(threadpool *pool, panel_group *group)
{
    atomic_store(&group->next_chunk, 0);
    if (group->n > 0)
        threadpool_run(pool, multiply_panel_group, group);
    group->n = 0;
}

static matmul_job make_job(const ops_matrix *w, const float *x, int64_t x_stride, const void *act,
                           int64_t n_tokens, float *y, int64_t y_stride)
{
    matmul_job job = {
        .w = w, .x = x, .x_stride = x_stride, .n_tokens = n_tokens, .y = y, .y_stride = y_stride,
        .act = (unsigned char *)act, .act_row_bytes = activation_row_bytes(w),
        .dot = ops_dot_best(w->type),
        .dot4 = ops_dot4_best(w->type),
        .dot4x2 = ops_dot4x2_best(w->type),
        .panel = w->packed ? ops_panel_best(w->type) : NULL,
    };
    assert(job.dot != NULL); /* model loading rejects types without a kernel */
    assert(!w->packed || job.panel != NULL);
    return job;
}

uint32_t ops_matmul_act_format(const ops_matrix *w)
{
    /* Packed formats get their own ids, above every quant type. */
    return w->packed ? 0x10000u + (uint32_t)ops_packed_act_format(w->type) : ops_activation_type(w->type);
}

void ops_matmul_shared_input(threadpool *pool, int n_matrices, const ops_matrix *const *ws, const float *x,
                             int64_t x_stride, int64_t n_tokens, float *const *ys, const int64_t *y_strides,
                             void *scratch)
{
    uint32_t converted_for = UINT32_MAX; /* the activation format scratch holds, if any */
    panel_group group = {.n = 0};
    for (int m = 0; m < n_matrices; m++) {
        const ops_matrix *w = ws[m];
        matmul_job job = make_job(w, x, x_stride, scratch, n_tokens, ys[m], y_strides[m]);
        assert(m == 0 || w->cols == ws[0]->cols);
        uint32_t activation = ops_matmul_act_format(w);
        if (activation != converted_for) {
            run_group(pool, &group); /* it reads the scratch about to be overwritten */
            if (n_tokens == 1) /* one row: not worth waking the pool */
                quantize_rows(&job, 0, 1);
            else
                threadpool_run(pool, quantize_rows, &job);
            converted_for = activation;
        }
        if (!w->packed) {
            row_job rows = {.job = job};
            atomic_init(&rows.next_chunk, 0);
            threadpool_run(pool, multiply_rows, &rows);
            continue;
        }
        if (group.n == MAX_GROUP)
            run_group(pool, &group);
        group.jobs[group.n] = job;
        group.start[group.n + 1] = group.start[group.n] + panel_count(w);
        group.n++;
    }
    run_group(pool, &group);
}

void ops_matmul(threadpool *pool, const ops_matrix *w, const float *x, int64_t x_stride, int64_t n_tokens,
                float *y, int64_t y_stride, void *scratch)
{
    ops_matmul_shared_input(pool, 1, &w, x, x_stride, n_tokens, &y, &y_stride, scratch);
}

void ops_matrix_row_f32(const ops_matrix *w, int64_t row, float *out)
{
    const quant_traits *traits = quant_get_traits(w->type);
    traits->dequantize((const unsigned char *)w->data + (size_t)row * w->row_bytes, out, w->cols);
}

size_t ops_matmul_act_row_bytes(const ops_matrix *w) { return activation_row_bytes(w); }

void ops_matmul_convert_act(const ops_matrix *w, const float *x, void *act)
{
    if (w->packed)
        ops_packed_quantize_act(w->type, x, act, w->cols);
    else
        ops_quantize_activation(w->type, x, act, w->cols);
}

/* A task's units of work are its panels (packed) or groups of ROW_GRAIN rows;
 * a unit costs its tokens plus a fixed share for reading its weights, which
 * is what a one-token product mostly does. */
enum { UNIT_READ_COST = 4 };

typedef struct task_batch {
    const ops_matmul_task *tasks;
    int n_tasks;
    int64_t total_cost;
    atomic_long next_chunk;
} task_batch;

static int64_t task_units(const ops_matmul_task *t)
{
    return t->w->packed ? panel_count(t->w) : (t->w->rows + ROW_GRAIN - 1) / ROW_GRAIN;
}

static int64_t unit_cost(const ops_matmul_task *t) { return t->n_tokens + UNIT_READ_COST; }

/* The units whose cost begins in [lo, hi): contiguous runs, so a chunk's
 * tasks follow one another in memory. */
static void run_cost_range(const task_batch *batch, int64_t lo, int64_t hi)
{
    int64_t start = 0; /* cost before the current task */
    for (int i = 0; i < batch->n_tasks && start < hi; i++) {
        const ops_matmul_task *t = &batch->tasks[i];
        if (t->n_tokens <= 0)
            continue; /* no work, and not counted in the total */
        int64_t units = task_units(t), cost = unit_cost(t), end = start + units * cost;
        if (end > lo) {
            int64_t first = lo > start ? (lo - start + cost - 1) / cost : 0;
            int64_t last = hi < end ? (hi - start + cost - 1) / cost : units;
            if (first < last) {
                matmul_job job = make_job(t->w, NULL, 0, t->act, t->n_tokens, t->y, t->y_stride);
                job.act_row_bytes = t->act_stride;
                if (t->w->packed)
                    multiply_panel_range(&job, first, last);
                else
                    multiply_row_range(&job, first * ROW_GRAIN,
                                       last * ROW_GRAIN < t->w->rows ? last * ROW_GRAIN : t->w->rows);
            }
        }
        start = end;
    }
}

static void run_task_chunks(void *p, int thread, int n_threads)
{
    (void)thread;
    task_batch *batch = p;
    const int64_t chunk = chunk_size(batch->total_cost, n_threads, 1);
    for (;;) {
        int64_t lo = atomic_fetch_add(&batch->next_chunk, 1) * chunk;
        if (lo >= batch->total_cost)
            break;
        run_cost_range(batch, lo, lo + chunk < batch->total_cost ? lo + chunk : batch->total_cost);
    }
}

void ops_matmul_tasks(threadpool *pool, const ops_matmul_task *tasks, int n_tasks)
{
    task_batch batch = {.tasks = tasks, .n_tasks = n_tasks};
    atomic_init(&batch.next_chunk, 0);
    for (int i = 0; i < n_tasks; i++)
        if (tasks[i].n_tokens > 0)
            batch.total_cost += task_units(&tasks[i]) * unit_cost(&tasks[i]);
    if (batch.total_cost > 0)
        threadpool_run(pool, run_task_chunks, &batch);
}

#include "ops/attention.h"

#include "base/fp16.h"
#include "ops/attention_kernels.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>

/* f16 -> f32 for every half: the scalar path reads K and V through it. */
static float half_to_float[1 << 16];
static pthread_once_t half_table_once = PTHREAD_ONCE_INIT;

static void fill_half_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        half_to_float[h] = fp16_to_fp32((uint16_t)h);
}

enum { MAX_HEAD_DIM = 1024, HALF_PRECISION_BELOW = 64 };

static inline float round_to_half(float x)
{
    return fp16_to_fp32(fp32_to_fp16(x));
}

/* ---- scalar reference row kernels ---- */

static float dot_ref(const float *q, const uint16_t *k, int32_t n)
{
    float s = 0.0f;
    for (int32_t d = 0; d < n; d++)
        s += q[d] * half_to_float[k[d]];
    return s;
}

static void accumulate_ref(float *acc, const uint16_t *v, float p, int32_t n)
{
    for (int32_t d = 0; d < n; d++)
        acc[d] += p * half_to_float[v[d]];
}

static void accumulate_half_ref(float *acc, const uint16_t *v, float p, int32_t n)
{
    for (int32_t d = 0; d < n; d++)
        acc[d] = round_to_half(fmaf(half_to_float[v[d]], p, acc[d]));
}

static void rescale_half_ref(float *acc, float c, int32_t n)
{
    for (int32_t d = 0; d < n; d++)
        acc[d] = round_to_half(acc[d] * c);
}

static const attention_row_kernels kernels_ref = {
    .dot = dot_ref,
    .dot_half = dot_ref,
    .accumulate = accumulate_ref,
    .accumulate_half = accumulate_half_ref,
    .rescale_half = rescale_half_ref,
};

const attention_row_kernels *ops_attention_kernels_at_level(cpu_level level)
{
    pthread_once(&half_table_once, fill_half_table);
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX512)
        return &ops_attention_kernels_avx512;
    if (level >= CPU_LEVEL_AVX2)
        return &ops_attention_kernels_avx2;
#else
    (void)level;
#endif
    return &kernels_ref;
}

typedef struct attention_job {
    const ops_attention_args *args;
    const attention_row_kernels *kernels;
} attention_job;

static void attend_one(const ops_attention_args *a, const attention_row_kernels *kern, int32_t t, int32_t h)
{
    int32_t group = a->n_heads / a->n_kv_heads;
    int32_t kv_head = h / group;
    const float *q = a->q + t * a->q_stride + (int64_t)h * a->head_dim_k;
    const uint16_t *k_base = a->k + (int64_t)kv_head * a->head_dim_k;
    const uint16_t *v_base = a->v + (int64_t)kv_head * a->head_dim_v;
    int32_t pos = a->positions[t];
    int32_t first = 0;
    if (a->window > 0 && pos - a->window + 1 > 0)
        first = pos - a->window + 1;

    float qs[MAX_HEAD_DIM], acc[MAX_HEAD_DIM];
    for (int32_t d = 0; d < a->head_dim_k; d++)
        qs[d] = q[d] * a->scale;
    /* llama.cpp's CPU attention, which we are compared with, rounds two ways:
     * batches of HALF_PRECISION_BELOW tokens and more run in f32 throughout,
     * smaller ones (decode) meet the f16 keys with the query rounded to f16
     * and accumulate the values in f16. Following it keeps greedy output
     * token-identical for longer; the f16 accumulator costs about three
     * decimal digits in the attention output, which the model tolerates. */
    bool half = a->n_tokens < HALF_PRECISION_BELOW;
    if (half)
        for (int32_t d = 0; d < a->head_dim_k; d++)
            qs[d] = fp16_to_fp32(fp32_to_fp16(qs[d]));
    for (int32_t d = 0; d < a->head_dim_v; d++)
        acc[d] = 0.0f;
    float running_max = -INFINITY, running_sum = 0.0f;
    for (int32_t j = first; j <= pos; j++) {
        const uint16_t *k = k_base + j * a->k_stride;
        float s = half ? kern->dot_half(qs, k, a->head_dim_k) : kern->dot(qs, k, a->head_dim_k);
        const uint16_t *v = v_base + j * a->v_stride;
        if (s > running_max) {
            /* Rescale what was accumulated under the old maximum. */
            float correction = expf(running_max - s);
            running_sum *= correction;
            if (half) {
                kern->rescale_half(acc, correction, a->head_dim_v);
            } else {
                for (int32_t d = 0; d < a->head_dim_v; d++)
                    acc[d] *= correction;
            }
            running_max = s;
        }
        float p = expf(s - running_max);
        running_sum += p;
        if (half)
            kern->accumulate_half(acc, v, p, a->head_dim_v);
        else
            kern->accumulate(acc, v, p, a->head_dim_v);
    }
    float *out = a->out + t * a->out_stride + (int64_t)h * a->head_dim_v;
    float inv = running_sum > 0.0f ? 1.0f / running_sum : 0.0f;
    for (int32_t d = 0; d < a->head_dim_v; d++)
        out[d] = acc[d] * inv;
}

static void attention_worker(void *p, int thread, int n_threads)
{
    const attention_job *job = p;
    const ops_attention_args *a = job->args;
    long items = (long)a->n_tokens * a->n_heads, first, last;
    threadpool_split(items, 1, thread, n_threads, &first, &last);
    for (long i = first; i < last; i++)
        attend_one(a, job->kernels, (int32_t)(i / a->n_heads), (int32_t)(i % a->n_heads));
}

void ops_attention_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level)
{
    assert(args->head_dim_k <= MAX_HEAD_DIM && args->head_dim_v <= MAX_HEAD_DIM &&
           args->n_heads % args->n_kv_heads == 0);
    attention_job job = {args, ops_attention_kernels_at_level(level)};
    threadpool_run(pool, attention_worker, &job);
}

void ops_attention(threadpool *pool, const ops_attention_args *args)
{
    ops_attention_at_level(pool, args, cpu_best_level());
}

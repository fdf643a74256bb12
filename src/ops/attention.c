#include "ops/attention.h"

#include "base/fp16.h"
#include "ops/attention_kernels.h"
#include "ops/dot.h"
#include "ops/dot_kernels.h"
#include "quant/quant.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* f16 -> f32 for every half: the scalar path reads K and V through it. */
static float half_to_float[1 << 16];
static pthread_once_t half_table_once = PTHREAD_ONCE_INIT;

static void fill_half_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        half_to_float[h] = fp16_to_fp32((uint16_t)h);
}

enum { MAX_HEAD_DIM = 1024, HALF_PRECISION_BELOW = 64 };

/* The tiled path's sizes. TILE_ROWS query rows share each widened block of
 * keys and values, which is what makes the tile pay: 64 rows read each f16
 * key once instead of 64 times. BLOCK_FLOATS bounds each widened block (32
 * keys of 256 dims, 16 of 512: 32 KiB, about L1) and with it the stack the
 * tile uses (~72 KiB). Wider heads keep the row-at-a-time path. */
enum { TILE_ROWS = 64, BLOCK_FLOATS = 8192, MAX_BLOCK = 32, TILED_MAX_HEAD_DIM = 512 };

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

/* One fused multiply-add per value, as llama.cpp's f32 accumulation of
 * dequantized values does it. */
static void accumulate_q8_ref(float *acc, const block_q8_0 *v, float p, int32_t n)
{
    for (int32_t b = 0; b < n / QK8_0; b++) {
        float d = fp16_to_fp32(v[b].d);
        for (int i = 0; i < QK8_0; i++)
            acc[b * QK8_0 + i] = fmaf(d * (float)v[b].qs[i], p, acc[b * QK8_0 + i]);
    }
}

static const attention_row_kernels kernels_ref = {
    .dot = dot_ref,
    .dot_half = dot_ref,
    .accumulate = accumulate_ref,
    .accumulate_half = accumulate_half_ref,
    .rescale_half = rescale_half_ref,
    .accumulate_q8 = accumulate_q8_ref,
};

static void widen_keys_ref(float *keys_t, const uint16_t *k, int64_t k_stride, int32_t n_keys, int32_t block,
                           int32_t dim)
{
    for (int32_t d = 0; d < dim; d++)
        for (int32_t j = 0; j < block; j++)
            keys_t[d * block + j] = j < n_keys ? half_to_float[k[j * k_stride + d]] : 0.0f;
}

static void widen_values_ref(float *values, const uint16_t *v, int64_t v_stride, int32_t n_keys, int32_t block,
                             int32_t dim)
{
    for (int32_t j = 0; j < block; j++)
        for (int32_t d = 0; d < dim; d++)
            values[j * dim + d] = j < n_keys ? half_to_float[v[j * v_stride + d]] : 0.0f;
}

static inline float q8_value(const block_q8_0 *row, int32_t d)
{
    const block_q8_0 *b = row + d / QK8_0;
    return fp16_to_fp32(b->d) * (float)b->qs[d % QK8_0];
}

static void widen_keys_q8_ref(float *keys_t, const block_q8_0 *k, int64_t k_stride, int32_t n_keys, int32_t block,
                              int32_t dim)
{
    for (int32_t d = 0; d < dim; d++)
        for (int32_t j = 0; j < block; j++)
            keys_t[d * block + j] = j < n_keys ? q8_value(k + j * k_stride, d) : 0.0f;
}

static void widen_values_q8_ref(float *values, const block_q8_0 *v, int64_t v_stride, int32_t n_keys,
                                int32_t block, int32_t dim)
{
    for (int32_t j = 0; j < block; j++)
        for (int32_t d = 0; d < dim; d++)
            values[j * dim + d] = j < n_keys ? q8_value(v + j * v_stride, d) : 0.0f;
}

static void scores_ref(float *scores, const float *const *q, int32_t n_rows, const float *keys_t, int32_t block,
                       int32_t dim, float scale)
{
    for (int32_t r = 0; r < n_rows; r++) {
        float *s = scores + r * block;
        for (int32_t j = 0; j < block; j++)
            s[j] = 0.0f;
        for (int32_t d = 0; d < dim; d++)
            for (int32_t j = 0; j < block; j++)
                s[j] += q[r][d] * keys_t[d * block + j];
        for (int32_t j = 0; j < block; j++)
            s[j] *= scale;
    }
}

static float max_ref(const float *s, int32_t block)
{
    float m = -INFINITY;
    for (int32_t j = 0; j < block; j++)
        m = s[j] > m ? s[j] : m;
    return m;
}

static float exp_sum_ref(float *s, int32_t block, float max)
{
    float sum = 0.0f;
    for (int32_t j = 0; j < block; j++)
        sum += s[j] = expf(s[j] - max);
    return sum;
}

static void accumulate_block_ref(float *const *acc, const float *correction, const float *p, int32_t n_rows,
                                 const float *values, int32_t block, int32_t dim)
{
    for (int32_t r = 0; r < n_rows; r++) {
        for (int32_t d = 0; d < dim; d++)
            acc[r][d] *= correction[r];
        for (int32_t j = 0; j < block; j++)
            for (int32_t d = 0; d < dim; d++)
                acc[r][d] += p[r * block + j] * values[j * dim + d];
    }
}

static const attention_tile_kernels tile_kernels_ref = {
    .widen_keys = widen_keys_ref,
    .widen_values = widen_values_ref,
    .widen_keys_q8 = widen_keys_q8_ref,
    .widen_values_q8 = widen_values_q8_ref,
    .scores = scores_ref,
    .max = max_ref,
    .exp_sum = exp_sum_ref,
    .accumulate = accumulate_block_ref,
};

const attention_tile_kernels *ops_attention_tile_kernels_at_level(cpu_level level)
{
    pthread_once(&half_table_once, fill_half_table);
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX512)
        return &ops_attention_tile_kernels_avx512;
    if (level >= CPU_LEVEL_AVX2)
        return &ops_attention_tile_kernels_avx2;
#else
    (void)level;
#endif
    return &tile_kernels_ref;
}

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

/* The sink joins the softmax as a score with no value, after all keys, the
 * way llama.cpp's CPU flash attention adds it: the larger of the running
 * maximum and the sink becomes the reference, the accumulator is rescaled
 * (in f32) when the sink wins, and exp of the sink joins the sum. */
static void apply_sink(float sink, float running_max, float *running_sum, float *acc, int32_t dim)
{
    if (sink > running_max) {
        float correction = expf(running_max - sink);
        for (int32_t d = 0; d < dim; d++)
            acc[d] *= correction;
        *running_sum = *running_sum * correction + 1.0f;
    } else {
        *running_sum += expf(sink - running_max);
    }
}

/* A row's end: the sinks' term, then the accumulated values over the sum. */
static void finish_row(const ops_attention_args *a, int32_t t, int32_t h, float *acc, float running_max,
                       float running_sum)
{
    if (a->sinks)
        apply_sink(a->sinks[h], running_max, &running_sum, acc, a->head_dim_v);
    float *out = a->out + t * a->out_stride + (int64_t)h * a->head_dim_v;
    float inv = running_sum > 0.0f ? 1.0f / running_sum : 0.0f;
    for (int32_t d = 0; d < a->head_dim_v; d++)
        out[d] = acc[d] * inv;
}


enum { KEY_PREFETCH = 4 }; /* keys ahead */

static inline void prefetch_row(const uint16_t *row, int32_t n)
{
    for (int32_t i = 0; i < n; i += 32) /* one 64-byte line holds 32 halves */
        __builtin_prefetch(row + i);
}

static inline void prefetch_bytes(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i += 64)
        __builtin_prefetch((const char *)p + i);
}

/* attend_one over a Q8_0 cache, the way llama.cpp's CPU attention meets a
 * quantized cache (ops_attention's comment): the query in Q8_0 against each
 * key through the Q8_0 x Q8_0 dot product of the matrix kernels, the scale
 * after, and an f32 accumulator at every batch size. */
static void attend_one_q8(const ops_attention_args *a, const attention_row_kernels *kern, ops_dot_fn dot, int32_t t,
                          int32_t h)
{
    int32_t group = a->n_heads / a->n_kv_heads;
    int32_t kv_head = h / group;
    const float *q = a->q + t * a->q_stride + (int64_t)h * a->head_dim_k;
    const int64_t k_stride = a->k_stride / QK8_0, v_stride = a->v_stride / QK8_0;
    const block_q8_0 *k_base = a->k_q8 + (int64_t)kv_head * a->head_dim_k / QK8_0;
    const block_q8_0 *v_base = a->v_q8 + (int64_t)kv_head * a->head_dim_v / QK8_0;
    const size_t k_bytes = (size_t)(a->head_dim_k / QK8_0) * sizeof(block_q8_0);
    const size_t v_bytes = (size_t)(a->head_dim_v / QK8_0) * sizeof(block_q8_0);
    int32_t pos = a->positions[t];
    int32_t first = 0;
    if (a->window > 0 && pos - a->window + 1 > 0)
        first = pos - a->window + 1;

    block_q8_0 qq[MAX_HEAD_DIM / QK8_0];
    float acc[MAX_HEAD_DIM];
    ops_quantize_activation(QUANT_Q8_0, q, qq, a->head_dim_k);
    for (int32_t d = 0; d < a->head_dim_v; d++)
        acc[d] = 0.0f;
    float running_max = -INFINITY, running_sum = 0.0f;
    for (int32_t j = first; j <= pos; j++) {
        if (j + KEY_PREFETCH <= pos) {
            prefetch_bytes(k_base + (int64_t)(j + KEY_PREFETCH) * k_stride, k_bytes);
            prefetch_bytes(v_base + (int64_t)(j + KEY_PREFETCH) * v_stride, v_bytes);
        }
        float s;
        dot(a->head_dim_k, k_base + j * k_stride, qq, &s);
        s *= a->scale;
        if (s > running_max) {
            float correction = expf(running_max - s);
            running_sum *= correction;
            for (int32_t d = 0; d < a->head_dim_v; d++)
                acc[d] *= correction;
            running_max = s;
        }
        float p = expf(s - running_max);
        running_sum += p;
        kern->accumulate_q8(acc, v_base + j * v_stride, p, a->head_dim_v);
    }
    finish_row(a, t, h, acc, running_max, running_sum);
}

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
        /* Cache rows of consecutive positions lie a whole KV row apart (2 KiB
         * and more), a stride the hardware prefetcher gives up on at page
         * boundaries; without these, decode waited on memory for every key. */
        if (j + KEY_PREFETCH <= pos) {
            prefetch_row(k_base + (int64_t)(j + KEY_PREFETCH) * a->k_stride, a->head_dim_k);
            prefetch_row(v_base + (int64_t)(j + KEY_PREFETCH) * a->v_stride, a->head_dim_v);
        }
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
    finish_row(a, t, h, acc, running_max, running_sum);
}

/* The row-at-a-time path over several problems: their (token, head) items
 * one after another, shared out evenly. */
typedef struct attention_job {
    const ops_attention_args *args;
    const attention_row_kernels *kernels;
    ops_dot_fn dot_q8; /* Q8_0 keys against a Q8_0 query */
    int n_args;
    long items; /* of the problems on this path (not tiled_fits) */
} attention_job;

static void attention_worker(void *p, int thread, int n_threads)
{
    const attention_job *job = p;
    long first, last, start = 0;
    threadpool_split(job->items, 1, thread, n_threads, &first, &last);
    for (int i = 0; i < job->n_args && start < last; i++) {
        const ops_attention_args *a = &job->args[i];
        if (ops_attention_tiled_fits(a))
            continue;
        long items = (long)a->n_tokens * a->n_heads;
        long lo = first > start ? first - start : 0, hi = last - start < items ? last - start : items;
        for (long k = lo; k < hi; k++) {
            if (a->kv_type == OPS_KV_Q8_0)
                attend_one_q8(a, job->kernels, job->dot_q8, (int32_t)(k / a->n_heads), (int32_t)(k % a->n_heads));
            else
                attend_one(a, job->kernels, (int32_t)(k / a->n_heads), (int32_t)(k % a->n_heads));
        }
        start += items;
    }
}

/* ---- the tiled path ---- */

/* A tile: heads [head0, head0 + n_heads) of one KV head's group, for the
 * batch's tokens [token0, token0 + n_tokens). */
typedef struct attention_tile {
    int32_t kv_head, head0, n_heads, token0, n_tokens;
} attention_tile;

static int32_t block_keys(const ops_attention_args *a)
{
    int32_t widest = a->head_dim_k > a->head_dim_v ? a->head_dim_k : a->head_dim_v;
    int32_t block = BLOCK_FLOATS / widest / 16 * 16; /* the kernels take keys 16 at a time */
    return block > MAX_BLOCK ? MAX_BLOCK : block;
}

static bool tile_kernels_fit(const ops_attention_args *a)
{
    return a->head_dim_k % 16 == 0 && a->head_dim_v % 16 == 0 && a->head_dim_k <= TILED_MAX_HEAD_DIM &&
           a->head_dim_v <= TILED_MAX_HEAD_DIM;
}

bool ops_attention_tiled_fits(const ops_attention_args *args)
{
    return args->n_tokens >= HALF_PRECISION_BELOW && tile_kernels_fit(args);
}

/* One tile, flash-attention style: the output rows in `out` serve as the
 * accumulators, and each row keeps its running maximum and sum. A block
 * updates only the rows that see at least one of its keys; keys a row must
 * not see (later than its position, or out of its window) score -inf and
 * weigh 0. */
static void attend_tile(const ops_attention_args *a, const attention_tile_kernels *kern, attention_tile tile)
{
    _Alignas(64) float keys_t[BLOCK_FLOATS], values[BLOCK_FLOATS], scores[TILE_ROWS * MAX_BLOCK];
    const float *q[TILE_ROWS], *active_q[TILE_ROWS];
    float *out[TILE_ROWS], *active_out[TILE_ROWS];
    float row_max[TILE_ROWS], row_sum[TILE_ROWS], correction[TILE_ROWS];
    int32_t first_key[TILE_ROWS], last_key[TILE_ROWS], active_row[TILE_ROWS], head[TILE_ROWS];
    const int32_t block = block_keys(a);
    int32_t n_rows = 0, lowest = INT32_MAX, highest = -1;

    for (int32_t t = tile.token0; t < tile.token0 + tile.n_tokens; t++) {
        int32_t pos = a->positions[t];
        int32_t first = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
        lowest = first < lowest ? first : lowest;
        highest = pos > highest ? pos : highest;
        for (int32_t h = tile.head0; h < tile.head0 + tile.n_heads; h++, n_rows++) {
            q[n_rows] = a->q + t * a->q_stride + (int64_t)h * a->head_dim_k;
            out[n_rows] = a->out + t * a->out_stride + (int64_t)h * a->head_dim_v;
            first_key[n_rows] = first;
            last_key[n_rows] = pos;
            head[n_rows] = h;
            row_max[n_rows] = -INFINITY;
            row_sum[n_rows] = 0.0f;
            for (int32_t d = 0; d < a->head_dim_v; d++)
                out[n_rows][d] = 0.0f;
        }
    }

    const bool q8 = a->kv_type == OPS_KV_Q8_0;
    const uint16_t *k_head = q8 ? NULL : a->k + (int64_t)tile.kv_head * a->head_dim_k;
    const uint16_t *v_head = q8 ? NULL : a->v + (int64_t)tile.kv_head * a->head_dim_v;
    const int64_t kq_stride = a->k_stride / QK8_0, vq_stride = a->v_stride / QK8_0;
    const block_q8_0 *kq_head = q8 ? a->k_q8 + (int64_t)tile.kv_head * a->head_dim_k / QK8_0 : NULL;
    const block_q8_0 *vq_head = q8 ? a->v_q8 + (int64_t)tile.kv_head * a->head_dim_v / QK8_0 : NULL;
    for (int32_t j0 = lowest; j0 <= highest; j0 += block) {
        int32_t n_keys = highest - j0 + 1 < block ? highest - j0 + 1 : block;
        int32_t n_active = 0;
        for (int32_t r = 0; r < n_rows; r++) {
            if (first_key[r] < j0 + n_keys && last_key[r] >= j0) {
                active_row[n_active] = r;
                active_q[n_active++] = q[r];
            }
        }
        if (n_active == 0)
            continue;
        if (q8) {
            kern->widen_keys_q8(keys_t, kq_head + j0 * kq_stride, kq_stride, n_keys, block, a->head_dim_k);
            kern->widen_values_q8(values, vq_head + j0 * vq_stride, vq_stride, n_keys, block, a->head_dim_v);
        } else {
            kern->widen_keys(keys_t, k_head + j0 * a->k_stride, a->k_stride, n_keys, block, a->head_dim_k);
            kern->widen_values(values, v_head + j0 * a->v_stride, a->v_stride, n_keys, block, a->head_dim_v);
        }
        kern->scores(scores, active_q, n_active, keys_t, block, a->head_dim_k, a->scale);
        for (int32_t i = 0; i < n_active; i++) {
            int32_t r = active_row[i];
            float *s = scores + i * block;
            for (int32_t j = 0; j < first_key[r] - j0; j++)
                s[j] = -INFINITY;
            for (int32_t j = last_key[r] - j0 + 1 > 0 ? last_key[r] - j0 + 1 : 0; j < block; j++)
                s[j] = -INFINITY;
            float new_max = kern->max(s, block);
            correction[i] = 1.0f;
            if (new_max > row_max[r]) {
                /* The first block a row sees has nothing to rescale (and
                 * -inf - -inf would be NaN). */
                correction[i] = row_max[r] == -INFINITY ? 0.0f : expf(row_max[r] - new_max);
                row_max[r] = new_max;
            }
            row_sum[r] = row_sum[r] * correction[i] + kern->exp_sum(s, block, row_max[r]);
            active_out[i] = out[r];
        }
        kern->accumulate(active_out, correction, scores, n_active, values, block, a->head_dim_v);
    }

    for (int32_t r = 0; r < n_rows; r++) {
        if (a->sinks)
            apply_sink(a->sinks[head[r]], row_max[r], &row_sum[r], out[r], a->head_dim_v);
        float inv = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
        for (int32_t d = 0; d < a->head_dim_v; d++)
            out[r][d] *= inv;
    }
}

typedef struct tiled_job {
    const ops_attention_args *args;
    const attention_tile_kernels *kernels;
    int32_t heads_per_tile, tokens_per_tile, head_tiles, token_tiles;
    atomic_long next_tile;
} tiled_job;

/* Threads take tiles as they finish their last, latest tokens first: under a
 * causal mask those see the most keys, and starting with the longest work
 * leaves short tiles to even out the end. */
static void tiled_worker(void *p, int thread, int n_threads)
{
    (void)thread, (void)n_threads;
    tiled_job *job = p;
    const ops_attention_args *a = job->args;
    long per_token_tile = (long)a->n_kv_heads * job->head_tiles;
    long n_tiles = per_token_tile * job->token_tiles;
    for (long i; (i = atomic_fetch_add(&job->next_tile, 1)) < n_tiles;) {
        int32_t token_tile = job->token_tiles - 1 - (int32_t)(i / per_token_tile);
        int32_t kv_head = (int32_t)(i % per_token_tile) / job->head_tiles;
        int32_t head_tile = (int32_t)(i % per_token_tile) % job->head_tiles;
        int32_t group = a->n_heads / a->n_kv_heads;
        attention_tile tile = {
            .kv_head = kv_head,
            .head0 = kv_head * group + head_tile * job->heads_per_tile,
            .token0 = token_tile * job->tokens_per_tile,
        };
        tile.n_heads = (head_tile + 1) * job->heads_per_tile <= group ? job->heads_per_tile
                                                                       : group - head_tile * job->heads_per_tile;
        tile.n_tokens = tile.token0 + job->tokens_per_tile <= a->n_tokens ? job->tokens_per_tile
                                                                          : a->n_tokens - tile.token0;
        attend_tile(a, job->kernels, tile);
    }
}

void ops_attention_tiled_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level)
{
    assert(tile_kernels_fit(args) && args->n_heads % args->n_kv_heads == 0);
    int32_t group = args->n_heads / args->n_kv_heads;
    tiled_job job = {.args = args, .kernels = ops_attention_tile_kernels_at_level(level)};
    job.heads_per_tile = group < TILE_ROWS ? group : TILE_ROWS;
    job.tokens_per_tile = TILE_ROWS / job.heads_per_tile;
    job.head_tiles = (group + job.heads_per_tile - 1) / job.heads_per_tile;
    job.token_tiles = (args->n_tokens + job.tokens_per_tile - 1) / job.tokens_per_tile;
    atomic_init(&job.next_tile, 0);
    threadpool_run(pool, tiled_worker, &job);
}

/* ---- dispatch ---- */

static void attention_many_at_level(threadpool *pool, const ops_attention_args *args, int n_args, cpu_level level)
{
    attention_job job = {.args = args,
                         .kernels = ops_attention_kernels_at_level(level),
                         .dot_q8 = ops_dot_at_level(QUANT_Q8_0, level),
                         .n_args = n_args};
    for (int i = 0; i < n_args; i++) {
        const ops_attention_args *a = &args[i];
        assert(a->head_dim_k <= MAX_HEAD_DIM && a->head_dim_v <= MAX_HEAD_DIM && a->n_heads % a->n_kv_heads == 0);
        assert(a->kv_type != OPS_KV_Q8_0 || (a->head_dim_k % QK8_0 == 0 && a->head_dim_v % QK8_0 == 0 &&
                                             a->k_stride % QK8_0 == 0 && a->v_stride % QK8_0 == 0));
        if (ops_attention_tiled_fits(a))
            ops_attention_tiled_at_level(pool, a, level);
        else
            job.items += (long)a->n_tokens * a->n_heads;
    }
    if (job.items > 0)
        threadpool_run(pool, attention_worker, &job);
}

void ops_attention_at_level(threadpool *pool, const ops_attention_args *args, cpu_level level)
{
    attention_many_at_level(pool, args, 1, level);
}

void ops_attention(threadpool *pool, const ops_attention_args *args)
{
    ops_attention_at_level(pool, args, cpu_best_level());
}

void ops_attention_many(threadpool *pool, const ops_attention_args *args, int n_args)
{
    attention_many_at_level(pool, args, n_args, cpu_best_level());
}

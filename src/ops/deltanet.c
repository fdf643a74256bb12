#include "ops/deltanet.h"

#include "ops/deltanet_kernels.h"

#include <math.h>
#include <string.h>

/* ---- scalar reference kernels ---- */

static void matvec_ref(float *out, int64_t out_stride, const float *m, int64_t m_stride, int32_t n_rows,
                       const float *x, int64_t x_stride, int32_t n_vecs, int32_t n)
{
    for (int32_t v = 0; v < n_vecs; v++)
        for (int32_t i = 0; i < n_rows; i++) {
            const float *row = m + i * m_stride, *xv = x + v * x_stride;
            float sum = 0.0f;
            for (int32_t j = 0; j < n; j++)
                sum += row[j] * xv[j];
            out[v * out_stride + i] = sum;
        }
}

static void axpy_multi_ref(float *y, const float *x, int64_t x_stride, const float *coef, int32_t count, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        float acc = y[j];
        for (int32_t s = 0; s < count; s++)
            acc += coef[s] * x[s * x_stride + j];
        y[j] = acc;
    }
}

static void scale_ref(float *y, float c, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        y[j] *= c;
}

static float recurrent_row_ref(float *row, const float *k, const float *q, float v, float beta, float decay,
                               int32_t n)
{
    float sk = 0.0f, o = 0.0f;
    for (int32_t j = 0; j < n; j++) {
        row[j] *= decay;
        sk += row[j] * k[j];
    }
    const float delta = (v - sk) * beta;
    for (int32_t j = 0; j < n; j++) {
        row[j] += delta * k[j];
        o += row[j] * q[j];
    }
    return o;
}

static const deltanet_kernels kernels_ref = {matvec_ref, axpy_multi_ref, scale_ref, recurrent_row_ref};

const deltanet_kernels *ops_deltanet_kernels_at_level(cpu_level level)
{
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX2)
        return &ops_deltanet_kernels_avx2;
#endif
    (void)level;
    return &kernels_ref;
}

/* ---- the delta rule ---- */

typedef struct deltanet_job {
    const ops_deltanet_args *a;
    const deltanet_kernels *kern;
    float *scratch; /* chunked: per value head, chunk_floats(head_dim) */
} deltanet_job;

static inline const float *key_row(const ops_deltanet_args *a, int32_t t, int32_t h)
{
    return a->k + t * a->qkv_stride + (int64_t)(h % a->n_k_heads) * a->head_dim;
}

static inline const float *query_row(const ops_deltanet_args *a, int32_t t, int32_t h)
{
    return a->q + t * a->qkv_stride + (int64_t)(h % a->n_k_heads) * a->head_dim;
}

/* Token after token, the operations of ggml's fused gated_delta_net. Row i
 * of the state depends on value component i alone, so each row goes through
 * the whole step while it is in L1: one trip through the state per token
 * instead of four. */
static void recurrent_head(const ops_deltanet_args *a, const deltanet_kernels *kern, int32_t h)
{
    const int32_t n = a->head_dim;
    const float scale = 1.0f / sqrtf((float)n);
    float *s = a->state + (int64_t)h * n * n;
    for (int32_t t = 0; t < a->n_tokens; t++) {
        const float *k = key_row(a, t, h), *q = query_row(a, t, h);
        const float *v = a->v + t * a->qkv_stride + (int64_t)h * n;
        const float beta = a->beta[t * a->gb_stride + h], decay = expf(a->g[t * a->gb_stride + h]);
        float *o = a->out + t * a->out_stride + (int64_t)h * n;
        for (int32_t i = 0; i < n; i++)
            o[i] = kern->recurrent_row(s + (int64_t)i * n, k, q, v[i], beta, decay, n) * scale;
    }
}

static void recurrent_run(void *ctx, int thread, int n_threads)
{
    const deltanet_job *job = ctx;
    long first, last;
    threadpool_split(job->a->n_v_heads, 1, thread, n_threads, &first, &last);
    for (long h = first; h < last; h++)
        recurrent_head(job->a, job->kern, (int32_t)h);
}

void ops_deltanet_recurrent_at_level(threadpool *pool, const ops_deltanet_args *args, cpu_level level)
{
    deltanet_job job = {.a = args, .kern = ops_deltanet_kernels_at_level(level)};
    threadpool_run(pool, recurrent_run, &job);
}

void ops_deltanet_recurrent(threadpool *pool, const ops_deltanet_args *args)
{
    ops_deltanet_recurrent_at_level(pool, args, cpu_best_level());
}

/* A head's chunk scratch: W (C rows of 2n: the solved values, then the
 * solved decayed keys), U (C rows of n: the chunk's value corrections),
 * then G, beta and two rows of C coefficients. */
static size_t chunk_floats(int32_t n)
{
    const size_t c = OPS_DELTANET_CHUNK;
    return c * 3 * (size_t)n + 4 * c;
}

size_t ops_deltanet_chunked_scratch_bytes(int32_t n_v_heads, int32_t head_dim)
{
    return (size_t)n_v_heads * chunk_floats(head_dim) * sizeof(float);
}

/* One chunk of c tokens from t0 for value head h, with S the state at the
 * chunk's start. With G_t the running sum of g over the chunk and
 * u_t = beta_t (v_t - exp(g_t) S_{t-1} k_t) the t-th update,
 *
 *     S_t = exp(G_t) S + sum_{s<=t} exp(G_t - G_s) u_s k_s^T
 *
 * so the u_t solve the unit-lower-triangular system
 *
 *     u_t + sum_{s<t} beta_t exp(G_t - G_s) (k_t . k_s) u_s = beta_t v_t - beta_t exp(G_t) S k_t,
 *
 * solved for both right-hand parts at once (forward substitution over rows
 * of 2n: W = [values | decayed keys]), giving u_t = W_t,v - S W_t,k; then
 *
 *     o_t = exp(G_t) S q_t + sum_{s<=t} exp(G_t - G_s) (q_t . k_s) u_s
 *     S   = exp(G_c) S + sum_s exp(G_c - G_s) u_s k_s^T. */
static void chunk_head(const ops_deltanet_args *a, const deltanet_kernels *kern, int32_t h, int32_t t0, int32_t c,
                       float *scratch)
{
    const int32_t n = a->head_dim, C = OPS_DELTANET_CHUNK;
    const float scale = 1.0f / sqrtf((float)n);
    float *s = a->state + (int64_t)h * n * n;
    float *w = scratch, *u = w + (size_t)C * 2 * n;
    float *G = u + (size_t)C * n, *beta = G + C, *coef = beta + C, *column = coef + C;
    const float *k0 = key_row(a, t0, h);

    float sum = 0.0f;
    for (int32_t t = 0; t < c; t++) {
        sum += a->g[(t0 + t) * a->gb_stride + h];
        G[t] = sum;
        beta[t] = a->beta[(t0 + t) * a->gb_stride + h];
    }

    for (int32_t t = 0; t < c; t++) {
        const float *k = key_row(a, t0 + t, h), *v = a->v + (t0 + t) * a->qkv_stride + (int64_t)h * n;
        float *wt = w + (size_t)t * 2 * n;
        const float bk = beta[t] * expf(G[t]);
        for (int32_t j = 0; j < n; j++) {
            wt[j] = beta[t] * v[j];
            wt[n + j] = bk * k[j];
        }
        if (t == 0)
            continue;
        kern->matvec(coef, 0, k0, a->qkv_stride, t, k, 0, 1, n);
        for (int32_t r = 0; r < t; r++)
            coef[r] = -beta[t] * coef[r] * expf(G[t] - G[r]);
        kern->axpy_multi(wt, w, 2 * n, coef, t, 2 * n);
    }

    /* u_t = W_t,v - S W_t,k */
    kern->matvec(u, n, s, n, n, w + n, 2 * n, c, n);
    for (int32_t t = 0; t < c; t++)
        for (int32_t i = 0; i < n; i++)
            u[(size_t)t * n + i] = w[(size_t)t * 2 * n + i] - u[(size_t)t * n + i];

    /* o_t, from the chunk's starting state and the updates up to t */
    float *o0 = a->out + t0 * a->out_stride + (int64_t)h * n;
    kern->matvec(o0, a->out_stride, s, n, n, query_row(a, t0, h), a->qkv_stride, c, n);
    for (int32_t t = 0; t < c; t++) {
        float *o = o0 + t * a->out_stride;
        kern->scale(o, expf(G[t]), n);
        kern->matvec(coef, 0, k0, a->qkv_stride, t + 1, query_row(a, t0 + t, h), 0, 1, n);
        for (int32_t r = 0; r <= t; r++)
            coef[r] *= expf(G[t] - G[r]);
        kern->axpy_multi(o, u, n, coef, t + 1, n);
        kern->scale(o, scale, n);
    }

    /* the state at the chunk's end */
    const float decay = expf(G[c - 1]);
    for (int32_t r = 0; r < c; r++)
        coef[r] = expf(G[c - 1] - G[r]);
    for (int32_t i = 0; i < n; i++) {
        for (int32_t r = 0; r < c; r++)
            column[r] = coef[r] * u[(size_t)r * n + i];
        float *row = s + (int64_t)i * n;
        kern->scale(row, decay, n);
        kern->axpy_multi(row, k0, a->qkv_stride, column, c, n);
    }
}

static void chunked_run(void *ctx, int thread, int n_threads)
{
    const deltanet_job *job = ctx;
    const ops_deltanet_args *a = job->a;
    long first, last;
    threadpool_split(a->n_v_heads, 1, thread, n_threads, &first, &last);
    for (long h = first; h < last; h++) {
        float *scratch = job->scratch + (size_t)h * chunk_floats(a->head_dim);
        for (int32_t t0 = 0; t0 < a->n_tokens; t0 += OPS_DELTANET_CHUNK) {
            int32_t c = a->n_tokens - t0 < OPS_DELTANET_CHUNK ? a->n_tokens - t0 : OPS_DELTANET_CHUNK;
            chunk_head(a, job->kern, (int32_t)h, t0, c, scratch);
        }
    }
}

void ops_deltanet_chunked_at_level(threadpool *pool, const ops_deltanet_args *args, void *scratch,
                                   cpu_level level)
{
    deltanet_job job = {.a = args, .kern = ops_deltanet_kernels_at_level(level), .scratch = scratch};
    threadpool_run(pool, chunked_run, &job);
}

void ops_deltanet_chunked(threadpool *pool, const ops_deltanet_args *args, void *scratch)
{
    ops_deltanet_chunked_at_level(pool, args, scratch, cpu_best_level());
}

/* ---- the causal convolution ---- */

typedef struct conv_job {
    const float *x;
    int64_t x_stride, channels;
    int32_t n_tokens, kernel;
    const float *weights;
    float *conv_state, *out;
    int64_t out_stride;
} conv_job;

static inline float silu(float x)
{
    return x / (1.0f + expf(-x));
}

static void conv_run(void *ctx, int thread, int n_threads)
{
    const conv_job *j = ctx;
    const int32_t K = j->kernel, n = j->n_tokens;
    const int64_t ch = j->channels;
    long first, last;
    threadpool_split(ch, 64, thread, n_threads, &first, &last);
    /* in[r][c]: the state's rows, then x's */
#define IN(r, c) ((r) < K - 1 ? j->conv_state[(int64_t)(r) * ch + (c)] : j->x[(int64_t)((r) - (K - 1)) * j->x_stride + (c)])
    for (int32_t t = 0; t < n; t++)
        for (long c = first; c < last; c++) {
            const float *w = j->weights + c * K;
            float sum = 0.0f;
            for (int32_t i = 0; i < K; i++)
                sum += IN(t + i, c) * w[i];
            j->out[(int64_t)t * j->out_stride + c] = silu(sum);
        }
    /* Row r of the new state is in[n + r]: a later row than r, so rows are
     * read before they are overwritten. */
    for (int32_t r = 0; r < K - 1; r++)
        for (long c = first; c < last; c++)
            j->conv_state[(int64_t)r * ch + c] = IN(n + r, c);
#undef IN
}

void ops_deltanet_conv(threadpool *pool, const float *x, int64_t x_stride, int32_t n_tokens, int64_t channels,
                       int32_t kernel, const float *weights, float *conv_state, float *out, int64_t out_stride)
{
    conv_job job = {x, x_stride, channels, n_tokens, kernel, weights, conv_state, out, out_stride};
    /* One token (decode) is a few thousand multiply-adds: less than waking
     * the pool costs. */
    if (n_tokens == 1)
        conv_run(&job, 0, 1);
    else
        threadpool_run(pool, conv_run, &job);
}

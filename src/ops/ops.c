#include "ops/ops.h"

#include "base/fp16.h"
#include "ops/ops_kernels.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>

void ops_rmsnorm(const float *x, const float *weight, int64_t n, float eps, float *out)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    if (weight) {
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] * scale) * weight[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] * scale;
    }
}

/* The pair index at which a wavelength makes n_rot turns over n_ctx_orig
 * positions (ggml_rope_yarn_corr_dim, in its float operations). */
static float yarn_corr_dim(int32_t n_dims, int32_t n_ctx_orig, float n_rot, float base)
{
    const float pi = (float)3.14159265358979323846;
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * pi)) / (2.0f * logf(base));
}

void ops_rope_yarn_corr_dims(int32_t n_dims, int32_t n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                             float dims[2])
{
    float start = floorf(yarn_corr_dim(n_dims, n_ctx_orig, beta_fast, freq_base));
    float end = ceilf(yarn_corr_dim(n_dims, n_ctx_orig, beta_slow, freq_base));
    dims[0] = start > 0.0f ? start : 0.0f;
    dims[1] = end < (float)(n_dims - 1) ? end : (float)(n_dims - 1);
}

/* 1 for the pairs below corr_dims[0] (kept unscaled: extrapolated), 0 above
 * corr_dims[1] (interpolated), linear between; i0 = 2 * pair, as ggml. */
static float yarn_ramp(const float corr_dims[2], int32_t i0)
{
    float y = (float)(i0 / 2) - corr_dims[0];
    float width = corr_dims[1] - corr_dims[0];
    y /= width > 0.001f ? width : 0.001f;
    return 1.0f - (y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y);
}

void ops_rope_apply(const ops_rope *rope, float *x, int32_t n_heads, int32_t head_dim, int32_t pos)
{
    int32_t half = rope->n_dims / 2;
    float theta_step = powf(rope->freq_base, -2.0f / (float)rope->n_dims);
    assert(half <= 512); /* head sizes are checked at model load */
    float cos_table[512], sin_table[512];
    float theta = (float)pos;
    if (rope->ext_factor != 0.0f) {
        float mscale = rope->attn_factor * (1.0f + 0.1f * logf(1.0f / rope->freq_scale));
        float corr_dims[2];
        ops_rope_yarn_corr_dims(rope->n_dims, rope->n_ctx_orig, rope->freq_base, rope->beta_fast, rope->beta_slow,
                                corr_dims);
        for (int32_t i = 0; i < half && i < 512; i++) {
            float extrapolated = rope->freq_factors ? theta / rope->freq_factors[i] : theta;
            float interpolated = rope->freq_scale * extrapolated;
            float mix = yarn_ramp(corr_dims, 2 * i) * rope->ext_factor;
            /* One fused multiply-add, as llama.cpp's CPU backend (built for
             * the native CPU, which contracts this line) computes the mix. */
            float angle = fmaf(interpolated, 1.0f - mix, extrapolated * mix);
            cos_table[i] = cosf(angle) * mscale;
            sin_table[i] = sinf(angle) * mscale;
            theta *= theta_step;
        }
    } else {
        for (int32_t i = 0; i < half && i < 512; i++) {
            float angle = rope->freq_factors ? theta / rope->freq_factors[i] : theta;
            angle *= rope->freq_scale;
            cos_table[i] = cosf(angle);
            sin_table[i] = sinf(angle);
            theta *= theta_step;
        }
    }
    /* Element offsets of pair i's two members: (2i, 2i + 1) or (i, i + half). */
    const int32_t stride = rope->layout == OPS_ROPE_NORM ? 2 : 1;
    const int32_t partner = rope->layout == OPS_ROPE_NORM ? 1 : half;
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < half; i++) {
            float *first = v + i * stride, *second = first + partner;
            float a = *first, b = *second;
            *first = a * cos_table[i] - b * sin_table[i];
            *second = a * sin_table[i] + b * cos_table[i];
        }
    }
}

float ops_gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

/* GELU of every half, rounded to half: llama.cpp's CPU backend evaluates
 * GELU through such a table (its inputs rounded to f16) for |x| < 10, and
 * matching it keeps our logits closest to the reference. */
static float gelu_of_half[1 << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static void fill_gelu_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        gelu_of_half[h] = fp16_to_fp32(fp32_to_fp16(ops_gelu_tanh(fp16_to_fp32((uint16_t)h))));
}

static const float *gelu_table(void)
{
    pthread_once(&gelu_table_once, fill_gelu_table);
    return gelu_of_half;
}

static void geglu_ref(float *gate, const float *up, int64_t n, const float *gelu)
{
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        if (x <= -10.0f)
            gate[i] = 0.0f;
        else if (x >= 10.0f)
            gate[i] = x * up[i];
        else
            gate[i] = gelu[fp32_to_fp16(x)] * up[i];
    }
}

void ops_geglu(float *gate, const float *up, int64_t n)
{
    ops_geglu_at_level(gate, up, n, cpu_best_level());
}

void ops_scale(float *x, int64_t n, float factor)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= factor;
}

void ops_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

typedef struct parallel_rows_job {
    ops_rows_fn fn;
    void *ctx;
    int64_t n_rows;
} parallel_rows_job;

static void parallel_rows_worker(void *p, int thread, int n_threads)
{
    const parallel_rows_job *job = p;
    long first, last;
    threadpool_split((long)job->n_rows, 1, thread, n_threads, &first, &last);
    if (first < last)
        job->fn(job->ctx, first, last);
}

void ops_parallel_rows(threadpool *pool, int64_t n_rows, ops_rows_fn fn, void *ctx)
{
    if (n_rows <= 1) {
        if (n_rows == 1)
            fn(ctx, 0, 1);
        return;
    }
    parallel_rows_job job = {fn, ctx, n_rows};
    threadpool_run(pool, parallel_rows_worker, &job);
}

void ops_geglu_at_level(float *gate, const float *up, int64_t n, cpu_level level)
{
    const float *gelu = gelu_table();
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX512) {
        ops_geglu_avx512(gate, up, n, gelu);
        return;
    }
    if (level >= CPU_LEVEL_AVX2) {
        ops_geglu_avx2(gate, up, n, gelu);
        return;
    }
#else
    (void)level;
#endif
    geglu_ref(gate, up, n, gelu);
}

void ops_store_f16_at_level(uint16_t *dst, const float *src, int64_t n, cpu_level level)
{
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX512) {
        ops_store_f16_avx512(dst, src, n);
        return;
    }
    if (level >= CPU_LEVEL_AVX2) {
        ops_store_f16_avx2(dst, src, n);
        return;
    }
#else
    (void)level;
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = fp32_to_fp16(src[i]);
}

void ops_store_f16(uint16_t *dst, const float *src, int64_t n)
{
    ops_store_f16_at_level(dst, src, n, cpu_best_level());
}

/* The last steps of ops_rmsnorm, from a row's sum of squares. */
static void rmsnorm_scale_row(const float *x, double sum, const float *weight, int64_t n, float eps, float *out)
{
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    if (weight) {
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] * scale) * weight[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] * scale;
    }
}

void ops_rmsnorm_rows(const float *x, int64_t x_stride, const float *weight, int64_t n, float eps, float *out,
                      int64_t out_stride, int64_t n_rows)
{
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        const float *x0 = x + r * x_stride, *x1 = x0 + x_stride, *x2 = x1 + x_stride, *x3 = x2 + x_stride;
        double sum0 = 0.0, sum1 = 0.0, sum2 = 0.0, sum3 = 0.0;
        for (int64_t i = 0; i < n; i++) {
            sum0 += (double)(x0[i] * x0[i]);
            sum1 += (double)(x1[i] * x1[i]);
            sum2 += (double)(x2[i] * x2[i]);
            sum3 += (double)(x3[i] * x3[i]);
        }
        rmsnorm_scale_row(x0, sum0, weight, n, eps, out + r * out_stride);
        rmsnorm_scale_row(x1, sum1, weight, n, eps, out + (r + 1) * out_stride);
        rmsnorm_scale_row(x2, sum2, weight, n, eps, out + (r + 2) * out_stride);
        rmsnorm_scale_row(x3, sum3, weight, n, eps, out + (r + 3) * out_stride);
    }
    for (; r < n_rows; r++)
        ops_rmsnorm(x + r * x_stride, weight, n, eps, out + r * out_stride);
}

void ops_swiglu_at_level(float *gate, const float *up, int64_t n, cpu_level level)
{
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX512) {
        ops_swiglu_avx512(gate, up, n);
        return;
    }
    if (level >= CPU_LEVEL_AVX2) {
        ops_swiglu_avx2(gate, up, n);
        return;
    }
#else
    (void)level;
#endif
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        gate[i] = x / (1.0f + expf(-x)) * up[i];
    }
}

void ops_swiglu(float *gate, const float *up, int64_t n)
{
    ops_swiglu_at_level(gate, up, n, cpu_best_level());
}

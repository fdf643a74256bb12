/* The forward pass's small kernels against plain double-precision formulas:
 * RMSNorm, NEOX RoPE, GeGLU, and attention (causal, sliding window, grouped
 * heads, both of its precision modes, the tiled path) against a two-pass
 * softmax; and every SIMD kernel against its scalar twin. */
#include "test.h"

#include "base/fp16.h"
#include "ops/attention.h"
#include "ops/attention_kernels.h"
#include "ops/ops.h"
#include "ops/ops_kernels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float random_float(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void check_rmsnorm(void)
{
    for (int n = 1; n <= 4096; n = n * 3 + 1) {
        float x[4096], w[4096], out[4096];
        for (int i = 0; i < n; i++)
            x[i] = 10.0f * random_float(), w[i] = random_float();
        ops_rmsnorm(x, w, n, 1e-6f, out);
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += (double)x[i] * x[i];
        double scale = 1.0 / sqrt(sum / n + 1e-6);
        double worst = 0.0;
        for (int i = 0; i < n; i++)
            worst = fmax(worst, fabs(out[i] - x[i] * scale * w[i]) / (fabs(x[i] * scale) + 1e-30));
        CHECK_MSG(worst < 1e-6, "rmsnorm n=%d: relative error %g", n, worst);
    }
}

/* Several rows at once, in place or not: bit-identical to one row at a time. */
static void check_rmsnorm_rows(void)
{
    enum { MAX_ROWS = 9, N = 100, STRIDE = 103 };
    static float x[MAX_ROWS * STRIDE], w[N], expected[MAX_ROWS * STRIDE], got[MAX_ROWS * STRIDE];
    for (int i = 0; i < N; i++)
        w[i] = random_float();
    for (int rows = 1; rows <= MAX_ROWS; rows++) {
        for (int i = 0; i < MAX_ROWS * STRIDE; i++)
            x[i] = 100.0f * random_float() * random_float() * random_float();
        memset(expected, 0, sizeof expected);
        memset(got, 0, sizeof got);
        for (int r = 0; r < rows; r++)
            ops_rmsnorm(x + r * STRIDE, w, N, 1e-6f, expected + r * N);
        ops_rmsnorm_rows(x, STRIDE, w, N, 1e-6f, got, N, rows);
        CHECK_MSG(memcmp(expected, got, sizeof got) == 0, "rmsnorm_rows: %d rows differ from rmsnorm", rows);
        for (int r = 0; r < rows; r++)
            ops_rmsnorm(x + r * STRIDE, NULL, N, 1e-6f, expected + r * N);
        ops_rmsnorm_rows(x, STRIDE, NULL, N, 1e-6f, got, N, rows);
        CHECK_MSG(memcmp(expected, got, sizeof got) == 0, "rmsnorm_rows without weight: %d rows differ", rows);
        for (int r = 0; r < rows; r++)
            ops_rmsnorm(x + r * STRIDE, w, N, 1e-6f, expected + r * N);
        ops_rmsnorm_rows(x, STRIDE, w, N, 1e-6f, x, STRIDE, rows);
        int differing = 0;
        for (int r = 0; r < rows; r++)
            differing += memcmp(x + r * STRIDE, expected + r * N, N * sizeof *x) != 0;
        CHECK_MSG(differing == 0, "rmsnorm_rows in place: %d of %d rows differ from rmsnorm", differing, rows);
    }
}

/* RoPE against the rotation computed in double. The angle accumulates float
 * rounding as ggml's does: compared in double, it drifts by ~1e-7 per step. */
static void check_rope(void)
{
    enum { HEADS = 3, DIM = 256 };
    float x[HEADS * DIM], y[HEADS * DIM], factors[DIM / 2];
    for (int i = 0; i < HEADS * DIM; i++)
        x[i] = random_float();
    for (int i = 0; i < DIM / 2; i++)
        factors[i] = 1.0f + 7.0f * (float)i / (DIM / 2); /* Llama 3's rope_freqs run from 1 to 8 */
    const int positions[] = {0, 1, 17, 511, 4095, 32767};
    for (int layout = OPS_ROPE_NORM; layout <= OPS_ROPE_NEOX; layout++)
        for (int with_factors = 0; with_factors <= 1; with_factors++)
            for (size_t p = 0; p < sizeof positions / sizeof *positions; p++)
                for (int rot = 64; rot <= DIM; rot *= 2) {
                    ops_rope rope = {.layout = (ops_rope_layout)layout, .n_dims = rot, .freq_base = 10000.0f,
                                     .freq_scale = 0.5f, .freq_factors = with_factors ? factors : NULL};
                    memcpy(y, x, sizeof x);
                    ops_rope_apply(&rope, y, HEADS, DIM, positions[p]);
                    /* Element offsets of pair i: (2i, 2i + 1) or (i, i + rot/2). */
                    int stride = layout == OPS_ROPE_NORM ? 2 : 1, partner = layout == OPS_ROPE_NORM ? 1 : rot / 2;
                    double worst = 0.0;
                    for (int h = 0; h < HEADS; h++) {
                        const float *a = x + h * DIM, *b = y + h * DIM;
                        for (int i = 0; i < rot / 2; i++) {
                            double theta = positions[p] * 0.5 * pow(10000.0, -2.0 * i / rot) /
                                           (with_factors ? factors[i] : 1.0);
                            int e0 = i * stride, e1 = e0 + partner;
                            double re = a[e0] * cos(theta) - a[e1] * sin(theta);
                            double im = a[e0] * sin(theta) + a[e1] * cos(theta);
                            worst = fmax(worst, fmax(fabs(b[e0] - re), fabs(b[e1] - im)));
                        }
                        for (int i = rot; i < DIM; i++)
                            worst = fmax(worst, fabs(b[i] - a[i])); /* past n_dims: untouched */
                    }
                    double limit = 1e-5 + 4e-7 * positions[p] * 0.5;
                    CHECK_MSG(worst < limit, "rope layout %d factors %d pos %d dims %d: error %g (limit %g)", layout,
                              with_factors, positions[p], rot, worst, limit);
                }
}

/* YaRN with gpt-oss's settings (factor 32 over 4096 trained positions, base
 * 150000, heads of 64) and a second, partial-rotation case, against the
 * formula in double: pair i's angle mixes p * theta_i / factor and
 * p * theta_i by a ramp that is 1 below corr_dims[0] and 0 above
 * corr_dims[1]; cos and sin are scaled by attn_factor (1 + 0.1 ln factor). */
static void check_rope_yarn(void)
{
    enum { HEADS = 2, DIM = 128 };
    float x[HEADS * DIM], y[HEADS * DIM];
    for (int i = 0; i < HEADS * DIM; i++)
        x[i] = random_float();
    static const struct { int n_dims, n_ctx_orig; float base, factor, attn_factor; } cases[] = {
        {64, 4096, 150000.0f, 32.0f, 1.0f}, {128, 256, 10000.0f, 4.0f, 0.75f}, {96, 2048, 500000.0f, 8.0f, 1.0f}};
    const int positions[] = {0, 3, 100, 511, 4095, 70000};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (size_t p = 0; p < sizeof positions / sizeof *positions; p++) {
            ops_rope rope = {.layout = OPS_ROPE_NEOX, .n_dims = cases[c].n_dims, .freq_base = cases[c].base,
                             .freq_scale = 1.0f / cases[c].factor, .ext_factor = 1.0f,
                             .attn_factor = cases[c].attn_factor, .beta_fast = 32.0f, .beta_slow = 1.0f,
                             .n_ctx_orig = cases[c].n_ctx_orig};
            float dims[2];
            ops_rope_yarn_corr_dims(rope.n_dims, rope.n_ctx_orig, rope.freq_base, 32.0f, 1.0f, dims);
            CHECK(dims[0] >= 0.0f && dims[0] <= dims[1] && dims[1] <= (float)(rope.n_dims - 1));
            memcpy(y, x, sizeof x);
            ops_rope_apply(&rope, y, HEADS, DIM, positions[p]);
            int half = rope.n_dims / 2;
            double mscale = cases[c].attn_factor * (1.0 + 0.1 * log(cases[c].factor)), worst = 0.0;
            for (int h = 0; h < HEADS; h++) {
                const float *a = x + h * DIM, *b = y + h * DIM;
                for (int i = 0; i < half; i++) {
                    double extrapolated = positions[p] * pow(cases[c].base, -2.0 * i / rope.n_dims);
                    double ramp = 1.0 - fmin(1.0, fmax(0.0, (i - dims[0]) / fmax(0.001, dims[1] - dims[0])));
                    double theta = extrapolated / cases[c].factor * (1.0 - ramp) + extrapolated * ramp;
                    double re = (a[i] * cos(theta) - a[i + half] * sin(theta)) * mscale;
                    double im = (a[i] * sin(theta) + a[i + half] * cos(theta)) * mscale;
                    worst = fmax(worst, fmax(fabs(b[i] - re), fabs(b[i + half] - im)));
                }
                for (int i = rope.n_dims; i < DIM; i++)
                    worst = fmax(worst, fabs(b[i] - a[i]));
            }
            double limit = 1e-5 + 4e-7 * positions[p];
            CHECK_MSG(worst < limit, "yarn rope case %zu pos %d: error %g (limit %g)", c, positions[p], worst, limit);
        }
    }
}

static void check_geglu(void)
{
    double worst = 0.0;
    for (int i = 0; i < 20000; i++) {
        float x = 24.0f * random_float(), up = random_float();
        float gate = x;
        ops_geglu(&gate, &up, 1);
        double exact = 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x))) * up;
        /* GELU is read from a half-precision table (as llama.cpp does). */
        worst = fmax(worst, fabs(gate - exact) / (fabs(x * up) + 1e-3));
    }
    CHECK_MSG(worst < 2e-3, "geglu: relative error %g", worst);
}

/* Values that exercise every branch of an f32 -> f16 conversion: zeros,
 * f16 subnormals, ties, the +-10 edges of the GeGLU table, overflow. */
static float awkward_float(int i)
{
    static const float special[] = {0.0f, -0.0f, 1e-8f, -3e-6f, 6.1035156e-5f, 1.00048828125f, 9.9990234f, 9.99999f,
                                    10.0f, -10.0f, -9.9999f, 65504.0f, 65520.0f, -1e6f, INFINITY, -INFINITY};
    enum { N_SPECIAL = sizeof special / sizeof *special };
    if (i < N_SPECIAL)
        return special[i];
    float scale = (i % 3 == 0) ? 24.0f : (i % 3 == 1) ? 1e-3f : 1e5f;
    return scale * random_float();
}

/* The vector GeGLU and f16 store against the scalar ones: bit-identical,
 * on lengths that leave every kind of tail. */
static void check_elementwise_levels(void)
{
    enum { MAX_N = 1000 };
    static float gate[MAX_N], up[MAX_N], expected[MAX_N], got[MAX_N];
    static uint16_t half_expected[MAX_N], half_got[MAX_N];
    const int lengths[] = {1, 7, 8, 15, 16, 17, 100, 1000};
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
            int n = lengths[li];
            for (int i = 0; i < n; i++)
                gate[i] = awkward_float(i), up[i] = 2.0f * random_float();
            memcpy(expected, gate, (size_t)n * sizeof *gate);
            memcpy(got, gate, (size_t)n * sizeof *gate);
            ops_geglu_at_level(expected, up, n, CPU_LEVEL_SCALAR);
            ops_geglu_at_level(got, up, n, (cpu_level)level);
            CHECK_MSG(memcmp(expected, got, (size_t)n * sizeof *got) == 0, "%s geglu n=%d differs from scalar",
                      cpu_level_name((cpu_level)level), n);
            ops_store_f16_at_level(half_expected, gate, n, CPU_LEVEL_SCALAR);
            ops_store_f16_at_level(half_got, gate, n, (cpu_level)level);
            CHECK_MSG(memcmp(half_expected, half_got, (size_t)n * sizeof *half_got) == 0,
                      "%s store_f16 n=%d differs from scalar", cpu_level_name((cpu_level)level), n);
        }
    }
}

/* SwiGLU: the vector levels use a polynomial exp within 2 ulp of expf, then
 * the same add, divide and multiply, so each result is within a few ulp of
 * the scalar one (8 ulp allowed; silu's 1 + e^-x and the division each add
 * at most one rounding to exp's error), and the levels agree exactly with
 * each other. Inputs from -80 to 80 and the awkward values. */
static void check_swiglu_levels(void)
{
    enum { N = 4099 };
    static float gate[N], up[N], expected[N], got[N], first_level[N];
    for (int i = 0; i < N; i++) {
        gate[i] = i < 16 && isfinite(awkward_float(i)) ? awkward_float(i) : 80.0f * random_float();
        up[i] = 2.0f * random_float();
    }
    memcpy(expected, gate, sizeof gate);
    ops_swiglu_at_level(expected, up, N, CPU_LEVEL_SCALAR);
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        memcpy(got, gate, sizeof gate);
        ops_swiglu_at_level(got, up, N, (cpu_level)level);
        double worst = 0.0;
        for (int i = 0; i < N; i++) {
            double ulp = fabs((double)expected[i]) * FLT_EPSILON;
            double error = fabs((double)got[i] - expected[i]);
            if (error > 0.0) /* a zero result must come out zero */
                worst = fmax(worst, ulp > 0.0 ? error / ulp : INFINITY);
        }
        CHECK_MSG(worst <= 8.0, "%s swiglu: %.1f ulp from the scalar one", cpu_level_name((cpu_level)level), worst);
        if (level == CPU_LEVEL_AVX2)
            memcpy(first_level, got, sizeof got);
        else
            CHECK_MSG(memcmp(first_level, got, sizeof got) == 0, "%s swiglu differs from avx2",
                      cpu_level_name((cpu_level)level));
    }
}

static void count_rows(void *ctx, int64_t first, int64_t last)
{
    int *visits = ctx;
    for (int64_t r = first; r < last; r++)
        visits[r]++;
}

/* Every row once, whatever the split, with and without a pool. */
static void check_parallel_rows(void)
{
    threadpool *pool = NULL;
    hearth_error err;
    CHECK_MSG(threadpool_create(3, &pool, &err) == HEARTH_OK, "threadpool_create");
    const int counts[] = {0, 1, 2, 3, 17, 100};
    for (int with_pool = 0; with_pool < 2; with_pool++) {
        for (size_t ci = 0; ci < sizeof counts / sizeof *counts; ci++) {
            int visits[100] = {0};
            ops_parallel_rows(with_pool ? pool : NULL, counts[ci], count_rows, visits);
            int wrong = 0;
            for (int r = 0; r < 100; r++)
                wrong += visits[r] != (r < counts[ci]);
            CHECK_MSG(wrong == 0, "parallel rows: %d rows of %d visited wrongly (pool %d)", wrong, counts[ci],
                      with_pool);
        }
    }
    threadpool_free(pool);
}

/* Attention against a two-pass softmax in double, with the kernels of one
 * instruction level. */
/* Per-head sink logits for the attention checks: below, near and above the
 * scores' range (a few units), so that each branch of the sink's rescaling
 * runs. */
static float test_sinks[128];

static void fill_test_sinks(void)
{
    static const float cycle[8] = {-3.0f, 0.5f, 6.0f, 1.5f, 12.0f, -0.25f, 2.5f, 4.0f};
    for (int h = 0; h < 128; h++)
        test_sinks[h] = cycle[h % 8];
}

static void check_attention_at(cpu_level level, int n_tokens, int n_heads, int n_kv_heads, int dim, int window,
                               bool sinks)
{
    enum { MAX_POS = 200, MAX_DIM = 64, MAX_HEADS = 8 };
    static float q[MAX_POS * MAX_HEADS * MAX_DIM], out[MAX_POS * MAX_HEADS * MAX_DIM];
    static uint16_t k[MAX_POS * MAX_HEADS * MAX_DIM], v[MAX_POS * MAX_HEADS * MAX_DIM];
    int32_t positions[MAX_POS];
    int pos0 = 7; /* earlier positions already in the cache */
    int n_pos = pos0 + n_tokens, kv_dim = n_kv_heads * dim, q_dim = n_heads * dim;
    for (int i = 0; i < n_pos * kv_dim; i++)
        k[i] = fp32_to_fp16(2.0f * random_float()), v[i] = fp32_to_fp16(random_float());
    for (int i = 0; i < n_tokens * q_dim; i++)
        q[i] = 2.0f * random_float();
    for (int t = 0; t < n_tokens; t++)
        positions[t] = pos0 + t;
    float scale = 1.0f / sqrtf((float)dim);
    ops_attention_args args = {
        .q = q, .q_stride = q_dim, .k = k, .v = v, .k_stride = kv_dim, .v_stride = kv_dim,
        .positions = positions, .n_tokens = n_tokens, .n_heads = n_heads, .n_kv_heads = n_kv_heads,
        .head_dim_k = dim, .head_dim_v = dim, .window = window, .scale = scale, .out = out, .out_stride = q_dim,
        .sinks = sinks ? test_sinks : NULL,
    };
    ops_attention_at_level(NULL, &args, level);
    double worst = 0.0;
    for (int t = 0; t < n_tokens; t++) {
        for (int h = 0; h < n_heads; h++) {
            int kvh = h / (n_heads / n_kv_heads), p = positions[t];
            int first = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
            double scores[MAX_POS], max = -INFINITY, sum = 0.0;
            for (int j = first; j <= p; j++) {
                double s = 0.0;
                for (int d = 0; d < dim; d++)
                    s += (double)q[t * q_dim + h * dim + d] * scale * fp16_to_fp32(k[j * kv_dim + kvh * dim + d]);
                scores[j] = s;
                max = fmax(max, s);
            }
            for (int j = first; j <= p; j++)
                sum += scores[j] = exp(scores[j] - max);
            if (sinks)
                sum += exp(test_sinks[h] - max);
            for (int d = 0; d < dim; d++) {
                double o = 0.0;
                for (int j = first; j <= p; j++)
                    o += scores[j] / sum * fp16_to_fp32(v[j * kv_dim + kvh * dim + d]);
                worst = fmax(worst, fabs(out[t * q_dim + h * dim + d] - o));
            }
        }
    }
    /* Batches under 64 tokens keep the query and the accumulator in f16, as
     * llama.cpp does: about three decimal digits on values below 1. */
    double limit = n_tokens < 64 ? 4e-3 : 1e-5;
    CHECK_MSG(worst < limit, "attention (%s) tokens %d heads %d/%d dim %d window %d sinks %d: error %g (limit %g)",
              cpu_level_name(level), n_tokens, n_heads, n_kv_heads, dim, window, sinks, worst, limit);
}

static void check_attention(int n_tokens, int n_heads, int n_kv_heads, int dim, int window)
{
    for (int level = CPU_LEVEL_SCALAR; level <= (int)cpu_hardware_level(); level++)
        for (int sinks = 0; sinks < 2; sinks++)
            check_attention_at((cpu_level)level, n_tokens, n_heads, n_kv_heads, dim, window, sinks);
}

/* The SIMD row kernels against the scalar ones on awkward lengths: the f16
 * accumulator steps must be bit-identical (one fused multiply-add, one
 * rounding), the dot products equal to float rounding. */
static void check_row_kernels(void)
{
    const attention_row_kernels *ref = ops_attention_kernels_at_level(CPU_LEVEL_SCALAR);
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        const attention_row_kernels *simd = ops_attention_kernels_at_level((cpu_level)level);
        const int lengths[] = {1, 7, 8, 17, 64, 100, 256, 1000};
        for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
            int n = lengths[li];
            float q[1000], a[1000], b[1000];
            uint16_t kv[1000];
            double magnitude = 0.0;
            for (int i = 0; i < n; i++) {
                q[i] = fp16_to_fp32(fp32_to_fp16(random_float()));
                kv[i] = fp32_to_fp16(random_float());
                a[i] = b[i] = fp16_to_fp32(fp32_to_fp16(random_float()));
                magnitude += fabs(q[i] * fp16_to_fp32(kv[i]));
            }
            double tolerance = 1e-6 * magnitude + 1e-30;
            CHECK_MSG(fabs(simd->dot(q, kv, n) - ref->dot(q, kv, n)) <= tolerance, "%s dot n=%d",
                      cpu_level_name((cpu_level)level), n);
            CHECK_MSG(fabs(simd->dot_half(q, kv, n) - ref->dot_half(q, kv, n)) <= tolerance, "%s dot_half n=%d",
                      cpu_level_name((cpu_level)level), n);
            ref->accumulate_half(a, kv, 0.37f, n);
            simd->accumulate_half(b, kv, 0.37f, n);
            ref->rescale_half(a, 0.61f, n);
            simd->rescale_half(b, 0.61f, n);
            CHECK_MSG(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s f16 accumulator n=%d differs",
                      cpu_level_name((cpu_level)level), n);
            ref->accumulate(a, kv, 0.37f, n);
            simd->accumulate(b, kv, 0.37f, n);
            double worst = 0.0;
            for (int i = 0; i < n; i++)
                worst = fmax(worst, fabs(a[i] - b[i]));
            CHECK_MSG(worst <= 1e-6, "%s accumulate n=%d: %g", cpu_level_name((cpu_level)level), n, worst);
        }
    }
}

/* ---- the tiled attention path ---- */

/* One attention problem with its own buffers: n_tokens queries at positions
 * pos0.., over a cache holding positions 0..pos0 + n_tokens - 1. */
typedef struct attention_case {
    ops_attention_args args;
    float *q, *out;
    uint16_t *k, *v;
    int32_t *positions;
} attention_case;

static attention_case attention_case_make(int n_tokens, int n_heads, int n_kv_heads, int dim, int window, int pos0)
{
    attention_case c;
    int n_pos = pos0 + n_tokens, kv_dim = n_kv_heads * dim, q_dim = n_heads * dim;
    c.q = malloc((size_t)n_tokens * q_dim * sizeof *c.q);
    c.out = malloc((size_t)n_tokens * q_dim * sizeof *c.out);
    c.k = malloc((size_t)n_pos * kv_dim * sizeof *c.k);
    c.v = malloc((size_t)n_pos * kv_dim * sizeof *c.v);
    c.positions = malloc((size_t)n_tokens * sizeof *c.positions);
    /* Scores of a few units, as trained models have them, so the softmax is
     * neither flat nor one-hot. */
    for (int i = 0; i < n_pos * kv_dim; i++)
        c.k[i] = fp32_to_fp16(2.0f * random_float()), c.v[i] = fp32_to_fp16(random_float());
    for (int i = 0; i < n_tokens * q_dim; i++)
        c.q[i] = 2.0f * random_float();
    for (int t = 0; t < n_tokens; t++)
        c.positions[t] = pos0 + t;
    c.args = (ops_attention_args){
        .q = c.q, .q_stride = q_dim, .k = c.k, .v = c.v, .k_stride = kv_dim, .v_stride = kv_dim,
        .positions = c.positions, .n_tokens = n_tokens, .n_heads = n_heads, .n_kv_heads = n_kv_heads,
        .head_dim_k = dim, .head_dim_v = dim, .window = window, .scale = 1.0f / sqrtf((float)dim),
        .out = c.out, .out_stride = q_dim,
    };
    return c;
}

static void attention_case_free(attention_case *c)
{
    free(c->q), free(c->out), free(c->k), free(c->v), free(c->positions);
}

/* The largest |out - exact| of the case's output, exact being a two-pass
 * softmax in double. */
static double attention_error(const ops_attention_args *a)
{
    int32_t n_pos = a->positions[a->n_tokens - 1] + 1, group = a->n_heads / a->n_kv_heads;
    double *scores = malloc((size_t)n_pos * sizeof *scores), worst = 0.0;
    for (int t = 0; t < a->n_tokens; t++) {
        for (int h = 0; h < a->n_heads; h++) {
            const float *q = a->q + t * a->q_stride + h * a->head_dim_k;
            const uint16_t *k = a->k + (h / group) * a->head_dim_k, *v = a->v + (h / group) * a->head_dim_v;
            int p = a->positions[t], first = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            double max = -INFINITY, sum = 0.0;
            for (int j = first; j <= p; j++) {
                double s = 0.0;
                for (int d = 0; d < a->head_dim_k; d++)
                    s += (double)(q[d] * a->scale) * fp16_to_fp32(k[j * a->k_stride + d]);
                max = fmax(max, scores[j] = s);
            }
            for (int j = first; j <= p; j++)
                sum += scores[j] = exp(scores[j] - max);
            if (a->sinks)
                sum += exp(a->sinks[h] - max);
            for (int d = 0; d < a->head_dim_v; d++) {
                double o = 0.0;
                for (int j = first; j <= p; j++)
                    o += scores[j] / sum * fp16_to_fp32(v[j * a->v_stride + d]);
                worst = fmax(worst, fabs(a->out[t * a->out_stride + h * a->head_dim_v + d] - o));
            }
        }
    }
    free(scores);
    return worst;
}

static double max_difference(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* |exp(x) computed - exact| in units of the last place of the exact value
 * (for results in float's normal range). */
static double ulps(float got, double exact)
{
    int e;
    frexp(exact, &e);
    return fabs(got - exact) / ldexp(1.0, e - 24);
}

/* Each SIMD tile kernel against the scalar one. Widening converts exactly
 * and the row maximum is exact, so those must be bit-identical; scores and
 * accumulate sum in another order (to 1e-6 of the sum of magnitudes);
 * exp_sum's exp must be within 2 ulp of the exact value wherever that is at
 * least 1.7e-38 (the SIMD levels return 0 below; the softmax adds these to a
 * term of 1), and exactly 0 for -inf. The SIMD levels must agree with each
 * other to the bit (prefill must not depend on the instruction level). */
static void check_tile_kernels(void)
{
    enum { MAX_DIM = 512, MAX_ROWS = 64, MAX_BLOCK = 32 };
    static uint16_t k[MAX_BLOCK * MAX_DIM];
    static float q_rows[MAX_ROWS][MAX_DIM], keys_ref[MAX_BLOCK * MAX_DIM], keys_simd[MAX_BLOCK * MAX_DIM];
    static float scores_ref[MAX_ROWS * MAX_BLOCK], scores_simd[MAX_ROWS * MAX_BLOCK];
    static float acc_ref[MAX_ROWS][MAX_DIM], acc_simd[MAX_ROWS][MAX_DIM];
    const attention_tile_kernels *ref = ops_attention_tile_kernels_at_level(CPU_LEVEL_SCALAR);
    for (int i = 0; i < MAX_BLOCK * MAX_DIM; i++)
        k[i] = fp32_to_fp16(2.0f * random_float());
    for (int r = 0; r < MAX_ROWS; r++)
        for (int d = 0; d < MAX_DIM; d++)
            q_rows[r][d] = 2.0f * random_float();
    const float *q[MAX_ROWS];
    float *acc_ref_rows[MAX_ROWS], *acc_simd_rows[MAX_ROWS], correction[MAX_ROWS];
    for (int r = 0; r < MAX_ROWS; r++) {
        q[r] = q_rows[r], acc_ref_rows[r] = acc_ref[r], acc_simd_rows[r] = acc_simd[r];
        correction[r] = r % 3 == 0 ? 1.0f : 0.5f + 0.4f * random_float();
    }

    const attention_tile_kernels *avx2 = ops_attention_tile_kernels_at_level(CPU_LEVEL_AVX2);
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        const attention_tile_kernels *simd = ops_attention_tile_kernels_at_level((cpu_level)level);
        const char *name = cpu_level_name((cpu_level)level);
        bool compare_to_avx2 = level > CPU_LEVEL_AVX2;
        const int dims[] = {16, 64, 80, 256, 512}, key_counts[] = {1, 5, 16, 17, 32};
        const int row_counts[] = {1, 3, 4, 5, 8, 13, 64};
        for (int block = 16; block <= 32; block += 16) {
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                int dim = dims[di];
                if (block * dim > MAX_BLOCK * MAX_DIM / 2)
                    continue; /* the tiled path never makes blocks this large */
                for (size_t ki = 0; ki < sizeof key_counts / sizeof *key_counts; ki++) {
                    int n_keys = key_counts[ki] < block ? key_counts[ki] : block;
                    memset(keys_simd, 0x7f, sizeof keys_simd); /* padding must be written as 0 */
                    ref->widen_keys(keys_ref, k, MAX_DIM, n_keys, block, dim);
                    simd->widen_keys(keys_simd, k, MAX_DIM, n_keys, block, dim);
                    CHECK_MSG(memcmp(keys_ref, keys_simd, (size_t)block * dim * sizeof *keys_ref) == 0,
                              "%s widen_keys block %d dim %d keys %d differs", name, block, dim, n_keys);
                    memset(keys_simd, 0x7f, sizeof keys_simd);
                    ref->widen_values(keys_ref, k, MAX_DIM, n_keys, block, dim);
                    simd->widen_values(keys_simd, k, MAX_DIM, n_keys, block, dim);
                    CHECK_MSG(memcmp(keys_ref, keys_simd, (size_t)block * dim * sizeof *keys_ref) == 0,
                              "%s widen_values block %d dim %d keys %d differs", name, block, dim, n_keys);
                }
                ref->widen_keys(keys_ref, k, MAX_DIM, block, block, dim);
                for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                    int rows = row_counts[ri];
                    float scale = 1.0f / sqrtf((float)dim);
                    ref->scores(scores_ref, q, rows, keys_ref, block, dim, scale);
                    simd->scores(scores_simd, q, rows, keys_ref, block, dim, scale);
                    /* |q|, |k| <= 2: the sum of magnitudes is at most 4 dim scale. */
                    double score_error = max_difference(scores_ref, scores_simd, (size_t)rows * block);
                    CHECK_MSG(score_error <= 1e-6 * 4.0 * dim * scale, "%s scores block %d dim %d rows %d: %g",
                              name, block, dim, rows, score_error);
                    if (compare_to_avx2) {
                        avx2->scores(scores_ref, q, rows, keys_ref, block, dim, scale);
                        CHECK_MSG(memcmp(scores_ref, scores_simd, (size_t)rows * block * sizeof *scores_ref) == 0,
                                  "%s scores block %d dim %d rows %d differ from avx2", name, block, dim, rows);
                    }

                    /* Weights as the softmax leaves them, in [0, 1]; values
                     * in [-2, 2]; accumulators start in [-1, 1]. */
                    for (int i = 0; i < rows * block; i++)
                        scores_ref[i] = 0.5f + 0.5f * random_float();
                    for (int r = 0; r < rows; r++)
                        for (int d = 0; d < dim; d++)
                            acc_ref[r][d] = acc_simd[r][d] = random_float();
                    ref->accumulate(acc_ref_rows, correction, scores_ref, rows, keys_ref, block, dim);
                    simd->accumulate(acc_simd_rows, correction, scores_ref, rows, keys_ref, block, dim);
                    double acc_error = 0.0;
                    for (int r = 0; r < rows; r++)
                        acc_error = fmax(acc_error, max_difference(acc_ref[r], acc_simd[r], (size_t)dim));
                    CHECK_MSG(acc_error <= 1e-6 * (1.0 + 2.0 * block), "%s accumulate block %d dim %d rows %d: %g",
                              name, block, dim, rows, acc_error);
                    if (compare_to_avx2) {
                        for (int r = 0; r < rows; r++)
                            for (int d = 0; d < dim; d++)
                                acc_ref[r][d] = 0.25f * (float)(r - d);
                        memcpy(acc_simd, acc_ref, sizeof acc_ref);
                        avx2->accumulate(acc_ref_rows, correction, scores_ref, rows, keys_ref, block, dim);
                        simd->accumulate(acc_simd_rows, correction, scores_ref, rows, keys_ref, block, dim);
                        CHECK_MSG(memcmp(acc_ref, acc_simd, sizeof acc_ref) == 0,
                                  "%s accumulate block %d dim %d rows %d differs from avx2", name, block, dim, rows);
                    }
                }
            }

            float s[MAX_BLOCK], p[MAX_BLOCK], p_ref[MAX_BLOCK], p_avx2[MAX_BLOCK];
            double worst_ulps = 0.0;
            for (int round = 0; round < 2000; round++) {
                for (int j = 0; j < block; j++)
                    s[j] = round == 0 && j < 4 ? (const float[]){0.0f, -INFINITY, -87.0f, -1e-7f}[j]
                                               : 55.0f * (random_float() - 1.0f);
                float max = round % 2 ? 3.25f : 0.0f;
                for (int j = 0; j < block; j++)
                    s[j] += max;
                CHECK(simd->max(s, block) == ref->max(s, block));
                memcpy(p, s, sizeof s);
                memcpy(p_ref, s, sizeof s);
                memcpy(p_avx2, s, sizeof s);
                float sum = simd->exp_sum(p, block, max), sum_ref = ref->exp_sum(p_ref, block, max);
                float sum_avx2 = avx2->exp_sum(p_avx2, block, max);
                CHECK_MSG(sum == sum_avx2 && memcmp(p, p_avx2, sizeof p) == 0, "%s exp_sum differs from avx2", name);
                double sum_exact = 0.0;
                for (int j = 0; j < block; j++) {
                    double exact = exp((double)s[j] - max); /* s[j] - max is exact here */
                    sum_exact += exact;
                    if (exact >= 1.7e-38)
                        worst_ulps = fmax(worst_ulps, ulps(p[j], exact));
                    else
                        CHECK_MSG(fabs(p[j] - exact) <= 1.7e-38, "%s exp(%g) = %g", name, s[j] - max, p[j]);
                }
                CHECK_MSG(fabs(sum - sum_exact) <= 1e-6 * sum_exact && fabs(sum_ref - sum_exact) <= 1e-6 * sum_exact,
                          "%s exp_sum %g, scalar %g, exact %g", name, sum, sum_ref, sum_exact);
            }
            CHECK_MSG(worst_ulps <= 2.0, "%s exp: %g ulp", name, worst_ulps);
        }
    }
}

/* The tiled path at every level against the exact softmax (to 1e-5, as the
 * f32 path has always been held), and each SIMD level against the scalar
 * tiled kernel (to 2e-6: outputs are at most 1, and the two differ only in
 * summation order and exp's last bits) and the other SIMD levels (to the
 * bit); the result must not depend on how many threads share the tiles. Small batches too, though ops_attention
 * sends those to the f16 path: the tiles' edges are the risk. */
static void check_tiled_attention(void)
{
    static const struct { int n_tokens, n_heads, n_kv_heads, dim, window, pos0; } shapes[] = {
        {1, 4, 4, 64, 0, 0},      {1, 4, 1, 256, 0, 37},   {17, 4, 4, 64, 0, 7},    {17, 4, 2, 128, 5, 7},
        {17, 8, 2, 256, 0, 0},    {100, 2, 2, 64, 0, 0},   {100, 4, 2, 128, 40, 3}, {100, 4, 1, 256, 512, 0},
        {100, 8, 2, 64, 33, 300}, {70, 4, 1, 256, 0, 450}, {64, 2, 1, 80, 17, 0},   {33, 2, 1, 512, 0, 20},
        {130, 32, 8, 128, 0, 0},  {40, 128, 1, 64, 9, 0},  {20, 2, 1, 320, 0, 3},
    };
    threadpool *pool = NULL;
    hearth_error err;
    CHECK_MSG(threadpool_create(3, &pool, &err) == HEARTH_OK, "threadpool_create");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        attention_case c = attention_case_make(shapes[i].n_tokens, shapes[i].n_heads, shapes[i].n_kv_heads,
                                               shapes[i].dim, shapes[i].window, shapes[i].pos0);
        if (i % 2 == 1) /* every other shape with attention sinks */
            c.args.sinks = test_sinks;
        size_t n_out = (size_t)c.args.n_tokens * c.args.out_stride;
        float *scalar_out = malloc(n_out * sizeof *scalar_out), *avx2_out = malloc(n_out * sizeof *avx2_out);
        for (int level = CPU_LEVEL_SCALAR; level <= (int)cpu_hardware_level(); level++) {
            ops_attention_tiled_at_level(NULL, &c.args, (cpu_level)level);
            double error = attention_error(&c.args);
            CHECK_MSG(error < 1e-5, "tiled attention (%s) tokens %d heads %d/%d dim %d window %d from %d: error %g",
                      cpu_level_name((cpu_level)level), shapes[i].n_tokens, shapes[i].n_heads, shapes[i].n_kv_heads,
                      shapes[i].dim, shapes[i].window, shapes[i].pos0, error);
            if (level == CPU_LEVEL_SCALAR) {
                memcpy(scalar_out, c.out, n_out * sizeof *c.out);
            } else {
                double difference = max_difference(scalar_out, c.out, n_out);
                CHECK_MSG(difference <= 2e-6, "tiled attention (%s) vs scalar, tokens %d heads %d/%d dim %d: %g",
                          cpu_level_name((cpu_level)level), shapes[i].n_tokens, shapes[i].n_heads,
                          shapes[i].n_kv_heads, shapes[i].dim, difference);
                if (level == CPU_LEVEL_AVX2)
                    memcpy(avx2_out, c.out, n_out * sizeof *c.out);
                else
                    CHECK_MSG(memcmp(avx2_out, c.out, n_out * sizeof *c.out) == 0,
                              "tiled attention (%s) differs from avx2, tokens %d heads %d/%d dim %d",
                              cpu_level_name((cpu_level)level), shapes[i].n_tokens, shapes[i].n_heads,
                              shapes[i].n_kv_heads, shapes[i].dim);
            }
            float *one_thread = malloc(n_out * sizeof *one_thread);
            memcpy(one_thread, c.out, n_out * sizeof *c.out);
            ops_attention_tiled_at_level(pool, &c.args, (cpu_level)level);
            CHECK_MSG(memcmp(one_thread, c.out, n_out * sizeof *c.out) == 0,
                      "tiled attention (%s) differs between 1 and 3 threads", cpu_level_name((cpu_level)level));
            free(one_thread);
        }
        free(scalar_out);
        free(avx2_out);
        attention_case_free(&c);
    }
    threadpool_free(pool);
}

/* ops_attention_many: problems of one batch's sequences (decode steps, a
 * short chunk, a tiled prefill chunk, a sliding window), each with the
 * output ops_attention gives it alone, bit for bit, on 3 threads (the items
 * dealt out cross the problems' boundaries). */
static void check_attention_many(void)
{
    static const struct { int n_tokens, window, pos0; } shapes[] = {
        {1, 0, 30}, {5, 0, 0}, {1, 8, 60}, {70, 0, 3}, {1, 0, 0}, {17, 16, 40}, {2, 0, 9},
    };
    enum { N = sizeof shapes / sizeof *shapes };
    threadpool *pool = NULL;
    hearth_error err;
    CHECK_MSG(threadpool_create(3, &pool, &err) == HEARTH_OK, "threadpool_create");
    attention_case c[N];
    ops_attention_args args[N];
    float *alone[N];
    for (int i = 0; i < N; i++) {
        c[i] = attention_case_make(shapes[i].n_tokens, 8, 2, 64, shapes[i].window, shapes[i].pos0);
        size_t n_out = (size_t)c[i].args.n_tokens * c[i].args.out_stride;
        ops_attention(pool, &c[i].args);
        alone[i] = malloc(n_out * sizeof(float));
        memcpy(alone[i], c[i].out, n_out * sizeof(float));
        memset(c[i].out, 0xff, n_out * sizeof(float)); /* NaN: every row must be written again */
        args[i] = c[i].args;
    }
    ops_attention_many(pool, args, N);
    for (int i = 0; i < N; i++) {
        size_t n_out = (size_t)c[i].args.n_tokens * c[i].args.out_stride;
        CHECK_MSG(memcmp(alone[i], c[i].out, n_out * sizeof(float)) == 0,
                  "ops_attention_many: problem %d (%d tokens from %d) differs from ops_attention", i,
                  shapes[i].n_tokens, shapes[i].pos0);
        free(alone[i]);
        attention_case_free(&c[i]);
    }
    threadpool_free(pool);
}

int main(void)
{
    fill_test_sinks();
    check_rmsnorm();
    check_rmsnorm_rows();
    check_rope();
    check_rope_yarn();
    check_geglu();
    check_elementwise_levels();
    check_swiglu_levels();
    check_parallel_rows();
    check_row_kernels();
    check_attention(1, 4, 1, 64, 0);
    check_attention(1, 4, 4, 32, 3);
    check_attention(17, 8, 2, 64, 0);
    check_attention(17, 4, 1, 16, 5);
    check_attention(70, 4, 2, 32, 0);
    check_attention(70, 8, 1, 64, 16);
    check_attention(128, 2, 2, 8, 1);
    check_tile_kernels();
    check_tiled_attention();
    check_attention_many();
    return test_finish("test_ops");
}

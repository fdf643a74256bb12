/* The Gated DeltaNet kernels (src/ops/deltanet.c):
 * - the recurrent form against the delta rule computed in double, token by
 *   token, straight from its definition;
 * - the chunked form (prefill) against the recurrent form (decode) on the
 *   same inputs: outputs and final states within float rounding, for token
 *   counts inside one chunk, on a chunk's edge and across several chunks,
 *   and with the state carried between calls (a batch split in two gives the
 *   one batch's result);
 * - each kernel level against the scalar reference;
 * - the causal convolution against its definition, and split batches
 *   against one (the convolution state carries the last inputs over).
 * Sizes include odd ones (head 17, 3 tokens) and more value heads than key
 * heads (value head h reads key head h % n_k_heads). */
#include "test.h"

#include "base/threadpool.h"
#include "ops/deltanet.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float uniform(float lo, float hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

typedef struct problem {
    int32_t n_tokens, n_k_heads, n_v_heads, head_dim;
    int64_t qkv_stride, gb_stride;
    float *qkv, *g, *beta, *state0;
} problem;

static void l2_normalise(float *x, int32_t n)
{
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum + 1e-6));
    for (int32_t i = 0; i < n; i++)
        x[i] *= scale;
}

/* Inputs shaped like a real layer's: unit q and k, g = log decay in
 * [log 0.55, log 0.995], beta in (0, 1). */
static problem make_problem(int32_t n_tokens, int32_t n_k_heads, int32_t n_v_heads, int32_t head_dim)
{
    problem p = {n_tokens, n_k_heads, n_v_heads, head_dim, 0, n_v_heads + 3, NULL, NULL, NULL, NULL};
    p.qkv_stride = (int64_t)(2 * n_k_heads + n_v_heads) * head_dim + 5;
    p.qkv = malloc((size_t)n_tokens * p.qkv_stride * sizeof(float));
    p.g = malloc((size_t)n_tokens * p.gb_stride * sizeof(float));
    p.beta = malloc((size_t)n_tokens * p.gb_stride * sizeof(float));
    p.state0 = malloc((size_t)n_v_heads * head_dim * head_dim * sizeof(float));
    for (int64_t i = 0; i < n_tokens * p.qkv_stride; i++)
        p.qkv[i] = uniform(-1.0f, 1.0f);
    for (int32_t t = 0; t < n_tokens; t++)
        for (int32_t h = 0; h < 2 * n_k_heads; h++)
            l2_normalise(p.qkv + t * p.qkv_stride + (int64_t)h * head_dim, head_dim);
    for (int64_t i = 0; i < n_tokens * p.gb_stride; i++) {
        p.g[i] = logf(uniform(0.55f, 0.995f));
        p.beta[i] = uniform(0.05f, 0.95f);
    }
    for (int64_t i = 0; i < (int64_t)n_v_heads * head_dim * head_dim; i++)
        p.state0[i] = uniform(-0.5f, 0.5f);
    return p;
}

static void free_problem(problem *p)
{
    free(p->qkv);
    free(p->g);
    free(p->beta);
    free(p->state0);
}

/* Arguments for tokens [t0, t0 + n) of p, writing to out (stride out_stride). */
static ops_deltanet_args args_for(const problem *p, int32_t t0, int32_t n, float *state, float *out,
                                  int64_t out_stride)
{
    const int64_t kd = (int64_t)p->n_k_heads * p->head_dim;
    const float *base = p->qkv + t0 * p->qkv_stride;
    return (ops_deltanet_args){
        .n_tokens = n, .n_k_heads = p->n_k_heads, .n_v_heads = p->n_v_heads, .head_dim = p->head_dim,
        .q = base, .k = base + kd, .v = base + 2 * kd, .qkv_stride = p->qkv_stride,
        .g = p->g + t0 * p->gb_stride, .beta = p->beta + t0 * p->gb_stride, .gb_stride = p->gb_stride,
        .state = state, .out = out + t0 * out_stride, .out_stride = out_stride,
    };
}

/* The definition, in double. */
static void reference(const problem *p, double *state, double *out, int64_t out_stride)
{
    const int32_t n = p->head_dim;
    const int64_t kd = (int64_t)p->n_k_heads * n;
    double *delta = malloc((size_t)n * sizeof *delta);
    for (int32_t h = 0; h < p->n_v_heads; h++) {
        double *s = state + (int64_t)h * n * n;
        for (int32_t t = 0; t < p->n_tokens; t++) {
            const float *row = p->qkv + t * p->qkv_stride;
            const float *q = row + (int64_t)(h % p->n_k_heads) * n, *k = q + kd, *v = row + 2 * kd + (int64_t)h * n;
            const double decay = exp((double)p->g[t * p->gb_stride + h]), beta = p->beta[t * p->gb_stride + h];
            for (int64_t i = 0; i < (int64_t)n * n; i++)
                s[i] *= decay;
            for (int32_t i = 0; i < n; i++) {
                double sk = 0.0;
                for (int32_t j = 0; j < n; j++)
                    sk += s[(int64_t)i * n + j] * k[j];
                delta[i] = beta * (v[i] - sk);
            }
            for (int32_t i = 0; i < n; i++)
                for (int32_t j = 0; j < n; j++)
                    s[(int64_t)i * n + j] += delta[i] * k[j];
            for (int32_t i = 0; i < n; i++) {
                double o = 0.0;
                for (int32_t j = 0; j < n; j++)
                    o += s[(int64_t)i * n + j] * q[j];
                out[t * out_stride + (int64_t)h * n + i] = o / sqrt((double)n);
            }
        }
    }
    free(delta);
}

typedef enum { RECURRENT, CHUNKED } form;

/* Runs p through `form` at `level`, in calls of at most `split` tokens. */
static void run(threadpool *pool, const problem *p, form f, cpu_level level, int32_t split, float *state,
                float *out, int64_t out_stride)
{
    memcpy(state, p->state0, (size_t)p->n_v_heads * p->head_dim * p->head_dim * sizeof(float));
    void *scratch = malloc(ops_deltanet_chunked_scratch_bytes(p->n_v_heads, p->head_dim));
    for (int32_t t0 = 0; t0 < p->n_tokens; t0 += split) {
        int32_t n = p->n_tokens - t0 < split ? p->n_tokens - t0 : split;
        ops_deltanet_args a = args_for(p, t0, n, state, out, out_stride);
        if (f == RECURRENT)
            ops_deltanet_recurrent_at_level(pool, &a, level);
        else
            ops_deltanet_chunked_at_level(pool, &a, scratch, level);
    }
    free(scratch);
}

/* Largest |a - b| relative to the largest |b|. */
static double rel_diff(const float *a, const float *b, int64_t n)
{
    double worst = 0.0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return worst / scale;
}

static double rel_diff_double(const float *a, const double *b, int64_t n)
{
    double worst = 0.0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return worst / scale;
}

static void check_delta_rule(threadpool *pool, int32_t n_tokens, int32_t n_k_heads, int32_t n_v_heads,
                             int32_t head_dim)
{
    problem p = make_problem(n_tokens, n_k_heads, n_v_heads, head_dim);
    const int64_t out_stride = (int64_t)n_v_heads * head_dim + 7;
    const size_t state_n = (size_t)n_v_heads * head_dim * head_dim, out_n = (size_t)n_tokens * out_stride;
    double *ref_state = malloc(state_n * sizeof *ref_state), *ref_out = calloc(out_n, sizeof *ref_out);
    float *state[4], *out[4];
    for (int i = 0; i < 4; i++) {
        state[i] = malloc(state_n * sizeof(float));
        out[i] = calloc(out_n, sizeof(float));
    }
    for (size_t i = 0; i < state_n; i++)
        ref_state[i] = p.state0[i];
    reference(&p, ref_state, ref_out, out_stride);

    for (cpu_level level = CPU_LEVEL_SCALAR; level <= cpu_best_level(); level++) {
        run(pool, &p, RECURRENT, level, n_tokens, state[0], out[0], out_stride);
        run(pool, &p, CHUNKED, level, n_tokens, state[1], out[1], out_stride);
        /* A batch in two calls: the state (and only it) carries over. */
        run(pool, &p, CHUNKED, level, n_tokens / 2 + 1, state[2], out[2], out_stride);
        double rec_out = rel_diff_double(out[0], ref_out, (int64_t)out_n);
        double rec_state = 0.0;
        for (size_t i = 0; i < state_n; i++)
            rec_state = fmax(rec_state, fabs(state[0][i] - ref_state[i]));
        double ch_out = rel_diff(out[1], out[0], (int64_t)out_n), ch_state = rel_diff(state[1], state[0], state_n);
        double split_out = rel_diff(out[2], out[0], (int64_t)out_n);
        double split_state = rel_diff(state[2], state[0], state_n);
        const char *name = cpu_level_name(level);
        /* Measured at most 7e-7 of the outputs' range (float against double,
         * and chunked against recurrent, over 300 tokens); states' entries
         * stay within a few units, so theirs is absolute (measured 5e-8). */
        CHECK_MSG(rec_out < 4e-6, "%s recurrent, %d tokens, heads %d/%d of %d: output off the reference by %g", name,
                  n_tokens, n_k_heads, n_v_heads, head_dim, rec_out);
        CHECK_MSG(rec_state < 1e-6, "%s recurrent, %d tokens: state off the reference by %g", name, n_tokens,
                  rec_state);
        CHECK_MSG(ch_out < 4e-6 && ch_state < 4e-6,
                  "%s chunked vs recurrent, %d tokens, heads %d/%d of %d: outputs %g, states %g apart", name,
                  n_tokens, n_k_heads, n_v_heads, head_dim, ch_out, ch_state);
        CHECK_MSG(split_out < 4e-6 && split_state < 4e-6, "%s chunked in two calls, %d tokens: %g, %g", name,
                  n_tokens, split_out, split_state);
        if (level == CPU_LEVEL_SCALAR) {
            memcpy(state[3], state[1], state_n * sizeof(float));
            memcpy(out[3], out[1], out_n * sizeof(float));
        } else {
            double lv = rel_diff(out[1], out[3], (int64_t)out_n);
            CHECK_MSG(lv < 4e-6, "%s chunked vs scalar chunked, %d tokens: %g", name, n_tokens, lv);
        }
    }
    for (int i = 0; i < 4; i++) {
        free(state[i]);
        free(out[i]);
    }
    free(ref_state);
    free(ref_out);
    free_problem(&p);
}

static void check_conv(threadpool *pool, int32_t n_tokens, int64_t channels, int32_t kernel)
{
    const int64_t x_stride = channels + 3, out_stride = channels + 1;
    float *x = malloc((size_t)n_tokens * x_stride * sizeof(float));
    float *w = malloc((size_t)channels * kernel * sizeof(float));
    float *state0 = malloc((size_t)(kernel - 1) * channels * sizeof(float));
    float *state = malloc((size_t)(kernel - 1) * channels * sizeof(float));
    float *out = calloc((size_t)n_tokens * out_stride, sizeof(float));
    float *split = calloc((size_t)n_tokens * out_stride, sizeof(float));
    for (int64_t i = 0; i < n_tokens * x_stride; i++)
        x[i] = uniform(-2.0f, 2.0f);
    for (int64_t i = 0; i < channels * kernel; i++)
        w[i] = uniform(-0.6f, 0.6f);
    for (int64_t i = 0; i < (kernel - 1) * channels; i++)
        state0[i] = uniform(-2.0f, 2.0f);

    memcpy(state, state0, (size_t)(kernel - 1) * channels * sizeof(float));
    ops_deltanet_conv(pool, x, x_stride, n_tokens, channels, kernel, w, state, out, out_stride);
    double worst = 0.0;
    for (int32_t t = 0; t < n_tokens; t++)
        for (int64_t c = 0; c < channels; c++) {
            double sum = 0.0;
            for (int32_t j = 0; j < kernel; j++) {
                int32_t r = t + j - (kernel - 1);
                double in = r < 0 ? state0[(int64_t)(t + j) * channels + c] : x[r * x_stride + c];
                sum += in * w[c * kernel + j];
            }
            double want = sum / (1.0 + exp(-sum));
            worst = fmax(worst, fabs(out[t * out_stride + c] - want));
        }
    CHECK_MSG(worst < 2e-6, "conv, %d tokens x %ld channels, kernel %d: off by %g", n_tokens, (long)channels, kernel,
              worst);
    /* the state holds the last kernel - 1 inputs */
    bool state_ok = true;
    for (int32_t r = 0; r < kernel - 1; r++)
        for (int64_t c = 0; c < channels; c++) {
            int32_t src = n_tokens + r - (kernel - 1);
            float want = src < 0 ? state0[(int64_t)(n_tokens + r) * channels + c] : x[src * x_stride + c];
            state_ok &= state[(int64_t)r * channels + c] == want;
        }
    CHECK_MSG(state_ok, "conv, %d tokens: the state is not the last %d inputs", n_tokens, kernel - 1);

    /* one token at a time gives the same bits */
    memcpy(state, state0, (size_t)(kernel - 1) * channels * sizeof(float));
    for (int32_t t = 0; t < n_tokens; t++)
        ops_deltanet_conv(pool, x + t * x_stride, x_stride, 1, channels, kernel, w, state, split + t * out_stride,
                          out_stride);
    CHECK_MSG(memcmp(out, split, (size_t)n_tokens * out_stride * sizeof(float)) == 0,
              "conv, %d tokens: token by token differs from one batch", n_tokens);
    free(x);
    free(w);
    free(state0);
    free(state);
    free(out);
    free(split);
}

int main(void)
{
    threadpool *pool = NULL;
    hearth_error err = {0};
    if (threadpool_create(2, &pool, &err) != HEARTH_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    check_delta_rule(pool, 1, 1, 1, 16);
    check_delta_rule(pool, 3, 1, 2, 17);
    check_delta_rule(pool, 64, 2, 2, 32);
    check_delta_rule(pool, 65, 2, 4, 48);
    check_delta_rule(pool, 200, 2, 4, 64);
    check_delta_rule(pool, 300, 1, 3, 128);
    check_conv(pool, 1, 33, 4);
    check_conv(pool, 2, 100, 4);
    check_conv(pool, 70, 257, 4);
    check_conv(pool, 9, 64, 2);
    threadpool_free(pool);
    printf("test_deltanet: %d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

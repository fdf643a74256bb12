/* Attention over a Q8_0 KV cache (ops_attention with kv_type OPS_KV_Q8_0):
 * its kernels against the scalar ones, and the whole attention against an
 * exact one over the values the cache holds and against the f16 path on the
 * same keys and values. */
#include "test.h"

#include "base/cpu.h"
#include "base/fp16.h"
#include "ops/attention.h"
#include "ops/attention_kernels.h"
#include "ops/dot.h"
#include "quant/quant.h"

#include <math.h>
#include <string.h>

static uint32_t rng_state = 12345u;

static float random_float(void) /* in [-1, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static float q8_value(const block_q8_0 *row, int d)
{
    return fp16_to_fp32(row[d / QK8_0].d) * (float)row[d / QK8_0].qs[d % QK8_0];
}

/* Rows of n random values in [-amplitude, amplitude), quantized. */
static void random_q8_rows(block_q8_0 *rows, int n_rows, int n, float amplitude)
{
    float x[2 * 544];
    for (int r = 0; r < n_rows; r++) {
        for (int i = 0; i < n; i++)
            x[i] = amplitude * random_float();
        ops_quantize_activation(QUANT_Q8_0, x, rows + (size_t)r * (n / QK8_0), n);
    }
}

/* The SIMD Q8_0 kernels against the scalar ones: widening is exact and the
 * accumulation one fused multiply-add per value, so all must match to the
 * bit, on every head size that is a multiple of 32 and on ragged key
 * counts. */
static void check_q8_kernels(void)
{
    enum { MAX_DIM = 544, MAX_BLOCK = 32 };
    static block_q8_0 rows[MAX_BLOCK * 2 * MAX_DIM / QK8_0];
    static float ref_out[MAX_BLOCK * MAX_DIM], simd_out[MAX_BLOCK * MAX_DIM];
    const attention_row_kernels *ref = ops_attention_kernels_at_level(CPU_LEVEL_SCALAR);
    const attention_tile_kernels *ref_tile = ops_attention_tile_kernels_at_level(CPU_LEVEL_SCALAR);
    const int dims[] = {32, 64, 96, 256, 512, 544};
    const int key_counts[] = {1, 5, 16, 17, 32};
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        const attention_row_kernels *simd = ops_attention_kernels_at_level((cpu_level)level);
        const attention_tile_kernels *simd_tile = ops_attention_tile_kernels_at_level((cpu_level)level);
        const char *name = cpu_level_name((cpu_level)level);
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
            int dim = dims[di];
            /* Rows two heads wide, read at the second head: strides and
             * offsets of whole blocks, as in a cache. */
            int64_t stride = 2 * dim / QK8_0;
            random_q8_rows(rows, MAX_BLOCK, 2 * dim, 3.0f);
            const block_q8_0 *head = rows + dim / QK8_0;

            for (int i = 0; i < dim; i++)
                ref_out[i] = simd_out[i] = random_float();
            ref->accumulate_q8(ref_out, head, 0.37f, dim);
            simd->accumulate_q8(simd_out, head, 0.37f, dim);
            ref->accumulate_q8(ref_out, head + stride, -1.3f, dim);
            simd->accumulate_q8(simd_out, head + stride, -1.3f, dim);
            CHECK_MSG(memcmp(ref_out, simd_out, (size_t)dim * sizeof *ref_out) == 0,
                      "%s accumulate_q8 dim %d differs from the scalar kernel", name, dim);

            if (dim > 512)
                continue; /* the tiled path's widest head */
            for (size_t ki = 0; ki < sizeof key_counts / sizeof *key_counts; ki++) {
                int n_keys = key_counts[ki];
                for (int block = 16; block <= MAX_BLOCK; block += 16) {
                    if (n_keys > block || block * dim > 8192)
                        continue;
                    size_t floats = (size_t)block * dim;
                    memset(ref_out, 0x7f, floats * sizeof *ref_out);
                    memset(simd_out, 0x7f, floats * sizeof *simd_out);
                    ref_tile->widen_keys_q8(ref_out, head, stride, n_keys, block, dim);
                    simd_tile->widen_keys_q8(simd_out, head, stride, n_keys, block, dim);
                    float last = q8_value(head + (n_keys - 1) * stride, dim - 1);
                    bool exact = ref_out[(dim - 1) * block + n_keys - 1] == last;
                    CHECK_MSG(exact && memcmp(ref_out, simd_out, floats * sizeof *ref_out) == 0,
                              "%s widen_keys_q8 dim %d keys %d block %d", name, dim, n_keys, block);
                    ref_tile->widen_values_q8(ref_out, head, stride, n_keys, block, dim);
                    simd_tile->widen_values_q8(simd_out, head, stride, n_keys, block, dim);
                    exact = ref_out[(n_keys - 1) * dim + dim - 1] == last;
                    CHECK_MSG(exact && memcmp(ref_out, simd_out, floats * sizeof *ref_out) == 0,
                              "%s widen_values_q8 dim %d keys %d block %d", name, dim, n_keys, block);
                }
            }
        }
    }
}

/* One problem: n_tokens queries at positions pos0.., over keys and values
 * 0..pos0 + n_tokens - 1 that exist in f32, f16 and Q8_0. */
typedef struct q8_case {
    ops_attention_args args;
    int n_pos, kv_dim, q_dim;
    float *q, *out, *k32, *v32;
    uint16_t *k16, *v16;
    block_q8_0 *kq, *vq;
    int32_t *positions;
} q8_case;

static float test_sinks[64];

static q8_case q8_case_make(int n_tokens, int n_heads, int n_kv_heads, int dim, int window, int pos0, bool sinks)
{
    q8_case c = {.n_pos = pos0 + n_tokens, .kv_dim = n_kv_heads * dim, .q_dim = n_heads * dim};
    size_t kv = (size_t)c.n_pos * c.kv_dim;
    c.q = malloc((size_t)n_tokens * c.q_dim * sizeof *c.q);
    c.out = malloc((size_t)n_tokens * c.q_dim * sizeof *c.out);
    c.k32 = malloc(kv * sizeof *c.k32);
    c.v32 = malloc(kv * sizeof *c.v32);
    c.k16 = malloc(kv * sizeof *c.k16);
    c.v16 = malloc(kv * sizeof *c.v16);
    c.kq = malloc(kv / QK8_0 * sizeof *c.kq);
    c.vq = malloc(kv / QK8_0 * sizeof *c.vq);
    c.positions = malloc((size_t)n_tokens * sizeof *c.positions);
    /* Scores of a few units, as trained models have them. */
    for (size_t i = 0; i < kv; i++) {
        c.k32[i] = 2.0f * random_float(), c.v32[i] = random_float();
        c.k16[i] = fp32_to_fp16(c.k32[i]), c.v16[i] = fp32_to_fp16(c.v32[i]);
    }
    ops_quantize_activation(QUANT_Q8_0, c.k32, c.kq, (int64_t)kv);
    ops_quantize_activation(QUANT_Q8_0, c.v32, c.vq, (int64_t)kv);
    for (int i = 0; i < n_tokens * c.q_dim; i++)
        c.q[i] = 2.0f * random_float();
    for (int t = 0; t < n_tokens; t++)
        c.positions[t] = pos0 + t;
    c.args = (ops_attention_args){
        .q = c.q, .q_stride = c.q_dim, .k_stride = c.kv_dim, .v_stride = c.kv_dim, .positions = c.positions,
        .n_tokens = n_tokens, .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim_k = dim, .head_dim_v = dim,
        .window = window, .scale = 1.0f / sqrtf((float)dim), .sinks = sinks ? test_sinks : NULL, .out = c.out,
        .out_stride = c.q_dim,
    };
    return c;
}

static void q8_case_free(q8_case *c)
{
    free(c->q), free(c->out), free(c->k32), free(c->v32), free(c->k16), free(c->v16), free(c->kq), free(c->vq);
    free(c->positions);
}

static void use_q8(q8_case *c)
{
    c->args.kv_type = OPS_KV_Q8_0, c->args.k_q8 = c->kq, c->args.v_q8 = c->vq, c->args.k = c->args.v = NULL;
}

static void use_f16(q8_case *c)
{
    c->args.kv_type = OPS_KV_F16, c->args.k = c->k16, c->args.v = c->v16, c->args.k_q8 = c->args.v_q8 = NULL;
}

/* The largest |out - exact|, exact being a two-pass softmax in double over
 * the values the Q8_0 cache holds, with the f32 query. */
static double q8_error(const q8_case *c)
{
    const ops_attention_args *a = &c->args;
    int group = a->n_heads / a->n_kv_heads;
    double *scores = malloc((size_t)c->n_pos * sizeof *scores), worst = 0.0;
    for (int t = 0; t < a->n_tokens; t++) {
        for (int h = 0; h < a->n_heads; h++) {
            const float *q = a->q + t * a->q_stride + h * a->head_dim_k;
            int kvh = h / group, p = a->positions[t];
            int first = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            double max = -INFINITY, sum = 0.0;
            for (int j = first; j <= p; j++) {
                const block_q8_0 *k = c->kq + ((size_t)j * c->kv_dim + (size_t)kvh * a->head_dim_k) / QK8_0;
                double s = 0.0;
                for (int d = 0; d < a->head_dim_k; d++)
                    s += (double)q[d] * q8_value(k, d);
                max = fmax(max, scores[j] = s * a->scale);
            }
            for (int j = first; j <= p; j++)
                sum += scores[j] = exp(scores[j] - max);
            if (a->sinks)
                sum += exp(a->sinks[h] - max);
            for (int d = 0; d < a->head_dim_v; d++) {
                double o = 0.0;
                for (int j = first; j <= p; j++) {
                    const block_q8_0 *v = c->vq + ((size_t)j * c->kv_dim + (size_t)kvh * a->head_dim_v) / QK8_0;
                    o += scores[j] / sum * q8_value(v, d);
                }
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

/* Each case at every level, on both paths where the tiled one fits:
 *  - against the exact attention over the cached Q8_0 values: 1e-5 where
 *    the query stays f32 (the tiled path); 2e-2 on the row path, whose
 *    query is rounded to Q8_0 (up to half a step of amax/127 per element,
 *    which moves scores of a few units by ~1e-2);
 *  - against the f16 cache on the same data: 3e-2 (values in [-1, 1]; the
 *    quantization of keys, values and query, averaged by the softmax);
 *  - SIMD levels against the scalar one: 1e-5 (the same integer dots and
 *    exact widening; sums in another order);
 *  - 1 and 3 threads: the same bits. */
static void check_q8_attention(void)
{
    static const struct {
        int n_tokens, n_heads, n_kv_heads, dim, window, pos0;
    } shapes[] = {
        {1, 4, 1, 64, 0, 40},   {1, 8, 2, 256, 0, 90}, {1, 4, 4, 32, 3, 10},  {17, 8, 2, 64, 0, 5},
        {17, 4, 1, 96, 5, 20},  {70, 4, 2, 32, 0, 0},  {70, 8, 1, 64, 16, 9}, {128, 2, 2, 256, 0, 33},
        {65, 2, 1, 544, 0, 3},  {64, 4, 1, 512, 40, 70},
    };
    threadpool *pool = NULL;
    hearth_error err;
    CHECK_MSG(threadpool_create(3, &pool, &err) == HEARTH_OK, "threadpool_create");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        q8_case c = q8_case_make(shapes[i].n_tokens, shapes[i].n_heads, shapes[i].n_kv_heads, shapes[i].dim,
                                 shapes[i].window, shapes[i].pos0, i % 2 == 1);
        size_t n_out = (size_t)shapes[i].n_tokens * c.q_dim;
        float *scalar = malloc(n_out * sizeof *scalar), *f16 = malloc(n_out * sizeof *f16);
        for (int level = CPU_LEVEL_SCALAR; level <= (int)cpu_hardware_level(); level++) {
            const char *name = cpu_level_name((cpu_level)level);
            use_f16(&c);
            ops_attention_at_level(NULL, &c.args, (cpu_level)level);
            memcpy(f16, c.out, n_out * sizeof *f16);
            use_q8(&c);
            for (int tiled = 0; tiled < 2; tiled++) {
                if (tiled && (c.args.head_dim_k > 512))
                    continue;
                if (tiled)
                    ops_attention_tiled_at_level(NULL, &c.args, (cpu_level)level);
                else
                    ops_attention_at_level(NULL, &c.args, (cpu_level)level);
                bool f32_query = tiled || ops_attention_tiled_fits(&c.args);
                double error = q8_error(&c), limit = f32_query ? 1e-5 : 2e-2;
                CHECK_MSG(error < limit, "q8_0 attention (%s%s) tokens %d heads %d/%d dim %d window %d: error %g",
                          name, tiled ? ", tiled" : "", shapes[i].n_tokens, shapes[i].n_heads,
                          shapes[i].n_kv_heads, shapes[i].dim, shapes[i].window, error);
                if (!tiled) {
                    double vs_f16 = max_difference(c.out, f16, n_out);
                    CHECK_MSG(vs_f16 < 3e-2, "q8_0 vs f16 attention (%s) tokens %d dim %d: %g", name,
                              shapes[i].n_tokens, shapes[i].dim, vs_f16);
                    if (level == CPU_LEVEL_SCALAR) {
                        memcpy(scalar, c.out, n_out * sizeof *scalar);
                    } else {
                        double vs_scalar = max_difference(c.out, scalar, n_out);
                        CHECK_MSG(vs_scalar < 1e-5, "q8_0 attention (%s) vs scalar, tokens %d dim %d: %g", name,
                                  shapes[i].n_tokens, shapes[i].dim, vs_scalar);
                    }
                    memcpy(f16, c.out, n_out * sizeof *f16); /* now the one-thread result */
                    ops_attention_at_level(pool, &c.args, (cpu_level)level);
                    CHECK_MSG(memcmp(c.out, f16, n_out * sizeof *f16) == 0,
                              "q8_0 attention (%s) differs between 1 and 3 threads, tokens %d dim %d", name,
                              shapes[i].n_tokens, shapes[i].dim);
                }
            }
        }
        free(scalar), free(f16);
        q8_case_free(&c);
    }
    threadpool_free(pool);
}

int main(void)
{
    static const float cycle[8] = {-3.0f, 0.5f, 6.0f, 1.5f, 12.0f, -0.25f, 2.5f, 4.0f};
    for (int h = 0; h < 64; h++)
        test_sinks[h] = cycle[h % 8];
    check_q8_kernels();
    check_q8_attention();
    return test_finish("test_attention_q8");
}

/* The mixture-of-experts layer (ops/moe.c) against two references.
 *
 * Routing: each gating (softmax, sigmoid, softmax over the top k), with and
 * without normalisation and scale, against a plain sort in double.
 *
 * The forward pass: a batch of tokens against the same tokens one at a time,
 * each chosen expert's products run as ordinary one-token matrix products
 * (ops_matmul) and combined here. Grouping tokens by expert must not change a
 * token's result: packed experts give the same bits (their kernels are batch
 * invariant), plain ones the same up to the summation order of the row
 * kernels. Then against a double-precision evaluation with the dequantized
 * weights, which catches a wrong activation, bias, scale or weight that both
 * engine paths would share; it differs only by the int8 rounding of the
 * activations (measured up to 6 % of the output's rms at one element; a
 * wrong part moves elements by the whole rms). An expert no token chooses has no weights at all (NULL data):
 * reading it would crash. */
#include "test.h"

#include "base/fp16.h"
#include "ops/moe.h"
#include "ops/ops.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { N_EXPERTS = 8, N_USED = 3, DEAD_EXPERT = 5, N_EMBD = 256, MAX_TOKENS = 40 };

/* ---- routing ---- */

static void reference_route(const ops_moe *moe, const float *logits, int32_t *ids, float *weights)
{
    const int n = moe->n_experts, k = moe->n_used;
    double probs[64], max = -INFINITY, sum = 0;
    for (int e = 0; e < n; e++)
        max = fmax(max, logits[e]);
    for (int e = 0; e < n; e++) {
        probs[e] = moe->gating == OPS_MOE_SOFTMAX   ? exp(logits[e] - max)
                   : moe->gating == OPS_MOE_SIGMOID ? 1.0 / (1.0 + exp(-logits[e]))
                                                    : logits[e];
        sum += probs[e];
    }
    if (moe->gating == OPS_MOE_SOFTMAX)
        for (int e = 0; e < n; e++)
            probs[e] /= sum;
    bool taken[64] = {0};
    double w[64], total = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++)
            if (!taken[e] && (best < 0 || probs[e] > probs[best]))
                best = e;
        taken[best] = true;
        ids[j] = best;
        w[j] = probs[best];
    }
    if (moe->gating == OPS_MOE_SOFTMAX_WEIGHT) {
        double s = 0, top = w[0];
        for (int j = 0; j < k; j++)
            s += exp(w[j] - top);
        for (int j = 0; j < k; j++)
            w[j] = exp(w[j] - top) / s;
    }
    for (int j = 0; j < k; j++)
        total += w[j];
    for (int j = 0; j < k; j++) {
        double v = moe->normalize ? w[j] / total : w[j];
        weights[j] = (float)(moe->scale != 0.0f ? v * moe->scale : v);
    }
}

static void check_routing(void)
{
    enum { N = 32, K = 4, TOKENS = 50 };
    const ops_moe_gating gatings[] = {OPS_MOE_SOFTMAX, OPS_MOE_SIGMOID, OPS_MOE_SOFTMAX_WEIGHT};
    int bad_ids = 0, bad_weights = 0, cases = 0;
    for (int g = 0; g < 3; g++) {
        for (int variant = 0; variant < 4; variant++) {
            ops_moe moe = {.n_experts = N, .n_used = K, .gating = gatings[g], .normalize = variant & 1,
                           .scale = variant & 2 ? 2.5f : 0.0f};
            float logits[TOKENS * N], weights[TOKENS * K], want_w[K];
            int32_t ids[TOKENS * K], want_ids[K];
            for (int i = 0; i < TOKENS * N; i++)
                logits[i] = 3.0f * test_rng_uniform();
            ops_moe_route(&moe, logits, N, TOKENS, ids, weights);
            for (int t = 0; t < TOKENS; t++, cases++) {
                reference_route(&moe, logits + t * N, want_ids, want_w);
                bad_ids += memcmp(want_ids, ids + t * K, sizeof want_ids) != 0;
                for (int j = 0; j < K; j++)
                    bad_weights += fabsf(weights[t * K + j] - want_w[j]) > 1e-6f * fmaxf(1.0f, fabsf(want_w[j]));
            }
        }
    }
    CHECK_MSG(bad_ids == 0, "routing: %d of %d tokens chose other experts", bad_ids, cases);
    CHECK_MSG(bad_weights == 0, "routing: %d weights differ from the reference", bad_weights);
}

/* ---- the forward pass ---- */

typedef struct expert_tensor {
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
    unsigned char *blocks;   /* N_EXPERTS * rows rows */
    float *dequantized;      /* the same, as f32 */
    void *packed[N_EXPERTS]; /* NULL where not packed */
    ops_matrix experts[N_EXPERTS];
} expert_tensor;

static void make_tensor(expert_tensor *t, uint32_t type, int64_t rows, int64_t cols, bool pack)
{
    const quant_traits *q = quant_get_traits(type);
    int64_t n = N_EXPERTS * rows * cols;
    *t = (expert_tensor){.type = type, .rows = rows, .cols = cols};
    t->row_bytes = (size_t)(cols / q->block_size) * q->type_size;
    t->blocks = malloc(t->row_bytes * (size_t)(N_EXPERTS * rows));
    t->dequantized = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        t->dequantized[i] = 0.05f * test_rng_uniform();
    for (int64_t r = 0; r < N_EXPERTS * rows; r++)
        q->quantize(t->dequantized + r * cols, t->blocks + (size_t)r * t->row_bytes, cols);
    for (int64_t r = 0; r < N_EXPERTS * rows; r++)
        q->dequantize(t->blocks + (size_t)r * t->row_bytes, t->dequantized + r * cols, cols);
    ops_matrix whole = {.data = t->blocks, .type = type, .cols = cols, .rows = N_EXPERTS * rows,
                        .row_bytes = t->row_bytes};
    ops_moe_split_experts(&whole, N_EXPERTS, t->experts);
    for (int e = 0; e < N_EXPERTS; e++) {
        if (pack && ops_packed_supported(type)) {
            int64_t panels = (rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS;
            t->packed[e] = malloc(ops_packed_bytes(type, rows, cols));
            ops_pack_panels(type, t->experts[e].data, t->row_bytes, rows, cols, 0, panels, t->packed[e]);
            t->experts[e].packed = t->packed[e];
        }
    }
    /* Never chosen: reading it would crash. */
    t->experts[DEAD_EXPERT].data = NULL;
    t->experts[DEAD_EXPERT].packed = NULL;
}

static void free_tensor(expert_tensor *t)
{
    for (int e = 0; e < N_EXPERTS; e++)
        free(t->packed[e]);
    free(t->blocks);
    free(t->dequantized);
}

static void random_vector(float *v, int64_t n, float center, float spread)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = center + spread * test_rng_uniform();
}

typedef struct moe_case {
    uint32_t type;
    bool pack, merged, biases, scales;
    ops_moe_activation activation;
    int n_tokens;
} moe_case;

static void activate(ops_moe_activation act, float *gate, const float *up, int64_t n)
{
    if (act == OPS_MOE_SWIGLU) {
        ops_swiglu(gate, up, n);
    } else if (act == OPS_MOE_GEGLU) {
        ops_geglu(gate, up, n);
    } else {
        for (int64_t i = 0; i < n; i++) {
            float g = fminf(gate[i], 7.0f), u = fminf(fmaxf(up[i], -7.0f), 7.0f);
            gate[i] = g / (1.0f + expf(1.702f * -g)) * (u + 1.0f);
        }
    }
}

static double activate_exact(ops_moe_activation act, double g, double u)
{
    if (act == OPS_MOE_SWIGLU)
        return g / (1.0 + exp(-g)) * u;
    if (act == OPS_MOE_GEGLU)
        return 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
    g = fmin(g, 7.0), u = fmin(fmax(u, -7.0), 7.0);
    return g / (1.0 + exp(-1.702 * g)) * (u + 1.0);
}

static void check_forward(threadpool *pool, const moe_case *c)
{
    const int64_t ff = quant_get_traits(c->type)->block_size == 256 ? 256 : 96, d = N_EMBD;
    const int n = c->n_tokens;
    expert_tensor gate, up, gate_up, down;
    if (c->merged) {
        make_tensor(&gate_up, c->type, 2 * ff, d, c->pack);
    } else {
        make_tensor(&gate, c->type, ff, d, c->pack);
        make_tensor(&up, c->type, ff, d, c->pack);
    }
    make_tensor(&down, c->type, d, ff, c->pack);
    float gate_bias[N_EXPERTS * 256], up_bias[N_EXPERTS * 256], down_bias[N_EXPERTS * N_EMBD];
    float gate_scale[N_EXPERTS], up_scale[N_EXPERTS], down_scale[N_EXPERTS];
    random_vector(gate_bias, N_EXPERTS * ff, 0, 0.5f);
    random_vector(up_bias, N_EXPERTS * ff, 0, 0.5f);
    random_vector(down_bias, N_EXPERTS * d, 0, 0.5f);
    random_vector(gate_scale, N_EXPERTS, 1.5f, 0.5f);
    random_vector(up_scale, N_EXPERTS, 1.5f, 0.5f);
    random_vector(down_scale, N_EXPERTS, 1.5f, 0.5f);
    ops_moe moe = {
        .n_experts = N_EXPERTS, .n_used = N_USED, .n_embd = d, .n_ff = ff, .gating = OPS_MOE_SOFTMAX,
        .normalize = true, .activation = c->activation,
        .gate = c->merged ? NULL : gate.experts, .up = c->merged ? NULL : up.experts,
        .gate_up = c->merged ? gate_up.experts : NULL, .down = down.experts,
        .gate_bias = c->biases ? gate_bias : NULL, .up_bias = c->biases ? up_bias : NULL,
        .down_bias = c->biases ? down_bias : NULL, .gate_scale = c->scales ? gate_scale : NULL,
        .up_scale = c->scales ? up_scale : NULL, .down_scale = c->scales ? down_scale : NULL,
    };
    float *x = malloc(sizeof(float) * (size_t)(n * d)), *y = malloc(sizeof(float) * (size_t)(n * d));
    float logits[MAX_TOKENS * N_EXPERTS];
    random_vector(x, n * d, 0, 1.0f);
    for (int i = 0; i < n * N_EXPERTS; i++)
        logits[i] = i % N_EXPERTS == DEAD_EXPERT ? -1e30f : 2.0f * test_rng_uniform();
    void *scratch = malloc(ops_moe_scratch_bytes(&moe, n));
    ops_moe_forward(pool, &moe, logits, N_EXPERTS, x, d, n, y, d, scratch);

    /* The references, token by token. */
    int32_t ids[N_USED];
    float weights[N_USED], g[512], u[512], out[N_EMBD], one[N_EMBD];
    void *mm_scratch = malloc(1 << 16);
    double max_same = 0, max_exact = 0, sum_sq = 0;
    for (int t = 0; t < n; t++) {
        const float *xt = x + t * d;
        double exact[N_EMBD] = {0};
        ops_moe_route(&moe, logits + t * N_EXPERTS, N_EXPERTS, 1, ids, weights);
        for (int j = 0; j < N_USED; j++) {
            int e = ids[j];
            CHECK(e != DEAD_EXPERT);
            if (c->merged) {
                float gu[512];
                ops_matmul(pool, &gate_up.experts[e], xt, d, 1, gu, 2 * ff, mm_scratch);
                memcpy(g, gu, sizeof(float) * (size_t)ff);
                memcpy(u, gu + ff, sizeof(float) * (size_t)ff);
            } else {
                ops_matmul(pool, &gate.experts[e], xt, d, 1, g, ff, mm_scratch);
                ops_matmul(pool, &up.experts[e], xt, d, 1, u, ff, mm_scratch);
            }
            for (int64_t i = 0; i < ff; i++) {
                if (c->scales)
                    u[i] *= up_scale[e], g[i] *= gate_scale[e];
                if (c->biases)
                    u[i] += up_bias[e * ff + i], g[i] += gate_bias[e * ff + i];
            }
            activate(c->activation, g, u, ff);
            ops_matmul(pool, &down.experts[e], g, ff, 1, out, d, mm_scratch);
            for (int64_t i = 0; i < d; i++) {
                float v = out[i];
                if (c->scales)
                    v *= down_scale[e];
                if (c->biases)
                    v += down_bias[e * d + i];
                v *= weights[j];
                one[i] = j == 0 ? v : one[i] + v;
            }
            /* In double, from the dequantized weights. */
            const float *wg = c->merged ? gate_up.dequantized + (size_t)e * 2 * ff * d : gate.dequantized + (size_t)e * ff * d;
            const float *wu = c->merged ? wg + ff * d : up.dequantized + (size_t)e * ff * d;
            double h[512];
            for (int64_t r = 0; r < ff; r++) {
                double sg = 0, su = 0;
                for (int64_t k = 0; k < d; k++)
                    sg += (double)wg[r * d + k] * xt[k], su += (double)wu[r * d + k] * xt[k];
                if (c->scales)
                    sg *= gate_scale[e], su *= up_scale[e];
                if (c->biases)
                    sg += gate_bias[e * ff + r], su += up_bias[e * ff + r];
                h[r] = activate_exact(c->activation, sg, su);
            }
            const float *wd = down.dequantized + (size_t)e * d * ff;
            for (int64_t r = 0; r < d; r++) {
                double s = 0;
                for (int64_t k = 0; k < ff; k++)
                    s += (double)wd[r * ff + k] * h[k];
                if (c->scales)
                    s *= down_scale[e];
                if (c->biases)
                    s += down_bias[e * d + r];
                exact[r] += s * weights[j];
            }
        }
        for (int64_t i = 0; i < d; i++) {
            max_same = fmax(max_same, fabs((double)y[t * d + i] - one[i]));
            max_exact = fmax(max_exact, fabs((double)y[t * d + i] - exact[i]));
            sum_sq += exact[i] * exact[i];
        }
    }
    double rms = sqrt(sum_sq / (double)(n * d));
    const char *act_name = c->activation == OPS_MOE_SWIGLU ? "swiglu" : c->activation == OPS_MOE_GEGLU ? "geglu" : "swiglu-oai";
    printf("  %-5s %-6s %-6s %-10s %s%s %2d tokens: batch vs one at a time %.3g, vs double %.3g (rms %.3g)\n",
           quant_get_traits(c->type)->name, c->pack && ops_packed_supported(c->type) ? "packed" : "plain",
           c->merged ? "gate_up" : "gate+up", act_name, c->biases ? "biases " : "", c->scales ? "scales" : "",
           n, max_same, max_exact, rms);
    bool bitwise = c->pack && ops_packed_supported(c->type);
    CHECK_MSG(bitwise ? max_same == 0 : max_same <= 1e-5 * rms, "batch differs from one token at a time by %g",
              max_same);
    CHECK_MSG(max_exact <= 0.15 * rms, "off the double-precision reference by %g (rms %g)", max_exact, rms);
    free(x), free(y), free(scratch), free(mm_scratch);
    if (c->merged) {
        free_tensor(&gate_up);
    } else {
        free_tensor(&gate);
        free_tensor(&up);
    }
    free_tensor(&down);
}

/* ops_matmul_tasks directly: tasks of different sizes, one with no tokens
 * (skipped, and not counted when work is dealt out), each against its own
 * ops_matmul. */
static void check_tasks(threadpool *pool)
{
    enum { COLS = 256, ROWS = 40 };
    expert_tensor t;
    make_tensor(&t, QUANT_Q8_0, ROWS, COLS, true);
    const int counts[] = {3, 0, 17, 1};
    float x[17 * COLS], y[4][17 * ROWS], want[17 * ROWS];
    random_vector(x, 17 * COLS, 0, 1.0f);
    size_t row = ops_matmul_act_row_bytes(&t.experts[0]);
    unsigned char *act = malloc(row * 17 * 4);
    void *scratch = malloc(1 << 16);
    ops_matmul_task tasks[4];
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < counts[i]; k++)
            ops_matmul_convert_act(&t.experts[i], x + k * COLS, act + (size_t)(i * 17 + k) * row);
        tasks[i] = (ops_matmul_task){.w = &t.experts[i], .act = act + (size_t)i * 17 * row, .act_stride = row,
                                     .n_tokens = counts[i], .y = y[i], .y_stride = ROWS};
    }
    ops_matmul_tasks(pool, tasks, 4);
    for (int i = 0; i < 4; i++) {
        if (counts[i] == 0)
            continue;
        ops_matmul(pool, &t.experts[i], x, COLS, counts[i], want, ROWS, scratch);
        CHECK_MSG(memcmp(want, y[i], sizeof(float) * (size_t)(counts[i] * ROWS)) == 0,
                  "task %d of %d tokens differs from its own product", i, counts[i]);
    }
    free(act);
    free(scratch);
    free_tensor(&t);
}

int main(void)
{
    threadpool *pool = NULL;
    hearth_error err = {0};
    CHECK(threadpool_create(2, &pool, &err) == HEARTH_OK);
    check_routing();
    check_tasks(pool);
    const moe_case cases[] = {
        {QUANT_Q4_K, true, false, false, false, OPS_MOE_SWIGLU, 40},
        {QUANT_Q4_K, true, false, false, false, OPS_MOE_SWIGLU, 1},
        {QUANT_Q4_K, false, false, false, false, OPS_MOE_SWIGLU, 17},
        {QUANT_Q8_0, true, true, false, true, OPS_MOE_GEGLU, 33},
        {QUANT_Q8_0, false, true, false, true, OPS_MOE_GEGLU, 5},
        {QUANT_Q6_K, true, false, true, false, OPS_MOE_SWIGLU_OAI, 24},
        {QUANT_F16, false, false, true, true, OPS_MOE_SWIGLU_OAI, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_forward(pool, &cases[i]);
    threadpool_free(pool);
    printf("%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

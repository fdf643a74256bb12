/* The mixture-of-experts feed-forward: see moe.h. A batch runs in six steps
 * whatever its size: route every token; convert each (token, expert) pair's
 * input, pairs sorted by expert; all chosen experts' gate and up products;
 * activation and conversion for down; all down products; and the weighted
 * sum per token (the conversions run on the calling thread for decode's few
 * pairs). Arithmetic follows llama.cpp's build_moe_ffn op by op (scale, then
 * bias, then weight; experts summed in their chosen order). */
#include "ops/moe.h"

#include "ops/ops.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* The smallest normal half: llama.cpp clamps the sum of the chosen weights
 * to it before dividing. */
#define MIN_WEIGHT_SUM 6.103515625e-5f

void ops_moe_split_experts(const ops_matrix *whole, int32_t n_experts, ops_matrix *experts)
{
    int64_t rows = whole->rows / n_experts;
    for (int32_t e = 0; e < n_experts; e++) {
        experts[e] = *whole;
        experts[e].rows = rows;
        experts[e].packed = NULL;
        experts[e].data = (const unsigned char *)whole->data + (size_t)e * (size_t)rows * whole->row_bytes;
    }
}

/* ---- routing ---- */

/* softmax as ggml computes it: exponentials summed in double, then every
 * value scaled by the reciprocal. */
static void softmax(const float *x, int32_t n, float *out)
{
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        out[i] = expf(x[i] - max);
        sum += (double)out[i];
    }
    float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++)
        out[i] *= inv;
}

/* The k largest of scores[0..n) in descending order (ties to the lower id). */
static void top_k(const float *scores, int32_t n, int32_t k, int32_t *ids)
{
    for (int32_t j = 0; j < k; j++)
        ids[j] = -1;
    for (int32_t e = 0; e < n; e++) {
        float s = scores[e];
        int32_t j = k;
        while (j > 0 && (ids[j - 1] < 0 || s > scores[ids[j - 1]]))
            j--;
        if (j == k)
            continue;
        memmove(ids + j + 1, ids + j, (size_t)(k - j - 1) * sizeof *ids);
        ids[j] = e;
    }
}

static void route_token(const ops_moe *moe, const float *logits, int32_t *ids, float *weights)
{
    const int32_t n = moe->n_experts, k = moe->n_used;
    float probs[OPS_MOE_MAX_EXPERTS];
    switch (moe->gating) {
    case OPS_MOE_SOFTMAX:
        softmax(logits, n, probs);
        break;
    case OPS_MOE_SIGMOID:
        for (int32_t e = 0; e < n; e++)
            probs[e] = 1.0f / (1.0f + expf(-logits[e]));
        break;
    case OPS_MOE_SOFTMAX_WEIGHT:
        memcpy(probs, logits, (size_t)n * sizeof *probs);
        break;
    }
    top_k(probs, n, k, ids);
    for (int32_t j = 0; j < k; j++)
        weights[j] = probs[ids[j]];
    if (moe->gating == OPS_MOE_SOFTMAX_WEIGHT)
        softmax(weights, k, weights);
    if (moe->normalize) {
        double sum = 0.0;
        for (int32_t j = 0; j < k; j++)
            sum += (double)weights[j];
        float total = (float)sum < MIN_WEIGHT_SUM ? MIN_WEIGHT_SUM : (float)sum;
        for (int32_t j = 0; j < k; j++)
            weights[j] /= total;
    }
    if (moe->scale != 0.0f && moe->scale != 1.0f)
        for (int32_t j = 0; j < k; j++)
            weights[j] *= moe->scale;
}

void ops_moe_route(const ops_moe *moe, const float *logits, int64_t logits_stride, int64_t n_tokens,
                   int32_t *ids, float *weights)
{
    for (int64_t t = 0; t < n_tokens; t++)
        route_token(moe, logits + t * logits_stride, ids + t * moe->n_used, weights + t * moe->n_used);
}

/* ---- scratch ---- */

/* The scratch of a batch of n_tokens, carved in this order. */
typedef struct moe_scratch {
    int32_t *ids;        /* [n_tokens * n_used]: chosen experts, by token */
    float *weights;      /* [n_tokens * n_used] */
    int32_t *slot_of;    /* [n_tokens * n_used]: each pair's slot; slots are sorted by expert */
    int32_t *slot_token; /* [slots]: the token of each slot */
    int32_t *first_slot; /* [n_experts + 1]: expert e's slots are first_slot[e] .. first_slot[e + 1] - 1 */
    ops_matmul_task *tasks; /* [2 * n_experts] */
    unsigned char *act_gate, *act_up, *act_down; /* converted inputs, one row per slot */
    float *gate_up;      /* [slots][2 n_ff]: gate's outputs, then up's */
    float *out;          /* [slots][n_embd] */
    size_t row_gate, row_up, row_down; /* bytes of one converted row */
} moe_scratch;

/* The largest converted row any expert of these matrices needs, packed or not. */
static size_t act_row_bytes(const ops_matrix *m) { return m ? ops_matmul_scratch_bytes(m, 1) : 0; }

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

static size_t carve(const ops_moe *moe, int64_t n_tokens, unsigned char *base, moe_scratch *s)
{
    size_t pairs = (size_t)n_tokens * (size_t)moe->n_used;
    const ops_matrix *gate = moe->gate_up ? moe->gate_up : moe->gate;
    size_t row_gate = act_row_bytes(gate), row_up = moe->gate_up ? 0 : act_row_bytes(moe->up);
    size_t row_down = act_row_bytes(moe->down);
    size_t sizes[] = {
        pairs * sizeof(int32_t), pairs * sizeof(float), pairs * sizeof(int32_t), pairs * sizeof(int32_t),
        ((size_t)moe->n_experts + 1) * sizeof(int32_t), 2 * (size_t)moe->n_experts * sizeof(ops_matmul_task),
        pairs * row_gate, pairs * row_up, pairs * row_down,
        pairs * 2 * (size_t)moe->n_ff * sizeof(float), pairs * (size_t)moe->n_embd * sizeof(float),
    };
    void *parts[sizeof sizes / sizeof *sizes];
    size_t offset = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        parts[i] = base ? base + offset : NULL;
        offset += align64(sizes[i]);
    }
    if (s) {
        *s = (moe_scratch){
            .ids = parts[0], .weights = parts[1], .slot_of = parts[2], .slot_token = parts[3],
            .first_slot = parts[4], .tasks = parts[5], .act_gate = parts[6], .act_up = parts[7],
            .act_down = parts[8], .gate_up = parts[9], .out = parts[10],
            .row_gate = row_gate, .row_up = row_up, .row_down = row_down,
        };
    }
    return offset;
}

size_t ops_moe_scratch_bytes(const ops_moe *moe, int64_t n_tokens) { return carve(moe, n_tokens, NULL, NULL); }

/* ---- the forward pass ---- */

typedef struct moe_step {
    const ops_moe *moe;
    moe_scratch s;
    const float *logits, *x;
    int64_t logits_stride, x_stride;
    float *y;
    int64_t y_stride;
    bool separate_up; /* up's converted rows differ from gate's */
} moe_step;

static void route_rows(void *p, int64_t first, int64_t last)
{
    const moe_step *st = p;
    const int32_t k = st->moe->n_used;
    for (int64_t t = first; t < last; t++)
        route_token(st->moe, st->logits + t * st->logits_stride, st->s.ids + t * k, st->s.weights + t * k);
}

/* Counting sort of the pairs by expert; within an expert, tokens ascend. */
static void assign_slots(const moe_step *st, int64_t n_tokens)
{
    const ops_moe *moe = st->moe;
    const moe_scratch *s = &st->s;
    const int64_t pairs = n_tokens * moe->n_used;
    memset(s->first_slot, 0, ((size_t)moe->n_experts + 1) * sizeof *s->first_slot);
    for (int64_t i = 0; i < pairs; i++)
        s->first_slot[s->ids[i] + 1]++;
    for (int32_t e = 0; e < moe->n_experts; e++)
        s->first_slot[e + 1] += s->first_slot[e];
    /* first_slot[e] now serves as expert e's cursor, and ends at its end:
     * shift back afterwards. */
    for (int64_t i = 0; i < pairs; i++) {
        int32_t slot = s->first_slot[s->ids[i]]++;
        s->slot_of[i] = slot;
        s->slot_token[slot] = (int32_t)(i / moe->n_used);
    }
    memmove(s->first_slot + 1, s->first_slot, (size_t)moe->n_experts * sizeof *s->first_slot);
    s->first_slot[0] = 0;
}

static int32_t expert_of_slot(const moe_scratch *s, int32_t n_experts, int64_t slot)
{
    int32_t lo = 0, hi = n_experts; /* first_slot[lo] <= slot < first_slot[hi] */
    while (hi - lo > 1) {
        int32_t mid = (lo + hi) / 2;
        if (s->first_slot[mid] <= slot)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void convert_input_rows(void *p, int64_t first, int64_t last)
{
    const moe_step *st = p;
    const ops_moe *moe = st->moe;
    const moe_scratch *s = &st->s;
    for (int64_t slot = first; slot < last; slot++) {
        int32_t e = expert_of_slot(s, moe->n_experts, slot);
        const float *x = st->x + s->slot_token[slot] * st->x_stride;
        const ops_matrix *gate = moe->gate_up ? &moe->gate_up[e] : &moe->gate[e];
        ops_matmul_convert_act(gate, x, s->act_gate + slot * s->row_gate);
        if (st->separate_up)
            ops_matmul_convert_act(&moe->up[e], x, s->act_up + slot * s->row_up);
    }
}

/* out[i] = out[i] * scale + bias[i], each part only where it exists. */
static void scale_and_bias(float *out, int64_t n, const float *scales, const float *biases, int32_t e)
{
    if (scales)
        ops_scale(out, n, scales[e]);
    if (biases)
        ops_add(out, biases + e * n, n);
}

static void swiglu_oai(float *gate, const float *up, int64_t n)
{
    const float alpha = 1.702f, limit = 7.0f;
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i] < limit ? gate[i] : limit;
        float u = up[i] < -limit ? -limit : up[i] > limit ? limit : up[i];
        gate[i] = g / (1.0f + expf(alpha * -g)) * (u + 1.0f);
    }
}

static void activation_rows(void *p, int64_t first, int64_t last)
{
    const moe_step *st = p;
    const ops_moe *moe = st->moe;
    const moe_scratch *s = &st->s;
    const int64_t ff = moe->n_ff;
    for (int64_t slot = first; slot < last; slot++) {
        int32_t e = expert_of_slot(s, moe->n_experts, slot);
        float *gate = s->gate_up + slot * 2 * ff, *up = gate + ff;
        scale_and_bias(up, ff, moe->up_scale, moe->up_bias, e);
        scale_and_bias(gate, ff, moe->gate_scale, moe->gate_bias, e);
        switch (moe->activation) {
        case OPS_MOE_SWIGLU:
            ops_swiglu(gate, up, ff);
            break;
        case OPS_MOE_GEGLU:
            ops_geglu(gate, up, ff);
            break;
        case OPS_MOE_SWIGLU_OAI:
            swiglu_oai(gate, up, ff);
            break;
        }
        ops_matmul_convert_act(&moe->down[e], gate, s->act_down + slot * s->row_down);
    }
}

static void combine_rows(void *p, int64_t first, int64_t last)
{
    const moe_step *st = p;
    const ops_moe *moe = st->moe;
    const moe_scratch *s = &st->s;
    const int32_t k = moe->n_used;
    const int64_t d = moe->n_embd;
    for (int64_t t = first; t < last; t++) {
        float *y = st->y + t * st->y_stride;
        for (int32_t j = 0; j < k; j++) {
            int32_t e = s->ids[t * k + j];
            const float *out = s->out + (int64_t)s->slot_of[t * k + j] * d;
            const float scale = moe->down_scale ? moe->down_scale[e] : 1.0f, weight = s->weights[t * k + j];
            const float *bias = moe->down_bias ? moe->down_bias + e * d : NULL;
            /* One pass, each operation rounded as its own ggml op would. */
            for (int64_t i = 0; i < d; i++) {
                float v = out[i] * scale;
                if (bias)
                    v += bias[i];
                v *= weight;
                y[i] = j == 0 ? v : y[i] + v;
            }
        }
    }
}

/* Tasks for one matrix kind of every chosen expert; returns how many. */
static int expert_tasks(const moe_step *st, const ops_matrix *experts, const unsigned char *act, size_t row,
                        float *y, int64_t y_stride, ops_matmul_task *tasks)
{
    const moe_scratch *s = &st->s;
    int n = 0;
    for (int32_t e = 0; e < st->moe->n_experts; e++) {
        int32_t first = s->first_slot[e], count = s->first_slot[e + 1] - first;
        if (count == 0)
            continue; /* not chosen: its weights are never read */
        tasks[n++] = (ops_matmul_task){.w = &experts[e], .act = act + (size_t)first * row, .act_stride = row,
                                       .n_tokens = count,
                                       .y = y + (int64_t)first * y_stride, .y_stride = y_stride};
    }
    return n;
}

/* Decode's few pairs are converted and activated on the calling thread:
 * microseconds of work, less than waking the pool costs. */
enum { INLINE_PAIRS = 32 };

static void run_pair_rows(threadpool *pool, int64_t pairs, ops_rows_fn fn, void *ctx)
{
    if (pairs <= INLINE_PAIRS)
        fn(ctx, 0, pairs);
    else
        ops_parallel_rows(pool, pairs, fn, ctx);
}

void ops_moe_forward(threadpool *pool, const ops_moe *moe, const float *logits, int64_t logits_stride,
                     const float *x, int64_t x_stride, int64_t n_tokens, float *y, int64_t y_stride,
                     void *scratch)
{
    assert(moe->n_experts > 0 && moe->n_experts <= OPS_MOE_MAX_EXPERTS && moe->n_used > 0 &&
           moe->n_used <= moe->n_experts);
    moe_step st = {.moe = moe, .logits = logits, .logits_stride = logits_stride, .x = x, .x_stride = x_stride,
                   .y = y, .y_stride = y_stride};
    carve(moe, n_tokens, scratch, &st.s);
    const moe_scratch *s = &st.s;
    const int64_t slots = n_tokens * moe->n_used, ff = moe->n_ff;
    st.separate_up = !moe->gate_up && ops_matmul_act_format(&moe->gate[0]) != ops_matmul_act_format(&moe->up[0]);
    /* The scratch has room for either form; rows are as long as the form the
     * experts are in now (every expert of a tensor is packed alike). */
    st.s.row_gate = ops_matmul_act_row_bytes(moe->gate_up ? &moe->gate_up[0] : &moe->gate[0]);
    st.s.row_up = moe->gate_up ? 0 : ops_matmul_act_row_bytes(&moe->up[0]);
    st.s.row_down = ops_matmul_act_row_bytes(&moe->down[0]);

    ops_parallel_rows(pool, n_tokens, route_rows, &st);
    assign_slots(&st, n_tokens);
    run_pair_rows(pool, slots, convert_input_rows, &st);

    int n;
    if (moe->gate_up) {
        n = expert_tasks(&st, moe->gate_up, s->act_gate, s->row_gate, s->gate_up, 2 * ff, s->tasks);
    } else {
        const unsigned char *act_up = st.separate_up ? s->act_up : s->act_gate;
        size_t row_up = st.separate_up ? s->row_up : s->row_gate;
        n = expert_tasks(&st, moe->gate, s->act_gate, s->row_gate, s->gate_up, 2 * ff, s->tasks);
        n += expert_tasks(&st, moe->up, act_up, row_up, s->gate_up + ff, 2 * ff, s->tasks + n);
    }
    ops_matmul_tasks(pool, s->tasks, n);
    run_pair_rows(pool, slots, activation_rows, &st);
    n = expert_tasks(&st, moe->down, s->act_down, s->row_down, s->out, moe->n_embd, s->tasks);
    ops_matmul_tasks(pool, s->tasks, n);
    ops_parallel_rows(pool, n_tokens, combine_rows, &st);
}

/* Row dot products: the scalar references against a double-precision dot of
 * the dequantized operands, and every SIMD variant this CPU runs against the
 * reference, on one block, 17 blocks and a ~4095-element row.
 *
 * Tolerances. Inside a block the integer kernels are exact; only the float
 * combination of per-block terms rounds. Any order of summing k terms each of
 * magnitude <= |t_i| errs by at most about k * FLT_EPSILON * sum|t_i|
 * (Higham's gamma_k), so each check is
 *     |got - want| <= (chain + slack) * FLT_EPSILON * M
 * where chain is the number of float roundings a term can go through and M
 * bounds sum|t_i|:
 *   - quantized weights: two terms per block at most (scale part and min
 *     part); chain = 4 * blocks covers two summations of them in different
 *     orders. Every format's scale part is at most (max - min) of its group
 *     <= 2 max|w| and its min part at most max|w|, so M = 3 max|w| sum|x|.
 *     The dequantized reference operands themselves round once or twice per
 *     element (d*sc, then *q, then -min): the slack of 8 covers that.
 *   - float weights: the terms are w_i x_i, M = sum|w_i x_i|. The reference
 *     sums in double (error ~ 2^-53 n, negligible); a SIMD variant sums in
 *     at least 8 f32 lanes, so a lane's chain is n/8, plus a reduction tree:
 *     chain = n/8 + 16. */
#include "test.h"

#include "base/cpu.h"
#include "ops/dot.h"
#include "ops/dot_kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "base/fp16.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Roughly normal values with an occasional outlier, as real weights and
 * activations have; an outlier sets a block's scale and exercises the
 * extremes of the quantized range. */
static void fill_values(float *v, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        float s = test_rng_uniform() + test_rng_uniform() + test_rng_uniform();
        if (test_rng_next() % 64 == 0)
            s *= 4;
        v[i] = s * scale;
    }
}

static void fill_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)test_rng_next();
}

static uint16_t random_f16_scale(float lo, float hi)
{
    return fp32_to_fp16(lo + (hi - lo) * (test_rng_uniform() + 1) / 2);
}

/* Formats without a reference quantizer get random bits with sane scales, so
 * every bit pattern of the quants is exercised. */
static bool fill_random_blocks(uint32_t type, void *blocks, int64_t nblocks)
{
    const quant_traits *t = quant_get_traits(type);
    fill_bytes(blocks, (size_t)nblocks * t->type_size);
    for (int64_t i = 0; i < nblocks; i++) {
        switch (type) {
        case QUANT_Q2_K: {
            block_q2_K *b = (block_q2_K *)blocks + i;
            b->d = random_f16_scale(0.001f, 0.02f);
            b->dmin = random_f16_scale(0.001f, 0.02f);
            break;
        }
        case QUANT_Q3_K:
            ((block_q3_K *)blocks)[i].d = random_f16_scale(0.0005f, 0.01f);
            break;
        case QUANT_IQ4_NL:
            ((block_iq4_nl *)blocks)[i].d = random_f16_scale(0.002f, 0.02f);
            break;
        case QUANT_IQ4_XS:
            ((block_iq4_xs *)blocks)[i].d = random_f16_scale(0.0005f, 0.005f);
            break;
        case QUANT_Q8_K:
            ((block_q8_K *)blocks)[i].d = 0.001f + 0.01f * (test_rng_uniform() + 1);
            break;
        case QUANT_Q8_1:
            ((block_q8_1 *)blocks)[i].d = 0.001f + 0.01f * (test_rng_uniform() + 1);
            break;
        case QUANT_MXFP4: /* exponents 2^-10 .. 2^5: every code, with scales from tiny to large */
            ((block_mxfp4 *)blocks)[i].e = (uint8_t)(118 + test_rng_next() % 16);
            break;
        default:
            return false;
        }
    }
    return true;
}

/* The rows of one check: weights in their format and dequantized, the
 * activation in its format and dequantized. */
typedef struct dot_case {
    uint32_t type;
    int64_t n;
    void *w;
    float *w_deq;
    void *x;
    float *x_deq;
    double exact; /* sum of w_deq * x_deq in double */
    double magnitude; /* M of the header comment */
    double tolerance;
} dot_case;

/* The rows' memory; c->w is left for the caller to fill. */
static bool dot_case_alloc(dot_case *c, uint32_t type, int64_t n)
{
    uint64_t wbytes;
    memset(c, 0, sizeof *c);
    if (!quant_bytes(type, (uint64_t)n, &wbytes))
        return false;
    c->type = type;
    c->n = n;
    c->w = malloc(wbytes);
    c->w_deq = malloc((size_t)n * sizeof(float));
    c->x = malloc(ops_activation_row_bytes(type, n));
    c->x_deq = malloc((size_t)n * sizeof(float));
    return c->w && c->w_deq && c->x && c->x_deq;
}

/* The min of the Q4_1/Q5_1 block holding element i (m leads after d). */
static double block_min(const dot_case *c, int64_t i)
{
    const quant_traits *t = quant_get_traits(c->type);
    uint16_t m;
    memcpy(&m, (const unsigned char *)c->w + (size_t)(i / t->block_size) * t->type_size + 2, sizeof m);
    return fp16_to_fp32(m);
}

/* Quantizes the activation row from src, dequantizes both rows, and sets the
 * exact answer and the tolerance. */
static void dot_case_finish(dot_case *c, const float *src)
{
    const quant_traits *t = quant_get_traits(c->type);
    uint32_t act = ops_activation_type(c->type);
    int64_t n = c->n;
    t->dequantize(c->w, c->w_deq, n);
    ops_quantize_activation(c->type, src, c->x, n);
    quant_get_traits(act)->dequantize(c->x, c->x_deq, n);

    double max_w = 0, sum_abs_x = 0, sum_abs_wx = 0, min_terms = 0;
    bool has_min = c->type == QUANT_Q4_1 || c->type == QUANT_Q5_1;
    c->exact = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = c->w_deq[i], x = c->x_deq[i];
        c->exact += w * x;
        sum_abs_wx += fabs(w * x);
        sum_abs_x += fabs(x);
        if (fabs(w) > max_w)
            max_w = fabs(w);
        if (has_min) /* the scale part d*q = w - m and the min part m, each times x */
            min_terms += (fabs(w - block_min(c, i)) + fabs(block_min(c, i))) * fabs(x);
    }
    bool integer_kernel = act != QUANT_F32;
    if (integer_kernel) {
        /* 3 max|w| sum|x| bounds the terms of blocks a quantizer made; blocks
         * of any bits (m not the smallest value) need their own sum. */
        c->magnitude = fmax(3 * max_w * sum_abs_x, min_terms);
        c->tolerance = (4.0 * (double)(n / t->block_size) + 8) * FLT_EPSILON * c->magnitude;
    } else {
        c->magnitude = sum_abs_wx;
        c->tolerance = ((double)n / 8 + 16) * FLT_EPSILON * c->magnitude;
    }
    if (c->magnitude == 0) /* all zeros: the answer is exactly 0 */
        c->magnitude = 1;
}

static bool dot_case_make(dot_case *c, uint32_t type, int64_t n)
{
    const quant_traits *t = quant_get_traits(type);
    bool made = dot_case_alloc(c, type, n);
    float *src = malloc((size_t)n * sizeof(float));
    made = made && src;
    if (made && t->quantize) {
        fill_values(src, n, 0.02f);
        t->quantize(src, c->w, n);
    } else if (made) {
        made = fill_random_blocks(type, c->w, n / t->block_size);
    }
    if (made) {
        fill_values(src, n, 1.0f);
        dot_case_finish(c, src);
    }
    free(src);
    return made;
}

static void dot_case_free(dot_case *c)
{
    free(c->w);
    free(c->w_deq);
    free(c->x);
    free(c->x_deq);
}

/* Largest |error| / M seen per weight type and variant, for the summary. */
#define VARIANT_COUNT 4 /* exact-vs-reference, then scalar/avx2/avx512 dispatch levels */
static double worst_error[QUANT_TYPE_COUNT][VARIANT_COUNT];
static double worst_tolerance[QUANT_TYPE_COUNT][VARIANT_COUNT];

static void record(uint32_t type, int variant, double err, const dot_case *c)
{
    double rel = err / c->magnitude, tol = c->tolerance / c->magnitude;
    if (rel > worst_error[type][variant])
        worst_error[type][variant] = rel;
    if (tol > worst_tolerance[type][variant])
        worst_tolerance[type][variant] = tol;
}

/* The reference against the exact answer, each SIMD level against the
 * reference; and the multi-row kernels, given this row several times, give
 * the one-row kernel's bits (check_dot4 does so on distinct rows). */
static void check_case(const dot_case *c, const char *label)
{
    const char *name = quant_get_traits(c->type)->name;
    ops_dot_fn ref = ops_dot_ref(c->type);
    int64_t n = c->n;
    float got = NAN;
    ref(n, c->w, c->x, &got);
    double err = fabs((double)got - c->exact);
    record(c->type, 0, err, c);
    CHECK_MSG(err <= c->tolerance, "%s%s n=%" PRId64 ": reference %.9g, exact %.9g, |diff| %.3g > tol %.3g", name,
              label, n, got, c->exact, err, c->tolerance);

    /* The float kernels' tolerance is for a double-precision reference
     * against f32 lanes; the integer kernels' covers two orders. */
    for (int level = CPU_LEVEL_SCALAR + 1; level <= (int)cpu_hardware_level(); level++) {
        ops_dot_fn fn = ops_dot_at_level(c->type, (cpu_level)level);
        if (fn == ref)
            continue;
        float simd = NAN, four[4], eight[8];
        fn(n, c->w, c->x, &simd);
        double diff = fabs((double)simd - (double)got);
        record(c->type, 1 + level, diff, c);
        CHECK_MSG(diff <= c->tolerance, "%s%s n=%" PRId64 " %s: %.9g, reference %.9g, |diff| %.3g > tol %.3g", name,
                  label, n, cpu_level_name((cpu_level)level), simd, got, diff, c->tolerance);
        ops_dot4_fn dot4 = ops_dot4_at_level(c->type, (cpu_level)level);
        ops_dot4x2_fn dot4x2 = ops_dot4x2_at_level(c->type, (cpu_level)level);
        if (dot4) {
            dot4(n, c->w, c->x, 0, four);
            for (int t = 0; t < 4; t++)
                CHECK_MSG(memcmp(&four[t], &simd, sizeof simd) == 0, "%s%s n=%" PRId64 " %s: dot4 %.9g vs %.9g", name,
                          label, n, cpu_level_name((cpu_level)level), four[t], simd);
        }
        if (dot4x2) {
            dot4x2(n, c->w, 0, c->x, 0, eight);
            for (int k = 0; k < 8; k++)
                CHECK_MSG(memcmp(&eight[k], &simd, sizeof simd) == 0, "%s%s n=%" PRId64 " %s: dot4x2 %.9g vs %.9g",
                          name, label, n, cpu_level_name((cpu_level)level), eight[k], simd);
        }
    }
}

/* Weights of random bits (every code of every element, scales of either
 * extreme) rather than a quantizer's output, for formats with a quantizer
 * whose output may not reach all codes (MXFP4's never writes -0). */
static void check_random_bits(uint32_t type)
{
    const quant_traits *t = quant_get_traits(type);
    const int64_t sizes[] = {32, 17 * 32, 4096 + 9 * 32};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int64_t n = sizes[s];
        dot_case c;
        float *src = malloc((size_t)n * sizeof *src);
        bool made = dot_case_alloc(&c, type, n) && src && fill_random_blocks(type, c.w, n / t->block_size);
        if (made) {
            fill_values(src, n, 1.0f);
            dot_case_finish(&c, src);
            check_case(&c, " (random bits)");
        } else {
            CHECK_MSG(false, "%s n=%" PRId64 ": could not build the test rows", t->name, n);
        }
        free(src);
        dot_case_free(&c);
    }
}

static void check_type(uint32_t type)
{
    const quant_traits *t = quant_get_traits(type);
    int64_t bs = t->block_size;
    int64_t sizes[] = {bs, 17 * bs, 4095 / bs * bs, bs == 1 ? 7 : 2 * bs, bs == 1 ? 100 : 3 * bs,
                       bs == 1 ? 4096 + 15 : 4096 / bs * bs + 9 * bs};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        if (n < bs)
            continue;
        dot_case c;
        if (dot_case_make(&c, type, n))
            check_case(&c, "");
        else
            CHECK_MSG(false, "%s n=%" PRId64 ": could not build the test rows", t->name, n);
        dot_case_free(&c);
    }
}

/* Q4_1 and Q5_1 beyond what their quantizer makes (which always has a q of 0
 * with m the block's smallest value): every bit pattern of the quants, with
 * block by block scales and mins of either sign, zero, subnormal or the
 * largest half; against activation blocks at the int8 limits (all +127, all
 * -127, signs alternating so the block sum is 0, all zero). */
static void check_min_format_edges(uint32_t type)
{
    enum { BLOCKS = 40 };
    const int64_t n = BLOCKS * 32;
    const quant_traits *t = quant_get_traits(type);
    const uint16_t f16_max = 0x7BFF, f16_tiny = 0x0001, negative = 0x8000;
    dot_case c;
    bool made = dot_case_alloc(&c, type, n);
    float *src = malloc((size_t)n * sizeof *src);
    if (!made || !src) {
        CHECK_MSG(false, "%s: could not build the edge rows", t->name);
        free(src), dot_case_free(&c);
        return;
    }
    fill_bytes(c.w, (size_t)BLOCKS * t->type_size);
    for (int b = 0; b < BLOCKS; b++) {
        unsigned char *block = (unsigned char *)c.w + (size_t)b * t->type_size;
        uint16_t d = random_f16_scale(0.001f, 0.02f), m = random_f16_scale(-0.3f, 0.3f);
        switch (b % 8) {
        case 1: /* every q at its largest */
            memset(block + 4, 0xFF, t->type_size - 4);
            m = (uint16_t)(m | negative);
            break;
        case 2: /* every q zero, the largest min */
            memset(block + 4, 0, t->type_size - 4);
            m = f16_max;
            break;
        case 3:
            d = 0;
            break;
        case 4: /* a negative scale, which no quantizer writes */
            d = (uint16_t)(d | negative);
            break;
        case 5:
            d = f16_tiny, m = (uint16_t)(f16_tiny | negative);
            break;
        case 6: /* the extremes cancel: terms far larger than their sum */
            d = f16_max, m = (uint16_t)(f16_max | negative);
            break;
        case 7:
            m = 0;
            break;
        }
        memcpy(block, &d, 2);
        memcpy(block + 2, &m, 2);
    }
    fill_values(src, n, 1.0f);
    for (int b = 0; b < BLOCKS; b++)
        for (int k = 0; k < 32; k++) {
            float *v = &src[32 * b + k];
            switch (b % 5) {
            case 1: *v = 0.0f; break;
            case 2: *v = 1.0f; break;
            case 3: *v = -3.0f; break;
            case 4: *v = k % 2 ? 0.5f : -0.5f; break;
            }
        }
    dot_case_finish(&c, src);
    check_case(&c, " (edge blocks)");
    free(src);
    dot_case_free(&c);
}

/* The four-row kernels give, for each row, exactly the one-row kernel's
 * value at the same level (they share the same operations per row). */
static void check_dot4(uint32_t type)
{
    const quant_traits *t = quant_get_traits(type);
    const int64_t sizes[] = {32, 17 * 32, 640, 4064, 256, 1024, 17 * 256, 4096};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int64_t n = sizes[s];
        if (n % t->block_size != 0)
            continue;
        size_t w_bytes = (size_t)(n / t->block_size) * t->type_size, x_bytes = ops_activation_row_bytes(type, n);
        float *values = malloc((size_t)n * sizeof *values);
        unsigned char *w = malloc(w_bytes), *x = malloc(4 * x_bytes);
        if (!values || !w || !x) {
            CHECK_MSG(false, "out of memory");
            free(values), free(w), free(x);
            return;
        }
        fill_values(values, n, 1.0f);
        t->quantize(values, w, n);
        for (int r = 0; r < 4; r++) {
            fill_values(values, n, 3.0f * (float)(r + 1));
            ops_quantize_activation(type, values, x + (size_t)r * x_bytes, n);
        }
        for (int level = CPU_LEVEL_SCALAR; level <= (int)cpu_hardware_level(); level++) {
            ops_dot4_fn dot4 = ops_dot4_at_level(type, (cpu_level)level);
            if (!dot4)
                continue;
            ops_dot_fn dot = ops_dot_at_level(type, (cpu_level)level);
            float four[4], one;
            dot4(n, w, x, x_bytes, four);
            for (int r = 0; r < 4; r++) {
                dot(n, w, x + (size_t)r * x_bytes, &one);
                CHECK_MSG(memcmp(&one, &four[r], sizeof one) == 0, "%s n=%" PRId64 " %s row %d: %.9g vs %.9g",
                          t->name, n, cpu_level_name((cpu_level)level), r, four[r], one);
            }
            /* Two weight rows: the first as above, the second quantized
             * from other values. */
            ops_dot4x2_fn dot4x2 = ops_dot4x2_at_level(type, (cpu_level)level);
            if (!dot4x2)
                continue;
            unsigned char *w2 = malloc(2 * w_bytes);
            if (!w2) {
                CHECK_MSG(false, "out of memory");
                continue;
            }
            memcpy(w2, w, w_bytes);
            fill_values(values, n, 0.5f);
            t->quantize(values, w2 + w_bytes, n);
            float eight[8];
            dot4x2(n, w2, w_bytes, x, x_bytes, eight);
            for (int wr = 0; wr < 2; wr++)
                for (int r = 0; r < 4; r++) {
                    dot(n, w2 + (size_t)wr * w_bytes, x + (size_t)r * x_bytes, &one);
                    CHECK_MSG(memcmp(&one, &eight[4 * wr + r], sizeof one) == 0,
                              "%s n=%" PRId64 " %s 4x2 weight row %d row %d: %.9g vs %.9g", t->name, n,
                              cpu_level_name((cpu_level)level), wr, r, eight[4 * wr + r], one);
                }
            free(w2);
        }
        free(values), free(w), free(x);
    }
}

/* llama.cpp's own dot products (tests/fixtures/quant/TYPE.dot, written by
 * scripts/oracle/make_quant_fixtures.py: rows of weights, one activation row
 * in f32, and what ggml's CPU backend gives for each row). hearth quantizes
 * the same activations and multiplies them with its reference and every
 * SIMD level. ggml rounds Q8_1's s = d * sum(a) to f16, from d before its own
 * rounding to f16; hearth keeps s in f32 from the rounded d. Per block the
 * min term m * s therefore differs by at most two half roundings, 2^-10 of
 * |m s| (times 1.01 for the second-order terms); beyond that the bound is
 * the reference's of the header comment, applied to each side. */
static void check_ggml_dot(uint32_t type)
{
    const quant_traits *t = quant_get_traits(type);
    char path[1024];
    snprintf(path, sizeof path, "%s/quant/%s.dot", HEARTH_FIXTURES_DIR, t->name);
    size_t size = 0;
    unsigned char *buf = (unsigned char *)test_read_file(path, &size);
    CHECK_MSG(buf != NULL, "%s: cannot read fixture", path);
    if (!buf)
        return;
    uint32_t version = 0, ftype = 0, direction = 0;
    uint64_t n = 0, rows = 0;
    const size_t header = 4 + 3 * 4 + 2 * 8;
    if (size >= header) {
        memcpy(&version, buf + 4, 4), memcpy(&ftype, buf + 8, 4), memcpy(&direction, buf + 12, 4);
        memcpy(&n, buf + 16, 8), memcpy(&rows, buf + 24, 8);
    }
    size_t row_bytes = n % t->block_size == 0 && n < (1u << 20) ? (size_t)n / t->block_size * t->type_size : 0;
    bool sane = size >= header && memcmp(buf, "HQFX", 4) == 0 && version == 1 && ftype == type && direction == 2 &&
                row_bytes > 0 && rows > 0 && rows < 1024 &&
                size == header + rows * row_bytes + n * sizeof(float) + rows * sizeof(float);
    CHECK_MSG(sane, "%s: malformed fixture", path);
    if (!sane) {
        free(buf);
        return;
    }
    const unsigned char *weights = buf + header;
    float *activations = malloc(n * sizeof *activations), *want = malloc(rows * sizeof *want);
    memcpy(activations, weights + rows * row_bytes, n * sizeof *activations);
    memcpy(want, weights + rows * row_bytes + n * sizeof(float), rows * sizeof *want);
    double worst = 0, worst_ggml = 0, worst_ours = 0;
    for (uint64_t r = 0; r < rows; r++) {
        dot_case c;
        if (!dot_case_alloc(&c, type, (int64_t)n)) {
            CHECK_MSG(false, "out of memory");
            dot_case_free(&c);
            break;
        }
        memcpy(c.w, weights + r * row_bytes, row_bytes);
        dot_case_finish(&c, activations);
        const block_q8_1 *a = c.x;
        double min_terms = 0;
        for (uint64_t b = 0; b < n / 32; b++)
            min_terms += fabs(block_min(&c, (int64_t)(32 * b)) * a[b].s);
        double bound = 2 * c.tolerance + 1.01 * 0x1p-10 * min_terms;
        for (int level = CPU_LEVEL_SCALAR; level <= (int)cpu_hardware_level(); level++) {
            float got = NAN;
            ops_dot_at_level(type, (cpu_level)level)((int64_t)n, c.w, c.x, &got);
            double diff = fabs((double)got - want[r]);
            worst = fmax(worst, diff / bound);
            worst_ours = fmax(worst_ours, fabs((double)got - c.exact) / c.magnitude);
            CHECK_MSG(diff <= bound, "%s row %" PRIu64 " %s: %.9g, llama.cpp %.9g, |diff| %.3g > %.3g", t->name, r,
                      cpu_level_name((cpu_level)level), got, want[r], diff, bound);
        }
        worst_ggml = fmax(worst_ggml, fabs(want[r] - c.exact) / c.magnitude);
        dot_case_free(&c);
    }
    printf("%s against llama.cpp, %" PRIu64 " rows: worst |diff| / bound %.3f; vs the exact answer, llama.cpp %.2e M, "
           "hearth %.2e M\n", t->name, rows, worst, worst_ggml, worst_ours);
    free(activations), free(want), free(buf);
}

/* ops_dot_ref covers exactly the types that can be dequantized, and the
 * activation size agrees with the activation format's geometry. */
static void check_coverage(void)
{
    for (uint32_t type = 0; type < QUANT_TYPE_COUNT + 2; type++) {
        const quant_traits *t = quant_get_traits(type);
        bool can_dequantize = t && t->dequantize;
        ops_dot_fn ref = ops_dot_ref(type);
        CHECK_MSG((ref != NULL) == can_dequantize, "type %u (%s): ops_dot_ref %s", type, t ? t->name : "unknown",
                  ref ? "non-NULL" : "NULL");
        CHECK_MSG((ops_dot_best(type) != NULL) == can_dequantize, "type %u: ops_dot_best", type);
        if (!can_dequantize)
            continue;
        uint32_t act = ops_activation_type(type);
        CHECK(act == QUANT_F32 || act == QUANT_Q8_0 || act == QUANT_Q8_1 || act == QUANT_Q8_K);
        uint64_t bytes;
        CHECK(quant_bytes(act, 4096, &bytes) && bytes == ops_activation_row_bytes(type, 4096));
    }
    CHECK(ops_activation_type(QUANT_Q4_0) == QUANT_Q8_0);
    CHECK(ops_activation_type(QUANT_Q5_0) == QUANT_Q8_0);
    CHECK(ops_activation_type(QUANT_Q8_0) == QUANT_Q8_0);
    CHECK(ops_activation_type(QUANT_MXFP4) == QUANT_Q8_0); /* ggml-cpu's vec_dot_type */
    CHECK(ops_activation_type(QUANT_Q4_1) == QUANT_Q8_1);
    CHECK(ops_activation_type(QUANT_Q5_1) == QUANT_Q8_1);
    CHECK(ops_activation_type(QUANT_Q4_K) == QUANT_Q8_K);
    CHECK(ops_activation_type(QUANT_Q5_K) == QUANT_Q8_K);
    CHECK(ops_activation_type(QUANT_Q6_K) == QUANT_Q8_K);
    CHECK(ops_activation_type(QUANT_F16) == QUANT_F32);
    CHECK(ops_activation_type(QUANT_BF16) == QUANT_F32);
}

int main(void)
{
    check_coverage();
    for (uint32_t type = 0; type < QUANT_TYPE_COUNT; type++)
        if (ops_dot_ref(type))
            check_type(type);
    check_dot4(QUANT_Q4_0);
    check_dot4(QUANT_Q5_0);
    check_dot4(QUANT_Q8_0);
    check_dot4(QUANT_MXFP4);
    check_random_bits(QUANT_MXFP4);
    check_dot4(QUANT_Q4_1);
    check_dot4(QUANT_Q5_1);
    check_min_format_edges(QUANT_Q4_1);
    check_min_format_edges(QUANT_Q5_1);
    check_ggml_dot(QUANT_Q4_1);
    check_ggml_dot(QUANT_Q5_1);
    check_dot4(QUANT_Q4_K);
    check_dot4(QUANT_Q5_K);
    check_dot4(QUANT_Q6_K);

    /* ops_dot_best follows the level HEARTH_CPU leaves (tests/CMakeLists.txt
     * runs this test again with HEARTH_CPU=scalar and =avx2). */
    const char *forced = getenv("HEARTH_CPU");
    if (forced && strcmp(forced, "scalar") == 0)
        CHECK(cpu_best_level() == CPU_LEVEL_SCALAR);
    if (forced && strcmp(forced, "avx2") == 0)
        CHECK(cpu_best_level() <= CPU_LEVEL_AVX2);
    CHECK(cpu_best_level() <= cpu_hardware_level());
    for (uint32_t type = 0; type < QUANT_TYPE_COUNT; type++) {
        CHECK(ops_dot_best(type) == ops_dot_at_level(type, cpu_best_level()));
        CHECK(ops_dot4_best(type) == ops_dot4_at_level(type, cpu_best_level()));
    }

    printf("cpu: hardware %s, using %s\n", cpu_level_name(cpu_hardware_level()), cpu_level_name(cpu_best_level()));
    printf("max |err| / M, in parentheses the tolerance / M (see the header comment)\n");
    printf("%-8s %-20s %-20s %-20s\n", "type", "ref vs exact", "avx2 vs ref", "avx512 vs ref");
    for (uint32_t type = 0; type < QUANT_TYPE_COUNT; type++) {
        if (!ops_dot_ref(type))
            continue;
        printf("%-8s", quant_get_traits(type)->name);
        for (int v = 0; v < VARIANT_COUNT; v++) {
            if (v == 1)
                continue;
            if (worst_tolerance[type][v] > 0)
                printf(" %.2e (%.1e)  ", worst_error[type][v], worst_tolerance[type][v]);
            else
                printf(" %-20s", "-");
        }
        printf("\n");
    }
    return test_finish("test_dot");
}

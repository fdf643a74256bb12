/* Packed weights and the panel kernels (ops/packed.h).
 *
 * 1. Every SIMD panel kernel this CPU runs gives exactly the reference's
 *    bits, for every tile size (1..16 tokens), on random weight bits (every
 *    quant pattern, scales of any sign) and awkward shapes.
 * 2. The reference agrees with the row kernels of ops/dot.c on the same
 *    int8 activations. Both sum exact integer block products; only the float
 *    combination of the per-block terms differs in order, so the tolerance is
 *    a few roundings per block of the sum of the terms' magnitudes.
 * 3. ops_matmul on a packed matrix gives each token the same bits whatever
 *    the batch it is in, and the padded last panel writes only real rows. */
#include "test.h"

#include "base/cpu.h"
#include "base/fp16.h"
#include "ops/dot.h"
#include "ops/matmul.h"
#include "ops/packed_kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t packed_types[] = {QUANT_Q4_0, QUANT_Q5_0, QUANT_Q8_0, QUANT_Q4_1,
                                        QUANT_Q5_1, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K};

static bool has_block_min(uint32_t type)
{
    return type == QUANT_Q4_1 || type == QUANT_Q5_1;
}

/* Random bits, then every f16 scale set to something finite and moderate:
 * NaN or huge scales would only test float overflow. */
static void random_rows(uint32_t type, unsigned char *rows, int64_t n_rows, int64_t cols, int fill)
{
    const quant_traits *t = quant_get_traits(type);
    size_t n_blocks = (size_t)(n_rows * cols / t->block_size);
    for (size_t i = 0; i < n_blocks * t->type_size; i++)
        rows[i] = (unsigned char)(fill >= 0 ? (uint64_t)fill : test_rng_next());
    for (size_t b = 0; b < n_blocks; b++) {
        unsigned char *block = rows + b * t->type_size;
        uint16_t d = fp32_to_fp16(0.001f + 0.01f * (test_rng_uniform() + 1)), dmin = fp32_to_fp16(0.005f * (test_rng_uniform() + 1));
        if (type == QUANT_Q6_K) {
            memcpy(block + offsetof(block_q6_K, d), &d, 2);
        } else {
            memcpy(block, &d, 2); /* d leads every other format */
            if (type == QUANT_Q4_K || type == QUANT_Q5_K)
                memcpy(block + 2, &dmin, 2);
            if (has_block_min(type)) { /* m of either sign, up to twice what d * 15 reaches */
                uint16_t m = fp32_to_fp16(0.3f * test_rng_uniform());
                memcpy(block + 2, &m, 2);
            }
        }
    }
}

static void random_activations(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (test_rng_uniform() + test_rng_uniform() + test_rng_uniform()) * (test_rng_next() % 32 == 0 ? 8.0f : 1.0f);
}

/* sum |w_k x_k| over the dequantized weights and the int8 activations'
 * values; for Q4_1 and Q5_1 the sum of both terms' magnitudes, |d q| + |m|
 * <= |w| + 2 |m| per element, since the min term can cancel the other. */
static double magnitude(uint32_t type, const unsigned char *row, const float *x, int64_t cols)
{
    const quant_traits *t = quant_get_traits(type);
    float *w = malloc((size_t)cols * sizeof *w);
    t->dequantize(row, w, cols);
    double m = 0;
    for (int64_t k = 0; k < cols; k++) {
        double term = fabs((double)w[k]);
        if (has_block_min(type)) {
            uint16_t min;
            memcpy(&min, row + (size_t)(k / t->block_size) * t->type_size + 2, sizeof min);
            term += 2 * fabs(fp16_to_fp32(min));
        }
        m += term * fabs(x[k]);
    }
    free(w);
    return m;
}

/* y (n_tokens rows of every panel's outputs) = the panels times the
 * activations, fn called on tiles of `tile` tokens. */
static void multiply_in_tiles(ops_panel_fn fn, int tile, int64_t cols, const unsigned char *packed,
                              size_t panel_bytes, int64_t n_panels, const unsigned char *act, size_t act_bytes,
                              int n_tokens, float *y)
{
    size_t y_stride = (size_t)(n_panels * OPS_PANEL_ROWS);
    for (int64_t p = 0; p < n_panels; p++)
        for (int t = 0; t < n_tokens; t += tile) {
            int n = n_tokens - t < tile ? n_tokens - t : tile;
            fn(cols, packed + p * panel_bytes, act + (size_t)t * act_bytes, act_bytes, n,
               y + (size_t)t * y_stride + p * OPS_PANEL_ROWS, y_stride);
        }
}

/* fill < 0: random weight bits and activations. Otherwise every weight byte
 * is `fill` (0xFF: every value at its largest, 4/5/6-bit weights of 15/31/63,
 * K-quant scales and mins of 63; 0x80: Q8_0's -128, Q6_K's scales of -128)
 * and the activations are +-1, which quantize to +-127: the largest
 * products, where a kernel summing in 16 bits would saturate. */
static void check_type(uint32_t type, int64_t rows, int64_t cols, int n_tokens, int fill)
{
    const char *name = quant_get_traits(type)->name;
    const quant_traits *traits = quant_get_traits(type);
    size_t row_bytes = (size_t)(cols / traits->block_size) * traits->type_size;
    unsigned char *w = malloc(row_bytes * (size_t)rows);
    size_t packed_bytes = ops_packed_bytes(type, rows, cols);
    unsigned char *packed = malloc(packed_bytes);
    size_t act_bytes = ops_packed_act_row_bytes(type, cols), plain_act_bytes = ops_activation_row_bytes(type, cols);
    unsigned char *act = malloc(act_bytes * (size_t)n_tokens), *plain_act = malloc(plain_act_bytes);
    float *x = malloc((size_t)(cols * n_tokens) * sizeof *x);
    int64_t n_panels = (rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS;
    float *want = malloc((size_t)(n_panels * OPS_PANEL_ROWS * n_tokens) * sizeof *want);
    float *got = malloc((size_t)(n_panels * OPS_PANEL_ROWS * n_tokens) * sizeof *got);

    random_rows(type, w, rows, cols, fill);
    random_activations(x, cols * n_tokens);
    if (fill >= 0)
        for (int64_t k = 0; k < cols * n_tokens; k++) /* one sign per block, differing between tokens */
            x[k] = (k / 32 + k / cols) % 2 ? -1.0f : 1.0f;
    /* Packed in two ranges, as threads would. */
    ops_pack_panels(type, w, row_bytes, rows, cols, 0, n_panels / 2, packed);
    ops_pack_panels(type, w, row_bytes, rows, cols, n_panels / 2, n_panels, packed);
    for (int t = 0; t < n_tokens; t++)
        ops_packed_quantize_act(type, x + t * cols, act + (size_t)t * act_bytes, cols);

    /* 1: the reference over the whole tile, then each level's kernel on tiles
     * of every size. */
    ops_panel_fn ref = ops_panel_ref(type);
    size_t panel_bytes = ops_panel_bytes(type, cols);
    multiply_in_tiles(ref, OPS_PANEL_TOKENS, cols, packed, panel_bytes, n_panels, act, act_bytes, n_tokens, want);
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        ops_panel_fn fn = ops_panel_at_level(type, (cpu_level)level);
        if (fn == ref)
            continue;
        for (int tile = 1; tile <= OPS_PANEL_TOKENS; tile++) {
            memset(got, 0xFF, (size_t)(n_panels * OPS_PANEL_ROWS * n_tokens) * sizeof *got);
            multiply_in_tiles(fn, tile, cols, packed, panel_bytes, n_panels, act, act_bytes, n_tokens, got);
            CHECK_MSG(memcmp(got, want, (size_t)(n_panels * OPS_PANEL_ROWS * n_tokens) * sizeof *got) == 0,
                      "%s %s %lldx%lld, %d tokens in tiles of %d: differs from the reference", name,
                      cpu_level_name((cpu_level)level), (long long)rows, (long long)cols, n_tokens, tile);
        }
    }

    /* 2: against the row kernels, which see the same int8 values. */
    ops_dot_fn dot = ops_dot_ref(type);
    float *xq = malloc((size_t)cols * sizeof *xq);
    for (int t = 0; t < n_tokens; t++) {
        ops_quantize_activation(type, x + t * cols, plain_act, cols);
        /* The activations' int8 values times their scale bound |x|. */
        quant_get_traits(ops_activation_type(type))->dequantize(plain_act, xq, cols);
        for (int64_t r = 0; r < n_panels * OPS_PANEL_ROWS; r++) {
            float v = want[(size_t)t * (size_t)(n_panels * OPS_PANEL_ROWS) + r];
            if (r >= rows) {
                CHECK_MSG(v == 0.0f, "%s: padding row %lld gives %g", name, (long long)r, v);
                continue;
            }
            float expected;
            dot(cols, w + r * row_bytes, plain_act, &expected);
            double m = magnitude(type, w + r * row_bytes, xq, cols);
            double blocks = (double)cols / 32.0;
            double tolerance = (4.0 * blocks + 8.0) * FLT_EPSILON * 3.0 * m + 1e-30;
            CHECK_MSG(fabs((double)v - expected) <= tolerance, "%s row %lld token %d: %.9g vs row kernel %.9g (tol %.3g)",
                      name, (long long)r, t, v, expected, tolerance);
        }
    }
    free(xq), free(w), free(packed), free(act), free(plain_act), free(x), free(want), free(got);
}

/* The activation quantizers give the same bytes at every level, on random
 * rows and on the edge cases: an all-zero block, a block whose largest
 * magnitude appears with both signs (the first one sets the scale's sign in
 * Q8_K), values exactly halfway between int8 steps. */
static void check_activation_quantizers(uint32_t type)
{
    enum { COLS = 1024 };
    float x[COLS];
    random_activations(x, COLS);
    for (int k = 0; k < 256; k++) /* block 0 (for the 32-element format, blocks 0..7) all zero */
        x[k] = 0.0f;
    x[300] = 5.0f, x[301] = -5.0f;  /* tie for the largest magnitude */
    x[600] = -3.0f, x[610] = 3.0f;
    for (int k = 768; k < 800; k++)
        x[k] = 127.0f / 4.0f * (float)(k % 8) / 127.0f * 0.5f; /* halves after scaling */
    x[799] = 127.0f / 4.0f;
    size_t bytes = ops_packed_act_row_bytes(type, COLS);
    unsigned char *want = malloc(bytes), *got = malloc(bytes);
    ops_packed_quantize_act_at_level(type, x, want, COLS, CPU_LEVEL_SCALAR);
    for (int level = CPU_LEVEL_AVX2; level <= (int)cpu_hardware_level(); level++) {
        memset(got, 0xA5, bytes);
        ops_packed_quantize_act_at_level(type, x, got, COLS, (cpu_level)level);
        CHECK_MSG(memcmp(got, want, bytes) == 0, "%s activations at %s differ from the reference",
                  quant_get_traits(type)->name, cpu_level_name((cpu_level)level));
    }
    free(want), free(got);
}

/* 3: through ops_matmul, on a packed matrix. */
static void check_matmul_batch_invariance(threadpool *pool, uint32_t type)
{
    enum { ROWS = 35, TOKENS = 70 };
    int64_t cols = quant_get_traits(type)->block_size == 256 ? 512 : 96;
    const quant_traits *traits = quant_get_traits(type);
    size_t row_bytes = (size_t)(cols / traits->block_size) * traits->type_size;
    unsigned char *w = malloc(row_bytes * ROWS);
    void *packed = malloc(ops_packed_bytes(type, ROWS, cols));
    float *x = malloc((size_t)(cols * TOKENS) * sizeof *x);
    float *batch = malloc((size_t)(ROWS + 1) * TOKENS * sizeof *batch), one[ROWS + 1];
    void *scratch = malloc(ops_packed_act_row_bytes(type, cols) * TOKENS + ops_activation_row_bytes(type, cols) * TOKENS);
    random_rows(type, w, ROWS, cols, -1);
    random_activations(x, cols * TOKENS);
    ops_pack_panels(type, w, row_bytes, ROWS, cols, 0, (ROWS + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS, packed);
    ops_matrix m = {.data = w, .packed = packed, .type = type, .cols = cols, .rows = ROWS, .row_bytes = row_bytes};
    /* Output rows one wider than the matrix: the extra column must stay untouched. */
    for (int i = 0; i < (ROWS + 1) * TOKENS; i++)
        batch[i] = 12345.0f;
    ops_matmul(pool, &m, x, cols, TOKENS, batch, ROWS + 1, scratch);
    int mismatched = 0, touched = 0;
    for (int t = 0; t < TOKENS; t++) {
        one[ROWS] = 12345.0f;
        ops_matmul(pool, &m, x + t * cols, cols, 1, one, ROWS + 1, scratch);
        mismatched += memcmp(one, batch + t * (ROWS + 1), ROWS * sizeof(float)) != 0;
        touched += batch[t * (ROWS + 1) + ROWS] != 12345.0f || one[ROWS] != 12345.0f;
    }
    CHECK_MSG(mismatched == 0, "%s: %d of %d tokens differ between a batch of %d and one at a time",
              traits->name, mismatched, TOKENS, TOKENS);
    CHECK_MSG(touched == 0, "%s: the padded panel wrote past the last row", traits->name);
    free(w), free(packed), free(x), free(batch), free(scratch);
}

int main(void)
{
    printf("CPU level %s; packed types:", cpu_level_name(cpu_best_level()));
    for (size_t i = 0; i < sizeof packed_types / sizeof *packed_types; i++)
        printf(" %s%s", quant_get_traits(packed_types[i])->name, ops_packed_supported(packed_types[i]) ? "" : "(off)");
    printf("\n");
    for (size_t i = 0; i < sizeof packed_types / sizeof *packed_types; i++) {
        uint32_t type = packed_types[i];
        int64_t block = quant_get_traits(type)->block_size == 256 ? 256 : 32;
        check_type(type, 16, block, 1, -1);
        check_type(type, 17, 3 * block, 9, -1);
        check_type(type, 35, (block == 256 ? 2 : 20) * block, 19, -1);
        check_type(type, 19, 8 * block, 11, 0xFF);
        check_type(type, 19, 8 * block, 11, 0x80);
        check_activation_quantizers(type);
    }
    threadpool *pool = NULL;
    hearth_error err = {0};
    CHECK(threadpool_create(2, &pool, &err) == HEARTH_OK);
    for (size_t i = 0; pool && i < sizeof packed_types / sizeof *packed_types; i++)
        if (ops_packed_supported(packed_types[i])) /* matmul only multiplies what this CPU packs */
            check_matmul_batch_invariance(pool, packed_types[i]);
    threadpool_free(pool);
    printf("test_packed: %d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

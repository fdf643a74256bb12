/* The reference converters against independent implementations, bit for bit.
 *
 * Fixtures in tests/fixtures/quant/ come from scripts/oracle/make_quant_fixtures.py:
 * the PyPI `gguf` package's quantize/dequantize, and llama.cpp's ggml reference
 * quantizers for Q8_K and the K-quants. Each file: "HQFX", u32 version (1),
 * u32 type, u32 direction (0 dequantize, 1 quantize), u64 n, input, expected
 * output. A missing fixture is a failure: they are committed. */
#include "test.h"

#include "base/fp16.h"
#include "quant/quant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static const char *const fixtures[] = {
    "F16.dequantize",   "F16.quantize",    "BF16.dequantize",   "BF16.quantize",    "Q4_0.dequantize",
    "Q4_0.quantize",    "Q4_1.dequantize", "Q4_1.quantize",     "Q5_0.dequantize",  "Q5_0.quantize",
    "Q5_1.dequantize",  "Q5_1.quantize",   "Q8_0.dequantize",   "Q8_0.quantize",    "Q2_K.dequantize",
    "Q3_K.dequantize",  "Q4_K.dequantize", "Q4_K.quantize",     "Q5_K.dequantize",  "Q5_K.quantize",
    "Q6_K.dequantize",  "Q6_K.quantize",   "Q8_K.dequantize",   "Q8_K.quantize",    "IQ4_NL.dequantize",
    "IQ4_XS.dequantize", "MXFP4.dequantize", "MXFP4.quantize",
};

static void check_fixture(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/quant/%s", HEARTH_FIXTURES_DIR, name);
    size_t size = 0;
    unsigned char *buf = (unsigned char *)test_read_file(path, &size);
    CHECK_MSG(buf != NULL, "%s: cannot read fixture", path);
    if (!buf)
        return;
    uint32_t version, type, direction;
    uint64_t n;
    const size_t header = 4 + 3 * 4 + 8;
    if (size < header || memcmp(buf, "HQFX", 4) != 0) {
        CHECK_MSG(false, "%s: not a fixture file", name);
        free(buf);
        return;
    }
    memcpy(&version, buf + 4, 4);
    memcpy(&type, buf + 8, 4);
    memcpy(&direction, buf + 12, 4);
    memcpy(&n, buf + 16, 8);
    const quant_traits *t = quant_get_traits(type);
    uint64_t block_bytes = 0;
    bool sane = version == 1 && t && direction <= 1 && quant_bytes(type, n, &block_bytes) &&
                size == header + block_bytes + n * sizeof(float);
    CHECK_MSG(sane, "%s: malformed fixture", name);
    if (!sane) {
        free(buf);
        return;
    }
    const unsigned char *input = buf + header;
    const unsigned char *expected = input + (direction == 0 ? block_bytes : n * sizeof(float));
    size_t out_bytes = direction == 0 ? n * sizeof(float) : block_bytes;
    unsigned char *actual = calloc(1, out_bytes);
    /* The input is copied to a malloc'd buffer so block structs are aligned. */
    unsigned char *aligned_input = malloc(direction == 0 ? block_bytes : n * sizeof(float));
    memcpy(aligned_input, input, direction == 0 ? block_bytes : n * sizeof(float));
    if (direction == 0) {
        CHECK_MSG(t->dequantize != NULL, "%s: no dequantizer", t->name);
        if (t->dequantize)
            t->dequantize(aligned_input, (float *)actual, (int64_t)n);
    } else {
        CHECK_MSG(t->quantize != NULL, "%s: no quantizer", t->name);
        if (t->quantize)
            t->quantize((const float *)aligned_input, actual, (int64_t)n);
    }
    size_t first_diff = out_bytes, n_diff = 0;
    for (size_t i = 0; i < out_bytes; i++) {
        if (actual[i] != expected[i]) {
            if (first_diff == out_bytes)
                first_diff = i;
            n_diff++;
        }
    }
    CHECK_MSG(n_diff == 0, "%s: %zu of %zu bytes differ, first at byte %zu (element/block %zu): got 0x%02x, want 0x%02x",
              name, n_diff, out_bytes, first_diff,
              direction == 0 ? first_diff / 4 : first_diff / t->type_size,
              n_diff ? actual[first_diff] : 0, n_diff ? expected[first_diff] : 0);
    printf("  %-18s n=%-6llu %s\n", name, (unsigned long long)n, n_diff ? "DIFFERS" : "bit-exact");
    free(aligned_input);
    free(actual);
    free(buf);
}

/* Every half against a computation from the definition, and back. */
static void check_all_halves(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
        float got = fp16_to_fp32((uint16_t)h);
        bool ok;
        if (exp == 31) {
            ok = man == 0 ? isinf(got) && (signbit(got) != 0) == (sign != 0)
                          : isnan(got) && ((fp32_bits(got) >> 13) & 1023) == man;
        } else {
            double mag = exp == 0 ? ldexp(man, -24) : ldexp(1024 + man, (int)exp - 25);
            ok = (double)got == (sign ? -mag : mag) && (signbit(got) != 0) == (sign != 0);
        }
        ok = ok && fp32_to_fp16(got) == h; /* exact round trip, NaN payload included */
        bad += !ok;
    }
    CHECK_MSG(bad == 0, "%d of 65536 halves convert wrongly", bad);
}

static void check_quant_bytes(void)
{
    uint64_t bytes = 0;
    CHECK(quant_bytes(QUANT_Q4_K, 4096, &bytes) && bytes == 16 * 144);
    CHECK(quant_bytes(QUANT_F32, 7, &bytes) && bytes == 28);
    CHECK(quant_bytes(QUANT_MXFP4, 64, &bytes) && bytes == 34);
    CHECK(!quant_bytes(QUANT_Q4_K, 100, &bytes));            /* not a whole block */
    CHECK(!quant_bytes(4, 32, &bytes));                      /* a retired id */
    CHECK(!quant_bytes(QUANT_TYPE_COUNT, 32, &bytes));       /* past the table */
    CHECK(!quant_bytes(QUANT_F32, UINT64_MAX / 2, &bytes));  /* overflows */
    CHECK(quant_get_traits(31) == NULL && quant_get_traits(UINT32_MAX) == NULL);
    CHECK(strcmp(quant_get_traits(QUANT_IQ4_XS)->name, "IQ4_XS") == 0);
}

/* Sanity beside bit-exactness: quantize then dequantize random data and bound
 * the relative RMS error by what each format's bit budget allows. */
static void check_round_trip_error(void)
{
    static const struct {
        uint32_t type;
        double max_rel_rmse;
    } bounds[] = {
        {QUANT_F16, 1e-3},  {QUANT_BF16, 5e-3}, {QUANT_Q8_0, 1e-2}, {QUANT_Q8_K, 1e-2}, {QUANT_Q6_K, 3e-2},
        {QUANT_Q5_0, 6e-2}, {QUANT_Q5_1, 5e-2}, {QUANT_Q5_K, 5e-2}, {QUANT_Q4_0, 0.12}, {QUANT_Q4_1, 0.10},
        {QUANT_Q4_K, 0.10}, {QUANT_MXFP4, 0.20},
    };
    enum { N = 4096 };
    static float x[N], y[N];
    static unsigned char blocks[N * 4];
    uint64_t state = 12345;
    for (int i = 0; i < N; i++) { /* Box-Muller over a 64-bit LCG */
        double u1, u2;
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        u1 = ((state >> 11) + 1.0) / 9007199254740993.0;
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        u2 = (state >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2) * (1 + (i / 256) % 4));
    }
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        const quant_traits *t = quant_get_traits(bounds[b].type);
        t->quantize(x, blocks, N);
        t->dequantize(blocks, y, N);
        double err = 0, ref = 0;
        for (int i = 0; i < N; i++) {
            err += (double)(x[i] - y[i]) * (x[i] - y[i]);
            ref += (double)x[i] * x[i];
        }
        double rel = sqrt(err / ref);
        CHECK_MSG(rel < bounds[b].max_rel_rmse, "%s: relative RMS error %.4f >= %.4f", t->name, rel,
                  bounds[b].max_rel_rmse);
        printf("  %-6s round trip: relative RMS error %.5f\n", t->name, rel);
    }
}

int main(void)
{
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        check_fixture(fixtures[i]);
    check_all_halves();
    check_quant_bytes();
    check_round_trip_error();
    return test_finish("test_quant");
}

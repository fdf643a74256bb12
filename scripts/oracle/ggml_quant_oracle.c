/* A few lines that call ggml's own reference quantizers, so fixtures for the
 * formats the `gguf` Python package cannot produce come from llama.cpp itself,
 * and its CPU dot products, which hearth's are compared with. Built by
 * make_quant_fixtures.py against the oracle build; never part of hearth.
 *
 *   ggml_quant_oracle quantize   q4_K|q5_K|q6_K|q8_K N  < f32 values  > blocks
 *   ggml_quant_oracle dequantize q8_K N                 < blocks      > f32 values
 *   ggml_quant_oracle dot        q4_1|q5_1 N ROWS       < ROWS rows of N weights, then N f32 activations
 *                                                       > ROWS f32 dot products
 *
 * dot converts the activations the way llama.cpp's CPU backend does (into
 * the weight type's vec_dot_type, Q8_1 here) and calls its vec_dot. */
#include "ggml-cpu.h"
#include "ggml.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ggml-quants.h declares these with typed block pointers; the ABI is the same. */
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k);
void dequantize_row_q8_K(const void *x, float *y, int64_t k);

static const struct {
    const char *name;
    size_t block_bytes;
    void (*quantize)(const float *, void *, int64_t);
} formats[] = {
    {"q4_K", 144, quantize_row_q4_K_ref},
    {"q5_K", 176, quantize_row_q5_K_ref},
    {"q6_K", 210, quantize_row_q6_K_ref},
    {"q8_K", 292, quantize_row_q8_K_ref},
};

static int dot(const char *qname, int64_t n, int64_t rows)
{
    enum ggml_type type = strcmp(qname, "q4_1") == 0 ? GGML_TYPE_Q4_1 : strcmp(qname, "q5_1") == 0 ? GGML_TYPE_Q5_1
                                                                                                  : GGML_TYPE_COUNT;
    if (type == GGML_TYPE_COUNT || n <= 0 || rows <= 0)
        return 2;
    ggml_cpu_init();
    const struct ggml_type_traits_cpu *cpu = ggml_get_type_traits_cpu(type);
    size_t row_bytes = ggml_row_size(type, n);
    unsigned char *w = malloc(row_bytes * (size_t)rows), *act = malloc(ggml_row_size(cpu->vec_dot_type, n));
    float *x = malloc((size_t)n * sizeof *x), *out = malloc((size_t)rows * sizeof *out);
    if (fread(w, row_bytes, (size_t)rows, stdin) != (size_t)rows || fread(x, sizeof *x, (size_t)n, stdin) != (size_t)n)
        return 1;
    ggml_get_type_traits_cpu(cpu->vec_dot_type)->from_float(x, act, n);
    for (int64_t r = 0; r < rows; r++)
        cpu->vec_dot((int)n, &out[r], 0, w + (size_t)r * row_bytes, 0, act, 0, 1);
    fwrite(out, sizeof *out, (size_t)rows, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "dot") == 0)
        return dot(argv[2], atoll(argv[3]), atoll(argv[4]));
    if (argc != 4)
        return 2;
    int64_t n = atoll(argv[3]);
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        if (strcmp(argv[2], formats[f].name) != 0)
            continue;
        size_t block_bytes = formats[f].block_bytes * (size_t)(n / 256);
        float *values = calloc((size_t)n, sizeof *values);
        /* Zeroed: ggml leaves some fields unwritten for all-zero blocks. */
        void *blocks = calloc(1, block_bytes);
        if (strcmp(argv[1], "quantize") == 0) {
            if (fread(values, sizeof *values, (size_t)n, stdin) != (size_t)n)
                return 1;
            formats[f].quantize(values, blocks, n);
            fwrite(blocks, 1, block_bytes, stdout);
        } else if (strcmp(argv[1], "dequantize") == 0 && strcmp(argv[2], "q8_K") == 0) {
            if (fread(blocks, 1, block_bytes, stdin) != block_bytes)
                return 1;
            dequantize_row_q8_K(blocks, values, n);
            fwrite(values, sizeof *values, (size_t)n, stdout);
        } else {
            return 2;
        }
        return 0;
    }
    return 2;
}

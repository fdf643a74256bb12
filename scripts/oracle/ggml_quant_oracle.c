/* A few lines that call ggml's own reference quantizers, so fixtures for the
 * formats the `gguf` Python package cannot produce come from llama.cpp itself.
 * Built by make_quant_fixtures.py against the oracle build; never part of
 * hearth.
 *
 *   ggml_quant_oracle quantize   q4_K|q5_K|q6_K|q8_K N  < f32 values  > blocks
 *   ggml_quant_oracle dequantize q8_K N                 < blocks      > f32 values */
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

int main(int argc, char **argv)
{
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

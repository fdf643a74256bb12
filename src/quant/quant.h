/* Weight block formats, as GGUF/ggml numbers and lays them out.
 *
 * A tensor row of n elements of a block format is n / block_size blocks of
 * type_size bytes each. The table maps every type id a GGUF file may carry to
 * its geometry and to its scalar reference converters; a type the engine cannot
 * convert yet still has its geometry, so files using it can be validated and
 * described. The reference converters are the ground truth for every fast
 * kernel in ops/: they are verified bit-exact against independent
 * implementations (tests/test_quant.c). */
#ifndef HEARTH_QUANT_H
#define HEARTH_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The numbering is ggml's and is part of the GGUF format. Gaps are ids that
 * ggml retired; a file using them is rejected. */
typedef enum quant_type {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q8_1 = 9,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15,
    QUANT_IQ2_XXS = 16,
    QUANT_IQ2_XS = 17,
    QUANT_IQ3_XXS = 18,
    QUANT_IQ1_S = 19,
    QUANT_IQ4_NL = 20,
    QUANT_IQ3_S = 21,
    QUANT_IQ2_S = 22,
    QUANT_IQ4_XS = 23,
    QUANT_I8 = 24,
    QUANT_I16 = 25,
    QUANT_I32 = 26,
    QUANT_I64 = 27,
    QUANT_F64 = 28,
    QUANT_IQ1_M = 29,
    QUANT_BF16 = 30,
    QUANT_TQ1_0 = 34,
    QUANT_TQ2_0 = 35,
    QUANT_MXFP4 = 39,
    QUANT_NVFP4 = 40,
    QUANT_Q1_0 = 41,
    QUANT_TYPE_COUNT = 42 /* one past the largest id */
} quant_type;

/* Converts n elements (a multiple of block_size) between blocks and f32. */
typedef void (*quant_dequantize_fn)(const void *blocks, float *out, int64_t n);
typedef void (*quant_quantize_fn)(const float *in, void *blocks, int64_t n);

typedef struct quant_traits {
    const char *name;    /* as ggml spells it: "Q4_K", "F16" */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
    quant_dequantize_fn dequantize; /* NULL: not supported yet */
    quant_quantize_fn quantize;     /* NULL: no reference quantizer */
} quant_traits;

/* NULL for an id that is not a known type. */
const quant_traits *quant_get_traits(uint32_t type);

/* Bytes taken by n elements of a type; false when the type is unknown, n is not
 * a multiple of the block size, or the size overflows. */
bool quant_bytes(uint32_t type, uint64_t n, uint64_t *bytes);

#endif

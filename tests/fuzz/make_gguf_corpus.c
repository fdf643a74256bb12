/* Writes the GGUF fuzzer's seed corpus with our own writer: valid files that
 * between them use every value type, nested arrays, several tensor types and
 * shapes, both versions and a custom alignment, plus a few broken ones (cut
 * short, bad magic) so the fuzzer starts on both sides of every check.
 *
 *   make_gguf_corpus DIR */
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char tensor_bytes[4096];

static int save(const char *dir, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
        fprintf(stderr, "make_gguf_corpus: cannot write %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

/* Builds one file; `variant` chooses which features it uses. */
static gguf_writer *build(int variant)
{
    hearth_error err;
    gguf_writer *w = gguf_writer_create();
    gguf_writer_set_version(w, variant % 2 ? 2 : 3);
    if (variant == 3)
        gguf_writer_set_alignment(w, 64, &err);
    gguf_writer_add_string(w, "general.architecture", variant < 4 ? "llama" : "gemma3", &err);
    gguf_writer_add_uint(w, "llama.context_length", GGUF_TYPE_UINT32, 4096, &err);
    if (variant == 0 || variant == 5) {
        gguf_writer_add_uint(w, "u8", GGUF_TYPE_UINT8, 1, &err);
        gguf_writer_add_int(w, "i8", GGUF_TYPE_INT8, -1, &err);
        gguf_writer_add_uint(w, "u16", GGUF_TYPE_UINT16, 2, &err);
        gguf_writer_add_int(w, "i16", GGUF_TYPE_INT16, -2, &err);
        gguf_writer_add_int(w, "i32", GGUF_TYPE_INT32, -3, &err);
        gguf_writer_add_uint(w, "u64", GGUF_TYPE_UINT64, 4, &err);
        gguf_writer_add_int(w, "i64", GGUF_TYPE_INT64, -4, &err);
        gguf_writer_add_float(w, "f32", GGUF_TYPE_FLOAT32, 0.5, &err);
        gguf_writer_add_float(w, "f64", GGUF_TYPE_FLOAT64, 0.25, &err);
        gguf_writer_add_bool(w, "b", true, &err);
    }
    if (variant == 1 || variant == 5) {
        static const char *const tokens[] = {"<unk>", "<s>", "</s>", "▁the", "<0x0A>", ""};
        static const float scores[] = {0, 0, 0, -1.5f, -2, -3};
        static const int32_t types[] = {2, 3, 3, 1, 6, 5};
        gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", &err);
        gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, 6, &err);
        gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 6, &err);
        gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 6, &err);
    }
    if (variant == 2 || variant == 5) {
        static const uint16_t row[3] = {1, 2, 3};
        static const gguf_string strs[2] = {{"x", 1}, {"yz", 2}};
        gguf_value items[2] = {
            {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_UINT16, .count = 3, .raw = (const uint8_t *)row}},
            {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_STRING, .count = 2, .strings = strs}},
        };
        gguf_value nested = {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_ARRAY, .count = 2, .arrays = items}};
        gguf_writer_add_value(w, "nested", &nested, &err);
    }
    static const struct {
        const char *name;
        uint32_t type;
        uint32_t n_dims;
        int64_t ne[4];
    } tensors[] = {
        {"token_embd.weight", QUANT_Q8_0, 2, {64, 3}},
        {"blk.0.attn_norm.weight", QUANT_F32, 1, {64}},
        {"blk.0.attn_q.weight", QUANT_Q4_K, 2, {256, 2}},
        {"blk.0.ffn_down.weight", QUANT_Q6_K, 2, {256, 1}},
        {"blk.0.ffn_up.weight", QUANT_BF16, 3, {8, 2, 2}},
        {"blk.0.exps.weight", QUANT_MXFP4, 4, {32, 1, 2, 2}},
        {"output.weight", QUANT_F16, 2, {16, 4}},
    };
    int first = variant == 4 ? 0 : variant % 7, count = variant == 4 ? 7 : 2;
    for (int k = 0; k < count; k++) {
        int i = (first + k) % 7;
        uint64_t elements = 1, bytes;
        for (uint32_t d = 0; d < tensors[i].n_dims; d++)
            elements *= (uint64_t)tensors[i].ne[d];
        quant_bytes(tensors[i].type, elements, &bytes);
        gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims, tensors[i].ne, tensor_bytes,
                               bytes, &err);
    }
    return w;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_gguf_corpus DIR\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof tensor_bytes; i++)
        tensor_bytes[i] = (unsigned char)(i * 37 + 11);
    int rc = 0;
    for (int variant = 0; variant < 8; variant++) {
        gguf_writer *w = build(variant);
        void *mem;
        size_t size;
        hearth_error err;
        if (gguf_writer_write_memory(w, &mem, &size, &err) != HEARTH_OK) {
            fprintf(stderr, "make_gguf_corpus: variant %d: %s\n", variant, err.message);
            return 1;
        }
        char name[64];
        snprintf(name, sizeof name, "valid-%d.gguf", variant);
        rc |= save(argv[1], name, mem, size);
        if (variant == 5) { /* the richest file, broken in a few ways */
            rc |= save(argv[1], "cut-header.gguf", mem, 40);
            rc |= save(argv[1], "cut-data.gguf", mem, size - 1);
            memcpy(mem, "GGUG", 4);
            rc |= save(argv[1], "bad-magic.gguf", mem, size);
        }
        free(mem);
        gguf_writer_free(w);
    }
    return rc ? 1 : 0;
}

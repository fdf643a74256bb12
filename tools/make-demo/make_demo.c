/* Writes build/demo.gguf: a tiny model in Llama's exact tensor layout, with
 * random weights from a fixed seed, quantized the way published files are
 * (Q8_0 embeddings, Q4_K/Q6_K layers, F32 norms). It exists so the README's
 * first command has a real file to describe before any model is downloaded,
 * and it goes through the same writer and quantizers the tools use. */
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEMO_EMBD = 256,
    DEMO_FF = 512,
    DEMO_LAYERS = 2,
    DEMO_HEADS = 4,
    DEMO_KV_HEADS = 2,
    DEMO_HEAD_DIM = DEMO_EMBD / DEMO_HEADS,
    DEMO_VOCAB = 3 + 256, /* <unk> <s> </s> and the 256 byte tokens */
};

/* Fixed-seed xorshift: the demo file is the same on every machine. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float rng_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* Every tensor's bytes live until the file is written; they are kept here. */
static void *owned[64];
static int n_owned;

static int add_tensor(gguf_writer *w, const char *name, uint32_t type, int64_t ne0, int64_t ne1, float scale)
{
    hearth_error err = {0};
    const quant_traits *traits = quant_get_traits(type);
    int64_t n = ne0 * ne1;
    float *values = malloc((size_t)n * sizeof *values);
    uint64_t bytes;
    if (!values || !quant_bytes(type, (uint64_t)n, &bytes) || n_owned == (int)(sizeof owned / sizeof owned[0])) {
        fprintf(stderr, "make-demo: %s: cannot size the tensor\n", name);
        free(values);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        values[i] = type == QUANT_F32 && ne1 == 1 ? 1.0f + 0.1f * rng_uniform() : scale * rng_uniform();
    void *data = values;
    if (type != QUANT_F32) {
        if (!traits->quantize) {
            fprintf(stderr, "make-demo: %s: no reference quantizer for %s\n", name, traits->name);
            free(values);
            return -1;
        }
        data = malloc((size_t)bytes);
        if (!data) {
            free(values);
            return -1;
        }
        traits->quantize(values, data, n);
        free(values);
    }
    owned[n_owned++] = data;
    int64_t ne[2] = {ne0, ne1};
    if (gguf_writer_add_tensor(w, name, type, ne1 == 1 ? 1 : 2, ne, data, bytes, &err) != HEARTH_OK) {
        fprintf(stderr, "make-demo: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int add_metadata(gguf_writer *w)
{
    hearth_error err = {0};
    static char byte_names[256][8];
    const char *tokens[DEMO_VOCAB];
    float scores[DEMO_VOCAB];
    int32_t types[DEMO_VOCAB];
    tokens[0] = "<unk>", tokens[1] = "<s>", tokens[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3; /* unknown, control, control */
    for (int b = 0; b < 256; b++) {
        snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
        tokens[3 + b] = byte_names[b];
        types[3 + b] = 6; /* byte */
    }
    for (int i = 0; i < DEMO_VOCAB; i++)
        scores[i] = 0.0f;

    hearth_status st = HEARTH_OK;
#define ADD(call) \
    if (st == HEARTH_OK) st = (call)
    ADD(gguf_writer_add_string(w, "general.architecture", "llama", &err));
    ADD(gguf_writer_add_string(w, "general.name", "hearth demo (random weights)", &err));
    ADD(gguf_writer_add_uint(w, "general.file_type", GGUF_TYPE_UINT32, 15 /* mostly Q4_K_M */, &err));
    ADD(gguf_writer_add_uint(w, "llama.context_length", GGUF_TYPE_UINT32, 2048, &err));
    ADD(gguf_writer_add_uint(w, "llama.embedding_length", GGUF_TYPE_UINT32, DEMO_EMBD, &err));
    ADD(gguf_writer_add_uint(w, "llama.feed_forward_length", GGUF_TYPE_UINT32, DEMO_FF, &err));
    ADD(gguf_writer_add_uint(w, "llama.block_count", GGUF_TYPE_UINT32, DEMO_LAYERS, &err));
    ADD(gguf_writer_add_uint(w, "llama.attention.head_count", GGUF_TYPE_UINT32, DEMO_HEADS, &err));
    ADD(gguf_writer_add_uint(w, "llama.attention.head_count_kv", GGUF_TYPE_UINT32, DEMO_KV_HEADS, &err));
    ADD(gguf_writer_add_uint(w, "llama.rope.dimension_count", GGUF_TYPE_UINT32, DEMO_HEAD_DIM, &err));
    ADD(gguf_writer_add_float(w, "llama.rope.freq_base", GGUF_TYPE_FLOAT32, 10000.0, &err));
    ADD(gguf_writer_add_float(w, "llama.attention.layer_norm_rms_epsilon", GGUF_TYPE_FLOAT32, 1e-5, &err));
    ADD(gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", &err));
    ADD(gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, DEMO_VOCAB, &err));
    ADD(gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, DEMO_VOCAB, &err));
    ADD(gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, DEMO_VOCAB, &err));
    ADD(gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", GGUF_TYPE_UINT32, 1, &err));
    ADD(gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", GGUF_TYPE_UINT32, 2, &err));
    ADD(gguf_writer_add_uint(w, "tokenizer.ggml.unknown_token_id", GGUF_TYPE_UINT32, 0, &err));
#undef ADD
    if (st != HEARTH_OK)
        fprintf(stderr, "make-demo: %s\n", err.message);
    return st == HEARTH_OK ? 0 : -1;
}

/* One transformer block of the Llama layout: name, type, shape, init scale. */
static const struct layer_tensor {
    const char *suffix;
    uint32_t type;
    int64_t ne0, ne1;
    float scale;
} layer_tensors[] = {
    {"attn_norm.weight", QUANT_F32, DEMO_EMBD, 1, 1.0f},
    {"attn_q.weight", QUANT_Q4_K, DEMO_EMBD, DEMO_EMBD, 0.06f},
    {"attn_k.weight", QUANT_Q4_K, DEMO_EMBD, DEMO_KV_HEADS * DEMO_HEAD_DIM, 0.06f},
    {"attn_v.weight", QUANT_Q6_K, DEMO_EMBD, DEMO_KV_HEADS * DEMO_HEAD_DIM, 0.06f},
    {"attn_output.weight", QUANT_Q4_K, DEMO_EMBD, DEMO_EMBD, 0.06f},
    {"ffn_norm.weight", QUANT_F32, DEMO_EMBD, 1, 1.0f},
    {"ffn_gate.weight", QUANT_Q4_K, DEMO_EMBD, DEMO_FF, 0.06f},
    {"ffn_up.weight", QUANT_Q4_K, DEMO_EMBD, DEMO_FF, 0.06f},
    {"ffn_down.weight", QUANT_Q6_K, DEMO_FF, DEMO_EMBD, 0.04f},
};

static int add_tensors(gguf_writer *w)
{
    if (add_tensor(w, "token_embd.weight", QUANT_Q8_0, DEMO_EMBD, DEMO_VOCAB, 0.05f) != 0)
        return -1;
    for (int l = 0; l < DEMO_LAYERS; l++) {
        for (size_t k = 0; k < sizeof layer_tensors / sizeof layer_tensors[0]; k++) {
            const struct layer_tensor *t = &layer_tensors[k];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, t->suffix);
            if (add_tensor(w, name, t->type, t->ne0, t->ne1, t->scale) != 0)
                return -1;
        }
    }
    return add_tensor(w, "output_norm.weight", QUANT_F32, DEMO_EMBD, 1, 1.0f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hearth-make-demo OUT.gguf\n");
        return 2;
    }
    gguf_writer *w = gguf_writer_create();
    hearth_error err = {0};
    int rc = w && add_metadata(w) == 0 && add_tensors(w) == 0 ? 0 : -1;
    if (rc == 0 && gguf_writer_write(w, argv[1], &err) != HEARTH_OK) {
        fprintf(stderr, "make-demo: %s\n", err.message);
        rc = -1;
    }
    gguf_writer_free(w);
    for (int i = 0; i < n_owned; i++)
        free(owned[i]);
    return rc == 0 ? 0 : 1;
}

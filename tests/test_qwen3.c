/* Qwen 3 against llama.cpp (the oracle) on tiny random-weight models. The
 * models come from scripts/oracle/make_qwen3_model.py (CTest runs it first,
 * into the build tree: the qwen3_tiny_models step); the fixtures in
 * tests/fixtures/qwen3/ from scripts/oracle/make_qwen3_fixtures.sh, which ran
 * llama.cpp on the same generator's output. Each fixture records the CRC-32 of
 * its model's tensor data, checked first, so a drifting generator (a numpy or
 * gguf change) reads as that and not as a wrong forward pass.
 *
 * Per variant (F16, Q8_0, Q4_K_M), random token ids teacher-forced twice: 512
 * in batches of 64, as prefill runs them, against llama.cpp's batch of 512;
 * and 256 one per call, as decode runs them, against llama.cpp's decode.
 *
 * Why the thresholds are what they are. With int8 activations (Q8_0, Q4_K_M),
 * any last-bit difference between two engines (a sum taken in another order)
 * now and then moves an activation across a rounding boundary, a whole int8
 * step, so their logits settle about 0.3 % of the logit scale apart however
 * exact each is; F16 stays ten times closer. llama.cpp does not agree with
 * itself better than that: its batch and decode paths on these models
 * (first 256 positions of the two fixtures):
 *     F16 top-1 99.2 %, |dlogit| max 0.07, mean 0.006
 *     Q8_0 top-1 98.8 %, max 0.60, mean 0.047
 *     Q4_K_M top-1 98.4 %, max 0.65, mean 0.061
 * hearth against llama.cpp, when written (AVX-512 kernels, batch / decode):
 *     F16 top-1 100 / 100 %, max 0.017 / 0.039, mean 0.0019 / 0.0039
 *     Q8_0 top-1 99.6 / 100 %, max 0.53 / 0.34, mean 0.022 / 0.020
 *     Q4_K_M top-1 99.2 / 98.4 %, max 0.61 / 0.62, mean 0.049 / 0.051
 * and with HEARTH_CPU=scalar, whose sums run in another order, Q8_0 98.4 /
 * 99.2 % and Q4_K_M 99.0 / 97.7 %, the |dlogit| figures alike. The positions
 * where top-1 differs are near-ties, and how many there are is luck. So plain
 * top-1 is held to 99 % for F16 but to 96 % for the int8 variants, and the
 * sharper test is top-1 where llama.cpp's choice leads by more than the
 * largest |dlogit| allowed: at least 99 % (measured 100 % everywhere). The
 * |dlogit| bounds leave about twice the measured values. A real defect moves
 * logits by whole units and fails the bounds many times over (measured: RoPE
 * base 10000, no k norm, gate and up swapped, the attention scale off by
 * sqrt(2): max |dlogit| 7 to 16; q norm without its weight: 2.3 to 2.8).
 *
 * Then bad files: a missing or inconsistent hyper-parameter, a missing tensor
 * and an unsupported RoPE scaling each fail to load with a message naming
 * the key or tensor. */
#include "test.h"
#include "topk_fixture.h"

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "runtime/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL_DIR HEARTH_TEST_TMPDIR "/qwen3"
#define MIN_TOKENS 256
#define MIN_CLEAR_TOP1 0.99

/* For batches and decode alike; the clear margin is max_delta. */
typedef struct variant_bounds {
    const char *name;
    double min_top1, max_delta, max_mean_delta;
} variant_bounds;

static const variant_bounds variants[] = {
    {"f16", 0.99, 0.08, 0.008},
    {"q8_0", 0.96, 0.8, 0.05},
    {"q4_k_m", 0.96, 1.2, 0.1},
};

/* CRC-32 as zlib computes it (the generator's weights-crc32). */
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, uint64_t n)
{
    crc = ~crc;
    for (uint64_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t weights_crc32(const gguf_file *f)
{
    uint32_t crc = 0;
    for (int64_t i = 0; i < gguf_tensor_count(f); i++)
        crc = crc32_update(crc, gguf_tensor_at(f, i)->data, gguf_tensor_at(f, i)->size);
    return crc;
}

static bool fixture_crc32(const char *path, uint32_t *crc)
{
    char *text = test_read_file(path, NULL);
    const char *line = text ? strstr(text, "\nweights_crc32 ") : NULL;
    bool found = line && sscanf(line, "\nweights_crc32 %8x", crc) == 1;
    free(text);
    return found;
}

static void check_stats(const variant_bounds *b, const char *mode, topk_stats st)
{
    double top1 = st.positions ? (double)st.agree / st.positions : 0.0;
    double clear_top1 = st.clear ? (double)st.clear_agree / st.clear : 0.0;
    printf("  %-6s %-6s top-1 %d/%d = %.2f %%, where llama.cpp leads by >= %.2f %d/%d = %.2f %%; "
           "|dlogit| over its top-%d: max %.4f, mean %.4f\n",
           b->name, mode, st.agree, st.positions, 100.0 * top1, b->max_delta, st.clear_agree, st.clear,
           100.0 * clear_top1, TOPK_FIXTURE_K, st.max_delta, st.mean_delta);
    CHECK_MSG(top1 >= b->min_top1, "%s %s: top-1 %.4f below %.2f", b->name, mode, top1, b->min_top1);
    CHECK_MSG(st.clear >= st.positions / 2 && clear_top1 >= MIN_CLEAR_TOP1, "%s %s: clear-margin top-1 %d/%d",
              b->name, mode, st.clear_agree, st.clear);
    CHECK_MSG(st.max_delta <= b->max_delta, "%s %s: max |dlogit| %.4f above %.3f", b->name, mode, st.max_delta,
              b->max_delta);
    CHECK_MSG(st.mean_delta <= b->max_mean_delta, "%s %s: mean |dlogit| %.4f above %.3f", b->name, mode,
              st.mean_delta, b->max_mean_delta);
}

static void check_variant(threadpool *pool, const variant_bounds *b)
{
    char model_path[4096], fixture[4096], decode_fixture[4096];
    snprintf(model_path, sizeof model_path, MODEL_DIR "/qwen3-tiny-%s.gguf", b->name);
    snprintf(fixture, sizeof fixture, HEARTH_FIXTURES_DIR "/qwen3/topk-%s.txt", b->name);
    snprintf(decode_fixture, sizeof decode_fixture, HEARTH_FIXTURES_DIR "/qwen3/decode-%s.txt", b->name);
    hearth_error err = {0};
    model *m = NULL;
    session *s = NULL;
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        session_create(m, pool, &(session_params){.n_ctx = 512}, &s, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        model_free(m);
        return;
    }
    uint32_t want = 0, got = weights_crc32(model_gguf(m));
    CHECK_MSG(fixture_crc32(fixture, &want), "%s: no weights_crc32 line", fixture);
    CHECK_MSG(got == want,
              "%s: tensor data CRC-32 %08x, but the fixture was made from %08x: the generator's output changed "
              "(numpy or gguf?); regenerate the fixtures with scripts/oracle/make_qwen3_fixtures.sh",
              model_path, got, want);
    if (got == want) {
        int32_t n_vocab = model_n_vocab(m);
        check_stats(b, "batch", topk_compare(s, n_vocab, fixture, MIN_TOKENS, TOPK_FIXTURE_ROWS, b->max_delta));
        check_stats(b, "decode", topk_compare(s, n_vocab, decode_fixture, MIN_TOKENS, 1, b->max_delta));
    }
    session_free(s);
    model_free(m);
}

/* ---- bad files: the F16 model rewritten with one thing wrong ---- */

typedef struct damage {
    const char *drop_key, *drop_tensor;
    const char *set_key; /* replaced or added */
    gguf_value value;
    const char *expect; /* in the load error */
} damage;

static void check_damaged(const gguf_file *src, const damage *d)
{
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    hearth_status st = w ? HEARTH_OK : HEARTH_ERR_NOMEM;
    for (int64_t i = 0; st == HEARTH_OK && i < gguf_kv_count(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        bool replaced = d->set_key && strcmp(kv->key, d->set_key) == 0;
        if ((!d->drop_key || strcmp(kv->key, d->drop_key) != 0) && !replaced)
            st = gguf_writer_add_value(w, kv->key, &kv->value, &err);
    }
    if (st == HEARTH_OK && d->set_key)
        st = gguf_writer_add_value(w, d->set_key, &d->value, &err);
    for (int64_t i = 0; st == HEARTH_OK && i < gguf_tensor_count(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        if (!d->drop_tensor || strcmp(t->name, d->drop_tensor) != 0)
            st = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, &err);
    }
    const char *path = MODEL_DIR "/damaged.gguf";
    if (st == HEARTH_OK)
        st = gguf_writer_write(w, path, &err);
    gguf_writer_free(w);
    CHECK_MSG(st == HEARTH_OK, "writing the damaged model: %s", err.message);
    if (st != HEARTH_OK)
        return;
    model *m = NULL;
    st = model_load(path, &m, &err);
    CHECK_MSG(st != HEARTH_OK && strstr(err.message, d->expect) != NULL, "expected a load error naming '%s', got: %s",
              d->expect, st == HEARTH_OK ? "no error" : err.message);
    model_free(m);
    unlink(path);
}

static void check_bad_files(void)
{
    gguf_file *src = NULL;
    hearth_error err = {0};
    if (gguf_open(MODEL_DIR "/qwen3-tiny-f16.gguf", &src, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
#define U32(v) {.type = GGUF_TYPE_UINT32, .as.u64 = (v)}
#define STR(s) {.type = GGUF_TYPE_STRING, .as.str = {(s), sizeof(s) - 1}}
    const damage cases[] = {
        {.drop_key = "qwen3.attention.layer_norm_rms_epsilon",
         .expect = "qwen3.attention.layer_norm_rms_epsilon: missing"},
        {.drop_key = "qwen3.embedding_length", .expect = "qwen3.embedding_length: missing"},
        {.set_key = "qwen3.attention.head_count_kv", .value = U32(3), .expect = "qwen3.attention.head_count_kv"},
        {.set_key = "qwen3.attention.head_count_kv", .value = U32(0), .expect = "qwen3.attention.head_count_kv"},
        {.set_key = "qwen3.attention.key_length", .value = U32(63), .expect = "qwen3.attention.key_length"},
        {.set_key = "qwen3.attention.value_length", .value = U32(32), .expect = "qwen3.attention.value_length"},
        {.set_key = "qwen3.block_count", .value = U32(100000), .expect = "qwen3: implausible sizes"},
        {.set_key = "qwen3.embedding_length", .value = STR("256"), .expect = "qwen3.embedding_length"},
        {.set_key = "qwen3.rope.scaling.type", .value = STR("yarn"), .expect = "qwen3.rope.scaling.type"},
        {.set_key = "qwen3.rope.dimension_count", .value = U32(32), .expect = "qwen3.rope.dimension_count"},
        {.set_key = "qwen3.feed_forward_length", .value = U32(384), .expect = "blk.0.ffn_gate.weight"},
        {.drop_tensor = "blk.1.attn_k_norm.weight", .expect = "blk.1.attn_k_norm.weight: missing"},
        {.drop_tensor = "output_norm.weight", .expect = "output_norm.weight: missing"},
        {.set_key = "tokenizer.ggml.merges", .value = U32(1), .expect = "tokenizer.ggml.merges"},
    };
#undef U32
#undef STR
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_damaged(src, &cases[i]);
    gguf_close(src);
}

int main(void)
{
    if (access(MODEL_DIR "/qwen3-tiny-q4_k_m.gguf", R_OK) != 0)
        TEST_SKIP("no tiny Qwen 3 models in " MODEL_DIR ": CTest writes them first (the qwen3_tiny_models step, "
                  "python3 with numpy and gguf; scripts/setup.sh installs them), or run "
                  "python3 scripts/oracle/make_qwen3_model.py tiny " MODEL_DIR);
    hearth_error err = {0};
    threadpool *pool = NULL;
    if (threadpool_create(threadpool_default_threads(), &pool, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return test_finish("test_qwen3");
    }
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++)
        check_variant(pool, &variants[i]);
    check_bad_files();
    threadpool_free(pool);
    return test_finish("test_qwen3");
}

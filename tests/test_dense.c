/* The dense architectures (Qwen 3, Qwen 2, Llama 3) and Qwen 3 MoE against llama.cpp (the
 * oracle) on tiny random-weight models: `test_dense ARCH`. The models come
 * from scripts/oracle/make_dense_model.py (CTest runs it first, into the build
 * tree: the dense_tiny_models step); the fixtures in tests/fixtures/ARCH/ from
 * scripts/oracle/make_dense_fixtures.sh, which ran llama.cpp on the same
 * generator's output. Each fixture records the CRC-32 of its model's tensor
 * data, checked first, so a drifting generator (a numpy or gguf change) reads
 * as that and not as a wrong forward pass. The three models differ in what
 * they switch on: Qwen 3's q/k norms, Qwen 2's q/k/v biases and one KV head
 * for eight query heads, Llama's rope_freqs, pairwise RoPE and untied output;
 * Qwen 3 MoE's mixture of 16 experts with 4 chosen per token (its own bounds:
 * see moe_variants).
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
 * itself better than that: its batch and decode paths on the Qwen 3 models
 * (first 256 positions of the two fixtures):
 *     F16 top-1 99.2 %, |dlogit| max 0.07, mean 0.006
 *     Q8_0 top-1 98.8 %, max 0.60, mean 0.047
 *     Q4_K_M top-1 98.4 %, max 0.65, mean 0.061
 * hearth against llama.cpp (AVX-512 kernels, batch / decode, top-1 and max
 * |dlogit|), Qwen 3 / Qwen 2 / Llama:
 *     F16     100/99.6 % 0.017/0.039   100/100 % 0.007/0.014   100/100 % 0.016/0.033
 *     Q8_0    99.2/99.2 % 0.53/0.49    100/100 % 0.11/0.17     99.4/98.4 % 0.28/0.42
 *     Q4_K_M  99.2/99.2 % 0.55/0.58    100/100 % 0.12/0.21     100/99.2 % 0.56/0.48
 * and on Qwen 3 with HEARTH_CPU=scalar, whose sums run in another order, Q8_0 98.4 /
 * 99.2 % and Q4_K_M 99.0 / 97.7 %, the |dlogit| figures alike. The positions
 * where top-1 differs are near-ties, and how many there are is luck. So plain
 * top-1 is held to 99 % for F16 but to 96 % for the int8 variants, and the
 * sharper test is top-1 where llama.cpp's choice leads by more than the
 * largest |dlogit| allowed: at least 99 % (measured 100 % everywhere). The
 * |dlogit| bounds leave about twice the measured values. A real defect moves
 * logits by whole units and fails the bounds many times over (measured: RoPE
 * base 10000, no k norm, gate and up swapped, the attention scale off by
 * sqrt(2): max |dlogit| 7 to 16; q norm without its weight: 2.3 to 2.8;
 * Llama with NEOX RoPE: 1.7 and 17 checks failed; without rope_freqs: 0.8 to
 * 1.5 and 9 failed; Qwen 2 without the k bias: 4 failed, without the v
 * bias: 24).
 *
 * Then bad files: a missing or inconsistent hyper-parameter, a missing tensor
 * and an unsupported RoPE scaling each fail to load with a message naming
 * the key or tensor. */
#include "test.h"
#include "topk_model.h"

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "runtime/session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL_DIR HEARTH_TEST_TMPDIR "/dense"
#define MIN_TOKENS 256

/* For batches and decode alike; the clear margin is the max |dlogit| bound. */
static const topk_bounds variants[] = {
    {"f16", 0.99, 0.08, 0.08, 0.008},
    {"q8_0", 0.96, 0.8, 0.8, 0.05},
    {"q4_k_m", 0.96, 1.2, 1.2, 0.1},
};
/* A mixture of experts adds one more kind of near-tie: the router's k-th and
 * (k+1)-th scores within a rounding of each other, where the two engines
 * choose different experts and that position's logits move by up to ~0.6
 * (once in 768 F16 positions, measured). So the max |dlogit| bound is looser,
 * the mean bounds as tight as for the dense models. */
static const topk_bounds moe_variants[] = {
    {"f16", 0.99, 1.0, 1.0, 0.008},
    {"q8_0", 0.96, 1.2, 1.2, 0.05},
    {"q4_k_m", 0.96, 1.2, 1.2, 0.1},
};

static void check_variant(threadpool *pool, const char *arch, const topk_bounds *b)
{
    char model_path[4096], fixture[4096], decode_fixture[4096];
    snprintf(model_path, sizeof model_path, MODEL_DIR "/%s-tiny-%s.gguf", arch, b->name);
    snprintf(fixture, sizeof fixture, HEARTH_FIXTURES_DIR "/%s/topk-%s.txt", arch, b->name);
    snprintf(decode_fixture, sizeof decode_fixture, HEARTH_FIXTURES_DIR "/%s/decode-%s.txt", arch, b->name);
    topk_check_model(pool, arch, model_path, fixture, decode_fixture, MIN_TOKENS, b,
                     "scripts/oracle/make_dense_fixtures.sh");
}

/* 60 shared tokens, then 40 that differ; then the last token evaluated again. */
static void check_prefix_reuse(threadpool *pool, const char *arch)
{
    char path[4096];
    snprintf(path, sizeof path, MODEL_DIR "/%s-tiny-q8_0.gguf", arch);
    topk_check_prefix_reuse(pool, arch, path, 60, 40, 3, 5, true);
}

/* ---- bad files: the F16 model rewritten with one thing wrong ---- */

/* Key and tensor names and the expected message may hold one %s: the arch. */
typedef model_damage damage;

static const char *with_arch(const char *format, const char *arch, char *buf, size_t size)
{
    if (!format)
        return NULL;
    snprintf(buf, size, format, arch);
    return buf;
}

static void check_damaged(const gguf_file *src, const char *arch, const damage *d)
{
    char drop_key[128], drop_tensor[128], set_key[128], expect[256], path[4096];
    const damage named = {
        .drop_key = with_arch(d->drop_key, arch, drop_key, sizeof drop_key),
        .drop_tensor = with_arch(d->drop_tensor, arch, drop_tensor, sizeof drop_tensor),
        .set_key = with_arch(d->set_key, arch, set_key, sizeof set_key),
        .value = d->value,
        .expect = with_arch(d->expect, arch, expect, sizeof expect),
    };
    snprintf(path, sizeof path, MODEL_DIR "/damaged-%s.gguf", arch);
    model_check_damaged(src, arch, path, &named);
}

#define U32(v) {.type = GGUF_TYPE_UINT32, .as.u64 = (v)}
#define STR(s) {.type = GGUF_TYPE_STRING, .as.str = {(s), sizeof(s) - 1}}
static const damage common_damage[] = {
    {.drop_key = "%s.attention.layer_norm_rms_epsilon", .expect = "%s.attention.layer_norm_rms_epsilon: missing"},
    {.drop_key = "%s.embedding_length", .expect = "%s.embedding_length: missing"},
    {.set_key = "%s.attention.head_count_kv", .value = U32(3), .expect = "%s.attention.head_count_kv"},
    {.set_key = "%s.attention.head_count_kv", .value = U32(0), .expect = "%s.attention.head_count_kv"},
    {.set_key = "%s.attention.key_length", .value = U32(63), .expect = "%s.attention.key_length"},
    {.set_key = "%s.attention.value_length", .value = U32(16), .expect = "%s.attention.value_length"},
    {.set_key = "%s.block_count", .value = U32(100000), .expect = "%s: implausible sizes"},
    {.set_key = "%s.embedding_length", .value = STR("256"), .expect = "%s.embedding_length"},
    {.set_key = "%s.rope.scaling.type", .value = STR("yarn"), .expect = "%s.rope.scaling.type"},
    {.set_key = "%s.rope.dimension_count", .value = U32(16), .expect = "%s.rope.dimension_count"},
    {.drop_tensor = "blk.1.attn_q.weight", .expect = "blk.1.attn_q.weight: missing"},
    {.drop_tensor = "output_norm.weight", .expect = "output_norm.weight: missing"},
    {.set_key = "tokenizer.ggml.merges", .value = U32(1), .expect = "tokenizer.ggml.merges"},
};
static const damage dense_ffn_damage[] = {
    {.set_key = "%s.feed_forward_length", .value = U32(384), .expect = "blk.0.ffn_gate.weight"},
};
static const damage moe_damage[] = {
    {.set_key = "%s.expert_feed_forward_length", .value = U32(384), .expect = "blk.0.ffn_gate_exps.weight"},
    {.set_key = "%s.expert_count", .value = U32(8), .expect = "blk.0.ffn_gate_inp.weight"},
    {.set_key = "%s.expert_used_count", .value = U32(17), .expect = "16 experts with 17 used"},
    {.drop_key = "%s.expert_used_count", .expect = "%s.expert_used_count: missing"},
    {.drop_key = "%s.expert_count", .expect = "0 experts"},
    {.drop_tensor = "blk.2.ffn_down_exps.weight", .expect = "blk.2.ffn_down_exps.weight: missing"},
    {.drop_tensor = "blk.3.ffn_gate_inp.weight", .expect = "blk.3.ffn_gate_inp.weight: missing"},
};
static const damage qwen3_damage[] = {
    {.drop_tensor = "blk.1.attn_k_norm.weight", .expect = "blk.1.attn_k_norm.weight: missing"},
};
static const damage llama_damage[] = {
    {.set_key = "%s.expert_count", .value = U32(8), .expect = "%s.expert_count"},
};
#undef U32
#undef STR

static void check_bad_files(const char *arch)
{
    char path[4096];
    snprintf(path, sizeof path, MODEL_DIR "/%s-tiny-f16.gguf", arch);
    gguf_file *src = NULL;
    hearth_error err = {0};
    if (gguf_open(path, &src, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    for (size_t i = 0; i < sizeof common_damage / sizeof *common_damage; i++)
        check_damaged(src, arch, &common_damage[i]);
    bool moe = strcmp(arch, "qwen3moe") == 0;
    for (size_t i = 0; !moe && i < sizeof dense_ffn_damage / sizeof *dense_ffn_damage; i++)
        check_damaged(src, arch, &dense_ffn_damage[i]);
    for (size_t i = 0; moe && i < sizeof moe_damage / sizeof *moe_damage; i++)
        check_damaged(src, arch, &moe_damage[i]);
    for (size_t i = 0; (moe || strcmp(arch, "qwen3") == 0) && i < sizeof qwen3_damage / sizeof *qwen3_damage; i++)
        check_damaged(src, arch, &qwen3_damage[i]);
    for (size_t i = 0; strcmp(arch, "llama") == 0 && i < sizeof llama_damage / sizeof *llama_damage; i++)
        check_damaged(src, arch, &llama_damage[i]);
    gguf_close(src);
}

int main(int argc, char **argv)
{
    const char *arch = argc == 2 ? argv[1] : "";
    if (strcmp(arch, "qwen3") != 0 && strcmp(arch, "qwen2") != 0 && strcmp(arch, "llama") != 0 &&
        strcmp(arch, "qwen3moe") != 0) {
        fprintf(stderr, "usage: test_dense qwen3|qwen2|llama|qwen3moe\n");
        return 2;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, MODEL_DIR "/%s-tiny-q4_k_m.gguf", arch);
    if (access(probe, R_OK) != 0)
        TEST_SKIP("no %s: CTest writes the tiny models first (the dense_tiny_models step, python3 with numpy and "
                  "gguf; scripts/setup.sh installs them), or run python3 scripts/oracle/make_dense_model.py tiny "
                  MODEL_DIR, probe);
    hearth_error err = {0};
    threadpool *pool = NULL;
    if (threadpool_create(threadpool_default_threads(), &pool, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        return test_finish("test_dense");
    }
    const topk_bounds *bounds = strcmp(arch, "qwen3moe") == 0 ? moe_variants : variants;
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++)
        check_variant(pool, arch, &bounds[i]);
    check_prefix_reuse(pool, arch);
    check_bad_files(arch);
    threadpool_free(pool);
    return test_finish("test_dense");
}

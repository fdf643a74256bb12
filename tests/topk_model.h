/* A model variant against its llama.cpp top-k fixtures: the checks the
 * random-weight model tests (test_dense, test_gemma4, test_gpt_oss) share.
 * Each fixture file records the CRC-32 of the tensor data llama.cpp ran
 * ("weights_crc32 XXXXXXXX"); the model the test regenerated must match it
 * before any logit is compared, so a drifting generator (a numpy or gguf
 * change) reads as that and not as a wrong forward pass. */
#ifndef HEARTH_TEST_TOPK_MODEL_H
#define HEARTH_TEST_TOPK_MODEL_H

#include "topk_fixture.h"

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

/* Where llama.cpp's top-1 leads by at least clear_margin, hearth must agree
 * at least this often. */
#define TOPK_MIN_CLEAR_TOP1 0.99

typedef struct topk_bounds {
    const char *name;                 /* the variant: f16, q8_0, ... */
    double min_top1;                  /* plain top-1 agreement */
    double clear_margin;              /* the lead that makes llama.cpp's top-1 "clear" */
    double max_delta, max_mean_delta; /* |dlogit| over llama.cpp's top k */
} topk_bounds;

/* CRC-32 as zlib computes it (the generators' weights-crc32). */
static inline uint32_t topk_crc32_update(uint32_t crc, const uint8_t *p, uint64_t n)
{
    crc = ~crc;
    for (uint64_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static inline uint32_t topk_weights_crc32(const gguf_file *f)
{
    uint32_t crc = 0;
    for (int64_t i = 0; i < gguf_tensor_count(f); i++)
        crc = topk_crc32_update(crc, gguf_tensor_at(f, i)->data, gguf_tensor_at(f, i)->size);
    return crc;
}

static inline bool topk_fixture_crc32(const char *path, uint32_t *crc)
{
    char *text = test_read_file(path, NULL);
    const char *line = text ? strstr(text, "\nweights_crc32 ") : NULL;
    bool found = line && sscanf(line, "\nweights_crc32 %8x", crc) == 1;
    free(text);
    return found;
}

static inline void topk_check_stats(const topk_bounds *b, const char *mode, topk_stats st)
{
    double top1 = st.positions ? (double)st.agree / st.positions : 0.0;
    double clear_top1 = st.clear ? (double)st.clear_agree / st.clear : 0.0;
    printf("  %-6s %-6s top-1 %d/%d = %.2f %%, where llama.cpp leads by >= %.2f %d/%d = %.2f %%; "
           "|dlogit| over its top-%d: max %.4f, mean %.4f\n",
           b->name, mode, st.agree, st.positions, 100.0 * top1, b->clear_margin, st.clear_agree, st.clear,
           100.0 * clear_top1, TOPK_FIXTURE_K, st.max_delta, st.mean_delta);
    CHECK_MSG(top1 >= b->min_top1, "%s %s: top-1 %.4f below %.2f", b->name, mode, top1, b->min_top1);
    CHECK_MSG(st.clear >= st.positions / 2 && clear_top1 >= TOPK_MIN_CLEAR_TOP1, "%s %s: clear-margin top-1 %d/%d",
              b->name, mode, st.clear_agree, st.clear);
    CHECK_MSG(st.max_delta <= b->max_delta, "%s %s: max |dlogit| %.4f above %.3f", b->name, mode, st.max_delta,
              b->max_delta);
    CHECK_MSG(st.mean_delta <= b->max_mean_delta, "%s %s: mean |dlogit| %.4f above %.3f", b->name, mode,
              st.mean_delta, b->max_mean_delta);
}

/* Loads model_path, checks its weights are the fixtures', and compares the
 * batch fixture (in batches of batch_step tokens, as prefill runs) and the
 * decode one (a token per call) over at least min_tokens each. label heads
 * the printed figures; regenerate names the script that remakes the
 * fixtures. */
static inline void topk_check_model_steps(threadpool *pool, const char *label, const char *model_path,
                                          const char *batch_fixture, const char *decode_fixture, int32_t min_tokens,
                                          const topk_bounds *b, const char *regenerate, int32_t batch_step)
{
    hearth_error err = {0};
    model *m = NULL;
    session *s = NULL;
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        session_create(m, pool, &(session_params){.n_ctx = 512}, &s, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
        model_free(m);
        return;
    }
    uint32_t want = 0, got = topk_weights_crc32(model_gguf(m));
    CHECK_MSG(topk_fixture_crc32(batch_fixture, &want), "%s: no weights_crc32 line", batch_fixture);
    CHECK_MSG(got == want,
              "%s: tensor data CRC-32 %08x, but the fixture was made from %08x: the generator's output changed "
              "(numpy or gguf?); regenerate the fixtures with %s",
              model_path, got, want, regenerate);
    if (got == want) {
        int32_t n_vocab = model_n_vocab(m);
        printf("%s %s:\n", label, b->name);
        topk_check_stats(b, "batch",
                         topk_compare(s, n_vocab, batch_fixture, min_tokens, batch_step, b->clear_margin));
        topk_check_stats(b, "decode", topk_compare(s, n_vocab, decode_fixture, min_tokens, 1, b->clear_margin));
    }
    session_free(s);
    model_free(m);
}

/* The same with the batch fixture fed TOPK_FIXTURE_ROWS tokens per call. */
static inline void topk_check_model(threadpool *pool, const char *label, const char *model_path,
                                    const char *batch_fixture, const char *decode_fixture, int32_t min_tokens,
                                    const topk_bounds *b, const char *regenerate)
{
    topk_check_model_steps(pool, label, model_path, batch_fixture, decode_fixture, min_tokens, b, regenerate,
                           TOPK_FIXTURE_ROWS);
}

/* A session that keeps the common prefix of a new sequence and evaluates the
 * rest gives the logits a fresh session gives, bit for bit, when both ran the
 * same calls: n_shared tokens, then n_rest that differ (one call each, so
 * both take the same attention paths). The token ids are fixed patterns from
 * first_id and second_id on (below 1500 + those). With reevaluate, an
 * identical sequence then keeps all but its last token, which is evaluated
 * again, alone: the decode path, so close to the batch's logits, not equal. */
static inline void topk_check_prefix_reuse(threadpool *pool, const char *label, const char *model_path,
                                           int32_t n_shared, int32_t n_rest, int32_t first_id, int32_t second_id,
                                           bool reevaluate)
{
    enum { MAX_TOKENS = 256 };
    const int32_t n = n_shared + n_rest;
    hearth_error err = {0};
    model *m = NULL;
    session *reused = NULL, *fresh = NULL;
    CHECK(n <= MAX_TOKENS);
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        session_create(m, pool, &(session_params){.n_ctx = MAX_TOKENS}, &reused, &err) != HEARTH_OK ||
        session_create(m, pool, &(session_params){.n_ctx = MAX_TOKENS}, &fresh, &err) != HEARTH_OK) {
        CHECK_MSG(0, "%s", err.message);
    } else if (n <= MAX_TOKENS) {
        int32_t first[MAX_TOKENS], second[MAX_TOKENS];
        for (int32_t i = 0; i < n; i++) {
            first[i] = first_id + (i * 7919) % 1500;
            second[i] = i < n_shared ? first[i] : second_id + (i * 104729) % 1500;
        }
        CHECK(session_eval(reused, first, n_shared, &err) == HEARTH_OK);
        CHECK(session_eval(reused, first + n_shared, n_rest, &err) == HEARTH_OK);
        int32_t kept = session_keep_common_prefix(reused, second, n);
        CHECK_MSG(kept == n_shared, "%s: kept %d tokens, expected %d", label, kept, n_shared);
        CHECK(session_eval(reused, second + kept, n - kept, &err) == HEARTH_OK);
        CHECK(session_eval(fresh, second, n_shared, &err) == HEARTH_OK);
        CHECK(session_eval(fresh, second + n_shared, n_rest, &err) == HEARTH_OK);
        int32_t n_vocab = model_n_vocab(m);
        CHECK_MSG(memcmp(session_logits(reused), session_logits(fresh), (size_t)n_vocab * sizeof(float)) == 0,
                  "%s: logits after reusing the prefix differ from a fresh evaluation", label);
        float *before = reevaluate ? malloc((size_t)n_vocab * sizeof *before) : NULL;
        CHECK(!reevaluate || before != NULL);
        if (before) {
            memcpy(before, session_logits(fresh), (size_t)n_vocab * sizeof *before);
            kept = session_keep_common_prefix(fresh, second, n);
            CHECK_MSG(kept == n - 1, "%s: an identical sequence kept %d tokens", label, kept);
            CHECK(session_eval(fresh, second + kept, 1, &err) == HEARTH_OK);
            double worst = 0.0;
            for (int32_t i = 0; i < n_vocab; i++)
                worst = fmax(worst, fabs(session_logits(fresh)[i] - before[i]));
            CHECK_MSG(worst < 0.05, "%s: the last token evaluated again moves a logit by %g", label, worst);
            free(before);
        }
    }
    session_free(reused);
    session_free(fresh);
    model_free(m);
}

/* A model file rewritten with one thing wrong, and the load error expected. */
typedef struct model_damage {
    const char *drop_key, *drop_tensor;
    const char *set_key; /* replaced or added */
    gguf_value value;
    const char *expect; /* in the load error */
} model_damage;

/* Writes src with d's change to path (d->expect unused): also for a
 * rewritten file that should load. */
static inline hearth_status model_write_changed(const gguf_file *src, const char *path, const model_damage *d,
                                                hearth_error *err)
{
    gguf_writer *w = gguf_writer_create();
    hearth_status st = w ? HEARTH_OK : HEARTH_ERR_NOMEM;
    for (int64_t i = 0; st == HEARTH_OK && i < gguf_kv_count(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        bool replaced = d->set_key && strcmp(kv->key, d->set_key) == 0;
        if ((!d->drop_key || strcmp(kv->key, d->drop_key) != 0) && !replaced)
            st = gguf_writer_add_value(w, kv->key, &kv->value, err);
    }
    if (st == HEARTH_OK && d->set_key)
        st = gguf_writer_add_value(w, d->set_key, &d->value, err);
    for (int64_t i = 0; st == HEARTH_OK && i < gguf_tensor_count(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        if (!d->drop_tensor || strcmp(t->name, d->drop_tensor) != 0)
            st = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, err);
    }
    if (st == HEARTH_OK)
        st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return st;
}

/* Writes src with d's damage to path, loads it, and checks the load fails
 * with an error containing d->expect; label names the case in a failure. */
static inline void model_check_damaged(const gguf_file *src, const char *label, const char *path,
                                       const model_damage *d)
{
    hearth_error err = {0};
    hearth_status st = model_write_changed(src, path, d, &err);
    CHECK_MSG(st == HEARTH_OK, "writing the damaged model: %s", err.message);
    if (st != HEARTH_OK)
        return;
    model *m = NULL;
    st = model_load(path, &m, &err);
    CHECK_MSG(st != HEARTH_OK && strstr(err.message, d->expect) != NULL,
              "%s: expected a load error naming '%s', got: %s", label, d->expect,
              st == HEARTH_OK ? "no error" : err.message);
    model_free(m);
    unlink(path);
}

#endif

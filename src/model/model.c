#define _DEFAULT_SOURCE /* madvise */
#include "model/arch.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/hash.h"
#include "ops/dot.h"
#include "ops/moe.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const model_arch *const architectures[] = {
    &model_arch_gemma3,
    &model_arch_gemma4,
    &model_arch_llama,
    &model_arch_qwen2,
    &model_arch_qwen3,
    &model_arch_qwen3moe,
    &model_arch_qwen35,
    &model_arch_qwen35moe,
    &model_arch_gpt_oss,
};

/* One repacked matrix: several ops_matrix may share it (a tied output). It
 * is shared only by matrices of the same data, type and shape: a hostile
 * file may point two different tensors at the same bytes, and a panel
 * layout read with another shape would run past its end. */
typedef struct packed_matrix {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t offset; /* into the model's packed arena */
    bool done;
} packed_matrix;

struct model {
    gguf_file *file;
    vocab *vocab;
    const model_arch *arch;
    void *weights;
    /* Every repacked matrix lives in one arena of huge pages: decode reads
     * all of it per token, and with 4 KiB pages a TLB miss every 4 KiB cost
     * several percent of the bandwidth. */
    unsigned char *arena;
    size_t arena_bytes;
    uint64_t identity; /* model_identity's, worked out before packing (0: not yet) */
    packed_matrix *packed;
    int n_packed, cap_packed;
    model_repack_stats repack;
    hearth_status repack_status;
    threadpool *repack_pool; /* only while loading */
};

struct model_state {
    const model *model;
    int32_t n_seq, n_ctx, n_batch;
    /* One state for all sequences when the architecture batches them, else
     * one per sequence (n_impl of them). */
    void **impl;
    int32_t n_impl;
    int32_t *n_evaluated; /* per sequence, the end of its last batch: where a recurrent state stands */
    model_memory memory;
};

/* Gives the map's pages under [p, p + n) back: they were read once to pack,
 * and the packed copy replaces them. A later read (an embedding row of a
 * tied output) faults them in again from the page cache. */
static void release_pages(const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    uintptr_t start = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t end = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (end > start)
        madvise((void *)start, end - start, MADV_DONTNEED);
}

typedef struct pack_job {
    const ops_matrix *w;
    void *packed;
} pack_job;

static void pack_share(void *p, int thread, int n_threads)
{
    const pack_job *job = p;
    const ops_matrix *w = job->w;
    long first, last;
    threadpool_split((w->rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS, 1, thread, n_threads, &first, &last);
    ops_pack_panels(w->type, w->data, w->row_bytes, w->rows, w->cols, first, last, job->packed);
}

static packed_matrix *find_packed(model *m, const ops_matrix *w)
{
    for (int i = 0; i < m->n_packed; i++) {
        const packed_matrix *p = &m->packed[i];
        if (p->data == w->data && p->type == w->type && p->rows == w->rows && p->cols == w->cols)
            return &m->packed[i];
    }
    return NULL;
}

/* First pass: give every matrix that will be packed its place in the arena. */
static void plan_one(ops_matrix *w, void *ctx)
{
    model *m = ctx;
    if (m->repack_status != HEARTH_OK || !ops_packed_supported(w->type) || find_packed(m, w))
        return;
    if (m->n_packed == m->cap_packed) {
        int cap = m->cap_packed ? 2 * m->cap_packed : 64;
        packed_matrix *grown = realloc(m->packed, (size_t)cap * sizeof *grown);
        if (!grown) {
            m->repack_status = HEARTH_ERR_NOMEM;
            return;
        }
        m->packed = grown;
        m->cap_packed = cap;
    }
    m->packed[m->n_packed++] = (packed_matrix){
        .data = w->data, .type = w->type, .rows = w->rows, .cols = w->cols, .offset = m->repack.bytes};
    size_t bytes = ops_packed_bytes(w->type, w->rows, w->cols);
    m->repack.bytes += (bytes + 63) / 64 * 64;
    m->repack.n_matrices++;
}

/* Second pass: pack into the arena (once per distinct matrix). */
static void pack_one(ops_matrix *w, void *ctx)
{
    model *m = ctx;
    packed_matrix *entry = ops_packed_supported(w->type) ? find_packed(m, w) : NULL;
    if (!entry)
        return;
    w->packed = m->arena + entry->offset;
    if (entry->done)
        return;
    threadpool_run(m->repack_pool, pack_share, &(pack_job){.w = w, .packed = m->arena + entry->offset});
    release_pages(w->data, (size_t)w->rows * w->row_bytes);
    entry->done = true;
}

enum { HUGE_PAGE = 2 << 20 };

static hearth_status repack_weights(model *m, hearth_error *err)
{
    double start = clock_seconds();
    m->repack_status = HEARTH_OK;
    m->arch->for_each_matrix(m->weights, plan_one, m);
    if (m->repack_status != HEARTH_OK)
        return error_set(err, m->repack_status, "out of memory planning the repacked weights");
    if (m->repack.bytes == 0)
        return HEARTH_OK;
    /* Over-allocated by a huge page so the arena can start on one. */
    m->arena_bytes = (m->repack.bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE + HUGE_PAGE;
    void *map = mmap(NULL, m->arena_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        m->arena_bytes = 0;
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory for the repacked weights (%.1f MiB)",
                         (double)m->repack.bytes / 1048576.0);
    }
    m->arena = map;
    unsigned char *aligned = (unsigned char *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(aligned, m->arena_bytes - (size_t)(aligned - m->arena), MADV_HUGEPAGE); /* a hint: fine if refused */
    for (int i = 0; i < m->n_packed; i++)
        m->packed[i].offset += (size_t)(aligned - m->arena);

    hearth_status st = threadpool_create(threadpool_default_threads(), &m->repack_pool, err);
    if (st != HEARTH_OK)
        return st;
    m->arch->for_each_matrix(m->weights, pack_one, m);
    threadpool_free(m->repack_pool);
    m->repack_pool = NULL;
    m->repack.seconds = clock_seconds() - start;
    return HEARTH_OK;
}

model_repack_stats model_repack(const model *m) { return m->repack; }

typedef struct weight_planner {
    const gguf_file *file;
    packed_matrix *seen; /* distinct matrices so far (only data, type and shape used) */
    int n_seen, cap_seen;
    bool *covered;       /* per tensor: some matrix lies in it */
    model_weight_plan plan;
    hearth_status status;
} weight_planner;

/* The tensor whose data holds p, or -1. */
static int64_t tensor_holding(const gguf_file *f, const void *p)
{
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const unsigned char *start = t->data;
        if ((const unsigned char *)p >= start && (const unsigned char *)p < start + t->size)
            return i;
    }
    return -1;
}

static void plan_weight(ops_matrix *w, void *ctx)
{
    weight_planner *p = ctx;
    if (p->status != HEARTH_OK)
        return;
    for (int i = 0; i < p->n_seen; i++) {
        const packed_matrix *s = &p->seen[i];
        if (s->data == w->data && s->type == w->type && s->rows == w->rows && s->cols == w->cols)
            return;
    }
    if (p->n_seen == p->cap_seen) {
        int cap = p->cap_seen ? 2 * p->cap_seen : 64;
        packed_matrix *grown = realloc(p->seen, (size_t)cap * sizeof *grown);
        if (!grown) {
            p->status = HEARTH_ERR_NOMEM;
            return;
        }
        p->seen = grown;
        p->cap_seen = cap;
    }
    p->seen[p->n_seen++] = (packed_matrix){.data = w->data, .type = w->type, .rows = w->rows, .cols = w->cols};
    int64_t t = tensor_holding(p->file, w->data);
    bool expert = false;
    if (t >= 0) {
        p->covered[t] = true;
        expert = strstr(gguf_tensor_at(p->file, t)->name, "_exps") != NULL;
    }
    size_t bytes = (size_t)w->rows * w->row_bytes;
    if (ops_packed_supported(w->type)) {
        /* Rounded as plan_one places them in the arena. */
        size_t packed = (ops_packed_bytes(w->type, w->rows, w->cols) + 63) / 64 * 64;
        p->plan.packed += packed;
        p->plan.packed_source += bytes;
        if (p->plan.packed + bytes > p->plan.packing_peak)
            p->plan.packing_peak = p->plan.packed + bytes;
        if (expert)
            p->plan.expert_packed += packed;
    } else {
        p->plan.unpacked += bytes;
        if (expert)
            p->plan.expert_unpacked += bytes;
    }
}

/* Embedding tables the forward pass reads a row per token, never whole. */
static bool is_gather_table(const char *name)
{
    return strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0;
}

hearth_status model_memory_for(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch, hearth_kv_type kv_type,
                               model_memory *out, hearth_error *err)
{
    model_state *s;
    hearth_status st = model_state_create_kv(m, n_seq, n_ctx, n_batch, kv_type, &s, err);
    if (st != HEARTH_OK)
        return st;
    *out = model_state_memory(s);
    model_state_free(s);
    return HEARTH_OK;
}

hearth_status model_plan_weights(const model *m, model_weight_plan *out, hearth_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t n = gguf_tensor_count(m->file);
    weight_planner p = {.file = m->file, .covered = calloc((size_t)(n > 0 ? n : 1), sizeof(bool))};
    if (!p.covered)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory planning the weights");
    m->arch->for_each_matrix(m->weights, plan_weight, &p); /* reads only, as decoder_act_scratch_bytes */
    for (int64_t i = 0; i < n && p.status == HEARTH_OK; i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        bool gather = is_gather_table(t->name);
        if (gather && t->ne[1] > 0)
            p.plan.gather_row += (size_t)(t->size / (uint64_t)t->ne[1]);
        if (p.covered[i])
            continue;
        if (gather)
            p.plan.gather += t->size;
        else
            p.plan.other += t->size;
    }
    free(p.covered);
    free(p.seen);
    if (p.status != HEARTH_OK)
        return error_set(err, p.status, "out of memory planning the weights");
    *out = p.plan;
    return HEARTH_OK;
}

hearth_status model_load(const char *path, model **out, hearth_error *err)
{
    return model_open(path, true, out, err);
}

static uint64_t compute_identity(const model *m)
{
    /* The header alone would take two files with the same metadata and
     * shapes (two fine-tunes) for one: each tensor's data is sampled too,
     * 16 stretches of 256 bytes spread over it (all of a small one), pages
     * loading has just read. */
    enum { SAMPLES = 16, STRETCH = 256 };
    uint64_t h = hash_words(gguf_header_bytes(m->file), (size_t)gguf_data_offset(m->file), gguf_file_size(m->file));
    for (int64_t i = 0; i < gguf_tensor_count(m->file); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        const char *data = t->data;
        if (t->size <= SAMPLES * STRETCH) {
            h = hash_words(data, (size_t)t->size, h);
            continue;
        }
        for (uint64_t k = 0; k < SAMPLES; k++)
            h = hash_words(data + (t->size - STRETCH) * k / (SAMPLES - 1), STRETCH, h);
    }
    return h ? h : 1;
}

hearth_status model_open(const char *path, bool repack, model **out, hearth_error *err)
{
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    hearth_status st = gguf_open(path, &m->file, err);
    if (st == HEARTH_OK)
        st = vocab_load(m->file, &m->vocab, err);
    if (st == HEARTH_OK) {
        const gguf_string *name = gguf_get_string(m->file, "general.architecture");
        for (size_t i = 0; name && i < sizeof architectures / sizeof *architectures; i++)
            if (gguf_string_equals(name, architectures[i]->name))
                m->arch = architectures[i];
        if (!name)
            st = error_set(err, HEARTH_ERR_FORMAT, "general.architecture: missing");
        else if (!m->arch) {
            char known[256] = "";
            for (size_t i = 0; i < sizeof architectures / sizeof *architectures; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         architectures[i]->name);
            st = error_set(err, HEARTH_ERR_UNSUPPORTED, "general.architecture: '%.*s' is not supported (known: %s)",
                           (int)(name->len > 64 ? 64 : name->len), name->data, known);
        }
    }
    if (st == HEARTH_OK)
        st = m->arch->load(m->file, m->vocab, &m->weights, err);
    if (st == HEARTH_OK && repack) {
        /* Before packing releases the packed matrices' pages: the samples
         * are read among the pages packing reads anyway. */
        m->identity = compute_identity(m);
        st = repack_weights(m, err);
    }
    if (st != HEARTH_OK) {
        if (!strstr(err->message, path))
            error_prefix(err, "%s", path);
        model_free(m);
        return st;
    }
    *out = m;
    return HEARTH_OK;
}

void model_free(model *m)
{
    if (!m)
        return;
    if (m->weights)
        m->arch->free_weights(m->weights);
    if (m->arena)
        munmap(m->arena, m->arena_bytes);
    free(m->packed);
    vocab_free(m->vocab);
    gguf_close(m->file);
    free(m);
}

const vocab *model_vocab(const model *m) { return m->vocab; }
const gguf_file *model_gguf(const model *m) { return m->file; }
int32_t model_n_vocab(const model *m) { return vocab_size(m->vocab); }
int32_t model_n_ctx_train(const model *m) { return m->arch->n_ctx_train(m->weights); }

hearth_status model_state_create(const model *m, int32_t n_ctx, int32_t n_batch, model_state **out,
                                 hearth_error *err)
{
    return model_state_create_multi(m, 1, n_ctx, n_batch, out, err);
}

const char *model_kv_type_name(hearth_kv_type type)
{
    return type == HEARTH_KV_Q8_0 ? "q8_0" : "f16";
}

bool model_kv_type_parse(const char *name, hearth_kv_type *out)
{
    if (strcmp(name, "f16") == 0)
        *out = HEARTH_KV_F16;
    else if (strcmp(name, "q8_0") == 0)
        *out = HEARTH_KV_Q8_0;
    else
        return false;
    return true;
}

hearth_status model_state_create_multi(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                       model_state **out, hearth_error *err)
{
    return model_state_create_kv(m, n_seq, n_ctx, n_batch, HEARTH_KV_F16, out, err);
}

hearth_status model_state_create_kv(const model *m, int32_t n_seq, int32_t n_ctx, int32_t n_batch,
                                    hearth_kv_type kv_type, model_state **out, hearth_error *err)
{
    *out = NULL;
    if (kv_type != HEARTH_KV_F16 && !m->arch->quantized_kv)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "KV cache type %s: not supported for %s models yet (use f16)",
                         model_kv_type_name(kv_type), m->arch->name);
    if (n_ctx < 1 || n_batch < 1)
        return error_set(err, HEARTH_ERR_ARG, "context size %d and batch size %d must be at least 1", n_ctx, n_batch);
    if (n_seq < 1 || n_seq > MODEL_MAX_SEQUENCES)
        return error_set(err, HEARTH_ERR_ARG, "%d sequences: must be 1 to %d", n_seq, MODEL_MAX_SEQUENCES);
    if ((int64_t)n_ctx * n_seq > INT32_MAX)
        return error_set(err, HEARTH_ERR_ARG, "%d sequences of %d positions: too many in all", n_seq, n_ctx);
    if (n_batch > (int64_t)n_ctx * n_seq)
        n_batch = n_ctx * n_seq;
    const bool shared = n_seq == 1 || m->arch->state_create_multi;
    model_state *s = calloc(1, sizeof *s);
    if (!s || !(s->n_evaluated = calloc((size_t)n_seq, sizeof *s->n_evaluated)) ||
        !(s->impl = calloc(shared ? 1 : (size_t)n_seq, sizeof *s->impl))) {
        if (s)
            free(s->n_evaluated);
        free(s);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    s->model = m;
    s->n_seq = n_seq;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    hearth_status st = HEARTH_OK;
    if (m->arch->state_create_multi) {
        st = m->arch->state_create_multi(m->weights, n_seq, n_ctx, n_batch, kv_type, &s->impl[0], &s->memory,
                                         err);
        s->n_impl = st == HEARTH_OK;
    } else {
        /* One batch never holds more than n_ctx tokens of one sequence. */
        int32_t seq_batch = n_batch < n_ctx ? n_batch : n_ctx;
        for (; st == HEARTH_OK && s->n_impl < (shared ? 1 : n_seq); s->n_impl++) {
            model_memory part = {0};
            st = m->arch->state_create(m->weights, n_ctx, seq_batch, &s->impl[s->n_impl], &part, err);
            if (st != HEARTH_OK)
                break;
            s->memory.kv_cache += part.kv_cache;
            s->memory.recurrent += part.recurrent;
            s->memory.scratch += part.scratch;
        }
    }
    if (st != HEARTH_OK) {
        model_state_free(s);
        return st;
    }
    *out = s;
    return HEARTH_OK;
}

void model_state_free(model_state *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->n_impl; i++)
        s->model->arch->state_free(s->impl[i]);
    free(s->impl);
    free(s->n_evaluated);
    free(s);
}

size_t model_state_bytes(const model_state *s)
{
    return s->memory.kv_cache + s->memory.recurrent + s->memory.scratch;
}

model_memory model_state_memory(const model_state *s) { return s->memory; }

int32_t model_state_n_seq(const model_state *s) { return s->n_seq; }

bool model_is_recurrent(const model *m) { return m->arch->recurrent; }

bool model_batches_sequences(const model *m) { return m->arch->forward_batch != NULL; }

int32_t model_state_seq_resume_point(const model_state *s, int32_t seq, int32_t pos)
{
    if (!s->model->arch->recurrent)
        return pos;
    return seq >= 0 && seq < s->n_seq && pos == s->n_evaluated[seq] ? pos : 0;
}

int32_t model_state_resume_point(const model_state *s, int32_t pos)
{
    return model_state_seq_resume_point(s, 0, pos);
}

/* ---- a sequence's past ---- */

/* Two per layer (keys, values) for a few hundred layers. */
enum { MAX_STATE_PARTS = 512 };

/* The parts holding sequence seq and its index within them (the fallback
 * keeps one state per sequence). */
static int32_t parts_of(const model_state *s, int32_t seq, model_state_part *parts, size_t *seq_offset_index)
{
    const model_arch *a = s->model->arch;
    const bool shared = s->n_impl == 1;
    int32_t n = a->state_parts ? a->state_parts(s->model->weights, s->impl[shared ? 0 : seq], parts, MAX_STATE_PARTS)
                               : 0;
    *seq_offset_index = shared ? (size_t)seq : 0;
    /* More than fit: none, so that a prefix cache keeps nothing rather
     * than a part of the past. */
    return n <= MAX_STATE_PARTS ? n : 0;
}

model_past_layout model_state_past_layout(const model_state *s)
{
    model_state_part parts[MAX_STATE_PARTS];
    model_past_layout layout = {0};
    size_t q;
    int32_t n = parts_of(s, 0, parts, &q);
    uint64_t shape[2 * MAX_STATE_PARTS + 1];
    shape[0] = (uint64_t)n;
    for (int32_t i = 0; i < n; i++) {
        if (parts[i].recurrent)
            layout.recurrent_bytes += parts[i].row_bytes;
        else
            layout.position_bytes += parts[i].row_bytes;
        shape[1 + 2 * i] = parts[i].row_bytes;
        shape[2 + 2 * i] = parts[i].recurrent;
    }
    layout.id = hash_words(shape, (size_t)(1 + 2 * n) * sizeof shape[0], 0x6c61796f7574ull);
    return layout;
}

/* Copies between buf and the parts' rows of (seq, [pos, pos + n)), or
 * their recurrent rows when recurrent. */
static void copy_past(const model_state *s, int32_t seq, int32_t pos, int32_t n, bool recurrent, char *buf, bool save)
{
    model_state_part parts[MAX_STATE_PARTS];
    size_t q;
    int32_t count = parts_of(s, seq, parts, &q);
    for (int32_t i = 0; i < count; i++) {
        if (parts[i].recurrent != recurrent)
            continue;
        char *rows = parts[i].base + q * parts[i].seq_stride + (recurrent ? 0 : (size_t)pos * parts[i].row_bytes);
        size_t bytes = parts[i].row_bytes * (recurrent ? 1 : (size_t)n);
        if (save)
            memcpy(buf, rows, bytes);
        else
            memcpy(rows, buf, bytes);
        buf += bytes;
    }
}

void model_state_save_span(const model_state *s, int32_t seq, int32_t pos, int32_t n, void *buf)
{
    copy_past(s, seq, pos, n, false, buf, true);
}

void model_state_load_span(model_state *s, int32_t seq, int32_t pos, int32_t n, const void *buf)
{
    copy_past(s, seq, pos, n, false, (char *)buf, false);
    if (!s->model->arch->recurrent)
        s->n_evaluated[seq] = pos + n;
}

void model_state_save_recurrent(const model_state *s, int32_t seq, void *buf)
{
    copy_past(s, seq, 0, 0, true, buf, true);
}

void model_state_load_recurrent(model_state *s, int32_t seq, int32_t pos, const void *buf)
{
    copy_past(s, seq, 0, 0, true, (char *)buf, false);
    s->n_evaluated[seq] = pos;
}

uint64_t model_identity(const model *m)
{
    return m->identity ? m->identity : compute_identity(m);
}

/* Whether x[0..n) holds no NaN or infinity: an exponent of all ones. Without
 * an early exit, so that it vectorizes; it reads every row of logits. */
static bool all_finite(const float *x, size_t n)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* Corrupt weights (one NaN scale in one block is enough) make every logit
 * after them NaN, and a sampler that skips NaNs would go on printing token 0
 * as if nothing were wrong. The pass is refused instead; the state has taken
 * the tokens all the same, as after any other pass. */
static hearth_status check_logits(const float *row, int32_t n_vocab, int32_t seq, int32_t pos, hearth_error *err)
{
    if (all_finite(row, (size_t)n_vocab))
        return HEARTH_OK;
    char where[64];
    if (seq < 0) /* model_forward's single sequence goes unnamed */
        snprintf(where, sizeof where, "position %d", pos);
    else
        snprintf(where, sizeof where, "sequence %d, position %d", seq, pos);
    return error_set(err, HEARTH_ERR_FORMAT, "the model produced NaN or infinite logits (%s): its weights may be corrupt",
                     where);
}

/* The checks every pass makes on one sequence's run of n tokens from pos0. */
static hearth_status check_run(const model *m, const model_state *s, int32_t seq, const int32_t *tokens, int32_t n,
                               int32_t pos0, int32_t first_index, hearth_error *err)
{
    if (pos0 < 0 || pos0 > s->n_ctx - n)
        return error_set(err, HEARTH_ERR_ARG, "context full: %d tokens at position %d exceed the context of %d",
                         n, pos0, s->n_ctx);
    if (m->arch->recurrent && pos0 != 0 && pos0 != s->n_evaluated[seq])
        return error_set(err, HEARTH_ERR_ARG,
                         "batch at position %d: this model's recurrent state stands at position %d; it can go on "
                         "from there or start again at 0",
                         pos0, s->n_evaluated[seq]);
    int32_t n_vocab = vocab_size(m->vocab);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return error_set(err, HEARTH_ERR_ARG, "token id %d at batch index %d: outside the vocabulary of %d",
                             tokens[i], first_index + i, n_vocab);
    return HEARTH_OK;
}

hearth_status model_forward(const model *m, model_state *s, threadpool *pool, const int32_t *tokens, int32_t n,
                            int32_t pos0, int32_t first_output, float *logits, hearth_error *err)
{
    if (n < 1 || n > s->n_batch || n > s->n_ctx)
        return error_set(err, HEARTH_ERR_ARG, "batch of %d tokens: must be 1 to %d", n,
                         s->n_batch < s->n_ctx ? s->n_batch : s->n_ctx);
    if (first_output < 0 || first_output > n || (first_output < n && !logits))
        return error_set(err, HEARTH_ERR_ARG, "first output %d of a batch of %d", first_output, n);
    hearth_status st = check_run(m, s, 0, tokens, n, pos0, 0, err);
    if (st != HEARTH_OK)
        return st;
    m->arch->forward(m->weights, s->impl[0], pool, tokens, n, pos0, first_output, logits);
    s->n_evaluated[0] = pos0 + n;
    const int32_t n_vocab = vocab_size(m->vocab);
    for (int32_t i = first_output; i < n && st == HEARTH_OK; i++)
        st = check_logits(logits + (size_t)(i - first_output) * (size_t)n_vocab, n_vocab, -1, pos0 + i, err);
    return st;
}

/* One run of batch entries [first, last) of sequence seq, and where its
 * outputs start (last when it has none). */
typedef struct seq_run {
    int32_t seq, first, last, first_output;
} seq_run;

hearth_status model_forward_batch(const model *m, model_state *s, threadpool *pool, const model_batch *b,
                                  float *logits, hearth_error *err)
{
    if (b->n < 1 || b->n > s->n_batch)
        return error_set(err, HEARTH_ERR_ARG, "batch of %d tokens: must be 1 to %d", b->n, s->n_batch);
    seq_run runs[MODEL_MAX_SEQUENCES];
    bool seen[MODEL_MAX_SEQUENCES] = {false};
    int32_t n_runs = 0, n_outputs = 0;
    for (int32_t i = 0; i < b->n;) {
        int32_t seq = b->seq[i];
        if (seq < 0 || seq >= s->n_seq)
            return error_set(err, HEARTH_ERR_ARG, "batch index %d: sequence %d of %d", i, seq, s->n_seq);
        if (seen[seq])
            return error_set(err, HEARTH_ERR_ARG, "batch index %d: sequence %d appears in two runs", i, seq);
        seen[seq] = true;
        seq_run r = {.seq = seq, .first = i, .first_output = -1};
        for (r.last = i + 1; r.last < b->n && b->seq[r.last] == seq; r.last++)
            if (b->pos[r.last] != b->pos[r.last - 1] + 1)
                return error_set(err, HEARTH_ERR_ARG, "batch index %d: position %d does not follow %d", r.last,
                                 b->pos[r.last], b->pos[r.last - 1]);
        for (int32_t j = r.first; j < r.last; j++) {
            bool out = b->output && b->output[j];
            if (out && r.first_output < 0)
                r.first_output = j;
            else if (!out && r.first_output >= 0)
                return error_set(err, HEARTH_ERR_ARG,
                                 "batch index %d: outputs must end their sequence's run (sequence %d)", j, seq);
        }
        if (r.first_output < 0)
            r.first_output = r.last;
        n_outputs += r.last - r.first_output;
        hearth_status st = check_run(m, s, seq, b->tokens + r.first, r.last - r.first, b->pos[r.first], r.first, err);
        if (st != HEARTH_OK)
            return st;
        runs[n_runs++] = r;
        i = r.last;
    }
    if (n_outputs > 0 && !logits)
        return error_set(err, HEARTH_ERR_ARG, "a batch with %d outputs and nowhere to write them", n_outputs);

    if (m->arch->forward_batch) {
        m->arch->forward_batch(m->weights, s->impl[0], pool, b, logits);
    } else {
        float *rows = logits;
        for (int32_t k = 0; k < n_runs; k++) {
            const seq_run *r = &runs[k];
            int32_t n = r->last - r->first;
            m->arch->forward(m->weights, s->impl[s->n_impl == 1 ? 0 : r->seq], pool, b->tokens + r->first, n,
                             b->pos[r->first], r->first_output - r->first, r->first_output < r->last ? rows : NULL);
            if (r->first_output < r->last)
                rows += (size_t)(r->last - r->first_output) * (size_t)vocab_size(m->vocab);
        }
    }
    for (int32_t k = 0; k < n_runs; k++)
        s->n_evaluated[runs[k].seq] = b->pos[runs[k].last - 1] + 1;
    /* The rows are the outputs in batch order. */
    const int32_t n_vocab = vocab_size(m->vocab);
    const float *row = logits;
    for (int32_t i = 0; i < b->n; i++) {
        if (!b->output || !b->output[i])
            continue;
        hearth_status st = check_logits(row, n_vocab, b->seq[i], b->pos[i], err);
        if (st != HEARTH_OK)
            return st;
        row += n_vocab;
    }
    return HEARTH_OK;
}

/* ---- binding helpers ---- */

static hearth_status find_tensor(const gguf_file *file, const char *name, const gguf_tensor **out,
                                 hearth_error *err)
{
    *out = gguf_find_tensor(file, name);
    if (!*out)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: missing", name);
    return HEARTH_OK;
}

static hearth_status bind_found_matrix(const gguf_tensor *t, int64_t cols, int64_t rows, ops_matrix *out,
                                       hearth_error *err)
{
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                         t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)cols, (long long)rows);
    const quant_traits *traits = quant_get_traits(t->type);
    if (!ops_dot_ref(t->type))
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "tensor %s: weight type %s is not supported yet", t->name,
                         traits ? traits->name : "?");
    const quant_traits *act = quant_get_traits(ops_activation_type(t->type));
    if (cols % act->block_size != 0)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: rows of %lld do not divide into %s blocks", t->name,
                         (long long)cols, act->name);
    uint64_t row_bytes;
    if (!quant_bytes(t->type, (uint64_t)cols, &row_bytes))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: bad row length %lld for %s", t->name,
                         (long long)cols, traits->name);
    *out = (ops_matrix){.data = t->data, .type = t->type, .cols = cols, .rows = rows, .row_bytes = row_bytes};
    return HEARTH_OK;
}

hearth_status model_bind_matrix(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                ops_matrix *out, hearth_error *err)
{
    const gguf_tensor *t;
    hearth_status st = find_tensor(file, name, &t, err);
    return st != HEARTH_OK ? st : bind_found_matrix(t, cols, rows, out, err);
}

hearth_status model_bind_optional_matrix(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                         ops_matrix *out, bool *present, hearth_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(file, name);
    *present = t != NULL;
    return t ? bind_found_matrix(t, cols, rows, out, err) : HEARTH_OK;
}

hearth_status model_bind_experts(const gguf_file *file, const char *name, int64_t cols, int64_t rows,
                                 int32_t n_experts, ops_matrix *experts, hearth_error *err)
{
    const gguf_tensor *t;
    hearth_status st = find_tensor(file, name, &t, err);
    if (st != HEARTH_OK)
        return st;
    if (t->n_dims != 3 || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n_experts)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %d]",
                         t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)cols, (long long)rows, n_experts);
    /* The experts lie one after another: bound as one matrix of all their
     * rows (the gguf reader checked the whole tensor lies in the file), then
     * cut into per-expert slices. */
    ops_matrix whole;
    st = bind_found_matrix(&(gguf_tensor){.name = t->name, .type = t->type, .n_dims = 2, .ne = {cols, rows * n_experts, 1, 1},
                                          .data = t->data, .size = t->size},
                           cols, rows * n_experts, &whole, err);
    if (st == HEARTH_OK)
        ops_moe_split_experts(&whole, n_experts, experts);
    return st;
}

hearth_status model_bind_optional_table(const gguf_file *file, const char *name, int64_t n, int64_t count,
                                        const float **out, hearth_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(file, name);
    *out = NULL;
    if (!t)
        return HEARTH_OK;
    if (t->n_dims != 2 || t->ne[0] != n || t->ne[1] != count)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: shape [%lld, %lld, %lld], expected [%lld, %lld]",
                         t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)n,
                         (long long)count);
    if (t->type != QUANT_F32)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "tensor %s: type %s, expected F32", t->name,
                         quant_get_traits(t->type)->name);
    *out = t->data;
    return HEARTH_OK;
}

/* The vocabulary's size comes from tokenizer.ggml.tokens, the rows from the
 * tensor: when a file's two disagree, the shape alone would not say why. */
static hearth_status check_vocab_rows(const gguf_file *file, const char *name, int64_t n_vocab, hearth_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(file, name);
    if (t && t->n_dims == 2 && t->ne[1] != n_vocab)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "tensor %s: %lld rows, but the vocabulary (tokenizer.ggml.tokens) has %lld tokens", name,
                         (long long)t->ne[1], (long long)n_vocab);
    return HEARTH_OK;
}

hearth_status model_bind_embedding_and_output(const gguf_file *file, int64_t n_embd, int64_t n_vocab,
                                              ops_matrix *embed, const float **output_norm, ops_matrix *output,
                                              hearth_error *err)
{
    bool untied = false;
    hearth_status st;
    if ((st = check_vocab_rows(file, "token_embd.weight", n_vocab, err)) ||
        (st = check_vocab_rows(file, "output.weight", n_vocab, err)) ||
        (st = model_bind_matrix(file, "token_embd.weight", n_embd, n_vocab, embed, err)) ||
        (st = model_bind_vector(file, "output_norm.weight", n_embd, output_norm, err)) ||
        (st = model_bind_optional_matrix(file, "output.weight", n_embd, n_vocab, output, &untied, err)))
        return st;
    if (!untied)
        *output = *embed;
    return HEARTH_OK;
}

static hearth_status bind_found_vector(const gguf_tensor *t, int64_t n, const float **out, hearth_error *err)
{
    if (t->n_dims != 1 || t->ne[0] != n)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: shape [%lld, %lld], expected [%lld]", t->name,
                         (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    if (t->type != QUANT_F32)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "tensor %s: type %s, expected F32", t->name,
                         quant_get_traits(t->type)->name);
    *out = t->data;
    return HEARTH_OK;
}

hearth_status model_bind_vector(const gguf_file *file, const char *name, int64_t n, const float **out,
                                hearth_error *err)
{
    const gguf_tensor *t;
    hearth_status st = find_tensor(file, name, &t, err);
    return st == HEARTH_OK ? bind_found_vector(t, n, out, err) : st;
}

hearth_status model_bind_optional_vector(const gguf_file *file, const char *name, int64_t n, const float **out,
                                         hearth_error *err)
{
    const gguf_tensor *t = gguf_find_tensor(file, name);
    *out = NULL;
    return t ? bind_found_vector(t, n, out, err) : HEARTH_OK;
}

hearth_status model_get_u32(const gguf_file *file, const char *arch, const char *key, bool required,
                            uint32_t fallback, uint32_t *out, hearth_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint64_t v;
    if (!gguf_get_uint(file, full, &v)) {
        if (gguf_find_kv(file, full))
            return error_set(err, HEARTH_ERR_FORMAT, "%s: not an unsigned integer", full);
        if (required)
            return error_set(err, HEARTH_ERR_FORMAT, "%s: missing", full);
        v = fallback;
    }
    if (v > UINT32_MAX)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: %llu is too large", full, (unsigned long long)v);
    *out = (uint32_t)v;
    return HEARTH_OK;
}

hearth_status model_get_f32(const gguf_file *file, const char *arch, const char *key, bool required,
                            float fallback, float *out, hearth_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v;
    if (!gguf_get_float(file, full, &v)) {
        if (gguf_find_kv(file, full))
            return error_set(err, HEARTH_ERR_FORMAT, "%s: not a float", full);
        if (required)
            return error_set(err, HEARTH_ERR_FORMAT, "%s: missing", full);
        v = fallback;
    }
    if (!(v == v) || v > 3.4e38 || v < -3.4e38)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: %g is not a finite float", full, v);
    *out = (float)v;
    return HEARTH_OK;
}

hearth_status model_read_rope(const gguf_file *file, const char *arch, float default_base, ops_rope *rope,
                              hearth_error *err)
{
    return model_read_rope_scaling(file, arch, default_base, false, rope, err);
}

hearth_status model_read_rope_scaling(const gguf_file *file, const char *arch, float default_base, bool allow_yarn,
                                      ops_rope *rope, hearth_error *err)
{
    hearth_status st = model_get_f32(file, arch, "rope.freq_base", false, default_base, &rope->freq_base, err);
    if (st != HEARTH_OK)
        return st;
    if (!(rope->freq_base > 0.0f))
        return error_set(err, HEARTH_ERR_FORMAT, "%s.rope.freq_base: %g must be positive", arch, rope->freq_base);

    /* The scaling: none, linear (which is also what a bare factor means to
     * llama.cpp), or, where the caller allows it, YaRN with the parameters
     * llama.cpp derives for it when the architecture sets none of its own: ext_factor 1, beta_fast 32,
     * beta_slow 1, and an attention factor that cancels the magnitude
     * scaling ggml's rope applies (see below). */
    rope->freq_scale = 1.0f;
    rope->ext_factor = 0.0f;
    rope->attn_factor = 1.0f;
    char key[256];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const gguf_string *type = gguf_get_string(file, key);
    if (gguf_find_kv(file, key) && !type)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: not a string", key);
    if (type && gguf_string_equals(type, "none"))
        return HEARTH_OK;
    bool yarn = allow_yarn && type && gguf_string_equals(type, "yarn");
    if (type && !yarn && !gguf_string_equals(type, "linear"))
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "%s: '%.*s' is not supported (none, linear%s)", key,
                         (int)(type->len > 32 ? 32 : type->len), type->data, allow_yarn ? ", yarn" : "");
    float factor;
    if ((st = model_get_f32(file, arch, "rope.scaling.factor", false, 0.0f, &factor, err)))
        return st;
    if (factor < 0.0f)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.rope.scaling.factor: %g must be positive", arch, factor);
    if (factor > 0.0f)
        rope->freq_scale = 1.0f / factor;
    if (!yarn)
        return HEARTH_OK;

    uint32_t n_ctx_train, n_ctx_orig;
    float attn_factor;
    if ((st = model_get_u32(file, arch, "context_length", true, 0, &n_ctx_train, err)) ||
        (st = model_get_u32(file, arch, "rope.scaling.original_context_length", false, n_ctx_train, &n_ctx_orig,
                            err)) ||
        (st = model_get_f32(file, arch, "rope.scaling.attn_factor", false, 1.0f, &attn_factor, err)))
        return st;
    if (n_ctx_orig == 0 || n_ctx_orig > INT32_MAX)
        return error_set(err, HEARTH_ERR_FORMAT, "%s.rope.scaling.original_context_length: %u is not a usable length",
                         arch, n_ctx_orig);
    rope->ext_factor = 1.0f;
    rope->beta_fast = 32.0f;
    rope->beta_slow = 1.0f;
    rope->n_ctx_orig = (int32_t)n_ctx_orig;
    /* llama_context's attention factor: ggml's rope multiplies cos and sin by
     * 1 + 0.1 ln(factor) under YaRN, and llama.cpp divides that back out
     * (times the mscale of the same form it would apply itself), so the
     * product is 1 up to rounding; computed in the same order to keep the
     * rounding too. */
    float scale = 1.0f / rope->freq_scale;
    float mscale = scale <= 1.0f ? 1.0f : 0.1f * 1.0f * logf(scale) + 1.0f;
    mscale *= 1.0f / (1.0f + 0.1f * logf(scale));
    rope->attn_factor = mscale * attn_factor;
    return HEARTH_OK;
}

/* libFuzzer target: the GGUF reader on arbitrary bytes.
 *
 * Whatever the reader accepts must be safe to walk completely (every key,
 * every string and nested array, every tensor's first and last byte), and must
 * survive a trip through the writer: re-serialised and read back, it has the
 * same keys and tensors. A disagreement there is a real bug, so it traps.
 *
 * A file with a vocabulary (tokenizer.ggml.*) the loader accepts also
 * tokenizes the input's first bytes: ids inside the vocabulary, and with
 * every control token's text guarded the same ids as with special tokens
 * off (the special-token trie over a hostile vocabulary). */
#include "gguf/gguf.h"
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

static volatile uint64_t sink;

static void walk_value(const gguf_value *v)
{
    if (v->type == GGUF_TYPE_STRING) {
        if (v->as.str.len)
            sink += (uint8_t)v->as.str.data[0] + (uint8_t)v->as.str.data[v->as.str.len - 1];
        return;
    }
    if (v->type != GGUF_TYPE_ARRAY) {
        sink += v->as.u64;
        return;
    }
    const gguf_array *a = &v->as.arr;
    for (uint64_t i = 0; i < a->count; i++) {
        if (a->elem_type == GGUF_TYPE_STRING) {
            gguf_value s = {.type = GGUF_TYPE_STRING, .as.str = a->strings[i]};
            walk_value(&s);
        } else if (a->elem_type == GGUF_TYPE_ARRAY) {
            walk_value(&a->arrays[i]);
        } else if (a->elem_type == GGUF_TYPE_FLOAT32 || a->elem_type == GGUF_TYPE_FLOAT64) {
            sink += (uint64_t)(gguf_array_get_float(a, i) != 0);
        } else {
            sink += gguf_array_get_uint(a, i);
        }
    }
}

static void round_trip(const gguf_file *f)
{
    gguf_writer *w = gguf_writer_create();
    if (!w)
        return;
    gguf_writer_set_version(w, gguf_version(f));
    hearth_error err;
    bool ok = true;
    for (int64_t i = 0; ok && i < gguf_kv_count(f); i++)
        ok = gguf_writer_add_value(w, gguf_kv_at(f, i)->key, &gguf_kv_at(f, i)->value, &err) == HEARTH_OK;
    for (int64_t i = 0; ok && i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        ok = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, &err) == HEARTH_OK;
    }
    void *mem = NULL;
    size_t size = 0;
    if (!ok || gguf_writer_write_memory(w, &mem, &size, &err) != HEARTH_OK)
        __builtin_trap(); /* the writer refused what the reader accepted */
    gguf_file *g = NULL;
    if (gguf_open_memory(mem, size, &g, &err) != HEARTH_OK)
        __builtin_trap(); /* the reader refused what the writer wrote */
    if (gguf_kv_count(g) != gguf_kv_count(f) || gguf_tensor_count(g) != gguf_tensor_count(f) ||
        gguf_alignment(g) != gguf_alignment(f))
        __builtin_trap();
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *a = gguf_tensor_at(f, i), *b = gguf_tensor_at(g, i);
        if (strcmp(a->name, b->name) != 0 || a->size != b->size || memcmp(a->data, b->data, a->size) != 0)
            __builtin_trap();
    }
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
}

static int64_t tokenize_checked(const vocab *v, const char *text, size_t len, bool special, int32_t *ids, size_t cap)
{
    hearth_error err;
    int64_t n = vocab_tokenize(v, text, len, special, special, ids, cap, &err);
    for (int64_t i = 0; i < n && (size_t)i < cap; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size(v))
            __builtin_trap();
    return n;
}

static void tokenize_with(const vocab *v, const char *text, size_t len)
{
    enum { CAP = 1024 }; /* more than 256 bytes can take, with BOS and EOS */
    static int32_t plain[CAP], guarded[CAP];
    tokenize_checked(v, text, len, true, guarded, CAP);
    int64_t n = tokenize_checked(v, text, len, false, plain, CAP);
    text_span *spans = NULL;
    size_t n_spans = 0;
    hearth_error err;
    if (n < 0 || n > CAP || vocab_control_spans(v, text, len, &spans, &n_spans, &err) != HEARTH_OK)
        return;
    if (vocab_tokenize_guarded(v, text, len, false, spans, n_spans, guarded, CAP, &err) != n ||
        memcmp(plain, guarded, (size_t)n * sizeof *plain) != 0)
        __builtin_trap();
    free(spans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    hearth_error err;
    if (gguf_open_memory(data, size, &f, &err) != HEARTH_OK)
        return 0;
    for (int64_t i = 0; i < gguf_kv_count(f); i++)
        walk_value(&gguf_kv_at(f, i)->value);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        sink += p[0] + p[t->size - 1] + (gguf_find_tensor(f, t->name) == t);
    }
    round_trip(f);
    vocab *v = NULL;
    if (vocab_load(f, &v, &err) == HEARTH_OK) {
        tokenize_with(v, (const char *)data, size < 256 ? size : 256);
        vocab_free(v);
    }
    gguf_close(f);
    return 0;
}

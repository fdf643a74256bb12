/* GGUF writer. Metadata is serialised as it is added; tensor data is only
 * referenced and streamed out at write time, each tensor padded to the
 * alignment. */
#include "gguf/gguf.h"

#include "base/checked.h"
#include "base/error.h"
#include "quant/quant.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct byte_buf {
    uint8_t *data;
    size_t len, cap;
} byte_buf;

typedef struct writer_tensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t size;
    uint64_t offset;
} writer_tensor;

struct gguf_writer {
    uint32_t version;
    uint32_t alignment;
    bool alignment_set; /* written as general.alignment, after the other keys */
    byte_buf kv_bytes; /* serialised key/value pairs, in order */
    uint64_t n_kv;
    char **keys;
    size_t keys_cap;
    writer_tensor *tensors;
    uint64_t n_tensors;
    size_t tensors_cap;
    hearth_error first_error; /* status HEARTH_OK until something fails */
};

static bool buf_put(byte_buf *b, const void *data, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return false;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown)
            return false;
        b->data = grown;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return true;
}

static bool buf_u32(byte_buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static bool buf_u64(byte_buf *b, uint64_t v) { return buf_put(b, &v, 8); }

static bool buf_string(byte_buf *b, const char *s, uint64_t len)
{
    return buf_u64(b, len) && buf_put(b, s, len);
}

gguf_writer *gguf_writer_create(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->version = 3;
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    }
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->kv_bytes.data);
    free(w);
}

void gguf_writer_set_version(gguf_writer *w, uint32_t version)
{
    w->version = version;
}

/* Records the first failure so that gguf_writer_write reports it even when the
 * caller ignored the status of an add call. */
static hearth_status writer_fail(gguf_writer *w, hearth_error *err, hearth_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static hearth_status writer_fail(gguf_writer *w, hearth_error *err, hearth_status st, const char *fmt, ...)
{
    hearth_error e = {.status = st};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (w->first_error.status == HEARTH_OK)
        w->first_error = e;
    if (err)
        *err = e;
    return st;
}

hearth_status gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, hearth_error *err)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > GGUF_MAX_ALIGNMENT)
        return writer_fail(w, err, HEARTH_ERR_ARG, "alignment %u is not a power of two up to %u", alignment,
                           GGUF_MAX_ALIGNMENT);
    w->alignment = alignment;
    w->alignment_set = true;
    return HEARTH_OK;
}

/* Starts a key/value pair: checks the key, remembers it, writes key and type. */
static hearth_status begin_kv(gguf_writer *w, const char *key, uint32_t type, hearth_error *err)
{
    size_t len = strlen(key);
    if (len == 0 || len > GGUF_MAX_NAME)
        return writer_fail(w, err, HEARTH_ERR_ARG, "key '%s': length %zu not in 1..%d", key, len, GGUF_MAX_NAME);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: duplicate key", key);
    if (w->n_kv == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **grown = realloc(w->keys, cap * sizeof *grown);
        if (!grown)
            return writer_fail(w, err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
        w->keys = grown;
        w->keys_cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return writer_fail(w, err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
    memcpy(copy, key, len + 1);
    if (!buf_string(&w->kv_bytes, key, len) || !buf_u32(&w->kv_bytes, type)) {
        free(copy);
        return writer_fail(w, err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
    }
    w->keys[w->n_kv++] = copy;
    return HEARTH_OK;
}

static hearth_status put_or_fail(gguf_writer *w, bool ok, const char *key, hearth_error *err)
{
    return ok ? HEARTH_OK : writer_fail(w, err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
}

/* Writes v, a scalar of `type`, in its on-disk width. */
static bool put_scalar(byte_buf *b, uint32_t type, uint64_t bits, double f)
{
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: { uint8_t v = (uint8_t)bits; return buf_put(b, &v, 1); }
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: { uint16_t v = (uint16_t)bits; return buf_put(b, &v, 2); }
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: { uint32_t v = (uint32_t)bits; return buf_put(b, &v, 4); }
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: return buf_u64(b, bits);
    case GGUF_TYPE_FLOAT32: { float v = (float)f; return buf_put(b, &v, 4); }
    case GGUF_TYPE_FLOAT64: return buf_put(b, &f, 8);
    default: return false;
    }
}

static bool is_uint_type(uint32_t t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_int_type(uint32_t t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

/* general.alignment is not stored as an ordinary pair: it decides the layout,
 * so it is taken as the writer's alignment and written once, after the other
 * keys (a duplicate is an error like any other). */
static bool is_alignment_key(const char *key)
{
    return strcmp(key, "general.alignment") == 0;
}

hearth_status gguf_writer_add_uint(gguf_writer *w, const char *key, uint32_t type, uint64_t v, hearth_error *err)
{
    if (!is_uint_type(type))
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: %s is not an unsigned type", key, gguf_value_type_name(type));
    if (is_alignment_key(key)) {
        if (type != GGUF_TYPE_UINT32 || v > UINT32_MAX)
            return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: must be UINT32", key);
        if (w->alignment_set)
            return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: duplicate key", key);
        return gguf_writer_set_alignment(w, (uint32_t)v, err);
    }
    hearth_status st = begin_kv(w, key, type, err);
    return st != HEARTH_OK ? st : put_or_fail(w, put_scalar(&w->kv_bytes, type, v, 0), key, err);
}

hearth_status gguf_writer_add_int(gguf_writer *w, const char *key, uint32_t type, int64_t v, hearth_error *err)
{
    if (!is_int_type(type))
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: %s is not a signed type", key, gguf_value_type_name(type));
    hearth_status st = begin_kv(w, key, type, err);
    return st != HEARTH_OK ? st : put_or_fail(w, put_scalar(&w->kv_bytes, type, (uint64_t)v, 0), key, err);
}

hearth_status gguf_writer_add_float(gguf_writer *w, const char *key, uint32_t type, double v, hearth_error *err)
{
    if (type != GGUF_TYPE_FLOAT32 && type != GGUF_TYPE_FLOAT64)
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: %s is not a float type", key, gguf_value_type_name(type));
    hearth_status st = begin_kv(w, key, type, err);
    return st != HEARTH_OK ? st : put_or_fail(w, put_scalar(&w->kv_bytes, type, 0, v), key, err);
}

hearth_status gguf_writer_add_bool(gguf_writer *w, const char *key, bool v, hearth_error *err)
{
    hearth_status st = begin_kv(w, key, GGUF_TYPE_BOOL, err);
    return st != HEARTH_OK ? st : put_or_fail(w, put_scalar(&w->kv_bytes, GGUF_TYPE_BOOL, v, 0), key, err);
}

hearth_status gguf_writer_add_string(gguf_writer *w, const char *key, const char *v, hearth_error *err)
{
    hearth_status st = begin_kv(w, key, GGUF_TYPE_STRING, err);
    return st != HEARTH_OK ? st : put_or_fail(w, buf_string(&w->kv_bytes, v, strlen(v)), key, err);
}

hearth_status gguf_writer_add_array(gguf_writer *w, const char *key, uint32_t elem_type, const void *elems,
                                    uint64_t count, hearth_error *err)
{
    size_t elem_size = gguf_value_type_size(elem_type);
    uint64_t bytes;
    if (elem_size == 0)
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: %s arrays need gguf_writer_add_string_array/add_value",
                           key, gguf_value_type_name(elem_type));
    if (!checked_mul_u64(count, elem_size, &bytes) || bytes > SIZE_MAX)
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: array too large", key);
    hearth_status st = begin_kv(w, key, GGUF_TYPE_ARRAY, err);
    if (st != HEARTH_OK)
        return st;
    bool ok = buf_u32(&w->kv_bytes, elem_type) && buf_u64(&w->kv_bytes, count) &&
              buf_put(&w->kv_bytes, elems, (size_t)bytes);
    return put_or_fail(w, ok, key, err);
}

hearth_status gguf_writer_add_string_array(gguf_writer *w, const char *key, const char *const *strings,
                                           uint64_t count, hearth_error *err)
{
    hearth_status st = begin_kv(w, key, GGUF_TYPE_ARRAY, err);
    if (st != HEARTH_OK)
        return st;
    bool ok = buf_u32(&w->kv_bytes, GGUF_TYPE_STRING) && buf_u64(&w->kv_bytes, count);
    for (uint64_t i = 0; ok && i < count; i++)
        ok = buf_string(&w->kv_bytes, strings[i], strlen(strings[i]));
    return put_or_fail(w, ok, key, err);
}

/* Serialises a value of any type; arrays recurse. */
static bool put_value(byte_buf *b, const gguf_value *v)
{
    switch (v->type) {
    case GGUF_TYPE_STRING:
        return buf_string(b, v->as.str.data, v->as.str.len);
    case GGUF_TYPE_ARRAY: {
        const gguf_array *a = &v->as.arr;
        if (!buf_u32(b, a->elem_type) || !buf_u64(b, a->count))
            return false;
        if (a->elem_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < a->count; i++)
                if (!buf_string(b, a->strings[i].data, a->strings[i].len))
                    return false;
            return true;
        }
        if (a->elem_type == GGUF_TYPE_ARRAY) {
            for (uint64_t i = 0; i < a->count; i++)
                if (!put_value(b, &a->arrays[i]))
                    return false;
            return true;
        }
        size_t elem_size = gguf_value_type_size(a->elem_type);
        uint64_t bytes;
        return elem_size && checked_mul_u64(a->count, elem_size, &bytes) && bytes <= SIZE_MAX &&
               buf_put(b, a->raw, (size_t)bytes);
    }
    case GGUF_TYPE_BOOL:
        return put_scalar(b, v->type, v->as.b, 0);
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        return put_scalar(b, v->type, 0, v->as.f64);
    default:
        return put_scalar(b, v->type, v->as.u64, 0);
    }
}

hearth_status gguf_writer_add_value(gguf_writer *w, const char *key, const gguf_value *v, hearth_error *err)
{
    if (v->type >= GGUF_TYPE_COUNT)
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: unknown value type %u", key, v->type);
    if (is_alignment_key(key))
        return gguf_writer_add_uint(w, key, v->type, v->as.u64, err);
    hearth_status st = begin_kv(w, key, v->type, err);
    if (st != HEARTH_OK)
        return st;
    if (!put_value(&w->kv_bytes, v))
        return writer_fail(w, err, HEARTH_ERR_ARG, "key %s: value cannot be serialised (bad type or out of memory)", key);
    return HEARTH_OK;
}

hearth_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                     const int64_t *ne, const void *data, uint64_t size, hearth_error *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > GGUF_MAX_NAME)
        return writer_fail(w, err, HEARTH_ERR_ARG, "tensor '%s': name length %zu not in 1..%d", name, len, GGUF_MAX_NAME);
    const quant_traits *traits = quant_get_traits(type);
    if (!traits)
        return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: unknown type %u", name, type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: n_dims %u not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || !checked_mul_u64(n_elements, (uint64_t)ne[d], &n_elements) || n_elements > INT64_MAX)
            return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: bad dim %u (%lld)", name, d, (long long)ne[d]);
    }
    uint64_t row_bytes, expect;
    if (!quant_bytes(type, (uint64_t)ne[0], &row_bytes) ||
        !checked_mul_u64(row_bytes, n_elements / (uint64_t)ne[0], &expect))
        return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: row length %lld does not fit %s blocks of %u", name,
                           (long long)ne[0], traits->name, traits->block_size);
    if (size != expect)
        return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: %llu bytes given, %s shape needs %llu", name,
                           (unsigned long long)size, traits->name, (unsigned long long)expect);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return writer_fail(w, err, HEARTH_ERR_ARG, "tensor %s: duplicate tensor name", name);
    if (w->n_tensors == w->tensors_cap) {
        size_t cap = w->tensors_cap ? w->tensors_cap * 2 : 32;
        writer_tensor *grown = realloc(w->tensors, cap * sizeof *grown);
        if (!grown)
            return writer_fail(w, err, HEARTH_ERR_NOMEM, "tensor %s: out of memory", name);
        w->tensors = grown;
        w->tensors_cap = cap;
    }
    writer_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = malloc(len + 1);
    if (!t->name)
        return writer_fail(w, err, HEARTH_ERR_NOMEM, "tensor %s: out of memory", name);
    memcpy(t->name, name, len + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->size = size;
    w->n_tensors++;
    return HEARTH_OK;
}

/* Header, metadata and tensor infos, padded to the alignment; assigns offsets. */
static hearth_status build_header(gguf_writer *w, byte_buf *h, hearth_error *err)
{
    bool extra_alignment = w->alignment_set;
    bool ok = buf_put(h, GGUF_MAGIC, 4) && buf_u32(h, w->version) && buf_u64(h, w->n_tensors) &&
              buf_u64(h, w->n_kv + extra_alignment) && buf_put(h, w->kv_bytes.data, w->kv_bytes.len);
    if (ok && extra_alignment) {
        const char *key = "general.alignment";
        ok = buf_string(h, key, strlen(key)) && buf_u32(h, GGUF_TYPE_UINT32) && buf_u32(h, w->alignment);
    }
    uint64_t offset = 0;
    for (uint64_t i = 0; ok && i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        t->offset = offset;
        ok = buf_string(h, t->name, strlen(t->name)) && buf_u32(h, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++)
            ok = buf_u64(h, (uint64_t)t->ne[d]);
        ok = ok && buf_u32(h, t->type) && buf_u64(h, t->offset);
        if (ok && (!checked_add_u64(offset, t->size, &offset) || !checked_align_u64(offset, w->alignment, &offset)))
            return error_set(err, HEARTH_ERR_ARG, "tensor %s: data offsets overflow", t->name);
    }
    static const uint8_t zeros[64];
    while (ok && h->len % w->alignment != 0) {
        size_t pad = w->alignment - h->len % w->alignment;
        ok = buf_put(h, zeros, pad < sizeof zeros ? pad : sizeof zeros);
    }
    return ok ? HEARTH_OK : error_set(err, HEARTH_ERR_NOMEM, "gguf writer: out of memory");
}

static bool write_padding(FILE *out, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, chunk, out) != chunk)
            return false;
        n -= chunk;
    }
    return true;
}

static hearth_status write_stream(gguf_writer *w, FILE *out, const char *what, hearth_error *err)
{
    if (w->first_error.status != HEARTH_OK) {
        if (err)
            *err = w->first_error;
        return w->first_error.status;
    }
    byte_buf header = {0};
    hearth_status st = build_header(w, &header, err);
    if (st == HEARTH_OK && fwrite(header.data, 1, header.len, out) != header.len)
        st = error_set(err, HEARTH_ERR_IO, "%s: write failed: %s", what, strerror(errno));
    free(header.data);
    for (uint64_t i = 0; st == HEARTH_OK && i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        uint64_t padded = t->size;
        checked_align_u64(t->size, w->alignment, &padded); /* cannot overflow: build_header checked */
        bool last = i + 1 == w->n_tensors;
        if ((t->size && fwrite(t->data, 1, (size_t)t->size, out) != t->size) ||
            (!last && !write_padding(out, padded - t->size)))
            st = error_set(err, HEARTH_ERR_IO, "%s: writing tensor %s failed: %s", what, t->name, strerror(errno));
    }
    return st;
}

hearth_status gguf_writer_write(gguf_writer *w, const char *path, hearth_error *err)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + 5);
    if (!tmp)
        return error_set(err, HEARTH_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        hearth_status st = error_set(err, HEARTH_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    hearth_status st = write_stream(w, out, path, err);
    if (fclose(out) != 0 && st == HEARTH_OK)
        st = error_set(err, HEARTH_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (st == HEARTH_OK && rename(tmp, path) != 0)
        st = error_set(err, HEARTH_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != HEARTH_OK)
        remove(tmp);
    free(tmp);
    return st;
}

hearth_status gguf_writer_write_memory(gguf_writer *w, void **data, size_t *size, hearth_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return error_set(err, HEARTH_ERR_NOMEM, "gguf writer: cannot open a memory stream");
    hearth_status st = write_stream(w, out, "memory", err);
    if (fclose(out) != 0 && st == HEARTH_OK)
        st = error_set(err, HEARTH_ERR_NOMEM, "gguf writer: memory stream failed");
    if (st != HEARTH_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *size = len;
    return HEARTH_OK;
}

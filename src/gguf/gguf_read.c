/* GGUF reader: a bounds-checked cursor over the mapped file.
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version u64 n_tensors u64 n_kv
 *   n_kv      × { string key, u32 type, value }
 *   n_tensors × { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to the alignment, then the data section; tensor offsets count
 *   from its start and are multiples of the alignment.
 * A string is u64 length + bytes; an array is u32 element type + u64 count +
 * elements. Version 1 used 32-bit counts and is not supported. */
#include "gguf/gguf_internal.h"

#include "base/checked.h"
#include "base/error.h"
#include "base/hash.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

static uint64_t cursor_left(const cursor *c)
{
    return c->size - c->pos;
}

static bool cursor_read(cursor *c, void *out, uint64_t n)
{
    if (n > cursor_left(c))
        return false;
    memcpy(out, c->base + c->pos, n);
    c->pos += n;
    return true;
}

static bool cursor_u32(cursor *c, uint32_t *out)
{
    return cursor_read(c, out, sizeof *out);
}

static bool cursor_u64(cursor *c, uint64_t *out)
{
    return cursor_read(c, out, sizeof *out);
}

static bool cursor_string(cursor *c, gguf_string *out)
{
    uint64_t len;
    if (!cursor_u64(c, &len) || len > cursor_left(c))
        return false;
    out->data = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += len;
    return true;
}

/* ---- names ---------------------------------------------------------------- */

/* Open addressing over indices; slots hold index + 1 (0 = empty). The table is
 * at least twice the entry count, so probing always ends. */
static bool name_table_init(name_table *t, uint64_t n_entries)
{
    uint64_t cap = 16;
    while (cap < n_entries * 2)
        cap <<= 1;
    t->slots = calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    return t->slots != NULL;
}

/* Returns the index stored for `name`, or -1 after inserting `index`. */
static int64_t name_table_insert(name_table *t, const char *name, int64_t index)
{
    uint64_t i = hash_bytes(name, strlen(name)) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        if (t->slots[i] == 0) {
            t->slots[i] = (uint64_t)index + 1;
            return -1;
        }
        if (strcmp(t->names(t->owner, (int64_t)t->slots[i] - 1), name) == 0)
            return (int64_t)t->slots[i] - 1;
    }
}

static int64_t name_table_find(const name_table *t, const char *name)
{
    if (!t->slots)
        return -1;
    uint64_t i = hash_bytes(name, strlen(name)) & t->mask;
    for (; t->slots[i] != 0; i = (i + 1) & t->mask) {
        if (strcmp(t->names(t->owner, (int64_t)t->slots[i] - 1), name) == 0)
            return (int64_t)t->slots[i] - 1;
    }
    return -1;
}

static const char *kv_name(const void *owner, int64_t i)
{
    return ((const gguf_file *)owner)->kvs[i].key;
}

static const char *tensor_name(const void *owner, int64_t i)
{
    return ((const gguf_file *)owner)->tensors[i].name;
}

/* Copies a key or tensor name out of the file with a terminator. Names are
 * identifiers: empty names and embedded NULs are rejected. */
static hearth_status copy_name(gguf_file *f, const gguf_string *s, const char *what, char **out,
                               hearth_error *err)
{
    if (s->len == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: empty name", what);
    if (s->len > GGUF_MAX_NAME)
        return error_set(err, HEARTH_ERR_FORMAT, "%s: name of %llu bytes (limit %d)", what,
                         (unsigned long long)s->len, GGUF_MAX_NAME);
    if (memchr(s->data, '\0', s->len))
        return error_set(err, HEARTH_ERR_FORMAT, "%s '%.*s': name contains a NUL byte", what,
                         (int)s->len, s->data);
    char *copy = malloc(s->len + 1);
    if (!copy)
        return error_set(err, HEARTH_ERR_NOMEM, "%s: out of memory", what);
    memcpy(copy, s->data, s->len);
    copy[s->len] = '\0';
    /* Keep every name in a list the file owns, freed at close. */
    if (f->n_names == f->names_cap) {
        size_t cap = f->names_cap ? f->names_cap * 2 : 64;
        char **grown = realloc(f->names, cap * sizeof *grown);
        if (!grown) {
            free(copy);
            return error_set(err, HEARTH_ERR_NOMEM, "%s: out of memory", what);
        }
        f->names = grown;
        f->names_cap = cap;
    }
    f->names[f->n_names++] = copy;
    *out = copy;
    return HEARTH_OK;
}

/* ---- values --------------------------------------------------------------- */

/* Allocations made while parsing values (string and nested-array element lists)
 * go on one list owned by the file. */
static void *file_alloc(gguf_file *f, size_t n)
{
    if (f->n_allocs == f->allocs_cap) {
        size_t cap = f->allocs_cap ? f->allocs_cap * 2 : 16;
        void **grown = realloc(f->allocs, cap * sizeof *grown);
        if (!grown)
            return NULL;
        f->allocs = grown;
        f->allocs_cap = cap;
    }
    void *p = malloc(n ? n : 1);
    if (p)
        f->allocs[f->n_allocs++] = p;
    return p;
}

static hearth_status read_value(gguf_file *f, cursor *c, uint32_t type, gguf_value *out, int depth,
                                const char *key, hearth_error *err);

static hearth_status read_array(gguf_file *f, cursor *c, gguf_array *arr, int depth, const char *key,
                                hearth_error *err)
{
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: arrays nested deeper than %d", key,
                         GGUF_MAX_ARRAY_DEPTH);
    if (!cursor_u32(c, &arr->elem_type) || !cursor_u64(c, &arr->count))
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: array header past end of file", key);
    if (arr->elem_type >= GGUF_TYPE_COUNT)
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: unknown array element type %u", key,
                         arr->elem_type);
    arr->raw = NULL;
    arr->strings = NULL;
    arr->arrays = NULL;

    size_t elem_size = gguf_value_type_size(arr->elem_type);
    if (elem_size) {
        uint64_t bytes;
        if (!checked_mul_u64(arr->count, elem_size, &bytes) || bytes > cursor_left(c))
            return error_set(err, HEARTH_ERR_FORMAT,
                             "key %s: array of %llu %s elements runs past end of file", key,
                             (unsigned long long)arr->count, gguf_value_type_name(arr->elem_type));
        arr->raw = c->base + c->pos;
        if (arr->elem_type == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < arr->count; i++)
                if (arr->raw[i] > 1)
                    return error_set(err, HEARTH_ERR_FORMAT, "key %s: element %llu: bool value %u",
                                     key, (unsigned long long)i, arr->raw[i]);
        }
        c->pos += bytes;
        return HEARTH_OK;
    }

    /* Strings take at least 8 bytes each and nested arrays 12: bounding the
     * count by the bytes left keeps the element list no larger than the file. */
    uint64_t min_elem = arr->elem_type == GGUF_TYPE_STRING ? 8 : 12;
    if (arr->count > cursor_left(c) / min_elem)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "key %s: array of %llu %s elements runs past end of file", key,
                         (unsigned long long)arr->count, gguf_value_type_name(arr->elem_type));
    if (arr->elem_type == GGUF_TYPE_STRING) {
        gguf_string *strings = file_alloc(f, arr->count * sizeof *strings);
        if (!strings)
            return error_set(err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
        for (uint64_t i = 0; i < arr->count; i++)
            if (!cursor_string(c, &strings[i]))
                return error_set(err, HEARTH_ERR_FORMAT,
                                 "key %s: string element %llu runs past end of file", key,
                                 (unsigned long long)i);
        arr->strings = strings;
        return HEARTH_OK;
    }
    gguf_value *items = file_alloc(f, arr->count * sizeof *items);
    if (!items)
        return error_set(err, HEARTH_ERR_NOMEM, "key %s: out of memory", key);
    for (uint64_t i = 0; i < arr->count; i++) {
        hearth_status st = read_value(f, c, GGUF_TYPE_ARRAY, &items[i], depth + 1, key, err);
        if (st != HEARTH_OK)
            return st;
    }
    arr->arrays = items;
    return HEARTH_OK;
}

static hearth_status read_value(gguf_file *f, cursor *c, uint32_t type, gguf_value *out, int depth,
                                const char *key, hearth_error *err)
{
    out->type = type;
    uint8_t buf[8];
    switch (type) {
    case GGUF_TYPE_STRING:
        if (!cursor_string(c, &out->as.str))
            return error_set(err, HEARTH_ERR_FORMAT, "key %s: string value runs past end of file", key);
        return HEARTH_OK;
    case GGUF_TYPE_ARRAY:
        return read_array(f, c, &out->as.arr, depth, key, err);
    default:
        break;
    }
    size_t n = gguf_value_type_size(type);
    if (n == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: unknown value type %u", key, type);
    if (!cursor_read(c, buf, n))
        return error_set(err, HEARTH_ERR_FORMAT, "key %s: %s value past end of file", key,
                         gguf_value_type_name(type));
    gguf_array one = {.elem_type = type, .count = 1, .raw = buf};
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_UINT64:
        out->as.u64 = gguf_array_get_uint(&one, 0);
        break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        out->as.i64 = gguf_array_get_int(&one, 0);
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        out->as.f64 = gguf_array_get_float(&one, 0);
        break;
    case GGUF_TYPE_BOOL:
        if (buf[0] > 1)
            return error_set(err, HEARTH_ERR_FORMAT, "key %s: bool value %u (must be 0 or 1)", key, buf[0]);
        out->as.b = buf[0] != 0;
        break;
    }
    return HEARTH_OK;
}

/* ---- header --------------------------------------------------------------- */

static hearth_status read_kvs(gguf_file *f, cursor *c, hearth_error *err)
{
    f->kvs = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kvs);
    if (!f->kvs || !name_table_init(&f->kv_index, f->n_kv))
        return error_set(err, HEARTH_ERR_NOMEM, "metadata: out of memory for %llu keys",
                         (unsigned long long)f->n_kv);
    f->kv_index.names = kv_name;
    f->kv_index.owner = f;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        gguf_string key;
        char what[48];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        if (!cursor_string(c, &key))
            return error_set(err, HEARTH_ERR_FORMAT, "%s: name runs past end of file", what);
        char *name;
        hearth_status st = copy_name(f, &key, what, &name, err);
        if (st != HEARTH_OK)
            return st;
        kv->key = name;
        uint32_t type;
        if (!cursor_u32(c, &type))
            return error_set(err, HEARTH_ERR_FORMAT, "key %s: value type past end of file", name);
        if (type >= GGUF_TYPE_COUNT)
            return error_set(err, HEARTH_ERR_FORMAT, "key %s: unknown value type %u", name, type);
        st = read_value(f, c, type, &kv->value, 0, name, err);
        if (st != HEARTH_OK)
            return st;
        if (name_table_insert(&f->kv_index, name, (int64_t)i) >= 0)
            return error_set(err, HEARTH_ERR_FORMAT, "key %s: duplicate key", name);
    }
    return HEARTH_OK;
}

static hearth_status read_alignment(gguf_file *f, hearth_error *err)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv)
        return HEARTH_OK;
    if (kv->value.type != GGUF_TYPE_UINT32)
        return error_set(err, HEARTH_ERR_FORMAT, "key general.alignment: type %s (must be UINT32)",
                         gguf_value_type_name(kv->value.type));
    uint64_t a = kv->value.as.u64;
    if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_MAX_ALIGNMENT)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "key general.alignment: %llu is not a power of two up to %u",
                         (unsigned long long)a, GGUF_MAX_ALIGNMENT);
    f->alignment = (uint32_t)a;
    return HEARTH_OK;
}

static hearth_status read_tensor_info(gguf_file *f, cursor *c, uint64_t i, hearth_error *err)
{
    gguf_tensor *t = &f->tensors[i];
    char what[48];
    snprintf(what, sizeof what, "tensor %llu", (unsigned long long)i);
    gguf_string name;
    if (!cursor_string(c, &name))
        return error_set(err, HEARTH_ERR_FORMAT, "%s: name runs past end of file", what);
    char *copy;
    hearth_status st = copy_name(f, &name, what, &copy, err);
    if (st != HEARTH_OK)
        return st;
    t->name = copy;
    if (!cursor_u32(c, &t->n_dims))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: n_dims past end of file", t->name);
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: n_dims is %u (must be 1..%d)", t->name,
                         t->n_dims, GGUF_MAX_DIMS);
    uint64_t n_elements = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims && !cursor_u64(c, &ne))
            return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: dims past end of file", t->name);
        if (ne == 0 || ne > INT64_MAX)
            return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: dim %u is %lld (must be > 0)", t->name,
                             d, (long long)ne);
        if (!checked_mul_u64(n_elements, ne, &n_elements) || n_elements > INT64_MAX)
            return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: element count overflows", t->name);
        t->ne[d] = (int64_t)ne;
    }
    t->n_elements = (int64_t)n_elements;
    if (!cursor_u32(c, &t->type))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: type past end of file", t->name);
    const quant_traits *traits = quant_get_traits(t->type);
    if (!traits)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: unknown type %u", t->name, t->type);
    if (t->ne[0] % traits->block_size != 0)
        return error_set(err, HEARTH_ERR_FORMAT,
                         "tensor %s: row length %lld is not a multiple of the %s block size %u",
                         t->name, (long long)t->ne[0], traits->name, traits->block_size);
    uint64_t row_bytes;
    if (!quant_bytes(t->type, (uint64_t)t->ne[0], &row_bytes) ||
        !checked_mul_u64(row_bytes, n_elements / (uint64_t)t->ne[0], &t->size))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: byte size overflows", t->name);
    if (!cursor_u64(c, &t->offset))
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: offset past end of file", t->name);
    if (t->offset % f->alignment != 0)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: offset %llu is not a multiple of the alignment %u",
                         t->name, (unsigned long long)t->offset, f->alignment);
    if (name_table_insert(&f->tensor_index, t->name, (int64_t)i) >= 0)
        return error_set(err, HEARTH_ERR_FORMAT, "tensor %s: duplicate tensor name", t->name);
    return HEARTH_OK;
}

static int compare_by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor inside the data section, none overlapping another. */
static hearth_status check_tensor_ranges(gguf_file *f, hearth_error *err)
{
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (!checked_add_u64(t->offset, t->size, &end) || end > data_size)
            return error_set(err, HEARTH_ERR_FORMAT,
                             "tensor %s: bytes %llu..%llu of the data section run past end of file "
                             "(data section is %llu bytes)",
                             t->name, (unsigned long long)t->offset,
                             (unsigned long long)t->offset + t->size, (unsigned long long)data_size);
        t->data = f->base + f->data_offset + t->offset;
    }
    if (f->n_tensors < 2)
        return HEARTH_OK;
    gguf_tensor **order = malloc(f->n_tensors * sizeof *order);
    if (!order)
        return error_set(err, HEARTH_ERR_NOMEM, "tensors: out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, compare_by_offset);
    hearth_status st = HEARTH_OK;
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *prev = order[i - 1], *t = order[i];
        if (prev->offset + prev->size > t->offset) {
            st = error_set(err, HEARTH_ERR_FORMAT, "tensor %s: overlaps tensor %s", t->name, prev->name);
            break;
        }
    }
    free(order);
    return st;
}

static hearth_status parse(gguf_file *f, hearth_error *err)
{
    cursor c = {.base = f->base, .size = f->size, .pos = 0};
    char magic[4];
    if (f->size == 0)
        return error_set(err, HEARTH_ERR_FORMAT, "empty file (0 bytes), not a GGUF model");
    if (!cursor_read(&c, magic, 4) || memcmp(magic, GGUF_MAGIC, 4) != 0)
        return error_set(err, HEARTH_ERR_FORMAT, "bad magic: not a GGUF file");
    if (!cursor_u32(&c, &f->version))
        return error_set(err, HEARTH_ERR_FORMAT, "header: version past end of file");
    if (f->version == 1)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "header: GGUF version 1 is not supported (only 2 and 3)");
    if ((f->version & 0xFFFF) == 0 && f->version != 0)
        return error_set(err, HEARTH_ERR_UNSUPPORTED, "header: big-endian GGUF is not supported");
    if (f->version != 2 && f->version != 3)
        return error_set(err, HEARTH_ERR_FORMAT, "header: unknown GGUF version %u (expected 2 or 3)",
                         f->version);
    if (!cursor_u64(&c, &f->n_tensors) || !cursor_u64(&c, &f->n_kv))
        return error_set(err, HEARTH_ERR_FORMAT, "header: counts past end of file");
    /* A key takes at least 8 (length) + 1 + 4 (type) + 1 bytes, a tensor info at
     * least 8 + 1 + 4 + 8 + 4 + 8: counts beyond that cannot be honest. */
    if (f->n_kv > cursor_left(&c) / 14)
        return error_set(err, HEARTH_ERR_FORMAT, "header: metadata key count %llu exceeds what the file can hold",
                         (unsigned long long)f->n_kv);
    if (f->n_tensors > cursor_left(&c) / 33)
        return error_set(err, HEARTH_ERR_FORMAT, "header: tensor count %llu exceeds what the file can hold",
                         (unsigned long long)f->n_tensors);

    hearth_status st = read_kvs(f, &c, err);
    if (st != HEARTH_OK)
        return st;
    st = read_alignment(f, err);
    if (st != HEARTH_OK)
        return st;

    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors || !name_table_init(&f->tensor_index, f->n_tensors))
        return error_set(err, HEARTH_ERR_NOMEM, "tensors: out of memory for %llu tensor infos",
                         (unsigned long long)f->n_tensors);
    f->tensor_index.names = tensor_name;
    f->tensor_index.owner = f;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        st = read_tensor_info(f, &c, i, err);
        if (st != HEARTH_OK)
            return st;
    }

    /* The data section starts at the next alignment boundary. A file with no
     * tensors may end right after its header. */
    if (!checked_align_u64(c.pos, f->alignment, &f->data_offset))
        return error_set(err, HEARTH_ERR_FORMAT, "header: data offset overflows");
    if (f->data_offset > f->size) {
        if (f->n_tensors > 0)
            return error_set(err, HEARTH_ERR_FORMAT,
                             "header: data section starts at %llu, past end of file (%llu bytes)",
                             (unsigned long long)f->data_offset, (unsigned long long)f->size);
        f->data_offset = f->size;
    }
    return check_tensor_ranges(f, err);
}

/* ---- open / close --------------------------------------------------------- */

static hearth_status open_image(gguf_file *f, gguf_file **out, hearth_error *err)
{
    hearth_status st = parse(f, err);
    if (st != HEARTH_OK) {
        gguf_close(f);
        *out = NULL;
        return st;
    }
    *out = f;
    return HEARTH_OK;
}

hearth_status gguf_open_memory(const void *data, size_t size, gguf_file **out, hearth_error *err)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    f->base = data;
    f->size = size;
    return open_image(f, out, err);
}

hearth_status gguf_open(const char *path, gguf_file **out, hearth_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(err, HEARTH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return error_set(err, HEARTH_ERR_IO, "%s: not a regular file", path);
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return error_set(err, HEARTH_ERR_NOMEM, "%s: out of memory", path);
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size > 0) {
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f);
            return error_set(err, HEARTH_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
        }
        f->base = map;
        f->mapped = true;
    }
    close(fd);
    hearth_status st = open_image(f, out, err);
    if (st != HEARTH_OK)
        error_prefix(err, "%s", path);
    return st;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->mapped)
        munmap((void *)f->base, f->size);
    for (size_t i = 0; i < f->n_names; i++)
        free(f->names[i]);
    for (size_t i = 0; i < f->n_allocs; i++)
        free(f->allocs[i]);
    free(f->names);
    free(f->allocs);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    free(f);
}

/* ---- accessors ------------------------------------------------------------ */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
const void *gguf_header_bytes(const gguf_file *f) { return f->base; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
int64_t gguf_kv_count(const gguf_file *f) { return (int64_t)f->n_kv; }
int64_t gguf_tensor_count(const gguf_file *f) { return (int64_t)f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && (uint64_t)i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && (uint64_t)i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    int64_t i = name_table_find(&f->kv_index, key);
    return i < 0 ? NULL : &f->kvs[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    int64_t i = name_table_find(&f->tensor_index, name);
    return i < 0 ? NULL : &f->tensors[i];
}

static bool is_unsigned_type(uint32_t t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_signed_type(uint32_t t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

bool gguf_get_uint(const gguf_file *f, const char *key, uint64_t *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return false;
    if (is_unsigned_type(kv->value.type)) {
        *out = kv->value.as.u64;
        return true;
    }
    if (is_signed_type(kv->value.type) && kv->value.as.i64 >= 0) {
        *out = (uint64_t)kv->value.as.i64;
        return true;
    }
    return false;
}

bool gguf_get_int(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return false;
    if (is_signed_type(kv->value.type)) {
        *out = kv->value.as.i64;
        return true;
    }
    if (is_unsigned_type(kv->value.type) && kv->value.as.u64 <= INT64_MAX) {
        *out = (int64_t)kv->value.as.u64;
        return true;
    }
    return false;
}

bool gguf_get_float(const gguf_file *f, const char *key, double *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || (kv->value.type != GGUF_TYPE_FLOAT32 && kv->value.type != GGUF_TYPE_FLOAT64))
        return false;
    *out = kv->value.as.f64;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_BOOL)
        return false;
    *out = kv->value.as.b;
    return true;
}

const gguf_string *gguf_get_string(const gguf_file *f, const char *key)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv && kv->value.type == GGUF_TYPE_STRING ? &kv->value.as.str : NULL;
}

const gguf_array *gguf_get_array(const gguf_file *f, const char *key)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv && kv->value.type == GGUF_TYPE_ARRAY ? &kv->value.as.arr : NULL;
}

/* GGUF reader and writer: round trips of every value type and layout, and
 * every kind of malformed file the reader must refuse with a message that
 * names the field (SECURITY.md's list and the foundation issue's). */
#include "test.h"

#include "gguf/gguf.h"
#include "quant/quant.h"

#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a byte builder for hand-made files -------------------------------------- */

typedef struct bytes {
    unsigned char *data;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static void put_u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void put_kv_u32(bytes *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}
/* A tensor info with up to 4 dims. */
static void put_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
static void pad_to(bytes *b, size_t align)
{
    while (b->len % align)
        put_u8(b, 0);
}
static void put_zeros(bytes *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_u8(b, 0);
}

/* The image must be refused, with `needle` in the message. */
static void expect_refused(const bytes *b, const char *needle, const char *label)
{
    gguf_file *f = (gguf_file *)1;
    hearth_error err = {0};
    hearth_status st = gguf_open_memory(b->data, b->len, &f, &err);
    CHECK_MSG(st != HEARTH_OK && f == NULL, "%s: accepted", label);
    CHECK_MSG(st == HEARTH_OK || strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", label,
              err.message, needle);
    if (st == HEARTH_OK)
        gguf_close(f);
}

static gguf_file *expect_accepted(const void *data, size_t len, const char *label)
{
    gguf_file *f = NULL;
    hearth_error err = {0};
    hearth_status st = gguf_open_memory(data, len, &f, &err);
    CHECK_MSG(st == HEARTH_OK, "%s: refused: %s", label, err.message);
    return f;
}

/* ---- round trip ------------------------------------------------------------------ */

static const char *const strings[] = {"", "plain", "naïve – ünïcode ✓ 日本語", "<0x0A>"};

static gguf_writer *make_full_writer(uint32_t version, uint32_t alignment, unsigned char *tensor_bytes)
{
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    gguf_writer_set_version(w, version);
    if (alignment != GGUF_DEFAULT_ALIGNMENT)
        CHECK(gguf_writer_set_alignment(w, alignment, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "u8", GGUF_TYPE_UINT8, 200, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_int(w, "i8", GGUF_TYPE_INT8, -100, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "u16", GGUF_TYPE_UINT16, 60000, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_int(w, "i16", GGUF_TYPE_INT16, -30000, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "u32", GGUF_TYPE_UINT32, 4000000000u, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_int(w, "i32", GGUF_TYPE_INT32, -2000000000, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "u64", GGUF_TYPE_UINT64, UINT64_MAX, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_int(w, "i64", GGUF_TYPE_INT64, INT64_MIN, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_float(w, "f32", GGUF_TYPE_FLOAT32, 0.1f, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_float(w, "f64", GGUF_TYPE_FLOAT64, 0.1, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_bool(w, "yes", true, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_bool(w, "no", false, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_string(w, "str", strings[2], &err) == HEARTH_OK);
    CHECK(gguf_writer_add_string(w, "empty", "", &err) == HEARTH_OK);
    const int32_t ints[5] = {-1, 0, 1, INT32_MAX, INT32_MIN};
    CHECK(gguf_writer_add_array(w, "arr.i32", GGUF_TYPE_INT32, ints, 5, &err) == HEARTH_OK);
    const float floats[3] = {1.5f, -2.25f, 1e-30f};
    CHECK(gguf_writer_add_array(w, "arr.f32", GGUF_TYPE_FLOAT32, floats, 3, &err) == HEARTH_OK);
    const uint8_t bools[3] = {1, 0, 1};
    CHECK(gguf_writer_add_array(w, "arr.bool", GGUF_TYPE_BOOL, bools, 3, &err) == HEARTH_OK);
    const uint64_t u64s[2] = {0, UINT64_MAX};
    CHECK(gguf_writer_add_array(w, "arr.u64", GGUF_TYPE_UINT64, u64s, 2, &err) == HEARTH_OK);
    const double f64s[2] = {3.25, -0.0};
    CHECK(gguf_writer_add_array(w, "arr.f64", GGUF_TYPE_FLOAT64, f64s, 2, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_array(w, "arr.empty", GGUF_TYPE_UINT16, NULL, 0, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_string_array(w, "arr.str", strings, 4, &err) == HEARTH_OK);

    /* Nested: [[1,2,3],[4]] of u32, and [["a","b"],[]] of strings. */
    static const uint32_t row0[3] = {1, 2, 3}, row1[1] = {4};
    gguf_value inner_u32[2] = {
        {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_UINT32, .count = 3, .raw = (const uint8_t *)row0}},
        {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_UINT32, .count = 1, .raw = (const uint8_t *)row1}},
    };
    gguf_value nested_u32 = {.type = GGUF_TYPE_ARRAY,
                             .as.arr = {.elem_type = GGUF_TYPE_ARRAY, .count = 2, .arrays = inner_u32}};
    CHECK(gguf_writer_add_value(w, "nested.u32", &nested_u32, &err) == HEARTH_OK);
    static const gguf_string ab[2] = {{"a", 1}, {"b", 1}};
    gguf_value inner_str[2] = {
        {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_STRING, .count = 2, .strings = ab}},
        {.type = GGUF_TYPE_ARRAY, .as.arr = {.elem_type = GGUF_TYPE_STRING, .count = 0, .strings = NULL}},
    };
    gguf_value nested_str = {.type = GGUF_TYPE_ARRAY,
                             .as.arr = {.elem_type = GGUF_TYPE_ARRAY, .count = 2, .arrays = inner_str}};
    CHECK(gguf_writer_add_value(w, "nested.str", &nested_str, &err) == HEARTH_OK);

    /* Tensors: F32 [5], F16 [3,2], Q8_0 [64,2,2], Q4_K [256,1,1,3]. */
    int64_t ne_a[1] = {5}, ne_b[2] = {3, 2}, ne_c[3] = {64, 2, 2}, ne_d[4] = {256, 1, 1, 3};
    CHECK(gguf_writer_add_tensor(w, "a.f32", QUANT_F32, 1, ne_a, tensor_bytes, 20, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "b.f16", QUANT_F16, 2, ne_b, tensor_bytes + 100, 12, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "c.q8_0", QUANT_Q8_0, 3, ne_c, tensor_bytes + 200, 8 * 34, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "d.q4_k", QUANT_Q4_K, 4, ne_d, tensor_bytes + 500, 3 * 144, &err) == HEARTH_OK);
    return w;
}

static void check_full_file(gguf_file *f, uint32_t version, uint32_t alignment, const unsigned char *tensor_bytes)
{
    CHECK(gguf_version(f) == version);
    CHECK(gguf_alignment(f) == alignment);
    CHECK(gguf_data_offset(f) % alignment == 0);
    /* general.alignment is an extra key only when it is not the default. */
    CHECK(gguf_kv_count(f) == 23 + (alignment != GGUF_DEFAULT_ALIGNMENT));
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    CHECK(gguf_get_uint(f, "u8", &u) && u == 200);
    CHECK(gguf_get_int(f, "i8", &i) && i == -100);
    CHECK(gguf_get_uint(f, "u16", &u) && u == 60000);
    CHECK(gguf_get_int(f, "i16", &i) && i == -30000);
    CHECK(gguf_get_uint(f, "u32", &u) && u == 4000000000u);
    CHECK(gguf_get_int(f, "i32", &i) && i == -2000000000);
    CHECK(gguf_get_uint(f, "u64", &u) && u == UINT64_MAX);
    CHECK(!gguf_get_int(f, "u64", &i)); /* does not fit int64 */
    CHECK(gguf_get_int(f, "i64", &i) && i == INT64_MIN);
    CHECK(!gguf_get_uint(f, "i64", &u)); /* negative */
    CHECK(gguf_get_int(f, "u32", &i) && i == 4000000000);
    CHECK(gguf_get_float(f, "f32", &d) && (float)d == 0.1f);
    CHECK(gguf_get_float(f, "f64", &d) && d == 0.1);
    CHECK(!gguf_get_float(f, "u8", &d) && !gguf_get_uint(f, "f32", &u) && !gguf_get_bool(f, "u8", &b));
    CHECK(gguf_get_bool(f, "yes", &b) && b && gguf_get_bool(f, "no", &b) && !b);
    const gguf_string *s = gguf_get_string(f, "str");
    CHECK(s && gguf_string_equals(s, strings[2]));
    s = gguf_get_string(f, "empty");
    CHECK(s && s->len == 0);
    CHECK(gguf_get_string(f, "u8") == NULL && gguf_get_array(f, "str") == NULL);
    CHECK(gguf_find_kv(f, "missing") == NULL && !gguf_get_uint(f, "missing", &u));

    const gguf_array *a = gguf_get_array(f, "arr.i32");
    CHECK(a && a->elem_type == GGUF_TYPE_INT32 && a->count == 5);
    if (a)
        CHECK(gguf_array_get_int(a, 0) == -1 && gguf_array_get_int(a, 3) == INT32_MAX &&
              gguf_array_get_int(a, 4) == INT32_MIN);
    a = gguf_get_array(f, "arr.f32");
    CHECK(a && a->count == 3 && gguf_array_get_float(a, 1) == -2.25 && (float)gguf_array_get_float(a, 2) == 1e-30f);
    a = gguf_get_array(f, "arr.bool");
    CHECK(a && a->count == 3 && gguf_array_get_uint(a, 0) == 1 && gguf_array_get_uint(a, 1) == 0);
    a = gguf_get_array(f, "arr.u64");
    CHECK(a && a->count == 2 && gguf_array_get_uint(a, 1) == UINT64_MAX);
    a = gguf_get_array(f, "arr.f64");
    CHECK(a && a->count == 2 && gguf_array_get_float(a, 0) == 3.25);
    a = gguf_get_array(f, "arr.empty");
    CHECK(a && a->count == 0 && a->elem_type == GGUF_TYPE_UINT16);
    a = gguf_get_array(f, "arr.str");
    CHECK(a && a->elem_type == GGUF_TYPE_STRING && a->count == 4);
    if (a && a->count == 4)
        for (int k = 0; k < 4; k++)
            CHECK(gguf_string_equals(&a->strings[k], strings[k]));

    a = gguf_get_array(f, "nested.u32");
    CHECK(a && a->elem_type == GGUF_TYPE_ARRAY && a->count == 2);
    if (a && a->count == 2) {
        const gguf_array *r0 = &a->arrays[0].as.arr, *r1 = &a->arrays[1].as.arr;
        CHECK(r0->elem_type == GGUF_TYPE_UINT32 && r0->count == 3 && gguf_array_get_uint(r0, 2) == 3);
        CHECK(r1->count == 1 && gguf_array_get_uint(r1, 0) == 4);
    }
    a = gguf_get_array(f, "nested.str");
    CHECK(a && a->count == 2);
    if (a && a->count == 2) {
        const gguf_array *r0 = &a->arrays[0].as.arr;
        CHECK(r0->elem_type == GGUF_TYPE_STRING && r0->count == 2 && gguf_string_equals(&r0->strings[1], "b"));
        CHECK(a->arrays[1].as.arr.count == 0);
    }

    /* Keys come back in the order written. */
    CHECK(strcmp(gguf_kv_at(f, 0)->key, "u8") == 0 && strcmp(gguf_kv_at(f, 22)->key, "nested.str") == 0);
    CHECK(gguf_kv_at(f, -1) == NULL && gguf_kv_at(f, 1000) == NULL);

    CHECK(gguf_tensor_count(f) == 4);
    static const struct {
        const char *name;
        uint32_t type, n_dims;
        int64_t ne[4];
        uint64_t size, src;
    } want[4] = {
        {"a.f32", QUANT_F32, 1, {5, 1, 1, 1}, 20, 0},
        {"b.f16", QUANT_F16, 2, {3, 2, 1, 1}, 12, 100},
        {"c.q8_0", QUANT_Q8_0, 3, {64, 2, 2, 1}, 272, 200},
        {"d.q4_k", QUANT_Q4_K, 4, {256, 1, 1, 3}, 432, 500},
    };
    for (int k = 0; k < 4; k++) {
        const gguf_tensor *t = gguf_find_tensor(f, want[k].name);
        CHECK_MSG(t != NULL, "tensor %s missing", want[k].name);
        if (!t)
            continue;
        CHECK(t == gguf_tensor_at(f, k));
        CHECK(t->type == want[k].type && t->n_dims == want[k].n_dims && t->size == want[k].size);
        CHECK(memcmp(t->ne, want[k].ne, sizeof t->ne) == 0);
        CHECK(t->offset % alignment == 0);
        CHECK(((const unsigned char *)t->data - (const unsigned char *)gguf_tensor_at(f, 0)->data) ==
              (ptrdiff_t)t->offset);
        CHECK(memcmp(t->data, tensor_bytes + want[k].src, want[k].size) == 0);
    }
    CHECK(gguf_find_tensor(f, "nope") == NULL && gguf_tensor_at(f, 4) == NULL);
}

static void test_round_trip(void)
{
    unsigned char tensor_bytes[1024];
    for (int k = 0; k < 1024; k++)
        tensor_bytes[k] = (unsigned char)(k * 7 + 3);
    static const uint32_t versions[2] = {2, 3};
    static const uint32_t alignments[3] = {GGUF_DEFAULT_ALIGNMENT, 64, 4096};
    for (int v = 0; v < 2; v++) {
        for (int al = 0; al < 3; al++) {
            hearth_error err = {0};
            gguf_writer *w = make_full_writer(versions[v], alignments[al], tensor_bytes);
            void *mem = NULL;
            size_t mem_size = 0;
            CHECK(gguf_writer_write_memory(w, &mem, &mem_size, &err) == HEARTH_OK);
            gguf_file *f = expect_accepted(mem, mem_size, "round trip in memory");
            if (f) {
                check_full_file(f, versions[v], alignments[al], tensor_bytes);
                gguf_close(f);
            }

            char path[512];
            snprintf(path, sizeof path, "%s/round_trip_v%u_a%u.gguf", HEARTH_TEST_TMPDIR, versions[v], alignments[al]);
            CHECK_MSG(gguf_writer_write(w, path, &err) == HEARTH_OK, "%s", err.message);
            char tmp[600];
            snprintf(tmp, sizeof tmp, "%s.tmp", path);
            CHECK(access(tmp, F_OK) != 0); /* renamed into place */
            CHECK(gguf_open(path, &f, &err) == HEARTH_OK);
            if (f) {
                CHECK(gguf_file_size(f) == mem_size);
                check_full_file(f, versions[v], alignments[al], tensor_bytes);
                gguf_close(f);
            }
            unlink(path);
            free(mem);
            gguf_writer_free(w);
        }
    }
}

/* Values read from one file written into another come out the same: the
 * writer serialises whatever the reader hands out. */
static void test_copy_through_writer(void)
{
    unsigned char tensor_bytes[1024] = {0};
    hearth_error err = {0};
    gguf_writer *w = make_full_writer(3, 64, tensor_bytes);
    void *mem = NULL, *mem2 = NULL;
    size_t size = 0, size2 = 0;
    CHECK(gguf_writer_write_memory(w, &mem, &size, &err) == HEARTH_OK);
    gguf_writer_free(w);
    gguf_file *f = expect_accepted(mem, size, "copy source");
    if (!f)
        return;
    gguf_writer *copy = gguf_writer_create();
    for (int64_t i = 0; i < gguf_kv_count(f); i++)
        CHECK(gguf_writer_add_value(copy, gguf_kv_at(f, i)->key, &gguf_kv_at(f, i)->value, &err) == HEARTH_OK);
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_writer_add_tensor(copy, t->name, t->type, t->n_dims, t->ne, t->data, t->size, &err) == HEARTH_OK);
    }
    CHECK(gguf_writer_write_memory(copy, &mem2, &size2, &err) == HEARTH_OK);
    CHECK_MSG(size == size2 && memcmp(mem, mem2, size) == 0, "copy differs: %zu vs %zu bytes", size, size2);
    gguf_writer_free(copy);
    gguf_close(f);
    free(mem);
    free(mem2);
}

/* ---- writer errors ------------------------------------------------------------------ */

static void test_writer_errors(void)
{
    hearth_error err = {0};
    unsigned char data[1024] = {0};
    int64_t ne[2] = {32, 2};
    void *mem = NULL;
    size_t size = 0;

    gguf_writer *w = gguf_writer_create();
    CHECK(gguf_writer_add_uint(w, "k", GGUF_TYPE_UINT32, 1, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "k", GGUF_TYPE_UINT32, 2, &err) != HEARTH_OK && strstr(err.message, "duplicate key"));
    CHECK(gguf_writer_write_memory(w, &mem, &size, &err) != HEARTH_OK && strstr(err.message, "duplicate key"));
    gguf_writer_free(w);

    w = gguf_writer_create();
    CHECK(gguf_writer_add_tensor(w, "t", QUANT_Q8_0, 2, ne, data, 68, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "t", QUANT_Q8_0, 2, ne, data, 68, &err) != HEARTH_OK &&
          strstr(err.message, "duplicate tensor name"));
    gguf_writer_free(w);

    w = gguf_writer_create();
    CHECK(gguf_writer_add_tensor(w, "t", QUANT_Q8_0, 2, ne, data, 67, &err) != HEARTH_OK &&
          strstr(err.message, "68"));
    CHECK(gguf_writer_write_memory(w, &mem, &size, &err) != HEARTH_OK); /* poisoned */
    gguf_writer_free(w);

    w = gguf_writer_create();
    int64_t ragged[1] = {33};
    CHECK(gguf_writer_add_tensor(w, "t", QUANT_Q4_0, 1, ragged, data, 18, &err) != HEARTH_OK &&
          strstr(err.message, "block"));
    int64_t zero[1] = {0};
    CHECK(gguf_writer_add_tensor(w, "z", QUANT_F32, 1, zero, data, 0, &err) != HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "u", 4, 1, ne, data, 0, &err) != HEARTH_OK && strstr(err.message, "unknown type"));
    CHECK(gguf_writer_set_alignment(w, 13, &err) != HEARTH_OK && strstr(err.message, "power of two"));
    CHECK(gguf_writer_set_alignment(w, 0, &err) != HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "general.alignment", GGUF_TYPE_UINT64, 64, &err) != HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "s", GGUF_TYPE_INT32, 1, &err) != HEARTH_OK);
    CHECK(gguf_writer_add_string(w, "", "x", &err) != HEARTH_OK);
    gguf_writer_free(w);

    /* general.alignment given as a key sets the layout. */
    w = gguf_writer_create();
    CHECK(gguf_writer_add_uint(w, "general.alignment", GGUF_TYPE_UINT32, 128, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "t", QUANT_Q8_0, 2, ne, data, 68, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_tensor(w, "t2", QUANT_Q8_0, 2, ne, data, 68, &err) == HEARTH_OK);
    CHECK(gguf_writer_write_memory(w, &mem, &size, &err) == HEARTH_OK);
    gguf_file *f = expect_accepted(mem, size, "alignment key");
    if (f) {
        CHECK(gguf_alignment(f) == 128 && gguf_tensor_at(f, 1)->offset == 128 && gguf_kv_count(f) == 1);
        gguf_close(f);
    }
    free(mem);
    gguf_writer_free(w);

    /* An explicit general.alignment of 32 survives a copy; a second one is a
     * duplicate key. */
    w = gguf_writer_create();
    CHECK(gguf_writer_add_uint(w, "general.alignment", GGUF_TYPE_UINT32, 32, &err) == HEARTH_OK);
    CHECK(gguf_writer_add_uint(w, "general.alignment", GGUF_TYPE_UINT32, 64, &err) != HEARTH_OK &&
          strstr(err.message, "duplicate key"));
    gguf_writer_free(w);
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 32);
    f = expect_accepted(b.data, b.len, "explicit default alignment");
    if (f) {
        w = gguf_writer_create();
        CHECK(gguf_writer_add_value(w, "general.alignment", &gguf_kv_at(f, 0)->value, &err) == HEARTH_OK);
        CHECK(gguf_writer_write_memory(w, &mem, &size, &err) == HEARTH_OK);
        gguf_file *copy = expect_accepted(mem, size, "copied alignment");
        uint64_t a = 0;
        CHECK(copy && gguf_kv_count(copy) == 1 && gguf_get_uint(copy, "general.alignment", &a) && a == 32);
        gguf_close(copy);
        free(mem);
        gguf_writer_free(w);
        gguf_close(f);
    }
    free(b.data);

    /* An unwritable path is an i/o error, not a crash. */
    w = gguf_writer_create();
    CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err) == HEARTH_ERR_IO);
    gguf_writer_free(w);
}

/* ---- the file system ------------------------------------------------------------------ */

static void test_file_errors(void)
{
    gguf_file *f;
    hearth_error err = {0};
    char path[512];

    CHECK(gguf_open("/nonexistent/model.gguf", &f, &err) == HEARTH_ERR_IO && f == NULL &&
          strstr(err.message, "No such file"));
    CHECK(gguf_open(HEARTH_TEST_TMPDIR, &f, &err) == HEARTH_ERR_IO && strstr(err.message, "directory"));

    snprintf(path, sizeof path, "%s/empty.gguf", HEARTH_TEST_TMPDIR);
    FILE *out = fopen(path, "wb");
    fclose(out);
    CHECK(gguf_open(path, &f, &err) == HEARTH_ERR_FORMAT && strstr(err.message, "empty file") &&
          strstr(err.message, path));

    snprintf(path, sizeof path, "%s/zeros.gguf", HEARTH_TEST_TMPDIR);
    out = fopen(path, "wb");
    static const unsigned char zeros[4096];
    fwrite(zeros, 1, sizeof zeros, out);
    fclose(out);
    CHECK(gguf_open(path, &f, &err) == HEARTH_ERR_FORMAT && strstr(err.message, "bad magic"));
}

/* ---- malformed images ------------------------------------------------------------------ */

/* A valid small file: two keys, two tensors (Q8_0 [32,2] and F32 [4]). */
static bytes valid_image(size_t *header_end)
{
    bytes b = {0};
    put_header(&b, 3, 2, 2);
    put_kv_u32(&b, "general.alignment", 32);
    put_str(&b, "name");
    put_u32(&b, GGUF_TYPE_STRING);
    put_str(&b, "tiny");
    uint64_t ne_a[2] = {32, 2}, ne_b[1] = {4};
    put_tensor(&b, "a", 2, ne_a, QUANT_Q8_0, 0);
    put_tensor(&b, "b", 1, ne_b, QUANT_F32, 96);
    pad_to(&b, 32);
    *header_end = b.len;
    put_zeros(&b, 96 + 16);
    return b;
}

static void test_truncation(void)
{
    size_t header_end;
    bytes b = valid_image(&header_end);
    gguf_file *f = expect_accepted(b.data, b.len, "valid image");
    gguf_close(f);
    /* Every prefix shorter than the whole file must be refused cleanly. */
    int accepted = 0;
    for (size_t cut = 0; cut < b.len; cut++) {
        hearth_error err = {0};
        gguf_file *g = NULL;
        if (gguf_open_memory(b.data, cut, &g, &err) == HEARTH_OK) {
            accepted++;
            gguf_close(g);
        } else {
            CHECK_MSG(err.message[0] != '\0', "cut at %zu: empty message", cut);
        }
    }
    CHECK_MSG(accepted == 0, "%d truncated prefixes accepted", accepted);
    bytes shorter = {.data = b.data, .len = b.len - 1};
    expect_refused(&shorter, "tensor b: bytes 96..112", "one byte short of data");
    free(b.data);
}

typedef void (*image_builder)(bytes *b);

static void bad_version1(bytes *b) { put_header(b, 1, 0, 0); }
static void bad_version4(bytes *b) { put_header(b, 4, 0, 0); }
static void bad_big_endian(bytes *b) { put_header(b, 0x03000000, 0, 0); }
static void bad_magic(bytes *b) { put(b, "GGUG", 4), put_u32(b, 3), put_u64(b, 0), put_u64(b, 0); }
static void huge_kv_count(bytes *b) { put_header(b, 3, 0, UINT64_MAX); put_zeros(b, 64); }
static void kv_count_2_60(bytes *b) { put_header(b, 3, 0, 1ull << 60); put_zeros(b, 64); }
static void huge_tensor_count(bytes *b) { put_header(b, 3, UINT64_MAX, 0); put_zeros(b, 64); }
static void tensor_count_2_60(bytes *b) { put_header(b, 3, 1ull << 60, 0); put_zeros(b, 64); }
static void key_len_huge(bytes *b) { put_header(b, 3, 0, 1); put_u64(b, UINT64_MAX); put_zeros(b, 16); }
static void key_len_past_eof(bytes *b) { put_header(b, 3, 0, 1); put_u64(b, 17); put_zeros(b, 16); }
static void string_len_huge(bytes *b)
{
    put_header(b, 3, 0, 1), put_str(b, "s"), put_u32(b, GGUF_TYPE_STRING), put_u64(b, UINT64_MAX);
}
static void array_count_wraps(bytes *b)
{ /* 2^62 + 1 elements of 4 bytes: the byte count wraps to 4 */
    put_header(b, 3, 0, 1), put_str(b, "arr"), put_u32(b, GGUF_TYPE_ARRAY), put_u32(b, GGUF_TYPE_UINT32);
    put_u64(b, (1ull << 62) + 1), put_u32(b, 7);
}
static void string_array_count_huge(bytes *b)
{
    put_header(b, 3, 0, 1), put_str(b, "arr"), put_u32(b, GGUF_TYPE_ARRAY), put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, UINT64_MAX / 8), put_zeros(b, 64);
}
static void unknown_value_type(bytes *b) { put_header(b, 3, 0, 1), put_str(b, "k"), put_u32(b, 13), put_u32(b, 0); }
static void unknown_elem_type(bytes *b)
{
    put_header(b, 3, 0, 1), put_str(b, "k"), put_u32(b, GGUF_TYPE_ARRAY), put_u32(b, 99), put_u64(b, 0);
}
static void bool_two(bytes *b) { put_header(b, 3, 0, 1), put_str(b, "k"), put_u32(b, GGUF_TYPE_BOOL), put_u8(b, 2); }
static void nested_too_deep(bytes *b)
{
    put_header(b, 3, 0, 1), put_str(b, "deep"), put_u32(b, GGUF_TYPE_ARRAY);
    for (int d = 0; d < 6; d++)
        put_u32(b, GGUF_TYPE_ARRAY), put_u64(b, 1);
    put_zeros(b, 64);
}
static void alignment_zero(bytes *b) { put_header(b, 3, 0, 1), put_kv_u32(b, "general.alignment", 0); }
static void alignment_13(bytes *b) { put_header(b, 3, 0, 1), put_kv_u32(b, "general.alignment", 13); }
static void alignment_2_31(bytes *b) { put_header(b, 3, 0, 1), put_kv_u32(b, "general.alignment", 1u << 31); }
static void alignment_u64(bytes *b)
{
    put_header(b, 3, 0, 1), put_str(b, "general.alignment"), put_u32(b, GGUF_TYPE_UINT64), put_u64(b, 32);
}
static void duplicate_key(bytes *b) { put_header(b, 3, 0, 2), put_kv_u32(b, "k", 1), put_kv_u32(b, "k", 2); }
static void empty_key(bytes *b) { put_header(b, 3, 0, 1), put_kv_u32(b, "", 1); }
static void key_with_nul(bytes *b)
{
    put_header(b, 3, 0, 1), put_u64(b, 3), put(b, "a\0b", 3), put_u32(b, GGUF_TYPE_UINT32), put_u32(b, 1);
}

/* Files with one tensor and room for its data; `ne`/type/offset vary. */
static void one_tensor(bytes *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset)
{
    put_header(b, 3, 1, 0);
    put_tensor(b, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    pad_to(b, 32);
    put_zeros(b, 256);
}
static void n_dims_0(bytes *b) { uint64_t ne[1] = {4}; one_tensor(b, 0, ne, QUANT_F32, 0); }
static void n_dims_5(bytes *b) { uint64_t ne[5] = {4, 1, 1, 1, 1}; one_tensor(b, 5, ne, QUANT_F32, 0); }
static void dim_zero(bytes *b) { uint64_t ne[2] = {4, 0}; one_tensor(b, 2, ne, QUANT_F32, 0); }
static void dim_negative(bytes *b) { uint64_t ne[2] = {4, 1ull << 63}; one_tensor(b, 2, ne, QUANT_F32, 0); }
static void dims_overflow(bytes *b) { uint64_t ne[3] = {1ull << 32, 1ull << 32, 4}; one_tensor(b, 3, ne, QUANT_F32, 0); }
static void bytes_overflow(bytes *b) { uint64_t ne[2] = {1ull << 40, 1ull << 22}; one_tensor(b, 2, ne, QUANT_F32, 0); }
static void type_4(bytes *b) { uint64_t ne[1] = {32}; one_tensor(b, 1, ne, 4, 0); }
static void type_31(bytes *b) { uint64_t ne[1] = {32}; one_tensor(b, 1, ne, 31, 0); }
static void type_999(bytes *b) { uint64_t ne[1] = {32}; one_tensor(b, 1, ne, 999, 0); }
static void ragged_row(bytes *b) { uint64_t ne[1] = {48}; one_tensor(b, 1, ne, QUANT_Q4_K, 0); }
static void offset_unaligned(bytes *b) { uint64_t ne[1] = {4}; one_tensor(b, 1, ne, QUANT_F32, 8); }
static void offset_past_eof(bytes *b) { uint64_t ne[1] = {4}; one_tensor(b, 1, ne, QUANT_F32, 4096); }
static void offset_minus_one(bytes *b) { uint64_t ne[1] = {4}; one_tensor(b, 1, ne, QUANT_F32, UINT64_MAX); }
static void offset_wraps(bytes *b) { uint64_t ne[1] = {64}; one_tensor(b, 1, ne, QUANT_F32, UINT64_MAX - 31); }
static void tensors_overlap(bytes *b)
{
    uint64_t ne[1] = {16};
    put_header(b, 3, 2, 0);
    put_tensor(b, "first", 1, ne, QUANT_F32, 0);
    put_tensor(b, "second", 1, ne, QUANT_F32, 32);
    pad_to(b, 32);
    put_zeros(b, 128);
}
static void duplicate_tensor(bytes *b)
{
    uint64_t ne[1] = {8};
    put_header(b, 3, 2, 0);
    put_tensor(b, "same", 1, ne, QUANT_F32, 0);
    put_tensor(b, "same", 1, ne, QUANT_F32, 32);
    pad_to(b, 32);
    put_zeros(b, 128);
}
static void data_section_missing(bytes *b)
{
    uint64_t ne[1] = {8};
    put_header(b, 3, 1, 0);
    put_tensor(b, "t", 1, ne, QUANT_F32, 0);
}

static void test_malformed(void)
{
    static const struct {
        image_builder build;
        const char *needle;
        const char *label;
    } cases[] = {
        {bad_magic, "bad magic", "wrong magic"},
        {bad_version1, "version 1 is not supported", "version 1"},
        {bad_version4, "unknown GGUF version 4", "version 4"},
        {bad_big_endian, "big-endian", "big-endian"},
        {huge_kv_count, "metadata key count", "n_kv = 2^64-1"},
        {kv_count_2_60, "metadata key count", "n_kv = 2^60"},
        {huge_tensor_count, "tensor count", "n_tensors = 2^64-1"},
        {tensor_count_2_60, "tensor count", "n_tensors = 2^60"},
        {key_len_huge, "metadata key 0: name runs past end of file", "key length 2^64-1"},
        {key_len_past_eof, "metadata key 0: name runs past end of file", "key length past EOF"},
        {string_len_huge, "key s: string value runs past end of file", "string length 2^64-1"},
        {array_count_wraps, "key arr: array of 4611686018427387905 UINT32 elements", "array bytes wrap"},
        {string_array_count_huge, "key arr: array of", "string array count huge"},
        {unknown_value_type, "key k: unknown value type 13", "unknown value type"},
        {unknown_elem_type, "key k: unknown array element type 99", "unknown array element type"},
        {bool_two, "key k: bool value 2", "bool 2"},
        {nested_too_deep, "key deep: arrays nested deeper than", "nesting depth"},
        {alignment_zero, "general.alignment: 0 is not a power of two", "alignment 0"},
        {alignment_13, "general.alignment: 13", "alignment 13"},
        {alignment_2_31, "general.alignment: 2147483648", "alignment 2^31"},
        {alignment_u64, "general.alignment: type UINT64", "alignment of type u64"},
        {duplicate_key, "key k: duplicate key", "duplicate key"},
        {empty_key, "metadata key 0: empty name", "empty key"},
        {key_with_nul, "contains a NUL byte", "key with NUL"},
        {n_dims_0, "tensor blk.0.attn_q.weight: n_dims is 0", "n_dims 0"},
        {n_dims_5, "tensor blk.0.attn_q.weight: n_dims is 5", "n_dims 5"},
        {dim_zero, "tensor blk.0.attn_q.weight: dim 1 is 0", "zero dim"},
        {dim_negative, "tensor blk.0.attn_q.weight: dim 1 is -9223372036854775808", "negative dim"},
        {dims_overflow, "tensor blk.0.attn_q.weight: element count overflows", "dims product overflow"},
        {bytes_overflow, "tensor blk.0.attn_q.weight: byte size overflows", "byte size overflow"},
        {type_4, "tensor blk.0.attn_q.weight: unknown type 4", "retired type 4"},
        {type_31, "unknown type 31", "retired type 31"},
        {type_999, "unknown type 999", "type 999"},
        {ragged_row, "row length 48 is not a multiple of the Q4_K block size 256", "ragged row"},
        {offset_unaligned, "offset 8 is not a multiple of the alignment 32", "unaligned offset"},
        {offset_past_eof, "tensor blk.0.attn_q.weight: bytes 4096..4112", "offset past EOF"},
        {offset_minus_one, "is not a multiple of the alignment", "offset -1"},
        {offset_wraps, "run past end of file", "offset + size wraps"},
        {tensors_overlap, "tensor second: overlaps tensor first", "overlap"},
        {duplicate_tensor, "tensor same: duplicate tensor name", "duplicate tensor"},
        {data_section_missing, "past end of file", "no data section"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes b = {0};
        cases[i].build(&b);
        expect_refused(&b, cases[i].needle, cases[i].label);
        free(b.data);
    }
}

/* A file with keys and no tensors may end right after its header. */
static void test_header_only(void)
{
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "x", 7);
    gguf_file *f = expect_accepted(b.data, b.len, "header only");
    if (f) {
        CHECK(gguf_data_offset(f) == b.len && gguf_tensor_count(f) == 0);
        gguf_close(f);
    }
    free(b.data);
}

int main(void)
{
    test_round_trip();
    test_copy_through_writer();
    test_writer_errors();
    test_file_errors();
    test_truncation();
    test_malformed();
    test_header_only();
    return test_finish("test_gguf");
}

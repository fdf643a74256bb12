/* Value types: names, sizes and little-endian element access shared by the
 * reader and the writer. */
#include "gguf/gguf.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} value_types[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"UINT8", 1},     [GGUF_TYPE_INT8] = {"INT8", 1},
    [GGUF_TYPE_UINT16] = {"UINT16", 2},   [GGUF_TYPE_INT16] = {"INT16", 2},
    [GGUF_TYPE_UINT32] = {"UINT32", 4},   [GGUF_TYPE_INT32] = {"INT32", 4},
    [GGUF_TYPE_FLOAT32] = {"FLOAT32", 4}, [GGUF_TYPE_BOOL] = {"BOOL", 1},
    [GGUF_TYPE_STRING] = {"STRING", 0},   [GGUF_TYPE_ARRAY] = {"ARRAY", 0},
    [GGUF_TYPE_UINT64] = {"UINT64", 8},   [GGUF_TYPE_INT64] = {"INT64", 8},
    [GGUF_TYPE_FLOAT64] = {"FLOAT64", 8},
};

const char *gguf_value_type_name(uint32_t type)
{
    return type < GGUF_TYPE_COUNT ? value_types[type].name : "unknown";
}

size_t gguf_value_type_size(uint32_t type)
{
    return type < GGUF_TYPE_COUNT ? value_types[type].size : 0;
}

bool gguf_string_equals(const gguf_string *s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s->len == n && memcmp(s->data, cstr, n) == 0;
}

/* Elements may sit at any byte offset in the file, so they are copied out;
 * the host is little-endian, as GGUF is (big-endian files are rejected). */
uint64_t gguf_array_get_uint(const gguf_array *arr, uint64_t i)
{
    const uint8_t *p = arr->raw + i * gguf_value_type_size(arr->elem_type);
    switch (arr->elem_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return p[0];
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: { uint64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

int64_t gguf_array_get_int(const gguf_array *arr, uint64_t i)
{
    uint64_t bits = gguf_array_get_uint(arr, i);
    switch (arr->elem_type) {
    case GGUF_TYPE_INT8: return (int8_t)bits;
    case GGUF_TYPE_INT16: return (int16_t)bits;
    case GGUF_TYPE_INT32: return (int32_t)bits;
    case GGUF_TYPE_INT64: return (int64_t)bits;
    default: return (int64_t)bits;
    }
}

double gguf_array_get_float(const gguf_array *arr, uint64_t i)
{
    const uint8_t *p = arr->raw + i * gguf_value_type_size(arr->elem_type);
    if (arr->elem_type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (arr->elem_type == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    return 0.0;
}

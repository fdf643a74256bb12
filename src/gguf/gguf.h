/* GGUF: reader (over mmap, validating every number before use) and writer.
 *
 * The reader never trusts the file. gguf_open checks magic, version, every
 * count against the bytes left, every string length, every array and its
 * element type, each tensor's dims, type, byte range and alignment, overlaps
 * and duplicate names; after it returns HEARTH_OK, every pointer and size it
 * hands out lies inside the file. Failures name the field and the key/tensor.
 *
 * Strings in the file are not NUL-terminated. Keys and tensor names are copied
 * out with a terminator (they are few and short); string *values*, which can
 * be a vocabulary of 262k entries, stay in the map as (data, len). */
#ifndef HEARTH_GGUF_H
#define HEARTH_GGUF_H

#include "hearth.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_ALIGNMENT (1u << 20)
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 4096       /* longest key or tensor name accepted */
#define GGUF_MAX_ARRAY_DEPTH 4   /* arrays of arrays of ... */

typedef enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_value_type;

typedef struct gguf_string {
    const char *data; /* not NUL-terminated */
    uint64_t len;
} gguf_string;

typedef struct gguf_value gguf_value;

typedef struct gguf_array {
    uint32_t elem_type; /* gguf_value_type */
    uint64_t count;
    /* Scalar elements: `count` little-endian values packed in the file, possibly
     * unaligned; read them with gguf_array_get_* below. */
    const uint8_t *raw;
    /* String elements: `count` entries. */
    const gguf_string *strings;
    /* Array elements (nested arrays): `count` values of type GGUF_TYPE_ARRAY. */
    const gguf_value *arrays;
} gguf_array;

struct gguf_value {
    uint32_t type; /* gguf_value_type */
    union {
        uint64_t u64; /* every unsigned integer type, widened */
        int64_t i64;  /* every signed integer type, widened */
        double f64;   /* FLOAT32 and FLOAT64, widened */
        bool b;
        gguf_string str;
        gguf_array arr;
    } as;
};

typedef struct gguf_kv {
    const char *key;
    gguf_value value;
} gguf_kv;

typedef struct gguf_tensor {
    const char *name;
    uint32_t type;   /* quant_type */
    uint32_t n_dims; /* 1..GGUF_MAX_DIMS; ne[i] == 1 for i >= n_dims */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length (fastest-moving) */
    int64_t n_elements;
    uint64_t offset; /* from the start of the data section */
    uint64_t size;   /* bytes */
    const void *data;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and validates a file. On failure *out is NULL and err says why. */
hearth_status gguf_open(const char *path, gguf_file **out, hearth_error *err);
/* Validates a GGUF image in memory (the caller keeps it alive and unchanged
 * while the result is in use). For tests and fuzzing. */
hearth_status gguf_open_memory(const void *data, size_t size, gguf_file **out, hearth_error *err);
void gguf_close(gguf_file *file);

uint32_t gguf_version(const gguf_file *file);
uint64_t gguf_file_size(const gguf_file *file);
uint64_t gguf_data_offset(const gguf_file *file);
/* The file's first gguf_data_offset bytes: header, metadata and tensor table. */
const void *gguf_header_bytes(const gguf_file *file);
uint32_t gguf_alignment(const gguf_file *file);

int64_t gguf_kv_count(const gguf_file *file);
const gguf_kv *gguf_kv_at(const gguf_file *file, int64_t i);
const gguf_kv *gguf_find_kv(const gguf_file *file, const char *key);

int64_t gguf_tensor_count(const gguf_file *file);
const gguf_tensor *gguf_tensor_at(const gguf_file *file, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name);

/* Typed lookups. Each returns false when the key is absent or its value has a
 * different kind: get_uint accepts any unsigned or non-negative signed integer,
 * get_int any integer that fits int64, get_float FLOAT32/FLOAT64. */
bool gguf_get_uint(const gguf_file *file, const char *key, uint64_t *out);
bool gguf_get_int(const gguf_file *file, const char *key, int64_t *out);
bool gguf_get_float(const gguf_file *file, const char *key, double *out);
bool gguf_get_bool(const gguf_file *file, const char *key, bool *out);
const gguf_string *gguf_get_string(const gguf_file *file, const char *key);
const gguf_array *gguf_get_array(const gguf_file *file, const char *key);

/* Element access for scalar arrays; i must be < count. */
uint64_t gguf_array_get_uint(const gguf_array *arr, uint64_t i);
int64_t gguf_array_get_int(const gguf_array *arr, uint64_t i);
double gguf_array_get_float(const gguf_array *arr, uint64_t i);

const char *gguf_value_type_name(uint32_t type);
/* Bytes of one element of a scalar type; 0 for STRING, ARRAY and unknown. */
size_t gguf_value_type_size(uint32_t type);
bool gguf_string_equals(const gguf_string *s, const char *cstr);

/* ---- Writer -------------------------------------------------------------
 * Collects metadata and tensors, then writes the file in one go. Tensor data is
 * referenced, not copied: it must stay valid until gguf_writer_write returns.
 * Errors (duplicate key or name, bad dims, a size that does not match the type)
 * are reported by the call that caused them and poison the writer: a later
 * write fails with the first error. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_create(void);
void gguf_writer_free(gguf_writer *w);
/* Defaults: version 3, alignment 32. An alignment that was set (here or as a
 * general.alignment key) is written as general.alignment, after the other keys. */
void gguf_writer_set_version(gguf_writer *w, uint32_t version);
hearth_status gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, hearth_error *err);

hearth_status gguf_writer_add_uint(gguf_writer *w, const char *key, uint32_t type, uint64_t v, hearth_error *err);
hearth_status gguf_writer_add_int(gguf_writer *w, const char *key, uint32_t type, int64_t v, hearth_error *err);
hearth_status gguf_writer_add_float(gguf_writer *w, const char *key, uint32_t type, double v, hearth_error *err);
hearth_status gguf_writer_add_bool(gguf_writer *w, const char *key, bool v, hearth_error *err);
hearth_status gguf_writer_add_string(gguf_writer *w, const char *key, const char *v, hearth_error *err);
/* `count` packed little-endian elements of a scalar type. */
hearth_status gguf_writer_add_array(gguf_writer *w, const char *key, uint32_t elem_type,
                                    const void *elems, uint64_t count, hearth_error *err);
hearth_status gguf_writer_add_string_array(gguf_writer *w, const char *key,
                                           const char *const *strings, uint64_t count, hearth_error *err);
/* Any value, including nested arrays, e.g. one read from another file. */
hearth_status gguf_writer_add_value(gguf_writer *w, const char *key, const gguf_value *v, hearth_error *err);

hearth_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                     const int64_t *ne, const void *data, uint64_t size, hearth_error *err);

/* Writes atomically: to `path`.tmp, then renamed over `path`. */
hearth_status gguf_writer_write(gguf_writer *w, const char *path, hearth_error *err);
/* Writes into a malloc'd buffer the caller frees. */
hearth_status gguf_writer_write_memory(gguf_writer *w, void **data, size_t *size, hearth_error *err);

#endif

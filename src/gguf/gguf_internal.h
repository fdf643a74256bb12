/* The reader's private state, shared by the gguf/ files only. */
#ifndef HEARTH_GGUF_INTERNAL_H
#define HEARTH_GGUF_INTERNAL_H

#include "gguf/gguf.h"

/* Name → index hash table over entries the owner stores; `names` reads the
 * name of entry i back from the owner. */
typedef struct name_table {
    uint64_t *slots; /* index + 1, 0 = empty */
    uint64_t mask;
    const char *(*names)(const void *owner, int64_t i);
    const void *owner;
} name_table;

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    bool mapped;

    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    uint64_t n_kv;
    gguf_kv *kvs;
    name_table kv_index;

    uint64_t n_tensors;
    gguf_tensor *tensors;
    name_table tensor_index;

    char **names; /* keys and tensor names, NUL-terminated copies */
    size_t n_names, names_cap;
    void **allocs; /* element lists of string and nested arrays */
    size_t n_allocs, allocs_cap;
};

#endif

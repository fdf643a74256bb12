#include "runtime/prefix_cache.h"

#include "base/error.h"
#include "base/hash.h"
#include "base/paths.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct cache_block cache_block;
struct cache_block {
    /* Its address, and the one before it: a hit checks the block's tokens
     * and its predecessor's address, so two prefixes share a block only if
     * every token of both is the same (not merely an address). */
    uint64_t key, parent;
    int32_t *tokens;
    char *span;      /* block_tokens x position_bytes */
    char *recurrent; /* recurrent_bytes at the block's end, or NULL */
    size_t bytes;
    cache_block *hash_next, *newer, *older;
};

struct prefix_cache {
    int32_t block_tokens, snapshot_tokens;
    model_past_layout layout;
    uint64_t model_id, seed;
    size_t span_bytes; /* one block's KV rows */

    size_t ram_bytes, ram_used;
    cache_block **buckets;
    size_t n_buckets, n_blocks;
    cache_block *newest, *oldest;

    char *dir;
    size_t disk_bytes, disk_used; /* disk_used: an estimate, recounted when it passes the bound */
    char *io;                     /* one block file */
    size_t io_cap;
    char *snapshot; /* restore: the latest recurrent state met */

    prefix_cache_stats stats;
};

/* ---- addresses ---- */

static uint64_t block_key(const prefix_cache *c, uint64_t previous, const int32_t *tokens)
{
    return hash_words(tokens, (size_t)c->block_tokens * sizeof *tokens, previous);
}

/* ---- the RAM tier ---- */

static cache_block **bucket_of(const prefix_cache *c, uint64_t key) { return &c->buckets[key & (c->n_buckets - 1)]; }

static cache_block *ram_find(const prefix_cache *c, uint64_t key)
{
    if (!c->buckets)
        return NULL;
    for (cache_block *b = *bucket_of(c, key); b; b = b->hash_next)
        if (b->key == key)
            return b;
    return NULL;
}

static void lru_unlink(prefix_cache *c, cache_block *b)
{
    if (b->newer)
        b->newer->older = b->older;
    else
        c->newest = b->older;
    if (b->older)
        b->older->newer = b->newer;
    else
        c->oldest = b->newer;
    b->newer = b->older = NULL;
}

static void lru_push(prefix_cache *c, cache_block *b)
{
    b->older = c->newest;
    b->newer = NULL;
    if (c->newest)
        c->newest->newer = b;
    c->newest = b;
    if (!c->oldest)
        c->oldest = b;
}

static void block_free(cache_block *b)
{
    if (!b)
        return;
    free(b->tokens);
    free(b->span);
    free(b->recurrent);
    free(b);
}

static void ram_remove(prefix_cache *c, cache_block *b)
{
    for (cache_block **p = bucket_of(c, b->key); *p; p = &(*p)->hash_next) {
        if (*p == b) {
            *p = b->hash_next;
            break;
        }
    }
    lru_unlink(c, b);
    c->ram_used -= b->bytes;
    c->n_blocks--;
    block_free(b);
}

/* Makes room for `bytes` more; false when they can never fit. */
static bool ram_make_room(prefix_cache *c, size_t bytes)
{
    if (bytes > c->ram_bytes)
        return false;
    while (c->oldest && c->ram_used + bytes > c->ram_bytes)
        ram_remove(c, c->oldest);
    return true;
}

static bool ram_grow_buckets(prefix_cache *c)
{
    size_t n = c->n_buckets ? 2 * c->n_buckets : 256;
    cache_block **buckets = calloc(n, sizeof *buckets);
    if (!buckets)
        return false;
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (cache_block *b = c->buckets[i], *next; b; b = next) {
            next = b->hash_next;
            b->hash_next = buckets[b->key & (n - 1)];
            buckets[b->key & (n - 1)] = b;
        }
    }
    free(c->buckets);
    c->buckets = buckets;
    c->n_buckets = n;
    return true;
}

/* A new RAM block from the given parts (any may be NULL: filled by the
 * caller); NULL when the RAM tier has no room or memory runs out. */
static cache_block *ram_add(prefix_cache *c, uint64_t key, uint64_t parent, const int32_t *tokens,
                            bool with_recurrent)
{
    size_t bytes = sizeof(cache_block) + (size_t)c->block_tokens * sizeof(int32_t) + c->span_bytes +
                   (with_recurrent ? c->layout.recurrent_bytes : 0);
    if (!ram_make_room(c, bytes))
        return NULL;
    if (c->n_blocks >= c->n_buckets && !ram_grow_buckets(c))
        return NULL;
    cache_block *b = calloc(1, sizeof *b);
    if (!b || !(b->tokens = malloc((size_t)c->block_tokens * sizeof *b->tokens)) ||
        !(b->span = malloc(c->span_bytes ? c->span_bytes : 1)) ||
        (with_recurrent && !(b->recurrent = malloc(c->layout.recurrent_bytes)))) {
        block_free(b);
        return NULL;
    }
    memcpy(b->tokens, tokens, (size_t)c->block_tokens * sizeof *tokens);
    b->key = key;
    b->parent = parent;
    b->bytes = bytes;
    cache_block **bucket = bucket_of(c, key);
    b->hash_next = *bucket;
    *bucket = b;
    lru_push(c, b);
    c->ram_used += bytes;
    c->n_blocks++;
    return b;
}

static void ram_touch(prefix_cache *c, cache_block *b)
{
    lru_unlink(c, b);
    lru_push(c, b);
}

/* ---- the disk tier ---- */

#define BLOCK_FILE_MAGIC "HEARTHPC"
enum { BLOCK_FILE_VERSION = 1 };

/* A block file: this header, then the block's tokens (int32), its KV rows
 * and, when has_recurrent, the recurrent state; all in the writer's byte
 * order, which a reader of the other order refuses by the magic's version. */
typedef struct block_file_header {
    char magic[8];
    uint32_t version, block_tokens;
    uint64_t model_id, layout_id, key, parent;
    uint64_t span_bytes, recurrent_bytes;
    uint32_t has_recurrent, reserved;
    uint64_t checksum; /* of the header with this field 0, then the payload */
} block_file_header;

static size_t file_bytes(const prefix_cache *c, bool with_recurrent)
{
    return sizeof(block_file_header) + (size_t)c->block_tokens * sizeof(int32_t) + c->span_bytes +
           (with_recurrent ? c->layout.recurrent_bytes : 0);
}

static uint64_t file_checksum(const char *file, size_t size)
{
    block_file_header h;
    memcpy(&h, file, sizeof h);
    h.checksum = 0;
    uint64_t seed = hash_words(&h, sizeof h, 0x63686b73756dull);
    return hash_words(file + sizeof h, size - sizeof h, seed);
}

static void block_path(const prefix_cache *c, uint64_t key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%016llx.hpc", c->dir, (unsigned long long)key);
}

static bool io_reserve(prefix_cache *c, size_t bytes)
{
    if (bytes <= c->io_cap)
        return true;
    char *io = realloc(c->io, bytes);
    if (!io)
        return false;
    c->io = io;
    c->io_cap = bytes;
    return true;
}

static void warn_ignored(prefix_cache *c, const char *path, const char *why)
{
    c->stats.ignored++;
    fprintf(stderr, "hearth: prefix cache: ignoring %s: %s\n", path, why);
}

/* Reads the file of block `key` into c->io and checks it through and
 * through: its size, header, address and predecessor's, model, layout,
 * tokens and checksum.
 * False when absent (quietly) or refused (with a warning). */
static bool disk_read(prefix_cache *c, uint64_t key, uint64_t parent, const int32_t *tokens, bool *has_recurrent)
{
    char path[4200];
    block_path(c, key, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    const char *why = NULL;
    size_t size = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((uint64_t)st.st_size != file_bytes(c, false) && (uint64_t)st.st_size != file_bytes(c, true))
        why = "its size fits no block of this model";
    else if (!io_reserve(c, size = (size_t)st.st_size))
        why = "out of memory";
    for (size_t done = 0; !why && done < size;) {
        ssize_t got = read(fd, c->io + done, size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            why = "cannot be read whole";
        else
            done += (size_t)got;
    }
    close(fd);
    block_file_header h;
    if (!why) {
        memcpy(&h, c->io, sizeof h);
        const bool recurrent = h.has_recurrent != 0;
        if (memcmp(h.magic, BLOCK_FILE_MAGIC, sizeof h.magic) != 0 || h.version != BLOCK_FILE_VERSION)
            why = "not a hearth prefix cache block of this version";
        else if (h.model_id != c->model_id || h.layout_id != c->layout.id)
            why = "made for another model or KV cache format";
        else if (h.block_tokens != (uint32_t)c->block_tokens || h.key != key || h.parent != parent ||
                 h.span_bytes != c->span_bytes ||
                 h.recurrent_bytes != (recurrent ? c->layout.recurrent_bytes : 0) || h.has_recurrent > 1 ||
                 size != file_bytes(c, recurrent))
            why = "its header does not match its name and size";
        else if (file_checksum(c->io, size) != h.checksum)
            why = "checksum mismatch (damaged)";
        else if (memcmp(c->io + sizeof h, tokens, (size_t)c->block_tokens * sizeof *tokens) != 0)
            why = "its tokens differ from its address's";
        *has_recurrent = recurrent;
    }
    if (why) {
        warn_ignored(c, path, why);
        return false;
    }
    /* Least recently used by file time: a hit counts as a use. */
    utimensat(AT_FDCWD, path, NULL, 0);
    return true;
}

typedef struct disk_file {
    char name[32];
    struct timespec mtime;
    size_t size;
} disk_file;

static int by_age(const void *a, const void *b)
{
    const struct timespec *x = &((const disk_file *)a)->mtime, *y = &((const disk_file *)b)->mtime;
    if (x->tv_sec != y->tv_sec)
        return (x->tv_sec > y->tv_sec) - (x->tv_sec < y->tv_sec);
    return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* Counts the directory's block files and, when over the bound, removes the
 * least recently used until they fill at most nine tenths of it. */
static void disk_trim(prefix_cache *c)
{
    DIR *d = opendir(c->dir);
    if (!d)
        return;
    disk_file *files = NULL;
    size_t n = 0, cap = 0, total = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len != 20 || strcmp(e->d_name + 16, ".hpc") != 0)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            disk_file *grown = realloc(files, (cap = cap ? 2 * cap : 64) * sizeof *files);
            if (!grown)
                break;
            files = grown;
        }
        memcpy(files[n].name, e->d_name, len + 1);
        files[n].mtime = st.st_mtim;
        files[n].size = (size_t)st.st_size;
        total += files[n++].size;
    }
    closedir(d);
    if (total > c->disk_bytes) {
        qsort(files, n, sizeof *files, by_age);
        for (size_t i = 0; i < n && total > c->disk_bytes / 10 * 9; i++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", c->dir, files[i].name);
            if (unlink(path) == 0 || errno == ENOENT)
                total -= files[i].size;
        }
    }
    c->disk_used = total;
    free(files);
}

/* Writes c->io's `size` bytes as block `key`'s file: whole, under a
 * temporary name, then renamed over any older one. */
static void disk_write(prefix_cache *c, uint64_t key, size_t size)
{
    if (size > c->disk_bytes)
        return;
    block_file_header h;
    memcpy(&h, c->io, sizeof h);
    h.checksum = file_checksum(c->io, size);
    memcpy(c->io, &h, sizeof h);
    char path[4200], tmp[4300];
    block_path(c, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/.%016llx.%ld.tmp", c->dir, (unsigned long long)key, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    bool ok = true;
    for (size_t done = 0; ok && done < size;) {
        ssize_t put = write(fd, c->io + done, size - done);
        if (put < 0 && errno == EINTR)
            continue;
        ok = put > 0;
        if (ok)
            done += (size_t)put;
    }
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return;
    }
    c->stats.written++;
    c->disk_used += size;
    if (c->disk_used > c->disk_bytes)
        disk_trim(c);
}

/* Whether block `key`'s file exists for this predecessor, and then whether
 * it holds the recurrent state; its time is brought up as a use. */
static bool disk_has(const prefix_cache *c, uint64_t key, uint64_t parent, bool *has_recurrent)
{
    char path[4200];
    block_path(c, key, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    block_file_header h;
    bool ok = read(fd, &h, sizeof h) == (ssize_t)sizeof h && h.parent == parent;
    close(fd);
    *has_recurrent = ok && h.has_recurrent == 1;
    if (ok)
        utimensat(AT_FDCWD, path, NULL, 0);
    return ok;
}

/* Lays block `key` out in c->io as a file: header and tokens, then the KV
 * rows and recurrent state from the RAM block b or, without one, from the
 * state itself. Returns the file's size, 0 when out of memory. */
static size_t build_file(prefix_cache *c, uint64_t key, uint64_t parent, const int32_t *tokens, const cache_block *b,
                         const model_state *state, int32_t seq, int32_t pos, bool with_recurrent)
{
    size_t size = file_bytes(c, with_recurrent);
    if (!io_reserve(c, size))
        return 0;
    block_file_header h = {.version = BLOCK_FILE_VERSION,
                           .block_tokens = (uint32_t)c->block_tokens,
                           .model_id = c->model_id,
                           .layout_id = c->layout.id,
                           .key = key,
                           .parent = parent,
                           .span_bytes = c->span_bytes,
                           .recurrent_bytes = with_recurrent ? c->layout.recurrent_bytes : 0,
                           .has_recurrent = with_recurrent};
    memcpy(h.magic, BLOCK_FILE_MAGIC, sizeof h.magic);
    char *p = c->io;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, tokens, (size_t)c->block_tokens * sizeof *tokens);
    p += (size_t)c->block_tokens * sizeof *tokens;
    if (b)
        memcpy(p, b->span, c->span_bytes);
    else
        model_state_save_span(state, seq, pos, c->block_tokens, p);
    p += c->span_bytes;
    if (with_recurrent) {
        if (b)
            memcpy(p, b->recurrent, c->layout.recurrent_bytes);
        else
            model_state_save_recurrent(state, seq, p);
    }
    return size;
}

/* ---- the cache ---- */

hearth_status prefix_cache_create(const model *m, const model_state *state, const prefix_cache_params *params,
                                  prefix_cache **out, hearth_error *err)
{
    *out = NULL;
    int32_t block_tokens = params->block_tokens ? params->block_tokens : PREFIX_CACHE_BLOCK_TOKENS;
    if (block_tokens < 1 || block_tokens > (1 << 20))
        return error_set(err, HEARTH_ERR_ARG, "prefix cache blocks of %d tokens: must be 1 to %d", block_tokens,
                         1 << 20);
    prefix_cache *c = calloc(1, sizeof *c);
    if (!c)
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    c->block_tokens = block_tokens;
    int64_t every = params->snapshot_tokens > 0 ? params->snapshot_tokens : PREFIX_CACHE_SNAPSHOT_TOKENS;
    every = (every + block_tokens - 1) / block_tokens * block_tokens;
    c->snapshot_tokens = every < INT32_MAX ? (int32_t)every : INT32_MAX / block_tokens * block_tokens;
    c->layout = model_state_past_layout(state);
    c->model_id = model_identity(m);
    uint64_t seed[3] = {c->model_id, c->layout.id, (uint64_t)block_tokens};
    c->seed = hash_words(seed, sizeof seed, 0x707265666978ull);
    c->span_bytes = (size_t)block_tokens * c->layout.position_bytes;
    c->ram_bytes = params->ram_bytes;
    c->disk_bytes = params->disk_bytes;
    if (c->layout.recurrent_bytes && !(c->snapshot = malloc(c->layout.recurrent_bytes))) {
        prefix_cache_free(c);
        return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
    }
    if (params->dir && *params->dir && params->disk_bytes > 0) {
        if (!paths_make_dirs(params->dir))
            fprintf(stderr, "hearth: prefix cache: cannot make the directory %s (%s); caching in memory only\n",
                    params->dir, strerror(errno));
        else if (!(c->dir = strdup(params->dir))) {
            prefix_cache_free(c);
            return error_set(err, HEARTH_ERR_NOMEM, "out of memory");
        } else {
            disk_trim(c);
        }
    }
    *out = c;
    return HEARTH_OK;
}

void prefix_cache_free(prefix_cache *c)
{
    if (!c)
        return;
    while (c->oldest)
        ram_remove(c, c->oldest);
    free(c->buckets);
    free(c->dir);
    free(c->io);
    free(c->snapshot);
    free(c);
}

int32_t prefix_cache_block_tokens(const prefix_cache *c) { return c->block_tokens; }

int32_t prefix_cache_batch_end(const prefix_cache *c, int32_t from, int32_t end)
{
    if (!c->layout.recurrent_bytes)
        return end;
    const int64_t every = c->snapshot_tokens;
    const int64_t next = ((int64_t)from / every + 1) * every, last = (int64_t)end / c->block_tokens * c->block_tokens;
    if (next < end)
        return (int32_t)next;
    return last > from && last < end ? (int32_t)last : end;
}

prefix_cache_stats prefix_cache_get_stats(const prefix_cache *c)
{
    prefix_cache_stats s = c->stats;
    s.ram_used = c->ram_used;
    s.disk_used = c->disk_used;
    return s;
}

int32_t prefix_cache_restore(prefix_cache *c, model_state *state, int32_t seq, const int32_t *tokens, int32_t n,
                             int32_t held)
{
    const int32_t B = c->block_tokens;
    const int32_t limit = n > 0 ? (n - 1) / B : 0; /* blocks that leave a token to evaluate */
    const bool recurrent = c->layout.recurrent_bytes > 0;
    if (held < 0 || (int64_t)limit * B <= held || c->span_bytes == 0)
        return held;
    int32_t restored = held, snapshot_end = 0;
    uint64_t key = c->seed;
    for (int32_t i = 0; i < limit; i++) {
        const int32_t *block_tokens = tokens + (size_t)i * (size_t)B;
        const uint64_t parent = key;
        key = block_key(c, parent, block_tokens);
        if ((int64_t)(i + 1) * B <= held)
            continue;
        const char *span = NULL, *snapshot = NULL;
        cache_block *b = ram_find(c, key);
        if (b && b->parent == parent && memcmp(b->tokens, block_tokens, (size_t)B * sizeof *block_tokens) == 0) {
            ram_touch(c, b);
            c->stats.ram_hits++;
            span = b->span;
            snapshot = b->recurrent;
        } else {
            bool has_recurrent = false;
            if (!c->dir || !disk_read(c, key, parent, block_tokens, &has_recurrent)) {
                c->stats.misses++;
                break;
            }
            c->stats.disk_hits++;
            span = c->io + sizeof(block_file_header) + (size_t)B * sizeof(int32_t);
            snapshot = has_recurrent ? span + c->span_bytes : NULL;
            /* Brought into the RAM tier: the next request finds it there. */
            if (c->ram_bytes && !b && (b = ram_add(c, key, parent, block_tokens, has_recurrent))) {
                memcpy(b->span, span, c->span_bytes);
                if (has_recurrent)
                    memcpy(b->recurrent, snapshot, c->layout.recurrent_bytes);
            }
        }
        model_state_load_span(state, seq, i * B, B, span);
        if (!recurrent) {
            restored = (i + 1) * B;
        } else if (snapshot) {
            memcpy(c->snapshot, snapshot, c->layout.recurrent_bytes);
            snapshot_end = (i + 1) * B;
        }
    }
    if (recurrent && snapshot_end > held) {
        model_state_load_recurrent(state, seq, snapshot_end, c->snapshot);
        restored = snapshot_end;
    }
    return restored;
}

void prefix_cache_store(prefix_cache *c, const model_state *state, int32_t seq, const int32_t *tokens, int32_t from,
                        int32_t to)
{
    const int32_t B = c->block_tokens;
    if (from < 0 || to <= from || to / B <= from / B || c->span_bytes == 0)
        return;
    const bool recurrent = c->layout.recurrent_bytes > 0;
    uint64_t key = c->seed;
    for (int32_t i = 0; (int64_t)(i + 1) * B <= to; i++) {
        const int32_t *block_tokens = tokens + (size_t)i * (size_t)B;
        const int32_t pos = i * B;
        const uint64_t parent = key;
        key = block_key(c, parent, block_tokens);
        if (pos + B <= from)
            continue;
        const bool with_recurrent = recurrent && pos + B == to;
        cache_block *b = ram_find(c, key);
        /* Made again: with the recurrent state it lacked, or for another
         * prefix under the same address (the newer one wins). */
        if (b && ((with_recurrent && !b->recurrent) || b->parent != parent ||
                  memcmp(b->tokens, block_tokens, (size_t)B * sizeof *block_tokens) != 0)) {
            ram_remove(c, b);
            b = NULL;
        }
        if (b)
            ram_touch(c, b);
        else if (c->ram_bytes && (b = ram_add(c, key, parent, block_tokens, with_recurrent))) {
            model_state_save_span(state, seq, pos, B, b->span);
            if (with_recurrent)
                model_state_save_recurrent(state, seq, b->recurrent);
        }
        c->stats.stored++;
        bool on_disk_with_recurrent = false;
        if (!c->dir || (disk_has(c, key, parent, &on_disk_with_recurrent) && (on_disk_with_recurrent || !with_recurrent)))
            continue;
        size_t size = build_file(c, key, parent, block_tokens, b, state, seq, pos, with_recurrent);
        if (size)
            disk_write(c, key, size);
    }
}

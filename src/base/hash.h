/* Hashes: FNV-1a over bytes for the name and token lookup tables, and a
 * faster one over words for bulk data. */
#ifndef HEARTH_BASE_HASH_H
#define HEARTH_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t hash_bytes(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* A 64-bit hash of a buffer at memory speed, seeded: four lanes of 8-byte
 * words, each multiplied and rotated, folded and finished with
 * hash_finish. For checksums and content addresses of megabytes (the
 * prefix cache's blocks); not for defending against chosen collisions. */
static inline uint64_t hash_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t hash_finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash_words(const void *data, size_t len, uint64_t seed)
{
    const uint64_t k1 = 0x9e3779b185ebca87ull, k2 = 0xc2b2ae3d27d4eb4full;
    const uint8_t *p = data;
    uint64_t lane[4] = {seed + k1, seed ^ k2, seed - k1, ~seed};
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * (size_t)l, 8);
            lane[l] = hash_rotl(lane[l] + w * k2, 31) * k1;
        }
    }
    uint64_t h = hash_rotl(lane[0], 1) + hash_rotl(lane[1], 7) + hash_rotl(lane[2], 12) + hash_rotl(lane[3], 18);
    h ^= (uint64_t)len * k1;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = hash_rotl(h ^ (w * k2), 27) * k1 + k2;
    }
    for (; i < len; i++)
        h = hash_rotl(h ^ (p[i] * k1), 11) * k2;
    return hash_finish(h);
}

#endif

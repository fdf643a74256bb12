/* Packing, packed activations, the scalar panel references and dispatch.
 * Layouts: ops/packed_kernels.h. */
#include "ops/packed_kernels.h"

#include "base/fp16.h"
#include "ops/dot.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/quant_ref.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- packing ---------------------------------------------------------------- */

/* A block's elements as the unsigned values the panels store: the 4-bit
 * values of Q4_0 and Q4_1 (qh NULL) or the 5-bit ones of Q5_0 and Q5_1. */
static void nibble_values(const uint8_t qs[16], const uint8_t *qh, uint8_t u[32])
{
    uint32_t high = 0;
    if (qh)
        memcpy(&high, qh, sizeof high);
    for (int k = 0; k < 16; k++) {
        u[k] = (uint8_t)((qs[k] & 0x0F) | (high >> k & 1) << 4);
        u[k + 16] = (uint8_t)((qs[k] >> 4) | (high >> (k + 16) & 1) << 4);
    }
}

static void q8_0_values(const block_q8_0 *b, uint8_t u[32])
{
    for (int k = 0; k < 32; k++)
        u[k] = (uint8_t)(b->qs[k] + 128);
}

/* 32 values of row r into a group-interleaved pair of nibble planes: groups
 * 0..3 in the low nibbles, 4..7 in the high. */
static void put_nibbles(uint8_t nibbles[4][64], int r, const uint8_t u[32])
{
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 4; i++)
            nibbles[g][4 * r + i] = (uint8_t)((u[4 * g + i] & 0x0F) | (u[16 + 4 * g + i] & 0x0F) << 4);
}

/* Row r of a Q4_0 panel block, or of the Q4_0 part of a Q4_1 one. */
static void put_q4_0(panel_q4_0 *p, int r, uint16_t d, const uint8_t qs[16])
{
    uint8_t u[32];
    nibble_values(qs, NULL, u);
    p->d[r] = d;
    put_nibbles(p->nibbles, r, u);
}

/* Row r of a Q5_0 panel block, or of the Q5_0 part of a Q5_1 one. */
static void put_q5_0(panel_q5_0 *p, int r, uint16_t d, const uint8_t qs[16], const uint8_t qh[4])
{
    uint8_t u[32];
    nibble_values(qs, qh, u);
    p->d[r] = d;
    put_nibbles(p->nibbles, r, u);
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < 4; i++)
            p->high[g] |= (uint64_t)(u[4 * g + i] >> 4 & 1) << (4 * r + i);
}

static void pack_q4_0(const uint8_t *row, int r, int64_t nb, void *dst)
{
    const block_q4_0 *src = (const block_q4_0 *)row;
    for (int64_t b = 0; b < nb; b++)
        put_q4_0((panel_q4_0 *)dst + b, r, src[b].d, src[b].qs);
}

static void pack_q5_0(const uint8_t *row, int r, int64_t nb, void *dst)
{
    const block_q5_0 *src = (const block_q5_0 *)row;
    for (int64_t b = 0; b < nb; b++)
        put_q5_0((panel_q5_0 *)dst + b, r, src[b].d, src[b].qs, src[b].qh);
}

static void pack_q4_1(const uint8_t *row, int r, int64_t nb, void *dst)
{
    const block_q4_1 *src = (const block_q4_1 *)row;
    panel_q4_1 *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        put_q4_0(&p[b].q, r, src[b].d, src[b].qs);
        p[b].m[r] = src[b].m;
    }
}

static void pack_q5_1(const uint8_t *row, int r, int64_t nb, void *dst)
{
    const block_q5_1 *src = (const block_q5_1 *)row;
    panel_q5_1 *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        put_q5_0(&p[b].q, r, src[b].d, src[b].qs, src[b].qh);
        p[b].m[r] = src[b].m;
    }
}

static void pack_q8_0(const uint8_t *row, int r, int64_t nb, void *dst)
{
    panel_q8_0 *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        const block_q8_0 *src = (const block_q8_0 *)row + b;
        uint8_t u[32];
        q8_0_values(src, u);
        p[b].d[r] = src->d;
        for (int g = 0; g < 8; g++)
            memcpy(&p[b].u[g][4 * r], &u[4 * g], 4);
    }
}

/* The part Q4_K and Q5_K share: a super-block's scales, mins and the 32
 * values of each sub-block j (element 32j + l is nibble j%2 of
 * qs[32(j/2) + l], plus for Q5_K fifth bit j of qh[l]; qh is NULL for Q4_K). */
static void k4_values(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, uint8_t sc[8], uint8_t mins[8],
                      uint8_t u[8][32])
{
    for (int j = 0; j < 8; j++) {
        int scale, min;
        quant_k4_scale_min(scales, j, &scale, &min);
        sc[j] = (uint8_t)scale;
        mins[j] = (uint8_t)min;
        for (int l = 0; l < 32; l++)
            u[j][l] = (uint8_t)((qs[32 * (j / 2) + l] >> (4 * (j % 2)) & 0x0F) | (qh ? (qh[l] >> j & 1) << 4 : 0));
    }
}

/* The members Q4_K and Q5_K panel blocks share, for row r: scales, mins in
 * pairs, and the values of each sub-block (into u) for the caller to place. */
static void put_k4_scales(uint16_t d[16], uint16_t dmin[16], uint8_t scales[8][16], uint8_t min_pairs[4][16][2],
                          int r, uint16_t src_d, uint16_t src_dmin, const uint8_t *src_scales, const uint8_t *qs,
                          const uint8_t *qh, uint8_t u[8][32])
{
    uint8_t sc[8], mins[8];
    d[r] = src_d;
    dmin[r] = src_dmin;
    k4_values(src_scales, qs, qh, sc, mins, u);
    for (int j = 0; j < 8; j++) {
        scales[j][r] = sc[j];
        min_pairs[j / 2][r][j % 2] = mins[j];
    }
}

/* Q4_K's nibbles move four at a time: group g of sub-block j in row r holds
 * elements 4g..4g+3 in its low nibbles and 16+4g..16+4g+3 in its high ones
 * (put_nibbles), and both runs are four consecutive bytes of qs, shifted by
 * 4 (j % 2). Word by word instead of element by element: repacking is most
 * of the load time of a large model, and Q4_K most of its weights. */
static void pack_q4_K(const uint8_t *row, int r, int64_t nb, void *dst)
{
    panel_q4_K *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        const block_q4_K *src = (const block_q4_K *)row + b;
        p[b].d[r] = src->d;
        p[b].dmin[r] = src->dmin;
        for (int j = 0; j < 8; j++) {
            int scale, min;
            quant_k4_scale_min(src->scales, j, &scale, &min);
            p[b].scales[j][r] = (uint8_t)scale;
            p[b].min_pairs[j / 2][r][j % 2] = (uint8_t)min;
            const uint8_t *qs = src->qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int g = 0; g < 4; g++) {
                uint32_t low, high;
                memcpy(&low, qs + 4 * g, 4);
                memcpy(&high, qs + 16 + 4 * g, 4);
                uint32_t word = (low >> shift & 0x0F0F0F0Fu) | (high >> shift & 0x0F0F0F0Fu) << 4;
                memcpy(&p[b].nibbles[j][g][4 * r], &word, 4);
            }
        }
    }
}

static void pack_q5_K(const uint8_t *row, int r, int64_t nb, void *dst)
{
    panel_q5_K *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        const block_q5_K *src = (const block_q5_K *)row + b;
        uint8_t u[8][32];
        put_k4_scales(p[b].d, p[b].dmin, p[b].scales, p[b].min_pairs, r, src->d, src->dmin, src->scales, src->qs,
                      src->qh, u);
        for (int j = 0; j < 8; j++) {
            put_nibbles(p[b].sub[j].nibbles, r, u[j]);
            for (int g = 0; g < 8; g++)
                for (int i = 0; i < 4; i++)
                    p[b].sub[j].high[g] |= (uint64_t)(u[j][4 * g + i] >> 4) << (4 * r + i);
        }
    }
}

/* A Q6_K super-block's 256 values, unsigned (0..63), decoded in one pass:
 * element 128h + 32k + l has its low 4 bits in nibble k/2 of ql[64h + 32(k%2) + l]
 * and its high 2 bits at bits 2k of qh[32h + l] (as dequantize_q6_K_ref reads them). */
static void q6_K_values(const block_q6_K *b, uint8_t u[256])
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            uint8_t ql0 = b->ql[64 * h + l], ql1 = b->ql[64 * h + 32 + l], qh = b->qh[32 * h + l];
            u[128 * h + l] = (uint8_t)((ql0 & 0x0F) | (qh & 3) << 4);
            u[128 * h + 32 + l] = (uint8_t)((ql1 & 0x0F) | (qh >> 2 & 3) << 4);
            u[128 * h + 64 + l] = (uint8_t)((ql0 >> 4) | (qh >> 4 & 3) << 4);
            u[128 * h + 96 + l] = (uint8_t)((ql1 >> 4) | (qh >> 6 & 3) << 4);
        }
}

static void pack_q6_K(const uint8_t *row, int r, int64_t nb, void *dst)
{
    panel_q6_K *p = dst;
    for (int64_t b = 0; b < nb; b++) {
        const block_q6_K *src = (const block_q6_K *)row + b;
        uint8_t values[256];
        q6_K_values(src, values);
        p[b].d[r] = src->d;
        for (int c = 0; c < 8; c++) {
            p[b].scale_pairs[c][r][0] = src->scales[2 * c];
            p[b].scale_pairs[c][r][1] = src->scales[2 * c + 1];
            const uint8_t *u = values + 32 * c;
            put_nibbles(p[b].chunk[c].nibbles, r, u);
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 4; i++) {
                    uint8_t bits = 0;
                    for (int k = 0; k < 4; k++)
                        bits |= (uint8_t)((u[4 * (4 * h + k) + i] >> 4 & 3) << (2 * k));
                    p[b].chunk[c].high[h][4 * r + i] = bits;
                }
        }
    }
}

typedef struct packed_format {
    int block_size;      /* elements per panel block */
    size_t block_bytes;  /* bytes of one panel block (16 rows) */
    int act_format;      /* 1: act_q8_32, 2: act_q8_256, 3: block_q8_1 */
    void (*pack_row)(const uint8_t *row, int r, int64_t n_blocks, void *panel);
    ops_panel_fn ref;
} packed_format;

static void panel_q4_0_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q5_0_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q8_0_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q4_1_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q5_1_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q4_K_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q5_K_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);
static void panel_q6_K_ref(int64_t, const void *, const void *, size_t, int, float *, size_t);

static const packed_format packed_formats[QUANT_TYPE_COUNT] = {
    [QUANT_Q4_0] = {32, sizeof(panel_q4_0), 1, pack_q4_0, panel_q4_0_ref},
    [QUANT_Q5_0] = {32, sizeof(panel_q5_0), 1, pack_q5_0, panel_q5_0_ref},
    [QUANT_Q8_0] = {32, sizeof(panel_q8_0), 1, pack_q8_0, panel_q8_0_ref},
    [QUANT_Q4_1] = {32, sizeof(panel_q4_1), 3, pack_q4_1, panel_q4_1_ref},
    [QUANT_Q5_1] = {32, sizeof(panel_q5_1), 3, pack_q5_1, panel_q5_1_ref},
    [QUANT_Q4_K] = {256, sizeof(panel_q4_K), 2, pack_q4_K, panel_q4_K_ref},
    [QUANT_Q5_K] = {256, sizeof(panel_q5_K), 2, pack_q5_K, panel_q5_K_ref},
    [QUANT_Q6_K] = {256, sizeof(panel_q6_K), 2, pack_q6_K, panel_q6_K_ref},
};

static const packed_format *format_of(uint32_t type)
{
    return type < QUANT_TYPE_COUNT && packed_formats[type].pack_row ? &packed_formats[type] : NULL;
}

size_t ops_panel_bytes(uint32_t type, int64_t cols)
{
    const packed_format *f = format_of(type);
    return f ? (size_t)(cols / f->block_size) * f->block_bytes : 0;
}

size_t ops_packed_bytes(uint32_t type, int64_t rows, int64_t cols)
{
    return (size_t)((rows + OPS_PANEL_ROWS - 1) / OPS_PANEL_ROWS) * ops_panel_bytes(type, cols);
}

void ops_pack_panels(uint32_t type, const void *data, size_t row_bytes, int64_t rows, int64_t cols,
                     int64_t first_panel, int64_t end_panel, void *packed)
{
    const packed_format *f = format_of(type);
    size_t panel_bytes = ops_panel_bytes(type, cols);
    for (int64_t p = first_panel; p < end_panel; p++) {
        unsigned char *panel = (unsigned char *)packed + (size_t)p * panel_bytes;
        /* Zero first: padding rows then multiply as zero (their scales are 0),
         * and the bit planes are filled by OR. */
        memset(panel, 0, panel_bytes);
        for (int r = 0; r < OPS_PANEL_ROWS && p * OPS_PANEL_ROWS + r < rows; r++)
            f->pack_row((const uint8_t *)data + (size_t)(p * OPS_PANEL_ROWS + r) * row_bytes, r,
                        cols / f->block_size, panel);
    }
}

/* ---- activations ------------------------------------------------------------ */

int ops_packed_act_format(uint32_t type)
{
    const packed_format *f = format_of(type);
    return f ? f->act_format : 0;
}

size_t ops_packed_act_row_bytes(uint32_t type, int64_t cols)
{
    switch (ops_packed_act_format(type)) {
    case 1:
        return (size_t)(cols / 32) * sizeof(act_q8_32);
    case 3:
        return (size_t)(cols / 32) * sizeof(block_q8_1);
    default:
        return (size_t)(cols / QK_K) * sizeof(act_q8_256);
    }
}

void ops_packed_quantize_act_at_level(uint32_t type, const float *x, void *dst, int64_t cols, cpu_level level)
{
#if defined(__x86_64__)
    if (level >= CPU_LEVEL_AVX2) {
        int format = ops_packed_act_format(type);
        bool avx512 = level >= CPU_LEVEL_AVX512;
        if (format == 1)
            (avx512 ? ops_packed_quantize_q8_32_avx512 : ops_packed_quantize_q8_32_avx2)(x, dst, cols / 32);
        else if (format == 3)
            (avx512 ? ops_packed_quantize_q8_1_avx512 : ops_packed_quantize_q8_1_avx2)(x, dst, cols / 32);
        else
            (avx512 ? ops_packed_quantize_q8_256_avx512 : ops_packed_quantize_q8_256_avx2)(x, dst, cols / QK_K);
        return;
    }
#else
    (void)level;
#endif
    if (ops_packed_act_format(type) == 1) {
        act_q8_32 *a = dst;
        for (int64_t b = 0; b < cols / 32; b++) {
            block_q8_0 q;
            ops_quantize_activation(QUANT_Q8_0, x + 32 * b, &q, 32);
            a[b].d = fp16_to_fp32(q.d);
            a[b].sum = 0;
            for (int k = 0; k < 32; k++)
                a[b].sum += q.qs[k];
            memcpy(a[b].qs, q.qs, 32);
        }
    } else if (ops_packed_act_format(type) == 3) {
        ops_quantize_activation(type, x, dst, cols); /* the row kernels' Q8_1 */
    } else {
        act_q8_256 *a = dst;
        for (int64_t b = 0; b < cols / QK_K; b++) {
            block_q8_K q;
            quantize_q8_K_ref(x + QK_K * b, &q, QK_K);
            a[b].d = q.d;
            memcpy(a[b].qs, q.qs, QK_K);
            memcpy(a[b].sums16, q.bsums, sizeof a[b].sums16);
            for (int j = 0; j < 8; j++)
                a[b].sums32[j] = (int16_t)(q.bsums[2 * j] + q.bsums[2 * j + 1]);
        }
    }
}

void ops_packed_quantize_act(uint32_t type, const float *x, void *dst, int64_t cols)
{
    ops_packed_quantize_act_at_level(type, x, dst, cols, cpu_best_level());
}

/* ---- scalar references -------------------------------------------------------- */

#define NIBBLE(planes) ((planes)[g % 4][4 * r + i] >> (4 * (g / 4)) & 0x0F)

/* Element i of group g of row r of a 32-element panel block, as stored. */
static int panel_32_value(uint32_t type, const void *block, int r, int g, int i)
{
    const panel_q4_0 *q4 = type == QUANT_Q4_1 ? &((const panel_q4_1 *)block)->q : block;
    const panel_q5_0 *q5 = type == QUANT_Q5_1 ? &((const panel_q5_1 *)block)->q : block;
    switch (type) {
    case QUANT_Q8_0:
        return ((const panel_q8_0 *)block)->u[g][4 * r + i];
    case QUANT_Q4_0:
    case QUANT_Q4_1:
        return NIBBLE(q4->nibbles);
    default:
        return NIBBLE(q5->nibbles) | (int)(q5->high[g] >> (4 * r + i) & 1) << 4;
    }
}

/* The 32-element formats: per block, the exact integer sum of u * a minus
 * offset * sum(a), then acc = fma(isum, d_w * d_a, acc); for Q4_1 and Q5_1,
 * whose mins are at min_at in a block (0 for the others), then
 * acc = fma(m_w, s_a, acc) with their block_q8_1 activations' s = d_a * sum(a). */
static void panel_32_ref(uint32_t type, int offset, size_t min_at, int64_t cols, const void *panel, const void *act,
                         size_t act_stride, int n_tokens, float *y, size_t y_stride)
{
    size_t block_bytes = packed_formats[type].block_bytes;
    for (int t = 0; t < n_tokens; t++) {
        const char *token = (const char *)act + (size_t)t * act_stride;
        for (int r = 0; r < OPS_PANEL_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < cols / 32; b++) {
                const unsigned char *block = (const unsigned char *)panel + (size_t)b * block_bytes;
                const int8_t *qs;
                float d_a, s_a = 0.0f;
                int32_t isum = 0;
                if (min_at) {
                    const block_q8_1 *a = (const block_q8_1 *)token + b;
                    qs = a->qs, d_a = a->d, s_a = a->s;
                } else {
                    const act_q8_32 *a = (const act_q8_32 *)token + b;
                    qs = a->qs, d_a = a->d, isum = -offset * a->sum;
                }
                for (int g = 0; g < 8; g++)
                    for (int i = 0; i < 4; i++)
                        isum += panel_32_value(type, block, r, g, i) * qs[4 * g + i];
                uint16_t d_w, m_w; /* d[16] leads every 32-element panel block */
                memcpy(&d_w, block + 2 * r, sizeof d_w);
                acc = fmaf((float)isum, fp16_to_fp32(d_w) * d_a, acc);
                if (min_at) {
                    memcpy(&m_w, block + min_at + 2 * r, sizeof m_w);
                    acc = fmaf(fp16_to_fp32(m_w), s_a, acc);
                }
            }
            y[(size_t)t * y_stride + r] = acc;
        }
    }
}

#define PANEL_32_REF(name, type, offset, min_at)                                                             \
    static void name(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens,    \
                     float *y, size_t y_stride)                                                             \
    {                                                                                                       \
        panel_32_ref(type, offset, min_at, cols, panel, act, act_stride, n_tokens, y, y_stride);           \
    }
PANEL_32_REF(panel_q4_0_ref, QUANT_Q4_0, 8, 0)
PANEL_32_REF(panel_q5_0_ref, QUANT_Q5_0, 16, 0)
PANEL_32_REF(panel_q8_0_ref, QUANT_Q8_0, 128, 0)
PANEL_32_REF(panel_q4_1_ref, QUANT_Q4_1, 0, offsetof(panel_q4_1, m))
PANEL_32_REF(panel_q5_1_ref, QUANT_Q5_1, 0, offsetof(panel_q5_1, m))

/* Q4_K and Q5_K per super-block: acc = fma(-mins, dmin_w * d_a, acc), then
 * acc = fma(scaled, d_w * d_a, acc), with mins = sum_j m_j * sum32_j and
 * scaled = sum_j sc_j * sum(u * a) over sub-block j, both exact. */
#define PANEL_K4_REF(name, panel_t, VALUE)                                                                  \
    static void name(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens,   \
                     float *y, size_t y_stride)                                                            \
    {                                                                                                      \
        const panel_t *p = panel;                                                                          \
        for (int t = 0; t < n_tokens; t++) {                                                               \
            const act_q8_256 *a = (const act_q8_256 *)((const char *)act + (size_t)t * act_stride);        \
            for (int r = 0; r < OPS_PANEL_ROWS; r++) {                                                     \
                float acc = 0.0f;                                                                          \
                for (int64_t b = 0; b < cols / QK_K; b++) {                                                \
                    int32_t mins = 0, scaled = 0;                                                          \
                    for (int j = 0; j < 8; j++) {                                                          \
                        mins += p[b].min_pairs[j / 2][r][j % 2] * a[b].sums32[j];                          \
                        int32_t sub = 0;                                                                   \
                        for (int g = 0; g < 8; g++)                                                        \
                            for (int i = 0; i < 4; i++)                                                    \
                                sub += (int32_t)(VALUE) * a[b].qs[32 * j + 4 * g + i];                     \
                        scaled += p[b].scales[j][r] * sub;                                                 \
                    }                                                                                      \
                    acc = fmaf(-(float)mins, fp16_to_fp32(p[b].dmin[r]) * a[b].d, acc);                    \
                    acc = fmaf((float)scaled, fp16_to_fp32(p[b].d[r]) * a[b].d, acc);                      \
                }                                                                                          \
                y[(size_t)t * y_stride + r] = acc;                                                         \
            }                                                                                              \
        }                                                                                                  \
    }

PANEL_K4_REF(panel_q4_K_ref, panel_q4_K, NIBBLE(p[b].nibbles[j]))
PANEL_K4_REF(panel_q5_K_ref, panel_q5_K,
             NIBBLE(p[b].sub[j].nibbles) | (p[b].sub[j].high[g] >> (4 * r + i) & 1) << 4)

/* Q6_K per super-block: scaled = sum over sub-blocks s of 16 of
 * sc_s * (sum(u * a) - 32 * sum16_s), exact; acc = fma(scaled, d_w * d_a, acc). */
static void panel_q6_K_ref(int64_t cols, const void *panel, const void *act, size_t act_stride, int n_tokens,
                           float *y, size_t y_stride)
{
    const panel_q6_K *p = panel;
    for (int t = 0; t < n_tokens; t++) {
        const act_q8_256 *a = (const act_q8_256 *)((const char *)act + (size_t)t * act_stride);
        for (int r = 0; r < OPS_PANEL_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < cols / QK_K; b++) {
                int32_t scaled = 0;
                for (int c = 0; c < 8; c++) {
                    for (int half = 0; half < 2; half++) {
                        int32_t sub = -32 * a[b].sums16[2 * c + half];
                        for (int g = 4 * half; g < 4 * half + 4; g++)
                            for (int i = 0; i < 4; i++) {
                                int high = p[b].chunk[c].high[g / 4][4 * r + i] >> (2 * (g % 4)) & 3;
                                sub += (NIBBLE(p[b].chunk[c].nibbles) | high << 4) * a[b].qs[32 * c + 4 * g + i];
                            }
                        scaled += p[b].scale_pairs[c][r][half] * sub;
                    }
                }
                acc = fmaf((float)scaled, fp16_to_fp32(p[b].d[r]) * a[b].d, acc);
            }
            y[(size_t)t * y_stride + r] = acc;
        }
    }
}
#undef NIBBLE

/* ---- dispatch ------------------------------------------------------------------ */

#if defined(__x86_64__)
#define PANEL_VARIANTS(isa)                      \
    {                                            \
        [QUANT_Q4_0] = ops_panel_q4_0_##isa,     \
        [QUANT_Q5_0] = ops_panel_q5_0_##isa,     \
        [QUANT_Q8_0] = ops_panel_q8_0_##isa,     \
        [QUANT_Q4_1] = ops_panel_q4_1_##isa,     \
        [QUANT_Q5_1] = ops_panel_q5_1_##isa,     \
        [QUANT_Q4_K] = ops_panel_q4_K_##isa,     \
        [QUANT_Q5_K] = ops_panel_q5_K_##isa,     \
        [QUANT_Q6_K] = ops_panel_q6_K_##isa,     \
    }
static const ops_panel_fn panel_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT] = {
    [CPU_LEVEL_AVX2] = PANEL_VARIANTS(avx2),
    [CPU_LEVEL_AVX512] = PANEL_VARIANTS(avx512),
};
#else
static const ops_panel_fn panel_variants[CPU_LEVEL_COUNT][QUANT_TYPE_COUNT];
#endif

ops_panel_fn ops_panel_ref(uint32_t type)
{
    const packed_format *f = format_of(type);
    return f ? f->ref : NULL;
}

ops_panel_fn ops_panel_at_level(uint32_t type, cpu_level level)
{
    if (!format_of(type))
        return NULL;
    for (int l = level; l > CPU_LEVEL_SCALAR; l--)
        if (panel_variants[l][type])
            return panel_variants[l][type];
    return ops_panel_ref(type);
}

/* Packing pays only with a SIMD panel kernel; below that level the weights
 * stay as stored and the row kernels of dot.c multiply them. */
bool ops_packed_supported(uint32_t type)
{
    if (!format_of(type))
        return false;
    for (int l = cpu_best_level(); l > CPU_LEVEL_SCALAR; l--)
        if (panel_variants[l][type])
            return true;
    return false;
}

ops_panel_fn ops_panel_best(uint32_t type)
{
    return ops_packed_supported(type) ? ops_panel_at_level(type, cpu_best_level()) : NULL;
}

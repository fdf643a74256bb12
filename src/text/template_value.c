/* Chat-template values: the arena they live in, Python's str/repr/json.dumps
 * of them (templates print Python's spelling: True, None, 1.0, 'a'), and a
 * JSON parser that builds them from the caller's messages and tools. */
#include "text/template_internal.h"

#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena --------------------------------------------------------------- */

struct tpl_chunk {
    tpl_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void *tpl_alloc(tpl_ctx *c, size_t n)
{
    tpl_arena *a = c->arena;
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (n == 0)
        n = sizeof(max_align_t);
    tpl_chunk *h = a->head;
    if (!h || h->cap - h->used < n) {
        size_t cap = n > (1u << 16) ? n : (1u << 16);
        if (cap > a->limit || a->total > a->limit - cap)
            tpl_fail(c, 0, 0, "template used more than its memory budget of %zu bytes", a->limit);
        tpl_chunk *fresh = malloc(sizeof *fresh + cap);
        if (!fresh)
            tpl_fail(c, 0, 0, "out of memory");
        a->total += cap;
        fresh->used = 0;
        fresh->cap = cap;
        /* A chunk made for one large block goes behind the head, so the
         * space left in the head is still used for small ones. */
        if (h && cap == n && h->cap - h->used > 1024) {
            fresh->next = h->next;
            h->next = fresh;
        } else {
            fresh->next = h;
            a->head = fresh;
        }
        h = fresh;
    }
    void *p = (char *)h->data + h->used;
    h->used += n;
    return p;
}

void tpl_arena_free(tpl_arena *a)
{
    tpl_chunk *h = a->head;
    while (h) {
        tpl_chunk *next = h->next;
        free(h);
        h = next;
    }
    a->head = NULL;
    a->total = 0;
}

_Noreturn void tpl_fail(tpl_ctx *c, int line, int col, const char *fmt, ...)
{
    int used = 0;
    if (line > 0)
        used = snprintf(c->message, sizeof c->message, "line %d, column %d: ", line, col);
    if (used < 0 || (size_t)used >= sizeof c->message)
        used = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message + used, sizeof c->message - (size_t)used, fmt, ap);
    va_end(ap);
    longjmp(*c->jump, 1);
}

/* ---- strings, lists, dicts ----------------------------------------------- */

tv tv_str_n(tpl_ctx *c, const char *s, size_t n)
{
    if (n > SIZE_MAX / 2)
        tpl_fail(c, 0, 0, "string too long");
    tv_str *str = tpl_alloc(c, sizeof *str + n + 1);
    str->len = n;
    if (n)
        memcpy(str->s, s, n);
    str->s[n] = '\0';
    return (tv){.type = TV_STR, .u.s = str};
}

tv tv_cstr(tpl_ctx *c, const char *s) { return tv_str_n(c, s, strlen(s)); }

uint64_t tv_weight(tv v)
{
    if (v.type == TV_LIST)
        return v.u.l->weight;
    if (v.type == TV_DICT)
        return v.u.d->weight;
    return 1;
}

uint64_t tv_cost(tv v)
{
    if (v.type == TV_STR)
        return v.u.s->len / 1024;
    if (v.type == TV_LIST || v.type == TV_DICT)
        return tv_weight(v) / 16;
    return 0;
}

static uint32_t tv_depth(tv v)
{
    if (v.type == TV_LIST)
        return v.u.l->depth;
    if (v.type == TV_DICT)
        return v.u.d->depth;
    return 0;
}

/* Adds child's depth and weight to its container's. */
static void account(tpl_ctx *c, uint32_t *depth, uint64_t *weight, tv child)
{
    uint32_t d = tv_depth(child) + 1;
    if (d > *depth)
        *depth = d;
    *weight += tv_weight(child);
    if (*depth > TV_MAX_DEPTH)
        tpl_fail(c, 0, 0, "value nested too deeply (more than %d levels)", TV_MAX_DEPTH);
    if (*weight > TV_MAX_WEIGHT)
        tpl_fail(c, 0, 0, "value too large (more than %llu elements)", (unsigned long long)TV_MAX_WEIGHT);
}

tv tv_list_new(tpl_ctx *c, size_t cap)
{
    tv_list *l = tpl_alloc(c, sizeof *l);
    *l = (tv_list){.depth = 1, .weight = 1};
    if (cap) {
        if (cap > SIZE_MAX / sizeof(tv))
            tpl_fail(c, 0, 0, "list too long");
        l->items = tpl_alloc(c, cap * sizeof(tv));
        l->cap = cap;
    }
    return (tv){.type = TV_LIST, .u.l = l};
}

void tv_list_push(tpl_ctx *c, tv_list *l, tv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(tv))
            tpl_fail(c, 0, 0, "list too long");
        tv *items = tpl_alloc(c, cap * sizeof(tv));
        if (l->n)
            memcpy(items, l->items, l->n * sizeof(tv));
        l->items = items;
        l->cap = cap;
    }
    account(c, &l->depth, &l->weight, v);
    l->items[l->n++] = v;
}

tv tv_dict_new(tpl_ctx *c)
{
    tv_dict *d = tpl_alloc(c, sizeof *d);
    *d = (tv_dict){.depth = 1, .weight = 1};
    return (tv){.type = TV_DICT, .u.d = d};
}

tv tv_mutable_dict_new(tpl_ctx *c)
{
    tv d = tv_dict_new(c);
    d.u.d->is_mutable = true;
    return d;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* Dicts of more than a few entries get a hash index of their string keys, so
 * a large JSON object is not quadratic to build or read. */
enum { DICT_INDEX_MIN = 16 };

static void dict_index_insert(tv_dict *d, size_t entry)
{
    if (d->keys[entry].type != TV_STR)
        return;
    const tv_str *k = d->keys[entry].u.s;
    size_t mask = d->index_cap - 1, i = hash_bytes(k->s, k->len) & mask;
    while (d->index[i])
        i = (i + 1) & mask;
    d->index[i] = (uint32_t)entry + 1;
}

static void dict_reindex(tpl_ctx *c, tv_dict *d, size_t cap)
{
    d->index = tpl_alloc(c, cap * sizeof *d->index);
    memset(d->index, 0, cap * sizeof *d->index);
    d->index_cap = cap;
    for (size_t i = 0; i < d->n; i++)
        dict_index_insert(d, i);
}

static tv *dict_find(const tv_dict *d, tv key)
{
    if (d->index && key.type == TV_STR) {
        size_t mask = d->index_cap - 1, i = hash_bytes(key.u.s->s, key.u.s->len) & mask;
        for (; d->index[i]; i = (i + 1) & mask) {
            size_t e = d->index[i] - 1;
            if (d->keys[e].type == TV_STR && d->keys[e].u.s->len == key.u.s->len &&
                memcmp(d->keys[e].u.s->s, key.u.s->s, key.u.s->len) == 0)
                return &d->vals[e];
        }
        return NULL;
    }
    for (size_t i = 0; i < d->n; i++)
        if (tv_equal(d->keys[i], key))
            return &d->vals[i];
    return NULL;
}

tv *tv_dict_get(const tv_dict *d, tv key) { return dict_find(d, key); }

void tv_dict_clear(tv_dict *d)
{
    d->n = 0;
    if (d->index)
        memset(d->index, 0, d->index_cap * sizeof *d->index);
}

tv *tv_dict_get_cstr(const tv_dict *d, const char *key)
{
    tv_str *tmp = malloc(sizeof *tmp + strlen(key) + 1);
    if (!tmp)
        return NULL;
    tmp->len = strlen(key);
    memcpy(tmp->s, key, tmp->len + 1);
    tv *found = dict_find(d, (tv){.type = TV_STR, .u.s = tmp});
    free(tmp);
    return found;
}

void tv_dict_set(tpl_ctx *c, tv_dict *d, tv key, tv val)
{
    if (!d->is_mutable) {
        account(c, &d->depth, &d->weight, key);
        account(c, &d->depth, &d->weight, val);
    }
    tv *slot = dict_find(d, key);
    if (slot) {
        *slot = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        if (cap > UINT32_MAX / 2 || cap > SIZE_MAX / sizeof(tv))
            tpl_fail(c, 0, 0, "dict too large");
        tv *keys = tpl_alloc(c, cap * sizeof(tv)), *vals = tpl_alloc(c, cap * sizeof(tv));
        if (d->n) {
            memcpy(keys, d->keys, d->n * sizeof(tv));
            memcpy(vals, d->vals, d->n * sizeof(tv));
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    if (d->n >= DICT_INDEX_MIN && d->n * 2 > d->index_cap)
        dict_reindex(c, d, d->index_cap ? d->index_cap * 4 : 64);
    else if (d->index)
        dict_index_insert(d, d->n - 1);
}

/* ---- truth, equality, names ---------------------------------------------- */

bool tv_truthy(tv v)
{
    switch ((tv_type)v.type) {
    case TV_UNDEF:
    case TV_NONE:
        return false;
    case TV_BOOL:
        return v.u.b;
    case TV_INT:
        return v.u.i != 0;
    case TV_FLOAT:
        return v.u.f != 0;
    case TV_STR:
        return v.u.s->len != 0;
    case TV_LIST:
        return v.u.l->n != 0;
    case TV_DICT:
        return v.u.d->n != 0;
    default:
        return true;
    }
}

static bool is_number(tv v) { return v.type == TV_INT || v.type == TV_FLOAT || v.type == TV_BOOL; }

static double as_double(tv v)
{
    return v.type == TV_FLOAT ? v.u.f : v.type == TV_INT ? (double)v.u.i : (double)v.u.b;
}

bool tv_equal(tv a, tv b)
{
    if (is_number(a) && is_number(b)) {
        if (a.type != TV_FLOAT && b.type != TV_FLOAT)
            return (a.type == TV_INT ? a.u.i : a.u.b) == (b.type == TV_INT ? b.u.i : b.u.b);
        return as_double(a) == as_double(b);
    }
    if (a.type != b.type)
        return false;
    switch ((tv_type)a.type) {
    case TV_UNDEF:
    case TV_NONE:
        return true;
    case TV_STR:
        return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
    case TV_LIST:
        if (a.u.l == b.u.l)
            return true;
        if (a.u.l->n != b.u.l->n || a.u.l->tuple != b.u.l->tuple)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!tv_equal(a.u.l->items[i], b.u.l->items[i]))
                return false;
        return true;
    case TV_DICT:
        if (a.u.d == b.u.d)
            return true;
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            tv *other = dict_find(b.u.d, a.u.d->keys[i]);
            if (!other || !tv_equal(a.u.d->vals[i], *other))
                return false;
        }
        return true;
    case TV_NS:
        return a.u.d == b.u.d;
    case TV_FUNC:
        return a.u.fn == b.u.fn;
    case TV_LOOP:
        return a.u.loop == b.u.loop;
    default:
        return false;
    }
}

const char *tv_type_name(tv v)
{
    static const char *const names[] = {"undefined", "NoneType", "bool", "int",      "float",
                                        "str",       "list",     "dict", "Namespace", "function",
                                        "LoopContext"};
    if (v.type == TV_LIST && v.u.l->tuple)
        return "tuple";
    return v.type < sizeof names / sizeof names[0] ? names[v.type] : "?";
}

/* ---- buffers and UTF-8 --------------------------------------------------- */

void buf_put(tpl_ctx *c, tv_buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 4)
                tpl_fail(c, 0, 0, "string too long");
            cap *= 2;
        }
        char *p = tpl_alloc(c, cap);
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
}

void buf_puts(tpl_ctx *c, tv_buf *b, const char *s) { buf_put(c, b, s, strlen(s)); }

tv buf_to_str(tpl_ctx *c, const tv_buf *b) { return tv_str_n(c, b->p, b->n); }

static size_t utf8_step(const char *s, size_t n, uint32_t *cp)
{
    size_t k = utf8_decode((const uint8_t *)s, n, cp);
    if (k == 0) {
        *cp = (uint8_t)s[0];
        k = 1;
    }
    return k;
}

bool tv_find(const char *hay, size_t hay_len, size_t from, const char *needle, size_t needle_len, size_t *at)
{
    if (from > hay_len || needle_len > hay_len - from)
        return false;
    if (needle_len == 0) {
        *at = from;
        return true;
    }
    const char *p = hay + from, *end = hay + hay_len - needle_len + 1;
    while (p < end) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p)
            return false;
        if (memcmp(p, needle, needle_len) == 0) {
            *at = (size_t)(p - hay);
            return true;
        }
        p++;
    }
    return false;
}

static bool py_space_cp(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

size_t py_space_at(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    uint32_t cp;
    size_t k = (uint8_t)s[0] < 0x80 ? (cp = (uint8_t)s[0], 1) : utf8_decode((const uint8_t *)s, n, &cp);
    return k && py_space_cp(cp) ? k : 0;
}

size_t py_space_before(const char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t ch = (uint8_t)s[n - k];
        if (k == 1 && ch < 0x80)
            return py_space_cp(ch) ? 1 : 0;
        if ((ch & 0xC0) != 0x80) /* the lead byte */
            return py_space_at(s + n - k, k) == k ? k : 0;
    }
    return 0;
}

size_t utf8_count(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; count++) {
        if ((uint8_t)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        i += utf8_step(s + i, n - i, &cp);
    }
    return count;
}

size_t utf8_offset(const char *s, size_t n, size_t index)
{
    size_t i = 0;
    for (size_t k = 0; k < index && i < n; k++) {
        uint32_t cp;
        i += (uint8_t)s[i] < 0x80 ? 1 : utf8_step(s + i, n - i, &cp);
    }
    return i;
}

void buf_put_utf8(tpl_ctx *c, tv_buf *b, uint32_t cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(c, b, o, n);
}

/* ---- str() and repr() ---------------------------------------------------- */

void tv_format_float(double f, char *out, size_t cap)
{
    if (isnan(f)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    /* The shortest digits that read back as f, then Python's layout: fixed
     * for exponents -4..15, otherwise d.ddde+XX. */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *p;
    int exp = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    size_t o = 0;
#define PUT(ch) (o + 1 < cap ? (out[o++] = (ch)) : 0)
    if (neg)
        PUT('-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            PUT('0');
            PUT('.');
            for (int i = -1; i > exp; i--)
                PUT('0');
            for (size_t i = 0; i < nd; i++)
                PUT(digits[i]);
        } else {
            for (int i = 0; i <= exp; i++)
                PUT((size_t)i < nd ? digits[i] : '0');
            PUT('.');
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++)
                    PUT(digits[i]);
            else
                PUT('0');
        }
        out[o] = '\0';
    } else {
        PUT(digits[0]);
        if (nd > 1) {
            PUT('.');
            for (size_t i = 1; i < nd; i++)
                PUT(digits[i]);
        }
        out[o] = '\0';
        snprintf(out + o, cap - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

/* Python's str.isprintable(), closely enough: controls, format characters,
 * separators other than the space, and surrogates are escaped by repr(). */
static bool py_printable(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD)
        return false;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
        (cp >= 0xE000 && cp <= 0xF8FF))
        return false;
    return true;
}

static void write_str_repr(tpl_ctx *c, tv_buf *b, const tv_str *s)
{
    char quote = '\'';
    if (memchr(s->s, '\'', s->len) && !memchr(s->s, '"', s->len))
        quote = '"';
    buf_put(c, b, &quote, 1);
    for (size_t i = 0; i < s->len;) {
        uint32_t cp;
        size_t k = utf8_decode((const uint8_t *)s->s + i, s->len - i, &cp);
        if (k == 0) { /* not UTF-8: Python would hold a surrogate escape */
            char esc[8];
            snprintf(esc, sizeof esc, "\\x%02x", (uint8_t)s->s[i]);
            buf_puts(c, b, esc);
            i++;
            continue;
        }
        char esc[16];
        if (cp == (uint32_t)quote || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            buf_put(c, b, esc, 2);
        } else if (cp == '\n') {
            buf_puts(c, b, "\\n");
        } else if (cp == '\r') {
            buf_puts(c, b, "\\r");
        } else if (cp == '\t') {
            buf_puts(c, b, "\\t");
        } else if (!py_printable(cp)) {
            snprintf(esc, sizeof esc, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
            buf_puts(c, b, esc);
        } else {
            buf_put(c, b, s->s + i, k);
        }
        i += k;
    }
    buf_put(c, b, &quote, 1);
}

static void write_scalar(tpl_ctx *c, tv_buf *b, tv v)
{
    char num[48];
    switch ((tv_type)v.type) {
    case TV_NONE:
        buf_puts(c, b, "None");
        break;
    case TV_BOOL:
        buf_puts(c, b, v.u.b ? "True" : "False");
        break;
    case TV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v.u.i);
        buf_puts(c, b, num);
        break;
    case TV_FLOAT:
        tv_format_float(v.u.f, num, sizeof num);
        buf_puts(c, b, num);
        break;
    case TV_FUNC:
        buf_puts(c, b, "<function ");
        buf_puts(c, b, v.u.fn->name ? v.u.fn->name : "?");
        buf_puts(c, b, ">");
        break;
    case TV_LOOP:
        buf_puts(c, b, "<LoopContext>");
        break;
    default:
        break;
    }
}

void tv_write_repr(tpl_ctx *c, tv_buf *b, tv v)
{
    switch ((tv_type)v.type) {
    case TV_UNDEF:
        break;
    case TV_STR:
        write_str_repr(c, b, v.u.s);
        break;
    case TV_LIST: {
        const tv_list *l = v.u.l;
        buf_puts(c, b, l->tuple ? "(" : "[");
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                buf_puts(c, b, ", ");
            tv_write_repr(c, b, l->items[i]);
        }
        buf_puts(c, b, l->tuple ? (l->n == 1 ? ",)" : ")") : "]");
        break;
    }
    case TV_NS: /* opaque: a namespace may hold itself */
        buf_puts(c, b, "<Namespace>");
        break;
    case TV_DICT: {
        const tv_dict *d = v.u.d;
        buf_puts(c, b, "{");
        for (size_t i = 0; i < d->n; i++) {
            if (i)
                buf_puts(c, b, ", ");
            tv_write_repr(c, b, d->keys[i]);
            buf_puts(c, b, ": ");
            tv_write_repr(c, b, d->vals[i]);
        }
        buf_puts(c, b, "}");
        break;
    }
    default:
        write_scalar(c, b, v);
    }
}

void tv_write_str(tpl_ctx *c, tv_buf *b, tv v)
{
    if (v.type == TV_STR)
        buf_put(c, b, v.u.s->s, v.u.s->len);
    else
        tv_write_repr(c, b, v);
}

tv tv_to_str(tpl_ctx *c, tv v)
{
    if (v.type == TV_STR)
        return v;
    tv_buf b = {0};
    tv_write_str(c, &b, v);
    return buf_to_str(c, &b);
}

/* ---- json.dumps ---------------------------------------------------------- */

static void write_json_string(tpl_ctx *c, tv_buf *b, const tv_str *s, bool ensure_ascii)
{
    buf_put(c, b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < s->len;) {
        uint8_t ch = (uint8_t)s->s[i];
        const char *esc = NULL;
        char tmp[16];
        size_t k = 1;
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch == '\b')
            esc = "\\b";
        else if (ch == '\f')
            esc = "\\f";
        else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            esc = tmp;
        } else if (ch >= 0x80 && ensure_ascii) {
            uint32_t cp;
            k = utf8_step(s->s + i, s->len - i, &cp);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            }
            esc = tmp;
        }
        if (esc) {
            buf_put(c, b, s->s + i - run, run);
            run = 0;
            buf_puts(c, b, esc);
        } else {
            run += k;
        }
        i += k;
    }
    buf_put(c, b, s->s + s->len - run, run);
    buf_put(c, b, "\"", 1);
}

static void json_newline(tpl_ctx *c, tv_buf *b, const tv_json_opts *o, int level)
{
    buf_put(c, b, "\n", 1);
    for (long i = 0; i < (long)o->indent * level; i++)
        buf_put(c, b, " ", 1);
}

static int key_order(const void *pa, const void *pb)
{
    const tv *a = *(const tv *const *)pa, *b = *(const tv *const *)pb;
    if (a->type == TV_STR && b->type == TV_STR) {
        size_t n = a->u.s->len < b->u.s->len ? a->u.s->len : b->u.s->len;
        int r = memcmp(a->u.s->s, b->u.s->s, n);
        return r ? r : (a->u.s->len > b->u.s->len) - (a->u.s->len < b->u.s->len);
    }
    return 0;
}

void tv_write_json(tpl_ctx *c, tv_buf *b, tv v, const tv_json_opts *o, int level)
{
    if (level > 512)
        tpl_fail(c, 0, 0, "tojson: nesting too deep");
    char num[48];
    switch ((tv_type)v.type) {
    case TV_NONE:
        buf_puts(c, b, "null");
        return;
    case TV_BOOL:
        buf_puts(c, b, v.u.b ? "true" : "false");
        return;
    case TV_INT:
        write_scalar(c, b, v);
        return;
    case TV_FLOAT:
        if (isnan(v.u.f))
            buf_puts(c, b, "NaN");
        else if (isinf(v.u.f))
            buf_puts(c, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else {
            tv_format_float(v.u.f, num, sizeof num);
            buf_puts(c, b, num);
        }
        return;
    case TV_STR:
        write_json_string(c, b, v.u.s, o->ensure_ascii);
        return;
    case TV_LIST: {
        const tv_list *l = v.u.l;
        if (l->n == 0) {
            buf_puts(c, b, "[]");
            return;
        }
        buf_puts(c, b, "[");
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                buf_puts(c, b, o->item_sep);
            if (o->indent >= 0)
                json_newline(c, b, o, level + 1);
            tv_write_json(c, b, l->items[i], o, level + 1);
        }
        if (o->indent >= 0)
            json_newline(c, b, o, level);
        buf_puts(c, b, "]");
        return;
    }
    case TV_DICT: {
        const tv_dict *d = v.u.d;
        if (d->n == 0) {
            buf_puts(c, b, "{}");
            return;
        }
        const tv **order = tpl_alloc(c, d->n * sizeof *order);
        for (size_t i = 0; i < d->n; i++)
            order[i] = &d->keys[i];
        if (o->sort_keys)
            qsort(order, d->n, sizeof *order, key_order);
        buf_puts(c, b, "{");
        for (size_t j = 0; j < d->n; j++) {
            size_t i = (size_t)(order[j] - d->keys);
            if (j)
                buf_puts(c, b, o->item_sep);
            if (o->indent >= 0)
                json_newline(c, b, o, level + 1);
            tv key = d->keys[i];
            if (key.type == TV_STR) {
                write_json_string(c, b, key.u.s, o->ensure_ascii);
            } else if (key.type == TV_NONE || key.type == TV_BOOL || key.type == TV_INT || key.type == TV_FLOAT) {
                tv_buf kb = {0};
                tv_write_json(c, &kb, key, o, level + 1);
                buf_put(c, b, "\"", 1);
                buf_put(c, b, kb.p, kb.n);
                buf_put(c, b, "\"", 1);
            } else {
                tpl_fail(c, 0, 0, "tojson: keys must be str, int, float, bool or None, not %s",
                         tv_type_name(key));
            }
            buf_puts(c, b, o->key_sep);
            tv_write_json(c, b, d->vals[i], o, level + 1);
        }
        if (o->indent >= 0)
            json_newline(c, b, o, level);
        buf_puts(c, b, "}");
        return;
    }
    default:
        tpl_fail(c, 0, 0, "tojson: object of type %s is not JSON serializable", tv_type_name(v));
    }
}

/* ---- JSON parser --------------------------------------------------------- */

typedef struct json_reader {
    tpl_ctx *c;
    const char *s;
    size_t n, pos;
    const char *what;
} json_reader;

enum { JSON_MAX_DEPTH = 256 };

_Noreturn static void json_fail(json_reader *j, const char *msg)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < j->pos && i < j->n; i++) {
        if (j->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    tpl_fail(j->c, 0, 0, "%s: invalid JSON at line %zu, column %zu: %s", j->what, line, col, msg);
}

static void json_ws(json_reader *j)
{
    while (j->pos < j->n && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' || j->s[j->pos] == '\n' ||
                             j->s[j->pos] == '\r'))
        j->pos++;
}

/* Skips whitespace, then ch if it is next. */
static bool json_accept(json_reader *j, char ch)
{
    json_ws(j);
    if (j->pos < j->n && j->s[j->pos] == ch) {
        j->pos++;
        return true;
    }
    return false;
}

static bool json_lit(json_reader *j, const char *word)
{
    size_t k = strlen(word);
    if (j->n - j->pos >= k && memcmp(j->s + j->pos, word, k) == 0) {
        j->pos += k;
        return true;
    }
    return false;
}

static uint32_t json_hex4(json_reader *j)
{
    if (j->n - j->pos < 4)
        json_fail(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = j->s[j->pos++];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (uint32_t)(ch - 'A' + 10);
        else
            json_fail(j, "bad \\u escape");
    }
    return v;
}

static tv json_string(json_reader *j)
{
    j->pos++; /* the opening quote */
    tv_buf b = {0};
    for (;;) {
        if (j->pos >= j->n)
            json_fail(j, "unterminated string");
        uint8_t ch = (uint8_t)j->s[j->pos];
        if (ch == '"') {
            j->pos++;
            break;
        }
        if (ch < 0x20)
            json_fail(j, "control character in string");
        if (ch == '\\') {
            j->pos++;
            if (j->pos >= j->n)
                json_fail(j, "unterminated string");
            char e = j->s[j->pos++];
            const char *simple = NULL;
            switch (e) {
            case '"': simple = "\""; break;
            case '\\': simple = "\\"; break;
            case '/': simple = "/"; break;
            case 'b': simple = "\b"; break;
            case 'f': simple = "\f"; break;
            case 'n': simple = "\n"; break;
            case 'r': simple = "\r"; break;
            case 't': simple = "\t"; break;
            case 'u': {
                uint32_t cp = json_hex4(j);
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    json_fail(j, "lone low surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (j->n - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u')
                        json_fail(j, "lone high surrogate in \\u escape");
                    j->pos += 2;
                    uint32_t lo = json_hex4(j);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        json_fail(j, "lone high surrogate in \\u escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                buf_put_utf8(j->c, &b, cp);
                continue;
            }
            default:
                json_fail(j, "bad escape");
            }
            buf_put(j->c, &b, simple, 1);
            continue;
        }
        size_t start = j->pos;
        while (j->pos < j->n && j->s[j->pos] != '"' && j->s[j->pos] != '\\' && (uint8_t)j->s[j->pos] >= 0x20)
            j->pos++;
        for (size_t i = start; i < j->pos;) {
            uint32_t cp;
            size_t k = utf8_decode((const uint8_t *)j->s + i, j->pos - i, &cp);
            if (k == 0) {
                j->pos = i;
                json_fail(j, "invalid UTF-8 in string");
            }
            i += k;
        }
        buf_put(j->c, &b, j->s + start, j->pos - start);
    }
    return buf_to_str(j->c, &b);
}

static tv json_number(json_reader *j)
{
    size_t start = j->pos;
    bool is_float = false;
    if (j->s[j->pos] == '-')
        j->pos++;
    if (j->pos >= j->n || j->s[j->pos] < '0' || j->s[j->pos] > '9')
        json_fail(j, "bad number");
    if (j->s[j->pos] == '0')
        j->pos++;
    else
        while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9')
            j->pos++;
    if (j->pos < j->n && j->s[j->pos] == '.') {
        is_float = true;
        j->pos++;
        if (j->pos >= j->n || j->s[j->pos] < '0' || j->s[j->pos] > '9')
            json_fail(j, "bad number");
        while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9')
            j->pos++;
    }
    if (j->pos < j->n && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        is_float = true;
        j->pos++;
        if (j->pos < j->n && (j->s[j->pos] == '+' || j->s[j->pos] == '-'))
            j->pos++;
        if (j->pos >= j->n || j->s[j->pos] < '0' || j->s[j->pos] > '9')
            json_fail(j, "bad number");
        while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9')
            j->pos++;
    }
    char tmp[64];
    size_t len = j->pos - start;
    if (len >= sizeof tmp) {
        if (!is_float)
            json_fail(j, "integer too large");
        /* A long float: strtod needs it NUL-terminated. */
        char *copy = tpl_alloc(j->c, len + 1);
        memcpy(copy, j->s + start, len);
        copy[len] = '\0';
        return tv_float(strtod(copy, NULL));
    }
    memcpy(tmp, j->s + start, len);
    tmp[len] = '\0';
    if (is_float)
        return tv_float(strtod(tmp, NULL));
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE)
        json_fail(j, "integer too large");
    return tv_int(v);
}

static tv json_value(json_reader *j, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        json_fail(j, "nested too deeply");
    json_ws(j);
    if (j->pos >= j->n)
        json_fail(j, "unexpected end of input");
    char ch = j->s[j->pos];
    if (ch == '{' || ch == '[') {
        bool object = ch == '{';
        char close = object ? '}' : ']';
        j->pos++;
        tv out = object ? tv_dict_new(j->c) : tv_list_new(j->c, 0);
        if (json_accept(j, close))
            return out;
        do {
            if (object) {
                json_ws(j);
                if (j->pos >= j->n || j->s[j->pos] != '"')
                    json_fail(j, "expected a string key");
                tv key = json_string(j);
                if (!json_accept(j, ':'))
                    json_fail(j, "expected ':'");
                tv_dict_set(j->c, out.u.d, key, json_value(j, depth + 1));
            } else {
                tv_list_push(j->c, out.u.l, json_value(j, depth + 1));
            }
        } while (json_accept(j, ','));
        if (!json_accept(j, close))
            json_fail(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
        return out;
    }
    if (ch == '"')
        return json_string(j);
    if (json_lit(j, "true"))
        return tv_bool(true);
    if (json_lit(j, "false"))
        return tv_bool(false);
    if (json_lit(j, "null"))
        return tv_none();
    if (ch == '-' || (ch >= '0' && ch <= '9'))
        return json_number(j);
    json_fail(j, "unexpected character");
}

tv tv_parse_json(tpl_ctx *c, const char *s, size_t n, const char *what)
{
    json_reader j = {.c = c, .s = s, .n = n, .what = what};
    tv v = json_value(&j, 0);
    json_ws(&j);
    if (j.pos != j.n)
        json_fail(&j, "extra data after the value");
    return v;
}

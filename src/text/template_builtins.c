/* Chat-template builtins: jinja2's filters and tests, the str and dict
 * methods templates call, and the globals transformers provides (range,
 * namespace, dict, raise_exception, strftime_now). Case mapping (upper,
 * lower, title, capitalize) is ASCII-only. */
#include "text/template_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Natives share one signature; each uses the parameters it needs. */
#define U __attribute__((unused))
#define NATIVE(fname)                                                                                    \
    static tv fname(U tpl_render *r, U const node *at, U tv self, U const tv *args, U size_t nargs,        \
                    U const char **kwnames, U const tv *kwargs, U size_t nkw)
/* The argument at position pos or called name; false when not given. */
#define ARG(pos, name, out) get_arg(args, nargs, kwnames, kwargs, nkw, (pos), (name), (out))

static bool get_arg(const tv *args, size_t nargs, const char **kwnames, const tv *kwargs, size_t nkw, size_t pos,
                    const char *name, tv *out)
{
    if (pos < nargs) {
        *out = args[pos];
        return true;
    }
    for (size_t i = 0; i < nkw; i++)
        if (name && !strcmp(kwnames[i], name)) {
            *out = kwargs[i];
            return true;
        }
    return false;
}

static tv_str *want_str(tpl_render *r, const node *at, tv v, const char *what)
{
    if (v.type != TV_STR)
        tpl_error(r, at, "%s: expected a string, got %s", what, tv_type_name(v));
    return v.u.s;
}

static int64_t want_int(tpl_render *r, const node *at, tv v, const char *what)
{
    if (v.type == TV_INT)
        return v.u.i;
    if (v.type == TV_BOOL)
        return v.u.b;
    tpl_error(r, at, "%s: expected an integer, got %s", what, tv_type_name(v));
}

static tv str_of(tpl_render *r, tv v) { return v.type == TV_UNDEF ? tv_cstr(tpl_render_ctx(r), "") : tv_to_str(tpl_render_ctx(r), v); }

static tv_list *items_of(tpl_render *r, const node *at, tv v)
{
    tpl_ctx *c = tpl_render_ctx(r);
    switch (v.type) {
    case TV_UNDEF:
        return tv_list_new(c, 0).u.l;
    case TV_LIST:
        return v.u.l;
    case TV_DICT: {
        tv l = tv_list_new(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            tv_list_push(c, l.u.l, v.u.d->keys[i]);
        return l.u.l;
    }
    case TV_STR: {
        tv l = tv_list_new(c, 0);
        for (size_t i = 0; i < v.u.s->len;) {
            size_t k = utf8_offset(v.u.s->s + i, v.u.s->len - i, 1);
            tv_list_push(c, l.u.l, tv_str_n(c, v.u.s->s + i, k));
            i += k;
        }
        return l.u.l;
    }
    default:
        tpl_error(r, at, "'%s' object is not iterable", tv_type_name(v));
    }
}

/* ---- string helpers ------------------------------------------------------ */

static bool in_chars(const tv_str *chars, const char *s, size_t k)
{
    for (size_t i = 0; i < chars->len;) {
        size_t m = utf8_offset(chars->s + i, chars->len - i, 1);
        if (m == k && memcmp(chars->s + i, s, k) == 0)
            return true;
        i += m;
    }
    return false;
}

/* str.strip / lstrip / rstrip, with chars or whitespace. */
static tv strip(tpl_render *r, const tv_str *s, const tv_str *chars, bool left, bool right)
{
    size_t a = 0, b = s->len;
    while (left && a < b) {
        size_t k = chars ? utf8_offset(s->s + a, b - a, 1) : py_space_at(s->s + a, b - a);
        if (k == 0 || (chars && !in_chars(chars, s->s + a, k)))
            break;
        a += k;
    }
    while (right && b > a) {
        size_t k;
        if (chars) {
            k = 1;
            while (k < b - a && k < 4 && ((uint8_t)s->s[b - k] & 0xC0) == 0x80)
                k++;
            if (!in_chars(chars, s->s + b - k, k))
                break;
        } else if ((k = py_space_before(s->s + a, b - a)) == 0) {
            break;
        }
        b -= k;
    }
    return tv_str_n(tpl_render_ctx(r), s->s + a, b - a);
}

enum case_mode { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_TITLE_FILTER };

/* str.upper / lower / title / capitalize, and jinja2's title filter. */
static tv case_map(tpl_render *r, const tv_str *s, enum case_mode mode)
{
    tv out = tv_str_n(tpl_render_ctx(r), s->s, s->len);
    char *p = out.u.s->s;
    bool start = true;
    for (size_t i = 0; i < s->len; i++) {
        char ch = p[i];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool upper_it = mode == CASE_UPPER || (mode != CASE_LOWER && start);
        if (mode == CASE_CAPITALIZE && i > 0)
            upper_it = false;
        if (alpha)
            p[i] = upper_it ? (char)(ch & ~0x20) : (char)(ch | 0x20);
        if (mode == CASE_TITLE) /* str.title(): a word starts after any non-letter */
            start = !alpha && !((uint8_t)ch >= 0x80);
        if (mode == CASE_TITLE_FILTER) /* jinja2's title filter: after spaces and -({[< */
            start = ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch && strchr("-({[<", ch));
    }
    return out;
}

/* Finds n in h from `from`, charging the search to the step budget. */
static bool find_bytes(tpl_render *r, const node *at, const tv_str *h, size_t from, const tv_str *n, size_t *hit)
{
    bool found = tv_find(h->s, h->len, from, n->s, n->len, hit);
    size_t scanned = (found ? *hit : h->len) - (from < h->len ? from : h->len);
    tpl_step(r, at, (uint64_t)scanned * (n->len / 64 + 1) / 1024);
    return found;
}

static tv replace(tpl_render *r, const node *at, const tv_str *s, const tv_str *old, const tv_str *new_, int64_t count)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv_buf b = {0};
    size_t pos = 0, hit;
    int64_t done = 0;
    if (old->len == 0) { /* Python inserts new_ between every character */
        for (size_t i = 0; i <= s->len && (count < 0 || done < count);) {
            buf_put(c, &b, new_->s, new_->len);
            done++;
            tpl_step(r, at, 1);
            if (i == s->len) {
                pos = i;
                break;
            }
            size_t k = utf8_offset(s->s + i, s->len - i, 1);
            buf_put(c, &b, s->s + i, k);
            i += k;
            pos = i;
        }
        buf_put(c, &b, s->s + pos, s->len - pos);
        return buf_to_str(c, &b);
    }
    while ((count < 0 || done < count) && find_bytes(r, at, s, pos, old, &hit)) {
        buf_put(c, &b, s->s + pos, hit - pos);
        buf_put(c, &b, new_->s, new_->len);
        pos = hit + old->len;
        done++;
    }
    buf_put(c, &b, s->s + pos, s->len - pos);
    return buf_to_str(c, &b);
}

/* str.split(sep=None, maxsplit=-1) */
static tv split(tpl_render *r, const node *at, const tv_str *s, const tv_str *sep, int64_t maxsplit)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv out = tv_list_new(c, 0);
    if (sep) {
        if (sep->len == 0)
            tpl_error(r, at, "split: empty separator");
        size_t pos = 0, hit;
        int64_t done = 0;
        while ((maxsplit < 0 || done < maxsplit) && find_bytes(r, at, s, pos, sep, &hit)) {
            tv_list_push(c, out.u.l, tv_str_n(c, s->s + pos, hit - pos));
            pos = hit + sep->len;
            done++;
        }
        tv_list_push(c, out.u.l, tv_str_n(c, s->s + pos, s->len - pos));
        return out;
    }
    size_t i = 0, k;
    int64_t done = 0;
    for (;;) {
        while (i < s->len && (k = py_space_at(s->s + i, s->len - i)) > 0)
            i += k;
        if (i >= s->len)
            break;
        if (maxsplit >= 0 && done >= maxsplit) {
            size_t e = s->len;
            while (e > i && (k = py_space_before(s->s + i, e - i)) > 0)
                e -= k;
            tv_list_push(c, out.u.l, tv_str_n(c, s->s + i, e - i));
            break;
        }
        size_t start = i;
        while (i < s->len && py_space_at(s->s + i, s->len - i) == 0)
            i += utf8_offset(s->s + i, s->len - i, 1);
        tv_list_push(c, out.u.l, tv_str_n(c, s->s + start, i - start));
        done++;
    }
    return out;
}

/* jinja2's attribute= argument: "a.b.0" looks up a, then b, then item 0,
 * each with getitem (an item first, then an attribute). */
static tv attr_path(tpl_render *r, const node *at, tv v, tv path)
{
    tpl_ctx *c = tpl_render_ctx(r);
    if (path.type == TV_INT)
        return tpl_getitem(r, at, v, path);
    const tv_str *p = want_str(r, at, path, "attribute");
    for (size_t i = 0; i <= p->len;) {
        const char *dot = memchr(p->s + i, '.', p->len - i);
        size_t end = dot ? (size_t)(dot - p->s) : p->len;
        bool digits = end > i && end - i < 18;
        for (size_t k = i; k < end && digits; k++)
            digits = p->s[k] >= '0' && p->s[k] <= '9';
        v = tpl_getitem(r, at, v, digits ? tv_int(strtoll(p->s + i, NULL, 10)) : tv_str_n(c, p->s + i, end - i));
        i = end + 1;
    }
    return v;
}

/* ---- str and dict methods ------------------------------------------------- */

/* str.startswith / endswith: a string or a tuple of them. */
static tv affix_test(tpl_render *r, const node *at, tv self, const tv *args, size_t nargs, bool suffix)
{
    const tv_str *s = self.u.s;
    if (nargs < 1)
        tpl_error(r, at, "%s: missing argument", suffix ? "endswith" : "startswith");
    tv_list one = {.n = 1, .items = (tv *)&args[0]};
    const tv_list *options = args[0].type == TV_LIST ? args[0].u.l : &one;
    for (size_t i = 0; i < options->n; i++) {
        const tv_str *p = want_str(r, at, options->items[i], suffix ? "endswith" : "startswith");
        if (p->len <= s->len && memcmp(s->s + (suffix ? s->len - p->len : 0), p->s, p->len) == 0)
            return tv_bool(true);
    }
    return tv_bool(false);
}

NATIVE(m_startswith) { return affix_test(r, at, self, args, nargs, false); }
NATIVE(m_endswith) { return affix_test(r, at, self, args, nargs, true); }

NATIVE(m_split)
{
    tv sep = tv_none(), max = tv_int(-1);
    ARG(0, "sep", &sep);
    ARG(1, "maxsplit", &max);
    return split(r, at, self.u.s, sep.type == TV_NONE ? NULL : want_str(r, at, sep, "split"),
                 want_int(r, at, max, "split"));
}

static tv strip_method(tpl_render *r, const node *at, tv self, const tv *args, size_t nargs, bool left, bool right)
{
    tv chars = tv_none();
    if (nargs > 0)
        chars = args[0];
    return strip(r, self.u.s, chars.type == TV_NONE ? NULL : want_str(r, at, chars, "strip"), left, right);
}

NATIVE(m_strip) { return strip_method(r, at, self, args, nargs, true, true); }
NATIVE(m_lstrip) { return strip_method(r, at, self, args, nargs, true, false); }
NATIVE(m_rstrip) { return strip_method(r, at, self, args, nargs, false, true); }

NATIVE(m_replace)
{
    tv old, new_, count = tv_int(-1);
    if (!ARG(0, "old", &old) || !ARG(1, "new", &new_))
        tpl_error(r, at, "replace: expected two arguments");
    ARG(2, "count", &count);
    return replace(r, at, self.u.s, want_str(r, at, old, "replace"), want_str(r, at, new_, "replace"),
                   want_int(r, at, count, "replace"));
}

NATIVE(m_upper) { return case_map(r, self.u.s, CASE_UPPER); }
NATIVE(m_lower) { return case_map(r, self.u.s, CASE_LOWER); }
NATIVE(m_title) { return case_map(r, self.u.s, CASE_TITLE); }
NATIVE(m_capitalize) { return case_map(r, self.u.s, CASE_CAPITALIZE); }

NATIVE(m_find)
{
    tv sub;
    if (!ARG(0, NULL, &sub))
        tpl_error(r, at, "find: missing argument");
    size_t hit;
    if (!find_bytes(r, at, self.u.s, 0, want_str(r, at, sub, "find"), &hit))
        return tv_int(-1);
    return tv_int((int64_t)utf8_count(self.u.s->s, hit));
}

NATIVE(m_count)
{
    tv sub;
    if (!ARG(0, NULL, &sub))
        tpl_error(r, at, "count: missing argument");
    const tv_str *n = want_str(r, at, sub, "count");
    if (n->len == 0)
        return tv_int((int64_t)utf8_count(self.u.s->s, self.u.s->len) + 1);
    int64_t count = 0;
    size_t pos = 0, hit;
    while (find_bytes(r, at, self.u.s, pos, n, &hit)) {
        count++;
        pos = hit + n->len;
    }
    return tv_int(count);
}

NATIVE(m_join)
{
    tv seq;
    if (!ARG(0, NULL, &seq))
        tpl_error(r, at, "join: missing argument");
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = items_of(r, at, seq);
    tv_buf b = {0};
    for (size_t i = 0; i < items->n; i++) {
        if (i)
            buf_put(c, &b, self.u.s->s, self.u.s->len);
        const tv_str *s = want_str(r, at, items->items[i], "join");
        buf_put(c, &b, s->s, s->len);
    }
    return buf_to_str(c, &b);
}

NATIVE(m_get)
{
    tv key, def = tv_none();
    if (!ARG(0, "key", &key))
        tpl_error(r, at, "get: missing argument");
    ARG(1, "default", &def);
    tv *v = tv_dict_get(self.u.d, key);
    return v ? *v : def;
}

static tv dict_pairs(tpl_render *r, const tv_dict *d, int which)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv out = tv_list_new(c, d->n);
    for (size_t i = 0; i < d->n; i++) {
        if (which == 0) {
            tv pair = tv_list_new(c, 2);
            pair.u.l->tuple = true;
            tv_list_push(c, pair.u.l, d->keys[i]);
            tv_list_push(c, pair.u.l, d->vals[i]);
            tv_list_push(c, out.u.l, pair);
        } else {
            tv_list_push(c, out.u.l, which == 1 ? d->keys[i] : d->vals[i]);
        }
    }
    return out;
}

NATIVE(m_items) { return dict_pairs(r, self.u.d, 0); }
NATIVE(m_keys) { return dict_pairs(r, self.u.d, 1); }
NATIVE(m_values) { return dict_pairs(r, self.u.d, 2); }

/* Python's printf-style formatting (str % args, the format filter), for the
 * conversions templates use: %s %r %d %i %f %x %% with flags, width and
 * precision. */
static tv percent_format(tpl_render *r, const node *at, const tv_str *fmt, const tv *args, size_t nargs)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv_buf b = {0};
    size_t next_arg = 0;
    for (size_t i = 0; i < fmt->len; i++) {
        if (fmt->s[i] != '%') {
            buf_put(c, &b, fmt->s + i, 1);
            continue;
        }
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        i++;
        bool alt = false; /* '#': kept only where C defines it (%#x, %#f) */
        while (i < fmt->len && fmt->s[i] && strchr("-+ 0#", fmt->s[i]) && k < 8) {
            if (fmt->s[i] == '#')
                alt = true;
            else
                spec[k++] = fmt->s[i];
            i++;
        }
        int dots = 0;
        while (i < fmt->len && ((fmt->s[i] >= '0' && fmt->s[i] <= '9') || (fmt->s[i] == '.' && !dots++)) && k < 16)
            spec[k++] = fmt->s[i++];
        char conv = i < fmt->len ? fmt->s[i] : '\0';
        if (alt && (conv == 'x' || conv == 'f')) {
            memmove(spec + 2, spec + 1, k - 1);
            spec[1] = '#';
            k++;
        }
        if (conv == '%' && k == 1) {
            buf_put(c, &b, "%", 1);
            continue;
        }
        if (!conv || !strchr("srdifx", conv))
            tpl_error(r, at, "unsupported format character in '%s'", fmt->s);
        if (next_arg >= nargs)
            tpl_error(r, at, "not enough arguments for format string");
        tv v = args[next_arg++];
        /* Digits past the limits only need to stay past them: the values saturate (no overflow). */
        int width = 0, prec = -1;
        const char *dot = memchr(spec, '.', k);
        for (size_t m = 1; m < k && spec + m != dot; m++)
            if (spec[m] >= '0' && spec[m] <= '9' && width <= 1000)
                width = width * 10 + (spec[m] - '0');
        if (dot) {
            prec = 0;
            for (const char *d = dot + 1; d < spec + k && *d >= '0' && *d <= '9' && prec <= 100; d++)
                prec = prec * 10 + (*d - '0');
        }
        if (width > 1000 || prec > 100)
            tpl_error(r, at, "format width or precision too large");
        char out[1200];
        if (conv == 's' || conv == 'r') {
            tv_buf sb = {0};
            if (conv == 's')
                tv_write_str(c, &sb, v);
            else
                tv_write_repr(c, &sb, v);
            size_t len = sb.n;
            if (prec >= 0 && (size_t)prec < len)
                len = utf8_offset(sb.p, sb.n, (size_t)prec);
            size_t cps = utf8_count(sb.p, len), pad = (size_t)width > cps ? (size_t)width - cps : 0;
            bool left = memchr(spec, '-', k) != NULL;
            for (size_t m = 0; !left && m < pad; m++)
                buf_put(c, &b, " ", 1);
            buf_put(c, &b, len ? sb.p : "", len);
            for (size_t m = 0; left && m < pad; m++)
                buf_put(c, &b, " ", 1);
            continue;
        }
        if (v.type != TV_INT && v.type != TV_FLOAT && v.type != TV_BOOL)
            tpl_error(r, at, "%%%c format: a real number is required, not %s", conv, tv_type_name(v));
        double f = v.type == TV_FLOAT ? v.u.f : v.type == TV_INT ? (double)v.u.i : v.u.b;
        if (conv == 'f') {
            spec[k++] = 'f';
            spec[k] = '\0';
            snprintf(out, sizeof out, spec, f);
        } else {
            long long n = v.type == TV_FLOAT ? (long long)f : v.type == TV_INT ? (long long)v.u.i : v.u.b;
            if (v.type == TV_FLOAT && !(fabs(f) < 9.2e18))
                tpl_error(r, at, "cannot convert float to integer");
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = conv == 'x' ? 'x' : 'd';
            spec[k] = '\0';
            snprintf(out, sizeof out, spec, n);
        }
        buf_puts(c, &b, out);
    }
    if (next_arg < nargs)
        tpl_error(r, at, "not all arguments converted during string formatting");
    return buf_to_str(c, &b);
}

tv tpl_percent_format(tpl_render *r, const node *at, tv fmt, tv args)
{
    if (args.type == TV_LIST && args.u.l->tuple)
        return percent_format(r, at, fmt.u.s, args.u.l->items, args.u.l->n);
    return percent_format(r, at, fmt.u.s, &args, 1);
}

NATIVE(f_format)
{
    if (self.type != TV_STR)
        tpl_error(r, at, "format: expected a string, got %s", tv_type_name(self));
    return percent_format(r, at, self.u.s, args, nargs);
}

NATIVE(m_cycle)
{
    if (nargs == 0)
        tpl_error(r, at, "no items for cycling given");
    return args[self.u.loop->index0 % nargs];
}

static const tpl_native_entry loop_methods[] = {{"cycle", m_cycle}, {NULL, NULL}};

static const tpl_native_entry str_methods[] = {
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"split", m_split},   {"strip", m_strip},
    {"lstrip", m_lstrip},         {"rstrip", m_rstrip},     {"replace", m_replace}, {"upper", m_upper},
    {"lower", m_lower},           {"title", m_title},       {"capitalize", m_capitalize}, {"find", m_find},
    {"count", m_count},           {"join", m_join},         {NULL, NULL},
};
static const tpl_native_entry dict_methods[] = {
    {"get", m_get}, {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {NULL, NULL},
};

static const tpl_native_entry *find_native(const tpl_native_entry *table, const char *name)
{
    for (; table->name; table++)
        if (!strcmp(table->name, name))
            return table;
    return NULL;
}

static tv bind(tpl_render *r, const char *name, tv_native fn, tv self)
{
    tv_func *f = tpl_alloc(tpl_render_ctx(r), sizeof *f);
    *f = (tv_func){.name = name, .native = fn, .self = self};
    return (tv){.type = TV_FUNC, .u.fn = f};
}

tv tpl_get_method(tpl_render *r, tv v, const char *name)
{
    const tpl_native_entry *e = NULL;
    if (v.type == TV_STR)
        e = find_native(str_methods, name);
    else if (v.type == TV_DICT)
        e = find_native(dict_methods, name);
    else if (v.type == TV_LOOP)
        e = find_native(loop_methods, name);
    return e ? bind(r, e->name, e->fn, v) : tv_undef();
}

/* ---- filters ------------------------------------------------------------- */

NATIVE(f_trim)
{
    tv chars = tv_none();
    ARG(0, "chars", &chars);
    tv s = str_of(r, self);
    return strip(r, s.u.s, chars.type == TV_NONE ? NULL : want_str(r, at, chars, "trim"), true, true);
}

NATIVE(f_string) { return str_of(r, self); }
NATIVE(f_safe) { return self; }

NATIVE(f_length)
{
    switch (self.type) {
    case TV_UNDEF:
        return tv_int(0);
    case TV_STR:
        return tv_int((int64_t)utf8_count(self.u.s->s, self.u.s->len));
    case TV_LIST:
        return tv_int((int64_t)self.u.l->n);
    case TV_DICT:
    case TV_NS:
        return tv_int((int64_t)self.u.d->n);
    default:
        tpl_error(r, at, "object of type '%s' has no len()", tv_type_name(self));
    }
}

NATIVE(f_upper) { return case_map(r, str_of(r, self).u.s, CASE_UPPER); }
NATIVE(f_lower) { return case_map(r, str_of(r, self).u.s, CASE_LOWER); }
NATIVE(f_title) { return case_map(r, str_of(r, self).u.s, CASE_TITLE_FILTER); }
NATIVE(f_capitalize) { return case_map(r, str_of(r, self).u.s, CASE_CAPITALIZE); }

NATIVE(f_replace)
{
    tv old, new_, count = tv_none();
    if (!ARG(0, "old", &old) || !ARG(1, "new", &new_))
        tpl_error(r, at, "replace: expected two arguments");
    ARG(2, "count", &count);
    tpl_check_defined(r, at, self);
    return replace(r, at, str_of(r, self).u.s, str_of(r, old).u.s, str_of(r, new_).u.s,
                   count.type == TV_NONE ? -1 : want_int(r, at, count, "replace"));
}

NATIVE(f_join)
{
    tv sep = tv_cstr(tpl_render_ctx(r), ""), attribute = tv_none();
    ARG(0, "d", &sep);
    ARG(1, "attribute", &attribute);
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = items_of(r, at, self);
    tv_buf b = {0};
    tv sep_s = str_of(r, sep);
    for (size_t i = 0; i < items->n; i++) {
        if (i)
            buf_put(c, &b, sep_s.u.s->s, sep_s.u.s->len);
        tv item = items->items[i];
        if (attribute.type != TV_NONE)
            item = attr_path(r, at, item, attribute);
        tv_write_str(c, &b, item);
    }
    return buf_to_str(c, &b);
}

NATIVE(f_default)
{
    tv def = tv_cstr(tpl_render_ctx(r), ""), boolean = tv_bool(false);
    ARG(0, "default_value", &def);
    ARG(1, "boolean", &boolean);
    if (self.type == TV_UNDEF || (tv_truthy(boolean) && !tv_truthy(self)))
        return def;
    return self;
}

NATIVE(f_first)
{
    tv_list *items = items_of(r, at, self);
    return items->n ? items->items[0] : tv_undef();
}

NATIVE(f_last)
{
    tv_list *items = items_of(r, at, self);
    return items->n ? items->items[items->n - 1] : tv_undef();
}

NATIVE(f_list)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = items_of(r, at, self);
    tv out = tv_list_new(c, items->n);
    for (size_t i = 0; i < items->n; i++)
        tv_list_push(c, out.u.l, items->items[i]);
    return out;
}

NATIVE(f_items)
{
    if (self.type == TV_UNDEF)
        return tv_list_new(tpl_render_ctx(r), 0);
    if (self.type != TV_DICT && self.type != TV_NS)
        tpl_error(r, at, "items: expected a mapping, got %s", tv_type_name(self));
    return dict_pairs(r, self.u.d, 0);
}

/* Lower-cases ASCII for case-insensitive sorting, as jinja2's ignore_case. */
static tv fold(tpl_render *r, tv v)
{
    return v.type == TV_STR ? case_map(r, v.u.s, CASE_LOWER) : v;
}

typedef struct sort_item {
    tv key, value;
    size_t pos;
} sort_item;

static int py_cmp(tpl_render *r, const node *at, tv a, tv b)
{
    if ((a.type == TV_INT || a.type == TV_FLOAT || a.type == TV_BOOL) &&
        (b.type == TV_INT || b.type == TV_FLOAT || b.type == TV_BOOL)) {
        if (a.type != TV_FLOAT && b.type != TV_FLOAT) {
            int64_t x = a.type == TV_INT ? a.u.i : a.u.b, y = b.type == TV_INT ? b.u.i : b.u.b;
            return (x > y) - (x < y);
        }
        double x = a.type == TV_FLOAT ? a.u.f : a.type == TV_INT ? (double)a.u.i : a.u.b;
        double y = b.type == TV_FLOAT ? b.u.f : b.type == TV_INT ? (double)b.u.i : b.u.b;
        return (x > y) - (x < y);
    }
    if (a.type == TV_STR && b.type == TV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        return c ? c : (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
    }
    if (a.type == TV_LIST && b.type == TV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            int c = py_cmp(r, at, a.u.l->items[i], b.u.l->items[i]);
            if (c)
                return c;
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    tpl_error(r, at, "'<' not supported between instances of '%s' and '%s'", tv_type_name(a), tv_type_name(b));
}

/* Python's sorted(): stable, and reverse keeps equal items in their order.
 * A merge sort of our own, since a comparison may fail (and jump out), which
 * qsort does not allow for. */
static void sort_items(tpl_render *r, const node *at, sort_item *items, size_t n, bool reverse)
{
    uint64_t weight = 0;
    for (size_t i = 0; i < n; i++)
        weight += tv_weight(items[i].key);
    uint64_t passes = 1;
    for (size_t k = 1; k < n; k *= 2)
        passes++;
    tpl_step(r, at, weight * passes / 16 + n);
    sort_item *tmp = tpl_alloc(tpl_render_ctx(r), (n ? n : 1) * sizeof *tmp);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int c = py_cmp(r, at, items[j].key, items[i].key);
                /* take from the right only when strictly before the left */
                bool right = reverse ? c > 0 : c < 0;
                tmp[k++] = right ? items[j++] : items[i++];
            }
            while (i < mid)
                tmp[k++] = items[i++];
            while (j < hi)
                tmp[k++] = items[j++];
        }
        memcpy(items, tmp, n * sizeof *items);
    }
}

NATIVE(f_dictsort)
{
    tv cs = tv_bool(false), by = tv_none(), rev = tv_bool(false);
    ARG(0, "case_sensitive", &cs);
    ARG(1, "by", &by);
    ARG(2, "reverse", &rev);
    if (self.type != TV_DICT)
        tpl_error(r, at, "dictsort: expected a mapping, got %s", tv_type_name(self));
    bool by_value = by.type == TV_STR && !strcmp(by.u.s->s, "value");
    tpl_ctx *c = tpl_render_ctx(r);
    size_t n = self.u.d->n;
    sort_item *items = tpl_alloc(c, (n ? n : 1) * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        tv key = by_value ? self.u.d->vals[i] : self.u.d->keys[i];
        items[i] = (sort_item){tv_truthy(cs) ? key : fold(r, key), tv_undef(), i};
    }
    tpl_step(r, at, n);
    sort_items(r, at, items, n, tv_truthy(rev));
    tv out = tv_list_new(c, n);
    for (size_t i = 0; i < n; i++) {
        tv pair = tv_list_new(c, 2);
        pair.u.l->tuple = true;
        tv_list_push(c, pair.u.l, self.u.d->keys[items[i].pos]);
        tv_list_push(c, pair.u.l, self.u.d->vals[items[i].pos]);
        tv_list_push(c, out.u.l, pair);
    }
    return out;
}

NATIVE(f_sort)
{
    tv rev = tv_bool(false), cs = tv_bool(false), attribute = tv_none();
    ARG(0, "reverse", &rev);
    ARG(1, "case_sensitive", &cs);
    ARG(2, "attribute", &attribute);
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *src = items_of(r, at, self);
    sort_item *items = tpl_alloc(c, (src->n ? src->n : 1) * sizeof *items);
    for (size_t i = 0; i < src->n; i++) {
        tv key = src->items[i];
        if (attribute.type != TV_NONE)
            key = attr_path(r, at, key, attribute);
        items[i] = (sort_item){tv_truthy(cs) ? key : fold(r, key), src->items[i], i};
    }
    tpl_step(r, at, src->n);
    sort_items(r, at, items, src->n, tv_truthy(rev));
    tv out = tv_list_new(c, src->n);
    for (size_t i = 0; i < src->n; i++)
        tv_list_push(c, out.u.l, items[i].value);
    return out;
}

NATIVE(f_reverse)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = items_of(r, at, self);
    if (self.type == TV_STR) {
        tv_buf b = {0};
        for (size_t i = items->n; i-- > 0;)
            buf_put(c, &b, items->items[i].u.s->s, items->items[i].u.s->len);
        return buf_to_str(c, &b);
    }
    tv out = tv_list_new(c, items->n);
    for (size_t i = items->n; i-- > 0;)
        tv_list_push(c, out.u.l, items->items[i]);
    return out;
}

NATIVE(f_unique)
{
    tv cs = tv_bool(false), attribute = tv_none();
    ARG(0, "case_sensitive", &cs);
    ARG(1, "attribute", &attribute);
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = items_of(r, at, self);
    tv out = tv_list_new(c, 0), seen = tv_list_new(c, 0);
    for (size_t i = 0; i < items->n; i++) {
        tv key = items->items[i];
        if (attribute.type != TV_NONE)
            key = attr_path(r, at, key, attribute);
        if (!tv_truthy(cs))
            key = fold(r, key);
        bool dup = false;
        tpl_step(r, at, seen.u.l->n / 16);
        for (size_t k = 0; k < seen.u.l->n && !dup; k++)
            dup = tv_equal(seen.u.l->items[k], key);
        if (!dup) {
            tv_list_push(c, seen.u.l, key);
            tv_list_push(c, out.u.l, items->items[i]);
        }
    }
    return out;
}

NATIVE(f_map)
{
    tpl_ctx *c = tpl_render_ctx(r);
    /* jinja2 walks the value only when it is truthy */
    tv_list *items = tv_truthy(self) ? items_of(r, at, self) : tv_list_new(c, 0).u.l;
    tv out = tv_list_new(c, items->n);
    tv attribute, def = tv_undef();
    bool has_default = ARG((size_t)-1, "default", &def);
    if (nargs == 0 && ARG((size_t)-1, "attribute", &attribute)) {
        for (size_t i = 0; i < items->n; i++) {
            tv v = attr_path(r, at, items->items[i], attribute);
            tv_list_push(c, out.u.l, v.type == TV_UNDEF && has_default ? def : v);
        }
        return out;
    }
    if (nargs == 0)
        tpl_error(r, at, "map: expected a filter name or attribute=");
    const tv_str *name = want_str(r, at, args[0], "map");
    for (size_t i = 0; i < items->n; i++)
        tv_list_push(c, out.u.l,
                     tpl_apply_filter(r, at, name->s, items->items[i], args + 1, nargs - 1, kwnames, kwargs, nkw));
    return out;
}

/* select / reject / selectattr / rejectattr */
static tv select_items(tpl_render *r, const node *at, tv self, const tv *args, size_t nargs, bool by_attr, bool keep)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv_list *items = tv_truthy(self) ? items_of(r, at, self) : tv_list_new(c, 0).u.l;
    size_t skip = by_attr ? 1 : 0;
    if (by_attr && nargs < 1)
        tpl_error(r, at, "selectattr: missing attribute name");
    tv out = tv_list_new(c, 0);
    for (size_t i = 0; i < items->n; i++) {
        tv v = items->items[i];
        if (by_attr)
            v = attr_path(r, at, v, args[0]);
        bool ok = nargs > skip ? tpl_apply_test(r, at, want_str(r, at, args[skip], "select")->s, v, args + skip + 1,
                                                nargs - skip - 1)
                               : tv_truthy(v);
        if (ok == keep)
            tv_list_push(c, out.u.l, items->items[i]);
    }
    return out;
}

NATIVE(f_select) { return select_items(r, at, self, args, nargs, false, true); }
NATIVE(f_reject) { return select_items(r, at, self, args, nargs, false, false); }
NATIVE(f_selectattr) { return select_items(r, at, self, args, nargs, true, true); }
NATIVE(f_rejectattr) { return select_items(r, at, self, args, nargs, true, false); }

NATIVE(f_tojson)
{
    tv ensure_ascii = tv_bool(false), indent = tv_none(), separators = tv_none(), sort_keys = tv_bool(false);
    ARG(0, "ensure_ascii", &ensure_ascii);
    ARG(1, "indent", &indent);
    ARG(2, "separators", &separators);
    ARG(3, "sort_keys", &sort_keys);
    tv_json_opts o = {.indent = -1, .ensure_ascii = tv_truthy(ensure_ascii), .sort_keys = tv_truthy(sort_keys)};
    if (indent.type != TV_NONE) {
        int64_t k = want_int(r, at, indent, "tojson indent");
        o.indent = k < 0 ? 0 : k > 64 ? 64 : (int)k;
    }
    o.item_sep = o.indent >= 0 ? "," : ", ";
    o.key_sep = ": ";
    if (separators.type == TV_LIST && separators.u.l->n == 2) {
        o.item_sep = want_str(r, at, separators.u.l->items[0], "tojson separators")->s;
        o.key_sep = want_str(r, at, separators.u.l->items[1], "tojson separators")->s;
    } else if (separators.type != TV_NONE) {
        tpl_error(r, at, "tojson: separators must be a pair of strings");
    }
    tpl_check_defined(r, at, self);
    tpl_ctx *c = tpl_render_ctx(r);
    jmp_buf *outer = c->jump;
    tv_buf b = {0};
    /* Errors inside the writer carry no position: add this filter's. */
    jmp_buf here;
    c->jump = &here;
    if (setjmp(here)) {
        c->jump = outer;
        char msg[sizeof c->message];
        memcpy(msg, c->message, sizeof msg);
        tpl_error(r, at, "%s", msg);
    }
    tv_write_json(c, &b, self, &o, 0);
    c->jump = outer;
    return buf_to_str(c, &b);
}

NATIVE(f_escape)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv s = str_of(r, self);
    tv_buf b = {0};
    for (size_t i = 0; i < s.u.s->len; i++) {
        char ch = s.u.s->s[i];
        const char *e = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : ch == '"' ? "&#34;"
                        : ch == '\'' ? "&#39;" : NULL;
        if (e)
            buf_puts(c, &b, e);
        else
            buf_put(c, &b, &ch, 1);
    }
    return buf_to_str(c, &b);
}

NATIVE(f_int)
{
    tv def = tv_int(0);
    ARG(0, "default", &def);
    if (self.type == TV_INT)
        return self;
    if (self.type == TV_BOOL)
        return tv_int(self.u.b);
    if (self.type == TV_FLOAT) {
        if (!isfinite(self.u.f) || fabs(self.u.f) >= 9.2e18)
            return def;
        return tv_int((int64_t)self.u.f);
    }
    if (self.type == TV_STR) {
        const char *s = self.u.s->s;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end != s && strspn(end, " \t\n\r") == strlen(end) && strlen(s) == self.u.s->len)
            return tv_int(v);
        double f = strtod(s, &end);
        if (end != s && strspn(end, " \t\n\r") == strlen(end) && isfinite(f) && fabs(f) < 9.2e18)
            return tv_int((int64_t)f);
    }
    return def;
}

NATIVE(f_float)
{
    tv def = tv_float(0);
    ARG(0, "default", &def);
    if (self.type == TV_FLOAT)
        return self;
    if (self.type == TV_INT || self.type == TV_BOOL)
        return tv_float(self.type == TV_INT ? (double)self.u.i : self.u.b);
    if (self.type == TV_STR) {
        char *end;
        double f = strtod(self.u.s->s, &end);
        if (end != self.u.s->s && strspn(end, " \t\n\r") == strlen(end))
            return tv_float(f);
    }
    return def;
}

NATIVE(f_round)
{
    tv prec = tv_int(0), method = tv_none();
    ARG(0, "precision", &prec);
    ARG(1, "method", &method);
    if (self.type != TV_INT && self.type != TV_FLOAT && self.type != TV_BOOL)
        tpl_error(r, at, "round: expected a number, got %s", tv_type_name(self));
    double x = self.type == TV_FLOAT ? self.u.f : self.type == TV_INT ? (double)self.u.i : self.u.b;
    int64_t p = want_int(r, at, prec, "round");
    if (p < -20 || p > 20)
        tpl_error(r, at, "round: precision out of range");
    double scale = pow(10, (double)p);
    if (method.type == TV_STR && !strcmp(method.u.s->s, "floor"))
        return tv_float(floor(x * scale) / scale);
    if (method.type == TV_STR && !strcmp(method.u.s->s, "ceil"))
        return tv_float(ceil(x * scale) / scale);
    bool common = method.type != TV_STR || !strcmp(method.u.s->s, "common");
    if (common && self.type != TV_FLOAT) { /* round() of an int is an int */
        int64_t v = self.type == TV_INT ? self.u.i : self.u.b;
        if (p >= 0)
            return tv_int(v);
        double q = nearbyint((double)v / pow(10, (double)-p)) * pow(10, (double)-p);
        return fabs(q) < 9.2e18 ? tv_int((int64_t)q) : tv_float(q);
    }
    if (!isfinite(x) || p < 0)
        return tv_float(p < 0 ? nearbyint(x / pow(10, (double)-p)) * pow(10, (double)-p) : x);
    char tmp[400]; /* Python's round(): correctly rounded, ties to even */
    snprintf(tmp, sizeof tmp, "%.*f", (int)p, x);
    return tv_float(strtod(tmp, NULL));
}

NATIVE(f_abs)
{
    if (self.type == TV_INT)
        return self.u.i == INT64_MIN ? tv_float(9.223372036854775808e18) : tv_int(self.u.i < 0 ? -self.u.i : self.u.i);
    if (self.type == TV_BOOL)
        return tv_int(self.u.b);
    if (self.type == TV_FLOAT)
        return tv_float(fabs(self.u.f));
    tpl_error(r, at, "bad operand type for abs(): '%s'", tv_type_name(self));
}

NATIVE(f_indent)
{
    tv width = tv_int(4), first = tv_bool(false), blank = tv_bool(false);
    ARG(0, "width", &width);
    ARG(1, "first", &first);
    ARG(2, "blank", &blank);
    tpl_ctx *c = tpl_render_ctx(r);
    tv ind;
    if (width.type == TV_STR)
        ind = width;
    else {
        int64_t w = want_int(r, at, width, "indent");
        if (w < 0)
            w = 0;
        if (w > 1024)
            tpl_error(r, at, "indent: width too large");
        tv_buf sp = {0};
        for (int64_t i = 0; i < w; i++)
            buf_put(c, &sp, " ", 1);
        ind = buf_to_str(c, &sp);
    }
    if (self.type != TV_STR) /* jinja2 appends "\n" to it first */
        tpl_error(r, at, "indent: expected a string, got %s", tv_type_name(self));
    tv s = self;
    tv_buf b = {0};
    if (tv_truthy(first))
        buf_put(c, &b, ind.u.s->s, ind.u.s->len);
    /* Lines as str.splitlines() of s + "\n" gives them (\n only here). */
    size_t start = 0;
    bool first_line = true;
    const char *p = s.u.s->s;
    size_t n = s.u.s->len;
    while (start <= n) {
        const char *nl = memchr(p + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - p) : n;
        if (!nl && start == n && !first_line)
            break;
        if (!first_line) {
            buf_put(c, &b, "\n", 1);
            if (end > start || tv_truthy(blank))
                buf_put(c, &b, ind.u.s->s, ind.u.s->len);
        }
        buf_put(c, &b, p + start, end - start);
        first_line = false;
        if (!nl)
            break;
        start = end + 1;
    }
    return buf_to_str(c, &b);
}

NATIVE(f_attr)
{
    if (nargs < 1)
        tpl_error(r, at, "attr: missing name");
    return tpl_getattr(r, at, self, want_str(r, at, args[0], "attr")->s);
}

static const tpl_native_entry filters[] = {
    {"trim", f_trim},         {"string", f_string},   {"safe", f_safe},         {"length", f_length},
    {"count", f_length},      {"upper", f_upper},     {"lower", f_lower},       {"title", f_title},
    {"capitalize", f_capitalize}, {"replace", f_replace}, {"join", f_join},     {"default", f_default},
    {"d", f_default},         {"first", f_first},     {"last", f_last},         {"list", f_list},
    {"items", f_items},       {"dictsort", f_dictsort}, {"sort", f_sort},       {"reverse", f_reverse},
    {"unique", f_unique},     {"map", f_map},         {"select", f_select},     {"reject", f_reject},
    {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"tojson", f_tojson}, {"escape", f_escape},
    {"e", f_escape},          {"int", f_int},         {"float", f_float},       {"round", f_round},
    {"abs", f_abs},           {"indent", f_indent},   {"attr", f_attr},         {"format", f_format},
    {NULL, NULL},
};

tv tpl_apply_filter(tpl_render *r, const node *at, const char *name, tv v, const tv *args, size_t nargs,
                    const char **kwnames, const tv *kwargs, size_t nkw)
{
    const tpl_native_entry *e = find_native(filters, name);
    if (!e)
        tpl_error(r, at, "no filter named '%s'", name);
    uint64_t cost = 1 + tv_cost(v);
    for (size_t i = 0; i < nargs; i++)
        cost += tv_cost(args[i]);
    for (size_t i = 0; i < nkw; i++)
        cost += tv_cost(kwargs[i]);
    tpl_step(r, at, cost);
    return e->fn(r, at, v, args, nargs, kwnames, kwargs, nkw);
}

/* ---- tests --------------------------------------------------------------- */

bool tpl_apply_test(tpl_render *r, const node *at, const char *name, tv v, const tv *args, size_t nargs)
{
    tv arg = nargs ? args[0] : tv_undef();
    tpl_step(r, at, tv_cost(v) + tv_cost(arg));
    if (!strcmp(name, "defined"))
        return v.type != TV_UNDEF;
    if (!strcmp(name, "undefined"))
        return v.type == TV_UNDEF;
    if (!strcmp(name, "none"))
        return v.type == TV_NONE;
    if (!strcmp(name, "boolean"))
        return v.type == TV_BOOL;
    if (!strcmp(name, "true"))
        return v.type == TV_BOOL && v.u.b;
    if (!strcmp(name, "false"))
        return v.type == TV_BOOL && !v.u.b;
    if (!strcmp(name, "integer"))
        return v.type == TV_INT;
    if (!strcmp(name, "float"))
        return v.type == TV_FLOAT;
    if (!strcmp(name, "number"))
        return v.type == TV_INT || v.type == TV_FLOAT || v.type == TV_BOOL;
    if (!strcmp(name, "string"))
        return v.type == TV_STR;
    if (!strcmp(name, "mapping"))
        return v.type == TV_DICT;
    /* jinja2's Undefined iterates (as empty) and has a length. */
    if (!strcmp(name, "iterable"))
        return v.type == TV_STR || v.type == TV_LIST || v.type == TV_DICT || v.type == TV_UNDEF;
    if (!strcmp(name, "sequence"))
        return v.type == TV_STR || v.type == TV_LIST || v.type == TV_DICT || v.type == TV_UNDEF;
    if (!strcmp(name, "callable"))
        return v.type == TV_FUNC;
    if (!strcmp(name, "sameas"))
        return v.type == arg.type && (v.type == TV_NONE || v.type == TV_UNDEF ||
                                      (v.type == TV_BOOL && v.u.b == arg.u.b) || (v.type > TV_BOOL && tv_equal(v, arg) && memcmp(&v.u, &arg.u, sizeof v.u) == 0));
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "=="))
        return tv_equal(v, arg);
    if (!strcmp(name, "ne") || !strcmp(name, "!="))
        return !tv_equal(v, arg);
    if (!strcmp(name, "in")) {
        if (arg.type == TV_STR) {
            if (v.type != TV_STR)
                tpl_error(r, at, "'in <string>' requires string as left operand");
            size_t hit;
            return find_bytes(r, at, arg.u.s, 0, v.u.s, &hit);
        }
        if (arg.type == TV_DICT)
            return tv_dict_get(arg.u.d, v) != NULL;
        tv_list *items = items_of(r, at, arg);
        for (size_t i = 0; i < items->n; i++)
            if (tv_equal(items->items[i], v))
                return true;
        return false;
    }
    if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "le") || !strcmp(name, "<=") ||
        !strcmp(name, "gt") || !strcmp(name, ">") || !strcmp(name, "ge") || !strcmp(name, ">=")) {
        int c = py_cmp(r, at, v, arg);
        if (name[0] == 'l' || name[0] == '<')
            return name[1] == 'e' || name[1] == '=' ? c <= 0 : c < 0;
        return name[1] == 'e' || name[1] == '=' ? c >= 0 : c > 0;
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        /* value % 2 == 1, value % 2 == 0, value % num == 0, with Python's %. */
        tv divisor = name[0] == 'd' ? arg : tv_int(2);
        bool ints = (v.type == TV_INT || v.type == TV_BOOL) && (divisor.type == TV_INT || divisor.type == TV_BOOL);
        if (!ints && !((v.type == TV_INT || v.type == TV_BOOL || v.type == TV_FLOAT) &&
                       (divisor.type == TV_INT || divisor.type == TV_BOOL || divisor.type == TV_FLOAT)))
            tpl_error(r, at, "%s: expected numbers, got %s", name, tv_type_name(v));
        if (ints) {
            int64_t x = v.type == TV_INT ? v.u.i : v.u.b, d = divisor.type == TV_INT ? divisor.u.i : divisor.u.b;
            if (d == 0)
                tpl_error(r, at, "integer division or modulo by zero");
            int64_t m = d == -1 ? 0 : x % d;
            if (m != 0 && ((m < 0) != (d < 0)))
                m += d;
            return name[0] == 'o' ? m == 1 : m == 0;
        }
        double x = v.type == TV_FLOAT ? v.u.f : v.type == TV_INT ? (double)v.u.i : v.u.b;
        double d = divisor.type == TV_FLOAT ? divisor.u.f : divisor.type == TV_INT ? (double)divisor.u.i : divisor.u.b;
        if (d == 0)
            tpl_error(r, at, "float modulo");
        double m = fmod(x, d);
        if (m != 0 && ((m < 0) != (d < 0)))
            m += d;
        return name[0] == 'o' ? m == 1 : m == 0;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        tv s = str_of(r, v);
        return tv_equal(case_map(r, s.u.s, name[0] == 'l' ? CASE_LOWER : CASE_UPPER), s);
    }
    if (!strcmp(name, "escaped"))
        return false;
    tpl_error(r, at, "no test named '%s'", name);
}

/* ---- globals ------------------------------------------------------------- */

enum { MAX_RANGE = 100000 }; /* jinja2's sandbox refuses longer ranges */

NATIVE(g_range)
{
    if (nkw)
        tpl_error(r, at, "range() takes no keyword arguments");
    if (nargs < 1 || nargs > 3)
        tpl_error(r, at, "range expected 1 to 3 arguments, got %zu", nargs);
    int64_t start = 0, stop, step = 1;
    if (nargs == 1) {
        stop = want_int(r, at, args[0], "range");
    } else {
        start = want_int(r, at, args[0], "range");
        stop = want_int(r, at, args[1], "range");
        if (nargs == 3)
            step = want_int(r, at, args[2], "range");
    }
    if (step == 0)
        tpl_error(r, at, "range() arg 3 must not be zero");
    double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                            : ceil(((double)start - (double)stop) / (double)-step);
    if (count > MAX_RANGE)
        tpl_error(r, at, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE);
    tpl_ctx *c = tpl_render_ctx(r);
    tv out = tv_list_new(c, count > 0 ? (size_t)count : 0);
    for (int64_t i = 0; i < (int64_t)count; i++)
        tv_list_push(c, out.u.l, tv_int(start + i * step));
    return out;
}

static tv make_dict(tpl_render *r, const node *at, const tv *args, size_t nargs, const char **kwnames,
                    const tv *kwargs, size_t nkw, tv_type type)
{
    tpl_ctx *c = tpl_render_ctx(r);
    tv d = type == TV_NS ? tv_mutable_dict_new(c) : tv_dict_new(c);
    d.type = (uint8_t)type;
    if (nargs > 1)
        tpl_error(r, at, "expected at most 1 positional argument");
    if (nargs == 1) {
        if (args[0].type != TV_DICT && args[0].type != TV_NS)
            tpl_error(r, at, "expected a mapping, got %s", tv_type_name(args[0]));
        for (size_t i = 0; i < args[0].u.d->n; i++)
            tv_dict_set(c, d.u.d, args[0].u.d->keys[i], args[0].u.d->vals[i]);
    }
    for (size_t i = 0; i < nkw; i++)
        tv_dict_set(c, d.u.d, tv_cstr(c, kwnames[i]), kwargs[i]);
    return d;
}

NATIVE(g_namespace) { return make_dict(r, at, args, nargs, kwnames, kwargs, nkw, TV_NS); }
NATIVE(g_dict) { return make_dict(r, at, args, nargs, kwnames, kwargs, nkw, TV_DICT); }

NATIVE(g_raise_exception)
{
    tv msg = nargs ? str_of(r, args[0]) : tv_cstr(tpl_render_ctx(r), "");
    tpl_error(r, at, "raise_exception: %s", msg.u.s->s);
}

NATIVE(g_strftime_now)
{
    if (nargs != 1 || args[0].type != TV_STR)
        tpl_error(r, at, "strftime_now: expected one format string");
    const tv_str *fmt = args[0].u.s;
    /* Only conversions every libc knows, so the format cannot reach
     * implementation-defined behaviour. */
    for (size_t i = 0; i < fmt->len; i++) {
        if (fmt->s[i] == '\0')
            tpl_error(r, at, "strftime_now: NUL in format");
        if (fmt->s[i] == '%') {
            char k = i + 1 < fmt->len ? fmt->s[++i] : '\0';
            if (!k || !strchr("aAbBcdHIjmMpSUwWxXyYzZ%eFTRDnthCgGuV", k))
                tpl_error(r, at, "strftime_now: unsupported conversion in format");
        }
    }
    time_t now = (time_t)tpl_render_now(r);
    struct tm tm;
    if (!localtime_r(&now, &tm))
        tpl_error(r, at, "strftime_now: bad time");
    char out[512];
    size_t n = fmt->len > 100 ? 0 : strftime(out, sizeof out, fmt->s, &tm);
    if (n == 0 && fmt->len > 0)
        tpl_error(r, at, "strftime_now: format too long");
    return tv_str_n(tpl_render_ctx(r), out, n);
}

void tpl_add_globals(tpl_render *r, tv_dict *globals)
{
    static const tpl_native_entry entries[] = {
        {"range", g_range},
        {"namespace", g_namespace},
        {"dict", g_dict},
        {"raise_exception", g_raise_exception},
        {"strftime_now", g_strftime_now},
    };
    tpl_ctx *c = tpl_render_ctx(r);
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        tv_dict_set(c, globals, tv_cstr(c, entries[i].name), bind(r, entries[i].name, entries[i].fn, tv_none()));
}

/* Chat-template evaluation: statements, expressions with Python's semantics,
 * scopes as jinja2 has them (a for body and a macro body get their own
 * scope, an if does not; macros see the scope they were defined in), and the
 * budgets that stop a hostile template. */
#include "text/template_internal.h"

#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tpl_frame {
    tv_dict *vars;
    struct tpl_frame *parent;
} tpl_frame;

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };
enum { EVAL_MAX_DEPTH = 600 };

struct tpl_render {
    tpl_ctx c;
    tv_buf out;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth;
    int ctl;
    int64_t now;
    tpl_frame *globals, *top;
    tpl_frame *frame; /* the scope statements run in now */
    tv key_loop, key_caller;
    void *pending_free; /* a malloc'd block to free if the render fails now */
};

struct chat_template {
    tpl_arena arena;
    node_list body;
    uint32_t marks_in_source; /* guard marks its source writes (tpl_marks_in) */
};

tpl_ctx *tpl_render_ctx(tpl_render *r) { return &r->c; }
int64_t tpl_render_now(tpl_render *r) { return r->now; }

_Noreturn void tpl_error(tpl_render *r, const node *at, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tpl_fail(&r->c, at ? at->line : 0, at ? at->col : 0, "%s", msg);
}

void tpl_step(tpl_render *r, const node *at, uint64_t n)
{
    r->steps += n;
    if (r->steps > r->max_steps)
        tpl_error(r, at, "template took more than %llu steps", (unsigned long long)r->max_steps);
}

static void enter(tpl_render *r, const node *at)
{
    if (++r->depth > EVAL_MAX_DEPTH)
        tpl_error(r, at, "template recursion deeper than %d", EVAL_MAX_DEPTH);
}

static void emit(tpl_render *r, const node *at, const char *s, size_t n)
{
    if (n > r->max_output - r->out.n)
        tpl_error(r, at, "template output longer than %zu bytes", r->max_output);
    buf_put(&r->c, &r->out, s, n);
}

void tpl_check_defined(tpl_render *r, const node *at, tv v)
{
    if (v.type == TV_UNDEF)
        tpl_error(r, at, "%s", v.u.s ? v.u.s->s : "value is undefined");
}

static tv undef_hint(tpl_render *r, const char *fmt, const char *a, const char *b)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, a, b);
    return (tv){.type = TV_UNDEF, .u.s = tv_cstr(&r->c, msg).u.s};
}

/* ---- scopes -------------------------------------------------------------- */

static tpl_frame *frame_new(tpl_render *r, tpl_frame *parent)
{
    tpl_frame *f = tpl_alloc(&r->c, sizeof *f);
    f->vars = tv_mutable_dict_new(&r->c).u.d;
    f->parent = parent;
    return f;
}

/* name: a tree name (see name_key). */
static void frame_set(tpl_render *r, tpl_frame *f, const char *name, tv v)
{
    tv_dict_set(&r->c, f->vars, name_key(name), v);
}

static tv lookup(tpl_render *r, const char *name)
{
    tv key = name_key(name);
    for (tpl_frame *f = r->frame; f; f = f->parent) {
        tv *v = tv_dict_get(f->vars, key);
        if (v)
            return *v;
    }
    return undef_hint(r, "'%s' is undefined%s", name, "");
}

/* ---- attribute and item access -------------------------------------------- */

static tv loop_attr(tpl_render *r, const tv_loop *l, const char *name)
{
    size_t i = l->index0, n = l->length;
    if (!strcmp(name, "index"))
        return tv_int((int64_t)i + 1);
    if (!strcmp(name, "index0"))
        return tv_int((int64_t)i);
    if (!strcmp(name, "revindex"))
        return tv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0"))
        return tv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first"))
        return tv_bool(i == 0);
    if (!strcmp(name, "last"))
        return tv_bool(i + 1 == n);
    if (!strcmp(name, "length"))
        return tv_int((int64_t)n);
    if (!strcmp(name, "depth"))
        return tv_int(1);
    if (!strcmp(name, "depth0"))
        return tv_int(0);
    if (!strcmp(name, "previtem"))
        return i > 0 ? l->items->items[i - 1] : undef_hint(r, "there is no previous item%s%s", "", "");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? l->items->items[i + 1] : undef_hint(r, "there is no next item%s%s", "", "");
    return undef_hint(r, "'LoopContext' object has no attribute '%s'%s", name, "");
}

tv tpl_getattr(tpl_render *r, const node *at, tv obj, const char *name)
{
    tpl_check_defined(r, at, obj);
    tv m = tpl_get_method(r, obj, name);
    if (obj.type == TV_LOOP)
        return m.type != TV_UNDEF ? m : loop_attr(r, obj.u.loop, name);
    if (m.type != TV_UNDEF)
        return m;
    if (obj.type == TV_DICT || obj.type == TV_NS) {
        tv *v = tv_dict_get(obj.u.d, name_key(name));
        if (v)
            return *v;
    }
    return undef_hint(r, "'%s object' has no attribute '%s'", tv_type_name(obj), name);
}

static bool as_index(tv key, int64_t *out)
{
    if (key.type == TV_INT)
        *out = key.u.i;
    else if (key.type == TV_BOOL)
        *out = key.u.b;
    else
        return false;
    return true;
}

tv tpl_getitem(tpl_render *r, const node *at, tv obj, tv key)
{
    tpl_check_defined(r, at, obj);
    tpl_step(r, at, (obj.type == TV_STR ? tv_cost(obj) : 0) + tv_cost(key));
    int64_t i;
    switch (obj.type) {
    case TV_DICT:
    case TV_NS: {
        tv *v = tv_dict_get(obj.u.d, key);
        if (v)
            return *v;
        break;
    }
    case TV_LIST:
        if (as_index(key, &i)) {
            int64_t n = (int64_t)obj.u.l->n;
            if (i < 0)
                i += n;
            if (i >= 0 && i < n)
                return obj.u.l->items[i];
            return undef_hint(r, "%s object has no element %s", tv_type_name(obj), "at that index");
        }
        break;
    case TV_STR:
        if (as_index(key, &i)) {
            const tv_str *s = obj.u.s;
            int64_t n = (int64_t)utf8_count(s->s, s->len);
            if (i < 0)
                i += n;
            if (i >= 0 && i < n) {
                size_t a = utf8_offset(s->s, s->len, (size_t)i), b = utf8_offset(s->s, s->len, (size_t)i + 1);
                return tv_str_n(&r->c, s->s + a, b - a);
            }
            return undef_hint(r, "str object has no element %s%s", "at that index", "");
        }
        break;
    default:
        break;
    }
    if (key.type == TV_STR)
        return tpl_getattr(r, at, obj, key.u.s->s);
    return undef_hint(r, "'%s object' has no item of that key%s", tv_type_name(obj), "");
}

/* Python's slice.indices(). */
static void slice_indices(int64_t n, tv start, tv stop, int64_t step, int64_t *s, int64_t *e)
{
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? n - 1 : n;
    if (start.type == TV_NONE || start.type == TV_UNDEF) {
        *s = step < 0 ? hi : lo;
    } else {
        *s = start.u.i < 0 ? start.u.i + n : start.u.i;
        if (*s < lo)
            *s = lo;
        if (*s > hi)
            *s = hi;
    }
    if (stop.type == TV_NONE || stop.type == TV_UNDEF) {
        *e = step < 0 ? lo : hi;
    } else {
        *e = stop.u.i < 0 ? stop.u.i + n : stop.u.i;
        if (*e < lo)
            *e = lo;
        if (*e > hi)
            *e = hi;
    }
}

static tv slice_value(tpl_render *r, const node *at, tv obj, tv start, tv stop, tv step_v)
{
    tpl_check_defined(r, at, obj);
    /* jinja2 slices with Python's own subscript (not its forgiving getitem):
     * what Python refuses is an error. */
    if (obj.type != TV_LIST && obj.type != TV_STR)
        tpl_error(r, at, "'%s' object is not subscriptable", tv_type_name(obj));
    tpl_step(r, at, tv_cost(obj));
    tv *parts[3] = {&start, &stop, &step_v};
    for (int k = 0; k < 3; k++) {
        tv *p = parts[k];
        if (p->type == TV_BOOL)
            *p = tv_int(p->u.b);
        if (p->type != TV_INT && p->type != TV_NONE && p->type != TV_UNDEF)
            tpl_error(r, at, "slice indices must be integers or None");
    }
    int64_t step = step_v.type == TV_INT ? step_v.u.i : 1;
    if (step == 0)
        tpl_error(r, at, "slice step cannot be zero");
    if (step == INT64_MIN)
        step = -INT64_MAX;
    int64_t s, e;
    if (obj.type == TV_LIST) {
        slice_indices((int64_t)obj.u.l->n, start, stop, step, &s, &e);
        tv out = tv_list_new(&r->c, 0);
        out.u.l->tuple = obj.u.l->tuple;
        for (int64_t i = s; step > 0 ? i < e : i > e; i += step) {
            tv_list_push(&r->c, out.u.l, obj.u.l->items[i]);
            if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step))
                break;
        }
        return out;
    }
    if (obj.type == TV_STR) {
        const tv_str *str = obj.u.s;
        size_t count = utf8_count(str->s, str->len);
        slice_indices((int64_t)count, start, stop, step, &s, &e);
        tv_buf b = {0};
        if (count == str->len && step == 1) { /* ASCII, forwards: one copy */
            if (e > s)
                buf_put(&r->c, &b, str->s + s, (size_t)(e - s));
            return buf_to_str(&r->c, &b);
        }
        size_t *offs = tpl_alloc(&r->c, (count + 1) * sizeof *offs);
        for (size_t i = 0, o = 0; i <= count; i++) {
            offs[i] = o;
            if (i < count)
                o = utf8_offset(str->s + o, str->len - o, 1) + o;
        }
        for (int64_t i = s; step > 0 ? i < e : i > e; i += step) {
            buf_put(&r->c, &b, str->s + offs[i], offs[i + 1] - offs[i]);
            if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step))
                break;
        }
        return buf_to_str(&r->c, &b);
    }
    tpl_error(r, at, "'%s' object is not subscriptable", tv_type_name(obj));
}

/* ---- operators ----------------------------------------------------------- */

static bool is_num(tv v) { return v.type == TV_INT || v.type == TV_FLOAT || v.type == TV_BOOL; }
static double num_f(tv v) { return v.type == TV_FLOAT ? v.u.f : v.type == TV_INT ? (double)v.u.i : v.u.b; }
static int64_t num_i(tv v) { return v.type == TV_INT ? v.u.i : v.u.b; }

static const char *const binop_names[] = {"+", "-", "*", "/", "//", "%", "**", "~"};

_Noreturn static void bad_operands(tpl_render *r, const node *at, int op, tv a, tv b)
{
    tpl_error(r, at, "unsupported operand type(s) for %s: '%s' and '%s'", binop_names[op], tv_type_name(a),
              tv_type_name(b));
}

static tv repeat(tpl_render *r, const node *at, tv seq, int64_t times)
{
    if (times < 0)
        times = 0;
    /* Nothing repeated any number of times is nothing, without a loop of `times` steps. */
    if ((seq.type == TV_STR && seq.u.s->len == 0) || (seq.type != TV_STR && seq.u.l->n == 0))
        times = 0;
    if (seq.type == TV_STR) {
        tv_buf b = {0};
        if (seq.u.s->len && (uint64_t)times > r->max_output / seq.u.s->len)
            tpl_error(r, at, "string repetition too long");
        for (int64_t i = 0; i < times; i++)
            buf_put(&r->c, &b, seq.u.s->s, seq.u.s->len);
        return buf_to_str(&r->c, &b);
    }
    tv out = tv_list_new(&r->c, 0);
    out.u.l->tuple = seq.u.l->tuple;
    if (seq.u.l->n && (uint64_t)times > (1u << 24) / seq.u.l->n)
        tpl_error(r, at, "list repetition too long");
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq.u.l->n; k++)
            tv_list_push(&r->c, out.u.l, seq.u.l->items[k]);
    return out;
}

static tv binary_op(tpl_render *r, const node *at, int op, tv a, tv b)
{
    if (op == OP_CONCAT) {
        tv_buf buf = {0};
        tv_write_str(&r->c, &buf, a);
        tv_write_str(&r->c, &buf, b);
        return buf_to_str(&r->c, &buf);
    }
    tpl_check_defined(r, at, a);
    tpl_check_defined(r, at, b);
    if (is_num(a) && is_num(b)) {
        bool ints = a.type != TV_FLOAT && b.type != TV_FLOAT;
        int64_t x = ints ? num_i(a) : 0, y = ints ? num_i(b) : 0, z;
        double f = num_f(a), g = num_f(b);
        switch (op) {
        case OP_ADD:
            if (!ints)
                return tv_float(f + g);
            if (__builtin_add_overflow(x, y, &z))
                tpl_error(r, at, "integer overflow");
            return tv_int(z);
        case OP_SUB:
            if (!ints)
                return tv_float(f - g);
            if (__builtin_sub_overflow(x, y, &z))
                tpl_error(r, at, "integer overflow");
            return tv_int(z);
        case OP_MUL:
            if (!ints)
                return tv_float(f * g);
            if (__builtin_mul_overflow(x, y, &z))
                tpl_error(r, at, "integer overflow");
            return tv_int(z);
        case OP_DIV:
            if (g == 0)
                tpl_error(r, at, "division by zero");
            return tv_float(f / g);
        case OP_FLOORDIV:
        case OP_MOD:
            if (g == 0)
                tpl_error(r, at, "integer division or modulo by zero");
            if (ints) {
                if (x == INT64_MIN && y == -1)
                    tpl_error(r, at, "integer overflow");
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q -= 1;
                    m += y;
                }
                return op == OP_FLOORDIV ? tv_int(q) : tv_int(m);
            } else {
                double m = fmod(f, g);
                if (m != 0 && ((m < 0) != (g < 0)))
                    m += g;
                return op == OP_FLOORDIV ? tv_float(floor((f - m) / g + 0.5)) : tv_float(m);
            }
        case OP_POW:
            if (ints && y >= 0) {
                int64_t result = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(result, base, &result))
                        tpl_error(r, at, "integer overflow");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base))
                        tpl_error(r, at, "integer overflow");
                }
                return tv_int(result);
            }
            if (f == 0 && g < 0)
                tpl_error(r, at, "0.0 cannot be raised to a negative power");
            return tv_float(pow(f, g));
        }
    }
    if (op == OP_ADD && a.type == TV_STR && b.type == TV_STR) {
        tv_buf buf = {0};
        buf_put(&r->c, &buf, a.u.s->s, a.u.s->len);
        buf_put(&r->c, &buf, b.u.s->s, b.u.s->len);
        return buf_to_str(&r->c, &buf);
    }
    if (op == OP_ADD && a.type == TV_LIST && b.type == TV_LIST && a.u.l->tuple == b.u.l->tuple) {
        tv out = tv_list_new(&r->c, a.u.l->n + b.u.l->n);
        out.u.l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++)
            tv_list_push(&r->c, out.u.l, a.u.l->items[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            tv_list_push(&r->c, out.u.l, b.u.l->items[i]);
        return out;
    }
    if (op == OP_MOD && a.type == TV_STR)
        return tpl_percent_format(r, at, a, b);
    if (op == OP_MUL && (a.type == TV_STR || a.type == TV_LIST) && (b.type == TV_INT || b.type == TV_BOOL))
        return repeat(r, at, a, num_i(b));
    if (op == OP_MUL && (b.type == TV_STR || b.type == TV_LIST) && (a.type == TV_INT || a.type == TV_BOOL))
        return repeat(r, at, b, num_i(a));
    bad_operands(r, at, op, a, b);
}

/* <0, 0, >0 as Python orders a and b; an error where Python has none. */
static int order(tpl_render *r, const node *at, tv a, tv b)
{
    tpl_check_defined(r, at, a);
    tpl_check_defined(r, at, b);
    if (is_num(a) && is_num(b)) {
        if (a.type != TV_FLOAT && b.type != TV_FLOAT)
            return (num_i(a) > num_i(b)) - (num_i(a) < num_i(b));
        double f = num_f(a), g = num_f(b);
        return (f > g) - (f < g);
    }
    if (a.type == TV_STR && b.type == TV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        if (c)
            return c;
        return (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
    }
    if (a.type == TV_LIST && b.type == TV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (!tv_equal(a.u.l->items[i], b.u.l->items[i]))
                return order(r, at, a.u.l->items[i], b.u.l->items[i]);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    tpl_error(r, at, "'<' not supported between instances of '%s' and '%s'", tv_type_name(a), tv_type_name(b));
}

/* Python's `needle in haystack`. */
static bool contains(tpl_render *r, const node *at, tv haystack, tv needle)
{
    switch (haystack.type) {
    case TV_UNDEF:
        return false; /* jinja2's Undefined iterates as empty */
    case TV_STR:
        if (needle.type != TV_STR)
            tpl_error(r, at, "'in <string>' requires string as left operand, not %s", tv_type_name(needle));
        {
            size_t hit;
            bool found = tv_find(haystack.u.s->s, haystack.u.s->len, 0, needle.u.s->s, needle.u.s->len, &hit);
            tpl_step(r, at, (uint64_t)(found ? hit : haystack.u.s->len) * (needle.u.s->len / 64 + 1) / 1024);
            return found;
        }
    case TV_LIST:
        for (size_t i = 0; i < haystack.u.l->n; i++)
            if (tv_equal(haystack.u.l->items[i], needle))
                return true;
        return false;
    case TV_DICT:
        return tv_dict_get(haystack.u.d, needle) != NULL;
    default:
        tpl_error(r, at, "argument of type '%s' is not iterable", tv_type_name(haystack));
    }
}

static bool compare(tpl_render *r, const node *at, int op, tv a, tv b)
{
    tpl_step(r, at, tv_cost(a) + tv_cost(b));
    switch (op) {
    case CMP_EQ:
        return tv_equal(a, b);
    case CMP_NE:
        return !tv_equal(a, b);
    case CMP_LT:
        return order(r, at, a, b) < 0;
    case CMP_LE:
        return order(r, at, a, b) <= 0;
    case CMP_GT:
        return order(r, at, a, b) > 0;
    case CMP_GE:
        return order(r, at, a, b) >= 0;
    case CMP_IN:
        return contains(r, at, b, a);
    default:
        return !contains(r, at, b, a);
    }
}

/* ---- expressions --------------------------------------------------------- */

static tv eval(tpl_render *r, const node *n);

typedef struct call_args {
    tv *args, *kwargs;
    size_t nargs, nkw;
    const char **kwnames;
} call_args;

static call_args eval_args(tpl_render *r, const node *n)
{
    call_args a = {.nargs = n->args.n, .nkw = n->args2.n, .kwnames = n->kwnames};
    if (a.nargs) {
        a.args = tpl_alloc(&r->c, a.nargs * sizeof(tv));
        for (size_t i = 0; i < a.nargs; i++)
            a.args[i] = eval(r, n->args.items[i]);
    }
    if (a.nkw) {
        a.kwargs = tpl_alloc(&r->c, a.nkw * sizeof(tv));
        for (size_t i = 0; i < a.nkw; i++)
            a.kwargs[i] = eval(r, n->args2.items[i]);
    }
    return a;
}

static tv eval(tpl_render *r, const node *n)
{
    tpl_step(r, n, 1);
    enter(r, n);
    tv v;
    switch ((node_kind)n->kind) {
    case N_LITERAL:
        v = n->value;
        break;
    case N_NAME:
        v = lookup(r, n->name);
        break;
    case N_GETATTR:
        v = tpl_getattr(r, n, eval(r, n->a), n->name);
        break;
    case N_GETITEM: {
        tv obj = eval(r, n->a);
        v = tpl_getitem(r, n, obj, eval(r, n->b));
        break;
    }
    case N_SLICE: {
        tv obj = eval(r, n->a);
        tv s = n->b ? eval(r, n->b) : tv_none(), e = n->c ? eval(r, n->c) : tv_none();
        tv st = n->d ? eval(r, n->d) : tv_none();
        v = slice_value(r, n, obj, s, e, st);
        break;
    }
    case N_CALL: {
        tv fn = eval(r, n->a);
        call_args a = eval_args(r, n);
        v = tpl_call(r, n, fn, a.args, a.nargs, a.kwnames, a.kwargs, a.nkw);
        break;
    }
    case N_FILTER: {
        tv subject = eval(r, n->a);
        call_args a = eval_args(r, n);
        v = tpl_apply_filter(r, n, n->name, subject, a.args, a.nargs, a.kwnames, a.kwargs, a.nkw);
        break;
    }
    case N_TEST: {
        tv subject = eval(r, n->a);
        call_args a = eval_args(r, n);
        v = tv_bool(tpl_apply_test(r, n, n->name, subject, a.args, a.nargs) != n->negated);
        break;
    }
    case N_NEG:
    case N_POS: {
        tv a = eval(r, n->a);
        tpl_check_defined(r, n, a);
        if (a.type == TV_FLOAT)
            v = tv_float(n->kind == N_NEG ? -a.u.f : a.u.f);
        else if (a.type == TV_INT || a.type == TV_BOOL) {
            int64_t x = num_i(a);
            if (n->kind == N_NEG && x == INT64_MIN)
                tpl_error(r, n, "integer overflow");
            v = tv_int(n->kind == N_NEG ? -x : x);
        } else
            tpl_error(r, n, "bad operand type for unary %s: '%s'", n->kind == N_NEG ? "-" : "+", tv_type_name(a));
        break;
    }
    case N_NOT:
        v = tv_bool(!tv_truthy(eval(r, n->a)));
        break;
    case N_AND: {
        tv a = eval(r, n->a);
        v = tv_truthy(a) ? eval(r, n->b) : a;
        break;
    }
    case N_OR: {
        tv a = eval(r, n->a);
        v = tv_truthy(a) ? a : eval(r, n->b);
        break;
    }
    case N_BINARY: {
        tv a = eval(r, n->a);
        v = binary_op(r, n, n->op, a, eval(r, n->b));
        break;
    }
    case N_COMPARE: {
        tv left = eval(r, n->a);
        v = tv_bool(true);
        for (size_t i = 0; i < n->args.n; i++) {
            tv right = eval(r, n->args.items[i]);
            if (!compare(r, n, n->ops[i], left, right)) {
                v = tv_bool(false);
                break;
            }
            left = right;
        }
        break;
    }
    case N_COND:
        if (tv_truthy(eval(r, n->a)))
            v = eval(r, n->b);
        else
            v = n->c ? eval(r, n->c) : undef_hint(r, "the inline if-expression evaluated to false and no else section was defined.%s%s", "", "");
        break;
    case N_LIST:
    case N_TUPLE:
        v = tv_list_new(&r->c, n->args.n);
        v.u.l->tuple = n->kind == N_TUPLE;
        for (size_t i = 0; i < n->args.n; i++)
            tv_list_push(&r->c, v.u.l, eval(r, n->args.items[i]));
        break;
    case N_DICT:
        v = tv_dict_new(&r->c);
        for (size_t i = 0; i < n->args.n; i++) {
            tv key = eval(r, n->args.items[i]);
            if (key.type == TV_LIST || key.type == TV_DICT || key.type == TV_NS || key.type == TV_UNDEF)
                tpl_error(r, n, "unhashable type: '%s'", tv_type_name(key));
            tv_dict_set(&r->c, v.u.d, key, eval(r, n->args2.items[i]));
        }
        break;
    default:
        tpl_error(r, n, "not an expression");
    }
    r->depth--;
    return v;
}

/* ---- statements ---------------------------------------------------------- */

static void exec_body(tpl_render *r, node_list body);

/* Runs body and returns what it printed instead of printing it. */
static tv capture(tpl_render *r, node_list body, tpl_frame *frame)
{
    size_t mark = r->out.n;
    tpl_frame *saved = r->frame;
    r->frame = frame;
    exec_body(r, body);
    r->frame = saved;
    tv s = tv_str_n(&r->c, r->out.n > mark ? r->out.p + mark : "", r->out.n - mark);
    r->out.n = mark;
    return s;
}

/* The items a for loop walks: list items, dict keys, string characters. */
static tv_list *iterate(tpl_render *r, const node *at, tv v)
{
    switch (v.type) {
    case TV_UNDEF:
        return tv_list_new(&r->c, 0).u.l;
    case TV_LIST:
        return v.u.l;
    case TV_DICT: {
        tv l = tv_list_new(&r->c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            tv_list_push(&r->c, l.u.l, v.u.d->keys[i]);
        return l.u.l;
    }
    case TV_STR: {
        const tv_str *s = v.u.s;
        tv l = tv_list_new(&r->c, 0);
        for (size_t i = 0; i < s->len;) {
            size_t k = utf8_offset(s->s + i, s->len - i, 1);
            tv_list_push(&r->c, l.u.l, tv_str_n(&r->c, s->s + i, k));
            i += k;
        }
        return l.u.l;
    }
    default:
        tpl_error(r, at, "'%s' object is not iterable", tv_type_name(v));
    }
}

static void bind_targets(tpl_render *r, const node *n, tpl_frame *f, tv item)
{
    if (n->n_targets == 1) {
        frame_set(r, f, n->targets[0], item);
        return;
    }
    tv_list *parts = item.type == TV_LIST || item.type == TV_DICT || item.type == TV_STR ? iterate(r, n, item) : NULL;
    if (!parts)
        tpl_error(r, n, "cannot unpack non-iterable %s object", tv_type_name(item));
    if (parts->n != n->n_targets)
        tpl_error(r, n, "cannot unpack %zu values into %zu names", parts->n, n->n_targets);
    for (size_t i = 0; i < n->n_targets; i++)
        frame_set(r, f, n->targets[i], parts->items[i]);
}

static void exec_for(tpl_render *r, const node *n)
{
    tv_list *items = iterate(r, n, eval(r, n->a));
    tpl_frame *outer = r->frame;
    /* One scope for the loop body, emptied for each item: a loop allocates
     * nothing per iteration for its own bookkeeping. */
    tpl_frame *inner = frame_new(r, outer);
    if (n->b) { /* `for x in xs if cond`: the loop sees only the kept items */
        tv kept = tv_list_new(&r->c, 0);
        for (size_t i = 0; i < items->n; i++) {
            tpl_step(r, n, 1);
            tv_dict_clear(inner->vars);
            r->frame = inner;
            bind_targets(r, n, r->frame, items->items[i]);
            if (tv_truthy(eval(r, n->b)))
                tv_list_push(&r->c, kept.u.l, items->items[i]);
        }
        r->frame = outer;
        items = kept.u.l;
    }
    tv_loop *loop = tpl_alloc(&r->c, sizeof *loop);
    *loop = (tv_loop){.length = items->n, .items = items};
    for (size_t i = 0; i < items->n; i++) {
        tpl_step(r, n, 1);
        loop->index0 = i;
        tv_dict_clear(inner->vars);
        r->frame = inner;
        bind_targets(r, n, r->frame, items->items[i]);
        tv_dict_set(&r->c, inner->vars, r->key_loop, (tv){.type = TV_LOOP, .u.loop = loop});
        exec_body(r, n->body);
        r->frame = outer;
        if (r->ctl == CTL_BREAK) {
            r->ctl = CTL_NONE;
            break;
        }
        r->ctl = CTL_NONE;
    }
    if (items->n == 0)
        exec_body(r, n->else_body);
}

static tv apply_filter_chain(tpl_render *r, const node *f, tv subject)
{
    if (!f)
        return subject;
    subject = apply_filter_chain(r, f->a, subject);
    call_args a = eval_args(r, f);
    return tpl_apply_filter(r, f, f->name, subject, a.args, a.nargs, a.kwnames, a.kwargs, a.nkw);
}

static void exec_set(tpl_render *r, const node *n)
{
    tv value = eval(r, n->b);
    if (n->a) { /* ns.attr = value */
        tv ns = lookup(r, n->a->a->name);
        if (ns.type != TV_NS)
            tpl_error(r, n, "cannot assign attribute on non-namespace object");
        tv_dict_set(&r->c, ns.u.d, name_key(n->a->name), value);
        return;
    }
    bind_targets(r, n, r->frame, value);
}

static tv make_macro(tpl_render *r, const node *n)
{
    tv_func *fn = tpl_alloc(&r->c, sizeof *fn);
    *fn = (tv_func){.name = n->name, .macro = n, .closure = r->frame};
    return (tv){.type = TV_FUNC, .u.fn = fn};
}

static void exec_node(tpl_render *r, const node *n)
{
    tpl_step(r, n, 1);
    enter(r, n);
    switch ((node_kind)n->kind) {
    case N_TEXT:
        emit(r, n, n->value.u.s->s, n->value.u.s->len);
        break;
    case N_OUTPUT: {
        tv v = eval(r, n->a);
        if (v.type == TV_STR) {
            emit(r, n, v.u.s->s, v.u.s->len);
        } else if (v.type != TV_UNDEF) {
            tv s = tv_to_str(&r->c, v);
            emit(r, n, s.u.s->s, s.u.s->len);
        }
        break;
    }
    case N_IF:
        exec_body(r, tv_truthy(eval(r, n->a)) ? n->body : n->else_body);
        break;
    case N_FOR:
        exec_for(r, n);
        break;
    case N_SET:
        exec_set(r, n);
        break;
    case N_SETBLOCK: {
        tv s = capture(r, n->body, r->frame);
        frame_set(r, r->frame, n->targets[0], apply_filter_chain(r, n->b, s));
        break;
    }
    case N_MACRO:
        frame_set(r, r->frame, n->name, make_macro(r, n));
        break;
    case N_CALLBLOCK: {
        tv_func *caller = tpl_alloc(&r->c, sizeof *caller);
        *caller = (tv_func){.name = "caller", .macro = n, .caller_body = n, .closure = r->frame};
        tv fn = eval(r, n->a->a);
        call_args a = eval_args(r, n->a);
        /* The caller travels as a keyword argument the macro binds. */
        const char **names = tpl_alloc(&r->c, (a.nkw + 1) * sizeof *names);
        tv *kw = tpl_alloc(&r->c, (a.nkw + 1) * sizeof *kw);
        for (size_t i = 0; i < a.nkw; i++) {
            names[i] = a.kwnames[i];
            kw[i] = a.kwargs[i];
        }
        names[a.nkw] = r->key_caller.u.s->s;
        kw[a.nkw] = (tv){.type = TV_FUNC, .u.fn = caller};
        tv out = tpl_call(r, n, fn, a.args, a.nargs, names, kw, a.nkw + 1);
        tv s = tv_to_str(&r->c, out);
        emit(r, n, s.u.s->s, s.u.s->len);
        break;
    }
    case N_FILTERBLOCK: {
        tv s = capture(r, n->body, r->frame);
        s = tv_to_str(&r->c, apply_filter_chain(r, n->b, s));
        emit(r, n, s.u.s->s, s.u.s->len);
        break;
    }
    case N_BREAK:
        r->ctl = CTL_BREAK;
        break;
    case N_CONTINUE:
        r->ctl = CTL_CONTINUE;
        break;
    case N_WITH: {
        tpl_frame *outer = r->frame, *inner = frame_new(r, outer);
        for (size_t i = 0; i < n->n_targets; i++)
            frame_set(r, inner, n->targets[i], eval(r, n->args.items[i]));
        r->frame = inner;
        exec_body(r, n->body);
        r->frame = outer;
        break;
    }
    case N_BLOCK:
        exec_body(r, n->body);
        break;
    default:
        tpl_error(r, n, "not a statement");
    }
    r->depth--;
}

static void exec_body(tpl_render *r, node_list body)
{
    for (size_t i = 0; i < body.n && r->ctl == CTL_NONE; i++)
        exec_node(r, body.items[i]);
}

/* ---- calls --------------------------------------------------------------- */

static tv call_macro(tpl_render *r, const node *at, const tv_func *fn, const tv *args, size_t nargs,
                     const char **kwnames, const tv *kwargs, size_t nkw)
{
    const node *m = fn->macro;
    tpl_frame *f = frame_new(r, fn->closure);
    tpl_frame *saved = r->frame;
    r->frame = f;
    if (fn->caller_body) { /* caller(): the call block's own parameters */
        m = fn->caller_body;
    }
    if (nargs > m->n_targets)
        tpl_error(r, at, "macro '%s' takes not more than %zu argument(s)", fn->name, m->n_targets);
    bool *given = tpl_alloc(&r->c, (m->n_targets + 1) * sizeof *given);
    memset(given, 0, (m->n_targets + 1) * sizeof *given);
    for (size_t i = 0; i < nargs; i++) {
        frame_set(r, f, m->targets[i], args[i]);
        given[i] = true;
    }
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < m->n_targets && strcmp(m->targets[i], kwnames[k]) != 0)
            i++;
        if (i == m->n_targets) {
            if (!strcmp(kwnames[k], "caller")) {
                tv_dict_set(&r->c, f->vars, r->key_caller, kwargs[k]);
                continue;
            }
            tpl_error(r, at, "macro '%s' takes no keyword argument '%s'", fn->name, kwnames[k]);
        }
        if (given[i])
            tpl_error(r, at, "macro '%s' got multiple values for argument '%s'", fn->name, kwnames[k]);
        frame_set(r, f, m->targets[i], kwargs[k]);
        given[i] = true;
    }
    for (size_t i = 0; i < m->n_targets; i++) {
        if (given[i])
            continue;
        const node *def = i < m->args2.n ? m->args2.items[i] : NULL;
        frame_set(r, f, m->targets[i], def ? eval(r, def) : undef_hint(r, "parameter '%s' was not provided%s", m->targets[i], ""));
    }
    r->frame = saved;
    int saved_ctl = r->ctl;
    r->ctl = CTL_NONE;
    tv s = capture(r, m->body, f);
    r->ctl = saved_ctl;
    return s;
}

tv tpl_call(tpl_render *r, const node *at, tv fn, const tv *args, size_t nargs, const char **kwnames,
            const tv *kwargs, size_t nkw)
{
    if (fn.type == TV_UNDEF)
        tpl_error(r, at, "%s", fn.u.s ? fn.u.s->s : "called an undefined value");
    if (fn.type != TV_FUNC)
        tpl_error(r, at, "'%s' object is not callable", tv_type_name(fn));
    enter(r, at);
    if (!fn.u.fn->macro) {
        uint64_t cost = tv_cost(fn.u.fn->self);
        for (size_t i = 0; i < nargs; i++)
            cost += tv_cost(args[i]);
        for (size_t i = 0; i < nkw; i++)
            cost += tv_cost(kwargs[i]);
        tpl_step(r, at, cost);
    }
    tv v = fn.u.fn->macro ? call_macro(r, at, fn.u.fn, args, nargs, kwnames, kwargs, nkw)
                          : fn.u.fn->native(r, at, fn.u.fn->self, args, nargs, kwnames, kwargs, nkw);
    r->depth--;
    return v;
}

/* ---- entry points -------------------------------------------------------- */

hearth_status chat_template_parse(const char *src, size_t len, chat_template **out, hearth_error *err)
{
    *out = NULL;
    chat_template *t = calloc(1, sizeof *t);
    if (!t)
        return error_set(err, HEARTH_ERR_NOMEM, "chat template: out of memory");
    t->arena.limit = (size_t)64 << 20;
    jmp_buf jump;
    tpl_ctx c = {.arena = &t->arena, .jump = &jump};
    if (setjmp(jump)) {
        tpl_arena_free(&t->arena);
        free(t);
        return error_set(err, HEARTH_ERR_FORMAT, "chat template: %s", c.message);
    }
    t->body = tpl_parse(&c, src, len);
    t->marks_in_source = tpl_marks_in(src, len);
    *out = t;
    return HEARTH_OK;
}

void chat_template_free(chat_template *t)
{
    if (!t)
        return;
    tpl_arena_free(&t->arena);
    free(t);
}

hearth_status chat_template_render(const chat_template *t, const chat_template_inputs *in, char **out,
                                   size_t *out_len, hearth_error *err)
{
    return chat_template_render_guarded(t, in, NULL, out, out_len, NULL, NULL, err);
}

static uint32_t marks_in_inputs(const chat_template *t, const chat_template_inputs *in)
{
    uint32_t used = t->marks_in_source | tpl_marks_in(in->messages_json, in->messages_len);
    if (in->tools_json)
        used |= tpl_marks_in(in->tools_json, in->tools_len);
    if (in->extra_json)
        used |= tpl_marks_in(in->extra_json, in->extra_len);
    if (in->bos_token)
        used |= tpl_marks_in(in->bos_token, strlen(in->bos_token));
    if (in->eos_token)
        used |= tpl_marks_in(in->eos_token, strlen(in->eos_token));
    return used;
}

hearth_status chat_template_render_guarded(const chat_template *t, const chat_template_inputs *in,
                                           const chat_template_guard *guard, char **out, size_t *out_len,
                                           text_span **spans, size_t *n_spans, hearth_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (spans)
        *spans = NULL, *n_spans = 0;
    if (!in->messages_json)
        return error_set(err, HEARTH_ERR_ARG, "chat template: no messages given");
    if (guard && !spans)
        return error_set(err, HEARTH_ERR_ARG, "chat template: a guarded render needs somewhere to put its spans");
    tpl_arena arena = {.limit = in->max_memory ? in->max_memory : (size_t)256 << 20};
    jmp_buf jump;
    /* volatile: read after longjmp. */
    volatile hearth_status input_status = HEARTH_ERR_ARG;
    tpl_render *volatile r = NULL;
    tpl_ctx boot = {.arena = &arena, .jump = &jump};
    if (setjmp(jump)) {
        const char *msg = r ? r->c.message : boot.message;
        hearth_status st = input_status;
        error_set(err, st, "chat template: %s", msg);
        if (r)
            free(r->pending_free);
        tpl_arena_free(&arena);
        return st;
    }
    r = tpl_alloc(&boot, sizeof *r);
    *r = (tpl_render){.c = boot};
    r->max_steps = in->max_steps ? in->max_steps : 50000000u;
    r->max_output = in->max_output ? in->max_output : (size_t)16 << 20;
    r->now = in->now >= 0 ? in->now : (int64_t)time(NULL);
    tpl_ctx *c = &r->c;

    r->key_loop = tv_cstr(c, "loop");
    r->key_caller = tv_cstr(c, "caller");
    r->globals = frame_new(r, NULL);
    tpl_add_globals(r, r->globals->vars);
    tv messages = tv_parse_json(c, in->messages_json, in->messages_len, "messages");
    tv tools = in->tools_json ? tv_parse_json(c, in->tools_json, in->tools_len, "tools") : tv_none();
    if (messages.type == TV_DICT) { /* a request body */
        tv *inner = tv_dict_get_cstr(messages.u.d, "messages"), *body_tools = tv_dict_get_cstr(messages.u.d, "tools");
        if (!inner)
            tpl_fail(c, 0, 0, "messages: an object without a \"messages\" member");
        if (body_tools && !in->tools_json)
            tools = *body_tools;
        messages = *inner;
    }
    if (messages.type != TV_LIST)
        tpl_fail(c, 0, 0, "messages: expected a JSON array");
    tpl_marks marks;
    bool marked = false;
    if (guard) {
        if (!tpl_pick_marks(marks_in_inputs(t, in), &marks))
            tpl_fail(c, 0, 0, "messages: the inputs write 31 or more of the noncharacters U+FDD0..U+FDEF; "
                              "guarding users' control-token text needs two of them free");
        marked = tpl_guard_messages(c, messages, guard, &marks, &r->pending_free);
    }
    tv_dict_set(c, r->globals->vars, tv_cstr(c, "messages"), messages);
    tv_dict_set(c, r->globals->vars, tv_cstr(c, "tools"), tools);
    tv_dict_set(c, r->globals->vars, tv_cstr(c, "documents"), tv_none());
    tv_dict_set(c, r->globals->vars, tv_cstr(c, "add_generation_prompt"), tv_bool(in->add_generation_prompt));
    if (in->bos_token)
        tv_dict_set(c, r->globals->vars, tv_cstr(c, "bos_token"), tv_cstr(c, in->bos_token));
    if (in->eos_token)
        tv_dict_set(c, r->globals->vars, tv_cstr(c, "eos_token"), tv_cstr(c, in->eos_token));
    if (in->extra_json) {
        tv extra = tv_parse_json(c, in->extra_json, in->extra_len, "extra variables");
        if (extra.type != TV_DICT)
            tpl_fail(c, 0, 0, "extra variables: expected a JSON object");
        for (size_t i = 0; i < extra.u.d->n; i++)
            tv_dict_set(c, r->globals->vars, extra.u.d->keys[i], extra.u.d->vals[i]);
    }
    input_status = HEARTH_ERR_FORMAT;
    r->top = frame_new(r, r->globals);
    r->frame = r->top;
    exec_body(r, t->body);

    char *result = malloc(r->out.n + 1);
    if (!result) {
        tpl_arena_free(&arena);
        return error_set(err, HEARTH_ERR_NOMEM, "chat template: out of memory");
    }
    if (r->out.n)
        memcpy(result, r->out.p, r->out.n);
    result[r->out.n] = '\0';
    size_t len = r->out.n;
    tpl_arena_free(&arena);
    hearth_status st = marked ? tpl_strip_marks(&marks, result, &len, spans, n_spans, err) : HEARTH_OK;
    if (st != HEARTH_OK) {
        free(result);
        return st;
    }
    *out = result;
    *out_len = len;
    return HEARTH_OK;
}

/* Chat-template engine internals, shared by its five files:
 *   template_value.c    arena, values, Python-style str/repr/JSON, JSON parser
 *   template_parse.c    lexer and parser: template source to a tree of nodes
 *   template_eval.c     statements and expressions, scopes, macros, loops
 *   template_builtins.c filters, tests, string and dict methods, globals
 *   template_guard.c    marking users' control-token texts through a render
 *
 * Everything a parse or a render allocates comes from one arena with a byte
 * limit, and every error (bad syntax, a runtime error, a budget spent) jumps
 * back to the entry point with longjmp, which then frees the arena: nothing
 * in here has to unwind by hand. */
#ifndef HEARTH_TEXT_TEMPLATE_INTERNAL_H
#define HEARTH_TEXT_TEMPLATE_INTERNAL_H

#include "text/template.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena and error context ------------------------------------------- */

typedef struct tpl_chunk tpl_chunk;

typedef struct tpl_arena {
    tpl_chunk *head;
    size_t total; /* bytes obtained from malloc so far */
    size_t limit; /* allocation past this is an error, not a crash */
} tpl_arena;

typedef struct tpl_ctx {
    tpl_arena *arena;
    jmp_buf *jump;
    char message[400];
} tpl_ctx;

void *tpl_alloc(tpl_ctx *c, size_t n);
void tpl_arena_free(tpl_arena *a);
/* Formats the message ("line L, column C: ...", when line > 0) and jumps. */
_Noreturn void tpl_fail(tpl_ctx *c, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- values -------------------------------------------------------------- */

typedef enum tv_type {
    TV_UNDEF, /* jinja2's Undefined: prints empty, is falsy, errors when used */
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,
    TV_LIST, /* also tuples (flag), which print with parentheses */
    TV_DICT, /* insertion-ordered, like Python's dict */
    TV_NS,   /* namespace(): a dict whose attributes `set` may assign */
    TV_FUNC, /* macro, global function or bound method */
    TV_LOOP, /* the `loop` variable of a for loop */
} tv_type;

typedef struct tv_str {
    size_t len;
    char s[]; /* NUL-terminated; may hold NULs itself */
} tv_str;

typedef struct tv_list tv_list;
typedef struct tv_dict tv_dict;
typedef struct tv_func tv_func;
typedef struct tv_loop tv_loop;

typedef struct tv {
    uint8_t type;
    union {
        bool b;
        int64_t i;
        double f;
        tv_str *s; /* TV_STR; for TV_UNDEF the name that was missing, or NULL */
        tv_list *l;
        tv_dict *d;
        tv_func *fn;
        tv_loop *loop;
    } u;
} tv;

/* Lists and dicts are immutable once built, so a value's nesting depth and
 * weight (its node count when expanded) are known as it is built, and
 * bounded: the recursive walks (repr, json, ==, <) then end, and can be
 * charged to the step budget. Namespaces and scopes are the only mutable
 * containers; the walks treat a namespace as opaque, so no walk can follow a
 * cycle. */
enum { TV_MAX_DEPTH = 1000 };
#define TV_MAX_WEIGHT ((uint64_t)1 << 26)

struct tv_list {
    size_t n, cap;
    tv *items;
    bool tuple;
    uint32_t depth;
    uint64_t weight;
};

struct tv_dict {
    size_t n, cap;
    tv *keys, *vals;
    uint32_t *index; /* open-addressed slots (entry + 1, 0 empty) once large */
    size_t index_cap;
    bool is_mutable; /* a namespace or a scope: not accounted, not walked */
    uint32_t depth;
    uint64_t weight;
};

static inline tv tv_undef(void) { return (tv){.type = TV_UNDEF}; }
static inline tv tv_none(void) { return (tv){.type = TV_NONE}; }
static inline tv tv_bool(bool b) { return (tv){.type = TV_BOOL, .u.b = b}; }
static inline tv tv_int(int64_t i) { return (tv){.type = TV_INT, .u.i = i}; }
static inline tv tv_float(double f) { return (tv){.type = TV_FLOAT, .u.f = f}; }

tv tv_str_n(tpl_ctx *c, const char *s, size_t n);
/* Names in the syntax tree (node.name, targets, kwnames) and the names the
 * builtins pass on are always the text of a tv_str, so they serve as dict
 * keys without a copy. */
static inline tv name_key(const char *name)
{
    return (tv){.type = TV_STR, .u.s = (tv_str *)(void *)(name - offsetof(tv_str, s))};
}
tv tv_cstr(tpl_ctx *c, const char *s);
tv tv_list_new(tpl_ctx *c, size_t cap);
void tv_list_push(tpl_ctx *c, tv_list *l, tv v);
tv tv_dict_new(tpl_ctx *c);
/* Sets key to val, keeping the key's first position (Python's dict). */
void tv_dict_set(tpl_ctx *c, tv_dict *d, tv key, tv val);
tv *tv_dict_get(const tv_dict *d, tv key);
void tv_dict_clear(tv_dict *d);
tv *tv_dict_get_cstr(const tv_dict *d, const char *key);

/* An empty namespace or scope dict. */
tv tv_mutable_dict_new(tpl_ctx *c);
uint64_t tv_weight(tv v);
/* Steps to charge for walking v once: its weight for containers, its length
 * in KiB for strings. Work that allocates is bounded by the memory budget;
 * this bounds the work that does not (scans, compares, hashes). */
uint64_t tv_cost(tv v);

bool tv_truthy(tv v);
bool tv_equal(tv a, tv b);
const char *tv_type_name(tv v);

/* A growing byte buffer in the arena. */
typedef struct tv_buf {
    char *p;
    size_t n, cap;
} tv_buf;
void buf_put(tpl_ctx *c, tv_buf *b, const char *s, size_t n);
void buf_puts(tpl_ctx *c, tv_buf *b, const char *s);
void buf_put_utf8(tpl_ctx *c, tv_buf *b, uint32_t cp);
tv buf_to_str(tpl_ctx *c, const tv_buf *b);

/* Python's str() and repr() of a value, appended to b. */
void tv_write_str(tpl_ctx *c, tv_buf *b, tv v);
void tv_write_repr(tpl_ctx *c, tv_buf *b, tv v);
tv tv_to_str(tpl_ctx *c, tv v); /* str(v) as a string value */
/* Python's repr(float). */
void tv_format_float(double f, char *out, size_t cap);

/* json.dumps(v, ensure_ascii, indent (<0: none), separators, sort_keys) as
 * transformers' tojson filter calls it. */
typedef struct tv_json_opts {
    int indent;
    bool ensure_ascii, sort_keys;
    const char *item_sep, *key_sep;
} tv_json_opts;
void tv_write_json(tpl_ctx *c, tv_buf *b, tv v, const tv_json_opts *o, int level);

/* Parses JSON text (RFC 8259, nesting at most 256) into values. */
tv tv_parse_json(tpl_ctx *c, const char *s, size_t n, const char *what);

/* Length of the Python whitespace character (str.isspace) that starts at s /
 * ends at s + n; 0 when there is none. */
size_t py_space_at(const char *s, size_t n);
size_t py_space_before(const char *s, size_t n);

/* The first occurrence of needle in hay at or after from: true and its
 * offset in *at. The naive search is O(hay x needle) at worst; the callers
 * charge the scanned bytes times the needle's length to the step budget. */
bool tv_find(const char *hay, size_t hay_len, size_t from, const char *needle, size_t needle_len, size_t *at);

/* Code points of a UTF-8 string (bytes that are not valid UTF-8 count one each). */
size_t utf8_count(const char *s, size_t n);
/* Byte offset of code point i (0 <= i <= count). */
size_t utf8_offset(const char *s, size_t n, size_t i);

/* ---- the syntax tree ----------------------------------------------------- */

typedef enum node_kind {
    /* expressions */
    N_LITERAL,
    N_NAME,
    N_GETATTR, /* a.name */
    N_GETITEM, /* a[b] */
    N_SLICE,   /* a[b:c:d]; missing parts NULL */
    N_CALL,    /* a(args, kw=...) */
    N_FILTER,  /* a | name(args) */
    N_TEST,    /* a is [not] name(args) */
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_BINARY,  /* op in node.op */
    N_COMPARE, /* a op1 b op2 c ...: args holds b, c...; ops in ops */
    N_COND,    /* b if a else c */
    N_LIST,
    N_TUPLE,
    N_DICT, /* args: keys; args2: values */
    /* statements */
    N_TEXT,
    N_OUTPUT,
    N_IF,      /* a: condition; body; else_body */
    N_FOR,     /* targets; a: iterable; b: filter; body; else_body */
    N_SET,     /* targets (or a: namespace attr target); b: value */
    N_SETBLOCK,
    N_MACRO,
    N_CALLBLOCK,
    N_FILTERBLOCK,
    N_BREAK,
    N_CONTINUE,
    N_WITH,
    N_BLOCK, /* a plain body ({% generation %}) */
} node_kind;

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT };
enum cmpop { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

typedef struct node node;

typedef struct node_list {
    node **items;
    size_t n;
} node_list;

struct node {
    uint8_t kind;
    uint8_t op;
    bool negated;  /* N_TEST: `is not` */
    int line, col;
    const char *name; /* names, filters, tests, attributes, set target */
    node *a, *b, *c, *d;
    node_list args;        /* call/filter/test args, list items, dict keys */
    node_list args2;       /* dict values, macro defaults (NULL: none) */
    const char **kwnames;  /* keyword argument names, one per args2 entry */
    node_list body, else_body;
    const char **targets;  /* for/set targets, macro parameter names */
    size_t n_targets;
    uint8_t *ops;          /* N_COMPARE */
    tv value;              /* N_LITERAL, N_TEXT */
};

node_list tpl_parse(tpl_ctx *c, const char *src, size_t len);

/* ---- evaluation ---------------------------------------------------------- */

typedef struct tpl_render tpl_render;

/* A function value: a macro, a global, or a method bound to its receiver. */
typedef tv (*tv_native)(tpl_render *r, const node *at, tv self, const tv *args, size_t nargs,
                        const char **kwnames, const tv *kwargs, size_t nkw);
struct tv_func {
    const char *name;
    const node *macro; /* N_MACRO, or NULL for a native function */
    const node *caller_body; /* a `caller()`: the call block's node */
    struct tpl_frame *closure; /* frame a caller() body runs in */
    tv_native native;
    tv self;
};

struct tv_loop {
    size_t index0, length;
    const tv_list *items;
};

/* Named native functions looked up by name. */
typedef struct tpl_native_entry {
    const char *name;
    tv_native fn;
} tpl_native_entry;

tv tpl_apply_filter(tpl_render *r, const node *at, const char *name, tv v, const tv *args, size_t nargs,
                    const char **kwnames, const tv *kwargs, size_t nkw);
bool tpl_apply_test(tpl_render *r, const node *at, const char *name, tv v, const tv *args, size_t nargs);
/* The attribute `name` of v when it is a method (str.split, dict.items...) or
 * loop/namespace attribute; TV_UNDEF when there is none. */
tv tpl_get_method(tpl_render *r, tv v, const char *name);
/* fmt % args, Python's printf-style formatting (args a tuple or one value). */
tv tpl_percent_format(tpl_render *r, const node *at, tv fmt, tv args);
/* The globals every render sees (range, namespace, raise_exception, ...). */
void tpl_add_globals(tpl_render *r, tv_dict *globals);

/* What the builtins need from the evaluator. */
tpl_ctx *tpl_render_ctx(tpl_render *r);
void tpl_step(tpl_render *r, const node *at, uint64_t n);
tv tpl_call(tpl_render *r, const node *at, tv fn, const tv *args, size_t nargs, const char **kwnames,
            const tv *kwargs, size_t nkw);
int64_t tpl_render_now(tpl_render *r);
_Noreturn void tpl_error(tpl_render *r, const node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value's attribute or item, as jinja2's getattr / getitem do. name is
 * a tree name or a tv_str's text (see name_key). */
tv tpl_getattr(tpl_render *r, const node *at, tv obj, const char *name);
tv tpl_getitem(tpl_render *r, const node *at, tv obj, tv key);
/* Raises jinja2's UndefinedError for an undefined value used as data. */
void tpl_check_defined(tpl_render *r, const node *at, tv v);

/* A hexadecimal digit's value, or -1 (template_parse.c). */
int tpl_hex_value(char ch);

/* ---- guarded text (template_guard.c) ------------------------------------- */

/* Two noncharacters, as UTF-8, that nothing else in a render writes. */
typedef struct tpl_marks {
    char open[3], close[3];
} tpl_marks;

uint32_t tpl_marks_in(const char *s, size_t n);
/* The first two marks not in `used`; false if fewer than two are free. */
bool tpl_pick_marks(uint32_t used, tpl_marks *m);
/* Marks the guarded stretches of user and tool messages (a list). *pending
 * holds a malloc'd block across allocations that may fail; the caller frees
 * it if the render ends there. True if anything was marked. */
bool tpl_guard_messages(tpl_ctx *c, tv messages, const chat_template_guard *g, const tpl_marks *m, void **pending);
/* Cuts the marks out of text (in place; *len shrinks) and returns where
 * they stood as spans. */
hearth_status tpl_strip_marks(const tpl_marks *m, char *text, size_t *len, text_span **spans, size_t *n_spans,
                              hearth_error *err);

#endif

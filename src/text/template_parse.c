/* Chat-template lexer and parser: source text to a tree of nodes.
 *
 * The lexer follows jinja2's with the options transformers sets
 * (trim_blocks, lstrip_blocks): newlines are normalised to \n, one trailing
 * newline is dropped, `{%-`/`-%}` strip all whitespace on that side, a block
 * or comment tag alone on its line takes the line's indentation with it, and
 * the newline after a block or comment tag is dropped. The parser follows
 * jinja2's grammar and operator precedence. */
#include "text/template_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tok_type {
    T_EOF,
    T_DATA,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
} tok_type;

typedef struct token {
    uint8_t type;
    int line, col;
    const char *text; /* T_NAME, T_OP: NUL-terminated */
    tv value;         /* T_DATA, T_STRING, T_INT, T_FLOAT */
} token;

typedef struct parser {
    tpl_ctx *c;
    const char *src;
    size_t len;
    token *toks;
    size_t n, cap, pos;
    int depth;
    size_t lc_pos; /* line and column of lc_pos, so each lookup scans on from there */
    int lc_line, lc_col;
} parser;

enum { PARSE_MAX_DEPTH = 200 };

static void line_col(parser *p, size_t at, int *line, int *col)
{
    int l = 1, k = 1;
    size_t i = 0;
    if (at >= p->lc_pos && p->lc_line > 0) {
        i = p->lc_pos;
        l = p->lc_line;
        k = p->lc_col;
    }
    for (; i < at && i < p->len; i++) {
        if (p->src[i] == '\n') {
            l++;
            k = 1;
        } else {
            k++;
        }
    }
    p->lc_pos = i;
    p->lc_line = l;
    p->lc_col = k;
    *line = l;
    *col = k;
}

_Noreturn static void lex_fail(parser *p, size_t at, const char *msg)
{
    int line, col;
    line_col(p, at, &line, &col);
    tpl_fail(p->c, line, col, "%s", msg);
}

static token *push_tok(parser *p, tok_type type, size_t at)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        token *t = tpl_alloc(p->c, cap * sizeof *t);
        if (p->n)
            memcpy(t, p->toks, p->n * sizeof *t);
        p->toks = t;
        p->cap = cap;
    }
    token *t = &p->toks[p->n++];
    *t = (token){.type = (uint8_t)type};
    line_col(p, at, &t->line, &t->col);
    return t;
}

static bool is_name_start(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }
static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_name_char(char ch) { return is_name_start(ch) || is_digit(ch); }

int tpl_hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A string literal, unescaped as Python's unicode-escape codec does. */
static size_t lex_string(parser *p, size_t i)
{
    char quote = p->src[i];
    size_t start = i++;
    tv_buf b = {0};
    while (i < p->len && p->src[i] != quote) {
        char ch = p->src[i];
        if (ch != '\\') {
            size_t run = i;
            while (i < p->len && p->src[i] != quote && p->src[i] != '\\')
                i++;
            buf_put(p->c, &b, p->src + run, i - run);
            continue;
        }
        if (i + 1 >= p->len)
            break;
        char e = p->src[i + 1];
        i += 2;
        const char *simple = NULL;
        switch (e) {
        case '\n': simple = ""; break;
        case '\\': simple = "\\"; break;
        case '\'': simple = "'"; break;
        case '"': simple = "\""; break;
        case 'a': simple = "\a"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'v': simple = "\v"; break;
        default: break;
        }
        if (simple) {
            buf_put(p->c, &b, simple, strlen(simple));
            continue;
        }
        if (e >= '0' && e <= '7') {
            uint32_t v = (uint32_t)(e - '0');
            for (int k = 0; k < 2 && i < p->len && p->src[i] >= '0' && p->src[i] <= '7'; k++)
                v = v * 8 + (uint32_t)(p->src[i++] - '0');
            buf_put_utf8(p->c, &b, v);
            continue;
        }
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < p->len ? tpl_hex_value(p->src[i]) : -1;
                if (h < 0)
                    lex_fail(p, start, "bad escape in string literal");
                v = v * 16 + (uint32_t)h;
                i++;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                lex_fail(p, start, "string literal escape is not a Unicode scalar value");
            buf_put_utf8(p->c, &b, v);
            continue;
        }
        /* Unknown escapes stay as they are, backslash included. */
        buf_put(p->c, &b, p->src + i - 2, 2);
    }
    if (i >= p->len)
        lex_fail(p, start, "unterminated string literal");
    token *t = push_tok(p, T_STRING, start);
    t->value = buf_to_str(p->c, &b);
    return i + 1;
}

static size_t lex_number(parser *p, size_t i)
{
    size_t start = i;
    char tmp[64];
    size_t n = 0;
    bool is_float = false, too_long = false;
#define DIGITS()                                                                                             \
    while (i < p->len && (is_digit(p->src[i]) || (p->src[i] == '_' && i + 1 < p->len && is_digit(p->src[i + 1])))) { \
        if (p->src[i] != '_') {                                                                              \
            if (n < sizeof tmp - 8)                                                                          \
                tmp[n++] = p->src[i];                                                                        \
            else                                                                                             \
                too_long = true;                                                                             \
        }                                                                                                    \
        i++;                                                                                                 \
    }
    DIGITS();
    if (i + 1 < p->len && p->src[i] == '.' && is_digit(p->src[i + 1])) {
        is_float = true;
        tmp[n++] = '.';
        i++;
        DIGITS();
    }
    if (i < p->len && (p->src[i] == 'e' || p->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (p->src[j] == '+' || p->src[j] == '-'))
            j++;
        if (j < p->len && is_digit(p->src[j])) {
            is_float = true;
            tmp[n++] = 'e';
            if (p->src[i + 1] == '-')
                tmp[n++] = '-';
            i = j;
            DIGITS();
        }
    }
#undef DIGITS
    tmp[n] = '\0';
    if (too_long)
        lex_fail(p, start, "number literal too long");
    token *t = push_tok(p, is_float ? T_FLOAT : T_INT, start);
    if (is_float) {
        t->value = tv_float(strtod(tmp, NULL));
    } else {
        char *end;
        unsigned long long v = strtoull(tmp, &end, 10);
        if (n > 18 && (strlen(tmp) > 19 || v > INT64_MAX))
            lex_fail(p, start, "integer literal too large");
        t->value = tv_int((int64_t)v);
    }
    return i;
}

static const char *const two_char_ops[] = {"//", "**", "==", "!=", "<=", ">="};
static const char one_char_ops[] = "+-/*%~[](){}<>=.:|,;";

/* Lexes the inside of a {{ }} or {% %} tag; returns the position after its end
 * marker and sets *strip_after when the marker was -}} or -%}, *keep_newline
 * when it was +%}. */
static size_t lex_tag(parser *p, size_t i, bool block, bool *strip_after, bool *keep_newline)
{
    int depth = 0;
    size_t open = i;
    for (;;) {
        while (i < p->len && (p->src[i] == ' ' || p->src[i] == '\t' || p->src[i] == '\n' || p->src[i] == '\r'))
            i++;
        if (i >= p->len)
            lex_fail(p, open, block ? "unclosed block tag: missing %}" : "unclosed expression: missing }}");
        const char *s = p->src + i;
        size_t left = p->len - i;
        char close = block ? '%' : '}';
        if (depth == 0) {
            if ((s[0] == '-' || s[0] == '+') && left >= 3 && s[1] == close && s[2] == '}' &&
                (block || s[0] == '-')) {
                push_tok(p, block ? T_BLOCK_END : T_VAR_END, i);
                *strip_after = s[0] == '-';
                *keep_newline = s[0] == '+';
                return i + 3;
            }
            if (left >= 2 && s[0] == close && s[1] == '}') {
                push_tok(p, block ? T_BLOCK_END : T_VAR_END, i);
                *strip_after = *keep_newline = false;
                return i + 2;
            }
        }
        if (is_name_start(s[0])) {
            size_t k = 1;
            while (k < left && is_name_char(s[k]))
                k++;
            token *t = push_tok(p, T_NAME, i);
            t->text = tv_str_n(p->c, s, k).u.s->s; /* see name_key */
            i += k;
            continue;
        }
        if (is_digit(s[0])) {
            i = lex_number(p, i);
            continue;
        }
        if (s[0] == '\'' || s[0] == '"') {
            i = lex_string(p, i);
            continue;
        }
        const char *op = NULL;
        for (size_t k = 0; k < sizeof two_char_ops / sizeof two_char_ops[0]; k++)
            if (left >= 2 && s[0] == two_char_ops[k][0] && s[1] == two_char_ops[k][1])
                op = two_char_ops[k];
        if (!op && strchr(one_char_ops, s[0]) && s[0]) {
            static const char *const singles[] = {"+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                                  "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};
            op = singles[strchr(one_char_ops, s[0]) - one_char_ops];
        }
        if (!op)
            lex_fail(p, i, "unexpected character in tag");
        if (op[0] == '(' || op[0] == '[' || op[0] == '{')
            depth++;
        else if ((op[0] == ')' || op[0] == ']' || op[0] == '}') && depth > 0)
            depth--;
        push_tok(p, T_OP, i)->text = op;
        i += strlen(op);
    }
}

/* Skips whitespace (str.lstrip) from i. */
static size_t skip_space(const parser *p, size_t i)
{
    size_t k;
    while (i < p->len && (k = py_space_at(p->src + i, p->len - i)) > 0)
        i += k;
    return i;
}

static void emit_data(parser *p, size_t start, size_t end, bool strip_before_tag, bool lstrip_line)
{
    if (strip_before_tag) {
        size_t k;
        while (end > start && (k = py_space_before(p->src + start, end - start)) > 0)
            end -= k;
    } else if (lstrip_line) {
        /* lstrip_blocks: drop the spaces and tabs before the tag when only
         * they stand between it and the start of its line. */
        size_t k = end;
        while (k > start && (p->src[k - 1] == ' ' || p->src[k - 1] == '\t'))
            k--;
        if ((k > start && p->src[k - 1] == '\n') || (k == start && (start == 0 || p->src[start - 1] == '\n')))
            end = k;
    }
    if (end > start) {
        token *t = push_tok(p, T_DATA, start);
        t->value = tv_str_n(p->c, p->src + start, end - start);
    }
}

/* {% raw %} ... {% endraw %}: the text between, verbatim. Returns the position
 * after the endraw tag or 0 when the tag at i is not raw. */
static size_t lex_raw(parser *p, size_t tag_start, size_t i)
{
    size_t k = i;
    while (k < p->len && (p->src[k] == ' ' || p->src[k] == '\t' || p->src[k] == '\n'))
        k++;
    if (p->len - k < 3 || memcmp(p->src + k, "raw", 3) != 0)
        return 0;
    k += 3;
    while (k < p->len && (p->src[k] == ' ' || p->src[k] == '\t' || p->src[k] == '\n'))
        k++;
    bool strip = k < p->len && p->src[k] == '-';
    if (strip)
        k++;
    if (p->len - k < 2 || p->src[k] != '%' || p->src[k + 1] != '}')
        return 0;
    k += 2;
    if (strip)
        k = skip_space(p, k);
    for (size_t j = k; j + 1 < p->len; j++) {
        if (p->src[j] != '{' || p->src[j + 1] != '%')
            continue;
        size_t m = j + 2;
        bool strip_before = m < p->len && p->src[m] == '-';
        if (strip_before)
            m++;
        while (m < p->len && (p->src[m] == ' ' || p->src[m] == '\t' || p->src[m] == '\n'))
            m++;
        if (p->len - m < 6 || memcmp(p->src + m, "endraw", 6) != 0)
            continue;
        m += 6;
        while (m < p->len && (p->src[m] == ' ' || p->src[m] == '\t' || p->src[m] == '\n'))
            m++;
        bool strip_after = m < p->len && p->src[m] == '-';
        if (strip_after)
            m++;
        if (p->len - m < 2 || p->src[m] != '%' || p->src[m + 1] != '}')
            continue;
        m += 2;
        emit_data(p, k, j, strip_before, false);
        if (strip_after)
            m = skip_space(p, m);
        else if (m < p->len && p->src[m] == '\n')
            m++;
        return m;
    }
    lex_fail(p, tag_start, "unclosed {% raw %}");
}

static void lex(parser *p)
{
    size_t i = 0;
    while (i < p->len) {
        size_t tag = i;
        while (tag + 1 < p->len &&
               !(p->src[tag] == '{' && (p->src[tag + 1] == '{' || p->src[tag + 1] == '%' || p->src[tag + 1] == '#')))
            tag++;
        if (tag + 1 >= p->len) {
            emit_data(p, i, p->len, false, false);
            break;
        }
        char kind = p->src[tag + 1];
        char mod = tag + 2 < p->len ? p->src[tag + 2] : '\0';
        bool minus = mod == '-', plus = mod == '+' && kind != '{';
        emit_data(p, i, tag, minus, !minus && !plus && kind != '{');
        size_t body = tag + 2 + (minus || plus);
        if (kind == '#') {
            size_t j = body;
            while (j + 1 < p->len && !(p->src[j] == '#' && p->src[j + 1] == '}'))
                j++;
            if (j + 1 >= p->len)
                lex_fail(p, tag, "unclosed comment: missing #}");
            bool strip = j > body && p->src[j - 1] == '-';
            bool keep = j > body && p->src[j - 1] == '+';
            i = j + 2;
            if (strip)
                i = skip_space(p, i);
            else if (!keep && i < p->len && p->src[i] == '\n')
                i++;
            continue;
        }
        if (kind == '%') {
            size_t after_raw = lex_raw(p, tag, body);
            if (after_raw) {
                i = after_raw;
                continue;
            }
        }
        push_tok(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag);
        bool strip_after, keep_newline;
        i = lex_tag(p, body, kind == '%', &strip_after, &keep_newline);
        if (strip_after)
            i = skip_space(p, i);
        else if (kind == '%' && !keep_newline && i < p->len && p->src[i] == '\n')
            i++;
    }
    push_tok(p, T_EOF, p->len);
}

/* ---- parser -------------------------------------------------------------- */

static token *peek(parser *p) { return &p->toks[p->pos]; }
static token *peek2(parser *p) { return &p->toks[p->pos + (p->toks[p->pos].type != T_EOF)]; }
static token *next(parser *p)
{
    token *t = &p->toks[p->pos];
    if (t->type != T_EOF)
        p->pos++;
    return t;
}

_Noreturn static void parse_fail(parser *p, const token *t, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    tpl_fail(p->c, t->line, t->col, "%s", msg);
}

static bool is_op(const token *t, const char *op) { return t->type == T_OP && strcmp(t->text, op) == 0; }
static bool is_name(const token *t, const char *name) { return t->type == T_NAME && strcmp(t->text, name) == 0; }

static bool accept_op(parser *p, const char *op)
{
    if (is_op(peek(p), op)) {
        next(p);
        return true;
    }
    return false;
}

static void expect_op(parser *p, const char *op)
{
    if (!accept_op(p, op))
        parse_fail(p, peek(p), "expected '%s'", op);
}

static const char *expect_name(parser *p)
{
    token *t = next(p);
    if (t->type != T_NAME)
        parse_fail(p, t, "expected a name%s", "");
    return t->text;
}

static node *new_node(parser *p, node_kind kind, const token *at)
{
    node *n = tpl_alloc(p->c, sizeof *n);
    *n = (node){.kind = (uint8_t)kind, .line = at->line, .col = at->col};
    return n;
}

/* A growing list of node pointers in the arena. */
typedef struct node_vec {
    node **items;
    size_t n, cap;
} node_vec;

static void vec_push(parser *p, node_vec *v, node *n)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        node **items = tpl_alloc(p->c, cap * sizeof *items);
        if (v->n)
            memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = n;
}

static node_list vec_list(const node_vec *v) { return (node_list){v->items, v->n}; }

static void enter(parser *p)
{
    if (++p->depth > PARSE_MAX_DEPTH)
        parse_fail(p, peek(p), "template nested too deeply%s", "");
}

static node *parse_expr(parser *p);
static node *parse_or(parser *p);
static node *parse_unary(parser *p, bool with_filter);
static node *parse_primary(parser *p);
static node *parse_postfix(parser *p, node *n);

/* Call arguments after '(': positional ones into args, name=value ones into
 * args2 with their names in kwnames. */
static void parse_call_args(parser *p, node *n)
{
    node_vec args = {0}, kwargs = {0};
    const char **names = NULL;
    size_t names_cap = 0;
    while (!is_op(peek(p), ")")) {
        if (args.n + kwargs.n > 0)
            expect_op(p, ",");
        if (is_op(peek(p), ")"))
            break;
        if (peek(p)->type == T_NAME && is_op(peek2(p), "=")) {
            const char *name = next(p)->text;
            next(p);
            if (kwargs.n == names_cap) {
                size_t cap = names_cap ? names_cap * 2 : 4;
                const char **grown = tpl_alloc(p->c, cap * sizeof *grown);
                if (kwargs.n)
                    memcpy(grown, names, kwargs.n * sizeof *grown);
                names = grown;
                names_cap = cap;
            }
            names[kwargs.n] = name;
            vec_push(p, &kwargs, parse_expr(p));
        } else {
            if (kwargs.n)
                parse_fail(p, peek(p), "positional argument after keyword argument%s", "");
            if (is_op(peek(p), "*") || is_op(peek(p), "**"))
                parse_fail(p, peek(p), "*args and **kwargs are not supported%s", "");
            vec_push(p, &args, parse_expr(p));
        }
    }
    expect_op(p, ")");
    n->args = vec_list(&args);
    n->args2 = vec_list(&kwargs);
    n->kwnames = names;
}

static node *parse_filter(parser *p, node *subject)
{
    token *at = peek(p);
    node *f = new_node(p, N_FILTER, at);
    f->name = expect_name(p);
    while (accept_op(p, ".")) { /* dotted filter names: keep the last part */
        f->name = expect_name(p);
    }
    f->a = subject;
    if (accept_op(p, "("))
        parse_call_args(p, f);
    return f;
}

static node *parse_test(parser *p, node *subject)
{
    token *at = peek(p);
    node *t = new_node(p, N_TEST, at);
    if (is_name(peek(p), "not")) {
        next(p);
        t->negated = true;
    }
    t->name = expect_name(p);
    t->a = subject;
    token *nx = peek(p);
    if (is_op(nx, "(")) {
        next(p);
        parse_call_args(p, t);
    } else if ((nx->type == T_NAME || nx->type == T_STRING || nx->type == T_INT || nx->type == T_FLOAT ||
                is_op(nx, "[") || is_op(nx, "{")) &&
               !is_name(nx, "else") && !is_name(nx, "or") && !is_name(nx, "and")) {
        /* `x is divisibleby 3`, `x is equalto 'y'`: one bare argument. */
        node_vec args = {0};
        node *arg = parse_primary(p);
        vec_push(p, &args, parse_postfix(p, arg));
        t->args = vec_list(&args);
    }
    return t;
}

static node *parse_filter_expr(parser *p, node *n)
{
    for (;;) {
        if (accept_op(p, "|"))
            n = parse_filter(p, n);
        else if (is_name(peek(p), "is")) {
            next(p);
            n = parse_test(p, n);
        } else if (is_op(peek(p), "(")) {
            token *at = next(p);
            node *call = new_node(p, N_CALL, at);
            call->line = n->line; /* errors point at the callee */
            call->col = n->col;
            call->a = n;
            parse_call_args(p, call);
            n = call;
        } else
            return n;
    }
}

static node *parse_subscript(parser *p, node *obj, const token *at)
{
    node *parts[3] = {NULL, NULL, NULL};
    bool slice = false;
    int k = 0;
    for (;;) {
        if (is_op(peek(p), ":")) {
            next(p);
            slice = true;
            if (++k > 2)
                parse_fail(p, peek(p), "too many ':' in slice%s", "");
            continue;
        }
        if (is_op(peek(p), "]"))
            break;
        if (parts[k])
            parse_fail(p, peek(p), "expected ':' or ']'%s", "");
        parts[k] = parse_expr(p);
    }
    expect_op(p, "]");
    node *n = new_node(p, slice ? N_SLICE : N_GETITEM, at);
    n->a = obj;
    if (!slice && !parts[0])
        parse_fail(p, at, "empty subscript%s", "");
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static node *parse_postfix(parser *p, node *n)
{
    for (;;) {
        token *t = peek(p);
        if (is_op(t, ".")) {
            next(p);
            token *name = next(p);
            if (name->type == T_NAME) {
                node *g = new_node(p, N_GETATTR, t);
                g->a = n;
                g->name = name->text;
                n = g;
            } else if (name->type == T_INT) {
                node *g = new_node(p, N_GETITEM, t);
                g->a = n;
                g->b = new_node(p, N_LITERAL, name);
                g->b->value = name->value;
                n = g;
            } else {
                parse_fail(p, name, "expected an attribute name after '.'%s", "");
            }
        } else if (is_op(t, "[")) {
            next(p);
            n = parse_subscript(p, n, t);
        } else if (is_op(t, "(")) {
            next(p);
            node *call = new_node(p, N_CALL, t);
            call->line = n->line;
            call->col = n->col;
            call->a = n;
            parse_call_args(p, call);
            n = call;
        } else {
            return n;
        }
    }
}

static node *literal(parser *p, const token *at, tv v)
{
    node *n = new_node(p, N_LITERAL, at);
    n->value = v;
    return n;
}

static node *parse_primary(parser *p)
{
    enter(p);
    token *t = next(p);
    node *n;
    if (t->type == T_NAME) {
        const char *s = t->text;
        if (!strcmp(s, "true") || !strcmp(s, "True"))
            n = literal(p, t, tv_bool(true));
        else if (!strcmp(s, "false") || !strcmp(s, "False"))
            n = literal(p, t, tv_bool(false));
        else if (!strcmp(s, "none") || !strcmp(s, "None"))
            n = literal(p, t, tv_none());
        else {
            n = new_node(p, N_NAME, t);
            n->name = s;
        }
    } else if (t->type == T_STRING) {
        tv v = t->value;
        if (peek(p)->type == T_STRING) { /* adjacent literals join */
            tv_buf b = {0};
            buf_put(p->c, &b, v.u.s->s, v.u.s->len);
            while (peek(p)->type == T_STRING) {
                tv more = next(p)->value;
                buf_put(p->c, &b, more.u.s->s, more.u.s->len);
            }
            v = buf_to_str(p->c, &b);
        }
        n = literal(p, t, v);
    } else if (t->type == T_INT || t->type == T_FLOAT) {
        n = literal(p, t, t->value);
    } else if (is_op(t, "(")) {
        if (accept_op(p, ")")) {
            n = new_node(p, N_TUPLE, t);
        } else {
            node *first = parse_expr(p);
            if (is_op(peek(p), ",")) {
                node_vec items = {0};
                vec_push(p, &items, first);
                while (accept_op(p, ",")) {
                    if (is_op(peek(p), ")"))
                        break;
                    vec_push(p, &items, parse_expr(p));
                }
                n = new_node(p, N_TUPLE, t);
                n->args = vec_list(&items);
            } else {
                n = first;
            }
            expect_op(p, ")");
        }
    } else if (is_op(t, "[")) {
        node_vec items = {0};
        while (!is_op(peek(p), "]")) {
            if (items.n)
                expect_op(p, ",");
            if (is_op(peek(p), "]"))
                break;
            vec_push(p, &items, parse_expr(p));
        }
        expect_op(p, "]");
        n = new_node(p, N_LIST, t);
        n->args = vec_list(&items);
    } else if (is_op(t, "{")) {
        node_vec keys = {0}, vals = {0};
        while (!is_op(peek(p), "}")) {
            if (keys.n)
                expect_op(p, ",");
            if (is_op(peek(p), "}"))
                break;
            vec_push(p, &keys, parse_expr(p));
            expect_op(p, ":");
            vec_push(p, &vals, parse_expr(p));
        }
        expect_op(p, "}");
        n = new_node(p, N_DICT, t);
        n->args = vec_list(&keys);
        n->args2 = vec_list(&vals);
    } else {
        parse_fail(p, t, "unexpected %s", t->type == T_EOF ? "end of template" : t->text ? t->text : "token");
    }
    p->depth--;
    return n;
}

static node *parse_unary(parser *p, bool with_filter)
{
    enter(p);
    token *t = peek(p);
    node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(p);
        n = new_node(p, is_op(t, "-") ? N_NEG : N_POS, t);
        n->a = parse_unary(p, false);
    } else {
        n = parse_postfix(p, parse_primary(p));
    }
    if (with_filter)
        n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static node *binary(parser *p, const token *at, int op, node *a, node *b)
{
    node *n = new_node(p, N_BINARY, at);
    n->op = (uint8_t)op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(parser *p)
{
    node *n = parse_unary(p, true);
    while (is_op(peek(p), "**")) {
        token *t = next(p);
        n = binary(p, t, OP_POW, n, parse_unary(p, true));
    }
    return n;
}

static node *parse_math2(parser *p)
{
    node *n = parse_pow(p);
    for (;;) {
        token *t = peek(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0)
            return n;
        next(p);
        n = binary(p, t, op, n, parse_pow(p));
    }
}

static node *parse_concat(parser *p)
{
    node *n = parse_math2(p);
    while (is_op(peek(p), "~")) {
        token *t = next(p);
        n = binary(p, t, OP_CONCAT, n, parse_math2(p));
    }
    return n;
}

static node *parse_math1(parser *p)
{
    node *n = parse_concat(p);
    for (;;) {
        token *t = peek(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0)
            return n;
        next(p);
        n = binary(p, t, op, n, parse_concat(p));
    }
}

static int compare_op(parser *p)
{
    token *t = peek(p);
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    for (int i = 0; i < 6; i++)
        if (is_op(t, ops[i])) {
            next(p);
            return i;
        }
    if (is_name(t, "in")) {
        next(p);
        return CMP_IN;
    }
    if (is_name(t, "not") && is_name(peek2(p), "in")) {
        next(p);
        next(p);
        return CMP_NOTIN;
    }
    return -1;
}

static node *parse_compare(parser *p)
{
    token *at = peek(p);
    node *first = parse_math1(p);
    int op = compare_op(p);
    if (op < 0)
        return first;
    node *n = new_node(p, N_COMPARE, at);
    n->a = first;
    node_vec rest = {0};
    uint8_t opsbuf[64];
    size_t nops = 0;
    while (op >= 0) {
        if (nops == sizeof opsbuf)
            parse_fail(p, peek(p), "comparison chain too long%s", "");
        opsbuf[nops++] = (uint8_t)op;
        vec_push(p, &rest, parse_math1(p));
        op = compare_op(p);
    }
    n->args = vec_list(&rest);
    n->ops = tpl_alloc(p->c, nops);
    memcpy(n->ops, opsbuf, nops);
    return n;
}

static node *parse_not(parser *p)
{
    if (is_name(peek(p), "not")) {
        token *t = next(p);
        enter(p);
        node *n = new_node(p, N_NOT, t);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

/* left-associative `a and b and c` / `a or b or c` */
static node *parse_logic(parser *p, node_kind kind, const char *word, node *(*operand)(parser *))
{
    node *n = operand(p);
    while (is_name(peek(p), word)) {
        token *t = next(p);
        node *op = new_node(p, kind, t);
        op->a = n;
        op->b = operand(p);
        n = op;
    }
    return n;
}

static node *parse_and(parser *p) { return parse_logic(p, N_AND, "and", parse_not); }
static node *parse_or(parser *p) { return parse_logic(p, N_OR, "or", parse_and); }

/* expr: or_expr [if or_expr [else expr]] */
static node *parse_expr(parser *p)
{
    enter(p);
    node *n = parse_or(p);
    while (is_name(peek(p), "if")) {
        token *t = next(p);
        node *cond = new_node(p, N_COND, t);
        cond->b = n;
        cond->a = parse_or(p);
        if (is_name(peek(p), "else")) {
            next(p);
            cond->c = parse_expr(p);
        }
        n = cond;
    }
    p->depth--;
    return n;
}

/* expr [, expr]*: a tuple when there is a comma. */
static node *parse_tuple(parser *p, bool with_condexpr)
{
    token *at = peek(p);
    node *first = with_condexpr ? parse_expr(p) : parse_or(p);
    if (!is_op(peek(p), ","))
        return first;
    node_vec items = {0};
    vec_push(p, &items, first);
    while (accept_op(p, ",")) {
        token *t = peek(p);
        if (t->type == T_BLOCK_END || t->type == T_VAR_END || is_op(t, "="))
            break;
        vec_push(p, &items, with_condexpr ? parse_expr(p) : parse_or(p));
    }
    node *n = new_node(p, N_TUPLE, at);
    n->args = vec_list(&items);
    return n;
}

/* ---- statements ---------------------------------------------------------- */

static node_list parse_body(parser *p, const token *opener, const char *const *ends, const char **ended);

static void expect_block_end(parser *p)
{
    token *t = next(p);
    if (t->type != T_BLOCK_END)
        parse_fail(p, t, "expected end of block tag (%%})%s", "");
}

/* Names for a for loop or a set: `a`, `a, b`, `(a, b)`. */
static void parse_targets(parser *p, node *n)
{
    const char *names[16];
    size_t count = 0;
    bool paren = accept_op(p, "(");
    do {
        if (count == 16)
            parse_fail(p, peek(p), "too many targets%s", "");
        names[count++] = expect_name(p);
    } while (accept_op(p, ","));
    if (paren)
        expect_op(p, ")");
    n->targets = tpl_alloc(p->c, count * sizeof *n->targets);
    memcpy(n->targets, names, count * sizeof *names);
    n->n_targets = count;
}

static node *parse_if(parser *p, const token *at)
{
    node *n = new_node(p, N_IF, at);
    n->a = parse_tuple(p, false);
    expect_block_end(p);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *ended;
    n->body = parse_body(p, at, ends, &ended);
    if (!strcmp(ended, "elif")) {
        token *t = &p->toks[p->pos - 1];
        node_vec v = {0};
        vec_push(p, &v, parse_if(p, t));
        n->else_body = vec_list(&v);
        return n; /* the nested if consumed the endif */
    }
    if (!strcmp(ended, "else")) {
        expect_block_end(p);
        static const char *const endif[] = {"endif", NULL};
        n->else_body = parse_body(p, at, endif, &ended);
    }
    expect_block_end(p);
    return n;
}

static node *parse_for(parser *p, const token *at)
{
    node *n = new_node(p, N_FOR, at);
    parse_targets(p, n);
    if (!is_name(next(p), "in"))
        parse_fail(p, &p->toks[p->pos - 1], "expected 'in' in for loop%s", "");
    n->a = parse_tuple(p, false);
    if (is_name(peek(p), "if")) {
        next(p);
        n->b = parse_expr(p);
    }
    if (is_name(peek(p), "recursive"))
        parse_fail(p, peek(p), "recursive for loops are not supported%s", "");
    expect_block_end(p);
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *ended;
    n->body = parse_body(p, at, ends, &ended);
    if (!strcmp(ended, "else")) {
        expect_block_end(p);
        static const char *const endfor[] = {"endfor", NULL};
        n->else_body = parse_body(p, at, endfor, &ended);
    }
    expect_block_end(p);
    return n;
}

/* Filters after a block set or in a filter block: `| trim | upper(...)`,
 * chained onto a NULL subject the evaluator fills with the body's text. */
static node *parse_filter_chain(parser *p, bool first_bar)
{
    node *f = NULL;
    if (!first_bar) {
        f = parse_filter(p, NULL);
    }
    while (accept_op(p, "|"))
        f = parse_filter(p, f);
    return f;
}

static node *parse_set(parser *p, const token *at)
{
    node *n = new_node(p, N_SET, at);
    if (peek(p)->type == T_NAME && is_op(peek2(p), ".")) {
        /* set ns.attr = value */
        node *target = new_node(p, N_GETATTR, peek(p));
        target->a = new_node(p, N_NAME, peek(p));
        target->a->name = next(p)->text;
        next(p);
        target->name = expect_name(p);
        n->a = target;
    } else {
        parse_targets(p, n);
    }
    if (accept_op(p, "=")) {
        n->b = parse_tuple(p, true);
        expect_block_end(p);
        return n;
    }
    if (n->a || n->n_targets != 1)
        parse_fail(p, peek(p), "a block set takes one plain name%s", "");
    n->kind = N_SETBLOCK;
    n->b = parse_filter_chain(p, true);
    expect_block_end(p);
    static const char *const ends[] = {"endset", NULL};
    const char *ended;
    n->body = parse_body(p, at, ends, &ended);
    expect_block_end(p);
    return n;
}

/* Parameters of a macro or a call block: (a, b=default, ...). */
static void parse_params(parser *p, node *n)
{
    const char *names[64];
    node_vec defaults = {0};
    size_t count = 0;
    expect_op(p, "(");
    while (!is_op(peek(p), ")")) {
        if (count)
            expect_op(p, ",");
        if (is_op(peek(p), ")"))
            break;
        if (count == 64)
            parse_fail(p, peek(p), "too many parameters%s", "");
        names[count] = expect_name(p);
        vec_push(p, &defaults, accept_op(p, "=") ? parse_expr(p) : NULL);
        count++;
    }
    expect_op(p, ")");
    n->targets = tpl_alloc(p->c, (count ? count : 1) * sizeof *n->targets);
    memcpy(n->targets, names, count * sizeof *names);
    n->n_targets = count;
    n->args2 = vec_list(&defaults);
}

static node *parse_macro(parser *p, const token *at)
{
    node *n = new_node(p, N_MACRO, at);
    n->name = expect_name(p);
    parse_params(p, n);
    expect_block_end(p);
    static const char *const ends[] = {"endmacro", NULL};
    const char *ended;
    n->body = parse_body(p, at, ends, &ended);
    if (peek(p)->type == T_NAME)
        next(p);
    expect_block_end(p);
    return n;
}

static node *parse_call_block(parser *p, const token *at)
{
    node *n = new_node(p, N_CALLBLOCK, at);
    if (is_op(peek(p), "("))
        parse_params(p, n);
    n->a = parse_expr(p);
    if (n->a->kind != N_CALL)
        parse_fail(p, at, "a call block needs a macro call%s", "");
    expect_block_end(p);
    static const char *const ends[] = {"endcall", NULL};
    const char *ended;
    n->body = parse_body(p, at, ends, &ended);
    expect_block_end(p);
    return n;
}

/* A statement after its {% (at: that tag, for error positions). */
static node *parse_statement(parser *p, const token *at)
{
    const char *kw = expect_name(p);
    if (!strcmp(kw, "if"))
        return parse_if(p, at);
    if (!strcmp(kw, "for"))
        return parse_for(p, at);
    if (!strcmp(kw, "set"))
        return parse_set(p, at);
    if (!strcmp(kw, "macro"))
        return parse_macro(p, at);
    if (!strcmp(kw, "call"))
        return parse_call_block(p, at);
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        node *n = new_node(p, kw[0] == 'b' ? N_BREAK : N_CONTINUE, at);
        expect_block_end(p);
        return n;
    }
    const char *ended;
    if (!strcmp(kw, "filter")) {
        node *n = new_node(p, N_FILTERBLOCK, at);
        n->b = parse_filter_chain(p, false);
        expect_block_end(p);
        static const char *const ends[] = {"endfilter", NULL};
        n->body = parse_body(p, at, ends, &ended);
        expect_block_end(p);
        return n;
    }
    if (!strcmp(kw, "with")) {
        node *n = new_node(p, N_WITH, at);
        node_vec vals = {0};
        const char *names[16];
        size_t count = 0;
        while (peek(p)->type != T_BLOCK_END) {
            if (count)
                expect_op(p, ",");
            if (count == 16)
                parse_fail(p, peek(p), "too many names in with%s", "");
            names[count++] = expect_name(p);
            expect_op(p, "=");
            vec_push(p, &vals, parse_expr(p));
        }
        expect_block_end(p);
        n->targets = tpl_alloc(p->c, (count ? count : 1) * sizeof *n->targets);
        memcpy(n->targets, names, count * sizeof *names);
        n->n_targets = count;
        n->args = vec_list(&vals);
        static const char *const ends[] = {"endwith", NULL};
        n->body = parse_body(p, at, ends, &ended);
        expect_block_end(p);
        return n;
    }
    if (!strcmp(kw, "generation")) {
        /* transformers' AssistantTracker marks assistant text; rendering
         * is unchanged. */
        node *n = new_node(p, N_BLOCK, at);
        expect_block_end(p);
        static const char *const ends[] = {"endgeneration", NULL};
        n->body = parse_body(p, at, ends, &ended);
        expect_block_end(p);
        return n;
    }
    parse_fail(p, at, "unknown or unsupported tag '%s'", kw);
}

/* Statements up to one of the end tags (NULL: up to the end of the
 * template); the end tag's name is consumed, its %} is left. */
static node_list parse_body(parser *p, const token *opener, const char *const *ends, const char **ended)
{
    enter(p);
    node_vec body = {0};
    for (;;) {
        token *t = peek(p);
        if (t->type == T_EOF) {
            if (ends) {
                size_t last = 0;
                while (ends[last + 1])
                    last++;
                parse_fail(p, opener, "missing {%% %s %%} for the block that starts here", ends[last]);
            }
            break;
        }
        if (t->type == T_DATA) {
            next(p);
            node *n = new_node(p, N_TEXT, t);
            n->value = t->value;
            vec_push(p, &body, n);
        } else if (t->type == T_VAR_BEGIN) {
            next(p);
            node *n = new_node(p, N_OUTPUT, t);
            n->a = parse_tuple(p, true);
            token *end = next(p);
            if (end->type != T_VAR_END)
                parse_fail(p, end, "expected '}}'%s", "");
            vec_push(p, &body, n);
        } else if (t->type == T_BLOCK_BEGIN) {
            next(p);
            token *kw = peek(p);
            if (kw->type == T_NAME && ends) {
                for (size_t i = 0; ends[i]; i++)
                    if (!strcmp(kw->text, ends[i])) {
                        next(p);
                        *ended = ends[i];
                        p->depth--;
                        return vec_list(&body);
                    }
            }
            if (kw->type == T_NAME && (!strncmp(kw->text, "end", 3) || !strcmp(kw->text, "elif") ||
                                       !strcmp(kw->text, "else")))
                parse_fail(p, kw, "unexpected '%s'", kw->text);
            vec_push(p, &body, parse_statement(p, t));
        } else {
            parse_fail(p, t, "unexpected token%s", "");
        }
    }
    p->depth--;
    return vec_list(&body);
}

enum { TEMPLATE_MAX_SOURCE = 1 << 24 };

node_list tpl_parse(tpl_ctx *c, const char *src, size_t len)
{
    if (len > TEMPLATE_MAX_SOURCE)
        tpl_fail(c, 0, 0, "template source longer than %d bytes", TEMPLATE_MAX_SOURCE);
    /* Newlines normalised to \n and one trailing newline dropped, as
     * jinja2 does (keep_trailing_newline is off). */
    char *norm = tpl_alloc(c, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n && norm[n - 1] == '\n')
        n--;
    norm[n] = '\0';
    parser p = {.c = c, .src = norm, .len = n};
    lex(&p);
    return parse_body(&p, NULL, NULL, NULL);
}

/* Guarded text: a user who types "<start_of_turn>" into a message must not
 * get the control token. The template may put a message's text anywhere,
 * whole or trimmed, inside a longer string, so the engine marks it before
 * the render and reads the marks back after: each stretch of a user or tool
 * message that writes a control token's text is put between two Unicode
 * noncharacters (U+FDD0..U+FDEF, which Unicode leaves to programs for their
 * own use) that occur nowhere else: not in the template's source nor in any
 * input. The marks are cut out of the output, and where they stood become
 * the guarded spans for vocab_tokenize_guarded.
 *
 * Only the stretches around control texts are marked, not whole messages, so
 * what templates test (startswith, trim, length) sees the text it would see
 * anyway, unless the text holds a control token's. */
#include "text/template_internal.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

enum { MARK_FIRST = 0xFDD0, MARK_COUNT = 32 };

/* The marks a text writes, raw (EF B7 90..AF) or escaped as JSON and
 * template string literals escape them (\uFDD0, \U0000FDD0): bit k for
 * U+FDD0 + k. It may count an escape that is not one (an escaped backslash
 * before a 'u'); that only takes a mark out of use. */
uint32_t tpl_marks_in(const char *s, size_t n)
{
    uint32_t used = 0;
    for (size_t i = 0; i + 2 < n; i++) {
        uint8_t b0 = (uint8_t)s[i], b1 = (uint8_t)s[i + 1], b2 = (uint8_t)s[i + 2];
        if (b0 == 0xEF && b1 == 0xB7 && b2 >= 0x90 && b2 <= 0xAF) {
            used |= 1u << (b2 - 0x90);
            continue;
        }
        if (b0 != '\\' || (b1 != 'u' && b1 != 'U'))
            continue;
        size_t digits = b1 == 'u' ? 4 : 8;
        uint32_t cp = 0;
        size_t k = 0;
        for (; k < digits && i + 2 + k < n && tpl_hex_value(s[i + 2 + k]) >= 0; k++)
            cp = cp * 16 + (uint32_t)tpl_hex_value(s[i + 2 + k]);
        if (k == digits && cp >= MARK_FIRST && cp < MARK_FIRST + MARK_COUNT)
            used |= 1u << (cp - MARK_FIRST);
    }
    return used;
}

bool tpl_pick_marks(uint32_t used, tpl_marks *m)
{
    int picked = 0;
    for (int k = 0; k < MARK_COUNT && picked < 2; k++) {
        if (used & (1u << k))
            continue;
        char *mark = picked++ ? m->close : m->open;
        uint32_t cp = MARK_FIRST + (uint32_t)k; /* three bytes of UTF-8 */
        mark[0] = (char)(0xE0 | (cp >> 12));
        mark[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        mark[2] = (char)(0x80 | (cp & 0x3F));
    }
    return picked == 2;
}

/* The text with every span the guard finds put between the marks; the text
 * itself when it finds none. */
static tv guard_text(tpl_ctx *c, tv text, const chat_template_guard *g, const tpl_marks *m, void **pending,
                     bool *marked)
{
    text_span *spans = NULL;
    size_t n = 0;
    hearth_error err = {0};
    if (g->find(g->ctx, text.u.s->s, text.u.s->len, &spans, &n, &err) != HEARTH_OK)
        tpl_fail(c, 0, 0, "messages: %s", err.message);
    if (n == 0) {
        free(spans);
        return text;
    }
    *pending = spans; /* freed by the caller, also if the allocation below fails */
    tv_buf b = {0};
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        buf_put(c, &b, text.u.s->s + at, spans[i].off - at);
        buf_put(c, &b, m->open, 3);
        buf_put(c, &b, text.u.s->s + spans[i].off, spans[i].len);
        buf_put(c, &b, m->close, 3);
        at = spans[i].off + spans[i].len;
    }
    buf_put(c, &b, text.u.s->s + at, text.u.s->len - at);
    *pending = NULL;
    free(spans);
    *marked = true;
    return buf_to_str(c, &b);
}

static bool is_guarded_role(const tv *role)
{
    return role && role->type == TV_STR && (strcmp(role->u.s->s, "user") == 0 || strcmp(role->u.s->s, "tool") == 0);
}

bool tpl_guard_messages(tpl_ctx *c, tv messages, const chat_template_guard *g, const tpl_marks *m, void **pending)
{
    bool marked = false;
    for (size_t i = 0; i < messages.u.l->n; i++) {
        tv message = messages.u.l->items[i];
        if (message.type != TV_DICT || !is_guarded_role(tv_dict_get_cstr(message.u.d, "role")))
            continue;
        tv *content = tv_dict_get_cstr(message.u.d, "content");
        if (content && content->type == TV_STR) {
            *content = guard_text(c, *content, g, m, pending, &marked);
        } else if (content && content->type == TV_LIST) { /* parts: {"type": "text", "text": ...} */
            for (size_t k = 0; k < content->u.l->n; k++) {
                tv part = content->u.l->items[k];
                tv *text = part.type == TV_DICT ? tv_dict_get_cstr(part.u.d, "text") : NULL;
                if (text && text->type == TV_STR)
                    *text = guard_text(c, *text, g, m, pending, &marked);
            }
        }
    }
    return marked;
}

/* A mark the template cut apart or repeated leaves an opening without its
 * close: the span then runs to the end, which guards more text than was
 * marked, never less. */
static bool push_span(text_span **spans, size_t *n, size_t *cap, text_span span)
{
    if (*n == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 8;
        text_span *grown = realloc(*spans, grown_cap * sizeof *grown);
        if (!grown)
            return false;
        *spans = grown, *cap = grown_cap;
    }
    (*spans)[(*n)++] = span;
    return true;
}

hearth_status tpl_strip_marks(const tpl_marks *m, char *text, size_t *len, text_span **spans, size_t *n_spans,
                              hearth_error *err)
{
    text_span *out = NULL;
    size_t n = 0, cap = 0, to = 0, start = 0;
    bool open = false, ok = true;
    for (size_t from = 0; ok && from < *len;) {
        bool is_open = from + 3 <= *len && memcmp(text + from, m->open, 3) == 0;
        bool is_close = !is_open && from + 3 <= *len && memcmp(text + from, m->close, 3) == 0;
        if (!is_open && !is_close) {
            text[to++] = text[from++];
            continue;
        }
        from += 3;
        if (is_open && !open) {
            open = true;
            start = to;
        } else if (is_close && open) {
            open = false;
            ok = to == start || push_span(&out, &n, &cap, (text_span){start, to - start});
        }
    }
    if (ok && open && to > start)
        ok = push_span(&out, &n, &cap, (text_span){start, to - start});
    if (!ok) {
        free(out);
        return error_set(err, HEARTH_ERR_NOMEM, "chat template: out of memory");
    }
    text[to] = '\0';
    *len = to;
    *spans = out;
    *n_spans = n;
    return HEARTH_OK;
}

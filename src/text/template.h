/* Chat templates: the Jinja2 subset GGUF files ship in tokenizer.chat_template,
 * rendered as Hugging Face transformers' apply_chat_template renders them:
 * trim_blocks and lstrip_blocks on, the loopcontrols extension (break,
 * continue), its tojson (json.dumps, ensure_ascii off), raise_exception and
 * strftime_now, and jinja2's default Undefined.
 *
 * Templates are hostile input: nothing they do reaches the host, and a
 * render stops with an error (line and column) once it has taken too many
 * steps, written too much, allocated too much or nested too deeply. */
#ifndef HEARTH_TEXT_TEMPLATE_H
#define HEARTH_TEXT_TEMPLATE_H

#include "hearth.h"
#include "text/text_span.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct chat_template chat_template;

/* Parses a template's source. */
hearth_status chat_template_parse(const char *src, size_t len, chat_template **out, hearth_error *err);
void chat_template_free(chat_template *t);

typedef struct chat_template_inputs {
    /* A JSON array of messages in OpenAI's shape: role, content (a string or
     * a list of parts), tool_calls, reasoning_content, ... passed through as
     * they are; or an object holding them under "messages" (an OpenAI
     * request body, whose "tools" are then used when tools_json is NULL).
     * Required. */
    const char *messages_json;
    size_t messages_len;
    /* A JSON array of tool definitions, or NULL: `tools` is then none, as
     * transformers passes it. */
    const char *tools_json;
    size_t tools_len;
    /* A JSON object of further variables (enable_thinking, ...), or NULL. */
    const char *extra_json;
    size_t extra_len;
    bool add_generation_prompt;
    const char *bos_token, *eos_token; /* NULL: undefined */
    /* strftime_now's clock, seconds since the epoch (local time zone); < 0
     * uses the current time. Tests fix it to get stable output. */
    int64_t now;
    /* Budgets; 0 picks the default (in brackets). */
    uint64_t max_steps;  /* expression and statement evaluations [50M] */
    size_t max_output;   /* bytes of output, captured macro output included [16 MiB] */
    size_t max_memory;   /* bytes the render may allocate [256 MiB] */
} chat_template_inputs;

/* Renders the template. On success *out is a malloc'd NUL-terminated string
 * of *out_len bytes (the caller frees it). Errors from the template itself
 * (raise_exception, an undefined value used as data, a budget spent) return
 * HEARTH_ERR_FORMAT with the template line and column in the message; bad
 * JSON inputs return HEARTH_ERR_ARG. */
hearth_status chat_template_render(const chat_template *t, const chat_template_inputs *in, char **out,
                                   size_t *out_len, hearth_error *err);

/* Keeps what users write from being read as control tokens: the render asks
 * `find` where, in the text of each user and tool message, a control token's
 * text is written (vocab_control_spans does), and reports where those
 * stretches ended up in the output, wherever the template put them, for
 * vocab_tokenize_guarded. System and assistant messages are the
 * application's and the model's own, and are not guarded. */
typedef struct chat_template_guard {
    hearth_status (*find)(void *ctx, const char *text, size_t len, text_span **spans, size_t *n_spans,
                          hearth_error *err);
    void *ctx;
} chat_template_guard;

/* chat_template_render, guarded: *spans (malloc'd, NULL when none) are the
 * guarded stretches of *out, sorted and disjoint. With a NULL guard it is
 * chat_template_render, and spans may be NULL. */
hearth_status chat_template_render_guarded(const chat_template *t, const chat_template_inputs *in,
                                           const chat_template_guard *guard, char **out, size_t *out_len,
                                           text_span **spans, size_t *n_spans, hearth_error *err);

/* A template for model files of this general.architecture that ship none,
 * where the architecture fixes the turn format (the Gemma family); NULL for
 * the others. */
const char *chat_template_fallback(const char *architecture);

#endif

/* libFuzzer target: the chat-template engine on arbitrary input.
 *
 * An input that starts with '[' is a messages array, rendered by fixed
 * templates (the one below, and the shared templates when
 * HEARTH_SHARED_DATA_DIR/templates is there); anything else is a template's
 * source, rendered over a fixed conversation with tools. So the shared
 * .jinja files can seed the corpus as they are. Budgets are small, so a
 * template that loops or grows stops quickly: any crash, sanitizer report
 * or hang is a finding; errors are expected. Each render is done again with
 * a guard over users' control-token texts (chat_template_render_guarded). */
#include "text/template.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HEARTH_SHARED_DATA_DIR
#define HEARTH_SHARED_DATA_DIR "../shared/data"
#endif

/* A template in the style of the published ones: system message, tools,
 * tool calls with object or string arguments, reasoning, macros, namespaces. */
static const char builtin_template[] =
    "{%- macro render(c) -%}{%- if c is string -%}{{ c }}{%- elif c is iterable -%}"
    "{%- for p in c -%}{{ p.text if p.type == 'text' else '<img>' }}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
    "{%- set ns = namespace(last=-1, sys='') -%}"
    "{%- for m in messages -%}{%- if m.role == 'user' -%}{%- set ns.last = loop.index0 -%}{%- endif -%}"
    "{%- if m.role == 'system' -%}{%- set ns.sys = render(m.content) | trim -%}{%- endif -%}{%- endfor -%}"
    "{{ bos_token }}{%- if tools -%}<tools>{%- for t in tools -%}\n{{ t | tojson(indent=2) }}{%- endfor -%}</tools>{%- endif -%}"
    "{{ ns.sys }}"
    "{%- for m in messages if m.role != 'system' -%}"
    "<|{{ m.role }}|>{%- if m.reasoning_content is defined and loop.index0 > ns.last -%}"
    "<think>{{ m.reasoning_content | string | trim }}</think>{%- endif -%}"
    "{{ render(m.content).split('</think>')[-1].lstrip('\\n') }}"
    "{%- for tc in m.tool_calls | default([]) -%}{%- set f = tc.function if tc.function is defined else tc -%}"
    "<call>{{ f.name }} {{ f.arguments if f.arguments is string else f.arguments | tojson }}</call>"
    "{%- endfor -%}{{ '<|end|>' if not loop.last or not add_generation_prompt }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}";

static const char fixed_messages[] =
    "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Weather in Paris?\"}]},"
    " {\"role\": \"assistant\", \"reasoning_content\": \"Call the tool.\", \"content\": \"\","
    "  \"tool_calls\": [{\"id\": \"call00001\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    "   \"arguments\": {\"city\": \"Paris\", \"days\": 2}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"call00001\", \"content\": \"sunny\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>ok</think>\\n\\nSunny.\"},"
    " {\"role\": \"user\", \"content\": \"Thanks \\u00e9 \\ud83e\\udd99\"}]";

static const char fixed_tools[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather.\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"},"
    " \"days\": {\"type\": \"integer\", \"enum\": [1, 2]}}, \"required\": [\"city\"]}}}]";

enum { MAX_TEMPLATES = 32 };
static chat_template *templates[MAX_TEMPLATES];
static int n_templates;

static void add_template(const char *src, size_t len)
{
    hearth_error err;
    if (n_templates < MAX_TEMPLATES && chat_template_parse(src, len, &templates[n_templates], &err) == HEARTH_OK)
        n_templates++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    add_template(builtin_template, sizeof builtin_template - 1);
    const char *dir = HEARTH_SHARED_DATA_DIR "/templates";
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 7 || strcmp(e->d_name + n - 6, ".jinja") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        add_template(buf, len);
    }
    closedir(d);
    return 0;
}

/* The guard's stand-in for a vocabulary's control tokens: these texts,
 * found wherever they are written, overlapping and touching ones merged. */
static const char *const control_texts[] = {"<|end|>", "<|user|>", "<|assistant|>", "<s>", "</s>", "<|im_start|>",
                                            "<start_of_turn>", "<|"};
static size_t guard_spans_found;

static hearth_status find_controls(void *ctx, const char *text, size_t len, text_span **spans, size_t *n_spans,
                                   hearth_error *err)
{
    (void)ctx, (void)err;
    text_span *out = NULL;
    size_t n = 0;
    for (size_t at = 0; at < len; at++) {
        size_t longest = 0;
        for (size_t k = 0; k < sizeof control_texts / sizeof control_texts[0]; k++) {
            size_t cl = strlen(control_texts[k]);
            if (cl <= len - at && cl > longest && memcmp(text + at, control_texts[k], cl) == 0)
                longest = cl;
        }
        if (!longest)
            continue;
        if (n > 0 && out[n - 1].off + out[n - 1].len >= at) {
            if (at + longest > out[n - 1].off + out[n - 1].len)
                out[n - 1].len = at + longest - out[n - 1].off;
            continue;
        }
        text_span *grown = realloc(out, (n + 1) * sizeof *grown);
        if (!grown)
            __builtin_trap();
        out = grown;
        out[n++] = (text_span){at, longest};
    }
    guard_spans_found += n;
    *spans = out;
    *n_spans = n;
    return HEARTH_OK;
}

/* Renders twice, plain and guarded. Either way a failure returns no output
 * and says why. The guarded spans lie in the output, in order and apart;
 * where the guard found nothing to mark, both renders are the same (or the
 * guarded one refused inputs that use up its marks). */
static void render_with(const chat_template *t, const char *messages, size_t len, bool agp)
{
    chat_template_inputs in = {
        .messages_json = messages,
        .messages_len = len,
        .tools_json = fixed_tools,
        .tools_len = sizeof fixed_tools - 1,
        .extra_json = "{\"enable_thinking\": false}",
        .extra_len = 26,
        .add_generation_prompt = agp,
        .bos_token = "<s>",
        .eos_token = "</s>",
        .now = 0,
        .max_steps = 200000,
        .max_output = 1 << 20,
        .max_memory = 64 << 20,
    };
    char *out = NULL, *guarded = NULL;
    size_t out_len = 0, guarded_len = 0, n_spans = 0;
    text_span *spans = NULL;
    hearth_error err, guarded_err;
    hearth_status st = chat_template_render(t, &in, &out, &out_len, &err);
    if (st == HEARTH_OK ? out[out_len] != '\0' : (out || err.message[0] == '\0'))
        __builtin_trap();
    chat_template_guard guard = {.find = find_controls};
    guard_spans_found = 0;
    hearth_status gst = chat_template_render_guarded(t, &in, &guard, &guarded, &guarded_len, &spans, &n_spans,
                                                     &guarded_err);
    if (gst == HEARTH_OK ? guarded[guarded_len] != '\0' : (guarded || spans || guarded_err.message[0] == '\0'))
        __builtin_trap();
    for (size_t i = 0; i < n_spans; i++)
        if (spans[i].len == 0 || spans[i].off + spans[i].len > guarded_len ||
            (i > 0 && spans[i].off < spans[i - 1].off + spans[i - 1].len))
            __builtin_trap();
    if (guard_spans_found == 0 && gst != HEARTH_ERR_ARG &&
        (gst != st || (st == HEARTH_OK && (n_spans || guarded_len != out_len || memcmp(guarded, out, out_len)))))
        __builtin_trap();
    free(out);
    free(guarded);
    free(spans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 16))
        return 0;
    if (size > 0 && data[0] == '[') {
        /* Every template over these messages: the JSON parser, and each
         * template's handling of shapes it did not expect. */
        for (int i = 0; i < n_templates; i++)
            render_with(templates[i], (const char *)data, size, size % 2);
        return 0;
    }
    chat_template *t = NULL;
    hearth_error err;
    if (chat_template_parse((const char *)data, size, &t, &err) != HEARTH_OK)
        return 0;
    render_with(t, fixed_messages, sizeof fixed_messages - 1, size % 2);
    chat_template_free(t);
    return 0;
}

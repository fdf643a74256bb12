/* hearth template: render a model's chat template over a conversation, as
 * transformers' apply_chat_template would, and print the prompt. */
#include "cli.h"

#include "gguf/gguf.h"
#include "text/template.h"

#include <stdlib.h>
#include <string.h>

static const char template_usage[] =
    "usage: hearth template [-m FILE | --template FILE.jinja] --messages FILE.json\n"
    "                       [--add-generation-prompt] [--tools FILE.json] [--var NAME=JSON]...\n"
    "\n"
    "Renders a chat template (Jinja2, as in tokenizer.chat_template) over a\n"
    "conversation and prints the prompt exactly, with no newline added.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE         take the template and the BOS/EOS tokens from this\n"
    "                           GGUF model (default: the model scripts/setup.sh\n"
    "                           installs, or $HEARTH_MODEL)\n"
    "  --template FILE          take the template from FILE instead\n"
    "  --messages FILE          a JSON array of messages in OpenAI's shape ('-' reads\n"
    "                           standard input)\n"
    "  --tools FILE             a JSON array of tool definitions\n"
    "  --add-generation-prompt  end with the start of an assistant turn\n"
    "  --var NAME=JSON          set a template variable, e.g. enable_thinking=false\n"
    "  --bos TEXT, --eos TEXT   bos_token / eos_token (default: the model's)\n"
    "  -h, --help               show this help\n";

#define usage_error(...) cli_usage_error("template", template_usage, __VA_ARGS__)

enum { MAX_VARS = 64 };

/* The options that take a value, and where each one's value goes. */
typedef struct option {
    const char *name;
    const char **dest;
} option;

static bool value_option(const char *arg, const option *options, const char ***dest)
{
    for (; options->name; options++)
        if (strcmp(arg, options->name) == 0) {
            *dest = options->dest;
            return true;
        }
    return false;
}

/* The --var pairs as one JSON object, or NULL after saying why. */
static char *vars_json(char **vars, int n)
{
    size_t cap = 3;
    for (int i = 0; i < n; i++)
        cap += strlen(vars[i]) * 2 + 8;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(vars[i], '=');
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *s = vars[i]; s < eq; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
        *p++ = ':';
        size_t vlen = strlen(eq + 1);
        memcpy(p, eq + 1, vlen);
        p += vlen;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* The text of the special token whose id is at key (tokenizer.ggml.bos_token_id),
 * as the vocabulary spells it; NULL when the model has none. Read from the
 * metadata alone: rendering needs no tokenizer. */
static char *token_text(const gguf_file *f, const char *key)
{
    uint64_t id;
    const gguf_array *tokens = gguf_get_array(f, "tokenizer.ggml.tokens");
    if (!gguf_get_uint(f, key, &id) || !tokens || tokens->elem_type != GGUF_TYPE_STRING || id >= tokens->count)
        return NULL;
    const gguf_string *t = &tokens->strings[id];
    char *s = malloc((size_t)t->len + 1);
    if (s) {
        memcpy(s, t->data, (size_t)t->len);
        s[t->len] = '\0';
    }
    return s;
}

int cli_template(int argc, char **argv)
{
    const char *model = NULL, *template_path = NULL, *messages_path = NULL, *tools_path = NULL;
    const char *bos_arg = NULL, *eos_arg = NULL;
    char *vars[MAX_VARS];
    int n_vars = 0;
    bool add_generation_prompt = false;
    const option options[] = {
        {"-m", &model},           {"--model", &model},      {"--template", &template_path},
        {"--messages", &messages_path}, {"--tools", &tools_path}, {"--bos", &bos_arg},
        {"--eos", &eos_arg},      {NULL, NULL},
    };
    const char **dest;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(template_usage, stdout);
            return CLI_EXIT_OK;
        } else if (value_option(a, options, &dest)) {
            if (!has_value)
                return usage_error("%s needs a value", a);
            *dest = argv[++i];
        } else if (strcmp(a, "--var") == 0) {
            if (!has_value)
                return usage_error("%s needs NAME=JSON", a);
            char *var = argv[++i];
            if (!strchr(var, '=') || var[0] == '=')
                return usage_error("--var '%s': expected NAME=JSON", var);
            if (n_vars == MAX_VARS)
                return usage_error("at most %d --var options", MAX_VARS);
            vars[n_vars++] = var;
        } else if (strcmp(a, "--add-generation-prompt") == 0) {
            add_generation_prompt = true;
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (!messages_path)
        return usage_error("%s", "no --messages file given");
    if (model && template_path)
        return usage_error("%s", "give at most one of -m and --template");

    int rc = CLI_EXIT_FAILURE;
    char default_model[4096], why[512];
    char *source = NULL, *messages = NULL, *tools = NULL, *extra = NULL, *bos = NULL, *eos = NULL, *out = NULL;
    size_t source_len = 0, messages_len = 0, tools_len = 0, out_len = 0;
    gguf_file *f = NULL;
    chat_template *t = NULL;
    hearth_error err = {0};
    if (template_path) {
        if (!(source = cli_read_all(template_path, &source_len, why, sizeof why)))
            goto fail_why;
    } else {
        if (!model && !(model = cli_default_model(default_model, sizeof default_model, "template")))
            return CLI_EXIT_USAGE;
        if (gguf_open(model, &f, &err) != HEARTH_OK)
            goto fail_err;
        const gguf_string *s = gguf_get_string(f, "tokenizer.chat_template");
        if (!s) {
            fprintf(stderr, "hearth template: %s: no tokenizer.chat_template in the model\n", model);
            goto done;
        }
        source_len = (size_t)s->len;
        if (!(source = malloc(source_len + 1))) {
            fprintf(stderr, "hearth template: out of memory\n");
            goto done;
        }
        memcpy(source, s->data, source_len);
        source[source_len] = '\0';
        bos = token_text(f, "tokenizer.ggml.bos_token_id");
        eos = token_text(f, "tokenizer.ggml.eos_token_id");
    }
    if (!(messages = cli_read_all(messages_path, &messages_len, why, sizeof why)))
        goto fail_why;
    if (tools_path && !(tools = cli_read_all(tools_path, &tools_len, why, sizeof why)))
        goto fail_why;
    if (n_vars && !(extra = vars_json(vars, n_vars))) {
        fprintf(stderr, "hearth template: out of memory\n");
        goto done;
    }
    if (chat_template_parse(source, source_len, &t, &err) != HEARTH_OK)
        goto fail_err;
    chat_template_inputs in = {
        .messages_json = messages,
        .messages_len = messages_len,
        .tools_json = tools,
        .tools_len = tools_len,
        .extra_json = extra,
        .extra_len = extra ? strlen(extra) : 0,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = bos_arg ? bos_arg : bos,
        .eos_token = eos_arg ? eos_arg : eos,
        .now = -1,
    };
    if (chat_template_render(t, &in, &out, &out_len, &err) != HEARTH_OK)
        goto fail_err;
    fwrite(out, 1, out_len, stdout);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    goto done;
fail_why:
    fprintf(stderr, "hearth template: %s\n", why);
    goto done;
fail_err:
    fprintf(stderr, "hearth template: %s\n", err.message);
done:
    free(out);
    chat_template_free(t);
    free(extra);
    free(tools);
    free(messages);
    free(bos);
    free(eos);
    free(source);
    gguf_close(f);
    return rc;
}

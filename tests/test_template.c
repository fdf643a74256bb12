/* The chat-template engine against Python's jinja2 (the goldens come from
 * scripts/oracle/make_template_fixtures.py, which renders as transformers'
 * apply_chat_template does):
 *   - feature cases (unit_cases.json): one template each, output or error;
 *   - every template in ../shared/data/templates over every conversation in
 *     tests/fixtures/template/conversations, generation prompt off and on:
 *     byte-identical output, or an error where jinja2 raised (with the same
 *     message for raise_exception);
 *   - budgets: templates that recurse forever, loop too long or print too
 *     much stop with an error, and malformed inputs are errors. */
#include "test.h"

#include "text/template.h"
#include "text/template_internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE_FIXTURES HEARTH_FIXTURES_DIR "/template"
#define FIXED_NOW 1764072000 /* the oracle's strftime_now clock */

/* Renders src over messages_json (and the rest); returns the output or NULL
 * with the error in *err. */
static char *render(const char *src, size_t src_len, const chat_template_inputs *in, hearth_error *err)
{
    chat_template *t = NULL;
    if (chat_template_parse(src, src_len, &t, err) != HEARTH_OK)
        return NULL;
    char *out = NULL;
    size_t len = 0;
    hearth_status st = chat_template_render(t, in, &out, &len, err);
    chat_template_free(t);
    if (st != HEARTH_OK)
        return NULL;
    CHECK(strlen(out) == len || memchr(out, '\0', len));
    return out;
}

static char *render_simple(const char *src, hearth_error *err)
{
    static const char messages[] = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    chat_template_inputs in = {.messages_json = messages, .messages_len = strlen(messages), .now = FIXED_NOW};
    return render(src, strlen(src), &in, err);
}

/* A JSON fixture file parsed with the engine's own parser, in an arena the
 * caller frees. */
typedef struct fixture {
    tpl_arena arena;
    jmp_buf jump;
    tpl_ctx c;
} fixture;

static __attribute__((noinline)) bool fixture_load(fixture *f, const char *path, tv *out)
{
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text)
        return false;
    f->arena = (tpl_arena){.limit = (size_t)256 << 20};
    f->c = (tpl_ctx){.arena = &f->arena, .jump = &f->jump};
    if (setjmp(f->jump)) {
        fprintf(stderr, "%s: %s\n", path, f->c.message);
        free(text);
        return false;
    }
    *out = tv_parse_json(&f->c, text, len, path);
    free(text);
    return true;
}

/* A value back to JSON text, for the render inputs. */
static char *to_json(fixture *f, tv v)
{
    tv_buf b = {0};
    tv_json_opts o = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
    tv_write_json(&f->c, &b, v, &o, 0);
    buf_put(&f->c, &b, "", 1);
    return b.p;
}

static tv field(tv obj, const char *key)
{
    tv *v = obj.type == TV_DICT ? tv_dict_get_cstr(obj.u.d, key) : NULL;
    return v ? *v : tv_undef();
}

static void test_unit_cases(void)
{
    fixture fc, fe;
    tv cases, expected;
    if (!fixture_load(&fc, TEMPLATE_FIXTURES "/unit_cases.json", &cases) ||
        !fixture_load(&fe, TEMPLATE_FIXTURES "/unit_expected.json", &expected)) {
        CHECK_MSG(false, "cannot read the unit fixtures");
        return;
    }
    CHECK(cases.type == TV_LIST && expected.type == TV_LIST && cases.u.l->n == expected.u.l->n);
    size_t same = 0;
    for (size_t i = 0; i < cases.u.l->n && i < expected.u.l->n; i++) {
        const char *src = field(cases.u.l->items[i], "template").u.s->s;
        tv want = field(expected.u.l->items[i], "output");
        tv want_err = field(expected.u.l->items[i], "error");
        hearth_error err = {0};
        char *out = render_simple(src, &err);
        if (want.type == TV_STR) {
            bool ok = out && strcmp(out, want.u.s->s) == 0;
            CHECK_MSG(ok, "unit case %zu %s: got [%s] (%s), want [%s]", i, src, out ? out : "error",
                      out ? "" : err.message, want.u.s->s);
            same += ok;
        } else {
            CHECK_MSG(!out, "unit case %zu %s: rendered [%s], jinja2 raised %s", i, src, out ? out : "",
                      want_err.type == TV_STR ? want_err.u.s->s : "?");
            same += !out;
        }
        free(out);
    }
    printf("feature cases: %zu of %zu agree with jinja2\n", same, cases.u.l->n);
    tpl_arena_free(&fc.arena);
    tpl_arena_free(&fe.arena);
}

/* The conversation's messages, tools and variables as JSON text. */
static __attribute__((noinline)) bool case_inputs(fixture *fx, tv conv, char **messages, char **tools_json,
                                                  char **vars_json)
{
    if (setjmp(fx->jump))
        return false;
    tv tools = field(conv, "tools"), vars = field(conv, "vars");
    *messages = to_json(fx, field(conv, "messages"));
    *tools_json = tools.type == TV_UNDEF ? NULL : to_json(fx, tools);
    *vars_json = vars.type == TV_UNDEF ? NULL : to_json(fx, vars);
    return true;
}

/* One golden case; true when we agree with jinja2. */
static bool run_case(const char *templates_dir, char **cols)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.jinja", templates_dir, cols[0]);
    size_t src_len = 0;
    char *src = test_read_file(path, &src_len);
    CHECK_MSG(src != NULL, "cannot read %s", path);
    snprintf(path, sizeof path, TEMPLATE_FIXTURES "/conversations/%s.json", cols[1]);
    fixture fx;
    tv conv;
    bool loaded = fixture_load(&fx, path, &conv);
    CHECK_MSG(loaded, "cannot read %s", path);
    snprintf(path, sizeof path, TEMPLATE_FIXTURES "/expected/%s/%s.gp%s.%s", cols[0], cols[1], cols[2], cols[5]);
    size_t want_len = 0;
    char *want = test_read_file(path, &want_len);
    CHECK_MSG(want != NULL, "cannot read %s", path);
    if (!src || !loaded || !want) {
        free(src);
        free(want);
        if (loaded)
            tpl_arena_free(&fx.arena);
        return false;
    }
    char *messages, *tools_json, *vars_json;
    if (!case_inputs(&fx, conv, &messages, &tools_json, &vars_json)) {
        CHECK_MSG(false, "%s: %s", path, fx.c.message);
        free(src);
        free(want);
        tpl_arena_free(&fx.arena);
        return false;
    }
    chat_template_inputs in = {
        .messages_json = messages,
        .messages_len = strlen(messages),
        .tools_json = tools_json,
        .tools_len = tools_json ? strlen(tools_json) : 0,
        .extra_json = vars_json,
        .extra_len = vars_json ? strlen(vars_json) : 0,
        .add_generation_prompt = cols[2][0] == '1',
        .bos_token = strcmp(cols[3], "-") ? cols[3] : NULL,
        .eos_token = strcmp(cols[4], "-") ? cols[4] : NULL,
        .now = FIXED_NOW,
    };
    hearth_error err = {0};
    char *out = render(src, src_len, &in, &err);
    bool ok;
    if (strcmp(cols[5], "txt") == 0) {
        ok = out && strlen(out) == want_len && memcmp(out, want, want_len) == 0;
        CHECK_MSG(ok, "%s over %s (gp %s): %s", cols[0], cols[1], cols[2],
                  out ? "output differs from jinja2's" : err.message);
        if (!ok && out && getenv("HEARTH_TEMPLATE_DIFF"))
            fprintf(stderr, "--- got\n%s\n--- want\n%s\n---\n", out, want);
    } else {
        /* jinja2 raised: so must we, with raise_exception's message. */
        const char *msg = strncmp(want, "TemplateError: ", 15) == 0 ? want + 15 : NULL;
        ok = !out && (!msg || strstr(err.message, msg));
        CHECK_MSG(ok, "%s over %s (gp %s): jinja2 raised '%s', we %s '%s'", cols[0], cols[1], cols[2], want,
                  out ? "rendered" : "failed with", out ? "" : err.message);
    }
    free(out);
    free(src);
    free(want);
    tpl_arena_free(&fx.arena);
    return ok;
}

/* cases.tsv: template, conversation, add_generation_prompt, bos, eos, txt|err */
static void test_goldens(const char *templates_dir)
{
    size_t len;
    char *list = test_read_file(TEMPLATE_FIXTURES "/cases.tsv", &len);
    CHECK(list != NULL);
    if (!list)
        return;
    enum { MAX_TEMPLATES = 64 };
    char names[MAX_TEMPLATES][128];
    int total[MAX_TEMPLATES] = {0}, same[MAX_TEMPLATES] = {0}, n_names = 0;
    char *save = NULL;
    for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *cols[6];
        int n = 0;
        for (char *p = line; n < 6; n++) {
            cols[n] = p;
            char *tab = strchr(p, '\t');
            if (!tab) {
                n++;
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        CHECK(n == 6);
        if (n != 6)
            continue;
        int k = 0;
        while (k < n_names && strcmp(names[k], cols[0]) != 0)
            k++;
        if (k == n_names && n_names < MAX_TEMPLATES)
            snprintf(names[n_names++], sizeof names[0], "%s", cols[0]);
        if (k == MAX_TEMPLATES)
            continue;
        total[k]++;

        same[k] += run_case(templates_dir, cols);
    }
    free(list);
    int all = 0, all_same = 0;
    for (int k = 0; k < n_names; k++) {
        printf("  %-45s %3d of %3d identical\n", names[k], same[k], total[k]);
        all += total[k];
        all_same += same[k];
    }
    printf("templates: %d of %d (template, conversation) pairs identical to jinja2\n", all_same, all);
}

static void expect_error(const char *src, const char *needle)
{
    hearth_error err = {0};
    char *out = render_simple(src, &err);
    CHECK_MSG(!out && strstr(err.message, needle), "%s: want an error with '%s', got %s", src, needle,
              out ? out : err.message);
    free(out);
}

static void test_budgets(void)
{
    expect_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion");
    expect_error("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "steps");
    expect_error("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                 "budget");
    expect_error("{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "{% endfor %}{% endfor %}",
                 "output");
    expect_error("{{ 'x' * 100000000 }}", "too long");
    /* Found by fuzz_template: a width of 14 digits overflowed an int (UBSan). */
    expect_error("{{ '%44444444444444s'|format(0) }}", "width or precision too large");
    expect_error("{{ '%.99999999999999s'|format(0) }}", "width or precision too large");
    expect_error("{{ '%1001d'|format(0) }}", "width or precision too large");
    /* Found by fuzz_template: an empty string or list times 10^9 looped 10^9
     * times (no budget is charged for copying nothing). */
    {
        hearth_error empty_err = {0};
        char *empty = render_simple(
            "{{ '' * 333333333 }}|{{ ([] * 1000000000) | length }}|{{ (() * 999999999) | length }}", &empty_err);
        CHECK_MSG(empty && strcmp(empty, "|0|0") == 0, "empty repetition: %s", empty ? empty : empty_err.message);
        free(empty);
    }
    /* Work that allocates nothing is charged by size: comparing, searching
     * and measuring long strings over and over. */
    expect_error("{% set s = 'x' * 1000000 %}{% set t = s ~ '' %}{% set r = range(100000) %}"
                 "{% for i in r %}{% for j in r %}{% if s == t and 'y' in s and s|length %}{% endif %}"
                 "{% endfor %}{% endfor %}",
                 "steps");
    expect_error("{{ raise_exception('stop here') }}", "line 1, column 4: raise_exception: stop here");
    expect_error("\n\n  {{ missing.attr }}", "line 3");
    expect_error("{% for %}", "line 1");

    /* Deep nesting in the template or the JSON is an error, not a crash. */
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, "nested too deeply");

    size_t big = 300000;
    char *nested = malloc(big * 2 + 1);
    for (size_t i = 0; i < big; i++) {
        nested[i] = '[';
        nested[big + i] = ']';
    }
    chat_template_inputs in = {.messages_json = nested, .messages_len = big * 2, .now = FIXED_NOW};
    hearth_error err = {0};
    char *out = render("x", 1, &in, &err);
    CHECK_MSG(!out && strstr(err.message, "nested too deeply"), "%s", err.message);
    free(out);
    free(nested);

    static const char *const bad_json[] = {
        "[", "[1,]", "{\"a\" 1}", "[\"\\ud800\"]", "[\"\\udc00x\"]", "[\"\xff\"]", "[1] x", "[99999999999999999999]",
        "[\"a\x01\"]", "",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        chat_template_inputs bad = {.messages_json = bad_json[i], .messages_len = strlen(bad_json[i])};
        out = render("x", 1, &bad, &err);
        CHECK_MSG(!out && err.status == HEARTH_ERR_ARG, "bad JSON %zu accepted", i);
        free(out);
    }

    /* Special tokens in message text stay text: the template prints them, the
     * tokenizer (not the template) decides what is a control token. */
    static const char msg[] = "[{\"role\": \"user\", \"content\": \"<|im_start|>system\"}]";
    chat_template_inputs in2 = {.messages_json = msg, .messages_len = strlen(msg), .now = FIXED_NOW};
    out = render("{{ messages[0].content }}", 25, &in2, &err);
    CHECK(out && strcmp(out, "<|im_start|>system") == 0);
    free(out);
}

/* The Gemma template for files that ship none: Gemma 3's turns, the system
 * text before the first user turn; and the same as Gemma 2's published
 * template where that one applies (no system message). */
static void test_fallback(const char *templates_dir)
{
    CHECK(chat_template_fallback("llama") == NULL && chat_template_fallback(NULL) == NULL);
    const char *src = chat_template_fallback("gemma3");
    CHECK(src && chat_template_fallback("gemma2") == src);
    if (!src)
        return;
    static const char with_system[] =
        "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \" Hi \"},"
        " {\"role\": \"assistant\", \"content\": \"Hello!\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Bye\"}]}]";
    hearth_error err = {0};
    chat_template_inputs in = {.messages_json = with_system, .messages_len = strlen(with_system),
                               .add_generation_prompt = true, .bos_token = "<bos>", .now = FIXED_NOW};
    char *out = render(src, strlen(src), &in, &err);
    CHECK_MSG(out && strcmp(out, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                                 "<start_of_turn>model\nHello!<end_of_turn>\n"
                                 "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n") == 0,
              "gemma fallback: %s", out ? out : err.message);
    free(out);

    char path[4096];
    snprintf(path, sizeof path, "%s/google-gemma-2-2b-it.jinja", templates_dir);
    size_t len = 0;
    char *gemma2 = test_read_file(path, &len);
    if (!gemma2)
        return;
    static const char turns[] = "[{\"role\": \"user\", \"content\": \"What is 2+2?\\n\"},"
                                " {\"role\": \"assistant\", \"content\": \"4\"}, {\"role\": \"user\", \"content\": \"And 3+3?\"}]";
    for (int gen = 0; gen < 2; gen++) {
        in = (chat_template_inputs){.messages_json = turns, .messages_len = strlen(turns),
                                    .add_generation_prompt = gen, .bos_token = "<bos>", .now = FIXED_NOW};
        char *ours = render(src, strlen(src), &in, &err), *theirs = render(gemma2, len, &in, &err);
        CHECK_MSG(ours && theirs && strcmp(ours, theirs) == 0, "gemma fallback vs Gemma 2's template:\n%s\n%s",
                  ours ? ours : "(error)", theirs ? theirs : err.message);
        free(ours);
        free(theirs);
    }
    free(gemma2);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    test_unit_cases();
    test_budgets();
    test_fallback(HEARTH_SHARED_DATA_DIR "/templates");
    const char *dir = HEARTH_SHARED_DATA_DIR "/templates";
    DIR *d = opendir(dir);
    if (!d) {
        test_finish("test_template");
        TEST_SKIP("%s not found: the golden template comparisons need the shared templates", dir);
    }
    closedir(d);
    test_goldens(dir);
    return test_finish("test_template");
}

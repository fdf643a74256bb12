/* hearth chat: a conversation with the model through its own chat template.
 *
 * Each turn renders the whole conversation with the template (the GGUF's
 * tokenizer.chat_template, or --template), tokenizes it, keeps the longest
 * prefix the session already holds and evaluates only the rest: a turn
 * costs its new tokens, not the history. Interactive on a terminal (line
 * editing and history by libedit, Ctrl-C stops the reply being written);
 * otherwise one message per input line and the replies on stdout. */
#include "cli.h"

#include "base/clock.h"
#include "base/paths.h"
#include "base/utf8.h"
#include "runtime/generate.h"
#include "text/chat_prompt.h"

#include <cJSON.h>
#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char chat_usage[] =
    "usage: hearth chat [-m FILE] [options]\n"
    "\n"
    "Talks with the model, formatting the conversation with its chat template.\n"
    "On a terminal: type a message and Enter; Ctrl-C stops a reply, Ctrl-D ends.\n"
    "Otherwise each line of standard input is a message, and each reply is\n"
    "written to standard output, followed by an empty line.\n"
    "\n"
    "commands (at the start of a message):\n"
    "  /system TEXT             set the system prompt (the conversation restarts)\n"
    "  /clear                   forget the conversation (the system prompt stays)\n"
    "  /save FILE               write the conversation as JSON (OpenAI's messages)\n"
    "  /load FILE               read a conversation written by /save\n"
    "  /help                    list the commands\n"
    "\n"
    "options:\n"
    "  -m, --model FILE         GGUF model (default: the model scripts/setup.sh\n"
    "                           installs, or $HEARTH_MODEL)\n"
    "  --system TEXT            system prompt\n"
    "  --template FILE          a Jinja2 chat template instead of the model's\n"
    "  -n, --n-predict N        tokens per reply at most (default -1: until the\n"
    "                           model ends its turn or the context is full)\n"
    "  -c, --ctx-size N         context size in tokens (default: the model's, at\n"
    "                           most 4096)\n"
    "  -t, --threads N          threads (default: physical cores)\n" CLI_KV_TYPE_USAGE CLI_PREFIX_CACHE_USAGE CLI_SAMPLER_USAGE
    "  -v, --verbose            after each reply, the tokens of the turn on stderr:\n"
    "                           the prompt, how many were already in the context,\n"
    "                           how many were evaluated, and the speeds\n"
    "  -h, --help               show this help\n";

#define usage_error(...) cli_usage_error("chat", chat_usage, __VA_ARGS__)

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct chat {
    const model *m;
    session *s;
    sampler *smp;
    chat_template *tmpl;
    char *bos, *eos;  /* the special tokens' texts, for the template */
    cJSON *messages;  /* OpenAI's shape: [{"role": ..., "content": ...}] */
    char *system;     /* NULL: none */
    int32_t n_predict;
    bool verbose;
    int turn;
    /* The reply being generated. */
    char *reply;
    size_t reply_len, reply_cap;
} chat;

static char *token_text(const vocab *v, int32_t id)
{
    if (id < 0 || id >= vocab_size(v))
        return NULL;
    gguf_string t = vocab_token_text(v, id);
    char *s = malloc(t.len + 1);
    if (s) {
        memcpy(s, t.data, t.len);
        s[t.len] = '\0';
    }
    return s;
}

static bool add_message(cJSON *messages, const char *role, const char *content)
{
    cJSON *msg = cJSON_CreateObject();
    if (!msg || !cJSON_AddStringToObject(msg, "role", role) || !cJSON_AddStringToObject(msg, "content", content)) {
        cJSON_Delete(msg);
        return false;
    }
    return cJSON_AddItemToArray(messages, msg);
}

/* The reply as conversation text: bytes that are not UTF-8 (a model may end
 * mid-character, or emit stray bytes) become U+FFFD, as a decoder with
 * errors="replace" does, since messages must be valid JSON strings. */
static char *valid_utf8(const char *text, size_t len)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    char *out = malloc(len * 3 + 1), *o = out;
    for (size_t i = 0; out && i < len;) {
        uint32_t cp;
        size_t n = utf8_decode((const uint8_t *)text + i, len - i, &cp);
        if (n == 0) {
            memcpy(o, replacement, 3), o += 3, i++;
        } else {
            memcpy(o, text + i, n), o += n, i += n;
        }
    }
    if (out)
        *o = '\0';
    return out;
}

/* The conversation restarts: just the system prompt, if any. */
static bool restart(chat *c)
{
    cJSON_Delete(c->messages);
    c->messages = cJSON_CreateArray();
    return c->messages && (!c->system || add_message(c->messages, "system", c->system));
}

static bool emit_reply(void *user, const char *text, size_t len)
{
    chat *c = user;
    if (interrupted)
        return false;
    if (c->reply_len + len + 1 > c->reply_cap) {
        size_t cap = (c->reply_len + len + 1) * 2;
        char *grown = realloc(c->reply, cap);
        if (!grown)
            return false;
        c->reply = grown, c->reply_cap = cap;
    }
    memcpy(c->reply + c->reply_len, text, len);
    c->reply_len += len;
    c->reply[c->reply_len] = '\0';
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !ferror(stdout);
}

/* One user message: render, evaluate what is new, generate, and keep the
 * reply in the conversation. False only when the session can go no further. */
static bool take_turn(chat *c, const char *text)
{
    const vocab *v = model_vocab(c->m);
    if (!add_message(c->messages, "user", text)) {
        fprintf(stderr, "hearth chat: out of memory\n");
        return false;
    }
    int32_t *tokens = NULL;
    int64_t n = -1;
    hearth_error err = {0};
    char *json = cJSON_PrintUnformatted(c->messages);
    if (json) {
        chat_template_inputs in = {
            .messages_json = json, .messages_len = strlen(json), .add_generation_prompt = true,
            .bos_token = c->bos, .eos_token = c->eos, .now = -1,
        };
        if (chat_prompt_tokenize(c->tmpl, v, &in, &tokens, &n, &err) != HEARTH_OK)
            fprintf(stderr, "hearth chat: %s\n", err.message);
        else if (n == 0)
            fprintf(stderr, "hearth chat: the template rendered nothing\n");
        free(json);
    } else {
        fprintf(stderr, "hearth chat: out of memory\n");
    }
    if (!tokens || n >= session_n_ctx(c->s)) {
        if (tokens)
            fprintf(stderr, "hearth chat: the conversation is %lld tokens, the context %d: /clear, or a larger -c\n",
                    (long long)n, session_n_ctx(c->s));
        /* The message is not part of the conversation after all. */
        cJSON_DeleteItemFromArray(c->messages, cJSON_GetArraySize(c->messages) - 1);
        free(tokens);
        return true;
    }

    int32_t kept = session_keep_common_prefix(c->s, tokens, (int32_t)n);
    generate_params gp = {.n_predict = c->n_predict};
    generate_stats stats;
    c->reply_len = 0;
    if (c->reply)
        c->reply[0] = '\0';
    interrupted = 0;
    hearth_status st =
        generate_run(c->s, c->smp, v, tokens + kept, (int32_t)n - kept, &gp, emit_reply, c, &stats, &err);
    free(tokens);
    printf("\n");
    if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))
        printf("\n");
    fflush(stdout);
    if (st != HEARTH_OK) {
        fprintf(stderr, "hearth chat: %s\n", err.message);
        return false;
    }
    c->turn++;
    if (c->verbose)
        fprintf(stderr,
                "[turn %d: prompt %lld tokens, %d already in the context, %d evaluated (%.1f t/s); %d generated "
                "(%.1f t/s); %s]\n",
                c->turn, (long long)n, kept, stats.n_prompt,
                stats.prompt_seconds > 0 ? stats.n_prompt / stats.prompt_seconds : 0.0, stats.n_generated,
                stats.generate_seconds > 0 ? stats.n_generated / stats.generate_seconds : 0.0,
                generate_finish_name(stats.finish));
    if (stats.finish == GENERATE_FINISH_CANCELLED)
        fprintf(stderr, "[stopped]\n");
    char *reply = valid_utf8(c->reply ? c->reply : "", c->reply_len);
    bool added = reply && add_message(c->messages, "assistant", reply);
    free(reply);
    if (!added)
        fprintf(stderr, "hearth chat: out of memory\n");
    return added;
}

static void save(const chat *c, const char *path)
{
    char *json = cJSON_Print(c->messages);
    FILE *f = json ? fopen(path, "w") : NULL;
    bool ok = f && fputs(json, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok)
        fprintf(stderr, "[saved %d messages to %s]\n", cJSON_GetArraySize(c->messages), path);
    else
        fprintf(stderr, "hearth chat: /save %s: %s\n", path, json ? strerror(errno) : "out of memory");
    free(json);
}

/* A conversation as /save writes it (or an object holding it as "messages"):
 * each message needs a string role and a string content. */
static void load(chat *c, const char *path)
{
    size_t len;
    char why[512];
    char *text = cli_read_all(path, &len, why, sizeof why);
    if (!text) {
        fprintf(stderr, "hearth chat: /load: %s\n", why);
        return;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *messages = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "messages") : root;
    const char *problem = cJSON_IsArray(messages) ? NULL : "not a JSON array of messages";
    const cJSON *list = problem ? NULL : messages, *msg;
    cJSON_ArrayForEach(msg, list)
    {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "role")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "content")))
            problem = "a message without a string role and content";
    }
    if (problem) {
        fprintf(stderr, "hearth chat: /load %s: %s\n", path, problem);
        cJSON_Delete(root);
        return;
    }
    cJSON *copy = cJSON_Duplicate(messages, true);
    cJSON_Delete(root);
    if (!copy) {
        fprintf(stderr, "hearth chat: out of memory\n");
        return;
    }
    cJSON_Delete(c->messages);
    c->messages = copy;
    fprintf(stderr, "[loaded %d messages from %s]\n", cJSON_GetArraySize(copy), path);
}

/* A line starting with '/': true if it was a command (handled here). */
static bool command(chat *c, const char *line)
{
    static const char help[] = "commands: /system TEXT, /clear, /save FILE, /load FILE, /help\n";
    const char *arg = strchr(line, ' ');
    size_t name_len = arg ? (size_t)(arg - line) : strlen(line);
    while (arg && *arg == ' ')
        arg++;
#define IS(name) (name_len == strlen(name) && strncmp(line, name, name_len) == 0)
    if (IS("/help")) {
        fputs(help, stderr);
    } else if (IS("/clear")) {
        restart(c);
        fprintf(stderr, "[conversation cleared]\n");
    } else if (IS("/system")) {
        free(c->system);
        c->system = arg && *arg ? strdup(arg) : NULL;
        restart(c);
        fprintf(stderr, c->system ? "[system prompt set; conversation restarted]\n" : "[no system prompt]\n");
    } else if (IS("/save") || IS("/load")) {
        if (!arg || !*arg)
            fprintf(stderr, "hearth chat: %.*s needs a file name\n", (int)name_len, line);
        else if (IS("/save"))
            save(c, arg);
        else
            load(c, arg);
    } else {
        return false;
    }
#undef IS
    return true;
}

/* One line of input, without its newline, and its length in *len (a line
 * read from a pipe may hold NUL bytes); NULL at the end of input. */
static char *read_message(bool interactive, bool *cancelled, size_t *len)
{
    *cancelled = false;
    if (interactive) {
        interrupted = 0;
        char *line = readline("> ");
        if (!line && interrupted) {
            *cancelled = true;
            return NULL;
        }
        if (line && *line)
            add_history(line);
        *len = line ? strlen(line) : 0;
        return line;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got = getline(&line, &cap, stdin);
    if (got < 0) {
        free(line);
        return NULL;
    }
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
        line[--got] = '\0';
    *len = (size_t)got;
    return line;
}

/* A message becomes a JSON string in the conversation: a NUL byte would cut
 * it short unseen, and bytes that are not UTF-8 would make the template
 * refuse the whole conversation. Such a line is refused, saying why, and the
 * conversation goes on without it. */
static bool message_is_text(const char *line, size_t len)
{
    size_t nul = strlen(line), bad = utf8_first_invalid((const uint8_t *)line, len);
    if (nul < len)
        fprintf(stderr, "hearth chat: the message has a NUL byte at byte %zu; not sent\n", nul);
    else if (bad < len)
        fprintf(stderr, "hearth chat: the message is not valid UTF-8 at byte %zu of %zu; not sent\n", bad, len);
    return nul == len && bad == len;
}

static bool takes_value(const char *arg)
{
    static const char *const options[] = {"-m", "--model", "--system", "--template"};
    for (size_t i = 0; i < sizeof options / sizeof *options; i++)
        if (strcmp(arg, options[i]) == 0)
            return true;
    return false;
}

int cli_chat(int argc, char **argv)
{
    const char *model_path = NULL, *system = NULL, *template_path = NULL;
    cli_generation_options gen = {.n_predict = -1};
    bool verbose = false;
    sampler_params sp = sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int option_rc = cli_sampler_option("chat", chat_usage, argc, argv, &i, &sp);
        if (option_rc < 0)
            option_rc = cli_generation_option("chat", chat_usage, argc, argv, &i, &gen);
        if (option_rc >= 0) {
            if (option_rc != CLI_EXIT_OK)
                return option_rc;
        } else if (cli_is_option(a, "-h", "--help")) {
            fputs(chat_usage, stdout);
            return CLI_EXIT_OK;
        } else if (cli_is_option(a, "-v", "--verbose")) {
            verbose = true;
        } else if (takes_value(a) && i + 1 >= argc) {
            return usage_error("%s needs a value", a);
        } else if (cli_is_option(a, "-m", "--model")) {
            model_path = argv[++i];
        } else if (cli_is_option(a, "--system", NULL)) {
            system = argv[++i];
        } else if (cli_is_option(a, "--template", NULL)) {
            template_path = argv[++i];
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    char default_model[4096];
    if (!model_path && !(model_path = cli_default_model(default_model, sizeof default_model, "chat")))
        return CLI_EXIT_USAGE;

    int rc = CLI_EXIT_FAILURE;
    hearth_error err = {0};
    model *m = NULL;
    threadpool *pool = NULL;
    chat c = {.n_predict = (int32_t)gen.n_predict, .verbose = verbose};
    prefix_cache_params cache;
    char cache_dir[4096];
    if (model_load(model_path, &m, &err) != HEARTH_OK ||
        threadpool_create(gen.n_threads ? (int)gen.n_threads : threadpool_default_threads(), &pool, &err) != HEARTH_OK ||
        session_create(m, pool,
                       &(session_params){.n_ctx = (int32_t)gen.n_ctx,
                                         .kv_type = gen.kv_type,
                                         .prefix_cache = cli_prefix_cache_params(&gen, (size_t)1 << 30, &cache,
                                                                                 cache_dir, sizeof cache_dir)},
                       &c.s,
                       &err) != HEARTH_OK ||
        sampler_create(&sp, model_n_vocab(m), &c.smp, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth chat: %s\n", err.message);
        goto done;
    }
    c.m = m;
    if (!(c.tmpl = cli_load_chat_template("chat", m, model_path, template_path, NULL)))
        goto done;
    const vocab *v = model_vocab(m);
    c.bos = token_text(v, vocab_bos(v));
    c.eos = token_text(v, vocab_eos(v));
    c.system = system ? strdup(system) : NULL;
    if (!restart(&c)) {
        fprintf(stderr, "hearth chat: out of memory\n");
        goto done;
    }

    bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    char history[4096] = "";
    if (interactive) {
        /* Without SA_RESTART: Ctrl-C ends the wait for input or stops a reply. */
        struct sigaction sa = {.sa_handler = on_sigint};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        char dir[4000];
        if (paths_models_dir(dir, sizeof dir)) {
            snprintf(history, sizeof history, "%s/../chat_history", dir);
            read_history(history);
        }
        fprintf(stderr, "hearth chat: %s, context %d tokens. /help for commands, Ctrl-D to end.\n", model_path,
                session_n_ctx(c.s));
    }
    rc = CLI_EXIT_OK;
    for (;;) {
        bool cancelled;
        size_t len;
        char *line = read_message(interactive, &cancelled, &len);
        if (!line) {
            if (cancelled) {
                printf("\n");
                continue;
            }
            break;
        }
        bool ok = true;
        if (line[0] == '/' && command(&c, line)) {
            /* handled */
        } else if (len > 0 && message_is_text(line, len)) {
            ok = take_turn(&c, line);
        }
        free(line);
        if (!ok) {
            rc = CLI_EXIT_FAILURE;
            break;
        }
    }
    if (interactive) {
        printf("\n");
        if (history[0])
            write_history(history);
    }
done:
    free(c.reply);
    free(c.system);
    free(c.bos);
    free(c.eos);
    cJSON_Delete(c.messages);
    chat_template_free(c.tmpl);
    sampler_free(c.smp);
    session_free(c.s);
    threadpool_free(pool);
    model_free(m);
    return rc;
}

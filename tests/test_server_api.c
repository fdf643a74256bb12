/* The server's JSON layer: every validation rule of api_parse_request and
 * friends on good and bad bodies (status, param, message), and every
 * formatter's output parsed back with cJSON and checked field by field. */
#include "server/api.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#define N_VOCAB 1000
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static bool parse_len(api_kind kind, const char *body, size_t len, api_request *r, api_error *e)
{
    memset(e, 0, sizeof *e);
    return api_parse_request(kind, body, len, N_VOCAB, r, e);
}

/* A body that must be refused: 400, invalid_request_error, the param named,
 * and (when given) a part of the message. */
static void bad_len(int line, api_kind kind, const char *body, size_t len, const char *param, const char *part)
{
    api_request r;
    api_error e;
    bool ok = parse_len(kind, body, len, &r, &e);
    CHECK_MSG(!ok, "line %d: accepted %.80s", line, body);
    CHECK_MSG(e.http_status == 400, "line %d: status %d", line, e.http_status);
    CHECK_MSG(e.type && strcmp(e.type, "invalid_request_error") == 0, "line %d: type %s", line, e.type);
    CHECK_MSG(strcmp(e.param, param) == 0, "line %d: param \"%s\", expected \"%s\" (%s)", line, e.param, param,
              e.message);
    CHECK_MSG(!part || strstr(e.message, part), "line %d: message \"%s\" lacks \"%s\"", line, e.message, part);
    CHECK_MSG(r.model == NULL && r.messages_json == NULL && r.prompt == NULL && r.n_stops == 0,
              "line %d: output not left empty", line);
    api_request_free(&r);
}
#define BAD(kind, body, param, part) bad_len(__LINE__, kind, body, strlen(body), param, part)
#define BAD_CHAT(fields, param, part) BAD(API_CHAT, "{" MSG "," fields "}", param, part)

static bool good(int line, api_kind kind, const char *body, api_request *r)
{
    api_error e;
    bool ok = parse_len(kind, body, strlen(body), r, &e);
    CHECK_MSG(ok, "line %d: refused %.80s: %s (%s)", line, body, e.message, e.param);
    return ok;
}
#define GOOD(kind, body, r) good(__LINE__, kind, body, r)

static void test_json_errors(void)
{
    BAD(API_CHAT, "", "", "invalid JSON");
    BAD(API_CHAT, "{", "", "invalid JSON");
    BAD(API_CHAT, "{\"messages\": [}", "", "invalid JSON");
    BAD(API_CHAT, "{" MSG "} x", "", "after the value");
    BAD(API_CHAT, "{" MSG "}{}", "", "after the value");
    BAD(API_CHAT, "[]", "", "JSON object");
    BAD(API_CHAT, "\"hi\"", "", "JSON object");
    BAD(API_CHAT, "null", "", "JSON object");
    BAD(API_COMPLETION, "42", "", "JSON object");
    /* A body longer than its length: only len bytes count. */
    const char *body = "{" MSG "}garbage";
    api_request r;
    api_error e;
    CHECK(parse_len(API_CHAT, body, strlen(body) - 7, &r, &e));
    api_request_free(&r);
    /* Trailing whitespace is fine. */
    CHECK(GOOD(API_CHAT, "  {" MSG "}\r\n\t ", &r));
    api_request_free(&r);

    /* Deep nesting: a clean 400, no recursion. */
    size_t n = 100000;
    char *deep = malloc(2 * n + 64);
    memset(deep, '[', n);
    bad_len(__LINE__, API_CHAT, deep, n, "", "nested deeper");
    free(deep);
    deep = malloc(6 * n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
    {
        memcpy(deep + o, "{\"a\":", 5);
        o += 5;
    }
    bad_len(__LINE__, API_COMPLETION, deep, o, "", "nested deeper");
    free(deep);
    /* Nesting at the limit is fine: messages[0].content[0] inside tools' schema. */
    char ok_deep[8 * API_MAX_DEPTH + 256];
    o = (size_t)sprintf(ok_deep, "{" MSG ",\"chat_template_kwargs\":");
    for (int i = 0; i < API_MAX_DEPTH - 1; i++)
        o += (size_t)sprintf(ok_deep + o, "{\"a\":");
    o += (size_t)sprintf(ok_deep + o, "1");
    for (int i = 0; i < API_MAX_DEPTH; i++)
        ok_deep[o++] = '}';
    ok_deep[o] = '\0';
    CHECK(GOOD(API_CHAT, ok_deep, &r));
    api_request_free(&r);
    /* Brackets inside strings do not count. */
    char brackets[600];
    sprintf(brackets, "{\"prompt\":\"%s\"}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    CHECK(GOOD(API_COMPLETION, brackets, &r));
    api_request_free(&r);
}

static void test_chat_defaults(void)
{
    api_request r;
    if (!GOOD(API_CHAT, "{" MSG "}", &r))
        return;
    sampler_params d = sampler_default_params();
    CHECK(r.kind == API_CHAT);
    CHECK(r.model == NULL);
    CHECK(r.messages_json && strcmp(r.messages_json, "[{\"role\":\"user\",\"content\":\"hi\"}]") == 0);
    CHECK(r.tools_json == NULL && r.template_kwargs_json == NULL && r.prompt == NULL);
    CHECK(!r.stream && !r.include_usage && r.max_tokens == -1 && !r.seed_given);
    CHECK(r.sampling.temperature == d.temperature && r.sampling.top_k == d.top_k && r.sampling.top_p == d.top_p);
    CHECK(r.sampling.min_p == d.min_p && r.sampling.repeat_penalty == d.repeat_penalty);
    CHECK(r.sampling.seed == d.seed && r.sampling.repeat_last_n == d.repeat_last_n);
    CHECK(r.n_stops == 0 && !r.logprobs && r.top_logprobs == 0 && !r.echo && !r.ignore_eos);
    api_request_free(&r);
    CHECK(r.messages_json == NULL);
    api_request_free(&r); /* twice is fine */
}

static void test_chat_fields(void)
{
    api_request r;
    const char *body =
        "{\"model\":\"gemma\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"caf\\u00e9 \xf0\x9f\xa6\x99\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"content\":\"ok\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"chat_template_kwargs\":{\"enable_thinking\":false},\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"max_tokens\":10,\"temperature\":0.5,\"top_p\":0.9,"
        "\"top_k\":1000,\"min_p\":0.1,\"presence_penalty\":-2,\"frequency_penalty\":2,\"repeat_penalty\":1.1,"
        "\"repeat_last_n\":-1,\"seed\":1234,\"stop\":[\"\\n\\n\",\"END\"],\"n\":1,\"logprobs\":true,"
        "\"top_logprobs\":20,\"unknown\":{\"x\":[1,2]},\"user\":\"me\"}";
    if (!GOOD(API_CHAT, body, &r))
        return;
    CHECK(r.model && strcmp(r.model, "gemma") == 0);
    CHECK(r.messages_json && strstr(r.messages_json, "caf\xc3\xa9 \xf0\x9f\xa6\x99"));
    CHECK(r.messages_json && strstr(r.messages_json, "\"tool_calls\":[{"));
    CHECK(r.tools_json && strcmp(r.tools_json, "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                                               "{\"type\":\"object\"}}}]") == 0);
    CHECK(r.template_kwargs_json && strcmp(r.template_kwargs_json, "{\"enable_thinking\":false}") == 0);
    CHECK(r.stream && r.include_usage && r.max_tokens == 10);
    CHECK(r.sampling.temperature == 0.5f && r.sampling.top_p == 0.9f && r.sampling.top_k == 1000);
    CHECK(r.sampling.min_p == 0.1f && r.sampling.presence_penalty == -2.0f && r.sampling.frequency_penalty == 2.0f);
    CHECK(r.sampling.repeat_penalty == 1.1f && r.sampling.repeat_last_n == -1);
    CHECK(r.seed_given && r.sampling.seed == 1234);
    CHECK(r.n_stops == 2 && strcmp(r.stops[0], "\n\n") == 0 && strcmp(r.stops[1], "END") == 0);
    CHECK(r.logprobs && r.top_logprobs == 20);
    api_request_free(&r);

    if (GOOD(API_COMPLETION, "{\"prompt\":\"a\",\"ignore_eos\":true}", &r))
        CHECK(r.ignore_eos);
    api_request_free(&r);
    BAD_CHAT("\"ignore_eos\":1", "ignore_eos", "true or false");

    /* max_completion_tokens wins over max_tokens, in either order. */
    if (GOOD(API_CHAT, "{" MSG ",\"max_tokens\":5,\"max_completion_tokens\":7}", &r))
        CHECK(r.max_tokens == 7);
    api_request_free(&r);
    if (GOOD(API_CHAT, "{\"max_completion_tokens\":7," MSG ",\"max_tokens\":5}", &r))
        CHECK(r.max_tokens == 7);
    api_request_free(&r);
    if (GOOD(API_CHAT, "{" MSG ",\"max_tokens\":5,\"max_completion_tokens\":null}", &r))
        CHECK(r.max_tokens == 5);
    api_request_free(&r);
    /* Huge limits are clipped (the caller clips to the context). 1e2 is an integer. */
    if (GOOD(API_CHAT, "{" MSG ",\"max_tokens\":1e300}", &r))
        CHECK(r.max_tokens == INT32_MAX);
    api_request_free(&r);
    if (GOOD(API_CHAT, "{" MSG ",\"max_tokens\":1e2}", &r))
        CHECK(r.max_tokens == 100);
    api_request_free(&r);

    /* stop as one string; null fields mean absent. */
    if (GOOD(API_CHAT, "{" MSG ",\"stop\":\"###\",\"temperature\":null,\"seed\":null,\"tools\":null}", &r)) {
        CHECK(r.n_stops == 1 && strcmp(r.stops[0], "###") == 0);
        CHECK(r.sampling.temperature == sampler_default_params().temperature && !r.seed_given && !r.tools_json);
    }
    api_request_free(&r);
    if (GOOD(API_CHAT, "{" MSG ",\"stop\":[],\"tools\":[]}", &r))
        CHECK(r.n_stops == 0 && r.tools_json == NULL);
    api_request_free(&r);
    /* seed -1: random (the caller picks); 0 and large seeds are seeds. */
    if (GOOD(API_CHAT, "{" MSG ",\"seed\":-1}", &r))
        CHECK(!r.seed_given);
    api_request_free(&r);
    if (GOOD(API_CHAT, "{" MSG ",\"seed\":0}", &r))
        CHECK(r.seed_given && r.sampling.seed == 0);
    api_request_free(&r);
    if (GOOD(API_CHAT, "{" MSG ",\"seed\":9007199254740992}", &r))
        CHECK(r.seed_given && r.sampling.seed == 9007199254740992ull);
    api_request_free(&r);
    /* Boundaries that are allowed. */
    if (GOOD(API_CHAT, "{" MSG ",\"temperature\":0,\"top_p\":0,\"top_k\":0,\"min_p\":1,\"repeat_last_n\":65536,"
                       "\"logprobs\":false,\"max_tokens\":1}", &r)) {
        CHECK(r.sampling.temperature == 0.0f && r.sampling.top_p == 0.0f && r.sampling.top_k == 0);
        CHECK(r.sampling.min_p == 1.0f && r.max_tokens == 1 && r.sampling.repeat_last_n == 65536);
    }
    api_request_free(&r);
    /* A stop string of exactly 128 bytes; 4 strings. */
    char body2[512];
    char s128[129];
    memset(s128, 'x', 128);
    s128[128] = '\0';
    snprintf(body2, sizeof body2, "{" MSG ",\"stop\":[\"a\",\"b\",\"c\",\"%s\"]}", s128);
    if (GOOD(API_CHAT, body2, &r))
        CHECK(r.n_stops == 4 && strlen(r.stops[3]) == 128);
    api_request_free(&r);
    /* A message may omit content (an assistant turn with only tool calls). */
    if (GOOD(API_CHAT, "{\"messages\":[{\"role\":\"assistant\"}]}", &r))
        CHECK(strcmp(r.messages_json, "[{\"role\":\"assistant\"}]") == 0);
    api_request_free(&r);
}

static void test_chat_errors(void)
{
    /* messages */
    BAD(API_CHAT, "{}", "messages", "missing");
    BAD(API_CHAT, "{\"messages\":null}", "messages", "missing");
    BAD(API_CHAT, "{\"messages\":[]}", "messages", "at least one");
    BAD(API_CHAT, "{\"messages\":{}}", "messages", "array");
    BAD(API_CHAT, "{\"messages\":\"hi\"}", "messages", "got a string");
    BAD(API_CHAT, "{\"messages\":[\"hi\"]}", "messages[0]", "object");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"content\":\"b\"}]}", "messages[1].role",
        "missing");
    BAD(API_CHAT, "{\"messages\":[{\"role\":1,\"content\":\"a\"}]}", "messages[0].role", "string");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"\",\"content\":\"a\"}]}", "messages[0].role", "empty");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":1}]}", "messages[0].content", "got a number");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":{}}]}", "messages[0].content", "got an object");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[1]}]}", "messages[0].content[0]", "object");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", "messages[0].content[0].type",
        "missing");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
        "messages[0].content[0].type", "only \"text\"");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
        "messages[0].content[0].text", "missing");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":[]}]}]}",
        "messages[0].content[0].text", "string");
    /* tools, kwargs */
    BAD_CHAT("\"tools\":{}", "tools", "array");
    BAD_CHAT("\"tools\":[1]", "tools[0]", "object");
    BAD_CHAT("\"chat_template_kwargs\":[]", "chat_template_kwargs", "object");
    /* types: a number as a string is a wrong type */
    BAD_CHAT("\"temperature\":\"0.5\"", "temperature", "got a string");
    BAD_CHAT("\"top_p\":true", "top_p", "got a boolean");
    BAD_CHAT("\"top_k\":\"40\"", "top_k", "integer");
    BAD_CHAT("\"min_p\":[]", "min_p", "number");
    BAD_CHAT("\"stream\":1", "stream", "true or false");
    BAD_CHAT("\"stream\":\"true\"", "stream", "true or false");
    BAD_CHAT("\"stream_options\":true", "stream_options", "object");
    BAD_CHAT("\"stream_options\":{\"include_usage\":1}", "stream_options.include_usage", "true or false");
    BAD_CHAT("\"model\":5", "model", "string");
    BAD_CHAT("\"logprobs\":1", "logprobs", "true or false");
    BAD_CHAT("\"seed\":\"1\"", "seed", "integer");
    /* n */
    BAD_CHAT("\"n\":2", "n", "only n = 1");
    BAD_CHAT("\"n\":0", "n", "only n = 1");
    BAD_CHAT("\"n\":\"1\"", "n", "integer");
    /* ranges */
    BAD_CHAT("\"temperature\":-0.1", "temperature", "from 0 to 100");
    BAD_CHAT("\"temperature\":101", "temperature", "got 101");
    BAD_CHAT("\"temperature\":1e999", "temperature", "from 0 to 100");
    BAD_CHAT("\"temperature\":-1e999", "temperature", NULL);
    BAD_CHAT("\"top_p\":1.5", "top_p", "from 0 to 1");
    BAD_CHAT("\"top_p\":-0.5", "top_p", NULL);
    BAD_CHAT("\"top_k\":-1", "top_k", "from 0 to 1000");
    BAD_CHAT("\"top_k\":1001", "top_k", "got 1001");
    BAD_CHAT("\"top_k\":1.5", "top_k", "integer");
    BAD_CHAT("\"min_p\":2", "min_p", NULL);
    BAD_CHAT("\"presence_penalty\":2.5", "presence_penalty", "from -2 to 2");
    BAD_CHAT("\"frequency_penalty\":-3", "frequency_penalty", "from -2 to 2");
    BAD_CHAT("\"repeat_penalty\":0", "repeat_penalty", "above 0");
    BAD_CHAT("\"repeat_penalty\":-1", "repeat_penalty", NULL);
    BAD_CHAT("\"repeat_penalty\":1e999", "repeat_penalty", NULL);
    BAD_CHAT("\"repeat_last_n\":-2", "repeat_last_n", NULL);
    BAD_CHAT("\"repeat_last_n\":65537", "repeat_last_n", NULL);
    BAD_CHAT("\"seed\":-2", "seed", ">= -1");
    BAD_CHAT("\"seed\":1.5", "seed", "integer");
    BAD_CHAT("\"seed\":1e30", "seed", NULL);
    BAD_CHAT("\"max_tokens\":0", "max_tokens", ">= 1");
    BAD_CHAT("\"max_tokens\":-5", "max_tokens", "got -5");
    BAD_CHAT("\"max_tokens\":2.5", "max_tokens", "integer");
    BAD_CHAT("\"max_tokens\":\"10\"", "max_tokens", "got a string");
    BAD_CHAT("\"max_completion_tokens\":0", "max_completion_tokens", NULL);
    BAD_CHAT("\"max_tokens\":1e999", "max_tokens", NULL);
    /* stop */
    BAD_CHAT("\"stop\":\"\"", "stop", "1 to 128 bytes");
    BAD_CHAT("\"stop\":[\"a\",\"\"]", "stop[1]", "1 to 128 bytes");
    BAD_CHAT("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop", "at most 4");
    BAD_CHAT("\"stop\":[1]", "stop[0]", "string");
    BAD_CHAT("\"stop\":5", "stop", "string or an array");
    char body[512], s129[130];
    memset(s129, 'y', 129);
    s129[129] = '\0';
    snprintf(body, sizeof body, "\"stop\":\"%s\"", s129);
    snprintf(body, sizeof body, "{" MSG ",\"stop\":\"%s\"}", s129);
    BAD(API_CHAT, body, "stop", "got 129");
    /* logprobs */
    BAD_CHAT("\"top_logprobs\":3", "top_logprobs", "logprobs");
    BAD_CHAT("\"logprobs\":false,\"top_logprobs\":3", "top_logprobs", "logprobs");
    BAD_CHAT("\"top_logprobs\":0", "top_logprobs", "logprobs");
    BAD_CHAT("\"logprobs\":true,\"top_logprobs\":21", "top_logprobs", "from 0 to 20");
    BAD_CHAT("\"logprobs\":true,\"top_logprobs\":-1", "top_logprobs", NULL);
}

static void test_utf8_and_nul(void)
{
    /* Invalid UTF-8 in a message, a stop string, a prompt, a key, a tool. */
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\xff\"}]}", "messages", "invalid UTF-8");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}", "messages", "invalid UTF-8");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", "messages", "UTF-8");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", "messages", "UTF-8");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xf4\x90\x80\x80\"}]}", "messages", "UTF-8");
    BAD_CHAT("\"stop\":[\"\xe2\x82\"]", "stop", "invalid UTF-8");
    BAD(API_COMPLETION, "{\"prompt\":\"\xfe\"}", "prompt", "invalid UTF-8");
    BAD(API_COMPLETION, "{\"prompt\":\"ok\",\"k\xff\":1}", "k?", "invalid UTF-8");
    BAD_CHAT("\"tools\":[{\"x\":\"\x80\"}]", "tools", "UTF-8");
    /* Lone surrogates as escapes: cJSON refuses them. */
    BAD(API_COMPLETION, "{\"prompt\":\"\\ud800\"}", "", "invalid JSON");
    BAD(API_COMPLETION, "{\"prompt\":\"\\udc00x\"}", "", "invalid JSON");
    /* A pair is fine. */
    api_request r;
    if (GOOD(API_COMPLETION, "{\"prompt\":\"\\ud83e\\udd99\"}", &r))
        CHECK(r.prompt_len == 4 && memcmp(r.prompt, "\xf0\x9f\xa6\x99", 4) == 0);
    api_request_free(&r);
    /* NUL: escaped or raw, refused rather than cut. */
    BAD(API_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", "prompt", "NUL");
    BAD(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\"}]}", "messages", "NUL");
    BAD_CHAT("\"stop\":\"x\\u0000\"", "stop", "NUL");
    static const char raw_nul[] = "{\"prompt\":\"a\0b\"}";
    bad_len(__LINE__, API_COMPLETION, raw_nul, sizeof raw_nul - 1, "prompt", "NUL");
    /* An escaped backslash before u0000 is text, not NUL. */
    if (GOOD(API_COMPLETION, "{\"prompt\":\"\\\\u0000\"}", &r))
        CHECK(r.prompt_len == 6 && strcmp(r.prompt, "\\u0000") == 0);
    api_request_free(&r);
    /* Escapes of other control characters are fine. */
    if (GOOD(API_COMPLETION, "{\"prompt\":\"\\u0001\\t\"}", &r))
        CHECK(r.prompt_len == 2 && r.prompt[0] == 1 && r.prompt[1] == '\t');
    api_request_free(&r);
}

static void test_completion(void)
{
    api_request r;
    if (GOOD(API_COMPLETION, "{\"prompt\":\"Once upon\",\"max_tokens\":16,\"logprobs\":3,\"echo\":false,"
                             "\"stop\":\"\\n\",\"messages\":5}", &r)) {
        CHECK(r.kind == API_COMPLETION && r.prompt_len == 9 && strcmp(r.prompt, "Once upon") == 0);
        CHECK(r.messages_json == NULL && r.max_tokens == 16 && r.logprobs && r.top_logprobs == 3 && !r.echo);
        CHECK(r.n_stops == 1 && strcmp(r.stops[0], "\n") == 0);
    }
    api_request_free(&r);
    if (GOOD(API_COMPLETION, "{\"prompt\":[\"one\"],\"logprobs\":0}", &r))
        CHECK(strcmp(r.prompt, "one") == 0 && r.logprobs && r.top_logprobs == 0);
    api_request_free(&r);
    if (GOOD(API_COMPLETION, "{\"prompt\":\"\",\"logprobs\":null}", &r))
        CHECK(r.prompt_len == 0 && !r.logprobs);
    api_request_free(&r);
    BAD(API_COMPLETION, "{}", "prompt", "missing");
    BAD(API_COMPLETION, "{\"prompt\":null}", "prompt", "missing");
    BAD(API_COMPLETION, "{\"prompt\":5}", "prompt", "string");
    BAD(API_COMPLETION, "{\"prompt\":[]}", "prompt", "exactly one string");
    BAD(API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "exactly one string");
    BAD(API_COMPLETION, "{\"prompt\":[1,2,3]}", "prompt", "exactly one string");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":6}", "logprobs", "from 0 to 5");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":true}", "logprobs", "integer");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", "echo", "not supported");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"echo\":1}", "echo", "true or false");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"n\":3}", "n", "only n = 1");
    BAD(API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":-1}", "max_tokens", NULL);
}

static void test_tokenize(void)
{
    api_tokenize t;
    api_error e;
    const char *b = "{\"content\":\"Hello <b>\"}";
    CHECK_MSG(api_parse_tokenize(b, strlen(b), &t, &e), "%s", e.message);
    CHECK(t.content && t.len == 9 && strcmp(t.content, "Hello <b>") == 0);
    CHECK(!t.add_special && t.parse_special && !t.with_pieces);
    api_tokenize_free(&t);
    b = "{\"content\":\"\",\"add_special\":true,\"parse_special\":false,\"with_pieces\":true}";
    CHECK(api_parse_tokenize(b, strlen(b), &t, &e));
    CHECK(t.content && t.len == 0 && t.add_special && !t.parse_special && t.with_pieces);
    api_tokenize_free(&t);
    const char *bad[][2] = {
        {"{}", "content"}, {"{\"content\":1}", "content"}, {"{\"content\":\"a\",\"add_special\":1}", "add_special"},
        {"{\"content\":\"a\",\"with_pieces\":\"yes\"}", "with_pieces"}, {"{\"content\":\"\\u0000\"}", "content"},
        {"{\"content\":\"\xff\"}", "content"}, {"[]", ""}, {"{", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        CHECK_MSG(!api_parse_tokenize(bad[i][0], strlen(bad[i][0]), &t, &e), "%s", bad[i][0]);
        CHECK_MSG(e.http_status == 400 && strcmp(e.param, bad[i][1]) == 0, "%s: %d %s", bad[i][0], e.http_status,
                  e.param);
        CHECK(t.content == NULL);
    }

    int32_t *ids = NULL, n = -1;
    b = "{\"tokens\":[0,5,999]}";
    CHECK(api_parse_detokenize(b, strlen(b), N_VOCAB, &ids, &n, &e));
    CHECK(n == 3 && ids && ids[0] == 0 && ids[1] == 5 && ids[2] == 999);
    free(ids);
    b = "{\"tokens\":[]}";
    CHECK(api_parse_detokenize(b, strlen(b), N_VOCAB, &ids, &n, &e) && n == 0 && ids == NULL);
    const char *dbad[][2] = {
        {"{}", "tokens"}, {"{\"tokens\":5}", "tokens"}, {"{\"tokens\":[1,1000]}", "tokens[1]"},
        {"{\"tokens\":[-1]}", "tokens[0]"}, {"{\"tokens\":[1.5]}", "tokens[0]"}, {"{\"tokens\":[\"1\"]}", "tokens[0]"},
        {"{\"tokens\":[1e999]}", "tokens[0]"}, {"{\"tokens\":[[1]]}", "tokens[0]"},
    };
    for (size_t i = 0; i < sizeof dbad / sizeof dbad[0]; i++) {
        memset(&e, 0, sizeof e);
        ids = (int32_t *)1;
        CHECK_MSG(!api_parse_detokenize(dbad[i][0], strlen(dbad[i][0]), N_VOCAB, &ids, &n, &e), "%s", dbad[i][0]);
        CHECK_MSG(e.http_status == 400 && strcmp(e.param, dbad[i][1]) == 0, "%s: %d %s", dbad[i][0], e.http_status,
                  e.param);
        CHECK(ids == NULL && n == 0);
    }
}

/* ---- formatting ---- */

static cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static bool str_is(const cJSON *v, const char *s)
{
    return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0;
}

static bool num_is(const cJSON *v, double x)
{
    return cJSON_IsNumber(v) && v->valuedouble == x;
}

static void test_sanitize(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"abc", 3, "abc"},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
        {"\xff", 1, "\xef\xbf\xbd"},
        {"a\xc3", 2, "a\xef\xbf\xbd"},                        /* cut short */
        {"\xe2\x82", 2, "\xef\xbf\xbd"},                      /* maximal subpart: one U+FFFD */
        {"\xe2\x82x", 3, "\xef\xbf\xbdx"},
        {"\xf0\x9f\xa6", 3, "\xef\xbf\xbd"},
        {"\xf0\x9f\xa6\x99", 4, "\xf0\x9f\xa6\x99"},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},          /* overlong: two */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate: three */
        {"a\0b", 3, "a\xef\xbf\xbd" "b"},                     /* NUL */
        {"\x80\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 99;
        char *s = api_utf8_sanitize(cases[i].in, cases[i].len, &n);
        CHECK_MSG(s && n == strlen(cases[i].out) && strcmp(s, cases[i].out) == 0, "case %zu", i);
        free(s);
    }
}

static void test_error_json(void)
{
    api_error e;
    CHECK(!api_fail(&e, 400, "invalid_request_error", "temperature", "temperature must be %s (got %d)", "x", 5));
    char *s = api_error_json(&e);
    cJSON *j = cJSON_Parse(s);
    cJSON *err = get(j, "error");
    CHECK(cJSON_IsObject(err) && cJSON_GetArraySize(j) == 1);
    CHECK(str_is(get(err, "message"), "temperature must be x (got 5)"));
    CHECK(str_is(get(err, "type"), "invalid_request_error") && str_is(get(err, "param"), "temperature"));
    CHECK(cJSON_IsNull(get(err, "code")));
    cJSON_Delete(j);
    free(s);
    /* No param: null. A long message with invalid UTF-8 is cut and cleaned. */
    char big[1000];
    memset(big, 'z', sizeof big);
    big[398] = '\xe2', big[399] = '\x82';
    big[sizeof big - 1] = '\0';
    api_fail(&e, 503, "server_error", NULL, "%s", big);
    CHECK(e.http_status == 503 && strlen(e.message) == sizeof e.message - 1);
    s = api_error_json(&e);
    j = cJSON_Parse(s);
    err = get(j, "error");
    CHECK(cJSON_IsNull(get(err, "param")) && str_is(get(err, "type"), "server_error"));
    CHECK(cJSON_IsString(get(err, "message")) && strstr(get(err, "message")->valuestring, "\xef\xbf\xbd"));
    cJSON_Delete(j);
    free(s);
}

static api_token_logprob lp_tokens[2];

static void fill_logprobs(void)
{
    memset(lp_tokens, 0, sizeof lp_tokens);
    lp_tokens[0] = (api_token_logprob){.token = "Hi", .len = 2, .logprob = -0.5f, .n_top = 2};
    lp_tokens[0].top[0] = (api_top_logprob){"Hi", 2, -0.5f};
    lp_tokens[0].top[1] = (api_top_logprob){"\xe2\x82", 2, -INFINITY};
    lp_tokens[1] = (api_token_logprob){.token = "\xf0\x9f", .len = 2, .logprob = NAN, .n_top = 1};
    lp_tokens[1].top[0] = (api_top_logprob){"\xf0\x9f", 2, -1.0f};
}

static void check_envelope(const cJSON *j, const char *object)
{
    CHECK(str_is(get(j, "id"), "chatcmpl-1") || str_is(get(j, "id"), "cmpl-1"));
    CHECK(str_is(get(j, "object"), object));
    CHECK(num_is(get(j, "created"), 1700000000));
    CHECK(str_is(get(j, "model"), "m\xef\xbf\xbd"));
}

static void check_usage(const cJSON *j)
{
    const cJSON *u = get(j, "usage");
    CHECK(num_is(get(u, "prompt_tokens"), 10) && num_is(get(u, "completion_tokens"), 4));
    CHECK(num_is(get(u, "total_tokens"), 14) && num_is(get(get(u, "prompt_tokens_details"), "cached_tokens"), 6));
    const cJSON *t = get(j, "timings");
    CHECK(num_is(get(t, "prompt_n"), 4) && num_is(get(t, "prompt_ms"), 8) && num_is(get(t, "prompt_per_second"), 500));
    CHECK(num_is(get(t, "predicted_n"), 4) && num_is(get(t, "predicted_per_second"), 100));
}

static void test_format_chat(void)
{
    fill_logprobs();
    api_meta m = {API_CHAT, "chatcmpl-1", 1700000000, "m\xff"};
    api_usage u = {10, 4, 6, 8.0, 40.0};
    char *s = api_format_response(&m, "Hi \xf0\x9f", 5, "stop", lp_tokens, 2, true, &u);
    cJSON *j = cJSON_Parse(s);
    CHECK_MSG(j != NULL, "%s", s);
    check_envelope(j, "chat.completion");
    const cJSON *choices = get(j, "choices");
    CHECK(cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 1);
    const cJSON *c = cJSON_GetArrayItem(choices, 0);
    CHECK(num_is(get(c, "index"), 0) && str_is(get(c, "finish_reason"), "stop"));
    const cJSON *msg = get(c, "message");
    CHECK(str_is(get(msg, "role"), "assistant") && str_is(get(msg, "content"), "Hi \xef\xbf\xbd"));
    const cJSON *content = get(get(c, "logprobs"), "content");
    CHECK(cJSON_GetArraySize(content) == 2);
    const cJSON *t0 = cJSON_GetArrayItem(content, 0), *t1 = cJSON_GetArrayItem(content, 1);
    CHECK(str_is(get(t0, "token"), "Hi") && num_is(get(t0, "logprob"), -0.5));
    CHECK(cJSON_GetArraySize(get(t0, "bytes")) == 2 && num_is(cJSON_GetArrayItem(get(t0, "bytes"), 0), 'H'));
    const cJSON *tops = get(t0, "top_logprobs");
    CHECK(cJSON_GetArraySize(tops) == 2);
    const cJSON *top1 = cJSON_GetArrayItem(tops, 1);
    CHECK(str_is(get(top1, "token"), "\xef\xbf\xbd") && num_is(get(top1, "logprob"), -9999));
    CHECK(num_is(cJSON_GetArrayItem(get(top1, "bytes"), 0), 0xe2) && num_is(cJSON_GetArrayItem(get(top1, "bytes"), 1), 0x82));
    CHECK(str_is(get(t1, "token"), "\xef\xbf\xbd") && num_is(get(t1, "logprob"), -9999));
    check_usage(j);
    cJSON_Delete(j);
    free(s);

    /* No logprobs, no usage, no finish reason yet. */
    s = api_format_response(&m, NULL, 0, NULL, NULL, 0, false, NULL);
    j = cJSON_Parse(s);
    c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(cJSON_IsNull(get(c, "logprobs")) && cJSON_IsNull(get(c, "finish_reason")));
    CHECK(str_is(get(get(c, "message"), "content"), "") && !get(j, "usage") && !get(j, "timings"));
    cJSON_Delete(j);
    free(s);

    /* Chunks: the first carries the role, later ones content only, the last
     * an empty delta and the reason, the usage chunk no choices. */
    s = api_format_chunk(&m, true, "", 0, NULL, 0, false, NULL, NULL);
    CHECK(s && strncmp(s, "data: {", 7) == 0 && strcmp(s + strlen(s) - 3, "}\n\n") == 0);
    j = s ? cJSON_Parse(s + 6) : NULL;
    check_envelope(j, "chat.completion.chunk");
    c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(str_is(get(get(c, "delta"), "role"), "assistant") && str_is(get(get(c, "delta"), "content"), ""));
    CHECK(cJSON_IsNull(get(c, "finish_reason")) && cJSON_IsNull(get(c, "logprobs")) && num_is(get(c, "index"), 0));
    cJSON_Delete(j);
    free(s);
    s = api_format_chunk(&m, false, "\x9f\xa6\x99!", 4, lp_tokens + 1, 1, true, NULL, NULL);
    j = s ? cJSON_Parse(s + 6) : NULL;
    c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(!get(get(c, "delta"), "role") && str_is(get(get(c, "delta"), "content"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"));
    CHECK(cJSON_GetArraySize(get(get(c, "logprobs"), "content")) == 1);
    cJSON_Delete(j);
    free(s);
    s = api_format_chunk(&m, false, NULL, 0, NULL, 0, false, "length", NULL);
    j = s ? cJSON_Parse(s + 6) : NULL;
    c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(cJSON_IsObject(get(c, "delta")) && cJSON_GetArraySize(get(c, "delta")) == 0);
    CHECK(str_is(get(c, "finish_reason"), "length"));
    cJSON_Delete(j);
    free(s);
    s = api_format_chunk(&m, false, "ignored", 7, NULL, 0, false, "stop", &u);
    j = s ? cJSON_Parse(s + 6) : NULL;
    check_envelope(j, "chat.completion.chunk");
    CHECK(cJSON_IsArray(get(j, "choices")) && cJSON_GetArraySize(get(j, "choices")) == 0);
    check_usage(j);
    cJSON_Delete(j);
    free(s);
    CHECK(strcmp(api_done_event, "data: [DONE]\n\n") == 0);
}

static void test_format_completion(void)
{
    fill_logprobs();
    api_meta m = {API_COMPLETION, "cmpl-1", 1700000000, "m\xff"};
    api_usage u = {10, 4, 6, 8.0, 40.0};
    char *s = api_format_response(&m, "Hi\xf0\x9f", 4, "length", lp_tokens, 2, true, &u);
    cJSON *j = cJSON_Parse(s);
    check_envelope(j, "text_completion");
    const cJSON *c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(str_is(get(c, "text"), "Hi\xef\xbf\xbd") && num_is(get(c, "index"), 0));
    CHECK(str_is(get(c, "finish_reason"), "length"));
    const cJSON *lp = get(c, "logprobs");
    CHECK(cJSON_GetArraySize(get(lp, "tokens")) == 2 && str_is(cJSON_GetArrayItem(get(lp, "tokens"), 0), "Hi"));
    CHECK(num_is(cJSON_GetArrayItem(get(lp, "token_logprobs"), 0), -0.5));
    CHECK(num_is(cJSON_GetArrayItem(get(lp, "token_logprobs"), 1), -9999));
    CHECK(num_is(cJSON_GetArrayItem(get(lp, "text_offset"), 0), 0) &&
          num_is(cJSON_GetArrayItem(get(lp, "text_offset"), 1), 2));
    const cJSON *top0 = cJSON_GetArrayItem(get(lp, "top_logprobs"), 0);
    CHECK(cJSON_GetArraySize(top0) == 2 && num_is(get(top0, "Hi"), -0.5) && num_is(get(top0, "\xef\xbf\xbd"), -9999));
    check_usage(j);
    cJSON_Delete(j);
    free(s);

    s = api_format_chunk(&m, true, "Hi", 2, NULL, 0, false, NULL, NULL);
    j = s ? cJSON_Parse(s + 6) : NULL;
    check_envelope(j, "text_completion");
    c = cJSON_GetArrayItem(get(j, "choices"), 0);
    CHECK(str_is(get(c, "text"), "Hi") && cJSON_IsNull(get(c, "logprobs")) && cJSON_IsNull(get(c, "finish_reason")));
    cJSON_Delete(j);
    free(s);
}

static void test_format_misc(void)
{
    char *s = api_format_models("gemma-3-270m", 1700000000, 32768, 268000000);
    cJSON *j = cJSON_Parse(s);
    CHECK(str_is(get(j, "object"), "list") && cJSON_GetArraySize(get(j, "data")) == 1);
    const cJSON *m = cJSON_GetArrayItem(get(j, "data"), 0);
    CHECK(str_is(get(m, "id"), "gemma-3-270m") && str_is(get(m, "object"), "model"));
    CHECK(num_is(get(m, "created"), 1700000000) && str_is(get(m, "owned_by"), "hearth"));
    CHECK(num_is(get(get(m, "meta"), "n_ctx"), 32768) && num_is(get(get(m, "meta"), "n_params"), 268000000));
    cJSON_Delete(j);
    free(s);
    s = api_format_models("x", 0, 1, -1);
    j = cJSON_Parse(s);
    CHECK(get(get(cJSON_GetArrayItem(get(j, "data"), 0), "meta"), "n_params") == NULL);
    cJSON_Delete(j);
    free(s);

    int32_t ids[3] = {1, 22, 333};
    s = api_format_tokens(ids, 3, NULL, NULL);
    CHECK(s && strcmp(s, "{\"tokens\":[1,22,333]}") == 0);
    free(s);
    s = api_format_tokens(ids, 0, NULL, NULL);
    CHECK(s && strcmp(s, "{\"tokens\":[]}") == 0);
    free(s);
    const char *pieces[3] = {"He", "\xe2\x82", "a\0"};
    size_t lens[3] = {2, 2, 2};
    s = api_format_tokens(ids, 3, pieces, lens);
    j = cJSON_Parse(s);
    const cJSON *arr = get(j, "tokens");
    CHECK(cJSON_GetArraySize(arr) == 3);
    CHECK(num_is(get(cJSON_GetArrayItem(arr, 0), "id"), 1) && str_is(get(cJSON_GetArrayItem(arr, 0), "piece"), "He"));
    const cJSON *p1 = get(cJSON_GetArrayItem(arr, 1), "piece");
    CHECK(cJSON_IsArray(p1) && num_is(cJSON_GetArrayItem(p1, 0), 0xe2) && num_is(cJSON_GetArrayItem(p1, 1), 0x82));
    const cJSON *p2 = get(cJSON_GetArrayItem(arr, 2), "piece");
    CHECK(cJSON_IsArray(p2) && num_is(cJSON_GetArrayItem(p2, 1), 0));
    cJSON_Delete(j);
    free(s);

    s = api_format_content("a\"b\\c\n\xff", 7);
    CHECK(s && strcmp(s, "{\"content\":\"a\\\"b\\\\c\\n\xef\xbf\xbd\"}") == 0);
    free(s);
}

static void test_logit_bias(void)
{
    api_request r;
    if (GOOD(API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"0\":-100,\"999\":2.5,\"7\":false}}", &r)) {
        CHECK(r.n_logit_bias == 3 && r.sampling.n_logit_bias == 3 && r.sampling.logit_bias == r.logit_bias);
        CHECK(r.logit_bias[0].token == 0 && r.logit_bias[0].bias == -100.0f);
        CHECK(r.logit_bias[1].token == 999 && r.logit_bias[1].bias == 2.5f);
        CHECK(r.logit_bias[2].token == 7 && r.logit_bias[2].bias == -INFINITY);
        api_request_free(&r);
    }
    if (GOOD(API_CHAT, "{" MSG ",\"logit_bias\":[[5,1],[5,false]]}", &r)) {
        CHECK(r.n_logit_bias == 2 && r.logit_bias[0].token == 5 && r.logit_bias[1].bias == -INFINITY);
        api_request_free(&r);
    }
    if (GOOD(API_CHAT, "{" MSG ",\"logit_bias\":null}", &r)) {
        CHECK(r.n_logit_bias == 0 && r.sampling.logit_bias == NULL);
        api_request_free(&r);
    }
    if (GOOD(API_CHAT, "{" MSG ",\"logit_bias\":{}}", &r)) {
        CHECK(r.n_logit_bias == 0 && r.sampling.logit_bias == NULL);
        api_request_free(&r);
    }
    BAD_CHAT("\"logit_bias\":{\"1000\":1}", "logit_bias", "outside the vocabulary");
    BAD_CHAT("\"logit_bias\":{\"99999999999999999999\":1}", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":{\"-1\":1}", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":{\"1.5\":1}", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":{\"hello\":1}", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":{\"\":1}", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":{\"1\":101}", "logit_bias", "-100 to 100");
    BAD_CHAT("\"logit_bias\":{\"1\":1e999}", "logit_bias", "-100 to 100");
    BAD_CHAT("\"logit_bias\":{\"1\":true}", "logit_bias", "-100 to 100");
    BAD_CHAT("\"logit_bias\":{\"1\":\"1\"}", "logit_bias", "-100 to 100");
    BAD_CHAT("\"logit_bias\":[[1]]", "logit_bias", "pairs");
    BAD_CHAT("\"logit_bias\":[1,2]", "logit_bias", "pairs");
    BAD_CHAT("\"logit_bias\":[[-3,1]]", "logit_bias", "outside the vocabulary");
    BAD_CHAT("\"logit_bias\":[[\"a\",1]]", "logit_bias", "token ids");
    BAD_CHAT("\"logit_bias\":5", "logit_bias", "an object");
}

int main(void)
{
    test_json_errors();
    test_chat_defaults();
    test_chat_fields();
    test_chat_errors();
    test_utf8_and_nul();
    test_completion();
    test_tokenize();
    test_sanitize();
    test_error_json();
    test_format_chat();
    test_format_completion();
    test_format_misc();
    test_logit_bias();
    return test_finish("test_server_api");
}

/* The OpenAI API's JSON (see api.h): a body is checked in layers, cheapest
 * and most general first, so that each later step can trust what the earlier
 * ones established:
 *
 *   scan_depth     lexical, before parsing: nesting <= API_MAX_DEPTH (cJSON
 *                  would stop at 1000, but everything after it recurses)
 *   cJSON          valid JSON, then nothing but whitespace after the value
 *   scan_strings   lexical again, over text now known to be valid JSON:
 *                  every string is UTF-8 and holds no NUL (raw or \u0000)
 *   fields         type and range of each field read, in request order
 *
 * Formatting builds a cJSON tree and prints it; every string goes through
 * api_utf8_sanitize on the way in. */
#include "server/api.h"
#include "runtime/stop.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

/* What parses here must be accepted by the stop matcher the caller builds. */
_Static_assert(API_MAX_STOP_LENGTH == STOP_MAX_LENGTH, "stop strings: api and runtime/stop.h disagree");
_Static_assert(API_MAX_STOPS <= STOP_MAX_STRINGS, "stop strings: more than runtime/stop.h holds");

const char api_done_event[] = "data: [DONE]\n\n";

/* ---- errors ---------------------------------------------------------------- */

bool api_fail(api_error *e, int http_status, const char *type, const char *param, const char *fmt, ...)
{
    if (!e)
        return false;
    e->http_status = http_status;
    e->type = type ? type : INVALID;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- UTF-8 ----------------------------------------------------------------- */

/* At s (n >= 1 bytes): the length of the character there with *valid set,
 * or, with *valid clear, the length of the longest prefix of a character
 * there (at least 1 byte), which is replaced by one U+FFFD: the "maximal
 * subpart" practice of Unicode (ch. 3) that Python and browsers follow. A
 * NUL counts as invalid: it would cut a C string. */
static size_t utf8_scan_one(const uint8_t *s, size_t n, bool *valid)
{
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *valid = false;
    if (b < 0x80) {
        *valid = b != 0;
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0; /* overlong */
        else if (b == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90; /* overlong */
        else if (b == 0xF4)
            hi = 0x8F; /* past U+10FFFF */
    } else {
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF))
            return i;
    }
    *valid = true;
    return need + 1;
}

/* The offset of the first byte of s that is not part of a valid character
 * (NUL included), or n. */
static size_t utf8_first_bad(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] >= 0x01 && u[i] < 0x80) {
            i++;
            continue;
        }
        bool valid;
        size_t k = utf8_scan_one(u + i, n - i, &valid);
        if (!valid)
            return i;
        i += k;
    }
    return n;
}

char *api_utf8_sanitize(const char *text, size_t len, size_t *out_len)
{
    if (!text)
        len = 0;
    size_t bad = utf8_first_bad(text, len);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    /* Each replaced subpart is at least 1 byte and becomes 3. */
    char *out = malloc(bad == len ? len + 1 : 3 * len + 1);
    if (!out)
        return NULL;
    if (len)
        memcpy(out, text, bad);
    size_t o = bad;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t i = bad; i < len;) {
        bool valid;
        size_t k = utf8_scan_one(u + i, len - i, &valid);
        if (valid) {
            memcpy(out + o, text + i, k);
            o += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += k;
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

/* ---- body checks ------------------------------------------------------------ */

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Nesting depth, counted lexically (brackets outside strings), so that a
 * body of 100k '[' is refused before any parser recurses into it. */
static bool scan_depth(const char *body, size_t len, api_error *err)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > API_MAX_DEPTH)
                return api_fail(err, 400, INVALID, "", "invalid JSON: nested deeper than %d levels (at byte %zu)",
                                API_MAX_DEPTH, i);
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

/* Over a body that is valid JSON: every string (keys too) is UTF-8 without
 * NUL, raw or escaped. cJSON itself turns \uXXXX escapes into UTF-8 and
 * refuses lone surrogates, but copies raw bytes unchecked and ends a string
 * at a decoded NUL. The param named is the top-level field the bad string is
 * in, which is what a client needs to find it. */
static bool scan_strings(const char *body, size_t len, api_error *err)
{
    char key[64] = "";
    int depth = 0;
    bool expect_key = false;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (c == '{' || c == '[') {
            depth++;
            expect_key = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        } else if (c == '"') {
            size_t start = i + 1, end = start;
            while (end < len && body[end] != '"')
                end += body[end] == '\\' ? 2 : 1;
            if (end > len)
                end = len;
            if (depth == 1 && expect_key) {
                size_t o = 0;
                for (size_t j = start; j < end && o + 1 < sizeof key; j++)
                    key[o++] = body[j] >= 0x20 && body[j] < 0x7F ? body[j] : '?';
                key[o] = '\0';
                expect_key = false;
            }
            for (i = start; i < end;) {
                unsigned char u = (unsigned char)body[i];
                if (u == '\\') {
                    if (i + 5 < end && body[i + 1] == 'u' && memcmp(body + i + 2, "0000", 4) == 0)
                        return api_fail(err, 400, INVALID, key, "%s%s%sstrings must not contain NUL (\\u0000)",
                                        key[0] ? "\"" : "", key, key[0] ? "\": " : "");
                    i += 2;
                } else if (u >= 0x80 || u == 0) {
                    bool valid = false;
                    size_t k = u ? utf8_scan_one((const uint8_t *)body + i, end - i, &valid) : 1;
                    if (!valid)
                        return api_fail(err, 400, INVALID, key, "%s%s%s%s at byte %zu of the body",
                                        key[0] ? "\"" : "", key, key[0] ? "\": " : "",
                                        u ? "invalid UTF-8" : "a NUL byte in a string", i);
                    i += k;
                } else {
                    i++;
                }
            }
            i = end; /* the closing quote */
        }
    }
    return true;
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "boolean";
    if (cJSON_IsNumber(v))
        return "number";
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "value";
}

/* The whole pipeline down to a parsed object; NULL with *err filled. */
static cJSON *parse_body(const char *body, size_t len, api_error *err)
{
    if (!body || len == 0) {
        api_fail(err, 400, INVALID, "", "invalid JSON: the body is empty (expected a JSON object)");
        return NULL;
    }
    if (!scan_depth(body, len, err))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        api_fail(err, 400, INVALID, "", "invalid JSON: syntax error at byte %zu", at);
        return NULL;
    }
    size_t at = (size_t)(end - body);
    while (at < len && is_json_space(body[at]))
        at++;
    if (at < len) {
        cJSON_Delete(root);
        api_fail(err, 400, INVALID, "", "invalid JSON: unexpected data after the value at byte %zu", at);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        api_fail(err, 400, INVALID, "", "the body must be a JSON object (got %s %s)",
                 cJSON_IsArray(root) || cJSON_IsObject(root) ? "an" : "a", type_name(root));
        cJSON_Delete(root);
        return NULL;
    }
    if (!scan_strings(body, len, err)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- fields ------------------------------------------------------------------ */

/* A field's value, or NULL when it is absent or null (both mean "not given"). */
static const cJSON *field(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool wrong_type(api_error *err, const char *param, const char *expected, const cJSON *v)
{
    return api_fail(err, 400, INVALID, param, "%s must be %s (got %s %s)", param, expected,
                    cJSON_IsArray(v) || cJSON_IsObject(v) ? "an" : "a", type_name(v));
}

static bool get_bool(const cJSON *obj, const char *name, bool *out, api_error *err)
{
    const cJSON *v = field(obj, name);
    if (!v)
        return true;
    if (!cJSON_IsBool(v))
        return wrong_type(err, name, "true or false", v);
    *out = cJSON_IsTrue(v);
    return true;
}

/* A number in [lo, hi]; *given (may be NULL) says whether it was there. */
static bool get_number(const cJSON *obj, const char *name, double lo, double hi, double *out, bool *given,
                       api_error *err)
{
    const cJSON *v = field(obj, name);
    if (given)
        *given = v != NULL;
    if (!v)
        return true;
    if (!cJSON_IsNumber(v))
        return wrong_type(err, name, "a number", v);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi)
        return api_fail(err, 400, INVALID, name, "%s must be a number from %g to %g (got %g)", name, lo, hi, x);
    *out = x;
    return true;
}

static bool is_integer(double x)
{
    return isfinite(x) && x == floor(x);
}

/* An integer in [lo, hi], as a double (integers past 2^53 are not exact,
 * which no field here cares about). */
static bool get_integer(const cJSON *obj, const char *name, double lo, double hi, double *out, bool *given,
                        api_error *err)
{
    const cJSON *v = field(obj, name);
    if (given)
        *given = v != NULL;
    if (!v)
        return true;
    if (!cJSON_IsNumber(v))
        return wrong_type(err, name, "an integer", v);
    double x = v->valuedouble;
    if (!is_integer(x) || x < lo || x > hi) {
        if (hi >= 1e18)
            return api_fail(err, 400, INVALID, name, "%s must be an integer >= %.0f (got %g)", name, lo, x);
        return api_fail(err, 400, INVALID, name, "%s must be an integer from %.0f to %.0f (got %g)", name, lo, hi, x);
    }
    *out = x;
    return true;
}

static char *dup_string(const char *s, size_t *len, api_error *err)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d) {
        api_fail(err, 500, "server_error", "", "out of memory");
        return NULL;
    }
    memcpy(d, s, n + 1);
    if (len)
        *len = n;
    return d;
}

static char *print_json(const cJSON *v, api_error *err)
{
    char *s = cJSON_PrintUnformatted(v);
    if (!s)
        api_fail(err, 500, "server_error", "", "out of memory");
    return s;
}

/* One content part: {"type": "text", "text": "..."}; images and audio are
 * refused with a message rather than silently dropped. */
static bool check_content_part(const cJSON *part, int i, int j, api_error *err)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content[%d]", i, j);
    if (!cJSON_IsObject(part))
        return wrong_type(err, param, "an object like {\"type\": \"text\", \"text\": \"...\"}", part);
    const cJSON *type = field(part, "type");
    snprintf(param, sizeof param, "messages[%d].content[%d].type", i, j);
    if (!cJSON_IsString(type))
        return type ? wrong_type(err, param, "a string", type)
                    : api_fail(err, 400, INVALID, param, "%s is missing (only \"text\" parts are supported)", param);
    if (strcmp(type->valuestring, "text") != 0)
        return api_fail(err, 400, INVALID, param, "only \"text\" content parts are supported (got \"%.40s\")",
                        type->valuestring);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
    snprintf(param, sizeof param, "messages[%d].content[%d].text", i, j);
    if (!cJSON_IsString(text))
        return text ? wrong_type(err, param, "a string", text) : api_fail(err, 400, INVALID, param, "%s is missing", param);
    return true;
}

static bool parse_messages(const cJSON *root, api_request *r, api_error *err)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs || cJSON_IsNull(msgs))
        return api_fail(err, 400, INVALID, "messages",
                        "messages is missing: a chat request needs an array of {\"role\", \"content\"} objects");
    if (!cJSON_IsArray(msgs))
        return wrong_type(err, "messages", "an array of messages", msgs);
    int n = cJSON_GetArraySize(msgs);
    if (n == 0)
        return api_fail(err, 400, INVALID, "messages", "messages must hold at least one message (got an empty array)");
    char param[64];
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m))
            return wrong_type(err, param, "an object with \"role\" and \"content\"", m);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!role)
            return api_fail(err, 400, INVALID, param, "%s is missing (\"system\", \"user\", \"assistant\" or \"tool\")",
                            param);
        if (!cJSON_IsString(role) || role->valuestring[0] == '\0')
            return cJSON_IsString(role) ? api_fail(err, 400, INVALID, param, "%s must not be empty", param)
                                        : wrong_type(err, param, "a string", role);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        snprintf(param, sizeof param, "messages[%d].content", i);
        if (content && !cJSON_IsNull(content) && !cJSON_IsString(content)) {
            if (!cJSON_IsArray(content))
                return wrong_type(err, param, "a string, an array of content parts or null", content);
            int j = 0;
            for (const cJSON *p = content->child; p; p = p->next, j++)
                if (!check_content_part(p, i, j, err))
                    return false;
        }
    }
    if (!(r->messages_json = print_json(msgs, err)))
        return false;

    const cJSON *tools = field(root, "tools");
    if (tools) {
        if (!cJSON_IsArray(tools))
            return wrong_type(err, "tools", "an array of tools", tools);
        i = 0;
        for (const cJSON *t = tools->child; t; t = t->next, i++) {
            snprintf(param, sizeof param, "tools[%d]", i);
            if (!cJSON_IsObject(t))
                return wrong_type(err, param, "an object like {\"type\": \"function\", \"function\": {...}}", t);
        }
        if (tools->child && !(r->tools_json = print_json(tools, err)))
            return false;
    }

    bool logprobs_given = false;
    if (!get_bool(root, "logprobs", &r->logprobs, err))
        return false;
    double top = 0;
    if (!get_integer(root, "top_logprobs", 0, API_MAX_TOP_LOGPROBS, &top, &logprobs_given, err))
        return false;
    if (logprobs_given && !r->logprobs)
        return api_fail(err, 400, INVALID, "top_logprobs", "top_logprobs needs \"logprobs\": true");
    r->top_logprobs = (int32_t)top;
    return true;
}

static bool parse_prompt(const cJSON *root, api_request *r, api_error *err)
{
    const cJSON *p = field(root, "prompt");
    if (!p)
        return api_fail(err, 400, INVALID, "prompt", "prompt is missing: a completion request needs a string prompt");
    if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        if (n != 1 || !cJSON_IsString(p->child))
            return api_fail(err, 400, INVALID, "prompt",
                            "prompt must be a string or an array of exactly one string (got an array of %d %s%s)", n,
                            n ? type_name(p->child) : "element", n == 1 ? "" : "s");
        p = p->child;
    }
    if (!cJSON_IsString(p))
        return wrong_type(err, "prompt", "a string", p);
    if (!(r->prompt = dup_string(p->valuestring, &r->prompt_len, err)))
        return false;

    double lp = 0;
    bool given = false;
    if (!get_integer(root, "logprobs", 0, 5, &lp, &given, err))
        return false;
    r->logprobs = given;
    r->top_logprobs = (int32_t)lp;

    bool echo = false;
    if (!get_bool(root, "echo", &echo, err))
        return false;
    if (echo)
        return api_fail(err, 400, INVALID, "echo", "echo: true is not supported (the prompt is not returned)");
    return true;
}

static bool add_stop(api_request *r, const cJSON *s, const char *param, api_error *err)
{
    if (!cJSON_IsString(s))
        return wrong_type(err, param, "a string", s);
    size_t n = strlen(s->valuestring);
    if (n == 0 || n > API_MAX_STOP_LENGTH)
        return api_fail(err, 400, INVALID, param, "%s must be 1 to %d bytes long (got %zu)", param,
                        API_MAX_STOP_LENGTH, n);
    if (!(r->stops[r->n_stops] = dup_string(s->valuestring, NULL, err)))
        return false;
    r->n_stops++;
    return true;
}

static bool parse_stop(const cJSON *root, api_request *r, api_error *err)
{
    const cJSON *stop = field(root, "stop");
    if (!stop)
        return true;
    if (cJSON_IsString(stop))
        return add_stop(r, stop, "stop", err);
    if (!cJSON_IsArray(stop))
        return wrong_type(err, "stop", "a string or an array of strings", stop);
    int n = cJSON_GetArraySize(stop);
    if (n > API_MAX_STOPS)
        return api_fail(err, 400, INVALID, "stop", "stop must hold at most %d strings (got %d)", API_MAX_STOPS, n);
    int i = 0;
    for (const cJSON *s = stop->child; s; s = s->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "stop[%d]", i);
        if (!add_stop(r, s, param, err))
            return false;
    }
    return true;
}

/* The fields both kinds share: sampling, limits, streaming. */
/* One logit_bias entry: a token id (a JSON integer, or the decimal string
 * an object key is) and a bias from -100 to 100, or false to ban the token
 * (llama.cpp's spelling of -inf). */
static bool bias_entry(double id, bool id_ok, const cJSON *value, int32_t n_vocab, sampler_bias *out, api_error *err)
{
    if (!id_ok)
        return api_fail(err, 400, INVALID, "logit_bias", "logit_bias: keys must be token ids, integers from 0 to %d",
                        (int)n_vocab - 1);
    if (id < 0 || id >= n_vocab)
        return api_fail(err, 400, INVALID, "logit_bias", "logit_bias: token %.0f is outside the vocabulary (0 to %d)",
                        id, (int)n_vocab - 1);
    if (cJSON_IsFalse(value)) {
        *out = (sampler_bias){(int32_t)id, -INFINITY};
        return true;
    }
    if (!cJSON_IsNumber(value) || !isfinite(value->valuedouble) || fabs(value->valuedouble) > 100)
        return api_fail(err, 400, INVALID, "logit_bias",
                        "logit_bias: the bias of token %d must be a number from -100 to 100, or false to ban it",
                        (int)id);
    *out = (sampler_bias){(int32_t)id, (float)value->valuedouble};
    return true;
}

/* "logit_bias": OpenAI's {"token id": bias}, or llama.cpp's [[id, bias], ...]. */
static bool parse_logit_bias(const cJSON *root, int32_t n_vocab, api_request *r, api_error *err)
{
    const cJSON *lb = field(root, "logit_bias");
    if (!lb)
        return true;
    if (!cJSON_IsObject(lb) && !cJSON_IsArray(lb))
        return wrong_type(err, "logit_bias", "an object of token ids to biases", lb);
    int count = cJSON_GetArraySize(lb);
    if (count == 0)
        return true;
    if (count > n_vocab)
        return api_fail(err, 400, INVALID, "logit_bias", "logit_bias: %d entries for a vocabulary of %d tokens", count,
                        (int)n_vocab);
    r->logit_bias = malloc((size_t)count * sizeof *r->logit_bias);
    if (!r->logit_bias)
        return api_fail(err, 500, "server_error", "", "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, lb)
    {
        sampler_bias *b = &r->logit_bias[r->n_logit_bias];
        if (cJSON_IsObject(lb)) {
            /* A key is a decimal id: digits only, and few enough that any larger one is out of range. */
            size_t digits = strspn(item->string, "0123456789");
            bool id_ok = digits > 0 && digits <= 12 && item->string[digits] == '\0';
            if (!bias_entry(id_ok ? strtod(item->string, NULL) : 0, id_ok, item, n_vocab, b, err))
                return false;
        } else {
            if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
                return api_fail(err, 400, INVALID, "logit_bias",
                                "logit_bias: an array's items must be [token id, bias] pairs");
            const cJSON *id = cJSON_GetArrayItem(item, 0);
            bool id_ok = cJSON_IsNumber(id) && is_integer(id->valuedouble);
            if (!bias_entry(id_ok ? id->valuedouble : 0, id_ok, cJSON_GetArrayItem(item, 1), n_vocab, b, err))
                return false;
        }
        r->n_logit_bias++;
    }
    r->sampling.logit_bias = r->logit_bias;
    r->sampling.n_logit_bias = r->n_logit_bias;
    return true;
}

static bool parse_common(const cJSON *root, int32_t n_vocab, api_request *r, api_error *err)
{
    const cJSON *model = field(root, "model");
    if (model) {
        if (!cJSON_IsString(model))
            return wrong_type(err, "model", "a string", model);
        if (!(r->model = dup_string(model->valuestring, NULL, err)))
            return false;
    }

    if (!get_bool(root, "ignore_eos", &r->ignore_eos, err) || !get_bool(root, "stream", &r->stream, err))
        return false;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return wrong_type(err, "stream_options", "an object", so);
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu))
            return wrong_type(err, "stream_options.include_usage", "true or false", iu);
        r->include_usage = cJSON_IsTrue(iu);
    }

    const cJSON *n = field(root, "n");
    if (n && !cJSON_IsNumber(n))
        return wrong_type(err, "n", "an integer", n);
    if (n && n->valuedouble != 1)
        return api_fail(err, 400, INVALID, "n", "only n = 1 is supported (got %g)", n->valuedouble);

    /* max_completion_tokens (the newer name) wins over max_tokens. */
    double mt = 0, mct = 0;
    bool mt_given = false, mct_given = false;
    if (!get_integer(root, "max_tokens", 1, 1e300, &mt, &mt_given, err) ||
        !get_integer(root, "max_completion_tokens", 1, 1e300, &mct, &mct_given, err))
        return false;
    double limit = mct_given ? mct : mt_given ? mt : -1;
    r->max_tokens = limit > INT32_MAX ? INT32_MAX : (int32_t)limit;

    sampler_params *s = &r->sampling;
    double x;
    bool given;
    if (!get_number(root, "temperature", 0, API_MAX_TEMPERATURE, &x, &given, err))
        return false;
    if (given)
        s->temperature = (float)x;
    if (!get_number(root, "top_p", 0, 1, &x, &given, err))
        return false;
    if (given)
        s->top_p = (float)x;
    if (!get_integer(root, "top_k", 0, n_vocab > 0 ? n_vocab : 0, &x, &given, err))
        return false;
    if (given)
        s->top_k = (int32_t)x;
    if (!get_number(root, "min_p", 0, 1, &x, &given, err))
        return false;
    if (given)
        s->min_p = (float)x;
    if (!get_number(root, "presence_penalty", -2, 2, &x, &given, err))
        return false;
    if (given)
        s->presence_penalty = (float)x;
    if (!get_number(root, "frequency_penalty", -2, 2, &x, &given, err))
        return false;
    if (given)
        s->frequency_penalty = (float)x;
    const cJSON *rp = field(root, "repeat_penalty");
    if (rp) {
        if (!cJSON_IsNumber(rp))
            return wrong_type(err, "repeat_penalty", "a number", rp);
        if (!isfinite(rp->valuedouble) || rp->valuedouble <= 0 || rp->valuedouble > 100)
            return api_fail(err, 400, INVALID, "repeat_penalty",
                            "repeat_penalty must be a number above 0 and at most 100 (got %g; 1 turns it off)",
                            rp->valuedouble);
        s->repeat_penalty = (float)rp->valuedouble;
    }
    if (!get_integer(root, "repeat_last_n", -1, SAMPLER_MAX_PENALTY_WINDOW, &x, &given, err))
        return false;
    if (given)
        s->repeat_last_n = (int32_t)x;
    /* -1 asks for a random seed, as llama.cpp's server reads it. */
    if (!get_integer(root, "seed", -1, 18446744073709549568.0 /* largest double < 2^64 */, &x, &given, err))
        return false;
    if (given && x >= 0) {
        s->seed = (uint64_t)x;
        r->seed_given = true;
    }
    return parse_stop(root, r, err) && parse_logit_bias(root, n_vocab, r, err);
}

void api_request_free(api_request *r)
{
    if (!r)
        return;
    free(r->model);
    cJSON_free(r->messages_json);
    cJSON_free(r->tools_json);
    cJSON_free(r->template_kwargs_json);
    free(r->prompt);
    free(r->logit_bias);
    for (int i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    memset(r, 0, sizeof *r);
    r->max_tokens = -1;
}

bool api_parse_request(api_kind kind, const char *body, size_t len, int32_t n_vocab, api_request *out, api_error *err)
{
    api_request r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.max_tokens = -1;
    r.sampling = sampler_default_params();
    memset(out, 0, sizeof *out);
    out->max_tokens = -1;

    cJSON *root = parse_body(body, len, err);
    if (!root)
        return false;
    bool ok = parse_common(root, n_vocab, &r, err);
    if (ok && kind == API_CHAT) {
        ok = parse_messages(root, &r, err);
        const cJSON *kw = field(root, "chat_template_kwargs");
        if (ok && kw) {
            if (!cJSON_IsObject(kw))
                ok = wrong_type(err, "chat_template_kwargs", "an object", kw);
            else
                ok = (r.template_kwargs_json = print_json(kw, err)) != NULL;
        }
    } else if (ok) {
        ok = parse_prompt(root, &r, err);
    }
    cJSON_Delete(root);
    if (!ok) {
        api_request_free(&r);
        return false;
    }
    *out = r;
    return true;
}

void api_tokenize_free(api_tokenize *t)
{
    if (!t)
        return;
    free(t->content);
    memset(t, 0, sizeof *t);
}

bool api_parse_tokenize(const char *body, size_t len, api_tokenize *out, api_error *err)
{
    api_tokenize t = {.parse_special = true};
    memset(out, 0, sizeof *out);
    cJSON *root = parse_body(body, len, err);
    if (!root)
        return false;
    const cJSON *c = field(root, "content");
    bool ok;
    if (!c)
        ok = api_fail(err, 400, INVALID, "content", "content is missing: {\"content\": \"text to tokenize\"}");
    else if (!cJSON_IsString(c))
        ok = wrong_type(err, "content", "a string", c);
    else
        ok = get_bool(root, "add_special", &t.add_special, err) &&
             get_bool(root, "parse_special", &t.parse_special, err) &&
             get_bool(root, "with_pieces", &t.with_pieces, err) &&
             (t.content = dup_string(c->valuestring, &t.len, err)) != NULL;
    cJSON_Delete(root);
    if (!ok) {
        api_tokenize_free(&t);
        return false;
    }
    *out = t;
    return true;
}

bool api_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **tokens, int32_t *n,
                          api_error *err)
{
    *tokens = NULL;
    *n = 0;
    cJSON *root = parse_body(body, len, err);
    if (!root)
        return false;
    const cJSON *arr = field(root, "tokens");
    int32_t *ids = NULL;
    int count = 0;
    bool ok = true;
    if (!arr) {
        ok = api_fail(err, 400, INVALID, "tokens", "tokens is missing: {\"tokens\": [token ids]}");
    } else if (!cJSON_IsArray(arr)) {
        ok = wrong_type(err, "tokens", "an array of token ids", arr);
    } else if ((count = cJSON_GetArraySize(arr)) > 0) {
        ids = malloc((size_t)count * sizeof *ids);
        if (!ids)
            ok = api_fail(err, 500, "server_error", "", "out of memory");
        int i = 0;
        for (const cJSON *v = arr->child; ok && v; v = v->next, i++) {
            char param[64];
            snprintf(param, sizeof param, "tokens[%d]", i);
            if (!cJSON_IsNumber(v))
                ok = wrong_type(err, param, "a token id (an integer)", v);
            else if (!is_integer(v->valuedouble) || v->valuedouble < 0 || v->valuedouble >= n_vocab)
                ok = api_fail(err, 400, INVALID, param, "%s must be a token id from 0 to %d (got %g)", param,
                              (int)n_vocab - 1, v->valuedouble);
            else
                ids[i] = (int32_t)v->valuedouble;
        }
    }
    cJSON_Delete(root);
    if (!ok) {
        free(ids);
        return false;
    }
    *tokens = ids;
    *n = count;
    return true;
}

/* ---- formatting ---------------------------------------------------------------- */

/* Builders: each returns the item added, or NULL when out of memory; a
 * formatter ANDs them into one flag and gives up at the end. */
static cJSON *add_text(cJSON *obj, const char *name, const char *s, size_t len)
{
    char *clean = api_utf8_sanitize(s, s ? len : 0, NULL);
    if (!clean)
        return NULL;
    cJSON *item = cJSON_AddStringToObject(obj, name, clean);
    free(clean);
    return item;
}

static cJSON *add_cstr(cJSON *obj, const char *name, const char *s)
{
    return add_text(obj, name, s ? s : "", s ? strlen(s) : 0);
}

static cJSON *add_nullable(cJSON *obj, const char *name, const char *s)
{
    return s ? add_cstr(obj, name, s) : cJSON_AddNullToObject(obj, name);
}

/* A log-probability as JSON can hold it: -inf (probability 0) and NaN
 * become -9999, the floor OpenAI itself reports. */
static double logprob_value(float lp)
{
    if (isnan(lp) || lp < -9999.0f)
        return -9999.0;
    return lp > 0.0f ? 0.0 : (double)lp;
}

static cJSON *add_bytes(cJSON *obj, const char *name, const char *s, size_t len)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, name);
    for (size_t i = 0; arr && i < len; i++) {
        cJSON *b = cJSON_CreateNumber((double)(unsigned char)s[i]);
        if (!b || !cJSON_AddItemToArray(arr, b)) {
            cJSON_Delete(b);
            return NULL;
        }
    }
    return arr;
}

static bool add_item(cJSON *arr, cJSON *item)
{
    if (!item)
        return false;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}. */
static bool add_chat_logprobs(cJSON *choice, const api_token_logprob *lp, int n_lp, bool with_logprobs)
{
    if (!with_logprobs)
        return cJSON_AddNullToObject(choice, "logprobs") != NULL;
    cJSON *obj = cJSON_AddObjectToObject(choice, "logprobs");
    cJSON *content = obj ? cJSON_AddArrayToObject(obj, "content") : NULL;
    bool ok = content != NULL;
    for (int i = 0; ok && i < n_lp; i++) {
        cJSON *t = cJSON_CreateObject();
        ok = add_item(content, t) && add_text(t, "token", lp[i].token, lp[i].len) &&
             cJSON_AddNumberToObject(t, "logprob", logprob_value(lp[i].logprob)) &&
             add_bytes(t, "bytes", lp[i].token, lp[i].len);
        cJSON *tops = ok ? cJSON_AddArrayToObject(t, "top_logprobs") : NULL;
        ok = ok && tops;
        int n_top = lp[i].n_top < 0 ? 0 : lp[i].n_top > API_MAX_TOP_LOGPROBS ? API_MAX_TOP_LOGPROBS : lp[i].n_top;
        for (int j = 0; ok && j < n_top; j++) {
            const api_top_logprob *top = &lp[i].top[j];
            cJSON *o = cJSON_CreateObject();
            ok = add_item(tops, o) && add_text(o, "token", top->token, top->len) &&
                 cJSON_AddNumberToObject(o, "logprob", logprob_value(top->logprob)) &&
                 add_bytes(o, "bytes", top->token, top->len);
        }
    }
    return ok;
}

/* Completions (the legacy shape): {"tokens", "token_logprobs",
 * "top_logprobs": [{token: logprob}], "text_offset"}, offsets in bytes from
 * the start of the text given. Two alternatives that read the same once
 * sanitised keep the first. */
static bool add_completion_logprobs(cJSON *choice, const api_token_logprob *lp, int n_lp, bool with_logprobs)
{
    if (!with_logprobs)
        return cJSON_AddNullToObject(choice, "logprobs") != NULL;
    cJSON *obj = cJSON_AddObjectToObject(choice, "logprobs");
    cJSON *tokens = obj ? cJSON_AddArrayToObject(obj, "tokens") : NULL;
    cJSON *values = obj ? cJSON_AddArrayToObject(obj, "token_logprobs") : NULL;
    cJSON *tops = obj ? cJSON_AddArrayToObject(obj, "top_logprobs") : NULL;
    cJSON *offsets = obj ? cJSON_AddArrayToObject(obj, "text_offset") : NULL;
    bool ok = tokens && values && tops && offsets;
    double offset = 0;
    for (int i = 0; ok && i < n_lp; i++) {
        char *clean = api_utf8_sanitize(lp[i].token, lp[i].token ? lp[i].len : 0, NULL);
        ok = clean && add_item(tokens, cJSON_CreateString(clean)) &&
             add_item(values, cJSON_CreateNumber(logprob_value(lp[i].logprob))) &&
             add_item(offsets, cJSON_CreateNumber(offset));
        free(clean);
        offset += (double)lp[i].len;
        cJSON *top = cJSON_CreateObject();
        ok = ok && add_item(tops, top);
        int n_top = lp[i].n_top < 0 ? 0 : lp[i].n_top > API_MAX_TOP_LOGPROBS ? API_MAX_TOP_LOGPROBS : lp[i].n_top;
        for (int j = 0; ok && j < n_top; j++) {
            char *name = api_utf8_sanitize(lp[i].top[j].token, lp[i].top[j].token ? lp[i].top[j].len : 0, NULL);
            ok = name != NULL;
            if (ok && !cJSON_GetObjectItemCaseSensitive(top, name))
                ok = cJSON_AddNumberToObject(top, name, logprob_value(lp[i].top[j].logprob)) != NULL;
            free(name);
        }
    }
    return ok;
}

static bool add_usage(cJSON *root, const api_usage *u)
{
    cJSON *usage = cJSON_AddObjectToObject(root, "usage");
    cJSON *details = usage ? cJSON_CreateObject() : NULL;
    bool ok = usage && cJSON_AddNumberToObject(usage, "prompt_tokens", u->prompt_tokens) &&
              cJSON_AddNumberToObject(usage, "completion_tokens", u->completion_tokens) &&
              cJSON_AddNumberToObject(usage, "total_tokens", (double)u->prompt_tokens + (double)u->completion_tokens);
    if (details && !(ok && cJSON_AddItemToObject(usage, "prompt_tokens_details", details))) {
        cJSON_Delete(details);
        return false;
    }
    ok = ok && details && cJSON_AddNumberToObject(details, "cached_tokens", u->cached_tokens);

    /* llama.cpp's timings: prompt_n counts the prompt tokens evaluated (not
     * those taken from the cache). */
    double prompt_n = (double)u->prompt_tokens - (double)u->cached_tokens;
    if (prompt_n < 0)
        prompt_n = 0;
    double predicted_n = u->completion_tokens;
    cJSON *t = ok ? cJSON_AddObjectToObject(root, "timings") : NULL;
    return t && cJSON_AddNumberToObject(t, "cache_n", u->cached_tokens) &&
           cJSON_AddNumberToObject(t, "prompt_n", prompt_n) &&
           cJSON_AddNumberToObject(t, "prompt_ms", u->prompt_ms) &&
           cJSON_AddNumberToObject(t, "prompt_per_token_ms", prompt_n > 0 ? u->prompt_ms / prompt_n : 0) &&
           cJSON_AddNumberToObject(t, "prompt_per_second", u->prompt_ms > 0 ? prompt_n * 1e3 / u->prompt_ms : 0) &&
           cJSON_AddNumberToObject(t, "predicted_n", predicted_n) &&
           cJSON_AddNumberToObject(t, "predicted_ms", u->generate_ms) &&
           cJSON_AddNumberToObject(t, "predicted_per_token_ms", predicted_n > 0 ? u->generate_ms / predicted_n : 0) &&
           cJSON_AddNumberToObject(t, "predicted_per_second",
                                   u->generate_ms > 0 ? predicted_n * 1e3 / u->generate_ms : 0);
}

/* {"id", "object", "created", "model", "choices": [...]}; *choices gets the
 * array. */
static cJSON *envelope(const api_meta *m, const char *object, cJSON **choices)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && add_cstr(root, "id", m->id) && cJSON_AddStringToObject(root, "object", object) &&
              cJSON_AddNumberToObject(root, "created", (double)m->created) && add_cstr(root, "model", m->model) &&
              (*choices = cJSON_AddArrayToObject(root, "choices")) != NULL;
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Prints root (and deletes it), optionally as an SSE event. */
static char *finish(cJSON *root, bool ok, bool sse)
{
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json || !sse)
        return json;
    size_t n = strlen(json);
    char *event = malloc(n + 9);
    if (event) {
        memcpy(event, "data: ", 6);
        memcpy(event + 6, json, n);
        memcpy(event + 6 + n, "\n\n", 3);
    }
    cJSON_free(json);
    return event;
}

char *api_format_response(const api_meta *m, const char *text, size_t len, const char *finish_reason,
                          const api_token_logprob *lp, int n_lp, bool with_logprobs, const api_usage *u)
{
    bool chat = m->kind == API_CHAT;
    cJSON *choices = NULL;
    cJSON *root = envelope(m, chat ? "chat.completion" : "text_completion", &choices);
    if (!root)
        return NULL;
    cJSON *c = cJSON_CreateObject();
    bool ok = add_item(choices, c);
    if (chat) {
        cJSON *msg = ok ? cJSON_CreateObject() : NULL;
        ok = ok && cJSON_AddNumberToObject(c, "index", 0) && msg;
        if (msg && !(ok && cJSON_AddItemToObject(c, "message", msg))) {
            cJSON_Delete(msg);
            ok = false;
        }
        ok = ok && cJSON_AddStringToObject(msg, "role", "assistant") && add_text(msg, "content", text, len) &&
             add_chat_logprobs(c, lp, n_lp, with_logprobs);
    } else {
        ok = ok && add_text(c, "text", text, len) && cJSON_AddNumberToObject(c, "index", 0) &&
             add_completion_logprobs(c, lp, n_lp, with_logprobs);
    }
    ok = ok && add_nullable(c, "finish_reason", finish_reason);
    if (ok && u)
        ok = add_usage(root, u);
    return finish(root, ok, false);
}

char *api_format_chunk(const api_meta *m, bool first, const char *text, size_t len, const api_token_logprob *lp,
                       int n_lp, bool with_logprobs, const char *finish_reason, const api_usage *u)
{
    bool chat = m->kind == API_CHAT;
    cJSON *choices = NULL;
    cJSON *root = envelope(m, chat ? "chat.completion.chunk" : "text_completion", &choices);
    if (!root)
        return NULL;
    if (u)
        return finish(root, add_usage(root, u), true);
    cJSON *c = cJSON_CreateObject();
    bool ok = add_item(choices, c);
    if (chat) {
        cJSON *delta = ok ? cJSON_CreateObject() : NULL;
        ok = ok && cJSON_AddNumberToObject(c, "index", 0) && delta;
        if (delta && !(ok && cJSON_AddItemToObject(c, "delta", delta))) {
            cJSON_Delete(delta);
            ok = false;
        }
        if (ok && first)
            ok = cJSON_AddStringToObject(delta, "role", "assistant") != NULL;
        if (ok && (first || len > 0))
            ok = add_text(delta, "content", text, len) != NULL;
        ok = ok && add_chat_logprobs(c, lp, n_lp, with_logprobs);
    } else {
        ok = ok && add_text(c, "text", text, len) && cJSON_AddNumberToObject(c, "index", 0) &&
             add_completion_logprobs(c, lp, n_lp, with_logprobs);
    }
    ok = ok && add_nullable(c, "finish_reason", finish_reason);
    return finish(root, ok, true);
}

char *api_format_models(const char *model_id, int64_t created, int64_t n_ctx, int64_t n_params)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *data = root ? cJSON_AddArrayToObject(root, "data") : NULL;
    bool ok = data && cJSON_AddStringToObject(root, "object", "list");
    cJSON *model = ok ? cJSON_CreateObject() : NULL;
    ok = ok && add_item(data, model) && add_cstr(model, "id", model_id) &&
         cJSON_AddStringToObject(model, "object", "model") &&
         cJSON_AddNumberToObject(model, "created", (double)created) &&
         cJSON_AddStringToObject(model, "owned_by", "hearth");
    cJSON *meta = ok ? cJSON_AddObjectToObject(model, "meta") : NULL;
    ok = ok && meta && cJSON_AddNumberToObject(meta, "n_ctx", (double)n_ctx);
    if (ok && n_params >= 0)
        ok = cJSON_AddNumberToObject(meta, "n_params", (double)n_params) != NULL;
    return finish(root, ok, false);
}

char *api_format_tokens(const int32_t *tokens, int32_t n, const char *const *pieces, const size_t *piece_lens)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "tokens") : NULL;
    bool ok = arr != NULL;
    for (int32_t i = 0; ok && i < n; i++) {
        if (!pieces) {
            ok = add_item(arr, cJSON_CreateNumber(tokens[i]));
            continue;
        }
        cJSON *t = cJSON_CreateObject();
        ok = add_item(arr, t) && cJSON_AddNumberToObject(t, "id", tokens[i]);
        const char *p = pieces[i] ? pieces[i] : "";
        size_t len = pieces[i] ? piece_lens[i] : 0;
        if (ok && utf8_first_bad(p, len) == len)
            ok = add_text(t, "piece", p, len) != NULL;
        else if (ok)
            ok = add_bytes(t, "piece", p, len) != NULL;
    }
    return finish(root, ok, false);
}

char *api_format_content(const char *text, size_t len)
{
    cJSON *root = cJSON_CreateObject();
    return finish(root, root && add_text(root, "content", text, len), false);
}

char *api_error_json(const api_error *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *obj = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    const char *msg = e->message;
    bool ok = obj && add_text(obj, "message", msg, strnlen(msg, sizeof e->message)) &&
              add_cstr(obj, "type", e->type ? e->type : INVALID);
    if (ok && e->param[0])
        ok = add_text(obj, "param", e->param, strnlen(e->param, sizeof e->param)) != NULL;
    else if (ok)
        ok = cJSON_AddNullToObject(obj, "param") != NULL;
    ok = ok && cJSON_AddNullToObject(obj, "code");
    return finish(root, ok, false);
}

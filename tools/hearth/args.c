#include "cli.h"

#include "base/paths.h"
#include "model/model.h"
#include "runtime/prefix_cache.h"
#include "text/template.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

int cli_usage_error(const char *command, const char *usage, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "hearth %s: ", command);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n\n%s", usage);
    va_end(args);
    return CLI_EXIT_USAGE;
}

bool cli_is_option(const char *arg, const char *short_name, const char *long_name)
{
    return (short_name && strcmp(arg, short_name) == 0) || (long_name && strcmp(arg, long_name) == 0);
}

bool cli_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *cli_default_model(char *buf, size_t cap, const char *command)
{
    if (!paths_default_model(buf, cap)) {
        fprintf(stderr, "hearth %s: no -m given and no default model path (HOME unset)\n", command);
        return NULL;
    }
    return buf;
}

int cli_sampler_option(const char *command, const char *usage, int argc, char **argv, int *i, sampler_params *sp)
{
    static const char *const names[][2] = {
        {"--temp", "--temperature"}, {"--top-k", NULL}, {"--top-p", NULL}, {"--min-p", NULL},
        {"--repeat-penalty", NULL}, {"--repeat-last-n", NULL}, {"--frequency-penalty", NULL},
        {"--presence-penalty", NULL}, {"-s", "--seed"}, {"-l", "--logit-bias"},
    };
    const char *a = argv[*i];
    size_t which = 0, n = sizeof names / sizeof *names;
    while (which < n && !cli_is_option(a, names[which][0], names[which][1]))
        which++;
    if (which == n)
        return -1;
    if (*i + 1 >= argc)
        return cli_usage_error(command, usage, "%s needs a value", a);
    const char *v = argv[++*i];
    double value;
    long count;
    switch (which) {
    case 0:
        if (!cli_parse_float(v, 0.0, 100.0, &value))
            return cli_usage_error(command, usage, "--temp %s: expected a number from 0 to 100", v);
        sp->temperature = (float)value;
        break;
    case 1:
        if (!cli_parse_long(v, 0, INT32_MAX, &count))
            return cli_usage_error(command, usage, "--top-k %s: expected a number >= 0", v);
        sp->top_k = (int32_t)count;
        break;
    case 2:
        if (!cli_parse_float(v, 0.0, 1.0, &value))
            return cli_usage_error(command, usage, "--top-p %s: expected a number from 0 to 1", v);
        sp->top_p = (float)value;
        break;
    case 3:
        if (!cli_parse_float(v, 0.0, 1.0, &value))
            return cli_usage_error(command, usage, "--min-p %s: expected a number from 0 to 1", v);
        sp->min_p = (float)value;
        break;
    case 4:
        if (!cli_parse_float(v, 0.0, 100.0, &value) || value <= 0.0)
            return cli_usage_error(command, usage, "--repeat-penalty %s: expected a number above 0", v);
        sp->repeat_penalty = (float)value;
        break;
    case 5:
        if (!cli_parse_long(v, -1, SAMPLER_MAX_PENALTY_WINDOW, &count))
            return cli_usage_error(command, usage, "--repeat-last-n %s: expected a number from -1 to 65536", v);
        sp->repeat_last_n = (int32_t)count;
        break;
    case 6:
    case 7:
        if (!cli_parse_float(v, -100.0, 100.0, &value))
            return cli_usage_error(command, usage, "%s %s: expected a number from -100 to 100", a, v);
        *(which == 6 ? &sp->frequency_penalty : &sp->presence_penalty) = (float)value;
        break;
    case 9: {
        /* llama.cpp's spelling: 15043+1, 15043-0.5, 15043-inf. The ids are checked against the vocabulary by
         * sampler_create. One process parses one command line, so the entries can live here. */
        static sampler_bias biases[256];
        size_t digits = strspn(v, "0123456789");
        char *end = NULL;
        errno = 0;
        bool signed_bias = digits > 0 && digits <= 9 && (v[digits] == '+' || v[digits] == '-');
        double bias = signed_bias ? strtod(v + digits, &end) : NAN;
        if (errno || isnan(bias) || *end != '\0' || bias == INFINITY || (isfinite(bias) && fabs(bias) > 100))
            return cli_usage_error(command, usage, "--logit-bias %s: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS, "
                                   "BIAS from 0 to 100, or TOKEN_ID-inf", v);
        if (sp->n_logit_bias >= (int32_t)(sizeof biases / sizeof *biases))
            return cli_usage_error(command, usage, "--logit-bias: at most %zu", sizeof biases / sizeof *biases);
        biases[sp->n_logit_bias++] = (sampler_bias){(int32_t)strtol(v, NULL, 10), (float)bias};
        sp->logit_bias = biases;
        break;
    }
    default: {
        char *end;
        errno = 0;
        unsigned long long seed = strtoull(v, &end, 10);
        if (errno || end == v || *end != '\0' || v[0] == '-')
            return cli_usage_error(command, usage, "--seed %s: expected a non-negative number", v);
        sp->seed = seed;
    }
    }
    return CLI_EXIT_OK;
}

int cli_kv_type_option(const char *command, const char *usage, int argc, char **argv, int *i, hearth_kv_type *out)
{
    const char *a = argv[*i];
    if (!cli_is_option(a, "--kv-type", NULL))
        return -1;
    if (*i + 1 >= argc)
        return cli_usage_error(command, usage, "%s needs a value", a);
    const char *v = argv[++*i];
    if (!model_kv_type_parse(v, out))
        return cli_usage_error(command, usage, "--kv-type %s: expected f16 or q8_0", v);
    return CLI_EXIT_OK;
}

/* "4096", "512K", "64M", "8G" (powers of 1024), at most 2^50. */
static bool parse_size(const char *v, long long *out)
{
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || n < 0 || v[0] == '-')
        return false;
    int shift = 0;
    if (*end) {
        const char *units = "KMGT", *u = strchr(units, *end >= 'a' ? *end - 32 : *end);
        if (!u || !*u || (end[1] && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0))
            return false;
        shift = 10 * (int)(u - units + 1);
    }
    if (n > (1LL << 50) >> shift)
        return false;
    *out = n << shift;
    return true;
}

static int cache_option(const char *command, const char *usage, int argc, char **argv, int *i,
                        cli_generation_options *o)
{
    const char *a = argv[*i];
    if (strcmp(a, "--no-cache") == 0) {
        o->no_cache = true;
        return CLI_EXIT_OK;
    }
    bool dir = strcmp(a, "--cache-dir") == 0, disk = strcmp(a, "--cache-size") == 0;
    bool ram = strcmp(a, "--cache-ram") == 0;
    if (!dir && !disk && !ram)
        return -1;
    if (*i + 1 >= argc)
        return cli_usage_error(command, usage, "%s needs a value", a);
    const char *v = argv[++*i];
    if (dir) {
        if (!*v)
            return cli_usage_error(command, usage, "--cache-dir: expected a directory");
        o->cache_dir = v;
    } else if (!parse_size(v, disk ? &o->cache_disk_bytes : &o->cache_ram_bytes)) {
        return cli_usage_error(command, usage, "%s %s: expected a size such as 0, 512M or 8G", a, v);
    } else if (disk) {
        o->cache_disk_given = true;
    } else {
        o->cache_ram_given = true;
    }
    return CLI_EXIT_OK;
}

const prefix_cache_params *cli_prefix_cache_params(const cli_generation_options *o, size_t default_ram_bytes,
                                                   prefix_cache_params *params, char *dir_buf, size_t dir_cap)
{
    if (o->no_cache)
        return NULL;
    *params = (prefix_cache_params){
        .ram_bytes = o->cache_ram_given ? (size_t)o->cache_ram_bytes : default_ram_bytes,
        .disk_bytes = o->cache_disk_given ? (size_t)o->cache_disk_bytes : (size_t)4 << 30,
    };
    char base[4096];
    if (o->cache_dir && snprintf(dir_buf, dir_cap, "%s", o->cache_dir) < (int)dir_cap)
        params->dir = dir_buf;
    else if (!o->cache_dir && paths_cache_dir(base, sizeof base) &&
             snprintf(dir_buf, dir_cap, "%s/prefix", base) < (int)dir_cap)
        params->dir = dir_buf;
    if (!params->dir)
        params->disk_bytes = 0;
    return params->ram_bytes || params->disk_bytes ? params : NULL;
}

int cli_generation_option(const char *command, const char *usage, int argc, char **argv, int *i,
                          cli_generation_options *o)
{
    int kv_rc = cli_kv_type_option(command, usage, argc, argv, i, &o->kv_type);
    if (kv_rc >= 0)
        return kv_rc;
    int cache_rc = cache_option(command, usage, argc, argv, i, o);
    if (cache_rc >= 0)
        return cache_rc;
    const char *a = argv[*i];
    bool predict = cli_is_option(a, "-n", "--n-predict"), ctx = cli_is_option(a, "-c", "--ctx-size");
    bool threads = cli_is_option(a, "-t", "--threads");
    if (!predict && !ctx && !threads)
        return -1;
    if (*i + 1 >= argc)
        return cli_usage_error(command, usage, "%s needs a value", a);
    const char *v = argv[++*i];
    if (predict && !cli_parse_long(v, -1, INT32_MAX, &o->n_predict))
        return cli_usage_error(command, usage, "-n %s: expected a number >= -1", v);
    if (ctx && !cli_parse_long(v, 0, 1 << 24, &o->n_ctx))
        return cli_usage_error(command, usage, "-c %s: expected a number from 0 to 16777216", v);
    if (threads && !cli_parse_long(v, 1, 1024, &o->n_threads))
        return cli_usage_error(command, usage, "-t %s: expected a number from 1 to 1024", v);
    return CLI_EXIT_OK;
}

chat_template *cli_load_chat_template(const char *command, const model *m, const char *model_path,
                                      const char *template_path, bool *missing)
{
    if (missing)
        *missing = false;
    char *source = NULL, why[512];
    size_t len = 0;
    if (template_path) {
        if (!(source = cli_read_all(template_path, &len, why, sizeof why))) {
            fprintf(stderr, "hearth %s: %s\n", command, why);
            return NULL;
        }
    } else {
        const gguf_string *t = gguf_get_string(model_gguf(m), "tokenizer.chat_template");
        const gguf_string *arch = gguf_get_string(model_gguf(m), "general.architecture");
        char arch_name[64] = "";
        if (arch && arch->len < sizeof arch_name)
            memcpy(arch_name, arch->data, arch->len);
        const char *fallback = t ? NULL : chat_template_fallback(arch_name);
        if (!t && !fallback && missing) {
            *missing = true;
            return NULL;
        }
        if (!t && !fallback) {
            fprintf(stderr, "hearth %s: %s has no chat template (tokenizer.chat_template); give one with "
                            "--template FILE\n", command, model_path);
            return NULL;
        }
        const char *text = t ? t->data : fallback;
        size_t text_len = t ? t->len : strlen(fallback);
        if ((source = malloc(text_len + 1)) != NULL) {
            memcpy(source, text, text_len);
            source[text_len] = '\0';
            len = text_len;
        }
    }
    chat_template *tmpl = NULL;
    hearth_error err = {0};
    if (!source || chat_template_parse(source, len, &tmpl, &err) != HEARTH_OK)
        fprintf(stderr, "hearth %s: the chat template: %s\n", command, source ? err.message : "out of memory");
    free(source);
    return tmpl;
}

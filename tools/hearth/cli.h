/* The hearth CLI: one binary, one file per subcommand. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hearth.h"
#include "runtime/sampler.h"

/* Exit codes shared by every subcommand. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1, /* the command ran and failed (bad file, i/o) */
    CLI_EXIT_USAGE = 2,   /* the command line was wrong */
};

int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_perplexity(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_template(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_fit(int argc, char **argv);

/* Argument helpers (args.c). */
/* "hearth COMMAND: <message>", a blank line and the usage on stderr;
 * returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool cli_is_option(const char *arg, const char *short_name, const char *long_name);
/* Parses a whole decimal integer in [min, max]; false otherwise. */
bool cli_parse_long(const char *s, long min, long max, long *out);
bool cli_parse_float(const char *s, double min, double max, double *out);
/* The default model's path into buf, or NULL after telling the user why. */
const char *cli_default_model(char *buf, size_t cap, const char *command);
/* The help lines of the sampler options every generating command takes. */
#define CLI_SAMPLER_USAGE                                                                    \
    "  --temp T                 temperature (default 0.8; 0: greedy)\n"                      \
    "  --top-k K                keep the K most likely tokens (default 40; 0: off)\n"        \
    "  --top-p P                nucleus sampling (default 0.95; 1: off)\n"                   \
    "  --min-p P                drop tokens below P times the best (default 0.05)\n"         \
    "  --repeat-penalty X       penalise recent tokens (default 1.0: off)\n"                 \
    "  --repeat-last-n N        how many recent tokens (default 64; -1: all)\n"              \
    "  --frequency-penalty X    subtract X per earlier occurrence (default 0)\n"             \
    "  --presence-penalty X     subtract X once if seen (default 0)\n"                       \
    "  -s, --seed N             random seed (default 42): same seed, same text\n"              \
    "  -l, --logit-bias ID+X    add X to token ID's logit (ID-X subtracts; ID-inf bans it);\n" \
    "                           repeatable\n"
/* If argv[*i] is a sampler option, parses it and its value (advancing *i)
 * into sp and returns CLI_EXIT_OK, or a usage error's code; -1 if it is not
 * one. --logit-bias entries are kept in this file's own storage, which
 * sp->logit_bias then points at. */
int cli_sampler_option(const char *command, const char *usage, int argc, char **argv, int *i, sampler_params *sp);
/* --kv-type f16|q8_0 (how the KV cache is stored), the same way. */
#define CLI_KV_TYPE_USAGE "  --kv-type f16|q8_0       KV cache format (default f16; q8_0: about half the memory)\n"
int cli_kv_type_option(const char *command, const char *usage, int argc, char **argv, int *i, hearth_kv_type *out);
/* The prefix cache's options (runtime/prefix_cache.h). */
#define CLI_PREFIX_CACHE_USAGE                                                                         \
    "  --cache-dir DIR          prefix cache directory (default ~/.cache/hearth/prefix)\n"             \
    "  --cache-size SIZE        the prefix cache's bound on disk, e.g. 512M or 8G (default 4G; 0: off)\n" \
    "  --cache-ram SIZE         its bound in memory (default 1G, for run 0; 0: off)\n"                   \
    "  --no-cache               no prefix cache: evaluate every prompt in full\n"
/* -n (tokens to generate, -1: no limit), -c (context, 0: the model's), -t
 * (threads, 0: the default), --kv-type and the prefix cache's, the same way. */
typedef struct cli_generation_options {
    long n_predict, n_ctx, n_threads;
    hearth_kv_type kv_type;
    const char *cache_dir; /* NULL: the default */
    long long cache_disk_bytes, cache_ram_bytes;
    bool cache_disk_given, cache_ram_given, no_cache;
} cli_generation_options;
int cli_generation_option(const char *command, const char *usage, int argc, char **argv, int *i,
                          cli_generation_options *o);
/* The prefix cache the options ask for, in *params (its dir in dir_buf), or
 * NULL for none; default_ram_bytes when --cache-ram is not given. */
struct prefix_cache_params;
const struct prefix_cache_params *cli_prefix_cache_params(const cli_generation_options *o, size_t default_ram_bytes,
                                                          struct prefix_cache_params *params, char *dir_buf,
                                                          size_t dir_cap);

/* The chat template of --template FILE when template_path is set, else the
 * model's tokenizer.chat_template, else the one its architecture implies
 * (chat_template_fallback), parsed; NULL after telling the user why (as
 * "hearth COMMAND: ..."). With `missing`, a model without any template is
 * not an error: NULL and *missing set, nothing said. */
struct model;
struct chat_template;
struct chat_template *cli_load_chat_template(const char *command, const struct model *m, const char *model_path,
                                             const char *template_path, bool *missing);

/* Reads a whole file, or standard input for "-", NUL-terminated (the text may
 * itself hold NULs: *len is its length). On failure returns NULL and says why. */
char *cli_read_all(const char *path, size_t *len, char *why, size_t why_cap);

/* This machine's limits (machine.c), for hearth fit. */
typedef struct machine_limits {
    char cpu[128];           /* /proc/cpuinfo's model name */
    char level[16];          /* the kernel level hearth runs at */
    int threads;             /* the default thread count, which measured */
    double read_bytes_per_s; /* streaming read bandwidth, all threads */
    double int8_ops_per_s;   /* Q4_K panel kernel, 2 per multiply-add, all threads; 0: none */
    bool cached;             /* read from the cache, not measured now */
    double seconds;          /* how long measuring took */
    char cache_path[4200];   /* empty: no cache dir */
} machine_limits;
/* From the cache when it holds this CPU, level and thread count, unless
 * remeasure; else measured (under a second) and cached. */
hearth_status machine_get_limits(bool remeasure, machine_limits *m, hearth_error *err);
/* MemTotal and MemAvailable of /proc/meminfo, in bytes. */
bool machine_meminfo(uint64_t *total, uint64_t *available);
/* This process's resident bytes now, or at their highest (VmHWM); 0 if unknown. */
size_t machine_rss(bool peak);

/* Output helpers (out.c). Text from model files is untrusted bytes: these keep
 * terminal output printable and JSON output valid UTF-8. */
void out_json_string(FILE *out, const char *s, uint64_t len);
/* Prints at most max_bytes of s, escaping quotes, backslashes, control
 * characters and invalid UTF-8 (as \xNN), and "..." when cut. */
void out_text_escaped(FILE *out, const char *s, uint64_t len, uint64_t max_bytes);
/* "1.50 MiB" */
void out_format_bytes(char *buf, size_t size, uint64_t bytes);
/* "268.10 M" */
void out_format_count(char *buf, size_t size, uint64_t count);

#endif

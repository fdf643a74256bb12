/* hearth info: what is in a GGUF file, read from its header, and what a
 * session of it would hold in memory. */
#include "cli.h"

#include "base/cpu.h"
#include "base/threadpool.h"

#include "gguf/gguf.h"
#include "model/model.h"
#include "ops/packed.h"
#include "quant/quant.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    ARRAY_SHOWN_FULL = 16, /* arrays up to this many elements are shown whole */
    ARRAY_HEAD = 8,        /* longer ones show their first elements */
    TEXT_SHOWN = 120,      /* bytes of a string value shown in text output */
};

static const char info_usage[] =
    "usage: hearth info FILE [--json] [-v] [-c N] [--kv-type T] [--check-tensors]\n"
    "       hearth info --cpu\n"
    "\n"
    "Describes a GGUF model file from its header: architecture, name, parameter\n"
    "count, context length, tensor counts and bytes per weight type, file size,\n"
    "tokenizer model and vocabulary size. The file is validated as it is read;\n"
    "a malformed file is reported with the field at fault. For an architecture\n"
    "hearth runs, also the memory one session needs beside the weights: the KV\n"
    "cache of the attention layers (it grows with the context), the state of\n"
    "recurrent layers (fixed), and one batch's work space; and the parts of the\n"
    "file it loads but does not run (multi-token prediction blocks).\n"
    "\n"
    "options:\n"
    "  --json         print one JSON object instead of text\n"
    "  -c, --ctx N    the session's context for the memory figures (default:\n"
    "                 4096, or the model's trained context when smaller)\n"
    "  --kv-type T    the KV cache format for those figures: f16 (default), q8_0\n"
    "  -v, --verbose  also list every metadata key (long arrays abbreviated)\n"
    "                 and every tensor (name, type, shape, offset, bytes)\n"
    "  --check-tensors  also read every weight and fail, naming the tensor, if\n"
    "                 one is NaN or infinite (a corrupt file; hearth run notices\n"
    "                 only when the logits come out so); seconds per GB\n"
    "  --cpu          describe this CPU instead: its features, the kernel level\n"
    "                 hearth chose (HEARTH_CPU=scalar|avx2|avx512 lowers it) and\n"
    "                 the default thread count\n"
    "  -h, --help     show this help\n";

typedef struct type_totals {
    uint64_t count;
    uint64_t bytes;
} type_totals;

typedef struct model_summary {
    const gguf_string *arch;
    const gguf_string *name;
    const gguf_string *tokenizer;
    uint64_t parameters;
    bool has_context;
    uint64_t context_length;
    bool has_vocab;
    uint64_t vocab_size;
    type_totals per_type[QUANT_TYPE_COUNT];
} model_summary;

/* What a session needs, from the model bound to the file (not repacked)
 * and a state created for it, whose pages nothing touches. */
typedef struct session_summary {
    bool known;           /* the architecture is one hearth runs */
    char why[512]; /* else: why not (a hearth_error message) */
    int32_t n_ctx, n_batch;
    hearth_kv_type kv_type;
    model_memory memory;
    uint64_t mtp_layers;  /* multi-token prediction blocks loaded and not run */
} session_summary;

enum { INFO_DEFAULT_CTX = 4096, INFO_BATCH = 512 };

static void summarise_session(const char *path, const gguf_file *f, const gguf_string *arch, int32_t n_ctx,
                              hearth_kv_type kv_type, session_summary *s)
{
    memset(s, 0, sizeof *s);
    s->kv_type = kv_type;
    char key[128];
    if (arch) {
        snprintf(key, sizeof key, "%.*s.nextn_predict_layers", (int)(arch->len < 64 ? arch->len : 64), arch->data);
        if (!gguf_get_uint(f, key, &s->mtp_layers))
            s->mtp_layers = 0;
    }
    model *m = NULL;
    hearth_error err = {0};
    if (model_open(path, false, &m, &err) != HEARTH_OK) {
        snprintf(s->why, sizeof s->why, "%s", err.message);
        return;
    }
    s->n_ctx = n_ctx > 0 ? n_ctx : (model_n_ctx_train(m) < INFO_DEFAULT_CTX ? model_n_ctx_train(m) : INFO_DEFAULT_CTX);
    s->n_batch = s->n_ctx < INFO_BATCH ? s->n_ctx : INFO_BATCH;
    if (model_memory_for(m, 1, s->n_ctx, s->n_batch, kv_type, &s->memory, &err) != HEARTH_OK)
        snprintf(s->why, sizeof s->why, "%s", err.message);
    else
        s->known = true;
    model_free(m);
}

static void print_session_text(const session_summary *s)
{
    char total[32], kv[32], rec[32], scratch[32];
    if (!s->known) {
        printf("session memory:  - (%s)\n", s->why);
    } else {
        out_format_bytes(total, sizeof total, s->memory.kv_cache + s->memory.recurrent + s->memory.scratch);
        out_format_bytes(kv, sizeof kv, s->memory.kv_cache);
        out_format_bytes(rec, sizeof rec, s->memory.recurrent);
        out_format_bytes(scratch, sizeof scratch, s->memory.scratch);
        printf("session memory:  %s at a context of %d (batches of %d): KV cache %s (%s), recurrent state %s, "
               "work space %s\n",
               total, s->n_ctx, s->n_batch, kv, model_kv_type_name(s->kv_type), rec, scratch);
    }
    if (s->mtp_layers)
        printf("not run:         %" PRIu64 " multi-token prediction block%s (loaded; hearth does not draft with "
               "them yet)\n",
               s->mtp_layers, s->mtp_layers == 1 ? "" : "s");
}

static void print_session_json(const session_summary *s)
{
    fputs(", \"session\": ", stdout);
    if (!s->known) {
        fputs("{\"supported\": false, \"reason\": ", stdout);
        out_json_string(stdout, s->why, strlen(s->why));
    } else {
        printf("{\"supported\": true, \"context\": %d, \"batch\": %d, \"kv_type\": \"%s\", \"kv_cache_bytes\": %zu, "
               "\"recurrent_state_bytes\": %zu, \"work_space_bytes\": %zu",
               s->n_ctx, s->n_batch, model_kv_type_name(s->kv_type), s->memory.kv_cache, s->memory.recurrent,
               s->memory.scratch);
    }
    printf(", \"mtp_layers_not_run\": %" PRIu64 "}", s->mtp_layers);
}

static void summarise(const gguf_file *f, model_summary *s)
{
    memset(s, 0, sizeof *s);
    s->arch = gguf_get_string(f, "general.architecture");
    s->name = gguf_get_string(f, "general.name");
    s->tokenizer = gguf_get_string(f, "tokenizer.ggml.model");
    if (s->arch && s->arch->len < 200) {
        char key[256];
        snprintf(key, sizeof key, "%.*s.context_length", (int)s->arch->len, s->arch->data);
        s->has_context = gguf_get_uint(f, key, &s->context_length);
    }
    const gguf_array *tokens = gguf_get_array(f, "tokenizer.ggml.tokens");
    if (tokens) {
        s->has_vocab = true;
        s->vocab_size = tokens->count;
    }
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        s->parameters += (uint64_t)t->n_elements;
        s->per_type[t->type].count++;
        s->per_type[t->type].bytes += t->size;
    }
}

/* ---- text ------------------------------------------------------------------ */

static void print_string_or_dash(const gguf_string *s)
{
    if (s)
        out_text_escaped(stdout, s->data, s->len, TEXT_SHOWN);
    else
        fputs("-", stdout);
}

static void print_text_scalar(const gguf_array *arr, uint64_t i)
{
    switch (arr->elem_type) {
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        printf("%.9g", gguf_array_get_float(arr, i));
        break;
    case GGUF_TYPE_BOOL:
        fputs(gguf_array_get_uint(arr, i) ? "true" : "false", stdout);
        break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        printf("%" PRId64, gguf_array_get_int(arr, i));
        break;
    default:
        printf("%" PRIu64, gguf_array_get_uint(arr, i));
    }
}

static void print_text_value(const gguf_value *v);

static void print_text_array(const gguf_array *a)
{
    printf("[%s x %" PRIu64 "] [", gguf_value_type_name(a->elem_type), a->count);
    uint64_t shown = a->count <= ARRAY_SHOWN_FULL ? a->count : ARRAY_HEAD;
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            fputs(", ", stdout);
        if (a->elem_type == GGUF_TYPE_STRING) {
            putchar('"');
            out_text_escaped(stdout, a->strings[i].data, a->strings[i].len, TEXT_SHOWN);
            putchar('"');
        } else if (a->elem_type == GGUF_TYPE_ARRAY) {
            print_text_value(&a->arrays[i]);
        } else {
            print_text_scalar(a, i);
        }
    }
    fputs(shown < a->count ? ", ...]" : "]", stdout);
}

static void print_text_value(const gguf_value *v)
{
    switch (v->type) {
    case GGUF_TYPE_STRING:
        putchar('"');
        out_text_escaped(stdout, v->as.str.data, v->as.str.len, TEXT_SHOWN);
        putchar('"');
        break;
    case GGUF_TYPE_ARRAY:
        print_text_array(&v->as.arr);
        break;
    case GGUF_TYPE_BOOL:
        fputs(v->as.b ? "true" : "false", stdout);
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        printf("%.9g", v->as.f64);
        break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        printf("%" PRId64, v->as.i64);
        break;
    default:
        printf("%" PRIu64, v->as.u64);
    }
}

static void format_shape(char *buf, size_t size, const gguf_tensor *t)
{
    int n = snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < size; d++)
        n += snprintf(buf + n, size - (size_t)n, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "]");
}

static void print_text(const char *path, const gguf_file *f, const model_summary *s, const session_summary *ss,
                       bool verbose)
{
    char size_buf[32], count_buf[32];
    out_format_bytes(size_buf, sizeof size_buf, gguf_file_size(f));
    printf("file:            %s\n", path);
    printf("file size:       %s (%" PRIu64 " bytes)\n", size_buf, gguf_file_size(f));
    printf("format:          GGUF v%u, %" PRId64 " metadata keys, %" PRId64 " tensors, alignment %u\n",
           gguf_version(f), gguf_kv_count(f), gguf_tensor_count(f), gguf_alignment(f));
    printf("architecture:    ");
    print_string_or_dash(s->arch);
    printf("\nname:            ");
    print_string_or_dash(s->name);
    out_format_count(count_buf, sizeof count_buf, s->parameters);
    printf("\nparameters:      %s (%" PRIu64 ")\n", count_buf, s->parameters);
    if (s->has_context)
        printf("context length:  %" PRIu64 "\n", s->context_length);
    else
        printf("context length:  -\n");
    printf("tokenizer:       ");
    print_string_or_dash(s->tokenizer);
    if (s->has_vocab)
        printf(", vocabulary of %" PRIu64 " tokens", s->vocab_size);
    printf("\nweights by type:%s\n", gguf_tensor_count(f) ? "" : " (no tensors)");
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
        if (!s->per_type[t].count)
            continue;
        out_format_bytes(size_buf, sizeof size_buf, s->per_type[t].bytes);
        printf("  %-8s %6" PRIu64 " tensors %12s\n", quant_get_traits((uint32_t)t)->name, s->per_type[t].count,
               size_buf);
    }
    print_session_text(ss);
    if (!verbose)
        return;

    printf("\nmetadata:\n");
    for (int64_t i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        printf("  %-44s %-8s ", kv->key, gguf_value_type_name(kv->value.type));
        print_text_value(&kv->value);
        putchar('\n');
    }
    printf("\ntensors:\n  %5s  %-44s %-8s %-28s %14s %14s\n", "#", "name", "type", "shape", "offset", "bytes");
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[128];
        format_shape(shape, sizeof shape, t);
        printf("  %5" PRId64 "  %-44s %-8s %-28s %14" PRIu64 " %14" PRIu64 "\n", i, t->name,
               quant_get_traits(t->type)->name, shape, t->offset, t->size);
    }
}

/* ---- JSON ------------------------------------------------------------------ */

static void print_json_number(double v)
{
    if (isfinite(v))
        printf("%.17g", v);
    else
        fputs("null", stdout); /* JSON has no NaN or infinity */
}

static void print_json_value(const gguf_value *v);

static void print_json_array(const gguf_array *a)
{
    uint64_t shown = a->count <= ARRAY_SHOWN_FULL ? a->count : ARRAY_HEAD;
    printf("{\"array_of\": \"%s\", \"count\": %" PRIu64 ", \"truncated\": %s, \"values\": [",
           gguf_value_type_name(a->elem_type), a->count, shown < a->count ? "true" : "false");
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            fputs(", ", stdout);
        if (a->elem_type == GGUF_TYPE_STRING)
            out_json_string(stdout, a->strings[i].data, a->strings[i].len);
        else if (a->elem_type == GGUF_TYPE_ARRAY)
            print_json_value(&a->arrays[i]);
        else if (a->elem_type == GGUF_TYPE_FLOAT32 || a->elem_type == GGUF_TYPE_FLOAT64)
            print_json_number(gguf_array_get_float(a, i));
        else
            print_text_scalar(a, i); /* integers and bools print the same in JSON */
    }
    fputs("]}", stdout);
}

static void print_json_value(const gguf_value *v)
{
    switch (v->type) {
    case GGUF_TYPE_STRING:
        out_json_string(stdout, v->as.str.data, v->as.str.len);
        break;
    case GGUF_TYPE_ARRAY:
        print_json_array(&v->as.arr);
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        print_json_number(v->as.f64);
        break;
    default:
        print_text_value(v);
    }
}

static void print_json_string_or_null(const gguf_string *s)
{
    if (s)
        out_json_string(stdout, s->data, s->len);
    else
        fputs("null", stdout);
}

static void print_json(const char *path, const gguf_file *f, const model_summary *s, const session_summary *ss,
                       bool verbose)
{
    fputs("{\"file\": ", stdout);
    out_json_string(stdout, path, strlen(path));
    printf(", \"file_size\": %" PRIu64 ", \"gguf_version\": %u, \"alignment\": %u, \"data_offset\": %" PRIu64
           ", \"metadata_keys\": %" PRId64 ", \"tensor_count\": %" PRId64,
           gguf_file_size(f), gguf_version(f), gguf_alignment(f), gguf_data_offset(f), gguf_kv_count(f),
           gguf_tensor_count(f));
    fputs(", \"architecture\": ", stdout);
    print_json_string_or_null(s->arch);
    fputs(", \"name\": ", stdout);
    print_json_string_or_null(s->name);
    printf(", \"parameters\": %" PRIu64 ", \"context_length\": ", s->parameters);
    if (s->has_context)
        printf("%" PRIu64, s->context_length);
    else
        fputs("null", stdout);
    fputs(", \"tokenizer\": {\"model\": ", stdout);
    print_json_string_or_null(s->tokenizer);
    fputs(", \"vocab_size\": ", stdout);
    if (s->has_vocab)
        printf("%" PRIu64 "}", s->vocab_size);
    else
        fputs("null}", stdout);
    fputs(", \"types\": [", stdout);
    bool first = true;
    for (int t = 0; t < QUANT_TYPE_COUNT; t++) {
        if (!s->per_type[t].count)
            continue;
        printf("%s{\"type\": \"%s\", \"tensors\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", first ? "" : ", ",
               quant_get_traits((uint32_t)t)->name, s->per_type[t].count, s->per_type[t].bytes);
        first = false;
    }
    fputs("]", stdout);
    print_session_json(ss);
    if (verbose) {
        fputs(", \"metadata\": {", stdout);
        for (int64_t i = 0; i < gguf_kv_count(f); i++) {
            const gguf_kv *kv = gguf_kv_at(f, i);
            if (i)
                fputs(", ", stdout);
            out_json_string(stdout, kv->key, strlen(kv->key));
            printf(": {\"type\": \"%s\", \"value\": ", gguf_value_type_name(kv->value.type));
            print_json_value(&kv->value);
            fputs("}", stdout);
        }
        fputs("}, \"tensors\": [", stdout);
        for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            fputs(i ? ", {\"name\": " : "{\"name\": ", stdout);
            out_json_string(stdout, t->name, strlen(t->name));
            printf(", \"type\": \"%s\", \"shape\": [", quant_get_traits(t->type)->name);
            for (uint32_t d = 0; d < t->n_dims; d++)
                printf(d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
            printf("], \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", t->offset, t->size);
        }
        fputs("]", stdout);
    }
    fputs("}\n", stdout);
}

static int print_cpu(void)
{
    const cpu_features *f = cpu_get_features();
    printf("kernels:         %s (hardware: %s)\n", cpu_level_name(cpu_best_level()),
           cpu_level_name(cpu_hardware_level()));
    printf("threads:         %d by default (physical cores)\n", threadpool_default_threads());
    /* Which weight types get the 16-row panels at load (ops/packed.h); the
     * others are multiplied row by row as stored. */
    printf("repacking:      ");
    int n_packed = 0;
    for (uint32_t type = 0; type < QUANT_TYPE_COUNT; type++)
        if (ops_packed_supported(type))
            printf(" %s", quant_get_traits(type)->name), n_packed++;
    printf("%s\n", n_packed ? "" : " none (no panel kernels at this level)");
    printf("features:       ");
    const struct {
        const char *name;
        bool present;
    } flags[] = {
        {"avx2", f->avx2},         {"fma", f->fma},           {"f16c", f->f16c},
        {"avx512f", f->avx512f},   {"avx512bw", f->avx512bw}, {"avx512vl", f->avx512vl},
        {"avx512vnni", f->avx512vnni}, {"avx512bf16", f->avx512bf16}, {"avx-vnni", f->avx_vnni},
    };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        if (flags[i].present)
            printf(" %s", flags[i].name);
    printf("\nOS saves:        %s%s\n", f->os_ymm ? "ymm" : "-", f->os_zmm ? " zmm" : "");
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* --check-tensors, as llama.cpp's: every weight dequantized a row at a time
 * and looked at. The engine does not do this at load (it would cost seconds
 * on a large model); it refuses NaN logits instead. False, saying where,
 * at the first value that is not finite. */
static bool check_tensor_values(const gguf_file *f, int64_t *n_checked, char *why, size_t why_size)
{
    float *row = NULL;
    int64_t cap = 0;
    bool ok = true;
    *n_checked = 0;
    for (int64_t i = 0; ok && i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const quant_traits *traits = quant_get_traits(t->type);
        uint64_t row_bytes;
        /* The reader checked the type and that rows are whole blocks. */
        if (!traits || !traits->dequantize || !quant_bytes(t->type, (uint64_t)t->ne[0], &row_bytes))
            continue;
        if (t->ne[0] > cap) {
            float *grown = realloc(row, (size_t)t->ne[0] * sizeof *row);
            if (!grown) {
                snprintf(why, why_size, "out of memory");
                ok = false;
                break;
            }
            row = grown;
            cap = t->ne[0];
        }
        const unsigned char *data = t->data;
        for (int64_t r = 0; ok && r < t->n_elements / t->ne[0]; r++) {
            traits->dequantize(data + (size_t)r * row_bytes, row, t->ne[0]);
            for (int64_t c = 0; c < t->ne[0]; c++) {
                if (!isfinite(row[c])) {
                    snprintf(why, why_size, "tensor %s: %s at row %" PRId64 ", column %" PRId64 ": the file is corrupt",
                             t->name, isnan(row[c]) ? "NaN" : "an infinity", r, c);
                    ok = false;
                    break;
                }
            }
        }
        *n_checked += 1;
    }
    free(row);
    return ok;
}

int cli_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false, verbose = false, cpu = false, check_tensors = false;
    long n_ctx = 0;
    hearth_kv_type kv_type = HEARTH_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int kv_rc = cli_kv_type_option("info", info_usage, argc, argv, &i, &kv_type);
        if (kv_rc > 0)
            return kv_rc;
        if (kv_rc == 0)
            continue;
        if (strcmp(a, "--cpu") == 0) {
            cpu = true;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--check-tensors") == 0) {
            check_tensors = true;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0) {
            char *end = NULL;
            n_ctx = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
            if (!end || *end || n_ctx < 1 || n_ctx > INT32_MAX) {
                fprintf(stderr, "hearth info: %s needs a context size from 1 to %d\n\n%s", a, INT32_MAX, info_usage);
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(info_usage, stdout);
            return CLI_EXIT_OK;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "hearth info: unknown option '%s'\n\n%s", a, info_usage);
            return CLI_EXIT_USAGE;
        } else if (path) {
            fprintf(stderr, "hearth info: more than one file given ('%s' and '%s')\n\n%s", path, a, info_usage);
            return CLI_EXIT_USAGE;
        } else {
            path = a;
        }
    }
    if (cpu)
        return print_cpu();
    if (!path) {
        fprintf(stderr, "hearth info: no model file given\n\n%s", info_usage);
        return CLI_EXIT_USAGE;
    }

    gguf_file *f;
    hearth_error err = {0};
    if (gguf_open(path, &f, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth info: %s\n", err.message);
        return CLI_EXIT_FAILURE;
    }
    model_summary s;
    summarise(f, &s);
    session_summary ss;
    summarise_session(path, f, s.arch, (int32_t)n_ctx, kv_type, &ss);
    if (json)
        print_json(path, f, &s, &ss, verbose);
    else
        print_text(path, f, &s, &ss, verbose);
    int rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    char why[512];
    int64_t n_checked;
    if (check_tensors && !check_tensor_values(f, &n_checked, why, sizeof why)) {
        fprintf(stderr, "hearth info: %s: %s\n", path, why);
        rc = CLI_EXIT_FAILURE;
    } else if (check_tensors) {
        fprintf(stderr, "hearth info: %" PRId64 " of %" PRId64 " tensors checked: every value is finite\n", n_checked,
                gguf_tensor_count(f));
    }
    gguf_close(f);
    return rc;
}

/* hearth tokenize: text to token ids with a model's vocabulary, like
 * llama-tokenize. */
#include "cli.h"

#include "gguf/gguf.h"
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

static const char tokenize_usage[] =
    "usage: hearth tokenize [-m FILE] (-p TEXT | -f FILE) [--no-bos] [--special] [-v]\n"
    "\n"
    "Prints the token ids of a text on one line, separated by spaces.\n"
    "\n"
    "options:\n"
    "  -m, --model FILE   GGUF model whose vocabulary to use (default: the model\n"
    "                     scripts/setup.sh installs, or $HEARTH_MODEL)\n"
    "  -p, --prompt TEXT  the text; '-p -' reads it from standard input\n"
    "  -f, --file FILE    read the text from FILE\n"
    "  --no-bos           do not add the BOS/EOS tokens the model asks for\n"
    "  --special          turn special-token text such as <start_of_turn> into\n"
    "                     those tokens (otherwise it is plain text)\n"
    "  -v, --verbose      one token a line: id and the piece it stands for\n"
    "  -h, --help         show this help\n";

#define usage_error(...) cli_usage_error("tokenize", tokenize_usage, __VA_ARGS__)

static void print_piece(const vocab *v, int32_t id)
{
    char piece[256];
    size_t n = vocab_token_to_piece(v, id, true, piece, sizeof piece);
    printf("%6d -> '", id);
    out_text_escaped(stdout, piece, n < sizeof piece ? n : sizeof piece, sizeof piece);
    printf("'\n");
}

int cli_tokenize(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *file = NULL;
    bool add_special = true, parse_special = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(tokenize_usage, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if (!has_value)
                return usage_error("%s needs a file", a);
            model = argv[++i];
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
            if (!has_value)
                return usage_error("%s needs a text", a);
            prompt = argv[++i];
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (!has_value)
                return usage_error("%s needs a file", a);
            file = argv[++i];
        } else if (strcmp(a, "--no-bos") == 0) {
            add_special = false;
        } else if (strcmp(a, "--special") == 0) {
            parse_special = true;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (!prompt == !file)
        return usage_error("%s", "give the text with exactly one of -p and -f");

    char default_model[4096];
    if (!model && !(model = cli_default_model(default_model, sizeof default_model, "tokenize")))
        return CLI_EXIT_USAGE;

    size_t len = 0;
    char *owned = NULL, why[512];
    const char *text = prompt;
    if (file || strcmp(prompt, "-") == 0) {
        owned = cli_read_all(file ? file : "-", &len, why, sizeof why);
        if (!owned) {
            fprintf(stderr, "hearth tokenize: %s\n", why);
            return CLI_EXIT_FAILURE;
        }
        text = owned;
    } else {
        len = strlen(prompt);
    }

    int rc = CLI_EXIT_FAILURE;
    gguf_file *f = NULL;
    vocab *v = NULL;
    int32_t *ids = NULL;
    hearth_error err = {0};
    if (gguf_open(model, &f, &err) != HEARTH_OK || vocab_load(f, &v, &err) != HEARTH_OK) {
        fprintf(stderr, "hearth tokenize: %s\n", err.message);
        goto done;
    }
    /* Usually fewer tokens than bytes; when not, the first call says how many. */
    size_t cap = len + 16;
    int64_t n = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        free(ids);
        if (!(ids = malloc(cap * sizeof *ids))) {
            fprintf(stderr, "hearth tokenize: out of memory\n");
            goto done;
        }
        n = vocab_tokenize(v, text, len, add_special, parse_special, ids, cap, &err);
        if (n < 0 || (size_t)n <= cap)
            break;
        cap = (size_t)n;
    }
    if (n < 0) {
        fprintf(stderr, "hearth tokenize: %s\n", err.message);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (verbose)
            print_piece(v, ids[i]);
        else
            printf(i ? " %d" : "%d", ids[i]);
    }
    if (!verbose)
        putchar('\n');
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
    free(ids);
    free(owned);
    vocab_free(v);
    gguf_close(f);
    return rc;
}

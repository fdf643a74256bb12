/* hearth: the command-line front end. Dispatches to one subcommand per file. */
#include "cli.h"

#include "hearth.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cli_run, "generate text from a prompt (streams to stdout)"},
    {"info", cli_info, "describe a GGUF model file: architecture, size, types, metadata"},
    {"tokenize", cli_tokenize, "turn text into the model's token ids (and pieces)"},
    {"chat", cli_chat, "talk with the model through its chat template"},
    {"serve", cli_serve, "serve the model over HTTP: OpenAI's API and a chat page"},
    {"template", cli_template, "render the model's chat template over a conversation"},
    {"fit", cli_fit, "will the model fit, and how fast will it run: memory and speed from the header"},
    {"bench", cli_bench, "measure prompt and generation speed, like llama-bench"},
    {"perplexity", cli_perplexity, "measure a model's perplexity on a text, as llama-perplexity does"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "hearth %s — run open-weight language models locally\n\n"
                 "usage: hearth <command> [options]\n\ncommands:\n",
            HEARTH_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nhearth <command> --help shows a command's options.\n"
                 "hearth --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("hearth %s\n", HEARTH_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "hearth: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}

/* llama.cpp's side of bench/tokenize_compare.sh: the same driver as
 * bench/tokenize_bench.c (bench/tokenize_common.h), tokenizing through
 * llama.h's llama_tokenize with only the vocabulary loaded. Built against the
 * oracle by scripts/oracle/build-logits-oracle.sh; never part of hearth.
 *
 *   tokenize_llama VOCAB.gguf TEXT [runs] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include "llama.h"
#include "tokenize_common.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

static void *load(const char *path)
{
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(path, mp); /* kept for the program's life */
    if (!model) {
        fprintf(stderr, "tokenize_llama: cannot load %s\n", path);
        return NULL;
    }
    return (void *)llama_model_get_vocab(model);
}

static int64_t tokenize(void *vocab, const char *text, size_t len, int32_t *ids, size_t cap)
{
    int32_t n = llama_tokenize(vocab, text, (int32_t)len, ids, (int32_t)cap, false, false);
    if (n < 0)
        fprintf(stderr, "tokenize_llama: llama_tokenize failed\n");
    return n;
}

int main(int argc, char **argv)
{
    static const bench_engine llama = {"llama.cpp", load, tokenize};
    return bench_main(argc, argv, &llama);
}

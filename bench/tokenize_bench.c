/* Tokenizer throughput of hearth (bench/tokenize_common.h has the driver and
 * the output; bench/tokenize_compare.sh runs it beside llama.cpp's twin,
 * bench/tokenize_llama.c).
 *
 *   hearth-bench-tokenize VOCAB.gguf TEXT [runs] */
#include "tokenize_common.h"

#include "gguf/gguf.h"
#include "text/vocab.h"

static void *load(const char *path)
{
    gguf_file *f; /* stays open for the program's life: the vocabulary points into it */
    vocab *v;
    hearth_error err = {0};
    if (gguf_open(path, &f, &err) == HEARTH_OK && vocab_load(f, &v, &err) == HEARTH_OK)
        return v;
    fprintf(stderr, "hearth-bench-tokenize: %s\n", err.message);
    return NULL;
}

static int64_t tokenize(void *v, const char *text, size_t len, int32_t *ids, size_t cap)
{
    hearth_error err = {0};
    int64_t n = vocab_tokenize(v, text, len, false, false, ids, cap, &err);
    if (n < 0)
        fprintf(stderr, "hearth-bench-tokenize: %s\n", err.message);
    return n;
}

int main(int argc, char **argv)
{
    static const bench_engine hearth = {"hearth", load, tokenize};
    return bench_main(argc, argv, &hearth);
}

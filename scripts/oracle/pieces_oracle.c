/* Every token's piece as llama.cpp writes it (llama_token_to_piece, no
 * leading-space strip), without and with special tokens: by default one
 * line per mode with a 64-bit FNV-1a hash over (id, length, bytes) of every
 * piece in id order, which tests compare with hearth's pieces (the fixture
 * tests/fixtures/tokenizer/NAME.pieces); with --all, every piece in hex, to
 * find the token a mismatch is in.
 *
 *   prog=$(scripts/oracle/build-logits-oracle.sh scripts/oracle/pieces_oracle.c | tail -n 1)
 *   "$prog" VOCAB.gguf [--all] > tests/fixtures/tokenizer/NAME.pieces */
#include "llama.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void quiet(enum ggml_log_level level, const char *text, void *data)
{
    (void)level, (void)text, (void)data;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VOCAB.gguf [--all]\n", argv[0]);
        return 2;
    }
    bool all = argc > 2 && strcmp(argv[2], "--all") == 0;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(argv[1], params);
    if (!model) {
        fprintf(stderr, "%s: cannot load\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t n = llama_vocab_n_tokens(vocab);
    static char piece[1 << 16];
    for (int special = 0; special < 2; special++) {
        uint64_t h = 0xCBF29CE484222325ull;
        for (int32_t id = 0; id < n; id++) {
            int32_t len = llama_token_to_piece(vocab, id, piece, sizeof piece, 0, special);
            if (len < 0) {
                fprintf(stderr, "token %d: piece longer than %zu bytes\n", id, sizeof piece);
                return 1;
            }
            uint32_t len32 = (uint32_t)len;
            h = fnv1a(fnv1a(fnv1a(h, &id, sizeof id), &len32, sizeof len32), piece, (size_t)len);
            if (all) {
                printf("%d %d ", special, id);
                for (int32_t i = 0; i < len; i++)
                    printf("%02x", (unsigned char)piece[i]);
                printf("\n");
            }
        }
        if (!all)
            printf("special=%d tokens=%d fnv1a=%016llx\n", special, n, (unsigned long long)h);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

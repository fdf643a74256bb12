/* The reader on real GGUF files: the vocabulary files in ../shared/data, as
 * published with llama.cpp. Expected figures were read from the same files by
 * an independent reader (PyPI gguf's GGUFReader): key and token counts, an
 * FNV-1a hash over every token string (each followed by a NUL byte), the sum
 * of the scores and of the token types, the merge count. */
#include "test.h"

#include "gguf/gguf.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

typedef struct vocab_expectation {
    const char *file;
    int64_t n_kv;
    uint64_t n_tokens;
    uint64_t token_hash;
    bool has_scores;
    double score_sum;
    int64_t type_sum;
    uint64_t n_merges; /* 0: no merges key */
    const char *arch;
    uint64_t context_length;
} vocab_expectation;

static const vocab_expectation expectations[] = {
    {"ggml-vocab-llama-spm.gguf", 22, 32000, 0xd0ffd146db872a00ull, true, -16503658723.0, 33285, 0, "llama", 4096},
    {"ggml-vocab-phi-3.gguf", 26, 32064, 0xda0aee2fc0cc050bull, true, -16504202723.0, 33426, 0, "phi3", 4096},
    {"ggml-vocab-gpt-2.gguf", 16, 50257, 0x9afb947b6443b4b9ull, false, 0.0, 50259, 50000, "gpt2", 1024},
};

static uint64_t hash_tokens(const gguf_array *tokens)
{
    uint64_t h = 14695981039346656037ull;
    for (uint64_t i = 0; i < tokens->count; i++) {
        for (uint64_t j = 0; j <= tokens->strings[i].len; j++) {
            uint8_t b = j < tokens->strings[i].len ? (uint8_t)tokens->strings[i].data[j] : 0;
            h ^= b;
            h *= 1099511628211ull;
        }
    }
    return h;
}

static void check_vocab_file(const vocab_expectation *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/%s", HEARTH_SHARED_DATA_DIR, e->file);
    gguf_file *f;
    hearth_error err = {0};
    if (gguf_open(path, &f, &err) != HEARTH_OK) {
        CHECK_MSG(false, "%s", err.message);
        return;
    }
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_tensor_count(f) == 0);
    CHECK_MSG(gguf_kv_count(f) == e->n_kv, "%s: %lld keys", e->file, (long long)gguf_kv_count(f));

    const gguf_string *arch = gguf_get_string(f, "general.architecture");
    CHECK(arch && gguf_string_equals(arch, e->arch));
    char key[128];
    snprintf(key, sizeof key, "%s.context_length", e->arch);
    uint64_t ctx = 0;
    CHECK(gguf_get_uint(f, key, &ctx) && ctx == e->context_length);

    const gguf_array *tokens = gguf_get_array(f, "tokenizer.ggml.tokens");
    CHECK(tokens && tokens->elem_type == GGUF_TYPE_STRING);
    if (tokens) {
        CHECK(tokens->count == e->n_tokens);
        CHECK_MSG(hash_tokens(tokens) == e->token_hash, "%s: token hash %llx", e->file,
                  (unsigned long long)hash_tokens(tokens));
    }
    const gguf_array *scores = gguf_get_array(f, "tokenizer.ggml.scores");
    CHECK((scores != NULL) == e->has_scores);
    if (scores) {
        CHECK(scores->elem_type == GGUF_TYPE_FLOAT32 && scores->count == e->n_tokens);
        double sum = 0;
        for (uint64_t i = 0; i < scores->count; i++)
            sum += gguf_array_get_float(scores, i);
        CHECK_MSG(fabs(sum - e->score_sum) <= 1.0, "%s: score sum %.1f", e->file, sum);
    }
    const gguf_array *types = gguf_get_array(f, "tokenizer.ggml.token_type");
    CHECK(types && types->elem_type == GGUF_TYPE_INT32 && types->count == e->n_tokens);
    if (types) {
        int64_t sum = 0;
        for (uint64_t i = 0; i < types->count; i++)
            sum += gguf_array_get_int(types, i);
        CHECK(sum == e->type_sum);
    }
    const gguf_array *merges = gguf_get_array(f, "tokenizer.ggml.merges");
    CHECK(e->n_merges ? merges && merges->count == e->n_merges : merges == NULL);
    gguf_close(f);
}

int main(void)
{
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/tokenizer", HEARTH_SHARED_DATA_DIR);
    if (access(probe, R_OK) != 0)
        TEST_SKIP("%s is absent: the shared test data is not next to this checkout", probe);
    for (size_t i = 0; i < sizeof expectations / sizeof expectations[0]; i++)
        check_vocab_file(&expectations[i]);
    return test_finish("test_gguf_shared");
}

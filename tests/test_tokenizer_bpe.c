/* Byte-level BPE on a tiny vocabulary written here, so it runs without the
 * shared data (test_tokenizer checks the real GPT-2 vocabulary against
 * llama.cpp's vectors): the merge order, each pre-tokenizer's way of cutting
 * digits, special tokens in text, and the inputs that must be errors (unknown
 * pre-tokenizer, missing merges, text that is not UTF-8). */
#include "test.h"

#include "gguf/gguf.h"
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

/* Ids 0..255: byte b spelled in GPT-2's alphabet; then these. */
enum { ID_HE = 256, ID_LL, ID_HELL, ID_HELLO, ID_123, ID_AA, ID_EOT, N_TOKENS };
static const char *const extra_tokens[] = {"he", "ll", "hell", "hello", "123", "aa", "<|endoftext|>"};
static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "a a"};

static void spell_byte(unsigned byte, char out[3])
{
    bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    unsigned moved = 0;
    for (unsigned b = 0; b < byte; b++)
        moved += !((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE);
    unsigned cp = printable ? byte : 0x100 + moved;
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

/* pre: tokenizer.ggml.pre, or NULL to leave it out; with_merges: whether
 * tokenizer.ggml.merges is written. Returns the image (caller frees). */
static void *make_vocab_image(const char *pre, bool with_merges, size_t *size)
{
    static char spelled[256][3];
    const char *tokens[N_TOKENS];
    int32_t types[N_TOKENS];
    for (unsigned b = 0; b < 256; b++) {
        spell_byte(b, spelled[b]);
        tokens[b] = spelled[b];
        types[b] = 1;
    }
    for (int i = 256; i < N_TOKENS; i++) {
        tokens[i] = extra_tokens[i - 256];
        types[i] = i == ID_EOT ? 3 : 1;
    }
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    gguf_writer_add_string(w, "tokenizer.ggml.model", "gpt2", &err);
    if (pre)
        gguf_writer_add_string(w, "tokenizer.ggml.pre", pre, &err);
    gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, N_TOKENS, &err);
    gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_TOKENS, &err);
    if (with_merges)
        gguf_writer_add_string_array(w, "tokenizer.ggml.merges", merges, sizeof merges / sizeof *merges, &err);
    gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", GGUF_TYPE_UINT32, ID_EOT, &err);
    void *data = NULL;
    CHECK_MSG(gguf_writer_write_memory(w, &data, size, &err) == HEARTH_OK, "%s", err.message);
    gguf_writer_free(w);
    return data;
}

typedef struct loaded {
    void *image;
    gguf_file *file;
    vocab *v;
} loaded;

static hearth_status load(const char *pre, bool with_merges, loaded *l, hearth_error *err)
{
    size_t size = 0;
    *l = (loaded){0};
    l->image = make_vocab_image(pre, with_merges, &size);
    hearth_status st = gguf_open_memory(l->image, size, &l->file, err);
    if (st == HEARTH_OK)
        st = vocab_load(l->file, &l->v, err);
    return st;
}

static void unload(loaded *l)
{
    vocab_free(l->v);
    gguf_close(l->file);
    free(l->image);
}

/* Tokenizes text and compares with the expected ids (n_want of them). */
static void expect_ids(const vocab *v, const char *text, bool parse_special, const int32_t *want, int64_t n_want)
{
    int32_t ids[64];
    hearth_error err = {0};
    int64_t n = vocab_tokenize(v, text, strlen(text), false, parse_special, ids, 64, &err);
    bool same = n == n_want && memcmp(ids, want, (size_t)n_want * sizeof *ids) == 0;
    CHECK_MSG(same, "'%s': %lld ids (%s), first %d, want %lld", text, (long long)n, n < 0 ? err.message : "",
              n > 0 ? ids[0] : -1, (long long)n_want);
}

#define EXPECT_IDS(v, text, special, ...)                                                                          \
    do {                                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                                     \
        expect_ids(v, text, special, want_, (int64_t)(sizeof want_ / sizeof *want_));                              \
    } while (0)

static void check_gpt2(void)
{
    loaded l;
    hearth_error err = {0};
    if (load("gpt-2", true, &l, &err) != HEARTH_OK) {
        CHECK_MSG(false, "%s", err.message);
        unload(&l);
        return;
    }
    const vocab *v = l.v;
    int32_t ids[8];
    CHECK(vocab_tokenize(v, "", 0, false, false, ids, 8, &err) == 0);
    /* "hello" merges all the way; " hello" is a pre-token of its own whose
     * space (U+0120 in the alphabet) has no merge with "hello". */
    EXPECT_IDS(v, "hello", false, ID_HELLO);
    EXPECT_IDS(v, "hello hello", false, ID_HELLO, ' ', ID_HELLO);
    /* Lowest rank first: "h e" and "l l" before "he ll"; "hel" alone has no
     * "he l" merge, so it stays two pieces. */
    EXPECT_IDS(v, "hel", false, ID_HE, 'l');
    /* GPT-2 keeps a number whole: no "123" merge exists, so three digits. */
    EXPECT_IDS(v, "1234", false, '1', '2', '3', '4');
    /* Pairs merge left to right among equal ranks: aaaaa = aa aa a. */
    EXPECT_IDS(v, "aaaaa", false, ID_AA, ID_AA, 'a');
    /* Two spaces before a word: the first stands alone (\s+(?!\S)). */
    EXPECT_IDS(v, "a  b", false, 'a', ' ', ' ', 'b');
    /* A control token is text unless parse_special. */
    EXPECT_IDS(v, "he<|endoftext|>he", true, ID_HE, ID_EOT, ID_HE);
    int64_t n = vocab_tokenize(v, "<|endoftext|>", 13, false, false, ids, 8, &err);
    CHECK(n > 1);
    for (int64_t i = 0; i < n && i < 8; i++)
        CHECK(ids[i] != ID_EOT);
    /* Bytes outside UTF-8 are an error, not a crash: a stray continuation, a
     * cut-short sequence, an encoded surrogate, an overlong form. */
    static const char *const invalid[] = {"\x80", "ab\xC3", "\xED\xA0\x80", "\xC0\xAF", "ok\xFF"};
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        err = (hearth_error){0};
        CHECK(vocab_tokenize(v, invalid[i], strlen(invalid[i]), false, false, ids, 8, &err) == -1 &&
              err.status == HEARTH_ERR_FORMAT && strstr(err.message, "UTF-8") != NULL);
    }
    /* Multi-byte characters go through the byte alphabet and back. */
    const char *accented = "h\xC3\xA9llo";
    n = vocab_tokenize(v, accented, strlen(accented), false, false, ids, 8, &err);
    char back[32];
    size_t at = 0;
    for (int64_t i = 0; i < n; i++)
        at += vocab_token_to_piece(v, ids[i], false, back + at, sizeof back - at);
    CHECK(n == 5 && at == strlen(accented) && memcmp(back, accented, at) == 0);
    /* A long word: one pre-token of 200000 bytes, merged without trouble. */
    size_t long_len = 200000;
    char *long_text = malloc(long_len);
    memset(long_text, 'a', long_len);
    CHECK(vocab_tokenize(v, long_text, long_len, false, false, ids, 8, &err) == (int64_t)long_len / 2);
    free(long_text);
    unload(&l);
}

/* The other pre-tokenizers differ from GPT-2's in how they cut numbers (and
 * Qwen 3.5's in where combining marks go). */
static void check_pre_tokenizers(void)
{
    loaded l;
    hearth_error err = {0};
    CHECK_MSG(load("llama-bpe", true, &l, &err) == HEARTH_OK, "%s", err.message);
    if (l.v) /* digits in threes, and a pre-token that is a token is taken whole */
        EXPECT_IDS(l.v, "1234", false, ID_123, '4');
    /* The file leaves out add_bos_token: Llama 3 adds BOS, as in llama.cpp. */
    CHECK(l.v && vocab_adds_bos(l.v));
    unload(&l);
    CHECK_MSG(load("qwen2", true, &l, &err) == HEARTH_OK, "%s", err.message);
    CHECK(l.v && !vocab_adds_bos(l.v)); /* other byte-level BPE families do not */
    if (l.v) /* every digit alone */
        EXPECT_IDS(l.v, "123 hello", false, '1', '2', '3', ' ', ID_HELLO);
    unload(&l);
    CHECK_MSG(load("smollm", true, &l, &err) == HEARTH_OK, "%s", err.message);
    if (l.v) /* every digit alone, even from the space before it */
        EXPECT_IDS(l.v, "x 123", false, 'x', ' ', '1', '2', '3');
    unload(&l);
    CHECK_MSG(load("qwen35", true, &l, &err) == HEARTH_OK, "%s", err.message);
    if (l.v) /* a combining mark stays with its letters: one pre-token, merged whole */
        EXPECT_IDS(l.v, "hell\xCC\x81o", false, ID_HELL, 0xCC, 0x81, 'o');
    unload(&l);
    CHECK_MSG(load("deepseek-llm", true, &l, &err) == HEARTH_OK, "%s", err.message);
    if (l.v) /* its six patterns compile and run (test_tokenizer_pre checks them against llama.cpp) */
        EXPECT_IDS(l.v, "123\nhello", false, '1', '2', '3', '\n', ID_HELLO);
    unload(&l);
    CHECK_MSG(load("gpt-4o", true, &l, &err) == HEARTH_OK, "%s", err.message);
    if (l.v) /* a lowercase run ends where an uppercase one starts, and may begin with a space */
        EXPECT_IDS(l.v, "helloHELLO hello", false, ID_HELLO, 'H', 'E', 'L', 'L', 'O', ' ', ID_HELLO);
    if (l.v) { /* a million capitals, one pre-token: no regex limit, no memory per letter */
        enum { N_CAPITALS = 1000000 };
        char *capitals = malloc(N_CAPITALS);
        CHECK(capitals != NULL);
        if (capitals) {
            memset(capitals, 'A', N_CAPITALS);
            hearth_error tok_err = {0};
            int64_t n = vocab_tokenize(l.v, capitals, N_CAPITALS, false, false, NULL, 0, &tok_err);
            CHECK_MSG(n == N_CAPITALS, "a million capitals: %lld tokens (%s)", (long long)n, tok_err.message);
            free(capitals);
        }
    }
    unload(&l);
    CHECK_MSG(load(NULL, true, &l, &err) == HEARTH_OK, "%s", err.message); /* no pre: "default" */
    if (l.v)
        EXPECT_IDS(l.v, "hello", false, ID_HELLO);
    unload(&l);
}

static void check_load_errors(void)
{
    loaded l;
    hearth_error err = {0};
    CHECK(load("no-such-pre", true, &l, &err) == HEARTH_ERR_UNSUPPORTED && l.v == NULL &&
          strstr(err.message, "tokenizer.ggml.pre") && strstr(err.message, "'no-such-pre'"));
    unload(&l);
    /* The message's list of known names is true: each of them loads. */
    const char *known = strstr(err.message, "(known: ");
    CHECK(known != NULL);
    int n_known = 0;
    for (const char *p = known ? known + strlen("(known: ") : ""; *p && *p != ')';) {
        size_t n = strcspn(p, ",)");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        hearth_error load_err = {0};
        CHECK_MSG(load(name, true, &l, &load_err) == HEARTH_OK, "known pre-tokenizer '%s': %s", name, load_err.message);
        unload(&l);
        n_known++;
        p += n;
        p += strspn(p, ", ");
    }
    CHECK_MSG(n_known == 18, "%d known pre-tokenizers listed", n_known);
    err = (hearth_error){0};
    err = (hearth_error){0};
    CHECK(load("gpt-2", false, &l, &err) == HEARTH_ERR_FORMAT && l.v == NULL &&
          strstr(err.message, "tokenizer.ggml.merges"));
    unload(&l);
}

int main(void)
{
    check_gpt2();
    check_pre_tokenizers();
    check_load_errors();
    return test_finish("test_tokenizer_bpe");
}

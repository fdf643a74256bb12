/* Gemma 4's tokenizer (tokenizer.ggml.model = "gemma4": BPE by merge rank
 * over SentencePiece-style texts, U+2581 for spaces, <0xNN> byte tokens,
 * BOS always added) against llama.cpp, on two vocabularies:
 *   - the real one, as llama.cpp ships it for its own tests
 *     (models/ggml-vocab-gemma-4.gguf in the oracle's sources, 262144
 *     tokens, 514906 merges): the shared corpus in both modes
 *     (tests/tokenizer_fixture.h) and llama.cpp's own vectors beside it;
 *     skipped without the oracle (scripts/oracle/build-llama-cpp.sh);
 *   - a synthetic one of the same shape, written by
 *     scripts/oracle/make_gemma4_vocab.py (the CTest step gemma4_vocab):
 *     merges learned on the corpus, Gemma 4's special tokens and types.
 * Both also tokenize tests/fixtures/tokenizer/gemma4-chat.txt (Gemma 4's
 * markup), whose fixtures the same script wrote with it as CORPUS.
 * And first a hand-made vocabulary, one rule at a time, and the errors.
 * Every token's piece is llama.cpp's (hashed, scripts/oracle/pieces_oracle.c),
 * and every text that is UTF-8 comes back from its pieces, U+2581 as a
 * space (what llama.cpp's pieces give; its whole-text detokenizer then
 * also drops some spaces before punctuation, which hearth does not do). */
#include "test.h"

#include "tokenizer_fixture.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYNTHETIC HEARTH_TEST_TMPDIR "/gemma4-vocab/gemma4-vocab.gguf"
/* Gemma 4's chat and tool markup, newline runs, U+2581 in text, rare
 * characters: what the shared corpus does not reach. */
#define CHAT_TEXTS HEARTH_FIXTURES_DIR "/tokenizer/gemma4-chat.txt"
enum { CHAT_CASES = 12 };

/* ---- a hand-made vocabulary: the rules one at a time ------------------------ */

enum { ID_PAD, ID_EOS, ID_BOS, ID_TURN_END, ID_QUOTE, ID_BYTE0 };
/* After the five specials and the 256 byte tokens. */
enum { ID_SPACE = ID_BYTE0 + 256, ID_A, ID_B, ID_SPACE_A, ID_AB, ID_NL, ID_NL2, ID_SPACE_AB, N_HAND };

/* model: tokenizer.ggml.model; with_bos: whether bos_token_id is written;
 * byte_text: the text of byte token 0x41 ('A'), normally <0x41>. */
static void *hand_vocab(const char *model, bool with_bos, const char *byte_text, size_t *size)
{
    static char bytes[256][8];
    const char *tokens[N_HAND] = {"<pad>", "<eos>", "<bos>", "<turn|>", "<|\"|>"};
    int32_t types[N_HAND] = {3, 3, 3, 3, 4};
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[ID_BYTE0 + b] = b == 0x41 ? byte_text : bytes[b];
        types[ID_BYTE0 + b] = 6;
    }
    const char *normal[] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\n", "\n\n", "\xE2\x96\x81" "ab"};
    for (int i = 0; i < N_HAND - ID_SPACE; i++) {
        tokens[ID_SPACE + i] = normal[i];
        types[ID_SPACE + i] = 1;
    }
    /* "a b" ranks before "\u2581 a", so " ab" is "\u2581" "ab", never "\u2581a" "b". */
    const char *merges[] = {"a b", "\xE2\x96\x81 a", "\xE2\x96\x81 ab"};
    hearth_error err = {0};
    gguf_writer *w = gguf_writer_create();
    gguf_writer_add_string(w, "tokenizer.ggml.model", model, &err);
    gguf_writer_add_string(w, "tokenizer.ggml.pre", "qwen2", &err); /* ignored: the model fixes it */
    gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, N_HAND, &err);
    gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N_HAND, &err);
    gguf_writer_add_string_array(w, "tokenizer.ggml.merges", merges, 3, &err);
    if (with_bos)
        gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", GGUF_TYPE_UINT32, ID_BOS, &err);
    gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", GGUF_TYPE_UINT32, ID_EOS, &err);
    gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, &err); /* overridden: BOS always */
    void *data = NULL;
    CHECK_MSG(gguf_writer_write_memory(w, &data, size, &err) == HEARTH_OK, "%s", err.message);
    gguf_writer_free(w);
    return data;
}

static hearth_status load_hand(const char *model, bool with_bos, const char *byte_text, void **image, gguf_file **f,
                               vocab **v, hearth_error *err)
{
    size_t size = 0;
    *f = NULL, *v = NULL;
    *image = hand_vocab(model, with_bos, byte_text, &size);
    hearth_status st = gguf_open_memory(*image, size, f, err);
    return st == HEARTH_OK ? vocab_load(*f, v, err) : st;
}

static void unload_hand(void *image, gguf_file *f, vocab *v)
{
    vocab_free(v);
    gguf_close(f);
    free(image);
}

#define EXPECT_HAND(v, text, special, ...)                                                                          \
    do {                                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                                     \
        int32_t got_[32];                                                                                          \
        hearth_error e_ = {0};                                                                                     \
        int64_t n_ = vocab_tokenize(v, text, strlen(text), special, special, got_, 32, &e_);                      \
        CHECK_MSG(n_ == (int64_t)(sizeof want_ / sizeof *want_) && memcmp(got_, want_, sizeof want_) == 0,         \
                  "'%s': %lld ids (%s)", text, (long long)n_, e_.message);                                          \
    } while (0)

static void check_hand_made(void)
{
    void *image;
    gguf_file *f;
    vocab *v;
    hearth_error err = {0};
    CHECK_MSG(load_hand("gemma4", true, "<0x41>", &image, &f, &v, &err) == HEARTH_OK, "%s", err.message);
    if (v) {
        CHECK(vocab_adds_bos(v)); /* though the file says not to */
        /* Spaces are U+2581; merges by rank over the whole run. */
        EXPECT_HAND(v, "ab", false, ID_AB);
        EXPECT_HAND(v, " ab", false, ID_SPACE_AB);
        EXPECT_HAND(v, "a b", true, ID_BOS, ID_A, ID_SPACE, ID_B);
        /* Newline runs: two is a token, taken whole; three is not, so its
         * newlines stay single (no merge joins them). */
        EXPECT_HAND(v, "\n\n", false, ID_NL2);
        EXPECT_HAND(v, "\n\n\n", false, ID_NL, ID_NL, ID_NL);
        EXPECT_HAND(v, "a\n\nb", false, ID_A, ID_NL2, ID_B);
        /* A character without a token falls back to its bytes' tokens. */
        EXPECT_HAND(v, "A\xC3\xA9", false, ID_BYTE0 + 0x41, ID_BYTE0 + 0xC3, ID_BYTE0 + 0xA9);
        /* Control tokens only when asked; user-defined ones always. */
        EXPECT_HAND(v, "<eos>", false, ID_BYTE0 + '<', ID_BYTE0 + 'e', ID_BYTE0 + 'o', ID_BYTE0 + 's', ID_BYTE0 + '>');
        EXPECT_HAND(v, "<|\"|>", false, ID_QUOTE);
        EXPECT_HAND(v, "a<turn|>", true, ID_BOS, ID_A, ID_TURN_END);
        CHECK(vocab_is_end_of_generation(v, ID_TURN_END) && vocab_is_end_of_generation(v, ID_EOS));
        /* Text that is not UTF-8 is refused, as for byte-level BPE. */
        int32_t ids[8];
        err = (hearth_error){0};
        CHECK(vocab_tokenize(v, "a\xFF", 2, false, false, ids, 8, &err) == -1 && err.status == HEARTH_ERR_FORMAT &&
              strstr(err.message, "UTF-8"));
        /* Pieces: U+2581 a space, byte tokens their byte. */
        char piece[16];
        CHECK(vocab_token_to_piece(v, ID_SPACE_AB, false, piece, sizeof piece) == 3 && memcmp(piece, " ab", 3) == 0);
        CHECK(vocab_token_to_piece(v, ID_BYTE0 + 0xC3, false, piece, sizeof piece) == 1 &&
              (unsigned char)piece[0] == 0xC3);
    }
    unload_hand(image, f, v);

    /* Errors: BOS added but none named; a byte token that is not <0xNN>; an
     * unknown tokenizer model. */
    err = (hearth_error){0};
    CHECK(load_hand("gemma4", false, "<0x41>", &image, &f, &v, &err) == HEARTH_ERR_FORMAT &&
          strstr(err.message, "bos_token_id") && strstr(err.message, "Gemma 4"));
    unload_hand(image, f, v);
    err = (hearth_error){0};
    CHECK(load_hand("gemma4", true, "<0xZ1>", &image, &f, &v, &err) == HEARTH_ERR_FORMAT &&
          strstr(err.message, "<0xZ1>"));
    unload_hand(image, f, v);
    err = (hearth_error){0};
    CHECK(load_hand("gemma5", true, "<0x41>", &image, &f, &v, &err) == HEARTH_ERR_UNSUPPORTED &&
          strstr(err.message, "gemma5"));
    unload_hand(image, f, v);
}

/* ---- the real and the synthetic vocabularies ------------------------------------ */

/* The oracle's copy of llama.cpp, where build-llama-cpp.sh puts it. */
static bool oracle_vocab(char *path, size_t cap, const char *suffix)
{
    const char *dir = getenv("HEARTH_ORACLE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *rel = "src/vendor/llama.cpp/models/ggml-vocab-gemma-4.gguf";
    int n = dir    ? snprintf(path, cap, "%s/%s%s", dir, rel, suffix)
            : xdg  ? snprintf(path, cap, "%s/hearth/oracle/%s%s", xdg, rel, suffix)
            : home ? snprintf(path, cap, "%s/.cache/hearth/oracle/%s%s", home, rel, suffix)
                   : -1;
    return n > 0 && (size_t)n < cap;
}

/* The pieces of ids, joined, are the text with U+2581 read as a space. */
static bool round_trips(const vocab *v, const char *text, size_t len, const int32_t *ids, int64_t n)
{
    size_t cap = len * 2 + 64, at = 0, k = 0;
    char *back = malloc(cap), *want = malloc(len + 1);
    if (!back || !want) {
        free(back);
        free(want);
        return false;
    }
    for (int64_t i = 0; i < n; i++)
        at += vocab_token_to_piece(v, ids[i], false, back + (at < cap ? at : cap), at < cap ? cap - at : 0);
    for (size_t i = 0; i < len; i++) {
        if (i + 3 <= len && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
            want[k++] = ' ';
            i += 2;
        } else {
            want[k++] = text[i];
        }
    }
    bool same = at == k && memcmp(back, want, k) == 0;
    if (!same)
        fprintf(stderr, "  '%.*s' came back as '%.*s'\n", (int)len, text, (int)(at < cap ? at : cap), back);
    free(back);
    free(want);
    return same;
}

/* A file of texts without BOS or special tokens, tokenized and detokenized. */
static void check_round_trips(const vocab *v, const char *texts_path, const char *name)
{
    tokenizer_fixture fx;
    static fixture_case c;
    static int32_t ids[FIXTURE_MAX_IDS];
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/%s.plain.out", HEARTH_FIXTURES_DIR, name);
    int cases = 0, same = 0;
    for (bool opened = tokenizer_fixture_open(&fx, texts_path, path); opened && tokenizer_fixture_next(&fx, &c);) {
        if (utf8_first_invalid((const uint8_t *)c.text, c.len) < c.len)
            continue;
        hearth_error err = {0};
        int64_t n = vocab_tokenize(v, c.text, c.len, false, false, ids, FIXTURE_MAX_IDS, &err);
        cases++;
        same += n >= 0 && n <= FIXTURE_MAX_IDS && round_trips(v, c.text, c.len, ids, n);
    }
    printf("  %s: %d/%d UTF-8 texts come back from their pieces\n", name, same, cases);
    CHECK_MSG(cases > 0 && same == cases, "%s: %d of %d round trips", name, same, cases);
    tokenizer_fixture_close(&fx);
}

/* llama.cpp's vectors for this vocabulary (tests/test-tokenizer-0: no BOS,
 * special tokens as text). */
static void check_llama_vectors(const vocab *v)
{
    char inp[4096], outp[4096];
    if (!oracle_vocab(inp, sizeof inp, ".inp") || !oracle_vocab(outp, sizeof outp, ".out"))
        return;
    tokenizer_fixture fx;
    static fixture_case c;
    static int32_t ids[FIXTURE_MAX_IDS];
    int cases = 0, same = 0;
    for (bool opened = tokenizer_fixture_open(&fx, inp, outp); opened && tokenizer_fixture_next(&fx, &c);) {
        hearth_error err = {0};
        int64_t n = vocab_tokenize(v, c.text, c.len, false, false, ids, FIXTURE_MAX_IDS, &err);
        bool ok = n == c.n_want && memcmp(ids, c.want, (size_t)n * sizeof *ids) == 0;
        cases++;
        same += ok;
        if (!ok) {
            fprintf(stderr, "gemma-4 vector %d '%.*s': got", cases, (int)c.len, c.text);
            for (int64_t i = 0; i < n && i < 40; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "%s\n  want %s\n", n < 0 ? err.message : "", c.line);
        }
    }
    printf("  llama.cpp's gemma-4 vectors: %d/%d identical\n", same, cases);
    CHECK_MSG(cases > 0 && same == cases, "gemma-4 vectors: %d of %d", same, cases);
    tokenizer_fixture_close(&fx);
}

/* Every token's piece, without and with special tokens, hashed as
 * scripts/oracle/pieces_oracle.c hashes llama.cpp's (FNV-1a over id, length,
 * bytes) and compared with NAME.pieces; on a mismatch, that program's --all
 * lists llama.cpp's pieces to find the token. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

static void check_pieces(const vocab *v, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/%s.pieces", HEARTH_FIXTURES_DIR, name);
    size_t len;
    char *want = test_read_file(path, &len);
    CHECK_MSG(want != NULL, "cannot read %s", path);
    static char piece[1 << 16];
    for (int special = 0; want && special < 2; special++) {
        uint64_t h = 0xCBF29CE484222325ull;
        for (int32_t id = 0; id < vocab_size(v); id++) {
            size_t n = vocab_token_to_piece(v, id, special, piece, sizeof piece);
            uint32_t n32 = (uint32_t)n;
            h = fnv1a(fnv1a(fnv1a(h, &id, sizeof id), &n32, sizeof n32), piece, n < sizeof piece ? n : sizeof piece);
        }
        char line[128];
        snprintf(line, sizeof line, "special=%d tokens=%d fnv1a=%016llx\n", special, vocab_size(v),
                 (unsigned long long)h);
        CHECK_MSG(strstr(want, line) != NULL, "%s: pieces differ from llama.cpp's (%s: got %s)", name, path, line);
    }
    printf("  %s: every token's piece as llama.cpp's, without and with special tokens\n", name);
    free(want);
}

/* Facts of the real file: its special ids; BOS added; the end-of-generation
 * set llama.cpp gives it (<eos>, <turn|>, and <|tool_response>, which the
 * converter types user-defined and llama.cpp then also treats as control). */
static void check_real(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_size(v) == 262144);
    CHECK(vocab_bos(v) == 2 && vocab_eos(v) == 1 && vocab_adds_bos(v) && !vocab_adds_eos(v));
    CHECK(vocab_is_end_of_generation(v, 1) && vocab_is_end_of_generation(v, 106) && vocab_is_end_of_generation(v, 50));
    CHECK(!vocab_is_end_of_generation(v, 105) && !vocab_is_end_of_generation(v, 2));
    /* Pieces: U+2581 is a space, a byte token its byte, control tokens
     * nothing unless asked, user-defined ones always their text. */
    char piece[64];
    int32_t space_hello = vocab_find(v, "\xE2\x96\x81hello", 8), byte_a = vocab_find(v, "<0x0A>", 6);
    CHECK(space_hello != VOCAB_NO_TOKEN && byte_a != VOCAB_NO_TOKEN);
    CHECK(vocab_token_to_piece(v, space_hello, false, piece, sizeof piece) == 6 && memcmp(piece, " hello", 6) == 0);
    CHECK(vocab_token_to_piece(v, byte_a, false, piece, sizeof piece) == 1 && piece[0] == '\n');
    CHECK(vocab_token_to_piece(v, 106, false, piece, sizeof piece) == 0);
    CHECK(vocab_token_to_piece(v, 106, true, piece, sizeof piece) == 7 && memcmp(piece, "<turn|>", 7) == 0);
    CHECK(vocab_token_to_piece(v, 52, false, piece, sizeof piece) == 5 && memcmp(piece, "<|\"|>", 5) == 0);
}

static void check_synthetic(const vocab *v)
{
    CHECK(vocab_get_kind(v) == VOCAB_BPE && vocab_adds_bos(v) && vocab_bos(v) == 2 && vocab_eos(v) == 1);
}

int main(void)
{
    check_hand_made();
    char real[4096];
    bool have_real = oracle_vocab(real, sizeof real, "") && access(real, R_OK) == 0;
    bool have_synthetic = access(SYNTHETIC, R_OK) == 0;
    if (!have_real && !have_synthetic)
        printf("  (neither the oracle's gemma-4 vocabulary, from scripts/oracle/build-llama-cpp.sh, nor %s, from the "
               "CTest step gemma4_vocab: only the hand-made vocabulary checked)\n",
               SYNTHETIC);
    gguf_file *f;
    vocab *v;
    if (have_real && fixture_load_vocab(&f, &v, "%s", real)) {
        check_real(v);
        tokenizer_fixture_compare(v, "gemma4");
        for (int special = 1; special >= 0; special--)
            tokenizer_fixture_compare_texts(v, CHAT_TEXTS, CHAT_CASES, "gemma4-chat", special);
        check_llama_vectors(v);
        check_round_trips(v, TOKENIZER_CORPUS, "gemma4");
        check_round_trips(v, CHAT_TEXTS, "gemma4-chat");
        check_pieces(v, "gemma4");
        vocab_free(v);
        gguf_close(f);
    } else if (!have_real && have_synthetic) {
        printf("  (no %s: the real vocabulary's checks skipped)\n", real);
    }
    if (have_synthetic && fixture_load_vocab(&f, &v, "%s", SYNTHETIC)) {
        check_synthetic(v);
        tokenizer_fixture_compare(v, "gemma4-synth");
        for (int special = 1; special >= 0; special--)
            tokenizer_fixture_compare_texts(v, CHAT_TEXTS, CHAT_CASES, "gemma4-synth-chat", special);
        check_round_trips(v, TOKENIZER_CORPUS, "gemma4-synth");
        check_round_trips(v, CHAT_TEXTS, "gemma4-synth-chat");
        check_pieces(v, "gemma4-synth");
        vocab_free(v);
        gguf_close(f);
    }
    return test_finish("test_tokenizer_gemma4");
}

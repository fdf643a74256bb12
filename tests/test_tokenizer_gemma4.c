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
 * Every text that is UTF-8 also comes back from its pieces, U+2581 as a
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
    char real[4096];
    bool have_real = oracle_vocab(real, sizeof real, "") && access(real, R_OK) == 0;
    bool have_synthetic = access(SYNTHETIC, R_OK) == 0;
    if (!have_real && !have_synthetic)
        TEST_SKIP("neither the oracle's gemma-4 vocabulary (scripts/oracle/build-llama-cpp.sh) nor %s (the CTest "
                  "step gemma4_vocab, which needs python3 with gguf)",
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
        vocab_free(v);
        gguf_close(f);
    } else if (!have_real) {
        printf("  (no %s: the real vocabulary's checks skipped)\n", real);
    }
    if (have_synthetic && fixture_load_vocab(&f, &v, "%s", SYNTHETIC)) {
        check_synthetic(v);
        tokenizer_fixture_compare(v, "gemma4-synth");
        for (int special = 1; special >= 0; special--)
            tokenizer_fixture_compare_texts(v, CHAT_TEXTS, CHAT_CASES, "gemma4-synth-chat", special);
        check_round_trips(v, TOKENIZER_CORPUS, "gemma4-synth");
        check_round_trips(v, CHAT_TEXTS, "gemma4-synth-chat");
        vocab_free(v);
        gguf_close(f);
    }
    return test_finish("test_tokenizer_gemma4");
}

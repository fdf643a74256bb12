/* utf8_stream: every way of cutting text into pieces gives the text back,
 * valid text comes out in whole characters only, and bytes that can never be
 * valid are neither lost nor held longer than necessary. */
#include "test.h"

#include "base/utf8.h"
#include "runtime/utf8_stream.h"

#include <stdbool.h>
#include <string.h>

/* Independent of the stream's own table: bytes are valid when utf8_decode
 * takes them apart completely. */
static bool all_valid_utf8(const char *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_decode(b + i, n - i, &cp);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* Whether the held bytes can still become a character: some completion makes
 * utf8_decode accept the whole of it. Each allowed second-byte range
 * (80-BF, A0-BF, 80-9F, 90-BF, 80-8F) contains one of 80, 90, A0, BF, and
 * later bytes are any continuation, so trying those four per position is
 * exhaustive. */
static bool can_still_complete(const uint8_t *held, size_t n)
{
    if (n == 0)
        return true;
    static const uint8_t tries[4] = {0x80, 0x90, 0xA0, 0xBF};
    for (size_t total = n + 1; total <= 4; total++) {
        size_t missing = total - n;
        size_t combos = 1;
        for (size_t i = 0; i < missing; i++)
            combos *= 4;
        for (size_t combo = 0; combo < combos; combo++) {
            uint8_t buf[4];
            memcpy(buf, held, n);
            size_t c = combo;
            for (size_t i = 0; i < missing; i++, c /= 4)
                buf[n + i] = tries[c % 4];
            uint32_t cp;
            if (utf8_decode(buf, total, &cp) == total)
                return true;
        }
    }
    return false;
}

/* Where the text divides into characters and invalid stretches, the way
 * Unicode's "maximal subpart" practice divides it: a valid character, or else
 * the longest start of one that could still have completed (at least one
 * byte). Output may only ever stop at these boundaries. */
static void reference_boundaries(const char *text, size_t n, bool *boundary)
{
    const uint8_t *b = (const uint8_t *)text;
    memset(boundary, 0, n + 1);
    boundary[0] = true;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_decode(b + i, n - i, &cp);
        if (len == 0) {
            len = 1;
            while (len < 3 && i + len < n && can_still_complete(b + i, len + 1))
                len++;
        }
        i += len;
        boundary[i] = true;
    }
}

/* Streams `text` cut at the positions whose bit is set in `cuts` (bit i: a
 * cut after byte i) and checks the invariants after every piece. */
static void stream_with_cuts(const char *text, size_t n, uint64_t cuts, const char *label)
{
    bool valid_input = all_valid_utf8(text, n);
    bool boundary[257];
    if (n > 256)
        return;
    reference_boundaries(text, n, boundary);
    utf8_stream s;
    utf8_stream_init(&s);
    char out[256], chunk[256 + UTF8_STREAM_MAX_HELD];
    size_t n_out = 0, start = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        if (i + 1 < n && !(cuts >> i & 1))
            continue;
        size_t got = utf8_stream_push(&s, text + start, i + 1 - start, chunk, sizeof chunk);
        ok = got <= i + 1 - start + UTF8_STREAM_MAX_HELD && n_out + got <= sizeof out;
        if (!ok) {
            CHECK_MSG(false, "%s: cuts %#llx: %zu bytes out of a %zu-byte piece", label, (unsigned long long)cuts,
                      got, i + 1 - start);
            break;
        }
        if (valid_input && !all_valid_utf8(chunk, got)) {
            CHECK_MSG(false, "%s: cuts %#llx: a piece ending mid-character was released", label,
                      (unsigned long long)cuts);
            ok = false;
        }
        memcpy(out + n_out, chunk, got);
        n_out += got;
        start = i + 1;
        if (!boundary[n_out]) {
            CHECK_MSG(false, "%s: cuts %#llx: output stops after byte %zu, inside a character or invalid stretch",
                      label, (unsigned long long)cuts, n_out);
            ok = false;
        }
        /* What is held is exactly the rest of the input so far, and it must
         * still be able to become a character (or it should have gone out). */
        if (utf8_stream_held(&s) > UTF8_STREAM_MAX_HELD || n_out + utf8_stream_held(&s) != start ||
            !can_still_complete((const uint8_t *)text + n_out, utf8_stream_held(&s))) {
            CHECK_MSG(false, "%s: cuts %#llx: after %zu bytes in, %zu out and %zu held", label,
                      (unsigned long long)cuts, start, n_out, utf8_stream_held(&s));
            ok = false;
        }
    }
    if (!ok)
        return;
    n_out += utf8_stream_flush(&s, out + n_out, sizeof out - n_out);
    /* Checks count per text (see stream_every_way), not per split. */
    if (n_out != n || memcmp(out, text, n) != 0 || utf8_stream_held(&s) != 0)
        CHECK_MSG(false, "%s: cuts %#llx: output differs from input", label, (unsigned long long)cuts);
}

/* Every split for short texts (2^(n-1) of them), else 1-byte pieces, whole,
 * and a few thousand pseudo-random splits. */
static void stream_every_way(const char *text, const char *label)
{
    size_t n = strlen(text);
    if (n == 0)
        return;
    int before = test_failures;
    if (n <= 16) {
        for (uint64_t cuts = 0; cuts < (1ull << (n - 1)) && test_failures == before; cuts++)
            stream_with_cuts(text, n, cuts, label);
    } else {
        stream_with_cuts(text, n, ~0ull, label);
        stream_with_cuts(text, n, 0, label);
        uint64_t x = 99;
        for (int i = 0; i < 3000 && test_failures == before; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            stream_with_cuts(text, n, x ^ (x >> 29), label);
        }
    }
    test_checks++; /* one check per text, however many splits */
}

static void test_valid_text(void)
{
    static const char *const texts[] = {
        "plain ascii",
        "\xE2\x82\xAC",                                     /* € */
        "caf\xC3\xA9 na\xC3\xAFve",                         /* 2-byte */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",             /* 日本語 */
        "\xF0\x9F\x98\x80!",                                /* 😀 */
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7", /* family ZWJ sequence */
        "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",                 /* 🇫🇷 regional indicators */
        "a\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF",        /* U+0080 U+07FF U+0800 U+FFFF */
        "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF",                 /* U+10000 U+10FFFF */
        "\xED\x9F\xBF\xEE\x80\x80",                         /* around the surrogates: U+D7FF U+E000 */
        "x\xE2\x82\xACy\xF0\x9F\x98\x80z\xC3\xA9",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        stream_every_way(texts[i], texts[i]);

    /* Byte-fallback tokens, one byte per piece: nothing until the last. */
    utf8_stream s;
    utf8_stream_init(&s);
    char out[8];
    CHECK(utf8_stream_push(&s, "\xE2", 1, out, sizeof out) == 0);
    CHECK(utf8_stream_push(&s, "\x82", 1, out, sizeof out) == 0);
    CHECK(utf8_stream_held(&s) == 2);
    CHECK(utf8_stream_push(&s, "\xAC", 1, out, sizeof out) == 3 && memcmp(out, "\xE2\x82\xAC", 3) == 0);
    CHECK(utf8_stream_flush(&s, out, sizeof out) == 0);
    CHECK(utf8_stream_push(&s, "", 0, out, sizeof out) == 0);
}

static void test_invalid_bytes(void)
{
    static const char *const texts[] = {
        "\xFF",
        "a\x80" "b",                 /* stray continuation */
        "\xC0\xAF",                  /* overlong '/' */
        "\xE0\x80\xAF",              /* overlong, 3 bytes */
        "\xED\xA0\x80",              /* a surrogate */
        "\xF4\x90\x80\x80",          /* past U+10FFFF */
        "\xF5\x80\x80\x80",
        "\xE2\x82" "A",              /* cut short by ASCII */
        "\xE2\x28\xA1",
        "\xF0\x9F\x98",              /* cut short by the end */
        "\xF0\x9F\x98\xF0\x9F\x98\x80", /* cut short by another lead */
        "\xC3\xC3\xA9",
        "ok\xFE\xFF\xC3\xA9\x80\xE2\x82\xAC\xE2",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        stream_every_way(texts[i], "invalid");

    /* Released as soon as they cannot become valid, not at the end. */
    utf8_stream s;
    utf8_stream_init(&s);
    char out[16];
    CHECK(utf8_stream_push(&s, "\xFF", 1, out, sizeof out) == 1 && (uint8_t)out[0] == 0xFF);
    CHECK(utf8_stream_push(&s, "\xC0", 1, out, sizeof out) == 1);
    CHECK(utf8_stream_push(&s, "\xE2", 1, out, sizeof out) == 0);
    CHECK(utf8_stream_push(&s, "\x28", 1, out, sizeof out) == 2 && memcmp(out, "\xE2\x28", 2) == 0);
    CHECK(utf8_stream_push(&s, "\xE0", 1, out, sizeof out) == 0);
    CHECK(utf8_stream_push(&s, "\x80", 1, out, sizeof out) == 2); /* E0 80 is overlong: both go */
    CHECK(utf8_stream_push(&s, "\xF0\x9F\x98", 3, out, sizeof out) == 0);
    CHECK(utf8_stream_push(&s, "\xE2\x82\xAC", 3, out, sizeof out) == 6 &&
          memcmp(out, "\xF0\x9F\x98\xE2\x82\xAC", 6) == 0);
    CHECK(utf8_stream_push(&s, "\xF0\x9F", 2, out, sizeof out) == 0);
    CHECK(utf8_stream_flush(&s, out, sizeof out) == 2 && memcmp(out, "\xF0\x9F", 2) == 0);
    CHECK(utf8_stream_held(&s) == 0);

    /* Every byte string of up to 4 bytes over an alphabet of interesting
     * bytes, every split: the invariants hold for arbitrary input. */
    static const uint8_t alphabet[] = {0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2,
                                       0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    enum { A = sizeof alphabet };
    for (size_t len = 1; len <= 4; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= A;
        for (size_t k = 0; k < total; k++) {
            char text[4];
            size_t rest = k;
            for (size_t i = 0; i < len; i++, rest /= A)
                text[i] = (char)alphabet[rest % A];
            for (uint64_t cuts = 0; cuts < (1ull << (len - 1)); cuts++)
                stream_with_cuts(text, len, cuts, "alphabet");
            test_checks++;
        }
    }
}

int main(void)
{
    test_valid_text();
    test_invalid_bytes();
    return test_finish("test_utf8_stream");
}

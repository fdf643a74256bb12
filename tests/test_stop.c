/* Stop strings over streamed text: every way of cutting the text into pieces
 * gives the same shown text and the same match as a plain search over the
 * whole text, nothing that could not start a stop string is held back, and
 * everything held comes out at the end. */
#include "test.h"

#include "runtime/stop.h"

#include <stdbool.h>
#include <string.h>

static void init_ok(stop_matcher *m, const char *const *stops, size_t n)
{
    hearth_error err = {0};
    hearth_status st = stop_matcher_init(m, stops, n, &err);
    CHECK_MSG(st == HEARTH_OK, "%s", err.message);
}

/* The definition, on the whole text: the stop string complete at the
 * earliest byte, the longest of those; returns its index (or -1) and where
 * the shown text ends. */
static int reference_match(const char *text, size_t n, const char *const *stops, size_t n_stops, size_t *shown)
{
    for (size_t end = 1; end <= n; end++) {
        int best = -1;
        for (size_t k = 0; k < n_stops; k++) {
            size_t len = strlen(stops[k]);
            if (len <= end && memcmp(text + end - len, stops[k], len) == 0 &&
                (best < 0 || len > strlen(stops[best])))
                best = (int)k;
        }
        if (best >= 0) {
            *shown = end - strlen(stops[best]);
            return best;
        }
    }
    *shown = n;
    return -1;
}

/* How much of a match-free text must be held: its longest suffix that is
 * a proper prefix of a stop string. */
static size_t reference_held(const char *text, size_t n, const char *const *stops, size_t n_stops)
{
    size_t held = 0;
    for (size_t k = 0; k < n_stops; k++) {
        size_t len = strlen(stops[k]);
        for (size_t h = 1; h < len && h <= n; h++)
            if (memcmp(text + n - h, stops[k], h) == 0 && h > held)
                held = h;
    }
    return held;
}

/* Streams `text` cut where `cuts` has bits set (bit i: after byte i),
 * checking after every piece that exactly the right amount is shown. */
static void stream_with_cuts(const char *text, size_t n, uint64_t cuts, const char *const *stops, size_t n_stops)
{
    stop_matcher m;
    hearth_error err;
    if (stop_matcher_init(&m, stops, n_stops, &err) != HEARTH_OK) { /* counted per text, not per split */
        CHECK_MSG(false, "%s", err.message);
        return;
    }
    char out[512], chunk[512];
    size_t n_out = 0, start = 0;
    bool ok = true;
    size_t want_shown;
    int want_match = reference_match(text, n, stops, n_stops, &want_shown);
    for (size_t i = 0; i < n && ok; i++) {
        if (i + 1 < n && !(cuts >> i & 1))
            continue;
        size_t got = stop_matcher_push(&m, text + start, i + 1 - start, chunk, sizeof chunk);
        memcpy(out + n_out, chunk, got);
        n_out += got;
        start = i + 1;
        /* Until the match, what is not shown is exactly what must be held. */
        size_t seen_shown;
        int seen_match = reference_match(text, start, stops, n_stops, &seen_shown);
        size_t expect_out = seen_match >= 0 ? seen_shown : start - reference_held(text, start, stops, n_stops);
        if (n_out != expect_out || stop_matcher_matched(&m) != seen_match) {
            CHECK_MSG(false, "\"%s\" cuts %#llx: after %zu bytes in, %zu shown (want %zu), match %d (want %d)", text,
                      (unsigned long long)cuts, start, n_out, expect_out, stop_matcher_matched(&m), seen_match);
            ok = false;
        }
    }
    if (!ok)
        return;
    n_out += stop_matcher_flush(&m, out + n_out, sizeof out - n_out);
    if (n_out != want_shown || memcmp(out, text, n_out) != 0 || stop_matcher_matched(&m) != want_match)
        CHECK_MSG(false, "\"%s\" cuts %#llx: %zu bytes shown (want %zu), match %d (want %d)", text,
                  (unsigned long long)cuts, n_out, want_shown, stop_matcher_matched(&m), want_match);
}

/* All 2^(n-1) splits of a short text; one check per text. */
static void stream_every_way(const char *text, const char *const *stops, size_t n_stops)
{
    size_t n = strlen(text);
    int before = test_failures;
    for (uint64_t cuts = 0; cuts < (1ull << (n - 1)) && test_failures == before; cuts++)
        stream_with_cuts(text, n, cuts, stops, n_stops);
    test_checks++;
}

/* The expected outcome, spelled out for the cases the semantics hinge on. */
static void expect(const char *text, const char *const *stops, size_t n_stops, const char *shown, int match)
{
    size_t got_shown;
    int got = reference_match(text, strlen(text), stops, n_stops, &got_shown);
    CHECK_MSG(got == match && got_shown == strlen(shown) && memcmp(text, shown, got_shown) == 0,
              "\"%s\": reference shows %zu bytes, match %d", text, got_shown, got);
    stream_every_way(text, stops, n_stops);
}

static void test_semantics(void)
{
    const char *eos[] = {"</s>"};
    expect("hello</s>world", eos, 1, "hello", 0);
    expect("hello </world", eos, 1, "hello </world", -1);
    expect("<<</s", eos, 1, "<<</s", -1);
    expect("</s>", eos, 1, "", 0);

    const char *overlap[] = {"abc", "bcd"};
    expect("abcd", overlap, 2, "", 0);
    expect("xbcd", overlap, 2, "x", 1);
    const char *overlap_swapped[] = {"bcd", "abc"};
    expect("abcd", overlap_swapped, 2, "", 1);

    const char *inner_first[] = {"abcd", "bc"};
    expect("abcd", inner_first, 2, "a", 1); /* "bc" is complete first */
    const char *same_end[] = {"cd", "bcd"};
    expect("abcd", same_end, 2, "a", 1); /* same end: the longer */

    const char *self_overlap[] = {"aab"};
    expect("aaab", self_overlap, 1, "a", 0);
    expect("aaaa", self_overlap, 1, "aaaa", -1);
    const char *abab[] = {"abab"};
    expect("abaabab", abab, 1, "aba", 0);
    expect("abababab", abab, 1, "", 0);

    const char *newlines[] = {"\n\n", "User:"};
    expect("Sure.\nUse", newlines, 2, "Sure.\nUse", -1);
    expect("Sure.\nUser: hi", newlines, 2, "Sure.\n", 1);

    const char *utf8[] = {"\xE3\x80\x82\n"}; /* "。\n" */
    expect("ok\xE3\x80\x82\xE3\x80\x82\n", utf8, 1, "ok\xE3\x80\x82", 0);

    /* No stop strings: everything passes at once. */
    stop_matcher m;
    init_ok(&m, NULL, 0);
    char out[64];
    CHECK(stop_matcher_push(&m, "anything", 8, out, sizeof out) == 8);
    CHECK(stop_matcher_flush(&m, out, sizeof out) == 0 && stop_matcher_matched(&m) == -1);
}

/* Every text up to 6 bytes over a small alphabet, every split, against
 * stops that overlap each other in every way the alphabet allows. */
static void test_exhaustive_small(void)
{
    const char *stops[] = {"abc", "bcd", "cab", "dd", "abcab"};
    const char alphabet[] = "abcd";
    for (size_t n = 1; n <= 6; n++) {
        size_t total = 1;
        for (size_t i = 0; i < n; i++)
            total *= 4;
        for (size_t k = 0; k < total; k++) {
            char text[16];
            size_t rest = k;
            for (size_t i = 0; i < n; i++, rest /= 4)
                text[i] = alphabet[rest % 4];
            text[n] = '\0';
            stream_every_way(text, stops, 5);
        }
    }
}

static void test_after_match(void)
{
    const char *stops[] = {"STOP"};
    stop_matcher m;
    init_ok(&m, stops, 1);
    char out[64];
    CHECK(stop_matcher_push(&m, "go ST", 5, out, sizeof out) == 3 && memcmp(out, "go ", 3) == 0);
    CHECK(stop_matcher_push(&m, "OP and more", 11, out, sizeof out) == 0);
    CHECK(stop_matcher_matched(&m) == 0);
    CHECK(stop_matcher_push(&m, "still more", 10, out, sizeof out) == 0);
    CHECK(stop_matcher_flush(&m, out, sizeof out) == 0);

    stop_matcher_reset(&m);
    CHECK(stop_matcher_matched(&m) == -1);
    CHECK(stop_matcher_push(&m, "fresh S", 7, out, sizeof out) == 6);
    CHECK(stop_matcher_flush(&m, out, sizeof out) == 1 && out[0] == 'S'); /* no false hold at the end */

    /* A long piece with the stop string near its end. */
    static char big[10000];
    memset(big, 'x', sizeof big);
    memcpy(big + 9000, "STOP", 4);
    static char big_out[10000 + STOP_MAX_LENGTH];
    stop_matcher_reset(&m);
    CHECK(stop_matcher_push(&m, big, sizeof big, big_out, sizeof big_out) == 9000);
    CHECK(stop_matcher_matched(&m) == 0);

    /* A stop string of the maximum length, held almost whole, then broken. */
    char longest[STOP_MAX_LENGTH + 1];
    memset(longest, 'y', STOP_MAX_LENGTH);
    longest[STOP_MAX_LENGTH] = '\0';
    const char *long_stops[] = {longest};
    init_ok(&m, long_stops, 1);
    CHECK(stop_matcher_push(&m, longest, STOP_MAX_LENGTH - 1, big_out, sizeof big_out) == 0);
    CHECK(stop_matcher_push(&m, "z", 1, big_out, sizeof big_out) == STOP_MAX_LENGTH);
    CHECK(stop_matcher_push(&m, longest, STOP_MAX_LENGTH, big_out, sizeof big_out) == 0);
    CHECK(stop_matcher_matched(&m) == 0);
}

static void expect_rejected(const char *const *stops, size_t n, const char *needle)
{
    stop_matcher m;
    hearth_error err = {0};
    CHECK(stop_matcher_init(&m, stops, n, &err) == HEARTH_ERR_ARG);
    CHECK_MSG(strstr(err.message, needle) != NULL, "message \"%s\" lacks \"%s\"", err.message, needle);
}

static void test_invalid(void)
{
    const char *nine[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9"};
    expect_rejected(nine, 9, "at most 8");
    const char *empty[] = {"ok", ""};
    expect_rejected(empty, 2, "stop string 2 is empty");
    const char *missing[] = {NULL};
    expect_rejected(missing, 1, "stop string 1 is missing");
    expect_rejected(NULL, 2, "none given");
    char too_long[STOP_MAX_LENGTH + 2];
    memset(too_long, 'q', STOP_MAX_LENGTH + 1);
    too_long[STOP_MAX_LENGTH + 1] = '\0';
    const char *long_stops[] = {too_long};
    char needle[64];
    snprintf(needle, sizeof needle, "%d bytes long", STOP_MAX_LENGTH + 1);
    expect_rejected(long_stops, 1, needle);

    stop_matcher m;
    init_ok(&m, nine, 8); /* eight is fine */
}

int main(void)
{
    test_semantics();
    test_exhaustive_small();
    test_after_match();
    test_invalid();
    return test_finish("test_stop");
}

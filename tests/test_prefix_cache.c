/* The prefix cache (runtime/prefix_cache.h) through sessions: a prompt
 * restored from it, from RAM and from disk after a "restart" (a new session
 * over the same directory), gives what the same prompt gives evaluated
 * without a cache; a shared prefix restores its whole blocks only; damaged,
 * truncated and foreign files are refused with a warning and the answer
 * stays right; both tiers keep to their bounds; a state of another KV
 * cache format finds nothing; and a model differing only in a weight is
 * another model.
 *
 * "What it gives without a cache" is checked twice. Against the same
 * prompt evaluated in the same two batches (the restored part, then the
 * rest), the logits must be equal to the bit: the restored rows are the
 * rows evaluated. Against the prompt in one batch, they differ as any other
 * cut into batches does (attention over batches under 64 tokens runs in f16,
 * as llama.cpp's does): within a tolerance, and on real text (Gemma 3 270M
 * on the perplexity fixture) with the same greedy continuation.
 *
 * Models: the tiny random Qwen 3 (dense), Gemma 4 E2B (sliding-window layers
 * and layers sharing another's KV cache) and Qwen 3.5 (Gated DeltaNet: a
 * recurrent state restored at a block's end), with blocks of 16 tokens; and
 * the real Gemma 3 270M with blocks of 64, skipped when absent. */
#include "test.h"

#include "base/paths.h"
#include "base/threadpool.h"
#include "runtime/session.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_PROMPT = 400, N_GREEDY = 6 };

typedef struct model_case {
    const char *label, *path;
    int32_t block, n_prompt, first_token;
    bool real, recurrent;
    float tolerance; /* |dlogit| against the prompt in one batch */
} model_case;

static threadpool *pool;

static int32_t prompt_token(int32_t n_vocab, int32_t first_token, int i, int salt)
{
    if (i == 0)
        return first_token;
    uint64_t h = (uint64_t)(i + 1) * 7919u + (uint64_t)salt * 15485863u;
    return (int32_t)(100 + h % (uint64_t)(n_vocab - 100));
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* What a prompt gives: its last logits and the greedy tokens after it. */
typedef struct answer {
    float *logits;
    int32_t greedy[N_GREEDY];
    int32_t restored;
} answer;

/* The prompt in two calls when split > 0: [0, split), then the rest. */
static bool evaluate_split(session *s, const int32_t *prompt, int32_t n, int32_t split, int32_t n_vocab, answer *out)
{
    hearth_error err = {0};
    if ((split > 0 && session_eval(s, prompt, split, &err) != HEARTH_OK) ||
        session_eval(s, prompt + split, n - split, &err) != HEARTH_OK) {
        fprintf(stderr, "  eval: %s\n", err.message);
        return false;
    }
    out->restored = session_last_restored(s);
    memcpy(out->logits, session_logits(s), (size_t)n_vocab * sizeof(float));
    for (int g = 0; g < N_GREEDY; g++) {
        out->greedy[g] = argmax(session_logits(s), n_vocab);
        if (session_eval(s, &out->greedy[g], 1, &err) != HEARTH_OK)
            return false;
    }
    return true;
}

static bool evaluate(session *s, const int32_t *prompt, int32_t n, int32_t n_vocab, answer *out)
{
    return evaluate_split(s, prompt, n, 0, n_vocab, out);
}

static session *open_session(const model *m, const prefix_cache_params *cache, hearth_kv_type kv_type)
{
    session *s = NULL;
    hearth_error err = {0};
    session_params params = {.n_ctx = 512, .kv_type = kv_type, .prefix_cache = cache};
    if (session_create(m, pool, &params, &s, &err) != HEARTH_OK)
        fprintf(stderr, "  session: %s\n", err.message);
    return s;
}

static float max_logit_diff(const answer *a, const answer *b, int32_t n_vocab)
{
    float max_diff = 0.0f;
    for (int32_t i = 0; i < n_vocab; i++)
        max_diff = fmaxf(max_diff, fabsf(a->logits[i] - b->logits[i]));
    return max_diff;
}

/* got against the same cut evaluated without a cache (bit for bit, and the
 * same greedy tokens; split NULL: none to compare with), and against the
 * prompt in one batch (within `tolerance`; the greedy tokens too when
 * `greedy`). */
static void check_same(const char *what, const answer *got, const answer *split, const answer *whole,
                       int32_t n_vocab, float tolerance, bool greedy)
{
    float exact = split ? max_logit_diff(got, split, n_vocab) : 0.0f, close = max_logit_diff(got, whole, n_vocab);
    printf("    %s: %d restored; max |dlogit| %.3g against the same cut, %.3g against one batch\n", what,
           got->restored, exact, close);
    CHECK_MSG(exact == 0.0f, "%s: max |dlogit| %g against the same cut", what, exact);
    CHECK_MSG(!split || memcmp(got->greedy, split->greedy, sizeof got->greedy) == 0,
              "%s: another greedy continuation", what);
    CHECK_MSG(close <= tolerance, "%s: max |dlogit| %g against one batch (tolerance %g)", what, close, tolerance);
    if (greedy)
        CHECK_MSG(memcmp(got->greedy, whole->greedy, sizeof got->greedy) == 0,
                  "%s: another greedy continuation than one batch's", what);
}

static void clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || e->d_name[1] == '.'))
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* The directory's block files (at most cap), and their total size. */
static int list_blocks(const char *dir, char names[][64], int cap, size_t *total)
{
    int n = 0;
    *total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".hpc") != 0 || len >= 64)
            continue;
        char path[4400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0)
            *total += (size_t)st.st_size;
        if (n < cap)
            memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    return n;
}

/* Changes one byte of a file at offset (from the end when negative), or cuts it to offset bytes. */
static void damage(const char *dir, const char *name, long offset, bool truncate_it)
{
    char path[4400];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return;
    if (truncate_it) {
        CHECK(truncate(path, offset) == 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, offset, offset < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

/* Without a cache that keeps anything, but cutting batches where a cache
 * would (a recurrent model's kept states), so that the cut is the same. */
static session *reference_session(const model *m, const prefix_cache_params *cache)
{
    prefix_cache_params keeps_nothing = {.block_tokens = cache->block_tokens,
                                         .snapshot_tokens = cache->snapshot_tokens,
                                         .ram_bytes = 1};
    return open_session(m, &keeps_nothing, HEARTH_KV_F16);
}

/* The reference for a prompt restored up to `split`. */
static void reference(const model *m, const prefix_cache_params *cache, const int32_t *prompt, int32_t n,
                      int32_t split, int32_t n_vocab, answer *out)
{
    session *s = reference_session(m, cache);
    CHECK(s && evaluate_split(s, prompt, n, split, n_vocab, out));
    session_free(s);
}

static void run_case(const model_case *mc)
{
    model *m = NULL;
    hearth_error err = {0};
    if (access(mc->path, R_OK) != 0) {
        printf("%s: skipped, %s absent\n", mc->label, mc->path);
        return;
    }
    if (model_load(mc->path, &m, &err) != HEARTH_OK) {
        CHECK_MSG(false, "%s: %s", mc->label, err.message);
        return;
    }
    const int32_t n_vocab = model_n_vocab(m), B = mc->block, n = mc->n_prompt;
    const int32_t full = (n - 1) / B * B; /* what a repeat restores: whole blocks, a token left over */
    int32_t prompt[MAX_PROMPT], other[MAX_PROMPT];
    if (mc->real) {
        /* Real text: where greedy continuations can be compared at all. */
        size_t len = 0;
        char *text = test_read_file(HEARTH_FIXTURES_DIR "/text/genesis-1-28.txt", &len);
        int64_t got = text ? vocab_tokenize(model_vocab(m), text, len, true, false, prompt, MAX_PROMPT, &err) : -1;
        free(text);
        CHECK_MSG(got >= n, "the fixture text gave %lld tokens", (long long)got);
    } else {
        for (int i = 0; i < n; i++)
            prompt[i] = prompt_token(n_vocab, mc->first_token, i, 1);
    }
    for (int i = 0; i < n; i++) /* the same first 4.5 blocks, then another text */
        other[i] = i < 9 * B / 2 ? prompt[i] : prompt_token(n_vocab, mc->first_token, i, 2);
    printf("%s (blocks of %d, recurrent state every %d, a prompt of %d):\n", mc->label, B, 4 * B, n);

    char dir[1024];
    snprintf(dir, sizeof dir, HEARTH_TEST_TMPDIR "/prefix-cache/%s", mc->label);
    CHECK(paths_make_dirs(dir));
    clear_dir(dir);
    prefix_cache_params cache = {.block_tokens = B, .snapshot_tokens = 4 * B, .ram_bytes = 256u << 20, .dir = dir,
                                 .disk_bytes = 256u << 20};
    answer whole = {0}, cut = {0}, other_whole = {0}, other_cut = {0}, got = {0};
    answer *answers[] = {&whole, &cut, &other_whole, &other_cut, &got};
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++)
        answers[i]->logits = malloc((size_t)n_vocab * sizeof(float));
    reference(m, &cache, prompt, n, 0, n_vocab, &whole);
    reference(m, &cache, prompt, n, full, n_vocab, &cut);
    reference(m, &cache, other, n, 0, n_vocab, &other_whole);
    reference(m, &cache, other, n, 4 * B, n_vocab, &other_cut);

    /* Cold, then the same prompt again from RAM. */
    session *s = open_session(m, &cache, HEARTH_KV_F16);
    CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
    if (s) {
        CHECK_MSG(got.restored == 0, "cold: %d restored", got.restored);
        check_same("cold", &got, &whole, &whole, n_vocab, 0.0f, true);
        session_reset(s);
        CHECK(evaluate(s, prompt, n, n_vocab, &got));
        CHECK_MSG(got.restored == full, "from RAM: %d restored, expected %d", got.restored, full);
        check_same("warm from RAM", &got, &cut, &whole, n_vocab, mc->tolerance, mc->real);
        prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
        CHECK_MSG(st.ram_hits == (uint64_t)(full / B) && st.disk_hits == 0, "RAM hits %llu, disk hits %llu",
                  (unsigned long long)st.ram_hits, (unsigned long long)st.disk_hits);
    }
    session_free(s);

    /* A restart: a new session over the same directory, RAM empty. */
    s = open_session(m, &cache, HEARTH_KV_F16);
    CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
    if (s) {
        CHECK_MSG(got.restored == full, "from disk: %d restored, expected %d", got.restored, full);
        check_same("warm from disk", &got, &cut, &whole, n_vocab, mc->tolerance, mc->real);
        prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
        CHECK_MSG(st.disk_hits == (uint64_t)(full / B) && st.ignored == 0, "disk hits %llu, ignored %llu",
                  (unsigned long long)st.disk_hits, (unsigned long long)st.ignored);
        /* A prompt sharing 4.5 blocks restores 4 (the fifth differs; a
         * recurrent state was kept at the fourth's end). */
        session_reset(s);
        CHECK(evaluate(s, other, n, n_vocab, &got));
        CHECK_MSG(got.restored == 4 * B, "shared prefix: %d restored, expected %d", got.restored, 4 * B);
        check_same("shared prefix", &got, &other_cut, &other_whole, n_vocab, mc->tolerance, false);
    }
    session_free(s);

    /* Damaged files, without the RAM tier so that every block is read: a
     * flipped last byte (the checksum), a cut file (the size), another
     * model's identity in a header; each kind once to every file, and once
     * to three files. Each is refused with a warning, and the prompt
     * restores less, or nothing, and comes out right. */
    char names[64][64];
    size_t total;
    static const struct {
        const char *what;
        long offset;
        bool truncate_it;
    } kinds[] = {{"a flipped byte", -1, false}, {"a cut file", 100, true}, {"another model's", 16, false}};
    for (int kind = mc->real ? 3 : 0; kind <= 3; kind++) { /* the real model: one case, for time */
        clear_dir(dir);
        s = open_session(m, &cache, HEARTH_KV_F16);
        CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
        session_free(s);
        int n_files = list_blocks(dir, names, 64, &total); /* the prompt's blocks only */
        CHECK_MSG(n_files == full / B && n_files >= 3, "%d block files, expected %d", n_files, full / B);
        for (int i = 0; i < (kind < 3 ? n_files : 3); i++)
            damage(dir, names[i], kinds[kind < 3 ? kind : i].offset, kinds[kind < 3 ? kind : i].truncate_it);
        prefix_cache_params disk_only = cache;
        disk_only.ram_bytes = 0;
        s = open_session(m, &disk_only, HEARTH_KV_F16);
        CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
        if (s) {
            prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
            const char *what = kind < 3 ? kinds[kind].what : "three damaged";
            CHECK_MSG(got.restored < full && st.ignored == 1 && (kind == 3 || got.restored == 0),
                      "%s: %d restored, %llu ignored", what, got.restored, (unsigned long long)st.ignored);
            /* A cut elsewhere is no reference: the restored blocks were
             * evaluated in the cold run's one batch, not in a short one. */
            const answer *ref = got.restored == 0 ? &whole : got.restored == full ? &cut : NULL;
            check_same(what, &got, ref, &whole, n_vocab, mc->tolerance, mc->real);
        }
        session_free(s);
    }

    /* Bounds: the RAM tier holds at most 2.5 blocks, the disk at most 3
     * files (on the tiny models: the real one adds nothing here). */
    clear_dir(dir);
    if (!mc->real) {
        s = open_session(m, &(prefix_cache_params){.block_tokens = B, .snapshot_tokens = 4 * B, .ram_bytes = 1},
                         HEARTH_KV_F16);
        size_t block_bytes = 0;
        if (s) {
            CHECK(evaluate(s, prompt, n, n_vocab, &got));
            prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
            CHECK_MSG(st.ram_used == 0, "a RAM tier of 1 byte holds %zu", st.ram_used);
            session_free(s);
            /* A block file's size, from the smallest of a full run's. */
            prefix_cache_params disk = {.block_tokens = B, .snapshot_tokens = 4 * B, .dir = dir, .disk_bytes = 1u << 30};
            s = open_session(m, &disk, HEARTH_KV_F16);
            CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
            session_free(s);
            int files = list_blocks(dir, names, 64, &total);
            for (int i = 0; i < files; i++) {
                char path[4400];
                struct stat sb;
                if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) < (int)sizeof path && stat(path, &sb) == 0 && (block_bytes == 0 || (size_t)sb.st_size < block_bytes))
                    block_bytes = (size_t)sb.st_size;
            }
            clear_dir(dir);
        }
        if (block_bytes) {
            size_t ram_bound = block_bytes * 5 / 2, disk_bound = block_bytes * 3;
            if (mc->recurrent) /* room for a block with a recurrent state as well */
                ram_bound *= 4, disk_bound *= 4;
            s = open_session(m, &(prefix_cache_params){.block_tokens = B, .snapshot_tokens = 4 * B,
                                                       .ram_bytes = ram_bound, .dir = dir, .disk_bytes = disk_bound},
                             HEARTH_KV_F16);
            CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
            if (s) {
                prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
                int files = list_blocks(dir, names, 64, &total);
                printf("    bounds: RAM %zu of %zu bytes, disk %d files, %zu of %zu bytes\n", st.ram_used, ram_bound,
                       files, total, disk_bound);
                CHECK_MSG(st.ram_used <= ram_bound && st.ram_used > 0, "RAM tier %zu bytes, bound %zu", st.ram_used,
                          ram_bound);
                CHECK_MSG(total <= disk_bound && files > 0, "disk tier %zu bytes, bound %zu", total, disk_bound);
                /* What is left: the newest blocks went in last, so the first
                 * ones are gone and nothing restores; the answer stays right. */
                session_reset(s);
                CHECK(evaluate(s, prompt, n, n_vocab, &got));
                CHECK_MSG(got.restored == 0, "after eviction: %d restored", got.restored);
                check_same("after eviction", &got, &whole, &whole, n_vocab, 0.0f, true);
            }
            session_free(s);
        }
    }

    /* Another KV cache format: blocks of the f16 state are not its. */
    if (mc->real) {
        clear_dir(dir);
        s = open_session(m, &cache, HEARTH_KV_F16);
        CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
        session_free(s);
        s = open_session(m, &cache, HEARTH_KV_Q8_0);
        CHECK(s && evaluate(s, prompt, n, n_vocab, &got));
        if (s) {
            prefix_cache_stats st = prefix_cache_get_stats(session_prefix_cache(s));
            printf("    q8_0 after f16: %d restored, %llu ignored\n", got.restored, (unsigned long long)st.ignored);
            CHECK_MSG(got.restored == 0 && st.ignored == 0, "q8_0 state restored %d from f16 blocks", got.restored);
            session_reset(s);
            CHECK(evaluate(s, prompt, n, n_vocab, &got));
            CHECK_MSG(got.restored == full, "q8_0 from its own blocks: %d restored", got.restored);
        }
        session_free(s);
    }
    clear_dir(dir);
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++)
        free(answers[i]->logits);
    model_free(m);
}

/* A copy of a model with one weight byte changed, the header the same, is
 * another model to the cache. */
static void check_identity(const char *path)
{
    size_t size = 0;
    char *bytes = test_read_file(path, &size);
    if (!bytes) {
        printf("identity: skipped, %s absent\n", path);
        return;
    }
    model *m = NULL, *changed = NULL;
    hearth_error err = {0};
    char copy[1024];
    snprintf(copy, sizeof copy, HEARTH_TEST_TMPDIR "/prefix-cache/changed-weight.gguf");
    CHECK(model_load(path, &m, &err) == HEARTH_OK);
    if (m) {
        bytes[gguf_data_offset(model_gguf(m)) + 7] ^= 0x10; /* the first tensor's data */
        FILE *f = fopen(copy, "wb");
        CHECK(f && fwrite(bytes, 1, size, f) == size);
        if (f)
            fclose(f);
        CHECK(model_load(copy, &changed, &err) == HEARTH_OK);
    }
    if (m && changed) {
        printf("identity: %016llx, with one weight byte changed %016llx\n", (unsigned long long)model_identity(m),
               (unsigned long long)model_identity(changed));
        CHECK(model_identity(m) != model_identity(changed));
    }
    model_free(m);
    model_free(changed);
    unlink(copy);
    free(bytes);
}

int main(void)
{
    /* The tiny models only: the sanitizer build, for time. */
    const char *only = getenv("HEARTH_PREFIX_CACHE_TEST");
    const bool tiny_only = only && strcmp(only, "tiny") == 0;
    hearth_error err = {0};
    if (threadpool_create(1, &pool, &err) != HEARTH_OK) { /* tiny models: waking workers costs more than it saves */
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    char gemma3[4096];
    bool have_gemma3 = paths_default_model(gemma3, sizeof gemma3);
    const model_case cases[] = {
        /* Tolerances: twice the largest difference measured (0.37, 0.22,
         * 0, 2.9): the f16 attention of a short last batch. */
        {"qwen3-tiny", HEARTH_TEST_TMPDIR "/dense/qwen3-tiny-q8_0.gguf", 16, 100, 1, false, false, 0.75f},
        {"gemma4-e2b-tiny", HEARTH_TEST_TMPDIR "/gemma4/gemma4-e2b-tiny-q8_0.gguf", 16, 100, 2, false, false, 0.5f},
        {"qwen35-tiny", HEARTH_TEST_TMPDIR "/qwen35/qwen35-tiny-q8_0.gguf", 16, 100, 1, false, true, 0.1f},
        {"gemma3-270m", have_gemma3 ? gemma3 : "", 64, 300, 2, true, false, 6.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!(tiny_only && cases[i].real))
            run_case(&cases[i]);
    check_identity(cases[0].path);
    threadpool_free(pool);
    printf("%d checks, %d failed\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

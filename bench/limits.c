/* The ceilings hearth's benchmark figures are read against: streaming read
 * bandwidth (what bounds decode, which reads every weight once per token) and
 * peak int8 / fp32 arithmetic (what bounds prefill). Each is measured with 1
 * thread and with T threads, so "tg128 reaches 71% of read bandwidth" can be
 * said instead of an absolute tokens/s that drifts on a shared host.
 *
 *   hearth-limits [-t THREADS] [-r REPEATS] [--bytes N[K|M|G]] [--isa ISA] [--json]
 *
 * Standalone on purpose: it must not inherit anything from the code it judges.
 * The build has no -march, so every SIMD kernel carries its own target
 * attribute and runs only after the CPU has been asked whether it can. */
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) next to the project-wide _POSIX_C_SOURCE */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define LIMITS_X86 1
#include <cpuid.h>
#include <immintrin.h>
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define LIMITS_HAVE_AVX_VNNI 1
#endif
#endif

/* Long enough that timer resolution, thread wake-up and a stray interrupt are
 * noise; short enough that the whole run stays around ten seconds. */
#define COMPUTE_TARGET_SECONDS 0.3

/* The unit each read kernel consumes per loop turn; slices are cut to it. */
#define READ_CHUNK_BYTES 256

/* Per-thread slices start on their own huge page so no two threads share one. */
#define BUFFER_ALIGNMENT ((size_t)2 << 20)

static volatile uint64_t checksum_sink;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* Instruction sets                                                          */

/* Ordered: --isa caps the run at one of these, so the fallbacks can be
 * exercised on a machine that would never pick them. */
typedef enum {
    ISA_SCALAR,
    ISA_AVX2,
    ISA_AVX_VNNI,
    ISA_AVX512,
    ISA_AVX512_VNNI,
} isa_level;

static const char *const isa_names[] = { "scalar", "avx2", "avx-vnni", "avx512", "avx512-vnni" };

typedef struct {
    bool avx2_fma;
    bool avx_vnni;
    bool avx512f;
    bool avx512_vnni;
} cpu_features;

static cpu_features detect_cpu_features(void)
{
    cpu_features f = { 0 };
#ifdef LIMITS_X86
    __builtin_cpu_init();
    f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512_vnni = f.avx512f && __builtin_cpu_supports("avx512vnni");
#ifdef LIMITS_HAVE_AVX_VNNI
    /* Older compilers' __builtin_cpu_supports has no name for AVX-VNNI:
     * CPUID.(EAX=7,ECX=1):EAX bit 4. The AVX2 check above already covers the
     * OS saving YMM state. */
    unsigned eax, ebx, ecx, edx;
    if (f.avx2_fma && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx))
        f.avx_vnni = (eax >> 4) & 1u;
#endif
#endif
    return f;
}

static cpu_features cap_cpu_features(cpu_features f, isa_level cap)
{
    if (cap < ISA_AVX512_VNNI)
        f.avx512_vnni = false;
    if (cap < ISA_AVX512)
        f.avx512f = false;
    if (cap < ISA_AVX_VNNI)
        f.avx_vnni = false;
    if (cap < ISA_AVX2)
        f.avx2_fma = false;
    return f;
}

static isa_level best_isa(cpu_features f)
{
    if (f.avx512_vnni)
        return ISA_AVX512_VNNI;
    if (f.avx512f)
        return ISA_AVX512;
    if (f.avx_vnni)
        return ISA_AVX_VNNI;
    if (f.avx2_fma)
        return ISA_AVX2;
    return ISA_SCALAR;
}

/* ------------------------------------------------------------------------ */
/* Read kernels: sum the buffer as 64-bit lanes. Integer adds are one cycle
 * and four accumulators keep two loads a cycle busy, so the loop waits on
 * memory, never on arithmetic. `bytes` is a multiple of READ_CHUNK_BYTES and
 * `data` is 64-byte aligned. */

typedef uint64_t (*read_kernel_fn)(const uint8_t *data, size_t bytes);

static uint64_t read_sum_scalar(const uint8_t *data, size_t bytes)
{
    const uint64_t *words = (const uint64_t *)(const void *)data;
    size_t n_words = bytes / sizeof(uint64_t);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < n_words; i += 4) {
        s0 += words[i + 0];
        s1 += words[i + 1];
        s2 += words[i + 2];
        s3 += words[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

#ifdef LIMITS_X86
__attribute__((target("avx2"))) static uint64_t read_sum_avx2(const uint8_t *data, size_t bytes)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t off = 0; off < bytes; off += 128) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(const void *)(data + off)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(const void *)(data + off + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(const void *)(data + off + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(const void *)(data + off + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)(void *)lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

__attribute__((target("avx512f"))) static uint64_t read_sum_avx512(const uint8_t *data, size_t bytes)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t off = 0; off < bytes; off += 256) {
        s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void *)(data + off)));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512((const void *)(data + off + 64)));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512((const void *)(data + off + 128)));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512((const void *)(data + off + 192)));
    }
    __m512i s = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
    return (uint64_t)_mm512_reduce_add_epi64(s);
}
#endif

/* ------------------------------------------------------------------------ */
/* Compute kernels: register-only loops of independent multiply-adds. Twelve
 * accumulators cover latency x pipes on every core in sight (Zen 4 and 5 FMA:
 * 4 cycles x 2 pipes = 8 in flight). Each returns a checksum of its
 * accumulators so the loop has an observable result; the inputs derive from
 * `seed` so nothing is a compile-time constant to fold. */

#define ACCUMULATORS 12
#define FOR_EACH_ACCUMULATOR(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

typedef uint64_t (*compute_kernel_fn)(uint64_t iterations, uint32_t seed);

typedef struct {
    compute_kernel_fn kernel;
    double ops_per_iteration;
    const char *isa;
} compute_kernel;

#ifdef LIMITS_X86
/* vpdpbusd zmm: 64 u8 x s8 products summed into 16 int32 lanes = 64
 * multiply-adds = 128 ops. */
__attribute__((target("avx512f,avx512vnni"))) static uint64_t int8_avx512_vnni(uint64_t iterations, uint32_t seed)
{
    const __m512i unsigned_bytes = _mm512_set1_epi32((int)(seed | 0x01010101u));
    const __m512i signed_bytes = _mm512_set1_epi32((int)(seed * 2654435761u));
    __m512i acc[ACCUMULATORS];
#define INIT(i) acc[i] = _mm512_set1_epi32((int)seed + i);
    FOR_EACH_ACCUMULATOR(INIT)
#undef INIT
    for (uint64_t it = 0; it < iterations; it++) {
#define STEP(i) acc[i] = _mm512_dpbusd_epi32(acc[i], unsigned_bytes, signed_bytes);
        FOR_EACH_ACCUMULATOR(STEP)
#undef STEP
    }
    __m512i total = _mm512_setzero_si512();
#define FOLD(i) total = _mm512_add_epi32(total, acc[i]);
    FOR_EACH_ACCUMULATOR(FOLD)
#undef FOLD
    return (uint64_t)(uint32_t)_mm512_reduce_add_epi32(total);
}

#ifdef LIMITS_HAVE_AVX_VNNI
/* VEX vpdpbusd ymm: 32 multiply-adds = 64 ops. */
__attribute__((target("avx2,avxvnni"))) static uint64_t int8_avx_vnni(uint64_t iterations, uint32_t seed)
{
    const __m256i unsigned_bytes = _mm256_set1_epi32((int)(seed | 0x01010101u));
    const __m256i signed_bytes = _mm256_set1_epi32((int)(seed * 2654435761u));
    __m256i acc[ACCUMULATORS];
#define INIT(i) acc[i] = _mm256_set1_epi32((int)seed + i);
    FOR_EACH_ACCUMULATOR(INIT)
#undef INIT
    for (uint64_t it = 0; it < iterations; it++) {
#define STEP(i) acc[i] = _mm256_dpbusd_avx_epi32(acc[i], unsigned_bytes, signed_bytes);
        FOR_EACH_ACCUMULATOR(STEP)
#undef STEP
    }
    __m256i total = _mm256_setzero_si256();
#define FOLD(i) total = _mm256_add_epi32(total, acc[i]);
    FOR_EACH_ACCUMULATOR(FOLD)
#undef FOLD
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, total);
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum += lanes[i];
    return sum;
}
#endif

/* What an AVX2 int8 dot product really costs: vpmaddubsw (32 u8 x s8
 * products into 16 saturating int16 pair sums), vpmaddwd against ones (into
 * 8 int32), vpaddd into the accumulator. Three instructions for 32
 * multiply-adds = 64 ops, the same count an int8 kernel without VNNI gets.
 * Only the one-cycle add depends on the accumulator, so four chains are
 * plenty, and leave room in AVX2's sixteen registers. */
#define AVX2_INT8_CHAINS 4
#define FOR_EACH_AVX2_INT8_CHAIN(X) X(0) X(1) X(2) X(3)

__attribute__((target("avx2"))) static uint64_t int8_avx2(uint64_t iterations, uint32_t seed)
{
    const __m256i signed_bytes = _mm256_set1_epi32((int)(seed * 2654435761u));
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i unsigned_bytes[AVX2_INT8_CHAINS], acc[AVX2_INT8_CHAINS];
#define INIT(i)                                                                 \
    unsigned_bytes[i] = _mm256_set1_epi32((int)((seed + i) | 0x01010101u)); \
    acc[i] = _mm256_set1_epi32((int)seed + i);
    FOR_EACH_AVX2_INT8_CHAIN(INIT)
#undef INIT
    for (uint64_t it = 0; it < iterations; it++) {
        /* The products do not depend on the accumulators: unless the inputs
         * look new every turn, the compiler computes them once, outside the
         * loop (and distinct inputs per chain stop it sharing one product).
         * The empty asm costs no instruction. */
        __asm__ volatile("" : "+x"(unsigned_bytes[0]), "+x"(unsigned_bytes[1]), "+x"(unsigned_bytes[2]),
            "+x"(unsigned_bytes[3]));
#define STEP(i)                              \
    acc[i] = _mm256_add_epi32(acc[i],        \
        _mm256_madd_epi16(_mm256_maddubs_epi16(unsigned_bytes[i], signed_bytes), ones16));
        FOR_EACH_AVX2_INT8_CHAIN(STEP)
#undef STEP
    }
    __m256i total = _mm256_setzero_si256();
#define FOLD(i) total = _mm256_add_epi32(total, acc[i]);
    FOR_EACH_AVX2_INT8_CHAIN(FOLD)
#undef FOLD
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, total);
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum += lanes[i];
    return sum;
}

/* acc = acc * decay + step converges to step / (1 - decay) ~ 1: no overflow,
 * no denormals, either of which could slow the FMA units and fake a limit. */
static float fma_decay(uint32_t seed)
{
    return 0.999999f - (float)(seed & 7u) * 1e-7f;
}

/* vfmadd zmm: 16 lanes x 2 flops = 32 flops. */
__attribute__((target("avx512f"))) static uint64_t fp32_avx512(uint64_t iterations, uint32_t seed)
{
    const __m512 decay = _mm512_set1_ps(fma_decay(seed));
    const __m512 step = _mm512_set1_ps(1e-6f);
    __m512 acc[ACCUMULATORS];
#define INIT(i) acc[i] = _mm512_set1_ps((float)i * 0.01f);
    FOR_EACH_ACCUMULATOR(INIT)
#undef INIT
    for (uint64_t it = 0; it < iterations; it++) {
#define STEP(i) acc[i] = _mm512_fmadd_ps(acc[i], decay, step);
        FOR_EACH_ACCUMULATOR(STEP)
#undef STEP
    }
    __m512 total = _mm512_setzero_ps();
#define FOLD(i) total = _mm512_add_ps(total, acc[i]);
    FOR_EACH_ACCUMULATOR(FOLD)
#undef FOLD
    return (uint64_t)(_mm512_reduce_add_ps(total) * 1000.0f);
}

/* vfmadd ymm: 8 lanes x 2 flops = 16 flops. */
__attribute__((target("avx2,fma"))) static uint64_t fp32_avx2(uint64_t iterations, uint32_t seed)
{
    const __m256 decay = _mm256_set1_ps(fma_decay(seed));
    const __m256 step = _mm256_set1_ps(1e-6f);
    __m256 acc[ACCUMULATORS];
#define INIT(i) acc[i] = _mm256_set1_ps((float)i * 0.01f);
    FOR_EACH_ACCUMULATOR(INIT)
#undef INIT
    for (uint64_t it = 0; it < iterations; it++) {
#define STEP(i) acc[i] = _mm256_fmadd_ps(acc[i], decay, step);
        FOR_EACH_ACCUMULATOR(STEP)
#undef STEP
    }
    __m256 total = _mm256_setzero_ps();
#define FOLD(i) total = _mm256_add_ps(total, acc[i]);
    FOR_EACH_ACCUMULATOR(FOLD)
#undef FOLD
    float lanes[8];
    _mm256_storeu_ps(lanes, total);
    float sum = 0.0f;
    for (int i = 0; i < 8; i++)
        sum += lanes[i];
    return (uint64_t)(sum * 1000.0f);
}
#endif

static read_kernel_fn pick_read_kernel(cpu_features f, const char **isa)
{
#ifdef LIMITS_X86
    if (f.avx512f) {
        *isa = "avx512";
        return read_sum_avx512;
    }
    if (f.avx2_fma) {
        *isa = "avx2";
        return read_sum_avx2;
    }
#else
    (void)f;
#endif
    *isa = "scalar";
    return read_sum_scalar;
}

/* A NULL kernel means "not measured": without SIMD multiply-add there is no
 * peak worth stating, only whatever the compiler made of a C loop. */
static compute_kernel pick_int8_kernel(cpu_features f)
{
    compute_kernel none = { NULL, 0.0, "none" };
#ifdef LIMITS_X86
    if (f.avx512_vnni)
        return (compute_kernel){ int8_avx512_vnni, ACCUMULATORS * 128.0, "avx512-vnni" };
#ifdef LIMITS_HAVE_AVX_VNNI
    if (f.avx_vnni)
        return (compute_kernel){ int8_avx_vnni, ACCUMULATORS * 64.0, "avx-vnni" };
#endif
    if (f.avx2_fma)
        return (compute_kernel){ int8_avx2, AVX2_INT8_CHAINS * 64.0, "avx2" };
#else
    (void)f;
#endif
    return none;
}

static compute_kernel pick_fp32_kernel(cpu_features f)
{
    compute_kernel none = { NULL, 0.0, "none" };
#ifdef LIMITS_X86
    if (f.avx512f)
        return (compute_kernel){ fp32_avx512, ACCUMULATORS * 32.0, "avx512" };
    if (f.avx2_fma)
        return (compute_kernel){ fp32_avx2, ACCUMULATORS * 16.0, "avx2" };
#else
    (void)f;
#endif
    return none;
}

/* ------------------------------------------------------------------------ */
/* Thread team: T workers run the same pass in lockstep between two barriers;
 * the main thread only holds the stopwatch, so a pass lasts from the moment
 * all workers are released until the slowest one is done. */

typedef struct {
    int threads;
    int passes; /* the first is a warm-up and is not timed */
    /* reading */
    read_kernel_fn read_kernel;
    uint8_t *buffer;
    size_t slice_bytes;
    bool fill_in_warm_up;
    /* computing */
    compute_kernel_fn compute_kernel;
    uint64_t iterations;

    pthread_barrier_t start;
    pthread_barrier_t done;
} team_job;

typedef struct {
    team_job *job;
    int index;
    uint64_t checksum;
} team_worker;

static void *team_worker_main(void *arg)
{
    team_worker *w = arg;
    team_job *job = w->job;
    uint8_t *slice = job->buffer ? job->buffer + (size_t)w->index * job->slice_bytes : NULL;
    for (int pass = 0; pass < job->passes; pass++) {
        pthread_barrier_wait(&job->start);
        /* Written, not just read: untouched anonymous pages all map the one
         * shared zero page, which would be read from cache. Each thread
         * touches its own slice so the pages land near the core that reads
         * them on NUMA machines. */
        if (pass == 0 && job->fill_in_warm_up)
            memset(slice, 0x5a + w->index, job->slice_bytes);
        if (job->read_kernel)
            w->checksum += job->read_kernel(slice, job->slice_bytes);
        else
            w->checksum += job->compute_kernel(job->iterations, (uint32_t)(w->index * 7919 + pass));
        pthread_barrier_wait(&job->done);
    }
    return NULL;
}


/* Best (shortest) timed pass in seconds, or a negative value if the threads
 * could not be started. */
static double run_team(team_job *job)
{
    team_worker *workers = calloc((size_t)job->threads, sizeof *workers);
    pthread_t *handles = calloc((size_t)job->threads, sizeof *handles);
    if (!workers || !handles) {
        free(workers);
        free(handles);
        return -1.0;
    }
    pthread_barrier_init(&job->start, NULL, (unsigned)job->threads + 1);
    pthread_barrier_init(&job->done, NULL, (unsigned)job->threads + 1);
    int started = 0;
    for (; started < job->threads; started++) {
        workers[started] = (team_worker){ job, started, 0 };
        if (pthread_create(&handles[started], NULL, team_worker_main, &workers[started]) != 0)
            break;
    }
    if (started < job->threads) {
        /* The started workers wait at the start barrier for a count that can
         * never be reached; there is no clean way back, so give up. */
        fprintf(stderr, "hearth-limits: could not start %d threads\n", job->threads);
        exit(1);
    }
    double best = -1.0;
    for (int pass = 0; pass < job->passes; pass++) {
        double t0 = now_seconds();
        pthread_barrier_wait(&job->start);
        pthread_barrier_wait(&job->done);
        double elapsed = now_seconds() - t0;
        if (pass > 0 && (best < 0.0 || elapsed < best))
            best = elapsed;
    }
    for (int t = 0; t < job->threads; t++) {
        pthread_join(handles[t], NULL);
        checksum_sink += workers[t].checksum;
    }
    pthread_barrier_destroy(&job->start);
    pthread_barrier_destroy(&job->done);
    free(workers);
    free(handles);
    return best;
}

/* ------------------------------------------------------------------------ */
/* Measurements                                                              */

static double measure_read_gbs(read_kernel_fn kernel, uint8_t *buffer, size_t bytes, int threads, int repeats,
    bool fill_in_warm_up)
{
    team_job job = {
        .threads = threads,
        .passes = repeats + 1,
        .read_kernel = kernel,
        .buffer = buffer,
        .slice_bytes = bytes / (size_t)threads,
        .fill_in_warm_up = fill_in_warm_up,
    };
    double seconds = run_team(&job);
    return (double)job.slice_bytes * threads / seconds / 1e9;
}

/* Iterations that take COMPUTE_TARGET_SECONDS on one thread, found by
 * growing a short run until it is long enough to time. */
static uint64_t calibrate_iterations(compute_kernel_fn kernel)
{
    uint64_t iterations = 1024;
    for (;;) {
        double t0 = now_seconds();
        checksum_sink += kernel(iterations, 1);
        double elapsed = now_seconds() - t0;
        if (elapsed >= 0.02 || iterations >= (UINT64_C(1) << 40))
            return (uint64_t)((double)iterations * COMPUTE_TARGET_SECONDS / (elapsed > 0.0 ? elapsed : 1e-9)) + 1;
        iterations *= 4;
    }
}

/* Billions of ops per second over all threads. */
static double measure_compute_gops(compute_kernel kernel, uint64_t iterations, int threads, int repeats)
{
    team_job job = {
        .threads = threads,
        .passes = repeats + 1,
        .compute_kernel = kernel.kernel,
        .iterations = iterations,
    };
    double seconds = run_team(&job);
    return (double)iterations * kernel.ops_per_iteration * threads / seconds / 1e9;
}

#ifdef LIMITS_X86
/* A chain of dependent register-register adds runs at exactly one per cycle
 * on every x86 core in use, and unlike add-immediate it is not folded at
 * rename, so adds per second is the clock. It turns "X GFLOPS" into "Y flops
 * per cycle", which can be checked against the core's documented pipes. */
#define DEPENDENT_ADDS_PER_ITERATION 100
#define STRINGIFY_VALUE(x) #x
#define STRINGIFY(x) STRINGIFY_VALUE(x)

static uint64_t dependent_adds(uint64_t iterations, uint32_t seed)
{
    unsigned long chain = seed, step = seed | 1u;
    for (uint64_t it = 0; it < iterations; it++)
        __asm__ volatile(".rept " STRINGIFY(DEPENDENT_ADDS_PER_ITERATION) "\n\tadd %1, %0\n\t.endr" : "+r"(chain) : "r"(step));
    return chain;
}
#endif

/* ------------------------------------------------------------------------ */
/* Setup                                                                     */

/* Distinct (package, core) pairs: SMT siblings share the execution units this
 * program measures, so a second thread per core adds nothing to the peaks. */
static int count_physical_cores(void)
{
    enum { MAX_CORES = 4096 };
    static long seen_package[MAX_CORES], seen_core[MAX_CORES];
    int n_seen = 0;
    FILE *cpuinfo = fopen("/proc/cpuinfo", "r");
    if (cpuinfo) {
        char line[512];
        long package = 0, core = -1;
        bool at_eof = false;
        while (!at_eof) {
            at_eof = fgets(line, sizeof line, cpuinfo) == NULL;
            const char *colon = at_eof ? NULL : strchr(line, ':');
            if (colon && strncmp(line, "physical id", 11) == 0) {
                package = strtol(colon + 1, NULL, 10);
            } else if (colon && strncmp(line, "core id", 7) == 0) {
                core = strtol(colon + 1, NULL, 10);
            } else if (at_eof || line[0] == '\n') {
                bool known = core < 0;
                for (int i = 0; i < n_seen && !known; i++)
                    known = seen_package[i] == package && seen_core[i] == core;
                if (!known && n_seen < MAX_CORES) {
                    seen_package[n_seen] = package;
                    seen_core[n_seen] = core;
                    n_seen++;
                }
                package = 0;
                core = -1;
            }
        }
        fclose(cpuinfo);
    }
    if (n_seen > 0)
        return n_seen;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

typedef struct {
    int threads;
    int repeats;
    size_t bytes;
    isa_level isa_cap;
    bool json;
} options;

static void print_help(void)
{
    printf("usage: hearth-limits [options]\n"
           "\n"
           "Measures this machine's ceilings, with 1 thread and with T threads:\n"
           "  read bandwidth  streaming SIMD reads over a buffer far larger than the\n"
           "                  last-level cache, each thread its own slice (GB/s, 1e9 B/s)\n"
           "  int8 peak       independent vpdpbusd (or AVX2 maddubs+madd) chains in\n"
           "                  registers; one int8 multiply-add = 2 ops (GOPS)\n"
           "  fp32 peak       independent FMA chains in registers; FMA = 2 flops (GFLOPS)\n"
           "  clock           dependent scalar adds, one per cycle (GHz, scalar load)\n"
           "Each figure is the best of REPEATS passes after one untimed warm-up pass.\n"
           "\n"
           "options:\n"
           "  -t, --threads N      threads for the multi-thread figures (default: physical\n"
           "                       cores, i.e. distinct core ids in /proc/cpuinfo)\n"
           "  -r, --repeats N      timed passes per figure, best kept (default 5)\n"
           "      --bytes N[K|M|G] read buffer size, binary units (default 1G); rounded\n"
           "                       down to a multiple of threads x 2 MiB\n"
           "      --isa ISA        use at most ISA: avx512-vnni, avx512, avx-vnni, avx2 or\n"
           "                       scalar (scalar: read only; to try fallbacks)\n"
           "      --json           print one JSON object instead of the table\n"
           "  -h, --help           show this help\n");
}

static _Noreturn void usage_error(const char *message, const char *argument)
{
    fprintf(stderr, "hearth-limits: %s%s%s\nTry 'hearth-limits --help'.\n", message, argument ? ": " : "",
        argument ? argument : "");
    exit(2);
}

static int parse_count(const char *text, int min, int max, const char *what)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        usage_error(what, text);
    return (int)value;
}

static size_t parse_bytes(const char *text)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-')
        usage_error("--bytes must be a positive size such as 512M or 2G", text);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (shift != 0 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end != '\0' || value == 0 || value > (SIZE_MAX >> shift))
        usage_error("--bytes must be a positive size such as 512M or 2G", text);
    return (size_t)value << shift;
}

/* "-t N", "--threads N" or "--threads=N": true with *value set if argv[*i]
 * is this option, consuming the next argument when the value is separate. */
static bool take_option(int argc, char **argv, int *i, const char *short_name, const char *long_name,
    const char **value)
{
    const char *arg = argv[*i];
    size_t long_len = strlen(long_name);
    if ((short_name && strcmp(arg, short_name) == 0) || strcmp(arg, long_name) == 0) {
        if (*i + 1 >= argc)
            usage_error("option needs a value", arg);
        *value = argv[++*i];
        return true;
    }
    if (strncmp(arg, long_name, long_len) == 0 && arg[long_len] == '=') {
        *value = arg + long_len + 1;
        return true;
    }
    return false;
}

static options parse_options(int argc, char **argv, int physical_cores)
{
    options opts = { physical_cores, 5, (size_t)1 << 30, ISA_AVX512_VNNI, false };
    for (int i = 1; i < argc; i++) {
        const char *value;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            print_help();
            exit(0);
        } else if (strcmp(argv[i], "--json") == 0) {
            opts.json = true;
        } else if (take_option(argc, argv, &i, "-t", "--threads", &value)) {
            opts.threads = parse_count(value, 1, 4096, "--threads must be an integer from 1 to 4096");
        } else if (take_option(argc, argv, &i, "-r", "--repeats", &value)) {
            opts.repeats = parse_count(value, 1, 1000, "--repeats must be an integer from 1 to 1000");
        } else if (take_option(argc, argv, &i, NULL, "--bytes", &value)) {
            opts.bytes = parse_bytes(value);
        } else if (take_option(argc, argv, &i, NULL, "--isa", &value)) {
            bool known = false;
            for (int level = 0; level <= ISA_AVX512_VNNI && !known; level++) {
                if (strcmp(value, isa_names[level]) == 0) {
                    opts.isa_cap = (isa_level)level;
                    known = true;
                }
            }
            if (!known)
                usage_error("--isa must be one of avx512-vnni, avx512, avx-vnni, avx2, scalar", value);
        } else {
            usage_error("unknown argument", argv[i]);
        }
    }
    size_t granule = (size_t)opts.threads * BUFFER_ALIGNMENT;
    if (opts.bytes < granule)
        usage_error("--bytes must be at least threads x 2 MiB", NULL);
    opts.bytes -= opts.bytes % granule;
    return opts;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */

#define NOT_MEASURED (-1.0)

typedef struct {
    double read_gbs, read_gbs_1t;
    double int8_gops, int8_gops_1t;
    double fp32_gflops, fp32_gflops_1t;
    double clock_ghz, clock_ghz_1t;
    const char *isa, *read_isa, *int8_isa, *fp32_isa;
} limits;

static void print_json_number(const char *name, double value, bool last)
{
    if (value < 0.0)
        printf("\"%s\":null%s", name, last ? "" : ",");
    else
        printf("\"%s\":%.2f%s", name, value, last ? "" : ",");
}

static void print_json(const options *opts, int physical_cores, const limits *l)
{
    printf("{\"threads\":%d,\"physical_cores\":%d,\"read_bytes\":%zu,\"repeats\":%d,", opts->threads,
        physical_cores, opts->bytes, opts->repeats);
    print_json_number("read_bw_gbs", l->read_gbs, false);
    print_json_number("read_bw_gbs_1t", l->read_gbs_1t, false);
    print_json_number("int8_gops", l->int8_gops, false);
    print_json_number("int8_gops_1t", l->int8_gops_1t, false);
    print_json_number("fp32_gflops", l->fp32_gflops, false);
    print_json_number("fp32_gflops_1t", l->fp32_gflops_1t, false);
    print_json_number("clock_ghz", l->clock_ghz, false);
    print_json_number("clock_ghz_1t", l->clock_ghz_1t, false);
    printf("\"isa\":\"%s\",\"read_isa\":\"%s\",\"int8_isa\":\"%s\",\"fp32_isa\":\"%s\"}\n", l->isa, l->read_isa,
        l->int8_isa, l->fp32_isa);
}

/* One column when only one thread was asked for: the two would be the same run. */
static void print_table_row(const char *name, double one_thread, double all_threads, int decimals,
    const char *unit, const char *isa, int threads)
{
    char one[32] = "n/a", all[32] = "n/a";
    if (one_thread >= 0.0)
        snprintf(one, sizeof one, "%.*f %s", decimals, one_thread, unit);
    if (all_threads >= 0.0)
        snprintf(all, sizeof all, "%.*f %s", decimals, all_threads, unit);
    if (threads == 1)
        printf("%-16s %16s   %s\n", name, one, isa);
    else
        printf("%-16s %16s %16s   %s\n", name, one, all, isa);
}

static void print_table(const options *opts, int physical_cores, const limits *l)
{
    printf("hearth-limits: %d thread%s (%d physical core%s), %.2f GiB read buffer, best of %d\n\n", opts->threads,
        opts->threads == 1 ? "" : "s", physical_cores, physical_cores == 1 ? "" : "s",
        (double)opts->bytes / (double)(1u << 30), opts->repeats);
    if (opts->threads == 1) {
        printf("%-16s %16s   %s\n", "", "1 thread", "isa");
    } else {
        char threads_heading[32];
        snprintf(threads_heading, sizeof threads_heading, "%d threads", opts->threads);
        printf("%-16s %16s %16s   %s\n", "", "1 thread", threads_heading, "isa");
    }
    print_table_row("read bandwidth", l->read_gbs_1t, l->read_gbs, 1, "GB/s", l->read_isa, opts->threads);
    print_table_row("int8 peak", l->int8_gops_1t, l->int8_gops, 1, "GOPS", l->int8_isa, opts->threads);
    print_table_row("fp32 peak", l->fp32_gflops_1t, l->fp32_gflops, 1, "GFLOPS", l->fp32_isa, opts->threads);
    print_table_row("clock (scalar)", l->clock_ghz_1t, l->clock_ghz, 2, "GHz", "", opts->threads);
    if (l->clock_ghz_1t > 0.0 && l->fp32_gflops_1t >= 0.0 && l->int8_gops_1t >= 0.0)
        printf("\nper core per cycle at %.2f GHz (1 thread): fp32 %.1f flops, int8 %.1f ops\n", l->clock_ghz_1t,
            l->fp32_gflops_1t / l->clock_ghz_1t, l->int8_gops_1t / l->clock_ghz_1t);
    /* A dependent add chain is latency-bound, so a lower clock with all
     * threads means they did not each get a core: another job, or SMT. */
    if (opts->threads > 1 && l->clock_ghz > 0.0 && l->clock_ghz < 0.9 * l->clock_ghz_1t)
        printf("warning: %d threads ran at %.0f%% of the 1-thread clock: the cores are shared (another job, or"
               " SMT siblings);\n         the %d-thread figures are not this machine's limits\n",
            opts->threads, 100.0 * l->clock_ghz / l->clock_ghz_1t, opts->threads);
}

/* ------------------------------------------------------------------------ */

static void measure_compute_pair(compute_kernel kernel, int threads, int repeats, double *one_thread,
    double *all_threads)
{
    *one_thread = *all_threads = NOT_MEASURED;
    if (!kernel.kernel)
        return;
    uint64_t iterations = calibrate_iterations(kernel.kernel);
    *one_thread = measure_compute_gops(kernel, iterations, 1, repeats);
    *all_threads = threads == 1 ? *one_thread : measure_compute_gops(kernel, iterations, threads, repeats);
}

int main(int argc, char **argv)
{
    int physical_cores = count_physical_cores();
    options opts = parse_options(argc, argv, physical_cores);
    cpu_features features = cap_cpu_features(detect_cpu_features(), opts.isa_cap);

    limits l = { .isa = isa_names[best_isa(features)] };
    read_kernel_fn read_kernel = pick_read_kernel(features, &l.read_isa);
    compute_kernel int8_kernel = pick_int8_kernel(features);
    compute_kernel fp32_kernel = pick_fp32_kernel(features);
    l.int8_isa = int8_kernel.isa;
    l.fp32_isa = fp32_kernel.isa;

    uint8_t *buffer = aligned_alloc(BUFFER_ALIGNMENT, opts.bytes);
    if (!buffer) {
        fprintf(stderr, "hearth-limits: cannot allocate a %zu-byte read buffer (try --bytes)\n", opts.bytes);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    /* Fewer TLB misses, so the figure is the memory's, not the page walker's.
     * Advice only: without transparent huge pages it still runs. */
    madvise(buffer, opts.bytes, MADV_HUGEPAGE);
#endif
    /* All threads first: its warm-up pass writes the pages from the threads
     * that own them. */
    l.read_gbs = measure_read_gbs(read_kernel, buffer, opts.bytes, opts.threads, opts.repeats, true);
    l.read_gbs_1t = opts.threads == 1 ? l.read_gbs
                                      : measure_read_gbs(read_kernel, buffer, opts.bytes, 1, opts.repeats, false);
    free(buffer);

    measure_compute_pair(int8_kernel, opts.threads, opts.repeats, &l.int8_gops_1t, &l.int8_gops);
    measure_compute_pair(fp32_kernel, opts.threads, opts.repeats, &l.fp32_gflops_1t, &l.fp32_gflops);
    l.clock_ghz = l.clock_ghz_1t = NOT_MEASURED;
#ifdef LIMITS_X86
    compute_kernel clock_kernel = { dependent_adds, DEPENDENT_ADDS_PER_ITERATION, "scalar" };
    measure_compute_pair(clock_kernel, opts.threads, opts.repeats, &l.clock_ghz_1t, &l.clock_ghz);
    /* Summed over threads like the other figures; the clock is per core. */
    if (l.clock_ghz >= 0.0)
        l.clock_ghz /= opts.threads;
#endif

    if (opts.json)
        print_json(&opts, physical_cores, &l);
    else
        print_table(&opts, physical_cores, &l);
    return 0;
}

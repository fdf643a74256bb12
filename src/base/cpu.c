#include "base/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPU_X86 1
#endif

static cpu_features detected;
static cpu_level hardware_level = CPU_LEVEL_SCALAR;
static cpu_level best_level = CPU_LEVEL_SCALAR;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

#ifdef CPU_X86
/* xgetbv without needing -mxsave on the whole file. */
static unsigned long long read_xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

static void detect_x86(cpu_features *f)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return;
    bool osxsave = ecx >> 27 & 1, avx = ecx >> 28 & 1;
    f->fma = ecx >> 12 & 1;
    f->f16c = ecx >> 29 & 1;
    /* A feature bit says the core has the registers; XCR0 says whether the OS
     * saves them on a context switch. Without that, using them corrupts state
     * across threads, so the bits alone are not enough. */
    if (osxsave && avx) {
        unsigned long long xcr0 = read_xcr0();
        f->os_ymm = (xcr0 & 0x6) == 0x6;
        f->os_zmm = f->os_ymm && (xcr0 & 0xE0) == 0xE0;
    }
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        unsigned int max_subleaf = eax;
        f->avx2 = ebx >> 5 & 1;
        f->avx512f = ebx >> 16 & 1;
        f->avx512bw = ebx >> 30 & 1;
        f->avx512vl = ebx >> 31 & 1;
        f->avx512vnni = ecx >> 11 & 1;
        if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) {
            f->avx_vnni = eax >> 4 & 1;
            f->avx512bf16 = eax >> 5 & 1;
        }
    }
}
#endif

static cpu_level level_of(const cpu_features *f)
{
    if (!f->os_ymm || !f->avx2 || !f->fma || !f->f16c)
        return CPU_LEVEL_SCALAR;
    if (f->os_zmm && f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni)
        return CPU_LEVEL_AVX512;
    return CPU_LEVEL_AVX2;
}

static void detect(void)
{
#ifdef CPU_X86
    detect_x86(&detected);
#endif
    hardware_level = level_of(&detected);
    best_level = hardware_level;
    /* An unknown value is ignored rather than fatal: it only ever lowers the
     * level, so ignoring it is the safe reading. */
    const char *forced = getenv("HEARTH_CPU");
    if (forced) {
        cpu_level wanted = CPU_LEVEL_COUNT;
        if (strcmp(forced, "scalar") == 0)
            wanted = CPU_LEVEL_SCALAR;
        else if (strcmp(forced, "avx2") == 0)
            wanted = CPU_LEVEL_AVX2;
        else if (strcmp(forced, "avx512") == 0 || strcmp(forced, "avx512-vnni") == 0)
            wanted = CPU_LEVEL_AVX512;
        if (wanted < best_level)
            best_level = wanted;
    }
}

const cpu_features *cpu_get_features(void)
{
    pthread_once(&detect_once, detect);
    return &detected;
}

cpu_level cpu_hardware_level(void)
{
    pthread_once(&detect_once, detect);
    return hardware_level;
}

cpu_level cpu_best_level(void)
{
    pthread_once(&detect_once, detect);
    return best_level;
}

const char *cpu_level_name(cpu_level level)
{
    switch (level) {
    case CPU_LEVEL_AVX2:
        return "avx2";
    case CPU_LEVEL_AVX512:
        return "avx512-vnni";
    default:
        return "scalar";
    }
}

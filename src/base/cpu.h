/* What the CPU we run on can do, found once at run time.
 *
 * Kernels come in levels (scalar, AVX2, AVX-512); the best level this CPU and
 * its OS support is chosen once, and HEARTH_CPU=scalar|avx2|avx512 in the
 * environment may lower it (never raise it) so the slower paths can be tested
 * and benchmarked on a fast machine. */
#ifndef HEARTH_BASE_CPU_H
#define HEARTH_BASE_CPU_H

#include <stdbool.h>

typedef struct cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
    bool avx_vnni;
    bool os_ymm; /* the OS saves YMM state (XCR0 bits 1-2) */
    bool os_zmm; /* the OS saves opmask and ZMM state (XCR0 bits 5-7) */
} cpu_features;

/* Ordered: a kernel of level L runs on every CPU whose level is >= L. */
typedef enum cpu_level {
    CPU_LEVEL_SCALAR = 0,
    CPU_LEVEL_AVX2 = 1,   /* AVX2 + FMA + F16C */
    CPU_LEVEL_AVX512 = 2, /* AVX-512 F/BW/VL + VNNI */
    CPU_LEVEL_COUNT
} cpu_level;

/* The hardware's and OS's features (HEARTH_CPU does not change these). */
const cpu_features *cpu_get_features(void);
/* The highest level the hardware supports. */
cpu_level cpu_hardware_level(void);
/* The level kernels should use: the hardware level, lowered by HEARTH_CPU. */
cpu_level cpu_best_level(void);
/* "scalar", "avx2", "avx512-vnni". */
const char *cpu_level_name(cpu_level level);

#endif

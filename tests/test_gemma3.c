/* Gemma 3 270M end to end against llama.cpp (the oracle): the fixtures in
 * tests/fixtures/gemma3/ come from scripts/oracle/make_real_model_fixtures.sh gemma3.
 *
 *   topk.txt    a teacher-forced sequence of 512 tokens and llama.cpp's top-10
 *               logits at each position.
 *   greedy.txt  3 prompts and llama.cpp's 64 greedy tokens after each: hearth's
 *               greedy continuation must be identical for at least 16 tokens
 *               or part from it only at a near tie, and llama.cpp's tokens,
 *               teacher-forced, must all be hearth's choice or a near tie
 *               (check_greedy_case).
 *
 * Why the top-1 thresholds are what they are. This model, quantized (Q4_K_M)
 * and run with int8 activations as llama.cpp runs it, is numerically chaotic:
 * a last-bit difference in a float sum moves an activation across an int8
 * rounding boundary now and then, and 18 layers of residual stream in the
 * thousands amplify such steps to about half a logit on average. Measured on
 * this sequence (see the note on issue 3):
 *   llama.cpp vs llama.cpp with weight repacking off (only Q4_K's summation
 *     order changes):             top-1 94.7 %, mean |dlogit| 0.62, max 4.4
 *   hearth scalar vs hearth AVX-512 (only our dot products' order changes):
 *                                 top-1 94.3 %, mean 0.62, max 5.4
 *   hearth vs llama.cpp:          top-1 95.1 %, mean 0.65, max 5.0
 * So plain top-1 agreement cannot reach 99 % for any implementation that does
 * not reproduce ggml's summation order bit for bit; it is held to the noise
 * floor (93 %), and the sharper test is agreement where llama.cpp's choice is
 * clear — its top-1 leads by >= 2 logits — which must be >= 99 % (measured
 * 100 %). A real defect (a wrong RoPE base, a missing norm) drops both far
 * below: see the mutation checks in the note. Needs the default model
 * (scripts/setup.sh installs it); skips without it. */
#include "real_model.h"

#include "base/paths.h"

#include <unistd.h>

static const real_model_bounds gemma3_bounds = {
    .name = "gemma3",
    .min_top1 = 0.93,        /* the noise floor above */
    .max_delta = 6.5,        /* the noise floor reaches 5.4 */
    .max_mean_delta = 0.8,   /* noise floor 0.62 */
    .clear_margin = 2.0,
    .min_clear = 200,
    .min_clear_top1 = 0.99,
    .min_greedy_prefix = 16,
    .near_tie = 0.25f,       /* well under the mean |dlogit| noise of ~0.65 */
    .first_token = 2,        /* <bos> */
};

int main(void)
{
    char path[4096];
    if (!paths_default_model(path, sizeof path) || access(path, R_OK) != 0)
        TEST_SKIP("default model not installed (scripts/setup.sh installs it)");
    return real_model_run(&gemma3_bounds, path, "test_gemma3");
}

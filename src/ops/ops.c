#include "ops/ops.h"

#include "base/fp16.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>

void ops_rmsnorm(const float *x, const float *weight, int64_t n, float eps, float *out)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    if (weight) {
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] * scale) * weight[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] * scale;
    }
}

void ops_rope_neox(float *x, int32_t n_heads, int32_t head_dim, int32_t n_dims, int32_t pos, float freq_base,
                   float freq_scale)
{
    int32_t half = n_dims / 2;
    float theta_step = powf(freq_base, -2.0f / (float)n_dims);
    assert(half <= 512); /* head sizes are checked at model load */
    float cos_table[512], sin_table[512];
    float theta = (float)pos * freq_scale;
    for (int32_t i = 0; i < half && i < 512; i++) {
        cos_table[i] = cosf(theta);
        sin_table[i] = sinf(theta);
        theta *= theta_step;
    }
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos_table[i] - b * sin_table[i];
            v[i + half] = a * sin_table[i] + b * cos_table[i];
        }
    }
}

float ops_gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

/* GELU of every half, rounded to half: llama.cpp's CPU backend evaluates
 * GELU through such a table (its inputs rounded to f16) for |x| < 10, and
 * matching it keeps our logits closest to the reference. */
static float gelu_of_half[1 << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static void fill_gelu_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        gelu_of_half[h] = fp16_to_fp32(fp32_to_fp16(ops_gelu_tanh(fp16_to_fp32((uint16_t)h))));
}

void ops_geglu(float *gate, const float *up, int64_t n)
{
    pthread_once(&gelu_table_once, fill_gelu_table);
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        if (x <= -10.0f)
            gate[i] = 0.0f;
        else if (x >= 10.0f)
            gate[i] = x * up[i];
        else
            gate[i] = gelu_of_half[fp32_to_fp16(x)] * up[i];
    }
}

void ops_scale(float *x, int64_t n, float factor)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= factor;
}

void ops_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void ops_swiglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        gate[i] = x / (1.0f + expf(-x)) * up[i];
    }
}

/*
 * epilogue.c - what follows each convolution's matrix product: bias,
 * residual add and ReLU in one pass over the output tile while it is still
 * in cache, and the accumulation of a tap's partial products.
 */
#include "conv_int.h"

#include <string.h>

/* Row kernels of the epilogue.  GCC's -O2 vectoriser (the "very cheap"
 * model) only takes loops whose trip count is a known multiple of the
 * vector width and whose pointers cannot alias: hence restrict and the
 * n & ~7 main loop with a scalar tail; noinline keeps them out of callers
 * where the vectoriser loses track of restrict. */
__attribute__((noinline))
static void row_bias(float *restrict o, float bias, int64_t n, int relu)
{
    const int64_t n8 = n & ~(int64_t)7;
    int64_t i;
    if (relu) {
        for (i = 0; i < n8; i++) {
            float v = o[i] + bias;
            o[i] = v > 0.0f ? v : 0.0f;
        }
        for (; i < n; i++) {
            float v = o[i] + bias;
            o[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (i = 0; i < n8; i++)
            o[i] += bias;
        for (; i < n; i++)
            o[i] += bias;
    }
}

__attribute__((noinline))
static void row_bias_res(float *restrict o, const float *restrict r, float bias,
                         int64_t n, int relu)
{
    const int64_t n8 = n & ~(int64_t)7;
    int64_t i;
    if (relu) {
        for (i = 0; i < n8; i++) {
            float v = o[i] + bias + r[i];
            o[i] = v > 0.0f ? v : 0.0f;
        }
        for (; i < n; i++) {
            float v = o[i] + bias + r[i];
            o[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (i = 0; i < n8; i++)
            o[i] += bias + r[i];
        for (; i < n; i++)
            o[i] += bias + r[i];
    }
}

void nn_conv_row_add(float *restrict o, const float *restrict a, int64_t n)
{
    const int64_t n8 = n & ~(int64_t)7;
    int64_t i;
    for (i = 0; i < n8; i++)
        o[i] += a[i];
    for (; i < n; i++)
        o[i] += a[i];
}

/* One pass per row while the tile is in cache. */
void nn_conv_epilogue(const nn_conv *c, nn_tensor *y, const nn_tensor *res, int relu,
                     int64_t m0, int64_t m1, int64_t j0, int64_t n, int zero)
{
    const int64_t ldc = y->stride[NN_C];
    for (int64_t m = m0; m < m1; m++) {
        float *o = y->data + m * ldc + j0;
        if (zero)
            memset(o, 0, (size_t)n * sizeof *o);
        if (res)
            row_bias_res(o, res->data + m * res->stride[NN_C] + j0, c->b[m], n, relu);
        else
            row_bias(o, c->b[m], n, relu);
    }
}

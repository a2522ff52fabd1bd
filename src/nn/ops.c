/*
 * ops.c - the engine's operators other than convolution: max pooling,
 * global average pooling, bilinear resizing (align_corners=False, exactly
 * PyTorch's source-index rule), broadcast, ReLU, residual add, linear, and
 * the layout change from the caller's batch-major arrays.
 *
 * Loops are plain and unit-stride so -O2 vectorises them; the larger ones
 * are spread over the pool by planes.
 */
#include "nn_int.h"

#include <float.h>
#include <string.h>

typedef struct plane_job {
    const nn_tensor *x;
    nn_tensor *y;
    int k, s, p;
    /* bilinear */
    int64_t oh, ow;
} plane_job;

/* Max pooling of one plane, row by row: per output row the maximum of
 * its input rows (rm, Wi values), then of each window's neighbours in
 * that row; loops without branches per value.  -inf padding as PyTorch:
 * only the inputs inside count (every window has one: 2p <= k). */
#define NN_POOL_ROW 1024

static inline void window(int64_t o, int s, int p, int k, int64_t in, int64_t *a, int64_t *b)
{
    *a = o * s - p < 0 ? 0 : o * s - p;
    *b = o * s - p + k < in ? o * s - p + k : in;
}

static void maxpool_rows(const plane_job *j, const float *in, float *out, float *rm)
{
    const int64_t Hi = j->x->shape[NN_H], Wi = j->x->shape[NN_W];
    const int64_t Ho = j->y->shape[NN_H], Wo = j->y->shape[NN_W];

    for (int64_t oy = 0; oy < Ho; oy++) {
        int64_t y0, y1;
        window(oy, j->s, j->p, j->k, Hi, &y0, &y1);
        memcpy(rm, in + y0 * Wi, (size_t)Wi * sizeof *rm);
        for (int64_t iy = y0 + 1; iy < y1; iy++) {
            const float *r = in + iy * Wi;
            for (int64_t x = 0; x < Wi; x++)
                rm[x] = r[x] > rm[x] ? r[x] : rm[x];
        }
        for (int64_t ox = 0; ox < Wo; ox++) {
            int64_t x0, x1;
            float m;
            window(ox, j->s, j->p, j->k, Wi, &x0, &x1);
            m = rm[x0];
            for (int64_t x = x0 + 1; x < x1; x++)
                m = rm[x] > m ? rm[x] : m;
            out[oy * Wo + ox] = m;
        }
    }
}

/* The same on a plane of a bf16 copy: each 32-bit value holds two
 * channels' bf16 values, pooled side by side (exact: the maximum of
 * rounded values is the rounded maximum). */
static inline float bf_lo(uint32_t v)
{
    union { uint32_t u; float f; } c = { v << 16 };
    return c.f;
}

static inline float bf_hi(uint32_t v)
{
    union { uint32_t u; float f; } c = { v & 0xffff0000u };
    return c.f;
}

static inline uint32_t bf_pair(float lo, float hi)
{
    union { float f; uint32_t u; } a = { lo }, b = { hi };
    return (b.u & 0xffff0000u) | (a.u >> 16);
}

static void maxpool_pairs(const plane_job *j, const uint32_t *in, uint32_t *out, float *rm)
{
    const int64_t Hi = j->x->shape[NN_H], Wi = j->x->shape[NN_W];
    const int64_t Ho = j->y->shape[NN_H], Wo = j->y->shape[NN_W];
    float *rh = rm + NN_POOL_ROW;

    for (int64_t oy = 0; oy < Ho; oy++) {
        int64_t y0, y1;
        window(oy, j->s, j->p, j->k, Hi, &y0, &y1);
        for (int64_t x = 0; x < Wi; x++) {
            rm[x] = bf_lo(in[y0 * Wi + x]);
            rh[x] = bf_hi(in[y0 * Wi + x]);
        }
        for (int64_t iy = y0 + 1; iy < y1; iy++) {
            const uint32_t *r = in + iy * Wi;
            for (int64_t x = 0; x < Wi; x++) {
                const float lo = bf_lo(r[x]), hi = bf_hi(r[x]);
                rm[x] = lo > rm[x] ? lo : rm[x];
                rh[x] = hi > rh[x] ? hi : rh[x];
            }
        }
        for (int64_t ox = 0; ox < Wo; ox++) {
            int64_t x0, x1;
            float ml, mh;
            window(ox, j->s, j->p, j->k, Wi, &x0, &x1);
            ml = rm[x0];
            mh = rh[x0];
            for (int64_t x = x0 + 1; x < x1; x++) {
                ml = rm[x] > ml ? rm[x] : ml;
                mh = rh[x] > mh ? rh[x] : mh;
            }
            out[oy * Wo + ox] = bf_pair(ml, mh);
        }
    }
}

/* Task: one plane (a channel of one frame), or with bf16 copies one pair
 * of channels' plane. */
static void maxpool_plane(void *arg, int task, int thread)
{
    const plane_job *j = arg;
    const int64_t Hi = j->x->shape[NN_H], Wi = j->x->shape[NN_W];
    const int64_t Ho = j->y->shape[NN_H], Wo = j->y->shape[NN_W];
    /* (zeroed only to show analysers that the rows are written first) */
    float rm[2 * NN_POOL_ROW] = { 0 };

    if (j->y->bfvalid) {
        /* task = pair row p, frame f: pair row p's columns (f, y, x) */
        const int64_t frames = j->x->shape[NN_B] * j->x->shape[NN_T];
        const int64_t pr = task / frames, f = task % frames;
        const uint32_t *in = (const uint32_t *)(const void *)j->x->bf;
        uint32_t *out = (uint32_t *)(void *)j->y->bf;
        maxpool_pairs(j, in + pr * j->x->bfld + f * Hi * Wi, out + pr * j->y->bfld + f * Ho * Wo,
                      rm);
        return;
    }
    const float *in = j->x->data + (int64_t)task * Hi * Wi;
    float *out = j->y->data + (int64_t)task * Ho * Wo;
    if (Wi <= NN_POOL_ROW) {
        maxpool_rows(j, in, out, rm);
        return;
    }
    for (int64_t oy = 0; oy < Ho; oy++) {
        for (int64_t ox = 0; ox < Wo; ox++) {
            float m = -FLT_MAX;
            int any = 0;
            for (int ky = 0; ky < j->k; ky++) {
                int64_t iy = oy * j->s - j->p + ky;
                if (iy < 0 || iy >= Hi)
                    continue;
                for (int kx = 0; kx < j->k; kx++) {
                    int64_t ix = ox * j->s - j->p + kx;
                    if (ix < 0 || ix >= Wi)
                        continue;
                    float v = in[iy * Wi + ix];
                    if (!any || v > m)
                        m = v;
                    any = 1;
                }
            }
            out[oy * Wo + ox] = m;
        }
    }
}

int nn_maxpool2d(nn_pool *pool, const nn_tensor *x, nn_tensor *y, int k,
                 int s, int p, en_err *err)
{
    int64_t Ho = (x->shape[NN_H] + 2 * p - k) / s + 1;
    int64_t Wo = (x->shape[NN_W] + 2 * p - k) / s + 1;
    int64_t planes = x->shape[NN_C] * x->shape[NN_B] * x->shape[NN_T];
    plane_job j = { x, y, k, s, p, 0, 0 };
    int rc;

    if (Ho <= 0 || Wo <= 0 || 2 * p > k)
        return en_err_set(err, EN_EINVAL, "nn: max pooling does not fit the input");
    rc = nn_tensor_reshape(y, x->shape[NN_C], x->shape[NN_B], x->shape[NN_T], Ho, Wo, err);
    if (rc != EN_OK)
        return rc;
    if (x->dataold && x->shape[NN_W] <= NN_POOL_ROW && y->cap) {
        /* only the input's bf16 copy holds its values (a bf16 network's
         * stem): pooled as it is, into the output's bf16 copy alone */
        if ((rc = nn_tensor_bf_alloc(y, err)) != EN_OK)
            return rc;
        y->bfvalid = 1;
        y->dataold = 1;
        nn_pool_run(pool, (int)(planes / 2), maxpool_plane, &j);
        return EN_OK;
    }
    nn_tensor_data(x);
    nn_pool_run(pool, (int)planes, maxpool_plane, &j);
    return EN_OK;
}

/* Sums for the global average: sixteen float partial sums (four 4-float
 * vectors, so the loop runs at the vector units' rate instead of one
 * double addition's latency per value), added up in double. */
typedef float nn_v4f __attribute__((vector_size(16)));
typedef uint32_t nn_v4u __attribute__((vector_size(16)));

static double sum_floats(const float *p, int64_t n)
{
    nn_v4f a[4] = { { 0 }, { 0 }, { 0 }, { 0 } };
    double s = 0.0;
    int64_t i = 0;

    for (; i + 16 <= n; i += 16)
        for (int q = 0; q < 4; q++) {
            nn_v4f v;
            memcpy(&v, p + i + 4 * q, sizeof v);
            a[q] += v;
        }
    for (int q = 0; q < 4; q++)
        for (int l = 0; l < 4; l++)
            s += a[q][l];
    for (; i < n; i++)
        s += p[i];
    return s;
}

/* The same over n bf16 pairs (a tensor's bf16 copy): sums[0] of the
 * pairs' first channel, sums[1] of their second. */
static void sum_pairs(const uint32_t *p, int64_t n, double sums[2])
{
    nn_v4f a[2][2] = { { { 0 }, { 0 } }, { { 0 }, { 0 } } };
    int64_t i = 0;

    for (; i + 8 <= n; i += 8)
        for (int q = 0; q < 2; q++) {
            nn_v4u u, lo, hi;
            nn_v4f f;
            memcpy(&u, p + i + 4 * q, sizeof u);
            lo = u << 16;
            hi = u & 0xffff0000u;
            memcpy(&f, &lo, sizeof f);
            a[0][q] += f;
            memcpy(&f, &hi, sizeof f);
            a[1][q] += f;
        }
    for (int h = 0; h < 2; h++) {
        sums[h] = 0.0;
        for (int q = 0; q < 2; q++)
            for (int l = 0; l < 4; l++)
                sums[h] += a[h][q][l];
    }
    for (; i < n; i++) {
        sums[0] += nn_bf16_float((uint16_t)(p[i] & 0xffffu));
        sums[1] += nn_bf16_float((uint16_t)(p[i] >> 16));
    }
}

int nn_avgpool_global(const nn_tensor *x, nn_tensor *y, en_err *err)
{
    const int64_t C = x->shape[NN_C], B = x->shape[NN_B];
    const int64_t n = x->shape[NN_T] * x->shape[NN_H] * x->shape[NN_W];
    int rc = nn_tensor_reshape(y, C, B, 1, 1, 1, err);

    if (rc != EN_OK)
        return rc;
    if (x->dataold) {
        /* only the bf16 copy holds the values (a bf16 network's features,
         * as PyTorch's autocast averages its bf16 activations) */
        const uint32_t *bf = (const uint32_t *)(const void *)x->bf;
        for (int64_t c = 0; c + 1 < C; c += 2)
            for (int64_t b = 0; b < B; b++) {
                double sums[2];
                sum_pairs(bf + (c / 2) * x->bfld + b * n, n, sums);
                y->data[c * B + b] = (float)(sums[0] / (double)n);
                y->data[(c + 1) * B + b] = (float)(sums[1] / (double)n);
            }
        return EN_OK;
    }
    for (int64_t c = 0; c < C; c++)
        for (int64_t b = 0; b < B; b++)
            y->data[c * B + b] = (float)(sum_floats(x->data + c * x->stride[NN_C] +
                                                    b * x->stride[NN_B], n) / (double)n);
    return EN_OK;
}

/* PyTorch's area_pixel_compute_source_index for align_corners=False. */
static void bilinear_index(int64_t in, int64_t out, int64_t o, int64_t *i0,
                           int64_t *i1, float *l1)
{
    const float scale = (float)in / (float)out;
    float src = scale * ((float)o + 0.5f) - 0.5f;
    int64_t a;

    if (src < 0.0f)
        src = 0.0f;
    a = (int64_t)src;
    *i0 = a;
    *i1 = a + (a < in - 1 ? 1 : 0);
    *l1 = src - (float)a;
}

static void upsample_plane(void *arg, int task, int thread)
{
    const plane_job *j = arg;
    const int64_t Hi = j->x->shape[NN_H], Wi = j->x->shape[NN_W];
    const int64_t Ho = j->oh, Wo = j->ow;
    const float *in = j->x->data + (int64_t)task * Hi * Wi;
    float *out = j->y->data + (int64_t)task * Ho * Wo;

    for (int64_t oy = 0; oy < Ho; oy++) {
        int64_t y0, y1;
        float ly1;
        bilinear_index(Hi, Ho, oy, &y0, &y1, &ly1);
        const float ly0 = 1.0f - ly1;
        const float *r0 = in + y0 * Wi, *r1 = in + y1 * Wi;
        for (int64_t ox = 0; ox < Wo; ox++) {
            int64_t x0, x1;
            float lx1;
            bilinear_index(Wi, Wo, ox, &x0, &x1, &lx1);
            const float lx0 = 1.0f - lx1;
            out[oy * Wo + ox] = ly0 * (lx0 * r0[x0] + lx1 * r0[x1]) +
                                ly1 * (lx0 * r1[x0] + lx1 * r1[x1]);
        }
    }
}

int nn_upsample_bilinear(nn_pool *pool, const nn_tensor *x, nn_tensor *y,
                         int64_t oh, int64_t ow, en_err *err)
{
    nn_tensor_data(x);
    int64_t planes = x->shape[NN_C] * x->shape[NN_B] * x->shape[NN_T];
    plane_job j = { x, y, 0, 0, 0, oh, ow };
    int rc = nn_tensor_reshape(y, x->shape[NN_C], x->shape[NN_B], x->shape[NN_T],
                               oh, ow, err);
    if (rc != EN_OK)
        return rc;
    nn_pool_run(pool, (int)planes, upsample_plane, &j);
    return EN_OK;
}

void nn_broadcast_hw(const nn_tensor *v, nn_tensor *y)
{
    const int64_t C = y->shape[NN_C], B = y->shape[NN_B];
    const int64_t n = y->shape[NN_T] * y->shape[NN_H] * y->shape[NN_W];

    nn_tensor_data(v);
    y->bfvalid = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t b = 0; b < B; b++) {
            float *p = y->data + c * y->stride[NN_C] + b * y->stride[NN_B];
            const float val = v->data[c * B + b];
            for (int64_t i = 0; i < n; i++)
                p[i] = val;
        }
}

void nn_relu(nn_tensor *x)
{
    size_t n = nn_tensor_numel(x);
    nn_tensor_data(x);
    x->bfvalid = 0;
    for (size_t i = 0; i < n; i++)
        x->data[i] = x->data[i] > 0.0f ? x->data[i] : 0.0f;
}

void nn_add(nn_tensor *y, const nn_tensor *x)
{
    size_t n = nn_tensor_numel(y);
    nn_tensor_data(x);
    nn_tensor_data(y);
    y->bfvalid = 0;
    for (size_t i = 0; i < n; i++)
        y->data[i] += x->data[i];
}

int nn_linear_forward(const nn_linear *l, const nn_tensor *x, nn_tensor *y,
                      en_err *err)
{
    const int64_t B = x->shape[NN_B];
    int rc;

    nn_tensor_data(x);
    if (x->shape[NN_C] != l->in || nn_tensor_cols(x) != B)
        return en_err_set(err, EN_EINVAL, "nn: linear layer expects %d features", l->in);
    if ((rc = nn_tensor_reshape(y, l->out, B, 1, 1, 1, err)) != EN_OK)
        return rc;
    for (int64_t o = 0; o < l->out; o++)
        for (int64_t b = 0; b < B; b++) {
            double acc = l->b[o];
            for (int64_t i = 0; i < l->in; i++)
                acc += (double)l->w[o * l->in + i] * x->data[i * B + b];
            y->data[o * B + b] = (float)acc;
        }
    return EN_OK;
}

int nn_from_batch_major(const float *in, int64_t b, int64_t c, int64_t t,
                        int64_t h, int64_t w, nn_tensor *y, en_err *err)
{
    const size_t plane = (size_t)(t * h * w);
    int rc = nn_tensor_reshape(y, c, b, t, h, w, err);

    if (rc != EN_OK)
        return rc;
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t ci = 0; ci < c; ci++)
            memcpy(y->data + ci * y->stride[NN_C] + bi * y->stride[NN_B],
                   in + ((size_t)bi * (size_t)c + (size_t)ci) * plane,
                   plane * sizeof(float));
    return EN_OK;
}

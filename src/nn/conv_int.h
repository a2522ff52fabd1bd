/*
 * conv_int.h - what the convolution's files share (conv.c: planning, dense
 * im2col path; conv_taps.c: tap-by-tap and frame-shift paths; conv_wino.c:
 * Winograd F(4x4,3x3); epilogue.c: bias, residual and ReLU rows).
 */
#ifndef EN_NN_CONV_INT_H
#define EN_NN_CONV_INT_H

#include "nn_int.h"

/* One convolution call, shared by its column tiles. */
typedef struct conv_job {
    nn_pool *pool;
    const nn_conv *c;
    const nn_tensor *x;
    nn_tensor *y;
    const nn_tensor *res;
    int relu;
    const float *w;
    int64_t lda;          /* row stride of w */
    int64_t K;            /* rows of im2col */
    int64_t ncols, nb;    /* output columns, columns per tile */
    int pointwise;        /* no im2col: the input is the matrix */
    int64_t in[3], out[3];
} conv_job;

/* Output range [lo, hi) along one axis where tap j reads inside the input
 * (stride 1). */
void nn_conv_tap_range(const nn_conv *c, int axis, int j, int64_t in, int64_t out,
                       int64_t *lo, int64_t *hi);
/* Offset of live tap t's [cout][cin] block within a row of the tap-major
 * weights (t counts live taps, T slowest). */
size_t nn_conv_tap_block(const nn_conv *c, size_t t);

/* Bias, residual and ReLU for rows [m0, m1), columns [j0, j0+n); zero: the
 * product was empty. */
void nn_conv_epilogue(const nn_conv *c, nn_tensor *y, const nn_tensor *res, int relu,
                      int64_t m0, int64_t m1, int64_t j0, int64_t n, int zero);
/* o[i] += a[i] */
void nn_conv_row_add(float *restrict o, const float *restrict a, int64_t n);

/* Temporal-only kernels: output columns [j0, j0+n) of job j. */
void nn_conv_tshift_tile(const conv_job *j, int64_t j0, int64_t n);
/* The whole convolution tap by tap (c->sparse). */
int nn_conv_sparse(nn_pool *pool, const nn_conv *c, const nn_tensor *x,
                   nn_tensor *y, const nn_tensor *res, int relu,
                   const int64_t in[3], const int64_t out[3], en_err *err);

/* Winograd F(4x4,3x3) (conv_wino.c).  eligible: the shape allows it (and
 * EN_NN_WINOGRAD is not 0); tiles: 4x4 tiles per plane; weights: makes
 * c->wu once. */
int nn_conv_wino_eligible(const nn_conv *c, const int64_t in[3], const int64_t out[3]);
int64_t nn_conv_wino_tiles(const nn_conv *c, const int64_t out[3]);
int nn_conv_wino_weights(nn_conv *c, en_err *err);
int nn_conv_wino(nn_pool *pool, const nn_conv *c, const nn_tensor *x, nn_tensor *y,
                 const nn_tensor *res, int relu, const int64_t in[3], const int64_t out[3],
                 en_err *err);

#endif

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
    int64_t ncols, nb;    /* output columns, columns per tile (at most) */
    int64_t ntiles;       /* tiles of whole 32-column panels (nn_tile_cols) */
    int64_t tcols;        /* the columns the tiles cover; the panels past
                             them (ntail) are each split by rows into one
                             task per thread (fp32, own kernel) */
    int64_t ntail;
    int pointwise;        /* no im2col: the input is the matrix */
    int64_t in[3], out[3];
    size_t need;          /* scratch floats per thread */
    /* bf16 products: the packed weights, columns per packed chunk, panel
     * buffer per thread */
    const nn_pack *pk;
    const int32_t *kq;
    int64_t chunk;
    size_t need_panels;
    int implicit;         /* stride 1, not 1x1: packed from the input */
    int bfin, bfout;      /* read the input's bf16 copy; write the output's */
    int bfonly;           /* ... and not the fp32 output (c->bf_only) */
    int64_t maxp;         /* pieces per tap and half-panel, at most */
    const int32_t *cmap;  /* the columns region by region (c->regions), or
                             NULL: in their order */
    int kpack;            /* rows of B a packed panel stores, at most */
    int gather;           /* strided, from the input's bf16 copy: packed
                             by gathers, no im2col */
} conv_job;

/* The own fp32 kernel's B of a tile (a K slice of its columns), bytes: it
 * stays in L2 while every row panel of A meets it.  Measured on both
 * networks (best of 3-4 alternating runs): segmentation 32.1-33.4 ms/frame
 * at 1 MB against 32.4-35.2 at 1.5 MB and 33.2-34.0 at 768 KB; where the
 * output has at most 256 rows, 33.8-35.0 against 35.0-36.2 at 256 KB
 * (segmentation) and 470-501 against 481-497 ms/clip (EF), 516-538 at
 * 2 MB. */
#define NN_TILE_B (1024u << 10)

/* Columns [*j0, *j0 + *n) of tile t of ntiles over ncols: whole 32-column
 * panels of the fp32 kernel, shared out evenly (1,568 columns, 49 panels, in
 * four tiles of 400 had been 13 + 13 + 13 + 12 kernel calls, the 13th half
 * empty: one thread did 26 where 24 and 25 will do).  The widest tile is
 * nn_tile_width columns. */
static inline void nn_tile_cols(int64_t ncols, int64_t ntiles, int64_t t, int64_t *j0,
                                int64_t *n)
{
    const int64_t p = (ncols + 31) / 32, e = p * (t + 1) / ntiles * 32;
    *j0 = p * t / ntiles * 32;
    *n = (e < ncols ? e : ncols) - *j0;
}

static inline int64_t nn_tile_width(int64_t ncols, int64_t ntiles)
{
    return ((ncols + 31) / 32 + ntiles - 1) / ntiles * 32;
}

/* Columns per tile whose K slice of B (k rows, at most NN_SGEMM_KC)
 * stays under NN_TILE_B. */
static inline int64_t nn_tile_b_cols(int64_t k)
{
    const int64_t kb = k < NN_SGEMM_KC ? k : NN_SGEMM_KC;
    return (int64_t)NN_TILE_B / (kb * (int64_t)sizeof(float));
}

/* How many column tiles of about target columns, for nn_tile_cols: an
 * even share per thread, at most one per 32-column panel (the fp32
 * kernel's, and NN_NB of the bf16 ones). */
static inline int64_t nn_tile_count(int64_t ncols, int64_t target, int nth)
{
    const int64_t panels = (ncols + 31) / 32;
    int64_t t = (ncols + target - 1) / target;

    t = (t + nth - 1) / nth * nth;
    return t < panels ? t : panels;
}

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
/* ... on the own fp32 kernel (c->wp), epilogue included; work: the
 * thread's scratch of nn_conv_tshift_own_need floats */
void nn_conv_tshift_tile_own(const conv_job *j, int64_t j0, int64_t n, float *work);
size_t nn_conv_tshift_own_need(const nn_conv *c, int64_t nb);
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

/* EN_NN_PROFILE is set: time each convolution (conv.c). */
int nn_conv_profile(void);

/* bf16 products (conv_bf16.c). */
void nn_conv_bf16_free(nn_conv *c);
/* After a new plan (c->ntap): packs the live taps when not all are; all:
 * every tap is live (the whole matrix packed at load serves). */
int nn_conv_bf16_plan(nn_conv *c, int all, en_err *err);
/* The packed matrix and column map of the dense paths (im2col, 1x1,
 * temporal). */
void nn_conv_bf16_dense(const nn_conv *c, const nn_pack **pk, const int32_t **kq);
/* Columns per packed chunk, and the panel buffer (bf16 values) a
 * product of pk needs with that chunk: row pointers, packed panels and
 * the kernel's work, as nn_conv_bf16_buf finds them.  kpack: rows of B a
 * panel stores at most (pk->k, or fewer when panels store only their live
 * K blocks). */
int64_t nn_conv_bf16_chunk(const nn_pack *pk, int kpack);
size_t nn_conv_bf16_panels(const nn_pack *pk, int kpack, int64_t chunk);
typedef struct nn_bf16_buf {
    const float **rows;
    uint16_t *bp;
    float *work;
} nn_bf16_buf;
void nn_conv_bf16_buf(uint16_t *panels, const nn_pack *pk, int kpack, int64_t chunk,
                      nn_bf16_buf *b);
/* o's rows [m0, m1), columns [0, n) = pk x B, where row q of B is
 * src + q * ld (q from the map kq), packed chunk columns at a time into
 * panels (nn_conv_bf16_panels values).  o's pointers address row m0. */
void nn_conv_bf16_product(const nn_pack *pk, const int32_t *kq, int m0, int m1,
                          const float *src, int64_t ld, int64_t n, const nn_gemm_out *o,
                          uint16_t *panels, int64_t chunk);

#endif

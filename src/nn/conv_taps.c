/*
 * conv_taps.c - convolutions computed tap by tap, for the two cases where
 * that beats im2col:
 *
 * - many products read padding (large dilation on a small map, e.g. ASPP
 *   rate 12 on 14x14): each live tap multiplies only the rectangle of
 *   outputs where it reads inside the input; the unshifted centre tap is a
 *   plain 1x1 product over every position.  Threads split output channels.
 *   fp32 only: bf16 products take such convolutions region by region
 *   (conv.c), where the gathers and scatters here cost more than they save.
 *   On the own fp32 kernel the centre tap runs over column tiles and the
 *   other taps' inputs are gathered once, shared by the threads, which
 *   then split the output channels for those taps' products.
 * - temporal-only kernels (R(2+1)D's (3,1,1), stride 1): in the
 *   channel-major layout a shift by whole frames is a column offset, so each
 *   tap is one product on the input itself, accumulated with beta = 1.
 *
 * Tap t's weights are a [cout][cin] block of the tap-major weight matrix,
 * read in place (lda = the full K).  Exact: only products with padding zeros
 * are skipped.
 */
#include "conv_int.h"
#include "gemm_int.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Output range [lo, hi) along one axis where tap j reads inside the input
 * (stride 1). */
void nn_conv_tap_range(const nn_conv *c, int axis, int j, int64_t in, int64_t out,
                       int64_t *lo, int64_t *hi)
{
    int64_t off = (int64_t)j * c->d[axis] - c->p[axis];
    *lo = off < 0 ? -off : 0;
    *hi = in - off < out ? in - off : out;
    if (*hi < *lo)
        *hi = *lo;
}

/* Offset of live tap t's [cout][cin] block within a row of the tap-major
 * weights (t counts live taps, T slowest). */
size_t nn_conv_tap_block(const nn_conv *c, size_t t)
{
    int a = (int)(t / ((size_t)c->ntap[1] * c->ntap[2]));
    int b = (int)(t / (size_t)c->ntap[2] % (size_t)c->ntap[1]);
    int d = (int)(t % (size_t)c->ntap[2]);
    return (((size_t)c->tap[0][a] * c->k[1] + c->tap[1][b]) * c->k[2] + c->tap[2][d]) *
           (size_t)c->cin;
}

/* Output columns [j0, j0+n) of a temporal-only convolution: per clip in
 * the tile, per live tap, one product with the input shifted by the tap's
 * offset in whole frames (ldb = the input's channel stride), accumulated
 * with beta = 1 after the first. */
void nn_conv_tshift_tile(const conv_job *j, int64_t j0, int64_t n)
{
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    nn_tensor *y = j->y;
    const int64_t hw = j->out[1] * j->out[2], To = j->out[0], Ti = j->in[0];
    const int64_t clip = To * hw, ldc = y->stride[NN_C];

    for (int64_t b = j0 / clip; b * clip < j0 + n; b++) {
        int64_t a0 = j0 > b * clip ? j0 - b * clip : 0;
        int64_t a1 = j0 + n - b * clip < clip ? j0 + n - b * clip : clip;
        int first = 1;
        /* the unshifted tap covers every column: it goes first, beta 0 */
        for (int pass = 0; pass < 2; pass++) {
            for (int t = 0; t < c->ntap[0]; t++) {
                int64_t off = (int64_t)c->tap[0][t] * c->d[0] - c->p[0], lo, hi, c0, c1;
                if ((off == 0) != (pass == 0))
                    continue;
                nn_conv_tap_range(c, 0, c->tap[0][t], Ti, To, &lo, &hi);
                c0 = lo * hw > a0 ? lo * hw : a0;
                c1 = hi * hw < a1 ? hi * hw : a1;
                if (first && (c0 != a0 || c1 != a1)) {
                    for (int64_t m = 0; m < c->cout; m++)
                        memset(y->data + m * ldc + b * clip + a0, 0,
                               (size_t)(a1 - a0) * sizeof(float));
                    first = 0;
                }
                if (c1 <= c0)
                    continue;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)(c1 - c0),
                            c->cin, 1.0f, c->w + (size_t)c->tap[0][t] * c->cin,
                            c->k[0] * c->cin,
                            x->data + b * x->stride[NN_B] + c0 + off * hw,
                            (int)x->stride[NN_C], first ? 0.0f : 1.0f,
                            y->data + b * clip + c0, (int)ldc);
                first = 0;
            }
        }
        if (first)
            for (int64_t m = 0; m < c->cout; m++)
                memset(y->data + m * ldc + b * clip + a0, 0, (size_t)(a1 - a0) * sizeof(float));
    }
}

size_t nn_conv_tshift_own_need(const nn_conv *c, int64_t nb)
{
    /* B's copy, then the row pointers and their column ranges */
    return nn_sgemm_bwork_size((int)nb) +
        ((size_t)c->wp_k * (sizeof(float *) + 2 * sizeof(int32_t)) + sizeof(float) - 1) /
        sizeof(float) + 16;
}

/* The same on the own fp32 kernel (c->wp): per clip in the tile, one
 * product over every temporal tap at once (K = taps x cin), B's rows read
 * from the shifted frames as the kernel copies them, and the epilogue at
 * its end: the output is written once, not once per tap. */
void nn_conv_tshift_tile_own(const conv_job *j, int64_t j0, int64_t n, float *work)
{
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    nn_tensor *y = j->y;
    const int64_t hw = j->out[1] * j->out[2], To = j->out[0], Ti = j->in[0];
    const int64_t clip = To * hw, ldc = y->stride[NN_C], K = c->wp_k;
    const float **rows = (const float **)(void *)(work + nn_sgemm_bwork_size((int)j->nb));
    int32_t *lo = (int32_t *)(void *)(rows + K), *hi = lo + K;

    for (int64_t b = j0 / clip; b * clip < j0 + n; b++) {
        const int64_t a0 = j0 > b * clip ? j0 - b * clip : 0;
        const int64_t a1 = j0 + n - b * clip < clip ? j0 + n - b * clip : clip;
        const nn_sgemm_epi e = { c->b, j->res ? j->res->data + b * clip + a0 : NULL,
                                 j->res ? j->res->stride[NN_C] : 0, j->relu };
        for (int t = 0; t < c->k[0]; t++) {
            const int64_t off = (int64_t)t * c->d[0] - c->p[0];
            int64_t flo, fhi, v0, v1;
            nn_conv_tap_range(c, 0, t, Ti, To, &flo, &fhi);
            v0 = flo * hw > a0 ? flo * hw : a0;
            v1 = fhi * hw < a1 ? fhi * hw : a1;
            for (int64_t ci = 0; ci < c->cin; ci++) {
                const int64_t kk = t * c->cin + ci;
                if (v1 <= v0) {
                    /* the tap reads padding only here */
                    rows[kk] = x->data;
                    lo[kk] = hi[kk] = 0;
                    continue;
                }
                rows[kk] = x->data + b * x->stride[NN_B] + ci * x->stride[NN_C] + v0 + off * hw;
                lo[kk] = (int32_t)(v0 - a0);
                hi[kk] = (int32_t)(v1 - a0);
            }
        }
        nn_sgemm_rows(c->cout, (int)(a1 - a0), (int)K, c->wp, K * NN_SGEMM_MR, rows, lo, hi,
                      y->data + b * clip + a0, ldc, &e, work);
    }
}

/* One live tap other than the full centre one, for the own kernel: its
 * output rectangle, input offsets, columns, and where its block of the
 * packed weights (K offset) and of the gathered inputs start. */
typedef struct live_rect {
    int64_t lo[3], hi[3], off[3], n;
    size_t koff, goff;
} live_rect;

typedef struct sparse_job {
    nn_pool *pool;
    const nn_conv *c;
    const nn_tensor *x;
    nn_tensor *y;
    const nn_tensor *res;
    int relu;
    int64_t in[3], out[3], ncols, mchunk;   /* mchunk: rows per task */
    size_t need;          /* OpenBLAS: scratch floats per thread */
    /* the own kernel's path */
    int64_t nb, ntiles;   /* centre tiles: widest, how many */
    int64_t centre;       /* K offset of the full tap, or -1 */
    int64_t cin_chunk;    /* channels per gather task */
    const live_rect *r;   /* the other live taps */
    int nr;
    float *g;             /* their gathered inputs, [tap][cin][n] */
    size_t gsize;
} sparse_job;

/* dst = channel ci of x over rectangle [lo, hi) shifted by off, row after
 * row (a loop, not memcpy: the pieces are a few floats) */
static void gather_rect(const nn_tensor *x, int64_t ci, const int64_t lo[3],
                        const int64_t hi[3], const int64_t off[3], float *dst)
{
    const int64_t nw = hi[2] - lo[2];
    const float *xc = x->data + ci * x->stride[NN_C];

    for (int64_t b = 0; b < x->shape[NN_B]; b++)
        for (int64_t ot = lo[0]; ot < hi[0]; ot++)
            for (int64_t oy = lo[1]; oy < hi[1]; oy++, dst += nw) {
                const float *src = xc + b * x->stride[NN_B] + (ot + off[0]) * x->stride[NN_T] +
                                   (oy + off[1]) * x->stride[NN_H] + lo[2] + off[2];
                for (int64_t q = 0; q < nw; q++)
                    dst[q] = src[q];
            }
}

/* Row m of y over rectangle [lo, hi) += src, row after row */
static void add_rect(nn_tensor *y, int64_t m, const int64_t lo[3], const int64_t hi[3],
                     const float *src)
{
    const int64_t nw = hi[2] - lo[2];

    for (int64_t b = 0; b < y->shape[NN_B]; b++)
        for (int64_t ot = lo[0]; ot < hi[0]; ot++)
            for (int64_t oy = lo[1]; oy < hi[1]; oy++, src += nw)
                nn_conv_row_add(y->data + m * y->stride[NN_C] + b * y->stride[NN_B] +
                                ot * y->stride[NN_T] + oy * y->stride[NN_H] + lo[2], src, nw);
}

/* A tap's output rectangle and input offsets; 0 when it reads nothing. */
static int tap_rect(const nn_conv *c, const int64_t in[3], const int64_t out[3],
                    size_t t, int64_t lo[3], int64_t hi[3], int64_t off[3])
{
    int idx[3];
    idx[0] = (int)(t / ((size_t)c->ntap[1] * c->ntap[2]));
    idx[1] = (int)(t / (size_t)c->ntap[2] % (size_t)c->ntap[1]);
    idx[2] = (int)(t % (size_t)c->ntap[2]);
    for (int a = 0; a < 3; a++) {
        int j = c->tap[a][idx[a]];
        off[a] = (int64_t)j * c->d[a] - c->p[a];
        nn_conv_tap_range(c, a, j, in[a], out[a], &lo[a], &hi[a]);
        if (hi[a] <= lo[a])
            return 0;
    }
    return 1;
}

static int tap_is_full(const int64_t in[3], const int64_t out[3], const int64_t lo[3],
                       const int64_t hi[3], const int64_t off[3])
{
    for (int a = 0; a < 3; a++)
        if (off[a] != 0 || lo[a] != 0 || hi[a] != out[a] || in[a] != out[a])
            return 0;
    return 1;
}

/* dst rows [m0, m1) (dst addresses row m0) = live tap t's weights x the
 * cin rows of src (n columns, row stride ld). */
static void tap_product(const sparse_job *j, size_t t, int64_t m0, int64_t m1,
                        const float *src, int64_t ld, int64_t n, float *dst, int64_t ldd)
{
    const nn_conv *c = j->c;
    const size_t kfull = (size_t)c->cin * c->k[0] * c->k[1] * c->k[2];

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m1 - m0), (int)n, c->cin,
                1.0f, c->w + (size_t)m0 * kfull + nn_conv_tap_block(c, t), (int)kfull, src,
                (int)ld, 0.0f, dst, (int)ldd);
}

static void sparse_task(void *arg, int task, int thread)
{
    const sparse_job *j = arg;
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    nn_tensor *y = j->y;
    const int64_t m0 = (int64_t)task * j->mchunk;
    const int64_t m1 = m0 + j->mchunk < c->cout ? m0 + j->mchunk : c->cout;
    const int64_t B = x->shape[NN_B], ldc = y->stride[NN_C];
    const size_t ntaps = (size_t)c->ntap[0] * c->ntap[1] * c->ntap[2];
    float *g = nn_pool_scratch(j->pool, thread, j->need);
    int have = 0;

    if (m1 <= m0)
        return;
    /* the tap that covers every output with no shift: a plain 1x1 product */
    for (size_t t = 0; t < ntaps && !have; t++) {
        int64_t lo[3], hi[3], off[3];
        if (tap_rect(c, j->in, j->out, t, lo, hi, off) &&
            tap_is_full(j->in, j->out, lo, hi, off)) {
            tap_product(j, t, m0, m1, x->data, x->stride[NN_C], j->ncols, y->data + m0 * ldc,
                        ldc);
            have = 1;
        }
    }
    if (!have)
        for (int64_t m = m0; m < m1; m++)
            memset(y->data + m * ldc, 0, (size_t)j->ncols * sizeof(float));

    for (size_t t = 0; t < ntaps; t++) {
        int64_t lo[3], hi[3], off[3], n;
        float *tmp;
        if (!tap_rect(c, j->in, j->out, t, lo, hi, off) ||
            tap_is_full(j->in, j->out, lo, hi, off))
            continue;
        n = B * (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
        tmp = g + (size_t)c->cin * (size_t)n;
        /* gather the inputs this tap reads for its rectangle */
        for (int64_t ci = 0; ci < c->cin; ci++)
            gather_rect(x, ci, lo, hi, off, g + ci * n);
        tap_product(j, t, m0, m1, g, n, n, tmp, n);
        for (int64_t m = m0; m < m1; m++)
            add_rect(y, m, lo, hi, tmp + (m - m0) * n);
    }
    nn_conv_epilogue(c, y, j->res, j->relu, m0, m1, 0, j->ncols, 0);
}


static void own_centre(void *arg, int task, int thread)
{
    const sparse_job *j = arg;
    const nn_conv *c = j->c;
    const int64_t ldc = j->y->stride[NN_C];
    int64_t j0, n;
    const int64_t kfull = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];

    nn_tile_cols(j->ncols, j->ntiles, task, &j0, &n);
    if (n <= 0)
        return;
    if (j->centre < 0) {
        for (int64_t m = 0; m < c->cout; m++)
            memset(j->y->data + m * ldc + j0, 0, (size_t)n * sizeof(float));
        return;
    }
    /* (the scratch was sized before the parallel region) */
    nn_sgemm_packed(c->cout, (int)n, c->cin, c->wp + j->centre * NN_SGEMM_MR,
                    kfull * NN_SGEMM_MR, j->x->data + j0, j->x->stride[NN_C], j->y->data + j0,
                    ldc, 0, NULL, nn_pool_scratch(j->pool, thread, 1));
}

static void own_gather(void *arg, int task, int thread)
{
    const sparse_job *j = arg;
    const int64_t c0 = (int64_t)task * j->cin_chunk;
    const int64_t c1 = c0 + j->cin_chunk < j->c->cin ? c0 + j->cin_chunk : j->c->cin;

    (void)thread;
    for (int t = 0; t < j->nr; t++)
        for (int64_t ci = c0; ci < c1; ci++)
            gather_rect(j->x, ci, j->r[t].lo, j->r[t].hi, j->r[t].off,
                        j->g + j->r[t].goff + (size_t)ci * (size_t)j->r[t].n);
}

static void own_taps(void *arg, int task, int thread)
{
    const sparse_job *j = arg;
    const nn_conv *c = j->c;
    nn_tensor *y = j->y;
    const int64_t m0 = (int64_t)task * j->mchunk;
    const int64_t m1 = m0 + j->mchunk < c->cout ? m0 + j->mchunk : c->cout;
    const int64_t apanel = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2] * NN_SGEMM_MR;
    float *tmp = nn_pool_scratch(j->pool, thread, 1);

    if (m1 <= m0)
        return;
    if (thread == 0)
        tmp += j->gsize;   /* thread 0's scratch holds the gathered inputs */
    for (int t = 0; t < j->nr; t++) {
        const live_rect *r = &j->r[t];
        /* m0 is a whole number of the packed weights' row panels */
        nn_sgemm_packed((int)(m1 - m0), (int)r->n, c->cin,
                        c->wp + (m0 / NN_SGEMM_MR) * apanel + (int64_t)r->koff * NN_SGEMM_MR,
                        apanel, j->g + r->goff, r->n, tmp, r->n, 0, NULL, NULL);
        for (int64_t m = m0; m < m1; m++)
            add_rect(y, m, r->lo, r->hi, tmp + (m - m0) * r->n);
    }
    nn_conv_epilogue(c, y, j->res, j->relu, m0, m1, 0, j->ncols, 0);
}

/* The own kernel's path (c->wp): job j has the convolution's fields. */
static int sparse_own_run(sparse_job *jp, en_err *err)
{
    sparse_job j = *jp;
    nn_pool *pool = j.pool;
    const nn_conv *c = j.c;
    const int nth = nn_pool_size(pool);
    const size_t ntaps = (size_t)c->ntap[0] * c->ntap[1] * c->ntap[2];
    const int64_t *in = j.in, *out = j.out;
    live_rect *r = malloc(ntaps * sizeof *r);
    size_t maxn = 0, work, need0;

    if (!r)
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
    j.centre = -1;
    for (size_t t = 0; t < ntaps; t++) {
        live_rect *q = &r[j.nr];
        if (!tap_rect(c, in, out, t, q->lo, q->hi, q->off))
            continue;
        if (j.centre < 0 && tap_is_full(in, out, q->lo, q->hi, q->off)) {
            j.centre = (int64_t)nn_conv_tap_block(c, t);
            continue;
        }
        q->koff = nn_conv_tap_block(c, t);
        q->n = j.x->shape[NN_B] * (q->hi[0] - q->lo[0]) * (q->hi[1] - q->lo[1]) *
               (q->hi[2] - q->lo[2]);
        q->goff = j.gsize;
        j.gsize += (size_t)c->cin * (size_t)q->n;
        maxn = (size_t)q->n > maxn ? (size_t)q->n : maxn;
        j.nr++;
    }
    j.r = r;
    /* centre: column tiles whose K slice of B stays in L2, an even share
     * per thread; the others: rows in whole row panels (NN_SGEMM_MR) per thread */
    j.ntiles = nn_tile_count(j.ncols, nn_tile_b_cols(c->cin), nth);
    j.nb = nn_tile_width(j.ncols, j.ntiles);
    j.cin_chunk = (c->cin + 4 * nth - 1) / (4 * nth);
    j.mchunk = ((c->cout + nth - 1) / nth + NN_SGEMM_MR - 1) / NN_SGEMM_MR * NN_SGEMM_MR;
    work = nn_sgemm_bwork_size((int)j.nb);
    if (work < (size_t)j.mchunk * maxn)
        work = (size_t)j.mchunk * maxn;
    need0 = j.gsize + work + 16;
    for (int t = 0; t < nth; t++)
        if (!nn_pool_scratch(pool, t, t == 0 ? need0 : work + 16)) {
            free(r);
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
        }
    j.g = nn_pool_scratch(pool, 0, need0);
    nn_pool_run(pool, (int)j.ntiles, own_centre, &j);
    if (j.nr > 0) {
        nn_pool_run(pool, (int)((c->cin + j.cin_chunk - 1) / j.cin_chunk), own_gather, &j);
        nn_pool_run(pool, (int)((c->cout + j.mchunk - 1) / j.mchunk), own_taps, &j);
    } else {
        nn_conv_epilogue(c, j.y, j.res, j.relu, 0, c->cout, 0, j.ncols, 0);
    }
    free(r);
    return EN_OK;
}

int nn_conv_sparse(nn_pool *pool, const nn_conv *c, const nn_tensor *x,
                   nn_tensor *y, const nn_tensor *res, int relu,
                   const int64_t in[3], const int64_t out[3], en_err *err)
{
    const int nth = nn_pool_size(pool);
    const size_t ntaps = (size_t)c->ntap[0] * c->ntap[1] * c->ntap[2];
    sparse_job j;
    size_t maxn = 0;

    memset(&j, 0, sizeof j);
    j.pool = pool;
    j.c = c;
    j.x = x;
    j.y = y;
    j.res = res;
    j.relu = relu;
    memcpy(j.in, in, sizeof j.in);
    memcpy(j.out, out, sizeof j.out);
    j.ncols = nn_tensor_cols(y);
    if (c->wp)
        return sparse_own_run(&j, err);
    /* threads split the output channels: their rows never overlap */
    j.mchunk = (c->cout + nth - 1) / nth;
    for (size_t t = 0; t < ntaps; t++) {
        int64_t lo[3], hi[3], off[3];
        if (tap_rect(c, in, out, t, lo, hi, off)) {
            size_t n = (size_t)(x->shape[NN_B] * (hi[0] - lo[0]) * (hi[1] - lo[1]) *
                                (hi[2] - lo[2]));
            if (n > maxn)
                maxn = n;
        }
    }
    j.need = maxn * ((size_t)c->cin + (size_t)j.mchunk) + 16;
    for (int t = 0; t < nth; t++)
        if (!nn_pool_scratch(pool, t, j.need))
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
    nn_pool_run(pool, (int)((c->cout + j.mchunk - 1) / j.mchunk), sparse_task, &j);
    return EN_OK;
}

/*
 * conv_bf16.c - what the convolution paths share when their products run in
 * bf16 (docs/engine.md, "Precision"): the packed weights each path reads,
 * and one routine that packs a right-hand matrix given as rows of floats,
 * a chunk of columns at a time, and multiplies it.
 *
 * Weights are packed when the model is loaded (the whole tap-major matrix),
 * so a study's first frame does not pay for it; the live taps, which
 * depend on the input size, are packed by the plan the first time a size
 * is seen, as the fp32 path builds its reduced copy.  The fp32 weights
 * stay: they are what a new plan packs from.
 *
 * No Winograd in bf16: F(4x4,3x3)'s transforms amplify the operands'
 * rounding (2^-9) about fifteen-fold (emulated over 64 channels: 3 %
 * median error of the largest output against 0.2 % for direct bf16
 * products), which the accuracy gates would not tolerate; the 3x3
 * convolutions take the direct paths.
 *
 * The right-hand matrix is never stored in fp32 for its own sake: its rows
 * are read where they are (the input channels of a 1x1 convolution, the
 * taps of a stride-1 one, an im2col tile) and rounded into packed panels
 * of a chunk of columns that stays in the L2 cache while the kernel walks
 * it.
 */
#include "conv_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of packed right-hand panels per chunk of columns: the weights are
 * read once per chunk (from L3 or memory), and a chunk that fits L2 goes
 * from the packing to the kernel without leaving it; so the chunk is about
 * as large as the packed weights, within these bounds. */
#define NN_BF16_CHUNK_MIN (512u << 10)
#define NN_BF16_CHUNK_MAX (4u << 20)

/* Column map for ntaps taps of c's cin channels: q = t * cin + ci, channel
 * groups padded to pairs (stride-1 convolutions read their channels in
 * pairs from a bf16 copy), the whole to the tier's K step.  A strided
 * convolution packs from an im2col tile, row by row: no padding but the
 * whole's (the stem's 49 taps of 3 channels: K 160 instead of 224). */
static int kmap_build(const nn_conv *c, int ntaps, nn_kern kern, int32_t **out, int *k,
                      en_err *err)
{
    const int strided = c->s[0] > 1 || c->s[1] > 1 || c->s[2] > 1;
    const int64_t cin = strided ? (int64_t)ntaps * c->cin : c->cin;
    const int64_t ks = nn_kstep(kern), cp = strided ? cin : (cin + 1) / 2 * 2;
    const int64_t raw = (strided ? 1 : ntaps) * cp, kk = (raw + ks - 1) / ks * ks;
    int32_t *m;

    if (kk > (1 << 28))
        return en_err_set(err, EN_ELIMIT, "nn: convolution too large to pack");
    if (!(m = malloc((size_t)kk * sizeof *m)))
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for packed weights");
    for (int64_t j = 0; j < kk; j++) {
        int64_t t = j / cp, ci = j % cp;
        m[j] = j < raw && ci < cin ? (int32_t)(t * cin + ci) : -1;
    }
    *out = m;
    *k = (int)kk;
    return EN_OK;
}

/* Packs the live taps (in the plan's order, all when all) of c's weights
 * through map kq (k columns). */
static int pack_live(const nn_conv *c, const int32_t *kq, int k, int all, nn_pack *out,
                     en_err *err)
{
    const int64_t lda = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];
    int32_t *src;
    int rc;

    if (all)
        return nn_pack_a(c->kern, c->w, lda, c->cout, kq, k, out, err);
    if (!(src = malloc((size_t)k * sizeof *src)))
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for packed weights");
    for (int j = 0; j < k; j++)
        src[j] = kq[j] < 0 ? -1 : (int32_t)(nn_conv_tap_block(c, (size_t)(kq[j] / c->cin)) +
                                            (size_t)(kq[j] % c->cin));
    rc = nn_pack_a(c->kern, c->w, lda, c->cout, src, k, out, err);
    free(src);
    return rc;
}

void nn_conv_bf16_free(nn_conv *c)
{
    nn_pack_free(&c->pk_full);
    nn_pack_free(&c->pk_live);
    free(c->kq_full);
    free(c->kq_live);
    c->kq_full = c->kq_live = NULL;
}

int nn_conv_set_kernel(nn_conv *c, nn_kern k, en_err *err)
{
    const int ntaps = c->k[0] * c->k[1] * c->k[2];
    int kk, rc;

    nn_conv_bf16_free(c);
    c->kern = k;
    if (k == NN_KERN_FP32)
        return EN_OK;
    if ((rc = kmap_build(c, ntaps, k, &c->kq_full, &kk, err)) != EN_OK ||
        (rc = nn_pack_a(k, c->w, (int64_t)c->cin * ntaps, c->cout, c->kq_full, kk, &c->pk_full,
                        err)) != EN_OK)
        return rc;
    return EN_OK;
}

int nn_conv_bf16_plan(nn_conv *c, int all, en_err *err)
{
    int kk, rc;

    nn_pack_free(&c->pk_live);
    free(c->kq_live);
    c->kq_live = NULL;
    if (all)
        return EN_OK;
    if ((rc = kmap_build(c, c->ntap[0] * c->ntap[1] * c->ntap[2], c->kern, &c->kq_live,
                         &kk, err)) != EN_OK)
        return rc;
    return pack_live(c, c->kq_live, kk, 0, &c->pk_live, err);
}

void nn_conv_bf16_dense(const nn_conv *c, const nn_pack **pk, const int32_t **kq)
{
    if (c->pk_live.data) {
        *pk = &c->pk_live;
        *kq = c->kq_live;
    } else {
        *pk = &c->pk_full;
        *kq = c->kq_full;
    }
}

int64_t nn_conv_bf16_chunk(const nn_pack *pk, int kpack)
{
    int64_t bytes = 2 * (int64_t)pk->m * kpack, n;
    bytes = bytes < NN_BF16_CHUNK_MIN ? NN_BF16_CHUNK_MIN :
            bytes > NN_BF16_CHUNK_MAX ? NN_BF16_CHUNK_MAX : bytes;
    n = bytes / (2 * (int64_t)(kpack > 0 ? kpack : 1));
    n = n / NN_NB * NN_NB;
    return n < NN_NB ? NN_NB : n;
}

/* The panel buffer: row pointers, the packed panels, the product's work. */
static size_t ptrs_elems(const nn_pack *pk)
{
    return ((size_t)pk->k * sizeof(float *) + 63) / 64 * 64 / sizeof(uint16_t);
}

size_t nn_conv_bf16_panels(const nn_pack *pk, int kpack, int64_t chunk)
{
    size_t bp = (nn_bpack_elems(kpack, chunk) + 31) / 32 * 32;
    return ptrs_elems(pk) + bp + nn_gemm_work(pk, chunk) * 2;
}

void nn_conv_bf16_buf(uint16_t *panels, const nn_pack *pk, int kpack, int64_t chunk,
                      nn_bf16_buf *b)
{
    b->rows = (const float **)(void *)panels;
    b->bp = panels + ptrs_elems(pk);
    b->work = (float *)(void *)(b->bp + (nn_bpack_elems(kpack, chunk) + 31) / 32 * 32);
}

void nn_conv_bf16_product(const nn_pack *pk, const int32_t *kq, int m0, int m1,
                          const float *src, int64_t ld, int64_t n, const nn_gemm_out *o,
                          uint16_t *panels, int64_t chunk)
{
    nn_bf16_buf b;

    nn_conv_bf16_buf(panels, pk, pk->k, chunk, &b);
    for (int64_t j0 = 0; j0 < n; j0 += chunk) {
        const int64_t nc = n - j0 < chunk ? n - j0 : chunk;
        nn_gemm_out oc = *o;
        for (int r = 0; r < pk->k; r++)
            b.rows[r] = kq[r] >= 0 ? src + (int64_t)kq[r] * ld + j0 : NULL;
        nn_bpack(b.bp, b.rows, NULL, NULL, pk->k, nc);
        if (oc.c)
            oc.c += j0;
        if (oc.res)
            oc.res += j0;
        if (oc.bf)
            oc.bf += 2 * j0;
        if (oc.resbf)
            oc.resbf += 2 * j0;
        nn_bmat bm = nn_bmat_packed(b.bp, pk->k);
        nn_gemm_bf16(pk, m0, m1, &bm, nc, &oc, b.work, NULL);
    }
}

/* ---- two convolutions summed in one product (nn_conv_join) ----------- */

int nn_conv_join_make(const nn_conv *a, const nn_conv *b, nn_conv_join *out, en_err *err)
{
    int64_t ks, k1, k;
    float *w = NULL;
    int32_t *map = NULL;
    int rc = EN_OK;

    memset(out, 0, sizeof *out);
    for (int i = 0; i < 3; i++)
        if (a->k[i] != 1 || b->k[i] != 1 || a->s[i] != 1 || b->s[i] != 1 || a->p[i] || b->p[i])
            return EN_OK;
    if (a->kern == NN_KERN_FP32 || b->kern != a->kern || a->cout != b->cout || a->cout % 2)
        return EN_OK;
    /* a's part in whole K blocks, so that no block reads both inputs */
    ks = nn_kstep(a->kern);
    k1 = ((int64_t)a->cin + 31) / 32 * 32;
    k = k1 + ((int64_t)b->cin + ks - 1) / ks * ks;
    if (k > (1 << 28))
        return en_err_set(err, EN_ELIMIT, "nn: convolution too large to pack");
    w = calloc((size_t)a->cout * (size_t)k, sizeof *w);
    map = malloc((size_t)k * sizeof *map);
    out->b = malloc((size_t)a->cout * sizeof *out->b);
    if (!w || !map || !out->b) {
        rc = en_err_set(err, EN_ENOMEM, "nn: out of memory for packed weights");
        goto done;
    }
    for (int64_t j = 0; j < k; j++)
        map[j] = j < a->cin || (j >= k1 && j < k1 + b->cin) ? (int32_t)j : -1;
    for (int64_t r = 0; r < a->cout; r++) {
        memcpy(w + r * k, a->w + r * a->cin, (size_t)a->cin * sizeof *w);
        memcpy(w + r * k + k1, b->w + r * b->cin, (size_t)b->cin * sizeof *w);
        out->b[r] = a->b[r] + b->b[r];
    }
    out->k1 = (int)k1;
    rc = nn_pack_a(a->kern, w, k, a->cout, map, (int)k, &out->pk, err);
done:
    free(w);
    free(map);
    if (rc != EN_OK)
        nn_conv_join_free(out);
    return rc;
}

void nn_conv_join_free(nn_conv_join *j)
{
    nn_pack_free(&j->pk);
    free(j->b);
    memset(j, 0, sizeof *j);
}

int nn_conv_join_usable(const nn_conv_join *j, const nn_tensor *xa, const nn_tensor *xb)
{
    return j->pk.data && xa->bfvalid && xb->bfvalid && xa->bf && xb->bf &&
           nn_tensor_cols(xa) == nn_tensor_cols(xb) &&
           xa->bfrows * 2 >= j->k1 && xb->bfrows * 2 >= j->pk.k - j->k1;
}

typedef struct join_job {
    const nn_conv_join *jn;
    const nn_tensor *xa, *xb;
    nn_tensor *y;
    nn_pool *pool;
    int relu, bfonly;
    int64_t ncols, nb, ntiles;
    size_t need;            /* panel buffer values per thread: the work */
} join_job;

static void join_tile(void *arg, int task, int thread)
{
    const join_job *j = arg;
    int64_t j0, n;
    nn_tile_cols(j->ncols, j->ntiles, task, &j0, &n);
    nn_gemm_out o = {
        .c = j->bfonly ? NULL : j->y->data + j0, .ldc = j->y->stride[NN_C], .bias = j->jn->b,
        .relu = j->relu, .bf = j->y->bf + 2 * j0, .bfld = j->y->bfld
    };
    /* both inputs read in place (j0: whole panels) */
    nn_bmat bm = { j->xa->bf + 2 * j0, 2 * NN_NB, 2 * j->xa->bfld, NULL,
                   j->xb->bf + 2 * j0, j->jn->k1 / 2, 2 * j->xb->bfld };

    if (n <= 0)
        return;
    nn_gemm_bf16(&j->jn->pk, 0, j->jn->pk.m, &bm, n, &o,
                 (float *)(void *)nn_pool_panels(j->pool, thread, j->need), NULL);
}

int nn_conv_forward_join(nn_pool *pool, const nn_conv_join *jn, const nn_conv *a,
                         const nn_tensor *xa, const nn_tensor *xb, nn_tensor *y, int relu,
                         en_err *err)
{
    const int nth = nn_pool_size(pool);
    join_job j = { jn, xa, xb, y, pool, relu, a->bf_only, nn_tensor_cols(xa), 0, 0, 0 };
    struct timespec t0 = { 0, 0 }, t1;
    int rc;

    if ((rc = nn_tensor_reshape(y, a->cout, xa->shape[NN_B], xa->shape[NN_T], xa->shape[NN_H],
                                xa->shape[NN_W], err)) != EN_OK ||
        (rc = nn_tensor_bf_alloc(y, err)) != EN_OK)
        return rc;
    /* the tiles start at whole panels of both inputs' bf16 copies */
    _Static_assert(NN_NB == 32, "nn_tile_cols cuts 32-column panels");
    j.ntiles = nn_tile_count(j.ncols, nn_conv_bf16_chunk(&jn->pk, jn->pk.k), nth);
    j.nb = nn_tile_width(j.ncols, j.ntiles);
    j.need = nn_gemm_work(&jn->pk, j.nb) * 2 + 32;
    for (int t = 0; t < nth; t++)
        if (!nn_pool_panels(pool, t, j.need))
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
    if (nn_conv_profile())
        clock_gettime(CLOCK_MONOTONIC, &t0);
    nn_pool_run(pool, (int)j.ntiles, join_tile, &j);
    y->bfvalid = 1;
    y->dataold = j.bfonly;
    if (nn_conv_profile()) {
        double ms;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        fprintf(stderr, "nn-profile conv %4d->%-4d k1x1x1 and its projection, cols %6lld K "
                "%5d joined %7.2f ms %6.1f GFLOP/s\n", a->cin, a->cout, (long long)j.ncols,
                jn->pk.k, ms,
                2.0 * a->cout * (double)jn->pk.k * (double)j.ncols / (ms * 1e6));
    }
    return EN_OK;
}

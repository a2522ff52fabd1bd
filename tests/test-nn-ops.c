/*
 * test-nn-ops.c - the inference engine's operators against direct
 * definitions: convolution (2-D and 3-D, stride, padding, dilation, batch,
 * residual, ReLU; the tap-dropping and 1x1 fast paths; one thread and a
 * pool) against a naive loop, pooling and bilinear resizing against
 * hand-computed PyTorch values, and the JSON header parser against hostile
 * input.  Every convolution case also runs on each bf16 kernel tier this
 * CPU offers (AVX512-BF16, AMX), against the direct loop on the same
 * bf16-rounded weights and inputs (only the fp32 summation order may
 * differ), and the bf16 packing and product against a plain loop at sizes
 * that leave partial panels everywhere, and the joined product of a
 * bottleneck's last convolution and its projection.
 */
#include "nn_int.h"
#include "gemm_int.h"
#include "tst.h"
#include "wino_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng = 12345;
static float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void fill(nn_tensor *t)
{
    size_t n = nn_tensor_numel(t);
    for (size_t i = 0; i < n; i++)
        t->data[i] = frand();
}

typedef struct conv_case {
    int cin, cout, b, t, h, w;
    int k[3], s[3], p[3], d[3];
    int path;             /* must take this path: PATH_WINO, PATH_TAPS (0: any) */
} conv_case;

#define PATH_WINO 1       /* Winograd */
#define PATH_TAPS 2       /* tap by tap */
#define PATH_NO_WINO 3    /* anything but Winograd */

/* keep: the output is moved there instead of freed */
static void run_conv_case(const conv_case *cc, nn_pool *pool, int residual, int relu,
                          nn_tensor *keep)
{
    nn_conv c;
    nn_tensor x = { 0 }, y = { 0 }, ref = { 0 }, res = { 0 };
    size_t kk = (size_t)cc->k[0] * cc->k[1] * cc->k[2];
    en_err err;
    double maxd = 0, maxv = 0;

    memset(&c, 0, sizeof c);
    c.cin = cc->cin;
    c.cout = cc->cout;
    memcpy(c.k, cc->k, sizeof c.k);
    memcpy(c.s, cc->s, sizeof c.s);
    memcpy(c.p, cc->p, sizeof c.p);
    memcpy(c.d, cc->d, sizeof c.d);
    c.w = malloc((size_t)c.cout * c.cin * kk * sizeof *c.w);
    c.b = malloc((size_t)c.cout * sizeof *c.b);
    for (size_t i = 0; i < (size_t)c.cout * c.cin * kk; i++)
        c.w[i] = frand();
    for (int i = 0; i < c.cout; i++)
        c.b[i] = frand();
    nn_tensor_reshape(&x, cc->cin, cc->b, cc->t, cc->h, cc->w, NULL);
    fill(&x);
    nn_conv_reference(&c, &x, &ref);
    if (residual) {
        nn_tensor_reshape(&res, ref.shape[0], ref.shape[1], ref.shape[2], ref.shape[3],
                          ref.shape[4], NULL);
        fill(&res);
        nn_add(&ref, &res);
    }
    if (relu)
        nn_relu(&ref);
    CHECKF(nn_conv_forward(pool, &c, &x, &y, residual ? &res : NULL, relu, &err) == EN_OK,
           "%s", err.msg);
    for (int i = 0; i < NN_DIMS; i++)
        CHECK(y.shape[i] == ref.shape[i]);
    if (cc->path == PATH_WINO)
        CHECKF(c.wino, "conv cin %d %dx%d d %d,%d: expected the Winograd path", cc->cin,
               cc->h, cc->w, cc->d[1], cc->d[2]);
    if (cc->path == PATH_NO_WINO)
        CHECKF(!c.wino, "conv cin %d cout %d %dx%d: expected no Winograd", cc->cin, cc->cout,
               cc->h, cc->w);
    if (cc->path == PATH_TAPS)
        CHECKF(c.sparse, "conv cin %d %dx%d d %d,%d: expected the tap-by-tap path", cc->cin,
               cc->h, cc->w, cc->d[1], cc->d[2]);
    /* on a CPU with the own fp32 kernel the products run on it (unless
     * EN_NN_FP32_KERNEL=0 sends them to OpenBLAS) */
    if (cc->path == PATH_WINO)
        CHECKF(c.wu && c.wu_packed == nn_sgemm_packed_usable(),
               "conv cin %d %dx%d: Winograd weights not in the kernel's layout", cc->cin,
               cc->h, cc->w);
    if (!c.wino)
        CHECKF(!c.wp == !nn_sgemm_packed_usable(), "conv cin %d k %dx%dx%d: packed weights %s",
               cc->cin, cc->k[0], cc->k[1], cc->k[2], c.wp ? "made for OpenBLAS" : "missing");
    /* packed whole, the weights are kept once; a plan for another input
     * size makes them again (from the packed copy) where it needs them */
    CHECK(!c.wp_full || !c.w);
    if (c.wp_full) {
        nn_tensor x2 = { 0 }, y2 = { 0 }, ref2 = { 0 };
        nn_tensor_reshape(&x2, cc->cin, cc->b, cc->t + 1, cc->h + 3, cc->w + 2, NULL);
        fill(&x2);
        CHECKF(nn_conv_forward(pool, &c, &x2, &y2, NULL, 0, &err) == EN_OK, "%s", err.msg);
        nn_conv_reference(&c, &x2, &ref2);
        for (size_t i = 0; i < nn_tensor_numel(&ref2); i++)
            CHECKF(fabs((double)y2.data[i] - ref2.data[i]) <= 1e-4 * (1 + fabs(ref2.data[i])),
                   "conv cin %d k %dx%dx%d, second size: %g against %g", cc->cin, cc->k[0],
                   cc->k[1], cc->k[2], y2.data[i], ref2.data[i]);
        nn_tensor_free(&x2);
        nn_tensor_free(&y2);
        nn_tensor_free(&ref2);
    }
    for (size_t i = 0; i < nn_tensor_numel(&ref); i++) {
        double dd = fabs((double)y.data[i] - ref.data[i]);
        if (dd > maxd) maxd = dd;
        if (fabs(ref.data[i]) > maxv) maxv = fabs(ref.data[i]);
    }
    CHECKF(maxd <= 1e-4 * (maxv > 1 ? maxv : 1),
           "conv cin %d k %dx%dx%d s %d,%d p %d,%d d %d,%d on %dx%dx%d: max diff %g",
           cc->cin, cc->k[0], cc->k[1], cc->k[2], cc->s[0], cc->s[1], cc->p[0], cc->p[1],
           cc->d[0], cc->d[1], cc->t, cc->h, cc->w, maxd);
    if (keep) {
        *keep = y;
        memset(&y, 0, sizeof y);
    }
    nn_conv_free(&c);
    nn_tensor_free(&x);
    nn_tensor_free(&y);
    nn_tensor_free(&ref);
    nn_tensor_free(&res);
}

static float bf16_round(float f)
{
    return nn_bf16_float(nn_bf16(f));
}

/* The fp32 kernel for small products against the direct loop: row tails,
 * column tails (masked), K over one slice, B and C wider than n. */
static void test_sgemm_packed(void)
{
    static const int sizes[][3] = { { 1, 1, 1 }, { 12, 32, 64 }, { 13, 17, 5 },
                                    { 144, 28, 64 }, { 37, 70, 300 }, { 25, 100, 513 },
                                    { 20, 48, 40 } };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int m = sizes[si][0], n = sizes[si][1], k = sizes[si][2], ld = n + 5;
        float *a = malloc((size_t)m * k * sizeof *a), *b = malloc((size_t)k * ld * sizeof *b);
        float *ap = malloc(nn_sgemm_pack_size(m, k) * sizeof *ap);
        float *c = malloc((size_t)m * ld * sizeof *c);
        double maxd = 0;
        for (size_t i = 0; i < (size_t)m * k; i++)
            a[i] = frand();
        for (size_t i = 0; i < (size_t)k * ld; i++)
            b[i] = frand();
        for (size_t i = 0; i < (size_t)m * ld; i++)
            c[i] = 12345.0f;
        float *bias = malloc((size_t)m * sizeof *bias), *res = malloc((size_t)m * n * sizeof *res);
        float *work = malloc(nn_sgemm_bwork_size(n) * sizeof *work);
        const float **rows = malloc((size_t)k * sizeof *rows);
        int32_t *lo = malloc((size_t)k * sizeof *lo), *hi = malloc((size_t)k * sizeof *hi);
        for (int i = 0; i < m; i++)
            bias[i] = frand();
        for (size_t i = 0; i < (size_t)m * n; i++)
            res[i] = frand();
        nn_sgemm_pack(a, k, m, k, ap);
        /* mode 0: C = AB in place; 1: C += AB through the copy of B; 2: C =
         * AB + bias + res, ReLU; 3: rows of B given one by one, each a
         * different column range (the rest zero), then bias and ReLU */
        for (int mode = 0; mode < 4; mode++) {
            const nn_sgemm_epi e = { bias, mode == 2 ? res : NULL, n, 1 };
            maxd = 0;
            for (size_t i = 0; i < (size_t)m * ld; i++)
                c[i] = mode == 1 ? (float)(i % 3) : 12345.0f;
            for (int q = 0; q < k; q++) {
                lo[q] = q % 5;
                hi[q] = n - q % 3;
                rows[q] = b + (size_t)q * ld + lo[q];
            }
            if (mode == 3)
                nn_sgemm_rows(m, n, k, ap, (int64_t)k * NN_SGEMM_MR, rows, lo, hi, c, ld, &e,
                              work);
            else
                nn_sgemm_packed(m, n, k, ap, (int64_t)k * NN_SGEMM_MR, b, ld, c, ld, mode == 1,
                                mode >= 2 ? &e : NULL, mode == 1 ? work : NULL);
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double r = mode == 1 ? (double)(((size_t)i * ld + j) % 3) : 0;
                    for (int q = 0; q < k; q++)
                        if (mode != 3 || (j >= lo[q] && j < hi[q]))
                            r += (double)a[(size_t)i * k + q] * b[(size_t)q * ld + j];
                    if (mode >= 2) {
                        r += bias[i] + (mode == 2 ? res[(size_t)i * n + j] : 0);
                        r = r > 0 ? r : 0;
                    }
                    if (fabs(r - c[(size_t)i * ld + j]) > maxd)
                        maxd = fabs(r - c[(size_t)i * ld + j]);
                }
                /* the columns past n are not written */
                for (int j = n; j < ld; j++)
                    CHECK(c[(size_t)i * ld + j] == (mode == 1 ? (float)(((size_t)i * ld + j) % 3)
                                                               : 12345.0f));
            }
            CHECKF(maxd <= 1e-5 * k, "fp32 kernel %dx%dx%d mode %d: max diff %g", m, n, k, mode,
                   maxd);
        }
        free(a);
        free(b);
        free(ap);
        free(c);
        free(bias);
        free(res);
        free(work);
        free(rows);
        free(lo);
        free(hi);
    }
}

/* The same case with the products on kernel tier kern: against the direct
 * loop over the bf16-rounded operands (tight: only the order of the fp32
 * sums differs).  bf16 never takes the Winograd path (conv_bf16.c). */
static void run_conv_case_bf16(const conv_case *cc, nn_pool *pool, int residual, int relu,
                               nn_kern kern)
{
    nn_conv c, cr;
    nn_tensor x = { 0 }, xr = { 0 }, y = { 0 }, ref = { 0 }, res = { 0 };
    size_t kk = (size_t)cc->k[0] * cc->k[1] * cc->k[2], nw;
    en_err err;
    double maxd = 0, maxv = 0;

    memset(&c, 0, sizeof c);
    c.cin = cc->cin;
    c.cout = cc->cout;
    memcpy(c.k, cc->k, sizeof c.k);
    memcpy(c.s, cc->s, sizeof c.s);
    memcpy(c.p, cc->p, sizeof c.p);
    memcpy(c.d, cc->d, sizeof c.d);
    nw = (size_t)c.cout * c.cin * kk;
    c.w = malloc(nw * sizeof *c.w);
    c.b = malloc((size_t)c.cout * sizeof *c.b);
    for (size_t i = 0; i < nw; i++)
        c.w[i] = frand();
    for (int i = 0; i < c.cout; i++)
        c.b[i] = frand();
    cr = c;
    cr.w = malloc(nw * sizeof *cr.w);
    nn_tensor_reshape(&x, cc->cin, cc->b, cc->t, cc->h, cc->w, NULL);
    fill(&x);
    nn_tensor_reshape(&xr, cc->cin, cc->b, cc->t, cc->h, cc->w, NULL);
    for (size_t i = 0; i < nn_tensor_numel(&x); i++)
        xr.data[i] = bf16_round(x.data[i]);
    CHECKF(nn_conv_set_kernel(&c, kern, &err) == EN_OK, "%s", err.msg);
    for (size_t i = 0; i < nw; i++)
        cr.w[i] = bf16_round(c.w[i]);
    nn_conv_reference(&cr, &xr, &ref);
    if (residual) {
        nn_tensor_reshape(&res, ref.shape[0], ref.shape[1], ref.shape[2], ref.shape[3],
                          ref.shape[4], NULL);
        fill(&res);
        nn_add(&ref, &res);
    }
    if (relu)
        nn_relu(&ref);
    CHECKF(nn_conv_forward(pool, &c, &x, &y, residual ? &res : NULL, relu, &err) == EN_OK,
           "%s", err.msg);
    for (int i = 0; i < NN_DIMS; i++)
        CHECK(y.shape[i] == ref.shape[i]);
    CHECK(!c.wino);
    for (size_t i = 0; i < nn_tensor_numel(&ref); i++) {
        double dd = fabs((double)y.data[i] - ref.data[i]);
        if (dd > maxd) maxd = dd;
        if (fabs(ref.data[i]) > maxv) maxv = fabs(ref.data[i]);
    }
    CHECKF(maxd <= 1e-4 * (maxv > 1 ? maxv : 1),
           "%s conv cin %d cout %d k %dx%dx%d s %d,%d p %d,%d d %d,%d on %dx%dx%dx%d: max diff %g "
           "(max %g)", nn_kern_name(kern), cc->cin, cc->cout, cc->k[0], cc->k[1], cc->k[2],
           cc->s[0], cc->s[1], cc->p[0], cc->p[1], cc->d[0], cc->d[1], cc->b, cc->t, cc->h,
           cc->w, maxd, maxv);
    /* the output's bf16 copy, when made, is the output rounded */
    if (y.bfvalid) {
        size_t bad = 0, cols = (size_t)nn_tensor_cols(&y);
        for (size_t ch = 0; ch < (size_t)c.cout; ch++)
            for (size_t j = 0; j < cols; j++)
                bad += y.bf[((ch / 2) * (size_t)y.bfld + j) * 2 + ch % 2] !=
                       nn_bf16(y.data[ch * (size_t)y.stride[NN_C] + j]);
        CHECKF(bad == 0, "%s conv cin %d cout %d: %zu values of the bf16 copy differ",
               nn_kern_name(kern), cc->cin, cc->cout, bad);
    }
    CHECK(y.bfvalid == (c.cout % 2 == 0 && !c.sparse && c.ntap[0] * c.ntap[1] * c.ntap[2] > 0));
    /* read from the input's bf16 copy (as after another convolution): the
     * same numbers as packing the fp32 input */
    if (cc->cin % 2 == 0) {
        nn_tensor y2 = { 0 };
        CHECKF(nn_tensor_bf_fill(&x, &err) == EN_OK, "%s", err.msg);
        CHECKF(nn_conv_forward(pool, &c, &x, &y2, residual ? &res : NULL, relu, &err) == EN_OK,
               "%s", err.msg);
        CHECKF(memcmp(y.data, y2.data, nn_tensor_numel(&y) * sizeof *y.data) == 0,
               "%s conv cin %d cout %d k %dx%dx%d s %d,%d d %d,%d: input's bf16 copy gives "
               "other numbers", nn_kern_name(kern), cc->cin, cc->cout, cc->k[0], cc->k[1],
               cc->k[2], cc->s[0], cc->s[1], cc->d[0], cc->d[1]);
        nn_tensor_free(&y2);
    }
    /* fp32 output skipped (bf_only): its values are the bf16 copy's; a
     * residual held only as a bf16 copy (its fp32 values poisoned) gives
     * what the same residual rounded to bf16 in fp32 gives */
    if (residual && res.shape[NN_C] % 2 == 0) {
        nn_tensor y3 = { 0 }, y4 = { 0 }, r2 = { 0 };
        size_t nres = nn_tensor_numel(&res);
        nn_tensor_reshape(&r2, res.shape[0], res.shape[1], res.shape[2], res.shape[3],
                          res.shape[4], NULL);
        for (size_t i = 0; i < nres; i++)
            r2.data[i] = bf16_round(res.data[i]);
        CHECKF(nn_conv_forward(pool, &c, &x, &y4, &r2, relu, &err) == EN_OK, "%s", err.msg);
        CHECKF(nn_tensor_bf_fill(&res, &err) == EN_OK, "%s", err.msg);
        for (size_t i = 0; i < nres; i++)
            res.data[i] = NAN;
        res.dataold = 1;
        c.bf_only = 1;
        CHECKF(nn_conv_forward(pool, &c, &x, &y3, &res, relu, &err) == EN_OK, "%s", err.msg);
        c.bf_only = 0;
        CHECK(y3.dataold == y3.bfvalid);
        nn_tensor_data(&y3);
        {
            size_t bad = 0, n3 = nn_tensor_numel(&y3);
            for (size_t i = 0; i < n3; i++)
                bad += nn_bf16(y3.data[i]) != nn_bf16(y4.data[i]) || y3.data[i] != y3.data[i];
            CHECKF(bad == 0, "%s conv cin %d cout %d k %dx%dx%d: %zu values differ with a bf16 "
                   "residual and output", nn_kern_name(kern), cc->cin, cc->cout, cc->k[0],
                   cc->k[1], cc->k[2], bad);
        }
        nn_tensor_free(&y3);
        nn_tensor_free(&y4);
        nn_tensor_free(&r2);
    }
    free(cr.w);
    nn_conv_free(&c);
    nn_tensor_free(&x);
    nn_tensor_free(&xr);
    nn_tensor_free(&y);
    nn_tensor_free(&ref);
    nn_tensor_free(&res);
}

/* The packing and the product alone: m x k by k x n for sizes that leave a
 * partial panel of rows, a partial block of K (with zero columns in the
 * map) and a partial panel of columns; rows read through column ranges;
 * bias, residual and ReLU; a row range starting at a later panel; K blocks
 * skipped per panel (every other size). */
static void test_gemm_bf16(nn_kern kern)
{
    static const int sizes[][3] = { { 1, 2, 1 }, { 37, 70, 45 }, { 64, 96, 64 },
                                    { 70, 134, 100 }, { 8, 4, 33 }, { 300, 1100, 70 } };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int m = sizes[si][0], k = sizes[si][1], n = sizes[si][2];
        const int ks = nn_kstep(kern), kp = (k + ks - 1) / ks * ks + ks;
        const int mp = nn_mpanel(kern), m0 = m > mp ? mp : 0;
        float *w = malloc((size_t)m * k * sizeof *w), *bsrc = malloc((size_t)k * n * sizeof *bsrc);
        float *c = calloc((size_t)m * n, sizeof *c), *resv = malloc((size_t)m * n * sizeof *resv);
        float *bias = malloc((size_t)m * sizeof *bias);
        int32_t *kmap = malloc((size_t)kp * sizeof *kmap), *lo = malloc((size_t)kp * sizeof *lo);
        int32_t *hi = malloc((size_t)kp * sizeof *hi);
        const float **rows = malloc((size_t)kp * sizeof *rows);
        uint16_t *bp = malloc(nn_bpack_elems(kp, n) * sizeof *bp);
        const int64_t npan = (n + NN_NB - 1) / NN_NB, nkb = nn_kblocks(kp);
        uint8_t *live = malloc((size_t)(npan * nkb));
        nn_pack pk;
        en_err err;
        int bad = 0;

        for (int i = 0; i < m * k; i++)
            w[i] = frand();
        for (int i = 0; i < k * n; i++)
            bsrc[i] = frand() * 100.0f;
        for (int i = 0; i < m * n; i++)
            resv[i] = frand();
        for (int i = 0; i < m; i++)
            bias[i] = frand();
        /* packed column j: source column j - j / 5 (every fifth a zero
         * column), -1 past the end */
        for (int j = 0, src = 0; j < kp; j++) {
            kmap[j] = j % 5 == 4 || src >= k ? -1 : src++;
            rows[j] = kmap[j] >= 0 ? bsrc + (size_t)kmap[j] * n : NULL;
            lo[j] = j % 3 == 0 ? 3 : 0;
            hi[j] = j % 7 == 1 ? n - 5 : n;
        }
        CHECKF(nn_pack_a(kern, w, k, m, kmap, kp, &pk, &err) == EN_OK, "%s", err.msg);
        nn_bpack(bp, rows, lo, hi, kp, n);
        /* every third (panel, K block) skipped: as if its rows were zero */
        for (int64_t i = 0; i < npan * nkb; i++)
            live[i] = si % 2 == 0 || i % 3 != 1;
        {
            nn_gemm_out o = { .c = c + (size_t)m0 * n, .ldc = n, .bias = bias + m0,
                              .res = resv + (size_t)m0 * n, .ldr = n, .relu = 1 };
            nn_bmat bm = nn_bmat_packed(bp, kp);
            float *work = NULL;
            CHECK(posix_memalign((void **)&work, 64, nn_gemm_work(&pk, n) * sizeof *work + 64) == 0);
            nn_gemm_bf16(&pk, m0, m, &bm, n, &o, work, live);
            free(work);
        }
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++) {
                double want = 0;
                if (r >= m0) {
                    for (int q = 0; q < kp; q++)
                        if (kmap[q] >= 0 && j >= lo[q] && j < hi[q] &&
                            live[(j / NN_NB) * nkb + q / 32])
                            want += (double)bf16_round(w[(size_t)r * k + kmap[q]]) *
                                    bf16_round(bsrc[(size_t)kmap[q] * n + j]);
                    want += bias[r] + resv[(size_t)r * n + j];
                    want = want > 0 ? want : 0;
                }
                if (fabs(c[(size_t)r * n + j] - want) > 1e-3 * (1 + fabs(want)) && !bad++)
                    CHECKF(0, "%s gemm %dx%dx%d: C[%d][%d] = %g, want %g", nn_kern_name(kern),
                           m, k, n, r, j, c[(size_t)r * n + j], want);
            }
        nn_pack_free(&pk);
        free(w); free(bsrc); free(c); free(resv); free(bias);
        free(kmap); free(lo); free(hi); free(rows); free(bp); free(live);
    }
}

/* A 1x1 stride-1 convolution cin -> cout with random weights, on kern. */
static void conv1x1(nn_conv *c, int cin, int cout, nn_kern kern)
{
    en_err err;

    memset(c, 0, sizeof *c);
    c->cin = cin;
    c->cout = cout;
    for (int i = 0; i < 3; i++) {
        c->k[i] = c->s[i] = c->d[i] = 1;
        c->p[i] = 0;
    }
    c->w = malloc((size_t)cout * cin * sizeof *c->w);
    c->b = malloc((size_t)cout * sizeof *c->b);
    for (size_t i = 0; i < (size_t)cout * cin; i++)
        c->w[i] = frand();
    for (int i = 0; i < cout; i++)
        c->b[i] = frand();
    CHECKF(nn_conv_set_kernel(c, kern, &err) == EN_OK, "%s", err.msg);
}

/* The joined product (a bottleneck's last convolution and its projection
 * as one, nn_conv_forward_join) against the two direct loops over the
 * bf16-rounded operands, summed, with ReLU: input widths that leave a
 * partial K block in each part, one and several column panels. */
static void test_conv_join(nn_pool *pool, nn_kern kern)
{
    static const int cases[][6] = { /* cin a, cin b, cout, batch, h, w */
        { 64, 32, 48, 2, 7, 9 }, { 40, 70, 66, 1, 14, 14 }, { 2, 4, 2, 1, 3, 5 },
        { 96, 130, 34, 2, 13, 11 },
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int *q = cases[ci];
        nn_conv a, b, ar, br;
        nn_conv_join j;
        nn_tensor xa = { 0 }, xb = { 0 }, xar = { 0 }, xbr = { 0 }, ra = { 0 }, rb = { 0 };
        nn_tensor y = { 0 };
        double maxd = 0, maxv = 0;
        en_err err;
        size_t bad = 0;

        conv1x1(&a, q[0], q[2], kern);
        conv1x1(&b, q[1], q[2], kern);
        CHECKF(nn_conv_join_make(&a, &b, &j, &err) == EN_OK && j.pk.data, "%s join %d+%d->%d: "
               "not made", nn_kern_name(kern), q[0], q[1], q[2]);
        nn_tensor_reshape(&xa, q[0], q[3], 1, q[4], q[5], NULL);
        nn_tensor_reshape(&xb, q[1], q[3], 1, q[4], q[5], NULL);
        fill(&xa);
        fill(&xb);
        CHECKF(nn_tensor_bf_fill(&xa, &err) == EN_OK && nn_tensor_bf_fill(&xb, &err) == EN_OK,
               "%s", err.msg);
        CHECK(nn_conv_join_usable(&j, &xa, &xb));
        CHECKF(nn_conv_forward_join(pool, &j, &a, &xa, &xb, &y, 1, &err) == EN_OK, "%s", err.msg);
        /* the reference: each part on rounded operands, then the sum */
        ar = a;
        br = b;
        ar.w = malloc((size_t)a.cout * a.cin * sizeof *ar.w);
        br.w = malloc((size_t)b.cout * b.cin * sizeof *br.w);
        for (size_t i = 0; i < (size_t)a.cout * a.cin; i++)
            ar.w[i] = bf16_round(a.w[i]);
        for (size_t i = 0; i < (size_t)b.cout * b.cin; i++)
            br.w[i] = bf16_round(b.w[i]);
        nn_tensor_reshape(&xar, q[0], q[3], 1, q[4], q[5], NULL);
        nn_tensor_reshape(&xbr, q[1], q[3], 1, q[4], q[5], NULL);
        for (size_t i = 0; i < nn_tensor_numel(&xa); i++)
            xar.data[i] = bf16_round(xa.data[i]);
        for (size_t i = 0; i < nn_tensor_numel(&xb); i++)
            xbr.data[i] = bf16_round(xb.data[i]);
        nn_conv_reference(&ar, &xar, &ra);
        nn_conv_reference(&br, &xbr, &rb);
        nn_add(&ra, &rb);
        nn_relu(&ra);
        nn_tensor_data(&y);
        CHECK(nn_tensor_numel(&y) == nn_tensor_numel(&ra) && y.shape[NN_C] == q[2]);
        for (size_t i = 0; i < nn_tensor_numel(&ra) && i < nn_tensor_numel(&y); i++) {
            double dd = fabs((double)y.data[i] - ra.data[i]);
            if (dd > maxd) maxd = dd;
            if (fabs(ra.data[i]) > maxv) maxv = fabs(ra.data[i]);
        }
        CHECKF(maxd <= 1e-4 * (maxv > 1 ? maxv : 1), "%s join %d+%d->%d on %dx%dx%d: max diff "
               "%g (max %g)", nn_kern_name(kern), q[0], q[1], q[2], q[3], q[4], q[5], maxd, maxv);
        /* its bf16 copy is the output rounded */
        CHECK(y.bfvalid);
        for (size_t ch = 0; y.bfvalid && ch < (size_t)q[2]; ch++)
            for (size_t c = 0; c < (size_t)nn_tensor_cols(&y); c++)
                bad += y.bf[((ch / 2) * (size_t)y.bfld + c) * 2 + ch % 2] !=
                       nn_bf16(y.data[ch * (size_t)y.stride[NN_C] + c]);
        CHECKF(bad == 0, "%s join %d+%d->%d: %zu values of the bf16 copy differ",
               nn_kern_name(kern), q[0], q[1], q[2], bad);
        free(ar.w);
        free(br.w);
        nn_conv_join_free(&j);
        nn_conv_free(&a);
        nn_conv_free(&b);
        nn_tensor_free(&xa);
        nn_tensor_free(&xb);
        nn_tensor_free(&xar);
        nn_tensor_free(&xbr);
        nn_tensor_free(&ra);
        nn_tensor_free(&rb);
        nn_tensor_free(&y);
    }
}

static const conv_case bf16_extra[] = {
    /* several AMX K blocks, rows and columns past one panel */
    { 40, 70, 2, 1, 9, 11, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0 },
    { 37, 40, 1, 1, 12, 12, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 0 },
    { 33, 45, 1, 6, 6, 6, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}, {1, 1, 1}, 0 },
    { 36, 40, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 12, 12}, {1, 12, 12}, 0 },
    { 48, 64, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 2, 2}, {1, 2, 2}, 0 },
};

static void test_conv(nn_pool *pool)
{
    static const conv_case cases[] = {
        /* stem-like 7x7/2 pad 3 */
        { 3, 8, 2, 1, 20, 18, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}, {1, 1, 1}, 0 },
        /* 3x3 dilation 2 / 4 like layer3/4 */
        { 5, 6, 3, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 2, 2}, {1, 2, 2}, 0 },
        { 5, 6, 1, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 4, 4}, {1, 4, 4}, 0 },
        /* ASPP rates: 12 keeps all taps, 24 and 36 only the centre (1x1 path) */
        { 4, 3, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 12, 12}, {1, 12, 12}, 0 },
        { 4, 3, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 24, 24}, {1, 24, 24}, 0 },
        { 4, 3, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 36, 36}, {1, 36, 36}, 0 },
        /* rate 13 on 14: the corner taps only, odd sizes */
        { 2, 3, 1, 1, 14, 13, {1, 3, 3}, {1, 1, 1}, {0, 13, 13}, {1, 13, 13}, 0 },
        /* tap by tap on the own kernel: no tap covers every output (padding
         * 11, rate 12: 12x12 out), and more input channels than a K slice
         * with output channels over several row panels per thread */
        { 20, 30, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 11, 11}, {1, 12, 12}, PATH_TAPS },
        { 600, 40, 1, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 12, 12}, {1, 12, 12}, PATH_TAPS },
        /* Winograd would pay, but its transformed weights (36 x 700 x 700
         * floats, 67 MB) are over NN_WINO_MAX_BYTES: tap by tap instead */
        { 700, 700, 1, 1, 4, 4, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_NO_WINO },
        /* 1x1 stride 1 (no im2col) and stride 2 (downsample) */
        { 7, 9, 2, 1, 9, 11, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0 },
        { 7, 9, 2, 1, 9, 11, {1, 1, 1}, {1, 2, 2}, {0, 0, 0}, {1, 1, 1}, 0 },
        /* 3x3 stride 2 pad 1 */
        { 3, 4, 2, 1, 15, 16, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 0 },
        /* R(2+1)D: spatial (1,3,3)/(1,2,2), temporal (3,1,1)/(2,1,1), 1x1x1/2 */
        { 3, 5, 1, 6, 10, 10, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 0 },
        { 4, 5, 2, 7, 5, 6, {3, 1, 1}, {2, 1, 1}, {1, 0, 0}, {1, 1, 1}, 0 },
        { 4, 5, 1, 7, 5, 6, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}, {1, 1, 1}, 0 },
        { 4, 5, 1, 6, 6, 6, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, 0 },
        /* temporal-only, stride 1 (frame-shift products): batch of clips,
         * no padding with dilation, and padding wider than the kernel */
        { 4, 5, 2, 7, 5, 6, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}, {1, 1, 1}, 0 },
        { 3, 4, 3, 6, 4, 4, {3, 1, 1}, {1, 1, 1}, {0, 0, 0}, {2, 1, 1}, 0 },
        { 3, 4, 2, 5, 3, 3, {3, 1, 1}, {1, 1, 1}, {2, 0, 0}, {1, 1, 1}, 0 },
        { 6, 4, 2, 1, 3, 3, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}, {1, 1, 1}, 0 },
        /* dead taps but still im2col (the reduced-weights copy): a 1-row
         * image, and a 3x3x3 kernel on single frames */
        { 4, 5, 2, 1, 1, 14, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, 0 },
        { 3, 4, 2, 1, 20, 20, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 0 },
        /* a full 3x3x3 with everything */
        { 3, 4, 2, 5, 7, 6, {3, 3, 3}, {2, 1, 2}, {1, 2, 1}, {2, 2, 1}, 0 },
        /* enough columns for several tiles per thread (Winograd) */
        { 16, 8, 3, 1, 56, 56, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        /* Winograd F(4x4,3x3): partial tiles (odd sizes), the dilated
         * sub-grids of layers 3/4, several frames of a clip, unequal
         * dilations, padding other than the dilation, three rows */
        { 9, 10, 2, 1, 13, 11, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        { 12, 8, 3, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 2, 2}, {1, 2, 2}, PATH_WINO },
        { 8, 12, 2, 1, 14, 14, {1, 3, 3}, {1, 1, 1}, {0, 4, 4}, {1, 4, 4}, PATH_WINO },
        { 8, 9, 2, 3, 7, 7, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        { 8, 8, 1, 1, 17, 19, {1, 3, 3}, {1, 1, 1}, {0, 1, 3}, {1, 1, 3}, PATH_WINO },
        { 10, 8, 2, 1, 18, 15, {1, 3, 3}, {1, 1, 1}, {0, 1, 0}, {1, 2, 1}, PATH_WINO },
        { 8, 8, 2, 1, 3, 30, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        /* large enough for the planes to be cut into several chunks */
        { 16, 112, 24, 1, 30, 30, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        /* R(2+1)D's first layer in small (a last row panel of one for the
         * fp32 kernel), and more input channels than its K slice */
        { 24, 37, 2, 3, 28, 28, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        { 600, 14, 1, 2, 12, 20, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}, PATH_WINO },
        /* panels the threads cannot share evenly, split by rows (the own
         * kernel, at least two row panels per thread): 1x1 over 130
         * columns (5 panels for 3 threads, the last of 2 columns), with
         * and without a residual; im2col over 128; and 2 panels of 49
         * columns, fewer than the threads */
        { 40, 90, 1, 1, 10, 13, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0 },
        { 40, 90, 1, 1, 10, 13, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0 },
        { 6, 100, 2, 1, 15, 16, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 0 },
        { 8, 90, 1, 1, 7, 7, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_conv_case(&cases[i], NULL, 0, 0, NULL);
        run_conv_case(&cases[i], pool, (int)(i & 1), 1, NULL);
    }
    /* Winograd's phased and fused paths, each forced */
    for (int mode = 0; mode < 2; mode++) {
        setenv("EN_NN_WINO_FUSED", mode ? "1" : "0", 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            if (cases[i].path == PATH_WINO) {
                run_conv_case(&cases[i], NULL, (int)(i & 1), 0, NULL);
                run_conv_case(&cases[i], pool, (int)!(i & 1), 1, NULL);
            }
    }
    /* the 16-tile transforms (AVX-512) against the 4-float ones, bit for
     * bit: the same formulas, lane for lane, where partial tiles use all 6
     * points (EN_NN_WINO_PARTIAL=0; with fewer, the cases above check
     * them against the direct loop); both paths, with and without a
     * residual */
    if (nn_wino16_usable())
        for (int mode = 0; mode < 4; mode++) {
            setenv("EN_NN_WINO_FUSED", mode & 1 ? "1" : "0", 1);
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                nn_tensor wide = { 0 }, narrow = { 0 };
                const unsigned seed = rng;
                if (cases[i].path != PATH_WINO)
                    continue;
                setenv("EN_NN_WINO_PARTIAL", "0", 1);
                run_conv_case(&cases[i], pool, mode >> 1, 1, &wide);
                unsetenv("EN_NN_WINO_PARTIAL");
                rng = seed;
                setenv("EN_NN_WINO16", "0", 1);
                run_conv_case(&cases[i], pool, mode >> 1, 1, &narrow);
                unsetenv("EN_NN_WINO16");
                CHECKF(nn_tensor_numel(&wide) == nn_tensor_numel(&narrow) &&
                       memcmp(wide.data, narrow.data,
                              nn_tensor_numel(&wide) * sizeof *wide.data) == 0,
                       "Winograd cin %d %dx%d d %d: the 16-tile transforms differ from "
                       "the 4-float ones", cases[i].cin, cases[i].h, cases[i].w,
                       cases[i].d[1]);
                nn_tensor_free(&wide);
                nn_tensor_free(&narrow);
            }
        }
    else
        fprintf(stderr, "note: this CPU has no AVX-512: the 16-tile Winograd transforms' "
                        "tests are left out\n");
    unsetenv("EN_NN_WINO_FUSED");
    /* the same through OpenBLAS, where the own kernel would take them (as
     * on a CPU without AVX-512) */
    if (nn_sgemm_packed_usable()) {
        setenv("EN_NN_FP32_KERNEL", "0", 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_conv_case(&cases[i], pool, (int)!(i & 1), (int)(i & 1), NULL);
        unsetenv("EN_NN_FP32_KERNEL");
    }
    if (nn_sgemm_packed_usable())
        test_sgemm_packed();
    else
        fprintf(stderr, "note: this CPU has no AVX-512: the fp32 kernel's tests are left out\n");
    for (nn_kern kern = NN_KERN_AVX512BF16; kern <= NN_KERN_AMX; kern++) {
        if (!nn_kern_usable(kern)) {
            fprintf(stderr, "note: this CPU has no %s kernel: its tests are left out\n",
                    nn_kern_name(kern));
            continue;
        }
        test_gemm_bf16(kern);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            run_conv_case_bf16(&cases[i], NULL, 0, 0, kern);
            run_conv_case_bf16(&cases[i], pool, (int)(i & 1), 1, kern);
        }
        for (size_t i = 0; i < sizeof bf16_extra / sizeof bf16_extra[0]; i++) {
            run_conv_case_bf16(&bf16_extra[i], NULL, 1, 1, kern);
            run_conv_case_bf16(&bf16_extra[i], pool, 0, 0, kern);
        }
        test_conv_join(NULL, kern);
        test_conv_join(pool, kern);
    }
}

static void test_pool_upsample(nn_pool *pool)
{
    nn_tensor x = { 0 }, y = { 0 };
    en_err err;
    static const float in[4] = { 1, 2, 3, 4 };
    /* torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear",
     * align_corners=False) for x = [[1, 2], [3, 4]] */
    static const float up[16] = {
        1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
        2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f };
    /* 3 -> 2 (downsampling): src = 1.5*(o+0.5)-0.5 = 0.25, 1.75 */
    static const float in3[3] = { 0, 4, 8 };

    nn_tensor_reshape(&x, 1, 1, 1, 2, 2, NULL);
    memcpy(x.data, in, sizeof in);
    CHECK(nn_upsample_bilinear(pool, &x, &y, 4, 4, &err) == EN_OK);
    for (int i = 0; i < 16; i++)
        CHECKF(fabsf(y.data[i] - up[i]) < 1e-6f, "upsample[%d] = %g, want %g", i, y.data[i], up[i]);
    nn_tensor_reshape(&x, 1, 1, 1, 1, 3, NULL);
    memcpy(x.data, in3, sizeof in3);
    CHECK(nn_upsample_bilinear(pool, &x, &y, 1, 2, &err) == EN_OK);
    CHECKF(fabsf(y.data[0] - 1.0f) < 1e-6f && fabsf(y.data[1] - 7.0f) < 1e-6f,
           "downsample: %g %g", y.data[0], y.data[1]);

    /* 3x3/2 pad 1 max pooling of a 4x4 ramp, and negative values (padding
     * is -inf, not 0) */
    nn_tensor_reshape(&x, 2, 1, 1, 4, 4, NULL);
    for (int i = 0; i < 32; i++)
        x.data[i] = i < 16 ? (float)i : -(float)(i - 15);
    CHECK(nn_maxpool2d(pool, &x, &y, 3, 2, 1, &err) == EN_OK);
    CHECK(y.shape[NN_H] == 2 && y.shape[NN_W] == 2);
    CHECK(y.data[0] == 5 && y.data[1] == 7 && y.data[2] == 13 && y.data[3] == 15);
    CHECK(y.data[4] == -1 && y.data[5] == -2 && y.data[6] == -5 && y.data[7] == -6);

    CHECK(nn_avgpool_global(&x, &y, &err) == EN_OK);
    CHECK(fabsf(y.data[0] - 7.5f) < 1e-6f && fabsf(y.data[1] + 8.5f) < 1e-6f);
    nn_tensor_free(&x);
    nn_tensor_free(&y);
}

static void test_json(void)
{
    static const char *bad[] = {
        "", "{", "}", "{\"a\":}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "01", "-", "1.", "1e",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "\"\\u0000\"",
        "tru", "nul", "{\"a\":1}x", "\"a\tb\"", "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]",
        "1e999", "{1:2}", "[\"\\",
    };
    static const char *good[] = {
        "{}", "[]", " {\"a\" : [1, -2.5e3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\"]} ",
        "{\"__metadata__\":{\"k\":\"v\"},\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
    };
    en_err err;
    nj_val v;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = nj_parse(bad[i], strlen(bad[i]), &v, &err);
        CHECKF(rc == EN_EFORMAT, "accepted bad JSON #%zu '%s'", i, bad[i]);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int rc = nj_parse(good[i], strlen(good[i]), &v, &err);
        CHECKF(rc == EN_OK, "rejected good JSON #%zu: %s", i, err.msg);
        if (rc == EN_OK) {
            if (i == 2) {
                const nj_val *a = nj_get(&v, "a");
                CHECK(a && a->type == NJ_ARR && a->n == 6 && a->items[1].num == -2500.0);
                CHECK(a && strcmp(a->items[5].str, "x\n\xc3\xa9\xf0\x9f\x98\x80") == 0);
            }
            nj_free(&v);
        }
    }
    /* not NUL-terminated: the parser must stop at len */
    {
        char buf[4] = { '[', '1', ']', '1' };
        CHECK(nj_parse(buf, 3, &v, &err) == EN_OK);
        nj_free(&v);
    }
}

int main(void)
{
    nn_pool *pool = NULL;
    en_err err;

    CHECK(nn_pool_create(3, &pool, &err) == EN_OK);
    test_conv(pool);
    test_pool_upsample(pool);
    test_pool_upsample(NULL);
    test_json();
    nn_pool_free(pool);
    TST_DONE();
}

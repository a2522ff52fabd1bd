/*
 * conv.c - 2-D and 3-D convolution (stride, padding, dilation) lowered to
 * cblas_sgemm, with bias, residual add and ReLU fused into one pass over
 * each output tile.
 *
 * The output columns (B*T*H*W positions) are cut into tiles; each thread
 * builds the im2col matrix of its tile in its own scratch buffer, multiplies
 * it by the weights with a single-threaded sgemm, and finishes the tile
 * while it is still in cache.  Memory for im2col is bounded by the tile, not
 * by the layer.  A 1x1 convolution with stride 1 skips im2col: the input
 * itself is the right-hand matrix.
 *
 * Exact savings: a tap that, for this input size, reads only padding for
 * every output position contributes nothing, so it is dropped from the
 * weights and from im2col.  ASPP's 3x3 convolutions with dilation 24 and 36
 * on a 14x14 map keep only their centre tap, become 1x1 convolutions with
 * the centre weights (read in place: the weights are tap-major), and skip
 * im2col too.  When many products of the live taps still read padding, or
 * the kernel is temporal only, the planner hands the convolution to
 * conv_taps.c, which computes it tap by tap.  A stride-1 3x3 convolution
 * goes to conv_wino.c (Winograd F(4x4,3x3)) when its 36 products per 4x4
 * tile are well under the products of the path it would otherwise take.
 *
 * With bf16 products such a convolution instead takes its output columns
 * region by region: the output splits, along each axis, where the set of
 * taps reading inside the input changes (ASPP rate 12 on 14x14: rows 0-1,
 * 2-11, 12-13, and the same for columns); taken in that order, most
 * 32-column panels of the product lie in one region, and their packing and
 * products skip the K blocks of the taps that read only padding there.  The
 * epilogue writes each column back where it belongs.
 */
#include "conv_int.h"
#include "gemm_int.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of im2col scratch a tile aims for: large enough for an efficient
 * sgemm, small enough to stay in the L2/L3 cache between im2col and sgemm. */
#define NN_TILE_BYTES (3u << 20)
#define NN_TILE_MIN_COLS 64
/* Winograd is taken when its products are under this share of the other
 * path's (the transforms cost the rest; measured) */
#define NN_WINO_GAIN 0.75
/* ... and when its transformed weights, 36 points x cout x cin (four times
 * the weights), stay under this: R(2+1)D's layer 4 would hold 85 MB for
 * each of its three spatial convolutions, read for 16 tiles a clip.  Dense
 * there, EF's peak RSS in fp32 413 MB against 627, its time 2-3 % longer
 * (403-445 against 401-435 ms/clip, 6 alternating runs); DeepLabV3's
 * largest, 38 MB, stay. */
#define NN_WINO_MAX_BYTES (64u << 20)
/* bf16 products take the columns region by region when the live taps'
 * real products are under this share of the dense ones (measured) */
#define NN_BF16_REGIONS 0.75

void nn_conv_free(nn_conv *c)
{
    free(c->w);
    free(c->b);
    free(c->wr);
    free(c->wu);
    free(c->wp);
    free(c->cmap);
    nn_conv_bf16_free(c);
    memset(c, 0, sizeof *c);
}

int64_t nn_conv_out(const nn_conv *c, int axis, int64_t in)
{
    int64_t span = (int64_t)c->d[axis] * (c->k[axis] - 1) + 1;
    int64_t o = (in + 2 * c->p[axis] - span);
    return o < 0 ? 0 : o / c->s[axis] + 1;
}

/* Which taps along one axis ever read inside the input. */
static int live_taps(const nn_conv *c, int axis, int64_t in, int64_t out,
                     int *taps)
{
    int n = 0;
    for (int j = 0; j < c->k[axis]; j++) {
        int64_t off = (int64_t)j * c->d[axis] - c->p[axis];
        for (int64_t o = 0; o < out; o++) {
            int64_t i = o * c->s[axis] + off;
            if (i >= 0 && i < in) {
                taps[n++] = j;
                break;
            }
        }
    }
    return n;
}

int nn_conv_centre_only(const nn_conv *c, const int64_t in[3])
{
    for (int a = 0; a < 3; a++) {
        int taps[16];
        const int64_t out = nn_conv_out(c, a, in[a]), mid = (c->k[a] - 1) / 2;
        if (c->k[a] > 16 || c->k[a] % 2 == 0 || c->s[a] != 1 || out != in[a] ||
            live_taps(c, a, in[a], out, taps) != 1 || taps[0] != mid ||
            mid * c->d[a] != c->p[a])
            return 0;
    }
    return 1;
}

/* c->w again from the packed whole matrix, where plan_taps dropped it. */
static int restore_w(nn_conv *c, en_err *err)
{
    const int64_t kfull = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];
    float *w;

    if (c->w || !c->wp_full)
        return EN_OK;
    if (!(w = malloc((size_t)c->cout * (size_t)kfull * sizeof *w)))
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for weights");
    nn_sgemm_unpack(c->wp, c->cout, (int)kfull, w);
    c->w = w;
    return EN_OK;
}

/* Prepares the (possibly reduced) weights for this input size. */
static int plan_taps(nn_conv *c, const int64_t in[3], const int64_t out[3],
                     en_err *err)
{
    int rc;
    int all = 1, kk;
    size_t kin, kred;
    float *wr;

    if (c->cache_in[0] == in[0] && c->cache_in[1] == in[1] &&
        c->cache_in[2] == in[2])
        return EN_OK;
    for (int a = 0; a < 3; a++) {
        if (c->k[a] > 16)
            return en_err_set(err, EN_EUNSUPPORTED, "nn: kernel extent %d > 16", c->k[a]);
        c->ntap[a] = live_taps(c, a, in[a], out[a], c->tap[a]);
        if (c->ntap[a] != c->k[a])
            all = 0;
    }
    if ((rc = restore_w(c, err)) != EN_OK)
        return rc;
    free(c->wr);
    c->wr = NULL;
    free(c->wp);
    c->wp = NULL;
    c->wp_full = 0;
    c->sparse = c->tshift = c->wino = c->regions = 0;
    c->cmap_b = 0;
    if (c->s[0] == 1 && c->s[1] == 1 && c->s[2] == 1 &&
        c->ntap[0] * c->ntap[1] * c->ntap[2] > 1) {
        /* positions each live tap really reads, against the dense count */
        double dense = (double)c->ntap[0] * c->ntap[1] * c->ntap[2] *
                       (double)out[0] * (double)out[1] * (double)out[2], sparse = 1.0;
        for (int a = 0; a < 3; a++) {
            double sum = 0;
            for (int i = 0; i < c->ntap[a]; i++) {
                int64_t lo, hi;
                nn_conv_tap_range(c, a, c->tap[a][i], in[a], out[a], &lo, &hi);
                sum += (double)(hi - lo);
            }
            sparse *= sum;
        }
        /* the per-tap gathers and scatters cost about what the skipped
         * products of a dense im2col would below ~85 % (measured); bf16
         * products skip them by taking the columns region by region */
        if (c->kern == NN_KERN_FP32 && sparse < 0.85 * dense)
            c->sparse = 1;
        if (c->kern != NN_KERN_FP32 && sparse < NN_BF16_REGIONS * dense)
            c->regions = 1;
        /* Winograd: 36 products per 4x4 tile against the live products of
         * the tap-by-tap or dense path (per input and output channel); fp32
         * only (conv_bf16.c says why) */
        if (c->kern == NN_KERN_FP32 && nn_conv_wino_eligible(c, in, out) &&
            36.0 * sizeof(float) * (double)c->cin * (double)c->cout <= NN_WINO_MAX_BYTES &&
            36.0 * (double)nn_conv_wino_tiles(c, out) * (double)out[0] <
            NN_WINO_GAIN * (c->sparse ? sparse : dense)) {
            rc = nn_conv_wino_weights(c, err);
            if (rc != EN_OK)
                return rc;
            c->wino = 1;
            c->sparse = 0;
        }
    }
    c->tshift = !c->sparse && !c->wino && c->k[1] == 1 && c->k[2] == 1 && c->p[1] == 0 &&
        c->p[2] == 0 && c->s[0] == 1 && c->s[1] == 1 && c->s[2] == 1 && c->ntap[0] > 1;
    kred = (size_t)c->ntap[0] * c->ntap[1] * c->ntap[2];
    if (c->kern != NN_KERN_FP32) {
        rc = nn_conv_bf16_plan(c, all, err);
        if (rc != EN_OK)
            return rc;
    } else if (!all && !c->sparse && !c->tshift && !c->wino && kred > 1) {
        /* several but not all taps live, through im2col: the live taps'
         * blocks side by side (tap-by-tap paths and a single live tap read
         * their blocks in place) */
        kin = (size_t)c->k[0] * c->k[1] * c->k[2];
        wr = malloc((size_t)c->cout * c->cin * kred * sizeof *wr);
        if (!wr)
            return en_err_set(err, EN_ENOMEM, "nn: out of memory");
        for (size_t o = 0; o < (size_t)c->cout; o++) {
            kk = 0;
            for (int a = 0; a < c->ntap[0]; a++)
                for (int b = 0; b < c->ntap[1]; b++)
                    for (int d = 0; d < c->ntap[2]; d++, kk++)
                        memcpy(wr + (o * kred + (size_t)kk) * (size_t)c->cin,
                               c->w + (o * kin + ((size_t)c->tap[0][a] * c->k[1] + c->tap[1][b]) *
                                       c->k[2] + c->tap[2][d]) * (size_t)c->cin,
                               (size_t)c->cin * sizeof *wr);
        }
        c->wr = wr;
    }
    if (c->kern == NN_KERN_FP32 && !c->wino && nn_sgemm_packed_usable()) {
        /* the matrix nn_conv_forward multiplies (j.w, j.lda, j.K there);
         * the tap-by-tap path takes each live tap's block of it */
        const int64_t kfull = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];
        const float *w = c->w;
        int64_t lda = kfull, K = kfull;
        if (c->tshift) {
            /* every temporal tap's block: a frame-shift product takes its
             * columns of the packed matrix */
        } else if (c->wr) {
            w = c->wr;
            lda = K = (int64_t)kred * c->cin;
        } else if (kred == 1) {
            w = c->w + nn_conv_tap_block(c, 0);
            K = c->cin;
        }
        if (kred > 0 && K <= INT32_MAX / NN_SGEMM_MR) {
            if (!(c->wp = malloc(nn_sgemm_pack_size(c->cout, (int)K) * sizeof *c->wp)))
                return en_err_set(err, EN_ENOMEM, "nn: out of memory for packed weights");
            nn_sgemm_pack(w, lda, c->cout, (int)K, c->wp);
            c->wp_k = K;
            if (w == c->w && lda == kfull && K == kfull) {
                /* the packed matrix is the whole weights: one copy in
                 * memory (restore_w makes the other again if needed) */
                free(c->w);
                c->w = NULL;
                c->wp_full = 1;
            }
        }
    }
    memcpy(c->cache_in, in, sizeof c->cache_in);
    return EN_OK;
}


/* One output row segment of a tile: (b, t, y) fixed, x in [x0, x0+len). */
typedef struct seg {
    int64_t bt;           /* b * T_in index base (b * Tin) */
    int64_t ot, oy, ox0, len, dst;
} seg;

/* Fills cols (K x ncol) for output columns [j0, j0+ncol). */
static void im2col_tile(const conv_job *j, int64_t j0, int64_t ncol,
                        float *cols, seg *segs)
{
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    const int64_t To = j->out[0], Ho = j->out[1], Wo = j->out[2];
    const int64_t Ti = j->in[0], Hi = j->in[1], Wi = j->in[2];
    const int64_t sw = c->s[2];
    int64_t nseg = 0, col = j0;

    while (col < j0 + ncol) {
        int64_t ox = col % Wo, rest = col / Wo;
        int64_t oy = rest % Ho, ot = (rest / Ho) % To, b = rest / (Ho * To);
        int64_t len = Wo - ox;
        if (len > j0 + ncol - col)
            len = j0 + ncol - col;
        segs[nseg].bt = b * Ti;
        segs[nseg].ot = ot;
        segs[nseg].oy = oy;
        segs[nseg].ox0 = ox;
        segs[nseg].len = len;
        segs[nseg].dst = col - j0;
        nseg++;
        col += len;
    }

    for (int64_t ci = 0; ci < c->cin; ci++) {
        const float *xc = x->data + ci * x->stride[NN_C];
        for (int a = 0; a < c->ntap[0]; a++) {
            int64_t offt = (int64_t)c->tap[0][a] * c->d[0] - c->p[0];
            for (int bb = 0; bb < c->ntap[1]; bb++) {
                int64_t offy = (int64_t)c->tap[1][bb] * c->d[1] - c->p[1];
                for (int d = 0; d < c->ntap[2]; d++) {
                    int64_t offx = (int64_t)c->tap[2][d] * c->d[2] - c->p[2];
                    /* row order matches the tap-major weights: (tap, ci) */
                    int64_t r = (((int64_t)a * c->ntap[1] + bb) * c->ntap[2] + d) * c->cin + ci;
                    float *dst = cols + r * ncol;
                    /* valid ox: 0 <= ox*sw + offx < Wi */
                    int64_t lo = offx < 0 ? (-offx + sw - 1) / sw : 0;
                    int64_t hi = Wi - offx > 0 ? (Wi - offx + sw - 1) / sw : 0;
                    for (int64_t s = 0; s < nseg; s++) {
                        const seg *g = &segs[s];
                        int64_t it = g->ot * c->s[0] + offt;
                        int64_t iy = g->oy * c->s[1] + offy;
                        float *o = dst + g->dst;
                        int64_t a0 = g->ox0, a1 = g->ox0 + g->len;
                        int64_t v0 = a0 > lo ? a0 : lo, v1 = a1 < hi ? a1 : hi;
                        if (it < 0 || it >= Ti || iy < 0 || iy >= Hi || v0 >= v1) {
                            memset(o, 0, (size_t)g->len * sizeof *o);
                            continue;
                        }
                        const float *row = xc + ((g->bt + it) * Hi + iy) * Wi + offx;
                        if (v0 > a0)
                            memset(o, 0, (size_t)(v0 - a0) * sizeof *o);
                        if (sw == 1) {
                            memcpy(o + (v0 - a0), row + v0, (size_t)(v1 - v0) * sizeof *o);
                        } else {
                            for (int64_t ox = v0; ox < v1; ox++)
                                o[ox - a0] = row[ox * sw];
                        }
                        if (a1 > v1)
                            memset(o + (v1 - a0), 0, (size_t)(a1 - v1) * sizeof *o);
                    }
                }
            }
        }
    }
}

/* Splits [0, out) along one axis where the set of live taps reading
 * inside the input changes: bounds[0] = 0 < ... < bounds[n] = out. */
static int axis_bounds(const nn_conv *c, int axis, int64_t in, int64_t out, int64_t *bounds)
{
    int n = 0;
    bounds[n++] = 0;
    bounds[n++] = out;
    for (int i = 0; i < c->ntap[axis]; i++) {
        int64_t e[2];
        nn_conv_tap_range(c, axis, c->tap[axis][i], in, out, &e[0], &e[1]);
        for (int q = 0; q < 2; q++) {
            int at = 0;
            while (at < n && bounds[at] < e[q])
                at++;
            if (e[q] <= 0 || e[q] >= out || bounds[at] == e[q])
                continue;
            memmove(bounds + at + 1, bounds + at, (size_t)(n - at) * sizeof *bounds);
            bounds[at] = e[q];
            n++;
        }
    }
    return n - 1;
}

/* c->cmap for a batch of B: the output columns region by region (the
 * product of each axis's intervals), within a region image by image and
 * row by row, so that most 32-column panels lie in one region and read
 * only its taps. */
static int region_order(nn_conv *c, int64_t B, const int64_t in[3], const int64_t out[3],
                        en_err *err)
{
    int64_t bt[34], by[34], bx[34];
    int nt, ny, nx;
    int32_t *m;
    int64_t p = 0;

    if (c->cmap_b == B)
        return EN_OK;
    if (B * out[0] * out[1] * out[2] > INT32_MAX)
        return en_err_set(err, EN_ELIMIT, "nn: layer too large");
    if (!(m = realloc(c->cmap, (size_t)(B * out[0] * out[1] * out[2]) * sizeof *m)))
        return en_err_set(err, EN_ENOMEM, "nn: out of memory");
    c->cmap = m;
    nt = axis_bounds(c, 0, in[0], out[0], bt);
    ny = axis_bounds(c, 1, in[1], out[1], by);
    nx = axis_bounds(c, 2, in[2], out[2], bx);
    for (int rt = 0; rt < nt; rt++)
    for (int ry = 0; ry < ny; ry++)
    for (int rx = 0; rx < nx; rx++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = bt[rt]; t < bt[rt + 1]; t++)
                for (int64_t y = by[ry]; y < by[ry + 1]; y++)
                    for (int64_t x = bx[rx]; x < bx[rx + 1]; x++)
                        m[p++] = (int32_t)(((b * out[0] + t) * out[1] + y) * out[2] + x);
    c->cmap_b = B;
    return EN_OK;
}

/* Offsets of live tap lt (T slowest) along the three axes. */
static void tap_offsets(const nn_conv *c, int lt, int64_t off[3])
{
    off[0] = (int64_t)c->tap[0][lt / (c->ntap[1] * c->ntap[2])] * c->d[0] - c->p[0];
    off[1] = (int64_t)c->tap[1][lt / c->ntap[2] % c->ntap[1]] * c->d[1] - c->p[1];
    off[2] = (int64_t)c->tap[2][lt % c->ntap[2]] * c->d[2] - c->p[2];
}

/* Live K blocks of a panel whose live taps are tlive: a block holds rows
 * of taps [32 kb / cp, (32 kb + 31) / cp] (the column map is tap-major,
 * cin padded to pairs: conv_bf16.c); places them in slot (or only counts
 * them when slot is NULL). */
static int32_t panel_slots(const conv_job *j, const uint8_t *tlive, int32_t *slot)
{
    const int ntaps = j->c->ntap[0] * j->c->ntap[1] * j->c->ntap[2];
    const int64_t nkb = nn_kblocks(j->pk->k), cp = (j->c->cin + 1) / 2 * 2;
    int32_t used = 0;

    for (int64_t kb = 0; kb < nkb; kb++) {
        int64_t t1 = (32 * kb + 31) / cp;
        int on = 0;
        for (int64_t t = 32 * kb / cp; t <= t1 && t < ntaps && !on; t++)
            on = tlive[t];
        if (slot)
            slot[kb] = on ? used : -1;
        used += on;
    }
    return used;
}

/* Rows of B a panel stores at most when the columns go region by region:
 * per 32-column panel, the live K blocks of the taps that read inside for
 * any of its columns. */
static int region_kpack(const conv_job *j)
{
    const nn_conv *c = j->c;
    const int ntaps = c->ntap[0] * c->ntap[1] * c->ntap[2];
    const int64_t To = j->out[0], Ho = j->out[1], Wo = j->out[2];
    uint8_t tlive[16 * 16 * 16];
    int32_t most = 0;

    for (int64_t p0 = 0; p0 < j->ncols; p0 += NN_NB) {
        const int64_t p1 = j->ncols - p0 < NN_NB ? j->ncols : p0 + NN_NB;
        int32_t used;
        for (int lt = 0; lt < ntaps; lt++) {
            int64_t off[3];
            tap_offsets(c, lt, off);
            tlive[lt] = 0;
            for (int64_t q = p0; q < p1 && !tlive[lt]; q++) {
                const int64_t col = j->cmap[q], ox = col % Wo, oy = col / Wo % Ho;
                const int64_t ot = col / (Wo * Ho) % To;
                tlive[lt] = ot + off[0] >= 0 && ot + off[0] < j->in[0] && oy + off[1] >= 0 &&
                            oy + off[1] < j->in[1] && ox + off[2] >= 0 && ox + off[2] < j->in[2];
            }
        }
        used = panel_slots(j, tlive, NULL);
        most = used > most ? used : most;
    }
    return (int)most * 32;
}

static void conv_tile(void *arg, int task, int thread);
static size_t implicit_need(const conv_job *j);
static size_t gather_need(const conv_job *j);

/* EN_NN_PROFILE=1: one line per convolution on stderr (docs/performance.md). */
int nn_conv_profile(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("EN_NN_PROFILE");
        v = e && *e && *e != '0';
    }
    return v;
}

int nn_conv_forward(nn_pool *pool, nn_conv *c, const nn_tensor *x,
                    nn_tensor *y, const nn_tensor *res, int relu, en_err *err)
{
    conv_job j;
    int64_t in[3], out[3], target;
    int nth = nn_pool_size(pool), rc;

    if (x->shape[NN_C] != c->cin)
        return en_err_set(err, EN_EINVAL, "nn: convolution expects %d input channels, got %lld",
                          c->cin, (long long)x->shape[NN_C]);
    for (int a = 0; a < 3; a++) {
        in[a] = x->shape[NN_T + a];
        out[a] = nn_conv_out(c, a, in[a]);
    }
    for (int a = 0; a < 3; a++)
        if (out[a] <= 0)
            return en_err_set(err, EN_EINVAL, "nn: input %lldx%lldx%lld too small for a %dx%dx%d kernel",
                              (long long)in[0], (long long)in[1], (long long)in[2],
                              c->k[0], c->k[1], c->k[2]);
    if (y->data && y->cap == 0) {
        /* a view (a channel slice of a concatenation): shape must match */
        if (y->shape[NN_C] != c->cout || y->shape[NN_B] != x->shape[NN_B] ||
            y->shape[NN_T] != out[0] || y->shape[NN_H] != out[1] || y->shape[NN_W] != out[2])
            return en_err_set(err, EN_EINVAL, "nn: convolution output view has the wrong shape");
    } else if ((rc = nn_tensor_reshape(y, c->cout, x->shape[NN_B], out[0], out[1],
                                       out[2], err)) != EN_OK) {
        return rc;
    }
    if ((rc = plan_taps(c, in, out, err)) != EN_OK)
        return rc;
    if (c->sparse || c->wino || c->kern == NN_KERN_FP32) {
        /* these read fp32 only */
        nn_tensor_data(x);
        if (res)
            nn_tensor_data(res);
    }
    if (c->sparse) {
        struct timespec t0, t1;
        if (nn_conv_profile())
            clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = nn_conv_sparse(pool, c, x, y, res, relu, in, out, err);
        if (nn_conv_profile()) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            fprintf(stderr, "nn-profile conv %4d->%-4d k%dx%dx%d d%d,%d taps %d in %lldx%lldx%lld "
                    "tap by tap %7.2f ms\n", c->cin, c->cout, c->k[0], c->k[1], c->k[2], c->d[0],
                    c->d[1], c->ntap[0] * c->ntap[1] * c->ntap[2], (long long)in[0],
                    (long long)in[1], (long long)in[2],
                    (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6);
        }
        return rc;
    }

    if (c->wino) {
        struct timespec t0, t1;
        if (nn_conv_profile())
            clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = nn_conv_wino(pool, c, x, y, res, relu, in, out, err);
        if (nn_conv_profile()) {
            double ms;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
            fprintf(stderr, "nn-profile conv %4d->%-4d k%dx%dx%d d%d,%d tiles %lld in %lldx%lldx%lld "
                    "winograd %7.2f ms %6.1f GFLOP/s (as 36 products a tile)\n", c->cin, c->cout, c->k[0],
                    c->k[1], c->k[2], c->d[0], c->d[1],
                    (long long)(nn_conv_wino_tiles(c, out) * x->shape[NN_B] * in[0]),
                    (long long)in[0], (long long)in[1], (long long)in[2], ms,
                    72.0 * (double)c->cin * c->cout * (double)nn_conv_wino_tiles(c, out) *
                    (double)(x->shape[NN_B] * in[0]) / (ms * 1e6));
        }
        return rc;
    }

    memset(&j, 0, sizeof j);
    j.pool = pool;
    j.c = c;
    j.x = x;
    j.y = y;
    j.res = res;
    j.relu = relu;
    j.K = (int64_t)c->cin * c->ntap[0] * c->ntap[1] * c->ntap[2];
    if (c->wr) {
        j.w = c->wr;
        j.lda = j.K;
    } else {
        /* all taps live (the full matrix), or one: its block in place */
        j.w = c->wp ? NULL : c->w + (j.K == c->cin ? nn_conv_tap_block(c, 0) : 0);
        j.lda = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];
    }
    memcpy(j.in, in, sizeof in);
    memcpy(j.out, out, sizeof out);
    j.ncols = nn_tensor_cols(y);
    j.pointwise = c->ntap[0] * c->ntap[1] * c->ntap[2] == 1 &&
        c->s[0] == 1 && c->s[1] == 1 && c->s[2] == 1;
    for (int a = 0; a < 3 && j.pointwise; a++)
        if ((int64_t)c->tap[a][0] * c->d[a] != c->p[a] || in[a] != out[a])
            j.pointwise = 0;

    /* j.K == 0: every tap reads padding only, the output is the bias */
    if (c->kern != NN_KERN_FP32) {
        /* a tile is one chunk of packed columns (conv_bf16.c) */
        nn_conv_bf16_dense(c, &j.pk, &j.kq);
        j.kpack = j.pk->k;
        if (c->regions && j.K > 0) {
            /* (stride 1, several taps: the implicit path below) */
            if ((rc = region_order(c, x->shape[NN_B], in, out, err)) != EN_OK)
                return rc;
            j.cmap = c->cmap;
            j.kpack = region_kpack(&j);
        }
        j.chunk = nn_conv_bf16_chunk(j.pk, j.kpack);
        target = j.chunk;
    } else {
        int64_t rows = j.pointwise || c->tshift ? c->cout : (j.K > c->cout ? j.K : c->cout);
        target = (int64_t)NN_TILE_BYTES / (int64_t)(rows * sizeof(float));
        /* the own kernel's B (im2col's columns, read in place, or its copy
         * of a K slice of the input's rows) stays in L2 */
        if (c->wp && j.K > 0) {
            const int64_t lim = nn_tile_b_cols(c->tshift ? c->wp_k : j.K);
            if (target > lim)
                target = lim;
        }
        if (target < NN_TILE_MIN_COLS)
            target = NN_TILE_MIN_COLS;
    }
    /* Panels left over when the threads' shares of whole panels differ
     * (1,568 columns are 49 panels: 25 against 24) are split by rows
     * instead, one row share per thread, taken last */
    j.tcols = j.ncols;
    if (c->kern == NN_KERN_FP32 && c->wp && !c->tshift && j.K > 0 && nth > 1 &&
        c->cout >= 2 * nth * NN_SGEMM_MR) {
        const int64_t panels = (j.ncols + 31) / 32;
        j.ntail = panels > nth ? panels % nth : 0;
        if (j.ntail)
            j.tcols = (panels - j.ntail) * 32;
    }
    j.ntiles = nn_tile_count(j.tcols, target, nth);
    j.nb = nn_tile_width(j.tcols, j.ntiles);
    if (j.ntiles > (1 << 30))
        return en_err_set(err, EN_ELIMIT, "nn: layer too large");
    if (!j.pointwise && !c->tshift && j.K > 0)
        j.need = (size_t)j.K * (size_t)j.nb +
            ((size_t)j.nb + 2) * sizeof(seg) / sizeof(float) + 16;
    else if (c->wp && c->tshift)
        j.need = nn_conv_tshift_own_need(c, j.nb);
    else if (c->wp && j.K > 0)
        /* the own kernel copies B's far-apart rows (input planes) first */
        j.need = nn_sgemm_bwork_size((int)j.nb);
    if (c->kern != NN_KERN_FP32 && j.K > 0) {
        j.implicit = !j.pointwise && c->s[0] == 1 && c->s[1] == 1 && c->s[2] == 1;
        /* bf16 copies: read the input's when it has one (pairs of whole
         * channels: cin even; strided convolutions gather from it), write
         * the output's (a view: when its owner gave it its slice of one) */
        j.bfin = x->bfvalid && c->cin % 2 == 0;
        j.gather = j.bfin && !j.pointwise && !j.implicit;
        j.bfout = (y->cap || y->bf) && c->cout % 2 == 0;
        j.bfonly = j.bfout && c->bf_only;
        if (j.bfout && y->cap && (rc = nn_tensor_bf_alloc(y, err)) != EN_OK)
            return rc;
        if (j.implicit) {
            /* (with cmap, a run of columns may be one column long) */
            j.maxp = j.cmap ? 16 : 16 / out[2] + 2;
            j.need = implicit_need(&j);
            /* stored blocks are whole (AVX512-BF16's K is in pairs) */
            if (!j.cmap)
                j.kpack = (int)nn_kblocks(j.pk->k) * 32;
        }
        if (j.gather)
            j.need = gather_need(&j);
        j.need_panels = nn_conv_bf16_panels(j.pk, j.kpack, j.chunk);
    }
    if (!j.bfin)
        nn_tensor_data(x);
    if (res && !j.bfout)
        nn_tensor_data(res);
    /* make sure every thread's buffers exist before going parallel */
    for (int t = 0; t < nth; t++)
        if ((j.need && !nn_pool_scratch(pool, t, j.need)) ||
            (j.need_panels && !nn_pool_panels(pool, t, j.need_panels)))
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for im2col");
    if (nn_conv_profile()) {
        struct timespec t0, t1;
        double ms, flop = 2.0 * (double)c->cout * (double)j.K * (double)j.ncols;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        nn_pool_run(pool, (int)(j.ntiles + j.ntail * nth), conv_tile, &j);
        y->bfvalid = j.bfout;
        y->dataold = j.bfonly;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        fprintf(stderr, "nn-profile conv %4d->%-4d k%dx%dx%d s%d,%d d%d,%d taps %d in %lldx%lldx%lld "
                "cols %6lld K %5lld %s %7.2f ms %6.1f GFLOP/s\n", c->cin, c->cout, c->k[0],
                c->k[1], c->k[2], c->s[0], c->s[1], c->d[0], c->d[1],
                c->ntap[0] * c->ntap[1] * c->ntap[2], (long long)in[0], (long long)in[1],
                (long long)in[2], (long long)j.ncols, (long long)j.K,
                j.pointwise ? "1x1   " : j.cmap ? "region" : j.implicit ? "implct" :
                j.gather ? "gather" :
                c->tshift ? "tshift" : "im2col",
                ms, flop / ms * 1e-6);
        if (c->kern != NN_KERN_FP32)
            fprintf(stderr, "nn-profile   (%s, packed K %d)\n", nn_kern_name(c->kern), j.pk->k);
        return EN_OK;
    }
    nn_pool_run(pool, (int)(j.ntiles + j.ntail * nth), conv_tile, &j);
    y->bfvalid = j.bfout;
    y->dataold = j.bfonly;
    return EN_OK;
}

/* Scratch floats of the implicit im2col: channel pointers, taps, pieces and
 * their index, for a tile of nb columns. */
static size_t implicit_need(const conv_job *j)
{
    const size_t ntaps = (size_t)j->c->ntap[0] * j->c->ntap[1] * j->c->ntap[2];
    const size_t nh = ((size_t)j->nb + 15) / 16, k = (size_t)j->pk->k;
    const size_t slots = ((size_t)j->nb + NN_NB - 1) / NN_NB * (size_t)nn_kblocks(j->pk->k);
    return (k * sizeof(float *) + k * sizeof(int32_t) + (ntaps * nh + 1) * sizeof(int32_t) +
            ntaps * nh * (size_t)j->maxp * sizeof(nn_piece) + slots * sizeof(int32_t) + ntaps) /
           sizeof(float) + 64;
}

/* Which K blocks of each 32-column panel read anything, as their places
 * among the panel's stored blocks (gemm_int.h): a block is dead where
 * every tap it holds rows of has no piece in the panel (its columns all
 * read padding: dilated taps near the border, ASPP's outer taps).
 * Returns the most blocks a panel stores. */
static int32_t implicit_slots(const conv_job *j, int64_t n, const int32_t *start,
                              uint8_t *tlive, int32_t *slot)
{
    const nn_conv *c = j->c;
    const int ntaps = c->ntap[0] * c->ntap[1] * c->ntap[2];
    const int64_t nh = (n + 15) / 16, nkb = nn_kblocks(j->pk->k);
    int32_t most = 0;

    for (int64_t p = 0; p * 2 < nh; p++) {
        const int64_t h1 = 2 * p + 2 < nh ? 2 * p + 2 : nh;
        int32_t used;
        for (int t = 0; t < ntaps; t++)
            tlive[t] = start[(int64_t)t * nh + 2 * p] != start[(int64_t)t * nh + h1];
        used = panel_slots(j, tlive, slot + p * nkb);
        most = used > most ? used : most;
    }
    return most;
}

/* The pieces (gemm_int.h) of every live tap for output columns [j0, j0+n)
 * of a stride-1 convolution: per output row in the tile, the columns whose
 * input lies inside the input, and where. */
static void implicit_pieces(const conv_job *j, int64_t j0, int64_t n, nn_piece *pieces,
                            int32_t *start)
{
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    const int64_t To = j->out[0], Ho = j->out[1], Wo = j->out[2];
    const int64_t Ti = j->in[0], Hi = j->in[1], Wi = j->in[2];
    const int64_t nh = (n + 15) / 16;
    const int ntaps = c->ntap[0] * c->ntap[1] * c->ntap[2];
    int32_t e = 0;

    /* columns p of the product in [j0, j0+n), each output column cmap[p]
     * (or p), in runs along an output row */
    for (int lt = 0; lt < ntaps; lt++) {
        const int64_t offt = (int64_t)c->tap[0][lt / (c->ntap[1] * c->ntap[2])] * c->d[0] - c->p[0];
        const int64_t offy = (int64_t)c->tap[1][lt / c->ntap[2] % c->ntap[1]] * c->d[1] - c->p[1];
        const int64_t offx = (int64_t)c->tap[2][lt % c->ntap[2]] * c->d[2] - c->p[2];
        int32_t *st = start + (int64_t)lt * nh;
        int64_t h = 0, p = j0;
        st[0] = e;
        while (p < j0 + n) {
            const int64_t col = j->cmap ? j->cmap[p] : p;
            int64_t ox = col % Wo, rest = col / Wo;
            int64_t oy = rest % Ho, ot = (rest / Ho) % To, b = rest / (Ho * To);
            int64_t len = Wo - ox < j0 + n - p ? Wo - ox : j0 + n - p;
            for (int64_t l = 1; j->cmap && l < len; l++)
                if (j->cmap[p + l] != col + l)
                    len = l;
            int64_t it = ot + offt, iy = oy + offy;
            int64_t v0 = ox > -offx ? ox : -offx, v1 = ox + len < Wi - offx ? ox + len : Wi - offx;
            int64_t l0 = p - j0 + (v0 - ox), l1 = p - j0 + (v1 - ox);
            int64_t off = b * x->stride[NN_B] + it * x->stride[NN_T] + iy * x->stride[NN_H] +
                          ox + offx - (p - j0);
            p += len;
            if (it < 0 || it >= Ti || iy < 0 || iy >= Hi || v1 <= v0)
                continue;
            for (int64_t hh = l0 / 16; hh <= (l1 - 1) / 16; hh++) {
                const int64_t a = l0 > hh * 16 ? l0 - hh * 16 : 0;
                const int64_t z = l1 < hh * 16 + 16 ? l1 - hh * 16 : 16;
                const uint32_t mask = ((1u << z) - 1u) & ~((1u << a) - 1u);
                while (h < hh)
                    st[++h] = e;
                if (e > st[hh] && pieces[e - 1].off == off) {
                    pieces[e - 1].mask |= mask;
                } else {
                    pieces[e].off = off;
                    pieces[e].mask = mask;
                    e++;
                }
            }
        }
        while (h < nh - 1)
            st[++h] = e;
    }
    start[(int64_t)ntaps * nh] = e;
}

/* Columns [j0, j0+n) of a stride-1 convolution in bf16, the right-hand
 * matrix packed straight from the input: no im2col copy, the padding as
 * zeros. */
static void implicit_tile_bf16(const conv_job *j, int64_t j0, int64_t n, const nn_gemm_out *o,
                               int thread)
{
    const nn_conv *c = j->c;
    const nn_pack *pk = j->pk;
    const int64_t nh = (j->nb + 15) / 16;
    const size_t ntaps = (size_t)c->ntap[0] * c->ntap[1] * c->ntap[2];
    float *scr = nn_pool_scratch(j->pool, thread, j->need);
    const float **chan = (const float **)(void *)scr;
    nn_piece *pieces = (nn_piece *)(void *)(chan + pk->k);
    int32_t *tap = (int32_t *)(void *)(pieces + ntaps * (size_t)nh * (size_t)j->maxp);
    int32_t *start = tap + pk->k, *slot = start + ntaps * (size_t)nh + 1;
    uint8_t *tlive = (uint8_t *)(void *)(slot + (size_t)(nh + 1) / 2 * (size_t)nn_kblocks(pk->k));
    nn_bf16_buf b;
    nn_bmat bm;
    int64_t pstride;

    implicit_pieces(j, j0, n, pieces, start);
    /* panels store only their live blocks */
    pstride = (int64_t)implicit_slots(j, n, start, tlive, slot) * 1024;
    nn_conv_bf16_buf(nn_pool_panels(j->pool, thread, j->need_panels), pk, j->kpack, j->chunk, &b);
    if (j->bfin) {
        /* from the input's bf16 copy, two channels (one pair row) a time */
        const uint32_t **prow = (const uint32_t **)(void *)chan;
        for (int r = 0; r < pk->k; r += 2) {
            const int32_t q = j->kq[r];
            prow[r / 2] = q >= 0 ? (const uint32_t *)(const void *)j->x->bf +
                                   (q % c->cin) / 2 * j->x->bfld : NULL;
            tap[r / 2] = q >= 0 ? q / c->cin : 0;
        }
        nn_bpack_pairs(b.bp, pstride, prow, tap, pieces, start, (n + 15) / 16, pk->k, slot);
    } else {
        for (int r = 0; r < pk->k; r++) {
            const int32_t q = j->kq[r];
            chan[r] = q >= 0 ? j->x->data + (q % c->cin) * j->x->stride[NN_C] : NULL;
            tap[r] = q >= 0 ? q / c->cin : 0;
        }
        nn_bpack_pieces(b.bp, pstride, chan, tap, pieces, start, (n + 15) / 16, pk->k, slot);
    }
    bm = nn_bmat_packed(b.bp, pk->k);
    bm.pstride = pstride;
    bm.slot = slot;
    nn_gemm_bf16(pk, 0, c->cout, &bm, n, o, b.work, NULL);
}

/* Scratch floats of the gathers: pair row pointers and taps, and per tap
 * and half-panel 16 input columns and their mask. */
static size_t gather_need(const conv_job *j)
{
    const size_t ntaps = (size_t)j->c->ntap[0] * j->c->ntap[1] * j->c->ntap[2];
    const size_t nh = ((size_t)j->nb + 15) / 16, kp = (size_t)j->pk->k / 2;
    return (kp * (sizeof(uint32_t *) + sizeof(int32_t)) +
            ntaps * nh * (16 * sizeof(int32_t) + sizeof(uint16_t))) / sizeof(float) + 16;
}

/* Columns [j0, j0+n) of a strided convolution in bf16, packed by gathers
 * from the input's bf16 copy: per tap and output column, the input column
 * it reads (none in the padding); no im2col.  (Gathers from fp32
 * channels measured six times slower than im2col on the stem: 49 taps'
 * indices per column.) */
static void gather_tile_bf16(const conv_job *j, int64_t j0, int64_t n, const nn_gemm_out *o,
                             int thread)
{
    const nn_conv *c = j->c;
    const nn_pack *pk = j->pk;
    const int ntaps = c->ntap[0] * c->ntap[1] * c->ntap[2];
    const int64_t nhn = (n + 15) / 16;   /* (gather_need: at most the tile's) */
    const int64_t To = j->out[0], Ho = j->out[1], Wo = j->out[2];
    float *scr = nn_pool_scratch(j->pool, thread, j->need);
    const uint32_t **prow = (const uint32_t **)(void *)scr;
    int32_t *tap = (int32_t *)(void *)(prow + pk->k / 2);
    int32_t *idx = tap + pk->k / 2;
    uint16_t *msk = (uint16_t *)(void *)(idx + (size_t)ntaps * (size_t)nhn * 16);
    const uint32_t *bf = (const uint32_t *)(const void *)j->x->bf;
    nn_bf16_buf b;
    nn_bmat bm;

    for (int r = 0; r < pk->k / 2; r++) {
        const int32_t q = j->kq[2 * r];
        prow[r] = q >= 0 ? bf + (q % c->cin) / 2 * j->x->bfld : NULL;
        tap[r] = q >= 0 ? q / c->cin : 0;
    }
    for (int lt = 0; lt < ntaps; lt++) {
        int64_t off[3];
        tap_offsets(c, lt, off);
        for (int64_t hh = 0; hh < nhn; hh++) {
            int32_t *ix = idx + ((int64_t)lt * nhn + hh) * 16;
            uint32_t m = 0;
            for (int l = 0; l < 16; l++) {
                const int64_t p = hh * 16 + l, col = j0 + p;
                const int64_t ox = col % Wo, oy = col / Wo % Ho, ot = col / (Wo * Ho) % To;
                const int64_t bb = col / (Wo * Ho * To);
                const int64_t it = ot * c->s[0] + off[0], iy = oy * c->s[1] + off[1];
                const int64_t ixx = ox * c->s[2] + off[2];
                ix[l] = 0;
                if (p >= n || it < 0 || it >= j->in[0] || iy < 0 || iy >= j->in[1] || ixx < 0 ||
                    ixx >= j->in[2])
                    continue;
                ix[l] = (int32_t)(((bb * j->in[0] + it) * j->in[1] + iy) * j->in[2] + ixx);
                m |= 1u << l;
            }
            msk[(int64_t)lt * nhn + hh] = (uint16_t)m;
        }
    }
    nn_conv_bf16_buf(nn_pool_panels(j->pool, thread, j->need_panels), pk, j->kpack, j->chunk, &b);
    nn_bpack_gather(b.bp, prow, tap, idx, msk, nhn, pk->k);
    bm = nn_bmat_packed(b.bp, pk->k);
    nn_gemm_bf16(pk, 0, c->cout, &bm, n, o, b.work, NULL);
}

/* The right-hand matrix of columns [j0, j0+n), and its row stride: the
 * input itself for a 1x1 convolution, else im2col in the thread's
 * scratch (allocated before the parallel region: this only looks it up). */
static const float *tile_b(const conv_job *j, int64_t j0, int64_t n, int thread, int64_t *ld)
{
    float *cols;

    if (j->pointwise) {
        *ld = j->x->stride[NN_C];
        return j->x->data + j0;
    }
    cols = nn_pool_scratch(j->pool, thread, j->need);
    im2col_tile(j, j0, n, cols, (seg *)(void *)(cols + (size_t)j->K * (size_t)j->nb));
    *ld = n;
    return cols;
}

/* Columns [j0, j0+n) in bf16: stride-1 kernels pack straight from the
 * input, 1x1 ones read its bf16 copy in place (or pack its channels),
 * strided ones gather from its bf16 copy (or pack an im2col tile); the
 * epilogue is part of the product. */
static void conv_tile_bf16(const conv_job *j, int64_t j0, int64_t n, int thread)
{
    const nn_conv *c = j->c;
    const nn_tensor *res = j->res;
    nn_tensor *y = j->y;
    nn_gemm_out o = {
        .c = j->bfonly ? NULL : y->data + j0, .ldc = y->stride[NN_C], .bias = c->b,
        .relu = j->relu, .bf = j->bfout ? y->bf + 2 * j0 : NULL, .bfld = y->bfld
    };
    const float *src;
    int64_t ld;

    if (j->cmap) {
        /* the columns in region order: o's pointers address column 0 */
        o.c = j->bfonly ? NULL : y->data;
        o.bf = j->bfout ? y->bf : NULL;
        o.cmap = j->cmap + j0;
        if (res && res->dataold) {
            o.resbf = res->bf;
            o.resbfld = res->bfld;
        } else if (res) {
            o.res = res->data;
            o.ldr = res->stride[NN_C];
        }
        implicit_tile_bf16(j, j0, n, &o, thread);
        return;
    }
    if (res && res->dataold) {      /* only when bfout (nn_conv_forward) */
        o.resbf = res->bf + 2 * j0;
        o.resbfld = res->bfld;
    } else if (res) {
        o.res = res->data + j0;
        o.ldr = res->stride[NN_C];
    }
    if (j->implicit) {
        implicit_tile_bf16(j, j0, n, &o, thread);
        return;
    }
    if (j->pointwise && j->bfin) {
        /* the input's bf16 copy is the right-hand matrix as it stands
         * (j0 is a multiple of 32: whole panels) */
        nn_bmat bm = { j->x->bf + 2 * j0, 2 * NN_NB, 2 * j->x->bfld, NULL, NULL, 0, 0 };
        nn_bf16_buf b;
        nn_conv_bf16_buf(nn_pool_panels(j->pool, thread, j->need_panels), j->pk, j->kpack,
                         j->chunk, &b);
        nn_gemm_bf16(j->pk, 0, c->cout, &bm, n, &o, b.work, NULL);
        return;
    }
    if (j->gather) {
        gather_tile_bf16(j, j0, n, &o, thread);
        return;
    }
    src = tile_b(j, j0, n, thread, &ld);
    nn_conv_bf16_product(j->pk, j->kq, 0, c->cout, src, ld, n, &o,
                         nn_pool_panels(j->pool, thread, j->need_panels), j->chunk);
}

/* Rows [m0, m1) of columns [j0, j0+n) on the own fp32 kernel (c->wp),
 * epilogue included. */
static void own_block(const conv_job *j, int64_t m0, int64_t m1, int64_t j0, int64_t n,
                      int thread)
{
    const nn_conv *c = j->c;
    const nn_tensor *res = j->res;
    const int64_t ldc = j->y->stride[NN_C];
    int64_t ldb;
    const float *B = tile_b(j, j0, n, thread, &ldb);

    /* the epilogue comes with the product's last K slice */
    const nn_sgemm_epi e = { c->b + m0,
                             res ? res->data + m0 * res->stride[NN_C] + j0 : NULL,
                             res ? res->stride[NN_C] : 0, j->relu };
    nn_sgemm_packed((int)(m1 - m0), (int)n, (int)j->K,
                    c->wp + (m0 / NN_SGEMM_MR) * j->K * NN_SGEMM_MR, j->K * NN_SGEMM_MR, B,
                    ldb, j->y->data + m0 * ldc + j0, ldc, 0, &e,
                    j->pointwise ? nn_pool_scratch(j->pool, thread, j->need) : NULL);
}

static void conv_tile(void *arg, int task, int thread)
{
    const conv_job *j = arg;
    const nn_conv *c = j->c;
    nn_tensor *y = j->y;
    int64_t j0, n, ldc = y->stride[NN_C];
    const float *B;
    int64_t ldb;

    if (task >= j->ntiles) {
        /* a row share of a panel past the tiles, in whole row panels */
        const int64_t nth = nn_pool_size(j->pool), s = task - j->ntiles, part = s % nth;
        const int64_t np = (c->cout + NN_SGEMM_MR - 1) / NN_SGEMM_MR;
        const int64_t m0 = np * part / nth * NN_SGEMM_MR;
        const int64_t e = np * (part + 1) / nth * NN_SGEMM_MR;
        j0 = j->tcols + 32 * (s / nth);
        n = j->ncols - j0 < 32 ? j->ncols - j0 : 32;
        own_block(j, m0, e < c->cout ? e : c->cout, j0, n, thread);
        return;
    }
    nn_tile_cols(j->tcols, j->ntiles, task, &j0, &n);
    if (n <= 0)
        return;
    if (c->kern != NN_KERN_FP32 && j->K > 0) {
        conv_tile_bf16(j, j0, n, thread);
        return;
    }
    if (c->tshift) {
        if (c->wp) {
            nn_conv_tshift_tile_own(j, j0, n, nn_pool_scratch(j->pool, thread, j->need));
            return;
        }
        nn_conv_tshift_tile(j, j0, n);
    } else if (j->K > 0) {
        if (c->wp) {
            own_block(j, 0, c->cout, j0, n, thread);
            return;
        }
        B = tile_b(j, j0, n, thread, &ldb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)n,
                    (int)j->K, 1.0f, j->w, (int)j->lda, B, (int)ldb, 0.0f,
                    y->data + j0, (int)ldc);
    }
    nn_conv_epilogue(c, y, j->res, j->relu, 0, c->cout, j0, n, j->K == 0);
}

void nn_conv_reference(const nn_conv *c, const nn_tensor *x, nn_tensor *y)
{
    const int64_t B = x->shape[NN_B];
    const int64_t kfull = (int64_t)c->cin * c->k[0] * c->k[1] * c->k[2];
    int64_t in[3], out[3];

    for (int a = 0; a < 3; a++) {
        in[a] = x->shape[NN_T + a];
        out[a] = nn_conv_out(c, a, in[a]);
    }
    nn_tensor_reshape(y, c->cout, B, out[0], out[1], out[2], NULL);
    for (int64_t o = 0; o < c->cout; o++)
    for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < out[0]; t++)
    for (int64_t h = 0; h < out[1]; h++)
    for (int64_t w = 0; w < out[2]; w++) {
        double acc = c->b[o];
        for (int64_t ci = 0; ci < c->cin; ci++)
        for (int kt = 0; kt < c->k[0]; kt++)
        for (int kh = 0; kh < c->k[1]; kh++)
        for (int kw = 0; kw < c->k[2]; kw++) {
            int64_t it = t * c->s[0] - c->p[0] + kt * c->d[0];
            int64_t ih = h * c->s[1] - c->p[1] + kh * c->d[1];
            int64_t iw = w * c->s[2] - c->p[2] + kw * c->d[2];
            if (it < 0 || it >= in[0] || ih < 0 || ih >= in[1] || iw < 0 || iw >= in[2])
                continue;
            /* (the weights may be held packed only: plan_taps) */
            const int64_t q = ((kt * c->k[1] + kh) * c->k[2] + kw) * c->cin + ci;
            const float wv = c->w ? c->w[o * kfull + q] :
                c->wp[((o / NN_SGEMM_MR) * kfull + q) * NN_SGEMM_MR + o % NN_SGEMM_MR];
            acc += (double)wv *
                x->data[ci * x->stride[NN_C] + b * x->stride[NN_B] + it * x->stride[NN_T] +
                        ih * x->stride[NN_H] + iw];
        }
        y->data[o * y->stride[NN_C] + b * y->stride[NN_B] + t * y->stride[NN_T] +
                h * y->stride[NN_H] + w] = (float)acc;
    }
}

/*
 * conv_wino.c - stride-1 3x3 convolutions (any padding, any dilation) by
 * Winograd's minimal filtering F(4x4, 3x3), lowered to cblas_sgemm.
 *
 * A 3x3 convolution with dilation d splits into d x d independent ordinary
 * 3x3 convolutions, one per residue class (ry, rx) of the output positions
 * modulo d (the "sub-grids": output r + d*a reads input r - p + d*(a + j)).
 * Each sub-grid is cut into 4x4 output tiles; a tile reads a 6x6 patch of
 * its input lattice (each thread copies its input channels into zero-padded
 * planes first, so every patch is read without bounds checks).  With the
 * transforms of Lavin & Gray (interpolation points 0, +-1, +-2):
 *
 *   V = B^T d B (per input channel and tile, 6x6 = 36 points)
 *   U = G g G^T (per output and input channel, once, in double; 4x the
 *               3x3 weights' memory, kept beside them)
 *   M[xi] = U[xi] x V[xi]      one [cout x cin] x [cin x tiles] sgemm per
 *                              point xi (36 of them)
 *   Y = A^T M A (4x4 outputs per tile), then bias, residual, ReLU
 *
 * so a tile of 16 outputs costs 36 products per (cout, cin) pair instead
 * of 144: 2.25x fewer multiply-adds where every tap is used.  The products
 * with the padding zeros that the 6x6 patches and the partial tiles at the
 * sub-grid edges carry are computed, not skipped, so the planner in conv.c
 * compares the two counts (dense or tap by tap against 36 per tile) and
 * takes this path only where it wins: every stride-1 3x3 of DeepLabV3's
 * backbone and head at 112x112 (dilation 1, 2 and 4 on 28x28 and 14x14
 * maps), and R(2+1)D's spatial 3x3s; not ASPP's rate 12 on 14x14.
 *
 * Not exact like the other paths: the transforms reorder the arithmetic
 * (tests/test-nn-ops.c checks it against the direct definition; the
 * networks' parity with torchvision is unchanged, about 3e-6 of the
 * largest logit).  EN_NN_WINOGRAD=0 turns the path off.
 *
 * The work runs in three parallel phases over a chunk of planes (frames):
 * input transform (threads split input channels), the 36 products (threads
 * split the points), output transform and epilogue (threads split output
 * channels).  Planes are chunked so that V and M stay under NN_WINO_BYTES
 * (24 MB, in the calling thread's scratch).
 *
 * The transforms: with AVX-512, 16 tiles at once (conv_wino_avx512.c);
 * elsewhere, and with EN_NN_WINO16=0, four at once below.  The same
 * formulas (wino_int.h), the same bits.
 */
#include "conv_int.h"
#include "gemm_int.h"
#include "wino_int.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define NN_WINO_BYTES (24u << 20)

static int wino_enabled(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("EN_NN_WINOGRAD");
        v = !(e && *e == '0');
    }
    return v;
}

int nn_conv_wino_eligible(const nn_conv *c, const int64_t in[3], const int64_t out[3])
{
    return wino_enabled() && c->k[0] == 1 && c->k[1] == 3 && c->k[2] == 3 &&
        c->s[0] == 1 && c->s[1] == 1 && c->s[2] == 1 && c->p[0] == 0 &&
        in[0] == out[0] && c->cin >= 8 && c->cout >= 8;
}

/* Tiles along one axis: for each sub-grid residue r, tiles of 4 outputs
 * r + d*(a0 + u), reading inputs org + d*i (i < 6, org = r - p + d*a0). */
typedef struct axis_tile {
    int64_t org;          /* input position of patch point 0 (may be < 0) */
    int32_t out[4];       /* output index of tile output u, -1: past the end */
} axis_tile;

static int64_t axis_count(int64_t out, int d)
{
    int64_t n = 0;
    for (int r = 0; r < d && r < out; r++) {
        int64_t na = (out - r + d - 1) / d;
        n += (na + 3) / 4;
    }
    return n;
}

int64_t nn_conv_wino_tiles(const nn_conv *c, const int64_t out[3])
{
    return axis_count(out[1], c->d[1]) * axis_count(out[2], c->d[2]);
}

/* Fills the tiles; *lo, *hi: the padding the patches read before and after
 * the input. */
static void axis_fill(axis_tile *t, int64_t in, int64_t out, int d, int p, int64_t *lo,
                      int64_t *hi)
{
    int64_t n = 0;
    *lo = *hi = 0;
    for (int r = 0; r < d && r < out; r++) {
        int64_t na = (out - r + d - 1) / d;
        for (int64_t a0 = 0; a0 < na; a0 += 4, n++) {
            t[n].org = r - p + (int64_t)d * a0;
            if (-t[n].org > *lo)
                *lo = -t[n].org;
            if (t[n].org + 5 * (int64_t)d - (in - 1) > *hi)
                *hi = t[n].org + 5 * (int64_t)d - (in - 1);
            for (int u = 0; u < 4; u++)
                t[n].out[u] = a0 + u < na ? (int32_t)(r + (int64_t)d * (a0 + u)) : -1;
        }
    }
}

/* U[xi][cout][cin] = G g G^T from the tap-major weights, in double.  One
 * output channel at a time through a [36][cin] buffer, so the row-major stores run
 * along rows (36 streams a power of two apart alias in the caches). */
int nn_conv_wino_weights(nn_conv *c, en_err *err)
{
    const size_t co = (size_t)c->cout, ci = (size_t)c->cin, plane = co * ci;
    /* the own kernel's packed layout (nn_sgemm_pack: panels of rows,
     * k-major), written in place of the row-major one, or the row-major
     * one for OpenBLAS; calloc: a last panel's missing rows are zeros */
    const int packed = nn_sgemm_packed_usable();
    const size_t psz = packed ? nn_sgemm_pack_size(c->cout, c->cin) : plane;
    const size_t mr = NN_SGEMM_MR;
    float *u, *row;

    if (c->wu)
        return EN_OK;
    u = calloc(36 * psz, sizeof *u);
    row = malloc(36 * ci * sizeof *row);
    if (!u || !row) {
        free(u);
        free(row);
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for Winograd weights");
    }
    for (size_t o = 0; o < co; o++) {
        for (size_t i = 0; i < ci; i++) {
            double g[3][3], t[6][3];
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++)
                    g[a][b] = c->w[(o * 9 + (size_t)a * 3 + b) * ci + i];
            /* t = G g, then (G g) G^T: G's rows are (1/4, 0, 0),
             * (-1/6, -1/6, -1/6), (-1/6, 1/6, -1/6), (1/24, 1/12, 1/6),
             * (1/24, -1/12, 1/6), (0, 0, 1) */
            for (int b = 0; b < 3; b++) {
                double g0 = g[0][b], g1 = g[1][b], g2 = g[2][b];
                t[0][b] = g0 / 4;
                t[1][b] = -(g0 + g1 + g2) / 6;
                t[2][b] = -(g0 - g1 + g2) / 6;
                t[3][b] = g0 / 24 + g1 / 12 + g2 / 6;
                t[4][b] = g0 / 24 - g1 / 12 + g2 / 6;
                t[5][b] = g2;
            }
            for (int a = 0; a < 6; a++) {
                double g0 = t[a][0], g1 = t[a][1], g2 = t[a][2];
                float *r = row + (size_t)a * 6 * ci + i;
                r[0] = (float)(g0 / 4);
                r[ci] = (float)(-(g0 + g1 + g2) / 6);
                r[2 * ci] = (float)(-(g0 - g1 + g2) / 6);
                r[3 * ci] = (float)(g0 / 24 + g1 / 12 + g2 / 6);
                r[4 * ci] = (float)(g0 / 24 - g1 / 12 + g2 / 6);
                r[5 * ci] = (float)g2;
            }
        }
        for (size_t p = 0; p < 36; p++) {
            if (!packed) {
                memcpy(u + p * plane + o * ci, row + p * ci, ci * sizeof *u);
                continue;
            }
            for (size_t i = 0; i < ci; i++)
                u[p * psz + ((o / mr) * ci + i) * mr + o % mr] = row[p * ci + i];
        }
    }
    free(row);
    c->wu = u;
    c->wu_packed = packed;
    return EN_OK;
}

/* One tile of a chunk: where its patch starts in the padded planes, where
 * its plane starts in y (and res), its tiles along H and W. */
typedef struct tile_ref {
    int64_t pin, yoff, roff;
    const axis_tile *ry, *rx;
    /* on a group's first tile (a multiple of 4 from the chunk's or block's
     * start): the group's four patches, and its outputs, lie side by side
     * (side_by_side_in, side_by_side_out) */
    uint8_t sbs_in, sbs_out;
} tile_ref;

typedef struct wino_job {
    const nn_conv *c;
    const nn_tensor *x;
    nn_tensor *y;
    const nn_tensor *res;
    int relu;
    int64_t T;
    int64_t pl0, npl, N;  /* planes [pl0, pl0+npl), N = npl * tiles per plane */
    int64_t vstride, mstride;  /* floats from one point's block to the next */
    tile_ref *tiles;           /* the chunk's N tiles */
    /* the 16-tile transforms' view of them (wide: they run), NULL where
     * the 4-float transforms run (no AVX-512, or offsets past 32 bits) */
    int32_t *pin;              /* tiles[t].pin */
    nn_wino16_map *map;        /* groups of 16 tiles */
    int wide;
    /* tiles with fewer than 4 outputs along an axis use fewer points
     * (wide only, phased only) */
    int partial;
    int64_t np[36];            /* tiles that use point p: its rows' length */
    int8_t big[36];            /* the points, most tiles first */
    int64_t cin_chunk, cout_chunk;
    int64_t lo[2], hp, wp;     /* padding before H and W, padded plane size */
    int64_t padsz;             /* floats of one thread's padded planes */
    int32_t patch[36];         /* patch point offsets in a padded plane */
    float *V, *M, *pad;
} wino_job;

/* Four tiles side by side: the transforms run on 4-float vectors (SSE2 on
 * x86-64, whatever GCC's vector extension maps to elsewhere), one lane per
 * tile; the union reads scalar-written lanes back as a vector. */
typedef float v4 __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef union v4u {
    v4 v;
    float f[4];
} v4u;
#define NN_LANES 4
/* floats ahead the point streams of V and M are prefetched */
#define NN_PREFETCH 64

/* Patches gathered before they are transformed: the lanes are written
 * with scalar stores, and reading them back as vectors right away would
 * stall on store forwarding. */
#define NN_GATHER 16

/* Lane l of r[v] becomes lane v of r[l]. */
static inline void transpose4(v4 r[4])
{
    v4 t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
    v4 t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
    v4 t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
    v4 t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
    r[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    r[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    r[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    r[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}

/* Four tiles side by side, 4 apart along one row of the padded plane, with
 * patches of dilation 1: each patch row of the four is 18 consecutive
 * floats, so the lanes come from five vector loads and two transposes
 * instead of 24 scalar loads and lane inserts. */
static int side_by_side_in(const tile_ref *t)
{
    return t[1].pin == t[0].pin + 4 && t[2].pin == t[0].pin + 8 && t[3].pin == t[0].pin + 12;
}

static void load_side_by_side(const float *pp, const int32_t patch[36], v4 d[36])
{
    for (int i = 0; i < 6; i++) {
        const float *row = pp + patch[i * 6];
        v4 a[4], b[4];
        for (int q = 0; q < 4; q++)
            memcpy(&a[q], row + 4 * q, sizeof a[q]);
        b[0] = a[1];
        b[1] = a[2];
        b[2] = a[3];
        b[3] = (v4){ row[16], row[17], 0.0f, 0.0f };
        transpose4(a);
        transpose4(b);
        for (int k = 0; k < 4; k++)
            d[i * 6 + k] = a[k];
        d[i * 6 + 4] = b[0];
        d[i * 6 + 5] = b[1];
    }
}

/* V = B^T d B for four tiles (lanes), stored at v[p * pstride + lane]. */
static void transform_in(v4 d[36], float *v, int64_t pstride, int lanes, int prefetch)
{
    v4 t[36];
    for (int k = 0; k < 6; k++)        /* columns: t = B^T d */
        NN_WINO_BT6(v4, d + k, 6, t + k, 6);
    for (int i = 0; i < 6; i++)        /* rows: (B^T d) B */
        NN_WINO_BT6(v4, t + i * 6, 1, d + i * 6, 1);
    if (lanes == NN_LANES) {
        if (prefetch)
            for (int p = 0; p < 36; p++)
                __builtin_prefetch(v + p * pstride + NN_PREFETCH, 1);
        for (int p = 0; p < 36; p++)
            memcpy(v + p * pstride, &d[p], sizeof d[p]);
    } else {
        for (int p = 0; p < 36; p++)
            for (int l = 0; l < lanes; l++)
                v[p * pstride + l] = d[p][l];
    }
}

/* Gathers and transforms the n tiles of one input channel from its padded
 * plane(s): V[p * pstride + t] for point p of tile t.  unit: the patches
 * have dilation 1 along W. */
static void input_channel(const float *pad, const tile_ref *tiles, int64_t n,
                          const int32_t patch[36], int unit, float *V, int64_t pstride)
{
    v4u g[NN_GATHER][36];

    if (unit) {
        for (int64_t n0 = 0; n0 < n; n0 += NN_LANES) {
            const int lanes = n - n0 < NN_LANES ? (int)(n - n0) : NN_LANES;
            v4 d[36];
            if (lanes == NN_LANES && tiles[n0].sbs_in) {
                load_side_by_side(pad + tiles[n0].pin, patch, d);
            } else {
                /* (a store-forwarding stall: rare, at the ends of rows) */
                for (int l = 0; l < NN_LANES; l++)
                    for (int p = 0; p < 36; p++)
                        g[0][p].f[l] = l < lanes ? pad[tiles[n0 + l].pin + patch[p]] : 0.0f;
                for (int p = 0; p < 36; p++)
                    d[p] = g[0][p].v;
            }
            transform_in(d, V + n0, pstride, lanes, !(n0 & 15));
        }
        return;
    }
    for (int64_t b0 = 0; b0 < n; b0 += NN_GATHER * NN_LANES) {
        const int64_t nb = n - b0 < NN_GATHER * NN_LANES ? n - b0 : NN_GATHER * NN_LANES;
        for (int64_t q = 0; q < nb; q++) {
            const float *pp = pad + tiles[b0 + q].pin;
            v4u *gq = g[q / NN_LANES];
            for (int p = 0; p < 36; p++)
                gq[p].f[q % NN_LANES] = pp[patch[p]];
        }
        for (int64_t q = nb; q % NN_LANES; q++)
            for (int p = 0; p < 36; p++)
                g[q / NN_LANES][p].f[q % NN_LANES] = 0.0f;
        for (int64_t n0 = 0; n0 < nb; n0 += NN_LANES) {
            const int lanes = nb - n0 < NN_LANES ? (int)(nb - n0) : NN_LANES;
            v4 d[36];
            for (int p = 0; p < 36; p++)
                d[p] = g[n0 / NN_LANES][p].v;
            transform_in(d, V + b0 + n0, pstride, lanes, !((b0 + n0) & 15));
        }
    }
}

static void wino_input(void *arg, int task, int thread)
{
    const wino_job *j = arg;
    const nn_conv *c = j->c;
    const nn_tensor *x = j->x;
    const int64_t c0 = (int64_t)task * j->cin_chunk;
    const int64_t c1 = c0 + j->cin_chunk < c->cin ? c0 + j->cin_chunk : c->cin;
    const int64_t Hi = x->shape[NN_H], Wi = x->shape[NN_W], plane = j->hp * j->wp;
    float *pad = j->pad + (size_t)thread * (size_t)j->padsz;

    /* the borders stay zero: only the interior is copied per channel */
    memset(pad, 0, (size_t)(j->npl * plane) * sizeof *pad);
    for (int64_t ci = c0; ci < c1; ci++) {
        for (int64_t q = 0; q < j->npl; q++) {
            int64_t pl = j->pl0 + q;
            const float *src = x->data + ci * x->stride[NN_C] + (pl / j->T) * x->stride[NN_B] +
                               (pl % j->T) * x->stride[NN_T];
            float *dst = pad + q * plane + j->lo[0] * j->wp + j->lo[1];
            for (int64_t h = 0; h < Hi; h++)
                memcpy(dst + h * j->wp, src + h * x->stride[NN_H], (size_t)Wi * sizeof *dst);
        }
        if (j->wide)
            nn_wino16_in(pad, j->pin, j->N, j->patch, j->map, j->V, j->vstride, j->np, ci);
        else
            input_channel(pad, j->tiles, j->N, j->patch, c->d[2] == 1, j->V + ci * j->N,
                          j->vstride);
    }
}

static void wino_gemm(void *arg, int task, int thread)
{
    const wino_job *j = arg;
    const nn_conv *c = j->c;
    const size_t p = (size_t)j->big[task];
    const int64_t n = j->np[p];

    (void)thread;
    if (n == 0)
        return;
    if (c->wu_packed)
        nn_sgemm_packed(c->cout, (int)n, c->cin, c->wu + p * nn_sgemm_pack_size(c->cout, c->cin),
                        (int64_t)c->cin * NN_SGEMM_MR, j->V + p * (size_t)j->vstride, n,
                        j->M + p * (size_t)j->mstride, n, 0, NULL, NULL);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)n, c->cin, 1.0f,
                    c->wu + p * (size_t)c->cout * (size_t)c->cin, c->cin,
                    j->V + p * (size_t)j->vstride, (int)n, 0.0f,
                    j->M + p * (size_t)j->mstride, (int)n);
}

/* Four tiles of one tile row of one plane, 4 apart, all 16 outputs inside
 * and dilation 1: their output rows are 16 consecutive floats. */
static int side_by_side_out(const tile_ref *t)
{
    const int32_t x0 = t[0].rx->out[0];
    for (int l = 0; l < 4; l++)
        if (t[l].ry != t[0].ry || t[l].yoff != t[0].yoff || t[l].roff != t[0].roff ||
            t[l].rx->out[0] != x0 + 4 * l || t[l].rx->out[3] != x0 + 4 * l + 3)
            return 0;
    return 1;
}

/* Transforms the n tiles of output channel co back (M[p * pstride + t] for
 * point p of tile t) and finishes them: bias, residual, ReLU, stored in y. */
static void output_channel(const nn_conv *c, nn_tensor *y, const nn_tensor *res, int relu,
                           int64_t co, const tile_ref *tiles, int64_t n, const float *M,
                           int64_t pstride)
{
    const int64_t ldy = y->stride[NN_H], ldr = res ? res->stride[NN_H] : 0;
    float *yc = y->data + co * y->stride[NN_C];
    const float *rc = res ? res->data + co * res->stride[NN_C] : NULL;
    const float bias = c->b[co];

    for (int64_t n0 = 0; n0 < n; n0 += NN_LANES) {
        const int lanes = n - n0 < NN_LANES ? (int)(n - n0) : NN_LANES;
        const float *mc = M + n0;
        v4 m[36], t[24];
        v4u o[16];
        if (lanes == NN_LANES) {
            /* 36 streams at once are more than the hardware prefetcher
             * follows: fetch a few lines ahead, once per line */
            if (!(n0 & 15))
                for (int p = 0; p < 36; p++)
                    __builtin_prefetch(mc + p * pstride + NN_PREFETCH);
            for (int p = 0; p < 36; p++)
                memcpy(&m[p], mc + p * pstride, sizeof m[p]);
        } else {
            for (int p = 0; p < 36; p++)
                for (int l = 0; l < NN_LANES; l++)
                    m[p][l] = l < lanes ? mc[p * pstride + l] : 0.0f;
        }
        for (int k = 0; k < 6; k++)        /* t[4][6] = A^T m */
            NN_WINO_AT6(v4, m + k, 6, t + k, 6);
        for (int u = 0; u < 4; u++) {      /* o[4][4] = t A, + bias */
            v4 r4[4];
            NN_WINO_AT6(v4, t + u * 6, 1, r4, 1);
            for (int v = 0; v < 4; v++)
                o[u * 4 + v].v = r4[v] + bias;
        }
        if (relu && !rc)                   /* max(o, 0), NaN to 0 as the epilogue */
            for (int q = 0; q < 16; q++)
                o[q].v = (v4)((v4i)o[q].v & (o[q].v > 0.0f));
        if (lanes == NN_LANES && tiles[n0].sbs_out) {
            /* a tile row of 4x4 outputs: 16 consecutive floats per row */
            const tile_ref *r = &tiles[n0];
            float *yp = yc + r->yoff + r->rx->out[0];
            const float *rp = rc ? rc + r->roff + r->rx->out[0] : NULL;
            for (int u = 0; u < 4 && r->ry->out[u] >= 0; u++) {
                float *yr = yp + (int64_t)r->ry->out[u] * ldy;
                v4 q[4] = { o[u * 4].v, o[u * 4 + 1].v, o[u * 4 + 2].v, o[u * 4 + 3].v };
                transpose4(q);
                for (int l = 0; l < 4; l++) {
                    if (rp) {
                        v4 rv;
                        memcpy(&rv, rp + (int64_t)r->ry->out[u] * ldr + 4 * l, sizeof rv);
                        q[l] += rv;
                        if (relu)
                            q[l] = (v4)((v4i)q[l] & (q[l] > 0.0f));
                    }
                    memcpy(yr + 4 * l, &q[l], sizeof q[l]);
                }
            }
            continue;
        }
        for (int l = 0; l < lanes; l++) {
            const tile_ref *r = &tiles[n0 + l];
            const axis_tile *a = r->ry, *b = r->rx;
            float *yp = yc + r->yoff;
            const float *rp = rc ? rc + r->roff : NULL;
            for (int u = 0; u < 4 && a->out[u] >= 0; u++) {
                float *yr = yp + (int64_t)a->out[u] * ldy;
                const float *rr = rp ? rp + (int64_t)a->out[u] * ldr : NULL;
                if (!rr) {
                    for (int v = 0; v < 4 && b->out[v] >= 0; v++)
                        yr[b->out[v]] = o[u * 4 + v].f[l];
                    continue;
                }
                for (int v = 0; v < 4 && b->out[v] >= 0; v++) {
                    float val = o[u * 4 + v].f[l] + rr[b->out[v]];
                    if (relu)
                        val = val > 0.0f ? val : 0.0f;
                    yr[b->out[v]] = val;
                }
            }
        }
    }
}

static void wino_output(void *arg, int task, int thread)
{
    const wino_job *j = arg;
    const nn_conv *c = j->c;
    const int64_t o0 = (int64_t)task * j->cout_chunk;
    const int64_t o1 = o0 + j->cout_chunk < c->cout ? o0 + j->cout_chunk : c->cout;

    (void)thread;
    for (int64_t co = o0; co < o1; co++)
        if (j->wide)
            nn_wino16_out(j->M, j->mstride, j->np, co, j->N, j->map, c->b[co],
                          j->y->data + co * j->y->stride[NN_C],
                          j->res ? j->res->data + co * j->res->stride[NN_C] : NULL, j->relu);
        else
            output_channel(c, j->y, j->res, j->relu, co, j->tiles, j->N, j->M + co * j->N,
                           j->mstride);
}

/* Room for the tiles of n tiles, and for their 16-tile view where those
 * transforms can run (*fail: out of memory). */
static void tiles_alloc(wino_job *j, int64_t n, int *fail)
{
    const int wide = nn_wino16_usable();

    j->tiles = malloc((size_t)n * sizeof *j->tiles);
    if (j->tiles && wide) {
        j->pin = malloc((size_t)n * sizeof *j->pin);
        j->map = malloc((size_t)((n + 15) / 16) * sizeof *j->map);
    }
    *fail = !j->tiles || (wide && (!j->pin || !j->map));
}

static void tiles_free(wino_job *j)
{
    free(j->tiles);
    free(j->pin);
    free(j->map);
    j->tiles = NULL;
    j->pin = NULL;
    j->map = NULL;
}

/* Points an axis tile with k outputs uses (bit i: point index i): all 6
 * for 4 outputs, 0, 1, -1, 2, inf for 3, 0, 1, -1, inf for 2 or 1. */
static unsigned axis_points(const axis_tile *a, int partial)
{
    int k = 0;
    while (k < 4 && a->out[k] >= 0)
        k++;
    if (!partial || k == 4)
        return 0x3f;
    return k == 3 ? 0x2f : 0x27;
}

/* 0..8: which points a tile uses along H and W (axis_points of each) */
static int point_class(unsigned py, unsigned px)
{
    return (py == 0x3f ? 0 : py == 0x2f ? 1 : 2) * 3 + (px == 0x3f ? 0 : px == 0x2f ? 1 : 2);
}

/* The 16-tile view of the tiles (j->pin, j->map, j->np); 0 where an
 * offset does not fit in 32 bits, or out of memory (the 4-float
 * transforms run then).  The tiles in order of their points along H and
 * W, so that a group of 16 mostly runs one pair of transforms rather than
 * blending three (the view's order is free: each lane carries its own
 * offsets). */
static int fill_wide(wino_job *j)
{
    const int64_t ldy = j->y->stride[NN_H], ldr = j->res ? j->res->stride[NN_H] : 0;
    int64_t start[10] = { 0 }, *order = malloc((size_t)j->N * sizeof *order);
    uint8_t *cls = malloc((size_t)j->N);

    if (!order || !cls) {
        free(order);
        free(cls);
        return 0;
    }
    for (int64_t n = 0; n < j->N; n++) {
        const tile_ref *r = &j->tiles[n];
        cls[n] = (uint8_t)point_class(axis_points(r->ry, j->partial),
                                      axis_points(r->rx, j->partial));
        start[cls[n] + 1]++;
    }
    for (int k = 0; k < 9; k++)
        start[k + 1] += start[k];
    for (int64_t n = 0; n < j->N; n++)
        order[start[cls[n]]++] = n;
    free(cls);
    memset(j->map, 0, (size_t)((j->N + 15) / 16) * sizeof *j->map);
    memset(j->np, 0, sizeof j->np);
    for (int64_t n = 0; n < j->N; n++) {
        const tile_ref *r = &j->tiles[order[n]];
        nn_wino16_map *g = &j->map[n / 16];
        const int l = (int)(n % 16);
        const unsigned py = axis_points(r->ry, j->partial), px = axis_points(r->rx, j->partial);
        const uint16_t bit = (uint16_t)(1u << l);
        if (r->pin > INT32_MAX) {
            free(order);
            return 0;
        }
        j->pin[n] = (int32_t)r->pin;
        if (l == 0)
            for (int p = 0; p < 36; p++)
                g->off[p] = (int32_t)j->np[p];
        for (int p = 0; p < 36; p++)
            if ((py >> (p / 6)) & (px >> (p % 6)) & 1) {
                g->use[p] |= bit;
                j->np[p]++;
            }
        g->y3 |= py == 0x2f ? bit : 0;
        g->y2 |= py == 0x27 ? bit : 0;
        g->x3 |= px == 0x2f ? bit : 0;
        g->x2 |= px == 0x27 ? bit : 0;
        for (int u = 0; u < 4 && r->ry->out[u] >= 0; u++)
            for (int v = 0; v < 4 && r->rx->out[v] >= 0; v++) {
                const int64_t yo = r->yoff + r->ry->out[u] * ldy + r->rx->out[v];
                const int64_t ro = r->roff + r->ry->out[u] * ldr + r->rx->out[v];
                if (yo > INT32_MAX || ro > INT32_MAX) {
                    free(order);
                    return 0;
                }
                g->y[u * 4 + v][l] = (int32_t)yo;
                g->r[u * 4 + v][l] = (int32_t)ro;
                g->live[u * 4 + v] |= bit;
            }
    }
    free(order);
    return 1;
}

/* The N tiles of planes [pl0, pl0+npl): where each patch starts in padded
 * planes that begin with plane pl0, where its plane starts in y and res. */
static void fill_tiles(wino_job *j, const axis_tile *ty, int64_t ny, int64_t nx)
{
    const int64_t tpp = ny * nx;
    tile_ref *refs = j->tiles;

    for (int64_t n = 0; n < j->N; n++) {
        const int64_t pl = j->pl0 + n / tpp, b = pl / j->T, t = pl % j->T;
        const axis_tile *ry = &ty[n % tpp / nx], *rx = &ty[ny + n % nx];
        refs[n].pin = (n / tpp) * j->hp * j->wp + (ry->org + j->lo[0]) * j->wp + rx->org +
                      j->lo[1];
        refs[n].yoff = b * j->y->stride[NN_B] + t * j->y->stride[NN_T];
        refs[n].roff = j->res ? b * j->res->stride[NN_B] + t * j->res->stride[NN_T] : 0;
        refs[n].ry = ry;
        refs[n].rx = rx;
    }
    /* once per group here, rather than for every channel of it */
    for (int64_t n = 0; n < j->N; n += NN_LANES) {
        const int whole = j->N - n >= NN_LANES;
        refs[n].sbs_in = (uint8_t)(whole && side_by_side_in(refs + n));
        refs[n].sbs_out = (uint8_t)(whole && side_by_side_out(refs + n));
    }
    j->wide = j->pin && fill_wide(j);
    if (!j->wide)
        for (int p = 0; p < 36; p++)
            j->np[p] = j->N;
    /* the threads take the points in turn, the largest products first so
     * that the last ones, where a thread may wait, are short */
    for (int p = 0, q = 0; p < 36; p++) {
        for (q = p; q > 0 && j->np[j->big[q - 1]] < j->np[p]; q--)
            j->big[q] = j->big[q - 1];
        j->big[q] = (int8_t)p;
    }
}

/* ---- fused: all three steps block by block -----------------------------
 *
 * With few channels and many tiles (R(2+1)D's first layer: 64 -> 144
 * channels, 6,272 tiles per clip) the phased steps above send V and M
 * through memory, 36 x (cin + cout) floats per tile written and read back,
 * and the products wait on that traffic.  Here the input is padded once,
 * and each task takes NN_FUSE_NB consecutive tiles through the input
 * transform, the 36 products and the output transform, its V and M (2 MB
 * at 64 tiles) staying in L2 or L3; the transformed weights (at most
 * NN_FUSE_WEIGHTS) are read again by every block.  Measured on that layer
 * (ms per clip, 2 threads, 2 alternating runs): 31.4-33.6 at 64 tiles
 * against 34.1-36.7 phased; 32 tiles were no faster than phased (the
 * weights read per block weigh more), 128 no faster than 64. */
#define NN_FUSE_WEIGHTS (2u << 20)
#define NN_FUSE_NB 64

/* The phased job's convolution, geometry and tiles (w: all planes, pin
 * into the padded copy), and what the fused path adds. */
typedef struct fused_job {
    const wino_job *w;
    nn_pool *pool;
    int64_t planes, chs;          /* floats per channel of the padded copy */
    int64_t vs, ms;               /* point strides of a block's V and M */
    int64_t np[36];               /* a block's rows: NN_FUSE_NB tiles each */
    size_t pad_floats, blk_floats;
} fused_job;

/* Floats from one point's block of V or M to the next: point blocks a
 * power of two apart would all fall into the same cache sets, so they are
 * padded to an odd number of cache lines. */
static int64_t point_stride(int64_t n)
{
    n = (n + 15) / 16 * 16;
    return n + ((n / 16) % 2 ? 0 : 16);
}

static float *fused_pad(const fused_job *f)
{
    return nn_pool_scratch(f->pool, 0, f->pad_floats + f->blk_floats);
}

/* The padded copy of input channels [task * cin_chunk, ...): only the
 * borders are zeroed. */
static void fused_copy(void *arg, int task, int thread)
{
    const fused_job *f = arg;
    const wino_job *j = f->w;
    const nn_tensor *x = j->x;
    const int64_t c0 = (int64_t)task * j->cin_chunk;
    const int64_t c1 = c0 + j->cin_chunk < j->c->cin ? c0 + j->cin_chunk : j->c->cin;
    const int64_t Hi = x->shape[NN_H], Wi = x->shape[NN_W], right = j->wp - j->lo[1] - Wi;
    float *pad = fused_pad(f);

    (void)thread;
    for (int64_t ci = c0; ci < c1; ci++)
        for (int64_t pl = 0; pl < f->planes; pl++) {
            const float *src = x->data + ci * x->stride[NN_C] + (pl / j->T) * x->stride[NN_B] +
                               (pl % j->T) * x->stride[NN_T];
            float *dst = pad + ci * f->chs + pl * j->hp * j->wp;
            memset(dst, 0, (size_t)(j->lo[0] * j->wp) * sizeof *dst);
            for (int64_t h = 0; h < Hi; h++) {
                float *row = dst + (j->lo[0] + h) * j->wp;
                memset(row, 0, (size_t)j->lo[1] * sizeof *row);
                memcpy(row + j->lo[1], src + h * x->stride[NN_H], (size_t)Wi * sizeof *row);
                memset(row + j->lo[1] + Wi, 0, (size_t)right * sizeof *row);
            }
            memset(dst + (j->lo[0] + Hi) * j->wp, 0,
                   (size_t)((j->hp - j->lo[0] - Hi) * j->wp) * sizeof *dst);
        }
}

static void fused_block(void *arg, int task, int thread)
{
    const fused_job *f = arg;
    const wino_job *j = f->w;
    const nn_conv *c = j->c;
    const int64_t n0 = (int64_t)task * NN_FUSE_NB;
    const int64_t n = j->N - n0 < NN_FUSE_NB ? j->N - n0 : NN_FUSE_NB;
    const size_t psz = nn_sgemm_pack_size(c->cout, c->cin);
    const float *pad = fused_pad(f);
    float *V = nn_pool_scratch(f->pool, thread, f->pad_floats + f->blk_floats) +
               (thread == 0 ? f->pad_floats : 0);
    float *M = V + 36 * f->vs;

    for (int64_t ci = 0; ci < c->cin; ci++)
        if (j->wide)
            nn_wino16_in(pad + ci * f->chs, j->pin + n0, n, j->patch, j->map + n0 / 16, V, f->vs,
                         f->np, ci);
        else
            input_channel(pad + ci * f->chs, j->tiles + n0, n, j->patch, 1,
                          V + ci * NN_FUSE_NB, f->vs);
    for (int p = 0; p < 36; p++)
        nn_sgemm_packed(c->cout, (int)n, c->cin, c->wu + (size_t)p * psz,
                        (int64_t)c->cin * NN_SGEMM_MR, V + p * f->vs, NN_FUSE_NB,
                        M + p * f->ms, NN_FUSE_NB, 0, NULL, NULL);
    for (int64_t co = 0; co < c->cout; co++)
        if (j->wide)
            nn_wino16_out(M, f->ms, f->np, co, n, j->map + n0 / 16, c->b[co],
                          j->y->data + co * j->y->stride[NN_C],
                          j->res ? j->res->data + co * j->res->stride[NN_C] : NULL, j->relu);
        else
            output_channel(c, j->y, j->res, j->relu, co, j->tiles + n0, n,
                           M + co * NN_FUSE_NB, f->ms);
}

/* The fused path where it applies (returns 1 when it ran the convolution,
 * *rc its result; 0 to leave it to the phased one).  pj: the phased job's
 * convolution and geometry; its tiles are filled here, for every plane. */
static int wino_fused(nn_pool *pool, wino_job *pj, const axis_tile *ty, int64_t ny,
                      int64_t nx, int64_t planes, int *rc, en_err *err)
{
    const nn_conv *c = pj->c;
    const int nth = nn_pool_size(pool);
    const int64_t N = planes * ny * nx;
    const char *e = getenv("EN_NN_WINO_FUSED");
    fused_job f;
    int fail;

    if ((e && *e == '0') || !c->wu_packed || c->d[1] != 1 || c->d[2] != 1 ||
        (!(e && *e == '1') &&
         (36 * (size_t)c->cout * (size_t)c->cin * sizeof(float) > NN_FUSE_WEIGHTS ||
          N < 4 * (int64_t)nth * NN_FUSE_NB)))
        return 0;
    memset(&f, 0, sizeof f);
    f.w = pj;
    f.pool = pool;
    f.planes = planes;
    f.chs = planes * pj->hp * pj->wp;
    f.vs = point_stride(c->cin * NN_FUSE_NB);
    f.ms = point_stride(c->cout * NN_FUSE_NB);
    for (int p = 0; p < 36; p++)
        f.np[p] = NN_FUSE_NB;
    f.pad_floats = (size_t)(c->cin * f.chs + 16) / 16 * 16;
    f.blk_floats = 36 * (size_t)(f.vs + f.ms) + 16;
    for (int t = 0; t < nth; t++)
        if (!nn_pool_scratch(pool, t, t == 0 ? f.pad_floats + f.blk_floats : f.blk_floats)) {
            *rc = en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
            return 1;
        }
    tiles_alloc(pj, N, &fail);
    if (fail) {
        tiles_free(pj);
        *rc = en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
        return 1;
    }
    pj->pl0 = 0;
    pj->npl = planes;
    pj->N = N;
    fill_tiles(pj, ty, ny, nx);
    nn_pool_run(pool, (int)((c->cin + pj->cin_chunk - 1) / pj->cin_chunk), fused_copy, &f);
    nn_pool_run(pool, (int)((N + NN_FUSE_NB - 1) / NN_FUSE_NB), fused_block, &f);
    tiles_free(pj);
    *rc = EN_OK;
    return 1;
}

int nn_conv_wino(nn_pool *pool, const nn_conv *c, const nn_tensor *x, nn_tensor *y,
                 const nn_tensor *res, int relu, const int64_t in[3], const int64_t out[3],
                 en_err *err)
{
    const int nth = nn_pool_size(pool);
    const int64_t ny = axis_count(out[1], c->d[1]), nx = axis_count(out[2], c->d[2]);
    const int64_t planes = x->shape[NN_B] * in[0], tpp = ny * nx;
    wino_job j;
    axis_tile *ty;
    int64_t chunk, hi[2];
    int rc, fail = 1;
    size_t per_plane, need;
    float *buf;

    ty = malloc((size_t)(ny + nx) * sizeof *ty);
    if (!ty)
        return en_err_set(err, EN_ENOMEM, "nn: out of memory");
    memset(&j, 0, sizeof j);
    axis_fill(ty, in[1], out[1], c->d[1], c->p[1], &j.lo[0], &hi[0]);
    axis_fill(ty + ny, in[2], out[2], c->d[2], c->p[2], &j.lo[1], &hi[1]);
    j.hp = j.lo[0] + in[1] + hi[0];
    j.wp = j.lo[1] + in[2] + hi[1];
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 6; k++)
            j.patch[i * 6 + k] = (int32_t)((int64_t)c->d[1] * i * j.wp + (int64_t)c->d[2] * k);
    j.c = c;
    j.x = x;
    j.y = y;
    j.res = res;
    j.relu = relu;
    j.T = in[0];
    j.cin_chunk = (c->cin + 4 * nth - 1) / (4 * nth);
    j.cout_chunk = (c->cout + 4 * nth - 1) / (4 * nth);
    if (wino_fused(pool, &j, ty, ny, nx, planes, &rc, err)) {
        free(ty);
        return rc;
    }
    /* EN_NN_WINO_PARTIAL=0: partial tiles use all 6 points, as on the
     * 4-float path (comparisons, tests) */
    {
        const char *e = getenv("EN_NN_WINO_PARTIAL");
        j.partial = !(e && *e == '0');
    }
    /* V and M of a chunk of planes under NN_WINO_BYTES, in equal chunks */
    per_plane = 36 * (size_t)tpp * ((size_t)c->cin + (size_t)c->cout);
    chunk = (int64_t)(NN_WINO_BYTES / sizeof(float) / per_plane);
    if (chunk < 1)
        chunk = 1;
    if (chunk > planes)
        chunk = planes;
    chunk = (planes + (planes + chunk - 1) / chunk - 1) / ((planes + chunk - 1) / chunk);
    j.padsz = (chunk * j.hp * j.wp + 15) / 16 * 16;
    /* one shared buffer (V, M, each thread's padded planes): the calling
     * thread's scratch; point blocks get an odd number of cache lines of
     * slack (see below) */
    need = per_plane * (size_t)chunk + 72 * 32 + (size_t)nth * (size_t)j.padsz + 16;
    buf = nn_pool_scratch(pool, 0, need);
    if (buf)
        tiles_alloc(&j, chunk * tpp, &fail);
    if (fail) {
        free(ty);
        tiles_free(&j);
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for a convolution");
    }
    for (j.pl0 = 0; j.pl0 < planes; j.pl0 += chunk) {
        j.npl = planes - j.pl0 < chunk ? planes - j.pl0 : chunk;
        j.N = j.npl * tpp;
        j.vstride = point_stride(c->cin * j.N);
        j.mstride = point_stride(c->cout * j.N);
        j.V = buf;
        j.M = j.V + 36 * (size_t)j.vstride;
        j.pad = j.M + 36 * (size_t)j.mstride;
        fill_tiles(&j, ty, ny, nx);
        nn_pool_run(pool, (int)((c->cin + j.cin_chunk - 1) / j.cin_chunk), wino_input, &j);
        nn_pool_run(pool, 36, wino_gemm, &j);
        nn_pool_run(pool, (int)((c->cout + j.cout_chunk - 1) / j.cout_chunk), wino_output, &j);
    }
    free(ty);
    tiles_free(&j);
    return EN_OK;
}

/*
 * conv_wino_avx512.c - Winograd's input and output transforms on 16 tiles
 * at once (AVX-512F), for conv_wino.c.
 *
 * Why: on 4-float vectors, with scalar gathers wherever the patches are
 * not four side by side (every dilated layer, the ends of rows), the
 * transforms took 18 ms of segmentation's 205 per 8 frames, more than a
 * third of what its 36 products per layer took.  Here each of a patch's
 * 36 points is one hardware gather over 16 tiles, the formulas run on 16
 * lanes, and each output is one masked scatter: the same arithmetic, lane
 * for lane, as the 4-float path (tests/test-nn-ops.c compares them bit
 * for bit where every tile uses all 36 points).  Measured: the transforms
 * 8 ms instead of 18 (the 512-channel layers' input 0.51 against 1.47 ms,
 * output 0.5 against 0.9; what is left is mostly V and M going through
 * L3), segmentation 24.4-25.6 against 25.9-26.5 ms/frame in 3 alternating
 * rounds.
 *
 * Partial tiles at the sub-grids' edges use fewer points (BT5, BT4, AT5,
 * AT4 below; the map says which lanes, conv_wino.c which columns): on
 * segmentation's 14x14 layers 16 % fewer products, the Winograd layers
 * 43.3-44.9 against 46.4-48.6 ms per 8 frames (3 alternating rounds, each
 * layer's best of 6).
 *
 * Compiled for AVX-512F by a target pragma; conv_wino.c calls it only
 * where nn_wino16_usable says cpu.c found AVX-512.
 */
#include "gemm_int.h"
#include "wino_int.h"

#include <stdlib.h>

#ifdef NN_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
/* lane for lane the 4-float path's results: no contraction into FMAs */
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

typedef float v16 __attribute__((vector_size(64)));

/* floats ahead (4 lines) that each point's stream of V's stores and M's
 * loads is prefetched: 36 streams are more than the hardware prefetcher
 * follows */
#define NN_W16_AHEAD 64

/* B^T x for tiles of 3 outputs along the axis: F(3,3) on F(4,3)'s points
 * 0, 1, -1, 2, inf (indices 0, 1, 2, 3, 5; 4 unused), its rows scaled to
 * F(4,3)'s G (made by solving the filtering identity for B^T with A^T
 * and G fixed; test-nn-ops checks the convolutions against the direct
 * loop) */
#define BT5(x, s, y, so) do {                                                    \
        v16 x0 = (x)[0], x1 = (x)[(s)], x2 = (x)[2 * (s)], x3 = (x)[3 * (s)],  \
            x4 = (x)[4 * (s)];                                                   \
        (y)[0] = 4.0f * x0 - 2.0f * x1 - 4.0f * x2 + 2.0f * x3;                  \
        (y)[(so)] = -6.0f * x1 - 3.0f * x2 + 3.0f * x3;                          \
        (y)[2 * (so)] = 2.0f * x1 - 3.0f * x2 + x3;                              \
        (y)[3 * (so)] = 4.0f * (x3 - x1);                                        \
        (y)[4 * (so)] = (v16){ 0 };                                              \
        (y)[5 * (so)] = 2.0f * x1 - x2 - 2.0f * x3 + x4;                         \
    } while (0)

/* ... 2 outputs (or 1): F(2,3) on points 0, 1, -1, inf (indices 0, 1, 2, 5) */
#define BT4(x, s, y, so) do {                                                    \
        v16 x0 = (x)[0], x1 = (x)[(s)], x2 = (x)[2 * (s)], x3 = (x)[3 * (s)];  \
        (y)[0] = 4.0f * (x0 - x2);                                               \
        (y)[(so)] = -3.0f * (x1 + x2);                                           \
        (y)[2 * (so)] = 3.0f * (x1 - x2);                                        \
        (y)[3 * (so)] = (y)[4 * (so)] = (v16){ 0 };                              \
        (y)[5 * (so)] = x3 - x1;                                                 \
    } while (0)

/* A^T m for the same two: A^T[j][i] = x_i^j, the inf point in the last
 * output */
#define AT5(m, s, y, so) do {                                                    \
        v16 m0 = (m)[0], m1 = (m)[(s)], m2 = (m)[2 * (s)], m3 = (m)[3 * (s)],  \
            m5 = (m)[5 * (s)];                                                   \
        (y)[0] = m0 + m1 + m2 + m3;                                              \
        (y)[(so)] = m1 - m2 + 2.0f * m3;                                         \
        (y)[2 * (so)] = m1 + m2 + 4.0f * m3 + m5;                                \
        (y)[3 * (so)] = (v16){ 0 };                                              \
    } while (0)

#define AT4(m, s, y, so) do {                                                    \
        v16 m0 = (m)[0], m1 = (m)[(s)], m2 = (m)[2 * (s)], m5 = (m)[5 * (s)];  \
        (y)[0] = m0 + m1 + m2;                                                   \
        (y)[(so)] = m1 - m2 + m5;                                                \
        (y)[2 * (so)] = (y)[3 * (so)] = (v16){ 0 };                              \
    } while (0)

static inline v16 pick(__mmask16 k, v16 a, v16 b)
{
    return (v16)_mm512_mask_blend_ps(k, (__m512)a, (__m512)b);
}

/* as many lanes from the first as k has */
static inline __mmask16 first(__mmask16 k)
{
    return (__mmask16)((1u << __builtin_popcount(k)) - 1);
}

static inline __mmask16 lanes_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* Which formulas a group runs along an axis (lanes k3: F(3,3), k2:
 * F(2,3), the others F(4,3)): 3 or 2 where every live lane runs that one,
 * 4 where none runs either (most groups: the tiles come sorted), 0 where
 * they mix and the three are blended. */
static inline int axis_kind(__mmask16 k3, __mmask16 k2, __mmask16 live)
{
    if ((k3 & live) == live)
        return 3;
    if ((k2 & live) == live)
        return 2;
    return k3 | k2 ? 0 : 4;
}

/* out[i * so] = B^T x along one axis for a 6-vector (stride s) */
static inline void bt_axis(const v16 *x, int s, v16 *out, int so, __mmask16 k3, __mmask16 k2,
                           __mmask16 live)
{
    const int kind = axis_kind(k3, k2, live);
    v16 t3[6], t2[6];

    if (kind == 3)
        BT5(x, s, out, so);
    else if (kind == 2)
        BT4(x, s, out, so);
    else
        NN_WINO_BT6(v16, x, s, out, so);
    if (kind)
        return;
    BT5(x, s, t3, 1);
    BT4(x, s, t2, 1);
    for (int i = 0; i < 6; i++)
        out[i * so] = pick(k2, pick(k3, out[i * so], t3[i]), t2[i]);
}

/* out[i * so] = A^T m along one axis, the same way */
static inline void at_axis(const v16 *m, int s, v16 *out, int so, __mmask16 k3, __mmask16 k2,
                           __mmask16 live)
{
    const int kind = axis_kind(k3, k2, live);
    v16 t3[4], t2[4];

    if (kind == 3)
        AT5(m, s, out, so);
    else if (kind == 2)
        AT4(m, s, out, so);
    else
        NN_WINO_AT6(v16, m, s, out, so);
    if (kind)
        return;
    AT5(m, s, t3, 1);
    AT4(m, s, t2, 1);
    for (int i = 0; i < 4; i++)
        out[i * so] = pick(k2, pick(k3, out[i * so], t3[i]), t2[i]);
}

void nn_wino16_in(const float *pad, const int32_t *pin, int64_t n, const int32_t patch[36],
                  const nn_wino16_map *map, float *V, int64_t pstride, const int64_t np[36],
                  int64_t ci)
{
    const nn_wino16_map *g = map;

    for (int64_t n0 = 0; n0 < n; n0 += 16, g++) {
        const __mmask16 live = lanes_mask(n - n0);
        const __m512i at = _mm512_maskz_loadu_epi32(live, pin + n0);
        v16 d[36], t[36];

        for (int p = 0; p < 36; p++)
            d[p] = (v16)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, at,
                                                 pad + patch[p], 4);
        for (int k = 0; k < 6; k++)        /* columns: t = B^T d */
            bt_axis(d + k, 6, t + k, 6, g->y3, g->y2, live);
        for (int i = 0; i < 6; i++)        /* rows: (B^T d) B */
            bt_axis(t + i * 6, 1, d + i * 6, 1, g->x3, g->x2, live);
        for (int p = 0; p < 36; p++) {
            float *v = V + p * pstride + ci * np[p] + (g->off[p] - map->off[p]);
            _mm_prefetch((const char *)(v + NN_W16_AHEAD), _MM_HINT_T0);
            /* compressed in a register, then stored: vcompressps to
             * memory is much slower on Intel cores */
            _mm512_mask_storeu_ps(v, first(g->use[p]),
                                  _mm512_maskz_compress_ps(g->use[p], (__m512)d[p]));
        }
    }
}

void nn_wino16_out(const float *M, int64_t pstride, const int64_t np[36], int64_t co,
                   int64_t n, const nn_wino16_map *map, float bias, float *yc,
                   const float *rc, int relu)
{
    const nn_wino16_map *g = map;

    for (int64_t n0 = 0; n0 < n; n0 += 16, g++) {
        const __mmask16 live = lanes_mask(n - n0);
        v16 m[36], t[24], o[16];

        for (int p = 0; p < 36; p++) {
            const float *mp = M + p * pstride + co * np[p] + (g->off[p] - map->off[p]);
            _mm_prefetch((const char *)(mp + NN_W16_AHEAD), _MM_HINT_T0);
            m[p] = (v16)_mm512_maskz_expand_ps(g->use[p],
                                               _mm512_maskz_loadu_ps(first(g->use[p]), mp));
        }
        for (int k = 0; k < 6; k++)        /* t[4][6] = A^T m */
            at_axis(m + k, 6, t + k, 6, g->y3, g->y2, live);
        for (int u = 0; u < 4; u++) {      /* o[4][4] = t A, + bias */
            v16 r4[4];
            at_axis(t + u * 6, 1, r4, 1, g->x3, g->x2, live);
            for (int v = 0; v < 4; v++)
                o[u * 4 + v] = r4[v] + bias;
        }
        for (int q = 0; q < 16; q++) {
            const __mmask16 k = g->live[q];
            __m512 val = (__m512)o[q];
            if (!k)
                continue;
            if (rc)
                val = _mm512_add_ps(val, _mm512_mask_i32gather_ps(
                                             _mm512_setzero_ps(), k,
                                             _mm512_loadu_si512(g->r[q]), rc, 4));
            /* max with 0 as the second operand turns NaN into 0, as the
             * epilogue does */
            if (relu)
                val = _mm512_max_ps(val, _mm512_setzero_ps());
            _mm512_mask_i32scatter_ps(yc, k, _mm512_loadu_si512(g->y[q]), val, 4);
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

int nn_wino16_usable(void)
{
    const char *e = getenv("EN_NN_WINO16");
    return nn_cpu_get()->avx512 && !(e && *e == '0');
}
#else
/* (never called: nn_wino16_usable is 0) */
void nn_wino16_in(const float *pad, const int32_t *pin, int64_t n, const int32_t patch[36],
                  const nn_wino16_map *map, float *V, int64_t pstride, const int64_t np[36],
                  int64_t ci)
{
    (void)pad, (void)pin, (void)n, (void)patch, (void)map, (void)V, (void)pstride, (void)np;
    (void)ci;
    abort();
}

void nn_wino16_out(const float *M, int64_t pstride, const int64_t np[36], int64_t co,
                   int64_t n, const nn_wino16_map *map, float bias, float *yc,
                   const float *rc, int relu)
{
    (void)M, (void)pstride, (void)np, (void)co, (void)n, (void)map, (void)bias, (void)yc;
    (void)rc, (void)relu;
    abort();
}

int nn_wino16_usable(void)
{
    return 0;
}
#endif

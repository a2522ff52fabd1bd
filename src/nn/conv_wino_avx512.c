/*
 * conv_wino_avx512.c - Winograd's input and output transforms on 16 tiles
 * at once (AVX-512F), for conv_wino.c.
 *
 * Why: on 4-float vectors, with scalar gathers wherever the patches are
 * not four side by side (every dilated layer, the ends of rows), the
 * transforms took 18 ms of segmentation's 205 per 8 frames, more than a
 * third of what its 36 products per layer took.  Here each of a patch's
 * 36 points is one hardware gather over 16 tiles, the formulas run on
 * 16 lanes, and each output is one masked scatter: the same arithmetic,
 * lane for lane, as the 4-float path (tests/test-nn-ops.c compares them
 * bit for bit).  Measured: the transforms 8 ms instead of 18 (the 512-channel
 * layers' input 0.51 against 1.47 ms, output 0.5 against 0.9; what is left
 * is mostly V and M going through L3), segmentation 24.4-25.6 against
 * 25.9-26.5 ms/frame in 3 alternating rounds.
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

/* lines ahead (per point stream) that V's stores and M's loads are
 * prefetched: 36 streams are more than the hardware prefetcher follows */
#define NN_W16_AHEAD 64

static inline __mmask16 lanes_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

void nn_wino16_in(const float *pad, const int32_t *pin, int64_t n, const int32_t patch[36],
                  float *V, int64_t pstride)
{
    for (int64_t n0 = 0; n0 < n; n0 += 16) {
        const __mmask16 live = lanes_mask(n - n0);
        const __m512i at = _mm512_maskz_loadu_epi32(live, pin + n0);
        v16 d[36], t[36];

        for (int p = 0; p < 36; p++)
            d[p] = (v16)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, at,
                                                 pad + patch[p], 4);
        for (int k = 0; k < 6; k++)        /* columns: t = B^T d */
            NN_WINO_BT6(v16, d + k, 6, t + k, 6);
        for (int i = 0; i < 6; i++)        /* rows: (B^T d) B */
            NN_WINO_BT6(v16, t + i * 6, 1, d + i * 6, 1);
        for (int p = 0; p < 36; p++) {
            float *v = V + p * pstride + n0;
            _mm_prefetch((const char *)(v + NN_W16_AHEAD), _MM_HINT_T0);
            _mm512_mask_storeu_ps(v, live, (__m512)d[p]);
        }
    }
}

void nn_wino16_out(const float *M, int64_t pstride, int64_t n, const nn_wino16_map *map,
                   float bias, float *yc, const float *rc, int relu)
{
    for (int64_t n0 = 0; n0 < n; n0 += 16, map++) {
        const __mmask16 live = lanes_mask(n - n0);
        v16 m[36], t[24], o[16];

        for (int p = 0; p < 36; p++) {
            const float *mp = M + p * pstride + n0;
            _mm_prefetch((const char *)(mp + NN_W16_AHEAD), _MM_HINT_T0);
            m[p] = (v16)_mm512_maskz_loadu_ps(live, mp);
        }
        for (int k = 0; k < 6; k++)        /* t[4][6] = A^T m */
            NN_WINO_AT6(v16, m + k, 6, t + k, 6);
        for (int u = 0; u < 4; u++) {      /* o[4][4] = t A, + bias */
            v16 r4[4];
            NN_WINO_AT6(v16, t + u * 6, 1, r4, 1);
            for (int v = 0; v < 4; v++)
                o[u * 4 + v] = r4[v] + bias;
        }
        for (int q = 0; q < 16; q++) {
            const __mmask16 k = map->live[q];
            __m512 val = (__m512)o[q];
            if (!k)
                continue;
            if (rc)
                val = _mm512_add_ps(val, _mm512_mask_i32gather_ps(
                                             _mm512_setzero_ps(), k,
                                             _mm512_loadu_si512(map->r[q]), rc, 4));
            /* max with 0 as the second operand turns NaN into 0, as the
             * epilogue does */
            if (relu)
                val = _mm512_max_ps(val, _mm512_setzero_ps());
            _mm512_mask_i32scatter_ps(yc, k, _mm512_loadu_si512(map->y[q]), val, 4);
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
                  float *V, int64_t pstride)
{
    (void)pad, (void)pin, (void)n, (void)patch, (void)V, (void)pstride;
    abort();
}

void nn_wino16_out(const float *M, int64_t pstride, int64_t n, const nn_wino16_map *map,
                   float bias, float *yc, const float *rc, int relu)
{
    (void)M, (void)pstride, (void)n, (void)map, (void)bias, (void)yc, (void)rc, (void)relu;
    abort();
}

int nn_wino16_usable(void)
{
    return 0;
}
#endif

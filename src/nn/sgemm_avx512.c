/*
 * sgemm_avx512.c - the fp32 matrix products on AVX-512F: C[m x n] = A[m x k]
 * B[k x n] with A (the weights) packed once, when a convolution is planned,
 * for every fp32 path (conv.c, conv_taps.c, conv_wino.c); OpenBLAS takes
 * them on CPUs without AVX-512.
 *
 * Why not cblas_sgemm: it packs both operands on every call (8 % and 4 %
 * of DeepLabV3's fp32 time went to OpenBLAS's copy routines, 3 % to zeroing
 * C before the product), and the bias, residual and ReLU were a further
 * pass over the output.  Here the weights are packed once, B is copied only
 * where its rows are far apart (a K slice of input planes at a time, at
 * most 1 MB, so it stays in L2), and the epilogue comes with the last K
 * slice; frame-shift products take B's rows from the shifted frames as
 * they copy them (nn_sgemm_rows), one product over every temporal tap.
 *
 * Micro-kernel: 14 rows x 32 columns in 28 zmm accumulators; per k, two
 * loads of B and fourteen broadcasts of A (one 56-byte row of the packed
 * panel) for 28 FMAs.  12 rows (24 FMAs per k) had run the layer-shaped
 * products 3-7 % slower (2 threads, 5 alternating rounds: 2048x512 over
 * 1,568 columns 341 against 329 GFLOP/s, 1024x256 330 against 307), and
 * segmentation's 1x1 convolutions 148 against 152 ms per 8 frames.  Column tails are masked loads and stores (lanes
 * past n are neither read nor written); full panels load unmasked.
 *
 * Compiled for AVX-512F by a target pragma; callers take this path only
 * where cpu.c found AVX-512 usable (nn_sgemm_packed_usable).
 */
#include "gemm_int.h"

#include <stdlib.h>

#define NN_SMR NN_SGEMM_MR
/* K slice: a 14-row panel of A is 28 KB, in L1 while it meets the
 * slice's column panels; each further slice reads and writes C again
 * (with column panels as the inner loop, 384 and 768 were no faster:
 * segmentation 32.4-36.4 and 32.9-35.1 against 33.0-34.2 ms/frame) */
#define NN_SKC NN_SGEMM_KC

/* Where B's rows are: B + k * ldb, or rows[k] (column lo[k]'s value; the
 * row holds columns [lo[k], hi[k]), zeros elsewhere). */
typedef struct nn_sgemm_b {
    const float *B;
    int64_t ldb;
    const float *const *rows;
    const int32_t *lo, *hi;
} nn_sgemm_b;

#ifdef NN_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#endif

static inline __attribute__((always_inline)) void block(const int mr, int64_t k,
                                                        const float *A, const float *B,
                                                        int64_t ldb, float *C, int64_t ldc,
                                                        __mmask16 m0, __mmask16 m1, int add,
                                                        const nn_sgemm_epi *epi, int64_t row,
                                                        const int full, const int half)
{
    __m512 acc[NN_SMR][2];

    /* full: all 32 columns, B's loads unmasked (with masks GCC reloaded
     * them from the stack at every k step: segmentation 35.5-36.0 against
     * 32.5-33.6 ms/frame unmasked) */
    if (full)
        m0 = m1 = 0xFFFF;

    /* C to add (a later K slice: from L3, the tile's C being more than
     * L2) is prefetched here and added after the k loop, not loaded into
     * the accumulators, so the first FMAs do not wait for it: the 1x1
     * convolutions 54.0-59.2 and 66.8-71.6 ms (K < 1024, K >= 1024, per 8
     * frames) against 55.8-59.8 and 67.6-78.9, lower in each of 4
     * alternating rounds */
#pragma GCC unroll 14
    for (int r = 0; r < mr; r++) {
        if (add) {
            _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + r * ldc + 16), _MM_HINT_T0);
        }
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    }
    /* half: a column tail of at most 16, one vector per row and half the
     * FMAs (a Winograd point used by 72 tiles: 64 + 8 columns) */
    for (int64_t kk = 0; kk < k; kk++) {
        /* A's panel comes from L3 or memory on its first column panel,
         * across a page every 73 k steps, where the hardware's prefetch
         * starts over: 32 steps (1.5 KB) ahead, segmentation's 1x1
         * convolutions 165-170 against 171-176 ms per 8 frames */
        _mm_prefetch((const char *)(A + (kk + 32) * NN_SMR), _MM_HINT_T0);
        /* B's two lines 32 k steps ahead into L2: a packed column panel
         * (64 KB) is more than L1, and Winograd reads its points in place,
         * one row of tiles per k step; the hardware's streams alone left the
         * kernel waiting (segmentation 25.7-29.0 against 27.3-29.9
         * ms/frame, EF 408-429 against 419-454 ms/clip; into L1 instead
         * 26.1-29.2, 16 or 64 steps ahead no better, non-temporal 35) */
        _mm_prefetch((const char *)(B + (kk + 32) * ldb), _MM_HINT_T1);
        if (!half)
            _mm_prefetch((const char *)(B + (kk + 32) * ldb + 16), _MM_HINT_T1);
        const __m512 b0 = full ? _mm512_loadu_ps(B + kk * ldb) :
                                 _mm512_maskz_loadu_ps(m0, B + kk * ldb);
        const __m512 b1 = half ? _mm512_setzero_ps() :
                          full ? _mm512_loadu_ps(B + kk * ldb + 16) :
                                 _mm512_maskz_loadu_ps(m1, B + kk * ldb + 16);
#pragma GCC unroll 14
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(A[kk * NN_SMR + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            if (!half)
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    if (add) {
#pragma GCC unroll 14
        for (int r = 0; r < mr; r++) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, C + r * ldc));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, C + r * ldc + 16));
        }
    }
    if (epi) {
        /* bias, residual, ReLU in the order of nn_conv_epilogue; max with
         * 0 as the second operand turns NaN into 0 as it does */
#pragma GCC unroll 14
        for (int r = 0; r < mr; r++) {
            if (epi->bias) {
                const __m512 bv = _mm512_set1_ps(epi->bias[row + r]);
                acc[r][0] = _mm512_add_ps(acc[r][0], bv);
                acc[r][1] = _mm512_add_ps(acc[r][1], bv);
            }
            if (epi->res) {
                const float *rr = epi->res + (row + r) * epi->ldr;
                acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, rr));
                acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, rr + 16));
            }
            if (epi->relu) {
                acc[r][0] = _mm512_max_ps(acc[r][0], _mm512_setzero_ps());
                acc[r][1] = _mm512_max_ps(acc[r][1], _mm512_setzero_ps());
            }
        }
    }
#pragma GCC unroll 14
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, acc[r][1]);
    }
}

/* Copies rows [k0, k0+kc) of B's columns [0, n) into 32-column panels
 * [n/32][kc][32], zeros past n and outside a row's range.  Rows in groups
 * of NN_PACK_ROWS, each group panel by panel: row by row, the stores went
 * to every panel in turn, 64 KB apart and so into the same L1 set
 * (segmentation's 1x1 convolutions with K >= 1024: 73.5-80.7 against
 * 76.6-82.4 ms per 8 frames; 16 rows no different from 8). */
#define NN_PACK_ROWS 8
static void pack_b(const nn_sgemm_b *B, int k0, int kc, int n, float *out)
{
    const int np = (n + 31) / 32;
    for (int g = 0; g < kc; g += NN_PACK_ROWS) {
        const int ng = kc - g < NN_PACK_ROWS ? kc - g : NN_PACK_ROWS;
        const float *src[NN_PACK_ROWS];
        int lo[NN_PACK_ROWS], hi[NN_PACK_ROWS];
        for (int r = 0; r < ng; r++) {
            const int kk = k0 + g + r;
            lo[r] = 0;
            hi[r] = n;
            if (B->rows) {
                src[r] = B->rows[kk];
                lo[r] = B->lo[kk];
                hi[r] = B->hi[kk] < n ? B->hi[kk] : n;
            } else {
                src[r] = B->B + (int64_t)kk * B->ldb;
            }
        }
        for (int p = 0; p < np; p++) {
            const int c0 = 32 * p;
            float *dst = out + ((int64_t)p * kc + g) * 32;
            for (int r = 0; r < ng; r++, dst += 32) {
                const int a = lo[r] > c0 ? lo[r] : c0, e = hi[r] < c0 + 32 ? hi[r] : c0 + 32;
                const uint32_t live = e > a ? (uint32_t)(((1ull << (e - c0)) - 1) &
                                                         ~((1ull << (a - c0)) - 1)) : 0;
                /* (a masked load reads nothing outside its lanes) */
                const float *sp = src[r] + (c0 - lo[r]);
                _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps((__mmask16)live, sp));
                _mm512_storeu_ps(dst + 16,
                                 _mm512_maskz_loadu_ps((__mmask16)(live >> 16), sp + 16));
            }
        }
    }
}

static void product(int m, int n, int k, const float *A, int64_t apanel, const nn_sgemm_b *B,
                    float *C, int64_t ldc, int add, const nn_sgemm_epi *epi, float *bwork)
{
    /* K in slices of NN_SKC (later slices add to C).  Row panels outside,
     * column panels inside: a 14-row panel of A (28 KB) stays in L1 while
     * it meets every column panel of the slice, which stays in L2.  The
     * other way round (a 64 KB column panel of B, larger than L1, met by
     * every row panel) read both operands from L2 at each k step:
     * segmentation 33.9-37.6 against 31.2-35.4 ms/frame, EF 489-528
     * against 478-489 ms/clip. */
    for (int k0 = 0; k0 < k; k0 += NN_SKC) {
        const int kc = k - k0 < NN_SKC ? k - k0 : NN_SKC;
        const nn_sgemm_epi *e = k0 + kc == k ? epi : NULL;
        const int acc_in = add || k0 > 0;
        if (bwork)
            pack_b(B, k0, kc, n, bwork);
        for (int i = 0; i < m; i += NN_SMR) {
            const float *a = A + (int64_t)(i / NN_SMR) * apanel + (int64_t)k0 * NN_SMR;
            const int mr = m - i < NN_SMR ? m - i : NN_SMR;
            for (int j = 0; j < n; j += 32) {
                const int w = n - j < 32 ? n - j : 32;
                const __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1);
                const __mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFF :
                                                 w > 16 ? (1u << (w - 16)) - 1 : 0);
                const float *b = bwork ? bwork + (int64_t)(j / 32) * kc * 32
                                       : B->B + (int64_t)k0 * B->ldb + j;
                const int64_t lb = bwork ? 32 : B->ldb;
                float *c = C + (int64_t)i * ldc + j;
                const nn_sgemm_epi *ej = e;
                nn_sgemm_epi shifted;
                if (e && e->res) {
                    shifted = *e;
                    shifted.res = e->res + j;
                    ej = &shifted;
                }
                switch (mr) {
#define NN_SMR_CASE(r) case r:                                                       \
                    if (w == 32)                                                     \
                        block(r, kc, a, b, lb, c, ldc, m0, m1, acc_in, ej, i, 1, 0); \
                    else if (w > 16)                                                 \
                        block(r, kc, a, b, lb, c, ldc, m0, m1, acc_in, ej, i, 0, 0); \
                    else                                                             \
                        block(r, kc, a, b, lb, c, ldc, m0, m1, acc_in, ej, i, 0, 1); \
                    break;
                NN_SMR_CASE(1) NN_SMR_CASE(2) NN_SMR_CASE(3) NN_SMR_CASE(4)
                NN_SMR_CASE(5) NN_SMR_CASE(6) NN_SMR_CASE(7) NN_SMR_CASE(8)
                NN_SMR_CASE(9) NN_SMR_CASE(10) NN_SMR_CASE(11) NN_SMR_CASE(12)
                NN_SMR_CASE(13) NN_SMR_CASE(14)
#undef NN_SMR_CASE
                }
            }
        }
    }
}

void nn_sgemm_packed(int m, int n, int k, const float *A, int64_t apanel, const float *B,
                     int64_t ldb, float *C, int64_t ldc, int add, const nn_sgemm_epi *epi,
                     float *bwork)
{
    const nn_sgemm_b b = { B, ldb, NULL, NULL, NULL };
    product(m, n, k, A, apanel, &b, C, ldc, add, epi, bwork);
}

void nn_sgemm_rows(int m, int n, int k, const float *A, int64_t apanel,
                   const float *const *rows, const int32_t *lo, const int32_t *hi, float *C,
                   int64_t ldc, const nn_sgemm_epi *epi, float *bwork)
{
    const nn_sgemm_b b = { NULL, 0, rows, lo, hi };
    product(m, n, k, A, apanel, &b, C, ldc, 0, epi, bwork);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
/* (never called: nn_sgemm_packed_usable is 0; plain loops keep the
 * definitions honest on other targets) */
static float finish(float s, const nn_sgemm_epi *epi, int i, int j)
{
    if (epi && epi->bias)
        s += epi->bias[i];
    if (epi && epi->res)
        s += epi->res[(int64_t)i * epi->ldr + j];
    if (epi && epi->relu)
        s = s > 0.0f ? s : 0.0f;
    return s;
}

void nn_sgemm_rows(int m, int n, int k, const float *A, int64_t apanel,
                   const float *const *rows, const int32_t *lo, const int32_t *hi, float *C,
                   int64_t ldc, const nn_sgemm_epi *epi, float *bwork)
{
    (void)bwork;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int kk = 0; kk < k; kk++)
                if (j >= lo[kk] && j < hi[kk])
                    s += A[(i / NN_SMR) * apanel + kk * NN_SMR + i % NN_SMR] *
                         rows[kk][j - lo[kk]];
            C[(int64_t)i * ldc + j] = finish(s, epi, i, j);
        }
}

void nn_sgemm_packed(int m, int n, int k, const float *A, int64_t apanel, const float *B,
                     int64_t ldb, float *C, int64_t ldc, int add, const nn_sgemm_epi *epi,
                     float *bwork)
{
    (void)bwork;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = add ? C[(int64_t)i * ldc + j] : 0.0f;
            for (int kk = 0; kk < k; kk++)
                s += A[(i / NN_SMR) * apanel + kk * NN_SMR + i % NN_SMR] * B[kk * ldb + j];
            C[(int64_t)i * ldc + j] = finish(s, epi, i, j);
        }
}
#endif

int nn_sgemm_packed_usable(void)
{
#ifdef NN_X86_KERNELS
    const char *e = getenv("EN_NN_FP32_KERNEL");
    return nn_cpu_get()->avx512 && !(e && *e == '0');
#else
    return 0;
#endif
}

size_t nn_sgemm_bwork_size(int n)
{
    return (size_t)NN_SKC * (size_t)((n + 31) / 32 * 32);
}

size_t nn_sgemm_pack_size(int m, int k)
{
    return (size_t)((m + NN_SMR - 1) / NN_SMR * NN_SMR) * (size_t)k;
}

void nn_sgemm_unpack(const float *packed, int m, int k, float *out)
{
    for (int i = 0; i < m; i++)
        for (int kk = 0; kk < k; kk++)
            out[(int64_t)i * k + kk] = packed[((int64_t)(i / NN_SMR) * k + kk) * NN_SMR + i % NN_SMR];
}

void nn_sgemm_pack(const float *A, int64_t lda, int m, int k, float *out)
{
    for (int i = 0; i < m; i += NN_SMR)
        for (int kk = 0; kk < k; kk++)
            for (int r = 0; r < NN_SMR; r++)
                *out++ = i + r < m ? A[(int64_t)(i + r) * lda + kk] : 0.0f;
}

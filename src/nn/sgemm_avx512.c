/*
 * sgemm_avx512.c - fp32 products small enough to live in L1 and L2, for
 * Winograd's fused blocks (conv_wino.c): C[m x n] = A[m x k] B[k x n], with
 * A packed once (at model load) and B and C row-major, unpacked.
 *
 * Why not cblas_sgemm: in a fused block one product is about 144 x 64 x 28,
 * and OpenBLAS packs both operands on every call, which there costs as much
 * as the products (measured: no gain over the phased path).  B's rows are
 * the block's columns, contiguous, read in place.
 *
 * Micro-kernel: 12 rows x 32 columns in 24 zmm accumulators; per k, two
 * loads of B and twelve broadcasts of A (one 48-byte row of the packed
 * panel) for 24 FMAs.  Column tails are masked loads and stores (lanes past
 * n are neither read nor written).
 *
 * Compiled for AVX-512F by a target pragma; callers take this path only
 * where cpu.c found AVX-512 usable (nn_sgemm_packed_usable).
 */
#include "gemm_int.h"

/* rows of a packed panel; K slice */
#define NN_SMR 12
#define NN_SKC 256


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
                                                        __mmask16 m0, __mmask16 m1, int add)
{
    __m512 acc[NN_SMR][2];

#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        if (add) {
            acc[r][0] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            acc[r][1] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
        } else {
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        }
    }
    for (int64_t kk = 0; kk < k; kk++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + kk * ldb);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, B + kk * ldb + 16);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(A[kk * NN_SMR + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(C + r * ldc + 16, m1, acc[r][1]);
    }
}

void nn_sgemm_packed(int m, int n, int k, const float *A, const float *B, int64_t ldb,
                     float *C, int64_t ldc)
{
    /* K in slices of NN_SKC: a 32-column panel of B (32 KB) stays in L1
     * while the row panels pass over it; later slices add to C */
    for (int k0 = 0; k0 < k; k0 += NN_SKC) {
        const int kc = k - k0 < NN_SKC ? k - k0 : NN_SKC;
        for (int j = 0; j < n; j += 32) {
            const int w = n - j < 32 ? n - j : 32;
            const __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1);
            const __mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFF : w > 16 ? (1u << (w - 16)) - 1 : 0);
            const float *b = B + (int64_t)k0 * ldb + j;
            for (int i = 0; i < m; i += NN_SMR) {
                const float *a = A + (int64_t)i * k + (int64_t)k0 * NN_SMR;
                float *c = C + (int64_t)i * ldc + j;
                switch (m - i < NN_SMR ? m - i : NN_SMR) {
#define NN_SMR_CASE(r) case r: block(r, kc, a, b, ldb, c, ldc, m0, m1, k0 > 0); break;
                NN_SMR_CASE(1) NN_SMR_CASE(2) NN_SMR_CASE(3) NN_SMR_CASE(4)
                NN_SMR_CASE(5) NN_SMR_CASE(6) NN_SMR_CASE(7) NN_SMR_CASE(8)
                NN_SMR_CASE(9) NN_SMR_CASE(10) NN_SMR_CASE(11) NN_SMR_CASE(12)
#undef NN_SMR_CASE
                }
            }
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
/* (never called: nn_sgemm_packed_usable is 0; plain loops keep the
 * definition honest on other targets) */
void nn_sgemm_packed(int m, int n, int k, const float *A, const float *B, int64_t ldb,
                     float *C, int64_t ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int kk = 0; kk < k; kk++)
                s += A[(int64_t)(i / NN_SMR * k + kk) * NN_SMR + i % NN_SMR] * B[kk * ldb + j];
            C[(int64_t)i * ldc + j] = s;
        }
}
#endif

int nn_sgemm_packed_usable(void)
{
#ifdef NN_X86_KERNELS
    return nn_cpu_get()->avx512;
#else
    return 0;
#endif
}

size_t nn_sgemm_pack_size(int m, int k)
{
    return (size_t)((m + NN_SMR - 1) / NN_SMR * NN_SMR) * (size_t)k;
}

void nn_sgemm_pack(const float *A, int64_t lda, int m, int k, float *out)
{
    for (int i = 0; i < m; i += NN_SMR)
        for (int kk = 0; kk < k; kk++)
            for (int r = 0; r < NN_SMR; r++)
                *out++ = i + r < m ? A[(int64_t)(i + r) * lda + kk] : 0.0f;
}

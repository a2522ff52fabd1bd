/*
 * gemm_avx512.c - the AVX512-BF16 tier: packing the right-hand matrix into
 * bf16 k-pairs (shared with the AMX tier: from rows, from pieces of rows,
 * by gathers for strided convolutions), the vdpbf16ps micro-kernel, and
 * the epilogue both tiers finish a block of C with (scattering the columns
 * when they were taken in another order).
 *
 * Compiled for AVX512-BF16 by a target pragma, so only this file's code
 * uses those instructions, and only after cpu.c found them usable.
 *
 * Micro-kernel: C[8 x 32] over the whole K in 16 zmm accumulators.  For
 * each pair of rows (k, k+1), two 64-byte loads of B (32 columns' pairs)
 * and eight broadcast pairs of A (embedded {1to16} broadcasts), 16
 * vdpbf16ps.  A's 8-row panel (k x 16 bytes) stays in L1 while the panel's
 * loop walks the packed B columns out of L2; the tile of B columns a
 * caller packs is sized for that (conv.c).  The accumulated block goes
 * through the epilogue once: no partial sums of C are ever stored.
 */
#include "gemm_int.h"

#ifdef NN_X86_KERNELS
#include <immintrin.h>
#include <string.h>
#include <time.h>

/* The instruction sets of this file's functions only (GCC and Clang spell
 * it differently; both leave the rest of the program at the baseline). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#endif

/* Interleaves two rows of 32 bf16 into 32 (row0, row1) pairs: output
 * element 2j is row0[j], 2j+1 is row1[j] (permutex2var indices >= 32 read
 * the second operand). */
static __m512i pair_index(int half)
{
    int16_t idx[32];
    for (int j = 0; j < 16; j++) {
        idx[2 * j] = (int16_t)(half * 16 + j);
        idx[2 * j + 1] = (int16_t)(32 + half * 16 + j);
    }
    return _mm512_loadu_si512(idx);
}

static inline __mmask32 col_mask(int64_t j0, int64_t nc, const int32_t *lo,
                                 const int32_t *hi, int r)
{
    int64_t a = 0, b = nc;
    if (lo) {
        if (lo[r] - j0 > a)
            a = lo[r] - j0;
        if (hi[r] - j0 < b)
            b = hi[r] - j0;
    }
    if (b <= a)
        return 0;
    return (__mmask32)(((b >= 32 ? 0xffffffffu : (1u << b) - 1u)) & ~((1u << a) - 1u));
}

/* Two rows' 32 columns (v[0..1]: row 0, v[2..3]: row 1) as 32 pairs */
static inline void store_pairs(uint16_t *pd, const __m512 v[4], __m512i i0, __m512i i1)
{
    __m512i x0 = (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]);
    __m512i x1 = (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2]);
    _mm512_storeu_si512(pd, _mm512_permutex2var_epi16(x0, i0, x1));
    _mm512_storeu_si512(pd + 32, _mm512_permutex2var_epi16(x0, i1, x1));
}

/* Panels in groups of NN_PACK_GROUP: per group, pairs of rows outside,
 * the group's panels inside, so each row is read 1 KB at a time and the
 * group's panels (NN_NB * k values apart, the same L1 sets when k is a
 * power of two) are few enough to stay in L1 between two pairs of rows. */
#define NN_PACK_GROUP 8

void nn_bpack_avx512(uint16_t *dst, const float *const *rows, const int32_t *lo,
                     const int32_t *hi, int k, int64_t n)
{
    const __m512i i0 = pair_index(0), i1 = pair_index(1);
    const int64_t pstride = (int64_t)NN_NB * k, gcols = (int64_t)NN_PACK_GROUP * NN_NB;

    for (int64_t g0 = 0; g0 < n; g0 += gcols) {
        const int64_t g1 = n - g0 < gcols ? n : g0 + gcols;
        for (int r = 0; r < k; r += 2) {
            uint16_t *pd = dst + (g0 / NN_NB) * pstride + (int64_t)r * NN_NB;
            for (int64_t j0 = g0; j0 < g1; j0 += NN_NB, pd += pstride) {
                const int64_t nc = n - j0 < NN_NB ? n - j0 : NN_NB;
                __m512 v[4];
                for (int q = 0; q < 2; q++) {
                    const float *src = rows[r + q];
                    __mmask32 m = src ? col_mask(j0, nc, lo, hi, r + q) : 0;
                    if (m == 0xffffffffu) {
                        v[2 * q] = _mm512_loadu_ps(src + j0);
                        v[2 * q + 1] = _mm512_loadu_ps(src + j0 + 16);
                    } else if (m) {
                        v[2 * q] = _mm512_maskz_loadu_ps((__mmask16)m, src + j0);
                        v[2 * q + 1] = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), src + j0 + 16);
                    } else {
                        v[2 * q] = v[2 * q + 1] = _mm512_setzero_ps();
                    }
                }
                store_pairs(pd, v, i0, i1);
            }
        }
    }
}

/* Where rows (r, r+1) of panel p go: block r / 32's place (slot, or
 * itself), then the pair row within it; NULL when the block is dead. */
static inline uint16_t *pair_dst(uint16_t *dst, int64_t pstride, const int32_t *slot,
                                 int64_t nkb, int64_t p, int r)
{
    int64_t at = r / 32;
    if (slot && (at = slot[p * nkb + r / 32]) < 0)
        return NULL;
    return dst + p * pstride + at * 1024 + (r % 32) * NN_NB;
}

void nn_bpack_pieces_avx512(uint16_t *dst, int64_t pstride, const float *const *chan,
                            const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                            int64_t nh, int k, const int32_t *slot)
{
    const __m512i i0 = pair_index(0), i1 = pair_index(1);
    const int64_t ghalves = 2 * NN_PACK_GROUP, nkb = nn_kblocks(k);

    for (int64_t g0 = 0; g0 < nh; g0 += ghalves) {
        const int64_t g1 = nh - g0 < ghalves ? nh : g0 + ghalves;
        for (int r = 0; r < k; r += 2) {
            for (int64_t hh = g0; hh < g1; hh += 2) {
                uint16_t *pd = pair_dst(dst, pstride, slot, nkb, hh / 2, r);
                __m512 v[4];
                if (!pd)
                    continue;
                for (int q = 0; q < 2; q++) {
                    const float *src = chan[r + q];
                    for (int h = 0; h < 2; h++) {
                        __m512 acc = _mm512_setzero_ps();
                        if (src && hh + h < nh) {
                            const int64_t s0 = (int64_t)tap[r + q] * nh + hh + h;
                            const float *at = src + (hh + h) * 16;
                            for (int32_t e = start[s0]; e < start[s0 + 1]; e++)
                                acc = _mm512_mask_loadu_ps(acc, (__mmask16)pieces[e].mask,
                                                           at + pieces[e].off);
                        }
                        v[2 * q + h] = acc;
                    }
                }
                store_pairs(pd, v, i0, i1);
            }
        }
    }
}

/* From a bf16 copy: the same walk as nn_bpack_pieces_avx512, one pair row
 * (two channels) at a time, pairs copied by masked 32-bit loads. */
void nn_bpack_pairs_avx512(uint16_t *dst, int64_t pstride, const uint32_t *const *prow,
                           const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                           int64_t nh, int k, const int32_t *slot)
{
    const int64_t ghalves = 2 * NN_PACK_GROUP, nkb = nn_kblocks(k);

    for (int64_t g0 = 0; g0 < nh; g0 += ghalves) {
        const int64_t g1 = nh - g0 < ghalves ? nh : g0 + ghalves;
        for (int r = 0; r < k; r += 2) {
            const uint32_t *src = prow[r / 2];
            for (int64_t hh = g0; hh < g1; hh += 2) {
                uint16_t *pd = pair_dst(dst, pstride, slot, nkb, hh / 2, r);
                if (!pd)
                    continue;
                for (int h = 0; h < 2; h++) {
                    __m512i acc = _mm512_setzero_si512();
                    if (src && hh + h < nh) {
                        const int64_t s0 = (int64_t)tap[r / 2] * nh + hh + h;
                        const uint32_t *at = src + (hh + h) * 16;
                        for (int32_t e = start[s0]; e < start[s0 + 1]; e++)
                            acc = _mm512_mask_loadu_epi32(acc, (__mmask16)pieces[e].mask,
                                                          at + pieces[e].off);
                    }
                    _mm512_storeu_si512(pd + 32 * h, acc);
                }
            }
        }
    }
}

/* Strided convolutions from a bf16 copy: per pair row and half-panel, one
 * masked gather of 16 pairs (the same walk as the packers above). */
void nn_bpack_gather_avx512(uint16_t *dst, const uint32_t *const *prow, const int32_t *tap,
                            const int32_t *idx, const uint16_t *msk, int64_t nh, int k)
{
    const int64_t pstride = (int64_t)NN_NB * k, ghalves = 2 * NN_PACK_GROUP;

    for (int64_t g0 = 0; g0 < nh; g0 += ghalves) {
        /* (a last odd half-panel's partner written as zeros) */
        const int64_t g1 = nh - g0 < ghalves ? (nh + 1) / 2 * 2 : g0 + ghalves;
        for (int r = 0; r < k; r += 2) {
            const uint32_t *src = prow[r / 2];
            for (int64_t hh = g0; hh < g1; hh++) {
                uint16_t *pd = dst + (hh / 2) * pstride + (int64_t)r * NN_NB + 32 * (hh % 2);
                __m512i v = _mm512_setzero_si512();
                if (src && hh < nh) {
                    const int64_t e = (int64_t)tap[r / 2] * nh + hh;
                    v = _mm512_mask_i32gather_epi32(v, (__mmask16)msk[e],
                                                    _mm512_loadu_si512(idx + e * 16), src, 4);
                }
                _mm512_storeu_si512(pd, v);
            }
        }
    }
}

/* One 16-column piece of a row through bias, residual and ReLU (max with
 * 0 also maps NaN to 0, as the fp32 epilogue does). */
static inline __m512 epi_row(const float *blk, const nn_gemm_out *o, int64_t row, int64_t col,
                             __mmask16 m)
{
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(blk), _mm512_set1_ps(o->bias ? o->bias[row] : 0.0f));
    if (o->res)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, o->res + row * o->ldr + col));
    if (o->relu && !o->resbf)      /* with resbf: after the residual (caller) */
        v = _mm512_max_ps(v, _mm512_setzero_ps());
    return v;
}

/* The epilogue for columns taken in another order (o->cmap): the same
 * arithmetic, residuals gathered and results scattered to their columns. */
static void epilogue_mapped(const float *blk, int64_t ldb, int rows, int64_t r0, int64_t j0,
                            int cols, const nn_gemm_out *o)
{
    const __m512 zero = _mm512_setzero_ps();
    int16_t ix[32];
    for (int i = 0; i < 16; i++) {
        ix[2 * i] = (int16_t)i;
        ix[2 * i + 1] = (int16_t)(16 + i);
    }
    const __m512i pairs = _mm512_loadu_si512(ix);

    for (int j = 0; j < cols; j += 16) {
        const __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
        const __m512i idx = _mm512_maskz_loadu_epi32(m, o->cmap + j0 + j);
        for (int r = 0; r < rows; r += o->bf ? 2 : 1) {
            const int64_t row = r0 + r;
            const int nr = o->bf ? 2 : 1;
            __m512 v[2] = { zero, zero };
            for (int q = 0; q < nr; q++) {
                v[q] = _mm512_add_ps(_mm512_loadu_ps(blk + (r + q) * ldb + j),
                                     _mm512_set1_ps(o->bias ? o->bias[row + q] : 0.0f));
                if (o->res)
                    v[q] = _mm512_add_ps(v[q], _mm512_mask_i32gather_ps(
                                                   zero, m, idx, o->res + (row + q) * o->ldr, 4));
            }
            if (o->resbf) {
                const __m512i pr = _mm512_mask_i32gather_epi32(
                    _mm512_setzero_si512(), m, idx,
                    (const void *)(o->resbf + (row / 2) * o->resbfld * 2), 4);
                v[0] = _mm512_add_ps(v[0], _mm512_castsi512_ps(_mm512_slli_epi32(pr, 16)));
                v[1] = _mm512_add_ps(v[1], _mm512_castsi512_ps(
                                               _mm512_and_si512(pr, _mm512_set1_epi32(-65536))));
            }
            for (int q = 0; q < nr && o->relu; q++)
                v[q] = _mm512_max_ps(v[q], zero);
            for (int q = 0; q < nr && o->c; q++)
                _mm512_mask_i32scatter_ps(o->c + (row + q) * o->ldc, m, idx, v[q], 4);
            if (o->bf)
                _mm512_mask_i32scatter_epi32((void *)(o->bf + (row / 2) * o->bfld * 2), m, idx,
                                             _mm512_permutexvar_epi16(
                                                 pairs, (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0])),
                                             4);
        }
    }
}

void nn_gemm_epilogue_avx512(const float *blk, int64_t ldb, int rows, int64_t r0, int64_t j0,
                             int cols, const nn_gemm_out *o)
{
    if (o->cmap) {
        epilogue_mapped(blk, ldb, rows, r0, j0, cols, o);
        return;
    }
    if (o->bf) {
        /* rows in pairs: both to C (unless bf16 only), and (row r, row
         * r+1) interleaved to the bf16 copy; index: element 2i from the
         * first row, 2i+1 the second */
        int16_t ix[32];
        for (int i = 0; i < 16; i++) {
            ix[2 * i] = (int16_t)i;
            ix[2 * i + 1] = (int16_t)(16 + i);
        }
        const __m512i idx = _mm512_loadu_si512(ix);
        for (int r = 0; r < rows; r += 2) {
            const int64_t row = r0 + r;
            for (int j = 0; j < cols; j += 16) {
                const __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
                __m512 v0 = epi_row(blk + r * ldb + j, o, row, j0 + j, m);
                __m512 v1 = epi_row(blk + (r + 1) * ldb + j, o, row + 1, j0 + j, m);
                __m512i x;
                if (o->resbf) {
                    /* a pair (lo: row r, hi: row r+1) widens to two floats */
                    __m512i pr = _mm512_maskz_loadu_epi32(m, o->resbf + ((row / 2) * o->resbfld +
                                                                         j0 + j) * 2);
                    v0 = _mm512_add_ps(v0, _mm512_castsi512_ps(_mm512_slli_epi32(pr, 16)));
                    v1 = _mm512_add_ps(v1, _mm512_castsi512_ps(
                                               _mm512_and_si512(pr, _mm512_set1_epi32(-65536))));
                    if (o->relu) {
                        v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
                        v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
                    }
                }
                x = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(v1, v0));
                if (o->c) {
                    _mm512_mask_storeu_ps(o->c + row * o->ldc + j0 + j, m, v0);
                    _mm512_mask_storeu_ps(o->c + (row + 1) * o->ldc + j0 + j, m, v1);
                }
                _mm512_mask_storeu_epi32(o->bf + ((row / 2) * o->bfld + j0 + j) * 2, m, x);
            }
        }
        return;
    }
    for (int r = 0; r < rows; r++) {
        const int64_t row = r0 + r;
        for (int j = 0; j < cols; j += 16) {
            const __mmask16 m = cols - j >= 16 ? 0xffff : (__mmask16)((1u << (cols - j)) - 1u);
            _mm512_mask_storeu_ps(o->c + row * o->ldc + j0 + j, m,
                                  epi_row(blk + r * ldb + j, o, row, j0 + j, m));
        }
    }
}

void nn_gemm_epilogue_prefetch(int rows, int64_t r0, int64_t j0, const nn_gemm_out *o)
{
    if (o->cmap)
        return;
    /* a pair row of 32 columns: 128 bytes; a float row: 128 bytes */
    if (o->resbf)
        for (int r = 0; r < rows; r += 2) {
            const uint16_t *p = o->resbf + (((r0 + r) / 2) * o->resbfld + j0) * 2;
            _mm_prefetch((const char *)p, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + 32), _MM_HINT_T0);
        }
    if (o->res)
        for (int r = 0; r < rows; r++) {
            const float *p = o->res + (r0 + r) * o->ldr + j0;
            _mm_prefetch((const char *)p, _MM_HINT_T0);
            _mm_prefetch((const char *)(p + 16), _MM_HINT_T0);
        }
}

/* C[8][32] = A panel x B panel over kp pairs (k-pair rows rstride apart);
 * live: the panel's live blocks of 16 pairs, or NULL; slot: where each
 * block is (gemm_int.h), or NULL; b2: pairs from k2 on (a multiple of 16)
 * at b2, rows rstride2 apart, or NULL. */
static inline void kernel_8x32(int64_t kp, const uint16_t *a, const uint16_t *b,
                               int64_t rstride, const uint8_t *live, const int32_t *slot,
                               const uint16_t *b2, int64_t k2, int64_t rstride2, float *blk)
{
    __m512 c[8][2];
    const uint32_t *ap = (const uint32_t *)(const void *)a;

    for (int m = 0; m < 8; m++)
        c[m][0] = c[m][1] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < kp; k0 += 16) {
        const int64_t k1 = kp - k0 < 16 ? kp : k0 + 16;
        const uint16_t *bk;
        int64_t rs = rstride;
        if ((live && !live[k0 / 16]) || (slot && slot[k0 / 16] < 0))
            continue;
        if (b2 && k0 >= k2) {
            bk = b2 + (k0 - k2) * rstride2;
            rs = rstride2;
        } else {
            bk = b + (slot ? (int64_t)slot[k0 / 16] * 16 : k0) * rstride;
        }
        for (int64_t k = k0; k < k1; k++, bk += rs) {
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bk);
            const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bk + 32);
#pragma GCC unroll 8
            for (int m = 0; m < 8; m++) {
                const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[k * 8 + m]);
                c[m][0] = _mm512_dpbf16_ps(c[m][0], av, b0);
                c[m][1] = _mm512_dpbf16_ps(c[m][1], av, b1);
            }
        }
    }
    for (int m = 0; m < 8; m++) {
        _mm512_storeu_ps(blk + m * 32, c[m][0]);
        _mm512_storeu_ps(blk + m * 32 + 16, c[m][1]);
    }
}

void nn_gemm_avx512(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                    const nn_gemm_out *o, const uint8_t *live)
{
    const int64_t kp = a->k / 2, nkb = nn_kblocks(a->k);
    float blk[8 * 32] __attribute__((aligned(64)));

    for (int mp = m0; mp < m1; mp += 8) {
        const uint16_t *ap = a->data + (int64_t)mp * a->k;
        const int rows = m1 - mp < 8 ? m1 - mp : 8;
        for (int64_t j0 = 0; j0 < n; j0 += NN_NB) {
            const int cols = n - j0 < NN_NB ? (int)(n - j0) : NN_NB;
            /* (as the AMX tier does; not measured on a CPU of this tier) */
            nn_gemm_epilogue_prefetch(rows, mp - m0, j0, o);
            kernel_8x32(kp, ap, b->p + (j0 / NN_NB) * b->pstride, b->rstride,
                        live ? live + (j0 / NN_NB) * nkb : NULL,
                        b->slot ? b->slot + (j0 / NN_NB) * nkb : NULL,
                        b->p2 ? b->p2 + (j0 / NN_NB) * b->pstride : NULL, b->k2, b->rstride2,
                        blk);
            nn_gemm_epilogue_avx512(blk, 32, rows, mp - m0, j0, cols, o);
        }
    }
}

/* Products per second of vdpbf16ps against vfmadd231ps, each in 12
 * independent chains (enough to hide either latency), best of 5 short
 * alternating runs. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define NN_PROBE_ITERS 2000

static double probe_bf16(void)
{
    __m512 acc[12];
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = x;
    double t;
    for (int i = 0; i < 12; i++)
        acc[i] = _mm512_setzero_ps();
    t = now_s();
    for (int it = 0; it < NN_PROBE_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
            __asm__ volatile("" : "+v"(acc[i]));
        }
    }
    t = now_s() - t;
    for (int i = 1; i < 12; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    __asm__ volatile("" : : "v"(acc[0]));
    return t;
}

static double probe_fma(void)
{
    __m512 acc[12], x = _mm512_set1_ps(1.0f), y = x;
    double t;
    for (int i = 0; i < 12; i++)
        acc[i] = _mm512_setzero_ps();
    t = now_s();
    for (int it = 0; it < NN_PROBE_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
            __asm__ volatile("" : "+v"(acc[i]));
        }
    }
    t = now_s() - t;
    for (int i = 1; i < 12; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    __asm__ volatile("" : : "v"(acc[0]));
    return t;
}

double nn_avx512_bf16_gain(void)
{
    double tb = 1e30, tf = 1e30;
    for (int r = 0; r < 5; r++) {
        double b = probe_bf16(), f = probe_fma();
        if (b < tb)
            tb = b;
        if (f < tf)
            tf = f;
    }
    /* one vdpbf16ps is 32 products, one vfmadd231ps 16 */
    return tb > 0 ? 2.0 * tf / tb : 0.0;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

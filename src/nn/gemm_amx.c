/*
 * gemm_amx.c - the AMX-BF16 tier: C blocks of 32x32 in four tile registers,
 * each tdpbf16ps adding a 16x32 (A) by 32x16 (B) bf16 product into a 16x16
 * fp32 tile, 16 K-steps of 32 in one instruction.
 *
 * Eight tile registers: four C tiles (2x2), two A tiles (the panel's rows
 * 0-15 and 16-31), two B tiles (columns 0-15 and 16-31 of the 32-column
 * panel).  Per step of 32 along K: four tile loads (4 KB), four products.
 * A B tile is 16 k-pair rows of 64 bytes (16 columns' pairs) at any row
 * stride: 128 bytes in a packed panel (the k-pairs format of the
 * AVX512-BF16 tier; a compact panel stores only its live K blocks, found
 * through a slot table), a pair row of a tensor's bf16 copy in place (and
 * from a K block on, of a second tensor's: two products summed).  After
 * the whole K the four C tiles go to a 4 KB block and through the shared
 * epilogue (gemm_avx512.c).
 *
 * Blocking (nn_gemm_amx) keeps the operands of the products in the caches:
 * with both A and B streaming from L2 a 2x2 tile block would wait on
 * memory, not on the tile unit.
 *
 * The tile configuration is loaded at the start of each call and the
 * tiles released at its end, so no thread keeps the 8 KB tile state (or
 * a stale configuration across a fork) between products.
 */
#include "gemm_int.h"

#ifdef NN_X86_KERNELS
#include <immintrin.h>
#include <string.h>

/* The instruction sets of this file's functions only (GCC and Clang spell
 * it differently; both leave the rest of the program at the baseline). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")
#endif

typedef struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static void tiles_configure(void)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* c[32][32] (+)= A panel slice (kb blocks of 32x32) x B micro-panel slice
 * (kb blocks of 16 k-pairs x 32 columns, the slice's first at b, or with
 * slot block i at b + slot[i] * 16 rows); first: start from zero, else
 * from the partial sums in c; live, slot: the slice's live blocks, or
 * NULL. */
static inline void block_32x32(const uint16_t *a, const uint16_t *b, int64_t rstride,
                               int64_t kb, float *c, int first, const uint8_t *live,
                               const int32_t *slot)
{
    const int64_t bstep = 16 * rstride, bld = 2 * rstride;
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, c, 128);
        _tile_loadd(1, c + 16, 128);
        _tile_loadd(2, c + 16 * 32, 128);
        _tile_loadd(3, c + 16 * 32 + 16, 128);
    }
    for (int64_t k = 0; k < kb; k++, a += 1024) {
        const uint16_t *bk;
        if ((live && !live[k]) || (slot && slot[k] < 0))
            continue;
        bk = b + (slot ? slot[k] : k) * bstep;
        _tile_loadd(4, a, 64);
        _tile_loadd(6, bk, bld);
        _tile_loadd(7, bk + 32, bld);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 16, 128);
    _tile_stored(2, c + 16 * 32, 128);
    _tile_stored(3, c + 16 * 32 + 16, 128);
}

/* Rows in blocks of NN_AMX_MC, K in blocks of NN_AMX_KC, then the B
 * micro-panels, then the 32-row panels of the block: a micro-panel's K
 * slice stays in L1 across the block's panels, the block's A slice in L2
 * across the micro-panels.  With K in several blocks, the partial sums of
 * the row block live in work, 4 KB per 32x32 block. */
void nn_gemm_amx(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                 const nn_gemm_out *o, float *work, const uint8_t *live)
{
    const int64_t K = a->k, np = (n + NN_NB - 1) / NN_NB, nkb = nn_kblocks(a->k);
    const int64_t kc = nn_amx_kc(K);
    /* (zeroed only to show analysers what the tile stores write) */
    float blk[32 * 32] __attribute__((aligned(64))) = { 0 };

    tiles_configure();
    for (int ic = m0; ic < m1; ic += NN_AMX_MC) {
        const int mend = m1 - ic < NN_AMX_MC ? m1 : ic + NN_AMX_MC;
        for (int64_t k0 = 0; k0 < K; k0 += kc) {
            const int64_t kb = (K - k0 < kc ? K - k0 : kc) / 32;
            const int first = k0 == 0, last = k0 + kc >= K;
            for (int64_t jp = 0; jp < np; jp++) {
                const int32_t *sl = b->slot ? b->slot + jp * nkb + k0 / 32 : NULL;
                const uint16_t *bp = b->p + jp * b->pstride + (sl ? 0 : k0 / 2 * b->rstride);
                const int cols = n - jp * NN_NB < NN_NB ? (int)(n - jp * NN_NB) : NN_NB;
                const uint8_t *lv = live ? live + jp * nkb + k0 / 32 : NULL;
                int any = !lv && !sl;
                for (int64_t k = 0; k < kb && !any; k++)
                    any = sl ? sl[k] >= 0 : lv[k];
                /* with a second matrix, the slice's blocks from row 2 k2 on
                 * come from it (k2 is a multiple of 16 pairs) */
                const int64_t n1 = !b->p2 ? kb : b->k2 * 2 <= k0 ? 0 :
                                   (b->k2 * 2 - k0) / 32 < kb ? (b->k2 * 2 - k0) / 32 : kb;
                const uint16_t *bp2 = n1 < kb ? b->p2 + jp * b->pstride +
                                      ((k0 + 32 * n1) / 2 - b->k2) * b->rstride2 : NULL;
                for (int ir = ic; ir < mend; ir += 32) {
                    const int rows = mend - ir < 32 ? mend - ir : 32;
                    const uint16_t *ap = a->data + (int64_t)ir * K + k0 * 32;
                    float *c = first && last ? blk : work + (((ir - ic) / 32) * np + jp) * 1024;
                    /* the residual the epilogue reads arrives meanwhile: it
                     * had waited on it, the epilogue 11 % of segmentation's
                     * bf16 samples, now 7 %; 5.88-6.24 against 6.21-6.40
                     * ms/frame in 6 alternating rounds */
                    if (last)
                        nn_gemm_epilogue_prefetch(rows, ir - m0, jp * NN_NB, o);
                    /* a dead slice leaves the partial sums as they are */
                    if ((any || first) && (n1 > 0 || kb == 0))
                        block_32x32(ap, bp, b->rstride, n1, c, first, lv, sl);
                    if (n1 < kb)
                        block_32x32(ap + n1 * 1024, bp2, b->rstride2, kb - n1, c,
                                    first && n1 == 0, NULL, NULL);
                    if (last)
                        nn_gemm_epilogue_avx512(c, 32, rows, ir - m0, jp * NN_NB, cols, o);
                }
            }
        }
    }
    _tile_release();
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

/*
 * gemm.c - the tier-independent half of the bf16 matrix products: packing
 * the weights once (at model load, or when a convolution's plan first
 * needs a new selection of taps) and dispatching to the tier's kernel.
 *
 * Packed weight layouts (bf16, rows padded with zeros to whole panels):
 *
 *   AVX512-BF16  panels of 8 rows; in a panel, for each pair of columns
 *                (k, k+1), the 8 rows' pairs: [k/2][8][2].  The kernel
 *                broadcasts one row's pair against 32 columns of B.
 *   AMX          panels of 32 rows; in a panel, for each block of 32
 *                columns, the 32 rows' 32 values: [k/32][32][32], i.e. two
 *                16-row A tiles of 64-byte rows.
 *
 * The column map (kmap) lets one routine pack a whole tap-major weight
 * matrix, the live taps of a convolution, or one tap, and insert the zero
 * columns that keep every channel group pair-aligned: the right-hand
 * matrix is packed with the same zero rows (NULL row pointers).
 */
#include "gemm_int.h"
#include "nn_int.h"

#include <stdlib.h>
#include <string.h>

int nn_kstep(nn_kern k)
{
    return k == NN_KERN_AMX ? 32 : 2;
}

int nn_mpanel(nn_kern k)
{
    return k == NN_KERN_AMX ? 32 : 8;
}

int nn_pack_a(nn_kern kern, const float *w, int64_t lda, int m, const int32_t *kmap,
              int k, nn_pack *out, en_err *err)
{
    const int mp = nn_mpanel(kern), ks = nn_kstep(kern);
    const size_t mpad = ((size_t)m + (size_t)mp - 1) / (size_t)mp * (size_t)mp;
    uint16_t *d = NULL;

    memset(out, 0, sizeof *out);
    if (kern == NN_KERN_FP32 || k <= 0 || k % ks || m <= 0)
        return en_err_set(err, EN_EINVAL, "nn: cannot pack a %dx%d matrix for %s", m, k,
                          nn_kern_name(kern));
    if (!(d = nn_alloc(mpad * (size_t)k * sizeof *d)))
        return en_err_set(err, EN_ENOMEM, "nn: out of memory for packed weights");
    for (size_t r = 0; r < mpad; r++) {
        const float *src = r < (size_t)m ? w + (int64_t)r * lda : NULL;
        const size_t panel = r / (size_t)mp, pr = r % (size_t)mp;
        uint16_t *pbase = d + panel * (size_t)mp * (size_t)k;
        for (size_t j = 0; j < (size_t)k; j++) {
            uint16_t v = src && kmap[j] >= 0 ? nn_bf16(src[kmap[j]]) : 0;
            size_t at;
            if (kern == NN_KERN_AMX)
                at = ((j / 32) * 32 + pr) * 32 + j % 32;
            else
                at = ((j / 2) * 8 + pr) * 2 + j % 2;
            pbase[at] = v;
        }
    }
    out->data = d;
    out->m = m;
    out->k = k;
    out->kern = kern;
    return EN_OK;
}

void nn_pack_free(nn_pack *p)
{
    free(p->data);
    memset(p, 0, sizeof *p);
}

size_t nn_bpack_elems(int k, int64_t n)
{
    return (size_t)((n + NN_NB - 1) / NN_NB) * NN_NB * (size_t)k;
}

void nn_bpack(uint16_t *dst, const float *const *rows, const int32_t *lo,
              const int32_t *hi, int k, int64_t n)
{
#ifdef NN_X86_KERNELS
    /* both bf16 tiers run on CPUs with AVX512-BF16 (cpu.c) */
    nn_bpack_avx512(dst, rows, lo, hi, k, n);
#else
    (void)dst; (void)rows; (void)lo; (void)hi; (void)k; (void)n;
#endif
}

void nn_bpack_pieces(uint16_t *dst, int64_t pstride, const float *const *chan,
                     const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                     int64_t nh, int k, const int32_t *slot)
{
#ifdef NN_X86_KERNELS
    nn_bpack_pieces_avx512(dst, pstride, chan, tap, pieces, start, nh, k, slot);
#else
    (void)dst; (void)pstride; (void)chan; (void)tap; (void)pieces; (void)start; (void)nh;
    (void)k; (void)slot;
#endif
}

size_t nn_gemm_work(const nn_pack *a, int64_t n)
{
    if (a->kern != NN_KERN_AMX || nn_amx_kc(a->k) >= a->k)
        return 0;
    return (size_t)NN_AMX_MC * (size_t)((n + NN_NB - 1) / NN_NB * NN_NB);
}

void nn_bpack_pairs(uint16_t *dst, int64_t pstride, const uint32_t *const *prow,
                    const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                    int64_t nh, int k, const int32_t *slot)
{
#ifdef NN_X86_KERNELS
    nn_bpack_pairs_avx512(dst, pstride, prow, tap, pieces, start, nh, k, slot);
#else
    (void)dst; (void)pstride; (void)prow; (void)tap; (void)pieces; (void)start; (void)nh;
    (void)k; (void)slot;
#endif
}

void nn_bpack_gather(uint16_t *dst, const uint32_t *const *prow, const int32_t *tap,
                     const int32_t *idx, const uint16_t *msk, int64_t nh, int k)
{
#ifdef NN_X86_KERNELS
    nn_bpack_gather_avx512(dst, prow, tap, idx, msk, nh, k);
#else
    (void)dst; (void)prow; (void)tap; (void)idx; (void)msk; (void)nh; (void)k;
#endif
}

void nn_gemm_bf16(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                  const nn_gemm_out *o, float *work, const uint8_t *live)
{
    if (m1 <= m0 || n <= 0)
        return;
#ifdef NN_X86_KERNELS
    if (a->kern == NN_KERN_AMX)
        nn_gemm_amx(a, m0, m1, b, n, o, work, live);
    else
        nn_gemm_avx512(a, m0, m1, b, n, o, live);
#else
    (void)b; (void)o; (void)work; (void)live;   /* unreachable: cpu.c offers no bf16 tier here */
#endif
}

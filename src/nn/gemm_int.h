/*
 * gemm_int.h - the engine's own bf16 matrix products, and the CPU features
 * that choose them (cpu.c, gemm.c, gemm_avx512.c, gemm_amx.c).
 *
 * The fp32 path multiplies with OpenBLAS's cblas_sgemm, exact to float
 * rounding (the parity path).  The bf16 path rounds both operands to
 * bfloat16 (8 significant bits) and accumulates in fp32, on one of two
 * kernel tiers picked at run time from the CPU:
 *
 *   AVX512-BF16  vdpbf16ps: 16 lanes x 2 products per instruction
 *   AMX-BF16     tdpbf16ps: a 16x16 fp32 tile += 16x32 x 32x16 per
 *                instruction (Sapphire Rapids and later)
 *
 * Both tiers read the right-hand matrix in one packed format, "k-pairs":
 * columns in panels of NN_NB, and within a panel, for each pair of rows
 * (k, k+1), the NN_NB columns' (B[k][j], B[k+1][j]) bf16 pairs, 64 bytes
 * per 16 columns: a vdpbf16ps operand and an AMX B-tile row alike.  The
 * weights (left-hand matrix) are packed once, in the tier's own layout.
 * The compiled code for both tiers lives in translation units with GCC
 * target attributes, so the rest of the engine builds for baseline x86-64
 * and nothing runs an instruction the CPU lacks.
 */
#ifndef EN_NN_GEMM_INT_H
#define EN_NN_GEMM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "en_err.h"

/* The bf16 tiers exist for x86-64 built by GCC or Clang (target pragmas,
 * cpuid); elsewhere cpu.c offers fp32 only and they are never called. */
#if defined(__x86_64__) && defined(__GNUC__)
#define NN_X86_KERNELS 1
#endif

/* Kernel tiers, from slowest to fastest where all are present. */
typedef enum nn_kern {
    NN_KERN_FP32 = 0,        /* OpenBLAS sgemm (exact parity) */
    NN_KERN_AVX512BF16 = 1,  /* own vdpbf16ps micro-kernel */
    NN_KERN_AMX = 2          /* own AMX-BF16 tile kernel */
} nn_kern;

/* Columns per panel of a packed right-hand matrix. */
#define NN_NB 32

/* ---- CPU features (cpu.c) --------------------------------------------- */

typedef struct nn_cpu {
    int avx512;         /* AVX-512 F/BW/VL/DQ with the OS saving ZMM state */
    int avx512bf16;     /* and AVX512-BF16 */
    int amx;            /* AMX-TILE + AMX-BF16, OS support and permission */
    double bf16_gain;   /* vdpbf16ps products per fp32 FMA product, measured
                           (0 when not measured) */
} nn_cpu;

/* Detects once (cpuid, XCR0, Linux's AMX permission request). */
const nn_cpu *nn_cpu_get(void);
/* Whether tier k can run here. */
int nn_kern_usable(nn_kern k);
/* The tier for a precision (EN_NN_PREC_*): EN_EUNSUPPORTED when bf16 is
 * asked for on a CPU without it.  EN_NN_KERNEL=fp32|avx512bf16|amx forces
 * a tier (for benchmarks and tests); it cannot force one the CPU lacks. */
int nn_kern_choose(int precision, nn_kern *out, en_err *err);
const char *nn_kern_name(nn_kern k);

/* ---- small fp32 products (sgemm_avx512.c) -------------------------------- */

/* rows of a packed panel of nn_sgemm_pack; K slice of a product */
#define NN_SGEMM_MR 14
#define NN_SGEMM_KC 512

/* C[m x n] = A[m x k] B[k x n] for fp32 products (sgemm_avx512.c).
 *
 * A: packed by nn_sgemm_pack into panels of NN_SGEMM_MR rows, k-major
 * (nn_sgemm_pack_size floats); apanel: floats from one panel to the next
 * (NN_SGEMM_MR times the packed matrix's K); a product over columns [k0,
 * k0+k) of it starts A at k0 * NN_SGEMM_MR.  B and C: row-major.
 * add: C += the product instead of C = it.
 * epi (or NULL): bias per row, residual (row stride ldr, its column 0 at
 * C's column 0) and ReLU, applied once the sum is complete.
 * bwork (nn_sgemm_bwork_size(n) floats, or NULL to read B in place): B is
 * copied there slice by slice first, for a B whose rows are far apart.
 * AVX-512F only: callers check nn_sgemm_packed_usable, which is also 0
 * under EN_NN_FP32_KERNEL=0 (OpenBLAS then, as on a CPU without AVX-512;
 * read at each call, so that tests and benchmarks can take both). */
typedef struct nn_sgemm_epi {
    const float *bias;
    const float *res;
    int64_t ldr;
    int relu;
} nn_sgemm_epi;
int nn_sgemm_packed_usable(void);
size_t nn_sgemm_pack_size(int m, int k);
void nn_sgemm_pack(const float *A, int64_t lda, int m, int k, float *out);
/* The m x k row-major matrix back from its packed form. */
void nn_sgemm_unpack(const float *packed, int m, int k, float *out);
size_t nn_sgemm_bwork_size(int n);
void nn_sgemm_packed(int m, int n, int k, const float *A, int64_t apanel, const float *B,
                     int64_t ldb, float *C, int64_t ldc, int add, const nn_sgemm_epi *epi,
                     float *bwork);
/* The same with B given row by row: row kk is rows[kk][0 .. hi[kk] -
 * lo[kk]) at columns [lo[kk], hi[kk]), zero elsewhere (always copied:
 * bwork is required). */
void nn_sgemm_rows(int m, int n, int k, const float *A, int64_t apanel,
                   const float *const *rows, const int32_t *lo, const int32_t *hi, float *C,
                   int64_t ldc, const nn_sgemm_epi *epi, float *bwork);

/* ---- packed weights (gemm.c) ------------------------------------------- */

/* A left-hand matrix in bf16, packed for one tier: m rows, k columns (k is
 * the packed, padded count: a multiple of nn_kstep). */
typedef struct nn_pack {
    uint16_t *data;
    int m, k;
    nn_kern kern;
} nn_pack;

/* K granularity of a tier's packed matrices: 2 (pairs) or 32 (AMX). */
int nn_kstep(nn_kern k);
/* Rows per panel of a tier's packed matrices (8 or 32). */
int nn_mpanel(nn_kern k);
/* Packs rows of w (m x lda, fp32) for tier kern: packed column j takes
 * source column kmap[j], or zero when kmap[j] < 0; k must be a multiple of
 * nn_kstep(kern). */
int nn_pack_a(nn_kern kern, const float *w, int64_t lda, int m, const int32_t *kmap,
              int k, nn_pack *out, en_err *err);
void nn_pack_free(nn_pack *p);

/* bf16 elements of a packed right-hand matrix of k rows and n columns. */
size_t nn_bpack_elems(int k, int64_t n);

/* Packs a right-hand matrix of k rows (a multiple of 2) and n columns:
 * row r is rows[r][0..n), NULL for a row of zeros; with lo/hi (both
 * non-NULL), only columns [lo[r], hi[r]) of row r are read, the others
 * are zero (rows[r] itself may point outside the data there). */
void nn_bpack(uint16_t *dst, const float *const *rows, const int32_t *lo,
              const int32_t *hi, int k, int64_t n);

/* The right-hand matrix of a stride-1 convolution, read where it is (an
 * implicit im2col): row r of B is input channel chan[r] (NULL: zeros) seen
 * through tap tap[r]; for each tap and each 16-column half-panel hh of the
 * tile, pieces[start[tap * nh + hh] .. start[tap * nh + hh + 1]) say which
 * columns read where: column L (of the tile) in a piece's mask reads
 * chan[r][off + L]; columns in no piece are zero (padding). */
typedef struct nn_piece {
    int64_t off;
    uint32_t mask;          /* bits of the half-panel's 16 columns */
} nn_piece;

/* Live K blocks: live[p * nn_kblocks(k) + kb] is 0 when rows [32 kb,
 * 32 kb + 32) of B are zero in every column of panel p (taps that read only
 * padding there).  The products skip them; NULL means every block is live.
 *
 * Packed compactly, a panel stores only its live blocks: slot[p * nkb +
 * kb] is block kb's place among panel p's stored blocks (each 16 k-pair
 * rows of 32 columns, 1024 values, at p * pstride + slot * 1024), or -1
 * when it is dead; NULL: every block stored, block kb at place kb. */
static inline int64_t nn_kblocks(int k)
{
    return ((int64_t)k + 31) / 32;
}

/* Packs as said above into panels pstride values apart, dead blocks
 * (slot -1) left unwritten. */
void nn_bpack_pieces(uint16_t *dst, int64_t pstride, const float *const *chan,
                     const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                     int64_t nh, int k, const int32_t *slot);

/* Packs the right-hand matrix of a stride-1 convolution from an input's
 * bf16 copy (channel pairs interleaved, nn_tensor.bf): as nn_bpack_pieces,
 * but per pair of rows: prow[r / 2] is the pair row (NULL: zeros) and
 * tap[r / 2] its tap; a column is one 32-bit pair, copied as it is. */
void nn_bpack_pairs(uint16_t *dst, int64_t pstride, const uint32_t *const *prow,
                    const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                    int64_t nh, int k, const int32_t *slot);

/* Packs the right-hand matrix of a strided convolution from an input's
 * bf16 copy, no im2col: pair row q (K rows 2q, 2q+1) is pair row prow[q]
 * (NULL: zeros) seen through tap tap[q]; for each tap and 16-column
 * half-panel hh, idx[(tap * nh + hh) * 16 + L] is the input column that
 * column L reads, where bit L of msk[tap * nh + hh] is set (else zero:
 * padding).  The columns' pairs are gathered, 16 at a time. */
void nn_bpack_gather(uint16_t *dst, const uint32_t *const *prow, const int32_t *tap,
                     const int32_t *idx, const uint16_t *msk, int64_t nh, int k);

/* A right-hand matrix as the kernels read it: column j of k-pair row q is
 * the bf16 pair at p + (j / 32) * pstride + q * rstride + (j % 32) * 2.
 * Packed panels (nn_bpack*): pstride 32 k, rstride 64.  A tensor's bf16
 * copy read in place: pstride 64, rstride 2 bfld.  With slot (packed
 * panels only), K block kb of panel j / 32 is at place slot[(j / 32) *
 * nkb + kb] of the panel (nn_kblocks above), and a dead block (-1) is
 * skipped as a dead one of live is.  With p2, k-pair rows from k2 on (a
 * multiple of 16) come from a second matrix: row q at p2 + (j / 32) *
 * pstride + (q - k2) * rstride2 (two tensors' bf16 copies read in place,
 * whose products are summed: nn_conv_join). */
typedef struct nn_bmat {
    const uint16_t *p;
    int64_t pstride, rstride;
    const int32_t *slot;
    const uint16_t *p2;
    int64_t k2, rstride2;
} nn_bmat;

static inline nn_bmat nn_bmat_packed(const uint16_t *p, int k)
{
    nn_bmat b = { p, (int64_t)NN_NB * k, 2 * NN_NB, NULL, NULL, 0, 0 };
    return b;
}

/* Where a product goes: C[r][j] = (A x B)[r][j] (+ bias[r]) (+ res[r][j])
 * (ReLU); bias/res NULL when absent.  With bf, the results are also
 * written rounded to bf16, rows 2p and 2p+1 interleaved in pair row p
 * (bfld columns; the rows come in pairs); then c may be NULL (bf16 only),
 * and the residual may come from a bf16 copy in the same layout (resbf,
 * resbfld) instead of res.  With cmap, product column j is column cmap[j]
 * of C, res, bf and resbf, whose pointers then address column 0 (the
 * columns of a product taken in another order: conv.c's regions). */
typedef struct nn_gemm_out {
    float *c;
    int64_t ldc;
    const float *bias;
    const float *res;
    int64_t ldr;
    int relu;
    uint16_t *bf;
    int64_t bfld;
    const uint16_t *resbf;
    int64_t resbfld;
    const int32_t *cmap;
} nn_gemm_out;

/* C rows [m0, m1) (m0 a multiple of nn_mpanel) and columns [0, n) =
 * A x B, B with a->k rows (k-pair rows a->k / 2) and n columns.  o's
 * pointers (c, bias, res; bf: the pair row) address row m0.  work:
 * nn_gemm_work(a, n) floats of the caller's (partial sums when K is cut
 * into blocks), 64-byte aligned.  live: the live K blocks per panel of B,
 * or NULL. */
void nn_gemm_bf16(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                  const nn_gemm_out *o, float *work, const uint8_t *live);
size_t nn_gemm_work(const nn_pack *a, int64_t n);

/* fp32 to bf16, round to nearest even (NaN stays NaN). */
static inline uint16_t nn_bf16(float f)
{
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

static inline float nn_bf16_float(uint16_t h)
{
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}

/* ---- tier entry points (gemm_avx512.c, gemm_amx.c; NN_X86_KERNELS) ----- */

void nn_bpack_avx512(uint16_t *dst, const float *const *rows, const int32_t *lo,
                     const int32_t *hi, int k, int64_t n);
void nn_bpack_pieces_avx512(uint16_t *dst, int64_t pstride, const float *const *chan,
                            const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                            int64_t nh, int k, const int32_t *slot);
void nn_bpack_pairs_avx512(uint16_t *dst, int64_t pstride, const uint32_t *const *prow,
                           const int32_t *tap, const nn_piece *pieces, const int32_t *start,
                           int64_t nh, int k, const int32_t *slot);
void nn_bpack_gather_avx512(uint16_t *dst, const uint32_t *const *prow, const int32_t *tap,
                            const int32_t *idx, const uint16_t *msk, int64_t nh, int k);
void nn_gemm_avx512(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                    const nn_gemm_out *o, const uint8_t *live);
void nn_gemm_amx(const nn_pack *a, int m0, int m1, const nn_bmat *b, int64_t n,
                 const nn_gemm_out *o, float *work, const uint8_t *live);
/* AMX blocking: K in blocks of NN_AMX_KC (an A slice of a 32-row panel,
 * 16 KB, and a B micro-panel of 32 columns, 16 KB, fit L1 together), rows
 * in blocks of NN_AMX_MC (a 128 KB block of A stays in L2 across the
 * columns).  Chosen among KC 128..1024, MC 128..512 and both loop orders on
 * the networks' shapes (docs/performance.md). */
#define NN_AMX_KC 256

/* K block of an AMX product: the whole K up to 512 (no partial sums to
 * store and reload: each 32x32 block of C is finished in one go), else
 * NN_AMX_KC */
#define NN_AMX_KSINGLE 512
static inline int64_t nn_amx_kc(int64_t k)
{
    return k <= NN_AMX_KSINGLE ? k : NN_AMX_KC;
}
#define NN_AMX_MC 256
/* Rows [r0, r0+rows) of o (relative to o's pointers), columns [j0,
 * j0+cols), from a block of the product (row stride ldb) through o's bias,
 * residual and ReLU. */
void nn_gemm_epilogue_avx512(const float *blk, int64_t ldb, int rows, int64_t r0, int64_t j0,
                             int cols, const nn_gemm_out *o);
/* Fetches into the caches the residual rows [r0, r0 + rows), columns [j0,
 * j0 + 32) that nn_gemm_epilogue_avx512 will read, so that they arrive
 * while the block's products run. */
void nn_gemm_epilogue_prefetch(int rows, int64_t r0, int64_t j0, const nn_gemm_out *o);
/* vdpbf16ps products per vfmadd231ps product at full rate, measured */
double nn_avx512_bf16_gain(void);

#endif

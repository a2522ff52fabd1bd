/*
 * nn_int.h - what the inference engine's files share: the tensor type, the
 * thread pool, the operators, the weights-file reader and the two networks.
 *
 * Activations are 5-D float tensors laid out channel-major, C x B x T x H x W
 * (B: images or clips in the batch, T: frames of a clip, 1 for 2-D nets).
 * Channel-major means a convolution is one matrix product
 *   Y[Cout][B*T*H*W] = W[Cout][Cin*kt*kh*kw] x cols[Cin*kt*kh*kw][B*T*H*W]
 * with no transposes, a 1x1 convolution needs no im2col at all, and a
 * channel slice of a concatenation is one contiguous block.
 */
#ifndef EN_NN_INT_H
#define EN_NN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "en_err.h"
#include "en_nn.h"
#include "gemm_int.h"

/* ---- tensors (tensor.c) ------------------------------------------------ */

enum { NN_C = 0, NN_B, NN_T, NN_H, NN_W, NN_DIMS };

typedef struct nn_tensor {
    float *data;
    int64_t shape[NN_DIMS];    /* C, B, T, H, W */
    int64_t stride[NN_DIMS];   /* elements; contiguous unless a view */
    size_t cap;                /* allocated floats when owned, 0 for views */
    /* bf16 products' copy of the values (conv_bf16.c): rounded to bf16,
     * channels 2p and 2p+1 interleaved in pair row p (bfld columns of
     * (c 2p, c 2p+1) pairs), rows past C/2 zero up to bfrows.  Written by
     * the convolutions that make the tensor, read by those that consume it
     * instead of packing; bfvalid says it matches data (any other write to
     * data, a reshape included, clears it). */
    uint16_t *bf;
    size_t bfcap;              /* allocated bf16 values */
    int64_t bfld, bfrows;
    int bfvalid;
    int dataold;               /* only bf holds the values (a convolution
                                  that feeds only convolutions skipped the
                                  fp32 ones); nn_tensor_data brings them */
} nn_tensor;

/* Sets the shape with contiguous strides, growing the storage when needed
 * (never shrinking: buffers are reused batch after batch). */
int nn_tensor_reshape(nn_tensor *t, int64_t c, int64_t b, int64_t tt,
                      int64_t h, int64_t w, en_err *err);
void nn_tensor_free(nn_tensor *t);
size_t nn_tensor_numel(const nn_tensor *t);
/* Columns of the channel-major matrix view: B*T*H*W. */
static inline int64_t nn_tensor_cols(const nn_tensor *t)
{
    return t->shape[NN_B] * t->shape[NN_T] * t->shape[NN_H] * t->shape[NN_W];
}
/* A view of channels [c0, c0+n) of a contiguous tensor (for concat); it
 * has no bf16 copy unless its maker points it at its slice of the owner's
 * (c0 and n even; a convolution into the view then writes it). */
nn_tensor nn_tensor_channels(const nn_tensor *t, int64_t c0, int64_t n);
/* Storage for t's bf16 copy at its current shape (C even, not a view):
 * pair rows padded with zero rows to a multiple of 16, columns to a
 * multiple of 32.  Does not mark it valid. */
int nn_tensor_bf_alloc(nn_tensor *t, en_err *err);
/* Fills t's bf16 copy from its data and marks it valid (tests; the
 * convolutions write theirs in their epilogue). */
int nn_tensor_bf_fill(nn_tensor *t, en_err *err);
/* Makes t->data hold t's values: when only its bf16 copy does (dataold),
 * widens it into data.  Logically const: the values do not change. */
void nn_tensor_data(const nn_tensor *t);

/* Allocates n bytes aligned for the vector units; buffers of 2 MB and more
 * are aligned to 2 MB and offered to the kernel as transparent huge pages
 * (the kernels read matrices with row strides of kilobytes: one TLB entry
 * per 2 MB instead of per 4 KB).  NULL when out of memory; free() frees. */
void *nn_alloc(size_t n);

/* ---- thread pool (threads.c) -------------------------------------------- */

typedef struct nn_pool nn_pool;
typedef void (*nn_task_fn)(void *arg, int task, int thread);

int nn_pool_create(int nthreads, nn_pool **out, en_err *err);
void nn_pool_free(nn_pool *p);
/* 1 when p was made by another process (this one was forked since); such
 * a pool is only released with nn_pool_abandon. */
int nn_pool_forked(const nn_pool *p);
void nn_pool_abandon(nn_pool *p);
int nn_pool_size(const nn_pool *p);
/* Runs fn(arg, task, thread) for task in [0, ntasks) on all threads (the
 * caller included) and returns when every task is done. */
void nn_pool_run(nn_pool *p, int ntasks, nn_task_fn fn, void *arg);
/* A per-thread scratch buffer of at least n floats (reused). */
float *nn_pool_scratch(nn_pool *p, int thread, size_t n);
/* Frees every thread's scratch and panels (between calls only); they are
 * made again as the next call needs them. */
void nn_pool_trim(nn_pool *p);
/* A second per-thread buffer, of at least n bf16 values: packed panels of
 * the right-hand matrix, while the first may hold what they are packed
 * from. */
uint16_t *nn_pool_panels(nn_pool *p, int thread, size_t n);

/* ---- operators (conv.c, ops.c) ----------------------------------------- */

typedef struct nn_conv {
    int cin, cout;
    int k[3], s[3], p[3], d[3];   /* T, H, W: kernel, stride, padding, dilation */
    float *w;                     /* [cout][kt][kh][kw][cin], tap-major, so a
                                     tap's weights are a [cout][cin] block
                                     (lda = K); BatchNorm folded */
    float *b;                     /* [cout] */
    /* Taps that only ever read padding for the current input size are
     * dropped (exact): the reduced weight matrix is cached per input size. */
    int64_t cache_in[3];
    int ntap[3], tap[3][16];
    float *wr;                    /* reduced weights when several, not all,
                                     taps live and the path is im2col */
    /* Sparse-tap plan (stride 1, large dilation): each live tap multiplies
     * only the output rectangle where it reads inside the input. */
    int sparse;
    /* Temporal-only kernels (k,1,1), stride 1: each tap is a product with
     * the input shifted by whole frames, no im2col at all. */
    int tshift;
    /* bf16 products, stride 1, many products reading padding: the output
     * columns are taken region by region (regions of the output where the
     * same taps read inside the input), so that each 32-column panel skips
     * the K blocks of the taps that read only padding there; cmap[p] is
     * the output column at place p, for a batch of cmap_b (conv.c) */
    int regions;
    int32_t *cmap;
    int64_t cmap_b;
    /* bf16 products: the output feeds only convolutions (set by the
     * network), so only its bf16 copy is written */
    int bf_only;
    /* Stride-1 3x3 kernels by Winograd F(4x4,3x3) (conv_wino.c): wu holds
     * the transformed weights of the 36 points, made on first use, each
     * point's [cout][cin] packed for the own fp32 kernel (wu_packed,
     * nn_sgemm_pack's layout) or row-major for OpenBLAS. */
    int wino;
    float *wu;
    int wu_packed;
    /* fp32 products on the own kernel (where nn_sgemm_packed_usable): the
     * weight matrix the dense, 1x1 and frame-shift paths multiply, packed
     * by nn_sgemm_pack for the current plan (wp_k columns); wp_full: it is
     * the whole of w, which is then dropped (conv.c's restore_w) */
    float *wp;
    int64_t wp_k;
    int wp_full;
    /* bf16 products (kern != NN_KERN_FP32, conv_bf16.c): the weights packed
     * for the kernel tier.  Each packed matrix comes with its column map:
     * entry j is q = (live tap ordinal) * cin + input channel, or -1 for a
     * zero column (channel groups padded to the tier's K step); q is also
     * the row of the right-hand matrix (im2col row, or channel). */
    nn_kern kern;
    nn_pack pk_full;              /* all taps, packed at load */
    int32_t *kq_full;
    nn_pack pk_live;              /* the live taps when not all are */
    int32_t *kq_live;
} nn_conv;

typedef struct nn_linear {
    int in, out;
    float *w;                     /* [out][in] */
    float *b;                     /* [out] */
} nn_linear;

void nn_conv_free(nn_conv *c);
/* Prepares a convolution's weights for kernel tier k (conv_bf16.c): for
 * bf16 tiers packs the whole weight matrix.  Called once, after the
 * weights are set (nn_w_conv does it at load). */
int nn_conv_set_kernel(nn_conv *c, nn_kern k, en_err *err);
/* Output size along one axis. */
int64_t nn_conv_out(const nn_conv *c, int axis, int64_t in);
/* Whether, on an input of size in (T, H, W), only the middle tap of each
 * axis ever reads inside the input, at the output's own position: c is
 * then a 1x1 convolution with the middle tap's weights. */
int nn_conv_centre_only(const nn_conv *c, const int64_t in[3]);
/* y = [relu](conv(x) + bias [+ res]); y reshaped here.  res may be NULL
 * and must have y's shape.  y must not alias x. */
int nn_conv_forward(nn_pool *pool, nn_conv *c, const nn_tensor *x,
                    nn_tensor *y, const nn_tensor *res, int relu, en_err *err);
/* Reference convolution by direct loops (tests). */
void nn_conv_reference(const nn_conv *c, const nn_tensor *x, nn_tensor *y);

/* Two 1x1 stride-1 convolutions whose outputs are summed (a bottleneck's
 * last convolution and its projection) as one bf16 product over both
 * inputs' bf16 copies: their weights packed side by side, a's columns
 * first, padded to whole K blocks (conv_bf16.c).  The sum is then added
 * in fp32 before its rounding, and the projection's output is never
 * written. */
typedef struct nn_conv_join {
    nn_pack pk;
    float *b;               /* a's bias plus b's */
    int k1;                 /* packed columns of a's part */
} nn_conv_join;

/* Packs a and b when both are 1x1, stride 1, on one bf16 tier, with the
 * same outputs; otherwise makes nothing (out->pk.data stays NULL). */
int nn_conv_join_make(const nn_conv *a, const nn_conv *b, nn_conv_join *out, en_err *err);
void nn_conv_join_free(nn_conv_join *j);
/* Whether j can take inputs xa (a's) and xb (b's): bf16 copies of the
 * same columns. */
int nn_conv_join_usable(const nn_conv_join *j, const nn_tensor *xa, const nn_tensor *xb);
/* y = [relu](a(xa) + b(xb)) through j (usable); y's bf16 copy, and its
 * fp32 values unless a->bf_only. */
int nn_conv_forward_join(nn_pool *pool, const nn_conv_join *j, const nn_conv *a,
                         const nn_tensor *xa, const nn_tensor *xb, nn_tensor *y, int relu,
                         en_err *err);

/* Max pooling over H, W (T untouched), -inf padding like PyTorch. */
int nn_maxpool2d(nn_pool *pool, const nn_tensor *x, nn_tensor *y, int k,
                 int s, int p, en_err *err);
/* Mean over T, H, W: y is C x B x 1 x 1 x 1. */
int nn_avgpool_global(const nn_tensor *x, nn_tensor *y, en_err *err);
/* Bilinear resize of H, W, align_corners=False (PyTorch's F.interpolate). */
int nn_upsample_bilinear(nn_pool *pool, const nn_tensor *x, nn_tensor *y,
                         int64_t oh, int64_t ow, en_err *err);
/* Copies a C x B x 1 x 1 x 1 tensor over every position of y's B's (the
 * ASPP pooling branch's upsample from 1x1 is a broadcast). */
void nn_broadcast_hw(const nn_tensor *v, nn_tensor *y);
void nn_relu(nn_tensor *x);
void nn_add(nn_tensor *y, const nn_tensor *x);
/* y[out][B] = W x[in][B] + b: x is in x B x 1 x 1 x 1. */
int nn_linear_forward(const nn_linear *l, const nn_tensor *x, nn_tensor *y,
                      en_err *err);
/* NCHW / NCTHW input (one contiguous image or clip after another) to
 * C x B x T x H x W. */
int nn_from_batch_major(const float *in, int64_t b, int64_t c, int64_t t,
                        int64_t h, int64_t w, nn_tensor *y, en_err *err);

/* ---- weights file (safetensors.c, json_min.c, weights.c) ----------------- */

typedef struct nn_st_tensor {
    char *name;
    int ndim;
    int64_t shape[8];
    const float *data;       /* into the mapping */
    size_t numel;
    int used;
} nn_st_tensor;

typedef struct nn_st {
    const char *path;
    void *map;
    size_t map_len;
    const uint8_t *data;     /* start of the data section */
    size_t data_len;
    nn_st_tensor *t;
    size_t nt;
    char **meta_keys, **meta_vals;
    size_t nmeta;
    nn_kern kern;            /* the kernel tier layers are prepared for
                                (set by the loader before building) */
} nn_st;

int nn_st_open(const char *path, nn_st *st, en_err *err);
void nn_st_close(nn_st *st);
const char *nn_st_meta(const nn_st *st, const char *key);
nn_st_tensor *nn_st_find(nn_st *st, const char *name);
/* Drops consumed pages of the mapping from the resident set. */
void nn_st_release(const nn_st *st, const void *p, size_t len);
/* Hex SHA-256 of the data section into hex[65]. */
int nn_st_sha256(const nn_st *st, char hex[65], en_err *err);
/* Fails naming the first tensor no layer took (an "extra" tensor). */
int nn_st_check_all_used(const nn_st *st, en_err *err);

/* Fetches tensor `name` (marks it used) and checks its rank and shape;
 * want[i] < 0 accepts any extent and reports it in got[] (may be NULL). */
int nn_w_get(nn_st *st, const char *name, int ndim, const int64_t *want,
             int64_t *got, const float **data, en_err *err);
/* Builds a convolution from `conv`.weight ([cout][cin][kh][kw] when ndim is
 * 4, [cout][cin][kt][kh][kw] when 5; plus `conv`.bias when has_bias) and
 * folds BatchNorm `bn` (eval mode, eps 1e-5) into it; bn may be NULL; then
 * prepares it for st->kern.  cin
 * must match (< 0: any); cout is read from the file, or checked when want_cout
 * > 0.  k/s/p/d are T,H,W. */
int nn_w_conv(nn_st *st, const char *conv, const char *bn, int has_bias,
              int ndim, int cin, int want_cout, const int k[3], const int s[3],
              const int p[3], const int d[3], nn_conv *out, en_err *err);
int nn_w_linear(nn_st *st, const char *name, int in, nn_linear *out,
                en_err *err);

/* Minimal JSON (json_min.c): a DOM for the safetensors header. */
typedef enum { NJ_NULL, NJ_BOOL, NJ_NUM, NJ_STR, NJ_ARR, NJ_OBJ } nj_type;
typedef struct nj_val {
    nj_type type;
    double num;
    int boolean;
    char *str;                 /* NJ_STR: NUL-terminated (no NULs inside) */
    size_t n;                  /* NJ_ARR/NJ_OBJ: element count */
    struct nj_val *items;      /* NJ_ARR/NJ_OBJ values */
    char **keys;               /* NJ_OBJ keys */
} nj_val;

/* Parses len bytes; errors give the byte offset.  Depth is limited. */
int nj_parse(const char *s, size_t len, nj_val *out, en_err *err);
void nj_free(nj_val *v);
const nj_val *nj_get(const nj_val *obj, const char *key);

/* ---- networks (deeplab.c, r2plus1d.c) ---------------------------------- */

typedef struct nn_deeplab nn_deeplab;
typedef struct nn_r2p1d nn_r2p1d;

int nn_deeplab_build(nn_st *st, nn_deeplab **out, en_err *err);
void nn_deeplab_free(nn_deeplab *net);
/* Frees the activation buffers; the next forward pass makes them again. */
void nn_deeplab_trim(nn_deeplab *net);
/* x: 3 x B x 1 x H x W; logits: B*H*W. */
int nn_deeplab_forward(nn_deeplab *net, nn_pool *pool, const nn_tensor *x,
                       float *logits, en_err *err);

int nn_r2p1d_build(nn_st *st, nn_r2p1d **out, en_err *err);
void nn_r2p1d_free(nn_r2p1d *net);
void nn_r2p1d_trim(nn_r2p1d *net);
/* x: 3 x B x T x H x W; out: B values. */
int nn_r2p1d_forward(nn_r2p1d *net, nn_pool *pool, const nn_tensor *x,
                     float *out, en_err *err);

#endif

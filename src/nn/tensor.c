/*
 * tensor.c - the engine's activation tensors: float32, C x B x T x H x W,
 * channel-major, with storage that grows to the largest shape seen and is
 * then reused, so a long video runs batch after batch without allocating.
 */
#include "nn_int.h"
#include "en_util.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NN_HUGE (2u << 20)

/* glibc raises its mmap threshold to the size of each mapped block freed
 * (up to 32 MB), after which such blocks come from the heap and stay there
 * once freed: a model's trimmed working set (en_nn_model_trim) would then
 * not be given back.  A fixed threshold keeps every large buffer a mapping
 * of its own, returned to the system when freed (process-wide, and only
 * for blocks of 2 MB and more). */
static pthread_once_t fixed_threshold = PTHREAD_ONCE_INIT;

static void fix_threshold(void)
{
    (void)mallopt(M_MMAP_THRESHOLD, NN_HUGE);
}

void *nn_alloc(size_t n)
{
    void *p = NULL;
    size_t whole = (n + NN_HUGE - 1) / NN_HUGE * NN_HUGE, align = NN_HUGE;

    if (n < NN_HUGE)
        return posix_memalign(&p, 64, n) == 0 ? p : NULL;
    (void)pthread_once(&fixed_threshold, fix_threshold);
    /* Whole huge pages when the last one is mostly used; otherwise (many
     * layers' weights are 2 to 16 MB, rounding would waste up to 2 MB a
     * block) the huge pages inside the block, 4 KB pages at its ends. */
    if (whole - n > n / 8) {
        whole = n;
        align = 64;
    }
    if (posix_memalign(&p, align, whole) != 0)
        return NULL;
    en_advise_huge(p, whole);
    return p;
}

int nn_tensor_reshape(nn_tensor *t, int64_t c, int64_t b, int64_t tt,
                      int64_t h, int64_t w, en_err *err)
{
    int64_t dims[NN_DIMS] = { c, b, tt, h, w };
    size_t n = 1;

    for (int i = 0; i < NN_DIMS; i++) {
        if (dims[i] <= 0 || dims[i] > (1 << 24))
            return en_err_set(err, EN_EINVAL, "nn: tensor extent %lld out of range",
                              (long long)dims[i]);
        if (n > ((size_t)1 << 40) / (size_t)dims[i])
            return en_err_set(err, EN_ELIMIT, "nn: tensor too large");
        n *= (size_t)dims[i];
    }
    if (n > t->cap) {
        /* 64-byte alignment keeps rows friendly to the vector units. */
        float *p = nn_alloc(n * sizeof(float));
        if (!p)
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for a %zu MB activation",
                              n * sizeof(float) >> 20);
        if (t->cap)
            free(t->data);
        t->data = p;
        t->cap = n;
    }
    memcpy(t->shape, dims, sizeof dims);
    t->bfvalid = 0;
    t->dataold = 0;
    t->stride[NN_W] = 1;
    for (int i = NN_DIMS - 2; i >= 0; i--)
        t->stride[i] = t->stride[i + 1] * t->shape[i + 1];
    return EN_OK;
}

void nn_tensor_free(nn_tensor *t)
{
    if (t->cap) {
        free(t->data);
        free(t->bf);
    }
    memset(t, 0, sizeof *t);
}

int nn_tensor_bf_alloc(nn_tensor *t, en_err *err)
{
    const int64_t pairs = t->shape[NN_C] / 2, cols = nn_tensor_cols(t);
    const int64_t ld = (cols + 31) / 32 * 32, rows = (pairs + 15) / 16 * 16;
    const size_t n = (size_t)(rows * ld) * 2;

    if (t->shape[NN_C] % 2 || !t->cap)
        return en_err_set(err, EN_EINVAL, "nn: no bf16 copy for this tensor");
    if (n > t->bfcap) {
        uint16_t *p = nn_alloc(n * sizeof *p);
        if (!p)
            return en_err_set(err, EN_ENOMEM, "nn: out of memory for a bf16 activation");
        free(t->bf);
        t->bf = p;
        t->bfcap = n;
    }
    if (rows > pairs)
        memset(t->bf + (size_t)(pairs * ld) * 2, 0, (size_t)((rows - pairs) * ld) * 2 * sizeof *t->bf);
    t->bfld = ld;
    t->bfrows = rows;
    return EN_OK;
}

int nn_tensor_bf_fill(nn_tensor *t, en_err *err)
{
    const int64_t cols = nn_tensor_cols(t);
    int rc = nn_tensor_bf_alloc(t, err);

    if (rc != EN_OK)
        return rc;
    for (int64_t c = 0; c < t->shape[NN_C]; c++)
        for (int64_t j = 0; j < cols; j++)
            t->bf[((c / 2) * t->bfld + j) * 2 + c % 2] = nn_bf16(t->data[c * t->stride[NN_C] + j]);
    t->bfvalid = 1;
    return EN_OK;
}

size_t nn_tensor_numel(const nn_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < NN_DIMS; i++)
        n *= (size_t)t->shape[i];
    return n;
}

nn_tensor nn_tensor_channels(const nn_tensor *t, int64_t c0, int64_t n)
{
    nn_tensor v = *t;
    v.data = t->data + c0 * t->stride[NN_C];
    v.shape[NN_C] = n;
    v.cap = 0;
    v.bf = NULL;
    v.bfcap = 0;
    v.bfvalid = 0;
    return v;
}

void nn_tensor_data(const nn_tensor *ct)
{
    nn_tensor *t = (nn_tensor *)(uintptr_t)ct;   /* see nn_int.h */
    const int64_t cols = nn_tensor_cols(t);

    if (!t->dataold)
        return;
    for (int64_t c = 0; c < t->shape[NN_C]; c++) {
        const uint16_t *src = t->bf + (c / 2) * t->bfld * 2 + c % 2;
        float *dst = t->data + c * t->stride[NN_C];
        for (int64_t j = 0; j < cols; j++)
            dst[j] = nn_bf16_float(src[2 * j]);
    }
    t->dataold = 0;
}

/*
 * r2plus1d.c - R(2+1)D-18, EchoNet-Dynamic's ejection-fraction network, as
 * torchvision 0.14 builds video.r2plus1d_18() with fc = Linear(512, 1):
 *
 *   stem   conv (1,7,7)/(1,2,2) -> 45 ch + BN + ReLU,
 *          conv (3,1,1) -> 64 ch + BN + ReLU
 *   layer1..4  two BasicBlocks each, strides 1, 2, 2, 2; every 3x3x3
 *          convolution is factored into a spatial (1,3,3) convolution to
 *          `midplanes` channels + BN + ReLU and a temporal (3,1,1) one; the
 *          stride is split the same way (spatial, then temporal); a block's
 *          projection shortcut is a 1x1x1 conv with stride (s,s,s) + BN
 *   head   global average over T,H,W, then fc
 *
 * Input 3 x 32 x 112 x 112 (32 frames, period 2).  Widths, midplanes
 * included, come from the weights file.
 */
#include "nn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct basic_block {
    nn_conv s1, t1, s2, t2, ds;   /* spatial/temporal halves of conv1, conv2 */
    int has_ds;
} basic_block;

enum { R_NBLOCKS = 8, R_NBUF = 7 };

struct nn_r2p1d {
    nn_conv stem_s, stem_t;
    basic_block blocks[R_NBLOCKS];
    nn_linear fc;
    nn_tensor buf[R_NBUF];
};

static int conv3d(nn_st *st, const char *conv, const char *bn, int cin, int want_cout,
                  int kt, int khw, int s_t, int s_hw, int p_t, int p_hw, nn_conv *c,
                  en_err *err)
{
    int k[3] = { kt, khw, khw }, s[3] = { s_t, s_hw, s_hw }, p[3] = { p_t, p_hw, p_hw };
    int d[3] = { 1, 1, 1 };
    return nn_w_conv(st, conv, bn, 0, 5, cin, want_cout, k, s, p, d, c, err);
}

/* Conv2Plus1D + BN: `<pre>.0.0` spatial, `<pre>.0.1` its BN, `<pre>.0.3`
 * temporal, `<pre>.1` the block's BN after it. */
static int factored(nn_st *st, const char *pre, int cin, int want_cout, int stride,
                    nn_conv *sp, nn_conv *tm, en_err *err)
{
    char a[160], b[160];
    int rc;

    snprintf(a, sizeof a, "%s.0.0", pre);
    snprintf(b, sizeof b, "%s.0.1", pre);
    if ((rc = conv3d(st, a, b, cin, -1, 1, 3, 1, stride, 0, 1, sp, err)) != EN_OK)
        return rc;
    snprintf(a, sizeof a, "%s.0.3", pre);
    snprintf(b, sizeof b, "%s.1", pre);
    return conv3d(st, a, b, sp->cout, want_cout, 3, 1, stride, 1, 1, 0, tm, err);
}

int nn_r2p1d_build(nn_st *st, nn_r2p1d **out, en_err *err)
{
    static const int stride[4] = { 1, 2, 2, 2 };
    nn_r2p1d *net = calloc(1, sizeof *net);
    char pre[64], a[96], b[96];
    int rc, inplanes, bi = 0;

    if (!net)
        return en_err_set(err, EN_ENOMEM, "out of memory");
    if ((rc = conv3d(st, "stem.0", "stem.1", 3, -1, 1, 7, 1, 2, 0, 3, &net->stem_s, err)) != EN_OK ||
        (rc = conv3d(st, "stem.3", "stem.4", net->stem_s.cout, -1, 3, 1, 1, 1, 1, 0,
                     &net->stem_t, err)) != EN_OK)
        goto fail;
    inplanes = net->stem_t.cout;
    for (int l = 0; l < 4; l++) {
        for (int i = 0; i < 2; i++, bi++) {
            basic_block *blk = &net->blocks[bi];
            int s = i == 0 ? stride[l] : 1;
            snprintf(pre, sizeof pre, "layer%d.%d.conv1", l + 1, i);
            if ((rc = factored(st, pre, inplanes, -1, s, &blk->s1, &blk->t1, err)) != EN_OK)
                goto fail;
            snprintf(pre, sizeof pre, "layer%d.%d.conv2", l + 1, i);
            if ((rc = factored(st, pre, blk->t1.cout, blk->t1.cout, 1, &blk->s2, &blk->t2,
                               err)) != EN_OK)
                goto fail;
            blk->has_ds = s != 1 || inplanes != blk->t2.cout;
            if (blk->has_ds) {
                snprintf(a, sizeof a, "layer%d.%d.downsample.0", l + 1, i);
                snprintf(b, sizeof b, "layer%d.%d.downsample.1", l + 1, i);
                if ((rc = conv3d(st, a, b, inplanes, blk->t2.cout, 1, 1, s, s, 0, 0,
                                 &blk->ds, err)) != EN_OK)
                    goto fail;
            }
            inplanes = blk->t2.cout;
        }
    }
    if ((rc = nn_w_linear(st, "fc", inplanes, &net->fc, err)) != EN_OK)
        goto fail;
    /* With bf16 products, outputs read only by convolutions that take the
     * bf16 copy (stride-1 ones, residual adds) need no fp32 copy
     * (nn_conv.bf_only): inside a block unless the temporal half strides,
     * the projection, a block's output when the next block does not stride
     * (the first blocks of layers 2-4 read theirs through im2col), the
     * temporal stem.  The last block's output goes to average pooling. */
    net->stem_t.bf_only = 1;
    for (int i = 0; i < R_NBLOCKS; i++) {
        basic_block *blk = &net->blocks[i];
        blk->s1.bf_only = blk->t1.s[0] == 1;
        blk->t1.bf_only = blk->s2.bf_only = blk->ds.bf_only = 1;
        blk->t2.bf_only = i + 1 < R_NBLOCKS && net->blocks[i + 1].s1.s[1] == 1;
    }
    if (net->fc.out != 1) {
        rc = en_err_set(err, EN_EFORMAT, "weights file %s: tensor 'fc.weight' has %d outputs, "
                        "expected 1 (EF)", st->path, net->fc.out);
        goto fail;
    }
    *out = net;
    return EN_OK;
fail:
    nn_r2p1d_free(net);
    return rc;
}

void nn_r2p1d_free(nn_r2p1d *net)
{
    if (!net)
        return;
    nn_conv_free(&net->stem_s);
    nn_conv_free(&net->stem_t);
    for (int i = 0; i < R_NBLOCKS; i++) {
        basic_block *b = &net->blocks[i];
        nn_conv_free(&b->s1); nn_conv_free(&b->t1);
        nn_conv_free(&b->s2); nn_conv_free(&b->t2);
        nn_conv_free(&b->ds);
    }
    free(net->fc.w);
    free(net->fc.b);
    for (int i = 0; i < R_NBUF; i++)
        nn_tensor_free(&net->buf[i]);
    free(net);
}

void nn_r2p1d_trim(nn_r2p1d *net)
{
    for (int i = 0; i < R_NBUF; i++)
        nn_tensor_free(&net->buf[i]);
}

int nn_r2p1d_forward(nn_r2p1d *net, nn_pool *pool, const nn_tensor *x, float *out,
                     en_err *err)
{
    nn_tensor *buf = net->buf, *cur = &buf[0], *nxt = &buf[1];
    int rc;

    if (x->shape[NN_C] != 3)
        return en_err_set(err, EN_EINVAL, "EF expects 3-channel clips");
    if ((rc = nn_conv_forward(pool, &net->stem_s, x, &buf[2], NULL, 1, err)) != EN_OK ||
        (rc = nn_conv_forward(pool, &net->stem_t, &buf[2], cur, NULL, 1, err)) != EN_OK)
        return rc;
    for (int i = 0; i < R_NBLOCKS; i++) {
        basic_block *b = &net->blocks[i];
        nn_tensor *t;
        if ((rc = nn_conv_forward(pool, &b->s1, cur, &buf[2], NULL, 1, err)) != EN_OK ||
            (rc = nn_conv_forward(pool, &b->t1, &buf[2], &buf[3], NULL, 1, err)) != EN_OK ||
            (rc = nn_conv_forward(pool, &b->s2, &buf[3], &buf[2], NULL, 1, err)) != EN_OK)
            return rc;
        if (b->has_ds && (rc = nn_conv_forward(pool, &b->ds, cur, &buf[4], NULL, 0, err)) != EN_OK)
            return rc;
        if ((rc = nn_conv_forward(pool, &b->t2, &buf[2], nxt, b->has_ds ? &buf[4] : cur, 1,
                                  err)) != EN_OK)
            return rc;
        t = cur; cur = nxt; nxt = t;
    }
    if ((rc = nn_avgpool_global(cur, &buf[5], err)) != EN_OK ||
        (rc = nn_linear_forward(&net->fc, &buf[5], &buf[6], err)) != EN_OK)
        return rc;
    memcpy(out, buf[6].data, (size_t)x->shape[NN_B] * sizeof *out);
    return EN_OK;
}

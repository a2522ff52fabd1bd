/*
 * deeplab.c - DeepLabV3 with a ResNet-50 backbone and one output channel,
 * EchoNet-Dynamic's segmentation network, exactly as torchvision 0.14 builds
 * deeplabv3_resnet50(aux_loss=False) with classifier[-1] = Conv2d(256, 1, 1):
 *
 *   stem   conv 7x7/2 + BN + ReLU, max pool 3x3/2 (112 -> 28)
 *   layer1..4  Bottlenecks [3, 4, 6, 3]; conv2 (3x3) carries the stride
 *          (torchvision's "ResNet v1.5"); layers 3 and 4 replace their stride
 *          with dilation 2 and 4 (output stride 8: 14x14 at 112x112), the
 *          first block of a dilated layer keeping the previous dilation
 *   ASPP   1x1, 3x3 rates 12/24/36, image pooling; concat; 1x1 project
 *          (Dropout is off in eval mode)
 *   head   3x3 conv + BN + ReLU, 1x1 conv to one logit, bilinear upsample
 *          (align_corners=False) back to the input size
 *
 * Channel widths come from the weights file.  At 112x112 the rate-24 and
 * rate-36 branches only ever see their centre tap inside the 14x14 map:
 * they and the 1x1 branch are then one 1x1 convolution with three times
 * the outputs (aspp_mid), whose product packs the input once and gives
 * each panel of it three times the rows (fp32: 15.2 against 16.6 ms per
 * 8 frames, 6 alternating runs; 335 GFLOP/s against 307-319).
 * So that its outputs are one slice of the concatenation, the
 * concatenation holds the branches in the order 1x1, rate 24, rate 36,
 * rate 12, pooling, and the projection's input channels are permuted to
 * match at load.  The pooling branch's "upsample" from 1x1 is a
 * broadcast.
 */
#include "nn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bottleneck {
    nn_conv c1, c2, c3, ds;
    int has_ds;
    nn_conv_join join;        /* bf16: c3 and a stride-1 projection as one */
} bottleneck;

enum { DL_NBLOCKS = 3 + 4 + 6 + 3, DL_NBUF = 8 };

struct nn_deeplab {
    nn_conv stem;
    bottleneck blocks[DL_NBLOCKS];
    nn_conv aspp[4];          /* 1x1, rate 12, 24, 36 */
    nn_conv aspp_mid;         /* 1x1, rate 24's and 36's centre taps, as one */
    nn_conv aspp_pool;        /* after the global average */
    nn_conv project, head, out;
    int aspp_width;
    nn_tensor buf[DL_NBUF];
};

static int conv2d(nn_st *st, const char *conv, const char *bn, int has_bias,
                  int cin, int want_cout, int k, int s, int p, int d, nn_conv *c,
                  en_err *err)
{
    int kk[3] = { 1, k, k }, ss[3] = { 1, s, s }, pp[3] = { 0, p, p }, dd[3] = { 1, d, d };
    return nn_w_conv(st, conv, bn, has_bias, 4, cin, want_cout, kk, ss, pp, dd, c, err);
}

static int build_backbone(nn_st *st, nn_deeplab *net, int *width, en_err *err)
{
    static const int nblocks[4] = { 3, 4, 6, 3 };
    static const int stride[4] = { 1, 2, 2, 2 };
    static const int dilate[4] = { 0, 0, 1, 1 };
    char a[128], b[128];
    int rc, inplanes, dilation = 1, bi = 0;

    if ((rc = conv2d(st, "backbone.conv1", "backbone.bn1", 0, 3, -1, 7, 2, 3, 1,
                     &net->stem, err)) != EN_OK)
        return rc;
    inplanes = net->stem.cout;
    for (int l = 0; l < 4; l++) {
        int s = stride[l], prev = dilation;
        if (dilate[l]) {
            dilation *= s;
            s = 1;
        }
        for (int i = 0; i < nblocks[l]; i++, bi++) {
            bottleneck *blk = &net->blocks[bi];
            int bs = i == 0 ? s : 1, bd = i == 0 ? prev : dilation;
            const char *pre = "backbone.layer";
#define NAME(buf, leaf) snprintf(buf, sizeof buf, "%s%d.%d.%s", pre, l + 1, i, leaf)
            NAME(a, "conv1"); NAME(b, "bn1");
            if ((rc = conv2d(st, a, b, 0, inplanes, -1, 1, 1, 0, 1, &blk->c1, err)) != EN_OK)
                return rc;
            NAME(a, "conv2"); NAME(b, "bn2");
            if ((rc = conv2d(st, a, b, 0, blk->c1.cout, blk->c1.cout, 3, bs, bd, bd,
                             &blk->c2, err)) != EN_OK)
                return rc;
            NAME(a, "conv3"); NAME(b, "bn3");
            if ((rc = conv2d(st, a, b, 0, blk->c2.cout, -1, 1, 1, 0, 1, &blk->c3, err)) != EN_OK)
                return rc;
            /* torchvision adds a projection exactly when shape changes */
            blk->has_ds = bs != 1 || inplanes != blk->c3.cout;
            if (blk->has_ds) {
                NAME(a, "downsample.0"); NAME(b, "downsample.1");
                if ((rc = conv2d(st, a, b, 0, inplanes, blk->c3.cout, 1, bs, 0, 1,
                                 &blk->ds, err)) != EN_OK)
                    return rc;
            }
#undef NAME
            inplanes = blk->c3.cout;
        }
    }
    *width = inplanes;
    return EN_OK;
}

static int build_head(nn_st *st, nn_deeplab *net, int feat, en_err *err)
{
    static const int rates[3] = { 12, 24, 36 };
    char a[128], b[128];
    int rc, w;

    if ((rc = conv2d(st, "classifier.0.convs.0.0", "classifier.0.convs.0.1", 0, feat, -1,
                     1, 1, 0, 1, &net->aspp[0], err)) != EN_OK)
        return rc;
    w = net->aspp_width = net->aspp[0].cout;
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "classifier.0.convs.%d.0", i + 1);
        snprintf(b, sizeof b, "classifier.0.convs.%d.1", i + 1);
        if ((rc = conv2d(st, a, b, 0, feat, w, 3, 1, rates[i], rates[i], &net->aspp[i + 1],
                         err)) != EN_OK)
            return rc;
    }
    if ((rc = conv2d(st, "classifier.0.convs.4.1", "classifier.0.convs.4.2", 0, feat, w,
                     1, 1, 0, 1, &net->aspp_pool, err)) != EN_OK ||
        (rc = conv2d(st, "classifier.0.project.0", "classifier.0.project.1", 0, 5 * w, -1,
                     1, 1, 0, 1, &net->project, err)) != EN_OK ||
        (rc = conv2d(st, "classifier.1", "classifier.2", 0, net->project.cout, -1,
                     3, 1, 1, 1, &net->head, err)) != EN_OK ||
        (rc = conv2d(st, "classifier.4", NULL, 1, net->head.cout, 1, 1, 1, 0, 1,
                     &net->out, err)) != EN_OK)
        return rc;
    return EN_OK;
}

/* With bf16 products, outputs read only by convolutions (which take the
 * bf16 copy: in place, packed from it, or gathered for strided ones) and
 * residual adds need no fp32 copy (nn_conv.bf_only): every convolution of
 * the bottlenecks (the last block's output goes to ASPP's convolutions and
 * its global average, which sums the bf16 copy), ASPP's projection and the
 * head; and the stem's, which max pooling reads and pools as bf16 (ops.c:
 * exact, the maximum of rounded values is the rounded maximum) into a
 * bf16 copy alone; and ASPP's branches, which write the concatenation's
 * bf16 copy that the projection reads. */
static void mark_bf_only(nn_deeplab *net)
{
    for (int i = 0; i < DL_NBLOCKS; i++) {
        bottleneck *b = &net->blocks[i];
        b->c1.bf_only = b->c2.bf_only = b->c3.bf_only = b->ds.bf_only = 1;
    }
    net->stem.bf_only = net->project.bf_only = net->head.bf_only = 1;
    net->aspp_mid.bf_only = 1;
    for (int i = 0; i < 4; i++)
        net->aspp[i].bf_only = 1;
}

/* Where the concatenation holds ASPP's branch i (aspp[i]; the pooling
 * branch is last) */
static const int aspp_slot[4] = { 0, 3, 1, 2 };

/* aspp_mid from the 1x1 branch and the middle taps of rates 24 and 36,
 * and the projection's input channels in the concatenation's order. */
static int aspp_merge(nn_deeplab *net, en_err *err)
{
    const nn_conv *src[3] = { &net->aspp[0], &net->aspp[2], &net->aspp[3] };
    nn_conv *m = &net->aspp_mid, *pr = &net->project;
    const int64_t w = net->aspp_width, cin = net->aspp[0].cin;
    float *row;
    int rc;

    memset(m, 0, sizeof *m);
    m->cin = (int)cin;
    m->cout = (int)(3 * w);
    for (int a = 0; a < 3; a++)
        m->k[a] = m->s[a] = m->d[a] = 1;
    m->w = malloc((size_t)(3 * w * cin) * sizeof *m->w);
    m->b = malloc((size_t)(3 * w) * sizeof *m->b);
    row = malloc((size_t)(5 * w) * sizeof *row);
    if (!m->w || !m->b || !row) {
        free(row);
        return en_err_set(err, EN_ENOMEM, "out of memory for ASPP's merged branches");
    }
    for (int i = 0; i < 3; i++) {
        const nn_conv *c = src[i];
        /* the middle tap's [cout][cin] block of a tap-major row */
        const int64_t taps = (int64_t)c->k[0] * c->k[1] * c->k[2];
        const int64_t mid = (((int64_t)(c->k[0] - 1) / 2 * c->k[1] + (c->k[1] - 1) / 2) *
                             c->k[2] + (c->k[2] - 1) / 2) * cin;
        for (int64_t o = 0; o < w; o++)
            memcpy(m->w + (i * w + o) * cin, c->w + o * taps * cin + mid,
                   (size_t)cin * sizeof *m->w);
        memcpy(m->b + i * w, c->b, (size_t)w * sizeof *m->b);
    }
    /* projection: input block b of the concatenation was aspp[b] (the
     * pooling branch 4); now it is the branch whose slot is b */
    for (int64_t o = 0; o < pr->cout; o++) {
        float *wo = pr->w + o * 5 * w;
        for (int i = 0; i < 4; i++)
            memcpy(row + aspp_slot[i] * w, wo + i * w, (size_t)w * sizeof *row);
        memcpy(wo, row, (size_t)(4 * w) * sizeof *row);
    }
    free(row);
    rc = nn_conv_set_kernel(m, net->aspp[0].kern, err);
    return rc != EN_OK ? rc : nn_conv_set_kernel(pr, pr->kern, err);
}

int nn_deeplab_build(nn_st *st, nn_deeplab **out, en_err *err)
{
    nn_deeplab *net = calloc(1, sizeof *net);
    int rc, feat;

    if (!net)
        return en_err_set(err, EN_ENOMEM, "out of memory");
    if ((rc = build_backbone(st, net, &feat, err)) != EN_OK ||
        (rc = build_head(st, net, feat, err)) != EN_OK) {
        nn_deeplab_free(net);
        return rc;
    }
    if ((rc = aspp_merge(net, err)) != EN_OK) {
        nn_deeplab_free(net);
        return rc;
    }
    mark_bf_only(net);
    for (int i = 0; i < DL_NBLOCKS; i++) {
        bottleneck *b = &net->blocks[i];
        if (b->has_ds && (rc = nn_conv_join_make(&b->c3, &b->ds, &b->join, err)) != EN_OK) {
            nn_deeplab_free(net);
            return rc;
        }
    }
    *out = net;
    return EN_OK;
}

void nn_deeplab_free(nn_deeplab *net)
{
    if (!net)
        return;
    nn_conv_free(&net->stem);
    for (int i = 0; i < DL_NBLOCKS; i++) {
        nn_conv_free(&net->blocks[i].c1);
        nn_conv_free(&net->blocks[i].c2);
        nn_conv_free(&net->blocks[i].c3);
        nn_conv_free(&net->blocks[i].ds);
        nn_conv_join_free(&net->blocks[i].join);
    }
    for (int i = 0; i < 4; i++)
        nn_conv_free(&net->aspp[i]);
    nn_conv_free(&net->aspp_mid);
    nn_conv_free(&net->aspp_pool);
    nn_conv_free(&net->project);
    nn_conv_free(&net->head);
    nn_conv_free(&net->out);
    for (int i = 0; i < DL_NBUF; i++)
        nn_tensor_free(&net->buf[i]);
    free(net);
}

void nn_deeplab_trim(nn_deeplab *net)
{
    for (int i = 0; i < DL_NBUF; i++)
        nn_tensor_free(&net->buf[i]);
}

/* Channels [c0, c0+n) of the ASPP concatenation, as a view; with bf (bf16
 * products) also its pair rows of the concatenation's bf16 copy, which
 * the branches then write alone and the projection reads in place. */
static nn_tensor cat_slice(nn_tensor *cat, int64_t c0, int64_t n, int bf)
{
    nn_tensor s = nn_tensor_channels(cat, c0, n);
    if (bf) {
        s.bf = cat->bf + (c0 / 2) * cat->bfld * 2;
        s.bfld = cat->bfld;
        s.bfrows = n / 2;
    }
    return s;
}

/* The pooling branch (one value per channel and image) over its slice of
 * the concatenation's bf16 copy: the "upsample" from 1x1 is a broadcast. */
static void broadcast_bf(const nn_tensor *v, nn_tensor *slice)
{
    const int64_t C = slice->shape[NN_C], B = slice->shape[NN_B];
    const int64_t n = slice->shape[NN_T] * slice->shape[NN_H] * slice->shape[NN_W];

    nn_tensor_data(v);
    for (int64_t c = 0; c + 1 < C; c += 2)
        for (int64_t b = 0; b < B; b++) {
            const uint32_t pair = (uint32_t)nn_bf16(v->data[c * B + b]) |
                                  (uint32_t)nn_bf16(v->data[(c + 1) * B + b]) << 16;
            uint32_t *p = (uint32_t *)(void *)slice->bf + (c / 2) * slice->bfld + b * n;
            for (int64_t i = 0; i < n; i++)
                p[i] = pair;
        }
}

/* One bottleneck: x -> y, using t1, t2, ds as scratch. */
static int block_forward(nn_pool *pool, bottleneck *b, const nn_tensor *x,
                         nn_tensor *y, nn_tensor *t1, nn_tensor *t2, nn_tensor *ds,
                         en_err *err)
{
    int rc;
    if ((rc = nn_conv_forward(pool, &b->c1, x, t1, NULL, 1, err)) != EN_OK ||
        (rc = nn_conv_forward(pool, &b->c2, t1, t2, NULL, 1, err)) != EN_OK)
        return rc;
    /* bf16: c3 and the projection in one product, the sum rounded once
     * (the projection's output never written nor read back) */
    if (b->has_ds && nn_conv_join_usable(&b->join, t2, x))
        return nn_conv_forward_join(pool, &b->join, &b->c3, t2, x, y, 1, err);
    if (b->has_ds && (rc = nn_conv_forward(pool, &b->ds, x, ds, NULL, 0, err)) != EN_OK)
        return rc;
    return nn_conv_forward(pool, &b->c3, t2, y, b->has_ds ? ds : x, 1, err);
}

int nn_deeplab_forward(nn_deeplab *net, nn_pool *pool, const nn_tensor *x,
                       float *logits, en_err *err)
{
    nn_tensor *buf = net->buf;
    nn_tensor *cur = &buf[0], *nxt = &buf[1];
    const int64_t H = x->shape[NN_H], W = x->shape[NN_W], B = x->shape[NN_B];
    const int w = net->aspp_width;
    int rc;

    if (x->shape[NN_C] != 3 || x->shape[NN_T] != 1)
        return en_err_set(err, EN_EINVAL, "segmentation expects 3-channel frames");
    if ((rc = nn_conv_forward(pool, &net->stem, x, &buf[2], NULL, 1, err)) != EN_OK ||
        (rc = nn_maxpool2d(pool, &buf[2], cur, 3, 2, 1, err)) != EN_OK)
        return rc;
    for (int i = 0; i < DL_NBLOCKS; i++) {
        nn_tensor *t;
        if ((rc = block_forward(pool, &net->blocks[i], cur, nxt, &buf[2], &buf[3], &buf[4],
                                err)) != EN_OK)
            return rc;
        t = cur; cur = nxt; nxt = t;
    }

    /* ASPP: the five branches write straight into channel slices of one
     * concatenation buffer (channel-major: each slice is contiguous). */
    {
        nn_tensor *cat = &buf[5], *pooled = &buf[6], *pv = &buf[7];
        const int bf = net->project.kern != NN_KERN_FP32 && w % 2 == 0;
        const int64_t in[3] = { 1, cur->shape[NN_H], cur->shape[NN_W] };
        const int merged = nn_conv_centre_only(&net->aspp[2], in) &&
                           nn_conv_centre_only(&net->aspp[3], in);
        if ((rc = nn_tensor_reshape(cat, 5 * w, B, 1, cur->shape[NN_H], cur->shape[NN_W],
                                    err)) != EN_OK ||
            (bf && (rc = nn_tensor_bf_alloc(cat, err)) != EN_OK))
            return rc;
        if (merged) {
            nn_tensor slice = cat_slice(cat, 0, 3 * (int64_t)w, bf);
            if ((rc = nn_conv_forward(pool, &net->aspp_mid, cur, &slice, NULL, 1, err)) != EN_OK)
                return rc;
        }
        for (int i = 0; i < 4; i++) {
            nn_tensor slice = cat_slice(cat, (int64_t)aspp_slot[i] * w, w, bf);
            if (merged && aspp_slot[i] < 3)
                continue;
            if ((rc = nn_conv_forward(pool, &net->aspp[i], cur, &slice, NULL, 1, err)) != EN_OK)
                return rc;
        }
        if ((rc = nn_avgpool_global(cur, pooled, err)) != EN_OK ||
            (rc = nn_conv_forward(pool, &net->aspp_pool, pooled, pv, NULL, 1, err)) != EN_OK)
            return rc;
        {
            nn_tensor slice = cat_slice(cat, 4 * (int64_t)w, w, bf);
            if (bf)
                broadcast_bf(pv, &slice);
            else
                nn_broadcast_hw(pv, &slice);
        }
        /* bf16: the branches wrote the concatenation's bf16 copy alone */
        cat->bfvalid = bf;
        cat->dataold = bf;
        if ((rc = nn_conv_forward(pool, &net->project, cat, nxt, NULL, 1, err)) != EN_OK ||
            (rc = nn_conv_forward(pool, &net->head, nxt, cur, NULL, 1, err)) != EN_OK ||
            (rc = nn_conv_forward(pool, &net->out, cur, nxt, NULL, 0, err)) != EN_OK ||
            (rc = nn_upsample_bilinear(pool, nxt, cur, H, W, err)) != EN_OK)
            return rc;
    }
    /* one channel: C x B x 1 x H x W is already B x H x W */
    memcpy(logits, cur->data, (size_t)(B * H * W) * sizeof *logits);
    return EN_OK;
}

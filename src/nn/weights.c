/*
 * weights.c - turns checked tensors of the weights file into layers: the
 * shape of every tensor is compared with what the layer needs (channel
 * widths are taken from the file, the rest of the topology from the
 * architecture), and BatchNorm is folded into the preceding convolution:
 *   w' = w * g / sqrt(v + eps),  b' = (b - m) * g / sqrt(v + eps) + beta
 * so inference runs one matrix product and one bias per layer.
 */
#include "nn_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NN_BN_EPS 1e-5   /* torch.nn.BatchNorm default, used by torchvision */

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < n; i++) {
        int w;
        if (shape[i] < 0)
            w = snprintf(buf + used, n - used, "%s*", i ? ", " : "");
        else
            w = snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int nn_w_get(nn_st *st, const char *name, int ndim, const int64_t *want,
             int64_t *got, const float **data, en_err *err)
{
    nn_st_tensor *t = nn_st_find(st, name);
    char ws[128], gs[128];
    int ok;

    if (!t)
        return en_err_set(err, EN_EFORMAT, "weights file %s: missing tensor '%s' "
                          "(file converted for another architecture, or incomplete)",
                          st->path, name);
    ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if ((want[i] >= 0 && t->shape[i] != want[i]) || t->shape[i] == 0)
            ok = 0;
    if (!ok) {
        shape_str(ws, sizeof ws, ndim, want);
        shape_str(gs, sizeof gs, t->ndim, t->shape);
        return en_err_set(err, EN_EFORMAT, "weights file %s: tensor '%s' has shape [%s], "
                          "expected [%s]", st->path, name, gs, ws);
    }
    if (t->used)
        return en_err_set(err, EN_EFORMAT, "weights file %s: tensor '%s' used twice",
                          st->path, name);
    t->used = 1;
    if (got)
        memcpy(got, t->shape, (size_t)ndim * sizeof *got);
    *data = t->data;
    return EN_OK;
}

static int get_vec(nn_st *st, const char *base, const char *leaf, int64_t n,
                   const float **data, en_err *err)
{
    char name[256];
    snprintf(name, sizeof name, "%s.%s", base, leaf);
    return nn_w_get(st, name, 1, &n, NULL, data, err);
}

int nn_w_conv(nn_st *st, const char *conv, const char *bn, int has_bias,
              int ndim, int cin, int want_cout, const int k[3], const int s[3],
              const int p[3], const int d[3], nn_conv *c, en_err *err)
{
    int64_t want[5], got[5];
    const float *w, *cb = NULL, *g, *beta, *mean, *var;
    char name[256];
    size_t kk, per;
    int rc;

    memset(c, 0, sizeof *c);
    want[0] = want_cout > 0 ? want_cout : -1;
    want[1] = cin;
    if (ndim == 5) {
        want[2] = k[0]; want[3] = k[1]; want[4] = k[2];
    } else {
        want[2] = k[1]; want[3] = k[2];
    }
    snprintf(name, sizeof name, "%s.weight", conv);
    if ((rc = nn_w_get(st, name, ndim, want, got, &w, err)) != EN_OK)
        return rc;
    c->cout = (int)got[0];
    c->cin = (int)got[1];
    for (int a = 0; a < 3; a++) {
        c->k[a] = k[a];
        c->s[a] = s[a];
        c->p[a] = p[a];
        c->d[a] = d[a];
    }
    if (has_bias && (rc = get_vec(st, conv, "bias", c->cout, &cb, err)) != EN_OK)
        return rc;
    if (bn && ((rc = get_vec(st, bn, "weight", c->cout, &g, err)) != EN_OK ||
               (rc = get_vec(st, bn, "bias", c->cout, &beta, err)) != EN_OK ||
               (rc = get_vec(st, bn, "running_mean", c->cout, &mean, err)) != EN_OK ||
               (rc = get_vec(st, bn, "running_var", c->cout, &var, err)) != EN_OK))
        return rc;

    kk = (size_t)k[0] * k[1] * k[2];
    per = (size_t)c->cin * kk;
    c->w = malloc((size_t)c->cout * per * sizeof *c->w);
    c->b = malloc((size_t)c->cout * sizeof *c->b);
    if (!c->w || !c->b) {
        nn_conv_free(c);
        return en_err_set(err, EN_ENOMEM, "out of memory for layer %s", conv);
    }
    for (int o = 0; o < c->cout; o++) {
        double scale = 1.0, shift = cb ? cb[o] : 0.0;
        if (bn) {
            if (!(var[o] >= 0.0f) || !isfinite(var[o])) {
                nn_conv_free(c);
                return en_err_set(err, EN_EFORMAT, "weights file %s: tensor '%s.running_var' "
                                  "has a negative or non-finite entry", st->path, bn);
            }
            scale = (double)g[o] / sqrt((double)var[o] + NN_BN_EPS);
            shift = (shift - mean[o]) * scale + beta[o];
        }
        /* PyTorch's [cin][taps] becomes tap-major [taps][cin] */
        for (size_t ci = 0; ci < (size_t)c->cin; ci++)
            for (size_t t = 0; t < kk; t++)
                c->w[(size_t)o * per + t * (size_t)c->cin + ci] =
                    (float)(w[(size_t)o * per + ci * kk + t] * scale);
        c->b[o] = (float)shift;
    }
    nn_st_release(st, w, (size_t)c->cout * per * sizeof *w);
    if ((rc = nn_conv_set_kernel(c, st->kern, err)) != EN_OK) {
        nn_conv_free(c);
        return en_err_prefix(err, "layer %s", conv);
    }
    return EN_OK;
}

int nn_w_linear(nn_st *st, const char *name, int in, nn_linear *l, en_err *err)
{
    int64_t want[2] = { -1, in }, got[2];
    const float *w, *b;
    char n[256];
    int rc;

    memset(l, 0, sizeof *l);
    snprintf(n, sizeof n, "%s.weight", name);
    if ((rc = nn_w_get(st, n, 2, want, got, &w, err)) != EN_OK)
        return rc;
    l->out = (int)got[0];
    l->in = (int)got[1];
    if ((rc = get_vec(st, name, "bias", l->out, &b, err)) != EN_OK)
        return rc;
    l->w = malloc((size_t)l->out * l->in * sizeof *l->w);
    l->b = malloc((size_t)l->out * sizeof *l->b);
    if (!l->w || !l->b) {
        free(l->w);
        free(l->b);
        return en_err_set(err, EN_ENOMEM, "out of memory for layer %s", name);
    }
    memcpy(l->w, w, (size_t)l->out * l->in * sizeof *l->w);
    memcpy(l->b, b, (size_t)l->out * sizeof *l->b);
    return EN_OK;
}

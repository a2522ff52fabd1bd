/*
 * evidence.c - what the segmentation says about a clip's view.
 *
 * The segmentation network was trained on apical four-chamber clips and
 * will outline something left-ventricle-like in almost any echo, so its
 * output cannot be trusted blindly; but the shape it finds, and the
 * pixels around it, tell the views apart:
 *
 * - one blob of plausible size in (nearly) every frame: a clip where the
 *   mask vanishes, splits or swells is not an LV the network recognises;
 * - elongation (long over short axis of the blob's second moments): an
 *   apical LV is a long bullet, a short-axis cut a ring;
 * - axis angle: in an apical view the beam runs from the apex down the
 *   LV's long axis; in parasternal and subcostal views the LV lies across
 *   the beam;
 * - apex depth: in an apical view the LV starts just below the probe;
 * - rv_dark: in four chambers a second cavity (the right ventricle) lies
 *   beside the LV, past the septum; in two chambers there is only the LV's
 *   wall and the tissue around it.  Measured as the share of blood-dark
 *   pixels in a band parallel to the LV's axis, on whichever side is
 *   darker (machines flip the image left-right).
 *
 * Each measure is taken per frame on the largest blob and summarised by its
 * median over the frames that have one.
 */
#include "en_study.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The band beside the LV, in units of the LV's half-width (measured from
 * its axis): past the septum (about a third of a half-width thick) and as
 * wide as a right ventricle. */
#define BAND_IN 1.45
#define BAND_OUT 2.7
/* ... along the middle of the LV's length, where the RV lies beside it. */
#define BAND_FROM 0.2
#define BAND_TO 0.75
/* A pixel is blood-dark below blood + this share of (wall - blood). */
#define DARK_SHARE 0.35

typedef struct blob {
    int area;
    double cx, cy;          /* centroid */
    double l1, l2;          /* covariance eigenvalues, l1 >= l2 */
    double ux, uy;          /* unit long axis */
} blob;

typedef struct scratch {
    int *label;             /* side*side component labels of one frame */
    int *stack;
    uint8_t *fan;           /* pixels lit in any frame: inside the fan */
    uint8_t *in_px, *ring_px;   /* grey levels of the blob and its rim */
    double *v[5];           /* per-frame measures */
} scratch;

/* Labels the 4-connected components of mask; returns the number of blobs
 * of at least min_px pixels and the label of the largest in *best. */
static int components(const uint8_t *mask, int side, int min_px, scratch *w, int *best,
                      int *best_area)
{
    int n = side * side, next = 0, count = 0;

    memset(w->label, 0, (size_t)n * sizeof *w->label);
    *best = 0;
    *best_area = 0;
    for (int i = 0; i < n; i++) {
        int top = 0, area = 0;
        if (!mask[i] || w->label[i])
            continue;
        w->label[i] = ++next;
        w->stack[top++] = i;
        while (top > 0) {
            int p = w->stack[--top], x = p % side, y = p / side;
            int nb[4] = {x > 0 ? p - 1 : -1, x + 1 < side ? p + 1 : -1,
                         y > 0 ? p - side : -1, y + 1 < side ? p + side : -1};
            area++;
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && mask[nb[k]] && !w->label[nb[k]]) {
                    w->label[nb[k]] = next;
                    w->stack[top++] = nb[k];
                }
        }
        if (area >= min_px)
            count++;
        if (area > *best_area) {
            *best_area = area;
            *best = next;
        }
    }
    return count;
}

static void moments(const int *label, int side, int id, blob *b)
{
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, tr, det, disc;
    int n = 0;

    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            if (label[y * side + x] == id) {
                sx += x;
                sy += y;
                sxx += (double)x * x;
                syy += (double)y * y;
                sxy += (double)x * y;
                n++;
            }
    b->area = n;
    b->cx = sx / n;
    b->cy = sy / n;
    sxx = sxx / n - b->cx * b->cx;
    syy = syy / n - b->cy * b->cy;
    sxy = sxy / n - b->cx * b->cy;
    tr = sxx + syy;
    det = sxx * syy - sxy * sxy;
    disc = sqrt(fmax(0.0, tr * tr / 4 - det));
    b->l1 = tr / 2 + disc;
    b->l2 = tr / 2 - disc;
    /* Eigenvector of l1; a blob with no preferred axis gets the vertical. */
    if (fabs(sxy) > 1e-12) {
        b->ux = b->l1 - syy;
        b->uy = sxy;
    } else if (sxx > syy) {
        b->ux = 1;
        b->uy = 0;
    } else {
        b->ux = 0;
        b->uy = 1;
    }
    double norm = hypot(b->ux, b->uy);
    b->ux /= norm;
    b->uy /= norm;
}

static double median(double *v, int n)
{
    int m = 0;

    for (int i = 0; i < n; i++)   /* drop NANs, sort the rest (n is small) */
        if (isfinite(v[i]))
            v[m++] = v[i];
    if (m == 0)
        return NAN;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

static int cmp_u8(const void *a, const void *b)
{
    return (int)*(const uint8_t *)a - (int)*(const uint8_t *)b;
}

/* The share of blood-dark fan pixels in the band beside the blob, on the
 * darker side; NAN when the band holds no fan pixel. */
static double rv_dark(const uint8_t *img, const scratch *w, int id, const blob *b, int side,
                      const en_view_geometry *g)
{
    const int *label = w->label;
    const uint8_t *fan = w->fan;
    uint8_t *in_px = w->in_px, *ring_px = w->ring_px;
    double half = 2.0 * sqrt(fmax(b->l2, 0.0));      /* semi-minor axis of an ellipse */
    double len = 2.0 * 2.0 * sqrt(fmax(b->l1, 0.0)); /* full long axis */
    double ux = b->ux, uy = b->uy, tmin, dark_level;
    int n_in = 0, n_ring = 0, lit[2] = {0, 0}, dark[2] = {0, 0};

    if (half < 1 || len < 2)
        return NAN;
    /* Point the axis away from the fan's apex: t grows from the LV's apex. */
    if ((b->cx - g->apex_x) * ux + (b->cy - g->apex_y) * uy < 0) {
        ux = -ux;
        uy = -uy;
    }
    tmin = -len / 2;
    /* Cavity and wall levels: inside the blob, and a thin ring around it. */
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            double dx = x - b->cx, dy = y - b->cy;
            double s = fabs(-uy * dx + ux * dy);
            int p = y * side + x;
            if (label[p] == id)
                in_px[n_in++] = img[p];
            else if (fan[p] && s > half && s < 1.3 * half &&
                     dx * ux + dy * uy > tmin && dx * ux + dy * uy < tmin + len)
                ring_px[n_ring++] = img[p];
        }
    if (n_in < 5 || n_ring < 5)
        return NAN;
    qsort(in_px, (size_t)n_in, 1, cmp_u8);
    qsort(ring_px, (size_t)n_ring, 1, cmp_u8);
    dark_level = in_px[n_in / 2] +
                 DARK_SHARE * (ring_px[(3 * n_ring) / 4] - in_px[n_in / 2]);
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            double dx = x - b->cx, dy = y - b->cy;
            double t = dx * ux + dy * uy - tmin, s = -uy * dx + ux * dy;
            int p = y * side + x, k = s < 0;
            if (!fan[p] || label[p] == id || t < BAND_FROM * len || t > BAND_TO * len ||
                fabs(s) < BAND_IN * half || fabs(s) > BAND_OUT * half)
                continue;
            lit[k]++;
            dark[k] += img[p] < dark_level;
        }
    if (!lit[0] && !lit[1])
        return NAN;
    return fmax(lit[0] ? (double)dark[0] / lit[0] : 0, lit[1] ? (double)dark[1] / lit[1] : 0);
}

static double apex_depth(const int *label, int id, int side, const en_view_geometry *g)
{
    double best = INFINITY;

    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            if (label[y * side + x] == id)
                best = fmin(best, hypot(x - g->apex_x, y - g->apex_y));
    return best / g->radius;
}

static void scratch_free(scratch *w)
{
    free(w->label);
    free(w->stack);
    free(w->fan);
    free(w->in_px);
    free(w->ring_px);
    for (int k = 0; k < 5; k++)
        free(w->v[k]);
}

int en_clip_evidence_compute(const uint8_t *frames, const uint8_t *masks, int n, int side,
                             const en_view_geometry *g, const en_verdict_params *p,
                             en_clip_evidence *ev, en_err *err)
{
    size_t px = (size_t)side * side;
    scratch w = {0};
    int one = 0;

    memset(ev, 0, sizeof *ev);
    ev->frames = n;
    ev->lv_area_median = ev->elongation = ev->axis_angle = NAN;
    ev->apex_depth = ev->rv_dark = NAN;
    if (n <= 0 || side <= 0)
        return EN_OK;
    w.label = malloc(px * sizeof *w.label);
    w.stack = malloc(px * sizeof *w.stack);
    w.fan = calloc(px, 1);
    w.in_px = malloc(px);
    w.ring_px = malloc(px);
    for (int k = 0; k < 5; k++)
        w.v[k] = malloc((size_t)n * sizeof(double));
    if (!w.label || !w.stack || !w.fan || !w.in_px || !w.ring_px || !w.v[0] || !w.v[1] || !w.v[2] || !w.v[3] || !w.v[4]) {
        scratch_free(&w);
        return en_err_set(err, EN_ENOMEM, "clip evidence: out of memory for %d frames", n);
    }
    if (g->fan)
        memcpy(w.fan, g->fan, px);
    else
        for (int f = 0; f < n; f++)
            for (size_t i = 0; i < px; i++)
                w.fan[i] |= frames[(size_t)f * px + i] != 0;
    for (int f = 0; f < n; f++) {
        const uint8_t *mask = masks + (size_t)f * px;
        int best, area, count = components(mask, side, p->blob_min_px, &w, &best, &area);
        blob b;
        for (int k = 0; k < 5; k++)
            w.v[k][f] = NAN;
        if (count == 1 && area >= p->lv_min_px && area <= p->lv_max_px)
            one++;
        if (area < p->blob_min_px)
            continue;
        moments(w.label, side, best, &b);
        w.v[0][f] = b.area;
        w.v[1][f] = b.l2 > 0 ? sqrt(b.l1 / b.l2) : NAN;
        {
            double bx = b.cx - g->apex_x, by = b.cy - g->apex_y, bn = hypot(bx, by);
            double c = bn > 0 ? fabs(bx * b.ux + by * b.uy) / bn : 1;
            w.v[2][f] = acos(fmin(1.0, c)) * 180.0 / M_PI;
        }
        w.v[3][f] = apex_depth(w.label, best, side, g);
        w.v[4][f] = rv_dark(frames + (size_t)f * px, &w, best, &b, side, g);
    }
    ev->one_lv_fraction = (double)one / n;
    ev->lv_area_median = median(w.v[0], n);
    ev->elongation = median(w.v[1], n);
    ev->axis_angle = median(w.v[2], n);
    ev->apex_depth = median(w.v[3], n);
    ev->rv_dark = median(w.v[4], n);
    scratch_free(&w);
    return EN_OK;
}

static void num(char *buf, size_t len, const char *key, double v, int last)
{
    size_t n = strlen(buf);

    if (isfinite(v))
        snprintf(buf + n, len - n, "\"%s\":%.4g%s", key, v, last ? "" : ",");
    else
        snprintf(buf + n, len - n, "\"%s\":null%s", key, last ? "" : ",");
}

void en_clip_evidence_json(const en_clip_evidence *ev, char *buf, size_t len)
{
    if (len < 2)
        return;
    snprintf(buf, len, "{");
    num(buf, len, "frames", ev->frames, 0);
    num(buf, len, "one_lv_fraction", ev->one_lv_fraction, 0);
    num(buf, len, "lv_area_median", ev->lv_area_median, 0);
    num(buf, len, "elongation", ev->elongation, 0);
    num(buf, len, "axis_angle", ev->axis_angle, 0);
    num(buf, len, "apex_depth", ev->apex_depth, 0);
    num(buf, len, "rv_dark", ev->rv_dark, 1);
    snprintf(buf + strlen(buf), len - strlen(buf), "}");
}

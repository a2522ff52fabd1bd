/*
 * evidence.c - what the images and the segmentation say about a clip's view.
 *
 * The segmentation network was trained on apical four-chamber clips and
 * outlines something LV-like in almost any echo: on simulated parasternal
 * short-axis, off-axis or two-chamber clips its mask is an elongated
 * bullet along the beam, as in the view it knows (docs/accuracy.md has the
 * numbers).  So the mask only says where to look; the shape of the view is
 * read from the pixels, on the clip's mean image (averaging the frames
 * removes the speckle: cavities are dark and flat, walls bright):
 *
 * - one LV: exactly one mask blob of plausible size in (nearly) every
 *   frame; a clip where the mask vanishes, splits or swells is not an LV
 *   the network recognises;
 * - LV area: the mask's median area.  An apical LV spans most of the
 *   view's depth; a short-axis ring or a foreshortened cut is smaller;
 * - apex depth: the mask's nearest pixel to the fan's apex, as a share of
 *   the radius.  In an apical view the LV starts just below the probe;
 * - cavity angle: the dark region of the mean image that the mask overlaps
 *   most (the real cavity) and the angle between its long axis and the
 *   beam through it.  Apical views look down the LV; in parasternal and
 *   subcostal views, and in off-axis cuts, it lies across the beam;
 * - RV: rays cast from the LV's middle third outwards, on both sides (a
 *   machine may flip the image): the share of rays on the better side that
 *   leave the LV, cross a bright wall (the septum), run through a cavity as
 *   dark as the LV's for at least 30 % of its half-width, and meet a bright
 *   wall again (the RV's free wall).  Four chambers show a second closed
 *   cavity beside the LV; two chambers show the LV's wall and tissue.  A
 *   dark run that ends at the fan's edge is not counted: an RV cut off by
 *   the fan and dark tissue beside a two-chamber LV look the same, and
 *   when in doubt the clip is left out.
 */
#include "en_study.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Levels on the mean image, as shares of (wall - blood) above blood. */
#define DARK_SHARE 0.35     /* below: cavity */
#define WALL_SHARE 0.60     /* above: wall */
/* The RV rays: along the middle of the LV, reaching this many half-widths. */
#define RAY_FROM 0.30
#define RAY_TO 0.70
#define RAY_COUNT 9
#define RAY_REACH 3.5
#define RAY_STEP 0.5
#define RV_MIN_RUN 0.30     /* dark run at least this share of the half-width */

typedef struct blob {
    int area;
    double cx, cy;          /* centroid */
    double l1, l2;          /* covariance eigenvalues, l1 >= l2 */
    double ux, uy;          /* unit long axis */
} blob;

/* Frames are 112 pixels wide; the bound keeps side * side an int. */
#define EVIDENCE_MAX_SIDE 4096

typedef struct scratch {
    int side, px;           /* px = side * side > 0, checked at allocation */
    int *label;             /* side*side component labels */
    int *stack;
    uint8_t *fan;           /* 1 inside the fan */
    uint8_t *lv;            /* 1 where the LV mask is set in half the frames or more */
    uint8_t *dark;
    float *mean;            /* the mean image */
    float *values;          /* levels for medians and percentiles */
    double *v[2];           /* per-frame measures */
} scratch;

/* Labels the 4-connected components of the non-zero pixels of mask;
 * returns the number of blobs of at least min_px pixels, and the label and
 * area of the largest. */
static int components(const uint8_t *mask, const scratch *w, int min_px, int *best,
                      int *best_area)
{
    int side = w->side, n = w->px, next = 0, count = 0;

    *best = 0;
    *best_area = 0;
    if (n <= 0)
        return 0;
    memset(w->label, 0, (size_t)n * sizeof *w->label);
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

/* Centroid and principal axes of the pixels where label == id (or, with
 * label NULL, where mask is set). */
static int moments(const int *label, const uint8_t *mask, int side, int id, blob *b)
{
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, tr, det, disc, norm;
    int n = 0;

    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            int p = y * side + x;
            if (label ? label[p] != id : !(mask && mask[p]))
                continue;
            sx += x;
            sy += y;
            sxx += (double)x * x;
            syy += (double)y * y;
            sxy += (double)x * y;
            n++;
        }
    if (n < 5)
        return 0;
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
    norm = hypot(b->ux, b->uy);
    b->ux /= norm;
    b->uy /= norm;
    return 1;
}

/* Degrees between the blob's long axis and the beam through its centre. */
static double beam_angle(const blob *b, const en_view_geometry *g)
{
    double bx = b->cx - g->apex_x, by = b->cy - g->apex_y, bn = hypot(bx, by);
    double c = bn > 0 ? fabs(bx * b->ux + by * b->uy) / bn : 1;
    return acos(fmin(1.0, c)) * 180.0 / M_PI;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of mean-image values where sel is set and want
 * says (1: set, 0: clear) for other; NAN when there are none. */
static double quantile(scratch *w, const uint8_t *sel, const uint8_t *other, int want, double q)
{
    int n = 0, px = w->px;

    for (int i = 0; i < px; i++)
        if (sel[i] && (!other || (other[i] != 0) == want))
            w->values[n++] = w->mean[i];
    if (n == 0)
        return NAN;
    qsort(w->values, (size_t)n, sizeof *w->values, cmp_float);
    return w->values[(int)(q * (n - 1))];
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

/* Bilinear sample of the mean image; -1 outside the image. */
static double sample(const scratch *w, double x, double y)
{
    int x0 = (int)floor(x), y0 = (int)floor(y), s = w->side;
    double fx = x - x0, fy = y - y0;

    if (x0 < 0 || y0 < 0 || x0 + 1 >= s || y0 + 1 >= s)
        return -1;
    return (1 - fy) * ((1 - fx) * w->mean[y0 * s + x0] + fx * w->mean[y0 * s + x0 + 1]) +
           fy * ((1 - fx) * w->mean[(y0 + 1) * s + x0] + fx * w->mean[(y0 + 1) * s + x0 + 1]);
}

static int at(const uint8_t *m, int side, double x, double y)
{
    int xi = (int)x, yi = (int)y;
    return xi >= 0 && yi >= 0 && xi < side && yi < side && m[yi * side + xi];
}

/* One ray from (ox, oy) along (nx, ny): 1 when it leaves the LV, crosses a
 * wall, runs through a dark cavity long enough and meets a wall again. */
static int ray_hits(const scratch *w, double ox, double oy, double nx, double ny, double half,
                    double blood, double wall)
{
    double range = wall - blood, run = 0;
    int stage = 0;   /* 0 in the LV, 1 to the wall, 2 through it, 3 the dark run */

    for (double t = 0; t <= RAY_REACH * half; t += RAY_STEP) {
        double x = ox + t * nx, y = oy + t * ny, v = sample(w, x, y);
        if (v < 0 || !at(w->fan, w->side, x, y))
            return 0;   /* the image or the fan ends: not a closed cavity */
        v = (v - blood) / range;
        if (stage == 0 && !at(w->lv, w->side, x, y))
            stage = 1;
        if (stage == 1 && v >= WALL_SHARE)
            stage = 2;
        else if (stage == 2 && v < DARK_SHARE)
            stage = 3;
        if (stage == 3) {
            if (v < DARK_SHARE)
                run += RAY_STEP;
            else if (v >= WALL_SHARE)
                return run >= RV_MIN_RUN * half;
        }
    }
    return 0;
}

/* The share of rays, on the better side, that find a closed cavity beside
 * the LV. */
static double rv_closed(const scratch *w, const blob *lv, const en_view_geometry *g,
                        double blood, double wall)
{
    double ux = lv->ux, uy = lv->uy, half = 2.0 * sqrt(fmax(lv->l2, 0.0));
    double len = 4.0 * sqrt(fmax(lv->l1, 0.0)), best = 0;

    if (half < 1 || !(wall > blood))
        return NAN;
    /* The axis runs from the LV's apex (the probe's side) down. */
    if ((lv->cx - g->apex_x) * ux + (lv->cy - g->apex_y) * uy < 0) {
        ux = -ux;
        uy = -uy;
    }
    for (int side = -1; side <= 1; side += 2) {
        int hits = 0;
        for (int k = 0; k < RAY_COUNT; k++) {
            double tf = RAY_FROM + (RAY_TO - RAY_FROM) * k / (RAY_COUNT - 1);
            double ox = lv->cx + (tf - 0.5) * len * ux, oy = lv->cy + (tf - 0.5) * len * uy;
            hits += ray_hits(w, ox, oy, -uy * side, ux * side, half, blood, wall);
        }
        best = fmax(best, (double)hits / RAY_COUNT);
    }
    return best;
}

/* The mean image's cavity the LV mask overlaps most, and its angle to the
 * beam; NAN without one. */
static double cavity_angle(scratch *w, const en_view_geometry *g, double blood, double wall)
{
    int side = w->side, px = w->px, best = 0, best_overlap = 0, nlab = 0, unused, area;
    double cut = blood + DARK_SHARE * (wall - blood);
    blob b;

    for (int i = 0; i < px; i++)
        w->dark[i] = w->fan[i] && w->mean[i] < cut;
    /* Erode once (3x3): thin dark gaps in valves and walls no longer join
     * the LV to its neighbours. */
    for (int i = 0; i < px; i++) {
        int x = i % side, y = i / side, keep = w->dark[i];
        for (int dy = -1; keep && dy <= 1; dy++)
            for (int dx = -1; keep && dx <= 1; dx++) {
                int xx = x + dx, yy = y + dy;
                keep = xx >= 0 && yy >= 0 && xx < side && yy < side && w->dark[yy * side + xx];
            }
        w->values[i] = (float)keep;
    }
    for (int i = 0; i < px; i++)
        w->dark[i] = w->values[i] != 0;
    components(w->dark, w, 1, &unused, &area);
    for (int i = 0; i < px; i++)
        if (w->label[i] > nlab)
            nlab = w->label[i];
    if (nlab == 0)
        return NAN;
    /* overlap per label, counted in values[] (labels are 1..nlab <= px) */
    memset(w->values, 0, (size_t)(nlab + 1) * sizeof *w->values);
    for (int i = 0; i < px; i++)
        if (w->label[i] && w->lv[i])
            w->values[w->label[i]] += 1;
    for (int k = 1; k <= nlab; k++)
        if (w->values[k] > best_overlap) {
            best_overlap = (int)w->values[k];
            best = k;
        }
    if (!best || !moments(w->label, NULL, side, best, &b))
        return NAN;
    return beam_angle(&b, g);
}

static void scratch_free(scratch *w)
{
    free(w->label);
    free(w->stack);
    free(w->fan);
    free(w->lv);
    free(w->dark);
    free(w->mean);
    free(w->values);
    free(w->v[0]);
    free(w->v[1]);
}

static int scratch_alloc(scratch *w, int side, int n)
{
    size_t px = (size_t)side * side;

    w->side = side;
    w->px = (int)px;
    w->label = malloc(px * sizeof *w->label);
    w->stack = malloc(px * sizeof *w->stack);
    w->fan = calloc(px, 1);
    w->lv = calloc(px, 1);
    w->dark = calloc(px, 1);
    w->mean = calloc(px, sizeof *w->mean);
    w->values = malloc((px + 1) * sizeof *w->values);
    w->v[0] = malloc((size_t)n * sizeof(double));
    w->v[1] = malloc((size_t)n * sizeof(double));
    return w->label && w->stack && w->fan && w->lv && w->dark && w->mean && w->values &&
           w->v[0] && w->v[1];
}

int en_clip_evidence_compute(const uint8_t *frames, const uint8_t *masks, int n, int side,
                             const en_view_geometry *g, const en_verdict_params *p,
                             en_clip_evidence *ev, en_err *err)
{
    size_t px = (size_t)side * side;
    scratch w = {0};
    double blood, wall;
    int one = 0;
    blob lv;

    memset(ev, 0, sizeof *ev);
    ev->frames = n;
    ev->lv_area_median = ev->apex_depth = ev->cavity_angle = ev->rv_closed = NAN;
    if (n <= 0 || side <= 0)
        return EN_OK;
    if (side > EVIDENCE_MAX_SIDE)
        return en_err_set(err, EN_EINVAL, "clip evidence: frames of %dx%d pixels, at most %d wide",
                          side, side, EVIDENCE_MAX_SIDE);
    if (!scratch_alloc(&w, side, n)) {
        scratch_free(&w);
        return en_err_set(err, EN_ENOMEM, "clip evidence: out of memory for %d frames", n);
    }
    /* The mean image, the fan, and where the mask is in half the frames. */
    for (int f = 0; f < n; f++)
        for (size_t i = 0; i < px; i++)
            w.mean[i] += frames[(size_t)f * px + i];
    for (size_t i = 0; i < px; i++) {
        int on = 0;
        w.mean[i] /= (float)n;
        for (int f = 0; f < n; f++)
            on += masks[(size_t)f * px + i] != 0;
        w.lv[i] = 2 * on >= n;
        w.fan[i] = g->fan ? g->fan[i] != 0 : w.mean[i] > 0;
    }
    /* Per frame: one blob of plausible size?  Its area, its apex's depth. */
    for (int f = 0; f < n; f++) {
        const uint8_t *mask = masks + (size_t)f * px;
        int best, area, count = components(mask, &w, p->blob_min_px, &best, &area);
        w.v[0][f] = w.v[1][f] = NAN;
        if (count == 1 && area >= p->lv_min_px && area <= p->lv_max_px)
            one++;
        if (area < p->blob_min_px)
            continue;
        w.v[0][f] = area;
        {
            double nearest = INFINITY;
            for (size_t i = 0; i < px; i++)
                if (w.label[i] == best)
                    nearest = fmin(nearest, hypot((double)(i % (size_t)side) - g->apex_x,
                                                  (double)(i / (size_t)side) - g->apex_y));
            w.v[1][f] = nearest / g->radius;
        }
    }
    ev->one_lv_fraction = (double)one / n;
    ev->lv_area_median = median(w.v[0], n);
    ev->apex_depth = median(w.v[1], n);
    /* The pixels: blood as in the LV, walls as the brightest tenth around. */
    blood = quantile(&w, w.lv, NULL, 1, 0.5);
    wall = quantile(&w, w.fan, w.lv, 0, 0.9);
    if (moments(NULL, w.lv, side, 0, &lv) && isfinite(blood) && isfinite(wall)) {
        ev->cavity_angle = cavity_angle(&w, g, blood, wall);
        ev->rv_closed = rv_closed(&w, &lv, g, blood, wall);
    }
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
    num(buf, len, "apex_depth", ev->apex_depth, 0);
    num(buf, len, "cavity_angle", ev->cavity_angle, 0);
    num(buf, len, "rv_closed", ev->rv_closed, 1);
    snprintf(buf + strlen(buf), len - strlen(buf), "}");
}

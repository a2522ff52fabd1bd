/*
 * fit.c - fitting the annular-sector model to a pixel region.
 *
 * The two straight edges come first: each is a line x = a + b*y fitted to
 * the region's left (right) ends row by row.  The region is the evidence
 * components' row extents, not their convex hull: text stuck to an edge
 * spoils the rows it sits in, where a hull would bend a long stretch.
 * Below the edges the boundary follows the arc and curves inwards, and
 * where the fan leaves the image the ends sit on the image border; a
 * consensus fit (the line through two boundary points that most other
 * points agree with, then least squares over those) keeps only the
 * straight part, wherever it is.  The apex is where the two lines meet, so
 * it may lie above the image.
 *
 * The outer radius comes from the distances between the apex and the
 * region's lowest pixel in each column (the arc), skipping columns cut by
 * the image bottom.  A dark patch of far field or a shadow can only make a
 * column end early, so the radius is their median: it holds while half the
 * columns reach the arc.  The top is an arc about the apex (inner radius),
 * a flat cut (top_y), or the apex itself; the raw top pixels tell which.
 */
#include "sector-int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SEC_LINE_TOL 1.5   /* px: a boundary point on the line */
#define SEC_OUT_TOL 3.0    /* px: a boundary point clearly beyond it */
#define SEC_EDGE_BIAS 0.75 /* px: how far row extents overshoot the edge */

typedef struct line { double a, b; int inliers; } line;

/* Boundary points of one side: rows and x, skipping the image border. */
static int side_points(const sec_spans *sp, int side, double *ys, double *xs)
{
    int n = 0;

    for (int y = sp->y0; y <= sp->y1; y++) {
        int x = side < 0 ? sp->xl[y] : sp->xr[y];
        if (sp->xl[y] > sp->xr[y] || (side < 0 ? x <= 0 : x >= sp->cols - 1))
            continue;
        ys[n] = y;
        xs[n] = x;
        n++;
    }
    return n;
}

static int count_inliers(const double *ys, const double *xs, int n, double a, double b)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += fabs(xs[i] - (a + b * ys[i])) <= SEC_LINE_TOL;
    return c;
}

/* Support for a candidate edge: points on it, less points well outside
 * it.  The fan is convex, so its true edge has no evidence beyond it.  A
 * line along a shadow inside the fan (a rib, poor contact along one side)
 * can be longer than what shows of the edge, but has fan beyond it over a
 * long run of rows, where text stuck to the edge makes only short bumps:
 * *run gets the longest run of rows beyond the line. */
static double support(const double *ys, const double *xs, int n, double a, double b,
                      int side, int *run)
{
    int on = 0, out = 0, cur = 0;

    *run = 0;
    for (int i = 0; i < n; i++) {
        double r = xs[i] - (a + b * ys[i]);
        int beyond = side < 0 ? r < -SEC_OUT_TOL : r > SEC_OUT_TOL;
        on += fabs(r) <= SEC_LINE_TOL;
        out += beyond;
        cur = beyond ? cur + 1 : 0;
        if (cur > *run)
            *run = cur;
    }
    return on - 0.5 * out;
}

/* Least squares over the points within tolerance of l; keeps l if too few. */
static void refine_line(const double *ys, const double *xs, int n, line *l)
{
    double sy = 0, sx = 0, syy = 0, sxy = 0, den;
    int c = 0;

    for (int i = 0; i < n; i++) {
        if (fabs(xs[i] - (l->a + l->b * ys[i])) > SEC_LINE_TOL)
            continue;
        sy += ys[i]; sx += xs[i]; syy += ys[i] * ys[i]; sxy += ys[i] * xs[i];
        c++;
    }
    den = c * syy - sy * sy;
    if (c < 2 || fabs(den) < 1e-9)
        return;
    l->b = (c * sxy - sy * sx) / den;
    l->a = (sx - l->b * sy) / c;
    l->inliers = count_inliers(ys, xs, n, l->a, l->b);
}

/* Consensus line over pairs from an even subsample of the points: the one
 * with the most support, then least squares over its inliers.  Lines with
 * a long run of evidence beyond them are passed over while any other
 * line will do. */
static int fit_line(const double *ys, const double *xs, int n, int side, line *best)
{
    int m = n < 48 ? n : 48, maxrun;
    double span = n > 1 ? ys[n - 1] - ys[0] : 0, top[2] = { -1e300, -1e300 };
    line cand[2] = { { 0, 0, 0 }, { 0, 0, 0 } };   /* [0] short runs only, [1] any */

    best->inliers = 0;
    if (n < 4 || span < 4)
        return -1;
    maxrun = (int)fmax(8.0, 0.05 * span);
    for (int i = 0; i < m; i++) {
        int pi = (int)((long)i * (n - 1) / (m - 1));
        for (int j = i + 1; j < m; j++) {
            int pj = (int)((long)j * (n - 1) / (m - 1));
            double dy = ys[pj] - ys[pi], b, a, sup;
            int run;
            if (dy < span / 8)
                continue;
            b = (xs[pj] - xs[pi]) / dy;
            a = xs[pi] - b * ys[pi];
            sup = support(ys, xs, n, a, b, side, &run);
            for (int k = run <= maxrun ? 0 : 1; k < 2; k++)
                if (sup > top[k]) {
                    top[k] = sup;
                    cand[k].a = a;
                    cand[k].b = b;
                }
        }
    }
    *best = top[0] >= 4 ? cand[0] : cand[1];
    if (fmax(top[0], top[1]) < 4)
        return -1;
    refine_line(ys, xs, n, best);
    refine_line(ys, xs, n, best);
    return best->inliers >= 4 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Value at fraction q of v (sorts v). */
static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(q * (n - 1))];
}

/* Angle of (x, y) about the apex, from +y towards +x. */
static double angle_of(const en_sector *s, double x, double y)
{
    return atan2(x - s->apex_x, y - s->apex_y);
}

/* Outer radius from the lowest pixel of the region in each column. */
static int fit_outer(const sec_spans *sp, en_sector *s, double *buf, int *low)
{
    double span = s->angle_right - s->angle_left, dmax = 0;
    int n = 0;

    for (int x = 0; x < sp->cols; x++)
        low[x] = -1;
    for (int y = sp->y0; y <= sp->y1; y++)
        for (int x = sp->xl[y]; x <= sp->xr[y]; x++)
            low[x] = y;
    for (int x = 0; x < sp->cols; x++) {
        double phi, d;
        if (low[x] < 0)
            continue;
        d = hypot(x - s->apex_x, low[x] - s->apex_y);
        if (d > dmax)
            dmax = d;
        phi = angle_of(s, x, low[x]);
        if (low[x] >= sp->rows - 1 || phi < s->angle_left + 0.05 * span ||
            phi > s->angle_right - 0.05 * span)
            continue;
        buf[n++] = d;
    }
    if (dmax <= 0)
        return -1;
    /* No half-pixel added for the raster: the evidence overshoots the arc
     * by about as much (measured on synthetic fans: +0.3 to +0.7 px). */
    s->radius = n >= 5 ? quantile(buf, n, 0.5) : dmax;
    return 0;
}

/* Raw top of the components in each column (-1 where absent). */
static void raw_top(const sec_evidence *ev, const int32_t *ids, int nids, int *top)
{
    for (int x = 0; x < ev->cols; x++)
        top[x] = -1;
    for (int y = ev->rows - 1; y >= 0; y--) {
        const int32_t *row = ev->cc.label + (size_t)y * ev->cols;
        for (int x = 0; x < ev->cols; x++)
            for (int i = 0; i < nids; i++)
                if (row[x] && row[x] == ids[i])
                    top[x] = y;
    }
}

/* Points of v within tol of level. */
static int near_level(const double *v, int n, double level)
{
    double tol = fmax(2.0, 0.03 * level);
    int c = 0;
    for (int i = 0; i < n; i++)
        c += fabs(v[i] - level) <= tol;
    return c;
}

/* The top of the fan, from the topmost raw pixel of each column between
 * the edges.  An arc about the apex keeps their distance from the apex
 * constant, a flat cut their depth below it.  Dark tissue near the top
 * (a blood pool) only pushes a column's top deeper, so the level of each
 * shape is a low percentile, and the shape is the one more columns agree
 * with.  A shallow level is a point apex blunted by the opening: neither. */
static void fit_top(const sec_evidence *ev, const int32_t *ids, int nids,
                    en_sector *s, double *dist, double *depth, int *top)
{
    double span = s->angle_right - s->angle_left, rd, rh, least, corner, tol;
    int n = 0, arc, flat, first = ev->rows;

    s->radius_inner = 0;
    s->top_y = 0;
    raw_top(ev, ids, nids, top);
    for (int x = 0; x < ev->cols; x++) {
        double phi;
        if (top[x] < 0)
            continue;
        phi = angle_of(s, x, top[x]);
        /* The fan's first row, not that of text stuck beside an edge. */
        if (top[x] < first && phi >= s->angle_left - 0.02 * span &&
            phi <= s->angle_right + 0.02 * span)
            first = top[x];
        if (top[x] == 0)          /* cut by the image top */
            continue;
        if (phi < s->angle_left + 0.08 * span || phi > s->angle_right - 0.08 * span)
            continue;
        dist[n] = hypot(x - s->apex_x, top[x] - s->apex_y);
        depth[n] = top[x] - s->apex_y;
        n++;
    }
    if (n < 5)
        return;
    arc = near_level(dist, n, rd = quantile(dist, n, 0.1));
    flat = near_level(depth, n, rh = quantile(depth, n, 0.1));
    least = fmax(8.0, 0.04 * s->radius);
    /* Either shape must also be the region's first row: an arc meets it
     * at the corners (which the opening rounds off a little, so the first
     * row may lie a few pixels lower), a flat cut is it.  (Columns whose
     * top is a shadow's side, under an image-top cut, are neither.) */
    corner = first - (s->apex_y + rd * cos(fmax(-s->angle_left, s->angle_right)));
    tol = fmax(6.0, 0.05 * rd);
    /* Half a pixel inwards: the evidence overshoots the top too, and the
     * first row it reaches is rather not fan than fan (text above it). */
    if (arc > flat && rd >= least && rd < 0.9 * s->radius && corner >= -3 && corner <= tol)
        s->radius_inner = rd + 0.5;
    else if (flat >= arc && flat >= 5 && rh >= least && rh < 0.9 * s->radius &&
             fabs(s->apex_y + rh - first) <= 3)
        s->top_y = s->apex_y + rh + 0.5;
}

int sec_fit_top(const sec_evidence *ev, const int32_t *ids, int nids, en_sector *s)
{
    double *a = malloc((size_t)ev->cols * sizeof *a);
    double *b = malloc((size_t)ev->cols * sizeof *b);
    int *t = malloc((size_t)ev->cols * sizeof *t);
    int rc = -1;

    if (a && b && t) {
        fit_top(ev, ids, nids, s, a, b, t);
        rc = 0;
    }
    free(a); free(b); free(t);
    return rc;
}

static int fail(char *why, size_t len, const char *msg)
{
    snprintf(why, len, "%s", msg);
    return -1;
}

/* Both edges and the apex. */
static int fit_edges(const sec_spans *sp, en_sector *s, double *ys, double *xs,
                     char *why, size_t len)
{
    line l, r;
    int n;
    double den;

    n = side_points(sp, -1, ys, xs);
    if (fit_line(ys, xs, n, -1, &l) != 0)
        return fail(why, len, "no straight left edge");
    n = side_points(sp, +1, ys, xs);
    if (fit_line(ys, xs, n, +1, &r) != 0)
        return fail(why, len, "no straight right edge");
    /* The evidence reaches a little beyond the fan (smoothing spreads it,
     * and a row's extent is its outermost speckle): pull both edges in. */
    l.a += SEC_EDGE_BIAS;
    r.a -= SEC_EDGE_BIAS;
    den = r.b - l.b;
    if (den < 2 * tan(5 * M_PI / 180))
        return fail(why, len, "edges do not open downwards");
    s->apex_y = (l.a - r.a) / den;
    s->apex_x = l.a + l.b * s->apex_y;
    s->angle_left = atan(l.b);
    s->angle_right = atan(r.b);
    if (!(s->angle_left < 0 && s->angle_right > 0))
        return fail(why, len, "edges not either side of vertical");
    if (s->apex_y > sp->y0 + 3 + 0.03 * (sp->y1 - sp->y0))
        return fail(why, len, "edges meet below the region's top");
    if (s->apex_y < -2.0 * sp->rows || s->apex_x < -(double)sp->cols ||
        s->apex_x > 2.0 * sp->cols)
        return fail(why, len, "edges meet far outside the image");
    return 0;
}

int sec_fit(const sec_spans *sp, const sec_evidence *ev, const int32_t *ids,
            int nids, en_sector *s, char *why, size_t len)
{
    int big = sp->rows > sp->cols ? sp->rows : sp->cols;
    double *a = malloc((size_t)big * sizeof *a);
    double *b = malloc((size_t)big * sizeof *b);
    int *ib = malloc((size_t)big * sizeof *ib);
    int rc = -1;

    if (!a || !b || !ib) {
        fail(why, len, "out of memory");
        goto out;
    }
    if (sp->y0 > sp->y1 || sp->y1 - sp->y0 < 8) {
        fail(why, len, "region too small");
        goto out;
    }
    if (fit_edges(sp, s, a, b, why, len) != 0)
        goto out;
    if (fit_outer(sp, s, a, ib) != 0) {
        fail(why, len, "no arc");
        goto out;
    }
    fit_top(ev, ids, nids, s, a, b, ib);
    rc = 0;
out:
    free(a); free(b); free(ib);
    return rc;
}

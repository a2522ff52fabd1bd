/*
 * hull.c - a region held as one span per row, and its convex hull.
 *
 * The fan is convex (each edge within 90 degrees of vertical), so the
 * convex hull of what the evidence step found fills the blood pools and
 * the dark far field that a threshold drops, and gives straight edges the
 * line fit can use.  A region stored as one span per row makes the hull
 * cheap: its left boundary is the lower convex envelope of the spans' left
 * ends taken as a function of the row, its right boundary the upper
 * concave envelope of the right ends (Andrew's monotone chain, once per
 * side; the rows are already sorted).
 */
#include "sector-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sec_spans_alloc(sec_spans *sp, int rows, int cols)
{
    sp->rows = rows;
    sp->cols = cols;
    sp->xl = malloc((size_t)rows * sizeof *sp->xl);
    sp->xr = malloc((size_t)rows * sizeof *sp->xr);
    if (!sp->xl || !sp->xr) {
        sec_spans_free(sp);
        return -1;
    }
    sec_spans_clear(sp);
    return 0;
}

void sec_spans_free(sec_spans *sp)
{
    free(sp->xl);
    free(sp->xr);
    sp->xl = sp->xr = NULL;
}

void sec_spans_clear(sec_spans *sp)
{
    for (int y = 0; y < sp->rows; y++) {
        sp->xl[y] = sp->cols;
        sp->xr[y] = -1;
    }
    sp->y0 = sp->rows;
    sp->y1 = -1;
    sp->area = 0;
}

void sec_spans_add(sec_spans *sp, int y, int x0, int x1)
{
    if (x0 < sp->xl[y]) sp->xl[y] = x0;
    if (x1 > sp->xr[y]) sp->xr[y] = x1;
    if (y < sp->y0) sp->y0 = y;
    if (y > sp->y1) sp->y1 = y;
}

void sec_spans_measure(sec_spans *sp)
{
    sp->area = 0;
    for (int y = sp->y0; y <= sp->y1; y++)
        if (sp->xr[y] >= sp->xl[y])
            sp->area += sp->xr[y] - sp->xl[y] + 1;
}

void sec_spans_copy(sec_spans *dst, const sec_spans *src)
{
    memcpy(dst->xl, src->xl, (size_t)src->rows * sizeof *dst->xl);
    memcpy(dst->xr, src->xr, (size_t)src->rows * sizeof *dst->xr);
    dst->y0 = src->y0;
    dst->y1 = src->y1;
    dst->area = src->area;
}

typedef struct pt { int y, x; } pt;

/* Cross product of (a - o) and (b - o) in the (row, column) plane. */
static long cross(pt o, pt a, pt b)
{
    return (long)(a.y - o.y) * (b.x - o.x) - (long)(a.x - o.x) * (b.y - o.y);
}

/* One side's envelope over the rows that hold a span: side < 0 keeps the
 * smallest x (left), side > 0 the largest (right).  Returns vertex count. */
static int envelope(const sec_spans *sp, const int *xs, int side, pt *out)
{
    int n = 0;

    for (int y = sp->y0; y <= sp->y1; y++) {
        pt p;
        if (sp->xl[y] > sp->xr[y])
            continue;
        p.y = y;
        p.x = xs[y];
        while (n >= 2 && (side < 0 ? cross(out[n - 2], out[n - 1], p) <= 0
                                   : cross(out[n - 2], out[n - 1], p) >= 0))
            n--;
        out[n++] = p;
    }
    return n;
}

/* Writes the envelope, interpolated between its vertices, into xs. */
static void fill_side(int *xs, const pt *v, int n, int side)
{
    if (n == 0)
        return;
    xs[v[0].y] = v[0].x;
    for (int i = 1; i < n; i++) {
        for (int y = v[i - 1].y + 1; y <= v[i].y; y++) {
            double t = (double)(y - v[i - 1].y) / (v[i].y - v[i - 1].y);
            double x = v[i - 1].x + t * (v[i].x - v[i - 1].x);
            /* Only pixels whose centres lie inside the hull. */
            xs[y] = side < 0 ? (int)ceil(x - 1e-9) : (int)floor(x + 1e-9);
        }
    }
}

int sec_spans_hull(sec_spans *sp)
{
    pt *v;
    int n;

    if (sp->y0 > sp->y1)
        return 0;
    v = malloc((size_t)(sp->y1 - sp->y0 + 1) * sizeof *v);
    if (!v)
        return -1;
    n = envelope(sp, sp->xl, -1, v);
    fill_side(sp->xl, v, n, -1);
    n = envelope(sp, sp->xr, +1, v);
    fill_side(sp->xr, v, n, +1);
    free(v);
    sec_spans_measure(sp);
    return 0;
}

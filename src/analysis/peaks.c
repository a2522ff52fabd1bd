/*
 * peaks.c - scipy.signal.find_peaks(x, distance=D, prominence=(lo, hi)) in C,
 * exactly as scipy 1.10 computes it (wlen=None, no height/threshold/width).
 *
 * Three stages, in scipy's order, each on the survivors of the previous:
 *   1. local maxima: a sample, or a run of equal samples (plateau), with a
 *      strictly smaller neighbour on both sides; the peak is the plateau's
 *      midpoint rounded down; the first and last samples never qualify.
 *   2. distance: peaks visited from the highest down (in numpy's argsort
 *      order, so equal heights tie the way scipy ties them), each removing
 *      the still-kept peaks closer than ceil(D) samples on both sides.
 *   3. prominence: the height above the higher of the two bases, a base
 *      being the lowest sample reached walking outwards from the peak until
 *      a higher sample or the signal's end; kept when lo <= prom <= hi.
 * Prominences use the whole signal, including samples of peaks that stage 2
 * removed, as in scipy.
 */
#include "analysis-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PEAKS_MAX_N (1 << 28)   /* keeps every allocation size in range */

void en_peaks_opts_init(en_peaks_opts *o)
{
    o->distance = 0;
    o->prominence_min = -INFINITY;
    o->prominence_max = INFINITY;
}

/* Stage 1.  Writes up to n / 2 maxima; returns their number. */
static int local_maxima(const double *x, int n, en_peak *pk)
{
    int m = 0, last = n - 1;

    for (int i = 1; i < last; i++) {
        if (!(x[i - 1] < x[i]))
            continue;
        int ahead = i + 1;
        while (ahead < last && x[ahead] == x[i])
            ahead++;
        if (x[ahead] < x[i]) {
            pk[m].left_edge = i;
            pk[m].right_edge = ahead - 1;
            pk[m].index = (i + ahead - 1) / 2;
            m++;
            i = ahead;  /* nothing up to here can start another maximum */
        }
    }
    return m;
}

/* Stage 2.  Marks keep[k] = 0 for peaks the distance rule removes. */
static void by_distance(const double *x, const en_peak *pk, int m, int dist,
                        int *order, double *height, unsigned char *keep)
{
    for (int k = 0; k < m; k++) {
        height[k] = x[pk[k].index];
        keep[k] = 1;
    }
    ana_argsort(height, order, m);
    for (int r = m - 1; r >= 0; r--) {
        int j = order[r];
        if (!keep[j])
            continue;
        for (int k = j - 1; k >= 0 && pk[j].index - pk[k].index < dist; k--)
            keep[k] = 0;
        for (int k = j + 1; k < m && pk[k].index - pk[j].index < dist; k++)
            keep[k] = 0;
    }
}

/* Stage 3: prominence and bases of one peak over the whole signal. */
static void prominence(const double *x, int n, en_peak *p)
{
    double top = x[p->index], lmin = top, rmin = top;

    p->left_base = p->right_base = p->index;
    for (int i = p->index; i >= 0 && x[i] <= top; i--) {
        if (x[i] < lmin) {
            lmin = x[i];
            p->left_base = i;
        }
    }
    for (int i = p->index; i < n && x[i] <= top; i++) {
        if (x[i] < rmin) {
            rmin = x[i];
            p->right_base = i;
        }
    }
    p->prominence = top - (lmin > rmin ? lmin : rmin);
}

static int check_args(const double *x, int n, const en_peaks_opts *o, en_err *err)
{
    if (n < 0 || n > PEAKS_MAX_N || (n > 0 && !x) || !o)
        return en_err_set(err, EN_EINVAL, "find_peaks: bad signal (n = %d)", n);
    if (!(o->distance == 0 || o->distance >= 1))
        return en_err_set(err, EN_EINVAL,
                          "find_peaks: distance %g must be 0 (none) or >= 1",
                          o->distance);
    if (isnan(o->prominence_min) || isnan(o->prominence_max))
        return en_err_set(err, EN_EINVAL,
                          "find_peaks: prominence bounds must not be NaN "
                          "(use -inf / +inf for none)");
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return en_err_set(err, EN_EINVAL,
                              "find_peaks: sample %d is not finite", i);
    return EN_OK;
}

/* ceil(distance) as scipy casts it, bounded by n: any larger spacing
 * removes exactly what n does, and the bound keeps the cast defined. */
static int spacing(double distance, int n)
{
    if (distance == 0)
        return 0;
    return distance >= (double)n ? n : (int)ceil(distance);
}

/* Drops the entries with keep[k] == 0, preserving order. */
static int compact(en_peak *pk, int m, const unsigned char *keep)
{
    int w = 0;

    for (int k = 0; k < m; k++)
        if (keep[k])
            pk[w++] = pk[k];
    return w;
}

int ana_find_peaks(const double *x, int n, const en_peaks_opts *o,
                   en_peak **out, int *count, en_err *err)
{
    int rc = check_args(x, n, o, err), m, dist;
    size_t cap = (size_t)n / 2 + 1;
    en_peak *pk;
    unsigned char *keep;

    *out = NULL;
    *count = 0;
    if (rc != EN_OK)
        return rc;
    pk = malloc(cap * sizeof *pk);
    keep = malloc(cap);
    if (!pk || !keep) {
        free(pk);
        free(keep);
        return en_err_set(err, EN_ENOMEM, "find_peaks: out of memory (%d samples)", n);
    }
    m = local_maxima(x, n, pk);
    dist = spacing(o->distance, n);
    if (dist > 0 && m > 1) {
        int *order = malloc((size_t)m * sizeof *order);
        double *height = malloc((size_t)m * sizeof *height);
        if (!order || !height) {
            free(order);
            free(height);
            free(pk);
            free(keep);
            return en_err_set(err, EN_ENOMEM, "find_peaks: out of memory (%d peaks)", m);
        }
        by_distance(x, pk, m, dist, order, height, keep);
        free(order);
        free(height);
        m = compact(pk, m, keep);
    }
    for (int k = 0; k < m; k++) {
        prominence(x, n, &pk[k]);
        keep[k] = o->prominence_min <= pk[k].prominence &&
                  pk[k].prominence <= o->prominence_max;
    }
    m = compact(pk, m, keep);
    free(keep);
    *out = pk;
    *count = m;
    return EN_OK;
}

int en_find_peaks(const double *x, int n, const en_peaks_opts *o,
                  en_peak *out, int cap, int *count, en_err *err)
{
    en_peak *pk;
    int m, rc;

    if (!count || cap < 0 || (cap > 0 && !out))
        return en_err_set(err, EN_EINVAL, "find_peaks: bad output buffer");
    *count = 0;
    rc = ana_find_peaks(x, n, o, &pk, &m, err);
    if (rc != EN_OK)
        return rc;
    if (m > cap) {
        free(pk);
        return en_err_set(err, EN_ELIMIT,
                          "find_peaks: %d peaks found but room for %d "
                          "(n / 2 = %d always suffices)", m, cap, n / 2);
    }
    if (m > 0)
        memcpy(out, pk, (size_t)m * sizeof *pk);
    free(pk);
    *count = m;
    return EN_OK;
}

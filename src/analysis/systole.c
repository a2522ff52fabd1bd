/*
 * systole.c - EchoNet-Dynamic's systole rule on an LV size curve:
 *
 *   trim_min = sorted(size)[round(n ** 0.05)]
 *   trim_max = sorted(size)[round(n ** 0.95)]
 *   systoles = find_peaks(-size, distance=20,
 *                         prominence=0.5 * (trim_max - trim_min))[0]
 *
 * The ranks are powers of n, not percentiles (for n = 100: ranks 1 and 79),
 * rounded the way Python's round() does (ties to even).  For n <= 5 the
 * upper rank is n itself and upstream dies with IndexError; we clamp both
 * ranks to n - 1 and say so in trim_clamped.  Everything else matches the
 * Python line for line, including double arithmetic on the sizes.
 */
#include "analysis-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

long ana_py_round(double f)
{
    double fl = floor(f), frac = f - fl;

    if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0))
        fl += 1;
    return (long)fl;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Python's len(size) ** e goes through C pow() too, so ranks agree. */
int ana_trim_rank(int n, double e, int *clamped)
{
    long r = ana_py_round(pow((double)n, e));

    if (r > n - 1) {
        *clamped = 1;
        r = n - 1;
    }
    return (int)(r < 0 ? 0 : r);
}

static int trim(const double *size, int n, const en_systole_params *p,
                en_systoles *out, en_err *err)
{
    double *sorted = malloc((size_t)n * sizeof *sorted);

    if (!sorted)
        return en_err_set(err, EN_ENOMEM, "systoles: out of memory (%d frames)", n);
    memcpy(sorted, size, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    out->trim_min_rank = ana_trim_rank(n, p->trim_low_exp, &out->trim_clamped);
    out->trim_max_rank = ana_trim_rank(n, p->trim_high_exp, &out->trim_clamped);
    out->trim_min = sorted[out->trim_min_rank];
    out->trim_max = sorted[out->trim_max_rank];
    out->prominence = p->prominence_frac * (out->trim_max - out->trim_min);
    free(sorted);
    return EN_OK;
}

static int find_minima(const double *size, int n, const en_systole_params *p,
                       en_systoles *out, en_err *err)
{
    double *neg = malloc((size_t)n * sizeof *neg);
    en_peaks_opts o;
    en_peak *pk;
    int m, rc;

    if (!neg)
        return en_err_set(err, EN_ENOMEM, "systoles: out of memory (%d frames)", n);
    for (int i = 0; i < n; i++)
        neg[i] = -size[i];
    en_peaks_opts_init(&o);
    o.distance = p->distance;
    o.prominence_min = out->prominence;
    rc = ana_find_peaks(neg, n, &o, &pk, &m, err);
    free(neg);
    if (rc != EN_OK)
        return en_err_prefix(err, "systoles");
    if (m > EN_ANALYSIS_MAX_SYSTOLES) {
        free(pk);
        return en_err_set(err, EN_ELIMIT,
                          "systoles: %d found, more than the %d allowed; "
                          "is the systole distance (%g frames) too small?",
                          m, EN_ANALYSIS_MAX_SYSTOLES, p->distance);
    }
    for (int k = 0; k < m; k++)
        out->frame[k] = pk[k].index;
    out->count = m;
    free(pk);
    return EN_OK;
}

int en_analysis_systoles(const double *size, int n, const en_systole_params *p,
                         en_systoles *out, en_err *err)
{
    int rc;

    if (!out || !p || n < 0 || (n > 0 && !size))
        return en_err_set(err, EN_EINVAL, "systoles: bad arguments");
    memset(out, 0, sizeof *out);
    out->trim_min = out->trim_max = out->prominence = NAN;
    if (n > EN_ANALYSIS_MAX_FRAMES)
        return en_err_set(err, EN_EINVAL,
                          "systoles: %d frames, more than the %d supported",
                          n, EN_ANALYSIS_MAX_FRAMES);
    for (int i = 0; i < n; i++)
        if (!isfinite(size[i]))
            return en_err_set(err, EN_EINVAL,
                              "systoles: LV size of frame %d is not finite", i);
    out->n_frames = n;
    if (n == 0)
        return EN_OK;
    rc = trim(size, n, p, out, err);
    if (rc == EN_OK)
        rc = find_minima(size, n, p, out, err);
    return rc;
}

/*
 * summary.c - the study's EF from its beats: mean, sample SD (n - 1, as
 * upstream's R sd()), range, and the class against the reported
 * thresholds (reduced below 50 %, with 40 and 35 reported too).  A value
 * exactly on a threshold belongs to the band above it: EF = 50 is not
 * reduced, 40 is in 40-50, 35 in 35-40.
 */
#include "analysis-int.h"

#include <math.h>
#include <stdio.h>

en_ef_class en_ef_classify(double ef, const en_analysis_params *p)
{
    if (isnan(ef))
        return EN_EF_CLASS_UNKNOWN;
    if (ef < p->ef_very_low)
        return EN_EF_CLASS_VERY_LOW;
    if (ef < p->ef_low)
        return EN_EF_CLASS_LOW;
    if (ef < p->ef_reduced)
        return EN_EF_CLASS_REDUCED;
    return EN_EF_CLASS_NOT_REDUCED;
}

const char *en_ef_class_name(en_ef_class c)
{
    switch (c) {
    case EN_EF_CLASS_NOT_REDUCED: return "not_reduced";
    case EN_EF_CLASS_REDUCED: return "reduced";
    case EN_EF_CLASS_LOW: return "low";
    case EN_EF_CLASS_VERY_LOW: return "very_low";
    case EN_EF_CLASS_UNKNOWN: break;
    }
    return "unknown";
}

void en_ef_class_label(en_ef_class c, const en_analysis_params *p,
                       char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    switch (c) {
    case EN_EF_CLASS_NOT_REDUCED:
        snprintf(buf, len, "EF >= %g %%", p->ef_reduced);
        break;
    case EN_EF_CLASS_REDUCED:
        snprintf(buf, len, "%g <= EF < %g %%", p->ef_low, p->ef_reduced);
        break;
    case EN_EF_CLASS_LOW:
        snprintf(buf, len, "%g <= EF < %g %%", p->ef_very_low, p->ef_low);
        break;
    case EN_EF_CLASS_VERY_LOW:
        snprintf(buf, len, "EF < %g %%", p->ef_very_low);
        break;
    default:
        snprintf(buf, len, "no EF");
        break;
    }
}

static double mean_of(const double *v, int n)
{
    double s = 0;

    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

/* Two-pass sample SD: stable for EFs that barely differ. */
static double sample_sd(const double *v, int n, double mean)
{
    double ss = 0;

    for (int i = 0; i < n; i++)
        ss += (v[i] - mean) * (v[i] - mean);
    return sqrt(ss / (n - 1));
}

int en_ef_summarize(const double *ef, int n, const en_analysis_params *p,
                    en_ef_summary *out, en_err *err)
{
    if (!out || !p || n < 0 || (n > 0 && !ef))
        return en_err_set(err, EN_EINVAL, "EF summary: bad arguments");
    out->n = 0;
    out->mean = out->sd = out->min = out->max = NAN;
    out->cls = EN_EF_CLASS_UNKNOWN;
    out->reduced = 0;
    for (int i = 0; i < n; i++)
        if (!isfinite(ef[i]))
            return en_err_set(err, EN_EINVAL,
                              "EF summary: beat %d has a non-finite EF", i);
    if (n == 0)
        return EN_OK;
    out->n = n;
    out->mean = mean_of(ef, n);
    out->sd = n >= 2 ? sample_sd(ef, n, out->mean) : NAN;
    out->min = out->max = ef[0];
    for (int i = 1; i < n; i++) {
        out->min = fmin(out->min, ef[i]);
        out->max = fmax(out->max, ef[i]);
    }
    out->cls = en_ef_classify(out->mean, p);
    out->reduced = out->mean < p->ef_reduced;
    return EN_OK;
}

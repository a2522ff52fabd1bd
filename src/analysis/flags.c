/*
 * flags.c - quality flags: what a reader should know before trusting the
 * EF, decided from the LV size curve, the beats and the input.
 *
 * The size-curve checks, all thresholds in en_quality_params:
 *   - LV small / large: the share of frames whose LV pixel count is below
 *     lv_min_px (absent counts as small) or above lv_max_px exceeds
 *     lv_bad_fraction ("most frames");
 *   - not periodic: the best Pearson autocorrelation of the curve over the
 *     lags of heart rates hr_min..hr_max bpm (at most half the video, so
 *     two cycles are compared) is below min_autocorr, or the systole
 *     intervals' coefficient of variation exceeds max_interval_cv.  Either
 *     check is skipped when the video is too short to evaluate it.
 * A constant curve has no autocorrelation; it counts as 0 (not periodic).
 */
#include "analysis-int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    unsigned bit;
    const char *name;
    const char *text;
} flag_info[EN_QF_COUNT] = {
    { EN_QF_NO_BEAT, "no_beat",
      "No heartbeat was found (no systole, or none with an EF clip): "
      "there is no beat-by-beat EF; check the view and the segmentation." },
    { EN_QF_SHORT_VIDEO, "short_video",
      "The video is shorter than one EF clip (63 frames at period 2): "
      "clips were padded with blank frames, so the EF is unreliable; "
      "acquire a longer loop." },
    { EN_QF_LV_SMALL, "lv_small",
      "The left ventricle was absent or implausibly small in most frames: "
      "the view may not be apical 4-chamber, or the segmentation failed." },
    { EN_QF_LV_LARGE, "lv_large",
      "The left ventricle was implausibly large in most frames: "
      "the segmentation probably leaked outside the ventricle." },
    { EN_QF_NOT_PERIODIC, "not_periodic",
      "The LV size curve does not beat regularly (weak periodicity or "
      "irregular systole intervals): beats may be missed or spurious; "
      "review the size curve." },
    { EN_QF_BEAT_SPREAD, "beat_spread",
      "The beat EFs disagree widely (large SD): the mean may hide "
      "arrhythmia or unreliable beats; review the per-beat table." },
    { EN_QF_FPS_GUESSED, "fps_guessed",
      "The frame rate was not recorded in the source and was assumed: "
      "clip timing and the periodicity check may be off." },
};

const char *en_analysis_flag_name(unsigned flag)
{
    for (int i = 0; i < EN_QF_COUNT; i++)
        if (flag_info[i].bit == flag)
            return flag_info[i].name;
    return NULL;
}

const char *en_analysis_flag_text(unsigned flag)
{
    for (int i = 0; i < EN_QF_COUNT; i++)
        if (flag_info[i].bit == flag)
            return flag_info[i].text;
    return NULL;
}

size_t en_analysis_flags_format(unsigned flags, char *buf, size_t len)
{
    size_t need = 0;

    if (buf && len)
        buf[0] = '\0';
    for (int i = 0; i < EN_QF_COUNT; i++) {
        if (!(flags & flag_info[i].bit))
            continue;
        const char *sep = need ? "," : "";
        size_t add = strlen(sep) + strlen(flag_info[i].name);
        if (buf && need + add < len) {
            strcat(buf + need, sep);
            strcat(buf + need, flag_info[i].name);
        }
        need += add;
    }
    return need;
}

/* Pearson correlation of x[0..m) with x[lag..lag+m); 0 when either side
 * is constant (no evidence of a rhythm). */
static double lag_corr(const double *x, int m, int lag)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;

    for (int i = 0; i < m; i++) {
        ma += x[i];
        mb += x[i + lag];
    }
    ma /= m;
    mb /= m;
    for (int i = 0; i < m; i++) {
        double a = x[i] - ma, b = x[i + lag] - mb;
        sab += a * b;
        saa += a * a;
        sbb += b * b;
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

static void periodicity(const double *size, int n, const en_analysis_params *p,
                        en_analysis *a)
{
    const en_quality_params *q = &p->quality;
    int lo = (int)floor(60.0 * a->fps / q->hr_max_bpm);
    int hi = (int)ceil(60.0 * a->fps / q->hr_min_bpm);

    if (lo < 2)
        lo = 2;
    if (hi > n / 2)
        hi = n / 2;
    a->autocorr = NAN;
    a->autocorr_lag = 0;
    for (int lag = lo; lag <= hi; lag++) {
        double r = lag_corr(size, n - lag, lag);
        if (a->autocorr_lag == 0 || r > a->autocorr) {
            a->autocorr = r;
            a->autocorr_lag = lag;
        }
    }
}

static void interval_cv(const en_systoles *sys, en_analysis *a)
{
    int m = sys->count - 1;
    double mean = 0, ss = 0;

    a->interval_cv = NAN;
    if (m < 2)
        return;
    for (int k = 0; k < m; k++)
        mean += sys->frame[k + 1] - sys->frame[k];
    mean /= m;
    for (int k = 0; k < m; k++) {
        double d = sys->frame[k + 1] - sys->frame[k] - mean;
        ss += d * d;
    }
    a->interval_cv = sqrt(ss / (m - 1)) / mean;
}

static void lv_fractions(const double *size, int n, const en_quality_params *q,
                         en_analysis *a)
{
    int small = 0, large = 0;

    for (int i = 0; i < n; i++) {
        small += size[i] < q->lv_min_px;
        large += size[i] > q->lv_max_px;
    }
    a->frac_small = n ? (double)small / n : 0;
    a->frac_large = n ? (double)large / n : 0;
}

void ana_curve_flags(const double *size, int n, const en_analysis_params *p,
                     en_analysis *a)
{
    const en_quality_params *q = &p->quality;

    lv_fractions(size, n, q, a);
    periodicity(size, n, p, a);
    interval_cv(&a->sys, a);
    if (a->n_beats == 0)
        a->flags |= EN_QF_NO_BEAT;
    if (n < (p->clip.frames - 1) * p->clip.period + 1)
        a->flags |= EN_QF_SHORT_VIDEO;
    if (n == 0 || a->frac_small > q->lv_bad_fraction)
        a->flags |= EN_QF_LV_SMALL;
    if (a->frac_large > q->lv_bad_fraction)
        a->flags |= EN_QF_LV_LARGE;
    if ((!isnan(a->autocorr) && a->autocorr < q->min_autocorr) ||
        (!isnan(a->interval_cv) && a->interval_cv > q->max_interval_cv))
        a->flags |= EN_QF_NOT_PERIODIC;
    if (a->fps_guessed)
        a->flags |= EN_QF_FPS_GUESSED;
}

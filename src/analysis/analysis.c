/*
 * analysis.c - parameters and the two calls a pipeline makes per study:
 * en_analysis_plan (sizes -> systoles, beats, clips, curve flags) before
 * the EF network runs, en_analysis_finish (beat EFs -> summary, spread
 * flag) after it.
 */
#include "analysis-int.h"

#include <math.h>
#include <string.h>

#define FPS_MAX 1000.0
#define CLIP_SPAN_MAX 4096   /* frames one clip may cover */

void en_analysis_params_default(en_analysis_params *p)
{
    memset(p, 0, sizeof *p);
    p->systole.distance = 20;
    p->systole.prominence_frac = 0.5;
    p->systole.trim_low_exp = 0.05;
    p->systole.trim_high_exp = 0.95;
    p->clip.frames = 32;
    p->clip.period = 2;
    p->clip.lead = 32;
    p->clip.end_rule = EN_CLIP_END_SHIFT;
    p->clip.max_shift = 16;
    p->quality.lv_min_px = 200;
    p->quality.lv_max_px = 5000;
    p->quality.lv_bad_fraction = 0.5;
    p->quality.hr_min_bpm = 30;
    p->quality.hr_max_bpm = 200;
    p->quality.min_autocorr = 0.5;
    p->quality.max_interval_cv = 0.25;
    p->quality.max_beat_sd = 10;
    p->ef_reduced = 50;
    p->ef_low = 40;
    p->ef_very_low = 35;
}

static int bad(en_err *err, const char *field, double v, const char *want)
{
    return en_err_set(err, EN_EINVAL,
                      "analysis parameters: %s = %g, must be %s", field, v, want);
}

static int check_systole(const en_systole_params *s, en_err *err)
{
    if (!(s->distance >= 1 && s->distance <= EN_ANALYSIS_MAX_FRAMES))
        return bad(err, "systole.distance", s->distance, "1..16384 frames");
    if (!(s->prominence_frac >= 0 && s->prominence_frac <= 10))
        return bad(err, "systole.prominence_frac", s->prominence_frac, "0..10");
    if (!(s->trim_low_exp >= 0 && s->trim_low_exp <= s->trim_high_exp &&
          s->trim_high_exp <= 1))
        return bad(err, "systole.trim_low_exp/trim_high_exp", s->trim_low_exp,
                   "0 <= low <= high <= 1");
    return EN_OK;
}

static int check_clip(const en_clip_params *c, en_err *err)
{
    if (c->frames < 1 || c->period < 1 ||
        (long)c->frames * c->period > CLIP_SPAN_MAX)
        return bad(err, "clip.frames * clip.period",
                   (double)c->frames * c->period, "1..4096");
    if (c->lead < 0 || c->lead > CLIP_SPAN_MAX)
        return bad(err, "clip.lead", c->lead, "0..4096");
    if (c->end_rule != EN_CLIP_END_SHIFT && c->end_rule != EN_CLIP_END_DROP)
        return bad(err, "clip.end_rule", c->end_rule, "shift (0) or drop (1)");
    if (c->max_shift < 0 || c->max_shift > CLIP_SPAN_MAX)
        return bad(err, "clip.max_shift", c->max_shift, "0..4096");
    return EN_OK;
}

static int check_quality(const en_quality_params *q, en_err *err)
{
    if (!(q->lv_min_px >= 0 && q->lv_min_px <= q->lv_max_px))
        return bad(err, "quality.lv_min_px", q->lv_min_px, "0..lv_max_px");
    if (!(q->lv_bad_fraction >= 0 && q->lv_bad_fraction <= 1))
        return bad(err, "quality.lv_bad_fraction", q->lv_bad_fraction, "0..1");
    if (!(q->hr_min_bpm >= 1 && q->hr_min_bpm <= q->hr_max_bpm && q->hr_max_bpm <= 1000))
        return bad(err, "quality.hr_min_bpm/hr_max_bpm", q->hr_min_bpm,
                   "1 <= min <= max <= 1000");
    if (!(q->min_autocorr >= -1 && q->min_autocorr <= 1))
        return bad(err, "quality.min_autocorr", q->min_autocorr, "-1..1");
    if (!(q->max_interval_cv >= 0 && isfinite(q->max_interval_cv)))
        return bad(err, "quality.max_interval_cv", q->max_interval_cv, ">= 0");
    if (!(q->max_beat_sd >= 0 && isfinite(q->max_beat_sd)))
        return bad(err, "quality.max_beat_sd", q->max_beat_sd, ">= 0");
    return EN_OK;
}

int en_analysis_params_check(const en_analysis_params *p, en_err *err)
{
    int rc;

    if (!p)
        return en_err_set(err, EN_EINVAL, "analysis parameters: missing");
    if ((rc = check_systole(&p->systole, err)) != EN_OK ||
        (rc = check_clip(&p->clip, err)) != EN_OK ||
        (rc = check_quality(&p->quality, err)) != EN_OK)
        return rc;
    if (!(isfinite(p->ef_very_low) && p->ef_very_low <= p->ef_low &&
          p->ef_low <= p->ef_reduced && isfinite(p->ef_reduced)))
        return bad(err, "ef_very_low/ef_low/ef_reduced", p->ef_low,
                   "finite with very_low <= low <= reduced");
    return EN_OK;
}

int en_analysis_plan(const double *size, int n, double fps, int fps_guessed,
                     const en_analysis_params *p, en_analysis *a, en_err *err)
{
    int rc;

    if (!a)
        return en_err_set(err, EN_EINVAL, "analysis: no result to fill");
    memset(a, 0, sizeof *a);
    a->ef.mean = a->ef.sd = a->ef.min = a->ef.max = NAN;
    if ((rc = en_analysis_params_check(p, err)) != EN_OK)
        return rc;
    if (!(fps > 0 && fps <= FPS_MAX))
        return en_err_set(err, EN_EINVAL,
                          "analysis: frame rate %g fps outside 0..%g; pass the "
                          "assumed rate with fps_guessed set when unknown",
                          fps, FPS_MAX);
    a->n_frames = n;
    a->fps = fps;
    a->fps_guessed = fps_guessed != 0;
    if ((rc = en_analysis_systoles(size, n, &p->systole, &a->sys, err)) != EN_OK)
        return en_err_prefix(err, "analysis");
    rc = en_analysis_plan_beats(size, n, &a->sys, &p->clip, a->beat,
                                &a->n_beats, &a->n_dropped, err);
    if (rc != EN_OK)
        return en_err_prefix(err, "analysis");
    ana_curve_flags(size, n, p, a);
    return EN_OK;
}

int en_analysis_finish(en_analysis *a, const double *ef, int n,
                       const en_analysis_params *p, en_err *err)
{
    int rc;

    if (!a || !p)
        return en_err_set(err, EN_EINVAL, "analysis: bad arguments");
    if (n != a->n_beats)
        return en_err_set(err, EN_EINVAL,
                          "analysis: %d beat EFs given for %d planned beats",
                          n, a->n_beats);
    if ((rc = en_ef_summarize(ef, n, p, &a->ef, err)) != EN_OK)
        return en_err_prefix(err, "analysis");
    for (int i = 0; i < n; i++)
        a->beat[i].ef = ef[i];
    a->flags &= ~EN_QF_BEAT_SPREAD;
    if (n >= 2 && a->ef.sd > p->quality.max_beat_sd)
        a->flags |= EN_QF_BEAT_SPREAD;
    return EN_OK;
}

/*
 * aggregate.c - a study's EF from its clips.
 *
 * The study's EF is the mean over every beat of every usable clip (a clip
 * with more beats weighs more, as each beat is one measurement of the same
 * heart), with the beats' sample SD; the usable clips' own means are kept
 * too, and when they disagree by more than the configured number of EF
 * points the study is flagged, because two good A4C clips of one heart
 * should not tell two stories.  A study without a usable clip has no EF,
 * and says why: which clips there were and what was wrong with them.
 */
#include "en_study.h"

#include "en_analysis.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void en_study_params_default(en_study_params *p)
{
    en_analysis_params a;

    en_analysis_params_default(&a);
    p->disagreement_points = 10;
    p->ef_reduced = a.ef_reduced;
    p->ef_low = a.ef_low;
    p->ef_very_low = a.ef_very_low;
}

static const struct {
    uint64_t bit;
    const char *name, *text;
} flags[] = {
    {EN_STUDY_F_NO_USABLE, "no_usable_clip", "no clip of the study is usable for EF"},
    {EN_STUDY_F_DISAGREE, "clips_disagree", "the usable clips' EFs differ by more than the "
                                            "configured number of points"},
    {EN_STUDY_F_UNJUDGED, "unjudged_clips", "clips analysed before clip verdicts (schema 1) "
                                            "were never checked for their view"},
    {EN_STUDY_F_ONE_CLIP, "single_clip", "the EF rests on one clip"},
    {EN_STUDY_F_PENDING, "clips_pending", "some clips were still being processed"},
    {EN_STUDY_F_CLIPS_FAILED, "clips_failed", "some clips failed and were not counted"},
    {EN_STUDY_F_CLIP_FLAGGED, "clip_flagged", "a usable clip carries a quality flag"},
    {EN_STUDY_F_BEAT_SPREAD, "beat_spread", "the counted beats' EFs spread widely (SD over "
                                            "10 points)"},
};

const char *en_study_flag_name(uint64_t bit)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].bit == bit)
            return flags[i].name;
    return NULL;
}

const char *en_study_flag_text(uint64_t bit)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (flags[i].bit == bit)
            return flags[i].text;
    return NULL;
}

void en_study_flags_format(uint64_t f, char *buf, size_t len)
{
    size_t n = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if ((f & flags[i].bit) && n < len)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", flags[i].name);
}

static int usable(const en_store_clip *c)
{
    return c->status == EN_STORE_DONE && !strcmp(c->r.verdict, "usable");
}

/* "3 clips not analysed (2 single_frame, 1 doppler), 2 unusable (no_rv)" */
static void why_none(const en_store_study *s, char *buf, size_t len)
{
    int not_analysed = 0, unusable = 0, failed = 0, pending = 0, unjudged = 0;
    char codes[256] = "";

    for (int i = 0; i < s->nclips; i++) {
        const en_store_clip *c = &s->clip[i];
        if (c->status == EN_STORE_FAILED)
            failed++;
        else if (c->status != EN_STORE_DONE)
            pending++;
        else if (!c->r.verdict[0])
            unjudged++;
        else if (!strcmp(c->r.verdict, "not_analysed"))
            not_analysed++;
        else
            unusable++;
        if (c->status == EN_STORE_DONE && c->r.verdict_codes[0] &&
            strcmp(c->r.verdict, "usable") != 0) {
            /* every distinct reason once */
            char one[64];
            const char *p = c->r.verdict_codes;
            while (*p) {
                size_t k = strcspn(p, ",");
                snprintf(one, sizeof one, "%.*s", (int)(k < 63 ? k : 63), p);
                if (!strstr(codes, one) && strlen(codes) + k + 2 < sizeof codes)
                    snprintf(codes + strlen(codes), sizeof codes - strlen(codes), "%s%s",
                             codes[0] ? ", " : "", one);
                p += k + (p[k] == ',');
            }
        }
    }
    snprintf(buf, len, "no usable apical four-chamber clip among %d: %d not analysed, "
             "%d unusable, %d failed, %d unfinished, %d never judged%s%s%s",
             s->nclips, not_analysed, unusable, failed, pending, unjudged,
             codes[0] ? " (reasons: " : "", codes, codes[0] ? ")" : "");
}

void en_study_aggregate(const en_store_study *s, const en_study_params *p,
                        en_store_study_result *out)
{
    double total = 0, total2 = 0, lo = INFINITY, hi = -INFINITY;
    int beats = 0;

    en_store_study_result_init(out);
    out->clips_total = s->nclips;
    out->threshold_reduced = p->ef_reduced;
    out->threshold_low = p->ef_low;
    out->threshold_very_low = p->ef_very_low;
    out->disagreement_points = p->disagreement_points;
    for (int i = 0; i < s->nclips; i++) {
        const en_store_clip *c = &s->clip[i];
        double clip_sum = 0;
        int n = 0;
        if (c->status == EN_STORE_FAILED)
            out->flags |= EN_STUDY_F_CLIPS_FAILED;
        else if (c->status != EN_STORE_DONE)
            out->flags |= EN_STUDY_F_PENDING;
        else if (!c->r.verdict[0])
            out->flags |= EN_STUDY_F_UNJUDGED;
        if (!usable(c))
            continue;
        for (int b = 0; b < c->r.nbeats; b++) {
            double ef = c->r.beats[b].ef;
            if (!isfinite(ef))
                continue;
            clip_sum += ef;
            total += ef;
            total2 += ef * ef;
            n++;
        }
        if (n == 0)
            continue;
        out->clips_usable++;
        beats += n;
        lo = fmin(lo, clip_sum / n);
        hi = fmax(hi, clip_sum / n);
        if (c->r.flags)
            out->flags |= EN_STUDY_F_CLIP_FLAGGED;
    }
    out->beats = beats;
    if (beats == 0) {
        out->flags |= EN_STUDY_F_NO_USABLE;
        why_none(s, out->no_ef_reason, sizeof out->no_ef_reason);
    } else {
        out->ef_mean = total / beats;
        out->ef_sd = beats > 1 ? sqrt(fmax(0.0, (total2 - beats * out->ef_mean * out->ef_mean) /
                                                     (beats - 1)))
                               : NAN;
        out->clip_ef_min = lo;
        out->clip_ef_max = hi;
        {
            en_analysis_params a;
            en_analysis_params_default(&a);
            a.ef_reduced = p->ef_reduced;
            a.ef_low = p->ef_low;
            a.ef_very_low = p->ef_very_low;
            snprintf(out->ef_class, sizeof out->ef_class, "%s",
                     en_ef_class_name(en_ef_classify(out->ef_mean, &a)));
        }
        if (out->clips_usable == 1)
            out->flags |= EN_STUDY_F_ONE_CLIP;
        if (hi - lo > p->disagreement_points)
            out->flags |= EN_STUDY_F_DISAGREE;
        if (isfinite(out->ef_sd) && out->ef_sd > 10)
            out->flags |= EN_STUDY_F_BEAT_SPREAD;
    }
    en_study_flags_format(out->flags, out->flags_text, sizeof out->flags_text);
}

typedef struct recompute_ctx {
    const en_study_params *p;
} recompute_ctx;

static int compute(const en_store_study *s, en_store_study_result *res, void *ud, en_err *err)
{
    const recompute_ctx *x = ud;

    (void)err;
    en_study_aggregate(s, x->p, res);
    return EN_OK;
}

int en_study_recompute(en_store *db, const char *pseudonym, const en_study_params *p,
                       int force, int *version, int *changed, en_err *err)
{
    recompute_ctx x = {p};
    int v = 0, ch = 0, rc;

    rc = en_store_study_update(db, pseudonym, force, compute, &x, &v, &ch, err);
    if (rc)
        return en_err_prefix(err, "study %s: computing its result", pseudonym);
    if (version)
        *version = v;
    if (changed)
        *changed = ch;
    return EN_OK;
}

/*
 * verdict.c - whether one clip counts for its study's EF, and why.
 *
 * Two gates.  en_clip_screen looks only at what the file says about itself
 * and refuses to analyse what cannot hold a beating left ventricle in an
 * ultrasound sector: a still, an object of another modality, a spectral
 * Doppler or M-mode strip, a colour-flow loop, a loop shorter than a beat.
 * en_clip_judge then weighs an analysed clip: the view the DICOM names
 * when it names one, the LV the segmentation found (en_clip_evidence), the
 * beats and the quality flags.  Every failed test adds its reason; one is
 * enough to leave the clip out.  The thresholds are parameters, their
 * defaults argued in docs/analysis.md and measured in docs/accuracy.md.
 */
#include "en_study.h"

#include "en_analysis.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void en_verdict_params_default(en_verdict_params *p)
{
    memset(p, 0, sizeof *p);
    p->min_seconds = 0.4;
    p->lv_min_px = 200;
    p->lv_max_px = 5000;
    p->blob_min_px = 12;
    p->one_lv_fraction = 0.9;
    p->min_lv_area_px = 950;
    p->max_axis_angle = 30;
    p->max_apex_depth = 0.25;
    p->min_rv_closed = 0.30;
    p->min_beats = 1;
    p->excluding_flags = EN_QF_NO_BEAT | EN_QF_LV_SMALL | EN_QF_LV_LARGE | EN_QF_NOT_PERIODIC;
    p->trust_dicom_view = 1;
}

const char *en_clip_verdict_name(en_clip_verdict_kind k)
{
    switch (k) {
    case EN_CLIP_USABLE: return "usable";
    case EN_CLIP_UNUSABLE: return "unusable";
    case EN_CLIP_NOT_ANALYSED: return "not_analysed";
    default: return "";
    }
}

static const struct {
    uint32_t bit;
    const char *name, *text;
} reasons[EN_CLIP_NREASONS] = {
    {EN_CLIP_R_SINGLE_FRAME, "single_frame", "a single frame: no motion to measure"},
    {EN_CLIP_R_NOT_US, "not_ultrasound", "not an ultrasound image"},
    {EN_CLIP_R_DOPPLER, "doppler", "a spectral Doppler region (velocities over time, not "
                                   "a picture of the heart)"},
    {EN_CLIP_R_MMODE, "m_mode", "an M-mode region (one scan line over time)"},
    {EN_CLIP_R_COLOUR_FLOW, "colour_flow", "a colour-flow Doppler region over the picture"},
    {EN_CLIP_R_NO_SECTOR, "no_sector", "no ultrasound sector found in the pixels"},
    {EN_CLIP_R_TOO_SHORT, "too_short", "too short to hold one heartbeat"},
    {EN_CLIP_R_VIEW_DICOM, "view_not_a4c", "the DICOM names another view than apical "
                                           "four-chamber"},
    {EN_CLIP_R_NO_LV, "no_single_lv", "the segmentation does not find one left ventricle of "
                                      "plausible size in every frame"},
    {EN_CLIP_R_LV_SMALL, "lv_small_for_view", "the left ventricle is smaller than in an "
                                              "apical view, as in a short-axis or "
                                              "foreshortened cut"},
    {EN_CLIP_R_LV_AXIS, "lv_axis", "the left ventricle lies across the beam, not along it "
                                   "as in an apical view"},
    {EN_CLIP_R_LV_DEEP, "lv_deep", "the left ventricle starts far from the probe, not at "
                                   "the apex of the fan as in an apical view"},
    {EN_CLIP_R_NO_RV, "no_rv", "no right ventricle beside the left one: not a "
                               "four-chamber view"},
    {EN_CLIP_R_NO_BEAT, "no_beat", "no beat with an EF"},
    {EN_CLIP_R_QUALITY, "quality", "a quality flag that makes its EF unreliable"},
    {EN_CLIP_R_NO_KEY, "no_instance_uid", "the file has no SOPInstanceUID, so a second "
                                          "delivery of it could not be told apart"},
    {EN_CLIP_R_NOT_DONE, "not_done", "processing failed or did not finish"},
};

const char *en_clip_reason_name(uint32_t bit)
{
    for (int i = 0; i < EN_CLIP_NREASONS; i++)
        if (reasons[i].bit == bit)
            return reasons[i].name;
    return NULL;
}

static const char *reason_text(uint32_t bit)
{
    for (int i = 0; i < EN_CLIP_NREASONS; i++)
        if (reasons[i].bit == bit)
            return reasons[i].text;
    return "";
}

/* Appends "; " + s (or s) to buf without overflowing it. */
static void add(char *buf, size_t len, const char *sep, const char *s)
{
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s%s", n ? sep : "", s);
}

/* A reason with an optional detail in brackets. */
static void reason(en_clip_verdict *v, uint32_t bit, const char *detail)
{
    char sentence[400];

    if (v->reasons & bit)
        return;
    v->reasons |= bit;
    add(v->codes, sizeof v->codes, ",", en_clip_reason_name(bit));
    snprintf(sentence, sizeof sentence, "%s%s%s%s", reason_text(bit),
             detail && *detail ? " (" : "", detail ? detail : "", detail && *detail ? ")" : "");
    add(v->text, sizeof v->text, "; ", sentence);
}

static void verdict_clear(en_clip_verdict *v)
{
    char regions[sizeof v->regions];

    memcpy(regions, v->regions, sizeof regions);
    memset(v, 0, sizeof *v);
    memcpy(v->regions, regions, sizeof regions);
}

void en_clip_not_analysed(en_clip_verdict *v, uint32_t bit, const char *detail)
{
    if (v->kind != EN_CLIP_NOT_ANALYSED)
        verdict_clear(v);
    v->kind = EN_CLIP_NOT_ANALYSED;
    reason(v, bit, detail);
}

/* ---- screening --------------------------------------------------------------- */

/* DICOM's ultrasound storage classes (multi-frame, single-frame, and the
 * retired ones some archives still send). */
static int is_us_class(const char *uid)
{
    static const char *const us[] = {
        "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.6.2",   /* enhanced US volume */
    };
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++)
        if (!strcmp(uid, us[i]))
            return 1;
    return 0;
}

/* A secondary capture of an echo screen is how some archives send loops;
 * it is ultrasound when it says so in Modality. */
static int is_us(const en_clip_facts *f)
{
    if (f->sop_class[0] && is_us_class(f->sop_class))
        return 1;
    return !strcmp(f->modality, "US");
}

static void region_names(const en_clip_facts *f, en_clip_verdict *v)
{
    static const char *const spatial[] = {"none", "2d", "m_mode", "spectral", "waveform",
                                          "graphics"};
    v->regions[0] = '\0';
    for (int i = 0; i < f->nregions && i < EN_CLIP_MAX_REGIONS; i++) {
        int s = f->region[i].spatial_format;
        const char *name = s >= 0 && s <= 5 ? spatial[s] : "other";
        if (s == 1 && f->region[i].data_type == 2)
            name = "colour_flow";
        if (!strstr(v->regions, name))
            add(v->regions, sizeof v->regions, ",", name);
    }
}

int en_clip_screen(const en_clip_facts *f, const en_verdict_params *p, en_clip_verdict *v)
{
    char detail[200];

    memset(v, 0, sizeof *v);
    region_names(f, v);
    if (!is_us(f)) {
        snprintf(detail, sizeof detail, "modality %s, SOP class %s",
                 f->modality[0] ? f->modality : "not given",
                 f->sop_class[0] ? f->sop_class : "not given");
        en_clip_not_analysed(v, EN_CLIP_R_NOT_US, detail);
    }
    if (f->frames <= 1)
        en_clip_not_analysed(v, EN_CLIP_R_SINGLE_FRAME, NULL);
    for (int i = 0; i < f->nregions && i < EN_CLIP_MAX_REGIONS; i++) {
        const en_clip_region *r = &f->region[i];
        if (r->spatial_format == 3)
            en_clip_not_analysed(v, EN_CLIP_R_DOPPLER, "SequenceOfUltrasoundRegions");
        else if (r->spatial_format == 2)
            en_clip_not_analysed(v, EN_CLIP_R_MMODE, "SequenceOfUltrasoundRegions");
        else if (r->spatial_format == 1 && r->data_type == 2)
            en_clip_not_analysed(v, EN_CLIP_R_COLOUR_FLOW, "SequenceOfUltrasoundRegions");
    }
    if (f->frames > 1 && f->fps > 0 && f->frames / f->fps < p->min_seconds) {
        snprintf(detail, sizeof detail, "%.2f s, %d frames at %.3g fps", f->frames / f->fps,
                 f->frames, f->fps);
        en_clip_not_analysed(v, EN_CLIP_R_TOO_SHORT, detail);
    }
    return v->kind == EN_CLIP_NOT_ANALYSED;
}

/* ---- judging an analysed clip -------------------------------------------------- */

void en_clip_judge(const en_clip_facts *f, const en_clip_evidence *ev, int nbeats,
                   uint64_t qflags, int has_key, const en_verdict_params *p, en_clip_verdict *v)
{
    char detail[160];
    int named_a4c = f->view == EN_VIEW_A4C && p->trust_dicom_view;

    verdict_clear(v);
    if (f->view != EN_VIEW_UNKNOWN && f->view != EN_VIEW_A4C) {
        snprintf(detail, sizeof detail, "View Code Sequence: %s", en_view_text(f->view));
        reason(v, EN_CLIP_R_VIEW_DICOM, detail);
    }
    if (!(ev->one_lv_fraction >= p->one_lv_fraction)) {
        snprintf(detail, sizeof detail, "%.0f %% of frames, %.0f %% needed",
                 100 * ev->one_lv_fraction, 100 * p->one_lv_fraction);
        reason(v, EN_CLIP_R_NO_LV, detail);
    }
    /* The shape tests need a shape; with no LV the reason above says it. */
    if (isfinite(ev->lv_area_median) && ev->lv_area_median < p->min_lv_area_px) {
        snprintf(detail, sizeof detail, "median %.0f pixels of 112x112, at least %.0f expected",
                 ev->lv_area_median, p->min_lv_area_px);
        reason(v, EN_CLIP_R_LV_SMALL, detail);
    }
    if (isfinite(ev->cavity_angle) && ev->cavity_angle > p->max_axis_angle) {
        snprintf(detail, sizeof detail, "its cavity lies %.0f degrees from the beam, at most "
                 "%.0f", ev->cavity_angle, p->max_axis_angle);
        reason(v, EN_CLIP_R_LV_AXIS, detail);
    }
    if (isfinite(ev->apex_depth) && ev->apex_depth > p->max_apex_depth) {
        snprintf(detail, sizeof detail, "at %.0f %% of the depth, at most %.0f %%",
                 100 * ev->apex_depth, 100 * p->max_apex_depth);
        reason(v, EN_CLIP_R_LV_DEEP, detail);
    }
    /* A two-chamber clip has an LV that passes every test above: only the
     * missing right ventricle tells it apart, unless the DICOM says A4C. */
    if (!named_a4c && !(ev->rv_closed >= p->min_rv_closed)) {
        snprintf(detail, sizeof detail, "a closed cavity beside the LV on %.0f %% of the rays, "
                 "at least %.0f %% expected", 100 * (isfinite(ev->rv_closed) ? ev->rv_closed : 0),
                 100 * p->min_rv_closed);
        reason(v, EN_CLIP_R_NO_RV, detail);
    }
    if (nbeats < p->min_beats) {
        snprintf(detail, sizeof detail, "%d, at least %d needed", nbeats, p->min_beats);
        reason(v, EN_CLIP_R_NO_BEAT, detail);
    }
    if (qflags & p->excluding_flags & ~(uint64_t)EN_QF_NO_BEAT) {
        char names[160];
        en_analysis_flags_format((unsigned)(qflags & p->excluding_flags & ~(uint64_t)EN_QF_NO_BEAT),
                                 names, sizeof names);
        reason(v, EN_CLIP_R_QUALITY, names);
    }
    if (!has_key)
        reason(v, EN_CLIP_R_NO_KEY, NULL);
    v->kind = v->reasons ? EN_CLIP_UNUSABLE : EN_CLIP_USABLE;
    if (v->kind == EN_CLIP_USABLE)
        snprintf(v->text, sizeof v->text, "usable: %s%s, one plausible LV in %.0f %% of "
                 "frames, %d beat%s", named_a4c ? "the DICOM names it apical four-chamber"
                                                : "looks apical four-chamber",
                 named_a4c ? "" : " (an LV along the beam, the RV beside it)",
                 100 * ev->one_lv_fraction, nbeats, nbeats == 1 ? "" : "s");
}

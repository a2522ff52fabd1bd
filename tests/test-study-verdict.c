/*
 * test-study-verdict.c - which clips count (en_study.h), on crafted inputs:
 * the view a DICOM names (SNOMED CT, SNOMED RT and code meanings); every
 * reason an instance is not analysed (a still, not ultrasound, Doppler,
 * M-mode and colour-flow regions, too short); the segmentation evidence of
 * drawn shapes (an apical LV with an RV beside it, without one, a round
 * short-axis LV, an LV lying across the beam, a deep one, several blobs,
 * none); the verdict from that evidence, the beats and the quality flags;
 * and the study aggregate when some clips are not usable.  The drawn clips
 * hold the features the rules look for: a dark LV in a bright wall, along
 * the beam or across it, a second closed cavity beside it or not.
 */
#include "en_study.h"

#include "en_analysis.h"
#include "tst.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define S 112

static void test_views(void)
{
    CHECK(en_view_from_code("SCT", "399214001", "Apical four chamber") == EN_VIEW_A4C);
    CHECK(en_view_from_code("SRT", "G-A19C", NULL) == EN_VIEW_A4C);
    CHECK(en_view_from_code("SRT", "G-A19B", NULL) == EN_VIEW_A2C);
    CHECK(en_view_from_code("SCT", "399139001", NULL) == EN_VIEW_PLAX);
    CHECK(en_view_from_code("SCT", "399271003", NULL) == EN_VIEW_PSAX);
    CHECK(en_view_from_code("SRT", "G-039E", NULL) == EN_VIEW_SUBCOSTAL);
    CHECK(en_view_from_code("SRT", "G-03A0", NULL) == EN_VIEW_SUPRASTERNAL);
    /* a SNOMED CT id is not read as SNOMED RT, nor the other way round */
    CHECK(en_view_from_code("SRT", "399214001", "") == EN_VIEW_OTHER);
    /* unknown codes: the meaning decides; nothing recognised is "other" */
    CHECK(en_view_from_code("99ACME", "A4", "Apical 4 Chamber") == EN_VIEW_A4C);
    CHECK(en_view_from_code("99ACME", "X", "AP4") == EN_VIEW_A4C);
    CHECK(en_view_from_code("99ACME", "X", "apical two-chamber") == EN_VIEW_A2C);
    CHECK(en_view_from_code("99ACME", "X", "Parasternal short axis, papillary") == EN_VIEW_PSAX);
    CHECK(en_view_from_code("99ACME", "X", "PLAX zoom") == EN_VIEW_OTHER);
    CHECK(en_view_from_code("99ACME", "X", "chamber four") == EN_VIEW_OTHER);
    CHECK(en_view_from_code(NULL, NULL, NULL) == EN_VIEW_UNKNOWN);
    CHECK(en_view_from_code("", "", "") == EN_VIEW_UNKNOWN);
    CHECK(en_view_parse("plax") == EN_VIEW_PLAX && en_view_parse("nonsense") == EN_VIEW_UNKNOWN);
    CHECK(strcmp(en_view_name(EN_VIEW_A4C), "a4c") == 0);
    CHECK(strcmp(en_view_text(EN_VIEW_SUBCOSTAL), "subcostal") == 0);
}

static en_clip_facts echo_facts(void)
{
    en_clip_facts f;

    memset(&f, 0, sizeof f);
    snprintf(f.sop_class, sizeof f.sop_class, "1.2.840.10008.5.1.4.1.1.3.1");
    snprintf(f.modality, sizeof f.modality, "US");
    f.frames = 120;
    f.fps = 50;
    f.nregions = 1;
    f.region[0].spatial_format = 1;
    f.region[0].data_type = 1;
    return f;
}

static void test_screen(void)
{
    en_verdict_params p;
    en_clip_facts f;
    en_clip_verdict v;

    en_verdict_params_default(&p);
    f = echo_facts();
    CHECK(en_clip_screen(&f, &p, &v) == 0 && v.kind == EN_CLIP_NOT_JUDGED);
    CHECK(strcmp(v.regions, "2d") == 0);

    f.frames = 1;
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.kind == EN_CLIP_NOT_ANALYSED);
    CHECK(v.reasons == EN_CLIP_R_SINGLE_FRAME && strcmp(v.codes, "single_frame") == 0);
    CHECK(strstr(v.text, "single frame") != NULL);

    f = echo_facts();
    snprintf(f.sop_class, sizeof f.sop_class, "1.2.840.10008.5.1.4.1.1.7");   /* SC */
    snprintf(f.modality, sizeof f.modality, "OT");
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.reasons == EN_CLIP_R_NOT_US);
    CHECKF(strstr(v.text, "modality OT") != NULL, "%s", v.text);
    /* a secondary capture that says it is ultrasound is analysed */
    snprintf(f.modality, sizeof f.modality, "US");
    CHECK(en_clip_screen(&f, &p, &v) == 0);

    f = echo_facts();
    f.nregions = 2;
    f.region[1].spatial_format = 3;    /* spectral */
    f.region[1].data_type = 3;         /* PW */
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.reasons == EN_CLIP_R_DOPPLER);
    CHECKF(strcmp(v.regions, "2d,spectral") == 0, "%s", v.regions);
    f.region[1].spatial_format = 2;    /* M-mode */
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.reasons == EN_CLIP_R_MMODE);
    f.region[1].spatial_format = 1;
    f.region[1].data_type = 2;         /* colour flow */
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.reasons == EN_CLIP_R_COLOUR_FLOW);
    CHECKF(strcmp(v.regions, "2d,colour_flow") == 0, "%s", v.regions);
    f.region[1].spatial_format = 4;    /* an ECG waveform beside the image: fine */
    f.region[1].data_type = 0x0A;
    CHECK(en_clip_screen(&f, &p, &v) == 0);

    f = echo_facts();
    f.frames = 19;                     /* 0.38 s at 50 fps */
    CHECK(en_clip_screen(&f, &p, &v) == 1 && v.reasons == EN_CLIP_R_TOO_SHORT);
    CHECKF(strstr(v.text, "0.38 s") != NULL, "%s", v.text);
    f.frames = 20;
    CHECK(en_clip_screen(&f, &p, &v) == 0);

    /* every reason at once, each once */
    f.frames = 1;
    snprintf(f.modality, sizeof f.modality, "CT");
    snprintf(f.sop_class, sizeof f.sop_class, "1.2.840.10008.5.1.4.1.1.2");
    f.region[0].spatial_format = 3;
    CHECK(en_clip_screen(&f, &p, &v) == 1);
    CHECK(v.reasons == (EN_CLIP_R_NOT_US | EN_CLIP_R_SINGLE_FRAME | EN_CLIP_R_DOPPLER));
    CHECKF(strcmp(v.codes, "not_ultrasound,single_frame,doppler") == 0, "%s", v.codes);

    /* a reason found later (no fan in the pixels) joins the others */
    f = echo_facts();
    CHECK(en_clip_screen(&f, &p, &v) == 0);
    en_clip_not_analysed(&v, EN_CLIP_R_NO_SECTOR, "no fan found: blank image");
    CHECK(v.kind == EN_CLIP_NOT_ANALYSED && v.reasons == EN_CLIP_R_NO_SECTOR);
    CHECKF(strstr(v.text, "(no fan found: blank image)") != NULL, "%s", v.text);
    CHECK(strcmp(v.regions, "2d") == 0);
}

/* ---- drawn clips ------------------------------------------------------------- */

static uint8_t frames[40][S * S], masks[40][S * S];
static const en_view_geometry geom = {61.0, 7.0, 107.0, NULL};

/* An ellipse (centre cx, cy; semi-axes a along angle deg from vertical,
 * b across) set to value v in img. */
static void ellipse(uint8_t *img, double cx, double cy, double a, double b, double deg, uint8_t v)
{
    double t = deg * M_PI / 180, ux = sin(t), uy = cos(t);

    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double dx = x - cx, dy = y - cy, u = dx * ux + dy * uy, w = -dx * uy + dy * ux;
            if ((u / a) * (u / a) + (w / b) * (w / b) <= 1)
                img[y * S + x] = v;
        }
}

typedef struct shape {
    double cx, cy, a, b, deg;   /* the LV */
    int rv;                     /* draw a cavity beside it: 1 on the left, -1 right */
    int blobs;                  /* extra mask blobs */
    int empty;                  /* no mask at all */
} shape;

/* n frames of a beating LV of that shape: fan-shaped grey tissue (the
 * sector), dark LV cavity (the mask), a bright wall, optionally a dark RV
 * beside it. */
static void draw(const shape *sh, int n)
{
    for (int f = 0; f < n; f++) {
        double k = 1 - 0.15 * (0.5 + 0.5 * cos(2 * M_PI * f / 20));   /* beats */
        uint8_t *img = frames[f], *m = masks[f];
        memset(img, 0, S * S);
        memset(m, 0, S * S);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double dx = x - geom.apex_x, dy = y - geom.apex_y;
                if (dy > 0 && hypot(dx, dy) < geom.radius && fabs(atan2(dx, dy)) < 0.75)
                    img[y * S + x] = (uint8_t)(70 + (x * 7 + y * 13) % 20);
            }
        ellipse(img, sh->cx, sh->cy, sh->a * k + 6, sh->b * k + 6, sh->deg, 170);   /* wall */
        if (sh->rv) {
            double t = sh->deg * M_PI / 180;
            double off = sh->rv * (sh->b * k + 6 + 3 + 7);
            ellipse(img, sh->cx - off * cos(t), sh->cy + off * sin(t), sh->a * 0.8, 7, sh->deg, 170);
            ellipse(img, sh->cx - off * cos(t), sh->cy + off * sin(t), sh->a * 0.75, 5.5, sh->deg, 12);
        }
        ellipse(img, sh->cx, sh->cy, sh->a * k, sh->b * k, sh->deg, 10);               /* blood */
        if (!sh->empty)
            ellipse(m, sh->cx, sh->cy, sh->a * k, sh->b * k, sh->deg, 1);
        for (int i = 0; i < sh->blobs; i++)
            ellipse(m, 20 + 20 * i, 95, 5, 5, 0, 1);
    }
}

static en_clip_evidence measure(const shape *sh)
{
    en_verdict_params p;
    en_clip_evidence ev;
    en_err e;

    en_verdict_params_default(&p);
    draw(sh, 40);
    CHECKF(en_clip_evidence_compute(&frames[0][0], &masks[0][0], 40, S, &geom, &p, &ev, &e) ==
           EN_OK, "%s", e.msg);
    return ev;
}

static en_clip_verdict judge(const en_clip_evidence *ev, en_view view, int nbeats, unsigned qf,
                             int has_key)
{
    en_verdict_params p;
    en_clip_facts f = echo_facts();
    en_clip_verdict v;

    en_verdict_params_default(&p);
    f.view = view;
    memset(&v, 0, sizeof v);
    snprintf(v.regions, sizeof v.regions, "2d");
    en_clip_judge(&f, ev, nbeats, qf, has_key, &p, &v);
    CHECK(strcmp(v.regions, "2d") == 0);
    return v;
}

static void test_evidence_and_verdict(void)
{
    /* An apical four-chamber LV: long, along the beam, starting near the
     * probe, with a right ventricle beside it. */
    shape a4c = {68, 52, 31, 15, 8, 1, 0, 0};
    en_clip_evidence ev = measure(&a4c);
    en_clip_verdict v;
    char json[EN_STORE_META_MAX];

    CHECKF(ev.one_lv_fraction == 1.0, "%f", ev.one_lv_fraction);
    CHECKF(ev.lv_area_median > 1100 && ev.lv_area_median < 1500, "area %f", ev.lv_area_median);
    CHECKF(ev.cavity_angle < 12, "axis %f", ev.cavity_angle);
    CHECKF(ev.apex_depth > 0.1 && ev.apex_depth < 0.25, "apex %f", ev.apex_depth);
    CHECKF(ev.rv_closed >= 0.75, "rv %f", ev.rv_closed);
    v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
    CHECKF(v.kind == EN_CLIP_USABLE && v.reasons == 0, "%s", v.text);
    CHECK(strncmp(v.text, "usable: looks apical four-chamber", 33) == 0);
    en_clip_evidence_json(&ev, json, sizeof json);
    CHECKF(strncmp(json, "{\"frames\":40,\"one_lv_fraction\":1,", 33) == 0, "%s", json);
    /* The image flipped left-right (the RV on the other side): the same. */
    {
        shape flipped = a4c;
        flipped.cx = 54;
        flipped.deg = -8;
        flipped.rv = -1;
        ev = measure(&flipped);
        CHECKF(ev.rv_closed >= 0.75 && ev.cavity_angle < 12, "rv %f axis %f", ev.rv_closed,
               ev.cavity_angle);
        ev = measure(&a4c);
    }

    /* The DICOM calls it something else: left out whatever it looks like. */
    v = judge(&ev, EN_VIEW_A2C, 3, 0, 1);
    CHECK(v.kind == EN_CLIP_UNUSABLE && v.reasons == EN_CLIP_R_VIEW_DICOM);
    CHECKF(strstr(v.text, "apical two-chamber") != NULL, "%s", v.text);
    /* Too few beats, an excluding flag, no key: each a reason. */
    v = judge(&ev, EN_VIEW_UNKNOWN, 0, EN_QF_NO_BEAT | EN_QF_NOT_PERIODIC, 0);
    CHECK(v.reasons == (EN_CLIP_R_NO_BEAT | EN_CLIP_R_QUALITY | EN_CLIP_R_NO_KEY));
    CHECKF(strcmp(v.codes, "no_beat,quality,no_instance_uid") == 0, "%s", v.codes);
    CHECKF(strstr(v.text, "(not_periodic)") != NULL, "%s", v.text);
    /* A flag that does not exclude (a guessed frame rate) does not. */
    v = judge(&ev, EN_VIEW_UNKNOWN, 2, EN_QF_FPS_GUESSED | EN_QF_BEAT_SPREAD, 1);
    CHECK(v.kind == EN_CLIP_USABLE);

    /* Two chambers: the same LV, nothing beside it. */
    {
        shape a2c = a4c;
        a2c.rv = 0;
        ev = measure(&a2c);
        CHECKF(ev.rv_closed < 0.1, "rv %f", ev.rv_closed);
        v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
        CHECK(v.kind == EN_CLIP_UNUSABLE && v.reasons == EN_CLIP_R_NO_RV);
        /* ... unless the DICOM itself says four chambers */
        v = judge(&ev, EN_VIEW_A4C, 3, 0, 1);
        CHECK(v.kind == EN_CLIP_USABLE);
        CHECKF(strstr(v.text, "the DICOM names it apical four-chamber") != NULL, "%s", v.text);
    }
    /* A short-axis ring: round. */
    {
        shape psax = {61, 60, 17, 16, 0, 1, 0, 0};
        ev = measure(&psax);
        CHECKF(ev.lv_area_median < 900, "area %f", ev.lv_area_median);
        v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
        CHECK(v.reasons & EN_CLIP_R_LV_SMALL);
        CHECKF(strstr(v.text, "smaller than in an apical view") != NULL, "%s", v.text);
    }
    /* A parasternal long axis: long, across the beam. */
    {
        shape plax = {61, 55, 30, 12, 80, 0, 0, 0};
        ev = measure(&plax);
        CHECKF(ev.cavity_angle > 60, "axis %f", ev.cavity_angle);
        v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
        CHECK(v.reasons & EN_CLIP_R_LV_AXIS);
    }
    /* Deep in the fan, as from below the ribs. */
    {
        shape deep = {61, 80, 20, 10, 0, 1, 0, 0};
        ev = measure(&deep);
        CHECKF(ev.apex_depth > 0.5, "apex %f", ev.apex_depth);
        v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
        CHECK(v.reasons & EN_CLIP_R_LV_DEEP);
    }
    /* Several blobs in every frame, and no mask at all. */
    {
        shape split = a4c, none = a4c;
        split.blobs = 2;
        ev = measure(&split);
        CHECK(ev.one_lv_fraction == 0);
        v = judge(&ev, EN_VIEW_UNKNOWN, 3, 0, 1);
        CHECK(v.reasons & EN_CLIP_R_NO_LV);
        none.empty = 1;
        ev = measure(&none);
        CHECK(ev.one_lv_fraction == 0 && isnan(ev.lv_area_median) && isnan(ev.rv_closed));
        v = judge(&ev, EN_VIEW_UNKNOWN, 0, EN_QF_NO_BEAT | EN_QF_LV_SMALL, 1);
        CHECK(v.kind == EN_CLIP_UNUSABLE);
        CHECK((v.reasons & (EN_CLIP_R_NO_LV | EN_CLIP_R_NO_RV | EN_CLIP_R_NO_BEAT)) ==
              (EN_CLIP_R_NO_LV | EN_CLIP_R_NO_RV | EN_CLIP_R_NO_BEAT));
        CHECK(!(v.reasons & (EN_CLIP_R_LV_SMALL | EN_CLIP_R_LV_AXIS)));
        en_clip_evidence_json(&ev, json, sizeof json);
        CHECKF(strstr(json, "\"rv_closed\":null") != NULL, "%s", json);
    }
}

/* ---- the aggregate, on studies built in memory --------------------------------- */

static void test_aggregate(void)
{
    en_store_beat b1[2] = {{40, 8, 0, 60, 20, 900, 600}, {60, 28, 0, 62, 45, 910, 610}};
    en_store_beat b2[1] = {{40, 8, 0, 30, 20, 900, 600}};
    en_store_clip c[3];
    en_store_study s;
    en_store_study_result r;
    en_study_params p;

    en_study_params_default(&p);
    memset(&s, 0, sizeof s);
    memset(c, 0, sizeof c);
    for (int i = 0; i < 3; i++) {
        en_store_result_init(&c[i].r);
        c[i].status = EN_STORE_DONE;
        snprintf(c[i].r.verdict, sizeof c[i].r.verdict, "usable");
    }
    c[0].r.beats = b1;
    c[0].r.nbeats = 2;
    c[1].r.beats = b2;
    c[1].r.nbeats = 1;
    snprintf(c[2].r.verdict, sizeof c[2].r.verdict, "%s", "");   /* schema 1 */
    c[2].r.beats = b2;
    c[2].r.nbeats = 1;
    s.clip = c;
    s.nclips = 3;
    en_study_aggregate(&s, &p, &r);
    CHECK(r.clips_total == 3 && r.clips_usable == 2 && r.beats == 3);
    CHECK(fabs(r.ef_mean - (60 + 62 + 30) / 3.0) < 1e-9);
    CHECK(r.clip_ef_min == 30 && r.clip_ef_max == 61);
    CHECK(r.flags == (EN_STUDY_F_DISAGREE | EN_STUDY_F_UNJUDGED | EN_STUDY_F_BEAT_SPREAD));
    CHECKF(strcmp(r.ef_class, "not_reduced") == 0, "%s (EF %.2f)", r.ef_class, r.ef_mean);
    /* the limit is a parameter */
    p.disagreement_points = 40;
    en_study_aggregate(&s, &p, &r);
    CHECK(!(r.flags & EN_STUDY_F_DISAGREE) && r.disagreement_points == 40);
    /* one usable clip: the EF rests on it */
    s.nclips = 1;
    en_study_aggregate(&s, &p, &r);
    CHECK(r.flags == EN_STUDY_F_ONE_CLIP && isfinite(r.ef_sd));
    CHECK(strcmp(r.flags_text, "single_clip") == 0);
    /* none at all */
    s.nclips = 0;
    en_study_aggregate(&s, &p, &r);
    CHECK(isnan(r.ef_mean) && r.flags == EN_STUDY_F_NO_USABLE && r.no_ef_reason[0]);
    CHECK(strcmp(en_study_flag_name(EN_STUDY_F_UNJUDGED), "unjudged_clips") == 0);
    CHECK(en_study_flag_text(EN_STUDY_F_DISAGREE) != NULL && en_study_flag_name(1u << 30) == NULL);
}

int main(void)
{
    test_views();
    test_screen();
    test_evidence_and_verdict();
    test_aggregate();
    TST_DONE();
}

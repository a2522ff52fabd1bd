/*
 * study_report.c - a stored study turned into its one-page report (see
 * en_study_report in en_pipeline.h).
 *
 * Working from the database (en_store_study), not from a live analysis,
 * means the page drawn when a study's result is computed and the page
 * `echonetctl report` draws later are the same page.  The only thing not
 * stored is the key frames' outlines: they are segmented again from each
 * used clip's AVI with the same weights.
 */
#include "en_pipeline.h"

#include "en_report.h"
#include "en_video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FLAGS 32
#define SIDE 112

void en_study_path(const en_config *cfg, const char *pseudonym, const char *ext,
                   char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s%s", cfg->output_dir, pseudonym, ext);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
}

static int used(const en_store_clip *c)
{
    return c->status == EN_STORE_DONE && !strcmp(c->r.verdict, "usable") && c->r.nbeats > 0;
}

/* ---- key frames --------------------------------------------------------------- */

/* ED and ES of the clip's first beat: images into px[0], px[2], masks into
 * px[1], px[3] (each SIDE x SIDE). */
static int clip_keyframes(const en_config *cfg, en_nn_model *seg, const en_store_clip *c,
                          uint8_t *px, en_study_keyframes *k, en_err *err)
{
    char path[EN_PATH_MAX + 64];
    en_frames video = {0}, two = {0};
    float *logits = NULL;
    size_t n = (size_t)SIDE * SIDE;
    int ed = c->r.beats[0].ed_frame, es = c->r.beats[0].systole_frame, rc;

    if (ed == EN_STORE_NONE || !c->r.video_file[0])
        return EN_ENOTFOUND;
    en_study_path(cfg, c->r.video_file, "", path, sizeof path);
    if ((rc = en_video_read(path, 1, &video, NULL, err)) != EN_OK)
        return rc;
    if (video.rows != SIDE || video.cols != SIDE || ed >= video.nframes || es >= video.nframes) {
        en_frames_free(&video);
        return en_err_set(err, EN_EFORMAT, "%s does not match the stored result (%d frames of "
                          "%dx%d)", path, video.nframes, video.cols, video.rows);
    }
    rc = en_frames_alloc(&two, 2, SIDE, SIDE, 1);
    logits = malloc(2 * n * sizeof *logits);
    if (rc != EN_OK || !logits) {
        rc = en_err_set(err, EN_ENOMEM, "out of memory for key frames");
    } else {
        memcpy(two.data, en_frames_frame(&video, ed), n);
        memcpy(two.data + n, en_frames_frame(&video, es), n);
        memcpy(px, two.data, n);
        memcpy(px + 2 * n, two.data + n, n);
        rc = en_nn_segment_frames(seg, &two, logits, NULL, err);
    }
    for (size_t i = 0; rc == EN_OK && i < n; i++) {
        px[n + i] = logits[i] > 0.0f;
        px[3 * n + i] = logits[n + i] > 0.0f;
    }
    if (rc == EN_OK)
        *k = (en_study_keyframes){ c->id, ed, px, px + n, es, px + 2 * n, px + 3 * n };
    free(logits);
    en_frames_free(&two);
    en_frames_free(&video);
    return rc;
}

int en_study_keyframes_load(const en_config *cfg, en_nn_model *seg, const en_store_study *s,
                            en_study_keyframes *k, int *n, uint8_t **buf, en_err *err)
{
    en_nn_model *own = NULL;
    size_t per = 4 * (size_t)SIDE * SIDE;
    int rc = EN_OK;

    *n = 0;
    *buf = NULL;
    if (!seg) {
        if (!cfg->seg_weights[0])
            return EN_OK;
        if ((rc = en_nn_model_load(cfg->seg_weights, &own, err)) != EN_OK)
            return en_err_prefix(err, "[models] segmentation");
        seg = own;
    }
    if (!(*buf = malloc(EN_STUDY_REPORT_KEYCLIPS * per))) {
        en_nn_model_free(own);
        return en_err_set(err, EN_ENOMEM, "study %s: out of memory for key frames", s->pseudonym);
    }
    for (int i = 0; rc == EN_OK && i < s->nclips && *n < EN_STUDY_REPORT_KEYCLIPS; i++) {
        en_err lost;
        if (!used(&s->clip[i]))
            continue;
        /* A clip whose video was removed is drawn without key frames. */
        rc = clip_keyframes(cfg, seg, &s->clip[i], *buf + (size_t)*n * per, &k[*n], &lost);
        if (rc == EN_OK)
            (*n)++;
        else if (rc == EN_ENOTFOUND || rc == EN_EIO || rc == EN_EFORMAT)
            rc = EN_OK;
        else
            *err = lost;
    }
    en_nn_model_free(own);
    if (rc != EN_OK) {
        free(*buf);
        *buf = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- the page ------------------------------------------------------------------ */

static int phantom(const en_store_model *m)
{
    return strstr(m->origin, "phantom") != NULL;
}

static int flags_of(uint64_t f, en_report_flag *out)
{
    int n = 0;
    for (unsigned bit = 0; bit < 32 && n < MAX_FLAGS; bit++) {
        uint64_t b = (uint64_t)1 << bit;
        if ((f & b) && en_study_flag_name(b)) {
            out[n].name = en_study_flag_name(b);
            out[n].explanation = en_study_flag_text(b);
            n++;
        }
    }
    return n;
}

/* Everything the page points into, freed in one place. */
typedef struct page {
    en_report_clip *clips;
    char (*labels)[32];
    char (*views)[96];
    en_report_keyclip keyclips[EN_STUDY_REPORT_KEYCLIPS];
    en_report_beat *beats;
    double *sizes;
    int *systoles;
} page;

static void page_free(page *pg)
{
    free(pg->clips);
    free(pg->labels);
    free(pg->views);
    free(pg->beats);
    free(pg->sizes);
    free(pg->systoles);
}

static const char *verdict_word(const en_store_clip *c)
{
    if (c->status == EN_STORE_FAILED)
        return "failed";
    if (c->status != EN_STORE_DONE)
        return "unfinished";
    if (used(c))
        return "used";
    if (!strcmp(c->r.verdict, "not_analysed"))
        return "not analysed";
    if (!c->r.verdict[0])
        return "never judged";
    return "left out";
}

/* Table order: used clips first, then the ones left out after analysis,
 * never judged, not analysed, failed, unfinished; by arrival within each. */
static int rank(const en_store_clip *c)
{
    if (c->status == EN_STORE_FAILED)
        return 4;
    if (c->status != EN_STORE_DONE)
        return 5;
    if (used(c))
        return 0;
    if (!strcmp(c->r.verdict, "not_analysed"))
        return 3;
    return c->r.verdict[0] ? 1 : 2;
}

static void clip_row(const en_store_clip *c, int i, char *label, char *view, en_report_clip *row)
{
    const char *reasons = c->r.verdict_text;

    if (c->r.dedup_key[0])
        snprintf(label, 32, "%d (%.6s)", i + 1, c->r.dedup_key);
    else
        snprintf(label, 32, "%d (c%lld)", i + 1, (long long)c->id);
    if (c->r.view_dicom[0])
        snprintf(view, 96, "DICOM: %s", c->r.view_dicom);
    else if (!strcmp(c->r.verdict, "usable"))
        snprintf(view, 96, "images: a4c");
    else if (!strcmp(c->r.verdict, "unusable"))
        snprintf(view, 96, "images: not a4c");
    else
        snprintf(view, 96, "%s", "\xe2\x80\x94");
    if (!strncmp(reasons, "usable: ", 8))
        reasons += 8;
    *row = (en_report_clip){ label, view, c->r.src_frames, c->r.nbeats, c->r.ef_mean,
                             verdict_word(c), c->status == EN_STORE_FAILED ? c->last_error
                                                                            : reasons,
                             used(c) };
}

/* The first used clip's curve and beats (the page's plot). */
static int curve(const en_store_clip *c, page *pg, en_report_input *in)
{
    int n = c->r.nframes, nsys = 0;

    pg->sizes = malloc((size_t)(n > 0 ? n : 1) * sizeof *pg->sizes);
    pg->systoles = malloc((size_t)(n > 0 ? n : 1) * sizeof *pg->systoles);
    pg->beats = calloc((size_t)(c->r.nbeats > 0 ? c->r.nbeats : 1), sizeof *pg->beats);
    if (!pg->sizes || !pg->systoles || !pg->beats)
        return EN_ENOMEM;
    for (int i = 0; i < n; i++) {
        pg->sizes[i] = c->r.frames[i].lv_size < 0 ? NAN : c->r.frames[i].lv_size;
        if (c->r.frames[i].systole)
            pg->systoles[nsys++] = i;
    }
    for (int i = 0; i < c->r.nbeats; i++) {
        const en_store_beat *b = &c->r.beats[i];
        pg->beats[i] = (en_report_beat){ b->systole_frame, b->clip_start,
                                         b->ed_frame == EN_STORE_NONE ? -1 : b->ed_frame,
                                         b->systole_frame, b->ef, b->shift != 0 };
    }
    in->lv_size = pg->sizes;
    in->n_frames = n;
    in->systoles = pg->systoles;
    in->n_systoles = nsys;
    in->beats = pg->beats;
    in->n_beats = c->r.nbeats;
    in->fps = c->r.fps;
    in->fps_source = c->r.fps_source;
    in->src_frames = c->r.src_frames;
    in->src_rows = c->r.src_rows > 0 ? c->r.src_rows : 0;
    in->src_cols = c->r.src_cols > 0 ? c->r.src_cols : 0;
    in->sector_method = c->r.sector_method;
    return EN_OK;
}

int en_study_report(const en_config *cfg, const en_store_study *s,
                    const en_study_keyframes *k, int nk, char *pdf, char *png, size_t len,
                    en_err *err)
{
    const en_store_study_result *r = &s->res;
    const en_store_clip *first = NULL, *models_of = NULL;
    en_report_input in;
    en_report_flag flags[MAX_FLAGS];
    en_report_model models[2];
    char note[400], spread[64] = "", range[96] = "";
    page pg;
    int rc = EN_OK;

    pdf[0] = png[0] = '\0';
    if (!cfg->report_pdf && !cfg->report_png)
        return EN_OK;
    memset(&pg, 0, sizeof pg);
    en_report_input_init(&in);
    pg.clips = calloc((size_t)(s->nclips > 0 ? s->nclips : 1), sizeof *pg.clips);
    pg.labels = calloc((size_t)(s->nclips > 0 ? s->nclips : 1), sizeof *pg.labels);
    pg.views = calloc((size_t)(s->nclips > 0 ? s->nclips : 1), sizeof *pg.views);
    if (!pg.clips || !pg.labels || !pg.views)
        rc = EN_ENOMEM;
    for (int i = 0; rc == EN_OK && i < s->nclips; i++) {
        const en_store_clip *c = &s->clip[i];
        int row = 0;
        for (int j = 0; j < s->nclips; j++)   /* this clip's place in table order */
            row += rank(&s->clip[j]) < rank(c) || (j < i && rank(&s->clip[j]) == rank(c));
        clip_row(c, i, pg.labels[i], pg.views[i], &pg.clips[row]);
        if (!first && used(c))
            first = c;
        if (!models_of && c->r.seg_model.sha256[0])
            models_of = c;
        for (int j = 0; j < nk && in.n_keyclips < EN_STUDY_REPORT_KEYCLIPS; j++)
            if (k[j].clip_id == c->id)
                pg.keyclips[in.n_keyclips++] = (en_report_keyclip){
                    pg.labels[i], { k[j].ed, k[j].ed_image, k[j].ed_mask },
                    { k[j].es, k[j].es_image, k[j].es_mask } };
    }
    if (rc == EN_OK && first) {
        rc = curve(first, &pg, &in);
        for (int i = 0; i < s->nclips; i++)
            if (&s->clip[i] == first)
                in.curve_label = pg.labels[i];
    }
    if (rc != EN_OK) {
        page_free(&pg);
        return en_err_set(err, EN_ENOMEM, "study %s: out of memory for the report", s->pseudonym);
    }
    in.pseudonym = s->pseudonym;
    in.processed = r->computed_ms > 0 ? (time_t)(r->computed_ms / 1000) : time(NULL);
    in.clips = pg.clips;
    in.n_clips = s->nclips;
    in.keyclips = pg.keyclips;
    in.ef_mean = r->ef_mean;
    in.ef_sd = r->ef_sd;
    in.ef_class = r->ef_class[0] ? r->ef_class : NULL;
    in.thresholds[0] = r->threshold_reduced;
    in.thresholds[1] = r->threshold_low;
    in.thresholds[2] = r->threshold_very_low;
    in.no_ef_reason = r->no_ef_reason[0] ? r->no_ef_reason : NULL;
    if (isfinite(r->ef_sd))
        snprintf(spread, sizeof spread, "; beat SD %.1f %%", r->ef_sd);
    if (r->clips_usable > 1)
        snprintf(range, sizeof range, "; the used clips' means range %.1f" "\xe2\x80\x93" "%.1f %%",
                 r->clip_ef_min, r->clip_ef_max);
    snprintf(note, sizeof note, "Result version %d: mean of %d beat%s from %d used clip%s of %d "
             "instance%s%s%s.", r->version, r->beats, r->beats == 1 ? "" : "s", r->clips_usable,
             r->clips_usable == 1 ? "" : "s", r->clips_total, r->clips_total == 1 ? "" : "s",
             spread, range);
    in.summary_note = note;
    in.flags = flags;
    in.n_flags = flags_of(r->flags, flags);
    if (models_of) {
        const en_store_result *m = &models_of->r;
        models[0] = (en_report_model){ "segmentation", m->seg_model.architecture,
                                       m->seg_model.sha256, m->seg_model.origin,
                                       phantom(&m->seg_model) };
        models[1] = (en_report_model){ "ejection fraction", m->ef_model.architecture,
                                       m->ef_model.sha256, m->ef_model.origin,
                                       phantom(&m->ef_model) };
        in.models = models;
        in.n_models = 2;
    }
    if (cfg->report_pdf)
        en_study_path(cfg, s->pseudonym, ".pdf", pdf, len);
    if (cfg->report_png)
        en_study_path(cfg, s->pseudonym, ".png", png, len);
    rc = en_report_render(&in, pdf[0] ? pdf : NULL, png[0] ? png : NULL, err);
    if (rc != EN_OK)
        pdf[0] = png[0] = '\0';
    page_free(&pg);
    return rc;
}

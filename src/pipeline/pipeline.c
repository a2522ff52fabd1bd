/*
 * pipeline.c - one study from DICOM to stored result and report (see
 * en_pipeline.h).
 *
 * Memory stays bounded whatever the video length: frames go through the
 * segmentation network in chunks and only the 1-byte masks are kept, not the
 * float logits.  The study is queued in the database as soon as it has a
 * pseudonym, every stage is logged before it runs, and the result is written
 * in one transaction at the end, so a crash leaves a visible "processing"
 * study and never half a result.
 */
#include "en_util.h"
#include "en_pipeline.h"

#include "en_report.h"
#include "en_video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEG_CHUNK 32

static int load_model(const char *path, const char *key, const en_config *cfg,
                      en_nn_arch want, en_nn_model **out, en_err *err)
{
    en_nn_opts o = { cfg->nn_threads, cfg->nn_batch, 0 };
    int rc;

    if (!path[0])
        return en_err_set(err, EN_EINVAL, "no %s weights configured: set [models] %s in "
                          "echonetd.conf (see README: converting weights)", key, key);
    rc = en_nn_model_load_opts(path, &o, out, err);
    if (rc != EN_OK)
        return en_err_prefix(err, "[models] %s", key);
    if (en_nn_model_info(*out)->arch != want) {
        rc = en_err_set(err, EN_EINVAL, "[models] %s = %s holds a %s network, not a %s one",
                        key, path, en_nn_model_info(*out)->arch_name,
                        want == EN_NN_ARCH_DEEPLABV3_RESNET50 ? "deeplabv3_resnet50" : "r2plus1d_18");
        en_nn_model_free(*out);
        *out = NULL;
    }
    return rc;
}

int en_pipeline_open(en_pipeline *p, const en_config *cfg, en_err *err)
{
    int rc;

    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    en_analysis_params_default(&p->params);
    if ((rc = en_deid_open(&p->deid, cfg->secret_file, err)) != EN_OK)
        return rc;
    if ((rc = load_model(cfg->seg_weights, "segmentation", cfg, EN_NN_ARCH_DEEPLABV3_RESNET50,
                         &p->seg, err)) != EN_OK ||
        (rc = load_model(cfg->ef_weights, "ef", cfg, EN_NN_ARCH_R2PLUS1D_18, &p->ef, err)) != EN_OK ||
        (rc = en_store_open(cfg->database, 0, &p->db, err)) != EN_OK) {
        en_pipeline_close(p);
        return rc;
    }
    return EN_OK;
}

int en_pipeline_phantom(const en_pipeline *p)
{
    const en_nn_model *m[2] = { p->seg, p->ef };
    for (int i = 0; i < 2; i++)
        if (m[i] && strstr(en_nn_model_info(m[i])->origin, "phantom"))
            return 1;
    return 0;
}

void en_pipeline_close(en_pipeline *p)
{
    en_nn_model_free(p->seg);
    en_nn_model_free(p->ef);
    en_store_close(p->db);
    en_deid_close(&p->deid);
    p->seg = p->ef = NULL;
    p->db = NULL;
}

/* Everything one study's processing allocates, freed in one place. */
typedef struct work {
    en_frames net;
    uint8_t *masks;         /* nframes x 112 x 112, 0/1 */
    int *sizes;
    double *dsizes;
    float *logits;          /* one chunk */
    en_analysis *a;
    double *efs;
    en_store_beat *beats;
    en_store_frame *frames;
} work;

static void work_free(work *w)
{
    en_frames_free(&w->net);
    free(w->masks);
    free(w->sizes);
    free(w->dsizes);
    free(w->logits);
    free(w->a);
    free(w->efs);
    free(w->beats);
    free(w->frames);
}

static void say(en_pipeline_progress cb, void *ud, const char *stage, const char *detail)
{
    if (cb)
        cb(stage, detail, ud);
}

static int segment(en_pipeline *p, work *w, en_err *err)
{
    const en_frames *v = &w->net;
    size_t px = (size_t)v->rows * v->cols;
    int n = v->nframes;

    w->masks = malloc((size_t)n * px);
    w->sizes = malloc((size_t)n * sizeof *w->sizes);
    w->dsizes = malloc((size_t)n * sizeof *w->dsizes);
    w->logits = malloc((size_t)SEG_CHUNK * px * sizeof *w->logits);
    if (!w->masks || !w->sizes || !w->dsizes || !w->logits)
        return en_err_set(err, EN_ENOMEM, "out of memory for %d frames of segmentation", n);
    for (int f0 = 0; f0 < n; f0 += SEG_CHUNK) {
        en_frames chunk = *v;
        int rc;

        chunk.nframes = n - f0 < SEG_CHUNK ? n - f0 : SEG_CHUNK;
        chunk.data = en_frames_frame(v, f0);
        rc = en_nn_segment_frames(p->seg, &chunk, w->logits, w->sizes + f0, err);
        if (rc != EN_OK)
            return rc;
        for (size_t i = 0; i < (size_t)chunk.nframes * px; i++)
            w->masks[(size_t)f0 * px + i] = w->logits[i] > 0.0f;
    }
    for (int i = 0; i < n; i++)
        w->dsizes[i] = w->sizes[i];
    return EN_OK;
}

static int predict_ef(en_pipeline *p, work *w, en_err *err)
{
    en_analysis *a = w->a;
    int rc;

    w->efs = calloc((size_t)(a->n_beats > 0 ? a->n_beats : 1), sizeof *w->efs);
    if (!w->efs)
        return en_err_set(err, EN_ENOMEM, "out of memory for %d beats", a->n_beats);
    for (int b = 0; b < a->n_beats; b++) {
        float ef;
        rc = en_nn_ef_frames(p->ef, &w->net, a->beat[b].clip_start, &ef, err);
        if (rc != EN_OK)
            return en_err_prefix(err, "beat %d (clip at frame %d)", b + 1, a->beat[b].clip_start);
        w->efs[b] = ef;
    }
    return en_analysis_finish(a, w->efs, a->n_beats, &p->params, err);
}

static void fill_model(en_store_model *m, const en_nn_model *nn, const char *path)
{
    const en_nn_info *i = en_nn_model_info(nn);
    const char *base = strrchr(path, '/');

    snprintf(m->sha256, sizeof m->sha256, "%s", i->sha256 ? i->sha256 : "");
    snprintf(m->architecture, sizeof m->architecture, "%s", i->arch_name);
    snprintf(m->origin, sizeof m->origin, "%s", i->origin ? i->origin : "");
    snprintf(m->file_name, sizeof m->file_name, "%s", base ? base + 1 : path);
}

static int fill_result(en_pipeline *p, work *w, const en_pipeline_result *res,
                       en_store_result *r, en_err *err)
{
    const en_convert_result *c = &res->conv;
    const en_analysis *a = w->a;
    int n = w->net.nframes;

    en_store_result_init(r);
    snprintf(r->pseudonym, sizeof r->pseudonym, "%s", c->pseudonym);
    snprintf(r->dedup_key, sizeof r->dedup_key, "%s", c->dedup_key);
    r->src_rows = c->info.rows;
    r->src_cols = c->info.cols;
    r->src_frames = c->info.frames;
    r->fps = c->info.fps;
    snprintf(r->fps_source, sizeof r->fps_source, "%s", en_fps_source_name(c->info.fps_source));
    snprintf(r->transfer_syntax, sizeof r->transfer_syntax, "%s", c->info.transfer_syntax_uid);
    snprintf(r->sector_method, sizeof r->sector_method, "%s", en_sector_method_name(c->sector.method));
    r->sector_confidence = c->sector.confidence;
    r->video_frames = n;
    fill_model(&r->seg_model, p->seg, p->cfg->seg_weights);
    fill_model(&r->ef_model, p->ef, p->cfg->ef_weights);
    r->ef_mean = a->ef.mean;
    r->ef_sd = a->ef.sd;
    if (a->ef.n > 0)
        snprintf(r->ef_class, sizeof r->ef_class, "%s", en_ef_class_name(a->ef.cls));
    r->threshold_reduced = p->params.ef_reduced;
    r->threshold_low = p->params.ef_low;
    r->threshold_very_low = p->params.ef_very_low;
    r->flags = a->flags;
    en_analysis_flags_format(a->flags, r->flags_text, sizeof r->flags_text);

    w->beats = calloc((size_t)(a->n_beats > 0 ? a->n_beats : 1), sizeof *w->beats);
    w->frames = calloc((size_t)n, sizeof *w->frames);
    if (!w->beats || !w->frames)
        return en_err_set(err, EN_ENOMEM, "out of memory for the result of %d frames", n);
    for (int b = 0; b < a->n_beats; b++) {
        const en_beat *bt = &a->beat[b];
        en_store_beat *sb = &w->beats[b];
        sb->systole_frame = bt->systole;
        sb->clip_start = bt->clip_start;
        sb->shift = bt->shift;
        sb->ef = bt->ef;
        sb->ed_frame = bt->ed >= 0 ? bt->ed : EN_STORE_NONE;
        sb->lv_size_ed = bt->ed >= 0 ? w->sizes[bt->ed] : EN_STORE_NONE;
        sb->lv_size_es = w->sizes[bt->systole];
    }
    for (int i = 0; i < n; i++)
        w->frames[i].lv_size = w->sizes[i];
    for (int s = 0; s < a->sys.count; s++)
        w->frames[a->sys.frame[s]].systole = 1;
    r->beats = w->beats;
    r->nbeats = a->n_beats;
    r->frames = w->frames;
    r->nframes = n;
    return EN_OK;
}

static int render_report(en_pipeline *p, work *w, en_pipeline_result *res,
                         const en_store_result *r, en_err *err)
{
    const en_analysis *a = w->a;
    size_t px = (size_t)w->net.rows * w->net.cols;
    en_study_keyframes k = { -1, NULL, NULL, -1, NULL, NULL };

    if (a->n_beats > 0 && a->beat[0].ed >= 0) {
        k.ed = a->beat[0].ed;
        k.es = a->beat[0].systole;
        k.ed_image = en_frames_frame(&w->net, k.ed);
        k.es_image = en_frames_frame(&w->net, k.es);
        k.ed_mask = w->masks + (size_t)k.ed * px;
        k.es_mask = w->masks + (size_t)k.es * px;
    }
    return en_study_report(p->cfg, r, &k, res->report_pdf, res->report_png,
                           sizeof res->report_pdf, err);
}

static int overlay(en_pipeline *p, work *w, en_pipeline_result *res, en_err *err)
{
    if (!p->cfg->overlay_video)
        return EN_OK;
    en_study_path(p->cfg, res->conv.pseudonym, ".overlay.avi", res->overlay_avi,
                  sizeof res->overlay_avi);
    return en_report_overlay_video(w->net.data, w->masks, w->net.nframes, res->conv.info.fps,
                                   res->overlay_avi, err);
}

/* The stages after conversion, each logged in the database before it runs. */
static int analyse(en_pipeline *p, work *w, int64_t id, en_pipeline_result *res,
                   en_pipeline_progress cb, void *ud, const char **stage, en_err *err)
{
    en_store_result r;
    char detail[96];
    double t0 = en_mono_ms(), t1, t2;
    int rc;

#define STAGE(name, text) do { \
        *stage = name; say(cb, ud, name, text); \
        if ((rc = en_store_stage(p->db, id, name, err)) != EN_OK) return rc; \
    } while (0)

    snprintf(detail, sizeof detail, "%d frames", w->net.nframes);
    STAGE("segment", detail);
    if ((rc = segment(p, w, err)) != EN_OK)
        return rc;
    t1 = en_mono_ms();
    STAGE("analysis", "beats from the LV size curve");
    if (!(w->a = calloc(1, sizeof *w->a)))
        return en_err_set(err, EN_ENOMEM, "out of memory for the analysis");
    rc = en_analysis_plan(w->dsizes, w->net.nframes, res->conv.info.fps,
                          res->conv.info.fps_source == EN_FPS_DEFAULT, &p->params, w->a, err);
    if (rc != EN_OK)
        return rc;
    snprintf(detail, sizeof detail, "%d beats", w->a->n_beats);
    STAGE("ef", detail);
    if ((rc = predict_ef(p, w, err)) != EN_OK)
        return rc;
    t2 = en_mono_ms();
    STAGE("store", "writing the result");
    if ((rc = fill_result(p, w, res, &r, err)) != EN_OK)
        return rc;
    r.ms.read = res->conv.ms_read;
    r.ms.sector = res->conv.ms_sector;
    r.ms.video = res->conv.ms_write;
    r.ms.segment = t1 - t0;
    r.ms.ef = t2 - t1;
    r.ms.analysis = NAN;
    r.ms.total = res->conv.ms_read + res->conv.ms_sector + res->conv.ms_write + (t2 - t0);
    r.finished_ms = en_wall_ms();
    if ((rc = en_store_write_result(p->db, &r, &res->study_id, err)) != EN_OK)
        return rc;
    /* The result is committed: say so even if only the report fails next. */
    res->nbeats = w->a->n_beats;
    res->ef_mean = w->a->ef.mean;
    res->ef_sd = w->a->ef.sd;
    res->ef_class = w->a->ef.n > 0 ? en_ef_class_name(w->a->ef.cls) : "unknown";
    res->flags = w->a->flags;
    snprintf(res->flags_text, sizeof res->flags_text, "%s", r.flags_text);
    *stage = "report";
    say(cb, ud, "report", "rendering");
    if ((rc = render_report(p, w, res, &r, err)) != EN_OK || (rc = overlay(p, w, res, err)) != EN_OK)
        return rc;
    return EN_OK;
#undef STAGE
}

/* 1 when this very instance (same duplicate key) has a result made by the
 * models loaded now: delivering it again changes nothing.  A result made
 * by other models is not a duplicate: re-delivering is how an operator
 * re-runs studies after upgrading the models. */
static int already_done(en_pipeline *p, const en_convert_result *c, en_store_ref *ref)
{
    en_store_study st;
    en_err ignored;
    int same;

    if (!c->dedup_key[0] ||
        en_store_find(p->db, c->pseudonym, c->dedup_key, ref, &ignored) != EN_OK ||
        ref->other_instance || ref->status != EN_STORE_DONE ||
        en_store_show(p->db, c->pseudonym, &st, &ignored) != EN_OK)
        return 0;
    same = !strcmp(st.r.seg_model.sha256, en_nn_model_info(p->seg)->sha256) &&
           !strcmp(st.r.ef_model.sha256, en_nn_model_info(p->ef)->sha256);
    en_store_study_free(&st);
    return same;
}

int en_pipeline_process(en_pipeline *p, const char *path, en_pipeline_result *res,
                        en_pipeline_progress cb, void *ud, en_err *err)
{
    work w;
    en_store_ref ref;
    const char *stage = "convert";
    double t0 = en_mono_ms();
    int attempt, rc;

    memset(&w, 0, sizeof w);
    memset(res, 0, sizeof *res);
    say(cb, ud, "convert", "read, deidentify, locate the sector, write the AVI");
    rc = en_convert_file_frames(p->cfg, &p->deid, path, NULL, &res->conv, &w.net, err);
    if (rc != EN_OK)
        goto out;
    res->nframes = w.net.nframes;
    if (!p->reprocess && already_done(p, &res->conv, &ref)) {
        /* The same instance again: the stored result stands. */
        res->duplicate = 1;
        res->study_id = ref.id;
        say(cb, ud, "duplicate", "already processed: not processed again");
        rc = EN_OK;
        goto out;
    }
    rc = en_store_queue(p->db, res->conv.pseudonym, res->conv.dedup_key, NULL, en_wall_ms(), 1, &ref, err);
    if (rc == EN_OK)
        rc = en_store_attempt(p->db, ref.id, NULL, &attempt, err);
    if (rc != EN_OK)
        goto out;
    rc = analyse(p, &w, ref.id, res, cb, ud, &stage, err);
    if (rc != EN_OK && strcmp(stage, "report") == 0) {
        /* The result is committed; only the page is missing, and
         * `echonetctl report` can draw it again. */
        en_err ignored;
        en_store_log(p->db, ref.id, EN_STORE_EV_WARNING, "report", EN_STORE_NONE, NULL,
                     err->msg, &ignored);
        en_err_prefix(err, "study %s: result stored, but the report failed", res->conv.pseudonym);
    } else if (rc != EN_OK) {
        en_err cause = *err, ignored;
        en_err_prefix(err, "study %s: %s", res->conv.pseudonym, stage);
        en_store_fail(p->db, ref.id, stage, &cause, &ignored);
    }
out:
    res->ms_total = en_mono_ms() - t0;
    work_free(&w);
    return rc;
}

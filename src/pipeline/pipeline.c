/*
 * pipeline.c - one clip from DICOM to stored result, one study from its
 * clips to its result (see en_pipeline.h).
 *
 * Memory stays bounded whatever the video length: frames go through the
 * segmentation network in chunks and only the 1-byte masks are kept, not the
 * float logits.  The clip is queued in the database as soon as it has a
 * pseudonym, every stage is logged before it runs, and the result is written
 * in one transaction at the end, so a crash leaves a visible "processing"
 * clip and never half a result.
 *
 * Each clip's AVI is its own file, <pseudonym>-<duplicate key>.avi: the
 * converter writes it under a name of this process's own and it is renamed
 * once the key is known, so two clips of one study processed at the same
 * time never write the same file.
 */
#include "en_util.h"
#include "en_pipeline.h"

#include "en_report.h"
#include "en_video.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEG_CHUNK 32

static int load_model(const char *path, const char *key, const en_config *cfg,
                      en_nn_arch want, en_nn_model **out, en_err *err)
{
    en_nn_opts o;
    int rc;

    memset(&o, 0, sizeof o);
    o.threads = cfg->nn_threads;
    o.batch = cfg->nn_batch;
    o.precision = (en_nn_prec)cfg->nn_precision;   /* same values (en_nn.h) */
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

static int load_seg(const en_config *cfg, en_nn_model **out, en_err *err)
{
    return load_model(cfg->seg_weights, "segmentation", cfg, EN_NN_ARCH_DEEPLABV3_RESNET50, out,
                      err);
}

struct ef_load {
    const en_config *cfg;
    en_nn_model *m;
    int rc;
    en_err err;
};

static void *ef_load_main(void *arg)
{
    struct ef_load *e = arg;

    e->rc = load_model(e->cfg->ef_weights, "ef", e->cfg, EN_NN_ARCH_R2PLUS1D_18, &e->m, &e->err);
    return NULL;
}

int en_pipeline_models_load(const en_config *cfg, en_nn_model **seg, en_nn_model **ef,
                            en_err *err)
{
    struct ef_load e = { .cfg = cfg };
    pthread_t t;
    int threaded, rc;

    /* The two load side by side (each mostly one core's work: folding,
     * packing, first touch); without a thread, one after the other.  The
     * segmentation model's error comes first, as it always has. */
    *seg = *ef = NULL;
    threaded = pthread_create(&t, NULL, ef_load_main, &e) == 0;
    rc = load_seg(cfg, seg, err);
    if (threaded)
        pthread_join(t, NULL);
    else if (rc == EN_OK)
        ef_load_main(&e);
    if (rc == EN_OK && e.rc != EN_OK) {
        *err = e.err;
        rc = e.rc;
    }
    if (rc != EN_OK) {
        en_nn_model_free(*seg);
        en_nn_model_free(e.m);
        *seg = NULL;
        return rc;
    }
    *ef = e.m;
    return EN_OK;
}

int en_pipeline_models_same(const en_config *a, const en_config *b)
{
    return !strcmp(a->seg_weights, b->seg_weights) && !strcmp(a->ef_weights, b->ef_weights) &&
           a->nn_threads == b->nn_threads && a->nn_batch == b->nn_batch &&
           a->nn_precision == b->nn_precision;
}

static int open_rest(en_pipeline *p, const en_config *cfg, en_err *err)
{
    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    en_analysis_params_default(&p->params);
    en_verdict_params_default(&p->verdict);
    en_study_params_default(&p->study);
    p->study.disagreement_points = cfg->clip_disagreement_points;
    return en_deid_open(&p->deid, cfg->secret_file, err);
}

int en_pipeline_open(en_pipeline *p, const en_config *cfg, en_err *err)
{
    int rc;

    if ((rc = open_rest(p, cfg, err)) != EN_OK)
        return rc;
    if ((rc = en_pipeline_models_load(cfg, &p->seg, &p->ef, err)) != EN_OK ||
        (rc = en_store_open(cfg->database, 0, &p->db, err)) != EN_OK) {
        en_pipeline_close(p);
        return rc;
    }
    return EN_OK;
}

int en_pipeline_open_finish(en_pipeline *p, const en_config *cfg, en_err *err)
{
    int rc;

    if ((rc = open_rest(p, cfg, err)) != EN_OK)
        return rc;
    if ((rc = load_seg(cfg, &p->seg, err)) != EN_OK ||
        (rc = en_store_open(cfg->database, 0, &p->db, err)) != EN_OK) {
        en_pipeline_close(p);
        return rc;
    }
    return EN_OK;
}

struct en_pipeline_loader {
    pthread_t tid;
    const en_config *cfg;
    en_nn_model *seg, *ef;
    _Atomic int finished;   /* set by the thread: a wait will not block */
    int joined;
    int rc;
    en_err err;
};

static void *loader_main(void *arg)
{
    struct en_pipeline_loader *l = arg;

    l->rc = en_pipeline_models_load(l->cfg, &l->seg, &l->ef, &l->err);
    l->finished = 1;
    return NULL;
}

int en_pipeline_open_early(en_pipeline *p, const en_config *cfg, en_err *err)
{
    struct en_pipeline_loader *l;
    int rc;

    if ((rc = open_rest(p, cfg, err)) != EN_OK ||
        (rc = en_store_open(cfg->database, 0, &p->db, err)) != EN_OK) {
        en_pipeline_close(p);
        return rc;
    }
    /* Without a thread the models load here, as en_pipeline_open does. */
    l = calloc(1, sizeof *l);
    if (l) {
        l->cfg = cfg;
        if (pthread_create(&l->tid, NULL, loader_main, l) == 0) {
            p->loading = l;
            return EN_OK;
        }
        free(l);
    }
    if ((rc = en_pipeline_models_load(cfg, &p->seg, &p->ef, err)) != EN_OK)
        en_pipeline_close(p);
    return rc;
}

int en_pipeline_models_wait(en_pipeline *p, en_err *err)
{
    struct en_pipeline_loader *l = p->loading;

    if (!l)
        return EN_OK;
    if (!l->joined) {
        pthread_join(l->tid, NULL);
        l->joined = 1;
        p->seg = l->seg;
        p->ef = l->ef;
    }
    if (l->rc != EN_OK)
        *err = l->err;
    return l->rc;
}

int en_pipeline_open_with(en_pipeline *p, const en_config *cfg, en_nn_model *seg,
                          en_nn_model *ef, en_err *err)
{
    int rc;

    if ((rc = open_rest(p, cfg, err)) != EN_OK)
        return rc;
    p->seg = seg;
    p->ef = ef;
    p->models_borrowed = 1;
    if ((rc = en_store_open(cfg->database, 0, &p->db, err)) != EN_OK) {
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
    if (p->loading) {
        en_err ignored;
        (void)en_pipeline_models_wait(p, &ignored);
        free(p->loading);
        p->loading = NULL;
    }
    if (!p->models_borrowed) {
        en_nn_model_free(p->seg);
        en_nn_model_free(p->ef);
    }
    en_store_close(p->db);
    en_deid_close(&p->deid);
    p->seg = p->ef = NULL;
    p->db = NULL;
}

void en_clip_name(const char *pseudonym, const char *dedup_key, int64_t clip_id,
                  char *buf, size_t len)
{
    int n = dedup_key && *dedup_key ? snprintf(buf, len, "%s-%s", pseudonym, dedup_key)
                                    : snprintf(buf, len, "%s-c%lld", pseudonym,
                                               (long long)clip_id);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
}

/* Everything one clip's processing allocates, freed in one place. */
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
    char tmp_avi[EN_PATH_MAX + 64];  /* the converter's output before its rename */
    en_clip_facts facts;
    en_clip_verdict verdict;
    en_clip_evidence evidence;
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
    if (w->tmp_avi[0])
        unlink(w->tmp_avi);
}

static void say(en_pipeline_progress cb, void *ud, const char *stage, const char *detail)
{
    if (cb)
        cb(stage, detail, ud);
}

/* ---- what the instance is ---------------------------------------------------------- */

static void fill_facts(const en_dicom_info *info, en_clip_facts *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->sop_class, sizeof f->sop_class, "%s", info->sop_class_uid);
    snprintf(f->modality, sizeof f->modality, "%s", info->modality);
    f->frames = info->frames;
    f->fps = info->fps;
    f->colour = info->channels == 3;
    for (int i = 0; i < info->nregions && i < EN_CLIP_MAX_REGIONS; i++) {
        f->region[i].spatial_format = info->regions[i].spatial_format;
        f->region[i].data_type = info->regions[i].data_type;
        f->nregions++;
    }
    f->view = en_view_from_code(info->view_scheme, info->view_value, info->view_meaning);
}

/* Copies what the DICOM said into the stored result. */
static void fill_source(const en_convert_result *c, const work *w, en_store_result *r)
{
    snprintf(r->pseudonym, sizeof r->pseudonym, "%s", c->pseudonym);
    snprintf(r->dedup_key, sizeof r->dedup_key, "%s", c->dedup_key);
    snprintf(r->sop_class, sizeof r->sop_class, "%s", c->info.sop_class_uid);
    snprintf(r->modality, sizeof r->modality, "%s", c->info.modality);
    snprintf(r->regions, sizeof r->regions, "%s", w->verdict.regions);
    snprintf(r->view_dicom, sizeof r->view_dicom, "%s", en_view_name(w->facts.view));
    if (c->info.view_value[0])
        snprintf(r->view_code, sizeof r->view_code, "%.16s:%.16s",
                 c->info.view_scheme[0] ? c->info.view_scheme : "?", c->info.view_value);
    for (char *q = r->view_code; *q; q++)   /* keep the column's characters */
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
              *q == ':' || *q == '.' || *q == '-' || *q == '_'))
            *q = '_';
    for (char *q = r->modality; *q; q++)
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
            *q = '_';
    if (c->info.rows > 0) {
        r->src_rows = c->info.rows;
        r->src_cols = c->info.cols;
        r->src_frames = c->info.frames;
    }
    if (c->info.fps > 0) {
        r->fps = c->info.fps;
        snprintf(r->fps_source, sizeof r->fps_source, "%s", en_fps_source_name(c->info.fps_source));
    }
    snprintf(r->transfer_syntax, sizeof r->transfer_syntax, "%s", c->info.transfer_syntax_uid);
    snprintf(r->verdict, sizeof r->verdict, "%s", en_clip_verdict_name(w->verdict.kind));
    snprintf(r->verdict_codes, sizeof r->verdict_codes, "%s", w->verdict.codes);
    snprintf(r->verdict_text, sizeof r->verdict_text, "%s", w->verdict.text);
}

/* ---- analysis of one clip ------------------------------------------------------------ */

/* The two networks run one after the other, never together: the one about
 * to run gets the memory the other worked in (hundreds of MB for the EF
 * network's activations), which keeps a study's peak under 1 GiB in fp32
 * (docs/performance.md, "Whole study").  Each pays its first touch again. */
static void before_network(en_pipeline *p, const en_nn_model *next)
{
    if (next != p->seg)
        en_nn_model_trim(p->seg);
    if (next != p->ef)
        en_nn_model_trim(p->ef);
}

static int segment(en_pipeline *p, work *w, en_err *err)
{
    const en_frames *v = &w->net;
    size_t px = (size_t)v->rows * v->cols;
    int n = v->nframes;

    before_network(p, p->seg);
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
    before_network(p, p->ef);
    for (int b = 0; b < a->n_beats; b++) {
        float ef;
        rc = en_nn_ef_frames(p->ef, &w->net, a->beat[b].clip_start, &ef, err);
        if (rc != EN_OK)
            return en_err_prefix(err, "beat %d (clip at frame %d)", b + 1, a->beat[b].clip_start);
        w->efs[b] = ef;
    }
    return en_analysis_finish(a, w->efs, a->n_beats, &p->params, err);
}

/* The segmentation's evidence about the view, then the verdict. */
static int judge(en_pipeline *p, work *w, const en_pipeline_result *res, en_err *err)
{
    en_sector view;
    en_view_geometry g;
    en_clip_evidence ev;
    uint8_t *fan = malloc((size_t)w->net.rows * w->net.cols);
    int rc;

    if (!fan)
        return en_err_set(err, EN_ENOMEM, "out of memory for the fan mask");
    rc = en_sector_view(&res->conv.sector, w->net.rows, &view, err);
    if (rc == EN_OK) {
        en_sector_mask(&view, w->net.rows, w->net.cols, fan);
        g = (en_view_geometry){ view.apex_x, view.apex_y, view.radius, fan };
        /* Into a local, then copied: the evidence is only w's once whole. */
        rc = en_clip_evidence_compute(w->net.data, w->masks, w->net.nframes, w->net.rows, &g,
                                      &p->verdict, &ev, err);
        if (rc == EN_OK)
            w->evidence = ev;
    }
    free(fan);
    if (rc == EN_OK)
        en_clip_judge(&w->facts, &w->evidence, w->a->ef.n, w->a->flags,
                      res->conv.dedup_key[0] != 0, &p->verdict, &w->verdict);
    return rc;
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
    char name[EN_STORE_NAME_MAX - 4];
    int n = w->net.nframes;

    en_store_result_init(r);
    r->clip_id = res->clip_id;
    fill_source(c, w, r);
    en_clip_name(c->pseudonym, c->dedup_key, res->clip_id, name, sizeof name);
    snprintf(r->video_file, sizeof r->video_file, "%s.avi", name);
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
    en_clip_evidence_json(&w->evidence, r->evidence_json, sizeof r->evidence_json);

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

static int overlay(en_pipeline *p, work *w, en_pipeline_result *res, en_err *err)
{
    char name[EN_STORE_NAME_MAX];

    if (!p->cfg->overlay_video)
        return EN_OK;
    en_clip_name(res->conv.pseudonym, res->conv.dedup_key, res->clip_id, name, sizeof name);
    en_study_path(p->cfg, name, ".overlay.avi", res->overlay_avi, sizeof res->overlay_avi);
    return en_report_overlay_video(w->net.data, w->masks, w->net.nframes, res->conv.info.fps,
                                   res->overlay_avi, err);
}

/* The converter's AVI becomes the clip's: <pseudonym>-<key>.avi. */
static int keep_video(en_pipeline *p, work *w, en_pipeline_result *res, en_err *err)
{
    char name[EN_STORE_NAME_MAX];

    en_clip_name(res->conv.pseudonym, res->conv.dedup_key, res->clip_id, name, sizeof name);
    en_study_path(p->cfg, name, ".avi", res->video, sizeof res->video);
    if (!name[0] || !res->video[0])
        return en_err_set(err, EN_EINVAL, "study %s: the clip's video path is too long",
                          res->conv.pseudonym);
    if (rename(w->tmp_avi, res->video) != 0)
        return en_err_set(err, EN_EIO, "study %s: cannot name the clip's video %s: %s",
                          res->conv.pseudonym, res->video, strerror(errno));
    w->tmp_avi[0] = '\0';
    snprintf(res->conv.avi_path, sizeof res->conv.avi_path, "%s", res->video);
    if (en_fsync_dir(p->cfg->output_dir) != EN_OK)
        return en_err_set(err, EN_EIO, "study %s: cannot sync %s: %s", res->conv.pseudonym,
                          p->cfg->output_dir, strerror(errno));
    return EN_OK;
}

/* The stages after conversion, each logged in the database before it runs. */
static int analyse(en_pipeline *p, work *w, en_pipeline_result *res, en_pipeline_progress cb,
                   void *ud, const char **stage, en_err *err)
{
    en_store_result r;
    char detail[96];
    double t0 = en_mono_ms(), t1, t2;
    int64_t id = res->clip_id;
    int rc;

#define STAGE(name, text) do { \
        *stage = name; say(cb, ud, name, text); \
        if ((rc = en_store_stage(p->db, id, name, err)) != EN_OK) return rc; \
    } while (0)

    if ((rc = keep_video(p, w, res, err)) != EN_OK)
        return rc;
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
    STAGE("verdict", "does the clip count for the study");
    if ((rc = judge(p, w, res, err)) != EN_OK)
        return rc;
    STAGE("store", "writing the result");
    if ((rc = fill_result(p, w, res, &r, err)) != EN_OK)
        return rc;
    r.ms.read = res->conv.ms_read;
    r.ms.sector = res->conv.ms_sector;
    r.ms.video = res->conv.ms_write;
    r.ms.segment = t1 - t0;
    r.ms.ef = t2 - t1;
    r.ms.analysis = en_mono_ms() - t2;
    r.ms.total = res->conv.ms_read + res->conv.ms_sector + res->conv.ms_write + (en_mono_ms() - t0);
    r.finished_ms = en_wall_ms();
    if ((rc = en_store_write_result(p->db, &r, &res->clip_id, err)) != EN_OK)
        return rc;
    /* The result is committed: say so even if only the overlay fails next. */
    res->nbeats = w->a->n_beats;
    res->ef_mean = w->a->ef.mean;
    res->ef_sd = w->a->ef.sd;
    res->ef_class = w->a->ef.n > 0 ? en_ef_class_name(w->a->ef.cls) : "unknown";
    res->flags = w->a->flags;
    snprintf(res->flags_text, sizeof res->flags_text, "%s", r.flags_text);
    snprintf(res->verdict, sizeof res->verdict, "%s", r.verdict);
    snprintf(res->verdict_text, sizeof res->verdict_text, "%s", r.verdict_text);
    *stage = "report";
    say(cb, ud, "report", "overlay video");
    return overlay(p, w, res, err);
#undef STAGE
}

/* An instance that cannot be analysed: a clip row saying why. */
static int store_not_analysed(en_pipeline *p, work *w, en_pipeline_result *res, en_err *err)
{
    en_store_result r;
    int rc;

    en_store_result_init(&r);
    r.clip_id = res->clip_id;
    fill_source(&res->conv, w, &r);
    r.ms.read = res->conv.ms_read;
    r.ms.total = en_mono_ms() - res->ms_total;
    r.finished_ms = en_wall_ms();
    if ((rc = en_store_write_result(p->db, &r, &res->clip_id, err)) != EN_OK)
        return rc;
    res->ef_mean = res->ef_sd = NAN;
    res->ef_class = "unknown";
    snprintf(res->verdict, sizeof res->verdict, "%s", r.verdict);
    snprintf(res->verdict_text, sizeof res->verdict_text, "%s", r.verdict_text);
    return EN_OK;
}

/* 1 when this very instance (same duplicate key) has a result: one not
 * analysed stays so; an analysed one counts when the models loaded now made
 * it.  A result made by other models is not a duplicate: re-delivering is
 * how an operator re-runs studies after upgrading the models. */
static int already_done(en_pipeline *p, const en_convert_result *c, en_store_ref *ref)
{
    en_store_clip clip;
    en_err ignored;
    int same;

    if (!c->dedup_key[0] ||
        en_store_find(p->db, c->pseudonym, c->dedup_key, ref, &ignored) != EN_OK ||
        ref->status != EN_STORE_DONE ||
        en_store_clip_show(p->db, ref->id, &clip, &ignored) != EN_OK)
        return 0;
    same = !strcmp(clip.r.verdict, "not_analysed") ||
           (!strcmp(clip.r.seg_model.sha256, en_nn_model_info(p->seg)->sha256) &&
            !strcmp(clip.r.ef_model.sha256, en_nn_model_info(p->ef)->sha256));
    en_store_clip_free(&clip);
    return same;
}

/* After a conversion that failed: an instance known by its pseudonym
 * whose pixels hold no ultrasound sector is not analysable, not broken. */
static int no_sector(const en_pipeline_result *res, int rc)
{
    return rc == EN_ENOTFOUND && res->conv.pseudonym[0] && res->conv.ms_read > 0 &&
           res->conv.ms_sector == 0;
}

/* The sector module's own words, without the file path convert put first. */
static const char *sector_detail(const en_err *err)
{
    const char *s = strstr(err->msg, "sector: ");
    return s ? s + 8 : "";
}

static int make_tmp_avi(en_pipeline *p, work *w, en_err *err)
{
    static unsigned seq;
    int n = snprintf(w->tmp_avi, sizeof w->tmp_avi, "%s/.incoming-%ld-%u.avi", p->cfg->output_dir,
                     (long)getpid(), seq++);

    if (n < 0 || (size_t)n >= sizeof w->tmp_avi) {
        w->tmp_avi[0] = '\0';
        return en_err_set(err, EN_EINVAL, "[paths] output_dir is too long: %s", p->cfg->output_dir);
    }
    return EN_OK;
}

/* Queues the clip and counts the attempt (a file that crashes the work
 * every time can then be given up). */
static int begin_clip(en_pipeline *p, en_pipeline_result *res, en_err *err)
{
    en_store_ref ref;
    int attempt, rc;

    rc = en_store_queue(p->db, res->conv.pseudonym, res->conv.dedup_key, NULL, en_wall_ms(), 1,
                        &ref, err);
    if (rc == EN_OK)
        rc = en_store_attempt(p->db, ref.id, NULL, &attempt, err);
    res->clip_id = ref.id;
    res->study_id = ref.study_id;
    return rc;
}

int en_pipeline_process(en_pipeline *p, const char *path, en_pipeline_result *res,
                        en_pipeline_progress cb, void *ud, en_err *err)
{
    work w;
    en_store_ref ref;
    const char *stage = "convert";
    int rc, unanalysable;

    memset(&w, 0, sizeof w);
    memset(res, 0, sizeof *res);
    if (!p->ef && !p->loading)
        return en_err_set(err, EN_EINVAL, "this pipeline was opened for study results only "
                          "(en_pipeline_open_finish): it has no EF model to process clips");
    res->ms_total = en_mono_ms();
    say(cb, ud, "convert", "read, deidentify, locate the sector, write the AVI");
    rc = make_tmp_avi(p, &w, err);
    if (rc == EN_OK)
        rc = en_convert_file_frames(p->cfg, &p->deid, path, w.tmp_avi, &res->conv, &w.net, err);
    fill_facts(&res->conv.info, &w.facts);
    unanalysable = en_clip_screen(&w.facts, &p->verdict, &w.verdict);
    if (rc == EN_ENOTIMAGE && res->conv.pseudonym[0]) {
        /* The reader's words without the file's path (a delivered name). */
        const char *why = strstr(err->msg, "no pixel data");
        en_clip_not_analysed(&w.verdict, EN_CLIP_R_NOT_US, why ? why : "no pixel data");
        unanalysable = 1;
        rc = EN_OK;
    } else if (rc != EN_OK && no_sector(res, rc)) {
        en_clip_not_analysed(&w.verdict, EN_CLIP_R_NO_SECTOR, sector_detail(err));
        unanalysable = 1;
        rc = EN_OK;
    }
    if (rc != EN_OK)
        goto out;
    /* Nothing of the clip is stored before the models are there: a
     * loading error is the setup's, not the clip's. */
    if (p->loading && !p->loading->finished)
        say(cb, ud, "models", "waiting for the models to finish loading");
    if ((rc = en_pipeline_models_wait(p, err)) != EN_OK)
        goto out;
    res->nframes = w.net.nframes;
    if (!p->reprocess && already_done(p, &res->conv, &ref)) {
        /* The same instance again: the stored result stands. */
        res->duplicate = 1;
        res->clip_id = ref.id;
        res->study_id = ref.study_id;
        say(cb, ud, "duplicate", "already processed: not processed again");
        goto out;
    }
    if ((rc = begin_clip(p, res, err)) != EN_OK)
        goto out;
    if (unanalysable) {
        say(cb, ud, "screen", w.verdict.text);
        stage = "screen";
        rc = store_not_analysed(p, &w, res, err);
    } else {
        rc = analyse(p, &w, res, cb, ud, &stage, err);
    }
    if (rc != EN_OK && strcmp(stage, "report") == 0) {
        /* The result is committed; only the overlay video is missing. */
        en_err ignored;
        en_store_log(p->db, res->clip_id, EN_STORE_EV_WARNING, "report", EN_STORE_NONE, NULL,
                     err->msg, &ignored);
        en_err_prefix(err, "study %s: clip stored, but its overlay video failed",
                      res->conv.pseudonym);
    } else if (rc != EN_OK) {
        en_err cause = *err, ignored;
        en_err_prefix(err, "study %s: %s", res->conv.pseudonym, stage);
        en_store_fail(p->db, res->clip_id, stage, &cause, &ignored);
    }
out:
    res->ms_total = en_mono_ms() - res->ms_total;
    work_free(&w);
    return rc;
}

/* ---- a study --------------------------------------------------------------------- */

static int report_missing(const en_pipeline *p, const char *pseudonym)
{
    char path[EN_PATH_MAX + 64];

    if (p->cfg->report_pdf) {
        en_study_path(p->cfg, pseudonym, ".pdf", path, sizeof path);
        if (access(path, F_OK) != 0)
            return 1;
    }
    if (p->cfg->report_png) {
        en_study_path(p->cfg, pseudonym, ".png", path, sizeof path);
        if (access(path, F_OK) != 0)
            return 1;
    }
    return 0;
}

int en_pipeline_finish_study(en_pipeline *p, const char *pseudonym, int force,
                             en_pipeline_study *out, en_err *err)
{
    en_study_keyframes k[EN_STUDY_REPORT_KEYCLIPS];
    en_store_study s;
    uint8_t *pixels = NULL;
    int nk = 0, rc;

    memset(out, 0, sizeof *out);
    if ((rc = en_pipeline_models_wait(p, err)) != EN_OK)
        return rc;
    rc = en_study_recompute(p->db, pseudonym, &p->study, force, &out->version, &out->changed,
                            err);
    if (rc != EN_OK)
        return rc;
    if ((rc = en_store_study_show(p->db, pseudonym, EN_STORE_SHOW_FRAMES, &s, err)) != EN_OK)
        return rc;
    out->res = s.res;
    if ((out->changed || force || report_missing(p, pseudonym)) &&
        (p->cfg->report_pdf || p->cfg->report_png)) {
        before_network(p, p->seg);
        rc = en_study_keyframes_load(p->cfg, p->seg, &s, k, &nk, &pixels, err);
        if (rc == EN_OK)
            rc = en_study_report(p->cfg, &s, k, nk, out->report_pdf, out->report_png,
                                 sizeof out->report_pdf, err);
        free(pixels);
        if (rc != EN_OK) {
            en_err ignored;
            en_err_prefix(err, "study %s: result v%d stored, but its report failed", pseudonym,
                          out->version);
            if (s.nclips > 0)   /* events belong to a clip: the latest */
                en_store_log(p->db, s.clip[s.nclips - 1].id, EN_STORE_EV_WARNING, "report",
                             EN_STORE_NONE, NULL, err->msg, &ignored);
        }
    }
    en_store_study_free(&s);
    return rc;
}

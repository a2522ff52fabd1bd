/*
 * export.c - results out of the database in the shapes users already have
 * tools for.
 *
 * - size:  upstream's size.csv (echonet/utils/segmentation.py), one row per
 *          frame: Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall.
 *          There are no human tracings here, so HumanLarge/HumanSmall are 0;
 *          ComputerSmall is 1 on detected systoles, as upstream.
 * - clips: upstream's clip predictions (echonet/utils/video.py), no header,
 *          "filename,clip_start,ef" with the EF to 4 decimals, one row per
 *          beat.  scripts/beat_by_beat_analysis.R joins the two files on
 *          clip_start = max(0, systole - 32); a beat whose clip was shifted
 *          back to fit the video has another clip_start and so, as upstream
 *          (which has no such clip), drops out of that join.
 * - json:  every stored field of each study, with beats and frame sizes.
 *
 * Filenames are <pseudonym>.avi, the name of the study's AVI.
 */
#include "store_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "en_json.h"

int en_store_export_format_parse(const char *name, en_store_export_format *out)
{
    static const char *const names[] = {"size", "clips", "json"};

    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (en_store_export_format)i;
            return EN_OK;
        }
    return EN_EINVAL;
}

typedef struct export_ctx {
    en_store *st;
    en_store_export_format fmt;
    FILE *out;
    en_json json;
    en_err *err;
} export_ctx;

/* ---- CSV ---------------------------------------------------------------------- */

static void size_rows(FILE *out, const en_store_study *s)
{
    for (int i = 0; i < s->r.nframes; i++)
        fprintf(out, "%s.avi,%d,%d,0,0,%d\n", s->r.pseudonym, i, s->r.frames[i].lv_size,
                s->r.frames[i].systole ? 1 : 0);
}

static void clip_rows(FILE *out, const en_store_study *s)
{
    for (int i = 0; i < s->r.nbeats; i++)
        fprintf(out, "%s.avi,%d,%.4f\n", s->r.pseudonym, s->r.beats[i].clip_start,
                s->r.beats[i].ef);
}

/* ---- JSON --------------------------------------------------------------------- */

static void j_int_opt(en_json *j, const char *key, int v)
{
    if (v == EN_STORE_NONE)
        en_json_string(j, key, NULL);
    else
        en_json_int(j, key, v);
}

static void j_text_opt(en_json *j, const char *key, const char *v)
{
    en_json_string(j, key, v && *v ? v : NULL);
}

static void j_time(en_json *j, const char *key, int64_t ms)
{
    char buf[EN_STORE_TIME_MAX];

    if (!ms) {
        en_json_string(j, key, NULL);
        return;
    }
    en_store_format_time(ms, buf);
    en_json_string(j, key, buf);
}

static void j_model(en_json *j, const char *key, const en_store_model *m)
{
    if (!m->sha256[0]) {
        en_json_string(j, key, NULL);
        return;
    }
    en_json_begin_object(j, key);
    en_json_string(j, "sha256", m->sha256);
    en_json_string(j, "architecture", m->architecture);
    en_json_string(j, "origin", m->origin);
    en_json_string(j, "file_name", m->file_name);
    en_json_end_object(j);
}

static void j_below(en_json *j, const char *key, double ef, double cut)
{
    if (isfinite(ef))
        en_json_bool(j, key, ef < cut);
    else
        en_json_string(j, key, NULL);
}

static void j_result(en_json *j, const en_store_result *r)
{
    en_json_begin_object(j, "source");
    j_int_opt(j, "rows", r->src_rows);
    j_int_opt(j, "cols", r->src_cols);
    j_int_opt(j, "frames", r->src_frames);
    en_json_double(j, "fps", r->fps);
    j_text_opt(j, "fps_source", r->fps_source);
    j_text_opt(j, "transfer_syntax", r->transfer_syntax);
    en_json_end_object(j);
    en_json_begin_object(j, "sector");
    j_text_opt(j, "method", r->sector_method);
    en_json_double(j, "confidence", r->sector_confidence);
    en_json_end_object(j);
    j_int_opt(j, "video_frames", r->video_frames);
    en_json_begin_object(j, "models");
    j_model(j, "segmentation", &r->seg_model);
    j_model(j, "ef", &r->ef_model);
    en_json_end_object(j);
    en_json_begin_object(j, "ef");
    en_json_double(j, "mean", r->ef_mean);
    en_json_double(j, "sd", r->ef_sd);
    j_text_opt(j, "class", r->ef_class);
    en_json_double(j, "threshold_reduced", r->threshold_reduced);
    en_json_double(j, "threshold_low", r->threshold_low);
    en_json_double(j, "threshold_very_low", r->threshold_very_low);
    j_below(j, "below_50", r->ef_mean, 50);
    j_below(j, "below_40", r->ef_mean, 40);
    j_below(j, "below_35", r->ef_mean, 35);
    en_json_end_object(j);
    en_json_int(j, "flags", (long long)r->flags);
    en_json_string(j, "flags_text", r->flags_text);
    en_json_begin_object(j, "timings_ms");
    en_json_double(j, "read", r->ms.read);
    en_json_double(j, "sector", r->ms.sector);
    en_json_double(j, "video", r->ms.video);
    en_json_double(j, "segment", r->ms.segment);
    en_json_double(j, "ef", r->ms.ef);
    en_json_double(j, "analysis", r->ms.analysis);
    en_json_double(j, "total", r->ms.total);
    en_json_end_object(j);
}

static void j_beats(en_json *j, const en_store_result *r)
{
    en_json_begin_array(j, "beats");
    for (int i = 0; i < r->nbeats; i++) {
        const en_store_beat *b = &r->beats[i];
        en_json_begin_object(j, NULL);
        en_json_int(j, "beat", i);
        en_json_int(j, "systole_frame", b->systole_frame);
        en_json_int(j, "clip_start", b->clip_start);
        en_json_int(j, "shift", b->shift);
        en_json_double(j, "ef", b->ef);
        j_int_opt(j, "ed_frame", b->ed_frame);
        j_int_opt(j, "lv_size_ed", b->lv_size_ed);
        j_int_opt(j, "lv_size_es", b->lv_size_es);
        en_json_end_object(j);
    }
    en_json_end_array(j);
}

/* Frames as two compact arrays: sizes in frame order, systole indices. */
static void j_frames(en_json *j, const en_store_result *r)
{
    en_json_begin_array(j, "lv_size");
    for (int i = 0; i < r->nframes; i++)
        en_json_int(j, NULL, r->frames[i].lv_size);
    en_json_end_array(j);
    en_json_begin_array(j, "systole_frames");
    for (int i = 0; i < r->nframes; i++)
        if (r->frames[i].systole)
            en_json_int(j, NULL, i);
    en_json_end_array(j);
}

static void j_study(en_json *j, const en_store_study *s)
{
    en_json_begin_object(j, NULL);
    en_json_string(j, "pseudonym", s->r.pseudonym);
    en_json_string(j, "status", en_store_status_name(s->status));
    j_text_opt(j, "stage", s->stage);
    en_json_int(j, "attempts", s->attempts);
    j_time(j, "received", s->r.received_ms);
    j_time(j, "started", s->r.started_ms);
    j_time(j, "finished", s->r.finished_ms);
    j_text_opt(j, "last_error", s->last_error);
    j_result(j, &s->r);
    j_beats(j, &s->r);
    j_frames(j, &s->r);
    en_json_end_object(j);
}

/* ---- the walk ------------------------------------------------------------------- */

static int export_one(const en_store_study *summary, void *ud)
{
    export_ctx *x = ud;
    en_store_study s = *summary;
    int rc = en__study_load_children(x->st, &s, x->err);

    if (!rc) {
        if (x->fmt == EN_STORE_EXPORT_SIZE_CSV)
            size_rows(x->out, &s);
        else if (x->fmt == EN_STORE_EXPORT_CLIPS_CSV)
            clip_rows(x->out, &s);
        else
            j_study(&x->json, &s);
        if (ferror(x->out))
            rc = en_err_set(x->err, EN_EIO, "writing the export: %s", strerror(errno));
    }
    en_store_study_free(&s);
    return rc;
}

int en_store_export(en_store *st, en_store_export_format fmt,
                    const en_store_filter *f, FILE *out, en_err *err)
{
    export_ctx x = {st, fmt, out, {0}, err};
    int rc;

    if ((unsigned)fmt > EN_STORE_EXPORT_JSON)
        return en_err_set(err, EN_EINVAL, "export: unknown format %d", (int)fmt);
    if (fmt == EN_STORE_EXPORT_SIZE_CSV)
        fputs("Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n", out);
    if (fmt == EN_STORE_EXPORT_JSON) {
        en_json_init(&x.json, out, 0);
        en_json_begin_object(&x.json, NULL);
        en_json_string(&x.json, "format", "echonetd-results");
        en_json_int(&x.json, "schema_version", en_store_schema_version());
        en_json_begin_array(&x.json, "studies");
    }
    rc = en_store_list(st, f, export_one, &x, err);
    if (rc)
        return rc;
    if (fmt == EN_STORE_EXPORT_JSON) {
        en_json_end_array(&x.json);
        en_json_end_object(&x.json);
        en_json_finish(&x.json);
    }
    if (fflush(out) != 0 || ferror(out))
        return en_err_set(err, EN_EIO, "writing the export: %s", strerror(errno));
    return EN_OK;
}

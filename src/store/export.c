/*
 * export.c - results out of the database in the shapes users already have
 * tools for.
 *
 * - size:  upstream's size.csv (echonet/utils/segmentation.py), one row per
 *          frame of every analysed clip:
 *          Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall.
 *          There are no human tracings here, so HumanLarge/HumanSmall are 0;
 *          ComputerSmall is 1 on detected systoles, as upstream.
 * - clips: upstream's clip predictions (echonet/utils/video.py), no header,
 *          "filename,clip_start,ef" with the EF to 4 decimals, one row per
 *          beat.  scripts/beat_by_beat_analysis.R joins the two files on
 *          clip_start = max(0, systole - 32); a beat whose clip was shifted
 *          back to fit the video has another clip_start and so, as upstream
 *          (which has no such clip), drops out of that join.
 * - json:  the whole tree: every study with its result, its clips (every
 *          instance, analysed or not, with its verdict), their beats and
 *          frame sizes.
 *
 * Upstream's Filename is a video: here it is the clip's AVI (its
 * video_file, <pseudonym>-<clip key>.avi), so every clip of a study keeps
 * its own rows.  The walk runs in one read transaction: a study and its
 * clips are exported as one consistent picture even while the daemon
 * writes.
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

static void size_rows(FILE *out, const en_store_result *r)
{
    for (int i = 0; r->video_file[0] && i < r->nframes; i++)
        fprintf(out, "%s,%d,%d,0,0,%d\n", r->video_file, i, r->frames[i].lv_size,
                r->frames[i].systole ? 1 : 0);
}

static void clip_rows(FILE *out, const en_store_result *r)
{
    for (int i = 0; r->video_file[0] && i < r->nbeats; i++)
        fprintf(out, "%s,%d,%.4f\n", r->video_file, r->beats[i].clip_start, r->beats[i].ef);
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
    j_text_opt(j, "sop_class", r->sop_class);
    j_text_opt(j, "modality", r->modality);
    j_text_opt(j, "regions", r->regions);
    j_text_opt(j, "view_dicom", r->view_dicom);
    j_text_opt(j, "view_code", r->view_code);
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
    j_text_opt(j, "video_file", r->video_file);
    j_int_opt(j, "video_frames", r->video_frames);
    en_json_begin_object(j, "models");
    j_model(j, "segmentation", &r->seg_model);
    j_model(j, "ef", &r->ef_model);
    en_json_end_object(j);
    en_json_begin_object(j, "verdict");
    j_text_opt(j, "verdict", r->verdict);
    en_json_string(j, "codes", r->verdict_codes);
    en_json_string(j, "reasons", r->verdict_text);
    if (r->evidence_json[0])
        en_json_raw(j, "evidence", r->evidence_json);
    else
        en_json_string(j, "evidence", NULL);
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

static void j_clip(en_json *j, const en_store_clip *c)
{
    en_json_begin_object(j, NULL);
    en_json_int(j, "clip_id", (long long)c->id);
    j_text_opt(j, "dedup_key", c->r.dedup_key);
    en_json_string(j, "status", en_store_status_name(c->status));
    j_text_opt(j, "stage", c->stage);
    en_json_int(j, "attempts", c->attempts);
    j_time(j, "received", c->r.received_ms);
    j_time(j, "started", c->r.started_ms);
    j_time(j, "finished", c->r.finished_ms);
    j_text_opt(j, "last_error", c->last_error);
    j_result(j, &c->r);
    j_beats(j, &c->r);
    j_frames(j, &c->r);
    en_json_end_object(j);
}

static void j_study_result(en_json *j, const en_store_study *s)
{
    const en_store_study_result *r = &s->res;

    en_json_begin_object(j, "result");
    en_json_int(j, "version", r->version);
    j_time(j, "computed", r->computed_ms);
    en_json_bool(j, "stale", s->stale != 0);
    en_json_int(j, "clips_total", r->clips_total);
    en_json_int(j, "clips_usable", r->clips_usable);
    en_json_int(j, "beats", r->beats);
    en_json_double(j, "ef_mean", r->ef_mean);
    en_json_double(j, "ef_sd", r->ef_sd);
    en_json_double(j, "clip_ef_min", r->clip_ef_min);
    en_json_double(j, "clip_ef_max", r->clip_ef_max);
    j_text_opt(j, "ef_class", r->ef_class);
    en_json_double(j, "threshold_reduced", r->threshold_reduced);
    en_json_double(j, "threshold_low", r->threshold_low);
    en_json_double(j, "threshold_very_low", r->threshold_very_low);
    j_below(j, "below_50", r->ef_mean, 50);
    j_below(j, "below_40", r->ef_mean, 40);
    j_below(j, "below_35", r->ef_mean, 35);
    en_json_double(j, "disagreement_points", r->disagreement_points);
    en_json_int(j, "flags", (long long)r->flags);
    en_json_string(j, "flags_text", r->flags_text);
    j_text_opt(j, "no_ef_reason", r->no_ef_reason);
    en_json_end_object(j);
}

static void j_study(en_json *j, const en_store_study *s)
{
    en_json_begin_object(j, NULL);
    en_json_string(j, "pseudonym", s->pseudonym);
    j_time(j, "first_received", s->first_received_ms);
    j_time(j, "last_received", s->last_received_ms);
    j_study_result(j, s);
    en_json_begin_array(j, "clips");
    for (int i = 0; i < s->nclips; i++)
        j_clip(j, &s->clip[i]);
    en_json_end_array(j);
    en_json_end_object(j);
}

/* ---- the walk ------------------------------------------------------------------- */

static int export_one(const en_store_study *summary, void *ud)
{
    export_ctx *x = ud;
    en_store_study s;
    int rc = en__study_show_locked(x->st, summary->pseudonym,
                                   x->fmt == EN_STORE_EXPORT_CLIPS_CSV ? 0 : EN_STORE_SHOW_FRAMES,
                                   &s, x->err);

    if (rc)
        return rc;
    if (x->fmt == EN_STORE_EXPORT_JSON)
        j_study(&x->json, &s);
    for (int i = 0; x->fmt != EN_STORE_EXPORT_JSON && i < s.nclips; i++) {
        if (x->fmt == EN_STORE_EXPORT_SIZE_CSV)
            size_rows(x->out, &s.clip[i].r);
        else
            clip_rows(x->out, &s.clip[i].r);
    }
    if (ferror(x->out))
        rc = en_err_set(x->err, EN_EIO, "writing the export: %s", strerror(errno));
    en_store_study_free(&s);
    return rc;
}

static int export_locked(export_ctx *x, const en_store_filter *f)
{
    int rc;

    if (x->fmt == EN_STORE_EXPORT_SIZE_CSV)
        fputs("Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n", x->out);
    if (x->fmt == EN_STORE_EXPORT_JSON) {
        en_json_init(&x->json, x->out, 0);
        en_json_begin_object(&x->json, NULL);
        en_json_string(&x->json, "format", "echonetd-results");
        en_json_int(&x->json, "schema_version", en_store_schema_version());
        en_json_begin_array(&x->json, "studies");
    }
    if ((rc = en_store_study_list(x->st, f, export_one, x, x->err)))
        return rc;
    if (x->fmt == EN_STORE_EXPORT_JSON) {
        en_json_end_array(&x->json);
        en_json_end_object(&x->json);
        en_json_finish(&x->json);
    }
    return EN_OK;
}

int en_store_export(en_store *st, en_store_export_format fmt,
                    const en_store_filter *f, FILE *out, en_err *err)
{
    export_ctx x = {st, fmt, out, {0}, err};
    int rc;

    if ((unsigned)fmt > EN_STORE_EXPORT_JSON)
        return en_err_set(err, EN_EINVAL, "export: unknown format %d", (int)fmt);
    if ((rc = en__db_exec(st, "BEGIN", "exporting", err)))
        return rc;
    rc = export_locked(&x, f);
    en__db_rollback(st);
    if (rc)
        return rc;
    if (fflush(out) != 0 || ferror(out))
        return en_err_set(err, EN_EIO, "writing the export: %s", strerror(errno));
    return EN_OK;
}

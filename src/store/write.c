/*
 * write.c - writing one clip's complete result, and registering models.
 *
 * A result is written in one IMMEDIATE transaction: models, the clip row
 * (and its study's row when new), its beats and frames, a "done" event and
 * the study's result marked stale.  Any failure rolls everything back, so a
 * reader (or a daemon restarted after a crash) sees either the previous
 * result or the new one, never a mixture.  Re-processing finds the clip by
 * its row id or duplicate key and replaces its result: the row (and its id,
 * so its event history) stays, beats and frames are rewritten.  Another
 * instance of the same study is another clip: nothing here ever touches a
 * clip other than the one being written.
 *
 * Values are checked by the schema's CHECK constraints; this file checks
 * only what SQL cannot see: strings terminated, counts and array pointers
 * consistent, frame indices inside the video.
 */
#include "en_util.h"
#include "store_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void en_store_result_init(en_store_result *r)
{
    memset(r, 0, sizeof *r);
    r->src_rows = r->src_cols = r->src_frames = EN_STORE_NONE;
    r->video_frames = EN_STORE_NONE;
    r->fps = r->sector_confidence = NAN;
    r->ef_mean = r->ef_sd = NAN;
    r->threshold_reduced = r->threshold_low = r->threshold_very_low = NAN;
    r->ms.read = r->ms.sector = r->ms.video = r->ms.segment = NAN;
    r->ms.ef = r->ms.analysis = r->ms.total = NAN;
}

void en_store_study_result_init(en_store_study_result *r)
{
    memset(r, 0, sizeof *r);
    r->ef_mean = r->ef_sd = r->clip_ef_min = r->clip_ef_max = NAN;
    r->threshold_reduced = r->threshold_low = r->threshold_very_low = NAN;
    r->disagreement_points = NAN;
}

/* ---- models ---------------------------------------------------------------- */

static int check_model(en_store *st, const en_store_model *m, en_err *err)
{
    if (!en__is_terminated(m->sha256, sizeof m->sha256) ||
        !en__is_terminated(m->architecture, sizeof m->architecture) ||
        !en__is_terminated(m->origin, sizeof m->origin) ||
        !en__is_terminated(m->file_name, sizeof m->file_name) ||
        !en__is_terminated(m->metadata_json, sizeof m->metadata_json))
        return en_err_set(err, EN_EINVAL, "model: a text field is not terminated");
    if (!en__is_hex(m->sha256, 64, 64))
        return en_err_set(err, EN_EINVAL,
                          "model '%.70s': the identity must be 64 lowercase hex digits "
                          "(SHA-256)", m->sha256);
    if (!m->architecture[0])
        return en_err_set(err, EN_EINVAL, "model %.12s: no architecture given", m->sha256);
    return EN_OK;
}

int en__model_put(en_store *st, const en_store_model *m, en_err *err)
{
    sqlite3_stmt *s;
    char what[128];
    int rc;

    if ((rc = check_model(st, m, err)))
        return rc;
    rc = en__db_prepare(st,
        "INSERT INTO models (sha256, architecture, origin, file_name, metadata_json, "
        "                    first_seen, last_seen) "
        "VALUES (:sha, :arch, coalesce(:origin, ''), coalesce(:file, ''), :meta, :now, :now) "
        "ON CONFLICT (sha256) DO UPDATE SET "
        "  origin = coalesce(nullif(excluded.origin, ''), models.origin), "
        "  file_name = coalesce(nullif(excluded.file_name, ''), models.file_name), "
        "  metadata_json = coalesce(excluded.metadata_json, models.metadata_json), "
        "  last_seen = excluded.last_seen "
        "WHERE models.architecture = excluded.architecture", &s, err);
    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":sha", m->sha256, &rc);
    en__bind_text(s, ":arch", m->architecture, &rc);
    en__bind_text(s, ":origin", m->origin, &rc);
    en__bind_text(s, ":file", m->file_name, &rc);
    en__bind_text(s, ":meta", m->metadata_json, &rc);
    en__bind_time(s, ":now", en_wall_ms(), &rc);
    snprintf(what, sizeof what, "registering model %.12s", m->sha256);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, what, err) : en__db_write(st, s, what, err);
    en__db_finalize(s);
    /* The upsert's WHERE makes a clash a no-op; tell it apart by changes(). */
    if (!rc && sqlite3_changes(st->db) == 0)
        rc = en_err_set(err, EN_EINVAL,
                        "database %s: model %.12s is already registered with another "
                        "architecture than '%s': the same weights cannot be two networks",
                        st->path, m->sha256, m->architecture);
    return rc;
}

int en_store_model_put(en_store *st, const en_store_model *m, en_err *err)
{
    int rc;

    if ((rc = en__require_writable(st, err)) ||
        (rc = en__db_begin(st, "registering a model", err)))
        return rc;
    if ((rc = en__model_put(st, m, err))) {
        en__db_rollback(st);
        return rc;
    }
    return en__db_commit(st, "registering a model", err);
}

/* ---- checking a result ------------------------------------------------------- */

static int check_strings(const en_store_result *r, en_err *err)
{
#define TERM(f) en__is_terminated(r->f, sizeof r->f)
    if (!TERM(pseudonym) || !TERM(dedup_key) || !TERM(job) || !TERM(fps_source) ||
        !TERM(transfer_syntax) || !TERM(sector_method) || !TERM(ef_class) ||
        !TERM(flags_text) || !TERM(sop_class) || !TERM(modality) || !TERM(regions) ||
        !TERM(view_dicom) || !TERM(view_code) || !TERM(video_file) || !TERM(verdict) ||
        !TERM(verdict_codes) || !TERM(verdict_text) || !TERM(evidence_json))
        return en_err_set(err, EN_EINVAL, "result: a text field is not terminated");
#undef TERM
    if (!en__is_hex(r->pseudonym, 8, 64))
        return en_err_set(err, EN_EINVAL,
                          "result: the pseudonym must be 8-64 lowercase hex digits, "
                          "never an identifier from the DICOM");
    if (r->dedup_key[0] && !en__is_hex(r->dedup_key, 16, 64))
        return en_err_set(err, EN_EINVAL,
                          "study %s: the duplicate key must be a keyed hash (16-64 "
                          "lowercase hex digits), never the UID itself", r->pseudonym);
    if (r->clip_id < 0)
        return en_err_set(err, EN_EINVAL, "study %s: clip id %lld is not a row id",
                          r->pseudonym, (long long)r->clip_id);
    return EN_OK;
}

static int check_arrays(const en_store_result *r, en_err *err)
{
    if (r->nbeats < 0 || r->nframes < 0 || (r->nbeats && !r->beats) ||
        (r->nframes && !r->frames))
        return en_err_set(err, EN_EINVAL, "study %s: inconsistent beat or frame arrays",
                          r->pseudonym);
    if (r->flags >= (UINT64_C(1) << 63))
        return en_err_set(err, EN_EINVAL, "study %s: quality flags use bit 63, which "
                          "SQLite cannot store", r->pseudonym);
    if (r->nframes && r->video_frames != EN_STORE_NONE && r->video_frames != r->nframes)
        return en_err_set(err, EN_EINVAL, "study %s: %d frame sizes for a video of %d frames",
                          r->pseudonym, r->nframes, r->video_frames);
    for (int i = 0; r->nframes && i < r->nbeats; i++) {
        const en_store_beat *b = &r->beats[i];
        if (b->systole_frame >= r->nframes || b->clip_start >= r->nframes ||
            b->ed_frame >= r->nframes)
            return en_err_set(err, EN_EINVAL, "study %s: beat %d refers to a frame past "
                              "the video's %d frames", r->pseudonym, i, r->nframes);
    }
    return EN_OK;
}

/* ---- the clip row ------------------------------------------------------------- */

/* Creates a bare clip of study_id (the UPDATE below fills it). */
static int insert_bare(en_store *st, const en_store_result *r, int64_t study_id, int64_t *id,
                       en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO clips (study_id, received_at, status) "
        "VALUES (:study, :received, 'processing')", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(s, ":study", study_id, &rc);
    en__bind_time(s, ":received", r->received_ms ? r->received_ms : en_wall_ms(), &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "creating the clip row", err);
    en__db_finalize(s);
    if (!rc)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

static const char update_sql[] =
    "UPDATE clips SET "
    " dedup_key = coalesce(:dedup_key, dedup_key), "
    " job = coalesce(:job, job), status = 'done', "
    " received_at = coalesce(:received_at, received_at), "
    " started_at = coalesce(:started_at, started_at), finished_at = :finished_at, "
    " sop_class = :sop_class, modality = :modality, regions = :regions, "
    " view_dicom = :view_dicom, view_code = :view_code, video_file = :video_file, "
    " src_rows = :src_rows, src_cols = :src_cols, src_frames = :src_frames, "
    " fps = :fps, fps_source = :fps_source, transfer_syntax = :transfer_syntax, "
    " sector_method = :sector_method, sector_confidence = :sector_confidence, "
    " video_frames = :video_frames, seg_model = :seg_model, ef_model = :ef_model, "
    " ef_mean = :ef_mean, ef_sd = :ef_sd, ef_class = :ef_class, "
    " threshold_reduced = :thr_reduced, threshold_low = :thr_low, "
    " threshold_very_low = :thr_very_low, flags = :flags, "
    " flags_text = coalesce(:flags_text, ''), verdict = :verdict, "
    " verdict_codes = coalesce(:verdict_codes, ''), "
    " verdict_text = coalesce(:verdict_text, ''), evidence_json = :evidence_json, "
    " ms_read = :ms_read, ms_sector = :ms_sector, ms_video = :ms_video, "
    " ms_segment = :ms_segment, ms_ef = :ms_ef, ms_analysis = :ms_analysis, "
    " ms_total = :ms_total "
    "WHERE id = :id";

static void bind_result(sqlite3_stmt *s, const en_store_result *r, int64_t id, int *rc)
{
    en__bind_int(s, ":id", id, rc);
    en__bind_text(s, ":dedup_key", r->dedup_key, rc);
    en__bind_text(s, ":job", r->job, rc);
    en__bind_time(s, ":received_at", r->received_ms, rc);
    en__bind_time(s, ":started_at", r->started_ms, rc);
    en__bind_time(s, ":finished_at", r->finished_ms ? r->finished_ms : en_wall_ms(), rc);
    en__bind_text(s, ":sop_class", r->sop_class, rc);
    en__bind_text(s, ":modality", r->modality, rc);
    en__bind_text(s, ":regions", r->regions, rc);
    en__bind_text(s, ":view_dicom", r->view_dicom, rc);
    en__bind_text(s, ":view_code", r->view_code, rc);
    en__bind_text(s, ":video_file", r->video_file, rc);
    en__bind_int_opt(s, ":src_rows", r->src_rows, rc);
    en__bind_int_opt(s, ":src_cols", r->src_cols, rc);
    en__bind_int_opt(s, ":src_frames", r->src_frames, rc);
    en__bind_double(s, ":fps", r->fps, rc);
    en__bind_text(s, ":fps_source", r->fps_source, rc);
    en__bind_text(s, ":transfer_syntax", r->transfer_syntax, rc);
    en__bind_text(s, ":sector_method", r->sector_method, rc);
    en__bind_double(s, ":sector_confidence", r->sector_confidence, rc);
    en__bind_int_opt(s, ":video_frames", r->video_frames, rc);
    en__bind_text(s, ":seg_model", r->seg_model.sha256, rc);
    en__bind_text(s, ":ef_model", r->ef_model.sha256, rc);
    en__bind_double(s, ":ef_mean", r->ef_mean, rc);
    en__bind_double(s, ":ef_sd", r->ef_sd, rc);
    en__bind_text(s, ":ef_class", r->ef_class, rc);
    en__bind_double(s, ":thr_reduced", r->threshold_reduced, rc);
    en__bind_double(s, ":thr_low", r->threshold_low, rc);
    en__bind_double(s, ":thr_very_low", r->threshold_very_low, rc);
    en__bind_int(s, ":flags", (int64_t)r->flags, rc);
    en__bind_text(s, ":flags_text", r->flags_text, rc);
    en__bind_text(s, ":verdict", r->verdict, rc);
    en__bind_text(s, ":verdict_codes", r->verdict_codes, rc);
    en__bind_text(s, ":verdict_text", r->verdict_text, rc);
    en__bind_text(s, ":evidence_json", r->evidence_json, rc);
    en__bind_double(s, ":ms_read", r->ms.read, rc);
    en__bind_double(s, ":ms_sector", r->ms.sector, rc);
    en__bind_double(s, ":ms_video", r->ms.video, rc);
    en__bind_double(s, ":ms_segment", r->ms.segment, rc);
    en__bind_double(s, ":ms_ef", r->ms.ef, rc);
    en__bind_double(s, ":ms_analysis", r->ms.analysis, rc);
    en__bind_double(s, ":ms_total", r->ms.total, rc);
}

static int update_row(en_store *st, const en_store_result *r, int64_t id, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st, update_sql, &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    bind_result(s, r, id, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding the clip row", err)
                         : en__db_write(st, s, "writing the clip row", err);
    en__db_finalize(s);
    return rc;
}

/* ---- beats and frames ------------------------------------------------------- */

static int delete_children(en_store *st, int64_t id, en_err *err)
{
    static const char *const sql[] = {
        "DELETE FROM beats WHERE clip_id = :id",
        "DELETE FROM frames WHERE clip_id = :id",
    };
    int rc = EN_OK;

    for (size_t i = 0; !rc && i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *s;
        int brc = SQLITE_OK;
        if ((rc = en__db_prepare(st, sql[i], &s, err)))
            break;
        en__bind_int(s, ":id", id, &brc);
        rc = brc != SQLITE_OK ? en__db_fail(st, brc, "binding", err)
                              : en__db_write(st, s, "removing the previous result", err);
        en__db_finalize(s);
    }
    return rc;
}

static int insert_beats(en_store *st, const en_store_result *r, int64_t id, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO beats (clip_id, beat, systole_frame, clip_start, shift, ef, "
        "                   ed_frame, lv_size_ed, lv_size_es) "
        "VALUES (:id, :beat, :systole, :clip, :shift, :ef, :ed, :size_ed, :size_es)",
        &s, err);

    for (int i = 0; !rc && i < r->nbeats; i++) {
        const en_store_beat *b = &r->beats[i];
        char what[64];
        int brc = SQLITE_OK;
        en__bind_int(s, ":id", id, &brc);
        en__bind_int(s, ":beat", i, &brc);
        en__bind_int(s, ":systole", b->systole_frame, &brc);
        en__bind_int(s, ":clip", b->clip_start, &brc);
        en__bind_int(s, ":shift", b->shift, &brc);
        en__bind_double(s, ":ef", b->ef, &brc);
        en__bind_int_opt(s, ":ed", b->ed_frame, &brc);
        en__bind_int_opt(s, ":size_ed", b->lv_size_ed, &brc);
        en__bind_int_opt(s, ":size_es", b->lv_size_es, &brc);
        snprintf(what, sizeof what, "writing beat %d", i);
        rc = brc != SQLITE_OK ? en__db_fail(st, brc, what, err) : en__db_write(st, s, what, err);
    }
    en__db_finalize(s);
    return rc;
}

static int insert_frames(en_store *st, const en_store_result *r, int64_t id, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO frames (clip_id, frame, lv_size, systole) "
        "VALUES (:id, :frame, :size, :systole)", &s, err);

    for (int i = 0; !rc && i < r->nframes; i++) {
        char what[64];
        int brc = SQLITE_OK;
        en__bind_int(s, ":id", id, &brc);
        en__bind_int(s, ":frame", i, &brc);
        en__bind_int(s, ":size", r->frames[i].lv_size, &brc);
        en__bind_int(s, ":systole", r->frames[i].systole, &brc);
        snprintf(what, sizeof what, "writing frame %d", i);
        rc = brc != SQLITE_OK ? en__db_fail(st, brc, what, err) : en__db_write(st, s, what, err);
    }
    en__db_finalize(s);
    return rc;
}

/* ---- the whole result ---------------------------------------------------------- */

static int done_event(en_store *st, const en_store_result *r, const en_store_ref *ref,
                      int replaced, en_err *err)
{
    const char *how = replaced ? "replaced" : "stored";
    char msg[EN_STORE_TEXT_MAX];

    if (!strcmp(r->verdict, "not_analysed"))
        snprintf(msg, sizeof msg, "clip %s: not analysed: %.400s", how, r->verdict_text);
    else if (isfinite(r->ef_mean))
        snprintf(msg, sizeof msg, "clip %s: EF %.1f %% (SD %.1f) over %d beat%s, %d frames%s%s",
                 how, r->ef_mean, isfinite(r->ef_sd) ? r->ef_sd : 0.0, r->nbeats,
                 r->nbeats == 1 ? "" : "s", r->nframes, r->verdict[0] ? "; " : "",
                 r->verdict);
    else
        snprintf(msg, sizeof msg, "clip %s: no EF (%d beats), %d frames%s%s", how,
                 r->nbeats, r->nframes, r->verdict[0] ? "; " : "", r->verdict);
    return en__event_insert(st, ref->study_id, ref->id, EN_STORE_EV_DONE, NULL, EN_STORE_NONE,
                            r->job, NULL, 0, msg, err);
}

/* The clip r names: by row id, else by duplicate key; EN_ENOTFOUND when
 * neither finds one.  Refuses a clip of another study. */
static int find_clip(en_store *st, const en_store_result *r, int64_t study_id,
                     en_store_ref *ref, en_err *err)
{
    sqlite3_stmt *s;
    char status[16];
    int rc;

    if (!r->clip_id && !r->dedup_key[0])
        return EN_ENOTFOUND;
    rc = en__db_prepare(st, r->clip_id
                                ? "SELECT id, study_id, status FROM clips WHERE id = :v"
                                : "SELECT id, study_id, status FROM clips WHERE dedup_key = :v",
                        &s, err);
    if (rc)
        return rc;
    rc = SQLITE_OK;
    if (r->clip_id)
        en__bind_int(s, ":v", r->clip_id, &rc);
    else
        en__bind_text(s, ":v", r->dedup_key, &rc);
    if (rc != SQLITE_OK) {
        en__db_finalize(s);
        return en__db_fail(st, rc, "binding", err);
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(ref, 0, sizeof *ref);
        ref->id = sqlite3_column_int64(s, 0);
        ref->study_id = sqlite3_column_int64(s, 1);
        en__col_text(s, 2, status, sizeof status);
        if (en_store_status_parse(status, &ref->status))
            ref->status = EN_STORE_FAILED;   /* unreachable: the CHECK lists them */
        rc = ref->study_id == study_id
                 ? EN_OK
                 : en_err_set(err, EN_EINVAL,
                              "database %s: study %s: %s belongs to a clip of another study "
                              "(clip %lld); was the site secret changed?", st->path,
                              r->pseudonym, r->clip_id ? "the clip id" : "its duplicate key",
                              (long long)ref->id);
    } else if (rc == SQLITE_DONE) {
        rc = r->clip_id ? en_err_set(err, EN_ENOTFOUND, "database %s: no clip %lld",
                                     st->path, (long long)r->clip_id)
                        : EN_ENOTFOUND;
    } else {
        rc = en__db_fail(st, rc, "looking a clip up", err);
    }
    en__db_finalize(s);
    return rc;
}

static int write_locked(en_store *st, const en_store_result *r, int64_t *id, en_err *err)
{
    en_store_ref ref;
    int64_t study_id;
    int rc, replaced = 0;

    if ((r->seg_model.sha256[0] && (rc = en__model_put(st, &r->seg_model, err))) ||
        (r->ef_model.sha256[0] && (rc = en__model_put(st, &r->ef_model, err))) ||
        (rc = en__study_touch(st, r->pseudonym, r->received_ms, &study_id, err)))
        return rc;
    rc = find_clip(st, r, study_id, &ref, err);
    if (rc == EN_ENOTFOUND && !r->clip_id) {
        memset(&ref, 0, sizeof ref);
        ref.study_id = study_id;
        rc = insert_bare(st, r, study_id, &ref.id, err);
    } else if (!rc) {
        replaced = ref.status == EN_STORE_DONE;
        rc = delete_children(st, ref.id, err);
    }
    if (rc || (rc = update_row(st, r, ref.id, err)) || (rc = insert_beats(st, r, ref.id, err)) ||
        (rc = insert_frames(st, r, ref.id, err)) ||
        (rc = done_event(st, r, &ref, replaced, err)))
        return rc;
    *id = ref.id;
    return EN_OK;
}

int en_store_write_result(en_store *st, const en_store_result *r,
                          int64_t *clip_id, en_err *err)
{
    char what[128];
    int64_t id = 0;
    int rc;

    if ((rc = en__require_writable(st, err)) || (rc = check_strings(r, err)) ||
        (rc = check_arrays(r, err)))
        return rc;
    snprintf(what, sizeof what, "writing a clip of study %s", r->pseudonym);
    if ((rc = en__db_begin(st, what, err)))
        return rc;
    if ((rc = write_locked(st, r, &id, err))) {
        en__db_rollback(st);
        return en_err_prefix(err, "study %s: clip result not stored", r->pseudonym);
    }
    if ((rc = en__db_commit(st, what, err)))
        return rc;
    if (clip_id)
        *clip_id = id;
    return EN_OK;
}

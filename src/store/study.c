/*
 * study.c - studies as wholes: listing them with their current result,
 * showing one with all its clips, storing a new version of its result, and
 * finding the studies whose result is due.
 *
 * The store does not decide what a study's result is (en_study.h does);
 * it guarantees how it is kept: the clips are read and the new version,
 * its event and the cleared stale mark are written in one IMMEDIATE
 * transaction, so a result always describes exactly the clips it was
 * computed from, and a crash between a clip's change and the study's
 * recomputation leaves the study marked stale for the next run.
 */
#include "en_util.h"
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Column order of study_select; read_study() depends on it. */
enum {
    S_ID, S_PSEUDONYM, S_FIRST, S_LAST, S_STALE, S_VERSION, S_AT, S_CLIPS_TOTAL,
    S_CLIPS_USABLE, S_BEATS, S_EF_MEAN, S_EF_SD, S_CLIP_MIN, S_CLIP_MAX, S_CLASS,
    S_THR_REDUCED, S_THR_LOW, S_THR_VERY_LOW, S_DISAGREE, S_FLAGS, S_FLAGS_TEXT, S_NO_EF,
    S_N_CLIPS, S_N_DONE, S_N_FAILED, S_N_UNFINISHED
};

static const char study_select[] =
    "SELECT s.id, s.pseudonym, s.first_received_at, s.last_received_at, s.result_stale, "
    " s.result_version, s.result_at, s.clips_total, s.clips_usable, s.beats, s.ef_mean, "
    " s.ef_sd, s.clip_ef_min, s.clip_ef_max, s.ef_class, s.threshold_reduced, "
    " s.threshold_low, s.threshold_very_low, s.disagreement_points, s.flags, s.flags_text, "
    " s.no_ef_reason, "
    " (SELECT count(*) FROM clips c WHERE c.study_id = s.id), "
    " (SELECT count(*) FROM clips c WHERE c.study_id = s.id AND c.status = 'done'), "
    " (SELECT count(*) FROM clips c WHERE c.study_id = s.id AND c.status = 'failed'), "
    " (SELECT count(*) FROM clips c WHERE c.study_id = s.id "
    "    AND c.status IN ('queued', 'processing')) "
    "FROM studies s ";

static void read_study(sqlite3_stmt *s, en_store_study *out)
{
    en_store_study_result *r = &out->res;

    memset(out, 0, sizeof *out);
    en_store_study_result_init(r);
    out->id = sqlite3_column_int64(s, S_ID);
    en__col_text(s, S_PSEUDONYM, out->pseudonym, sizeof out->pseudonym);
    out->first_received_ms = en__col_time(s, S_FIRST);
    out->last_received_ms = en__col_time(s, S_LAST);
    out->stale = sqlite3_column_int(s, S_STALE);
    r->version = sqlite3_column_int(s, S_VERSION);
    r->computed_ms = en__col_time(s, S_AT);
    r->clips_total = sqlite3_column_int(s, S_CLIPS_TOTAL);
    r->clips_usable = sqlite3_column_int(s, S_CLIPS_USABLE);
    r->beats = sqlite3_column_int(s, S_BEATS);
    r->ef_mean = en__col_double(s, S_EF_MEAN);
    r->ef_sd = en__col_double(s, S_EF_SD);
    r->clip_ef_min = en__col_double(s, S_CLIP_MIN);
    r->clip_ef_max = en__col_double(s, S_CLIP_MAX);
    en__col_text(s, S_CLASS, r->ef_class, sizeof r->ef_class);
    r->threshold_reduced = en__col_double(s, S_THR_REDUCED);
    r->threshold_low = en__col_double(s, S_THR_LOW);
    r->threshold_very_low = en__col_double(s, S_THR_VERY_LOW);
    r->disagreement_points = en__col_double(s, S_DISAGREE);
    r->flags = (uint64_t)sqlite3_column_int64(s, S_FLAGS);
    en__col_text(s, S_FLAGS_TEXT, r->flags_text, sizeof r->flags_text);
    en__col_text(s, S_NO_EF, r->no_ef_reason, sizeof r->no_ef_reason);
    out->clips = sqlite3_column_int(s, S_N_CLIPS);
    out->clips_done = sqlite3_column_int(s, S_N_DONE);
    out->clips_failed = sqlite3_column_int(s, S_N_FAILED);
    out->clips_unfinished = sqlite3_column_int(s, S_N_UNFINISHED);
}

/* ---- list / count ---------------------------------------------------------------- */

int en_store_study_list(en_store *st, const en_store_filter *f, en_store_study_cb cb,
                        void *ud, en_err *err)
{
    en_store_study study;
    sqlite3_stmt *s;
    int rc = en__prepare_filtered(st, study_select, f, 0, 1, &s, err);

    while (!rc) {
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "listing studies", err);
            break;
        }
        read_study(s, &study);
        rc = cb(&study, ud);
    }
    en__db_finalize(s);
    return rc;
}

int en_store_study_count(en_store *st, const en_store_filter *f, int64_t *n, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__prepare_filtered(st, "SELECT count(*) FROM studies s ", f, 0, 0, &s, err);

    if (rc)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = EN_OK;
    } else {
        rc = en__db_fail(st, rc, "counting studies", err);
    }
    en__db_finalize(s);
    return rc;
}

/* ---- show ------------------------------------------------------------------------- */

static int read_one(en_store *st, const char *pseudonym, en_store_study *out, en_err *err)
{
    char sql[sizeof study_select + 40];
    sqlite3_stmt *s;
    int rc, brc = SQLITE_OK;

    snprintf(sql, sizeof sql, "%sWHERE s.pseudonym = :p", study_select);
    if ((rc = en__db_prepare(st, sql, &s, err)))
        return rc;
    en__bind_text(s, ":p", pseudonym, &brc);
    rc = brc != SQLITE_OK ? brc : sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_study(s, out);
        rc = EN_OK;
    } else if (rc == SQLITE_DONE) {
        rc = en_err_set(err, EN_ENOTFOUND, "database %s: no study %s", st->path, pseudonym);
    } else {
        rc = en__db_fail(st, rc, "reading a study", err);
    }
    en__db_finalize(s);
    return rc;
}

static int load_clips(en_store *st, en_store_study *out, int frames, en_err *err)
{
    char sql[4096];   /* en__clip_select (about 1.6 KB) and a clause */
    sqlite3_stmt *s;
    int cap = 0, rc, brc = SQLITE_OK;

    snprintf(sql, sizeof sql, "%sWHERE c.study_id = :id ORDER BY c.received_at, c.id",
             en__clip_select);
    if ((rc = en__db_prepare(st, sql, &s, err)))
        return rc;
    en__bind_int(s, ":id", out->id, &brc);
    if (brc != SQLITE_OK)
        rc = en__db_fail(st, brc, "reading the clips", err);
    while (!rc) {
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "reading the clips", err);
            break;
        }
        if (out->nclips == cap) {
            en_store_clip *grown;
            cap = cap ? 2 * cap : 16;
            grown = realloc(out->clip, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = en_err_set(err, EN_ENOMEM, "database %s: study %s: out of memory for "
                                "its clips", st->path, out->pseudonym);
                break;
            }
            out->clip = grown;
        }
        en__clip_read(s, &out->clip[out->nclips++]);
    }
    en__db_finalize(s);
    for (int i = 0; !rc && i < out->nclips; i++)
        rc = en__clip_load_children(st, &out->clip[i], frames, err);
    return rc;
}

int en__study_show_locked(en_store *st, const char *pseudonym, int what, en_store_study *out,
                          en_err *err)
{
    int rc;

    memset(out, 0, sizeof *out);
    if (!pseudonym || !*pseudonym)
        return en_err_set(err, EN_EINVAL, "show: no pseudonym given");
    if ((rc = read_one(st, pseudonym, out, err)) ||
        (rc = load_clips(st, out, (what & EN_STORE_SHOW_FRAMES) != 0, err)) ||
        ((what & EN_STORE_SHOW_EVENTS) &&
         (rc = en__events_load(st, "study_id = :id", out->id, &out->events, &out->nevents,
                               err)))) {
        en_store_study_free(out);
        return rc;
    }
    return EN_OK;
}

int en_store_study_show(en_store *st, const char *pseudonym, int what, en_store_study *out,
                        en_err *err)
{
    int rc;

    /* One read transaction: the clips and the study row agree. */
    if ((rc = en__db_exec(st, "BEGIN", "reading a study", err)))
        return rc;
    rc = en__study_show_locked(st, pseudonym, what, out, err);
    en__db_rollback(st);
    return rc;
}

void en_store_study_free(en_store_study *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nclips; i++)
        en_store_clip_free(&s->clip[i]);
    free(s->clip);
    free(s->events);
    s->clip = NULL;
    s->events = NULL;
    s->nclips = s->nevents = 0;
}

/* ---- a new result version ---------------------------------------------------------- */

static const char result_sql[] =
    "UPDATE studies SET result_stale = 0, result_version = :version, result_at = :at, "
    " clips_total = :clips_total, clips_usable = :clips_usable, beats = :beats, "
    " ef_mean = :ef_mean, ef_sd = :ef_sd, clip_ef_min = :clip_min, clip_ef_max = :clip_max, "
    " ef_class = :ef_class, threshold_reduced = :thr_reduced, threshold_low = :thr_low, "
    " threshold_very_low = :thr_very_low, disagreement_points = :disagree, "
    " flags = :flags, flags_text = coalesce(:flags_text, ''), no_ef_reason = :no_ef "
    "WHERE id = :id";

static int check_result(en_store *st, const en_store_study *s, const en_store_study_result *r,
                        en_err *err)
{
    if (!en__is_terminated(r->ef_class, sizeof r->ef_class) ||
        !en__is_terminated(r->flags_text, sizeof r->flags_text) ||
        !en__is_terminated(r->no_ef_reason, sizeof r->no_ef_reason))
        return en_err_set(err, EN_EINVAL, "study %s: a text field of its result is not "
                          "terminated", s->pseudonym);
    if (r->clips_total < 0 || r->clips_usable < 0 || r->beats < 0 ||
        r->clips_usable > r->clips_total || r->flags >= (UINT64_C(1) << 63))
        return en_err_set(err, EN_EINVAL, "database %s: study %s: inconsistent result "
                          "(%d usable clips of %d, %d beats)", st->path, s->pseudonym,
                          r->clips_usable, r->clips_total, r->beats);
    return EN_OK;
}

static int write_result(en_store *st, const en_store_study *s, const en_store_study_result *r,
                        int version, en_err *err)
{
    sqlite3_stmt *q;
    int rc = en__db_prepare(st, result_sql, &q, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(q, ":id", s->id, &rc);
    en__bind_int(q, ":version", version, &rc);
    en__bind_time(q, ":at", en_wall_ms(), &rc);
    en__bind_int(q, ":clips_total", r->clips_total, &rc);
    en__bind_int(q, ":clips_usable", r->clips_usable, &rc);
    en__bind_int(q, ":beats", r->beats, &rc);
    en__bind_double(q, ":ef_mean", r->ef_mean, &rc);
    en__bind_double(q, ":ef_sd", r->ef_sd, &rc);
    en__bind_double(q, ":clip_min", r->clip_ef_min, &rc);
    en__bind_double(q, ":clip_max", r->clip_ef_max, &rc);
    en__bind_text(q, ":ef_class", r->ef_class, &rc);
    en__bind_double(q, ":thr_reduced", r->threshold_reduced, &rc);
    en__bind_double(q, ":thr_low", r->threshold_low, &rc);
    en__bind_double(q, ":thr_very_low", r->threshold_very_low, &rc);
    en__bind_double(q, ":disagree", r->disagreement_points, &rc);
    en__bind_int(q, ":flags", (int64_t)r->flags, &rc);
    en__bind_text(q, ":flags_text", r->flags_text, &rc);
    en__bind_text(q, ":no_ef", r->no_ef_reason, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding the study result", err)
                         : en__db_write(st, q, "writing the study result", err);
    en__db_finalize(q);
    return rc;
}

static int result_event(en_store *st, const en_store_study *s, const en_store_study_result *r,
                        int version, en_err *err)
{
    char msg[EN_STORE_TEXT_MAX];

    if (isfinite(r->ef_mean))
        snprintf(msg, sizeof msg, "study result v%d: EF %.1f %% (SD %.1f) over %d beat%s of "
                 "%d usable clip%s (of %d); flags: %.200s", version, r->ef_mean,
                 isfinite(r->ef_sd) ? r->ef_sd : 0.0, r->beats, r->beats == 1 ? "" : "s",
                 r->clips_usable, r->clips_usable == 1 ? "" : "s", r->clips_total,
                 r->flags_text[0] ? r->flags_text : "none");
    else
        snprintf(msg, sizeof msg, "study result v%d: no EF (%d usable clips of %d): %.300s",
                 version, r->clips_usable, r->clips_total,
                 r->no_ef_reason[0] ? r->no_ef_reason : "no reason given");
    return en__event_insert(st, s->id, 0, EN_STORE_EV_RESULT, NULL, EN_STORE_NONE, NULL, NULL,
                            version, msg, err);
}

static int update_locked(en_store *st, const char *pseudonym, int force,
                         en_store_study_compute fn, void *ud, int *version, int *changed,
                         en_err *err)
{
    en_store_study s;
    en_store_study_result r;
    int rc = en__study_show_locked(st, pseudonym, 0, &s, err);

    if (rc)
        return rc;
    *version = s.res.version;
    if (!s.stale && !force) {
        en_store_study_free(&s);
        return EN_OK;
    }
    en_store_study_result_init(&r);
    if (!(rc = fn(&s, &r, ud, err)) && !(rc = check_result(st, &s, &r, err)) &&
        !(rc = write_result(st, &s, &r, s.res.version + 1, err)) &&
        !(rc = result_event(st, &s, &r, s.res.version + 1, err))) {
        *version = s.res.version + 1;
        *changed = 1;
    }
    en_store_study_free(&s);
    return rc;
}

int en_store_study_update(en_store *st, const char *pseudonym, int force,
                          en_store_study_compute fn, void *ud, int *version,
                          int *changed, en_err *err)
{
    int v = 0, ch = 0, rc;

    if ((rc = en__require_writable(st, err)) ||
        (rc = en__db_begin(st, "computing a study result", err)))
        return rc;
    if ((rc = update_locked(st, pseudonym, force, fn, ud, &v, &ch, err))) {
        en__db_rollback(st);
        return rc;
    }
    if ((rc = en__db_commit(st, "computing a study result", err)))
        return rc;
    if (version)
        *version = v;
    if (changed)
        *changed = ch;
    return EN_OK;
}

/* ---- due studies --------------------------------------------------------------------- */

int en_store_studies_due(en_store *st, int64_t quiet_ms, int64_t now_ms,
                         en_store_due_cb cb, void *ud, int64_t *next_due_ms, en_err *err)
{
    typedef char key[EN_STORE_KEY_MAX];
    key *due_list = NULL;
    sqlite3_stmt *s;
    int64_t next = 0;
    int n = 0, cap = 0;
    int rc = en__db_prepare(st,
        "SELECT s.pseudonym, s.last_received_at FROM studies s "
        "WHERE s.result_stale = 1 AND NOT EXISTS (SELECT 1 FROM clips c "
        "  WHERE c.study_id = s.id AND c.status IN ('queued', 'processing')) "
        "ORDER BY s.last_received_at, s.id", &s, err);

    /* Collected first, called after: cb may write (recompute), which it
     * cannot do while this read is still stepping. */
    while (!rc) {
        int64_t due;
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "finding the studies due", err);
            break;
        }
        due = en__col_time(s, 1) + (quiet_ms > 0 ? quiet_ms : 0);
        if (due > now_ms) {
            if (!next || due < next)
                next = due;
            continue;
        }
        if (n == cap) {
            key *grown = realloc(due_list, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown) {
                rc = en_err_set(err, EN_ENOMEM, "database %s: out of memory listing the "
                                "studies due", st->path);
                break;
            }
            due_list = grown;
        }
        en__col_text(s, 0, due_list[n++], EN_STORE_KEY_MAX);
    }
    en__db_finalize(s);
    for (int i = 0; !rc && i < n; i++)
        rc = cb(due_list[i], ud);
    free(due_list);
    if (!rc && next_due_ms)
        *next_due_ms = next;
    return rc;
}

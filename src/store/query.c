/*
 * query.c - reading clips back: list (filtered, paged), count, counts per
 * status, and show (one clip with its beats, frames, models and events);
 * and the filter and row-loading plumbing the study readers (study.c) and
 * the export share.
 *
 * Filters become a WHERE clause of fixed fragments with bound parameters;
 * no caller text is ever pasted into SQL.  Every clip reader goes through
 * the one clip SELECT below, so every reader fills en_store_clip the same
 * way.
 */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* Column order of en__clip_select; en__clip_read() depends on it. */
enum {
    C_ID, C_STUDY, C_PSEUDONYM, C_DEDUP, C_JOB, C_STATUS, C_STAGE, C_ATTEMPTS,
    C_RECEIVED, C_STARTED, C_FINISHED,
    C_SOP, C_MODALITY, C_REGIONS, C_VIEW, C_VIEW_CODE, C_VIDEO_FILE,
    C_ROWS, C_COLS, C_FRAMES, C_FPS, C_FPS_SOURCE, C_TSYNTAX, C_SECTOR, C_SECTOR_CONF,
    C_VIDEO_FRAMES,
    C_SEG, C_SEG_ARCH, C_SEG_ORIGIN, C_SEG_FILE, C_SEG_META,
    C_EF, C_EF_ARCH, C_EF_ORIGIN, C_EF_FILE, C_EF_META,
    C_EF_MEAN, C_EF_SD, C_CLASS, C_THR_REDUCED, C_THR_LOW, C_THR_VERY_LOW, C_FLAGS, C_FLAGS_TEXT,
    C_VERDICT, C_VERDICT_CODES, C_VERDICT_TEXT, C_EVIDENCE,
    C_MS_READ, C_MS_SECTOR, C_MS_VIDEO, C_MS_SEGMENT, C_MS_EF, C_MS_ANALYSIS, C_MS_TOTAL,
    C_BEATS, C_LAST_ERROR
};

const char en__clip_select[] =
    "SELECT c.id, c.study_id, s.pseudonym, c.dedup_key, c.job, c.status, c.stage, c.attempts, "
    " c.received_at, c.started_at, c.finished_at, "
    " c.sop_class, c.modality, c.regions, c.view_dicom, c.view_code, c.video_file, "
    " c.src_rows, c.src_cols, c.src_frames, c.fps, c.fps_source, c.transfer_syntax, "
    " c.sector_method, c.sector_confidence, c.video_frames, "
    " c.seg_model, sm.architecture, sm.origin, sm.file_name, sm.metadata_json, "
    " c.ef_model, em.architecture, em.origin, em.file_name, em.metadata_json, "
    " c.ef_mean, c.ef_sd, c.ef_class, c.threshold_reduced, c.threshold_low, "
    " c.threshold_very_low, c.flags, c.flags_text, "
    " c.verdict, c.verdict_codes, c.verdict_text, c.evidence_json, "
    " c.ms_read, c.ms_sector, c.ms_video, c.ms_segment, c.ms_ef, c.ms_analysis, c.ms_total, "
    " (SELECT count(*) FROM beats b WHERE b.clip_id = c.id), "
    " CASE WHEN c.status = 'failed' THEN "
    "   (SELECT e.message FROM events e WHERE e.clip_id = c.id AND e.state = 'failed' "
    "    ORDER BY e.id DESC LIMIT 1) END "
    "FROM clips c "
    "JOIN studies s ON s.id = c.study_id "
    "LEFT JOIN models sm ON sm.sha256 = c.seg_model "
    "LEFT JOIN models em ON em.sha256 = c.ef_model ";

/* ---- filters ---------------------------------------------------------------- */

#define SQL_MAX 4096

static void append(char *sql, const char *frag)
{
    size_t n = strlen(sql);
    /* Fragments are fixed text: the total is bounded well below SQL_MAX. */
    snprintf(sql + n, SQL_MAX - n, "%s", frag);
}

static void where_clause(const en_store_filter *f, int clips, char *sql)
{
    static const char *const status_sql[EN_STORE_NSTATUS] = {
        "'queued'", "'processing'", "'done'", "'failed'"
    };
    const char *t = clips ? "c." : "s.";
    const char *received = clips ? "c.received_at" : "s.first_received_at";
    char frag[128];
    int first = 1;

    append(sql, "WHERE 1 ");
    if (f->since_ms) {
        snprintf(frag, sizeof frag, "AND %s >= :since ", received);
        append(sql, frag);
    }
    if (f->until_ms) {
        snprintf(frag, sizeof frag, "AND %s < :until ", received);
        append(sql, frag);
    }
    if (f->ef_class) {
        snprintf(frag, sizeof frag, "AND %sef_class = :class ", t);
        append(sql, frag);
    }
    if (f->flags_any) {
        snprintf(frag, sizeof frag, "AND (%sflags & :flags_any) <> 0 ", t);
        append(sql, frag);
    }
    if (f->flags_none) {
        snprintf(frag, sizeof frag, "AND (%sflags & :flags_none) = 0 ", t);
        append(sql, frag);
    }
    if (f->pseudonym)
        append(sql, "AND s.pseudonym = :pseudonym ");
    if (f->status_mask) {
        append(sql, clips ? "AND c.status IN ("
                          : "AND EXISTS (SELECT 1 FROM clips x WHERE x.study_id = s.id "
                            "AND x.status IN (");
        for (int i = 0; i < EN_STORE_NSTATUS; i++)
            if (f->status_mask & (1u << i)) {
                append(sql, first ? "" : ", ");
                append(sql, status_sql[i]);
                first = 0;
            }
        append(sql, first ? "NULL" : "");
        append(sql, clips ? ") " : ")) ");
    }
}

static void bind_filter(sqlite3_stmt *s, const en_store_filter *f, int paged, int *rc)
{
    if (f->since_ms)
        en__bind_time(s, ":since", f->since_ms, rc);
    if (f->until_ms)
        en__bind_time(s, ":until", f->until_ms, rc);
    if (f->ef_class)
        en__bind_text(s, ":class", f->ef_class, rc);
    if (f->flags_any)
        en__bind_int(s, ":flags_any", (int64_t)f->flags_any, rc);
    if (f->flags_none)
        en__bind_int(s, ":flags_none", (int64_t)f->flags_none, rc);
    if (f->pseudonym)
        en__bind_text(s, ":pseudonym", f->pseudonym, rc);
    if (paged) {
        en__bind_int(s, ":limit", f->limit > 0 ? f->limit : -1, rc);
        en__bind_int(s, ":offset", f->offset > 0 ? f->offset : 0, rc);
    }
}

int en__prepare_filtered(en_store *st, const char *head, const en_store_filter *f,
                         int clips, int paged, sqlite3_stmt **s, en_err *err)
{
    static const en_store_filter all;
    char sql[SQL_MAX];
    int rc;

    if (!f)
        f = &all;
    snprintf(sql, sizeof sql, "%s", head);
    where_clause(f, clips, sql);
    if (paged && clips)
        append(sql, f->oldest_first ? "ORDER BY c.received_at ASC, c.id ASC "
                                    : "ORDER BY c.received_at DESC, c.id DESC ");
    else if (paged)
        append(sql, f->oldest_first ? "ORDER BY s.first_received_at ASC, s.id ASC "
                                    : "ORDER BY s.first_received_at DESC, s.id DESC ");
    if (paged)
        append(sql, "LIMIT :limit OFFSET :offset");
    if ((rc = en__db_prepare(st, sql, s, err)))
        return rc;
    rc = SQLITE_OK;
    bind_filter(*s, f, paged, &rc);
    if (rc != SQLITE_OK) {
        en__db_finalize(*s);
        *s = NULL;
        return en__db_fail(st, rc, "binding the filter", err);
    }
    return EN_OK;
}

/* ---- reading a clip row ------------------------------------------------------ */

static void read_model(sqlite3_stmt *s, int col, en_store_model *m)
{
    en__col_text(s, col, m->sha256, sizeof m->sha256);
    en__col_text(s, col + 1, m->architecture, sizeof m->architecture);
    en__col_text(s, col + 2, m->origin, sizeof m->origin);
    en__col_text(s, col + 3, m->file_name, sizeof m->file_name);
    en__col_text(s, col + 4, m->metadata_json, sizeof m->metadata_json);
}

void en__clip_read(sqlite3_stmt *s, en_store_clip *out)
{
    en_store_result *r = &out->r;
    char status[16];

    memset(out, 0, sizeof *out);
    en_store_result_init(r);
    out->id = sqlite3_column_int64(s, C_ID);
    out->study_id = sqlite3_column_int64(s, C_STUDY);
    en__col_text(s, C_STATUS, status, sizeof status);
    if (en_store_status_parse(status, &out->status))
        out->status = EN_STORE_FAILED;   /* unreachable: the CHECK lists them */
    en__col_text(s, C_STAGE, out->stage, sizeof out->stage);
    out->attempts = sqlite3_column_int(s, C_ATTEMPTS);
    out->beat_count = sqlite3_column_int(s, C_BEATS);
    en__col_text(s, C_LAST_ERROR, out->last_error, sizeof out->last_error);

    r->clip_id = out->id;
    en__col_text(s, C_PSEUDONYM, r->pseudonym, sizeof r->pseudonym);
    en__col_text(s, C_DEDUP, r->dedup_key, sizeof r->dedup_key);
    en__col_text(s, C_JOB, r->job, sizeof r->job);
    r->received_ms = en__col_time(s, C_RECEIVED);
    r->started_ms = en__col_time(s, C_STARTED);
    r->finished_ms = en__col_time(s, C_FINISHED);
    en__col_text(s, C_SOP, r->sop_class, sizeof r->sop_class);
    en__col_text(s, C_MODALITY, r->modality, sizeof r->modality);
    en__col_text(s, C_REGIONS, r->regions, sizeof r->regions);
    en__col_text(s, C_VIEW, r->view_dicom, sizeof r->view_dicom);
    en__col_text(s, C_VIEW_CODE, r->view_code, sizeof r->view_code);
    en__col_text(s, C_VIDEO_FILE, r->video_file, sizeof r->video_file);
    r->src_rows = en__col_int_opt(s, C_ROWS);
    r->src_cols = en__col_int_opt(s, C_COLS);
    r->src_frames = en__col_int_opt(s, C_FRAMES);
    r->fps = en__col_double(s, C_FPS);
    en__col_text(s, C_FPS_SOURCE, r->fps_source, sizeof r->fps_source);
    en__col_text(s, C_TSYNTAX, r->transfer_syntax, sizeof r->transfer_syntax);
    en__col_text(s, C_SECTOR, r->sector_method, sizeof r->sector_method);
    r->sector_confidence = en__col_double(s, C_SECTOR_CONF);
    r->video_frames = en__col_int_opt(s, C_VIDEO_FRAMES);
    read_model(s, C_SEG, &r->seg_model);
    read_model(s, C_EF, &r->ef_model);
    r->ef_mean = en__col_double(s, C_EF_MEAN);
    r->ef_sd = en__col_double(s, C_EF_SD);
    en__col_text(s, C_CLASS, r->ef_class, sizeof r->ef_class);
    r->threshold_reduced = en__col_double(s, C_THR_REDUCED);
    r->threshold_low = en__col_double(s, C_THR_LOW);
    r->threshold_very_low = en__col_double(s, C_THR_VERY_LOW);
    r->flags = (uint64_t)sqlite3_column_int64(s, C_FLAGS);
    en__col_text(s, C_FLAGS_TEXT, r->flags_text, sizeof r->flags_text);
    en__col_text(s, C_VERDICT, r->verdict, sizeof r->verdict);
    en__col_text(s, C_VERDICT_CODES, r->verdict_codes, sizeof r->verdict_codes);
    en__col_text(s, C_VERDICT_TEXT, r->verdict_text, sizeof r->verdict_text);
    en__col_text(s, C_EVIDENCE, r->evidence_json, sizeof r->evidence_json);
    r->ms.read = en__col_double(s, C_MS_READ);
    r->ms.sector = en__col_double(s, C_MS_SECTOR);
    r->ms.video = en__col_double(s, C_MS_VIDEO);
    r->ms.segment = en__col_double(s, C_MS_SEGMENT);
    r->ms.ef = en__col_double(s, C_MS_EF);
    r->ms.analysis = en__col_double(s, C_MS_ANALYSIS);
    r->ms.total = en__col_double(s, C_MS_TOTAL);
}

/* ---- list / count --------------------------------------------------------------- */

int en_store_list(en_store *st, const en_store_filter *f, en_store_list_cb cb,
                  void *ud, en_err *err)
{
    en_store_clip clip;
    sqlite3_stmt *s;
    int rc = en__prepare_filtered(st, en__clip_select, f, 1, 1, &s, err);

    while (!rc) {
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "listing clips", err);
            break;
        }
        en__clip_read(s, &clip);
        rc = cb(&clip, ud);
    }
    en__db_finalize(s);
    return rc;
}

int en_store_count(en_store *st, const en_store_filter *f, int64_t *n, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__prepare_filtered(st, "SELECT count(*) FROM clips c "
                                      "JOIN studies s ON s.id = c.study_id ",
                                  f, 1, 0, &s, err);

    if (rc)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = EN_OK;
    } else {
        rc = en__db_fail(st, rc, "counting clips", err);
    }
    en__db_finalize(s);
    return rc;
}

int en_store_counts(en_store *st, int64_t counts[EN_STORE_NSTATUS], en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st, "SELECT status, count(*) FROM clips GROUP BY status", &s, err);

    memset(counts, 0, sizeof(int64_t) * EN_STORE_NSTATUS);
    while (!rc) {
        char name[16];
        en_store_status k;
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "counting clips per status", err);
            break;
        }
        en__col_text(s, 0, name, sizeof name);
        if (en_store_status_parse(name, &k) == EN_OK)
            counts[k] = sqlite3_column_int64(s, 1);
    }
    en__db_finalize(s);
    return rc;
}

/* ---- children ------------------------------------------------------------------- */

int en__load_rows(en_store *st, int64_t id, const char *sql, size_t size, void **items,
                  int *n, void (*fill)(sqlite3_stmt *, void *), const char *what,
                  en_err *err)
{
    sqlite3_stmt *s;
    int cap = 0, rc = en__db_prepare(st, sql, &s, err), brc = SQLITE_OK;

    *items = NULL;
    *n = 0;
    if (rc)
        return rc;
    en__bind_int(s, ":id", id, &brc);
    if (brc != SQLITE_OK)
        rc = en__db_fail(st, brc, what, err);
    while (!rc) {
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, what, err);
            break;
        }
        if (*n == cap) {
            void *grown;
            cap = cap ? cap * 2 : 64;
            grown = realloc(*items, (size_t)cap * size);
            if (!grown) {
                rc = en_err_set(err, EN_ENOMEM, "database %s: %s: out of memory", st->path, what);
                break;
            }
            *items = grown;
        }
        fill(s, (char *)*items + (size_t)*n * size);
        (*n)++;
    }
    en__db_finalize(s);
    return rc;
}

static void fill_beat(sqlite3_stmt *s, void *item)
{
    en_store_beat *b = item;
    b->systole_frame = sqlite3_column_int(s, 0);
    b->clip_start = sqlite3_column_int(s, 1);
    b->shift = sqlite3_column_int(s, 2);
    b->ef = en__col_double(s, 3);
    b->ed_frame = en__col_int_opt(s, 4);
    b->lv_size_ed = en__col_int_opt(s, 5);
    b->lv_size_es = en__col_int_opt(s, 6);
}

static void fill_frame(sqlite3_stmt *s, void *item)
{
    en_store_frame *f = item;
    f->lv_size = sqlite3_column_int(s, 0);
    f->systole = sqlite3_column_int(s, 1);
}

static void fill_event(sqlite3_stmt *s, void *item)
{
    en_store_event *e = item;
    char state[16];

    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(s, 0);
    e->at_ms = en__col_time(s, 1);
    e->clip_id = sqlite3_column_int64(s, 2);
    en__col_text(s, 3, state, sizeof state);
    e->kind = EN_STORE_EV_INFO;
    for (int k = EN_STORE_EV_QUEUED; k <= EN_STORE_EV_RESULT; k++)
        if (strcmp(state, en_store_event_name((en_store_event_kind)k)) == 0)
            e->kind = (en_store_event_kind)k;
    en__col_text(s, 4, e->stage, sizeof e->stage);
    e->attempt = en__col_int_opt(s, 5);
    en__col_text(s, 6, e->job, sizeof e->job);
    en__col_text(s, 7, e->code, sizeof e->code);
    e->result_version = sqlite3_column_int(s, 8);
    en__col_text(s, 9, e->message, sizeof e->message);
}

int en__events_load(en_store *st, const char *where, int64_t id,
                    en_store_event **out, int *n, en_err *err)
{
    char sql[256];

    snprintf(sql, sizeof sql,
             "SELECT id, at, clip_id, state, stage, attempt, job, code, result_version, "
             "message FROM events WHERE %s ORDER BY id", where);
    return en__load_rows(st, id, sql, sizeof(en_store_event), (void **)out, n, fill_event,
                         "reading events", err);
}

int en__clip_load_children(en_store *st, en_store_clip *c, int frames, en_err *err)
{
    int rc;

    rc = en__load_rows(st, c->id,
                       "SELECT systole_frame, clip_start, shift, ef, ed_frame, lv_size_ed, "
                       "lv_size_es FROM beats WHERE clip_id = :id ORDER BY beat",
                       sizeof(en_store_beat), (void **)&c->r.beats, &c->r.nbeats,
                       fill_beat, "reading beats", err);
    if (!rc && frames)
        rc = en__load_rows(st, c->id,
                           "SELECT lv_size, systole FROM frames WHERE clip_id = :id "
                           "ORDER BY frame", sizeof(en_store_frame), (void **)&c->r.frames,
                           &c->r.nframes, fill_frame, "reading frames", err);
    return rc;
}

/* ---- show ----------------------------------------------------------------------- */

int en_store_clip_show(en_store *st, int64_t clip_id, en_store_clip *out, en_err *err)
{
    char sql[sizeof en__clip_select + 32];
    sqlite3_stmt *s;
    int rc, brc = SQLITE_OK;

    memset(out, 0, sizeof *out);
    snprintf(sql, sizeof sql, "%sWHERE c.id = :id", en__clip_select);
    if ((rc = en__db_prepare(st, sql, &s, err)))
        return rc;
    en__bind_int(s, ":id", clip_id, &brc);
    rc = brc != SQLITE_OK ? brc : sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        en__clip_read(s, out);
        rc = EN_OK;
    } else if (rc == SQLITE_DONE) {
        rc = en_err_set(err, EN_ENOTFOUND, "database %s: no clip %lld", st->path,
                        (long long)clip_id);
    } else {
        rc = en__db_fail(st, rc, "reading a clip", err);
    }
    en__db_finalize(s);
    if (!rc)
        rc = en__clip_load_children(st, out, 1, err);
    if (!rc)
        rc = en__events_load(st, "clip_id = :id", out->id, &out->events, &out->nevents, err);
    if (rc)
        en_store_clip_free(out);
    return rc;
}

void en_store_clip_free(en_store_clip *c)
{
    if (!c)
        return;
    free(c->r.beats);
    free(c->r.frames);
    free(c->events);
    c->r.beats = NULL;
    c->r.frames = NULL;
    c->events = NULL;
    c->r.nbeats = c->r.nframes = c->nevents = 0;
}

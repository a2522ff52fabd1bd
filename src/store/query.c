/*
 * query.c - reading studies back: list (filtered, paged), count, counts per
 * status, and show (one study with its beats, frames, models and events).
 *
 * Filters become a WHERE clause of fixed fragments with bound parameters;
 * no caller text is ever pasted into SQL.  list and export share the one
 * study SELECT below, so every reader fills en_store_study the same way.
 */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* Column order of study_select; read_study() depends on it. */
enum {
    C_ID, C_PSEUDONYM, C_DEDUP, C_JOB, C_STATUS, C_STAGE, C_ATTEMPTS,
    C_RECEIVED, C_STARTED, C_FINISHED,
    C_ROWS, C_COLS, C_FRAMES, C_FPS, C_FPS_SOURCE, C_TSYNTAX, C_SECTOR, C_SECTOR_CONF,
    C_VIDEO_FRAMES,
    C_SEG, C_SEG_ARCH, C_SEG_ORIGIN, C_SEG_FILE, C_SEG_META,
    C_EF, C_EF_ARCH, C_EF_ORIGIN, C_EF_FILE, C_EF_META,
    C_EF_MEAN, C_EF_SD, C_CLASS, C_THR_REDUCED, C_THR_LOW, C_THR_VERY_LOW, C_FLAGS, C_FLAGS_TEXT,
    C_MS_READ, C_MS_SECTOR, C_MS_VIDEO, C_MS_SEGMENT, C_MS_EF, C_MS_ANALYSIS, C_MS_TOTAL,
    C_BEATS, C_LAST_ERROR
};

static const char study_select[] =
    "SELECT s.id, s.pseudonym, s.dedup_key, s.job, s.status, s.stage, s.attempts, "
    " s.received_at, s.started_at, s.finished_at, "
    " s.src_rows, s.src_cols, s.src_frames, s.fps, s.fps_source, s.transfer_syntax, "
    " s.sector_method, s.sector_confidence, s.video_frames, "
    " s.seg_model, sm.architecture, sm.origin, sm.file_name, sm.metadata_json, "
    " s.ef_model, em.architecture, em.origin, em.file_name, em.metadata_json, "
    " s.ef_mean, s.ef_sd, s.ef_class, s.threshold_reduced, s.threshold_low, "
    " s.threshold_very_low, s.flags, s.flags_text, "
    " s.ms_read, s.ms_sector, s.ms_video, s.ms_segment, s.ms_ef, s.ms_analysis, s.ms_total, "
    " (SELECT count(*) FROM beats b WHERE b.study_id = s.id), "
    " CASE WHEN s.status = 'failed' THEN "
    "   (SELECT e.message FROM events e WHERE e.study_id = s.id AND e.state = 'failed' "
    "    ORDER BY e.id DESC LIMIT 1) END "
    "FROM studies s "
    "LEFT JOIN models sm ON sm.sha256 = s.seg_model "
    "LEFT JOIN models em ON em.sha256 = s.ef_model ";

/* ---- filters ---------------------------------------------------------------- */

#define SQL_MAX 4096

static void append(char *sql, const char *frag)
{
    size_t n = strlen(sql);
    /* Fragments are fixed text: the total is bounded well below SQL_MAX. */
    snprintf(sql + n, SQL_MAX - n, "%s", frag);
}

static void where_clause(const en_store_filter *f, char *sql)
{
    static const char *const status_sql[EN_STORE_NSTATUS] = {
        "'queued'", "'processing'", "'done'", "'failed'"
    };
    int first = 1;

    append(sql, "WHERE 1 ");
    if (f->since_ms)
        append(sql, "AND s.received_at >= :since ");
    if (f->until_ms)
        append(sql, "AND s.received_at < :until ");
    if (f->ef_class)
        append(sql, "AND s.ef_class = :class ");
    if (f->flags_any)
        append(sql, "AND (s.flags & :flags_any) <> 0 ");
    if (f->flags_none)
        append(sql, "AND (s.flags & :flags_none) = 0 ");
    if (f->pseudonym)
        append(sql, "AND s.pseudonym = :pseudonym ");
    if (f->status_mask) {
        append(sql, "AND s.status IN (");
        for (int i = 0; i < EN_STORE_NSTATUS; i++)
            if (f->status_mask & (1u << i)) {
                append(sql, first ? "" : ", ");
                append(sql, status_sql[i]);
                first = 0;
            }
        append(sql, first ? "NULL) " : ") ");
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

static int prepare_filtered(en_store *st, const char *head, const en_store_filter *f,
                            int paged, sqlite3_stmt **s, en_err *err)
{
    static const en_store_filter all;
    char sql[SQL_MAX];
    int rc;

    if (!f)
        f = &all;
    snprintf(sql, sizeof sql, "%s", head);
    where_clause(f, sql);
    if (paged)
        append(sql, f->oldest_first ? "ORDER BY s.received_at ASC, s.id ASC "
                                    : "ORDER BY s.received_at DESC, s.id DESC ");
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

/* ---- reading a study row ------------------------------------------------------ */

static void read_model(sqlite3_stmt *s, int col, en_store_model *m)
{
    en__col_text(s, col, m->sha256, sizeof m->sha256);
    en__col_text(s, col + 1, m->architecture, sizeof m->architecture);
    en__col_text(s, col + 2, m->origin, sizeof m->origin);
    en__col_text(s, col + 3, m->file_name, sizeof m->file_name);
    en__col_text(s, col + 4, m->metadata_json, sizeof m->metadata_json);
}

static void read_study(sqlite3_stmt *s, en_store_study *out)
{
    en_store_result *r = &out->r;
    char status[16];

    memset(out, 0, sizeof *out);
    en_store_result_init(r);
    out->id = sqlite3_column_int64(s, C_ID);
    en__col_text(s, C_STATUS, status, sizeof status);
    if (en_store_status_parse(status, &out->status))
        out->status = EN_STORE_FAILED;   /* unreachable: the CHECK lists them */
    en__col_text(s, C_STAGE, out->stage, sizeof out->stage);
    out->attempts = sqlite3_column_int(s, C_ATTEMPTS);
    out->beat_count = sqlite3_column_int(s, C_BEATS);
    en__col_text(s, C_LAST_ERROR, out->last_error, sizeof out->last_error);

    en__col_text(s, C_PSEUDONYM, r->pseudonym, sizeof r->pseudonym);
    en__col_text(s, C_DEDUP, r->dedup_key, sizeof r->dedup_key);
    en__col_text(s, C_JOB, r->job, sizeof r->job);
    r->received_ms = en__col_time(s, C_RECEIVED);
    r->started_ms = en__col_time(s, C_STARTED);
    r->finished_ms = en__col_time(s, C_FINISHED);
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
    en_store_study study;
    sqlite3_stmt *s;
    int rc = prepare_filtered(st, study_select, f, 1, &s, err);

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

int en_store_count(en_store *st, const en_store_filter *f, int64_t *n, en_err *err)
{
    sqlite3_stmt *s;
    int rc = prepare_filtered(st, "SELECT count(*) FROM studies s ", f, 0, &s, err);

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

int en_store_counts(en_store *st, int64_t counts[EN_STORE_NSTATUS], en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st, "SELECT status, count(*) FROM studies GROUP BY status", &s, err);

    memset(counts, 0, sizeof(int64_t) * EN_STORE_NSTATUS);
    while (!rc) {
        char name[16];
        en_store_status k;
        int step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = en__db_fail(st, step, "counting studies per status", err);
            break;
        }
        en__col_text(s, 0, name, sizeof name);
        if (en_store_status_parse(name, &k) == EN_OK)
            counts[k] = sqlite3_column_int64(s, 1);
    }
    en__db_finalize(s);
    return rc;
}

/* ---- show ----------------------------------------------------------------------- */

/* Runs "SELECT ... WHERE study_id = :id" and grows *items by one element
 * per row, filled by fill(). */
static int load_rows(en_store *st, int64_t id, const char *sql, size_t size, void **items,
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
    en__col_text(s, 2, state, sizeof state);
    e->kind = EN_STORE_EV_INFO;
    for (int k = EN_STORE_EV_QUEUED; k <= EN_STORE_EV_INFO; k++)
        if (strcmp(state, en_store_event_name((en_store_event_kind)k)) == 0)
            e->kind = (en_store_event_kind)k;
    en__col_text(s, 3, e->stage, sizeof e->stage);
    e->attempt = en__col_int_opt(s, 4);
    en__col_text(s, 5, e->job, sizeof e->job);
    en__col_text(s, 6, e->code, sizeof e->code);
    en__col_text(s, 7, e->message, sizeof e->message);
}

int en__study_load_children(en_store *st, en_store_study *out, en_err *err)
{
    int rc;

    rc = load_rows(st, out->id,
                   "SELECT systole_frame, clip_start, shift, ef, ed_frame, lv_size_ed, "
                   "lv_size_es FROM beats WHERE study_id = :id ORDER BY beat",
                   sizeof(en_store_beat), (void **)&out->r.beats, &out->r.nbeats,
                   fill_beat, "reading beats", err);
    if (!rc)
        rc = load_rows(st, out->id,
                       "SELECT lv_size, systole FROM frames WHERE study_id = :id ORDER BY frame",
                       sizeof(en_store_frame), (void **)&out->r.frames, &out->r.nframes,
                       fill_frame, "reading frames", err);
    return rc;
}

static int copy_one(const en_store_study *s, void *ud)
{
    *(en_store_study *)ud = *s;
    return 1;   /* stop: found */
}

int en_store_show(en_store *st, const char *pseudonym, en_store_study *out, en_err *err)
{
    en_store_filter f = {0};
    int rc;

    memset(out, 0, sizeof *out);
    if (!pseudonym || !*pseudonym)
        return en_err_set(err, EN_EINVAL, "show: no pseudonym given");
    f.pseudonym = pseudonym;
    rc = en_store_list(st, &f, copy_one, out, err);
    if (rc == 0)
        return en_err_set(err, EN_ENOTFOUND, "database %s: no study %s", st->path, pseudonym);
    if (rc != 1)
        return rc;
    rc = en__study_load_children(st, out, err);
    if (!rc)
        rc = load_rows(st, out->id,
                       "SELECT id, at, state, stage, attempt, job, code, message "
                       "FROM events WHERE study_id = :id ORDER BY id",
                       sizeof(en_store_event), (void **)&out->events, &out->nevents,
                       fill_event, "reading events", err);
    if (rc)
        en_store_study_free(out);
    return rc;
}

void en_store_study_free(en_store_study *s)
{
    if (!s)
        return;
    free(s->r.beats);
    free(s->r.frames);
    free(s->events);
    s->r.beats = NULL;
    s->r.frames = NULL;
    s->events = NULL;
    s->r.nbeats = s->r.nframes = s->nevents = 0;
}

/*
 * state.c - a clip's life as the daemon sees it (issue 6): queued,
 * processing (attempt n), stage reached, done or failed, each change
 * recorded with an event before the daemon acts on it.  Every change of
 * the clip row, its event and its study's stale mark go in one
 * transaction, so the log, the row and the study never disagree.
 *
 * A clip is found by its duplicate key (a keyed hash of SOPInstanceUID);
 * that is what makes a re-delivered file a duplicate rather than a second
 * clip, and another instance of the same study a clip of its own.
 */
#include "en_util.h"
#include "store_int.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[EN_STORE_NSTATUS] = {
    "queued", "processing", "done", "failed"
};

static const char *const event_names[] = {
    "queued", "processing", "stage", "done", "failed", "warning", "info", "result"
};

const char *en_store_status_name(en_store_status s)
{
    return (unsigned)s < EN_STORE_NSTATUS ? status_names[s] : "unknown";
}

int en_store_status_parse(const char *name, en_store_status *out)
{
    for (int i = 0; name && i < EN_STORE_NSTATUS; i++)
        if (strcmp(name, status_names[i]) == 0) {
            *out = (en_store_status)i;
            return EN_OK;
        }
    return EN_EINVAL;
}

const char *en_store_event_name(en_store_event_kind k)
{
    return (unsigned)k < sizeof event_names / sizeof event_names[0] ? event_names[k] : "info";
}

/* ---- finding a clip ------------------------------------------------------------ */

/* Reads id, study_id, status, attempts and the study's pseudonym (column
 * 4) of the first row the query selects. */
static int find_by(en_store *st, const char *sql, const char *value, en_store_ref *ref,
                   char pseudonym[EN_STORE_KEY_MAX], en_err *err)
{
    sqlite3_stmt *s;
    char status[16];
    int rc = en__db_prepare(st, sql, &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":v", value, &rc);
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
        ref->attempts = sqlite3_column_int(s, 3);
        en__col_text(s, 4, pseudonym, EN_STORE_KEY_MAX);
        rc = EN_OK;
    } else if (rc == SQLITE_DONE) {
        rc = EN_ENOTFOUND;
    } else {
        rc = en__db_fail(st, rc, "looking a clip up", err);
    }
    en__db_finalize(s);
    return rc;
}

int en__clip_find(en_store *st, const char *pseudonym, const char *dedup_key,
                  en_store_ref *ref, en_err *err)
{
    char owner[EN_STORE_KEY_MAX];
    int rc;

    if (dedup_key && *dedup_key) {
        rc = find_by(st, "SELECT c.id, c.study_id, c.status, c.attempts, s.pseudonym "
                         "FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE c.dedup_key = :v", dedup_key, ref, owner, err);
        if (rc == EN_OK && pseudonym && *pseudonym && strcmp(owner, pseudonym) != 0)
            return en_err_set(err, EN_EINVAL,
                              "database %s: study %s: its duplicate key belongs to a clip "
                              "of another study (%s); was the site secret changed?",
                              st->path, pseudonym, owner);
    } else if (pseudonym && *pseudonym) {
        /* The clip being worked on, else the latest one. */
        rc = find_by(st, "SELECT c.id, c.study_id, c.status, c.attempts, s.pseudonym "
                         "FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = :v "
                         "ORDER BY c.status = 'processing' DESC, c.status = 'queued' DESC, "
                         "         c.id DESC LIMIT 1", pseudonym, ref, owner, err);
    } else {
        rc = EN_ENOTFOUND;
    }
    if (rc == EN_ENOTFOUND)
        en_err_set(err, EN_ENOTFOUND, "database %s: no clip %s %s", st->path,
                   dedup_key && *dedup_key ? "with that duplicate key in study" : "of study",
                   pseudonym && *pseudonym ? pseudonym : "(none given)");
    return rc;
}

int en_store_find(en_store *st, const char *pseudonym, const char *dedup_key,
                  en_store_ref *ref, en_err *err)
{
    return en__clip_find(st, pseudonym, dedup_key, ref, err);
}

/* ---- studies touched by clips ------------------------------------------------- */

int en__study_touch(en_store *st, const char *pseudonym, int64_t received_ms,
                    int64_t *study_id, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO studies (pseudonym, first_received_at, last_received_at, result_stale) "
        "VALUES (:p, coalesce(:at, :now), coalesce(:at, :now), 1) "
        "ON CONFLICT (pseudonym) DO UPDATE SET result_stale = 1, "
        "  first_received_at = min(first_received_at, coalesce(:at, first_received_at)), "
        "  last_received_at = max(last_received_at, coalesce(:at, last_received_at))",
        &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":p", pseudonym, &rc);
    en__bind_time(s, ":at", received_ms, &rc);
    en__bind_time(s, ":now", en_wall_ms(), &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "recording the study", err);
    en__db_finalize(s);
    if (rc || (rc = en__db_prepare(st, "SELECT id FROM studies WHERE pseudonym = :p", &s, err)))
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":p", pseudonym, &rc);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *study_id = sqlite3_column_int64(s, 0);
        rc = EN_OK;
    } else {
        rc = en__db_fail(st, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, "reading the study id",
                         err);
    }
    en__db_finalize(s);
    return rc;
}

int en__study_stale_by_clip(en_store *st, int64_t clip_id, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "UPDATE studies SET result_stale = 1 "
        "WHERE id = (SELECT study_id FROM clips WHERE id = :id)", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(s, ":id", clip_id, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "marking the study result stale", err);
    en__db_finalize(s);
    return rc;
}

/* ---- events ------------------------------------------------------------------ */

/* A row id, or NULL for 0. */
static void bind_id(sqlite3_stmt *s, const char *name, int64_t id, int *rc)
{
    if (id > 0)
        en__bind_int(s, name, id, rc);
    else
        en__bind_text(s, name, NULL, rc);
}

int en__event_insert(en_store *st, int64_t study_id, int64_t clip_id,
                     en_store_event_kind kind, const char *stage, int attempt,
                     const char *job, const char *code, int version,
                     const char *message, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO events (study_id, clip_id, at, state, stage, attempt, job, code, "
        "                    result_version, message) "
        "VALUES (:study, :clip, :at, :state, :stage, :attempt, :job, :code, :version, "
        "        coalesce(:msg, ''))", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    bind_id(s, ":study", study_id, &rc);
    bind_id(s, ":clip", clip_id, &rc);
    en__bind_time(s, ":at", en_wall_ms(), &rc);
    en__bind_text(s, ":state", en_store_event_name(kind), &rc);
    en__bind_text(s, ":stage", stage, &rc);
    en__bind_int_opt(s, ":attempt", attempt, &rc);
    en__bind_text(s, ":job", job, &rc);
    en__bind_text(s, ":code", code, &rc);
    en__bind_int_opt(s, ":version", version > 0 ? version : EN_STORE_NONE, &rc);
    en__bind_text(s, ":msg", message, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding an event", err)
                         : en__db_write(st, s, "recording an event", err);
    en__db_finalize(s);
    return rc;
}

/* The study of a clip, for events that name both. */
static int study_of(en_store *st, int64_t clip_id, int64_t *study_id, en_err *err)
{
    char sql[96];
    int rc;

    snprintf(sql, sizeof sql, "SELECT study_id FROM clips WHERE id = %lld", (long long)clip_id);
    if ((rc = en__db_int(st, sql, study_id, err)))
        return rc;
    if (*study_id == 0)
        return en_err_set(err, EN_ENOTFOUND, "database %s: no clip with id %lld", st->path,
                          (long long)clip_id);
    return EN_OK;
}

int en_store_log(en_store *st, int64_t clip_id, en_store_event_kind kind,
                 const char *stage, int attempt, const char *job,
                 const char *message, en_err *err)
{
    int64_t study_id = 0;
    int rc = en__require_writable(st, err);

    if (rc)
        return rc;
    if (kind == EN_STORE_EV_RESULT)
        return en_err_set(err, EN_EINVAL, "logging: study results are recorded by "
                          "en_store_study_update, with their version");
    if (clip_id > 0 && (rc = study_of(st, clip_id, &study_id, err)))
        return rc;
    /* One statement after a read: atomic enough, the clip cannot move to
     * another study. */
    return en__event_insert(st, study_id, clip_id, kind, stage, attempt, job, NULL, 0,
                            message, err);
}

/* ---- transitions ---------------------------------------------------------------- */

/* Runs one UPDATE on the clip (":id" bound here, the rest by bind_more),
 * refusing an unknown id. */
static int update_clip(en_store *st, int64_t id, const char *sql,
                       void (*bind_more)(sqlite3_stmt *, const void *, int *),
                       const void *ud, const char *what, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st, sql, &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(s, ":id", id, &rc);
    if (bind_more)
        bind_more(s, ud, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, what, err) : en__db_write(st, s, what, err);
    en__db_finalize(s);
    if (!rc && sqlite3_changes(st->db) != 1)
        rc = en_err_set(err, EN_ENOTFOUND, "database %s: %s: no clip with id %lld",
                        st->path, what, (long long)id);
    return rc;
}

typedef struct queue_args {
    const char *pseudonym, *dedup_key, *job;
    int64_t received_ms;
} queue_args;

static void bind_queue(sqlite3_stmt *s, const void *ud, int *rc)
{
    const queue_args *a = ud;
    en__bind_text(s, ":job", a->job, rc);
}

static int insert_queued(en_store *st, const queue_args *a, int64_t study_id,
                         en_store_ref *ref, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO clips (study_id, dedup_key, job, status, received_at) "
        "VALUES (:study, :k, :job, 'queued', :at)", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(s, ":study", study_id, &rc);
    en__bind_text(s, ":k", a->dedup_key, &rc);
    en__bind_text(s, ":job", a->job, &rc);
    en__bind_time(s, ":at", a->received_ms ? a->received_ms : en_wall_ms(), &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "queueing the clip", err);
    en__db_finalize(s);
    if (rc)
        return rc;
    memset(ref, 0, sizeof *ref);
    ref->id = sqlite3_last_insert_rowid(st->db);
    ref->study_id = study_id;
    ref->status = EN_STORE_QUEUED;
    ref->created = 1;
    return en__event_insert(st, study_id, ref->id, EN_STORE_EV_QUEUED, NULL, EN_STORE_NONE,
                            a->job, NULL, 0, "queued", err);
}

static int queue_locked(en_store *st, const queue_args *a, int requeue, en_store_ref *ref,
                        en_err *err)
{
    int64_t study_id;
    int finished, rc = EN_ENOTFOUND;

    if (a->dedup_key && *a->dedup_key) {
        rc = en__clip_find(st, a->pseudonym, a->dedup_key, ref, err);
        if (rc && rc != EN_ENOTFOUND)
            return rc;
    }
    if (rc == EN_ENOTFOUND) {
        if ((rc = en__study_touch(st, a->pseudonym, a->received_ms ? a->received_ms
                                                                   : en_wall_ms(),
                                  &study_id, err)))
            return rc;
        return insert_queued(st, a, study_id, ref, err);
    }
    finished = ref->status == EN_STORE_DONE || ref->status == EN_STORE_FAILED;
    /* Leave the clip alone, but never skip a file silently. */
    if (finished && !requeue)
        return en__event_insert(st, ref->study_id, ref->id, EN_STORE_EV_INFO, NULL,
                                EN_STORE_NONE, a->job, NULL, 0,
                                "duplicate received: this instance is already finished, "
                                "not processed again", err);
    /* Re-processing resets the attempts; resuming after a crash keeps
     * counting them. */
    rc = update_clip(st, ref->id,
                     finished ? "UPDATE clips SET status = 'queued', attempts = 0, "
                                "job = coalesce(:job, job) WHERE id = :id"
                              : "UPDATE clips SET status = 'queued', "
                                "job = coalesce(:job, job) WHERE id = :id",
                     bind_queue, a, "queueing the clip", err);
    if (rc || (rc = en__study_stale_by_clip(st, ref->id, err)))
        return rc;
    if (finished)
        ref->attempts = 0;
    ref->status = EN_STORE_QUEUED;
    return en__event_insert(st, ref->study_id, ref->id, EN_STORE_EV_QUEUED, NULL,
                            EN_STORE_NONE, a->job, NULL, 0,
                            finished ? "queued again (re-processing requested)"
                                     : "queued again (resuming unfinished work)", err);
}

int en_store_queue(en_store *st, const char *pseudonym, const char *dedup_key,
                   const char *job, int64_t received_ms, int requeue,
                   en_store_ref *ref, en_err *err)
{
    queue_args a = {pseudonym, dedup_key, job, received_ms};
    int rc;

    if ((rc = en__require_writable(st, err)))
        return rc;
    if (!en__is_hex(pseudonym, 8, 64) || (dedup_key && *dedup_key && !en__is_hex(dedup_key, 16, 64)))
        return en_err_set(err, EN_EINVAL,
                          "queueing: the pseudonym and duplicate key must be lowercase hex "
                          "(keyed hashes), never identifiers from the DICOM");
    if ((rc = en__db_begin(st, "queueing a clip", err)))
        return rc;
    if ((rc = queue_locked(st, &a, requeue, ref, err))) {
        en__db_rollback(st);
        return rc;
    }
    return en__db_commit(st, "queueing a clip", err);
}

/* Shared frame of the transitions below: one transaction around an UPDATE
 * of the clip and its event. */
typedef struct transition {
    const char *update_sql;
    void (*bind_more)(sqlite3_stmt *, const void *, int *);
    const void *ud;
    en_store_event_kind kind;
    const char *stage, *job, *code, *message;
    int want_attempt;   /* read attempts back and put them in the event */
    int stales;         /* the study's result must be computed again */
} transition;

static int transition_locked(en_store *st, int64_t id, const transition *t, int *attempt,
                             en_err *err)
{
    int64_t n = EN_STORE_NONE, study_id = 0;
    char sql[96];
    int rc = update_clip(st, id, t->update_sql, t->bind_more, t->ud,
                         en_store_event_name(t->kind), err);

    if (rc || (rc = study_of(st, id, &study_id, err)) ||
        (t->stales && (rc = en__study_stale_by_clip(st, id, err))))
        return rc;
    if (t->want_attempt) {
        snprintf(sql, sizeof sql, "SELECT attempts FROM clips WHERE id = %lld", (long long)id);
        if ((rc = en__db_int(st, sql, &n, err)))
            return rc;
        if (attempt)
            *attempt = (int)n;
    }
    return en__event_insert(st, study_id, id, t->kind, t->stage, (int)n, t->job, t->code, 0,
                            t->message, err);
}

static int run_transition(en_store *st, int64_t id, const transition *t, int *attempt,
                          en_err *err)
{
    int rc;

    if ((rc = en__require_writable(st, err)) ||
        (rc = en__db_begin(st, "recording a state change", err)))
        return rc;
    if ((rc = transition_locked(st, id, t, attempt, err))) {
        en__db_rollback(st);
        return rc;
    }
    return en__db_commit(st, "recording a state change", err);
}

static void bind_job(sqlite3_stmt *s, const void *ud, int *rc)
{
    en__bind_text(s, ":job", ud, rc);
    en__bind_time(s, ":now", en_wall_ms(), rc);
}

int en_store_attempt(en_store *st, int64_t clip_id, const char *job,
                     int *attempt, en_err *err)
{
    transition t = {
        "UPDATE clips SET attempts = attempts + 1, status = 'processing', "
        "started_at = :now, finished_at = NULL, job = coalesce(:job, job) WHERE id = :id",
        bind_job, job, EN_STORE_EV_PROCESSING, NULL, job, NULL, "processing", 1, 1
    };
    return run_transition(st, clip_id, &t, attempt, err);
}

static void bind_stage(sqlite3_stmt *s, const void *ud, int *rc)
{
    en__bind_text(s, ":stage", ud, rc);
}

int en_store_stage(en_store *st, int64_t clip_id, const char *stage, en_err *err)
{
    transition t = {
        "UPDATE clips SET stage = :stage WHERE id = :id",
        bind_stage, stage, EN_STORE_EV_STAGE, stage, NULL, NULL, NULL, 0, 0
    };
    if (!stage || !*stage)
        return en_err_set(err, EN_EINVAL, "recording a stage: no stage name given");
    return run_transition(st, clip_id, &t, NULL, err);
}

static void bind_fail(sqlite3_stmt *s, const void *ud, int *rc)
{
    en__bind_text(s, ":stage", ud, rc);
    en__bind_time(s, ":now", en_wall_ms(), rc);
}

int en_store_fail(en_store *st, int64_t clip_id, const char *stage,
                  const en_err *cause, en_err *err)
{
    transition t = {
        "UPDATE clips SET status = 'failed', stage = coalesce(:stage, stage), "
        "finished_at = :now WHERE id = :id",
        bind_fail, stage, EN_STORE_EV_FAILED, stage, NULL,
        cause && cause->code ? en_err_name(cause->code) : NULL,
        cause && cause->msg[0] ? cause->msg : "failed", 1, 1
    };
    return run_transition(st, clip_id, &t, NULL, err);
}

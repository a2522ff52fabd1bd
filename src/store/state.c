/*
 * state.c - a study's life as the daemon sees it (issue 6): queued,
 * processing (attempt n), stage reached, done or failed, each change
 * recorded with an event before the daemon acts on it.  Every change of
 * the study row and its event go in one transaction, so the log and the
 * row never disagree.
 *
 * A study is found by its duplicate key (a keyed hash of SOPInstanceUID)
 * when one is given, else by pseudonym; that is what makes a re-delivered
 * file a duplicate rather than a second study.
 */
#include "en_util.h"
#include "store_int.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[EN_STORE_NSTATUS] = {
    "queued", "processing", "done", "failed"
};

static const char *const event_names[] = {
    "queued", "processing", "stage", "done", "failed", "warning", "info"
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

/* ---- finding a study ---------------------------------------------------------- */

/* Reads id, status, attempts and dedup_key (column 3) of the one row the
 * query selects; key gets the row's duplicate key ("" when NULL). */
static int find_by(en_store *st, const char *column_sql, const char *value,
                   en_store_ref *ref, char key[EN_STORE_KEY_MAX], en_err *err)
{
    sqlite3_stmt *s;
    char status[16];
    int rc = en__db_prepare(st, column_sql, &s, err);

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
        ref->id = sqlite3_column_int64(s, 0);
        en__col_text(s, 1, status, sizeof status);
        if (en_store_status_parse(status, &ref->status))
            ref->status = EN_STORE_FAILED;   /* unreachable: CHECK lists them */
        ref->attempts = sqlite3_column_int(s, 2);
        en__col_text(s, 3, key, EN_STORE_KEY_MAX);
        ref->created = 0;
        ref->other_instance = 0;
        rc = EN_OK;
    } else if (rc == SQLITE_DONE) {
        rc = EN_ENOTFOUND;
    } else {
        rc = en__db_fail(st, rc, "looking a study up", err);
    }
    en__db_finalize(s);
    return rc;
}

int en__study_find(en_store *st, const char *pseudonym, const char *dedup_key,
                   en_store_ref *ref, en_err *err)
{
    en_store_ref by_key, by_name;
    char key_k[EN_STORE_KEY_MAX], key_n[EN_STORE_KEY_MAX];
    int rk = EN_ENOTFOUND, rn = EN_ENOTFOUND;

    if (dedup_key && *dedup_key) {
        rk = find_by(st, "SELECT id, status, attempts, dedup_key FROM studies "
                         "WHERE dedup_key = :v", dedup_key, &by_key, key_k, err);
        if (rk && rk != EN_ENOTFOUND)
            return rk;
    }
    if (pseudonym && *pseudonym) {
        rn = find_by(st, "SELECT id, status, attempts, dedup_key FROM studies "
                         "WHERE pseudonym = :v", pseudonym, &by_name, key_n, err);
        if (rn && rn != EN_ENOTFOUND)
            return rn;
    }
    if (!rk && !rn && by_key.id != by_name.id)
        return en_err_set(err, EN_EINVAL,
                          "database %s: study %s: its duplicate key belongs to another "
                          "study (id %lld); was the site secret changed?",
                          st->path, pseudonym, (long long)by_key.id);
    if (rk && rn) {
        en_err_set(err, EN_ENOTFOUND, "database %s: no study %s", st->path,
                   pseudonym && *pseudonym ? pseudonym : "with that duplicate key");
        return EN_ENOTFOUND;
    }
    if (rk) {
        /* Found by pseudonym only: a row holding another key is another
         * DICOM instance of the same study. */
        by_name.other_instance = dedup_key && *dedup_key && key_n[0];
        *ref = by_name;
    } else {
        *ref = by_key;
    }
    return EN_OK;
}

int en_store_find(en_store *st, const char *pseudonym, const char *dedup_key,
                  en_store_ref *ref, en_err *err)
{
    return en__study_find(st, pseudonym, dedup_key, ref, err);
}

/* ---- events ------------------------------------------------------------------ */

int en__event_insert(en_store *st, int64_t study_id, en_store_event_kind kind,
                     const char *stage, int attempt, const char *job,
                     const char *code, const char *message, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO events (study_id, at, state, stage, attempt, job, code, message) "
        "VALUES (:study, :at, :state, :stage, :attempt, :job, :code, coalesce(:msg, ''))",
        &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    if (study_id > 0)
        en__bind_int(s, ":study", study_id, &rc);
    else
        en__bind_text(s, ":study", NULL, &rc);
    en__bind_time(s, ":at", en_wall_ms(), &rc);
    en__bind_text(s, ":state", en_store_event_name(kind), &rc);
    en__bind_text(s, ":stage", stage, &rc);
    en__bind_int_opt(s, ":attempt", attempt, &rc);
    en__bind_text(s, ":job", job, &rc);
    en__bind_text(s, ":code", code, &rc);
    en__bind_text(s, ":msg", message, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding an event", err)
                         : en__db_write(st, s, "recording an event", err);
    en__db_finalize(s);
    return rc;
}

int en_store_log(en_store *st, int64_t study_id, en_store_event_kind kind,
                 const char *stage, int attempt, const char *job,
                 const char *message, en_err *err)
{
    int rc = en__require_writable(st, err);

    /* One statement: atomic on its own, no transaction needed. */
    return rc ? rc : en__event_insert(st, study_id, kind, stage, attempt, job, NULL,
                                      message, err);
}

/* ---- transitions ---------------------------------------------------------------- */

/* Runs one UPDATE on the study (":id" bound here, the rest by bind_more),
 * refusing an unknown id. */
static int update_study(en_store *st, int64_t id, const char *sql,
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
        rc = en_err_set(err, EN_ENOTFOUND, "database %s: %s: no study with id %lld",
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
    en__bind_text(s, ":k", a->dedup_key, rc);
}

static int insert_queued(en_store *st, const queue_args *a, en_store_ref *ref, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO studies (pseudonym, dedup_key, job, status, received_at) "
        "VALUES (:p, :k, :job, 'queued', :at)", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":p", a->pseudonym, &rc);
    en__bind_text(s, ":k", a->dedup_key, &rc);
    en__bind_text(s, ":job", a->job, &rc);
    en__bind_time(s, ":at", a->received_ms ? a->received_ms : en_wall_ms(), &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "queueing the study", err);
    en__db_finalize(s);
    if (rc)
        return rc;
    ref->id = sqlite3_last_insert_rowid(st->db);
    ref->status = EN_STORE_QUEUED;
    ref->attempts = 0;
    ref->created = 1;
    ref->other_instance = 0;
    return en__event_insert(st, ref->id, EN_STORE_EV_QUEUED, NULL, EN_STORE_NONE, a->job,
                            NULL, "queued", err);
}

static int queue_locked(en_store *st, const queue_args *a, int requeue, en_store_ref *ref,
                        en_err *err)
{
    int finished, fresh, rc = en__study_find(st, a->pseudonym, a->dedup_key, ref, err);

    if (rc == EN_ENOTFOUND)
        return insert_queued(st, a, ref, err);
    if (rc)
        return rc;
    finished = ref->status == EN_STORE_DONE || ref->status == EN_STORE_FAILED;
    /* Leave the study alone, but never skip a file silently. */
    if (ref->other_instance && !requeue)
        return en__event_insert(st, ref->id, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, a->job,
                                NULL, "another DICOM instance of this study received (other "
                                "duplicate key): not processed; one result is kept per study",
                                err);
    if (finished && !requeue)
        return en__event_insert(st, ref->id, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, a->job,
                                NULL, "duplicate received: study already finished, not "
                                "processed again", err);
    /* A fresh start (re-processing, or another instance replacing this
     * one) resets the attempts; resuming after a crash keeps counting. */
    fresh = finished || ref->other_instance;
    rc = update_study(st, ref->id,
                      fresh
                          ? "UPDATE studies SET status = 'queued', attempts = 0, "
                            "job = coalesce(:job, job), dedup_key = coalesce(:k, dedup_key) "
                            "WHERE id = :id"
                          : "UPDATE studies SET status = 'queued', job = coalesce(:job, job), "
                            "dedup_key = coalesce(dedup_key, :k) WHERE id = :id",
                      bind_queue, a, "queueing the study", err);
    if (rc)
        return rc;
    if (fresh)
        ref->attempts = 0;
    ref->status = EN_STORE_QUEUED;
    return en__event_insert(st, ref->id, EN_STORE_EV_QUEUED, NULL, EN_STORE_NONE, a->job,
                            NULL, fresh ? "queued again (re-processing requested)"
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
    if ((rc = en__db_begin(st, "queueing a study", err)))
        return rc;
    if ((rc = queue_locked(st, &a, requeue, ref, err))) {
        en__db_rollback(st);
        return rc;
    }
    return en__db_commit(st, "queueing a study", err);
}

/* Shared frame of the transitions below: one transaction around an UPDATE
 * of the study and its event. */
typedef struct transition {
    const char *update_sql;
    void (*bind_more)(sqlite3_stmt *, const void *, int *);
    const void *ud;
    en_store_event_kind kind;
    const char *stage, *job, *code, *message;
    int want_attempt;   /* read attempts back and put them in the event */
} transition;

static int transition_locked(en_store *st, int64_t id, const transition *t, int *attempt,
                             en_err *err)
{
    int64_t n = EN_STORE_NONE;
    char sql[96];
    int rc = update_study(st, id, t->update_sql, t->bind_more, t->ud,
                          en_store_event_name(t->kind), err);

    if (rc)
        return rc;
    if (t->want_attempt) {
        snprintf(sql, sizeof sql, "SELECT attempts FROM studies WHERE id = %lld", (long long)id);
        if ((rc = en__db_int(st, sql, &n, err)))
            return rc;
        if (attempt)
            *attempt = (int)n;
    }
    return en__event_insert(st, id, t->kind, t->stage, (int)n, t->job, t->code, t->message,
                            err);
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

int en_store_attempt(en_store *st, int64_t study_id, const char *job,
                     int *attempt, en_err *err)
{
    transition t = {
        "UPDATE studies SET attempts = attempts + 1, status = 'processing', "
        "started_at = :now, finished_at = NULL, job = coalesce(:job, job) WHERE id = :id",
        bind_job, job, EN_STORE_EV_PROCESSING, NULL, job, NULL, "processing", 1
    };
    return run_transition(st, study_id, &t, attempt, err);
}

static void bind_stage(sqlite3_stmt *s, const void *ud, int *rc)
{
    en__bind_text(s, ":stage", ud, rc);
}

int en_store_stage(en_store *st, int64_t study_id, const char *stage, en_err *err)
{
    transition t = {
        "UPDATE studies SET stage = :stage WHERE id = :id",
        bind_stage, stage, EN_STORE_EV_STAGE, stage, NULL, NULL, NULL, 0
    };
    if (!stage || !*stage)
        return en_err_set(err, EN_EINVAL, "recording a stage: no stage name given");
    return run_transition(st, study_id, &t, NULL, err);
}

static void bind_fail(sqlite3_stmt *s, const void *ud, int *rc)
{
    en__bind_text(s, ":stage", ud, rc);
    en__bind_time(s, ":now", en_wall_ms(), rc);
}

int en_store_fail(en_store *st, int64_t study_id, const char *stage,
                  const en_err *cause, en_err *err)
{
    transition t = {
        "UPDATE studies SET status = 'failed', stage = coalesce(:stage, stage), "
        "finished_at = :now WHERE id = :id",
        bind_fail, stage, EN_STORE_EV_FAILED, stage, NULL,
        cause && cause->code ? en_err_name(cause->code) : NULL,
        cause && cause->msg[0] ? cause->msg : "failed", 1
    };
    return run_transition(st, study_id, &t, NULL, err);
}

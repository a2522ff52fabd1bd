/*
 * outbox.c - the send queue of study result versions (en_outbox.h), in a
 * SQLite file of its own.
 *
 * Why a file of its own: the results database belongs to the daemon and
 * its migrations; the outbox is written by the sender (echonetd-send) and
 * by `echonetctl send`, which the daemon never waits on.  The sender fills
 * it from the results database, which it only reads.
 *
 * Rollback journal with synchronous=FULL: every state change is one small
 * committed transaction that survives power loss, and two writers (the
 * sender and echonetctl) are rare enough that WAL would buy nothing.
 */
#include "en_outbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "en_util.h"

#define OUTBOX_SCHEMA 1
#define OUTBOX_BUSY_MS 10000

struct en_outbox {
    sqlite3 *db;
    char path[1024];
    int64_t since_ms;
};

static const char *const state_names[EN_OUTBOX_NSTATES] = {
    "pending", "sending", "sent", "failed", "superseded"
};

static const char outbox_sql[] =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " pseudonym TEXT NOT NULL CHECK (length(pseudonym) BETWEEN 8 AND 64"
    "   AND pseudonym NOT GLOB '*[^0-9a-f]*'),"
    " version INTEGER NOT NULL CHECK (version > 0),"
    " state TEXT NOT NULL CHECK (state IN"
    "   ('pending', 'sending', 'sent', 'failed', 'superseded')),"
    " attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    " enqueued_ms INTEGER NOT NULL,"
    " next_try_ms INTEGER NOT NULL,"
    " last_try_ms INTEGER NOT NULL DEFAULT 0,"
    " done_ms INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (pseudonym, version));"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_try_ms);";

const char *en_outbox_state_name(en_outbox_state s)
{
    return (unsigned)s < EN_OUTBOX_NSTATES ? state_names[s] : "unknown";
}

static int state_parse(const char *name)
{
    for (int i = 0; i < EN_OUTBOX_NSTATES; i++)
        if (name && !strcmp(name, state_names[i]))
            return i;
    return EN_OUTBOX_PENDING;
}

static int fail(en_outbox *ob, const char *what, en_err *err)
{
    int rc = sqlite3_errcode(ob->db) & 0xff;
    return en_err_set(err, rc == SQLITE_BUSY ? EN_EIO : rc == SQLITE_READONLY ? EN_EPERM
                      : rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT ? EN_EFORMAT : EN_EIO,
                      "outbox %s: %s: %s%s", ob->path, what, sqlite3_errmsg(ob->db),
                      rc == SQLITE_BUSY ? " (another echonetd-send or echonetctl holds it: "
                                          "retry later)" : "");
}

/* One statement with named parameters :p pseudonym, :v version, :a a time, :t text (each bound only where the statement uses it), stepped to
 * its end; *changes gets the rows it changed. */
static int exec_v(en_outbox *ob, const char *what, en_err *err, const char *sql,
                  const char *p, int v, int64_t a, const char *t, int *changes)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(ob->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(ob, what, err);
    int ip;
    if ((ip = sqlite3_bind_parameter_index(st, ":p")))
        sqlite3_bind_text(st, ip, p, -1, SQLITE_STATIC);
    if ((ip = sqlite3_bind_parameter_index(st, ":v")))
        sqlite3_bind_int(st, ip, v);
    if ((ip = sqlite3_bind_parameter_index(st, ":a")))
        sqlite3_bind_int64(st, ip, a);
    if ((ip = sqlite3_bind_parameter_index(st, ":t")))
        sqlite3_bind_text(st, ip, t ? t : "", -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE) {
        rc = fail(ob, what, err);
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    if (changes)
        *changes = sqlite3_changes(ob->db);
    return EN_OK;
}

static int check_key(const char *pseudonym, int version, en_err *err)
{
    size_t n = pseudonym ? strlen(pseudonym) : 0;

    if (n < 8 || n > 64 || strspn(pseudonym, "0123456789abcdef") != n || version < 1)
        return en_err_set(err, EN_EINVAL, "outbox: a study is named by its pseudonym "
                          "(8 to 64 lowercase hex digits) and a result version >= 1");
    return EN_OK;
}

int en_outbox_open(const char *path, en_outbox **out, en_err *err)
{
    en_outbox *ob;
    sqlite3_stmt *st = NULL;
    int fd, rc, ver = 0;
    char since[32];

    *out = NULL;
    /* Created 0600 before SQLite sees it: SQLite would use the umask. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return en_err_set(err, EN_EIO, "outbox %s: cannot open: %s; check [send] outbox and "
                          "that its folder exists and is writable by this user", path,
                          strerror(errno));
    close(fd);
    if (!(ob = calloc(1, sizeof *ob)))
        return en_err_set(err, EN_ENOMEM, "outbox %s: out of memory", path);
    snprintf(ob->path, sizeof ob->path, "%s", path);
    if (sqlite3_open_v2(path, &ob->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = fail(ob, "opening", err);
        en_outbox_close(ob);
        return rc;
    }
    sqlite3_busy_timeout(ob->db, OUTBOX_BUSY_MS);
    if (sqlite3_exec(ob->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(ob->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = fail(ob, "opening", err);
        en_outbox_close(ob);
        return rc;
    }
    if (sqlite3_prepare_v2(ob->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ver = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (ver > OUTBOX_SCHEMA) {
        sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
        en_outbox_close(ob);
        return en_err_set(err, EN_EUNSUPPORTED, "outbox %s was written by a newer echonetd "
                          "(schema %d): upgrade echonetd", path, ver);
    }
    snprintf(since, sizeof since, "%lld", (long long)en_wall_ms());
    rc = sqlite3_exec(ob->db, outbox_sql, NULL, NULL, NULL) != SQLITE_OK
             ? fail(ob, "creating its tables", err)
             : exec_v(ob, "creating its tables", err,
                      "INSERT OR IGNORE INTO meta VALUES ('since_ms', :t)", NULL, 0, 0,
                      since, NULL);
    if (!rc && (sqlite3_exec(ob->db, "PRAGMA user_version = 1", NULL, NULL, NULL) != SQLITE_OK ||
                sqlite3_exec(ob->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK))
        rc = fail(ob, "creating its tables", err);
    if (rc) {
        sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
        en_outbox_close(ob);
        return rc;
    }
    if (sqlite3_prepare_v2(ob->db, "SELECT value FROM meta WHERE key = 'since_ms'", -1, &st,
                           NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        ob->since_ms = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    *out = ob;
    return EN_OK;
}

void en_outbox_close(en_outbox *ob)
{
    if (!ob)
        return;
    sqlite3_close(ob->db);
    free(ob);
}

int64_t en_outbox_since(const en_outbox *ob)
{
    return ob->since_ms;
}

int en_outbox_enqueue(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                      en_err *err)
{
    int rc, added = 0;

    if ((rc = check_key(pseudonym, version, err)))
        return rc;
    if (sqlite3_exec(ob->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(ob, "enqueueing", err);
    rc = exec_v(ob, "enqueueing", err,
                "INSERT OR IGNORE INTO outbox (pseudonym, version, state, enqueued_ms, "
                "next_try_ms) VALUES (:p, :v, 'pending', :a, :a)",
                pseudonym, version, now_ms, NULL, &added);
    if (!rc && added)
        rc = exec_v(ob, "enqueueing", err,
                    "UPDATE outbox SET state = 'superseded', done_ms = :a WHERE "
                    "pseudonym = :p AND version < :v AND state IN ('pending', 'sending', "
                    "'failed')", pseudonym, version, now_ms, NULL, NULL);
    if (rc || sqlite3_exec(ob->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = rc ? rc : fail(ob, "enqueueing", err);
        sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return added ? 1 : 0;
}

int en_outbox_requeue(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                      en_err *err)
{
    int rc;

    if ((rc = check_key(pseudonym, version, err)))
        return rc;
    return exec_v(ob, "re-queueing", err,
                  "INSERT INTO outbox (pseudonym, version, state, enqueued_ms, next_try_ms) "
                  "VALUES (:p, :v, 'pending', :a, :a) ON CONFLICT (pseudonym, version) DO "
                  "UPDATE SET state = 'pending', attempts = 0, enqueued_ms = :a, "
                  "next_try_ms = :a, done_ms = 0, last_error = ''",
                  pseudonym, version, now_ms, NULL, NULL);
}

static void row(sqlite3_stmt *st, en_outbox_item *it)
{
    const char *t;

    memset(it, 0, sizeof *it);
    snprintf(it->pseudonym, sizeof it->pseudonym, "%s",
             (const char *)sqlite3_column_text(st, 0));
    it->version = sqlite3_column_int(st, 1);
    it->state = (en_outbox_state)state_parse((const char *)sqlite3_column_text(st, 2));
    it->attempts = sqlite3_column_int(st, 3);
    it->enqueued_ms = sqlite3_column_int64(st, 4);
    it->next_try_ms = sqlite3_column_int64(st, 5);
    it->last_try_ms = sqlite3_column_int64(st, 6);
    it->done_ms = sqlite3_column_int64(st, 7);
    t = (const char *)sqlite3_column_text(st, 8);
    snprintf(it->last_error, sizeof it->last_error, "%s", t ? t : "");
}

#define COLS "pseudonym, version, state, attempts, enqueued_ms, next_try_ms, last_try_ms, " \
             "done_ms, last_error"

int en_outbox_next(en_outbox *ob, int64_t now_ms, en_outbox_item *it, en_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(ob->db, "SELECT " COLS " FROM outbox WHERE state IN ('pending', "
                           "'sending') AND next_try_ms <= ?1 ORDER BY next_try_ms, "
                           "enqueued_ms LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        return fail(ob, "finding what is due", err);
    sqlite3_bind_int64(st, 1, now_ms);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row(st, it);
    else if (rc != SQLITE_DONE)
        rc = fail(ob, "finding what is due", err);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return en_err_set(err, EN_ENOTFOUND, "outbox %s: nothing due", ob->path);
    return rc == SQLITE_ROW ? EN_OK : rc;
}

static int one_row(en_outbox *ob, const char *what, int changes, const char *pseudonym,
                   int version, en_err *err)
{
    if (changes == 1)
        return EN_OK;
    return en_err_set(err, EN_ENOTFOUND, "outbox %s: %s: study %s version %d is not in the "
                      "outbox (or not in a state that allows it)", ob->path, what, pseudonym,
                      version);
}

int en_outbox_begin(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                    en_err *err)
{
    int rc, n = 0;

    rc = exec_v(ob, "starting an attempt", err,
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
                "last_try_ms = :a WHERE pseudonym = :p AND version = :v AND state IN "
                "('pending', 'sending')", pseudonym, version, now_ms, NULL, &n);
    return rc ? rc : one_row(ob, "starting an attempt", n, pseudonym, version, err);
}

int en_outbox_sent(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                   en_err *err)
{
    return en_outbox_finish(ob, pseudonym, version, EN_OUTBOX_SENT, now_ms, "", err);
}

int en_outbox_retry(en_outbox *ob, const char *pseudonym, int version, int64_t next_try_ms,
                    const char *why, en_err *err)
{
    int rc, n = 0;

    rc = exec_v(ob, "scheduling a retry", err,
                "UPDATE outbox SET state = 'pending', next_try_ms = :a, last_error = :t "
                "WHERE pseudonym = :p AND version = :v AND state = 'sending'",
                pseudonym, version, next_try_ms, why, &n);
    return rc ? rc : one_row(ob, "scheduling a retry", n, pseudonym, version, err);
}

int en_outbox_finish(en_outbox *ob, const char *pseudonym, int version,
                     en_outbox_state state, int64_t now_ms, const char *why, en_err *err)
{
    char sql[256];
    int rc, n = 0;

    if (state != EN_OUTBOX_SENT && state != EN_OUTBOX_FAILED && state != EN_OUTBOX_SUPERSEDED)
        return en_err_set(err, EN_EINVAL, "outbox: %s is not a final state",
                          en_outbox_state_name(state));
    snprintf(sql, sizeof sql, "UPDATE outbox SET state = '%s', done_ms = :a, last_error = :t "
             "WHERE pseudonym = :p AND version = :v AND state IN ('pending', 'sending')",
             state_names[state]);
    rc = exec_v(ob, "recording the outcome", err, sql, pseudonym, version, now_ms, why, &n);
    return rc ? rc : one_row(ob, "recording the outcome", n, pseudonym, version, err);
}

int64_t en_outbox_backoff_ms(int attempts, int64_t min_ms, int64_t max_ms)
{
    int64_t w = min_ms > 0 ? min_ms : 1;

    for (int i = 1; i < attempts && w < max_ms; i++)
        w *= 2;
    return w < max_ms ? w : max_ms;
}

int en_outbox_counts(en_outbox *ob, int64_t counts[EN_OUTBOX_NSTATES], en_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    memset(counts, 0, sizeof(int64_t) * EN_OUTBOX_NSTATES);
    if (sqlite3_prepare_v2(ob->db, "SELECT state, count(*) FROM outbox GROUP BY state", -1,
                           &st, NULL) != SQLITE_OK)
        return fail(ob, "counting", err);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        counts[state_parse((const char *)sqlite3_column_text(st, 0))] =
            sqlite3_column_int64(st, 1);
    if (rc != SQLITE_DONE)
        rc = fail(ob, "counting", err);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? EN_OK : rc;
}

int en_outbox_list(en_outbox *ob, int state, en_outbox_fn fn, void *ud, en_err *err)
{
    sqlite3_stmt *st = NULL;
    en_outbox_item it;
    int rc, stop = 0;

    if (sqlite3_prepare_v2(ob->db, "SELECT " COLS " FROM outbox WHERE ?1 < 0 OR state = ?2 "
                           "ORDER BY enqueued_ms, pseudonym, version", -1, &st, NULL) !=
        SQLITE_OK)
        return fail(ob, "listing", err);
    sqlite3_bind_int(st, 1, state);
    sqlite3_bind_text(st, 2, en_outbox_state_name((en_outbox_state)state), -1, SQLITE_STATIC);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        row(st, &it);
        stop = fn(&it, ud);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = fail(ob, "listing", err);
    sqlite3_finalize(st);
    return stop;
}

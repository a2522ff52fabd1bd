/*
 * store_int.h - what the store's files share and nobody else sees: the
 * handle, the compiled-in SQL, and the thin layer over sqlite3 that turns
 * every result code into an en_err naming the database and the operation.
 *
 * Convention (as in SQLite itself): an `int rc` is threaded through a
 * sequence of calls; each helper does nothing when rc is already an error,
 * so a run of binds is checked once, and nothing is ever silently dropped.
 */
#ifndef EN_STORE_INT_H
#define EN_STORE_INT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "en_store.h"

#define EN_STORE_PATH_MAX 1024
#define EN_STORE_APP_ID 1162039876   /* 'ECND', set by sql/001-initial.sql */
#define EN_STORE_BUSY_MS 10000

struct en_store {
    sqlite3 *db;
    char path[EN_STORE_PATH_MAX];
    int readonly;
    int busy_ms;
    int migrations_applied;   /* by the open that made this handle */
    int views_installed;      /* 1 when that open (re)created the views */
};

/* ---- the SQL files, embedded by src/store/embed-sql.sh ----------------- */

/* The generated file declares this struct identically; it cannot include
 * this header (it is built in the build tree). */
struct en__store_sql_file {
    int version;
    const char *name;
    const char *sql;
};

extern const struct en__store_sql_file en__store_migrations[];
extern const int en__store_nmigrations;
extern const char en__store_views_sql[];

/* ---- errors ------------------------------------------------------------- */

/* Sets err from a sqlite3 result code: maps it to an EN_E* code and writes
 * "database PATH: WHAT: sqlite's message" (with a remedy for the common
 * cases: locked, read-only, full, corrupt).  Returns the EN_E* code. */
int en__db_fail(en_store *st, int rc, const char *what, en_err *err);
#ifdef __clang_analyzer__
/* For the analyzer, which cannot see db.c: always a negative EN_* code
 * (see en_err.h). */
#define en__db_fail(...) en__analyzer_failed(en__db_fail(__VA_ARGS__))
#endif

/* ---- statements --------------------------------------------------------- */

int en__db_prepare(en_store *st, const char *sql, sqlite3_stmt **stmt,
                   en_err *err);
/* Finalizes; NULL is fine.  The code finalize returns only repeats the
 * error that step already reported, so it is not re-checked. */
void en__db_finalize(sqlite3_stmt *stmt);

/* Runs a statement that returns no rows (INSERT/UPDATE/DELETE), then
 * resets it and clears its bindings for reuse.  Counts toward the fault
 * injected by en__store_inject_fault. */
int en__db_write(en_store *st, sqlite3_stmt *stmt, const char *what,
                 en_err *err);

/* Runs SQL text (one or more statements, no rows wanted). */
int en__db_exec(en_store *st, const char *sql, const char *what, en_err *err);

/* First column of the first row as an integer (PRAGMA user_version ...). */
int en__db_int(en_store *st, const char *sql, int64_t *out, en_err *err);

/* Write transactions take the write lock at BEGIN (IMMEDIATE), so a busy
 * database waits in the busy handler instead of failing half-way through
 * with a lock upgrade that SQLite cannot wait for. */
int en__db_begin(en_store *st, const char *what, en_err *err);
int en__db_commit(en_store *st, const char *what, en_err *err);
void en__db_rollback(en_store *st);   /* no-op outside a transaction */

/* ---- binding by parameter name (":ef_mean") ----------------------------- */

/* Each does nothing if *rc is already an error.  An unknown name sets
 * SQLITE_RANGE: a programming error that the tests catch. */
void en__bind_text(sqlite3_stmt *s, const char *name, const char *v, int *rc);   /* NULL or "" -> NULL */
void en__bind_int(sqlite3_stmt *s, const char *name, int64_t v, int *rc);
void en__bind_int_opt(sqlite3_stmt *s, const char *name, int v, int *rc);        /* EN_STORE_NONE -> NULL */
void en__bind_double(sqlite3_stmt *s, const char *name, double v, int *rc);      /* NAN -> NULL */
void en__bind_time(sqlite3_stmt *s, const char *name, int64_t ms, int *rc);      /* 0 -> NULL */

/* ---- reading columns ----------------------------------------------------- */

void en__col_text(sqlite3_stmt *s, int col, char *dst, size_t n);     /* NULL -> "" */
int en__col_int_opt(sqlite3_stmt *s, int col);                       /* NULL -> EN_STORE_NONE */
double en__col_double(sqlite3_stmt *s, int col);                     /* NULL -> NAN */
int64_t en__col_time(sqlite3_stmt *s, int col);                      /* NULL -> 0 */

/* ---- time and validation ------------------------------------------------- */

/* Parses the stored form "YYYY-MM-DDTHH:MM:SS.mmmZ"; -1 when malformed. */
int64_t en__time_from_iso(const char *s);

/* 1 when s is lowercase hex of length min..max. */
int en__is_hex(const char *s, size_t min, size_t max);
/* 1 when the fixed-size field holds a NUL (filled by strncpy, say). */
int en__is_terminated(const char *field, size_t size);

/* Refuses writes on a read-only handle with a clear message. */
int en__require_writable(en_store *st, en_err *err);

/* ---- shared between the store's files -------------------------------------- */

/* Finds the clip by dedup_key when non-empty, else the study's current
 * clip by pseudonym (en_store_find).  EN_ENOTFOUND when neither is known;
 * EN_EINVAL when the key belongs to a clip of another study. */
int en__clip_find(en_store *st, const char *pseudonym, const char *dedup_key,
                  en_store_ref *ref, en_err *err);

/* Creates the study when new; moves its arrival times to include
 * received_ms (0 = leave them) and marks its result stale.  *study_id
 * gets its row id. */
int en__study_touch(en_store *st, const char *pseudonym, int64_t received_ms,
                    int64_t *study_id, en_err *err);

/* Marks the result of the study holding clip_id stale. */
int en__study_stale_by_clip(en_store *st, int64_t clip_id, en_err *err);

/* study_id and clip_id 0 = NULL; version 0 = no result version. */
int en__event_insert(en_store *st, int64_t study_id, int64_t clip_id,
                     en_store_event_kind kind, const char *stage, int attempt,
                     const char *job, const char *code, int version,
                     const char *message, en_err *err);

int en__model_put(en_store *st, const en_store_model *m, en_err *err);

/* The clip SELECT every reader shares, and the row reader that goes with
 * it (query.c).  Append "WHERE ..." to en__clip_select. */
extern const char en__clip_select[];
void en__clip_read(sqlite3_stmt *s, en_store_clip *out);

/* Loads c->r.beats (and, with frames, c->r.frames) of the clip c->id. */
int en__clip_load_children(en_store *st, en_store_clip *c, int frames, en_err *err);

/* Loads the events "SELECT ... FROM events WHERE <where> ORDER BY id",
 * :id bound to id. */
int en__events_load(en_store *st, const char *where, int64_t id,
                    en_store_event **out, int *n, en_err *err);

/* Runs "SELECT ... WHERE study_id = :id"-style queries, growing *items by
 * one element per row, filled by fill(). */
int en__load_rows(en_store *st, int64_t id, const char *sql, size_t size, void **items,
                  int *n, void (*fill)(sqlite3_stmt *, void *), const char *what,
                  en_err *err);

/* en_store_study_show inside a transaction the caller holds. */
int en__study_show_locked(en_store *st, const char *pseudonym, int what, en_store_study *out,
                          en_err *err);

/* Filters become a WHERE clause of fixed fragments with bound
 * parameters (query.c); clips: 1 for the clip form, 0 for the study form
 * (the study table aliased s, its clips c). */
int en__prepare_filtered(en_store *st, const char *head, const en_store_filter *f,
                         int clips, int paged, sqlite3_stmt **s, en_err *err);

/* ---- tests only ------------------------------------------------------------ */

/* Makes the nth en__db_write from now fail (n >= 1) as if the disk had
 * failed; 0 disarms.  Process-wide; for the atomicity tests. */
void en__store_inject_fault(int nth_write);

/* Applies migrations[0..n) to st as en_store_open does (one transaction),
 * so tests can prove a failing migration changes nothing. */
int en__store_migrate(en_store *st, const struct en__store_sql_file *migs,
                      int n, en_err *err);

#endif

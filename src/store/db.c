/*
 * db.c - the store's thin layer over sqlite3: statements, transactions,
 * binding by name, and the one place where a SQLite result code becomes an
 * en_err.  Every message names the database file and what was being done,
 * because an operator reading "database is locked" alone cannot tell which
 * of several files, or which step, is at fault.
 */
#include "store_int.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------- */

static int map_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return EN_ENOMEM;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG: return EN_EINVAL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return EN_EFORMAT;
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_READONLY: return EN_EPERM;
    default: return EN_EIO;
    }
}

/* A remedy for the failures an operator can do something about. */
static const char *remedy(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_READONLY:
        return "; the file or its folder is not writable by this user";
    case SQLITE_FULL:
        return "; the disk is full: free space, then retry";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return "; the file is damaged or not a database: restore it from a backup";
    case SQLITE_CANTOPEN:
        return "; check that the folder exists and this user may read and write it";
    case SQLITE_CONSTRAINT:
        return " (the data breaks a rule of the schema, docs/schema.md)";
    default:
        return "";
    }
}

#undef en__db_fail /* store_int.h models it for the analyzer; defined here */
int en__db_fail(en_store *st, int rc, const char *what, en_err *err)
{
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int prim = rc & 0xff;

    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return en_err_set(err, EN_EIO,
                          "database %s is locked by another process (waited %d ms) "
                          "while %s: %s; another echonetd or echonetctl is writing to it: "
                          "retry later, or find the process with `fuser %s`",
                          st->path, st->busy_ms, what, msg, st->path);
    return en_err_set(err, map_code(rc), "database %s: %s: %s%s",
                      st->path, what, msg, remedy(rc));
}

/* ---- fault injection (tests) --------------------------------------------- */

static int fault_countdown;

void en__store_inject_fault(int nth_write)
{
    fault_countdown = nth_write > 0 ? nth_write : 0;
}

/* ---- statements ---------------------------------------------------------- */

int en__db_prepare(en_store *st, const char *sql, sqlite3_stmt **stmt,
                   en_err *err)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);
    if (rc != SQLITE_OK) {
        *stmt = NULL;
        return en__db_fail(st, rc, "preparing a query", err);
    }
    return EN_OK;
}

void en__db_finalize(sqlite3_stmt *stmt)
{
    (void)sqlite3_finalize(stmt);
}

int en__db_write(en_store *st, sqlite3_stmt *stmt, const char *what,
                 en_err *err)
{
    int rc;

    if (fault_countdown > 0 && --fault_countdown == 0) {
        (void)sqlite3_reset(stmt);
        return en_err_set(err, EN_EIO, "database %s: %s: injected fault (test)",
                          st->path, what);
    }
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int code = en__db_fail(st, rc, what, err);
        (void)sqlite3_reset(stmt);   /* repeats rc; already reported */
        return code;
    }
    /* reset after success returns SQLITE_OK; clear_bindings always does. */
    (void)sqlite3_reset(stmt);
    (void)sqlite3_clear_bindings(stmt);
    return EN_OK;
}

int en__db_exec(en_store *st, const char *sql, const char *what, en_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

    sqlite3_free(msg);   /* sqlite3_errmsg still holds it for en__db_fail */
    if (rc != SQLITE_OK)
        return en__db_fail(st, rc, what, err);
    return EN_OK;
}

int en__db_int(en_store *st, const char *sql, int64_t *out, en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st, sql, &s, err);

    if (rc)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = EN_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = EN_OK;
    } else {
        rc = en__db_fail(st, rc, sql, err);
    }
    en__db_finalize(s);
    return rc;
}

/* ---- transactions --------------------------------------------------------- */

int en__db_begin(en_store *st, const char *what, en_err *err)
{
    return en__db_exec(st, "BEGIN IMMEDIATE", what, err);
}

int en__db_commit(en_store *st, const char *what, en_err *err)
{
    int rc = en__db_exec(st, "COMMIT", what, err);
    if (rc)
        en__db_rollback(st);
    return rc;
}

void en__db_rollback(en_store *st)
{
    /* Some errors (full disk, I/O, out of memory) roll back by
     * themselves; a second ROLLBACK would only fail. */
    if (!sqlite3_get_autocommit(st->db))
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

int en__require_writable(en_store *st, en_err *err)
{
    if (st->readonly)
        return en_err_set(err, EN_EPERM,
                          "database %s was opened read-only: cannot write", st->path);
    return EN_OK;
}

/* ---- binding ----------------------------------------------------------- */

static int param(sqlite3_stmt *s, const char *name, int *rc)
{
    int i;

    if (*rc != SQLITE_OK)
        return 0;
    i = sqlite3_bind_parameter_index(s, name);
    if (i == 0)
        *rc = SQLITE_RANGE;
    return i;
}

void en__bind_text(sqlite3_stmt *s, const char *name, const char *v, int *rc)
{
    int i = param(s, name, rc);
    if (i)
        *rc = (v && *v) ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT)
                        : sqlite3_bind_null(s, i);
}

void en__bind_int(sqlite3_stmt *s, const char *name, int64_t v, int *rc)
{
    int i = param(s, name, rc);
    if (i)
        *rc = sqlite3_bind_int64(s, i, v);
}

void en__bind_int_opt(sqlite3_stmt *s, const char *name, int v, int *rc)
{
    int i = param(s, name, rc);
    if (i)
        *rc = v == EN_STORE_NONE ? sqlite3_bind_null(s, i) : sqlite3_bind_int64(s, i, v);
}

void en__bind_double(sqlite3_stmt *s, const char *name, double v, int *rc)
{
    int i = param(s, name, rc);
    if (i)
        *rc = isfinite(v) ? sqlite3_bind_double(s, i, v) : sqlite3_bind_null(s, i);
}

void en__bind_time(sqlite3_stmt *s, const char *name, int64_t ms, int *rc)
{
    char buf[EN_STORE_TIME_MAX];
    int i = param(s, name, rc);

    if (!i)
        return;
    if (ms == 0) {
        *rc = sqlite3_bind_null(s, i);
        return;
    }
    en_store_format_time(ms, buf);
    *rc = sqlite3_bind_text(s, i, buf, -1, SQLITE_TRANSIENT);
}

/* ---- columns ------------------------------------------------------------ */

void en__col_text(sqlite3_stmt *s, int col, char *dst, size_t n)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    size_t len;

    assert(n > 0);
    if (!v) {
        dst[0] = '\0';
        return;
    }
    len = strlen((const char *)v);
    if (len >= n)
        len = n - 1;   /* truncate: fixed-size fields in the structs */
    memcpy(dst, v, len);
    dst[len] = '\0';
}

int en__col_int_opt(sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return EN_STORE_NONE;
    return sqlite3_column_int(s, col);
}

double en__col_double(sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return NAN;
    return sqlite3_column_double(s, col);
}

int64_t en__col_time(sqlite3_stmt *s, int col)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    int64_t ms;

    if (!v)
        return 0;
    ms = en__time_from_iso((const char *)v);
    return ms < 0 ? 0 : ms;
}

/* ---- validation ---------------------------------------------------------- */

int en__is_hex(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    if (!s)
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n >= min && n <= max;
}

int en__is_terminated(const char *field, size_t size)
{
    return memchr(field, '\0', size) != NULL;
}

/*
 * open.c - opening the results database and bringing its schema up to date.
 *
 * Settings, and why:
 * - journal_mode=WAL: the daemon writes while echonetctl reads; in WAL mode
 *   readers never block the writer nor the writer the readers.
 * - synchronous=FULL: in WAL mode NORMAL may lose the last commits on power
 *   loss.  The daemon deletes or archives a DICOM once its result is
 *   committed, so a commit must survive power loss: one fsync per study
 *   (whose inference takes seconds) costs nothing that matters.
 * - foreign_keys=ON: off by default in SQLite, and per connection.
 * - busy_timeout: another process holding the write lock is waited for
 *   (10 s by default) before a clear "locked" error.
 *
 * Migrations (sql/NNN-*.sql, compiled in) run in one IMMEDIATE transaction
 * together with PRAGMA user_version, so two processes opening a new file
 * at once cannot both migrate, and a failed migration changes nothing.
 */
#include "en_util.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int en_store_schema_version(void)
{
    return en__store_nmigrations > 0
               ? en__store_migrations[en__store_nmigrations - 1].version : 0;
}

const char *en_store_path(const en_store *st)
{
    return st->path;
}

void en_store_set_busy_timeout(en_store *st, int ms)
{
    if (ms < 0)
        ms = 0;
    /* Only fails for a bad handle, which st->db is not. */
    (void)sqlite3_busy_timeout(st->db, ms);
    st->busy_ms = ms;
}

/* Creates the file with mode 0640 when absent, so the database is not
 * world-readable (SQLite would use 0644); -wal and -shm copy its mode. */
static int create_file(en_store *st, en_err *err)
{
    int fd = open(st->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);

    if (fd >= 0) {
        close(fd);
        return EN_OK;
    }
    if (errno == EEXIST)
        return EN_OK;
    return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO,
                      "database %s: cannot create it: %s; check that the folder exists "
                      "and this user may write there", st->path, strerror(errno));
}

/* PRAGMA journal_mode = WAL on a new file needs the file to itself, and
 * SQLite reports a clash with another process opening it at the same
 * moment as SQLITE_BUSY at once, without its busy handler: so wait here,
 * up to the busy timeout.  On a file already in WAL mode it is a no-op. */
static int set_wal(en_store *st, char *mode, size_t n, en_err *err)
{
    static const char sql[] = "PRAGMA journal_mode = WAL";
    double t0 = en_mono_ms();

    for (unsigned k = 0;; k++) {
        sqlite3_stmt *s;
        int rc = en__db_prepare(st, sql, &s, err);
        if (rc)
            return rc;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            en__col_text(s, 0, mode, n);
        en__db_finalize(s);
        if (rc == SQLITE_ROW)
            return EN_OK;
        if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) ||
            en_mono_ms() - t0 >= st->busy_ms)
            return en__db_fail(st, rc, sql, err);
        usleep(5000 + 1000 * (k % 20));
    }
}

static int configure(en_store *st, en_err *err)
{
    char mode[32];
    int64_t fk = 0;
    int rc;

    rc = sqlite3_extended_result_codes(st->db, 1);
    if (rc != SQLITE_OK)
        return en__db_fail(st, rc, "enabling extended result codes", err);
    en_store_set_busy_timeout(st, EN_STORE_BUSY_MS);

    if ((rc = en__db_exec(st, "PRAGMA foreign_keys = ON", "enabling foreign keys", err)) ||
        (rc = en__db_int(st, "PRAGMA foreign_keys", &fk, err)))
        return rc;
    if (fk != 1)
        return en_err_set(err, EN_EUNSUPPORTED,
                          "database %s: this SQLite library cannot enforce foreign keys",
                          st->path);
    if (st->readonly)
        return EN_OK;

    if ((rc = set_wal(st, mode, sizeof mode, err)))
        return rc;
    if (strcmp(mode, "wal") != 0)
        return en_err_set(err, EN_EUNSUPPORTED,
                          "database %s: cannot use write-ahead logging (journal mode "
                          "stays '%s'); put the database on a local file system",
                          st->path, mode);
    return en__db_exec(st, "PRAGMA synchronous = FULL", "setting synchronous=FULL", err);
}

/* ---- identity and version ------------------------------------------------ */

/* Refuses a file some other program made: migrating it would damage it. */
static int check_identity(en_store *st, int64_t version, en_err *err)
{
    int64_t app = 0, objects = 0;
    int rc;

    if ((rc = en__db_int(st, "PRAGMA application_id", &app, err)))
        return rc;
    if (version == 0) {
        if ((rc = en__db_int(st, "SELECT count(*) FROM sqlite_master", &objects, err)))
            return rc;
        if (objects == 0 && app == 0)
            return EN_OK;   /* a new, empty file */
    }
    if (app != EN_STORE_APP_ID)
        return en_err_set(err, EN_EFORMAT,
                          "database %s is an SQLite file of another program (no echonetd "
                          "schema): refusing to change it; give echonetd its own file",
                          st->path);
    return EN_OK;
}

static int check_not_newer(en_store *st, int64_t version, int newest, en_err *err)
{
    if (version > newest)
        return en_err_set(err, EN_EUNSUPPORTED,
                          "database %s has schema version %lld, newer than this program "
                          "understands (%d): it was upgraded by a newer echonetd; run that "
                          "version (a database cannot be downgraded)",
                          st->path, (long long)version, newest);
    return EN_OK;
}

/* ---- views ----------------------------------------------------------------- */

/* FNV-1a: enough to notice that views.sql changed. */
static void views_fingerprint(char out[17])
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)en__store_views_sql; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int views_current(en_store *st, int *current, en_err *err)
{
    char want[17], have[64] = "";
    sqlite3_stmt *s;
    int rc;

    views_fingerprint(want);
    if ((rc = en__db_prepare(st, "SELECT value FROM meta WHERE key = 'views'", &s, err)))
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        en__col_text(s, 0, have, sizeof have);
    else if (rc != SQLITE_DONE) {
        int code = en__db_fail(st, rc, "reading the views fingerprint", err);
        en__db_finalize(s);
        return code;
    }
    en__db_finalize(s);
    *current = strcmp(want, have) == 0;
    return EN_OK;
}

/* Inside a transaction: drops every v_ view, creates views.sql's. */
static int install_views(en_store *st, en_err *err)
{
    char fp[17];
    sqlite3_stmt *s;
    char *drops = NULL;
    int rc;

    rc = en__db_prepare(st,
        "SELECT group_concat('DROP VIEW \"' || replace(name, '\"', '\"\"') || '\";', '') "
        "FROM sqlite_master WHERE type = 'view' AND name GLOB 'v_*'", &s, err);
    if (rc)
        return rc;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = en__db_fail(st, rc, "listing the views", err);
        en__db_finalize(s);
        return rc;
    }
    if (sqlite3_column_text(s, 0)) {
        drops = strdup((const char *)sqlite3_column_text(s, 0));
        if (!drops) {
            en__db_finalize(s);
            return en_err_set(err, EN_ENOMEM, "database %s: out of memory", st->path);
        }
    }
    en__db_finalize(s);
    rc = drops ? en__db_exec(st, drops, "dropping the old views", err) : EN_OK;
    free(drops);
    if (rc || (rc = en__db_exec(st, en__store_views_sql, "creating the views (sql/views.sql)", err)))
        return rc;

    views_fingerprint(fp);
    if ((rc = en__db_prepare(st, "INSERT OR REPLACE INTO meta (key, value) VALUES ('views', :v)",
                             &s, err)))
        return rc;
    rc = SQLITE_OK;
    en__bind_text(s, ":v", fp, &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "recording the views fingerprint", err);
    en__db_finalize(s);
    if (!rc)
        st->views_installed = 1;
    return rc;
}

/* ---- migrations ----------------------------------------------------------- */

static int record_migration(en_store *st, const struct en__store_sql_file *m,
                            en_err *err)
{
    sqlite3_stmt *s;
    int rc = en__db_prepare(st,
        "INSERT INTO schema_migrations (version, name, applied_at) "
        "VALUES (:v, :name, :at)", &s, err);

    if (rc)
        return rc;
    rc = SQLITE_OK;
    en__bind_int(s, ":v", m->version, &rc);
    en__bind_text(s, ":name", m->name, &rc);
    en__bind_time(s, ":at", en_wall_ms(), &rc);
    rc = rc != SQLITE_OK ? en__db_fail(st, rc, "binding", err)
                         : en__db_write(st, s, "recording the migration", err);
    en__db_finalize(s);
    return rc;
}

static int apply_one(en_store *st, const struct en__store_sql_file *m, en_err *err)
{
    char what[160], sql[64];
    int rc;

    snprintf(what, sizeof what, "applying migration sql/%s.sql", m->name);
    if ((rc = en__db_exec(st, m->sql, what, err)) || (rc = record_migration(st, m, err)))
        return rc;
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
    return en__db_exec(st, sql, "setting user_version", err);
}

/* The version is read again inside the transaction: another process may
 * have migrated the file while this one waited for the lock. */
static int migrate_locked(en_store *st, const struct en__store_sql_file *migs,
                          int n, en_err *err)
{
    int64_t version;
    int rc;

    if ((rc = en__db_int(st, "PRAGMA user_version", &version, err)) ||
        (rc = check_identity(st, version, err)))
        return rc;
    for (int i = 0; i < n; i++) {
        if (migs[i].version <= version)
            continue;
        if (migs[i].version != version + 1)
            return en_err_set(err, EN_EINVAL,
                              "database %s: migration sql/%s.sql does not follow version %lld",
                              st->path, migs[i].name, (long long)version);
        if ((rc = apply_one(st, &migs[i], err)))
            return rc;
        version = migs[i].version;
        st->migrations_applied++;
    }
    return check_not_newer(st, version, n > 0 ? migs[n - 1].version : 0, err);
}

int en__store_migrate(en_store *st, const struct en__store_sql_file *migs,
                      int n, en_err *err)
{
    int rc;

    if ((rc = en__db_begin(st, "upgrading the schema", err)))
        return rc;
    st->migrations_applied = 0;
    if ((rc = migrate_locked(st, migs, n, err)) ||
        (st->migrations_applied > 0 && (rc = install_views(st, err)))) {
        en__db_rollback(st);
        st->migrations_applied = 0;
        st->views_installed = 0;
        return rc;
    }
    return en__db_commit(st, "upgrading the schema", err);
}

static int refresh_views(en_store *st, en_err *err)
{
    int current = 0, rc;

    if ((rc = views_current(st, &current, err)) || current)
        return rc;
    if ((rc = en__db_begin(st, "updating the views", err)))
        return rc;
    /* Re-check under the lock: another process may have just done it. */
    if ((rc = views_current(st, &current, err)) || (!current && (rc = install_views(st, err)))) {
        en__db_rollback(st);
        return rc;
    }
    return en__db_commit(st, "updating the views", err);
}

static int bring_up_to_date(en_store *st, en_err *err)
{
    int64_t version;
    int rc;

    if ((rc = en__db_int(st, "PRAGMA user_version", &version, err)) ||
        (rc = check_identity(st, version, err)) ||
        (rc = check_not_newer(st, version, en_store_schema_version(), err)))
        return rc;
    if (version < en_store_schema_version()) {
        if (st->readonly)
            return en_err_set(err, EN_EUNSUPPORTED,
                              "database %s has schema version %lld; this program needs %d: "
                              "open it once read-write (start echonetd, or run echonetctl "
                              "as a user who may write it) to upgrade it",
                              st->path, (long long)version, en_store_schema_version());
        return en__store_migrate(st, en__store_migrations, en__store_nmigrations, err);
    }
    return st->readonly ? EN_OK : refresh_views(st, err);
}

/* ---- open / close ----------------------------------------------------------- */

int en_store_open(const char *path, int flags, en_store **out, en_err *err)
{
    en_store *st;
    int rc;

    *out = NULL;
    if (!path || !*path)
        return en_err_set(err, EN_EINVAL, "results database: no path given");
    if (strlen(path) >= EN_STORE_PATH_MAX)
        return en_err_set(err, EN_EINVAL, "results database: path too long (%zu bytes)",
                          strlen(path));
    st = calloc(1, sizeof *st);
    if (!st)
        return en_err_set(err, EN_ENOMEM, "database %s: out of memory", path);
    memcpy(st->path, path, strlen(path) + 1);
    st->readonly = (flags & EN_STORE_READONLY) != 0;
    st->busy_ms = EN_STORE_BUSY_MS;

    if (!st->readonly && (rc = create_file(st, err))) {
        free(st);
        return rc;
    }
    rc = sqlite3_open_v2(path, &st->db,
                         st->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        rc = en__db_fail(st, rc, "opening", err);
        en_store_close(st);
        return rc;
    }
    if ((rc = configure(st, err)) || (rc = bring_up_to_date(st, err))) {
        en_store_close(st);
        return rc;
    }
    *out = st;
    return EN_OK;
}

void en_store_close(en_store *st)
{
    if (!st)
        return;
    /* _v2 defers the close if a statement were still open (a bug), rather
     * than failing and leaking the connection. */
    (void)sqlite3_close_v2(st->db);
    free(st);
}

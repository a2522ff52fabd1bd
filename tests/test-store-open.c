/*
 * test-store-open.c - opening the results database: a new file gets the
 * newest schema with WAL, foreign keys and synchronous=FULL; re-opening
 * changes nothing; a newer, foreign or damaged file is refused untouched;
 * a failing migration leaves no trace; views are re-created when they
 * changed; several processes creating one file at once all succeed; a
 * locked database waits, then fails with a message naming the file.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

static long long pragma(en_store *st, const char *sql)
{
    int64_t v = -1;
    en_err e;
    CHECKF(en__db_int(st, sql, &v, &e) == EN_OK, "%s: %s", sql, e.msg);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "raw_exec %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
        exit(99);
    }
    sqlite3_close(db);
}

static void test_embedded_migrations_numbered(void)
{
    CHECK(en__store_nmigrations >= 1);
    for (int i = 0; i < en__store_nmigrations; i++)
        CHECKF(en__store_migrations[i].version == i + 1, "migration %d has version %d", i,
               en__store_migrations[i].version);
    CHECK(en_store_schema_version() == en__store_nmigrations);
    CHECK(strstr(en__store_views_sql, "CREATE VIEW v_results") != NULL);
}

static void test_fresh_database(void)
{
    const char *p = ts_path("fresh.db");
    char mode[16];
    en_store *st;
    struct stat sb;
    en_err e;

    CHECKF(en_store_open(p, 0, &st, &e) == EN_OK, "%s", e.msg);
    if (!st)
        return;
    CHECK(pragma(st, "PRAGMA user_version") == en_store_schema_version());
    CHECK(pragma(st, "PRAGMA application_id") == EN_STORE_APP_ID);
    CHECK(pragma(st, "PRAGMA foreign_keys") == 1);
    CHECK(pragma(st, "PRAGMA synchronous") == 2);   /* FULL */
    CHECK(pragma(st, "PRAGMA busy_timeout") == EN_STORE_BUSY_MS);
    CHECK(pragma(st, "SELECT count(*) FROM schema_migrations") == en_store_schema_version());
    CHECK(pragma(st, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name GLOB 'v_*'") >= 8);
    CHECK(st->migrations_applied == en_store_schema_version());
    CHECK(st->views_installed == 1);
    en_store_close(st);

    /* WAL is a property of the file: another connection sees it. */
    {
        sqlite3 *db;
        sqlite3_stmt *s;
        CHECK(sqlite3_open(p, &db) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        sqlite3_close(db);
        CHECKF(strcmp(mode, "wal") == 0, "journal_mode is %s", mode);
    }
    {
        mode_t um = umask(0);
        umask(um);
        CHECK(stat(p, &sb) == 0);
        CHECKF((sb.st_mode & 0777) == (0640 & ~um), "database mode %o", sb.st_mode & 0777);
    }
}

static void test_reopen_is_noop(void)
{
    const char *p = ts_path("reopen.db");
    en_store_beat beats[2];
    en_store_frame frames[100];
    en_store_result r;
    en_store *st;
    char *before, *after;
    en_err e;

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    ts_result(&r, "0123456789abcdef", 100, 2, 55, beats, frames);
    CHECKF(en_store_write_result(st, &r, NULL, &e) == EN_OK, "%s", e.msg);
    en_store_close(st);
    before = ts_dump(p);

    CHECKF(en_store_open(p, 0, &st, &e) == EN_OK, "%s", e.msg);
    if (st) {
        CHECK(st->migrations_applied == 0);
        CHECK(st->views_installed == 0);
        CHECK(pragma(st, "SELECT count(*) FROM schema_migrations") == en_store_schema_version());
        en_store_close(st);
    }
    after = ts_dump(p);
    CHECK(strcmp(before, after) == 0);
    CHECK(ts_sql_int(p, "PRAGMA user_version") == en_store_schema_version());
    free(before);
    free(after);
}

static void test_newer_database_refused(void)
{
    const char *p = ts_path("newer.db");
    char sql[64];
    en_store *st;
    en_err e;

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    en_store_close(st);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", en_store_schema_version() + 1);
    raw_exec(p, sql);

    for (int flags = 0; flags <= EN_STORE_READONLY; flags += EN_STORE_READONLY) {
        st = (en_store *)1;
        CHECK(en_store_open(p, flags, &st, &e) == EN_EUNSUPPORTED);
        CHECK(st == NULL);
        CHECKF(strstr(e.msg, p) && strstr(e.msg, "newer"), "message: %s", e.msg);
    }
    CHECK(ts_sql_int(p, "PRAGMA user_version") == en_store_schema_version() + 1);
}

static void test_foreign_and_damaged_refused(void)
{
    const char *other = ts_path("other.db"), *junk = ts_path("junk.db");
    en_store *st;
    FILE *f;
    en_err e;

    raw_exec(other, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)");
    CHECK(en_store_open(other, 0, &st, &e) == EN_EFORMAT);
    CHECKF(strstr(e.msg, other) && strstr(e.msg, "another program"), "message: %s", e.msg);
    CHECK(ts_sql_int(other, "SELECT count(*) FROM sqlite_master WHERE name = 'studies'") == 0);
    CHECK(ts_sql_int(other, "PRAGMA user_version") == 0);

    f = fopen(junk, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not a database, it is a text file. ", f);
    fclose(f);
    CHECK(en_store_open(junk, 0, &st, &e) == EN_EFORMAT);
    CHECKF(strstr(e.msg, junk) != NULL, "message: %s", e.msg);

    CHECK(en_store_open("", 0, &st, &e) == EN_EINVAL);
    CHECK(en_store_open(ts_path("no/such/folder/x.db"), 0, &st, &e) < 0);
    CHECKF(strstr(e.msg, "no/such/folder") && strstr(e.msg, "folder"), "message: %s", e.msg);
}

/* A migration list: everything compiled in, plus extras. */
static struct en__store_sql_file migs[16];

static int with_extra(const struct en__store_sql_file *extra, int n)
{
    int k = en__store_nmigrations;
    memcpy(migs, en__store_migrations, sizeof migs[0] * (size_t)k);
    memcpy(migs + k, extra, sizeof migs[0] * (size_t)n);
    return k + n;
}

static void test_failed_migration_changes_nothing(void)
{
    const char *p = ts_path("migrate.db");
    int v = en_store_schema_version();
    struct en__store_sql_file extra[2] = {
        {v + 1, "900-good", "CREATE TABLE t_good (x); INSERT INTO t_good VALUES (1);"},
        {v + 2, "901-bad", "CREATE TABLE t_bad (x); SELECT * FROM no_such_table;"},
    };
    struct en__store_sql_file gap[1] = {{v + 2, "902-gap", "CREATE TABLE t_gap (x);"}};
    en_store_beat beats[1];
    en_store_frame frames[50];
    en_store_result r;
    en_store *st;
    char *before, *after;
    en_err e;

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    ts_result(&r, "00000000000000aa", 50, 1, 60, beats, frames);
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_OK);
    before = ts_dump(p);

    /* Both extras in one transaction: the bad one undoes the good one. */
    CHECK(en__store_migrate(st, migs, with_extra(extra, 2), &e) < 0);
    CHECKF(strstr(e.msg, "901-bad") && strstr(e.msg, "no_such_table"), "message: %s", e.msg);
    CHECK(pragma(st, "PRAGMA user_version") == v);
    CHECK(pragma(st, "SELECT count(*) FROM sqlite_master WHERE name IN ('t_good', 't_bad')") == 0);
    after = ts_dump(p);
    CHECK(strcmp(before, after) == 0);
    free(after);

    /* A gap in the numbering is refused. */
    CHECK(en__store_migrate(st, migs, with_extra(gap, 1), &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "902-gap") != NULL, "message: %s", e.msg);
    CHECK(pragma(st, "PRAGMA user_version") == v);

    /* The good one alone applies, records itself and bumps the version. */
    CHECKF(en__store_migrate(st, migs, with_extra(extra, 1), &e) == EN_OK, "%s", e.msg);
    CHECK(pragma(st, "PRAGMA user_version") == v + 1);
    CHECK(pragma(st, "SELECT count(*) FROM t_good") == 1);
    CHECK(pragma(st, "SELECT count(*) FROM schema_migrations WHERE name = '900-good'") == 1);
    CHECK(st->migrations_applied == 1);
    en_store_close(st);

    /* ... which this program then no longer understands. */
    CHECK(en_store_open(p, 0, &st, &e) == EN_EUNSUPPORTED);
    free(before);
}

static void test_views_recreated_when_changed(void)
{
    const char *p = ts_path("views.db");
    en_store *st;
    en_err e;

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    en_store_close(st);
    raw_exec(p, "DROP VIEW v_results; UPDATE meta SET value = 'stale' WHERE key = 'views';"
                "CREATE VIEW v_obsolete AS SELECT 1;");
    CHECKF(en_store_open(p, 0, &st, &e) == EN_OK, "%s", e.msg);
    if (!st)
        return;
    CHECK(st->views_installed == 1);
    CHECK(st->migrations_applied == 0);
    CHECK(pragma(st, "SELECT count(*) FROM sqlite_master WHERE name = 'v_results'") == 1);
    CHECK(pragma(st, "SELECT count(*) FROM sqlite_master WHERE name = 'v_obsolete'") == 0);
    CHECK(pragma(st, "SELECT count(*) FROM v_results") == 0);
    en_store_close(st);
}

static void test_readonly(void)
{
    const char *p = ts_path("ro.db"), *empty = ts_path("empty.db");
    en_store_beat beats[1];
    en_store_frame frames[50];
    en_store_result r;
    en_store *st;
    FILE *f;
    en_err e;

    CHECK(en_store_open(ts_path("absent.db"), EN_STORE_READONLY, &st, &e) < 0);
    CHECK(access(ts_path("absent.db"), F_OK) != 0);   /* not created */

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    en_store_close(st);
    CHECKF(en_store_open(p, EN_STORE_READONLY, &st, &e) == EN_OK, "%s", e.msg);
    if (st) {
        ts_result(&r, "00000000000000bb", 50, 1, 60, beats, frames);
        CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EPERM);
        CHECK(strstr(e.msg, "read-only") != NULL);
        en_store_close(st);
    }

    f = fopen(empty, "w");   /* an empty file: schema version 0 */
    fclose(f);
    CHECK(en_store_open(empty, EN_STORE_READONLY, &st, &e) == EN_EUNSUPPORTED);
    CHECKF(strstr(e.msg, "read-write") != NULL, "message: %s", e.msg);
}

/* Several processes create and use one new file at once: exactly one
 * migrates (the version is re-read under the lock), none fails. */
static void test_concurrent_first_open(void)
{
    const char *p = ts_path("race.db");
    enum { N = 6 };
    pid_t pid[N];

    for (int i = 0; i < N; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            en_store_beat beats[1];
            en_store_frame frames[50];
            en_store_result r;
            char name[17];
            en_store *st;
            en_err e;
            snprintf(name, sizeof name, "%016x", 0xc0de00 + i);
            if (en_store_open(p, 0, &st, &e) != EN_OK) {
                fprintf(stderr, "child %d: %s\n", i, e.msg);
                _exit(1);
            }
            ts_result(&r, name, 50, 1, 50 + i, beats, frames);
            if (en_store_write_result(st, &r, NULL, &e) != EN_OK) {
                fprintf(stderr, "child %d: %s\n", i, e.msg);
                _exit(1);
            }
            en_store_close(st);
            _exit(0);
        }
    }
    for (int i = 0; i < N; i++) {
        int status = 0;
        CHECK(waitpid(pid[i], &status, 0) == pid[i]);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
    }
    CHECK(ts_sql_int(p, "SELECT count(*) FROM studies") == N);
    CHECK(ts_sql_int(p, "SELECT count(*) FROM schema_migrations") == en_store_schema_version());
    CHECK(ts_sql_int(p, "PRAGMA user_version") == en_store_schema_version());
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static void test_locked_database(void)
{
    const char *p = ts_path("locked.db");
    en_store_beat beats[1];
    en_store_frame frames[50];
    en_store_result r;
    en_store *st;
    sqlite3 *other;
    double t0, waited;
    en_err e;

    CHECK(en_store_open(p, 0, &st, &e) == EN_OK);
    if (!st)
        return;
    en_store_set_busy_timeout(st, 300);
    CHECK(sqlite3_open(p, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);

    ts_result(&r, "00000000000000cc", 50, 1, 60, beats, frames);
    t0 = now_s();
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EIO);
    waited = now_s() - t0;
    CHECKF(strstr(e.msg, p) && strstr(e.msg, "locked by another process"), "message: %s", e.msg);
    CHECKF(waited >= 0.25, "gave up after %.3f s, before the busy timeout", waited);

    /* Readers are not blocked by the writer (WAL). */
    {
        int64_t n = -1;
        CHECK(en_store_count(st, NULL, &n, &e) == EN_OK && n == 0);
    }
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    CHECKF(en_store_write_result(st, &r, NULL, &e) == EN_OK, "%s", e.msg);
    en_store_close(st);
    CHECK(ts_sql_int(p, "SELECT count(*) FROM studies") == 1);
}

int main(void)
{
    ts_init();
    test_embedded_migrations_numbered();
    test_fresh_database();
    test_reopen_is_noop();
    test_newer_database_refused();
    test_foreign_and_damaged_refused();
    test_failed_migration_changes_nothing();
    test_views_recreated_when_changed();
    test_readonly();
    test_concurrent_first_open();
    test_locked_database();
    TST_DONE();
}

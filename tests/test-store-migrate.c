/*
 * test-store-migrate.c - a database written by schema-1 echonetd (one row
 * per study; tests/store-v1.sql, dumped from a database that code made)
 * is upgraded to schema 2 keeping every stored result:
 *
 * - every schema-1 study is a study with one clip holding exactly its
 *   columns (same ids), its beats, frames and events, compared row by row
 *   against an untouched copy of the schema-1 file;
 * - a study that was done shows its schema-1 EF as result version 1,
 *   flagged unjudged_clips, with a "result" event; the others wait for a
 *   first result (stale);
 * - the upgraded file is consistent (foreign keys, integrity) and works:
 *   views answer, a re-delivered instance is still a duplicate, another
 *   instance of a migrated study becomes a second clip, a new result
 *   version follows;
 * - the upgrade is all or nothing: made to fail at its end, the file is
 *   exactly the schema-1 file.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

static char *slurp_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f) {
        perror(path);
        exit(99);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(99);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A schema-1 database file at path, from the dump. */
static void make_v1(const char *path, const char *dump)
{
    sqlite3 *db;
    char *msg = NULL;

    if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, dump, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "loading the schema-1 dump: %s\n", msg ? msg : sqlite3_errmsg(db));
        exit(99);
    }
    sqlite3_close(db);
}

/* One integer from SQL over the migrated file with the schema-1 copy
 * attached as v1. */
static long long q(const char *db_path, const char *v1_path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    char attach[700];
    long long v = -999;

    snprintf(attach, sizeof attach, "ATTACH '%s' AS v1", v1_path);
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_exec(db, attach, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "q: %s: %s\n", sql, sqlite3_errmsg(db));
        exit(99);
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

#define V1_COLS "id, dedup_key, job, status, stage, attempts, received_at, started_at, " \
    "finished_at, src_rows, src_cols, src_frames, fps, fps_source, transfer_syntax, " \
    "sector_method, sector_confidence, video_frames, seg_model, ef_model, ef_mean, ef_sd, " \
    "ef_class, threshold_reduced, threshold_low, threshold_very_low, flags, flags_text, " \
    "ms_read, ms_sector, ms_video, ms_segment, ms_ef, ms_analysis, ms_total"

/* The same rows on both sides, whichever way they are compared. */
#define SAME(a, b) \
    "SELECT (SELECT count(*) FROM (" a " EXCEPT " b ")) + (SELECT count(*) FROM (" b \
    " EXCEPT " a ")) + abs((SELECT count(*) FROM (" a ")) - (SELECT count(*) FROM (" b ")))"

/* The whole file as text: its schema, then every row of every table, so
 * two files compare equal exactly when their contents are equal. */
static char *dump_all(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *t, *s;
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);

    if (!out || sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT type, name, coalesce(sql, '') FROM sqlite_master "
                           "ORDER BY type, name", -1, &t, NULL) != SQLITE_OK)
        exit(99);
    out[0] = '\0';
    while (sqlite3_step(t) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(t, 0);
        const char *name = (const char *)sqlite3_column_text(t, 1);
        char sql[300];
        int need = snprintf(NULL, 0, "%s %s %s\n", type, name, sqlite3_column_text(t, 2));
        if (len + (size_t)need + 1 > cap && !(out = realloc(out, cap = 2 * (len + need + 1))))
            exit(99);
        len += (size_t)sprintf(out + len, "%s %s %s\n", type, name, sqlite3_column_text(t, 2));
        if (strcmp(type, "table") != 0)
            continue;
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY 1, 2", name);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
            exit(99);
        while (sqlite3_step(s) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                const char *v = (const char *)sqlite3_column_text(s, c);
                size_t n = (v ? strlen(v) : 4) + 2;
                if (len + n + 1 > cap && !(out = realloc(out, cap = 2 * (len + n + 1))))
                    exit(99);
                len += (size_t)sprintf(out + len, "%s%c", v ? v : "NULL",
                                       c + 1 < sqlite3_column_count(s) ? '|' : '\n');
            }
        sqlite3_finalize(s);
    }
    sqlite3_finalize(t);
    sqlite3_close(db);
    return out;
}

/* A handle on a file without en_store_open's upgrade, set up as it sets
 * one up (foreign keys on), so a test can run migrations of its own. */
static en_store *open_raw(const char *path)
{
    en_store *st = calloc(1, sizeof *st);

    if (!st || sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK)
        exit(99);
    snprintf(st->path, sizeof st->path, "%s", path);
    st->busy_ms = EN_STORE_BUSY_MS;
    return st;
}

static int stale_cb(const en_store_study *s, en_store_study_result *res, void *ud, en_err *err)
{
    (void)err;
    (*(int *)ud)++;
    res->clips_total = s->nclips;
    return EN_OK;
}

static void test_upgrade(const char *dump)
{
    const char *db = ts_path("v1.db"), *orig = ts_path("v1-untouched.db");
    en_store_ref ref;
    en_store *st;
    int64_t done;
    int calls = 0, version = 0, changed = 0;
    en_err e;

    make_v1(db, dump);
    make_v1(orig, dump);
    CHECK(ts_sql_int(db, "PRAGMA user_version") == 1);
    done = ts_sql_int(orig, "SELECT count(*) FROM studies WHERE status = 'done'");
    CHECK(done >= 10 && ts_sql_int(orig, "SELECT count(*) FROM studies") > done);

    CHECKF(en_store_open(db, 0, &st, &e) == EN_OK, "%s", e.msg);
    if (!st)
        return;
    CHECK(st->migrations_applied == en_store_schema_version() - 1);
    en_store_close(st);
    CHECK(ts_sql_int(db, "PRAGMA user_version") == en_store_schema_version());
    CHECK(ts_sql_int(db, "SELECT count(*) FROM schema_migrations WHERE name = "
                         "'002-studies-and-clips'") == 1);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM pragma_foreign_key_check") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check "
                         "<> 'ok'") == 0);

    /* Every study, clip, beat, frame and event, value for value. */
    CHECK(q(db, orig, SAME("SELECT id, pseudonym, received_at FROM v1.studies",
                           "SELECT id, pseudonym, first_received_at FROM main.studies")) == 0);
    CHECK(q(db, orig, SAME("SELECT " V1_COLS " FROM v1.studies",
                           "SELECT " V1_COLS " FROM main.clips")) == 0);
    CHECK(q(db, orig, "SELECT count(*) FROM main.clips WHERE study_id <> id") == 0);
    CHECK(q(db, orig, SAME("SELECT * FROM v1.beats", "SELECT * FROM main.beats")) == 0);
    CHECK(q(db, orig, SAME("SELECT * FROM v1.frames", "SELECT * FROM main.frames")) == 0);
    CHECK(q(db, orig, SAME("SELECT id, study_id, at, state, stage, attempt, job, code, message "
                           "FROM v1.events",
                           "SELECT id, clip_id, at, state, stage, attempt, job, code, message "
                           "FROM main.events WHERE state <> 'result'")) == 0);
    CHECK(q(db, orig, "SELECT count(*) FROM main.events WHERE state <> 'result' AND "
                      "study_id IS NOT clip_id") == 0);

    /* The AVI each schema-1 clip still has on disk is named after its study. */
    CHECK(q(db, orig, "SELECT count(*) FROM main.clips c JOIN main.studies s ON s.id = c.study_id "
                      "WHERE c.video_frames IS NOT NULL AND c.video_file <> s.pseudonym || '.avi'")
          == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips WHERE verdict IS NOT NULL") == 0);

    /* What `list` showed before the upgrade: the done studies' EF, as result
     * version 1, flagged as never judged; the others not computed yet. */
    CHECK(q(db, orig, SAME("SELECT id, ef_mean, ef_sd, ef_class, finished_at FROM v1.studies "
                           "WHERE status = 'done'",
                           "SELECT id, ef_mean, ef_sd, ef_class, result_at FROM main.studies "
                           "WHERE result_version = 1")) == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies WHERE result_version = 1 AND "
                         "result_stale = 0 AND flags = 4 AND flags_text = 'unjudged_clips' AND "
                         "clips_total = 1 AND clips_usable = 0") == done);
    CHECK(q(db, orig, "SELECT count(*) FROM main.studies s JOIN v1.studies o ON o.id = s.id "
                      "WHERE s.beats = (SELECT count(*) FROM v1.beats b WHERE b.study_id = o.id) "
                      "AND o.status = 'done'") == done);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies WHERE result_version = 0 AND "
                         "result_stale = 1") == ts_sql_int(orig, "SELECT count(*) FROM studies "
                                                                 "WHERE status <> 'done'"));
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE state = 'result' AND "
                         "result_version = 1 AND clip_id IS NULL") == done);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM v_results") == done);

    /* The views all answer on the upgraded file. */
    {
        static const char *const views[] = {
            "v_results", "v_reduced_ef", "v_flagged", "v_clips", "v_clips_left_out",
            "v_failures", "v_queue", "v_stale", "v_status_counts", "v_daily",
            "v_beat_spread", "v_events", "v_models",
        };
        char sql[96];
        for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
            snprintf(sql, sizeof sql, "SELECT count(*) >= 0 FROM %s", views[i]);
            CHECKF(ts_sql_int(db, sql) == 1, "%s", views[i]);
        }
    }

    /* It works: a re-delivered schema-1 instance is still a duplicate... */
    CHECKF(en_store_open(db, 0, &st, &e) == EN_OK, "%s", e.msg);
    if (!st)
        return;
    CHECK(en_store_queue(st, "e1e1e1e1e1e1e1e1", "1111222233334444aaaabbbbccccdddd", "job-x", 0,
                         0, &ref, &e) == EN_OK);
    CHECK(ref.created == 0 && ref.status == EN_STORE_DONE);
    /* ... the instance schema 1 refused becomes the study's second clip ... */
    CHECK(en_store_queue(st, "e1e1e1e1e1e1e1e1", "5555666677778888aaaabbbbccccdddd", "job-y", 0,
                         0, &ref, &e) == EN_OK);
    CHECK(ref.created == 1 && ref.study_id == ts_sql_int(db, "SELECT id FROM studies WHERE "
                                                             "pseudonym = 'e1e1e1e1e1e1e1e1'"));
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = 'e1e1e1e1e1e1e1e1'") == 2);
    /* ... and its next result is version 2. */
    CHECK(en_store_study_update(st, "e1e1e1e1e1e1e1e1", 0, stale_cb, &calls, &version, &changed,
                                &e) == EN_OK);
    CHECK(calls == 1 && version == 2 && changed == 1);
    en_store_close(st);
}

/* A failure at the very end of the upgrade (while installing the views)
 * leaves the schema-1 file exactly as it was. */
static void test_upgrade_all_or_nothing(const char *dump)
{
    const char *db = ts_path("v1-fail.db");
    struct en__store_sql_file migs[8];
    en_store *st;
    char *before, *after;
    en_err e;
    int n = en__store_nmigrations;

    make_v1(db, dump);
    before = dump_all(db);
    /* Opening a schema-1 file read-only does not upgrade it. */
    CHECK(en_store_open(db, EN_STORE_READONLY, &st, &e) == EN_EUNSUPPORTED);
    st = open_raw(db);
    memcpy(migs, en__store_migrations, sizeof migs[0] * (size_t)n);
    migs[n] = (struct en__store_sql_file){n + 1, "999-fails", "SELECT * FROM no_such_table;"};
    CHECK(en__store_migrate(st, migs, n + 1, &e) < 0);
    CHECKF(strstr(e.msg, "999-fails") != NULL, "message: %s", e.msg);
    en_store_close(st);
    after = dump_all(db);
    CHECK(ts_sql_int(db, "PRAGMA user_version") == 1);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
}

int main(void)
{
    char path[1024];
    char *dump;

    ts_init();
    snprintf(path, sizeof path, "%s/tests/store-v1.sql", tst_env("EN_TOP_SRCDIR"));
    dump = slurp_file(path);
    test_upgrade(dump);
    test_upgrade_all_or_nothing(dump);
    free(dump);
    TST_DONE();
}

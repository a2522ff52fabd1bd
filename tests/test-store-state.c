/*
 * test-store-state.c - the daemon's view of a clip (issues 6 and 11):
 * queued, processing with counted attempts, stages, done or failed, every
 * change logged and marking its study's result stale; a re-delivered file
 * is a duplicate, not a second clip; another instance of the study is a
 * clip of its own and replaces nothing; work left by a crash is found
 * again with its attempts; a process killed at any point inside a result
 * write leaves either the old result or none.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

#include <signal.h>
#include <sys/wait.h>

static const char *db;
static en_store *st;

#define KEY1 "00000000000000000000000000000000000000000000000000000000000000a1"
#define PSEUDO1 "a1a1a1a1a1a1a1a1"

static en_store_clip show(int64_t id)
{
    en_store_clip s;
    en_err e;
    CHECKF(en_store_clip_show(st, id, &s, &e) == EN_OK, "%s", e.msg);
    return s;
}

static void test_lifecycle(void)
{
    en_store_ref ref, again;
    en_store_clip s;
    en_err cause, e;
    int attempt = 0;

    CHECKF(en_store_queue(st, PSEUDO1, KEY1, "job-1", 1714521600000LL, 0, &ref, &e) == EN_OK,
           "%s", e.msg);
    CHECK(ref.created == 1 && ref.status == EN_STORE_QUEUED && ref.attempts == 0 && ref.id > 0);
    CHECK(ref.study_id > 0 && ref.other_instance == 0);
    CHECK(ts_sql_int(db, "SELECT result_stale FROM studies WHERE pseudonym = '" PSEUDO1 "'") == 1);
    CHECK(ts_sql_int(db, "SELECT first_received_at = '2024-05-01T00:00:00.000Z' AND "
                         "last_received_at = first_received_at FROM studies") == 1);

    /* Found again after a restart: the same study, still queued. */
    CHECK(en_store_queue(st, PSEUDO1, KEY1, "job-1", 0, 0, &again, &e) == EN_OK);
    CHECK(again.created == 0 && again.id == ref.id && again.status == EN_STORE_QUEUED);

    CHECK(en_store_attempt(st, ref.id, "job-1", &attempt, &e) == EN_OK && attempt == 1);
    CHECK(en_store_stage(st, ref.id, "read", &e) == EN_OK);
    CHECK(en_store_attempt(st, ref.id, NULL, &attempt, &e) == EN_OK && attempt == 2);
    CHECK(en_store_stage(st, ref.id, "segment", &e) == EN_OK);
    en_err_set(&cause, EN_EFORMAT, "pixel data truncated at frame 12");
    CHECK(en_store_fail(st, ref.id, "read", &cause, &e) == EN_OK);

    s = show(ref.id);
    CHECK(s.status == EN_STORE_FAILED && s.attempts == 2 && s.study_id == ref.study_id);
    CHECK(strcmp(s.stage, "read") == 0);
    CHECK(strcmp(s.last_error, "pixel data truncated at frame 12") == 0);
    CHECK(s.r.received_ms == 1714521600000LL && s.r.finished_ms > 0 && s.r.started_ms > 0);
    CHECK(strcmp(s.r.job, "job-1") == 0);
    CHECKF(s.nevents == 7, "%d events", s.nevents);
    if (s.nevents == 7) {
        static const en_store_event_kind want[7] = {
            EN_STORE_EV_QUEUED, EN_STORE_EV_QUEUED, EN_STORE_EV_PROCESSING, EN_STORE_EV_STAGE,
            EN_STORE_EV_PROCESSING, EN_STORE_EV_STAGE, EN_STORE_EV_FAILED
        };
        for (int i = 0; i < 7; i++)
            CHECKF(s.events[i].kind == want[i], "event %d is %s", i,
                   en_store_event_name(s.events[i].kind));
        CHECK(s.events[2].attempt == 1 && s.events[4].attempt == 2);
        CHECK(strcmp(s.events[3].stage, "read") == 0 && strcmp(s.events[5].stage, "segment") == 0);
        CHECK(strcmp(s.events[6].code, "EN_EFORMAT") == 0 && s.events[6].attempt == 2);
        CHECK(strcmp(s.events[0].job, "job-1") == 0);
        CHECK(s.events[0].at_ms > 0 && s.events[6].at_ms >= s.events[0].at_ms);
        CHECK(s.events[1].attempt == EN_STORE_NONE);
        for (int i = 0; i < 7; i++)
            CHECK(s.events[i].clip_id == ref.id);
    }
    en_store_clip_free(&s);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE study_id IS NOT (SELECT study_id "
                         "FROM clips WHERE clips.id = events.clip_id) AND clip_id IS NOT NULL") == 0);
}

static void test_duplicates_and_requeue(void)
{
    en_store_beat b[1];
    en_store_frame f[60];
    en_store_result r;
    en_store_ref ref;
    int64_t id = 0;
    int attempt = 0;
    en_err e;

    /* A failed clip re-delivered: reported, not re-run, but logged. */
    CHECK(en_store_queue(st, PSEUDO1, KEY1, "job-2", 0, 0, &ref, &e) == EN_OK);
    CHECK(ref.created == 0 && ref.status == EN_STORE_FAILED && ref.attempts == 2);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE state = 'info' AND "
                         "message LIKE 'duplicate%' AND job = 'job-2'") == 1);

    /* Asked for explicitly, it is queued again with fresh attempts. */
    CHECK(en_store_queue(st, PSEUDO1, KEY1, "job-3", 0, 1, &ref, &e) == EN_OK);
    CHECK(ref.status == EN_STORE_QUEUED && ref.attempts == 0);
    CHECK(en_store_attempt(st, ref.id, "job-3", &attempt, &e) == EN_OK && attempt == 1);

    /* The pipeline's result lands on the same row (found by key). */
    ts_result(&r, PSEUDO1, 60, 1, 58, b, f);
    snprintf(r.dedup_key, sizeof r.dedup_key, KEY1);
    r.received_ms = 0;   /* keep the queue time */
    CHECK(en_store_write_result(st, &r, &id, &e) == EN_OK);
    CHECK(id == ref.id);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips") == 1);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies") == 1);
    CHECK(ts_sql_int(db, "SELECT attempts FROM clips") == 1);
    CHECK(ts_sql_int(db, "SELECT received_at = '2024-05-01T00:00:00.000Z' FROM clips") == 1);
    CHECK(ts_sql_int(db, "SELECT job = 'job-3' AND status = 'done' FROM clips") == 1);

    /* Now done: a duplicate by key.  The same key under another pseudonym
     * is refused (it would mean the site secret changed). */
    CHECK(en_store_queue(st, PSEUDO1, KEY1, "job-4", 0, 0, &ref, &e) == EN_OK);
    CHECK(ref.created == 0 && ref.status == EN_STORE_DONE && ref.id == id);
    CHECK(en_store_queue(st, "b2b2b2b2b2b2b2b2", KEY1, "job-4", 0, 0, &ref, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "another study") != NULL, "message: %s", e.msg);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies") == 1);

    /* Found by key, or by pseudonym alone (its latest clip). */
    CHECK(en_store_find(st, PSEUDO1, NULL, &ref, &e) == EN_OK && ref.id == id);
    CHECK(en_store_find(st, NULL, KEY1, &ref, &e) == EN_OK && ref.id == id);
    CHECK(en_store_find(st, "c3c3c3c3c3c3c3c3", NULL, &ref, &e) == EN_ENOTFOUND);
}

#define KB1 "00000000000000b1"
#define KB2 "00000000000000b2"
#define KB3 "00000000000000b3"

/* Another DICOM instance of a known study (same pseudonym, other key): a
 * clip of its own; the first instance's result is never touched. */
static void test_other_instance(void)
{
    en_store_beat b[1];
    en_store_frame f[60];
    en_store_result r;
    en_store_ref ref, ref2, ref3;
    en_store_clip s;
    int64_t first;
    int attempt;
    en_err e;

    ts_result(&r, "b7b7b7b7b7b7b7b7", 60, 1, 58, b, f);
    snprintf(r.dedup_key, sizeof r.dedup_key, KB1);
    CHECK(en_store_write_result(st, &r, &first, &e) == EN_OK);

    CHECK(en_store_queue(st, "b7b7b7b7b7b7b7b7", KB2, "job-b2", 0, 0, &ref2, &e) == EN_OK);
    CHECK(ref2.other_instance == 0 && ref2.created == 1 && ref2.status == EN_STORE_QUEUED);
    CHECK(ref2.id != first);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = 'b7b7b7b7b7b7b7b7'") == 2);
    CHECK(ts_sql_int(db, "SELECT count(DISTINCT study_id) FROM clips WHERE dedup_key IN "
                         "('" KB1 "', '" KB2 "')") == 1);
    CHECK(ts_sql_int(db, "SELECT status = 'done' FROM clips WHERE dedup_key = '" KB1 "'") == 1);

    /* A third instance, processing: by pseudonym alone the store names the
     * clip being worked on (what the daemon fails after a crash). */
    CHECK(en_store_queue(st, "b7b7b7b7b7b7b7b7", KB3, "job-b3", 0, 0, &ref3, &e) == EN_OK);
    CHECK(en_store_attempt(st, ref3.id, NULL, &attempt, &e) == EN_OK);
    CHECK(en_store_find(st, "b7b7b7b7b7b7b7b7", NULL, &ref, &e) == EN_OK && ref.id == ref3.id);
    CHECK(en_store_attempt(st, ref2.id, NULL, &attempt, &e) == EN_OK);
    CHECK(en_store_find(st, "b7b7b7b7b7b7b7b7", NULL, &ref, &e) == EN_OK && ref.id == ref3.id);

    /* The instance again is itself, not another one: resumed. */
    CHECK(en_store_queue(st, "b7b7b7b7b7b7b7b7", KB2, NULL, 0, 0, &ref, &e) == EN_OK);
    CHECK(ref.id == ref2.id && ref.created == 0 && ref.status == EN_STORE_QUEUED);

    /* Results for the second and third: three clips, the first intact. */
    snprintf(r.dedup_key, sizeof r.dedup_key, KB2);
    b[0].ef = 40;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_OK);
    snprintf(r.dedup_key, sizeof r.dedup_key, KB3);
    b[0].ef = 41;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_OK);
    s = show(first);
    CHECK(s.status == EN_STORE_DONE && s.r.nbeats == 1 && s.r.beats[0].ef == 58);
    en_store_clip_free(&s);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = 'b7b7b7b7b7b7b7b7' AND c.status = 'done'") == 3);
}

static void test_errors(void)
{
    en_store_ref ref;
    int attempt;
    char *before, *after;
    en_err e;

    CHECK(en_store_attempt(st, 999999, NULL, &attempt, &e) == EN_ENOTFOUND);
    CHECK(en_store_stage(st, 999999, "read", &e) == EN_ENOTFOUND);
    CHECK(en_store_queue(st, "Patient Name", NULL, NULL, 0, 0, &ref, &e) == EN_EINVAL);
    CHECK(en_store_queue(st, PSEUDO1, "1.2.3.4.5.6.7.8.9.10.11.12", NULL, 0, 0, &ref, &e) == EN_EINVAL);

    /* A stage name the schema refuses changes nothing (row + event are one). */
    before = ts_dump(db);
    CHECK(en_store_stage(st, 1, "Segment Stage!", &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "CHECK") != NULL, "message: %s", e.msg);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);

    /* Events for no study; an unknown study is a foreign-key error. */
    CHECK(en_store_log(st, 0, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, NULL,
                       "echonetd started", &e) == EN_OK);
    CHECK(en_store_log(st, 0, EN_STORE_EV_WARNING, "intake", EN_STORE_NONE, "job-9",
                       "free disk below threshold: not taking new files", &e) == EN_OK);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE study_id IS NULL") == 2);
    CHECK(en_store_log(st, 424242, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, NULL, "x", &e) ==
          EN_ENOTFOUND);
    CHECKF(strstr(e.msg, "no clip with id 424242") != NULL, "message: %s", e.msg);
    /* Study results have their own door, with a version. */
    CHECK(en_store_log(st, 1, EN_STORE_EV_RESULT, NULL, EN_STORE_NONE, NULL, "x", &e) == EN_EINVAL);
}

static void test_counts(void)
{
    int64_t counts[EN_STORE_NSTATUS];
    en_store_ref ref;
    int attempt;
    en_err e;

    CHECK(en_store_queue(st, "d4d4d4d4d4d4d4d4", NULL, NULL, 0, 0, &ref, &e) == EN_OK);
    CHECK(en_store_queue(st, "e5e5e5e5e5e5e5e5", NULL, NULL, 0, 0, &ref, &e) == EN_OK);
    CHECK(en_store_attempt(st, ref.id, NULL, &attempt, &e) == EN_OK);
    CHECK(en_store_counts(st, counts, &e) == EN_OK);
    CHECK(counts[EN_STORE_QUEUED] == 1 && counts[EN_STORE_PROCESSING] == 1);
    CHECK(counts[EN_STORE_DONE] == 4 && counts[EN_STORE_FAILED] == 0);
}

/* ---- crashes ------------------------------------------------------------- */

static int kill_after;

static int kill_me(void *ud)
{
    (void)ud;
    raise(SIGKILL);
    return 0;
}

/* In a child: queue, attempt, then write the result and be SIGKILLed after
 * kill_after SQLite VM steps, i.e. somewhere inside the write. */
static void crash_child(const char *pseudonym, int nbeats)
{
    en_store_beat b[3];
    en_store_frame f[90];
    en_store_result r;
    en_store_ref ref;
    en_store *c;
    int attempt;
    en_err e;

    if (en_store_open(db, 0, &c, &e) ||
        en_store_queue(c, pseudonym, "00000000000000f6", "job-crash", 0, 0, &ref, &e) ||
        en_store_attempt(c, ref.id, NULL, &attempt, &e))
        _exit(3);
    ts_result(&r, pseudonym, 90, nbeats, 20 + nbeats, b, f);
    snprintf(r.dedup_key, sizeof r.dedup_key, "00000000000000f6");
    sqlite3_progress_handler(c->db, kill_after, kill_me, NULL);
    en_store_write_result(c, &r, NULL, &e);
    _exit(0);   /* the write finished before the kill point */
}

static void test_killed_mid_write(void)
{
    en_store_beat b[3];
    en_store_frame f[90];
    en_store_result r;
    en_store_clip s;
    int64_t id;
    int killed = 0, finished = 0;
    en_err e;

    /* A previous result to protect. */
    ts_result(&r, "f6f6f6f6f6f6f6f6", 90, 2, 60, b, f);
    snprintf(r.dedup_key, sizeof r.dedup_key, "00000000000000f6");
    CHECK(en_store_write_result(st, &r, &id, &e) == EN_OK);

    for (int n = 100; n < 400000 && !finished; n = n * 3 / 2) {
        int status = 0;
        pid_t pid;
        kill_after = n;
        pid = fork();
        if (pid == 0)
            crash_child("f6f6f6f6f6f6f6f6", 3);
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            finished = 1;
        else
            CHECKF(0, "child exited with status %d", status);

        /* Whatever the kill point: the whole old result or the whole new. */
        s = show(id);
        if (finished) {
            CHECK(s.status == EN_STORE_DONE && s.r.nbeats == 3 && s.r.beats[0].ef == 23);
        } else {
            /* Killed: the old result (or, had the kill come after the
             * commit, the whole new one), never a mixture. */
            int old = s.r.nbeats == 2 && s.r.beats[0].ef == 60 && s.r.beats[1].ef == 61;
            int new = s.r.nbeats == 3 && s.r.beats[0].ef == 23 && s.r.beats[2].ef == 25;
            CHECKF(old || new, "kill after %d steps: %d beats", n, s.r.nbeats);
            CHECK(s.status == EN_STORE_PROCESSING || s.status == EN_STORE_QUEUED ||
                  s.status == EN_STORE_DONE);
        }
        CHECK(s.r.nframes == 90);
        en_store_clip_free(&s);
        CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                             "WHERE s.pseudonym = 'f6f6f6f6f6f6f6f6'") == 1);
    }
    fprintf(stderr, "killed inside the result write at %d points\n", killed);
    CHECKF(killed >= 5, "only %d kill points inside the work", killed);
    CHECK(finished);
    /* Attempts were counted before each try, so a crash-looping file shows. */
    CHECKF(ts_sql_int(db, "SELECT attempts FROM clips WHERE dedup_key = '00000000000000f6'")
               == killed + 1, "attempts != %d", killed + 1);
    /* every kill left the study's result marked stale */
    CHECK(ts_sql_int(db, "SELECT result_stale FROM studies WHERE pseudonym = 'f6f6f6f6f6f6f6f6'") == 1);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'") == 0);
}

int main(void)
{
    en_err e;

    ts_init();
    db = ts_path("state.db");
    if (en_store_open(db, 0, &st, &e) != EN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 99;
    }
    test_lifecycle();
    test_duplicates_and_requeue();
    test_other_instance();
    test_errors();
    test_counts();
    test_killed_mid_write();
    en_store_close(st);
    TST_DONE();
}

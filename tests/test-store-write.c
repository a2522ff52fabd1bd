/*
 * test-store-write.c - a clip's result is stored whole or not at all,
 * re-processing the same instance replaces it, and another instance of the
 * study is another clip that replaces nothing.  Every field round-trips; a
 * write that fails at any one of its statements (a CHECK violation, or an
 * injected fault at each position in turn) leaves the file byte-for-byte
 * as it was, with the previous result intact; identifiers that look like
 * DICOM values are refused; models are shared, not duplicated, and cannot
 * be deleted while a clip uses them.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

static const char *db;
static en_store *st;

static en_store_clip show(int64_t id)
{
    en_store_clip s;
    en_err e;
    CHECKF(en_store_clip_show(st, id, &s, &e) == EN_OK, "%s", e.msg);
    return s;
}

static int same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void test_round_trip(void)
{
    en_store_beat beats[3];
    en_store_frame frames[130];
    en_store_result r;
    en_store_clip s;
    int64_t id = 0;
    en_err e;

    ts_result(&r, "1111111111111111", 130, 3, 41.25, beats, frames);
    ts_key(&r, 17);
    snprintf(r.view_dicom, sizeof r.view_dicom, "a4c");
    snprintf(r.view_code, sizeof r.view_code, "SCT:399214001");
    snprintf(r.verdict_codes, sizeof r.verdict_codes, "no_rv,lv_small_for_view");
    snprintf(r.verdict, sizeof r.verdict, "unusable");
    snprintf(r.evidence_json, sizeof r.evidence_json, "{\"elongation\":1.2}");
    snprintf(r.job, sizeof r.job, "job-000017");
    snprintf(r.flags_text, sizeof r.flags_text, "beat_spread,fps_guessed");
    r.flags = (1u << 5) | (1u << 6);
    beats[2].shift = 7;
    beats[2].clip_start -= 7;
    beats[1].ed_frame = EN_STORE_NONE;
    beats[1].lv_size_ed = EN_STORE_NONE;
    CHECKF(en_store_write_result(st, &r, &id, &e) == EN_OK, "%s", e.msg);
    CHECK(id > 0);

    s = show(id);
    CHECK(s.id == id && s.r.clip_id == id && s.study_id > 0);
    CHECK(strcmp(s.r.pseudonym, "1111111111111111") == 0);
    CHECK(strcmp(s.r.view_dicom, "a4c") == 0 && strcmp(s.r.view_code, "SCT:399214001") == 0);
    CHECK(strcmp(s.r.verdict, "unusable") == 0 && strcmp(s.r.verdict_codes, "no_rv,lv_small_for_view") == 0);
    CHECK(strcmp(s.r.verdict_text, r.verdict_text) == 0);
    CHECK(strcmp(s.r.evidence_json, "{\"elongation\":1.2}") == 0);
    CHECK(strcmp(s.r.sop_class, r.sop_class) == 0 && strcmp(s.r.modality, "US") == 0);
    CHECK(strcmp(s.r.regions, "2d") == 0 && strcmp(s.r.video_file, r.video_file) == 0);
    CHECK(ts_sql_int(db, "SELECT result_stale FROM studies WHERE pseudonym = "
                         "'1111111111111111'") == 1);
    CHECK(s.status == EN_STORE_DONE);
    CHECK(s.beat_count == 3);
    CHECK(s.last_error[0] == '\0');
    CHECK(strcmp(s.r.dedup_key, r.dedup_key) == 0);
    CHECK(strcmp(s.r.job, "job-000017") == 0);
    CHECK(s.r.received_ms == r.received_ms);
    CHECK(s.r.started_ms == r.started_ms);
    CHECK(s.r.finished_ms == r.finished_ms);
    CHECK(s.r.src_rows == 600 && s.r.src_cols == 800 && s.r.src_frames == 130);
    CHECK(s.r.fps == 50 && strcmp(s.r.fps_source, "CineRate") == 0);
    CHECK(strcmp(s.r.transfer_syntax, "1.2.840.10008.1.2.4.50") == 0);
    CHECK(strcmp(s.r.sector_method, "regions") == 0 && s.r.sector_confidence == 0.9);
    CHECK(s.r.video_frames == 130);
    CHECK(strcmp(s.r.seg_model.sha256, r.seg_model.sha256) == 0);
    CHECK(strcmp(s.r.seg_model.architecture, "deeplabv3_resnet50") == 0);
    CHECK(strcmp(s.r.seg_model.origin, "test weights a") == 0);
    CHECK(strcmp(s.r.seg_model.file_name, "deeplabv3_resnet50.safetensors") == 0);
    CHECK(strcmp(s.r.seg_model.metadata_json, r.seg_model.metadata_json) == 0);
    CHECK(strcmp(s.r.ef_model.architecture, "r2plus1d_18") == 0);
    CHECK(same_double(s.r.ef_mean, r.ef_mean) && same_double(s.r.ef_sd, r.ef_sd));
    CHECK(strcmp(s.r.ef_class, "reduced") == 0);
    CHECK(s.r.threshold_reduced == 50 && s.r.threshold_low == 40 && s.r.threshold_very_low == 35);
    CHECK(s.r.flags == r.flags && strcmp(s.r.flags_text, r.flags_text) == 0);
    CHECK(s.r.ms.read == 10 && s.r.ms.sector == 20 && s.r.ms.video == 30);
    CHECK(s.r.ms.segment == 400 && s.r.ms.ef == 900 && s.r.ms.analysis == 1);
    CHECK(s.r.ms.total == 1361);
    CHECK(s.r.nbeats == 3 && s.r.nframes == 130);
    for (int i = 0; i < s.r.nbeats && i < 3; i++) {
        CHECK(s.r.beats[i].systole_frame == beats[i].systole_frame);
        CHECK(s.r.beats[i].clip_start == beats[i].clip_start);
        CHECK(s.r.beats[i].shift == beats[i].shift);
        CHECK(s.r.beats[i].ef == beats[i].ef);
        CHECK(s.r.beats[i].ed_frame == beats[i].ed_frame);
        CHECK(s.r.beats[i].lv_size_ed == beats[i].lv_size_ed);
        CHECK(s.r.beats[i].lv_size_es == beats[i].lv_size_es);
    }
    for (int i = 0; i < s.r.nframes && i < 130; i++)
        CHECK(s.r.frames[i].lv_size == frames[i].lv_size &&
              s.r.frames[i].systole == frames[i].systole);
    CHECK(s.nevents == 1 && s.events[0].kind == EN_STORE_EV_DONE && s.events[0].clip_id == id);
    CHECK(s.nevents == 1 && strstr(s.events[0].message, "stored: EF 42.2") != NULL);
    en_store_clip_free(&s);
    CHECK(s.r.beats == NULL && s.events == NULL);
}

static void test_unknowns_stored_as_null(void)
{
    en_store_result r;
    en_store_clip s;
    int64_t id;
    en_err e;

    en_store_result_init(&r);
    snprintf(r.pseudonym, sizeof r.pseudonym, "2222222222222222");
    CHECKF(en_store_write_result(st, &r, &id, &e) == EN_OK, "%s", e.msg);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '2222222222222222' "
                         "AND c.ef_mean IS NULL AND c.fps IS NULL AND c.src_rows IS NULL "
                         "AND c.seg_model IS NULL AND c.ms_total IS NULL AND c.dedup_key IS NULL "
                         "AND c.verdict IS NULL AND c.view_dicom IS NULL AND c.video_file IS NULL "
                         "AND c.evidence_json IS NULL") == 1);
    s = show(id);
    CHECK(isnan(s.r.ef_mean) && isnan(s.r.fps) && s.r.src_rows == EN_STORE_NONE);
    CHECK(s.r.seg_model.sha256[0] == '\0' && s.r.nbeats == 0 && s.r.nframes == 0);
    CHECK(s.r.verdict[0] == '\0' && s.r.evidence_json[0] == '\0');
    CHECK(s.nevents == 1 && strstr(s.events[0].message, "no EF") != NULL);
    en_store_clip_free(&s);
}

static void test_reprocessing_replaces(void)
{
    en_store_beat b1[3], b2[2];
    en_store_frame f1[100], f2[120];
    en_store_result r;
    en_store_clip s;
    int64_t id1 = 0, id2 = 0, id3 = 0;
    en_err e;

    ts_result(&r, "3333333333333333", 100, 2, 60, b1, f1);
    ts_key(&r, 3);
    CHECK(en_store_write_result(st, &r, &id1, &e) == EN_OK);
    ts_result(&r, "3333333333333333", 120, 2, 30, b2, f2);
    ts_key(&r, 3);
    b2[0].ef = 31.5;
    CHECK(en_store_write_result(st, &r, &id2, &e) == EN_OK);
    CHECK(id1 == id2);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '3333333333333333'") == 1);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM beats b JOIN clips c ON c.id = b.clip_id "
                         "JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '3333333333333333'") == 2);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM frames f JOIN clips c ON c.id = f.clip_id "
                         "JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '3333333333333333'") == 120);
    s = show(id1);
    CHECK(s.r.nbeats == 2 && s.r.beats[0].ef == 31.5 && s.r.beats[1].ef == 31);
    CHECK(s.r.nframes == 120 && s.r.frames[119].lv_size == 1000 + 7 * 119);
    CHECK(strcmp(s.r.ef_class, "reduced") == 0);
    CHECK(s.nevents == 2 && strstr(s.events[1].message, "replaced") != NULL);
    en_store_clip_free(&s);

    /* Another instance of the same study: a second clip; the first one's
     * result is untouched.  Re-writing by clip id finds the same row. */
    ts_result(&r, "3333333333333333", 100, 3, 45, b1, f1);
    ts_key(&r, 0x33);
    CHECK(en_store_write_result(st, &r, &id3, &e) == EN_OK);
    CHECK(id3 != id1);
    CHECK(ts_sql_int(db, "SELECT count(DISTINCT study_id) FROM clips c WHERE c.id IN (SELECT c.id "
                         "FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '3333333333333333')") == 1);
    s = show(id1);
    CHECK(s.r.nbeats == 2 && s.r.beats[0].ef == 31.5 && s.r.nframes == 120);
    en_store_clip_free(&s);
    ts_result(&r, "3333333333333333", 100, 1, 77, b1, f1);
    r.clip_id = id3;
    CHECK(en_store_write_result(st, &r, &id2, &e) == EN_OK);
    CHECK(id2 == id3);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips c JOIN studies s ON s.id = c.study_id "
                         "WHERE s.pseudonym = '3333333333333333'") == 2);

    /* Without a duplicate key or a clip id, each write is a new clip: such
     * an instance cannot be recognised again. */
    ts_result(&r, "4444444444444444", 100, 1, 60, b1, f1);
    CHECK(en_store_write_result(st, &r, &id1, &e) == EN_OK);
    CHECK(en_store_write_result(st, &r, &id2, &e) == EN_OK);
    CHECK(id1 != id2);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies WHERE pseudonym = '4444444444444444'") == 1);

    /* A clip id that does not exist is refused, nothing is created. */
    r.clip_id = 999999;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_ENOTFOUND);
}

static void test_key_conflict_refused(void)
{
    en_store_beat b[1];
    en_store_frame f[60];
    en_store_result r;
    char *before, *after;
    int64_t id;
    en_err e;

    ts_result(&r, "5555555555555555", 60, 1, 60, b, f);
    ts_key(&r, 5);
    CHECK(en_store_write_result(st, &r, &id, &e) == EN_OK);
    before = ts_dump(db);
    /* The key of a clip of 5555..., the pseudonym of 3333...: refused (a
     * changed site secret would look like this). */
    ts_result(&r, "3333333333333333", 60, 1, 60, b, f);
    ts_key(&r, 5);
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "another study") != NULL, "message: %s", e.msg);
    /* ... and so is a clip id of another study. */
    ts_result(&r, "3333333333333333", 60, 1, 60, b, f);
    r.clip_id = id;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
}

/* A CHECK violation in the middle of the write: nothing of it remains. */
static void test_check_violation_rolls_back(void)
{
    en_store_beat b[3];
    en_store_frame f[100];
    en_store_result r;
    en_store_clip s;
    char *before, *after;
    int64_t id;
    en_err e;

    ts_result(&r, "6666666666666666", 100, 2, 70, b, f);
    ts_key(&r, 6);
    CHECK(en_store_write_result(st, &r, &id, &e) == EN_OK);
    before = ts_dump(db);

    ts_result(&r, "6666666666666666", 100, 3, 20, b, f);
    ts_key(&r, 6);
    b[1].clip_start = b[1].systole_frame + 1;   /* violates beats' CHECK */
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "6666666666666666") && strstr(e.msg, "beat 1") &&
           strstr(e.msg, "CHECK constraint failed") && strstr(e.msg, db), "message: %s", e.msg);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(after);

    /* The previous result is still whole. */
    s = show(id);
    CHECK(s.r.nbeats == 2 && s.r.beats[0].ef == 70 && s.r.beats[1].ef == 71);
    CHECK(s.r.nframes == 100);
    en_store_clip_free(&s);

    /* A verdict the schema cannot hold (codes are identifiers) is refused
     * whole too. */
    ts_result(&r, "6666666666666666", 100, 2, 20, b, f);
    ts_key(&r, 6);
    snprintf(r.verdict_codes, sizeof r.verdict_codes, "No RV!");
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(after);

    /* A new study failing in its last frame leaves no row at all. */
    ts_result(&r, "7777777777777777", 100, 2, 50, b, f);
    f[99].lv_size = -5;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "frame 99") != NULL, "message: %s", e.msg);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(after);

    /* A beat without an EF (NAN) is refused the same way. */
    ts_result(&r, "7777777777777777", 100, 2, 50, b, f);
    b[1].ef = NAN;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(after);
    free(before);
}

/* The fault hits each write statement in turn (models, row, deletes, every
 * beat and frame, the event): every time, the file is exactly as before. */
static void fault_at_every_position(const char *pseudonym, int existing)
{
    en_store_beat b[3];
    en_store_frame f[80];
    en_store_result r;
    char *before;
    int n, failures = 0, ok = 0;
    en_err e;

    if (existing) {
        ts_result(&r, pseudonym, 80, 1, 65, b, f);
        ts_key(&r, 0x99);
        CHECK(en_store_write_result(st, &r, NULL, &e) == EN_OK);
    }
    before = ts_dump(db);
    for (n = 1; n < 1000 && !ok; n++) {
        char *after;
        ts_result(&r, pseudonym, 80, 3, 25, b, f);
        ts_key(&r, 0x99);
        en__store_inject_fault(n);
        if (en_store_write_result(st, &r, NULL, &e) == EN_OK) {
            ok = 1;
            break;
        }
        failures++;
        if (!strstr(e.msg, "injected fault")) {
            CHECKF(0, "at %d: %s", n, e.msg);
            break;
        }
        after = ts_dump(db);
        CHECKF(strcmp(before, after) == 0, "write failing at statement %d left a trace", n);
        free(after);
    }
    en__store_inject_fault(0);
    CHECK(ok);
    /* 2 models, the study's row, a new clip row or 2 deletes, the update,
     * 3 beats, 80 frames, the event: each was made to fail once. */
    CHECKF(failures == 2 + 1 + (existing ? 2 : 1) + 1 + 3 + 80 + 1,
           "%d failure positions exercised", failures);
    free(before);
}

static void test_injected_faults(void)
{
    en_store_clip s;
    int64_t id;

    fault_at_every_position("8888888888888888", 0);
    id = ts_sql_int(db, "SELECT id FROM clips WHERE dedup_key = '0000000000000099'");
    /* the clip now exists: the second round replaces it */
    fault_at_every_position("8888888888888888", 1);
    s = show(id);
    CHECK(s.r.nbeats == 3 && s.r.beats[0].ef == 25 && s.r.nframes == 80);
    en_store_clip_free(&s);
}

static void test_identifiers_refused(void)
{
    en_store_result r;
    char *before = ts_dump(db), *after;
    en_err e;

    en_store_result_init(&r);
    snprintf(r.pseudonym, sizeof r.pseudonym, "DOE^JOHN");
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECK(strstr(e.msg, "pseudonym") != NULL);
    snprintf(r.pseudonym, sizeof r.pseudonym, "ABCDEF0123456789");   /* upper case */
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    snprintf(r.pseudonym, sizeof r.pseudonym, "abcdef0123456789");
    snprintf(r.dedup_key, sizeof r.dedup_key, "1.2.840.113619.2.55.3.604688119");
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "never the UID") != NULL, "message: %s", e.msg);
    r.dedup_key[0] = '\0';
    memset(r.job, 'x', sizeof r.job);   /* not terminated */
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    r.job[0] = '\0';
    r.flags = UINT64_C(1) << 63;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
}

static void test_inconsistent_arrays_refused(void)
{
    en_store_beat b[2];
    en_store_frame f[50];
    en_store_result r;
    en_err e;

    ts_result(&r, "aaaaaaaaaaaaaaa1", 50, 2, 50, b, f);   /* beat 1 at frame 52 > 49 */
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "past the video") != NULL, "message: %s", e.msg);
    ts_result(&r, "aaaaaaaaaaaaaaa1", 50, 1, 50, b, f);
    r.video_frames = 49;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    ts_result(&r, "aaaaaaaaaaaaaaa1", 50, 1, 50, b, f);
    r.beats = NULL;
    CHECK(en_store_write_result(st, &r, NULL, &e) == EN_EINVAL);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM studies WHERE pseudonym = 'aaaaaaaaaaaaaaa1'") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips WHERE study_id NOT IN "
                         "(SELECT id FROM studies)") == 0);
}

static void test_models(void)
{
    en_store_model m;
    en_err e;
    sqlite3 *raw;
    int rc;

    ts_model(&m, 'a', "deeplabv3_resnet50");
    snprintf(m.origin, sizeof m.origin, "echonet-dynamic release v1.0.0");
    m.metadata_json[0] = '\0';   /* keeps the stored metadata */
    CHECKF(en_store_model_put(st, &m, &e) == EN_OK, "%s", e.msg);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM models") == 2);   /* a..., b... */
    CHECK(ts_sql_int(db, "SELECT count(*) FROM models WHERE origin = "
                         "'echonet-dynamic release v1.0.0' AND metadata_json IS NOT NULL") == 1);

    snprintf(m.architecture, sizeof m.architecture, "r2plus1d_18");
    CHECK(en_store_model_put(st, &m, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "another architecture") != NULL, "message: %s", e.msg);

    ts_model(&m, 'c', "r2plus1d_18");
    m.sha256[10] = 'X';
    CHECK(en_store_model_put(st, &m, &e) == EN_EINVAL);
    ts_model(&m, 'c', "r2plus1d_18");
    snprintf(m.metadata_json, sizeof m.metadata_json, "{not json");
    CHECK(en_store_model_put(st, &m, &e) == EN_EINVAL);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM models") == 2);

    /* A model in use cannot be deleted; a deleted study takes its clips,
     * their beats, frames and events with it. */
    CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) == SQLITE_OK);
    rc = sqlite3_exec(raw, "DELETE FROM models WHERE architecture = 'deeplabv3_resnet50'",
                      NULL, NULL, NULL);
    CHECK((rc & 0xff) == SQLITE_CONSTRAINT);
    CHECK(sqlite3_exec(raw, "DELETE FROM studies WHERE pseudonym = '1111111111111111'",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM clips WHERE study_id NOT IN (SELECT id FROM studies)") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM beats WHERE clip_id NOT IN (SELECT id FROM clips)") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM frames WHERE clip_id NOT IN (SELECT id FROM clips)") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE study_id IS NOT NULL AND "
                         "study_id NOT IN (SELECT id FROM studies)") == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM pragma_foreign_key_check") == 0);
}

int main(void)
{
    en_err e;

    ts_init();
    db = ts_path("write.db");
    if (en_store_open(db, 0, &st, &e) != EN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 99;
    }
    test_round_trip();
    test_unknowns_stored_as_null();
    test_reprocessing_replaces();
    test_key_conflict_refused();
    test_check_violation_rolls_back();
    test_injected_faults();
    test_identifiers_refused();
    test_inconsistent_arrays_refused();
    test_models();
    en_store_close(st);
    TST_DONE();
}

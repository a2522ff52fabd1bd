/*
 * test-store-fixture.c - not a test by itself: builds a known results
 * database through the C API and exports it, for tests/store_views.py to
 * check with Python's own sqlite3, json and csv modules.
 *
 *   test-store-fixture DB OUTDIR
 *
 * writes DB, OUTDIR/size.csv, OUTDIR/clips.csv and OUTDIR/export.json.
 * Studies: d0..00 with four clips (two usable, one unusable, one not
 * analysed); d0..01-d0..06 with one usable clip each (one reduced and
 * flagged, one with a shifted clip, one far below 35 %; EFs with many
 * decimals from a fixed generator), on three days; fa11... with a failed
 * clip; 9090... with a clip processing; c0c0... with a clip queued.  Every
 * study with a finished clip has its result computed (en_study_recompute).
 */
#include "test-store-common.h"

#include "en_study.h"

#define T0 1714521600000LL   /* 2024-05-01T00:00:00Z */
#define HOUR 3600000LL

static unsigned lcg = 12345;

static double next_unit(void)
{
    lcg = lcg * 1103515245u + 12345u;
    return (lcg >> 8) / 16777216.0;
}

static int fail(const char *what, const en_err *e)
{
    fprintf(stderr, "test-store-fixture: %s: %s\n", what, e->msg);
    return 1;
}

/* One clip of study name, key k, with 3 beats of generated EFs. */
static int add_clip(en_store *st, const char *name, unsigned k, int i, int64_t received,
                    const char *verdict)
{
    en_store_beat b[3];
    en_store_frame f[100];
    en_store_result r;
    double sum = 0;
    en_err e;

    ts_result(&r, name, 90 + i, 3, 0, b, f);
    ts_key(&r, k);
    snprintf(r.video_file, sizeof r.video_file, "%s-%.40s.avi", name, r.dedup_key);
    for (int n = 0; n < 3; n++) {
        b[n].ef = 30 + 40 * next_unit();
        sum += b[n].ef;
    }
    if (i == 2) {   /* a clip moved back to fit the video */
        b[2].shift = 5;
        b[2].clip_start -= 5;
    }
    r.ef_mean = sum / 3;
    r.ef_sd = 1 + i;
    snprintf(r.ef_class, sizeof r.ef_class, "%s", r.ef_mean < 50 ? "reduced" : "not_reduced");
    if (i == 4) {
        r.flags = (1u << 5) | (1u << 6);
        snprintf(r.flags_text, sizeof r.flags_text, "beat_spread,fps_guessed");
    }
    snprintf(r.verdict, sizeof r.verdict, "%s", verdict);
    if (strcmp(verdict, "usable") != 0) {
        snprintf(r.verdict_codes, sizeof r.verdict_codes, "no_rv");
        snprintf(r.verdict_text, sizeof r.verdict_text, "no right ventricle beside the left one");
    }
    r.received_ms = received;
    r.started_ms = received + 1000;
    r.finished_ms = received + 4000 + 1000 * i;
    r.ms.total = 3000 + 1000 * i;
    if (en_store_write_result(st, &r, NULL, &e))
        return fail("writing a result", &e);
    return 0;
}

/* An instance that was not analysed: a still. */
static int add_still(en_store *st, const char *name, unsigned k, int64_t received)
{
    en_store_result r;
    en_err e;

    en_store_result_init(&r);
    snprintf(r.pseudonym, sizeof r.pseudonym, "%s", name);
    ts_key(&r, k);
    snprintf(r.sop_class, sizeof r.sop_class, "1.2.840.10008.5.1.4.1.1.6.1");
    snprintf(r.modality, sizeof r.modality, "US");
    r.src_frames = 1;
    snprintf(r.verdict, sizeof r.verdict, "not_analysed");
    snprintf(r.verdict_codes, sizeof r.verdict_codes, "single_frame");
    snprintf(r.verdict_text, sizeof r.verdict_text, "a single frame: no motion to measure");
    r.received_ms = received;
    r.finished_ms = received + 500;
    if (en_store_write_result(st, &r, NULL, &e))
        return fail("writing a still", &e);
    return 0;
}

static int results(en_store *st)
{
    static const char *const done[] = {
        "d0d0d0d0d0d0d000", "d0d0d0d0d0d0d001", "d0d0d0d0d0d0d002", "d0d0d0d0d0d0d003",
        "d0d0d0d0d0d0d004", "d0d0d0d0d0d0d005", "d0d0d0d0d0d0d006", "fa11fa11fa11fa11",
    };
    en_study_params p;
    en_err e;

    en_study_params_default(&p);
    for (size_t i = 0; i < sizeof done / sizeof done[0]; i++)
        if (en_study_recompute(st, done[i], &p, 0, NULL, NULL, &e))
            return fail("computing a study result", &e);
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const files[3] = {"size.csv", "clips.csv", "export.json"};
    en_store_ref ref;
    en_store *st;
    en_err e, cause;
    int attempt;

    if (argc != 3) {
        fprintf(stderr, "usage: test-store-fixture DB OUTDIR\n");
        return 2;
    }
    if (en_store_open(argv[1], 0, &st, &e))
        return fail("opening", &e);
    for (int i = 0; i < 6; i++) {
        char name[17];
        snprintf(name, sizeof name, "d0d0d0d0d0d0d0%02u", (unsigned)i % 100u);
        if (add_clip(st, name, 0xd00 + (unsigned)i, i, T0 + (i / 2) * 24 * HOUR + i * HOUR,
                     "usable"))
            return 1;
    }
    /* d0..00 has more instances: another usable clip, a wrong view, a still */
    if (add_clip(st, "d0d0d0d0d0d0d000", 0xd10, 1, T0 + 600000, "usable") ||
        add_clip(st, "d0d0d0d0d0d0d000", 0xd11, 3, T0 + 700000, "unusable") ||
        add_still(st, "d0d0d0d0d0d0d000", 0xd12, T0 + 800000))
        return 1;
    /* a clip with one beat, far below 35 % */
    {
        en_store_beat b[1];
        en_store_frame f[70];
        en_store_result r;
        ts_result(&r, "d0d0d0d0d0d0d006", 70, 1, 22.5, b, f);
        ts_key(&r, 0xd06);
        snprintf(r.video_file, sizeof r.video_file, "d0d0d0d0d0d0d006-%.40s.avi", r.dedup_key);
        r.received_ms = T0 + 2 * 24 * HOUR + 7 * HOUR;
        r.finished_ms = r.received_ms + 5000;
        snprintf(r.ef_class, sizeof r.ef_class, "very_low");
        if (en_store_write_result(st, &r, NULL, &e))
            return fail("writing a result", &e);
    }
    if (en_store_queue(st, "fa11fa11fa11fa11", "0000000000000fa1", "job-f", T0 + 24 * HOUR, 0,
                       &ref, &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e) ||
        en_store_stage(st, ref.id, "read", &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e))
        return fail("queueing", &e);
    en_err_set(&cause, EN_EFORMAT, "truncated pixel data");
    if (en_store_fail(st, ref.id, "read", &cause, &e))
        return fail("failing", &e);
    if (en_store_queue(st, "90909090a0a0a0a0", "0000000000000909", "job-p", T0 + 2 * 24 * HOUR, 0,
                       &ref, &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e) ||
        en_store_queue(st, "c0c0c0c0c0c0c0c0", "0000000000000c0c", "job-q",
                       T0 + 2 * 24 * HOUR + HOUR, 0, &ref, &e))
        return fail("queueing", &e);
    if (en_store_log(st, 0, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, NULL, "fixture built", &e))
        return fail("logging", &e);
    if (results(st))
        return 1;

    for (int k = 0; k < 3; k++) {
        en_store_filter f = {0};
        char path[1024];
        FILE *out;
        f.oldest_first = 1;
        snprintf(path, sizeof path, "%s/%s", argv[2], files[k]);
        out = fopen(path, "w");
        if (!out) {
            perror(path);
            return 1;
        }
        if (en_store_export(st, (en_store_export_format)k, &f, out, &e))
            return fail(files[k], &e);
        if (fclose(out) != 0) {
            perror(path);
            return 1;
        }
    }
    en_store_close(st);
    return 0;
}

/*
 * test-store-fixture.c - not a test by itself: builds a known results
 * database through the C API and exports it, for tests/store_views.py to
 * check with Python's own sqlite3, json and csv modules.
 *
 *   test-store-fixture DB OUTDIR
 *
 * writes DB, OUTDIR/size.csv, OUTDIR/clips.csv and OUTDIR/export.json.
 * Studies: 6 done (one reduced and flagged, one with a shifted clip, EFs
 * with many decimals from a fixed generator), 1 failed, 1 processing,
 * 1 queued, on three days.
 */
#include "test-store-common.h"

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

static int add_done(en_store *st, int i, int64_t received)
{
    en_store_beat b[3];
    en_store_frame f[100];
    en_store_result r;
    char name[17];
    double sum = 0;
    en_err e;

    snprintf(name, sizeof name, "d0d0d0d0d0d0d0%02u", (unsigned)i % 100u);
    ts_result(&r, name, 90 + i, 3, 0, b, f);
    for (int k = 0; k < 3; k++) {
        b[k].ef = 30 + 40 * next_unit();
        sum += b[k].ef;
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
    r.received_ms = received;
    r.started_ms = received + 1000;
    r.finished_ms = received + 4000 + 1000 * i;
    r.ms.total = 3000 + 1000 * i;
    if (en_store_write_result(st, &r, NULL, &e))
        return fail("writing a result", &e);
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
    for (int i = 0; i < 6; i++)
        if (add_done(st, i, T0 + (i / 2) * 24 * HOUR + i * HOUR))
            return 1;
    /* a result with one beat, far below 35 % */
    {
        en_store_beat b[1];
        en_store_frame f[70];
        en_store_result r;
        ts_result(&r, "d0d0d0d0d0d0d006", 70, 1, 22.5, b, f);
        r.received_ms = T0 + 2 * 24 * HOUR + 7 * HOUR;
        r.finished_ms = r.received_ms + 5000;
        snprintf(r.ef_class, sizeof r.ef_class, "very_low");
        if (en_store_write_result(st, &r, NULL, &e))
            return fail("writing a result", &e);
    }
    if (en_store_queue(st, "fa11fa11fa11fa11", NULL, "job-f", T0 + 24 * HOUR, 0, &ref, &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e) ||
        en_store_stage(st, ref.id, "read", &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e))
        return fail("queueing", &e);
    en_err_set(&cause, EN_EFORMAT, "truncated pixel data");
    if (en_store_fail(st, ref.id, "read", &cause, &e))
        return fail("failing", &e);
    if (en_store_queue(st, "90909090a0a0a0a0", NULL, "job-p", T0 + 2 * 24 * HOUR, 0, &ref, &e) ||
        en_store_attempt(st, ref.id, NULL, &attempt, &e) ||
        en_store_queue(st, "c0c0c0c0c0c0c0c0", NULL, "job-q", T0 + 2 * 24 * HOUR + HOUR, 0, &ref, &e))
        return fail("queueing", &e);
    if (en_store_log(st, 0, EN_STORE_EV_INFO, NULL, EN_STORE_NONE, NULL, "fixture built", &e))
        return fail("logging", &e);

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

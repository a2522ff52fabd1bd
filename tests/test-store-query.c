/*
 * test-store-query.c - what echonetctl list/show/export and status rely
 * on: each filter (dates, status, class, flags) and paging selects exactly
 * the right clips in the right order; a clip is shown by its id or said not
 * to exist; the CSV exports equal golden text in upstream's shapes
 * (size.csv and the clip predictions, EF rounded as Python's "{:.4f}",
 * Filename naming the clip's AVI); a full disk while exporting is an error;
 * dates parse strictly.  Studies as wholes: test-store-study.c.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

static en_store *st;

#define DAY 86400000LL
#define T0 1714521600000LL   /* 2024-05-01T00:00:00Z */

/* ---- the fixture ------------------------------------------------------------ */

static void add_done(const char *pseudonym, int64_t received, double ef, const char *cls,
                     uint64_t flags)
{
    en_store_beat b[2];
    en_store_frame f[60];
    en_store_result r;
    en_err e;

    ts_result(&r, pseudonym, 60, 2, ef, b, f);
    snprintf(r.video_file, sizeof r.video_file, "%s.avi", pseudonym);
    r.received_ms = received;
    r.finished_ms = received + 60000;
    snprintf(r.ef_class, sizeof r.ef_class, "%s", cls);
    r.flags = flags;
    CHECKF(en_store_write_result(st, &r, NULL, &e) == EN_OK, "%s", e.msg);
}

static void fixture(void)
{
    en_store_ref ref;
    en_err cause, e;
    int attempt;

    add_done("0000000000000001", T0 + 8 * 3600000LL, 62, "not_reduced", 0);
    add_done("0000000000000002", T0 + 12 * 3600000LL, 45, "reduced", 1u << 6);
    add_done("0000000000000003", T0 + DAY + 9 * 3600000LL + 1800000, 30, "very_low", 1u << 5);
    CHECK(en_store_queue(st, "0000000000000004", NULL, "job-4", T0 + 2 * DAY, 0, &ref, &e) == EN_OK);
    CHECK(en_store_attempt(st, ref.id, NULL, &attempt, &e) == EN_OK);
    en_err_set(&cause, EN_ENOTFOUND, "no ultrasound sector found");
    CHECK(en_store_fail(st, ref.id, "sector", &cause, &e) == EN_OK);
    CHECK(en_store_queue(st, "0000000000000005", NULL, "job-5", T0 + 2 * DAY + 10 * 3600000LL,
                         0, &ref, &e) == EN_OK);
}

/* ---- listing ------------------------------------------------------------------ */

typedef struct seen {
    char order[16];   /* last digit of each pseudonym, in order */
    int n;
    en_store_clip last;
} seen;

static int collect(const en_store_clip *s, void *ud)
{
    seen *x = ud;
    if (x->n < 15)
        x->order[x->n++] = s->r.pseudonym[15];
    x->order[x->n] = '\0';
    x->last = *s;
    return 0;
}

static const char *list(const en_store_filter *f)
{
    static seen x;
    en_err e;
    memset(&x, 0, sizeof x);
    CHECKF(en_store_list(st, f, collect, &x, &e) == EN_OK, "%s", e.msg);
    return x.order;
}

static int64_t count(const en_store_filter *f)
{
    int64_t n = -1;
    en_err e;
    CHECKF(en_store_count(st, f, &n, &e) == EN_OK, "%s", e.msg);
    return n;
}

static int64_t t(const char *text, int end)
{
    int64_t ms = -1;
    en_err e;
    CHECKF(en_store_parse_time(text, end, &ms, &e) == EN_OK, "%s", e.msg);
    return ms;
}

#define LIST_IS(f, want) CHECKF(strcmp(list(f), want) == 0, "got %s, want %s", list(f), want)

static void test_filters(void)
{
    en_store_filter f;

    memset(&f, 0, sizeof f);
    LIST_IS(NULL, "54321");
    LIST_IS(&f, "54321");
    f.oldest_first = 1;
    LIST_IS(&f, "12345");
    CHECK(count(&f) == 5);

    memset(&f, 0, sizeof f);
    f.since_ms = t("2024-05-02", 0);
    LIST_IS(&f, "543");
    memset(&f, 0, sizeof f);
    f.until_ms = t("2024-05-01", 1);   /* the whole of May 1st */
    LIST_IS(&f, "21");
    f.since_ms = t("2024-05-01T12:00", 0);   /* inclusive */
    LIST_IS(&f, "2");
    f.since_ms = t("2024-05-01T12:00:00.001", 0);
    LIST_IS(&f, "");
    CHECK(count(&f) == 0);

    memset(&f, 0, sizeof f);
    f.status_mask = 1u << EN_STORE_DONE;
    LIST_IS(&f, "321");
    f.status_mask = (1u << EN_STORE_FAILED) | (1u << EN_STORE_QUEUED);
    LIST_IS(&f, "54");
    f.status_mask = 1u << EN_STORE_PROCESSING;
    LIST_IS(&f, "");

    memset(&f, 0, sizeof f);
    f.ef_class = "reduced";
    LIST_IS(&f, "2");
    f.ef_class = "reduced'; DROP TABLE studies; --";
    LIST_IS(&f, "");

    memset(&f, 0, sizeof f);
    f.flags_any = 1u << 6;
    LIST_IS(&f, "2");
    f.flags_any = (1u << 5) | (1u << 6);
    LIST_IS(&f, "32");
    f.flags_any = 0;
    f.flags_none = UINT64_MAX;   /* unflagged only */
    LIST_IS(&f, "541");
    f.status_mask = 1u << EN_STORE_DONE;
    LIST_IS(&f, "1");
    f.flags_none = 1u << 6;
    LIST_IS(&f, "31");

    memset(&f, 0, sizeof f);
    f.status_mask = 1u << EN_STORE_DONE;
    f.since_ms = T0;
    f.until_ms = T0 + DAY;
    f.flags_none = 1u << 5;
    f.ef_class = "not_reduced";
    LIST_IS(&f, "1");
}

static void test_paging(void)
{
    en_store_filter f;

    memset(&f, 0, sizeof f);
    f.limit = 2;
    LIST_IS(&f, "54");
    f.offset = 2;
    LIST_IS(&f, "32");
    f.offset = 4;
    LIST_IS(&f, "1");
    f.offset = 5;
    LIST_IS(&f, "");
    CHECK(count(&f) == 5);   /* count ignores paging */
    f.limit = 0;
    f.offset = 3;
    LIST_IS(&f, "21");
}

static int stop_after_one(const en_store_clip *s, void *ud)
{
    (void)s;
    (*(int *)ud)++;
    return 7;
}

static void test_list_contents(void)
{
    seen x;
    en_store_filter f;
    int calls = 0;
    en_err e;

    CHECK(en_store_list(st, NULL, stop_after_one, &calls, &e) == 7 && calls == 1);

    memset(&f, 0, sizeof f);
    memset(&x, 0, sizeof x);
    f.pseudonym = "0000000000000004";
    CHECK(en_store_list(st, &f, collect, &x, &e) == EN_OK && x.n == 1);
    CHECK(x.last.status == EN_STORE_FAILED && x.last.attempts == 1);
    CHECK(strcmp(x.last.stage, "sector") == 0);
    CHECK(strcmp(x.last.last_error, "no ultrasound sector found") == 0);
    CHECK(x.last.r.beats == NULL && x.last.events == NULL);

    f.pseudonym = "0000000000000002";
    memset(&x, 0, sizeof x);
    CHECK(en_store_list(st, &f, collect, &x, &e) == EN_OK && x.n == 1);
    CHECK(x.last.beat_count == 2 && x.last.r.ef_mean == 45.5 && x.last.last_error[0] == '\0');
    CHECK(strcmp(x.last.r.seg_model.architecture, "deeplabv3_resnet50") == 0);
}

static void test_show(void)
{
    en_store_clip s;
    en_err e;
    int64_t id = ts_sql_int(ts_path("query.db"), "SELECT c.id FROM clips c JOIN studies s "
                            "ON s.id = c.study_id WHERE s.pseudonym = '0000000000000004'");

    CHECK(en_store_clip_show(st, 999999, &s, &e) == EN_ENOTFOUND);
    CHECKF(strstr(e.msg, "999999") != NULL, "message: %s", e.msg);
    CHECK(s.r.beats == NULL && s.events == NULL);

    CHECK(en_store_clip_show(st, id, &s, &e) == EN_OK);
    CHECK(s.nevents == 3 && s.events[2].kind == EN_STORE_EV_FAILED);
    CHECK(s.r.nbeats == 0 && s.r.nframes == 0);
    CHECK(strcmp(s.r.pseudonym, "0000000000000004") == 0);
    en_store_clip_free(&s);
}

/* ---- exports ------------------------------------------------------------------- */

static void add_small(void)
{
    en_store_beat b[2] = {
        {2, 0, 0, 57.12345, 0, 500, 300},
        {5, 0, 3, 40.0, EN_STORE_NONE, EN_STORE_NONE, 510},
    };
    en_store_frame f[6] = {{500, 0}, {420, 0}, {300, 1}, {350, 0}, {480, 0}, {510, 1}};
    en_store_result r;
    en_err e;

    en_store_result_init(&r);
    snprintf(r.pseudonym, sizeof r.pseudonym, "abcdefabcdefabcd");
    snprintf(r.video_file, sizeof r.video_file, "abcdefabcdefabcd-00000000000000ab.avi");
    r.received_ms = T0 + 3 * DAY;
    r.video_frames = 6;
    r.beats = b;
    r.nbeats = 2;
    r.frames = f;
    r.nframes = 6;
    r.ef_mean = 48.561725;
    CHECKF(en_store_write_result(st, &r, NULL, &e) == EN_OK, "%s", e.msg);
}

static char *export(en_store_export_format fmt, const en_store_filter *f)
{
    FILE *tmp = tmpfile();
    char *text;
    en_err e;

    CHECKF(en_store_export(st, fmt, f, tmp, &e) == EN_OK, "%s", e.msg);
    text = ts_slurp(tmp);
    fclose(tmp);
    return text;
}

static void test_exports_golden(void)
{
#define F "abcdefabcdefabcd-00000000000000ab.avi"
    static const char size_csv[] =
        "Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n"
        F ",0,500,0,0,0\n"
        F ",1,420,0,0,0\n"
        F ",2,300,0,0,1\n"
        F ",3,350,0,0,0\n"
        F ",4,480,0,0,0\n"
        F ",5,510,0,0,1\n";
    /* Python: "{:.4f}".format(57.12345) == "57.1234" (the double is below). */
    static const char clips_csv[] =
        F ",0,57.1234\n"
        F ",0,40.0000\n";
#undef F
    en_store_filter f;
    char *got;

    add_small();
    memset(&f, 0, sizeof f);
    f.pseudonym = "abcdefabcdefabcd";
    got = export(EN_STORE_EXPORT_SIZE_CSV, &f);
    CHECKF(strcmp(got, size_csv) == 0, "size.csv:\n%s", got);
    free(got);
    got = export(EN_STORE_EXPORT_CLIPS_CSV, &f);
    CHECKF(strcmp(got, clips_csv) == 0, "clips:\n%s", got);
    free(got);

    got = export(EN_STORE_EXPORT_JSON, &f);
    CHECKF(strncmp(got, "{\"format\":\"echonetd-results\",\"schema_version\":", 46) == 0, "%s", got);
    CHECK(strstr(got, "\"lv_size\":[500,420,300,350,480,510],\"systole_frames\":[2,5]") != NULL);
    CHECK(strstr(got, "{\"beat\":1,\"systole_frame\":5,\"clip_start\":0,\"shift\":3,\"ef\":40,"
                      "\"ed_frame\":null,\"lv_size_ed\":null,\"lv_size_es\":510}") != NULL);
    CHECK(strstr(got, "\"received\":\"2024-05-04T00:00:00.000Z\"") != NULL);
    CHECK(strstr(got, "\"below_50\":true,\"below_40\":false") != NULL);
    CHECK(strstr(got, "\"segmentation\":null") != NULL);
    CHECK(strstr(got, "\"clips\":[{\"clip_id\":") != NULL);
    CHECK(strstr(got, "\"video_file\":\"abcdefabcdefabcd-00000000000000ab.avi\"") != NULL);
    CHECK(strstr(got, "\"result\":{\"version\":0,") != NULL);
    CHECK(got[strlen(got) - 1] == '\n');
    free(got);

    /* Several studies: blocks in the filter's order, one header; the
     * status filter keeps studies with a clip done. */
    memset(&f, 0, sizeof f);
    f.status_mask = 1u << EN_STORE_DONE;
    f.oldest_first = 1;
    got = export(EN_STORE_EXPORT_SIZE_CSV, &f);
    {
        int lines = 0;
        const char *p1 = strstr(got, "0000000000000001.avi,0,"), *p2 = strstr(got, "0000000000000002.avi,0,"),
                   *p3 = strstr(got, "0000000000000003.avi,0,"), *p6 = strstr(got, "abcdefabcdefabcd-00000000000000ab.avi,0,");
        for (const char *p = got; *p; p++)
            lines += *p == '\n';
        CHECKF(lines == 1 + 3 * 60 + 6, "%d lines", lines);
        CHECK(p1 && p2 && p3 && p6 && p1 < p2 && p2 < p3 && p3 < p6);
        CHECK(strstr(got, "0000000000000004") == NULL);   /* failed: no frames */
    }
    free(got);
    got = export(EN_STORE_EXPORT_CLIPS_CSV, &f);
    CHECK(strncmp(got, "0000000000000001.avi,0,62.0000\n0000000000000001.avi,20,63.0000\n", 62) == 0);
    free(got);
}

static void test_export_errors(void)
{
    en_store_export_format fmt;
    FILE *full;
    en_err e;

    CHECK(en_store_export_format_parse("size", &fmt) == EN_OK && fmt == EN_STORE_EXPORT_SIZE_CSV);
    CHECK(en_store_export_format_parse("clips", &fmt) == EN_OK && fmt == EN_STORE_EXPORT_CLIPS_CSV);
    CHECK(en_store_export_format_parse("json", &fmt) == EN_OK && fmt == EN_STORE_EXPORT_JSON);
    CHECK(en_store_export_format_parse("xml", &fmt) == EN_EINVAL);

    full = fopen("/dev/full", "w");
    if (!full)
        return;   /* not Linux: nothing to check */
    CHECK(en_store_export(st, EN_STORE_EXPORT_SIZE_CSV, NULL, full, &e) == EN_EIO);
    CHECKF(strstr(e.msg, "export") != NULL, "message: %s", e.msg);
    fclose(full);
}

/* ---- time --------------------------------------------------------------------- */

static void test_time(void)
{
    static const char *const bad[] = {
        "2024-02-30", "2024-13-01", "yesterday", "2024-05-01T25:00", "2024-05-01x",
        "2024-5-1", "", "+2024-05-01", "2024-05-01T12", "1969-12-31",
    };
    char buf[EN_STORE_TIME_MAX];
    int64_t ms;
    en_err e;

    CHECK(t("2024-05-01", 0) == T0);
    CHECK(t("2024-05-01", 1) == T0 + DAY);
    CHECK(t("2024-05-01Z", 0) == T0);
    CHECK(t("2024-05-01T12:34", 0) == T0 + (12 * 60 + 34) * 60000LL);
    CHECK(t("2024-05-01T12:34", 1) == T0 + (12 * 60 + 35) * 60000LL);
    CHECK(t("2024-05-01 12:34:56", 1) == T0 + ((12 * 60 + 34) * 60 + 57) * 1000LL);
    CHECK(t("2024-05-01T12:34:56.5Z", 0) == T0 + ((12 * 60 + 34) * 60 + 56) * 1000LL + 500);
    CHECK(t("2024-05-01T12:34:56.789", 1) == T0 + ((12 * 60 + 34) * 60 + 56) * 1000LL + 790);
    CHECK(t("2024-02-29", 0) == T0 - 62 * DAY);   /* leap day exists */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(en_store_parse_time(bad[i], 0, &ms, &e) == EN_EINVAL, "accepted '%s'", bad[i]);
        CHECK(strstr(e.msg, bad[i]) != NULL && strstr(e.msg, "YYYY-MM-DD") != NULL);
    }
    en_store_format_time(T0 + 3723004, buf);
    CHECK(strcmp(buf, "2024-05-01T01:02:03.004Z") == 0);
    CHECK(en__time_from_iso(buf) == T0 + 3723004);
}

int main(void)
{
    en_err e;

    ts_init();
    if (en_store_open(ts_path("query.db"), 0, &st, &e) != EN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 99;
    }
    fixture();
    test_filters();
    test_paging();
    test_list_contents();
    test_show();
    test_exports_golden();
    test_export_errors();
    test_time();
    en_store_close(st);
    TST_DONE();
}

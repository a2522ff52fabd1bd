/*
 * test-store-study.c - a study as a whole (issue 11): its result is the mean
 * over the beats of its usable clips (en_study_aggregate, stored by
 * en_study_recompute through en_store_study_update), with spread, counts,
 * per-clip range and flags; a study without a usable clip has no EF and
 * says why; recomputing with nothing changed stores nothing; a changed
 * clip makes the result stale and the next one is a new version with its
 * event; the quiet-period query waits for arrivals and unfinished clips;
 * a result write that fails at any statement changes nothing; study lists
 * filter on the study's result.
 */
#include "store_int.h"
#include "test-store-common.h"
#include "tst.h"

#include "en_study.h"

static const char *db;
static en_store *st;

#define P "5a5a5a5a5a5a5a5a"
#define T0 1714521600000LL   /* 2024-05-01T00:00:00Z */

/* A done clip of study p with the given beat EFs and verdict. */
static int64_t add_clip(const char *p, unsigned key, const double *efs, int nbeats,
                        const char *verdict, int64_t received)
{
    en_store_beat b[8];
    en_store_frame f[200];
    en_store_result r;
    int64_t id = 0;
    double sum = 0;
    en_err e;

    ts_result(&r, p, 200, nbeats, 50, b, f);
    ts_key(&r, key);
    for (int i = 0; i < nbeats; i++) {
        b[i].ef = efs[i];
        sum += efs[i];
    }
    r.ef_mean = nbeats ? sum / nbeats : NAN;
    r.received_ms = received;
    snprintf(r.verdict, sizeof r.verdict, "%s", verdict);
    snprintf(r.verdict_codes, sizeof r.verdict_codes, "%s",
             !strcmp(verdict, "usable") ? "" : !strcmp(verdict, "unusable") ? "no_rv" : "doppler");
    CHECKF(en_store_write_result(st, &r, &id, &e) == EN_OK, "%s", e.msg);
    return id;
}

static en_store_study show(const char *p)
{
    en_store_study s;
    en_err e;
    CHECKF(en_store_study_show(st, p, EN_STORE_SHOW_EVENTS, &s, &e) == EN_OK, "%s", e.msg);
    return s;
}

static int recompute(const char *p, int force, int *changed)
{
    en_study_params prm;
    int version = -1;
    en_err e;

    en_study_params_default(&prm);
    CHECKF(en_study_recompute(st, p, &prm, force, &version, changed, &e) == EN_OK, "%s", e.msg);
    return version;
}

static int near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

static void test_result_over_usable_clips(void)
{
    static const double a[] = {50, 52, 54}, b[] = {56, 58}, c[] = {90, 91}, d[] = {51};
    en_store_ref ref;
    en_store_study s;
    en_err cause, e;
    int changed = 0, attempt;

    add_clip(P, 1, a, 3, "usable", T0);
    add_clip(P, 2, b, 2, "usable", T0 + 1000);
    add_clip(P, 3, c, 2, "unusable", T0 + 2000);    /* a wrong view: never counted */
    add_clip(P, 4, NULL, 0, "not_analysed", T0 + 3000);
    add_clip(P, 5, d, 1, "usable", T0 + 4000);
    /* a failed clip and an unfinished one */
    CHECK(en_store_queue(st, P, "0000000000000006", NULL, T0 + 5000, 0, &ref, &e) == EN_OK);
    CHECK(en_store_attempt(st, ref.id, NULL, &attempt, &e) == EN_OK);
    en_err_set(&cause, EN_EFORMAT, "bad pixels");
    CHECK(en_store_fail(st, ref.id, "read", &cause, &e) == EN_OK);
    CHECK(en_store_queue(st, P, "0000000000000007", NULL, T0 + 6000, 0, &ref, &e) == EN_OK);

    CHECK(recompute(P, 0, &changed) == 1 && changed == 1);
    s = show(P);
    CHECK(s.res.version == 1 && s.stale == 0 && s.clips == 7 && s.nclips == 7);
    CHECK(s.first_received_ms == T0 && s.last_received_ms == T0 + 6000);
    CHECK(s.res.clips_total == 7 && s.res.clips_usable == 3 && s.res.beats == 6);
    /* mean over the 6 beats of the usable clips, not over clip means */
    CHECKF(near(s.res.ef_mean, (50 + 52 + 54 + 56 + 58 + 51) / 6.0), "EF %f", s.res.ef_mean);
    {
        double m = s.res.ef_mean, ss = 0, v[6] = {50, 52, 54, 56, 58, 51};
        for (int i = 0; i < 6; i++)
            ss += (v[i] - m) * (v[i] - m);
        CHECK(near(s.res.ef_sd, sqrt(ss / 5)));
    }
    CHECK(near(s.res.clip_ef_min, 51) && near(s.res.clip_ef_max, 57));
    CHECK(strcmp(s.res.ef_class, "not_reduced") == 0);
    CHECK(s.res.flags == (EN_STUDY_F_PENDING | EN_STUDY_F_CLIPS_FAILED));
    CHECKF(strcmp(s.res.flags_text, "clips_pending,clips_failed") == 0, "%s", s.res.flags_text);
    CHECK(s.res.no_ef_reason[0] == '\0' && near(s.res.disagreement_points, 10));
    {
        int results = 0;
        for (int i = 0; i < s.nevents; i++)
            if (s.events[i].kind == EN_STORE_EV_RESULT) {
                results++;
                CHECK(s.events[i].result_version == 1 && s.events[i].clip_id == 0);
                CHECKF(strstr(s.events[i].message, "study result v1: EF 53.5 %") != NULL,
                       "%s", s.events[i].message);
            }
        CHECK(results == 1);
    }
    en_store_study_free(&s);

    /* Nothing changed: nothing stored. */
    CHECK(recompute(P, 0, &changed) == 1 && changed == 0);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE state = 'result'") == 1);
    /* Forced: a new version even so. */
    CHECK(recompute(P, 1, &changed) == 2 && changed == 1);
}

static void test_disagreement_and_new_version(void)
{
    static const double far[] = {75, 77};
    en_store_study s;
    en_store_clip c;
    int64_t id;
    int changed;
    en_err e;

    /* A usable clip far from the others arrives later: stale, then v3
     * flagged, the older results untouched. */
    id = add_clip(P, 8, far, 2, "usable", T0 + 7000);
    CHECK(ts_sql_int(db, "SELECT result_stale FROM studies WHERE pseudonym = '" P "'") == 1);
    CHECK(recompute(P, 0, &changed) == 3 && changed == 1);
    s = show(P);
    CHECK(s.res.clips_usable == 4 && s.res.beats == 8 && near(s.res.clip_ef_max, 76));
    CHECK(s.res.flags & EN_STUDY_F_DISAGREE);
    CHECK(strstr(s.res.flags_text, "clips_disagree") != NULL);
    en_store_study_free(&s);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE state = 'result'") == 3);
    CHECK(ts_sql_int(db, "SELECT max(result_version) FROM events") == 3);
    CHECK(en_store_clip_show(st, id, &c, &e) == EN_OK && c.r.nbeats == 2);
    en_store_clip_free(&c);
}

static void test_no_usable_clip(void)
{
    static const double ef[] = {30};
    en_store_study s;
    int changed;

    add_clip("6b6b6b6b6b6b6b6b", 0x61, ef, 1, "unusable", T0);
    add_clip("6b6b6b6b6b6b6b6b", 0x62, NULL, 0, "not_analysed", T0);
    CHECK(recompute("6b6b6b6b6b6b6b6b", 0, &changed) == 1);
    s = show("6b6b6b6b6b6b6b6b");
    CHECK(isnan(s.res.ef_mean) && isnan(s.res.ef_sd) && s.res.ef_class[0] == '\0');
    CHECK(s.res.clips_usable == 0 && s.res.beats == 0 && s.res.clips_total == 2);
    CHECK(s.res.flags == EN_STUDY_F_NO_USABLE);
    CHECKF(strstr(s.res.no_ef_reason, "no usable apical four-chamber clip among 2") &&
           strstr(s.res.no_ef_reason, "1 not analysed, 1 unusable") &&
           strstr(s.res.no_ef_reason, "no_rv") && strstr(s.res.no_ef_reason, "doppler"),
           "%s", s.res.no_ef_reason);
    en_store_study_free(&s);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM events WHERE state = 'result' AND message LIKE "
                         "'study result v1: no EF%'") == 1);
}

typedef struct due_list {
    char got[8][EN_STORE_KEY_MAX];
    int n;
} due_list;

static int on_due(const char *p, void *ud)
{
    due_list *d = ud;
    if (d->n < 8)
        snprintf(d->got[d->n++], EN_STORE_KEY_MAX, "%s", p);
    return 0;
}

static int due(int64_t quiet, int64_t now, int64_t *next)
{
    due_list d = {{{0}}, 0};
    en_err e;
    CHECKF(en_store_studies_due(st, quiet, now, on_due, &d, next, &e) == EN_OK, "%s", e.msg);
    return d.n == 1 ? (strcmp(d.got[0], "7c7c7c7c7c7c7c7c") == 0) : d.n == 0 ? 0 : -d.n;
}

/* The daemon's question: which studies are quiet and stale? */
static void test_due(void)
{
    static const double ef[] = {60};
    en_store_ref ref;
    int64_t next = -1;
    int attempt, changed;
    en_err e;

    /* Everything so far is computed (the first study has an unfinished
     * clip: it is stale-free but would wait anyway). */
    CHECK(due(0, T0 + 10 * 60000, &next) == 0 && next == 0);
    add_clip("7c7c7c7c7c7c7c7c", 0x71, ef, 1, "usable", T0);
    /* quiet for 60 s: due from T0 + 60 s on */
    CHECK(due(60000, T0 + 59999, &next) == 0 && next == T0 + 60000);
    CHECK(due(60000, T0 + 60000, &next) == 1 && next == 0);
    /* another instance arrives and is being processed: not due, whatever
     * the time, until it ends */
    CHECK(en_store_queue(st, "7c7c7c7c7c7c7c7c", "0000000000000072", NULL, T0 + 30000, 0, &ref,
                         &e) == EN_OK);
    CHECK(en_store_attempt(st, ref.id, NULL, &attempt, &e) == EN_OK);
    CHECK(due(60000, T0 + 3600000, &next) == 0 && next == 0);
    add_clip("7c7c7c7c7c7c7c7c", 0x72, ef, 1, "usable", 0);
    CHECK(due(60000, T0 + 89999, &next) == 0 && next == T0 + 90000);
    CHECK(due(60000, T0 + 90000, NULL) == 1);
    CHECK(recompute("7c7c7c7c7c7c7c7c", 0, &changed) == 1 && changed);
    CHECK(due(60000, T0 + 3600000, &next) == 0 && next == 0);
    /* a re-delivered duplicate changes nothing: still not stale */
    CHECK(en_store_queue(st, "7c7c7c7c7c7c7c7c", "0000000000000072", NULL, 0, 0, &ref, &e) ==
          EN_OK);
    CHECK(ref.status == EN_STORE_DONE);
    CHECK(due(60000, T0 + 3600000, &next) == 0);
}

static int failing_cb(const en_store_study *s, en_store_study_result *res, void *ud, en_err *err)
{
    (void)s;
    (void)res;
    (void)ud;
    return en_err_set(err, EN_EINVAL, "the computation refused");
}

static int aggregate_cb(const en_store_study *s, en_store_study_result *res, void *ud,
                        en_err *err)
{
    (void)err;
    en_study_aggregate(s, ud, res);
    return EN_OK;
}

/* A result write that fails anywhere changes nothing, and the study stays
 * stale for the next try. */
static void test_update_atomic(void)
{
    static const double ef[] = {44, 46};
    en_study_params prm;
    char *before, *after;
    int version = -1, changed = -1, failures = 0, n;
    en_err e;

    en_study_params_default(&prm);
    add_clip("8d8d8d8d8d8d8d8d", 0x81, ef, 2, "usable", T0);
    before = ts_dump(db);
    CHECK(en_store_study_update(st, "8d8d8d8d8d8d8d8d", 0, failing_cb, NULL, &version, &changed,
                                &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, "refused") != NULL, "%s", e.msg);
    after = ts_dump(db);
    CHECK(strcmp(before, after) == 0);
    free(after);
    for (n = 1; n < 50; n++) {
        en__store_inject_fault(n);
        if (en_store_study_update(st, "8d8d8d8d8d8d8d8d", 0, aggregate_cb, &prm, &version,
                                  &changed, &e) == EN_OK)
            break;
        failures++;
        CHECKF(strstr(e.msg, "injected fault") != NULL, "%s", e.msg);
        after = ts_dump(db);
        CHECKF(strcmp(before, after) == 0, "failing at write %d left a trace", n);
        free(after);
    }
    en__store_inject_fault(0);
    CHECKF(failures == 2, "%d write positions", failures);   /* the study row, its event */
    CHECK(version == 1 && changed == 1);
    CHECK(ts_sql_int(db, "SELECT result_stale FROM studies WHERE pseudonym = "
                         "'8d8d8d8d8d8d8d8d'") == 0);
    free(before);
    CHECK(en_store_study_update(st, "9e9e9e9e9e9e9e9e", 0, aggregate_cb, &prm, &version,
                                &changed, &e) == EN_ENOTFOUND);
}

typedef struct seen {
    char order[16];
    int n;
} seen;

static int collect(const en_store_study *s, void *ud)
{
    seen *x = ud;
    if (x->n < 15)
        x->order[x->n++] = s->pseudonym[0];
    x->order[x->n] = '\0';
    return 0;
}

static const char *list(const en_store_filter *f)
{
    static seen x;
    en_err e;
    memset(&x, 0, sizeof x);
    CHECKF(en_store_study_list(st, f, collect, &x, &e) == EN_OK, "%s", e.msg);
    return x.order;
}

static void test_lists(void)
{
    en_store_filter f;
    int64_t n = -1;
    en_err e;

    memset(&f, 0, sizeof f);
    f.oldest_first = 1;
    CHECKF(strcmp(list(&f), "5678") == 0, "%s", list(&f));
    CHECK(en_store_study_count(st, NULL, &n, &e) == EN_OK && n == 4);
    f.flags_any = EN_STUDY_F_NO_USABLE;
    CHECKF(strcmp(list(&f), "6") == 0, "%s", list(&f));
    memset(&f, 0, sizeof f);
    f.oldest_first = 1;
    f.ef_class = "reduced";
    CHECKF(strcmp(list(&f), "8") == 0, "%s", list(&f));
    memset(&f, 0, sizeof f);
    f.oldest_first = 1;
    f.status_mask = 1u << EN_STORE_FAILED;    /* studies with a failed clip */
    CHECKF(strcmp(list(&f), "5") == 0, "%s", list(&f));
    memset(&f, 0, sizeof f);
    f.pseudonym = "7c7c7c7c7c7c7c7c";
    CHECKF(strcmp(list(&f), "7") == 0, "%s", list(&f));
    CHECK(ts_sql_int(db, "SELECT count(*) FROM v_results") == 4);
    CHECK(ts_sql_int(db, "SELECT clips_usable FROM v_results WHERE pseudonym = '" P "'") == 4);
    CHECK(ts_sql_int(db, "SELECT count(*) FROM v_clips_left_out WHERE pseudonym = '" P "'") == 2);
}

int main(void)
{
    en_err e;

    ts_init();
    db = ts_path("study.db");
    if (en_store_open(db, 0, &st, &e) != EN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 99;
    }
    test_result_over_usable_clips();
    test_disagreement_and_new_version();
    test_no_usable_clip();
    test_due();
    test_update_atomic();
    test_lists();
    en_store_close(st);
    TST_DONE();
}

/*
 * test-analysis-beats.c - the analysis module beyond find_peaks (which
 * tests/analysis_findpeaks.py checks against scipy): clip planning at the
 * video's edges and the shift rule, ED/ES choice, the EF summary and class
 * boundaries at exactly 50, 40 and 35, every quality flag raised by a
 * crafted curve and none raised by a clean periodic one, and the error
 * paths of every call.
 */
#include "en_analysis.h"

#include <math.h>
#include <string.h>

#include "tst.h"

#define PI 3.14159265358979323846

static en_analysis an;   /* ~50 KB: static, as the header advises */
static double size[EN_ANALYSIS_MAX_FRAMES + 1];

/* Clean beating LV: 1500 +- 400 px, minima (systoles) at period/2 + k*period. */
static void clean_curve(double *s, int n, double period)
{
    for (int i = 0; i < n; i++)
        s[i] = round(1500 + 400 * cos(2 * PI * i / period));
}

static en_analysis_params defaults(void)
{
    en_analysis_params p;
    en_analysis_params_default(&p);
    return p;
}

static unsigned plan_flags(const double *s, int n, double fps, int guessed)
{
    en_analysis_params p = defaults();
    en_err err;
    int rc = en_analysis_plan(s, n, fps, guessed, &p, &an, &err);
    CHECKF(rc == EN_OK, "plan failed: %s", err.msg);
    return an.flags;
}

static en_systoles systoles_at(int n, const int *frames, int count)
{
    en_systoles s;
    memset(&s, 0, sizeof s);
    s.n_frames = n;
    s.count = count;
    for (int i = 0; i < count; i++)
        s.frame[i] = frames[i];
    return s;
}

/* ---------------------------------------------------------------- clips */

static void test_last_start(void)
{
    en_analysis_params p = defaults();

    /* Upstream pads videos shorter than 64 frames to 64: starts 0 and 1. */
    CHECK(en_analysis_clip_last_start(0, &p.clip) == 1);
    CHECK(en_analysis_clip_last_start(10, &p.clip) == 1);
    CHECK(en_analysis_clip_last_start(63, &p.clip) == 1);
    CHECK(en_analysis_clip_last_start(64, &p.clip) == 1);
    CHECK(en_analysis_clip_last_start(65, &p.clip) == 2);
    CHECK(en_analysis_clip_last_start(200, &p.clip) == 137);
    /* The last start's clip ends exactly on the last frame. */
    for (int n = 64; n < 400; n++) {
        int last = en_analysis_clip_last_start(n, &p.clip);
        CHECKF(last + (p.clip.frames - 1) * p.clip.period == n - 1, "n=%d", n);
    }
}

static void test_clip_plan(void)
{
    en_analysis_params p = defaults();
    static const int fr[] = { 10, 100, 169, 180, 185, 195 };
    en_systoles s = systoles_at(200, fr, 6);
    en_beat b[8];
    en_err err;
    int count = -1, dropped = -1;

    clean_curve(size, 200, 50);
    CHECK(en_analysis_plan_beats(size, 200, &s, &p.clip, b, &count, &dropped, &err) == EN_OK);
    /* last start = 137: 169 fits exactly, 180 moves 11, 185 moves 16 (the
     * limit), 195 would move 26 and is dropped. */
    CHECK(count == 5 && dropped == 1);
    CHECK(b[0].systole == 10 && b[0].clip_start == 0 && b[0].shift == 0);
    CHECK(b[1].systole == 100 && b[1].clip_start == 68 && b[1].shift == 0);
    CHECK(b[2].systole == 169 && b[2].clip_start == 137 && b[2].shift == 0);
    CHECK(b[3].systole == 180 && b[3].clip_start == 137 && b[3].shift == 11);
    CHECK(b[4].systole == 185 && b[4].clip_start == 137 && b[4].shift == 16);
    for (int i = 0; i < count; i++)
        CHECK(isnan(b[i].ef));

    /* Upstream's rule: every clip past the end is dropped. */
    p.clip.end_rule = EN_CLIP_END_DROP;
    CHECK(en_analysis_plan_beats(size, 200, &s, &p.clip, b, &count, &dropped, &err) == EN_OK);
    CHECK(count == 3 && dropped == 3);
    CHECK(b[2].systole == 169 && b[2].shift == 0);

    /* A zero shift limit equals dropping. */
    p.clip.end_rule = EN_CLIP_END_SHIFT;
    p.clip.max_shift = 0;
    CHECK(en_analysis_plan_beats(size, 200, &s, &p.clip, b, &count, &dropped, &err) == EN_OK);
    CHECK(count == 3 && dropped == 3);
}

static void test_clip_short_video(void)
{
    en_analysis_params p = defaults();
    static const int fr[] = { 20, 34, 45 };
    en_systoles s = systoles_at(50, fr, 3);
    en_beat b[4];
    en_err err;
    int count, dropped;

    clean_curve(size, 50, 14);
    /* Padded to 64 frames: starts 0 and 1 exist; 34 -> 2 moves by 1, 45 -> 13 by 12. */
    CHECK(en_analysis_plan_beats(size, 50, &s, &p.clip, b, &count, &dropped, &err) == EN_OK);
    CHECK(count == 3 && dropped == 0);
    CHECK(b[0].clip_start == 0 && b[0].shift == 0);
    CHECK(b[1].clip_start == 1 && b[1].shift == 1);
    CHECK(b[2].clip_start == 1 && b[2].shift == 12);
    p.clip.end_rule = EN_CLIP_END_DROP;
    CHECK(en_analysis_plan_beats(size, 50, &s, &p.clip, b, &count, &dropped, &err) == EN_OK);
    CHECK(count == 1 && dropped == 2);
}

static void test_ed_es(void)
{
    en_analysis_params p = defaults();
    /*            0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 */
    double s[] = { 5, 9, 9, 4, 1, 6, 8, 8, 3, 2, 7, 3, 1, 9, 9, 0 };
    static const int fr[] = { 4, 9, 12 };
    en_systoles sys = systoles_at(16, fr, 3);
    en_beat b[3];
    en_err err;
    int count, dropped;

    CHECK(en_analysis_plan_beats(s, 16, &sys, &p.clip, b, &count, &dropped, &err) == EN_OK);
    CHECK(count == 3);
    /* First beat: from frame 0; tie 9/9 -> earliest. */
    CHECK(b[0].ed == 1 && b[0].ed_size == 9 && b[0].es_size == 1);
    /* Then strictly after the previous systole; 8/8 -> earliest. */
    CHECK(b[1].ed == 6 && b[1].ed_size == 8 && b[1].es_size == 2);
    CHECK(b[2].ed == 10 && b[2].ed_size == 7 && b[2].es_size == 1);

    /* Systoles from a caller must be ascending and inside the video. */
    sys.frame[1] = 4;
    CHECK(en_analysis_plan_beats(s, 16, &sys, &p.clip, b, &count, &dropped, &err) == EN_EINVAL);
    CHECK(strstr(err.msg, "systole 1") != NULL);
    sys.frame[1] = 16;
    CHECK(en_analysis_plan_beats(s, 16, &sys, &p.clip, b, &count, &dropped, &err) == EN_EINVAL);
    sys.frame[1] = 9;
    sys.n_frames = 15;
    CHECK(en_analysis_plan_beats(s, 16, &sys, &p.clip, b, &count, &dropped, &err) == EN_EINVAL);
}

/* ------------------------------------------------------------ summary */

static void test_classes(void)
{
    en_analysis_params p = defaults();
    char label[64];

    CHECK(en_ef_classify(50.0, &p) == EN_EF_CLASS_NOT_REDUCED);
    CHECK(en_ef_classify(nextafter(50.0, 0), &p) == EN_EF_CLASS_REDUCED);
    CHECK(en_ef_classify(40.0, &p) == EN_EF_CLASS_REDUCED);
    CHECK(en_ef_classify(nextafter(40.0, 0), &p) == EN_EF_CLASS_LOW);
    CHECK(en_ef_classify(35.0, &p) == EN_EF_CLASS_LOW);
    CHECK(en_ef_classify(nextafter(35.0, 0), &p) == EN_EF_CLASS_VERY_LOW);
    CHECK(en_ef_classify(-5, &p) == EN_EF_CLASS_VERY_LOW);
    CHECK(en_ef_classify(NAN, &p) == EN_EF_CLASS_UNKNOWN);
    CHECK(!strcmp(en_ef_class_name(EN_EF_CLASS_NOT_REDUCED), "not_reduced"));
    CHECK(!strcmp(en_ef_class_name(EN_EF_CLASS_VERY_LOW), "very_low"));
    CHECK(!strcmp(en_ef_class_name((en_ef_class)99), "unknown"));
    en_ef_class_label(EN_EF_CLASS_LOW, &p, label, sizeof label);
    CHECK(!strcmp(label, "35 <= EF < 40 %"));
    en_ef_class_label(EN_EF_CLASS_NOT_REDUCED, &p, label, sizeof label);
    CHECK(!strcmp(label, "EF >= 50 %"));
    en_ef_class_label(EN_EF_CLASS_VERY_LOW, &p, label, 4);
    CHECK(!strcmp(label, "EF "));
    /* Thresholds are parameters and the label follows them. */
    p.ef_low = 45;
    en_ef_class_label(EN_EF_CLASS_REDUCED, &p, label, sizeof label);
    CHECK(!strcmp(label, "45 <= EF < 50 %"));
    CHECK(en_ef_classify(44, &p) == EN_EF_CLASS_LOW);
}

static void test_summary(void)
{
    en_analysis_params p = defaults();
    en_ef_summary s;
    en_err err;
    double three[] = { 40, 50, 60 }, at50[] = { 49, 51 }, at40[] = { 40 };
    double at35[] = { 30, 40 }, bad[] = { 50, NAN };

    CHECK(en_ef_summarize(three, 3, &p, &s, &err) == EN_OK);
    CHECK(s.n == 3 && s.mean == 50 && s.sd == 10);  /* sample SD; population would be 8.16 */
    CHECK(s.min == 40 && s.max == 60 && s.cls == EN_EF_CLASS_NOT_REDUCED && !s.reduced);
    CHECK(en_ef_summarize(at50, 2, &p, &s, &err) == EN_OK);
    CHECK(s.mean == 50 && !s.reduced && fabs(s.sd - sqrt(2.0)) < 1e-12);
    CHECK(en_ef_summarize(at40, 1, &p, &s, &err) == EN_OK);
    CHECK(s.mean == 40 && s.reduced && s.cls == EN_EF_CLASS_REDUCED && isnan(s.sd));
    CHECK(en_ef_summarize(at35, 2, &p, &s, &err) == EN_OK);
    CHECK(s.mean == 35 && s.reduced && s.cls == EN_EF_CLASS_LOW);
    CHECK(en_ef_summarize(NULL, 0, &p, &s, &err) == EN_OK);
    CHECK(s.n == 0 && isnan(s.mean) && isnan(s.sd) && s.cls == EN_EF_CLASS_UNKNOWN && !s.reduced);
    CHECK(en_ef_summarize(bad, 2, &p, &s, &err) == EN_EINVAL);
    CHECK(strstr(err.msg, "beat 1") != NULL);
    CHECK(en_ef_summarize(three, -1, &p, &s, &err) == EN_EINVAL);
}

/* --------------------------------------------------------------- flags */

static void test_clean_curve(void)
{
    double ef[8] = { 55, 57, 56, 58, 54, 56, 55, 57 };
    en_analysis_params p = defaults();
    en_err err;

    clean_curve(size, 300, 50);
    CHECKF(plan_flags(size, 300, 50, 0) == 0, "flags %#x", an.flags);
    CHECK(an.sys.count == 6 && an.sys.frame[0] == 25 && an.sys.frame[5] == 275);
    CHECK(an.n_beats == 6 && an.n_dropped == 0);
    /* 275 - 32 = 243 > 237: the last clip moved back by 6 frames. */
    CHECK(an.beat[5].clip_start == 237 && an.beat[5].shift == 6);
    CHECK(an.autocorr_lag == 50 && an.autocorr > 0.99);
    CHECK(an.interval_cv == 0);
    CHECK(an.frac_small == 0 && an.frac_large == 0);
    CHECK(an.beat[1].ed == 50 && an.beat[1].ed_size == 1900 && an.beat[1].es_size == 1100);
    CHECK(en_analysis_finish(&an, ef, an.n_beats, &p, &err) == EN_OK);
    CHECK(an.flags == 0 && an.ef.n == 6 && fabs(an.ef.mean - 56) < 1e-12);
    CHECK(an.beat[2].ef == 56);
}

static void test_flag_no_beat(void)
{
    for (int i = 0; i < 300; i++)
        size[i] = 1000 + i * 3;   /* steady ramp: periodic check passes, no systole */
    CHECKF(plan_flags(size, 300, 50, 0) == EN_QF_NO_BEAT, "flags %#x", an.flags);
    CHECK(an.sys.count == 0 && an.n_beats == 0);
}

static void test_flag_short(void)
{
    clean_curve(size, 63, 25);
    CHECKF(plan_flags(size, 63, 50, 0) == 0, "63 frames: flags %#x", an.flags);
    clean_curve(size, 62, 25);
    CHECKF(plan_flags(size, 62, 50, 0) == EN_QF_SHORT_VIDEO, "62 frames: flags %#x", an.flags);
    CHECK(an.n_beats == 2);
    /* Tiny videos still give an answer; upstream's trim rule would crash.
     * 1900 1500 1100 1500 1900: from n = 4 the dip at frame 2 is a systole. */
    for (int n = 0; n <= 5; n++) {
        clean_curve(size, n, 4);
        unsigned f = plan_flags(size, n, 50, 0);
        CHECKF(f & EN_QF_SHORT_VIDEO, "n=%d flags %#x", n, f);
        CHECKF(!(f & EN_QF_NO_BEAT) == (n >= 4), "n=%d flags %#x", n, f);
        CHECK(n == 0 || an.sys.trim_clamped);
        CHECK(n < 4 || (an.n_beats == 1 && an.beat[0].systole == 2 &&
                        an.beat[0].clip_start == 0 && an.beat[0].ed == 0));
    }
}

static void test_flag_lv_size(void)
{
    clean_curve(size, 300, 50);
    for (int i = 0; i < 300; i++)
        size[i] = round(size[i] / 15);     /* 73..127 px */
    CHECKF(plan_flags(size, 300, 50, 0) == EN_QF_LV_SMALL, "small: %#x", an.flags);

    clean_curve(size, 300, 50);
    for (int i = 0; i < 300; i++)
        size[i] *= 4;                       /* 4400..7600 px */
    CHECKF(plan_flags(size, 300, 50, 0) == EN_QF_LV_LARGE, "large: %#x", an.flags);

    /* Absent in exactly half the frames is not "most": no flag; one more is. */
    clean_curve(size, 300, 50);
    for (int i = 0; i < 150; i++)
        size[2 * i] = 0;
    CHECK(!(plan_flags(size, 300, 50, 0) & EN_QF_LV_SMALL) && an.frac_small == 0.5);
    size[1] = 0;
    CHECK(plan_flags(size, 300, 50, 0) & EN_QF_LV_SMALL);
}

static void test_flag_not_periodic(void)
{
    unsigned long long r = 12345;

    /* Noise: no systole rhythm, no autocorrelation. */
    for (int i = 0; i < 400; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        size[i] = 1200 + (double)(r >> 54);
    }
    CHECK(plan_flags(size, 400, 50, 0) & EN_QF_NOT_PERIODIC);
    CHECK(an.autocorr < 0.5);

    /* Regular shape, irregular rhythm: beats of 30, 30, 90, 90, ... frames. */
    {
        int i = 0, k = 0;
        while (i < 480) {
            int len = (k++ % 4) < 2 ? 30 : 90;
            for (int j = 0; j < len && i < 480; j++, i++)
                size[i] = round(1500 + 400 * cos(2 * PI * j / len));
        }
    }
    CHECK(plan_flags(size, 480, 50, 0) & EN_QF_NOT_PERIODIC);
    CHECKF(an.interval_cv > 0.25, "cv %g", an.interval_cv);

    /* Constant: nothing beats at all. */
    for (int i = 0; i < 300; i++)
        size[i] = 1500;
    CHECK(plan_flags(size, 300, 50, 0) == (EN_QF_NOT_PERIODIC | EN_QF_NO_BEAT));
}

static void test_flag_spread_and_fps(void)
{
    en_analysis_params p = defaults();
    double tight[6] = { 40, 60, 50, 40, 60, 50 }, wide[6] = { 30, 70, 50, 30, 70, 50 };
    en_err err;

    clean_curve(size, 300, 50);
    CHECK(plan_flags(size, 300, 50, 1) == EN_QF_FPS_GUESSED);
    CHECK(en_analysis_finish(&an, tight, 6, &p, &err) == EN_OK);
    CHECKF(!(an.flags & EN_QF_BEAT_SPREAD), "sd %g", an.ef.sd);   /* SD 8.94 */
    CHECK(en_analysis_finish(&an, wide, 6, &p, &err) == EN_OK);   /* SD 17.9 */
    CHECK(an.flags == (EN_QF_BEAT_SPREAD | EN_QF_FPS_GUESSED));
    /* Re-finishing with agreeing EFs clears it again. */
    CHECK(en_analysis_finish(&an, tight, 6, &p, &err) == EN_OK);
    CHECK(an.flags == EN_QF_FPS_GUESSED);
    p.quality.max_beat_sd = 8;
    CHECK(en_analysis_finish(&an, tight, 6, &p, &err) == EN_OK);
    CHECK(an.flags & EN_QF_BEAT_SPREAD);
    CHECK(en_analysis_finish(&an, tight, 5, &p, &err) == EN_EINVAL);
    CHECK(strstr(err.msg, "5 beat EFs") != NULL);
}

static void test_flag_names(void)
{
    char buf[128];
    unsigned seen = 0;

    for (int i = 0; i < EN_QF_COUNT; i++) {
        unsigned bit = 1u << i;
        CHECK(en_analysis_flag_name(bit) && en_analysis_flag_text(bit));
        CHECK(strlen(en_analysis_flag_text(bit)) > 40);
        seen |= bit;
    }
    CHECK(seen == EN_QF_ALL);
    CHECK(en_analysis_flag_name(1u << EN_QF_COUNT) == NULL);
    CHECK(en_analysis_flag_name(3) == NULL);
    CHECK(en_analysis_flags_format(0, buf, sizeof buf) == 0 && buf[0] == '\0');
    CHECK(en_analysis_flags_format(EN_QF_NO_BEAT | EN_QF_FPS_GUESSED, buf, sizeof buf) == 19);
    CHECK(!strcmp(buf, "no_beat,fps_guessed"));
    CHECK(en_analysis_flags_format(EN_QF_ALL, buf, 12) > 12);
    CHECK(!strcmp(buf, "no_beat"));
    CHECK(en_analysis_flags_format(EN_QF_ALL, NULL, 0) > 50);
}

/* --------------------------------------------------------------- errors */

static void test_errors(void)
{
    en_analysis_params p = defaults();
    en_peaks_opts o;
    en_peak pk[4];
    en_systoles sys;
    en_err err;
    int count;
    double x[] = { 0, 3, 0, 2, 0, 1, 0, 4, 0 };

    CHECK(en_analysis_params_check(&p, &err) == EN_OK);
    p.systole.distance = 0.5;
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL && strstr(err.msg, "systole.distance"));
    p = defaults();
    p.clip.period = 0;
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL && strstr(err.msg, "clip.frames"));
    p = defaults();
    p.quality.lv_min_px = 6000;
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL && strstr(err.msg, "lv_min_px"));
    p = defaults();
    p.ef_low = 55;
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL && strstr(err.msg, "ef_"));
    p = defaults();
    p.quality.min_autocorr = NAN;
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL);
    p = defaults();
    p.quality.hr_min_bpm = 1e-300;   /* would overflow the lag range */
    CHECK(en_analysis_params_check(&p, &err) == EN_EINVAL && strstr(err.msg, "hr_min"));
    p = defaults();

    en_peaks_opts_init(&o);
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_OK && count == 4);
    CHECK(en_find_peaks(x, 9, &o, pk, 3, &count, &err) == EN_ELIMIT && count == 0);
    CHECK(en_find_peaks(x, 0, &o, pk, 0, &count, &err) == EN_OK && count == 0);
    o.distance = 0.5;
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_EINVAL);
    en_peaks_opts_init(&o);
    o.prominence_min = NAN;
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_EINVAL);
    en_peaks_opts_init(&o);
    x[4] = INFINITY;
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_EINVAL && strstr(err.msg, "sample 4"));
    x[4] = NAN;
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_EINVAL);
    CHECK(en_find_peaks(x, -1, &o, pk, 4, &count, &err) == EN_EINVAL);
    /* distance far beyond the signal: one peak survives, the highest. */
    x[4] = 0;
    o.distance = 1e300;
    CHECK(en_find_peaks(x, 9, &o, pk, 4, &count, &err) == EN_OK && count == 1 && pk[0].index == 7);

    clean_curve(size, EN_ANALYSIS_MAX_FRAMES + 1, 50);
    CHECK(en_analysis_systoles(size, EN_ANALYSIS_MAX_FRAMES + 1, &p.systole, &sys, &err) == EN_EINVAL);
    CHECK(en_analysis_systoles(size, EN_ANALYSIS_MAX_FRAMES, &p.systole, &sys, &err) == EN_OK);
    CHECK(sys.count == EN_ANALYSIS_MAX_FRAMES / 50);
    size[7] = NAN;
    CHECK(en_analysis_systoles(size, 100, &p.systole, &sys, &err) == EN_EINVAL && strstr(err.msg, "frame 7"));
    /* Too many systoles for the bound: only reachable with a tiny distance. */
    for (int i = 0; i < 4000; i++)
        size[i] = i % 2 ? 100 : 200;
    p.systole.distance = 1;
    CHECK(en_analysis_systoles(size, 4000, &p.systole, &sys, &err) == EN_ELIMIT);
    p = defaults();
    clean_curve(size, 300, 50);
    CHECK(en_analysis_plan(size, 300, 0, 0, &p, &an, &err) == EN_EINVAL && strstr(err.msg, "fps"));
    CHECK(en_analysis_plan(size, 300, NAN, 0, &p, &an, &err) == EN_EINVAL);
    p.clip.end_rule = (en_clip_end_rule)7;
    CHECK(en_analysis_plan(size, 300, 50, 0, &p, &an, &err) == EN_EINVAL && strstr(err.msg, "end_rule"));
}

int main(void)
{
    test_last_start();
    test_clip_plan();
    test_clip_short_video();
    test_ed_es();
    test_classes();
    test_summary();
    test_clean_curve();
    test_flag_no_beat();
    test_flag_short();
    test_flag_lv_size();
    test_flag_not_periodic();
    test_flag_spread_and_fps();
    test_flag_names();
    test_errors();
    TST_DONE();
}

/*
 * test-report-driver.c - renders a generated study's report, for
 * tests/report_content.py and tests/report_edge.py to check with pdftotext,
 * pdfinfo and OpenCV.
 *
 *   test-report-driver SCENARIO PDF PNG [--source PATH] [--patient NAME]
 *
 * PDF or PNG may be "-" for none.  Scenarios:
 *   study    150 frames at 50 fps, a sinusoidal LV size curve with three
 *            beats of EF 47.3, 52.1 and 45.0 (the last clip shifted back),
 *            two quality flags, two phantom-trained models, key frames
 *            with masks
 *   nomask   study with key frames but no masks and non-phantom models
 *   zero     no beat found: no EF, a reason, one flag
 *   many     500 beats (the table must truncate)
 *   long     a 10000-frame curve (the curve is drawn downsampled)
 *   nan      NaN sizes (runs, an isolated finite point, both ends), a beat
 *            without EF, frame rate unknown, no flags, models or key frames
 *   allnan   every size NaN, no beats
 *   stress   30 flags with long explanations, invalid UTF-8 and control
 *            characters, a long class text, 10 models
 *   absurd   values no pipeline should produce (sizes of 1e300 and
 *            infinity, a frame rate of 1e-300, frames and systoles out of
 *            range, EFs of 1e300 and -inf, NaN thresholds): must still
 *            render, quickly, on one page
 *
 * --source and --patient stand for what the real pipeline holds while it
 * fills the report input: the operator's source path and identifying
 * attributes.  The driver keeps them beside the input as the pipeline
 * would; the report input has no field that could carry them, and the
 * tests check that none of their text reaches the PDF or the PNG.
 */
#include "en_report.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LeakSanitizer: fontconfig 2.14 loses a few bytes parsing its XML
 * configuration (unreachable, once per process, inside
 * FcInitLoadConfigAndFonts, which cairo's toy font calls); not ours to
 * fix.  Suppressed by module, so a leak in our code or cairo still fails.
 * Sanitizer builds call this hook; others never do. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\n";
}

#define S EN_REPORT_SIDE
#define MAX_FRAMES 20000
#define MAX_BEATS 600

typedef struct study {
    en_report_input in;
    double size[MAX_FRAMES];
    int systoles[MAX_BEATS];
    en_report_beat beats[MAX_BEATS];
    en_report_flag flags[40];
    en_report_model models[10];
    uint8_t ed_img[S * S], ed_mask[S * S], es_img[S * S], es_mask[S * S];
} study;

/* What the pipeline knows and the report must never show. */
typedef struct pipeline_context {
    const char *source_path;
    const char *patient_name;
} pipeline_context;

static unsigned rng_state = 12345;

static double rnd(void)  /* deterministic, in [0, 1) */
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((rng_state >> 8) & 0xffffff) / (double)0x1000000;
}

/* A fan of speckle on black with a dark elliptic LV; the mask is the LV. */
static void keyframe(uint8_t *img, uint8_t *mask, double rx, double ry)
{
    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            double dx = x - 61.0, dy = y - 7.0;
            double r = hypot(dx, dy), ang = atan2(dx, dy);
            int fan = dy > 0 && r < 107 && fabs(ang) < 0.79;
            double ex = (x - 56.0) / rx, ey = (y - 62.0) / ry;
            int lv = ex * ex + ey * ey <= 1.0;
            mask[y * S + x] = (uint8_t)lv;
            img[y * S + x] = (uint8_t)(!fan ? 0 : lv ? 15 + 20 * rnd() : 90 + 120 * rnd());
        }
    }
}

/* size = base + amp * cos(2 pi i / period): systoles at the minima. */
static void sinusoid(study *st, int n, int period)
{
    st->in.n_frames = n;
    for (int i = 0; i < n; i++)
        st->size[i] = 1500 + 400 * cos(2 * M_PI * i / period) + 20 * (rnd() - 0.5);
}

/* One beat per minimum whose clip (64 frames, 32 before) fits or is
 * shifted back; EF from efs[] (cycled) or pseudo-random. */
static void beats(study *st, int period, const double *efs, int n_efs)
{
    int n = st->in.n_frames, k = 0;

    for (int s = period / 2; s < n && k < MAX_BEATS; s += period, k++) {
        en_report_beat *b = &st->beats[k];
        st->systoles[k] = s;
        b->systole_frame = s;
        b->clip_start = s >= 32 ? s - 32 : 0;
        if (b->clip_start + 64 > n) {
            b->clip_start = n > 64 ? n - 64 : 0;
            b->shifted = 1;
        }
        b->ed_frame = s - period / 2;
        b->es_frame = s;
        b->ef = efs ? efs[k % n_efs] : 35 + 25 * rnd();
    }
    st->in.systoles = st->systoles;
    st->in.n_systoles = k;
    st->in.beats = st->beats;
    st->in.n_beats = k;
}

/* Mean and sample SD (as R's sd()) of the finite beat EFs. */
static void ef_stats(study *st)
{
    double sum = 0, ss = 0;
    int n = 0;

    for (int i = 0; i < st->in.n_beats; i++)
        if (isfinite(st->beats[i].ef))
            sum += st->beats[i].ef, n++;
    st->in.ef_mean = n ? sum / n : NAN;
    for (int i = 0; i < st->in.n_beats; i++)
        if (isfinite(st->beats[i].ef))
            ss += pow(st->beats[i].ef - st->in.ef_mean, 2);
    st->in.ef_sd = n > 1 ? sqrt(ss / (n - 1)) : NAN;
    if (n)
        st->in.ef_class = st->in.ef_mean < 50 ? "Reduced EF (below 50 %)"
                                               : "EF not reduced (50 % or above)";
}

static void models(study *st, int phantom)
{
    st->models[0] = (en_report_model){"segmentation", "deeplabv3_resnet50", "3f9a2c1d",
                                      "echonetd phantom training set v1", phantom};
    st->models[1] = (en_report_model){"ejection fraction", "r2plus1d_18", "b7e4d210",
                                      "echonetd phantom training set v1", phantom};
    st->in.models = st->models;
    st->in.n_models = 2;
}

static void base(study *st)
{
    en_report_input_init(&st->in);
    st->in.pseudonym = "a1b2c3d4e5f60718";
    st->in.processed = 1714564980;  /* 2024-05-01 12:03 UTC */
    st->in.src_rows = 600;
    st->in.src_cols = 800;
    st->in.fps = 50;
    st->in.fps_source = "CineRate";
    st->in.sector_method = "regions";
    st->in.lv_size = st->size;
}

static void with_keyframes(study *st, int masks)
{
    keyframe(st->ed_img, st->ed_mask, 15, 31);
    keyframe(st->es_img, st->es_mask, 11, 24);
    st->in.ed = (en_report_keyframe){0, st->ed_img, masks ? st->ed_mask : NULL};
    st->in.es = (en_report_keyframe){25, st->es_img, masks ? st->es_mask : NULL};
}

static void scenario_study(study *st, int masks)
{
    static const double efs[] = {47.3, 52.1, 45.0};

    base(st);
    st->in.src_frames = 150;
    sinusoid(st, 150, 50);
    beats(st, 50, efs, 3);
    ef_stats(st);
    st->flags[0] = (en_report_flag){"beats_disagree",
                                    "beat EFs differ by 7.1 points; read the mean with care"};
    st->flags[1] = (en_report_flag){"clip_shifted",
                                    "the last beat's clip ran past the video's end and was "
                                    "moved back to fit"};
    st->in.flags = st->flags;
    st->in.n_flags = 2;
    models(st, masks);
    with_keyframes(st, masks);
}

static void scenario_zero(study *st)
{
    base(st);
    st->in.src_frames = 120;
    st->in.n_frames = 120;
    for (int i = 0; i < 120; i++)
        st->size[i] = 1200 + 10 * (rnd() - 0.5);
    st->in.no_ef_reason = "no systole found: the LV size curve has no clear minima";
    st->flags[0] = (en_report_flag){"no_beat", "no beat was detected, so no EF is given"};
    st->in.flags = st->flags;
    st->in.n_flags = 1;
    models(st, 1);
    with_keyframes(st, 1);
}

static void scenario_periodic(study *st, int n, int period)
{
    base(st);
    st->in.src_frames = n;
    sinusoid(st, n, period);
    beats(st, period, NULL, 0);
    ef_stats(st);
    models(st, 1);
    with_keyframes(st, 1);
}

static void scenario_nan(study *st)
{
    static const double efs[] = {55.5, NAN, 61.0};

    base(st);
    st->in.fps = 0;
    st->in.fps_source = NULL;
    st->in.src_frames = 200;
    sinusoid(st, 200, 50);
    for (int i = 0; i < 200; i++)
        if (i < 5 || (i >= 60 && i <= 80) || i == 119 || i == 121 || i >= 195)
            st->size[i] = NAN;
    beats(st, 50, efs, 3);
    st->beats[1].ed_frame = 70;  /* a marker on a NaN size: not drawn */
    ef_stats(st);
}

static void scenario_allnan(study *st)
{
    base(st);
    st->in.src_frames = 100;
    st->in.n_frames = 100;
    for (int i = 0; i < 100; i++)
        st->size[i] = NAN;
    st->in.no_ef_reason = "the LV was not found in any frame";
}

static void scenario_stress(study *st)
{
    static char expl[30][400];
    static char names[30][32];

    scenario_study(st, 1);
    for (int i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "flag_%02d", i);
        snprintf(expl[i], sizeof expl[i],
                 "explanation %d with a bad byte \xff here, a tab\tand a newline\n, "
                 "and a word that is far too long to fit on one line of the report: "
                 "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
                 "then more ordinary words to wrap over several lines of text", i);
        st->flags[i] = (en_report_flag){names[i], expl[i]};
    }
    st->in.n_flags = 30;
    st->in.ef_class = "a class text that is much longer than any real one would be, to see "
                      "that it wraps instead of running into the key frames \xc3\x28";
    for (int i = 0; i < 10; i++)
        st->models[i] = (en_report_model){"role", "arch", "hash", "origin", i == 3};
    st->in.n_models = 10;
}

static void scenario_absurd(study *st)
{
    scenario_study(st, 1);
    st->in.fps = 1e-300;
    st->size[10] = 1e300;
    st->size[11] = INFINITY;
    st->size[12] = -1e300;
    st->systoles[0] = -5;
    st->systoles[1] = 1000000;
    st->beats[0].ef = 1e300;
    st->beats[1].ef = -INFINITY;
    st->beats[2].ed_frame = -7;
    st->beats[2].es_frame = 99999;
    st->beats[2].clip_start = -1;
    st->in.ef_mean = 1e300;
    st->in.ef_sd = INFINITY;
    st->in.thresholds[1] = NAN;
    st->in.src_frames = -3;
    st->in.ed.frame = -2;
}

static int build(study *st, const char *name)
{
    if (!strcmp(name, "study"))
        scenario_study(st, 1);
    else if (!strcmp(name, "nomask"))
        scenario_study(st, 0);
    else if (!strcmp(name, "zero"))
        scenario_zero(st);
    else if (!strcmp(name, "many"))
        scenario_periodic(st, 500 * 30, 30);
    else if (!strcmp(name, "long"))
        scenario_periodic(st, 10000, 47);
    else if (!strcmp(name, "nan"))
        scenario_nan(st);
    else if (!strcmp(name, "allnan"))
        scenario_allnan(st);
    else if (!strcmp(name, "stress"))
        scenario_stress(st);
    else if (!strcmp(name, "absurd"))
        scenario_absurd(st);
    else
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    pipeline_context ctx = {NULL, NULL};
    study *st = calloc(1, sizeof *st);
    en_err err = {0};
    int rc;

    if (argc < 4 || !st) {
        free(st);
        fprintf(stderr, "usage: %s SCENARIO PDF|- PNG|- [--source PATH] [--patient NAME]\n",
                argv[0]);
        return 2;
    }
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--source"))
            ctx.source_path = argv[i + 1];
        else if (!strcmp(argv[i], "--patient"))
            ctx.patient_name = argv[i + 1];
    }
    if (build(st, argv[1]) < 0) {
        fprintf(stderr, "unknown scenario '%s'\n", argv[1]);
        free(st);
        return 2;
    }
    rc = en_report_render(&st->in, strcmp(argv[2], "-") ? argv[2] : NULL,
                          strcmp(argv[3], "-") ? argv[3] : NULL, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    else
        printf("beats %d frames %d source-known %d\n", st->in.n_beats, st->in.n_frames,
               ctx.source_path != NULL);
    free(st);
    /* cairo's font and surface caches, so LeakSanitizer sees only our leaks */
    cairo_debug_reset_static_data();
    return rc ? 1 : 0;
}

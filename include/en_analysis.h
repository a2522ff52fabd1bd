/*
 * en_analysis.h - from the per-frame LV size curve and the per-clip EF
 * predictions to what a reader trusts: systoles, beats, the beat-by-beat
 * EF with its spread, the EF class, and quality flags.
 *
 * The steps reproduce EchoNet-Dynamic (segmentation.py's --save_video block
 * and scripts/beat_by_beat_analysis.R):
 *
 *   1. systoles = find_peaks(-size, distance=20, prominence=0.5 * (trim_max -
 *      trim_min)), trim_* = sorted(size)[round(n ** 0.05 / 0.95)]; our
 *      en_find_peaks reproduces scipy.signal.find_peaks exactly.
 *   2. one 32-frame, period-2 EF clip per systole, starting 32 frames before
 *      it (clamped at 0); clips that would run past the video's end are
 *      shifted back (default, flagged per beat) or dropped (upstream).
 *   3. study EF = mean of the beat EFs, with their sample SD (R's sd()).
 *
 * Everything is bounded: at most EN_ANALYSIS_MAX_FRAMES frames, at most
 * EN_ANALYSIS_MAX_SYSTOLES systoles; no hidden state, every function is
 * reentrant.  A study with quality flags still has every number computed;
 * the flags say what not to trust.  See docs/analysis.md.
 */
#ifndef EN_ANALYSIS_H
#define EN_ANALYSIS_H

#include <stddef.h>

#include "en_err.h"

#define EN_ANALYSIS_MAX_FRAMES 16384    /* 5.5 min at 50 fps */
#define EN_ANALYSIS_MAX_SYSTOLES 1024   /* > 16384 / 20: never hit at distance 20 */

/* ------------------------------------------------------------------------
 * Peaks: scipy.signal.find_peaks(x, distance=, prominence=), wlen=None.
 * ------------------------------------------------------------------------ */

typedef struct en_peaks_opts {
    double distance;        /* scipy's `distance`: 0 = none, else >= 1 */
    double prominence_min;  /* -INFINITY = no lower bound (scipy: None) */
    double prominence_max;  /* +INFINITY = no upper bound (scipy: None) */
} en_peaks_opts;

/* No condition at all: every local maximum is a peak. */
void en_peaks_opts_init(en_peaks_opts *o);

typedef struct en_peak {
    int index;                  /* plateau midpoint, rounded down */
    int left_edge, right_edge;  /* the plateau (equal to index when sharp) */
    double prominence;          /* scipy's, over the whole signal */
    int left_base, right_base;
} en_peak;

/* Peaks of x[0..n) in ascending index order, exactly as scipy 1.10 with
 * numpy 1.24 finds them (including its unstable tie order in the distance
 * rule).  x must be finite.  Writes at most cap peaks (n / 2 always
 * suffices) and *count; EN_ELIMIT when more than cap survive, EN_EINVAL for
 * bad arguments, EN_ENOMEM. */
int en_find_peaks(const double *x, int n, const en_peaks_opts *o,
                  en_peak *out, int cap, int *count, en_err *err);

/* ------------------------------------------------------------------------
 * Parameters.  en_analysis_params_default() gives the EchoNet-compatible
 * values; every number is documented in docs/analysis.md.
 * ------------------------------------------------------------------------ */

typedef struct en_systole_params {
    double distance;         /* 20 frames between systoles at least */
    double prominence_frac;  /* 0.5: of the trim range */
    double trim_low_exp;     /* 0.05: trim_min = sorted(size)[round(n ** 0.05)] */
    double trim_high_exp;    /* 0.95: trim_max = sorted(size)[round(n ** 0.95)] */
} en_systole_params;

typedef enum en_clip_end_rule {
    EN_CLIP_END_SHIFT = 0,   /* move the clip back to the last full one, flag it */
    EN_CLIP_END_DROP = 1     /* upstream: the beat gets no clip */
} en_clip_end_rule;

typedef struct en_clip_params {
    int frames;                 /* 32 frames per clip */
    int period;                 /* 2: every second frame */
    int lead;                   /* 32: clip starts this far before the systole */
    en_clip_end_rule end_rule;  /* EN_CLIP_END_SHIFT */
    int max_shift;              /* 16: a longer move drops the beat instead */
} en_clip_params;

typedef struct en_quality_params {
    double lv_min_px;        /* 200: smaller (or absent) LV in a frame is implausible */
    double lv_max_px;        /* 5000: larger LV in a frame is implausible */
    double lv_bad_fraction;  /* 0.5: flag when more than this share of frames is */
    double hr_min_bpm;       /* 30: slowest heart rate searched for periodicity */
    double hr_max_bpm;       /* 200: fastest */
    double min_autocorr;     /* 0.5: weaker best autocorrelation = not periodic */
    double max_interval_cv;  /* 0.25: systole intervals more irregular = not periodic */
    double max_beat_sd;      /* 10: beat EFs spread wider (SD, EF points) */
} en_quality_params;

typedef struct en_analysis_params {
    en_systole_params systole;
    en_clip_params clip;
    en_quality_params quality;
    double ef_reduced;       /* 50: mean EF below it is reduced */
    double ef_low;           /* 40: second reported threshold */
    double ef_very_low;      /* 35: third reported threshold */
} en_analysis_params;

void en_analysis_params_default(en_analysis_params *p);

/* EN_EINVAL with the offending field named when a value is out of range. */
int en_analysis_params_check(const en_analysis_params *p, en_err *err);

/* ------------------------------------------------------------------------
 * Systoles (EchoNet-Dynamic's rule).
 * ------------------------------------------------------------------------ */

typedef struct en_systoles {
    int n_frames;
    int trim_min_rank;        /* index into the sorted sizes actually used */
    int trim_max_rank;
    int trim_clamped;         /* 1 when a rank was >= n and clamped to n - 1
                                 (upstream raises IndexError: n <= 5) */
    double trim_min, trim_max;
    double prominence;        /* threshold used: frac * (trim_max - trim_min) */
    int count;
    int frame[EN_ANALYSIS_MAX_SYSTOLES];  /* ascending */
} en_systoles;

/* Systole frames of size[0..n).  n = 0 gives no systole.  EN_EINVAL for
 * non-finite sizes or n > EN_ANALYSIS_MAX_FRAMES, EN_ELIMIT for more than
 * EN_ANALYSIS_MAX_SYSTOLES systoles (only with a tiny distance). */
int en_analysis_systoles(const double *size, int n, const en_systole_params *p,
                         en_systoles *out, en_err *err);

/* ------------------------------------------------------------------------
 * Beats and clips.
 * ------------------------------------------------------------------------ */

/* Last clip start EchoNet-Dynamic evaluates in a video of n frames: a clip
 * covers (frames - 1) * period + 1 frames, and videos shorter than
 * frames * period are padded to that length first, so
 * max(n, frames * period) - (frames - 1) * period - 1 (1 for n < 64). */
int en_analysis_clip_last_start(int n, const en_clip_params *p);

/* Frame numbers of a clip: frame i is start + i * period; frames >= n are
 * padding (mean-coloured frames after normalisation). */

typedef struct en_beat {
    int systole;        /* ES frame: the detected systole, smallest LV */
    int ed;             /* ED frame: largest LV after the previous systole
                           (or from frame 0) up to this one; first if tied */
    double es_size, ed_size;
    int clip_start;     /* first frame of this beat's EF clip */
    int shift;          /* frames the clip was moved back to fit; 0 = as upstream */
    double ef;          /* NAN until en_analysis_finish */
} en_beat;

/* Plans one beat per systole.  Beats whose clip cannot be placed are not
 * in out[]; their number goes to *dropped.  out needs sys->count entries. */
int en_analysis_plan_beats(const double *size, int n, const en_systoles *sys,
                           const en_clip_params *p, en_beat *out, int *count,
                           int *dropped, en_err *err);

/* ------------------------------------------------------------------------
 * EF summary.
 * ------------------------------------------------------------------------ */

typedef enum en_ef_class {
    EN_EF_CLASS_UNKNOWN = 0,   /* no beat EF */
    EN_EF_CLASS_NOT_REDUCED,   /* EF >= ef_reduced (50) */
    EN_EF_CLASS_REDUCED,       /* ef_low (40) <= EF < ef_reduced (50) */
    EN_EF_CLASS_LOW,           /* ef_very_low (35) <= EF < ef_low (40) */
    EN_EF_CLASS_VERY_LOW       /* EF < ef_very_low (35) */
} en_ef_class;

typedef struct en_ef_summary {
    int n;             /* beat EFs averaged */
    double mean;       /* NAN when n = 0 */
    double sd;         /* sample SD (n - 1, as R's sd()); NAN when n < 2 */
    double min, max;   /* NAN when n = 0 */
    en_ef_class cls;
    int reduced;       /* 1 when mean < ef_reduced */
} en_ef_summary;

en_ef_class en_ef_classify(double ef, const en_analysis_params *p);

/* "unknown", "not_reduced", "reduced", "low", "very_low". */
const char *en_ef_class_name(en_ef_class c);

/* The band in words with the thresholds used, e.g. "35 <= EF < 40 %". */
void en_ef_class_label(en_ef_class c, const en_analysis_params *p,
                       char *buf, size_t len);

/* Mean, SD, range and class of ef[0..n).  EN_EINVAL for a non-finite EF. */
int en_ef_summarize(const double *ef, int n, const en_analysis_params *p,
                    en_ef_summary *out, en_err *err);

/* ------------------------------------------------------------------------
 * Quality flags.  A flag never stops the analysis.
 * ------------------------------------------------------------------------ */

enum {
    EN_QF_NO_BEAT = 1u << 0,       /* no systole, or no beat with a clip */
    EN_QF_SHORT_VIDEO = 1u << 1,   /* fewer frames than one clip covers (63) */
    EN_QF_LV_SMALL = 1u << 2,      /* LV absent or too small in most frames */
    EN_QF_LV_LARGE = 1u << 3,      /* LV implausibly large in most frames */
    EN_QF_NOT_PERIODIC = 1u << 4,  /* size curve without a clear heartbeat */
    EN_QF_BEAT_SPREAD = 1u << 5,   /* beat EFs disagree widely */
    EN_QF_FPS_GUESSED = 1u << 6    /* frame rate absent from the source */
};
#define EN_QF_COUNT 7
#define EN_QF_ALL ((1u << EN_QF_COUNT) - 1)

/* Short name of one flag bit ("no_beat"), NULL for anything else. */
const char *en_analysis_flag_name(unsigned flag);

/* One sentence for a reader: what the flag means and what to do. */
const char *en_analysis_flag_text(unsigned flag);

/* Comma-separated names of the set flags ("" for none), truncated safely;
 * returns the length it needed (snprintf-style). */
size_t en_analysis_flags_format(unsigned flags, char *buf, size_t len);

/* ------------------------------------------------------------------------
 * The whole analysis of one study.
 * ------------------------------------------------------------------------ */

typedef struct en_analysis {
    int n_frames;
    double fps;
    int fps_guessed;
    en_systoles sys;
    int n_beats;
    en_beat beat[EN_ANALYSIS_MAX_SYSTOLES];
    int n_dropped;          /* systoles without a clip */
    /* what the size-curve flags were decided on */
    double frac_small;      /* share of frames with size < lv_min_px */
    double frac_large;      /* share of frames with size > lv_max_px */
    double autocorr;        /* best autocorrelation in the heart-rate lags;
                               NAN when the video is too short to tell */
    int autocorr_lag;       /* its lag in frames, 0 when not evaluated */
    double interval_cv;     /* CV of systole intervals; NAN with < 3 systoles */
    en_ef_summary ef;       /* filled by en_analysis_finish */
    unsigned flags;         /* EN_QF_* */
} en_analysis;              /* ~50 KB: allocate it, do not put it on a small stack */

/* Systoles, beats, clip plan and the size-curve flags of size[0..n) (LV
 * pixels per frame at 112x112).  fps is the frame rate used for the
 * periodicity check; fps_guessed sets EN_QF_FPS_GUESSED.  The caller then
 * predicts one EF per beat at a->beat[i].clip_start. */
int en_analysis_plan(const double *size, int n, double fps, int fps_guessed,
                     const en_analysis_params *p, en_analysis *a, en_err *err);

/* Stores ef[i] as beat i's EF (n must equal a->n_beats), summarises them
 * and sets EN_QF_BEAT_SPREAD.  EN_EINVAL for a count mismatch or a
 * non-finite EF. */
int en_analysis_finish(en_analysis *a, const double *ef, int n,
                       const en_analysis_params *p, en_err *err);

#endif

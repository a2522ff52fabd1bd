/*
 * en_report.h - the one-page study report (PDF and PNG) and the optional
 * segmentation-overlay video.
 *
 * The report is what a reader sees of a study: the EF (mean of the beat
 * EFs) with its class and the beat spread, the LV size curve with
 * systoles, ED and ES marked, the ED and ES key frames with the
 * segmentation outline, the quality flags, the model identities and a note
 * that it is not a diagnosis.  A page about one video (no clips given)
 * also has the per-beat table.  A study page (clips given) shows the
 * study's EF over the beats of its used clips, the key frames of the used
 * clips, the first used clip's curve, and a table of every instance of
 * the study with its view evidence, verdict and reasons.
 *
 * The input is self-contained: plain numbers, strings and arrays, filled by
 * the caller from the pipeline, so this module depends on no other module's
 * structs.  It holds no identifying fields by construction, and the report
 * never prints a file path (neither the source's nor its own outputs'): a
 * site that puts patient names in file or folder names does not leak them
 * here.  Strings are UTF-8; invalid bytes and control characters are shown
 * as '?'.  Nothing in the input is kept after a call returns.
 */
#ifndef EN_REPORT_H
#define EN_REPORT_H

#include <stdint.h>
#include <time.h>

#include "en_err.h"

/* Key frames and overlay frames are EchoNet-Dynamic's 112x112. */
#define EN_REPORT_SIDE 112

/* The page is A4 portrait; the PNG is that page at 150 dots per inch. */
#define EN_REPORT_PAGE_W_PT 595.276
#define EN_REPORT_PAGE_H_PT 841.890
#define EN_REPORT_PNG_DPI 150
#define EN_REPORT_PNG_W 1240
#define EN_REPORT_PNG_H 1754

/* The fixed note at the foot of every report. */
#define EN_REPORT_NOTE \
    "Not a diagnosis. This is research software output: the ejection fraction " \
    "and the left-ventricle outline were estimated automatically by neural " \
    "networks (EchoNet-Dynamic method) from one echo video. A qualified " \
    "clinician must review the images and measurements before any clinical use."

/* The same note on a study page, whose EF comes from several videos. */
#define EN_REPORT_NOTE_STUDY \
    "Not a diagnosis. This is research software output: the ejection fraction " \
    "and the left-ventricle outlines were estimated automatically by neural " \
    "networks (EchoNet-Dynamic method) from the echo videos of the study judged " \
    "to be apical four-chamber views; that judgement is automatic too. A " \
    "qualified clinician must review the images, the views and the " \
    "measurements before any clinical use."

/* The line printed, in a red box, when a model is a phantom-trained default. */
#define EN_REPORT_PHANTOM_TEXT "phantom-trained default model, not for clinical use"

/* Ejection fraction thresholds the class is reported against, in percent:
 * below the first is reduced EF (upstream's cardiomyopathy cut). */
#define EN_REPORT_NTHRESH 3

typedef struct en_report_beat {
    int systole_frame;  /* detected systole (LV size minimum), video frame */
    int clip_start;     /* first frame of the 32x2 clip the EF came from */
    int ed_frame;       /* end-diastole frame, -1 when not known */
    int es_frame;       /* end-systole frame, -1 when not known */
    double ef;          /* percent; NaN when not computed */
    int shifted;        /* 1: the clip was moved back to fit in the video */
} en_report_beat;

/* A quality flag: a short name ("too_few_beats") and what it means for the
 * reader ("only one beat was found; the EF rests on a single clip"). */
typedef struct en_report_flag {
    const char *name;
    const char *explanation;
} en_report_flag;

typedef struct en_report_model {
    const char *role;          /* "segmentation", "ejection fraction" */
    const char *architecture;  /* "deeplabv3_resnet50" */
    const char *hash;          /* short content hash */
    const char *origin;        /* where the weights came from, free text */
    int phantom;               /* 1: trained on phantoms only (default build) */
} en_report_model;

/* A key frame: grey pixels and the LV mask (0/1), both
 * EN_REPORT_SIDE x EN_REPORT_SIDE, row-major.  image NULL: not available;
 * mask NULL: drawn without an outline. */
typedef struct en_report_keyframe {
    int frame;              /* video frame index, -1 when not known */
    const uint8_t *image;
    const uint8_t *mask;
} en_report_keyframe;

/* One instance of a study: a row of the clip table. */
typedef struct en_report_clip {
    const char *label;      /* short name: "2 (9c0d11b7)" */
    const char *view;       /* the view evidence: "DICOM: apical four-chamber" */
    int frames;             /* source frames; <= 0 not known */
    int beats;              /* beats with an EF */
    double ef;              /* the clip's mean EF; NaN when none */
    const char *verdict;    /* "used", "left out", "not analysed", "failed" */
    const char *reasons;    /* why, in words */
    int used;               /* counted in the study's EF */
} en_report_clip;

/* The key frames of one used clip. */
typedef struct en_report_keyclip {
    const char *label;      /* as in the clip table */
    en_report_keyframe ed, es;
} en_report_keyclip;

typedef struct en_report_input {
    const char *pseudonym;     /* required */
    time_t processed;          /* when the results were made; printed in UTC;
                                * 0 = not known */

    /* Facts about the source video (non-identifying). */
    int src_frames;            /* frames in the source */
    int src_rows, src_cols;    /* source geometry in pixels; 0 = not known */
    double fps;                /* frames per second used; <= 0 = not known */
    const char *fps_source;    /* which attribute gave fps ("CineRate", "default") */
    const char *sector_method; /* how the fan was found ("regions", ...) */

    /* LV size per frame (pixels of the 112x112 mask); NaN where missing. */
    const double *lv_size;
    int n_frames;
    const int *systoles;       /* detected systole frames, ascending */
    int n_systoles;

    const en_report_beat *beats;
    int n_beats;
    double ef_mean, ef_sd;     /* percent; NaN when not computed */
    const char *ef_class;      /* "reduced EF (below 50 %)", ... */
    double thresholds[EN_REPORT_NTHRESH]; /* 50, 40, 35; 0 = unused */
    const char *no_ef_reason;  /* shown with "—" when there is no EF */

    const en_report_flag *flags;
    int n_flags;
    const en_report_model *models;
    int n_models;

    en_report_keyframe ed, es;

    /* A study page when n_clips > 0: ef_mean/ef_sd/ef_class are the study's,
     * summary_note says what they rest on, lv_size/systoles/beats are of
     * the clip curve_label names (the first used one), ed/es unused. */
    const en_report_clip *clips;
    int n_clips;
    const en_report_keyclip *keyclips;
    int n_keyclips;
    const char *summary_note;   /* "mean of 12 beats from 3 used clips of 7; ..." */
    const char *curve_label;    /* "clip 2 (9c0d11b7)" */
} en_report_input;

/* Sets the defaults: everything empty, NaN EF, thresholds 50, 40, 35,
 * key frames absent. */
void en_report_input_init(en_report_input *in);

/* Renders the one-page report to pdf_path and/or png_path (either may be
 * NULL, not both).  Each file is written under a temporary name beside its
 * final path and renamed into place when complete: on error no partial or
 * temporary file is left, and an existing report is left as it was.
 * Errors name the output path and the cause. */
int en_report_render(const en_report_input *in, const char *pdf_path,
                     const char *png_path, en_err *err);

/* Writes an MJPEG AVI of n grey EN_REPORT_SIDE-square frames with each
 * frame's LV mask outline drawn in colour (as upstream's --save_video shows
 * the segmentation).  frames and masks: n * SIDE * SIDE bytes, masks 0/1.
 * Written atomically like any video (en_video_write_avi). */
int en_report_overlay_video(const uint8_t *frames, const uint8_t *masks, int n,
                            double fps, const char *path, en_err *err);

/* The outline colour of the overlay video and the key frames (RGB). */
#define EN_REPORT_OUTLINE_R 255
#define EN_REPORT_OUTLINE_G 40
#define EN_REPORT_OUTLINE_B 40

#endif

/*
 * en_study.h - which clips of a study count, and the study's result.
 *
 * An echo study holds many instances: cine clips of several views, stills,
 * Doppler and M-mode strips, sometimes objects that are no images at all.
 * EchoNet-Dynamic's EF is defined on apical four-chamber (A4C) clips only,
 * so a clip of another view must never enter a study's EF silently.  This
 * module decides, with reasons a reader can check:
 *
 *   1. en_clip_screen: from the file's facts alone, whether an instance can
 *      be analysed at all (a still, not ultrasound, a Doppler or M-mode
 *      region, too short for one beat);
 *   2. en_clip_evidence_compute: from the segmentation of an analysed clip,
 *      what the left ventricle looks like (one plausible LV in every frame?
 *      shaped and placed as in an apical view? a right ventricle beside it,
 *      as in four chambers?);
 *   3. en_clip_judge: the verdict, usable for EF or not, from the view the
 *      DICOM names (where it names one), that evidence, the beats and the
 *      quality flags.  When in doubt the clip is left out and the reason
 *      says so;
 *   4. en_study_aggregate: the study's EF, the mean over the beats of its
 *      usable clips, with its spread and flags; en_study_recompute stores
 *      it as a new result version (en_store_study_update).
 *
 * Everything but en_study_recompute is pure C over plain arrays: testable
 * without DICOM files, networks or a database.  docs/analysis.md explains
 * every rule and docs/accuracy.md measures them on simulated studies.
 */
#ifndef EN_STUDY_H
#define EN_STUDY_H

#include <stdint.h>

#include "en_err.h"
#include "en_store.h"

/* ---- views -------------------------------------------------------------- */

typedef enum en_view {
    EN_VIEW_UNKNOWN = 0,    /* the DICOM names no view (or one we do not know) */
    EN_VIEW_A4C,            /* apical four-chamber: the one EchoNet measures */
    EN_VIEW_A2C,            /* apical two-chamber */
    EN_VIEW_A3C,            /* apical long axis (three-chamber) */
    EN_VIEW_A5C,            /* apical five-chamber */
    EN_VIEW_PLAX,           /* parasternal long axis */
    EN_VIEW_PSAX,           /* parasternal short axis (any level) */
    EN_VIEW_SUBCOSTAL,
    EN_VIEW_SUPRASTERNAL,
    EN_VIEW_RV,             /* right-ventricular inflow or outflow views */
    EN_VIEW_OTHER           /* a view code naming something else */
} en_view;
#define EN_VIEW_COUNT 11

const char *en_view_name(en_view v);     /* "a4c", ... ("" for unknown) */
const char *en_view_text(en_view v);     /* "apical four-chamber" */
en_view en_view_parse(const char *name); /* inverse of en_view_name */

/* The view a View Code Sequence item names: DICOM CID 12226 codes in SNOMED
 * CT (SCT, e.g. 399214001) or the older SNOMED RT designators (SRT,
 * G-A19C), else the code meaning's words ("Apical four chamber").  Any
 * argument may be NULL or "". */
en_view en_view_from_code(const char *scheme, const char *value, const char *meaning);

/* ---- parameters ------------------------------------------------------------ */

typedef struct en_verdict_params {
    /* screening */
    double min_seconds;         /* shorter than this cannot hold one beat (0.4 s:
                                   one beat at 150 bpm) */
    /* segmentation plausibility, in pixels of the 112x112 view */
    int lv_min_px, lv_max_px;   /* a frame's LV outside these is implausible
                                   (200, 5000: docs/analysis.md) */
    int blob_min_px;            /* smaller specks of mask are ignored (12) */
    double one_lv_fraction;     /* share of frames that must show exactly one
                                   plausible LV (0.9) */
    double min_lv_area_px;      /* median LV mask area below this: a short-axis or
                                   foreshortened cut, not an apical LV (950) */
    double max_axis_angle;      /* degrees between the cavity's long axis and
                                   the beam through it; apical views look along
                                   the LV (30) */
    double max_apex_depth;      /* LV apex depth as a share of the fan's radius:
                                   in an apical view the LV starts near the
                                   probe (0.25) */
    double min_rv_closed;       /* share of the rays beside the LV that find a
                                   closed second cavity: the right ventricle,
                                   as in four chambers (0.30) */
    int min_beats;              /* beats with an EF a usable clip needs (1) */
    uint64_t excluding_flags;   /* quality flags (en_analysis.h) that leave a
                                   clip out: no_beat, lv_small, lv_large,
                                   not_periodic */
    int trust_dicom_view;       /* 1: a clip the DICOM calls A4C still needs
                                   the segmentation checks but not the RV one;
                                   one it calls another view is left out (1) */
} en_verdict_params;

void en_verdict_params_default(en_verdict_params *p);

typedef struct en_study_params {
    double disagreement_points; /* usable clips whose means differ by more
                                   than this are flagged ([analysis]
                                   clip_disagreement_points, 10) */
    double ef_reduced, ef_low, ef_very_low;   /* class cuts: 50, 40, 35 */
} en_study_params;

void en_study_params_default(en_study_params *p);

/* ---- 1. screening: can this instance be analysed? --------------------------- */

/* Ultrasound region kinds (RegionSpatialFormat and RegionDataType of
 * SequenceOfUltrasoundRegions). */
#define EN_CLIP_MAX_REGIONS 16
typedef struct en_clip_region {
    int spatial_format;     /* 1 2D, 2 M-mode, 3 spectral, 4 waveform, 5 graphics */
    int data_type;          /* 1 tissue, 2 colour flow, 3 PW, 4 CW, ... 0x0A ECG */
} en_clip_region;

/* What the file says about itself (non-identifying facts only). */
typedef struct en_clip_facts {
    char sop_class[65];         /* SOP Class UID; "" unknown */
    char modality[17];          /* "US"; "" unknown */
    int frames;                 /* NumberOfFrames (1 for a single-frame object) */
    double fps;                 /* frame rate used */
    int nregions;
    en_clip_region region[EN_CLIP_MAX_REGIONS];
    en_view view;               /* the view the DICOM names */
    int colour;                 /* decoded as colour (3 channels) */
} en_clip_facts;

typedef enum en_clip_verdict_kind {
    EN_CLIP_NOT_JUDGED = 0,
    EN_CLIP_USABLE,
    EN_CLIP_UNUSABLE,
    EN_CLIP_NOT_ANALYSED
} en_clip_verdict_kind;

/* "usable", "unusable", "not_analysed" (as stored); "" for not judged. */
const char *en_clip_verdict_name(en_clip_verdict_kind k);

/* A reason: a bit, a stable identifier (database, JSON) and a sentence. */
enum {
    EN_CLIP_R_SINGLE_FRAME   = 1u << 0,   /* a still */
    EN_CLIP_R_NOT_US         = 1u << 1,   /* not an ultrasound image */
    EN_CLIP_R_DOPPLER        = 1u << 2,   /* a spectral Doppler region */
    EN_CLIP_R_MMODE          = 1u << 3,   /* an M-mode region */
    EN_CLIP_R_COLOUR_FLOW    = 1u << 4,   /* a colour-flow region */
    EN_CLIP_R_NO_SECTOR      = 1u << 5,   /* no ultrasound fan in the pixels */
    EN_CLIP_R_TOO_SHORT      = 1u << 6,   /* shorter than one beat */
    EN_CLIP_R_VIEW_DICOM     = 1u << 7,   /* the DICOM names another view */
    EN_CLIP_R_NO_LV          = 1u << 8,   /* no plausible single LV in many frames */
    EN_CLIP_R_LV_SMALL       = 1u << 9,   /* LV smaller than an apical one: a
                                             short-axis or foreshortened cut */
    EN_CLIP_R_LV_AXIS        = 1u << 10,  /* LV axis across the beam: not apical */
    EN_CLIP_R_LV_DEEP        = 1u << 11,  /* LV apex far from the probe: not apical */
    EN_CLIP_R_NO_RV          = 1u << 12,  /* no RV beside the LV: not four chambers */
    EN_CLIP_R_NO_BEAT        = 1u << 13,  /* too few beats with an EF */
    EN_CLIP_R_QUALITY        = 1u << 14,  /* an excluding quality flag */
    EN_CLIP_R_NO_KEY         = 1u << 15,  /* no SOPInstanceUID: a second delivery
                                             could not be told apart */
    EN_CLIP_R_NOT_DONE       = 1u << 16   /* processing failed or is unfinished */
};
#define EN_CLIP_NREASONS 17

const char *en_clip_reason_name(uint32_t bit);   /* "single_frame"; NULL if unknown */

typedef struct en_clip_verdict {
    en_clip_verdict_kind kind;
    uint32_t reasons;                   /* EN_CLIP_R_* bits */
    char codes[EN_STORE_TEXT_MAX];      /* reason identifiers, comma-separated */
    char text[EN_STORE_REASONS_MAX];    /* the reasons in words, "; "-separated */
    char regions[EN_STORE_NAME_MAX];    /* the region kinds seen: "2d,spectral" */
} en_clip_verdict;

/* Fills v and returns 1 when the instance cannot be analysed (verdict
 * not_analysed, with every reason that applies); returns 0 (v->kind not
 * judged, v->regions filled) when it can. */
int en_clip_screen(const en_clip_facts *f, const en_verdict_params *p, en_clip_verdict *v);

/* A not-analysed verdict for a reason found later (no sector found):
 * detail, when given, is appended to the sentence. */
void en_clip_not_analysed(en_clip_verdict *v, uint32_t reason, const char *detail);

/* ---- 2. evidence from the segmentation ---------------------------------------- */

/* Where the fan's apex sits in the network's view, and its radius (as
 * en_sector_frame places it; en_sector_view gives the exact numbers). */
typedef struct en_view_geometry {
    double apex_x, apex_y, radius;
    const uint8_t *fan;     /* side x side, 1 inside the fan (en_sector_mask of
                               en_sector_view); NULL: the pixels lit in any frame */
} en_view_geometry;

typedef struct en_clip_evidence {
    int frames;
    double one_lv_fraction;     /* frames with exactly one LV of plausible size */
    double lv_area_median;      /* px, the mask's largest blob */
    double apex_depth;          /* median nearest LV pixel to the fan apex / radius */
    double cavity_angle;        /* degrees between the mean image's cavity under
                                   the mask and the beam */
    double rv_closed;           /* share of rays (better side) finding a closed
                                   second cavity beside the LV */
} en_clip_evidence;

/* Measures the clip: frames and masks are n side x side images (grey
 * 0..255, masks 0/1), frame-major.  With no mask anywhere the shares are 0
 * and the shape measures NAN.  EN_ENOMEM is the only failure. */
int en_clip_evidence_compute(const uint8_t *frames, const uint8_t *masks, int n, int side,
                             const en_view_geometry *g, const en_verdict_params *p,
                             en_clip_evidence *ev, en_err *err);

/* The evidence as a JSON object (for the database), into buf. */
void en_clip_evidence_json(const en_clip_evidence *ev, char *buf, size_t len);

/* ---- 3. the verdict ----------------------------------------------------------------- */

/* Judges an analysed clip: f its facts, ev its evidence, nbeats the beats
 * with an EF, qflags its quality flags (en_analysis.h), has_key whether it
 * has a duplicate key.  v->regions is kept. */
void en_clip_judge(const en_clip_facts *f, const en_clip_evidence *ev, int nbeats,
                   uint64_t qflags, int has_key, const en_verdict_params *p, en_clip_verdict *v);

/* ---- 4. the study ----------------------------------------------------------------- */

/* Study flags (en_store_study_result.flags). */
enum {
    EN_STUDY_F_NO_USABLE      = 1u << 0,  /* no usable clip: no EF */
    EN_STUDY_F_DISAGREE       = 1u << 1,  /* usable clips disagree by more than the limit */
    EN_STUDY_F_UNJUDGED       = 1u << 2,  /* clips from schema 1, never judged (the
                                             value is fixed by sql/002) */
    EN_STUDY_F_ONE_CLIP       = 1u << 3,  /* the EF rests on one clip */
    EN_STUDY_F_PENDING        = 1u << 4,  /* some clips were not finished yet */
    EN_STUDY_F_CLIPS_FAILED   = 1u << 5,  /* some clips failed: not counted */
    EN_STUDY_F_CLIP_FLAGGED   = 1u << 6,  /* a usable clip has a quality flag */
    EN_STUDY_F_BEAT_SPREAD    = 1u << 7   /* the counted beats' SD exceeds 10 points */
};

const char *en_study_flag_name(uint64_t bit);  /* "clips_disagree"; NULL if unknown */
const char *en_study_flag_text(uint64_t bit);  /* a sentence for a reader */
/* Comma-separated names of the set flags, into buf. */
void en_study_flags_format(uint64_t flags, char *buf, size_t len);

/* The study's result from its clips as stored (verdicts, beats): mean and
 * sample SD over the beats of the usable clips, the range of the usable
 * clips' means, counts, class, flags, and why there is no EF when there is
 * none.  Pure: reads s, fills out. */
void en_study_aggregate(const en_store_study *s, const en_study_params *p,
                        en_store_study_result *out);

/* Computes and stores the study's result as a new version when its clips
 * changed since the last one (or force): one transaction, idempotent
 * (en_store_study_update).  *version gets the version now current,
 * *changed (may be NULL) whether this call made it. */
int en_study_recompute(en_store *db, const char *pseudonym, const en_study_params *p,
                       int force, int *version, int *changed, en_err *err);

#endif

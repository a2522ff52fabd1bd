/*
 * en_pipeline.h - the whole pipeline: one DICOM instance (a clip) from file
 * to stored result, and one study from its clips to its result and report.
 *
 * en_pipeline_process: convert (dicom -> deid -> sector -> video), decide
 * whether the instance can be analysed at all, segment every frame, find
 * the beats, predict EF beat by beat, judge whether the clip counts for its
 * study (en_study.h) and store it in one transaction.  Every instance gets
 * a clip row, the ones not analysed with the reason in words.
 *
 * en_pipeline_finish_study: the study's result over its usable clips, as a
 * new version when its clips changed, and its one-page report.
 *
 * `echonetctl process` runs both by hand; the daemon runs the first per
 * file in a child process, and the second when a study has been quiet.
 */
#ifndef EN_PIPELINE_H
#define EN_PIPELINE_H

#include "en_analysis.h"
#include "en_config.h"
#include "en_convert.h"
#include "en_deid.h"
#include "en_err.h"
#include "en_nn.h"
#include "en_store.h"
#include "en_study.h"

typedef struct en_pipeline {
    const en_config *cfg;
    en_deid deid;
    en_nn_model *seg;
    en_nn_model *ef;
    en_store *db;
    en_analysis_params params;
    en_verdict_params verdict;  /* which clips count (defaults by en_pipeline_open) */
    en_study_params study;      /* how a study's result is made */
    /* 0 (the daemon): an instance already done (same duplicate key) by
     * the same models is not processed again; the result says duplicate.  1 (`echonetctl
     * process`, asked by hand): it is processed and its result replaced. */
    int reprocess;
    int models_borrowed;        /* en_pipeline_open_with: close leaves them */
    struct en_pipeline_loader *loading; /* en_pipeline_open_early's models */
} en_pipeline;

/* Progress: called at the start of each stage ("read", "segment", ...)
 * with a short detail; never with identifying values. */
typedef void (*en_pipeline_progress)(const char *stage, const char *detail, void *ud);

typedef struct en_pipeline_result {
    en_convert_result conv;
    int64_t clip_id;                    /* the clip's row (clips.id) */
    int64_t study_id;                   /* its study's row (studies.id) */
    int nframes;
    int nbeats;
    double ef_mean, ef_sd;              /* this clip's */
    const char *ef_class;               /* en_ef_class_name() */
    unsigned flags;
    char flags_text[EN_STORE_TEXT_MAX];
    char verdict[EN_STORE_NAME_MAX];    /* "usable", "unusable", "not_analysed" */
    char verdict_text[EN_STORE_REASONS_MAX];
    char video[EN_PATH_MAX];            /* the clip's AVI; "" when none is kept */
    char overlay_avi[EN_PATH_MAX + 64];
    double ms_total;
    int duplicate;          /* 1: already done, nothing was recomputed */
} en_pipeline_result;

/* Opens the site secret, loads both models (cfg->seg_weights and
 * cfg->ef_weights) and opens the database.  Errors say which setting to
 * fix. */
int en_pipeline_open(en_pipeline *p, const en_config *cfg, en_err *err);
void en_pipeline_close(en_pipeline *p);

/* As en_pipeline_open, but the models load in a thread of their own while
 * the caller goes on: a clip's conversion (reading, deidentifying, the
 * sector, the AVI) then overlaps the loading, which takes about as long.
 * en_pipeline_process and en_pipeline_finish_study wait for the models
 * before they use them (before anything of the clip is stored); a loading
 * error is theirs then, and en_pipeline_models_wait's, which a caller uses
 * to tell it from a clip's own failure.  Errors of the secret and the
 * database are returned here. */
int en_pipeline_open_early(en_pipeline *p, const en_config *cfg, en_err *err);
/* EN_OK once both models are loaded (at once when they were not loading in
 * the background), or the loading's error, as often as asked. */
int en_pipeline_models_wait(en_pipeline *p, en_err *err);

/* For en_pipeline_finish_study alone (the daemon's --finish-study child):
 * loads the segmentation model only, which the report's key frames need,
 * not the EF model; en_pipeline_process refuses to run on it. */
int en_pipeline_open_finish(en_pipeline *p, const en_config *cfg, en_err *err);

/* The two models as en_pipeline_open loads them (checked to be the right
 * networks), for a process that keeps them across studies: the daemon
 * loads them once and forks a child per study, which opens its pipeline
 * with en_pipeline_open_with.  The models stay the caller's (close does
 * not free them); they must have been loaded from a configuration for
 * which en_pipeline_models_same holds. */
int en_pipeline_models_load(const en_config *cfg, en_nn_model **seg, en_nn_model **ef,
                            en_err *err);
int en_pipeline_open_with(en_pipeline *p, const en_config *cfg, en_nn_model *seg,
                          en_nn_model *ef, en_err *err);
/* 1 when both configurations load the same models the same way (weights
 * paths, threads, batch, precision). */
int en_pipeline_models_same(const en_config *a, const en_config *b);

/* 1 when either loaded model is a phantom-trained one (its origin says
 * "phantom"): results are then for testing the installation only.  After
 * en_pipeline_open_early, only once en_pipeline_models_wait succeeded. */
int en_pipeline_phantom(const en_pipeline *p);

/* Processes one DICOM file (one clip).  When the failure happens after the
 * instance is known (it has a pseudonym), the failure is also recorded in
 * the database with its stage.  An instance that is not an analysable
 * echo loop is not a failure: it is stored with verdict not_analysed. */
int en_pipeline_process(en_pipeline *p, const char *path, en_pipeline_result *res,
                        en_pipeline_progress progress, void *ud, en_err *err);

typedef struct en_pipeline_study {
    int version;                        /* the study result's version now */
    int changed;                        /* 1: this call made that version */
    en_store_study_result res;
    char report_pdf[EN_PATH_MAX + 64];  /* "" when not written */
    char report_png[EN_PATH_MAX + 64];
} en_pipeline_study;

/* Computes the study's result when its clips changed since the last
 * version (or force) and draws its report (also when the result did not
 * change but the report is missing).  Idempotent: a second call with
 * nothing changed stores nothing new. */
int en_pipeline_finish_study(en_pipeline *p, const char *pseudonym, int force,
                             en_pipeline_study *out, en_err *err);

/* ---- the study report (study_report.c) ------------------------------------ */

/* Key frames of one clip for the report: 112x112 grey images and 0/1 LV
 * masks of one beat's end-diastole and end-systole (frame -1 = none). */
typedef struct en_study_keyframes {
    int64_t clip_id;
    int ed;
    const uint8_t *ed_image, *ed_mask;
    int es;
    const uint8_t *es_image, *es_mask;
} en_study_keyframes;

#define EN_STUDY_REPORT_KEYCLIPS 3  /* used clips shown with key frames */

/* Key frames of the first usable clips (at most EN_STUDY_REPORT_KEYCLIPS):
 * each clip's AVI is read back and its first beat's ED and ES frames
 * segmented again with seg, so a report drawn later from the database shows
 * the outlines the result came from.  k receives n entries; buf holds their
 * pixels (free with free()).  A clip whose AVI is gone is skipped. */
int en_study_keyframes_load(const en_config *cfg, en_nn_model *seg, const en_store_study *s,
                            en_study_keyframes *k, int *n, uint8_t **buf, en_err *err);

/* Draws the one-page report of a stored study into
 * <output_dir>/<pseudonym>.pdf and .png (as configured in [report]); pdf
 * and png receive the paths written ("" when not).  Everything on the page
 * comes from s (the study with its clips and beats), so the page drawn
 * right after processing and the one `echonetctl report` draws later from
 * the database are the same. */
int en_study_report(const en_config *cfg, const en_store_study *s,
                    const en_study_keyframes *k, int nk, char *pdf, char *png, size_t len,
                    en_err *err);

/* <output_dir>/<pseudonym><ext>: every per-study output is named this way,
 * never after the input.  buf is "" if it would not fit. */
void en_study_path(const en_config *cfg, const char *pseudonym, const char *ext,
                   char *buf, size_t len);

/* A clip's base name, <pseudonym>-<duplicate key> (or -c<clip id> for an
 * instance without one): its AVI is <name>.avi in output_dir. */
void en_clip_name(const char *pseudonym, const char *dedup_key, int64_t clip_id,
                  char *buf, size_t len);

#endif

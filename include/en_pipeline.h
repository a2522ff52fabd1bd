/*
 * en_pipeline.h - the whole pipeline for one study: convert (dicom -> deid
 * -> sector -> video), segment every frame, find the beats, predict EF beat
 * by beat, store the result in one transaction and render the report.
 * `echonetctl process` runs it by hand; the daemon will run it per file.
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

typedef struct en_pipeline {
    const en_config *cfg;
    en_deid deid;
    en_nn_model *seg;
    en_nn_model *ef;
    en_store *db;
    en_analysis_params params;
    /* 0 (the daemon): an instance already done (same duplicate key) by
     * the same models is not processed again; the result says duplicate.  1 (`echonetctl
     * process`, asked by hand): it is processed and its result replaced. */
    int reprocess;
} en_pipeline;

/* Progress: called at the start of each stage ("read", "segment", ...)
 * with a short detail; never with identifying values. */
typedef void (*en_pipeline_progress)(const char *stage, const char *detail, void *ud);

typedef struct en_pipeline_result {
    en_convert_result conv;
    int64_t study_id;
    int nframes;
    int nbeats;
    double ef_mean, ef_sd;
    const char *ef_class;               /* en_ef_class_name() */
    unsigned flags;
    char flags_text[EN_STORE_TEXT_MAX];
    char report_pdf[EN_PATH_MAX + 64];  /* "" when not written */
    char report_png[EN_PATH_MAX + 64];
    char overlay_avi[EN_PATH_MAX + 64];
    double ms_total;
    int duplicate;          /* 1: already done, nothing was recomputed */
} en_pipeline_result;

/* Opens the site secret, loads both models (cfg->seg_weights and
 * cfg->ef_weights) and opens the database.  Errors say which setting to
 * fix. */
int en_pipeline_open(en_pipeline *p, const en_config *cfg, en_err *err);
void en_pipeline_close(en_pipeline *p);

/* 1 when either loaded model is a phantom-trained one (its origin says
 * "phantom"): results are then for testing the installation only. */
int en_pipeline_phantom(const en_pipeline *p);

/* Processes one DICOM file.  When the failure happens after the study is
 * known (it has a pseudonym), the failure is also recorded in the
 * database with its stage. */
int en_pipeline_process(en_pipeline *p, const char *path, en_pipeline_result *res,
                        en_pipeline_progress progress, void *ud, en_err *err);

/* Key frames for the report: 112x112 grey images and 0/1 LV masks of one
 * beat's end-diastole and end-systole (frame -1 = none). */
typedef struct en_study_keyframes {
    int ed;
    const uint8_t *ed_image, *ed_mask;
    int es;
    const uint8_t *es_image, *es_mask;
} en_study_keyframes;

/* Draws the one-page report of a stored result into
 * <output_dir>/<pseudonym>.pdf and .png (as configured in [report]); pdf
 * and png receive the paths written ("" when not).  Everything on the page
 * comes from r, so the page drawn right after processing and the one
 * `echonetctl report` draws later from the database are the same.  Shared
 * by the pipeline and `echonetctl report`. */
int en_study_report(const en_config *cfg, const en_store_result *r,
                    const en_study_keyframes *k, char *pdf, char *png, size_t len,
                    en_err *err);

/* <output_dir>/<pseudonym><ext>: every per-study output is named this way,
 * never after the input.  buf is "" if it would not fit. */
void en_study_path(const en_config *cfg, const char *pseudonym, const char *ext,
                   char *buf, size_t len);

#endif

/*
 * en_config.h - echonetd.conf: every setting, its default, and parsing.
 *
 * The file is INI (parsed by Debian's libinih).  Unknown sections or keys
 * and values that do not parse are errors naming the file and line, because
 * a silently ignored typo in a limit or a path is worse than a refusal.
 */
#ifndef EN_CONFIG_H
#define EN_CONFIG_H

#include "en_dicom.h"
#include "en_err.h"

#define EN_PATH_MAX 1024

typedef struct en_config {
    /* [paths] */
    char output_dir[EN_PATH_MAX];   /* where AVIs and reports go */
    char database[EN_PATH_MAX];     /* SQLite results database */
    /* [deid] */
    char secret_file[EN_PATH_MAX];
    char keystore_file[EN_PATH_MAX];/* empty: no key store (the default) */
    /* [limits] */
    en_dicom_limits limits;
    /* [video] */
    int video_size;                 /* 112 */
    int video_quality;              /* MJPEG qscale, 1..31 */
    /* [models] */
    char seg_weights[EN_PATH_MAX];  /* segmentation weights (safetensors) */
    char ef_weights[EN_PATH_MAX];   /* EF weights (safetensors) */
    /* [nn] */
    int nn_threads;                 /* 0 = all cores */
    int nn_batch;                   /* segmentation frames per pass */
    /* [report] */
    int report_pdf, report_png;     /* write <pseudonym>.pdf / .png */
    int overlay_video;              /* write <pseudonym>.overlay.avi */
} en_config;

/* Fills compiled-in defaults (paths under EN_LOCALSTATEDIR). */
void en_config_defaults(en_config *cfg);

/* Applies the file at path over the current values.  Errors name the file
 * and line. */
int en_config_load(en_config *cfg, const char *path, en_err *err);

/* Sets one "section.key" to value, as the file would (used by command-line
 * overrides such as --set limits.max_frames=100). */
int en_config_set(en_config *cfg, const char *section, const char *key,
                  const char *value, en_err *err);

#endif

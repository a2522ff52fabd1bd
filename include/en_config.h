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
    /* [daemon] (echonetd only) */
    char inbox_dir[EN_PATH_MAX];    /* DICOMs are delivered here */
    char work_dir[EN_PATH_MAX];     /* claimed files, under the daemon's own names */
    char archive_dir[EN_PATH_MAX];  /* originals after success */
    char failed_dir[EN_PATH_MAX];   /* originals after failure, with <job>.reason */
    int concurrency;                /* studies at once; 0 = sized for the machine */
    int settle_ms;                  /* a file must be unchanged this long */
    int rescan_ms;                  /* full inbox rescan period */
    int incomplete_wait_s;          /* a settled file that is not yet whole
                                     * DICOM waits this long, then is taken
                                     * anyway (and fails with the reason) */
    int max_attempts;               /* tries before a file is quarantined */
    int study_timeout_s;            /* a study running longer is killed */
    int stop_grace_s;               /* SIGTERM: wait this long for running studies */
    int min_free_mb;                /* pause intake below this free space */
    int queue_max;                  /* claimed but unfinished files at most */
    int delete_after_success;       /* delete instead of archiving */
} en_config;

/* The default models: small networks trained by tools/train-phantom on
 * simulated echoes, shipped in models/ and installed in $(pkgdatadir)/models.
 * Their origin says "phantom-trained default model, not for clinical use",
 * which every report and the database carry. */
#define EN_DEFAULT_SEG_MODEL "phantom-seg.safetensors"
#define EN_DEFAULT_EF_MODEL "phantom-ef.safetensors"

/* Fills compiled-in defaults (paths under EN_LOCALSTATEDIR; the models
 * default to the phantom-trained ones). */
void en_config_defaults(en_config *cfg);

/* Path of a shipped model file: the installed copy, or in a build tree that
 * was not installed, the source tree's. */
void en_config_default_model(const char *file, char *buf, size_t n);

/* Applies the file at path over the current values.  Errors name the file
 * and line. */
int en_config_load(en_config *cfg, const char *path, en_err *err);

/* Sets one "section.key" to value, as the file would (used by command-line
 * overrides such as --set limits.max_frames=100). */
int en_config_set(en_config *cfg, const char *section, const char *key,
                  const char *value, en_err *err);

#endif

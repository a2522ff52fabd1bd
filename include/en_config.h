/*
 * en_config.h - echonetd.conf: every setting, its default, and parsing.
 *
 * The file is INI (parsed by Debian's libinih).  Unknown sections or keys
 * and values that do not parse are errors naming the file and line, because
 * a silently ignored typo in a limit or a path is worse than a refusal.
 *
 * Each setting is declared once, as a row of the table in
 * src/config/config.c (section, key, type, bounds, default, and when a
 * change reaches a running daemon).  Parsing, the defaults, --set, the
 * daemon's SIGHUP reload and the test that etc/echonetd.conf documents every
 * setting all read that table.
 */
#ifndef EN_CONFIG_H
#define EN_CONFIG_H

#include "en_dicom.h"
#include "en_err.h"

#define EN_PATH_MAX 1024

/* [nn] precision: the number format inference computes in. */
typedef enum en_nn_precision {
    EN_PRECISION_AUTO = 0,  /* chosen by the engine for this CPU */
    EN_PRECISION_FP32,      /* 32-bit floats throughout */
    EN_PRECISION_BF16       /* bfloat16 matrix products: faster, less exact */
} en_nn_precision;

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
    int nn_precision;               /* an en_nn_precision */
    /* [report] */
    int report_pdf, report_png;     /* write <pseudonym>.pdf / .png */
    int overlay_video;              /* write <pseudonym>.overlay.avi */
    /* [analysis] */
    int clip_disagreement_points;   /* a study's usable clips whose means differ
                                     * by more EF points are flagged */
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
    int study_quiet_s;              /* a study's result is computed once no
                                     * instance of it arrived for this long */
    int stop_grace_s;               /* SIGTERM: wait this long for running studies */
    int min_free_mb;                /* pause intake below this free space */
    int queue_max;                  /* claimed but unfinished files at most */
    int delete_after_success;       /* delete instead of archiving */
    int warm_models;                /* keep the models loaded, fork each study */
    /* [recv] (echonetd-recv only: the DICOM receiver, docs/dicom-network.md) */
    char recv_ae_title[EN_PATH_MAX];/* 1..16 characters, checked by the receiver */
    int recv_port;
    char recv_allow[EN_PATH_MAX];   /* calling AE titles, blank- or comma-separated */
    char recv_staging[EN_PATH_MAX]; /* transfers in progress; inbox's file system */
    int recv_max_associations;      /* at once */
    int recv_timeout_s;             /* a silent peer is dropped */
    int recv_max_association_s;     /* new instances refused after this */
    uint64_t recv_max_association_bytes;
    uint64_t recv_min_free_bytes;   /* instances refused below this free space */
    int recv_stop_grace_s;          /* SIGTERM: running associations may finish */
    int recv_tls;
    char recv_tls_certificate[EN_PATH_MAX];
    char recv_tls_private_key[EN_PATH_MAX];
    char recv_tls_trusted[EN_PATH_MAX];
    int recv_tls_verify_peer;
    /* [send] (echonetd-send and echonetctl send only: results to the PACS,
     * docs/dicom-network.md "Sending results back") */
    int send_enabled;
    char send_ae_title[EN_PATH_MAX];     /* ours, the calling AE title */
    char send_peer_ae_title[EN_PATH_MAX];
    char send_peer_host[EN_PATH_MAX];
    int send_peer_port;
    char send_outbox[EN_PATH_MAX];       /* the outbox's SQLite file */
    int send_timeout_s;                  /* connect, ACSE and DIMSE */
    int send_backoff_min_s, send_backoff_max_s;
    int send_give_up_after_s;            /* a version not sent by then fails */
    int send_poll_s;                     /* how often new results are looked for */
} en_config;

/* The default models: small networks trained by tools/train-phantom on
 * simulated echoes, shipped in models/ and installed in $(pkgdatadir)/models.
 * Their origin says "phantom-trained default model, not for clinical use",
 * which every report and the database carry. */
#define EN_DEFAULT_SEG_MODEL "phantom-seg.safetensors"
#define EN_DEFAULT_EF_MODEL "phantom-ef.safetensors"

typedef enum en_config_type {
    EN_CONF_PATH,   /* char[EN_PATH_MAX] */
    EN_CONF_INT,    /* int, in [min, max] */
    EN_CONF_U32,    /* uint32_t, in [min, max] */
    EN_CONF_MB,     /* uint64_t bytes, written in the file as MiB in [min, max] */
    EN_CONF_BOOL,   /* int 0/1, written yes/no (also true/false, 1/0) */
    EN_CONF_ENUM    /* int, the index of one of the row's names */
} en_config_type;

/* When a changed setting reaches a running daemon (SIGHUP). */
typedef enum en_config_reload {
    EN_RELOAD_STUDY = 0,  /* read by each study's own process: the next study */
    EN_RELOAD_NOW,        /* read by the daemon as it runs: at once */
    EN_RELOAD_CHECKED,    /* the daemon opens it first (models, secret, database);
                           * a value that does not open refuses the reload */
    EN_RELOAD_RESTART     /* the running value is kept until the next start */
} en_config_reload;

#define EN_RELOAD_BIT(r) (1u << (r))

typedef struct en_config_row {
    const char *section, *key;
    en_config_type type;
    size_t offset;                /* of the field in en_config */
    long long min, max;           /* INT, U32, MB */
    const char *const *names;     /* ENUM: the accepted words, NULL-terminated */
    /* As written in the file.  A path may start with "@state/" (the state
     * folder: secret, database, output), "@spool/" (the daemon's spool) or
     * "@models/" (the shipped models), filled in by en_config_defaults_in. */
    const char *def;
    en_config_reload reload;
} en_config_row;

/* The table, in the order etc/echonetd.conf documents it. */
const en_config_row *en_config_rows(size_t *n);

/* Where the "@state/", "@spool/" and "@models/" defaults point. */
typedef struct en_config_dirs {
    const char *state;   /* EN_LOCALSTATEDIR/lib/echonetd, or a per-user folder */
    const char *spool;   /* EN_LOCALSTATEDIR/spool/echonetd */
    const char *models;  /* NULL: the installed models, or in a build tree that
                          * was not installed, the source tree's */
} en_config_dirs;

/* The compiled-in folders (configure's --localstatedir). */
void en_config_system_dirs(en_config_dirs *dirs);

/* $XDG_STATE_HOME/echonetd, else $HOME/.local/state/echonetd: where
 * echonetctl keeps a person's secret, database and output when there is no
 * configuration and the system's state folder cannot be used.  EN_ENOTFOUND
 * when neither variable holds an absolute path. */
int en_config_user_state_dir(char *buf, size_t n, en_err *err);

/* Every row's default, the paths under dirs. */
void en_config_defaults_in(en_config *cfg, const en_config_dirs *dirs);

/* Every row's default, the paths under the compiled-in folders. */
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

/* A row's value in cfg as the file would write it ("yes", "2048", a path). */
void en_config_format(const en_config *cfg, const en_config_row *row, char *buf, size_t n);

/* One setting that differs between two configurations. */
typedef struct en_config_change {
    const en_config_row *row;
    const char *old_value, *new_value;   /* as en_config_format writes them */
} en_config_change;

/* Calls fn for every row whose value differs between old and nw, in table
 * order. */
void en_config_diff(const en_config *old, const en_config *nw,
                    void (*fn)(const en_config_change *c, void *user), void *user);

/* SIGHUP: nw was just loaded, running is what the daemon runs.  Puts every
 * restart-only setting that changed back to its running value in nw, naming
 * those in msg ("[daemon] work /a -> /b; ..."; empty when none), so nw is
 * what the daemon may adopt now.  Returns the EN_RELOAD_BIT()s of the other
 * changes: with EN_RELOAD_CHECKED set, the daemon must open nw's models,
 * secret and database before adopting it. */
unsigned en_config_reload_check(const en_config *running, en_config *nw, char *msg, size_t n);

/* "applies to the next study", ..., for the daemon's reload log. */
const char *en_config_reload_text(en_config_reload r);

#endif

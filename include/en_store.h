/*
 * en_store.h - the results database: one SQLite file holding every study,
 * every clip (DICOM instance) of it with its state and complete result
 * (summary, beats, per-frame LV sizes, verdict), each study's result over
 * its usable clips, the models that produced them and a log of every
 * state change.
 *
 * A study is what a user means by one: all the instances that share a
 * StudyInstanceUID (one pseudonym).  A clip is one instance, known by its
 * duplicate key (a keyed hash of SOPInstanceUID).  The daemon's state
 * machine (queue, attempt, stage, fail) works on clips; the study result
 * is computed from the clips (en_study_recompute in en_study.h) through
 * en_store_study_update.
 *
 * The schema lives in sql/ as numbered migrations, compiled into the
 * program and applied by en_store_open(); docs/schema.md describes every
 * column.  Nothing identifying is stored: a study is its pseudonym, the
 * duplicate key is a keyed hash (never a UID), times are when echonetd saw
 * the file.
 *
 * Guarantees:
 * - A clip's result is written in one transaction: it appears whole or not
 *   at all, and it marks its study's result stale in that transaction.
 * - Writing never touches another instance's result: a clip is found by
 *   its duplicate key (or its row id); a new instance is a new clip.
 * - A study result is read from the clips and written, with its version
 *   and event, in one transaction.
 * - Every failure returns a negative EN_E* code with a message naming the
 *   database file and what failed; a locked database (another process
 *   writing for longer than the busy timeout) is EN_EIO with "locked".
 *
 * A handle is used by one thread at a time; open one per thread.  Several
 * processes may share the file (WAL: readers never block the writer).
 */
#ifndef EN_STORE_H
#define EN_STORE_H

#include <stdint.h>
#include <stdio.h>

#include "en_err.h"

typedef struct en_store en_store;

#define EN_STORE_KEY_MAX 65     /* 64 hex digits + NUL: pseudonym, hashes */
#define EN_STORE_NAME_MAX 64    /* short identifiers: class, stage, method */
#define EN_STORE_JOB_MAX 128    /* the daemon's own work-item name */
#define EN_STORE_TEXT_MAX 512   /* flags text, messages, origins */
#define EN_STORE_REASONS_MAX 1024 /* a verdict's reasons in words */
#define EN_STORE_META_MAX 2048  /* model metadata, verdict evidence (JSON) */
#define EN_STORE_TIME_MAX 32    /* "2024-05-01T12:34:56.789Z" + NUL */

/* Sentinel for an unknown integer field (stored as NULL). */
#define EN_STORE_NONE (-1)

/* ---- opening --------------------------------------------------------- */

enum {
    EN_STORE_READONLY = 1   /* no migrations, no writes (echonetctl list) */
};

/* Opens (creating when absent, mode 0640) the database at path and brings
 * its schema up to date.  Refuses, with a message saying what to do: a file
 * that is not an echonetd database, a schema newer than this program
 * (EN_EUNSUPPORTED), a read-only open of an out-of-date schema. */
int en_store_open(const char *path, int flags, en_store **out, en_err *err);
void en_store_close(en_store *st);                 /* NULL is fine */

const char *en_store_path(const en_store *st);
int en_store_schema_version(void);          /* newest migration compiled in */
void en_store_set_busy_timeout(en_store *st, int ms);  /* default 10000 */

/* ---- states ---------------------------------------------------------- */

/* A clip's state (the daemon's work on one instance). */
typedef enum en_store_status {
    EN_STORE_QUEUED = 0,
    EN_STORE_PROCESSING,
    EN_STORE_DONE,
    EN_STORE_FAILED
} en_store_status;
#define EN_STORE_NSTATUS 4

typedef enum en_store_event_kind {
    EN_STORE_EV_QUEUED = 0,
    EN_STORE_EV_PROCESSING,
    EN_STORE_EV_STAGE,      /* a pipeline stage was reached */
    EN_STORE_EV_DONE,
    EN_STORE_EV_FAILED,
    EN_STORE_EV_WARNING,
    EN_STORE_EV_INFO,
    EN_STORE_EV_RESULT      /* a new version of a study's result */
} en_store_event_kind;

const char *en_store_status_name(en_store_status s);       /* "done" */
int en_store_status_parse(const char *name, en_store_status *out);
const char *en_store_event_name(en_store_event_kind k);   /* "stage" */

/* ---- what a clip's result is --------------------------------------------- */

/* Network weights, identified by the SHA-256 of their content. */
typedef struct en_store_model {
    char sha256[EN_STORE_KEY_MAX];          /* 64 lowercase hex; "" = none */
    char architecture[EN_STORE_NAME_MAX];   /* "deeplabv3_resnet50" */
    char origin[EN_STORE_TEXT_MAX];         /* free text: where they came from */
    char file_name[256];                    /* base name, no folder */
    char metadata_json[EN_STORE_META_MAX];  /* a JSON value or "" */
} en_store_model;

/* One beat that has a clip (spec section 6). */
typedef struct en_store_beat {
    int systole_frame;  /* the detected systole (end-systole) */
    int clip_start;     /* first frame of the 32-frame, period-2 clip */
    int shift;          /* frames the clip was moved back to fit the video;
                           0 = placed as upstream places it */
    double ef;          /* the clip's EF, percent */
    int ed_frame;       /* end-diastole frame of this beat, or EN_STORE_NONE */
    int lv_size_ed;     /* LV pixels at ED, or EN_STORE_NONE */
    int lv_size_es;     /* LV pixels at ES, or EN_STORE_NONE */
} en_store_beat;

/* One frame of the 112x112 video. */
typedef struct en_store_frame {
    int lv_size;        /* pixels with logit > 0 */
    int systole;        /* 1 on a detected systole (upstream ComputerSmall) */
} en_store_frame;

/* Stage timings, wall-clock milliseconds; NAN = not measured. */
typedef struct en_store_timings {
    double read, sector, video, segment, ef, analysis, total;
} en_store_timings;

/* One clip's complete result, filled by the pipeline.  Plain fields only:
 * text is copied in, unknown numbers are NAN or EN_STORE_NONE (see
 * en_store_result_init).  beats/frames point to the caller's arrays on
 * write; the readers allocate them (freed with the struct holding r).
 * An instance that was not analysed (a still, a Doppler strip, ...) is a
 * result too: verdict "not_analysed", the reason in verdict_text, no
 * beats, frames or models. */
typedef struct en_store_result {
    int64_t clip_id;                        /* write: 0 = find by dedup_key, or a new
                                               clip; read: the clip's row id */
    char pseudonym[EN_STORE_KEY_MAX];       /* the study's; required: lowercase hex */
    char dedup_key[EN_STORE_KEY_MAX];       /* keyed hash of SOPInstanceUID, hex; "" = none */
    char job[EN_STORE_JOB_MAX];             /* daemon's work-item name; never the delivered file name */
    int64_t received_ms;                    /* Unix ms, UTC; 0 = keep the stored one, else now */
    int64_t started_ms;                     /* 0 = unknown */
    int64_t finished_ms;                    /* 0 = now */
    /* what the instance is */
    char sop_class[EN_STORE_KEY_MAX];       /* SOP Class UID (names a kind of object) */
    char modality[EN_STORE_NAME_MAX];       /* "US" */
    char regions[EN_STORE_NAME_MAX];        /* its ultrasound regions' kinds,
                                               "2d", "2d,spectral", ...; "" = none described */
    char view_dicom[EN_STORE_NAME_MAX];     /* the view the DICOM names ("a4c", "plax",
                                               en_study_view_name); "" = it names none */
    char view_code[EN_STORE_NAME_MAX];      /* that code, "SCT:399214001"; "" = none */
    char video_file[EN_STORE_NAME_MAX];     /* base name of the clip's AVI; "" = none */
    /* source facts */
    int src_rows, src_cols, src_frames;     /* EN_STORE_NONE = unknown */
    double fps;                             /* NAN = unknown */
    char fps_source[EN_STORE_NAME_MAX];     /* "CineRate", ..., "default" */
    char transfer_syntax[EN_STORE_KEY_MAX]; /* the transfer syntax UID (not identifying) */
    char sector_method[EN_STORE_NAME_MAX];  /* "regions", "motion", "intensity" */
    double sector_confidence;               /* 0..1, NAN = unknown */
    int video_frames;                       /* frames of the 112x112 video */
    en_store_model seg_model, ef_model;     /* sha256 "" = not recorded */
    /* this clip's answer */
    double ef_mean, ef_sd;                  /* over its beats; NAN when no beat */
    char ef_class[EN_STORE_NAME_MAX];       /* en_ef_class_name(): "not_reduced", ...; "" = none */
    double threshold_reduced;               /* the class's cuts (50, 40, 35); NAN = unknown */
    double threshold_low;
    double threshold_very_low;
    uint64_t flags;                         /* quality flag bits (< 2^63) */
    char flags_text[EN_STORE_TEXT_MAX];     /* their names, comma-separated */
    /* does it count for the study (en_study.h) */
    char verdict[EN_STORE_NAME_MAX];        /* "usable", "unusable", "not_analysed";
                                               "" = never judged (schema 1) */
    char verdict_codes[EN_STORE_TEXT_MAX];  /* reasons as identifiers, comma-separated */
    char verdict_text[EN_STORE_REASONS_MAX];/* the reasons in words */
    char evidence_json[EN_STORE_META_MAX];  /* the measures behind it (JSON object) or "" */
    en_store_timings ms;
    en_store_beat *beats;
    int nbeats;
    en_store_frame *frames;                 /* frame i of the video at [i] */
    int nframes;
} en_store_result;

/* Zeroes r and marks every optional number unknown. */
void en_store_result_init(en_store_result *r);

/* ---- writing ----------------------------------------------------------- */

/* Registers (or refreshes) a model.  The same sha256 with a different
 * architecture is refused. */
int en_store_model_put(en_store *st, const en_store_model *m, en_err *err);

/* Writes one clip's complete result in one transaction: the models, the
 * clip row (the one r->clip_id names, else the one holding r->dedup_key,
 * else a new clip of the study r->pseudonym names, created if needed),
 * its beats and frames (its old ones deleted), status done, a "done"
 * event, and the study's result marked stale.  No other clip changes.  A
 * duplicate key or clip id that belongs to another study is refused (was
 * the site secret changed?).  On any failure nothing changes.  *clip_id
 * (may be NULL) gets the clip's row id, stable across re-processing. */
int en_store_write_result(en_store *st, const en_store_result *r,
                          int64_t *clip_id, en_err *err);

/* ---- the daemon's state machine (per clip) -------------------------------- */

typedef struct en_store_ref {
    int64_t id;         /* the clip */
    int64_t study_id;   /* its study */
    en_store_status status;
    int attempts;
    int created;        /* 1 when this call created the clip */
    int other_instance; /* always 0 since schema 2: another instance of a
                           study is a clip of its own */
} en_store_ref;

/* With a duplicate key: that clip (EN_ENOTFOUND when unknown, EN_EINVAL
 * when it belongs to another study than pseudonym).  With a pseudonym
 * only: the study's clip being worked on (the latest processing, else the
 * latest queued), else its latest clip; EN_ENOTFOUND when the study has
 * none.  (The daemon, knowing only the pseudonym of a child that crashed,
 * fails the clip that child was working on.) */
int en_store_find(en_store *st, const char *pseudonym, const char *dedup_key,
                  en_store_ref *ref, en_err *err);

/* Records that a file was taken: creates the clip (status queued, a
 * "queued" event; the study too when new, and its last_received_at moves
 * on) or finds it by duplicate key.  A clip already done or failed is
 * left untouched and returned as it is (the caller sees a duplicate), with
 * an "info" event saying so; requeue overrides that, queueing the clip
 * again with attempts reset (its result will be replaced).  A queued or
 * processing clip (left by a crash) is queued again with its attempts
 * kept, for resuming.  An instance without a duplicate key is always a
 * new clip.  Any change marks the study's result stale. */
int en_store_queue(en_store *st, const char *pseudonym, const char *dedup_key,
                   const char *job, int64_t received_ms, int requeue,
                   en_store_ref *ref, en_err *err);

/* Before each try: attempts + 1, status processing, a "processing" event
 * carrying the attempt number.  *attempt gets the new count, so the caller
 * can give up on a file that keeps crashing the work. */
int en_store_attempt(en_store *st, int64_t clip_id, const char *job,
                     int *attempt, en_err *err);

/* A pipeline stage was reached ("read", "sector", "segment", ...). */
int en_store_stage(en_store *st, int64_t clip_id, const char *stage,
                   en_err *err);

/* The clip failed at stage: status failed, finished now, a "failed" event
 * with cause's code name and message, the study's result stale.  Stored
 * results of the clip, if any, are kept (and no longer count). */
int en_store_fail(en_store *st, int64_t clip_id, const char *stage,
                  const en_err *cause, en_err *err);

/* Any other event about a clip (and so its study); clip_id 0 for events
 * of no study.  stage, job, message may be NULL; attempt EN_STORE_NONE
 * when not meaningful. */
int en_store_log(en_store *st, int64_t clip_id, en_store_event_kind kind,
                 const char *stage, int attempt, const char *job,
                 const char *message, en_err *err);

/* ---- reading clips ------------------------------------------------------- */

typedef struct en_store_event {
    int64_t id;
    int64_t at_ms;
    int64_t clip_id;                    /* 0: about the study as a whole, or no study */
    en_store_event_kind kind;
    char stage[EN_STORE_NAME_MAX];
    int attempt;                        /* EN_STORE_NONE when absent */
    int result_version;                 /* for EN_STORE_EV_RESULT, else 0 */
    char job[EN_STORE_JOB_MAX];
    char code[EN_STORE_NAME_MAX];       /* "EN_EFORMAT" or "" */
    char message[EN_STORE_TEXT_MAX];
} en_store_event;

typedef struct en_store_clip {
    int64_t id;
    int64_t study_id;
    en_store_status status;
    char stage[EN_STORE_NAME_MAX];      /* last stage reached, "" if none */
    int attempts;
    int beat_count;                     /* beats stored */
    char last_error[EN_STORE_TEXT_MAX]; /* when failed: the last failure's message */
    en_store_result r;                  /* list: beats/frames NULL; show: filled */
    en_store_event *events;             /* en_store_clip_show only, oldest first */
    int nevents;
} en_store_clip;

/* What the list, count and export functions select.  Zero-initialised =
 * everything.  For clips every test is on the clip; for studies the times
 * are the study's first arrival, class and flags the study result's, and
 * status_mask selects studies with at least one clip in one of them. */
typedef struct en_store_filter {
    int64_t since_ms, until_ms;   /* received in [since, until); 0 = open */
    unsigned status_mask;         /* 1u << EN_STORE_DONE | ...; 0 = any */
    const char *ef_class;         /* NULL = any */
    uint64_t flags_any;           /* at least one of these flags; 0 = no test */
    uint64_t flags_none;          /* none of these; UINT64_MAX = unflagged only */
    const char *pseudonym;        /* exactly this study; NULL = any */
    int limit, offset;            /* paging; limit 0 = no limit */
    int oldest_first;             /* default: newest received first */
} en_store_filter;

/* Calls cb for each matching clip (summary only; r.beats/frames NULL).
 * A non-zero return from cb stops the walk and is returned.  cb may read
 * through st but must not write. */
typedef int (*en_store_list_cb)(const en_store_clip *c, void *ud);
int en_store_list(en_store *st, const en_store_filter *f, en_store_list_cb cb,
                  void *ud, en_err *err);

/* Clips matching f. */
int en_store_count(en_store *st, const en_store_filter *f, int64_t *n,
                   en_err *err);

/* Clips per status (for STATUS= lines). */
int en_store_counts(en_store *st, int64_t counts[EN_STORE_NSTATUS], en_err *err);

/* One clip with its beats, frames, models and events.  EN_ENOTFOUND when
 * absent.  Free with en_store_clip_free. */
int en_store_clip_show(en_store *st, int64_t clip_id, en_store_clip *out,
                       en_err *err);
void en_store_clip_free(en_store_clip *c);

/* ---- studies -------------------------------------------------------------- */

/* A study's result over its clips: one version of it. */
typedef struct en_store_study_result {
    int version;                        /* 0: none computed yet */
    int64_t computed_ms;
    int clips_total;                    /* every instance of the study */
    int clips_usable;                   /* those whose beats were counted */
    int beats;                          /* beats counted */
    double ef_mean, ef_sd;              /* over those beats; NAN when none */
    double clip_ef_min, clip_ef_max;    /* lowest and highest usable clip mean */
    char ef_class[EN_STORE_NAME_MAX];   /* "" when no EF */
    double threshold_reduced, threshold_low, threshold_very_low;
    double disagreement_points;         /* the limit the clips were held to */
    uint64_t flags;                     /* study flag bits (EN_STUDY_F_* in en_study.h) */
    char flags_text[EN_STORE_TEXT_MAX];
    char no_ef_reason[EN_STORE_TEXT_MAX]; /* why there is no EF; "" when there is one */
} en_store_study_result;

void en_store_study_result_init(en_store_study_result *r);

typedef struct en_store_study {
    int64_t id;
    char pseudonym[EN_STORE_KEY_MAX];
    int64_t first_received_ms;          /* its first instance's arrival */
    int64_t last_received_ms;           /* its latest instance's arrival */
    int stale;                          /* a clip changed since the result */
    en_store_study_result res;          /* the current result */
    /* the clips as they are now */
    int clips;                          /* rows */
    int clips_done, clips_failed, clips_unfinished;
    en_store_clip *clip;                /* en_store_study_show: oldest first,
                                           with beats (and frames if asked) */
    int nclips;
    en_store_event *events;             /* en_store_study_show: every event of
                                           the study and its clips, oldest first */
    int nevents;
} en_store_study;

typedef int (*en_store_study_cb)(const en_store_study *s, void *ud);

/* Calls cb for each matching study (no clips, no events). */
int en_store_study_list(en_store *st, const en_store_filter *f, en_store_study_cb cb,
                        void *ud, en_err *err);

int en_store_study_count(en_store *st, const en_store_filter *f, int64_t *n,
                         en_err *err);

enum {
    EN_STORE_SHOW_FRAMES = 1,   /* also load each clip's frames */
    EN_STORE_SHOW_EVENTS = 2    /* also load the events */
};

/* One study with its clips (each with its beats).  EN_ENOTFOUND when
 * absent.  Free with en_store_study_free. */
int en_store_study_show(en_store *st, const char *pseudonym, int what,
                        en_store_study *out, en_err *err);
void en_store_study_free(en_store_study *s);

/* Computes a study's result from its clips: called by en_store_study_update
 * inside its transaction with the study as it is (clips with beats, no
 * frames); fills res (version and time are set by the store). */
typedef int (*en_store_study_compute)(const en_store_study *s, en_store_study_result *res,
                                      void *ud, en_err *err);

/* In one transaction: reads the study and, when its result is stale (or
 * force is set), computes it with fn, stores it as the next version,
 * clears the stale mark and records a "result" event.  A study that is not
 * stale is left alone (*changed = 0): calling it again changes nothing.
 * *version gets the study's result version after the call.  EN_ENOTFOUND
 * for an unknown pseudonym. */
int en_store_study_update(en_store *st, const char *pseudonym, int force,
                          en_store_study_compute fn, void *ud, int *version,
                          int *changed, en_err *err);

/* Studies whose result is stale, no instance of which arrived in the last
 * quiet_ms before now_ms, and none of whose clips is queued or processing
 * (those will mark it stale again when they end): cb gets each pseudonym,
 * oldest first; a non-zero return stops the walk and is returned.
 * *next_due_ms (may be NULL) gets when the next stale study, quiet or
 * not yet, becomes due (0 when none is waiting), so a caller can arm a
 * timer instead of polling. */
typedef int (*en_store_due_cb)(const char *pseudonym, void *ud);
int en_store_studies_due(en_store *st, int64_t quiet_ms, int64_t now_ms,
                         en_store_due_cb cb, void *ud, int64_t *next_due_ms,
                         en_err *err);

/* ---- export -------------------------------------------------------------- */

typedef enum en_store_export_format {
    EN_STORE_EXPORT_SIZE_CSV = 0,   /* upstream size.csv: Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall */
    EN_STORE_EXPORT_CLIPS_CSV,      /* upstream predictions: filename,clip_start,ef (no header) */
    EN_STORE_EXPORT_JSON            /* every study with its result and its clips */
} en_store_export_format;

/* "size", "clips", "json". */
int en_store_export_format_parse(const char *name, en_store_export_format *out);

/* Writes the studies f selects to out.  The CSVs have one block per
 * analysed clip, named by the clip's AVI (its video_file); HumanLarge/
 * HumanSmall are 0 (there are no human tracings).  EN_EIO when out cannot
 * be written. */
int en_store_export(en_store *st, en_store_export_format fmt,
                    const en_store_filter *f, FILE *out, en_err *err);

/* ---- time ---------------------------------------------------------------- */

/* Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM", "...:SS", "...:SS.mmm", with an
 * optional trailing "Z" (a space may replace "T"); always UTC.  With
 * end_of_period, returns the end of the period the text names (exclusive):
 * "2024-05-01" -> 2024-05-02T00:00, so a --until date includes that day. */
int en_store_parse_time(const char *text, int end_of_period, int64_t *ms,
                        en_err *err);

/* "2024-05-01T12:34:56.789Z" (UTC). */
void en_store_format_time(int64_t ms, char buf[EN_STORE_TIME_MAX]);

#endif

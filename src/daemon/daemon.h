/*
 * daemon.h - echonetd's internal state, shared by its modules.  Each file
 * calls only the ones below it in this list, never one above:
 *
 *   echonetd.c     main: options, start-up checks, the spool lock,
 *                  signals, systemd, the loop
 *   intake.c       the inbox: watch, rescan, settle, take files (also the
 *                  ones inside delivered folders) into work/, turn away
 *                  what is not a file
 *   studies.c      when a study is done: its result over its clips, in a
 *                  child process, once it has been quiet study_quiet_s
 *   jobs.c         the work queue: one child process per study, attempts,
 *                  back-off after transient errors, timeouts, archive /
 *                  failed, resume after a crash, when intake must pause
 *   warm.c         the models kept loaded ([daemon] warm_models) and the
 *                  daemon's side of the model host that forks studies
 *   spool.c        the spool's folders: checks, lock, job names, claim and
 *                  identity, moves with fsync, sidecars, temporaries
 *   proto.c        the line protocol of a study's process (proto.h)
 *   dlog.c         logging (journal fields or one stderr line) and sd_notify
 *
 *   host.c         `echonetd --model-host`: the process that keeps the
 *                  models and forks a study's process per job
 *   process_one.c  `echonetd --process-one`: the child that runs one
 *                  study (exec'd, or forked by the model host with its
 *                  models); uses spool.c, proto.c and warm.c's dm_warm_fits
 *   finish_one.c   `echonetd --finish-study`: the child that computes one
 *                  study's result; uses proto.c only
 *
 * One thread runs the libuv loop; studies run in child processes (forked
 * by the model host with its loaded models, or `echonetd --process-one
 * WORK/<job>.dcm`) so a decoder crash or hang fails that study only.  Names: dm_ for this module's internals.
 */
#ifndef EN_DAEMON_INT_H
#define EN_DAEMON_INT_H

#include <stdint.h>
#include <sys/stat.h>
#include <uv.h>

#include "en_config.h"
#include "en_nn.h"
#include "en_store.h"
#include "proto.h"

#define DM_JOB_MAX 48       /* "j<ms>-<seq>-<hex>" */

/* Exit status of --process-one. */
enum {
    DM_EXIT_DONE = 0,       /* result committed */
    DM_EXIT_FAILED = 1,     /* the file is bad: failed for good */
    DM_EXIT_RETRY = 75      /* transient (I/O, memory, setup): try again */
};

/* What a name in the spool is, looked at without following a link. */
typedef enum dm_kind {
    DM_KIND_FILE = 0,
    DM_KIND_DIR,
    DM_KIND_SYMLINK,
    DM_KIND_FIFO,
    DM_KIND_SOCKET,
    DM_KIND_DEVICE
} dm_kind;

/* Which file: a file whose device, inode, size or mtime changed is
 * another file as far as a check of it goes. */
typedef struct dm_file_id {
    uint64_t dev, ino;
    int64_t size, mtime_ns;
} dm_file_id;

/* work/<job>.attempts: what must survive a restart of the daemon. */
typedef struct dm_sidecar {
    int attempts;                   /* tries the study itself used up */
    char study[EN_STORE_KEY_MAX];   /* its pseudonym once known, else "" */
} dm_sidecar;

/* Models loaded once by the daemon for every study's process (warm.c). */
typedef struct dm_warm {
    en_nn_model *seg, *ef;          /* NULL: none kept */
    en_config cfg;                  /* the settings they were loaded with */
    dm_file_id seg_id, ef_id;       /* the weights files they came from */
    double load_ms;                 /* loading and preparing took */
} dm_warm;

/* The daemon's view of the model host (warm.c). */
typedef struct dm_host {
    uv_process_t proc;
    uv_poll_t poll;
    int fd;                 /* our end of its socket pair, -1 when none */
    int running;            /* proc is alive or closing */
    int poll_closing;       /* the socket's poll handle is closing */
    int ready;              /* its models are loaded: studies can go to it */
    int retiring;           /* asked to quit (a reload changed the models) */
    int fails;              /* ended by itself, in a row */
} dm_host;

typedef enum dm_job_state {
    DM_JOB_QUEUED = 0,      /* on d->queue_head..., not started */
    DM_JOB_RUNNING,         /* on d->running: child alive or its pipe open */
    DM_JOB_CLOSING,         /* finished; its handles close, then it is freed */
    DM_JOB_REQUEUE          /* finished; its handles close, then it is queued */
} dm_job_state;

typedef struct dm_job {
    char name[DM_JOB_MAX];
    dm_job_state state;
    dm_sidecar side;        /* attempts counted so far, pseudonym */
    dm_file_id id;          /* the file that was checked */
    int exited, eof;        /* both needed before the job is finished */
    int64_t exit_status;
    int term_signal;
    int timed_out, stop_killed;
    double started_ms;      /* en_mono_ms */
    int64_t transient_mark; /* done_total at its last transient failure, or -1 */
    int requeue_front;      /* DM_JOB_REQUEUE: at the head of the queue */
    char stage[DM_MSG_WORD];
    char line[2048];        /* partial line from the child */
    size_t linelen;
    dm_msg outcome;         /* the child's final message (done, duplicate, failed) */
    uv_process_t proc;      /* exec'd child (hosted == 0) */
    int pid;                /* the child, either way (hosted: 0 until known) */
    int hosted;             /* 1: forked by the model host (warm.c) */
    int host_lost;          /* its host ended before telling its end */
    double ready_ms;        /* its models were ready after, or -1 */
    uv_pipe_t out;
    uv_timer_t timer;
    int handles_open;
    struct dm_job *next;
} dm_job;

/* The child computing one study's result (studies.c): one at a time. */
typedef struct dm_study_child {
    char pseudonym[EN_STORE_KEY_MAX];
    int exited, eof;
    int64_t exit_status;
    int term_signal;
    int timed_out, stop_killed;
    char line[2048];
    size_t linelen;
    dm_msg outcome;         /* result or failed */
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
} dm_study_child;

/* A study whose result could not be computed: tried again after this. */
typedef struct dm_study_retry {
    char pseudonym[EN_STORE_KEY_MAX];
    int fails;
    double retry_at;        /* en_mono_ms */
} dm_study_retry;

/* Something seen in the inbox (a file waiting to settle, or a folder
 * being emptied), by its path relative to the inbox. */
typedef struct dm_seen {
    char *name;
    dm_file_id id;
    double first_ms;        /* en_mono_ms: when this id was first seen */
    double unreadable_ms;   /* when a settled file could first not be read, or 0 */
    int looks;
    unsigned gen;
    int scanned;            /* 1: this id was walked and found cut */
    int warned;             /* the "looks incomplete" line was logged */
} dm_seen;

enum {
    DM_PAUSE_NONE = 0,
    DM_PAUSE_QUEUE,         /* queue_max files claimed and unfinished */
    DM_PAUSE_DISK,          /* less than min_free_mb free */
    DM_PAUSE_BACKOFF        /* a transient error: waiting before trying again */
};

typedef struct dm_daemon {
    uv_loop_t *loop;
    char conf_path[EN_PATH_MAX];
    en_config cfg;
    en_store *db;
    char exe[EN_PATH_MAX];
    int verbose;
    int concurrency;        /* effective */
    int lock_fd;            /* the spool lock (work folder), held for life;
                               the spool folders change only at a restart */
    /* intake */
    uv_fs_event_t watch;
    int watching;
    uv_timer_t rescan, soon;
    dm_seen *seen;
    size_t nseen, capseen;
    unsigned gen;
    /* jobs */
    dm_job *queue_head, *queue_tail;    /* claimed, not started */
    dm_job *running;                    /* running children */
    int nqueued, nrunning;
    int nclosing;                       /* finished, handles still closing */
    int64_t done_session, failed_session;
    int64_t done_total;                 /* successes since start (for back-off) */
    double spawn_failed_ms;
    double backoff_ms;                  /* current back-off; 0 = none */
    double backoff_until, backoff_set;  /* en_mono_ms */
    int64_t counts[EN_STORE_NSTATUS];   /* studies per status, for STATUS= */
    int counts_stale;
    void (*idle)(struct dm_daemon *);   /* stopping and a child ended: on_idle
                                           checks that none is left */
    void (*clip_ended)(struct dm_daemon *); /* a clip's process ended (studies) */
    /* studies */
    uv_timer_t study_timer;             /* the next study due */
    dm_study_child study;
    int study_running;                  /* study's child alive or its pipe open */
    int study_closing;                  /* its handles still closing */
    int studies_waiting;                /* due at the last look, not computed */
    dm_study_retry *retry;
    size_t nretry, capretry;
    /* state */
    int stopping;
    int paused;             /* backpressure: DM_PAUSE_* */
    uv_timer_t grace, watchdog, status_tick;
    uv_signal_t sigterm, sigint, sighup;
    dm_host host;           /* [daemon] warm_models: the model host */
} dm_daemon;

/* ---- dlog.c ---- */
enum { DM_ERR = 3, DM_WARN = 4, DM_NOTICE = 5, DM_INFO = 6, DM_DEBUG = 7 };
/* Fixed MESSAGE_IDs operators alert on (journalctl MESSAGE_ID=...). */
#define DM_MSGID_DONE "4b1d0a6c9e2f4c8e9a3b7d51e06f2a10"
#define DM_MSGID_FAILED "9f3e27c4a1b84d06b5c2e8d7130a6f41"
#define DM_MSGID_BACKPRESSURE "c2a8e5f1076d4b93a4e1d9b8f53c7e22"
#define DM_MSGID_STARTED "e7b3c9d2a4f14e68b0d5a1c6f2983b57"
#define DM_MSGID_STUDY_RESULT "5d8a2f6e3b1c4a97b2e0c7d4f9163a85"

typedef struct dm_fields {
    const char *job, *study, *stage, *msgid;
    const char *extra[4];   /* "KEY=value" journal fields, NULL-terminated */
} dm_fields;

void dm_log_init(int verbose);
void dm_log(int prio, const dm_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- spool.c ---- */
int dm_spool_check(const en_config *cfg, en_err *err);
/* An exclusive lock on <work_dir>/.echonetd.lock; EN_EPERM (the message
 * names the other daemon's pid) when another process holds it. */
int dm_spool_lock(const char *work_dir, int *fd, en_err *err);
void dm_spool_unlock(int *fd);
void dm_spool_job_name(char job[DM_JOB_MAX]);
void dm_spool_path(const char *dir, const char *job, const char *ext, char *buf, size_t len);
dm_kind dm_kind_of(mode_t mode);
const char *dm_kind_name(dm_kind k);        /* "a symbolic link" */
void dm_file_id_of(const struct stat *st, dm_file_id *id);
int dm_file_id_same(const dm_file_id *a, const dm_file_id *b);
/* What dfd/name is, not following a link; EN_ENOTFOUND when gone. */
int dm_spool_identify(int dfd, const char *name, dm_kind *kind, dm_file_id *id, en_err *err);
/* Opens path (never through a link, never blocking) only when it is the
 * regular file expect names (device and inode): EN_EPERM otherwise. */
int dm_spool_open_verified(const char *path, const dm_file_id *expect, int *fd, en_err *err);
/* Atomic rename that never replaces, then fsync of both folders;
 * EN_ENOTFOUND when the source is gone. */
int dm_spool_move_at(int from_dfd, const char *from, int to_dfd, const char *to, en_err *err);
int dm_spool_move(const char *from_dir, const char *from, const char *to_dir, const char *to,
                  en_err *err);
/* Renames from_dfd/name to work/<job>.dcm under a new job name and says
 * what is there now (*kind, *id).  EN_ENOTFOUND: it was gone, nothing
 * moved. */
int dm_spool_claim(const char *work_dir, int from_dfd, const char *name, char job[DM_JOB_MAX],
                   dm_kind *kind, dm_file_id *id, en_err *err);
int dm_spool_write_text(const char *path, const char *what, const char *text, en_err *err);
int dm_sidecar_read(const char *work_dir, const char *job, dm_sidecar *sc);
int dm_sidecar_write(const char *work_dir, const char *job, const dm_sidecar *sc, en_err *err);
void dm_sidecar_drop(const char *work_dir, const char *job);
/* Removes the temporaries a killed process leaves (en_atomic's
 * "<name>.tmp.<pid>.<n>", the pipeline's ".incoming-<pid>-<n>.avi") from
 * dir: those of pid (> 0); of every process no longer running (0); or all
 * of them (< 0: a folder only this daemon writes). */
int dm_spool_clean_temps(const char *dir, long pid, int *removed, en_err *err);
int64_t dm_spool_free_mb(const char *dir);     /* -1 when unknown */

/* ---- jobs.c ---- */
void dm_jobs_resume(dm_daemon *d);         /* files left in work/, temporaries */
/* A verified regular file claimed as work/<job>.dcm. */
int dm_job_add(dm_daemon *d, const char *job, const dm_file_id *id, en_err *err);
/* work/<job>.dcm is not a file that can be processed: to failed/ with a
 * reason and a database event. */
void dm_job_reject(dm_daemon *d, const char *job, const char *why);
void dm_jobs_pump(dm_daemon *d);           /* start children up to the limit */
/* j's process ended (for a hosted one, as the host tells). */
void dm_jobs_exited(dm_daemon *d, dm_job *j, int64_t status, int sig);
void dm_jobs_stop_all(dm_daemon *d);       /* grace expired: kill children */
void dm_jobs_free_queue(dm_daemon *d);     /* at exit: queued jobs stay in work/ */
int dm_jobs_idle(const dm_daemon *d);      /* 1: no child running or closing */
int dm_pressure(dm_daemon *d);             /* recomputes d->paused */
void dm_status(dm_daemon *d);              /* STATUS= line */

/* ---- studies.c ---- */
void dm_studies_start(dm_daemon *d);        /* at start-up: studies left due first */
void dm_studies_scan(dm_daemon *d);         /* compute a due study, arm the timer */
void dm_studies_kick(dm_daemon *d);         /* a clip ended: look again shortly */
int dm_studies_idle(const dm_daemon *d);    /* 1: no study's child running or closing */
/* Stopping: no new one; kill: end the running one too. */
void dm_studies_stop(dm_daemon *d, int kill);
void dm_studies_free(dm_daemon *d);

/* ---- intake.c ---- */
int dm_intake_start(dm_daemon *d, en_err *err);
void dm_intake_stop(dm_daemon *d);
void dm_intake_kick(dm_daemon *d);         /* scan soon */

/* ---- warm.c ---- */
/* Loads and prepares both models of cfg to keep; replaces w's only when
 * that worked. */
int dm_warm_load(dm_warm *w, const en_config *cfg, en_err *err);
void dm_warm_free(dm_warm *w);
/* 1 when a study configured as cfg can run on w's models: the same model
 * settings and the same weights files, unchanged on disk. */
int dm_warm_fits(const dm_warm *w, const en_config *cfg);
/* The model host: started at start-up when warm_models (and again after
 * it ends, up to 3 failures in a row); retired (running studies finish,
 * then a new one loads the models) at a reload that changes them; asked
 * to quit at stop. */
void dm_host_start(dm_daemon *d);
void dm_host_retire(dm_daemon *d);
void dm_host_stop(dm_daemon *d);
/* Hands j (work/<job>.dcm, the checked file in_fd) to the host, which
 * forks its process; *out_fd: the read end of its stdout.  -1 when the
 * host is not ready or the hand-over failed: start it exec'd instead. */
int dm_host_run(dm_daemon *d, dm_job *j, const char *work, int in_fd, int *out_fd);
void dm_host_kill(dm_daemon *d, const dm_job *j);

/* ---- host.c ---- */
/* `echonetd --model-host`: loads the models, then forks a study's process
 * for each `run` on descriptor 3 (warm.c describes the exchange). */
int dm_model_host(const char *conf_path);

/* ---- process_one.c ---- */
int dm_process_one(const char *conf_path, const char *work_file, const char *job);
/* The same with models kept by the daemon (NULL: load them). */
int dm_process_one_warm(const char *conf_path, const char *work_file, const char *job,
                        const dm_warm *warm);

/* ---- finish_one.c ---- */
int dm_finish_one(const char *conf_path, const char *pseudonym);

#endif

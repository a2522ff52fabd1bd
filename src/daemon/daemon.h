/*
 * daemon.h - echonetd's internal state, shared by its modules:
 *
 *   echonetd.c     main: options, start-up checks, signals, systemd, the loop
 *   intake.c       the inbox: watch, rescan, settle, claim into work/
 *   jobs.c         the work queue: one child process per study, attempts,
 *                  timeouts, archive / failed, resume after a crash
 *   dlog.c         logging (journal fields or one stderr line) and sd_notify
 *   process_one.c  `echonetd --process-one`: the child that runs one study
 *
 * One thread runs the libuv loop; studies run in child processes
 * (`echonetd --process-one WORK/<job>.dcm`) so a decoder crash or hang
 * fails that study only.  Names: dm_ for this module's internals.
 */
#ifndef EN_DAEMON_INT_H
#define EN_DAEMON_INT_H

#include <stdint.h>
#include <uv.h>

#include "en_config.h"
#include "en_store.h"

#define DM_JOB_MAX 48       /* "j<ms>-<seq>-<hex>" */

/* Exit status of --process-one. */
enum {
    DM_EXIT_DONE = 0,       /* result committed */
    DM_EXIT_FAILED = 1,     /* the file is bad: failed for good */
    DM_EXIT_RETRY = 75      /* transient (I/O, memory, setup): try again */
};

typedef struct dm_job {
    char name[DM_JOB_MAX];
    int attempts;           /* tries counted so far (sidecar) */
    int running;
    int exited, eof;        /* both needed before the job is finished */
    int64_t exit_status;
    int term_signal;
    int timed_out, stop_killed;
    uint64_t started_ms;    /* monotonic */
    char stage[32];
    char study[EN_STORE_KEY_MAX];   /* pseudonym, once the child says it */
    char line[2048];        /* partial line from the child */
    size_t linelen;
    char outcome[2048];     /* the child's last "done"/"failed" line */
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
    int handles_open;
    struct dm_job *next;
} dm_job;

/* A file seen in the inbox, waiting to settle. */
typedef struct dm_seen {
    char *name;
    int64_t size;
    int64_t mtime_ns;
    uint64_t first_ms;      /* monotonic: when this size+mtime was first seen */
    int looks;
    unsigned gen;
    int scanned;            /* 1: this size+mtime was walked and found cut */
    int warned;             /* the "looks incomplete" line was logged */
} dm_seen;

typedef struct dm_daemon {
    uv_loop_t *loop;
    char conf_path[EN_PATH_MAX];
    en_config cfg;
    en_store *db;
    char exe[EN_PATH_MAX];
    int verbose;
    int concurrency;        /* effective */
    /* intake */
    uv_fs_event_t watch;
    int watching;
    uv_timer_t rescan, soon;
    dm_seen *seen;
    size_t nseen, capseen;
    unsigned gen;
    unsigned seq;
    /* jobs */
    dm_job *queue_head, *queue_tail;    /* claimed, not started */
    dm_job *running;                    /* running children */
    int nqueued, nrunning;
    int64_t done_session, failed_session;
    uint64_t spawn_failed_ms;
    int64_t counts[EN_STORE_NSTATUS];  /* studies per status, for STATUS= */
    int counts_stale;
    /* state */
    int stopping;
    int paused;             /* backpressure: 0, or why (DM_PAUSE_*) */
    uv_timer_t grace, watchdog, status_tick;
    uv_signal_t sigterm, sigint, sighup;
} dm_daemon;

enum { DM_PAUSE_NONE = 0, DM_PAUSE_QUEUE = 1, DM_PAUSE_DISK = 2 };

/* ---- dlog.c ---- */
enum { DM_ERR = 3, DM_WARN = 4, DM_NOTICE = 5, DM_INFO = 6, DM_DEBUG = 7 };
/* Fixed MESSAGE_IDs operators alert on (journalctl MESSAGE_ID=...). */
#define DM_MSGID_DONE "4b1d0a6c9e2f4c8e9a3b7d51e06f2a10"
#define DM_MSGID_FAILED "9f3e27c4a1b84d06b5c2e8d7130a6f41"
#define DM_MSGID_BACKPRESSURE "c2a8e5f1076d4b93a4e1d9b8f53c7e22"
#define DM_MSGID_STARTED "e7b3c9d2a4f14e68b0d5a1c6f2983b57"

typedef struct dm_fields {
    const char *job, *study, *stage, *msgid;
    const char *extra[4];   /* "KEY=value" journal fields, NULL-terminated */
} dm_fields;

void dm_log_init(int verbose);
void dm_log(int prio, const dm_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void dm_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int dm_watchdog_usec(uint64_t *usec);      /* 1 when the watchdog is on */

/* ---- intake.c ---- */
int dm_intake_start(dm_daemon *d, en_err *err);
void dm_intake_stop(dm_daemon *d);
void dm_intake_kick(dm_daemon *d);         /* scan soon */
int dm_spool_check(const en_config *cfg, en_err *err);
int dm_pressure(dm_daemon *d);             /* recomputes d->paused */
uint64_t dm_now_ms(void);                  /* monotonic */

/* ---- jobs.c ---- */
void dm_jobs_resume(dm_daemon *d);         /* files left in work/ */
void dm_job_add(dm_daemon *d, const char *name);
void dm_jobs_pump(dm_daemon *d);           /* start children up to the limit */
void dm_jobs_stop_all(dm_daemon *d);       /* grace expired: kill children */
void dm_status(dm_daemon *d);              /* STATUS= line */
void dm_maybe_exit(dm_daemon *d);          /* stopping and idle: close the loop */
int dm_move(const char *from_dir, const char *from, const char *to_dir,
            const char *to, en_err *err);

/* ---- process_one.c ---- */
int dm_process_one(const char *conf_path, const char *work_file, const char *job);

#endif

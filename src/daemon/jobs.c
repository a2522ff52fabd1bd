/*
 * jobs.c - the work queue.  Each claimed file (work/<job>.dcm) is a job;
 * at most `concurrency` run at once, each in a child process (forked with
 * the models the daemon keeps, warm.c, or `echonetd --process-one`),
 * killed after study_timeout_s.  The child
 * gets the checked file itself as its standard input and refuses to run
 * if work/<job>.dcm is not that file (spool.c says why).
 *
 * Attempts are what a study used up by itself: it failed, crashed or hung
 * its own process.  They are counted when that try ends, in a sidecar
 * work/<job>.attempts (written whole and fsynced; it also keeps the
 * study's pseudonym once the child has said it, so a quarantine after a
 * restart can still mark the study's row).  A try cut short by the daemon
 * (a shutdown, a SIGKILL of the daemon, which takes its children with it)
 * is not counted: the file simply runs again.  The sidecar exists because
 * a study has no database row until its file has been decoded far enough
 * to give a pseudonym, and the files that crash or hang the decoder are
 * exactly those that never get that far.
 *
 * Outcomes:
 *   done             the result is committed (the child exited 0 after the
 *                    commit); the original moves to archive/<job>.dcm, or is
 *                    deleted when delete_after_success.
 *   failed           the file is bad (exit 1): counted, and quarantined at
 *                    once: failed/<job>.dcm with failed/<job>.reason, the
 *                    study's row marked failed and a "failed" event.
 *   crash, hang      counted; tried again while attempts remain, then
 *                    quarantined as above.
 *   transient (75)   the machine's fault (disk full, I/O error): not
 *                    counted.  No study starts and no file is taken for a
 *                    back-off that doubles from 1 s to 5 min while the
 *                    errors go on, then the study is tried again.  Only
 *                    when other studies succeeded since this one's last
 *                    transient error, with free space to spare, is it the
 *                    file's fault, and counted.
 *   stopped          SIGTERM's grace period ran out: killed, not counted,
 *                    the file stays in work/ for the next start.
 * A child that died by a signal leaves its temporaries in output_dir;
 * they are removed when it is reaped (and at start-up, those of any
 * process that no longer runs).  Start-up resumes every work/<job>.dcm,
 * oldest job first.
 *
 * Backpressure (dm_pressure): nothing is taken while queue_max files are
 * claimed and unfinished, while the work or output file system has less
 * than min_free_mb free, or during a back-off; nothing starts during the
 * last two.
 */
#include "config.h"

#include "daemon.h"
#include "en_service.h"
#include "en_util.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DM_BACKOFF_FIRST_MS 1000.0
#define DM_BACKOFF_MAX_MS 300000.0
/* Below this much free space (or min_free_mb, if higher) a transient
 * error is the disk's fault, never the file's. */
#define DM_LOW_SPACE_MB 64

/* ---- the queue ---- */

static void queue_push(dm_daemon *d, dm_job *j, int front)
{
    j->state = DM_JOB_QUEUED;
    if (front) {
        j->next = d->queue_head;
        d->queue_head = j;
        if (!d->queue_tail)
            d->queue_tail = j;
    } else {
        j->next = NULL;
        if (d->queue_tail)
            d->queue_tail->next = j;
        else
            d->queue_head = j;
        d->queue_tail = j;
    }
    d->nqueued++;
}

static dm_job *queue_pop(dm_daemon *d)
{
    dm_job *j = d->queue_head;

    if (!j)
        return NULL;
    assert(j->state == DM_JOB_QUEUED && d->nqueued > 0);
    d->queue_head = j->next;
    if (!d->queue_head)
        d->queue_tail = NULL;
    d->nqueued--;
    j->next = NULL;
    return j;
}

static dm_job *job_new(const char *name, const dm_file_id *id, const dm_sidecar *side)
{
    dm_job *j = calloc(1, sizeof *j);

    if (!j)
        return NULL;
    snprintf(j->name, sizeof j->name, "%s", name);
    j->id = *id;
    j->side = *side;
    j->transient_mark = -1;
    return j;
}

void dm_jobs_free_queue(dm_daemon *d)
{
    dm_job *j;
    while ((j = queue_pop(d)))
        free(j);
}

int dm_jobs_idle(const dm_daemon *d)
{
    return d->nrunning == 0 && d->nclosing == 0;
}

/* ---- outcomes ---- */

/* Every way a file ends in failed/: the study's row (if it has one) marked
 * failed, a "failed" event, the reason, then the move. */
static void quarantine(dm_daemon *d, const char *job, const char *study, int attempts,
                       const char *stage, const char *code, const char *message)
{
    char reason[4096], rpath[EN_PATH_MAX + DM_JOB_MAX + 16], when[EN_STORE_TIME_MAX];
    char dcm[DM_JOB_MAX + 8];
    en_store_ref ref;
    en_err e, cause;
    int64_t clip = 0;
    dm_fields f = { .job = job, .study = study, .stage = stage, .msgid = DM_MSGID_FAILED };

    if (study[0] && en_store_find(d->db, study, NULL, &ref, &e) == EN_OK) {
        clip = ref.id;
        if (ref.status == EN_STORE_PROCESSING || ref.status == EN_STORE_QUEUED) {
            en_err_set(&cause, EN_EIO, "%s", message);
            if (en_store_fail(d->db, ref.id, stage, &cause, &e) != EN_OK)
                dm_log(DM_ERR, &f, "cannot mark the study failed in the database: %s", e.msg);
        }
    }
    if (en_store_log(d->db, clip, EN_STORE_EV_FAILED, stage, attempts, job, message,
                     &e) != EN_OK)
        dm_log(DM_ERR, &f, "cannot record the failure in the database: %s", e.msg);
    d->counts_stale = 1;
    en_store_format_time(en_wall_ms(), when);
    snprintf(reason, sizeof reason,
             "job: %s\nstudy: %s\nstage: %s\nerror: %s\nattempts: %d\ntime: %s\nmessage: %s\n",
             job, study[0] ? study : "-", stage, code, attempts, when, message);
    dm_spool_path(d->cfg.failed_dir, job, ".reason", rpath, sizeof rpath);
    if (dm_spool_write_text(rpath, "reason file", reason, &e) != EN_OK)
        dm_log(DM_ERR, &f, "cannot write the reason file: %s", e.msg);
    snprintf(dcm, sizeof dcm, "%s.dcm", job);
    if (dm_spool_move(d->cfg.work_dir, dcm, d->cfg.failed_dir, dcm, &e) != EN_OK) {
        /* The sidecar stays: the next start quarantines it again. */
        dm_log(DM_ERR, &f, "cannot move the file to the failed folder (it stays in work/): %s",
               e.msg);
        return;
    }
    dm_sidecar_drop(d->cfg.work_dir, job);
    d->failed_session++;
    dm_log(DM_WARN, &f, "failed after %d attempt%s: %s: %s", attempts,
           attempts == 1 ? "" : "s", code, message);
}

void dm_job_reject(dm_daemon *d, const char *job, const char *why)
{
    quarantine(d, job, "", 0, "intake", "not_a_file", why);
}

static void log_done(const dm_job *j)
{
    const dm_msg *m = &j->outcome;
    char e1[64], e2[64], e3[64], e4[64];
    dm_fields f = { .job = j->name, .study = m->study, .stage = "done", .msgid = DM_MSGID_DONE };

    snprintf(e1, sizeof e1, "ECHONET_EF=%.1f", m->ef);
    snprintf(e2, sizeof e2, "ECHONET_BEATS=%d", m->nbeats);
    snprintf(e3, sizeof e3, "ECHONET_DURATION_MS=%.0f", m->ms);
    f.extra[0] = e1; f.extra[1] = e2; f.extra[2] = e3;
    /* How long the study waited for its models, from the daemon's side
     * (fork or exec included): what warm_models saves. */
    if (j->ready_ms >= 0) {
        snprintf(e4, sizeof e4, "ECHONET_MODELS_READY_MS=%.0f", j->ready_ms);
        f.extra[3] = e4;
    }
    if (m->nbeats > 0)
        dm_log(DM_INFO, &f, "study done: EF %.1f %% over %d beat%s in %.1f s, flags %s", m->ef,
               m->nbeats, m->nbeats == 1 ? "" : "s", m->ms / 1000, m->flags);
    else
        dm_log(DM_INFO, &f, "study done: no beat found in %.1f s, flags %s", m->ms / 1000,
               m->flags);
}

static void succeed(dm_daemon *d, dm_job *j)
{
    char dcm[DM_JOB_MAX + 8];
    dm_fields f = { .job = j->name, .study = j->outcome.study };
    en_err e;

    snprintf(j->side.study, sizeof j->side.study, "%s", j->outcome.study);
    if (j->outcome.kind == DM_MSG_DUPLICATE) {
        /* The same instance again, already done: its result stands, and
         * the copy is archived like any processed original. */
        f.stage = "duplicate";
        dm_log(DM_INFO, &f, "duplicate: this instance was already processed (study done); "
               "not processed again");
    } else {
        log_done(j);
    }
    d->done_total++;
    if (d->backoff_ms > 0) {
        dm_log(DM_NOTICE, &f, "a study succeeded again: the transient errors are over");
        d->backoff_ms = 0;
        d->backoff_until = d->backoff_set = 0;
        dm_pressure(d);
    }
    snprintf(dcm, sizeof dcm, "%s.dcm", j->name);
    if (d->cfg.delete_after_success) {
        char p[EN_PATH_MAX + DM_JOB_MAX + 16];
        dm_spool_path(d->cfg.work_dir, j->name, ".dcm", p, sizeof p);
        if (unlink(p) != 0)
            dm_log(DM_ERR, &f, "cannot delete %s: %s", p, strerror(errno));
        else if (en_fsync_dir(d->cfg.work_dir) != EN_OK)
            dm_log(DM_WARN, &f, "cannot sync %s: %s", d->cfg.work_dir, strerror(errno));
    } else if (dm_spool_move(d->cfg.work_dir, dcm, d->cfg.archive_dir, dcm, &e) != EN_OK) {
        dm_log(DM_ERR, &f, "cannot archive the original (it stays in work/): %s", e.msg);
        return;
    }
    dm_sidecar_drop(d->cfg.work_dir, j->name);
    d->done_session++;
}

/* The study used up a try: count it, then try again or give up. */
static void count_attempt(dm_daemon *d, dm_job *j, int final, const char *stage,
                          const char *code, const char *msg)
{
    dm_fields f = { .job = j->name, .study = j->side.study, .stage = stage };
    en_err e;

    j->side.attempts++;
    if (final || j->side.attempts >= d->cfg.max_attempts) {
        quarantine(d, j->name, j->side.study, j->side.attempts, stage, code, msg);
        return;
    }
    if (dm_sidecar_write(d->cfg.work_dir, j->name, &j->side, &e) != EN_OK)
        dm_log(DM_ERR, &f, "cannot count the attempt: %s", e.msg);
    dm_log(DM_WARN, &f, "attempt %d of %d failed (%s: %s); will try again", j->side.attempts,
           d->cfg.max_attempts, code, msg);
    j->state = DM_JOB_REQUEUE;
    j->requeue_front = 0;
}

static int space_low(const dm_daemon *d)
{
    int64_t floor = d->cfg.min_free_mb > DM_LOW_SPACE_MB ? d->cfg.min_free_mb : DM_LOW_SPACE_MB;
    int64_t fw = dm_spool_free_mb(d->cfg.work_dir), fo = dm_spool_free_mb(d->cfg.output_dir);
    return (fw >= 0 && fw < floor) || (fo >= 0 && fo < floor);
}

static void transient(dm_daemon *d, dm_job *j, const char *stage, const char *code,
                      const char *msg)
{
    dm_fields f = { .job = j->name, .study = j->side.study, .stage = stage,
                    .msgid = DM_MSGID_BACKPRESSURE };
    double now = en_mono_ms();
    int the_file = j->transient_mark >= 0 && d->done_total > j->transient_mark && !space_low(d);

    j->transient_mark = d->done_total;
    if (the_file) {
        char why[2400];
        snprintf(why, sizeof why, "%.2300s (a transient error again, while other studies "
                 "succeeded)", msg);
        count_attempt(d, j, 0, stage, code, why);
        return;
    }
    if (j->started_ms >= d->backoff_set) {
        /* News: the first failure since the last back-off was decided
         * (the others running then fail for the same reason). */
        d->backoff_ms = d->backoff_ms > 0 ? d->backoff_ms * 2 : DM_BACKOFF_FIRST_MS;
        if (d->backoff_ms > DM_BACKOFF_MAX_MS)
            d->backoff_ms = DM_BACKOFF_MAX_MS;
        d->backoff_set = now;
        d->backoff_until = now + d->backoff_ms;
        dm_log(DM_WARN, &f, "transient error (%s: %s): not counted against the study; no study "
               "starts and no file is taken for %.0f s", code, msg, d->backoff_ms / 1000);
    } else {
        dm_log(DM_NOTICE, &f, "transient error (%s: %s): not counted against the study", code,
               msg);
    }
    dm_pressure(d);
    j->state = DM_JOB_REQUEUE;
    j->requeue_front = 1;
}

static void unlink_running(dm_daemon *d, dm_job *j)
{
    for (dm_job **pp = &d->running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    j->next = NULL;
    d->nrunning--;
    assert(d->nrunning >= 0);
}

static void on_handle_closed(uv_handle_t *h)
{
    dm_job *j = h->data;
    dm_daemon *d = h->loop->data;

    assert(j->state == DM_JOB_CLOSING || j->state == DM_JOB_REQUEUE);
    if (--j->handles_open > 0)
        return;
    d->nclosing--;
    if (j->state == DM_JOB_REQUEUE) {
        j->exited = j->eof = j->timed_out = j->stop_killed = 0;
        j->term_signal = 0;
        j->exit_status = 0;
        j->hosted = j->pid = j->host_lost = 0;
        j->linelen = 0;
        memset(&j->outcome, 0, sizeof j->outcome);
        queue_push(d, j, j->requeue_front);
    } else {
        free(j);
    }
    dm_jobs_pump(d);
    if (d->stopping && dm_jobs_idle(d) && d->idle)
        d->idle(d);
}

static void close_handles(dm_daemon *d, dm_job *j)
{
    j->handles_open = 3;
    d->nclosing++;
    if (j->hosted)
        j->handles_open--;      /* no uv_process_t: the host reaps it */
    else
        uv_close((uv_handle_t *)&j->proc, on_handle_closed);
    uv_close((uv_handle_t *)&j->out, on_handle_closed);
    uv_close((uv_handle_t *)&j->timer, on_handle_closed);
}

static void finish(dm_daemon *d, dm_job *j)
{
    const dm_msg *m = &j->outcome;
    char msg[2300], code[DM_MSG_WORD], stage[DM_MSG_WORD];
    dm_fields f = { .job = j->name, .study = j->side.study, .stage = j->stage };

    assert(j->state == DM_JOB_RUNNING);
    unlink_running(d, j);
    d->counts_stale = 1;
    j->state = DM_JOB_CLOSING;
    if (j->term_signal && j->pid > 0) {
        /* Killed mid-write: what it was writing stays behind. */
        int n = 0;
        en_err e;
        if (dm_spool_clean_temps(d->cfg.output_dir, (long)j->pid, &n, &e) != EN_OK)
            dm_log(DM_WARN, &f, "cannot remove the temporaries of the study's process: %s",
                   e.msg);
        else if (n)
            dm_log(DM_DEBUG, &f, "removed %d temporar%s the study's process left", n,
                   n == 1 ? "y" : "ies");
    }
    if (m->kind == DM_MSG_FAILED && m->study[0] && !j->side.study[0])
        snprintf(j->side.study, sizeof j->side.study, "%s", m->study);
    snprintf(stage, sizeof stage, "%s", m->kind == DM_MSG_FAILED && strcmp(m->stage, "process")
             ? m->stage : j->stage[0] ? j->stage : "convert");
    if (j->stop_killed) {
        dm_log(DM_NOTICE, &f, "stopped by shutdown; it stays in work/ and resumes at the next start");
    } else if (j->exit_status == DM_EXIT_DONE && j->term_signal == 0 &&
               (m->kind == DM_MSG_DONE || m->kind == DM_MSG_DUPLICATE)) {
        succeed(d, j);
    } else if (j->timed_out) {
        snprintf(msg, sizeof msg, "killed after %d s at stage %s (study_timeout_s)",
                 d->cfg.study_timeout_s, stage);
        count_attempt(d, j, 0, stage, "timeout", msg);
    } else if (j->term_signal) {
        snprintf(msg, sizeof msg, "the study's process died of signal %d (%s) at stage %s",
                 j->term_signal, strsignal(j->term_signal), stage);
        count_attempt(d, j, 0, stage, "crash", msg);
    } else if (j->exit_status == DM_EXIT_FAILED && m->kind == DM_MSG_FAILED) {
        count_attempt(d, j, 1, stage, m->code, m->text);
    } else {
        snprintf(code, sizeof code, "%s", m->kind == DM_MSG_FAILED ? m->code : "");
        if (!code[0])
            snprintf(code, sizeof code, "exit%d", (int)j->exit_status);
        snprintf(msg, sizeof msg, "%s", m->kind == DM_MSG_FAILED && m->text[0] ? m->text
                 : j->host_lost ? "the model host ended while the study ran"
                 : "the study's process failed");
        if (j->exit_status == DM_EXIT_RETRY)
            transient(d, j, stage, code, msg);
        else
            count_attempt(d, j, 0, stage, code, msg);
    }
    close_handles(d, j);
    if (d->clip_ended)
        d->clip_ended(d);
    dm_status(d);
}

static void maybe_finish(dm_daemon *d, dm_job *j)
{
    if (j->exited && j->eof)
        finish(d, j);
}

void dm_jobs_exited(dm_daemon *d, dm_job *j, int64_t status, int sig)
{
    j->exit_status = status;
    j->term_signal = sig;
    j->exited = 1;
    uv_timer_stop(&j->timer);
    maybe_finish(d, j);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    dm_jobs_exited(p->loop->data, p->data, status, sig);
}

/* Only a child not yet reaped is signalled (a hosted one by its host,
 * which reaps it): its pid cannot have been reused. */
static void kill_child(dm_daemon *d, dm_job *j)
{
    if (j->exited)
        return;
    if (j->hosted)
        dm_host_kill(d, j);
    else
        uv_process_kill(&j->proc, SIGKILL);
}

static void on_line(dm_daemon *d, dm_job *j, const char *line)
{
    dm_msg m;
    dm_fields f = { .job = j->name, .study = j->side.study, .stage = j->stage };
    en_err e;

    if (dm_msg_parse(line, &m) != EN_OK) {
        dm_log(DM_DEBUG, &f, "a line from the study's process that is not a message: ignored");
        return;
    }
    switch (m.kind) {
    case DM_MSG_STAGE:
        snprintf(j->stage, sizeof j->stage, "%s", m.stage);
        f.stage = j->stage;
        dm_log(DM_DEBUG, &f, "stage %s", j->stage);
        dm_status(d);
        break;
    case DM_MSG_STUDY:
        if (strcmp(j->side.study, m.study)) {
            /* Kept in the sidecar too: if the daemon dies now, the
             * next start can still mark this study's row. */
            snprintf(j->side.study, sizeof j->side.study, "%s", m.study);
            if (dm_sidecar_write(d->cfg.work_dir, j->name, &j->side, &e) != EN_OK)
                dm_log(DM_WARN, &f, "cannot keep the study's pseudonym with the job: %s", e.msg);
        }
        break;
    case DM_MSG_READY:
        j->ready_ms = en_mono_ms() - j->started_ms;
        dm_log(DM_DEBUG, &f, "models ready after %.0f ms (%s)", j->ready_ms,
               !strcmp(m.stage, "warm") ? "kept by the model host" : "loaded by the study's process");
        break;
    case DM_MSG_WARNING:
        f.stage = m.stage;
        dm_log(DM_WARN, &f, "%s (the result is stored)", m.text);
        break;
    default:
        assert(dm_msg_final(&m));
        j->outcome = m;
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    dm_job *j = h->data;
    (void)hint;
    if (j->linelen >= sizeof j->line - 1)
        j->linelen = 0;     /* an over-long line: drop it */
    buf->base = j->line + j->linelen;
    buf->len = sizeof j->line - 1 - j->linelen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    dm_job *j = s->data;
    dm_daemon *d = s->loop->data;
    char *start, *nl;
    (void)buf;

    if (n < 0) {
        uv_read_stop(s);
        j->eof = 1;
        maybe_finish(d, j);
        return;
    }
    j->linelen += (size_t)n;
    j->line[j->linelen] = 0;
    start = j->line;
    while ((nl = memchr(start, '\n', j->linelen - (size_t)(start - j->line)))) {
        *nl = 0;
        on_line(d, j, start);
        start = nl + 1;
    }
    j->linelen -= (size_t)(start - j->line);
    memmove(j->line, start, j->linelen);
}

static void on_timeout(uv_timer_t *t)
{
    dm_job *j = t->data;
    dm_fields f = { .job = j->name, .study = j->side.study, .stage = j->stage };
    j->timed_out = 1;
    dm_log(DM_WARN, &f, "study still running after %d s: killing it",
           ((dm_daemon *)t->loop->data)->cfg.study_timeout_s);
    kill_child(t->loop->data, j);
}

/* j's child runs: watch its output and its time. */
static void running(dm_daemon *d, dm_job *j)
{
    dm_fields f = { .job = j->name, .study = j->side.study };

    if (!j->eof)
        uv_read_start((uv_stream_t *)&j->out, on_alloc, on_read);
    uv_timer_start(&j->timer, on_timeout, (uint64_t)d->cfg.study_timeout_s * 1000, 0);
    j->next = d->running;
    d->running = j;
    d->nrunning++;
    if (j->hosted)
        dm_log(DM_DEBUG, &f, "attempt %d started (forked by the model host)",
               j->side.attempts + 1);
    else
        dm_log(DM_DEBUG, &f, "attempt %d started (pid %d)", j->side.attempts + 1, j->pid);
}

/* start() through the model host: EN_OK when it took j. */
static int start_hosted(dm_daemon *d, dm_job *j, const char *work, int fd)
{
    int out;

    if (dm_host_run(d, j, work, fd, &out) != 0)
        return EN_EIO;
    close(fd);
    uv_pipe_init(d->loop, &j->out, 0);
    uv_timer_init(d->loop, &j->timer);
    j->out.data = j->timer.data = j;
    j->hosted = 1;
    j->pid = 0;
    j->state = DM_JOB_RUNNING;
    snprintf(j->stage, sizeof j->stage, "convert");
    if (uv_pipe_open(&j->out, out) != 0) {
        /* Cannot happen for a fresh pipe; if it does, the child finds
         * its stdout closed and the host reports its end. */
        close(out);
        j->eof = 1;
    }
    running(d, j);
    return EN_OK;
}

/* Starts j (just taken off the queue).  EN_OK: running, or finished with
 * (quarantined, dropped); EN_EIO: spawning failed, j is closing and will
 * be queued again. */
static int start(dm_daemon *d, dm_job *j)
{
    char work[EN_PATH_MAX + DM_JOB_MAX + 16];
    char *args[8];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    dm_fields f = { .job = j->name, .study = j->side.study };
    en_err e;
    int rc, fd;

    assert(j->state == DM_JOB_QUEUED);
    if (j->side.attempts >= d->cfg.max_attempts) {
        /* Counted before a restart, not quarantined yet. */
        char msg[128];
        snprintf(msg, sizeof msg, "gave up: %d attempts already made (max_attempts)",
                 j->side.attempts);
        quarantine(d, j->name, j->side.study, j->side.attempts, "intake", "attempts", msg);
        free(j);
        return EN_OK;
    }
    dm_spool_path(d->cfg.work_dir, j->name, ".dcm", work, sizeof work);
    if ((rc = dm_spool_open_verified(work, &j->id, &fd, &e)) != EN_OK) {
        if (rc == EN_ENOTFOUND) {
            dm_log(DM_ERR, &f, "the claimed file has vanished from %s (removed by hand?): "
                   "dropping the job", d->cfg.work_dir);
            dm_sidecar_drop(d->cfg.work_dir, j->name);
        } else {
            dm_job_reject(d, j->name, e.msg);
        }
        free(j);
        return EN_OK;
    }
    en_store_log(d->db, 0, EN_STORE_EV_PROCESSING, "intake", j->side.attempts + 1, j->name,
                 "starting the study's process", &e);
    j->started_ms = en_mono_ms();
    j->ready_ms = -1;
    if (d->cfg.warm_models && start_hosted(d, j, work, fd) == EN_OK)
        return EN_OK;
    args[0] = d->exe;
    args[1] = "--process-one";
    args[2] = work;
    args[3] = "--job";
    args[4] = j->name;
    args[5] = "--config";
    args[6] = d->conf_path;
    args[7] = NULL;
    memset(&o, 0, sizeof o);
    o.file = d->exe;
    o.args = args;
    o.exit_cb = on_exit_cb;
    uv_pipe_init(d->loop, &j->out, 0);
    uv_timer_init(d->loop, &j->timer);
    j->out.data = j->timer.data = j->proc.data = j;
    /* The checked file itself is the child's stdin: it proves the name
     * it reads is that file. */
    io[0].flags = UV_INHERIT_FD;
    io[0].data.fd = fd;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&j->out;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.stdio = io;
    o.stdio_count = 3;
    snprintf(j->stage, sizeof j->stage, "convert");
    rc = uv_spawn(d->loop, &j->proc, &o);
    close(fd);
    j->state = DM_JOB_RUNNING;
    if (rc < 0) {
        dm_log(DM_ERR, &f, "cannot start the study's process %s: %s", d->exe, uv_strerror(rc));
        /* Not the study's fault: not counted.  The handles still need
         * closing; then it is queued again, and the pump waits a second
         * before the next try. */
        d->spawn_failed_ms = en_mono_ms();
        j->state = DM_JOB_REQUEUE;
        j->requeue_front = 1;
        close_handles(d, j);
        return EN_EIO;
    }
    j->pid = j->proc.pid;
    running(d, j);
    return EN_OK;
}

void dm_jobs_pump(dm_daemon *d)
{
    if (d->spawn_failed_ms > 0 && en_mono_ms() - d->spawn_failed_ms < 1000) {
        dm_status(d);
        return;
    }
    while (!d->stopping && d->queue_head && d->nrunning < d->concurrency &&
           d->paused != DM_PAUSE_DISK && d->paused != DM_PAUSE_BACKOFF) {
        if (start(d, queue_pop(d)) != EN_OK)
            break;      /* spawn failed: closing, queued again when closed */
    }
    dm_status(d);
}

void dm_jobs_stop_all(dm_daemon *d)
{
    for (dm_job *j = d->running; j; j = j->next) {
        j->stop_killed = 1;
        kill_child(d, j);
    }
}

/* ---- intake's side ---- */

int dm_job_add(dm_daemon *d, const char *job, const dm_file_id *id, en_err *err)
{
    dm_sidecar side = { 0 };
    dm_job *j = job_new(job, id, &side);
    dm_fields f = { .job = job, .stage = "queued" };
    en_err ig;

    if (!j)
        /* It stays in work/ and is resumed on the next start. */
        return en_err_set(err, EN_ENOMEM, "out of memory queueing job %s (it stays in work/ "
                          "until the next start)", job);
    en_store_log(d->db, 0, EN_STORE_EV_QUEUED, "intake", EN_STORE_NONE, job,
                 "taken from the inbox", &ig);
    dm_log(DM_INFO, &f, "taken from the inbox");
    queue_push(d, j, 0);
    return EN_OK;
}

/* ---- start-up ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void clean_temps(dm_daemon *d)
{
    /* work/ is this daemon's alone (the lock): every temporary there is
     * stale.  Elsewhere only those of processes that are gone. */
    const char *dirs[3] = { d->cfg.work_dir, d->cfg.failed_dir, d->cfg.output_dir };
    int total = 0;

    for (int i = 0; i < 3; i++) {
        int n = 0;
        en_err e;
        if (dm_spool_clean_temps(dirs[i], i == 0 ? -1 : 0, &n, &e) != EN_OK)
            dm_log(DM_WARN, NULL, "cleaning temporaries: %s", e.msg);
        total += n;
    }
    if (total)
        dm_log(DM_NOTICE, NULL, "removed %d temporary file%s left by processes that were "
               "killed mid-write", total, total == 1 ? "" : "s");
}

static void resume_one(dm_daemon *d, const char *name)
{
    dm_sidecar side;
    dm_file_id id;
    dm_kind kind;
    char dcm[DM_JOB_MAX + 8], why[256];
    dm_fields f = { .job = name };
    dm_job *j;
    en_err e;
    int wfd = open(d->cfg.work_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    snprintf(dcm, sizeof dcm, "%s.dcm", name);
    if (wfd < 0 || dm_spool_identify(wfd, dcm, &kind, &id, &e) != EN_OK) {
        if (wfd >= 0)
            close(wfd);
        return;
    }
    close(wfd);
    dm_sidecar_read(d->cfg.work_dir, name, &side);
    f.study = side.study;
    if (kind != DM_KIND_FILE) {
        /* Claimed by a version that did not check, or a crash between
         * the claim and the check. */
        snprintf(why, sizeof why, "%s, not a file (claimed before a restart)",
                 dm_kind_name(kind));
        dm_job_reject(d, name, why);
        return;
    }
    dm_log(DM_NOTICE, &f, "resuming work left by an earlier run (%d attempt%s so far)",
           side.attempts, side.attempts == 1 ? "" : "s");
    if (!(j = job_new(name, &id, &side))) {
        dm_log(DM_ERR, &f, "out of memory resuming the job (it stays in work/)");
        return;
    }
    queue_push(d, j, 0);
}

void dm_jobs_resume(dm_daemon *d)
{
    DIR *dir;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;

    clean_temps(d);
    if (!(dir = opendir(d->cfg.work_dir))) {
        dm_log(DM_ERR, NULL, "cannot read %s: %s", d->cfg.work_dir, strerror(errno));
        return;
    }
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 4 || l - 4 >= DM_JOB_MAX ||
            strcmp(de->d_name + l - 4, ".dcm"))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        if (!(names[n] = strndup(de->d_name, l - 4)))
            break;
        n++;
    }
    closedir(dir);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        resume_one(d, names[i]);
        free(names[i]);
    }
    free(names);
    /* Sidecars whose file is gone (moved on just before a crash). */
    if ((dir = opendir(d->cfg.work_dir))) {
        while ((de = readdir(dir))) {
            size_t l = strlen(de->d_name);
            char dcm[EN_PATH_MAX];
            struct stat st;
            if (l > 9 && !strcmp(de->d_name + l - 9, ".attempts")) {
                snprintf(dcm, sizeof dcm, "%.*s.dcm", (int)(l - 9), de->d_name);
                if (fstatat(dirfd(dir), dcm, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
                    unlinkat(dirfd(dir), de->d_name, 0);
            }
        }
        closedir(dir);
    }
}

/* ---- pressure and status ---- */

int dm_pressure(dm_daemon *d)
{
    int was = d->paused, now = DM_PAUSE_NONE;
    int64_t fw = dm_spool_free_mb(d->cfg.work_dir), fo = dm_spool_free_mb(d->cfg.output_dir);
    int64_t fmin = fw < 0 ? fo : (fo < 0 ? fw : (fw < fo ? fw : fo));
    double t = en_mono_ms();

    if (fmin >= 0 && fmin < d->cfg.min_free_mb)
        now = DM_PAUSE_DISK;
    else if (d->backoff_until > t)
        now = DM_PAUSE_BACKOFF;
    else if (d->nqueued + d->nrunning >= d->cfg.queue_max)
        now = DM_PAUSE_QUEUE;
    if (now != was) {
        dm_fields f = { .msgid = DM_MSGID_BACKPRESSURE };
        char ex[64];
        snprintf(ex, sizeof ex, "ECHONET_FREE_MB=%lld", (long long)fmin);
        f.extra[0] = ex;
        if (now == DM_PAUSE_DISK)
            dm_log(DM_WARN, &f, "backpressure: less than %d MiB free (%lld MiB): not taking "
                   "new files", d->cfg.min_free_mb, (long long)fmin);
        else if (now == DM_PAUSE_BACKOFF)
            dm_log(DM_NOTICE, &f, "backpressure: waiting %.0f s after a transient error: not "
                   "taking new files", (d->backoff_until - t) / 1000);
        else if (now == DM_PAUSE_QUEUE)
            dm_log(DM_NOTICE, &f, "backpressure: %d files claimed and unfinished (queue_max): "
                   "not taking new files", d->nqueued + d->nrunning);
        else
            dm_log(DM_NOTICE, &f, "backpressure over: taking files again");
        d->paused = now;
        dm_status(d);
    }
    return now;
}

void dm_status(dm_daemon *d)
{
    static const char *const why[] = {
        [DM_PAUSE_NONE] = "", [DM_PAUSE_QUEUE] = "paused (queue full): ",
        [DM_PAUSE_DISK] = "paused (disk space low): ",
        [DM_PAUSE_BACKOFF] = "paused (waiting after a transient error): "
    };
    int64_t *c = d->counts;
    char stages[128] = "";
    en_err e;
    size_t l = 0;
    static char last[512];
    char line[512];

    assert(d->paused >= DM_PAUSE_NONE && d->paused <= DM_PAUSE_BACKOFF);
    /* Counted once per finished study, not per stage line. */
    if (d->counts_stale && en_store_counts(d->db, c, &e) == EN_OK)
        d->counts_stale = 0;
    for (dm_job *j = d->running; j && l < sizeof stages - 40; j = j->next)
        l += (size_t)snprintf(stages + l, sizeof stages - l, "%s%s", l ? "," : "", j->stage);
    snprintf(line, sizeof line, "%s%squeue %d, running %d%s%s%s, done %lld, failed %lld, "
             "studies waiting %d%s", d->stopping ? "stopping: " : "", why[d->paused],
             d->nqueued, d->nrunning, l ? " (" : "", stages, l ? ")" : "",
             (long long)c[EN_STORE_DONE], (long long)c[EN_STORE_FAILED], d->studies_waiting,
             d->study_running ? " (one computing)" : "");
    if (strcmp(line, last)) {
        snprintf(last, sizeof last, "%s", line);
        en_service_notify("STATUS=%s", line);
    }
}

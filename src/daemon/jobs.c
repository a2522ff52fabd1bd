/*
 * jobs.c - the work queue.  Each claimed file (work/<job>.dcm) is a job;
 * at most `concurrency` run at once, each in a child process
 * (`echonetd --process-one`), killed after study_timeout_s.
 *
 * Attempts are counted BEFORE each try, in a sidecar work/<job>.attempts
 * (written whole and fsynced) and as a "processing" event carrying the job
 * name and attempt number in the database.  The sidecar exists because a
 * study has no database row until its file has been decoded far enough to
 * give a pseudonym, and the files that crash or hang the decoder are
 * exactly those that never get that far.  A try that would exceed
 * max_attempts is not made: the file is quarantined instead.
 *
 * Outcomes:
 *   done             the result is committed (the child exited 0 after the
 *                    commit); the original moves to archive/<job>.dcm, or is
 *                    deleted when delete_after_success.
 *   failed           the file is bad (exit 1): failed/<job>.dcm with
 *                    failed/<job>.reason and a "failed" database event.
 *   crash, hang,     counted; retried while attempts remain, then
 *   transient (75)   quarantined as above.
 *   stopped          SIGTERM's grace period ran out: killed, the attempt
 *                    is given back, the file stays in work/ for the next
 *                    start.
 * Start-up resumes every work/<job>.dcm, oldest job first.
 */
#include "en_util.h"
#include "config.h"

#include "daemon.h"
#include "en_atomic.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void side_path(const dm_daemon *d, const char *job, const char *ext, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s", d->cfg.work_dir, job, ext);
}

static int read_attempts(const dm_daemon *d, const char *job)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16];
    FILE *f;
    int n = 0;

    side_path(d, job, ".attempts", p, sizeof p);
    if ((f = fopen(p, "r"))) {
        if (fscanf(f, "%d", &n) != 1 || n < 0)
            n = 0;
        fclose(f);
    }
    return n;
}

static int write_text(const char *path, const char *what, const char *text, en_err *err)
{
    en_atomic_file af;
    size_t len = strlen(text), off = 0;
    int rc;

    if ((rc = en_atomic_open(&af, path, what, err)) != EN_OK)
        return rc;
    while (off < len) {
        ssize_t w = write(af.fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = en_err_set(err, en_errno_code(errno), "%s '%s': %s", what, path, strerror(errno));
            en_atomic_discard(&af);
            return rc;
        }
        off += (size_t)w;
    }
    return en_atomic_commit(&af, err);
}

static int write_attempts(const dm_daemon *d, const char *job, int n, en_err *err)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16], t[32];

    side_path(d, job, ".attempts", p, sizeof p);
    snprintf(t, sizeof t, "%d\n", n);
    return write_text(p, "attempt counter", t, err);
}

static void drop_sidecar(const dm_daemon *d, const char *job)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16];
    side_path(d, job, ".attempts", p, sizeof p);
    unlink(p);
}

/* Puts j at the tail of the not-yet-started queue. */
static void queue_append(dm_daemon *d, dm_job *j)
{
    j->next = NULL;
    if (d->queue_tail)
        d->queue_tail->next = j;
    else
        d->queue_head = j;
    d->queue_tail = j;
    d->nqueued++;
}

void dm_job_add(dm_daemon *d, const char *name)
{
    dm_job *j = calloc(1, sizeof *j);

    if (!j) {
        /* It stays in work/ and is resumed on the next start. */
        dm_log(DM_ERR, NULL, "out of memory queueing a job");
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->attempts = read_attempts(d, name);
    queue_append(d, j);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void dm_jobs_resume(dm_daemon *d)
{
    DIR *dir = opendir(d->cfg.work_dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;

    if (!dir) {
        dm_log(DM_ERR, NULL, "cannot read %s: %s", d->cfg.work_dir, strerror(errno));
        return;
    }
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' )
            continue;
        if (strstr(de->d_name, ".tmp.")) {     /* a half-written sidecar */
            unlinkat(dirfd(dir), de->d_name, 0);
            continue;
        }
        if (l > 4 && l - 4 < DM_JOB_MAX && !strcmp(de->d_name + l - 4, ".dcm")) {
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
    }
    closedir(dir);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        dm_fields f = { .job = names[i] };
        dm_log(DM_NOTICE, &f, "resuming work left by an earlier run (%d attempts so far)",
               read_attempts(d, names[i]));
        dm_job_add(d, names[i]);
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
                if (fstatat(dirfd(dir), dcm, &st, 0) != 0 && errno == ENOENT)
                    unlinkat(dirfd(dir), de->d_name, 0);
            }
        }
        closedir(dir);
    }
}

/* ---- outcomes ---- */

static void quarantine(dm_daemon *d, dm_job *j, const char *stage, const char *code,
                       const char *message)
{
    char reason[4096], rpath[EN_PATH_MAX + DM_JOB_MAX + 16], when[EN_STORE_TIME_MAX];
    char dcm[DM_JOB_MAX + 8];
    en_store_ref ref;
    en_err e, cause;
    int64_t study_id = 0;
    dm_fields f = { .job = j->name, .study = j->study, .stage = stage,
                    .msgid = DM_MSGID_FAILED };

    /* The database first: a "failed" event (and the study marked failed,
     * if it got as far as having one and is not marked already). */
    if (j->study[0] && en_store_find(d->db, j->study, NULL, &ref, &e) == EN_OK) {
        study_id = ref.id;
        if (ref.status == EN_STORE_PROCESSING || ref.status == EN_STORE_QUEUED) {
            en_err_set(&cause, EN_EIO, "%s", message);
            en_store_fail(d->db, ref.id, stage, &cause, &e);
        }
    }
    if (en_store_log(d->db, study_id, EN_STORE_EV_FAILED, stage, j->attempts, j->name,
                     message, &e) != EN_OK)
        dm_log(DM_ERR, &f, "cannot record the failure in the database: %s", e.msg);
    en_store_format_time((int64_t)time(NULL) * 1000, when);
    snprintf(reason, sizeof reason,
             "job: %s\nstudy: %s\nstage: %s\nerror: %s\nattempts: %d\ntime: %s\nmessage: %s\n",
             j->name, j->study[0] ? j->study : "-", stage, code, j->attempts, when, message);
    snprintf(rpath, sizeof rpath, "%s/%s.reason", d->cfg.failed_dir, j->name);
    if (write_text(rpath, "reason file", reason, &e) != EN_OK)
        dm_log(DM_ERR, &f, "cannot write the reason file: %s", e.msg);
    snprintf(dcm, sizeof dcm, "%s.dcm", j->name);
    if (dm_move(d->cfg.work_dir, dcm, d->cfg.failed_dir, dcm, &e) != EN_OK) {
        dm_log(DM_ERR, &f, "cannot move the file to the failed folder (it stays in work/): %s",
               e.msg);
        return;
    }
    drop_sidecar(d, j->name);
    d->failed_session++;
    dm_log(DM_WARN, &f, "failed after %d attempt%s: %s: %s", j->attempts,
           j->attempts == 1 ? "" : "s", code, message);
}

static void succeed(dm_daemon *d, dm_job *j)
{
    char pseudo[EN_STORE_KEY_MAX] = "", flags[256] = "none", dcm[DM_JOB_MAX + 8];
    char e1[64], e2[64], e3[64];
    long long id = 0;
    double ef = NAN, ms = 0;
    int nbeats = 0;
    en_err e;

    snprintf(dcm, sizeof dcm, "%s.dcm", j->name);
    if (sscanf(j->outcome, "duplicate %64s %lld", pseudo, &id) == 2) {
        /* The same instance again, already done: its result stands, and
         * the copy is archived like any processed original. */
        dm_fields f = { .job = j->name, .study = pseudo, .stage = "duplicate" };
        snprintf(j->study, sizeof j->study, "%s", pseudo);
        dm_log(DM_INFO, &f, "duplicate: this instance was already processed (study done); "
               "not processed again");
    } else {
        dm_fields f = { .job = j->name, .study = pseudo, .stage = "done", .msgid = DM_MSGID_DONE };
        sscanf(j->outcome, "done %64s %lld %lf %d %lf %255s", pseudo, &id, &ef, &nbeats, &ms, flags);
        snprintf(j->study, sizeof j->study, "%s", pseudo);
        snprintf(e1, sizeof e1, "ECHONET_EF=%.1f", ef);
        snprintf(e2, sizeof e2, "ECHONET_BEATS=%d", nbeats);
        snprintf(e3, sizeof e3, "ECHONET_DURATION_MS=%.0f", ms);
        f.extra[0] = e1; f.extra[1] = e2; f.extra[2] = e3;
        if (nbeats > 0)
            dm_log(DM_INFO, &f, "study done: EF %.1f %% over %d beat%s in %.1f s, flags %s", ef,
                   nbeats, nbeats == 1 ? "" : "s", ms / 1000, flags);
        else
            dm_log(DM_INFO, &f, "study done: no beat found in %.1f s, flags %s", ms / 1000, flags);
    }
    if (d->cfg.delete_after_success) {
        char p[EN_PATH_MAX + DM_JOB_MAX + 16];
        side_path(d, j->name, ".dcm", p, sizeof p);
        if (unlink(p) != 0)
            dm_log(DM_ERR, NULL, "cannot delete %s: %s", p, strerror(errno));
        (void)en_fsync_dir(d->cfg.work_dir);
    } else if (dm_move(d->cfg.work_dir, dcm, d->cfg.archive_dir, dcm, &e) != EN_OK) {
        dm_fields f = { .job = j->name, .study = pseudo };
        dm_log(DM_ERR, &f, "cannot archive the original (it stays in work/): %s", e.msg);
        return;
    }
    drop_sidecar(d, j->name);
    d->done_session++;
}

static void requeue(dm_daemon *d, dm_job *j)
{
    j->running = 0;
    j->exited = j->eof = j->timed_out = j->stop_killed = 0;
    j->linelen = 0;
    j->outcome[0] = 0;
    queue_append(d, j);
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
}

static void on_handle_closed(uv_handle_t *h)
{
    dm_job *j = h->data;
    if (--j->handles_open == 0) {
        dm_daemon *d = j->proc.loop->data;
        if (j->running == 2)        /* to be run again */
            requeue(d, j);
        else
            free(j);
        dm_jobs_pump(d);
        dm_maybe_exit(d);
    }
}

static void finish(dm_daemon *d, dm_job *j)
{
    char msg[2300], code[64] = "", stage[64] = "", ps[EN_STORE_KEY_MAX] = "";
    dm_fields f = { .job = j->name, .study = j->study, .stage = j->stage };
    int retry = 0;

    unlink_running(d, j);
    d->counts_stale = 1;
    if (j->stop_killed) {
        en_err e;
        j->attempts = j->attempts > 0 ? j->attempts - 1 : 0;
        write_attempts(d, j->name, j->attempts, &e);
        dm_log(DM_NOTICE, &f, "stopped by shutdown; it stays in work/ and resumes at the next start");
    } else if (j->exit_status == DM_EXIT_DONE && j->term_signal == 0 &&
               (!strncmp(j->outcome, "done ", 5) || !strncmp(j->outcome, "duplicate ", 10))) {
        succeed(d, j);
    } else {
        const char *detail = "";
        int n = 0;
        if (!strncmp(j->outcome, "failed ", 7) &&
            sscanf(j->outcome, "failed %63s %63s %64s %n", code, stage, ps, &n) >= 3 && n > 0) {
            detail = j->outcome + n;
            if (strcmp(ps, "-") && !j->study[0])
                snprintf(j->study, sizeof j->study, "%s", ps);
        }
        if (!strcmp(stage, "process") || !stage[0])
            snprintf(stage, sizeof stage, "%s", j->stage[0] ? j->stage : "convert");
        if (j->timed_out) {
            snprintf(code, sizeof code, "timeout");
            snprintf(msg, sizeof msg, "killed after %d s at stage %s (study_timeout_s)",
                     d->cfg.study_timeout_s, stage);
            retry = 1;
        } else if (j->term_signal) {
            snprintf(code, sizeof code, "crash");
            snprintf(msg, sizeof msg, "the study's process died of signal %d (%s) at stage %s",
                     j->term_signal, strsignal(j->term_signal), stage);
            retry = 1;
        } else if (j->exit_status == DM_EXIT_FAILED && code[0]) {
            snprintf(msg, sizeof msg, "%s", detail);
        } else {
            if (!code[0])
                snprintf(code, sizeof code, "exit%d", (int)j->exit_status);
            snprintf(msg, sizeof msg, "%s", detail[0] ? detail : "the study's process failed");
            retry = 1;
        }
        if (retry && j->attempts < d->cfg.max_attempts) {
            dm_log(DM_WARN, &f, "attempt %d of %d failed (%s: %s); will try again", j->attempts,
                   d->cfg.max_attempts, code, msg);
            j->running = 2;
        } else {
            quarantine(d, j, stage, code, msg);
        }
    }
    if (j->running != 2)
        j->running = 0;
    j->handles_open = 3;
    uv_close((uv_handle_t *)&j->proc, on_handle_closed);
    uv_close((uv_handle_t *)&j->out, on_handle_closed);
    uv_close((uv_handle_t *)&j->timer, on_handle_closed);
    dm_status(d);
}

static void maybe_finish(dm_daemon *d, dm_job *j)
{
    if (j->exited && j->eof)
        finish(d, j);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    dm_job *j = p->data;
    j->exit_status = status;
    j->term_signal = sig;
    j->exited = 1;
    uv_timer_stop(&j->timer);
    maybe_finish(p->loop->data, j);
}

static void on_line(dm_daemon *d, dm_job *j, char *line)
{
    if (!strncmp(line, "stage ", 6)) {
        dm_fields f = { .job = j->name, .study = j->study, .stage = line + 6 };
        snprintf(j->stage, sizeof j->stage, "%s", line + 6);
        dm_log(DM_DEBUG, &f, "stage %s", line + 6);
        dm_status(d);
    } else if (!strncmp(line, "study ", 6)) {
        snprintf(j->study, sizeof j->study, "%s", line + 6);
    } else if (!strncmp(line, "done ", 5) || !strncmp(line, "failed ", 7) ||
               !strncmp(line, "duplicate ", 10)) {
        snprintf(j->outcome, sizeof j->outcome, "%s", line);
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
    dm_fields f = { .job = j->name, .study = j->study, .stage = j->stage };
    j->timed_out = 1;
    dm_log(DM_WARN, &f, "study still running after %d s: killing it",
           ((dm_daemon *)t->loop->data)->cfg.study_timeout_s);
    uv_process_kill(&j->proc, SIGKILL);
}

/* Starts the head of the queue; -1 when it cannot now (left queued). */
static int start(dm_daemon *d, dm_job *j)
{
    char work[EN_PATH_MAX + DM_JOB_MAX + 16];
    char *args[8];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    dm_fields f = { .job = j->name };
    en_err e;
    int rc;

    if (j->attempts + 1 > d->cfg.max_attempts) {
        char msg[128];
        snprintf(msg, sizeof msg, "gave up: %d attempts already made (max_attempts)", j->attempts);
        quarantine(d, j, "intake", "attempts", msg);
        free(j);
        return 0;
    }
    if (write_attempts(d, j->name, j->attempts + 1, &e) != EN_OK) {
        dm_log(DM_ERR, &f, "cannot count the attempt, not starting it: %s", e.msg);
        return -1;
    }
    j->attempts++;
    en_store_log(d->db, 0, EN_STORE_EV_PROCESSING, "intake", j->attempts, j->name,
                 "starting the study's process", &e);
    side_path(d, j->name, ".dcm", work, sizeof work);
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
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&j->out;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.stdio = io;
    o.stdio_count = 3;
    j->stage[0] = 0;
    snprintf(j->stage, sizeof j->stage, "convert");
    rc = uv_spawn(d->loop, &j->proc, &o);
    if (rc < 0) {
        dm_log(DM_ERR, &f, "cannot start the study's process %s: %s", d->exe, uv_strerror(rc));
        j->attempts--;
        write_attempts(d, j->name, j->attempts, &e);
        /* The handles still need closing; then it is queued again, and
         * the pump waits a second before the next try. */
        d->spawn_failed_ms = dm_now_ms();
        j->running = 2;
        j->handles_open = 3;
        j->next = NULL;
        uv_close((uv_handle_t *)&j->proc, on_handle_closed);
        uv_close((uv_handle_t *)&j->out, on_handle_closed);
        uv_close((uv_handle_t *)&j->timer, on_handle_closed);
        return 1;
    }
    uv_read_start((uv_stream_t *)&j->out, on_alloc, on_read);
    uv_timer_start(&j->timer, on_timeout, (uint64_t)d->cfg.study_timeout_s * 1000, 0);
    j->running = 1;
    j->started_ms = dm_now_ms();
    j->next = d->running;
    d->running = j;
    d->nrunning++;
    dm_log(DM_DEBUG, &f, "attempt %d started (pid %d)", j->attempts, j->proc.pid);
    return 0;
}

void dm_jobs_pump(dm_daemon *d)
{
    int rc;

    if (d->spawn_failed_ms && dm_now_ms() - d->spawn_failed_ms < 1000) {
        dm_status(d);
        return;
    }
    while (!d->stopping && d->queue_head && d->nrunning < d->concurrency &&
           d->paused != DM_PAUSE_DISK) {
        dm_job *j = d->queue_head;
        d->queue_head = j->next;
        if (!d->queue_head)
            d->queue_tail = NULL;
        d->nqueued--;
        j->next = NULL;
        if ((rc = start(d, j)) == 1)
            break;      /* spawn failed: closing, queued again when closed */
        if (rc != 0) {
            /* back to the head; the next scan tries again */
            j->next = d->queue_head;
            d->queue_head = j;
            if (!d->queue_tail)
                d->queue_tail = j;
            d->nqueued++;
            break;
        }
    }
    dm_status(d);
}

void dm_jobs_stop_all(dm_daemon *d)
{
    for (dm_job *j = d->running; j; j = j->next) {
        j->stop_killed = 1;
        uv_process_kill(&j->proc, SIGKILL);
    }
}

void dm_status(dm_daemon *d)
{
    int64_t *c = d->counts;
    char stages[128] = "";
    en_err e;
    size_t l = 0;
    static char last[512];
    char line[512];

    /* Counted once per finished study, not per stage line. */
    if (d->counts_stale && en_store_counts(d->db, c, &e) == EN_OK)
        d->counts_stale = 0;
    for (dm_job *j = d->running; j && l < sizeof stages - 40; j = j->next)
        l += (size_t)snprintf(stages + l, sizeof stages - l, "%s%s", l ? "," : "", j->stage);
    snprintf(line, sizeof line, "%s%squeue %d, running %d%s%s%s, done %lld, failed %lld%s",
             d->stopping ? "stopping: " : "",
             d->paused == DM_PAUSE_DISK ? "paused (disk space low): " :
             d->paused == DM_PAUSE_QUEUE ? "paused (queue full): " : "",
             d->nqueued, d->nrunning, l ? " (" : "", stages, l ? ")" : "",
             (long long)c[EN_STORE_DONE], (long long)c[EN_STORE_FAILED],
             "");
    if (strcmp(line, last)) {
        snprintf(last, sizeof last, "%s", line);
        dm_notify("STATUS=%s", line);
    }
}

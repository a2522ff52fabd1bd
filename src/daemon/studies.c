/*
 * studies.c - when a study is done.  Clips of one study arrive over
 * minutes and in any order; each stored clip marks its study's result
 * stale in the database.  Once a stale study has had no new instance for
 * [daemon] study_quiet_s and none of its clips is queued or processing,
 * its result is computed (a new version when its clips changed) and its
 * report drawn, in a child process (`echonetd --finish-study PSEUDONYM`,
 * finish_one.c) under the same timeout as a clip, so a crash or hang there
 * costs that try only.
 *
 * Nothing here is kept only in memory that matters: the stale mark is
 * durable and cleared in the same transaction that stores the new
 * version, so after a crash or restart the studies still due are found
 * again from the database, and a result stored once is never stored
 * twice.  What is in memory is the back-off of studies whose computation
 * failed: 5 s, doubling up to 10 min, forgotten at a restart (they are then
 * tried at once).  A failing study never blocks the others: the next due
 * study not in back-off goes first.
 *
 * One such child runs at a time, beside the clips' children.  The
 * schedule is a single uv timer armed for the moment the next study
 * becomes due (en_store_studies_due says when), re-armed after each clip
 * and each study ends: no polling.
 */
#include "config.h"

#include "daemon.h"
#include "en_util.h"

#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DM_STUDY_BACKOFF_FIRST_MS 5000.0
#define DM_STUDY_BACKOFF_MAX_MS 600000.0
/* After a clip ends: look a little later, so a burst of clips makes one
 * scan. */
#define DM_STUDY_KICK_MS 200

static dm_study_retry *retry_find(dm_daemon *d, const char *pseudonym)
{
    for (size_t i = 0; i < d->nretry; i++)
        if (!strcmp(d->retry[i].pseudonym, pseudonym))
            return &d->retry[i];
    return NULL;
}

static void retry_drop(dm_daemon *d, const char *pseudonym)
{
    dm_study_retry *r = retry_find(d, pseudonym);
    if (r)
        *r = d->retry[--d->nretry];
}

/* A failed try: the next one after the back-off.  EN_ENOMEM when it
 * cannot be remembered (it is then tried again at the next scan). */
static int retry_note(dm_daemon *d, const char *pseudonym, double *wait_ms)
{
    dm_study_retry *r = retry_find(d, pseudonym);

    if (!r) {
        if (d->nretry == d->capretry) {
            size_t cap = d->capretry ? d->capretry * 2 : 8;
            dm_study_retry *g = realloc(d->retry, cap * sizeof *g);
            if (!g)
                return EN_ENOMEM;
            d->retry = g;
            d->capretry = cap;
        }
        r = &d->retry[d->nretry++];
        memset(r, 0, sizeof *r);
        snprintf(r->pseudonym, sizeof r->pseudonym, "%s", pseudonym);
    }
    r->fails++;
    *wait_ms = DM_STUDY_BACKOFF_FIRST_MS;
    for (int i = 1; i < r->fails && *wait_ms < DM_STUDY_BACKOFF_MAX_MS; i++)
        *wait_ms *= 2;
    if (*wait_ms > DM_STUDY_BACKOFF_MAX_MS)
        *wait_ms = DM_STUDY_BACKOFF_MAX_MS;
    r->retry_at = en_mono_ms() + *wait_ms;
    return EN_OK;
}

/* ---- the scan ---- */

typedef struct scan_ctx {
    dm_daemon *d;
    double now;             /* en_mono_ms */
    char pick[EN_STORE_KEY_MAX];
    double retry_next;      /* earliest back-off end, en_mono_ms; 0 = none */
    int waiting;
} scan_ctx;

static int on_due(const char *pseudonym, void *ud)
{
    scan_ctx *c = ud;
    dm_study_retry *r = retry_find(c->d, pseudonym);

    c->waiting++;
    if (r && r->retry_at > c->now) {
        if (!c->retry_next || r->retry_at < c->retry_next)
            c->retry_next = r->retry_at;
        return 0;
    }
    if (!c->pick[0])
        snprintf(c->pick, sizeof c->pick, "%s", pseudonym);
    return 0;
}

static int spawn(dm_daemon *d, const char *pseudonym);

static void on_study_timer(uv_timer_t *t)
{
    dm_studies_scan(t->data);
}

void dm_studies_scan(dm_daemon *d)
{
    scan_ctx c = { .d = d, .now = en_mono_ms() };
    int64_t wall = en_wall_ms(), next_due = 0;
    double delay = -1;
    en_err e;

    if (d->stopping || d->study_running || d->study_closing)
        return;     /* the end of that child scans again */
    if (en_store_studies_due(d->db, (int64_t)d->cfg.study_quiet_s * 1000, wall, on_due, &c,
                             &next_due, &e) != EN_OK) {
        dm_log(DM_ERR, NULL, "cannot find the studies due for their result (looking again "
               "in %.0f s): %s", DM_STUDY_BACKOFF_FIRST_MS / 1000, e.msg);
        uv_timer_start(&d->study_timer, on_study_timer, (uint64_t)DM_STUDY_BACKOFF_FIRST_MS, 0);
        return;
    }
    d->studies_waiting = c.waiting;
    if (c.pick[0]) {
        spawn(d, c.pick);   /* its end (or the failure's) looks again */
        dm_status(d);
        return;
    }
    if (next_due > 0 && (delay < 0 || (double)(next_due - wall) < delay))
        delay = (double)(next_due - wall);
    if (c.retry_next > 0 && (delay < 0 || c.retry_next - c.now < delay))
        delay = c.retry_next - c.now;
    if (delay >= 0)
        /* A few ms late rather than early, so the study is due by then. */
        uv_timer_start(&d->study_timer, on_study_timer, (uint64_t)delay + 20, 0);
    else
        uv_timer_stop(&d->study_timer);
    dm_status(d);
}

void dm_studies_kick(dm_daemon *d)
{
    if (!d->stopping && !d->study_running && !d->study_closing)
        uv_timer_start(&d->study_timer, on_study_timer, DM_STUDY_KICK_MS, 0);
}

/* ---- the child ---- */

static void log_result(const dm_msg *m)
{
    char e1[64], e2[64], e3[64], e4[64];
    dm_fields f = { .study = m->study, .stage = "result", .msgid = DM_MSGID_STUDY_RESULT };

    snprintf(e1, sizeof e1, "ECHONET_VERSION=%d", m->version);
    snprintf(e2, sizeof e2, "ECHONET_EF=%.1f", m->ef);
    snprintf(e3, sizeof e3, "ECHONET_CLIPS=%d/%d", m->clips_usable, m->clips_total);
    snprintf(e4, sizeof e4, "ECHONET_BEATS=%d", m->nbeats);
    f.extra[0] = e1; f.extra[1] = e2; f.extra[2] = e3; f.extra[3] = e4;
    if (!m->changed) {
        f.msgid = NULL;
        dm_log(DM_DEBUG, &f, "study result v%d unchanged (its clips are as they were)",
               m->version);
    } else if (m->nbeats > 0) {
        dm_log(DM_INFO, &f, "study result v%d: EF %.1f %% over %d beat%s of %d usable clip%s "
               "(of %d), flags %s", m->version, m->ef, m->nbeats, m->nbeats == 1 ? "" : "s",
               m->clips_usable, m->clips_usable == 1 ? "" : "s", m->clips_total, m->flags);
    } else {
        dm_log(DM_INFO, &f, "study result v%d: no EF (%d usable clip%s of %d, no beat), "
               "flags %s", m->version, m->clips_usable, m->clips_usable == 1 ? "" : "s",
               m->clips_total, m->flags);
    }
}

/* One of the child's handles closed: 1 when it was the last and the
 * daemon goes on (when stopping, the idle check runs instead). */
static int last_closed(dm_daemon *d)
{
    if (--d->study_closing > 0)
        return 0;
    if (d->stopping) {
        if (d->idle)
            d->idle(d);
        return 0;
    }
    return 1;
}

static void on_closed(uv_handle_t *h)
{
    dm_daemon *d = h->loop->data;

    if (!last_closed(d))
        return;
    dm_status(d);
    dm_studies_scan(d);
}

static void ended(dm_daemon *d)
{
    dm_study_child *c = &d->study;
    const dm_msg *m = &c->outcome;
    dm_fields f = { .study = c->pseudonym, .stage = "study", .msgid = DM_MSGID_FAILED };
    char why[2300];
    double wait = 0;

    assert(d->study_running);
    d->study_running = 0;
    if (c->exit_status == DM_EXIT_DONE && !c->term_signal && m->kind == DM_MSG_RESULT &&
        !strcmp(m->study, c->pseudonym)) {
        retry_drop(d, c->pseudonym);
        log_result(m);
    } else if (!c->stop_killed) {
        if (c->timed_out)
            snprintf(why, sizeof why, "killed after %d s (study_timeout_s)",
                     d->cfg.study_timeout_s);
        else if (c->term_signal)
            snprintf(why, sizeof why, "its process died of signal %d (%s)", c->term_signal,
                     strsignal(c->term_signal));
        else if (m->kind == DM_MSG_FAILED)
            snprintf(why, sizeof why, "%s: %s", m->code, m->text);
        else
            snprintf(why, sizeof why, "its process exited %d without a result",
                     (int)c->exit_status);
        if (retry_note(d, c->pseudonym, &wait) != EN_OK)
            dm_log(DM_WARN, &f, "computing the study's result failed (%s); out of memory for "
                   "its back-off: trying again at the next look", why);
        else
            dm_log(DM_WARN, &f, "computing the study's result failed (%s); it stays due and "
                   "is tried again in %.0f s", why, wait / 1000);
    }
    d->study_closing = 3;
    uv_close((uv_handle_t *)&c->proc, on_closed);
    uv_close((uv_handle_t *)&c->out, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void maybe_ended(dm_daemon *d)
{
    if (d->study.exited && d->study.eof)
        ended(d);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    dm_daemon *d = p->loop->data;
    d->study.exit_status = status;
    d->study.term_signal = sig;
    d->study.exited = 1;
    uv_timer_stop(&d->study.timer);
    maybe_ended(d);
}

static void on_line(dm_daemon *d, const char *line)
{
    dm_study_child *c = &d->study;
    dm_fields f = { .study = c->pseudonym, .stage = "study" };
    dm_msg m;

    if (dm_msg_parse(line, &m) != EN_OK) {
        dm_log(DM_DEBUG, &f, "a line from the study's result process that is not a message: "
               "ignored");
        return;
    }
    if (m.kind == DM_MSG_WARNING) {
        f.stage = m.stage;
        dm_log(DM_WARN, &f, "%s (the result is stored)", m.text);
    } else if (dm_msg_final(&m)) {
        c->outcome = m;
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    dm_study_child *c = &((dm_daemon *)h->loop->data)->study;
    (void)hint;
    if (c->linelen >= sizeof c->line - 1)
        c->linelen = 0;     /* an over-long line: drop it */
    buf->base = c->line + c->linelen;
    buf->len = sizeof c->line - 1 - c->linelen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    dm_daemon *d = s->loop->data;
    dm_study_child *c = &d->study;
    char *start, *nl;
    (void)buf;

    if (n < 0) {
        uv_read_stop(s);
        c->eof = 1;
        maybe_ended(d);
        return;
    }
    c->linelen += (size_t)n;
    c->line[c->linelen] = 0;
    start = c->line;
    while ((nl = memchr(start, '\n', c->linelen - (size_t)(start - c->line)))) {
        *nl = 0;
        on_line(d, start);
        start = nl + 1;
    }
    c->linelen -= (size_t)(start - c->line);
    memmove(c->line, start, c->linelen);
}

static void on_timeout(uv_timer_t *t)
{
    dm_daemon *d = t->data;
    dm_fields f = { .study = d->study.pseudonym, .stage = "study" };

    d->study.timed_out = 1;
    dm_log(DM_WARN, &f, "the study's result still not computed after %d s: killing its "
           "process", d->cfg.study_timeout_s);
    uv_process_kill(&d->study.proc, SIGKILL);
}

/* A child that could not be started: the study stays due; look again
 * after a pause, not at once (the cause, e.g. no memory, may last). */
static void on_spawn_failed_closed(uv_handle_t *h)
{
    dm_daemon *d = h->loop->data;

    if (last_closed(d))
        uv_timer_start(&d->study_timer, on_study_timer, (uint64_t)DM_STUDY_BACKOFF_FIRST_MS, 0);
}

/* EN_OK: the child runs; EN_EIO: it could not be started (logged; its
 * handles close, then a timer looks again; the study stays due). */
static int spawn(dm_daemon *d, const char *pseudonym)
{
    dm_study_child *c = &d->study;
    char *args[6];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    dm_fields f = { .study = pseudonym, .stage = "study" };
    int rc;

    memset(c, 0, sizeof *c);
    snprintf(c->pseudonym, sizeof c->pseudonym, "%s", pseudonym);
    args[0] = d->exe;
    args[1] = "--finish-study";
    args[2] = c->pseudonym;
    args[3] = "--config";
    args[4] = d->conf_path;
    args[5] = NULL;
    memset(&o, 0, sizeof o);
    o.file = d->exe;
    o.args = args;
    o.exit_cb = on_exit_cb;
    uv_pipe_init(d->loop, &c->out, 0);
    uv_timer_init(d->loop, &c->timer);
    c->timer.data = d;
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&c->out;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.stdio = io;
    o.stdio_count = 3;
    if ((rc = uv_spawn(d->loop, &c->proc, &o)) < 0) {
        dm_log(DM_ERR, &f, "cannot start the process that computes the study's result %s: %s",
               d->exe, uv_strerror(rc));
        d->study_closing = 3;
        uv_close((uv_handle_t *)&c->proc, on_spawn_failed_closed);
        uv_close((uv_handle_t *)&c->out, on_spawn_failed_closed);
        uv_close((uv_handle_t *)&c->timer, on_spawn_failed_closed);
        return EN_EIO;
    }
    d->study_running = 1;
    uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
    uv_timer_start(&c->timer, on_timeout, (uint64_t)d->cfg.study_timeout_s * 1000, 0);
    dm_log(DM_DEBUG, &f, "computing the study's result (pid %d)", c->proc.pid);
    return EN_OK;
}

/* ---- the daemon's side ---- */

void dm_studies_start(dm_daemon *d)
{
    uv_timer_init(d->loop, &d->study_timer);
    d->study_timer.data = d;
    /* Studies left due by an earlier run (or a crash) first. */
    uv_timer_start(&d->study_timer, on_study_timer, 0, 0);
}

int dm_studies_idle(const dm_daemon *d)
{
    return !d->study_running && !d->study_closing;
}

void dm_studies_stop(dm_daemon *d, int kill)
{
    uv_timer_stop(&d->study_timer);
    if (kill && d->study_running) {
        d->study.stop_killed = 1;
        uv_process_kill(&d->study.proc, SIGKILL);
    }
}

void dm_studies_free(dm_daemon *d)
{
    free(d->retry);
    d->retry = NULL;
    d->nretry = d->capretry = 0;
}

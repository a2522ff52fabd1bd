/*
 * warm.c - models loaded once for every study ([daemon] warm_models): the
 * kept models themselves, and the daemon's side of the model host.
 *
 * Loading and transforming both full-size networks costs about 0.7 s, which
 * an exec'd process per study pays every time.  The model host (host.c,
 * `echonetd --model-host`) is one process, started by the daemon, that
 * loads and prepares the models once and forks each study's process from
 * itself: the child shares the packed weights copy-on-write (the engine
 * restarts its worker threads in the child, docs/engine.md "Loading
 * once").  A study still runs in a process of its own, so a crash or hang
 * stays that study's.  The host is a process of its own, not the daemon,
 * because a fork must not inherit the daemon's open database (SQLite's
 * locks are per process and its bookkeeping of them is not fork-safe) nor
 * its loop.
 *
 * The daemon talks to the host over a socket pair of datagrams (text, the
 * descriptors beside them):
 *
 *   daemon -> host   run JOB WORKFILE   + [the checked file, the stdout pipe]
 *                    kill JOB           (the study's timeout, a stop)
 *                    quit               (retire: exit once no study runs)
 *   host -> daemon   ready MS           models loaded and prepared in MS ms
 *                    started JOB PID
 *                    exited JOB PID STATUS SIGNAL
 *                    refused JOB TEXT   (could not fork: not the study's fault)
 *
 * Until the host is ready, and whenever it is gone, studies start exec'd
 * (`echonetd --process-one`) as before, so the host only ever saves time.
 * The study's process re-reads the configuration, as the exec'd one does;
 * where its model settings differ from the host's, or a weights file was
 * replaced since the host loaded it, it loads its own and says so.  A
 * reload that changes the models retires the host (its running studies
 * finish) and starts a new one.
 */
#include "config.h"

#include "daemon.h"
#include "en_pipeline.h"
#include "en_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the kept models (used by host.c and process_one.c) ---- */

static int weights_id(const char *path, dm_file_id *id)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    dm_file_id_of(&st, id);
    return 1;
}

int dm_warm_load(dm_warm *w, const en_config *cfg, en_err *err)
{
    dm_warm n;
    double t0 = en_mono_ms();
    int rc;

    memset(&n, 0, sizeof n);
    n.cfg = *cfg;
    /* Identified before loading: a file replaced meanwhile then looks
     * changed to the study, which loads its own (the safe side). */
    if (!weights_id(cfg->seg_weights, &n.seg_id) || !weights_id(cfg->ef_weights, &n.ef_id))
        memset(&n.seg_id, 0, sizeof n.seg_id);
    if ((rc = en_pipeline_models_load(cfg, &n.seg, &n.ef, err)) != EN_OK)
        return rc;
    if ((rc = en_nn_model_prepare(n.seg, cfg->video_size, cfg->video_size, err)) != EN_OK ||
        (rc = en_nn_model_prepare(n.ef, cfg->video_size, cfg->video_size, err)) != EN_OK) {
        en_err_prefix(err, "preparing the models to keep loaded");
        dm_warm_free(&n);
        return rc;
    }
    n.load_ms = en_mono_ms() - t0;
    dm_warm_free(w);
    *w = n;
    return EN_OK;
}

void dm_warm_free(dm_warm *w)
{
    en_nn_model_free(w->seg);
    en_nn_model_free(w->ef);
    w->seg = w->ef = NULL;
}

int dm_warm_fits(const dm_warm *w, const en_config *cfg)
{
    dm_file_id seg, ef;

    return w && w->seg && w->ef && w->seg_id.ino && en_pipeline_models_same(&w->cfg, cfg) &&
           cfg->video_size == w->cfg.video_size && weights_id(cfg->seg_weights, &seg) &&
           weights_id(cfg->ef_weights, &ef) && dm_file_id_same(&seg, &w->seg_id) &&
           dm_file_id_same(&ef, &w->ef_id);
}

/* ---- the daemon's side of the host ---- */

static dm_job *find_job(dm_daemon *d, const char *name)
{
    for (dm_job *j = d->running; j; j = j->next)
        if (j->hosted && !strcmp(j->name, name))
            return j;
    return NULL;
}

static int send_line(int fd, const char *line, const int *fds, int nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } u;
    struct iovec iov = { (void *)line, strlen(line) };
    struct msghdr mh;

    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *c;
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -1;
}

/* The host is gone: its studies died with it (they die with their
 * parent), which is the machine's trouble, not theirs. */
static void on_poll_closed(uv_handle_t *hd);

static void host_gone(dm_daemon *d)
{
    dm_host *h = &d->host;
    dm_job *j, *next;

    if (h->fd >= 0) {
        uv_poll_stop(&h->poll);
        h->poll_closing = 1;
        uv_close((uv_handle_t *)&h->poll, on_poll_closed);
        close(h->fd);
        h->fd = -1;
    }
    for (j = d->running; j; j = next) {
        next = j->next;
        if (j->hosted && !j->exited) {
            j->host_lost = 1;
            dm_jobs_exited(d, j, DM_EXIT_RETRY, 0);
        }
    }
    h->ready = 0;
}

static void on_message(dm_daemon *d, char *line)
{
    dm_host *h = &d->host;
    char job[DM_JOB_MAX], text[512];
    int pid, status, sig;
    double ms;
    dm_job *j;

    if (sscanf(line, "ready %lf", &ms) == 1) {
        h->ready = 1;
        h->fails = 0;
        dm_log(DM_INFO, NULL, "model host ready: models loaded and prepared in %.0f ms, kept "
               "for every study's process (warm_models)", ms);
        dm_jobs_pump(d);
    } else if (sscanf(line, "started %47s %d", job, &pid) == 2) {
        if ((j = find_job(d, job)))
            j->pid = pid;
    } else if (sscanf(line, "exited %47s %d %d %d", job, &pid, &status, &sig) == 4) {
        if ((j = find_job(d, job)) && !j->exited) {
            j->pid = pid;
            dm_jobs_exited(d, j, status, sig);
        }
    } else if (sscanf(line, "refused %47s %511[^\n]", job, text) == 2) {
        dm_fields f = { .job = job };
        dm_log(DM_WARN, &f, "the model host could not start the study's process: %s", text);
        if ((j = find_job(d, job)) && !j->exited)
            dm_jobs_exited(d, j, DM_EXIT_RETRY, 0);
    } else {
        dm_log(DM_DEBUG, NULL, "model host: a message that is not one: ignored");
    }
}

/* Every message waiting; the host is gone at the end of its stream. */
static void drain(dm_daemon *d)
{
    char buf[1024];
    ssize_t n = -1;

    while (d->host.fd >= 0 && (n = recv(d->host.fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
        buf[n] = 0;
        on_message(d, buf);
    }
    if (d->host.fd >= 0 && (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)))
        host_gone(d);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    if (status < 0)
        host_gone(p->data);
    else
        drain(p->data);
}

/* Both the process and the socket's handles must be closed before the
 * next host reuses them.  A retired host made way for the new models; one
 * that died is started again, unless that keeps failing (then studies load
 * their own models, as with warm_models = no). */
static void maybe_restart(dm_daemon *d)
{
    if (d->host.running || d->host.poll_closing)
        return;
    if (!d->stopping)
        dm_host_start(d);
    else if (d->idle)
        d->idle(d);
}

static void on_poll_closed(uv_handle_t *hd)
{
    dm_daemon *d = hd->data;

    d->host.poll_closing = 0;
    maybe_restart(d);
}

static void on_host_closed(uv_handle_t *hd)
{
    dm_daemon *d = hd->data;

    d->host.running = 0;
    maybe_restart(d);
}

static void on_host_exit(uv_process_t *p, int64_t status, int sig)
{
    dm_daemon *d = p->loop->data;
    dm_host *h = &d->host;

    if (!h->retiring && !d->stopping) {
        h->fails++;
        if (sig)
            dm_log(DM_WARN, NULL, "the model host died (signal %d); studies load their own "
                   "models until it is back", sig);
        else
            dm_log(DM_WARN, NULL, "the model host ended (status %lld); studies load their own "
                   "models until it is back", (long long)status);
    }
    drain(d);       /* what it said before it went */
    host_gone(d);
    h->retiring = 0;
    uv_close((uv_handle_t *)p, on_host_closed);
}

#define HOST_MAX_FAILS 3

void dm_host_start(dm_daemon *d)
{
    dm_host *h = &d->host;
    char *args[5];
    uv_process_options_t o;
    uv_stdio_container_t io[4];
    int sv[2], rc;

    if (h->running || h->poll_closing || !d->cfg.warm_models || d->stopping)
        return;
    if (h->fails >= HOST_MAX_FAILS) {
        if (h->fails == HOST_MAX_FAILS) {
            dm_log(DM_ERR, NULL, "the model host failed %d times in a row: not started again "
                   "until a reload; studies load their own models", h->fails);
            h->fails++;
        }
        return;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        dm_log(DM_ERR, NULL, "cannot make the model host's socket: %s; studies load their own "
               "models", strerror(errno));
        return;
    }
    args[0] = d->exe;
    args[1] = "--model-host";
    args[2] = "--config";
    args[3] = d->conf_path;
    args[4] = NULL;
    memset(&o, 0, sizeof o);
    o.file = d->exe;
    o.args = args;
    o.exit_cb = on_host_exit;
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_IGNORE;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    io[3].flags = UV_INHERIT_FD;
    io[3].data.fd = sv[1];
    o.stdio = io;
    o.stdio_count = 4;
    rc = uv_spawn(d->loop, &h->proc, &o);
    close(sv[1]);
    if (rc < 0) {
        dm_log(DM_ERR, NULL, "cannot start the model host %s: %s; studies load their own models",
               d->exe, uv_strerror(rc));
        close(sv[0]);
        uv_close((uv_handle_t *)&h->proc, NULL);
        h->fails++;
        return;
    }
    h->proc.data = d;
    h->running = 1;
    h->ready = 0;
    h->fd = sv[0];
    uv_poll_init(d->loop, &h->poll, h->fd);
    h->poll.data = d;
    uv_poll_start(&h->poll, UV_READABLE | UV_DISCONNECT, on_readable);
}

void dm_host_retire(dm_daemon *d)
{
    dm_host *h = &d->host;

    h->fails = 0;
    if (!h->running) {
        dm_host_start(d);
        return;
    }
    h->retiring = 1;
    h->ready = 0;
    if (h->fd >= 0 && send_line(h->fd, "quit", NULL, 0) != 0)
        uv_process_kill(&h->proc, SIGKILL);
}

int dm_host_run(dm_daemon *d, dm_job *j, const char *work, int in_fd, int *out_fd)
{
    dm_host *h = &d->host;
    char line[EN_PATH_MAX + 2 * DM_JOB_MAX];
    int p[2], fds[2];

    if (!h->ready || h->fd < 0)
        return -1;
    /* The path is the rest of the datagram: it may hold blanks. */
    if (snprintf(line, sizeof line, "run %s %s", j->name, work) >= (int)sizeof line ||
        pipe2(p, O_CLOEXEC) != 0)
        return -1;
    fds[0] = in_fd;
    fds[1] = p[1];
    if (send_line(h->fd, line, fds, 2) != 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    close(p[1]);
    *out_fd = p[0];
    return 0;
}

void dm_host_kill(dm_daemon *d, const dm_job *j)
{
    char line[DM_JOB_MAX + 8];

    snprintf(line, sizeof line, "kill %s", j->name);
    if (d->host.fd >= 0)
        (void)send_line(d->host.fd, line, NULL, 0);
}

void dm_host_stop(dm_daemon *d)
{
    if (d->host.running && d->host.fd >= 0)
        (void)send_line(d->host.fd, "quit", NULL, 0);
}

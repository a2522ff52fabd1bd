/*
 * host.c - `echonetd --model-host`: the process that keeps both models
 * loaded and forks each study's process from itself (warm.c describes why
 * and the exchange with the daemon on descriptor 3).
 *
 * It opens no database and runs no loop of the daemon's, so what a fork
 * inherits is the loaded models and nothing that breaks across fork().  It
 * dies with the daemon (PR_SET_PDEATHSIG), and its studies die with it, so
 * no study outlives the process that accounts for it.  Its messages on
 * stderr name neither patients nor files, only job names.
 */
#include "config.h"

#include "daemon.h"
#include "en_util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SOCK 3
#define REAP_MS 20

typedef struct child {
    int pid;
    char job[DM_JOB_MAX];
} child;

static child *kids;
static size_t nkids, capkids;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* The daemon gone: PR_SET_PDEATHSIG ends us. */
    if (n > 0)
        (void)send(SOCK, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1,
                   MSG_NOSIGNAL);
}

/* Receives one datagram with up to two descriptors; its length, 0 at the
 * end of the stream, -1 on error. */
static ssize_t receive(char *buf, size_t cap, int fds[2], int *nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } u;
    struct iovec iov = { buf, cap - 1 };
    struct msghdr mh;
    ssize_t n;

    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    *nfds = 0;
    n = recvmsg(SOCK, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    buf[n] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (*nfds < 2)
                    fds[(*nfds)++] = fd;
                else
                    close(fd);
            }
        }
    return n;
}

/* The study's process: stdin the checked file, stdout the daemon's pipe,
 * nothing else of ours. */
static void study(const char *conf_path, const char *job, const char *work, const int fds[2],
                  const dm_warm *w)
{
    sigset_t none;

    /* Forks share the host's command line; the name tells them apart in
     * top and ps -o comm. */
    prctl(PR_SET_NAME, "echonetd-study");
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0)
        _exit(DM_EXIT_RETRY);
    /* The host's socket is not the study's business.  close_range needs
     * Linux 5.9; before that, one by one. */
    if (close_range(3, ~0U, 0) != 0)
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    /* exit, not _exit: as at the end of an exec'd study, the sanitizers'
     * leak check runs (stdio was flushed before the fork). */
    exit(dm_process_one_warm(conf_path, work, job, w));
}

static void run(const char *conf_path, char *args, const int fds[2], const dm_warm *w)
{
    char *work = strchr(args, ' ');
    size_t jl = work ? (size_t)(work - args) : 0;
    child *k;
    pid_t pid;

    if (jl == 0 || jl >= DM_JOB_MAX) {
        say("refused - a run without a job and a file");
        return;
    }
    *work++ = 0;
    if (nkids == capkids) {
        size_t cap = capkids ? capkids * 2 : 8;
        child *nk = realloc(kids, cap * sizeof *nk);
        if (!nk) {
            say("refused %s out of memory", args);
            return;
        }
        kids = nk;
        capkids = cap;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0)
        study(conf_path, args, work, fds, w);
    if (pid < 0) {
        say("refused %s cannot fork: %s", args, strerror(errno));
        return;
    }
    k = &kids[nkids++];
    k->pid = (int)pid;
    memcpy(k->job, args, jl);
    k->job[jl] = 0;
    say("started %s %d", k->job, k->pid);
}

static void reap(void)
{
    int st;
    pid_t pid;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (size_t i = 0; i < nkids; i++)
            if (kids[i].pid == pid) {
                say("exited %s %d %d %d", kids[i].job, (int)pid,
                    WIFEXITED(st) ? WEXITSTATUS(st) : 0, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                kids[i] = kids[--nkids];
                break;
            }
}

static void kill_job(const char *job)
{
    for (size_t i = 0; i < nkids; i++)
        if (!strcmp(kids[i].job, job))
            kill(kids[i].pid, SIGKILL);
}

int dm_model_host(const char *conf_path)
{
    en_config cfg;
    dm_warm w;
    en_err e;
    struct pollfd pf;
    int quitting = 0;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    prctl(PR_SET_NAME, "echonetd-host");
    /* As the exec'd study's process: a file-size limit fails a write. */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    memset(&w, 0, sizeof w);
    en_config_defaults(&cfg);
    if ((conf_path[0] && en_config_load(&cfg, conf_path, &e) != EN_OK) ||
        dm_warm_load(&w, &cfg, &e) != EN_OK) {
        fprintf(stderr, "echonetd model host: %s\n", e.msg);
        return 1;
    }
    pf.fd = SOCK;
    pf.events = POLLIN;
    say("ready %.0f", w.load_ms);
    while (!quitting || nkids > 0) {
        /* Studies' ends are polled, not signalled: SIGCHLD would go to
         * whichever thread does not block it (OpenBLAS's and the
         * engine's threads exist before we could block it), and be lost
         * there.  A study's end is told within REAP_MS. */
        if (poll(&pf, 1, nkids ? REAP_MS : -1) < 0 && errno != EINTR)
            break;
        reap();
        if (pf.revents) {
            char buf[EN_PATH_MAX + 2 * DM_JOB_MAX];
            int fds[2], nfds;
            ssize_t n = receive(buf, sizeof buf, fds, &nfds);

            if (n <= 0) {
                /* The daemon is gone or closed us: so are its studies. */
                for (size_t i = 0; i < nkids; i++)
                    kill(kids[i].pid, SIGKILL);
                break;
            }
            if (!strncmp(buf, "run ", 4) && nfds == 2 && quitting)
                say("refused %.47s the model host is retiring", buf + 4);
            else if (!strncmp(buf, "run ", 4) && nfds == 2)
                run(conf_path, buf + 4, fds, &w);
            else if (!strncmp(buf, "kill ", 5))
                kill_job(buf + 5);
            else if (!strcmp(buf, "quit"))
                quitting = 1;
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
        }
    }
    dm_warm_free(&w);
    free(kids);
    return 0;
}

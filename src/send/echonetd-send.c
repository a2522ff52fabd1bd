/*
 * echonetd-send.c - the service that sends study results back to the lab's
 * PACS: each new study result version becomes a DICOM SR and an
 * Encapsulated PDF in the original study (docs/dicom-network.md, "Sending
 * results back").
 *
 *   echonetd-send [-c FILE] [-v] [--once]
 *
 * A separate program, like echonetd-recv, so that echonetd keeps no network
 * (PrivateNetwork=yes).  It reads the results database (never writes it),
 * the key store (the only identifying input, needed to put the objects into
 * the original study) and the daemon's PDFs, and owns the outbox
 * (en_outbox.h), a durable queue of (pseudonym, version).
 *
 * Each round: every current, EF-bearing study result computed since the
 * outbox was created is enqueued (once per version: the outbox refuses a
 * second row), then every due item is tried in turn.  An attempt is
 * committed as "sending" before the association and as "sent" after the
 * PACS confirmed every object; a failure waits backoff_min_s, doubled per
 * failure up to backoff_max_s, and give_up_after_s after it was queued the
 * version is marked failed.  Killed between the PACS's confirmation and the
 * "sent" commit, the next start sends the version again with the same UIDs:
 * the PACS replaces the objects it has, so it never holds two.
 *
 * --once: one round, then exit (0 when nothing is left failing in that
 * round); for tests and for running from a timer.  --pause-after-store MS
 * (tests only) waits between the PACS's confirmation and the "sent" commit,
 * the window a crash test aims at.
 *
 * Log lines name studies by pseudonym and the PACS by AE title and address,
 * never a UID or a patient value: the objects carry those, the log does not.
 */
#include "config.h"

#include "en_config.h"
#include "en_service.h"
#include "en_err.h"
#include "en_net.h"
#include "en_outbox.h"
#include "en_send.h"
#include "en_store.h"
#include "en_util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif

#ifndef EN_SYSCONFDIR
#define EN_SYSCONFDIR "/etc"
#endif

#define SEND_MSGID_SENT "7f3a9c2e4b1d4a68b0e5d6c7f8a9b0c1"
#define SEND_MSGID_FAILED "c4e1b8a7d2f34c59a6b0e9d8c7f6a5b4"

typedef struct send_state {
    char conf_path[EN_PATH_MAX];
    en_config cfg;
    en_send_peer peer;
    en_outbox *ob;
    int verbose, journal, once;
    int pause_ms;               /* --pause-after-store (tests) */
    uint64_t watchdog_ms;
    double last_ping;
    int64_t sent, retried, failed; /* this run */
} send_state;

static volatile sig_atomic_t send_stop, send_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        send_hup = 1;
    else
        send_stop = 1;
}

static void say(send_state *s, int prio, const char *msgid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(send_state *s, int prio, const char *msgid, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (prio >= LOG_DEBUG && !s->verbose)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#ifdef HAVE_LIBSYSTEMD
    if (s->journal) {
        if (msgid)
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-send", "MESSAGE_ID=%s", msgid, NULL);
        else
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-send", NULL);
        return;
    }
#endif
    (void)msgid;
    fprintf(stderr, "echonetd-send: %s: %s\n", en_service_prio_name(prio), msg);
    fflush(stderr);
}

static void ping(send_state *s)
{
    double now = en_mono_ms();

    if (s->watchdog_ms && now - s->last_ping >= (double)s->watchdog_ms / 2) {
        en_service_notify("WATCHDOG=1");
        s->last_ping = now;
    }
}

/* [send] as the network part wants it; refuses a configuration that
 * cannot send at all. */
static int settings(const en_config *c, en_send_peer *p, en_err *err)
{
    int rc;

    if (!c->keystore_file[0])
        return en_err_set(err, EN_EINVAL, "sending needs the key store: set [deid] "
                          "keystore_file (the link to each original study)");
    if (!c->send_peer_host[0] || !c->send_peer_ae_title[0])
        return en_err_set(err, EN_EINVAL, "[send] peer_host and peer_ae_title must be set "
                          "(the PACS that gets the results)");
    if ((rc = en_net_check_ae(c->send_ae_title, "[send] ae_title", err)) ||
        (rc = en_net_check_ae(c->send_peer_ae_title, "[send] peer_ae_title", err)))
        return rc;
    if (strlen(c->send_peer_host) >= sizeof p->host)
        return en_err_set(err, EN_EINVAL, "[send] peer_host: at most %zu characters",
                          sizeof p->host - 1);
    if (c->send_backoff_min_s > c->send_backoff_max_s)
        return en_err_set(err, EN_EINVAL, "[send] backoff_min_s (%d) is above backoff_max_s "
                          "(%d)", c->send_backoff_min_s, c->send_backoff_max_s);
    memset(p, 0, sizeof *p);
    /* Lengths checked above (an AE title is at most 16 characters). */
    memcpy(p->our_ae, c->send_ae_title, strlen(c->send_ae_title) + 1);
    memcpy(p->peer_ae, c->send_peer_ae_title, strlen(c->send_peer_ae_title) + 1);
    memcpy(p->host, c->send_peer_host, strlen(c->send_peer_host) + 1);
    p->port = c->send_peer_port;
    p->timeout_s = c->send_timeout_s;
    return EN_OK;
}

static void reload(send_state *s)
{
    en_config c;
    en_send_peer p;
    en_err e;

    en_config_defaults(&c);
    if (en_config_load(&c, s->conf_path, &e) != EN_OK || settings(&c, &p, &e) != EN_OK) {
        say(s, LOG_ERR, NULL, "reload refused, the running settings stay: %s", e.msg);
        return;
    }
    if (strcmp(c.send_outbox, s->cfg.send_outbox))
        say(s, LOG_WARNING, NULL, "[send] outbox changed: it applies after `systemctl "
            "restart echonetd-send`");
    snprintf(c.send_outbox, sizeof c.send_outbox, "%s", s->cfg.send_outbox);
    s->cfg = c;
    s->peer = p;
    say(s, LOG_NOTICE, NULL, "reloaded %s: sending to %s at %s:%d%s", s->conf_path, p.peer_ae,
        p.host, p.port, c.send_enabled ? "" : " (now disabled: nothing is sent)");
}

/* ---- filling the outbox ---------------------------------------------------------- */

typedef struct scan_ctx {
    send_state *s;
    int added;
    en_err *err;
} scan_ctx;

static int scan_one(const en_store_study *st, void *ud)
{
    scan_ctx *x = ud;
    int rc;

    if (st->res.version < 1 || st->stale || isnan(st->res.ef_mean) || st->res.beats <= 0 ||
        st->res.computed_ms < en_outbox_since(x->s->ob))
        return 0;
    rc = en_outbox_enqueue(x->s->ob, st->pseudonym, st->res.version, en_wall_ms(), x->err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        x->added++;
        say(x->s, LOG_INFO, NULL, "study %s result version %d queued for sending",
            st->pseudonym, st->res.version);
    }
    return 0;
}

static int scan(send_state *s, en_store *st, en_err *err)
{
    en_store_filter f;
    scan_ctx x = {s, 0, err};

    memset(&f, 0, sizeof f);
    return en_store_study_list(st, &f, scan_one, &x, err);
}

/* ---- one attempt ----------------------------------------------------------------- */

static void remove_dir(const char *dir, char paths[2][EN_PATH_MAX + 16], int n)
{
    for (int i = 0; i < n; i++)
        (void)unlink(paths[i]);
    (void)rmdir(dir);
}

static int give_up(send_state *s, const en_outbox_item *it, int64_t now, const char *why,
                   en_err *err)
{
    char msg[600];

    snprintf(msg, sizeof msg, "not sent within [send] give_up_after_s = %d s after %d "
             "attempt(s); last error: %s", s->cfg.send_give_up_after_s, it->attempts,
             why && why[0] ? why : "none");
    s->failed++;
    say(s, LOG_WARNING, SEND_MSGID_FAILED, "study %s result version %d: %s; `echonetctl send "
        "%s` queues it again", it->pseudonym, it->version, msg, it->pseudonym);
    return en_outbox_finish(s->ob, it->pseudonym, it->version, EN_OUTBOX_FAILED, now, msg, err);
}

/* One try of one item.  Errors returned are the outbox's own (the round
 * stops); a failure to send is recorded in the outbox and returns EN_OK. */
static int attempt(send_state *s, en_store *st, en_outbox_item *it, en_err *err)
{
    char dir[EN_PATH_MAX], paths[2][EN_PATH_MAX + 16];
    const char *files[2];
    const char *tmp = getenv("TMPDIR");
    en_sr_uids uids;
    en_err e;
    int64_t now = en_wall_ms(), wait;
    en_send_defer defer = EN_SEND_READY;
    int rc, n = 0;

    if (now - it->enqueued_ms >= (int64_t)s->cfg.send_give_up_after_s * 1000) {
        if (it->state == EN_OUTBOX_PENDING)
            return give_up(s, it, now, it->last_error, err);
    }
    if ((rc = en_outbox_begin(s->ob, it->pseudonym, it->version, now, err)))
        return rc;
    it->attempts++;
    /* The objects hold the patient's identifiers: a private folder, removed
     * whatever happens (the unit's PrivateTmp= also drops it on a crash). */
    snprintf(dir, sizeof dir, "%s/echonetd-send.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        en_err_set(&e, EN_EIO, "cannot make a temporary folder in %s: %s",
                   tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
        rc = EN_EIO;
    } else {
        rc = en_send_build(&s->cfg, st, it->pseudonym, it->version, now, dir, paths, &n,
                           &defer, &uids, &e);
        if (rc == EN_OK) {
            files[0] = paths[0];
            files[1] = paths[1];
            rc = en_send_files(&s->peer, files, n, &e);
        }
        remove_dir(dir, paths, n);
    }
    now = en_wall_ms();
    if (rc == EN_OK) {
        if (s->pause_ms > 0)
            usleep((useconds_t)s->pause_ms * 1000);
        s->sent++;
        say(s, LOG_NOTICE, SEND_MSGID_SENT, "study %s result version %d sent to %s at %s:%d "
            "(%s, attempt %d)", it->pseudonym, it->version, s->peer.peer_ae, s->peer.host,
            s->peer.port, n == 2 ? "SR and PDF" : s->cfg.report_pdf
                ? "SR only: its PDF report was never drawn" : "SR only: [report] pdf = no",
            it->attempts);
        return en_outbox_sent(s->ob, it->pseudonym, it->version, now, err);
    }
    if (defer == EN_SEND_REPORT_PENDING) {
        say(s, LOG_DEBUG, NULL, "%s: waiting for it", e.msg);
        return en_outbox_retry(s->ob, it->pseudonym, it->version,
                               now + (int64_t)s->cfg.send_poll_s * 1000, e.msg, err);
    }
    if (defer == EN_SEND_SUPERSEDED) {
        say(s, LOG_INFO, NULL, "%s: not sent, the newer version will be", e.msg);
        return en_outbox_finish(s->ob, it->pseudonym, it->version, EN_OUTBOX_SUPERSEDED, now,
                                e.msg, err);
    }
    if (rc == EN_EINVAL && n == 0) {
        /* The result or its key store record cannot make an SR (no EF, a
         * malformed identifier): retrying changes nothing. */
        s->failed++;
        say(s, LOG_WARNING, SEND_MSGID_FAILED, "%s", e.msg);
        return en_outbox_finish(s->ob, it->pseudonym, it->version, EN_OUTBOX_FAILED, now,
                                e.msg, err);
    }
    if (now - it->enqueued_ms >= (int64_t)s->cfg.send_give_up_after_s * 1000) {
        if ((rc = en_outbox_retry(s->ob, it->pseudonym, it->version, now, e.msg, err)))
            return rc;
        it->state = EN_OUTBOX_PENDING;
        return give_up(s, it, now, e.msg, err);
    }
    wait = en_outbox_backoff_ms(it->attempts, (int64_t)s->cfg.send_backoff_min_s * 1000,
                                (int64_t)s->cfg.send_backoff_max_s * 1000);
    s->retried++;
    say(s, LOG_WARNING, NULL, "study %s result version %d: attempt %d failed: %s; next try "
        "in %lld s", it->pseudonym, it->version, it->attempts, e.msg, (long long)(wait / 1000));
    return en_outbox_retry(s->ob, it->pseudonym, it->version, now + wait, e.msg, err);
}

/* One round: fill the outbox, then try what is due.  A missing database
 * (the daemon has not run yet) is not an error. */
static int round_once(send_state *s, en_err *err)
{
    en_store *st = NULL;
    en_outbox_item it;
    struct stat sb;
    int rc;

    if (stat(s->cfg.database, &sb) != 0)
        return EN_OK;
    if ((rc = en_store_open(s->cfg.database, EN_STORE_READONLY, &st, err)))
        return rc;
    rc = scan(s, st, err);
    while (rc == EN_OK && !send_stop) {
        ping(s);
        rc = en_outbox_next(s->ob, en_wall_ms(), &it, err);
        if (rc == EN_ENOTFOUND) {
            rc = EN_OK;
            break;
        }
        if (rc == EN_OK)
            rc = attempt(s, st, &it, err);
    }
    en_store_close(st);
    return rc;
}

static void status(send_state *s)
{
    int64_t c[EN_OUTBOX_NSTATES];
    en_err e;

    if (en_outbox_counts(s->ob, c, &e) != EN_OK)
        return;
    en_service_notify("STATUS=to %s at %s:%d: %lld pending, %lld sent, %lld failed in the outbox; "
           "this run: %lld sent, %lld retries", s->peer.peer_ae, s->peer.host, s->peer.port,
           (long long)(c[EN_OUTBOX_PENDING] + c[EN_OUTBOX_SENDING]),
           (long long)c[EN_OUTBOX_SENT], (long long)c[EN_OUTBOX_FAILED], (long long)s->sent,
           (long long)s->retried);
}

/* The outbox's folder, made when absent (outside systemd, where
 * echonetd.tmpfiles makes it): private, since only this process writes it. */
static int outbox_dir(const char *path, en_err *err)
{
    char dir[EN_PATH_MAX];
    char *slash;

    if (strlen(path) >= sizeof dir)
        return en_err_set(err, EN_EINVAL, "[send] outbox: path longer than %zu characters",
                          sizeof dir - 1);
    memcpy(dir, path, strlen(path) + 1);
    if (!(slash = strrchr(dir, '/')) || slash == dir)
        return EN_OK;
    *slash = '\0';
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return EN_OK;
    return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "[send] outbox: cannot "
                      "create folder %s: %s", dir, strerror(errno));
}

static void usage(FILE *f)
{
    fprintf(f, "usage: echonetd-send [-c FILE] [-v] [--once]\n"
               "Sends study results to the PACS as DICOM SR and PDF; runs in the "
               "foreground.\nSee echonetd.conf [send] and docs/dicom-network.md.\n");
}

int main(int argc, char **argv)
{
    static send_state ss;
    send_state *s = &ss;
    const char *conf = getenv("ECHONETD_CONF");
    struct sigaction sa;
    en_err e;
    int rc = EN_OK;

    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            conf = argv[++i];
        else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
            s->verbose = 1;
        else if (!strcmp(argv[i], "--once"))
            s->once = 1;
        else if (!strcmp(argv[i], "--pause-after-store") && i + 1 < argc)
            s->pause_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    snprintf(s->conf_path, sizeof s->conf_path, "%s",
             conf && conf[0] ? conf : EN_SYSCONFDIR "/echonetd.conf");
    s->journal = en_service_journal();
    s->watchdog_ms = en_service_watchdog_ms();
    en_config_defaults(&s->cfg);
    if (en_config_load(&s->cfg, s->conf_path, &e) != EN_OK) {
        say(s, LOG_ERR, NULL, "%s", e.msg);
        return 3;
    }
    if (!s->cfg.send_enabled) {
        say(s, LOG_NOTICE, NULL, "sending is off ([send] enabled = no in %s): nothing to do",
            s->conf_path);
        en_service_notify("READY=1\nSTATUS=sending is off ([send] enabled = no)");
        return 0;
    }
    if (settings(&s->cfg, &s->peer, &e) != EN_OK || outbox_dir(s->cfg.send_outbox, &e) ||
        en_outbox_open(s->cfg.send_outbox, &s->ob, &e) != EN_OK) {
        say(s, LOG_ERR, NULL, "cannot start: %s", e.msg);
        return 3;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    say(s, LOG_NOTICE, NULL, "started: sending as %s to %s at %s:%d, outbox %s", s->peer.our_ae,
        s->peer.peer_ae, s->peer.host, s->peer.port, s->cfg.send_outbox);
    en_service_notify("READY=1");
    s->last_ping = en_mono_ms();
    while (!send_stop) {
        if (send_hup) {
            send_hup = 0;
            reload(s);
        }
        if (s->cfg.send_enabled && (rc = round_once(s, &e)) != EN_OK) {
            /* The database or the outbox is busy or broken: logged, retried
             * next round (a broken file needs an operator either way). */
            say(s, LOG_ERR, NULL, "round failed, retried in %d s: %s", s->cfg.send_poll_s,
                e.msg);
        }
        status(s);
        if (s->once)
            break;
        for (int t = 0; t < s->cfg.send_poll_s * 5 && !send_stop && !send_hup; t++) {
            ping(s);
            usleep(200 * 1000);
        }
    }
    en_service_notify("STOPPING=1");
    say(s, LOG_NOTICE, NULL, "stopped: %lld sent, %lld retries, %lld given up in this run",
        (long long)s->sent, (long long)s->retried, (long long)s->failed);
    en_outbox_close(s->ob);
    return rc != EN_OK ? 1 : 0;
}

/*
 * echonetd-recv.c - the DICOM receiver service: ultrasound machines and
 * PACS send studies to it with C-STORE, and it hands every instance to
 * echonetd's inbox (docs/dicom-network.md).
 *
 *   echonetd-recv [-c FILE] [-v]      run in the foreground (systemd Type=notify)
 *
 * It is a separate program so that echonetd itself keeps no network at all
 * (its unit has PrivateNetwork=yes): the one network-facing process is this
 * small loop around DCMTK's Storage SCP (src/net), which only ever writes
 * into the spool.  Settings: [recv] in echonetd.conf, plus [daemon] inbox
 * (where instances go) and [limits] max_file_mb (the largest instance).
 *
 * Start-up checks the folders, loads the TLS material and opens the port;
 * READY=1 follows, STATUS= shows the counts, WATCHDOG=1 comes from the
 * accept loop's tick.  SIGTERM/SIGINT: no new association; running ones may
 * finish for [recv] stop_grace_s, then are cut (their unacknowledged
 * instances are sent again by the peers).  SIGHUP re-reads the file and
 * applies the allow-list and limits; a change of AE title, port, folders,
 * timeout or TLS is logged as needing a restart.
 *
 * Log lines carry AE titles and addresses of peers (configuration, not
 * patient data) and never a UID or a name.  In the journal: ECHONET_PEER_AE=,
 * ECHONET_EVENT= (refused, stored, association, cut, error) and MESSAGE_IDs
 * for refusals, cuts and errors, which operators alert on.
 */
#include "config.h"

#include "en_config.h"
#include "en_service.h"
#include "en_err.h"
#include "en_net.h"
#include "en_util.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif

#ifndef EN_SYSCONFDIR
#define EN_SYSCONFDIR "/etc"
#endif

#define RECV_MSGID_REFUSED "5c0e8a9b3d2f4e71a6b4c9d0e1f27384"
#define RECV_MSGID_CUT "a1d4f7e2b5c84093b6e1d2c3f4a5b697"
#define RECV_MSGID_ERROR "e9c2b7a4d1f04e5a8b3c6d7e0f192a3b"
#define RECV_MSGID_STARTED "3b8d1e6f2a9c4d70b5e4f3a2c1d0e9f8"

typedef struct recv_state {
    char conf_path[EN_PATH_MAX];
    en_config cfg;
    en_net_scp_config net;
    en_net_scp *scp;
    int verbose;
    int journal;
    uint64_t watchdog_ms;       /* 0: no watchdog */
    double last_ping, last_status;
} recv_state;

static volatile sig_atomic_t recv_stop, recv_hup;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        recv_hup = 1;
    else
        recv_stop = 1;
}

static const char *event_name(en_net_event ev)
{
    switch (ev) {
    case EN_NET_EV_REFUSED: return "refused";
    case EN_NET_EV_STORED: return "stored";
    case EN_NET_EV_ASSOCIATION: return "association";
    case EN_NET_EV_CUT: return "cut";
    case EN_NET_EV_ERROR: return "error";
    }
    return "other";
}

/* Called from association threads too: sd_journal_send and one fprintf
 * per line are both safe to call concurrently. */
static void recv_log(void *user, int prio, en_net_event ev, const char *peer, const char *msg)
{
    const recv_state *r = user;
    const char *msgid = ev == EN_NET_EV_REFUSED ? RECV_MSGID_REFUSED
                      : ev == EN_NET_EV_CUT ? RECV_MSGID_CUT
                      : ev == EN_NET_EV_ERROR ? RECV_MSGID_ERROR : NULL;

    if (prio >= EN_NET_DEBUG && !r->verbose)
        return;
#ifdef HAVE_LIBSYSTEMD
    if (r->journal) {
        if (msgid)
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-recv", "ECHONET_EVENT=%s",
                            event_name(ev), "ECHONET_PEER_AE=%s", peer, "MESSAGE_ID=%s", msgid,
                            NULL);
        else
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-recv", "ECHONET_EVENT=%s",
                            event_name(ev), "ECHONET_PEER_AE=%s", peer, NULL);
        return;
    }
#endif
    (void)msgid;
    fprintf(stderr, "echonetd-recv: %s: %s\n", en_service_prio_name(prio), msg);
    fflush(stderr);
}

static void say(recv_state *r, int prio, const char *msgid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(recv_state *r, int prio, const char *msgid, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#ifdef HAVE_LIBSYSTEMD
    if (r->journal) {
        if (msgid)
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-recv", "MESSAGE_ID=%s", msgid, NULL);
        else
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                            "SYSLOG_IDENTIFIER=echonetd-recv", NULL);
        return;
    }
#endif
    (void)msgid;
    fprintf(stderr, "echonetd-recv: %s: %s\n", en_service_prio_name(prio), msg);
    fflush(stderr);
}

/* [recv] (plus the inbox and the instance limit) as the network module
 * wants them. */
static int recv_settings(const en_config *c, en_net_scp_config *n, en_err *err)
{
    int rc;

    en_net_scp_config_default(n);
    if ((rc = en_net_check_ae(c->recv_ae_title, "[recv] ae_title", err)))
        return rc;
    snprintf(n->ae_title, sizeof n->ae_title, "%.16s", c->recv_ae_title);
    n->port = c->recv_port;
    if ((rc = en_net_parse_ae_list(c->recv_allow, n, err)))
        return rc;
    snprintf(n->staging_dir, sizeof n->staging_dir, "%s", c->recv_staging);
    snprintf(n->inbox_dir, sizeof n->inbox_dir, "%s", c->inbox_dir);
    n->max_instance_bytes = c->limits.max_file_bytes;
    n->max_association_bytes = c->recv_max_association_bytes;
    n->max_association_s = c->recv_max_association_s;
    n->timeout_s = c->recv_timeout_s;
    n->max_associations = c->recv_max_associations;
    n->min_free_bytes = c->recv_min_free_bytes;
    n->tls.enabled = c->recv_tls;
    n->tls.verify_peer = c->recv_tls_verify_peer;
    snprintf(n->tls.certificate, sizeof n->tls.certificate, "%s", c->recv_tls_certificate);
    snprintf(n->tls.private_key, sizeof n->tls.private_key, "%s", c->recv_tls_private_key);
    snprintf(n->tls.trusted, sizeof n->tls.trusted, "%s", c->recv_tls_trusted);
    return EN_OK;
}

static void reload(recv_state *r)
{
    en_config c;
    en_net_scp_config n;
    en_err e;
    int restart = 0;

    en_config_defaults(&c);
    if (en_config_load(&c, r->conf_path, &e) != EN_OK || recv_settings(&c, &n, &e) != EN_OK ||
        en_net_scp_reconfigure(r->scp, &n, &restart, &e) != EN_OK) {
        say(r, EN_NET_ERR, NULL, "reload refused, the running settings stay: %s", e.msg);
        return;
    }
    say(r, EN_NET_NOTICE, NULL, "reloaded %s: %d allowed AE title(s); limits apply to new "
        "associations", r->conf_path, n.nallow);
    if (restart)
        say(r, EN_NET_WARN, NULL, "the AE title, port, folders, timeout or TLS settings "
            "changed: they apply after `systemctl restart echonetd-recv`");
    r->cfg = c;
    r->net = n;
}

static void status(recv_state *r)
{
    en_net_scp_stats s;

    en_net_scp_stats_get(r->scp, &s);
    en_service_notify("STATUS=AE %s port %d: %d running, %llu associations, %llu stored (%.0f MiB), "
           "%llu refused instances, %llu refused associations", r->net.ae_title,
           en_net_scp_port(r->scp), s.active, s.associations, s.stored,
           (double)s.bytes / (1024.0 * 1024.0), s.refused, s.refused_assoc);
}

static int tick(void *user)
{
    recv_state *r = user;
    double now = en_mono_ms();

    if (r->watchdog_ms && now - r->last_ping >= (double)r->watchdog_ms / 2) {
        en_service_notify("WATCHDOG=1");
        r->last_ping = now;
    }
    if (now - r->last_status >= 2000) {
        status(r);
        r->last_status = now;
    }
    if (recv_hup) {
        recv_hup = 0;
        reload(r);
    }
    if (recv_stop) {
        static int said;
        if (!said++) {
            en_service_notify("STOPPING=1");
            say(r, EN_NET_NOTICE, NULL, "stopping: no new association; running ones may "
                "finish for %d s", r->cfg.recv_stop_grace_s);
        }
        return 1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: echonetd-recv [-c FILE] [-v]\n"
               "Receives DICOM studies (C-STORE) into echonetd's inbox; runs in the "
               "foreground.\nSee echonetd.conf [recv] and docs/dicom-network.md.\n");
}

int main(int argc, char **argv)
{
    static recv_state rs;
    recv_state *r = &rs;
    const char *conf = getenv("ECHONETD_CONF");
    struct sigaction sa;
    en_err e;
    int rc;

    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            conf = argv[++i];
        else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
            r->verbose = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    snprintf(r->conf_path, sizeof r->conf_path, "%s",
             conf && conf[0] ? conf : EN_SYSCONFDIR "/echonetd.conf");
    r->journal = en_service_journal();
    r->watchdog_ms = en_service_watchdog_ms();
    en_config_defaults(&r->cfg);
    if (en_config_load(&r->cfg, r->conf_path, &e) != EN_OK ||
        recv_settings(&r->cfg, &r->net, &e) != EN_OK) {
        say(r, EN_NET_ERR, NULL, "%s", e.msg);
        return 3;
    }
    /* A peer that vanishes mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    if (en_net_scp_open(&r->scp, &r->net, recv_log, r, &e) != EN_OK) {
        say(r, EN_NET_ERR, NULL, "cannot start: %s", e.msg);
        return 3;
    }
    say(r, EN_NET_NOTICE, RECV_MSGID_STARTED, "started: AE title %s listening on port %d%s, "
        "%d allowed peer AE title(s), delivering into %s", r->net.ae_title,
        en_net_scp_port(r->scp), r->net.tls.enabled ? " (TLS)" : "", r->net.nallow,
        r->net.inbox_dir);
    if (r->net.nallow == 0)
        say(r, EN_NET_WARN, NULL, "[recv] allow is empty: every association will be refused "
            "until the peers' AE titles are listed");
    en_service_notify("READY=1");
    r->last_ping = r->last_status = en_mono_ms();
    status(r);
    rc = en_net_scp_serve(r->scp, tick, r, r->cfg.recv_stop_grace_s, &e);
    if (rc != EN_OK)
        say(r, EN_NET_ERR, NULL, "stopped: %s", e.msg);
    {
        en_net_scp_stats s;
        en_net_scp_stats_get(r->scp, &s);
        say(r, EN_NET_NOTICE, NULL, "stopped: %llu associations, %llu instances stored, %llu "
            "refused in this run", s.associations, s.stored, s.refused);
    }
    en_net_scp_close(r->scp);
    return rc == EN_OK ? 0 : 1;
}

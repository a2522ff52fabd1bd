/*
 * listen.cc - the receiver's server half (en_net.h): set-up, the accept
 * loop and its threads.  DCMTK does the protocol: ASC_initializeNetwork
 * opens the port, ASC_receiveAssociation reads each association request
 * (and does the TLS handshake through dcmtls), and scp.cc runs the
 * association in a thread of its own.
 *
 * The accept loop is ours, not DcmSCPPool's, because the service must get
 * control back about once a second (its tick: watchdog, signals, status)
 * and DcmSCPPool's loop never returns to its caller.  Ours counts running
 * associations and refuses past max_associations, cuts associations still
 * running at twice max_association_s, and on stop closes the port, lets
 * running associations finish for a grace period, then cuts them.
 * Cutting is a shutdown() of the association's socket from this thread:
 * the association thread's blocked read returns, DCMTK ends the
 * association, and scp.cc discards whatever was half received.
 *
 * Process-wide DCMTK settings made here: its loggers are off (at debug
 * level they print whole commands, UIDs included), no reverse DNS lookup
 * per association, and the socket timeouts (see net_config).
 */
#include "scp_int.h"

#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "en_util.h"
}

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <new>

#define NET_MAX_PDU 65536u

static void net_vlog(en_net_scp *s, int prio, en_net_event ev, const char *peer,
                     const char *fmt, va_list ap)
{
    char msg[768];

    if (!s->log)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *c = msg; *c; c++)     /* DCMTK's condition texts span lines */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    s->log(s->user, prio, ev, peer ? peer : "", msg);
}

void net_log(en_net_scp *s, int prio, en_net_event ev, const char *peer, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    net_vlog(s, prio, ev, peer, fmt, ap);
    va_end(ap);
}

/* DcmTransportConnection keeps its socket protected; a pointer to the
 * inherited member, taken in a derived class, is the standard way to read
 * it without changing DCMTK. */
struct NetSocketOf : DcmTransportConnection {
    static DcmNativeSocketType of(DcmTransportConnection *c)
    {
        return (c->*(&NetSocketOf::getSocket))();
    }
};

DcmNativeSocketType net_socket(DcmTransportConnection *c)
{
    return NetSocketOf::of(c);
}

/* ---- set-up ---------------------------------------------------------------- */

static std::once_flag net_once;

static void net_init_once(void)
{
    /* DCMTK's loggers would print commands (with UIDs) at debug level. */
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
    dcmDisableGethostbyaddr.set(OFTrue);    /* no reverse DNS per association */
}

static int net_config(en_net_scp *s, en_err *err)
{
    DcmSCPConfig &c = *s->shared;

    if ((s->nts = net_syntaxes(s->ts, NET_MAX_SYNTAXES)) == 0)
        return en_err_set(err, EN_EUNSUPPORTED, "receiver: no transfer syntax is decodable");
    c.setAETitle(s->cfg.ae_title);
    c.setRespondWithCalledAETitle(OFFalse);
    c.setMaxReceivePDULength(NET_MAX_PDU);
    c.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    c.setDIMSETimeout((Uint32)s->cfg.timeout_s);
    c.setACSETimeout((Uint32)(s->cfg.timeout_s < 30 ? s->cfg.timeout_s : 30));
    c.setHostLookupEnabled(OFFalse);
    c.setProgressNotificationMode(OFFalse);
    /* Sockets are made in the accept thread, which must come back to its
     * tick within the watchdog period: a peer stalling in its association
     * request or TLS handshake holds it for the ACSE timeout at most.  Each
     * association thread then sets timeout_s on its own socket (scp.cc). */
    dcmSocketReceiveTimeout.set((Sint32)s->shared->getACSETimeout());
    dcmSocketSendTimeout.set((Sint32)s->shared->getACSETimeout());
    return EN_OK;
}

static int net_tls(en_net_scp *s, en_err *err)
{
    const en_net_tls *t = &s->cfg.tls;
    struct stat st;
    OFCondition r;

    if (!t->certificate[0] || !t->private_key[0])
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls = yes needs tls_certificate "
                          "and tls_private_key");
    s->tls = new DcmTLSTransportLayer(NET_ACCEPTOR, NULL, OFTrue);
    if (s->tls->setPrivateKeyFile(t->private_key, DCF_Filetype_PEM).bad())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_private_key = %s: cannot load "
                          "a PEM private key from it (unencrypted, readable by echonetd)",
                          t->private_key);
    if (s->tls->setCertificateFile(t->certificate, DCF_Filetype_PEM).bad())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_certificate = %s: cannot load "
                          "a PEM certificate from it", t->certificate);
    if (!s->tls->checkPrivateKeyMatchesCertificate())
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_private_key %s does not belong "
                          "to tls_certificate %s", t->private_key, t->certificate);
    if (t->trusted[0]) {
        if (stat(t->trusted, &st) != 0)
            return en_err_set(err, EN_ENOTFOUND, "receiver: [recv] tls_trusted = %s: %s",
                              t->trusted, strerror(errno));
        r = S_ISDIR(st.st_mode) ? s->tls->addTrustedCertificateDir(t->trusted, DCF_Filetype_PEM)
                                : s->tls->addTrustedCertificateFile(t->trusted, DCF_Filetype_PEM);
        if (r.bad())
            return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_trusted = %s: no PEM "
                              "certificate could be loaded (%s)", t->trusted, r.text());
    } else if (t->verify_peer) {
        return en_err_set(err, EN_EINVAL, "receiver: [recv] tls_verify_peer = yes needs "
                          "tls_trusted (the peers' certificates or their CA)");
    }
    if ((r = s->tls->setTLSProfile(TSP_Profile_BCP195_ND)).bad() ||
        (r = s->tls->activateCipherSuites()).bad())
        return en_err_set(err, EN_EINVAL, "receiver: TLS profile BCP 195: %s", r.text());
    s->tls->setCertificateVerification(t->verify_peer ? DCV_requireCertificate
                                                      : DCV_ignoreCertificate);
    if ((r = ASC_setTransportLayer(s->net, s->tls, 0)).bad())
        return en_err_set(err, EN_EINVAL, "receiver: enabling TLS: %s", r.text());
    return EN_OK;
}

static int net_listen(en_net_scp *s, en_err *err)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    OFCondition r = ASC_initializeNetwork(NET_ACCEPTOR, s->cfg.port,
                                          (int)s->shared->getACSETimeout(), &s->net);

    if (r.bad()) {
        s->net = NULL;
        return en_err_set(err, EN_EIO, "receiver: cannot listen on port %d: %s (is another "
                          "DICOM receiver using it? ports below 1024 need "
                          "CAP_NET_BIND_SERVICE)", s->cfg.port, r.text());
    }
    s->port = s->cfg.port;
    if (getsockname(DUL_networkSocket(s->net->network), (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    return EN_OK;
}

extern "C" int en_net_scp_open(en_net_scp **out, const en_net_scp_config *cfg,
                               en_net_log_fn log, void *user, en_err *err)
{
    en_net_scp *s = NULL;
    int rc, removed = 0;

    *out = NULL;
    if ((rc = en_net_check_ae(cfg->ae_title, "[recv] ae_title", err)))
        return rc;
    if (cfg->port < 0 || cfg->port > 65535 || cfg->max_associations < 1 || cfg->timeout_s < 1 ||
        cfg->max_association_s < 1)
        return en_err_set(err, EN_EINVAL, "receiver: port, max_associations, timeout_s or "
                          "max_association_s out of range");
    std::call_once(net_once, net_init_once);
    try {
        s = new en_net_scp();
        s->cfg = *cfg;
        s->log = log;
        s->user = user;
        s->net = NULL;
        s->tls = NULL;
        s->spool.staging_fd = s->spool.inbox_fd = -1;
        memset(&s->stats, 0, sizeof s->stats);
        if ((rc = net_spool_open(&s->spool, cfg->staging_dir, cfg->inbox_dir, &removed, err)) ||
            (rc = net_config(s, err)) || (rc = net_listen(s, err)) ||
            (cfg->tls.enabled && (rc = net_tls(s, err)))) {
            en_net_scp_close(s);
            return rc;
        }
    } catch (const std::bad_alloc &) {
        en_net_scp_close(s);
        return en_err_set(err, EN_ENOMEM, "receiver: out of memory while starting");
    }
    if (removed)
        net_log(s, EN_NET_NOTICE, EN_NET_EV_CUT, "", "removed %d unfinished transfer(s) left in "
                "%s by an earlier run: never acknowledged, the peers send them again", removed,
                cfg->staging_dir);
    *out = s;
    return EN_OK;
}

/* ---- the accept loop ---------------------------------------------------------- */

/* Shuts the connection under a running association down (from the accept
 * thread): its blocked read returns, DCMTK ends the association, and
 * whatever was half received is discarded by the handler. */
static void net_cut(net_worker *w)
{
    std::lock_guard<std::mutex> l(w->mu);
    if (w->cut || !w->assoc || !w->assoc->DULassociation)
        return;
    DcmTransportConnection *tc = DUL_getTransportConnection(w->assoc->DULassociation);
    w->cut = true;
    if (tc)
        shutdown(net_socket(tc), SHUT_RDWR);
}

/* Joins finished workers; cuts those past twice their time budget. */
static int net_reap(en_net_scp *s, bool cut_all)
{
    std::list<net_worker *> done;
    int running = 0;
    double now = en_mono_ms(), hard = 2000.0 * s->cfg.max_association_s;

    {
        std::lock_guard<std::mutex> l(s->mu);
        for (auto it = s->workers.begin(); it != s->workers.end();) {
            if ((*it)->done) {
                done.push_back(*it);
                it = s->workers.erase(it);
                continue;
            }
            running++;
            if (cut_all || now - (*it)->t0 > hard) {
                if (!(*it)->cut && !cut_all) {
                    char ae[EN_NET_AE_MAX] = "";
                    {
                        std::lock_guard<std::mutex> wl((*it)->mu);
                        if ((*it)->assoc && (*it)->assoc->params)
                            net_ae_copy(ae, (*it)->assoc->params->DULparams.callingAPTitle);
                    }
                    net_log(s, EN_NET_WARN, EN_NET_EV_CUT, ae, "association from AE '%s' cut: "
                            "still running after %d s, twice [recv] max_association_s", ae,
                            2 * s->cfg.max_association_s);
                }
                net_cut(*it);
            }
            ++it;
        }
        s->stats.active = running;
    }
    for (net_worker *w : done) {
        w->th.join();
        delete w;
    }
    return running;
}

static void net_reject_busy(en_net_scp *s, T_ASC_Association *a, int running)
{
    T_ASC_RejectParameters rej;
    char ae[EN_NET_AE_MAX] = "";

    if (a->params)
        net_ae_copy(ae, a->params->DULparams.callingAPTitle);
    net_log(s, EN_NET_WARN, EN_NET_EV_REFUSED, ae, "association from AE '%s' (%s) refused for "
            "now: %d associations already running ([recv] max_associations); the peer may "
            "retry", ae, a->params ? a->params->DULparams.callingPresentationAddress : "?",
            running);
    rej.result = ASC_RESULT_REJECTEDTRANSIENT;
    rej.source = ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED;
    rej.reason = ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED;
    ASC_rejectAssociation(a, &rej);
    {
        std::lock_guard<std::mutex> l(s->mu);
        s->stats.refused_assoc++;
    }
}

static bool net_start_worker(en_net_scp *s, T_ASC_Association *a)
{
    net_worker *w = NULL;

    try {
        w = new net_worker();
        w->srv = s;
        w->assoc = a;
        w->t0 = en_mono_ms();
        std::lock_guard<std::mutex> l(s->mu);
        w->th = std::thread(net_run_association, w);
        s->workers.push_back(w);
        s->stats.active++;
        return true;
    } catch (const std::exception &) {
        delete w;
        net_log(s, EN_NET_ERR, EN_NET_EV_ERROR, "", "cannot start a thread for an association "
                "(out of memory or threads): it was dropped");
        return false;
    }
}

extern "C" int en_net_scp_serve(en_net_scp *s, int (*tick)(void *user), void *tick_user,
                                int grace_s, en_err *err)
{
    const bool secure = s->tls != NULL;
    int rc = EN_OK, failures = 0;

    for (;;) {
        if (tick && tick(tick_user))
            break;
        net_reap(s, false);
        T_ASC_Association *a = NULL;
        OFCondition r = ASC_receiveAssociation(s->net, &a, NET_MAX_PDU, NULL, NULL,
                                               secure ? OFTrue : OFFalse, DUL_NOBLOCK, 1);
        if (r == DUL_NOASSOCIATIONREQUEST) {
            ASC_destroyAssociation(&a);
            failures = 0;
            continue;
        }
        if (r.bad()) {
            /* A port scan, a peer speaking something else, a failed TLS
             * handshake: nothing was accepted. */
            net_log(s, EN_NET_NOTICE, EN_NET_EV_REFUSED, "", "a connection was dropped before "
                    "any association: %s", r.text());
            if (a) {
                ASC_dropAssociation(a);
                ASC_destroyAssociation(&a);
            }
            if (++failures > 1000) {   /* the listening socket itself is broken */
                rc = en_err_set(err, EN_EIO, "receiver: accepting connections keeps failing "
                                "(%s)", r.text());
                break;
            }
            continue;
        }
        failures = 0;
        int max, running = net_reap(s, false);   /* now, not before the wait */
        {
            std::lock_guard<std::mutex> l(s->mu);
            max = s->cfg.max_associations;
        }
        if (running >= max || !net_start_worker(s, a)) {
            if (running >= max)
                net_reject_busy(s, a, running);
            ASC_dropAssociation(a);
            ASC_destroyAssociation(&a);
        }
    }
    /* Stop: no new connection is even accepted, running ones may finish. */
    ASC_dropNetwork(&s->net);
    s->net = NULL;
    for (double t0 = en_mono_ms(); net_reap(s, false) > 0;) {
        if (en_mono_ms() - t0 >= grace_s * 1000.0) {
            int n = net_reap(s, true);
            if (n > 0)
                net_log(s, EN_NET_NOTICE, EN_NET_EV_CUT, "", "stopping: %d association(s) "
                        "still running after %d s were cut; their unacknowledged instances "
                        "will be sent again by the peers", n, grace_s);
            break;
        }
        if (tick)
            tick(tick_user);    /* keeps the watchdog fed; the answer is known */
        usleep(100 * 1000);
    }
    for (;;) {
        std::list<net_worker *> left;
        {
            std::lock_guard<std::mutex> l(s->mu);
            left.swap(s->workers);
            s->stats.active = 0;
        }
        if (left.empty())
            break;
        for (net_worker *w : left) {
            w->th.join();
            delete w;
        }
    }
    return rc;
}

extern "C" int en_net_scp_reconfigure(en_net_scp *s, const en_net_scp_config *cfg,
                                      int *restart_needed, en_err *err)
{
    const en_net_scp_config *o = &s->cfg;
    int rc;

    if ((rc = en_net_check_ae(cfg->ae_title, "[recv] ae_title", err)))
        return rc;
    if (cfg->max_associations < 1 || cfg->timeout_s < 1 || cfg->max_association_s < 1)
        return en_err_set(err, EN_EINVAL, "receiver: max_associations, timeout_s or "
                          "max_association_s out of range");
    std::lock_guard<std::mutex> l(s->mu);
    *restart_needed = strcmp(o->ae_title, cfg->ae_title) != 0 || o->port != cfg->port ||
                      strcmp(o->staging_dir, cfg->staging_dir) != 0 ||
                      strcmp(o->inbox_dir, cfg->inbox_dir) != 0 ||
                      o->tls.enabled != cfg->tls.enabled ||
                      o->tls.verify_peer != cfg->tls.verify_peer ||
                      strcmp(o->tls.certificate, cfg->tls.certificate) != 0 ||
                      strcmp(o->tls.private_key, cfg->tls.private_key) != 0 ||
                      strcmp(o->tls.trusted, cfg->tls.trusted) != 0 ||
                      o->timeout_s != cfg->timeout_s;
    s->cfg.nallow = cfg->nallow;
    memcpy(s->cfg.allow, cfg->allow, sizeof s->cfg.allow);
    s->cfg.max_instance_bytes = cfg->max_instance_bytes;
    s->cfg.max_association_bytes = cfg->max_association_bytes;
    s->cfg.max_association_s = cfg->max_association_s;
    s->cfg.max_associations = cfg->max_associations;
    s->cfg.min_free_bytes = cfg->min_free_bytes;
    return EN_OK;
}

extern "C" void en_net_scp_stats_get(en_net_scp *s, en_net_scp_stats *out)
{
    std::lock_guard<std::mutex> l(s->mu);
    *out = s->stats;
}

extern "C" int en_net_scp_port(const en_net_scp *s)
{
    return s->port;
}

extern "C" void en_net_scp_close(en_net_scp *s)
{
    if (!s)
        return;
    if (s->net)
        ASC_dropNetwork(&s->net);
    delete s->tls;
    net_spool_close(&s->spool);
    delete s;
}

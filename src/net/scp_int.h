/*
 * scp_int.h - what the receiver's two DCMTK wrappers share (C++ only):
 *
 *   listen.cc  the server: set-up (folders, TLS, socket), the accept loop
 *              and its threads, cutting associations, reload, statistics
 *   scp.cc     one association: negotiation, AE titles, C-ECHO, C-STORE
 *
 * The server state is guarded by its mutex where association threads and
 * the accept loop both touch it (the allow-list and limits a reload
 * replaces, the statistics, the list of threads).
 */
#ifndef EN_NET_SCP_INT_H
#define EN_NET_SCP_INT_H

#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/scpcfg.h"
#include "dcmtk/dcmtls/tlslayer.h"

extern "C" {
#include "en_net.h"
#include "net_int.h"
}

#include <atomic>
#include <list>
#include <mutex>
#include <thread>

#define NET_MIB (1024.0 * 1024.0)

struct net_worker;

struct en_net_scp {
    en_net_scp_config cfg;             /* allow-list and limits: under mu */
    std::mutex mu;
    en_net_log_fn log;
    void *user;
    net_spool spool;
    T_ASC_Network *net;
    DcmTLSTransportLayer *tls;
    DcmSharedSCPConfig shared;         /* timeouts, PDU size, our AE title */
    int port;
    const char *ts[NET_MAX_SYNTAXES];  /* accepted transfer syntaxes */
    int nts;
    std::list<net_worker *> workers;   /* under mu */
    en_net_scp_stats stats;            /* under mu */
};

/* One association: its thread, and what the accept loop needs to cut it. */
struct net_worker {
    en_net_scp *srv;
    T_ASC_Association *assoc;          /* under mu: NULL once destroyed */
    std::mutex mu;
    std::thread th;
    std::atomic<bool> done{false};
    double t0;                         /* en_mono_ms at accept */
    std::atomic<bool> cut{false};
};

/* One log line through the service's callback; newlines become spaces. */
void net_log(en_net_scp *s, int prio, en_net_event ev, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The socket under a connection (DCMTK keeps it protected). */
DcmNativeSocketType net_socket(DcmTransportConnection *c);

/* Runs w's association to its end and destroys it (scp.cc); sets w->done. */
void net_run_association(net_worker *w);

#endif

/*
 * en_net.h - DICOM networking (C API over DCMTK's dcmnet and dcmtls).
 *
 * The receiver is a Storage SCP: an ultrasound machine or a PACS sends a
 * study to it with C-STORE, and each accepted instance is handed to the
 * daemon's inbox the way the daemon trusts (docs/operations.md, "Deliver
 * files safely"): written whole to a staging file on the inbox's file
 * system, fsynced, checked to be whole DICOM, renamed into the inbox, the
 * inbox fsynced, and only then acknowledged with status Success.  An
 * instance that was acknowledged is therefore on disk whatever happens
 * next, and the inbox never holds half a file.
 *
 * What it refuses, and how the peer hears it (docs/dicom-network.md):
 * - a calling AE title not on the allow-list, or a called AE title that is
 *   not ours: A-ASSOCIATE-RJ (permanent, "AE title not recognised");
 * - more associations at once than configured: A-ASSOCIATE-RJ (transient,
 *   "local limit exceeded");
 * - a SOP class echonetd cannot use: C-STORE status 0122H (SOP class not
 *   supported); an instance whose stream is not whole DICOM: C000H;
 * - an instance larger than its cap, an association past its size or time
 *   budget, a spool file system short of space: A700H (out of resources);
 * - an association still running at twice its time budget: the connection
 *   is closed (nothing half-received is kept).
 * Each refusal is one log line through the callback.  No line ever holds a
 * UID, a patient name or any other value from a dataset: only AE titles and
 * addresses of peers (configuration, not patient data), SOP class names,
 * sizes and durations.
 *
 * Associations run in threads of their own (at most max_associations); the
 * calling thread accepts them and calls `tick` about once a second, so a
 * service can ping its watchdog and notice signals without threads of its
 * own.
 */
#ifndef EN_NET_H
#define EN_NET_H

#include <stdint.h>

#include "en_config.h"
#include "en_err.h"

#define EN_NET_AE_MAX 17          /* 16 characters + NUL */
#define EN_NET_MAX_PEERS 64       /* AE titles on an allow-list */

/* Log priorities: syslog's numbers, so a journal writer passes them on. */
enum {
    EN_NET_ERR = 3,
    EN_NET_WARN = 4,
    EN_NET_NOTICE = 5,
    EN_NET_INFO = 6,
    EN_NET_DEBUG = 7
};

/* What a log line is about, for journal fields and alerting. */
typedef enum en_net_event {
    EN_NET_EV_REFUSED = 0,   /* an association or an instance was refused */
    EN_NET_EV_STORED,        /* one instance is in the inbox (debug) */
    EN_NET_EV_ASSOCIATION,   /* an association ended: counts and duration */
    EN_NET_EV_CUT,           /* a transfer was cut: nothing of it was kept */
    EN_NET_EV_ERROR          /* the receiver itself failed (disk, memory) */
} en_net_event;

/* Called from any association thread, one call per line; peer_ae may be
 * "" when the peer never said who it was.  Must be thread-safe. */
typedef void (*en_net_log_fn)(void *user, int prio, en_net_event ev,
                              const char *peer_ae, const char *msg);

/* Optional TLS through DCMTK's OpenSSL layer (BCP 195 non-downgrading
 * profile).  Paths are PEM files; trusted may be one file of certificates
 * or a folder of them (OpenSSL's hashed-name layout, `openssl rehash`). */
typedef struct en_net_tls {
    int enabled;
    char certificate[EN_PATH_MAX];   /* our certificate */
    char private_key[EN_PATH_MAX];   /* its key, unencrypted, readable by us only */
    char trusted[EN_PATH_MAX];       /* peers' certificates or their CAs */
    int verify_peer;                 /* 1: a peer without a trusted certificate is refused */
} en_net_tls;

typedef struct en_net_scp_config {
    char ae_title[EN_NET_AE_MAX];    /* the called AE title peers must use */
    int port;
    int nallow;                      /* calling AE titles accepted; 0: none */
    char allow[EN_NET_MAX_PEERS][EN_NET_AE_MAX];
    char staging_dir[EN_PATH_MAX];   /* same file system as inbox_dir */
    char inbox_dir[EN_PATH_MAX];     /* the daemon's inbox */
    uint64_t max_instance_bytes;     /* one instance (file on disk) */
    uint64_t max_association_bytes;  /* all instances of one association */
    int max_association_s;           /* new instances refused after this */
    int timeout_s;                   /* a silent peer is dropped after this */
    int max_associations;            /* at once */
    uint64_t min_free_bytes;         /* refuse instances below this free space */
    en_net_tls tls;
} en_net_scp_config;

/* Defaults: AE title ECHONETD, port 11112, no peer allowed, 2 GiB per
 * instance, 16 GiB and one hour per association, 60 s timeout, 8
 * associations, 1 GiB free space kept, no TLS; folders empty. */
void en_net_scp_config_default(en_net_scp_config *cfg);

/* Parses an AE title list ("US1, PACS_A ECHO3": commas or blanks between
 * titles) into cfg->allow.  EN_EINVAL names the bad title: empty, longer
 * than 16 characters, a backslash or a control character, or too many. */
int en_net_parse_ae_list(const char *text, en_net_scp_config *cfg, en_err *err);

/* Checks one AE title (1..16 characters of the DICOM AE repertoire, not
 * all spaces).  what names the setting in the message. */
int en_net_check_ae(const char *ae, const char *what, en_err *err);

typedef struct en_net_scp en_net_scp;

typedef struct en_net_scp_stats {
    unsigned long long associations;   /* accepted */
    unsigned long long refused_assoc;  /* refused before any transfer */
    unsigned long long stored;         /* instances in the inbox */
    unsigned long long refused;        /* instances refused or cut */
    unsigned long long bytes;          /* bytes of stored instances */
    int active;                        /* associations running now */
} en_net_scp_stats;

/* Checks the folders (both exist, are writable and share a file system),
 * removes staging files a killed receiver left (never acknowledged, so the
 * peer sends them again), sets up TLS and opens the listening port.
 * Errors name the setting or file and what to do; EN_EIO for a port in
 * use.  log may be NULL (silence). */
int en_net_scp_open(en_net_scp **out, const en_net_scp_config *cfg,
                    en_net_log_fn log, void *user, en_err *err);

/* Accepts associations until tick returns non-zero; tick is called from
 * this thread about once a second (and after each new association).  Then
 * no new association is accepted, running ones may finish for grace_s
 * seconds, and the rest are cut.  Returns EN_OK, or EN_EIO when the
 * listening socket failed. */
int en_net_scp_serve(en_net_scp *s, int (*tick)(void *user), void *tick_user,
                     int grace_s, en_err *err);

/* Applies a new allow-list and new limits (not the AE title, port, folders
 * or TLS, which need a restart: *restart_needed is set to 1 when any of
 * them differ).  Takes effect for the next association. */
int en_net_scp_reconfigure(en_net_scp *s, const en_net_scp_config *cfg,
                           int *restart_needed, en_err *err);

void en_net_scp_stats_get(en_net_scp *s, en_net_scp_stats *out);

/* The port actually listened on (useful when cfg->port was 0: any free). */
int en_net_scp_port(const en_net_scp *s);

void en_net_scp_close(en_net_scp *s);   /* NULL is fine */

#endif

/*
 * en_send.h - sending a study result back to the lab's PACS
 * (docs/dicom-network.md, "Sending results back").
 *
 * en_send_files is the network part: one association, C-STORE of each file,
 * over DCMTK's DcmStorageSCU (src/net/send.cc, a thin wrapper).
 * en_send_build turns one study result version into its DICOM objects
 * (the SR and, when the daemon drew it, the PDF) from the results database
 * and the key store (src/net/send_build.c).  echonetd-send runs both from
 * its outbox (en_outbox.h).
 */
#ifndef EN_SEND_H
#define EN_SEND_H

#include <stdint.h>

#include "en_config.h"
#include "en_err.h"
#include "en_sr.h"
#include "en_store.h"

typedef struct en_send_peer {
    char our_ae[17];        /* calling AE title */
    char peer_ae[17];       /* called AE title */
    char host[256];
    int port;
    int timeout_s;          /* connect, ACSE and DIMSE timeouts */
} en_send_peer;

/* Sends the DICOM files over one association.  EN_OK only when the peer
 * answered Success (or a warning) for every file.  A peer that cannot be
 * reached, refuses the association or fails a C-STORE gives EN_EIO with the
 * reason in words (DCMTK's condition text or the DIMSE status; never a UID
 * or a value from the files); EN_EUNSUPPORTED when the peer accepted no
 * presentation context for a file's SOP class. */
int en_send_files(const en_send_peer *peer, const char *const *paths, int n, en_err *err);

/* Why en_send_build wrote nothing although nothing is broken. */
typedef enum en_send_defer {
    EN_SEND_READY = 0,
    EN_SEND_SUPERSEDED,     /* the version is no longer current, or is being
                               recomputed: the newer one is sent instead */
    EN_SEND_REPORT_PENDING  /* the daemon has stored the result but not yet
                               drawn its PDF: try again shortly */
} en_send_defer;

/* How long after a result was computed its PDF is waited for; later, the
 * SR goes alone (the daemon failed to draw the page and logged why). */
#define EN_SEND_REPORT_WAIT_MS (15 * 60 * 1000)

/* Writes the SR (dir/sr.dcm) and the Encapsulated PDF (dir/pdf.dcm) of the
 * study's CURRENT result, which must be version `version`; *nfiles gets 1
 * or 2 and paths[] their names.  The PDF is <output_dir>/<pseudonym>.pdf
 * when [report] pdf is on and the page is at least as new as the result (a
 * page drawn for an older version is never sent); without a page the SR
 * goes alone ([report] pdf = no, or EN_SEND_REPORT_WAIT_MS passed).
 * *defer: EN_SEND_SUPERSEDED or EN_SEND_REPORT_PENDING with EN_ENOTFOUND
 * and nothing written.  EN_ENOTFOUND also for an unknown study or key store
 * record; EN_EINVAL: the result has no EF, there is no key store, or the
 * SR refuses an input.  Messages name the study by pseudonym only. */
int en_send_build(const en_config *cfg, en_store *st, const char *pseudonym, int version,
                  int64_t now_ms, const char *dir, char paths[2][EN_PATH_MAX + 16],
                  int *nfiles, en_send_defer *defer, en_sr_uids *uids, en_err *err);

#endif

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

/* Writes the SR (dir/sr.dcm) and, when <output_dir>/<pseudonym>.pdf exists,
 * the Encapsulated PDF (dir/pdf.dcm) of the study's CURRENT result, which
 * must be version `version`; *nfiles gets 1 or 2 and paths[] their names.
 * When the version is no longer current (or is being recomputed), nothing
 * is written, *superseded is set and EN_ENOTFOUND returned.  EN_ENOTFOUND
 * also for an unknown study or key store record; EN_EINVAL: the result has
 * no EF or there is no key store.  Messages name the study by pseudonym
 * only. */
int en_send_build(const en_config *cfg, en_store *st, const char *pseudonym, int version,
                  const char *dir, char paths[2][EN_PATH_MAX + 16], int *nfiles,
                  int *superseded, en_sr_uids *uids, en_err *err);

#endif

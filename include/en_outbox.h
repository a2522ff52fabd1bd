/*
 * en_outbox.h - the durable queue of study result versions to send to the
 * lab's PACS (docs/dicom-network.md, "Sending results back").
 *
 * The outbox is its own small SQLite file ([send] outbox), written by
 * echonetd-send and `echonetctl send` only, so the results database keeps
 * its schema and the daemon, which never sends, never waits on it.  A row is
 * one (pseudonym, result version): nothing identifying, only echonetd's own
 * reference, a state, times, attempts and the last error in words.
 *
 * States: pending -> sending -> sent | failed; pending again after a
 * failed attempt (with next_try later, exponential back-off); superseded when
 * a newer version of the study exists before this one was sent (the objects
 * are built from the study as it is now, which is the newer version).
 * Every change is its own committed transaction (synchronous=FULL), so what
 * a crash leaves is a row in "sending": it is due again at once and is sent
 * again with the same UIDs (en_sr.h), which a PACS files as the same objects.
 */
#ifndef EN_OUTBOX_H
#define EN_OUTBOX_H

#include <stdint.h>

#include "en_err.h"

typedef struct en_outbox en_outbox;

typedef enum en_outbox_state {
    EN_OUTBOX_PENDING = 0,
    EN_OUTBOX_SENDING,
    EN_OUTBOX_SENT,
    EN_OUTBOX_FAILED,
    EN_OUTBOX_SUPERSEDED,
    EN_OUTBOX_NSTATES
} en_outbox_state;

typedef struct en_outbox_item {
    char pseudonym[65];
    int version;
    en_outbox_state state;
    int attempts;            /* tries begun since enqueued (or re-sent by hand) */
    int64_t enqueued_ms;     /* give-up time counts from here */
    int64_t next_try_ms;
    int64_t last_try_ms;     /* 0: never tried */
    int64_t done_ms;         /* sent, failed or superseded; 0 otherwise */
    char last_error[512];    /* "" none; never an identifying value */
} en_outbox_item;

const char *en_outbox_state_name(en_outbox_state s);

/* Opens (creating, mode 0600) the outbox at path.  A new outbox records its
 * creation time (en_outbox_since): results computed before it are not sent
 * unless asked by hand. */
int en_outbox_open(const char *path, en_outbox **out, en_err *err);
void en_outbox_close(en_outbox *ob);        /* NULL is fine */
int64_t en_outbox_since(const en_outbox *ob);

/* Enqueues (pseudonym, version) unless it is already there, whatever its
 * state: a version is enqueued once.  Older unsent versions of the study
 * become superseded.  Returns 1 when added, 0 when it was there. */
int en_outbox_enqueue(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                      en_err *err);

/* By hand (echonetctl send): the version is (re)queued as pending, due now,
 * with its attempts and give-up clock reset, whatever its state was. */
int en_outbox_requeue(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                      en_err *err);

/* The due item that has waited longest: pending or sending (left by a
 * crash) with next_try <= now.  EN_ENOTFOUND when none is due. */
int en_outbox_next(en_outbox *ob, int64_t now_ms, en_outbox_item *it, en_err *err);

/* An attempt begins: sending, attempts + 1, committed before the network. */
int en_outbox_begin(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                    en_err *err);
/* Ends of an attempt, each committed. */
int en_outbox_sent(en_outbox *ob, const char *pseudonym, int version, int64_t now_ms,
                   en_err *err);
int en_outbox_retry(en_outbox *ob, const char *pseudonym, int version, int64_t next_try_ms,
                    const char *why, en_err *err);
int en_outbox_finish(en_outbox *ob, const char *pseudonym, int version,
                     en_outbox_state state, int64_t now_ms, const char *why, en_err *err);

/* The wait after the n-th failed attempt: min_ms doubled n - 1 times,
 * capped at max_ms. */
int64_t en_outbox_backoff_ms(int attempts, int64_t min_ms, int64_t max_ms);

int en_outbox_counts(en_outbox *ob, int64_t counts[EN_OUTBOX_NSTATES], en_err *err);

/* Calls fn for each item in state (oldest first; all states when state < 0);
 * a non-zero return stops the walk and is returned. */
typedef int (*en_outbox_fn)(const en_outbox_item *it, void *ud);
int en_outbox_list(en_outbox *ob, int state, en_outbox_fn fn, void *ud, en_err *err);

#endif

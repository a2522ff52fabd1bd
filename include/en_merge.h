/*
 * en_merge.h - combining results databases made apart: the shards of a
 * back-fill (one SQLite file per Slurm array task, since SQLite over a
 * network file system is not safe for concurrent writers) merged into one.
 *
 * A database remembers which site made it: the site fingerprint, a keyed
 * hash of a fixed label under the site secret (the pseudonym function,
 * en_deid_pseudonym), kept in its meta table.  It reveals nothing about the
 * secret, but two databases whose pseudonyms can be joined have the same
 * one, and a shard made with another secret (a node that could not read
 * the shared secret and made its own) is refused instead of filling the
 * merged database with studies no re-delivery will ever match.
 *
 * The merge reads the schema itself (tables, columns, unique keys and
 * foreign keys from SQLite's pragmas), so it follows new migrations
 * without change; src/store/merge.c lists the few rules the schema cannot
 * say (which columns widen a span, which state wins).  docs/scale.md
 * explains what a merge keeps.
 */
#ifndef EN_MERGE_H
#define EN_MERGE_H

#include <stdint.h>

#include "en_deid.h"
#include "en_err.h"

/* The fingerprint: EN_PSEUDONYM_LEN hex digits. */
#define EN_MERGE_FP_LEN EN_PSEUDONYM_LEN

int en_merge_fingerprint(const en_deid *d, char out[EN_MERGE_FP_LEN + 1], en_err *err);

/* Records fp in the database at path (which must exist: en_store_open
 * made it) when it carries none.  A database stamped with another
 * fingerprint is refused (EN_EPERM) with a message saying it was made with
 * another site secret. */
int en_merge_stamp(const char *path, const char *fp, en_err *err);

/* What one shard brought, per table (tables in the order merged). */
#define EN_MERGE_MAX_TABLES 32
typedef struct en_merge_count {
    char table[64];
    int64_t added;      /* rows new to the target */
    int64_t present;    /* already there (merged before, or the same row
                           from another shard): left as they were */
    int64_t replaced;   /* the target's row was unfinished and the shard's
                           finished (a task interrupted, then resumed) */
    int64_t left_out;   /* rows with nothing to recognise them by, whose
                           parent was already present */
} en_merge_count;

typedef struct en_merge_stats {
    int ntables;
    en_merge_count t[EN_MERGE_MAX_TABLES];
    /* The studies (their pseudonyms) whose result must be computed again:
     * clips of them came from more than one database, or the shard's
     * result was never computed (a task stopped before the end). */
    char (*stale)[65];
    int nstale;
} en_merge_stats;

enum {
    EN_MERGE_ASSUME_SITE = 1   /* accept a shard without a fingerprint (made
                                  before fingerprints, or by the daemon) */
};

/* Merges the database at shard into the one at into (which must exist at
 * the current schema: open it with en_store_open first), in one
 * transaction: on any failure into is as it was.  Refused: a shard that is
 * not an echonetd database, of another schema version than into, of
 * another site (fingerprint), or one whose rows contradict into's (a clip
 * of one study there and of another here).  The shard is only read.
 * Merging the same shard again adds nothing.  stats is filled (free with
 * en_merge_stats_free); stale pseudonyms accumulate over calls. */
int en_merge_shard(const char *into, const char *shard, const char *fp, int flags,
                   en_merge_stats *stats, en_err *err);

void en_merge_stats_free(en_merge_stats *stats);

#endif

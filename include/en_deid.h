/*
 * en_deid.h - pseudonyms and the optional re-identification key store.
 *
 * A study's pseudonym is HMAC-SHA256(site secret, StudyInstanceUID), hex,
 * truncated to EN_PSEUDONYM_LEN characters.  The site secret is 32 random
 * bytes in a file created on first use with mode 0600; a secret file that
 * others can read is refused.  The key store, off unless configured, maps
 * pseudonym -> original identifiers in a separate 0600 SQLite file.
 */
#ifndef EN_DEID_H
#define EN_DEID_H

#include "en_dicom.h"
#include "en_err.h"

#define EN_PSEUDONYM_LEN 16   /* hex chars: 64 bits, collision-safe per site */
#define EN_SECRET_BYTES 32

typedef struct en_deid {
    unsigned char secret[EN_SECRET_BYTES];
} en_deid;

/* Loads the secret at path, creating it (and its parent folder, 0700) when
 * absent.  Refuses a secret file with group/other permissions (EN_EPERM) or
 * of the wrong size (EN_EFORMAT). */
int en_deid_open(en_deid *d, const char *secret_path, en_err *err);

/* out receives EN_PSEUDONYM_LEN hex chars + NUL. */
int en_deid_pseudonym(const en_deid *d, const char *study_uid,
                      char out[EN_PSEUDONYM_LEN + 1], en_err *err);

/* ---- the re-identification key store --------------------------------
 *
 * An SQLite file of its own (mode 0600, rollback journal, one short
 * IMMEDIATE transaction per put; writers queue on <path>.lock for up to
 * 30 s), so any number of processes may add to it at once and a crash
 * leaves every committed mapping in place.  It only ever grows: a pseudonym's identifiers are
 * recorded once and never changed; a file of the same study carrying
 * different identifiers (a corrected name, say) adds a second record beside
 * the first.  The per-file Series and SOP Instance UIDs of every file seen
 * are kept too.  A key store of the older tab-separated format found at the
 * path is migrated on first open; the old file is kept as <path>.migrated
 * (see docs/deidentification.md). */

typedef struct en_keystore en_keystore;

/* Opens the key store at path, creating it (mode 0600; the folder must
 * exist) or migrating a tab-separated one.  Refuses a store readable by
 * group or others (EN_EPERM), a file that is not a key store (EN_EFORMAT)
 * and a damaged one (EN_EIO); every message names the file and the remedy. */
int en_keystore_open(en_keystore **ks, const char *path, en_err *err);

/* Records pseudonym -> id.  Returns the number of distinct identifier
 * records the store now holds for the pseudonym (1 normally; 2 or more when
 * files of one study disagree: all are kept, the first stays first), or a
 * negative EN_* code. */
int en_keystore_put(en_keystore *ks, const char *pseudonym, const en_dicom_identity *id,
                    en_err *err);

/* The first record of a pseudonym (Series/SOP UIDs of the first file
 * recorded); EN_ENOTFOUND when absent. */
int en_keystore_get(en_keystore *ks, const char *pseudonym, en_dicom_identity *id,
                    en_err *err);

/* Calls fn for every record, by pseudonym then age; fn returns 0 to go on,
 * anything else to stop (returned as is).  EN_OK after the last record. */
typedef int (*en_keystore_fn)(void *ctx, const char *pseudonym, const en_dicom_identity *id);
int en_keystore_list(en_keystore *ks, en_keystore_fn fn, void *ctx, en_err *err);

const char *en_keystore_path(const en_keystore *ks);
void en_keystore_close(en_keystore *ks);

/* One-shot open, put, close, as en_convert_file uses it: EN_OK (whatever
 * the count) or a negative EN_* code. */
int en_deid_keystore_put(const char *path, const char *pseudonym,
                         const en_dicom_identity *id, en_err *err);

/* One-shot open, get, close; EN_ENOTFOUND when the pseudonym or the store
 * is absent (a missing store is not created). */
int en_deid_keystore_get(const char *path, const char *pseudonym,
                         en_dicom_identity *id, en_err *err);

void en_deid_close(en_deid *d);   /* wipes the secret from memory */

#endif

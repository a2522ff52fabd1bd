/*
 * en_deid.h - pseudonyms and the optional re-identification key store.
 *
 * A study's pseudonym is HMAC-SHA256(site secret, StudyInstanceUID), hex,
 * truncated to EN_PSEUDONYM_LEN characters.  The site secret is 32 random
 * bytes in a file created on first use with mode 0600; a secret file that
 * others can read is refused.  The key store, off unless configured, maps
 * pseudonym -> original identifiers in a separate 0600 file.
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

/* Appends (or replaces) the pseudonym's row in the key store at path,
 * creating the file with mode 0600.  Tab-separated, one study per line. */
int en_deid_keystore_put(const char *path, const char *pseudonym,
                         const en_dicom_identity *id, en_err *err);

/* Looks a pseudonym up; EN_ENOTFOUND when absent. */
int en_deid_keystore_get(const char *path, const char *pseudonym,
                         en_dicom_identity *id, en_err *err);

void en_deid_close(en_deid *d);   /* wipes the secret from memory */

#endif

/*
 * pseudonym.c - study pseudonyms: HMAC-SHA256 of the StudyInstanceUID under a
 * site secret (see en_deid.h).
 *
 * The secret never leaves this machine: anyone holding only pseudonyms (the
 * database, the journal, the reports) cannot recover or even confirm a
 * StudyInstanceUID.  The same site always maps a study to the same pseudonym,
 * so re-sent studies are recognised without storing their UID.
 */
#include "en_deid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Creates the folder holding the secret (0700), one level only: the parent
 * of that folder must exist, which catches typos in configured paths. */
static int ensure_parent_dir(const char *path, en_err *err)
{
    char dir[4096];
    char *slash;

    if (strlen(path) >= sizeof dir)
        return en_err_set(err, EN_EINVAL, "secret path is too long (%zu chars)", strlen(path));
    strcpy(dir, path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return EN_OK;
    *slash = '\0';
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return EN_OK;
    return en_err_set(err, EN_EIO, "cannot create folder %s for the site secret: %s",
                      dir, strerror(errno));
}

static int read_all(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, buf + put, n - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        put += (size_t)w;
    }
    return 0;
}

/* A new secret is written under a temporary name and linked into place, so
 * two processes starting together agree on one secret: the loser of the
 * link() race reads the winner's file. */
static int create_secret(const char *path, en_err *err)
{
    char tmp[4200];
    unsigned char key[EN_SECRET_BYTES];
    int fd, rc = EN_OK;

    if (RAND_bytes(key, sizeof key) != 1)
        return en_err_set(err, EN_EIO, "cannot generate a site secret: OpenSSL RAND_bytes failed");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(key, sizeof key);
        return en_err_set(err, EN_EIO, "cannot create site secret %s: %s", tmp, strerror(errno));
    }
    if (write_all(fd, key, sizeof key) != 0 || fsync(fd) != 0)
        rc = en_err_set(err, EN_EIO, "cannot write site secret %s: %s", tmp, strerror(errno));
    close(fd);
    OPENSSL_cleanse(key, sizeof key);
    if (rc == EN_OK && link(tmp, path) != 0 && errno != EEXIST)
        rc = en_err_set(err, EN_EIO, "cannot install site secret %s: %s", path, strerror(errno));
    unlink(tmp);
    return rc;
}

int en_deid_open(en_deid *d, const char *secret_path, en_err *err)
{
    struct stat st;
    int fd, rc;

    memset(d, 0, sizeof *d);
    if (!secret_path || !*secret_path)
        return en_err_set(err, EN_EINVAL, "no site secret path configured ([deid] secret_file)");
    fd = open(secret_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        if ((rc = ensure_parent_dir(secret_path, err)) != EN_OK)
            return rc;
        if ((rc = create_secret(secret_path, err)) != EN_OK)
            return rc;
        fd = open(secret_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0)
        return en_err_set(err, EN_EIO, "cannot open site secret %s: %s", secret_path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return en_err_set(err, EN_EIO, "site secret %s is not a regular file", secret_path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return en_err_set(err, EN_EPERM,
                          "site secret %s is readable by others (mode %03o): run chmod 600 on it",
                          secret_path, (unsigned)(st.st_mode & 0777));
    }
    if (st.st_size != EN_SECRET_BYTES || read_all(fd, d->secret, sizeof d->secret) != 0) {
        close(fd);
        OPENSSL_cleanse(d->secret, sizeof d->secret);
        return en_err_set(err, EN_EFORMAT,
                          "site secret %s must hold exactly %d bytes; it holds %lld "
                          "(restore it from backup: a new secret changes every pseudonym)",
                          secret_path, EN_SECRET_BYTES, (long long)st.st_size);
    }
    close(fd);
    return EN_OK;
}

int en_deid_pseudonym(const en_deid *d, const char *study_uid,
                      char out[EN_PSEUDONYM_LEN + 1], en_err *err)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    static const char hex[] = "0123456789abcdef";

    if (!study_uid || !*study_uid)
        return en_err_set(err, EN_EINVAL, "the study has no StudyInstanceUID to derive a pseudonym from");
    if (!HMAC(EVP_sha256(), d->secret, (int)sizeof d->secret,
              (const unsigned char *)study_uid, strlen(study_uid), mac, &maclen)
        || maclen * 2 < EN_PSEUDONYM_LEN)
        return en_err_set(err, EN_EIO, "HMAC-SHA256 failed in OpenSSL");
    for (int i = 0; i < EN_PSEUDONYM_LEN / 2; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[EN_PSEUDONYM_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    return EN_OK;
}

void en_deid_close(en_deid *d)
{
    if (d)
        OPENSSL_cleanse(d->secret, sizeof d->secret);
}

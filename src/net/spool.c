/*
 * spool.c - the receiver's side of the inbox contract (see net_int.h).
 *
 * The daemon takes a file from the inbox once it is whole DICOM; the
 * receiver goes further and only lets a file into the inbox once it is
 * whole, flushed and renamed in one step, so the daemon never even sees a
 * transfer in progress.  The staging folder must be on the inbox's file
 * system (a rename cannot cross file systems) and belongs to the receiver:
 * at start, files it named and left behind (a crash, a SIGKILL) are
 * deleted, because none of them was acknowledged and the peer will send
 * them again.
 */
#include "net_int.h"

#include "en_dicom_scan.h"
#include "en_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define NET_PART ".part"

static atomic_uint net_seq;

/* Only names this file makes are ever deleted from the staging folder. */
static int net_is_ours(const char *n)
{
    size_t l = strlen(n);
    return n[0] == 'r' && l > 5 && strcmp(n + l - 5, NET_PART) == 0 &&
           strspn(n + 1, "0123456789-abcdef") == l - 6;
}

static int net_open_dir(const char *path, const char *what, int *fd, en_err *err)
{
    if ((*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return en_err_set(err, errno == ENOENT ? EN_ENOTFOUND : EN_EIO,
                          "receiver: %s folder %s: %s (create it; systemd/echonetd.tmpfiles "
                          "makes the default ones)", what, path, strerror(errno));
    if (faccessat(*fd, ".", W_OK | X_OK, AT_EACCESS) != 0)
        return en_err_set(err, EN_EPERM, "receiver: %s folder %s is not writable by this user "
                          "(the receiver runs as echonetd, group echonetd)", what, path);
    return EN_OK;
}

static int net_clean_staging(net_spool *sp, int *removed, en_err *err)
{
    int dfd = dup(sp->staging_fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *de;

    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return en_err_set(err, EN_EIO, "receiver: cannot list the staging folder %s: %s",
                          sp->staging, strerror(errno));
    }
    while ((de = readdir(d)))
        if (net_is_ours(de->d_name) && unlinkat(sp->staging_fd, de->d_name, 0) == 0)
            (*removed)++;
    closedir(d);
    if (*removed)
        fsync(sp->staging_fd);
    return EN_OK;
}

int net_spool_open(net_spool *sp, const char *staging, const char *inbox, int *removed,
                   en_err *err)
{
    struct stat a, b;
    int rc;

    memset(sp, 0, sizeof *sp);
    sp->staging_fd = sp->inbox_fd = -1;
    *removed = 0;
    if (!staging[0] || !inbox[0])
        return en_err_set(err, EN_EINVAL, "receiver: [recv] staging and [daemon] inbox must "
                          "both be set");
    snprintf(sp->staging, sizeof sp->staging, "%s", staging);
    snprintf(sp->inbox, sizeof sp->inbox, "%s", inbox);
    if ((rc = net_open_dir(staging, "staging", &sp->staging_fd, err)) ||
        (rc = net_open_dir(inbox, "inbox", &sp->inbox_fd, err)))
        goto fail;
    if (fstat(sp->staging_fd, &a) != 0 || fstat(sp->inbox_fd, &b) != 0) {
        rc = en_err_set(err, EN_EIO, "receiver: stat of %s or %s: %s", staging, inbox,
                        strerror(errno));
        goto fail;
    }
    if (a.st_dev != b.st_dev) {
        rc = en_err_set(err, EN_EINVAL, "receiver: [recv] staging = %s is on another file "
                        "system than the inbox %s: received files enter the inbox by rename, "
                        "so put the staging folder beside it", staging, inbox);
        goto fail;
    }
    if (a.st_ino == b.st_ino) {
        rc = en_err_set(err, EN_EINVAL, "receiver: [recv] staging must be a folder of its "
                        "own, not the inbox %s", inbox);
        goto fail;
    }
    if ((rc = net_clean_staging(sp, removed, err)))
        goto fail;
    return EN_OK;
fail:
    net_spool_close(sp);
    return rc;
}

void net_spool_close(net_spool *sp)
{
    if (sp->staging_fd >= 0)
        close(sp->staging_fd);
    if (sp->inbox_fd >= 0)
        close(sp->inbox_fd);
    sp->staging_fd = sp->inbox_fd = -1;
}

int net_spool_create(net_spool *sp, net_file *f, en_err *err)
{
    uint32_t rnd = 0;

    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)getpid() ^ (uint32_t)en_mono_ms();
    snprintf(f->name, sizeof f->name, "r%lld-%06u-%08x" NET_PART, (long long)en_wall_ms(),
             atomic_fetch_add(&net_seq, 1) % 1000000u, rnd);
    f->fd = openat(sp->staging_fd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (f->fd < 0)
        return en_err_set(err, errno == ENOSPC ? EN_ELIMIT : EN_EIO,
                          "receiver: cannot create a file in the staging folder %s: %s",
                          sp->staging, strerror(errno));
    return EN_OK;
}

void net_spool_path(const net_spool *sp, const net_file *f, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", sp->staging, f->name);
}

static int net_move(net_spool *sp, const char *from, const char *to)
{
    int rc = renameat2(sp->staging_fd, from, sp->inbox_fd, to, RENAME_NOREPLACE);

    if (rc != 0 && (errno == EINVAL || errno == ENOSYS))  /* file system without it */
        rc = linkat(sp->staging_fd, from, sp->inbox_fd, to, 0) == 0
                 ? unlinkat(sp->staging_fd, from, 0) : -1;
    return rc;
}

int net_spool_commit(net_spool *sp, net_file *f, en_err *err)
{
    char to[sizeof f->name];
    en_dicom_scan sc;
    size_t l = strlen(f->name);
    int rc;

    if (fsync(f->fd) != 0) {
        rc = en_err_set(err, EN_EIO, "receiver: flushing %s/%s: %s", sp->staging, f->name,
                        strerror(errno));
        close(f->fd);
        f->fd = -1;
        return rc;
    }
    close(f->fd);
    f->fd = -1;
    if ((rc = en_dicom_scan_file(sp->staging_fd, f->name, &sc, err)))
        return rc;
    if (sc.state == EN_SCAN_TRUNCATED)
        return en_err_set(err, EN_EFORMAT, "the received data set is not whole DICOM (%s at "
                          "byte %lld of %lld)", sc.detail, sc.end, sc.size);
    /* What the reader would refuse before parsing (nesting past its bound,
     * zeros, too many elements) never enters the inbox: the peer hears an
     * error now instead of the study failing later. */
    if (sc.refuse)
        return en_err_set(err, EN_EFORMAT, "the received data set is refused before any "
                          "parsing, as the reader would refuse it (%s; %lld bytes)", sc.detail,
                          sc.size);
    memcpy(to, f->name, l - strlen(NET_PART));
    strcpy(to + l - strlen(NET_PART), ".dcm");
    if (net_move(sp, f->name, to) != 0)
        return en_err_set(err, EN_EIO, "receiver: cannot move a received file from %s into "
                          "the inbox %s: %s", sp->staging, sp->inbox, strerror(errno));
    /* The rename is what makes the instance ours: it must reach the disk
     * before the peer hears Success. */
    if (fsync(sp->inbox_fd) != 0)
        return en_err_set(err, EN_EIO, "receiver: fsync of the inbox %s: %s", sp->inbox,
                          strerror(errno));
    fsync(sp->staging_fd);
    return EN_OK;
}

void net_spool_discard(net_spool *sp, net_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->name[0])
        unlinkat(sp->staging_fd, f->name, 0);
    f->name[0] = '\0';
}

int64_t net_spool_free_bytes(const net_spool *sp)
{
    struct statvfs v;

    if (fstatvfs(sp->staging_fd, &v) != 0)
        return -1;
    return (int64_t)((uint64_t)v.f_bavail * v.f_frsize);
}

void net_ae_copy(char *dst, const char *src)
{
    size_t b = 0, e;

    while (src[b] == ' ')
        b++;
    e = strlen(src + b);
    while (e > 0 && src[b + e - 1] == ' ')
        e--;
    if (e > 16)
        e = 16;
    memcpy(dst, src + b, e);
    dst[e] = '\0';
}

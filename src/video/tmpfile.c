/*
 * tmpfile.c - write-then-rename, so a reader of an output folder never sees
 * half a video: the bytes go to a temporary file beside the final path (the
 * same folder, hence the same file system, so rename is atomic), which is
 * fsynced, renamed over the final name, and the folder fsynced so the rename
 * itself survives a crash.
 *
 * The temporary name is "<path>.tmp.<pid>.<n>", created with O_EXCL.  We do
 * not use mkstemp because it forces mode 0600; opening with 0666 lets the
 * process umask (systemd's UMask=) decide who may read the videos, as for
 * any other file the daemon writes.
 */
#include "video_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Distinguishes temporary files of concurrent writes within one process. */
static atomic_uint vid_tmp_counter;

/* errno of a failed open/rename as our code. */
static int vid_errno_code(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return EN_ENOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return EN_EPERM;
    case ENOMEM:
        return EN_ENOMEM;
    }
    return EN_EIO;
}

int vid_tmp_create(vid_tmpfile *t, const char *path, en_err *err)
{
    t->tmp = NULL;
    t->fd = -1;
    /* A stale name left by a crashed process with our pid is skipped. */
    for (int tries = 0; tries < 100; tries++) {
        unsigned n = atomic_fetch_add(&vid_tmp_counter, 1);
        free(t->tmp);
        if (asprintf(&t->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), n) < 0) {
            t->tmp = NULL;
            return en_err_set(err, EN_ENOMEM, "video '%s': out of memory", path);
        }
        t->fd = open(t->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (t->fd >= 0)
            return EN_OK;
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(t->tmp);
    t->tmp = NULL;
    return en_err_set(err, vid_errno_code(e),
                      "video '%s': cannot create a file in its folder: %s",
                      path, strerror(e));
}

/* fsync of the folder holding path, so the rename is durable. */
static int vid_sync_dir(const char *path, en_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd, rc = EN_OK;

    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return en_err_set(err, EN_ENOMEM, "video '%s': out of memory", path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = en_err_set(err, EN_EIO, "video '%s': cannot sync folder '%s': %s",
                        path, dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int vid_tmp_commit(vid_tmpfile *t, const char *path, en_err *err)
{
    int fd = t->fd;

    t->fd = -1;
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        vid_tmp_discard(t);
        return en_err_set(err, EN_EIO, "video '%s': cannot sync to disk: %s",
                          path, strerror(e));
    }
    /* close can report a deferred write error (NFS): it counts. */
    if (close(fd) < 0) {
        int e = errno;
        vid_tmp_discard(t);
        return en_err_set(err, EN_EIO, "video '%s': cannot close: %s", path, strerror(e));
    }
    if (rename(t->tmp, path) < 0) {
        int e = errno;
        vid_tmp_discard(t);
        return en_err_set(err, vid_errno_code(e), "video '%s': cannot move into place: %s",
                          path, strerror(e));
    }
    free(t->tmp);
    t->tmp = NULL;
    return vid_sync_dir(path, err);
}

void vid_tmp_discard(vid_tmpfile *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->tmp)
        unlink(t->tmp);
    free(t->tmp);
    t->tmp = NULL;
}

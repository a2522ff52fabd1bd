/*
 * atomic_file.c - write-then-rename outputs (see en_atomic.h).
 */
#include "en_util.h"
#include "en_atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Distinguishes temporary files of concurrent writes within one process. */
static atomic_uint en__tmp_counter;

int en_errno_code(int e)
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

int en_atomic_open(en_atomic_file *f, const char *path, const char *what, en_err *err)
{
    int e;

    f->path = path;
    f->what = what;
    f->tmp = NULL;
    f->fd = -1;
    /* A stale name left by a crashed process with our pid is skipped. */
    for (int tries = 0; tries < 100; tries++) {
        unsigned n = atomic_fetch_add(&en__tmp_counter, 1);
        free(f->tmp);
        if (asprintf(&f->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), n) < 0) {
            f->tmp = NULL;
            return en_err_set(err, EN_ENOMEM, "%s '%s': out of memory", what, path);
        }
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0)
            return EN_OK;
        if (errno != EEXIST)
            break;
    }
    e = errno;
    free(f->tmp);
    f->tmp = NULL;
    return en_err_set(err, en_errno_code(e), "%s '%s': cannot create a file in its folder: %s%s",
                      what, path, strerror(e),
                      e == EACCES || e == EROFS ? " (check the folder's permissions)" : "");
}

/* fsync of the folder holding the file, so the rename is durable. */
static int sync_dir(const en_atomic_file *f, en_err *err)
{
    const char *slash = strrchr(f->path, '/');
    char *dir;
    int rc = EN_OK;

    if (!slash)
        dir = strdup(".");
    else if (slash == f->path)
        dir = strdup("/");
    else
        dir = strndup(f->path, (size_t)(slash - f->path));
    if (!dir)
        return en_err_set(err, EN_ENOMEM, "%s '%s': out of memory", f->what, f->path);
    if (en_fsync_dir(dir) != EN_OK)
        rc = en_err_set(err, EN_EIO, "%s '%s': cannot sync its folder: %s", f->what, f->path,
                        strerror(errno));
    free(dir);
    return rc;
}

static int fail(en_atomic_file *f, int e, const char *step, en_err *err)
{
    en_atomic_discard(f);
    return en_err_set(err, en_errno_code(e), "%s '%s': %s: %s", f->what, f->path, step,
                      strerror(e));
}

int en_atomic_commit(en_atomic_file *f, en_err *err)
{
    int fd = f->fd;

    if (fsync(fd) < 0)
        return fail(f, errno, "cannot sync to disk", err);
    f->fd = -1;
    /* close can report a deferred write error (NFS): it counts. */
    if (close(fd) < 0)
        return fail(f, errno, "cannot close", err);
    if (rename(f->tmp, f->path) < 0)
        return fail(f, errno, "cannot move into place", err);
    free(f->tmp);
    f->tmp = NULL;
    return sync_dir(f, err);
}

void en_atomic_discard(en_atomic_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp)
        unlink(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

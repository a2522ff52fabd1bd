/*
 * atomic.c - report files appear whole or not at all.
 *
 * cairo writes the PDF and the PNG through a stream callback into a
 * temporary file beside the final path (same folder, same file system, so
 * the rename is atomic).  The file is fsynced, renamed over the final name,
 * and the folder fsynced so the rename survives a crash.  Any failure
 * removes the temporary file: a reader, or the user re-running the report,
 * never finds a truncated PDF or a stray temporary.
 *
 * The temporary name is "<path>.tmp.<pid>.<n>", created with O_EXCL and
 * mode 0666 so the process umask decides who may read reports, as for
 * every other file the daemon writes (mkstemp would force 0600).
 */
#include "report_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Distinguishes temporary files of concurrent renders in one process. */
static atomic_uint rep_tmp_counter;

static int errno_code(int e)
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

int rep_out_open(rep_out *o, const char *path, en_err *err)
{
    o->path = path;
    o->tmp = NULL;
    o->fd = -1;
    o->werrno = 0;
    /* a stale name left by a crashed process with our pid is skipped */
    for (int tries = 0; tries < 100; tries++) {
        unsigned n = atomic_fetch_add(&rep_tmp_counter, 1);
        free(o->tmp);
        if (asprintf(&o->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), n) < 0) {
            o->tmp = NULL;
            return en_err_set(err, EN_ENOMEM, "report '%s': out of memory", path);
        }
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (o->fd >= 0)
            return EN_OK;
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(o->tmp);
    o->tmp = NULL;
    return en_err_set(err, errno_code(e),
                      "report '%s': cannot create a file in its folder: %s%s", path,
                      strerror(e),
                      e == EACCES || e == EROFS ? " (check the folder's permissions)" : "");
}

cairo_status_t rep_out_write(void *closure, const unsigned char *data, unsigned int len)
{
    rep_out *o = closure;

    while (len > 0 && !o->werrno) {
        ssize_t w = write(o->fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            o->werrno = errno;
            break;
        }
        data += w;
        len -= (unsigned)w;
    }
    return o->werrno ? CAIRO_STATUS_WRITE_ERROR : CAIRO_STATUS_SUCCESS;
}

/* fsync of the folder holding path, so the rename is durable. */
static int sync_dir(const char *path, en_err *err)
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
        return en_err_set(err, EN_ENOMEM, "report '%s': out of memory", path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = en_err_set(err, EN_EIO, "report '%s': cannot sync its folder: %s", path,
                        strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* Fails (removing the temporary file) with "report '<path>': <what>: <e>". */
static int fail(rep_out *o, int e, const char *what, en_err *err)
{
    rep_out_discard(o);
    return en_err_set(err, errno_code(e), "report '%s': %s: %s", o->path, what,
                      strerror(e));
}

int rep_out_commit(rep_out *o, en_err *err)
{
    int fd = o->fd;

    if (o->werrno)
        return fail(o, o->werrno, "cannot write", err);
    if (fsync(fd) < 0)
        return fail(o, errno, "cannot sync to disk", err);
    o->fd = -1;
    /* close can report a deferred write error (NFS): it counts */
    if (close(fd) < 0)
        return fail(o, errno, "cannot close", err);
    if (rename(o->tmp, o->path) < 0)
        return fail(o, errno, "cannot move into place", err);
    free(o->tmp);
    o->tmp = NULL;
    return sync_dir(o->path, err);
}

void rep_out_discard(rep_out *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
}

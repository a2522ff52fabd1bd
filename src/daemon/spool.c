/*
 * spool.c - the spool's folders and everything that touches them by name:
 * the start-up checks, the lock that keeps a second daemon off the spool,
 * job names, claiming a file into work/ and proving what was claimed,
 * moves that survive a crash, the per-job sidecar, reason files and the
 * temporaries a killed process leaves behind.  It sits below intake.c and
 * jobs.c and calls nothing of theirs.
 *
 * Why claims are checked after the rename: the inbox is writable by
 * senders, so between the look that found a regular file and the rename
 * that takes it, the name may have been swapped for a symbolic link (to a
 * file outside the spool), a FIFO or another file.  A rename moves the
 * entry, not what it points to, so after it work/<job>.dcm is whatever the
 * name held at that instant; only then is it looked at (never following a
 * link) and compared with the identity (device, inode, size, mtime) that
 * was checked.  work/ belongs to the daemon alone, so what is verified
 * there stays verified.
 */
#include "config.h"

#include "daemon.h"
#include "en_atomic.h"
#include "en_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define DM_LOCK_NAME ".echonetd.lock"

int dm_spool_check(const en_config *cfg, en_err *err)
{
    const char *dirs[4] = { cfg->inbox_dir, cfg->work_dir, cfg->archive_dir, cfg->failed_dir };
    const char *keys[4] = { "inbox", "work", "archive", "failed" };
    struct stat st;
    dev_t dev = 0;

    for (int i = 0; i < 4; i++) {
        if (!dirs[i][0])
            return en_err_set(err, EN_EINVAL, "[daemon] %s is not set", keys[i]);
        if (stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode))
            return en_err_set(err, EN_ENOTFOUND, "[daemon] %s = %s: %s (create it, see "
                              "systemd/echonetd.tmpfiles)", keys[i], dirs[i],
                              errno ? strerror(errno) : "not a folder");
        if (access(dirs[i], W_OK | X_OK) != 0)
            return en_err_set(err, EN_EPERM, "[daemon] %s = %s: not writable", keys[i], dirs[i]);
        if (i == 0)
            dev = st.st_dev;
        else if (st.st_dev != dev)
            return en_err_set(err, EN_EINVAL, "[daemon] %s = %s is on another file system than "
                              "the inbox: the spool folders must share one, files move by "
                              "rename", keys[i], dirs[i]);
    }
    return EN_OK;
}

/* ---- the lock ---- */

int dm_spool_lock(const char *work_dir, int *fd_out, en_err *err)
{
    char path[EN_PATH_MAX + 32], pid[32] = "";
    int fd, e;
    ssize_t n;

    *fd_out = -1;
    snprintf(path, sizeof path, "%s/%s", work_dir, DM_LOCK_NAME);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return en_err_set(err, en_errno_code(errno), "cannot open the spool lock %s: %s",
                          path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        e = errno;
        n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return en_err_set(err, EN_EPERM, "another echonetd%s%s%s is using this spool (%s "
                              "is locked): stop it first, or give this one its own [daemon] "
                              "folders", pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", path);
        return en_err_set(err, EN_EIO, "cannot lock the spool (%s): %s", path, strerror(e));
    }
    /* The pid is only for the message a second daemon prints. */
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid)) {
        e = errno;
        close(fd);
        return en_err_set(err, en_errno_code(e), "cannot write the spool lock %s: %s", path,
                          strerror(e));
    }
    *fd_out = fd;
    return EN_OK;
}

void dm_spool_unlock(int *fd)
{
    if (*fd >= 0)
        close(*fd);     /* the lock goes with the descriptor */
    *fd = -1;
}

/* ---- names and identity ---- */

void dm_spool_job_name(char job[DM_JOB_MAX])
{
    static unsigned seq;
    uint32_t rnd = 0;

    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)((uint64_t)(en_mono_ms() * 1000.0) ^ (uint64_t)getpid() << 16);
    snprintf(job, DM_JOB_MAX, "j%lld-%04u-%08x", (long long)en_wall_ms(), ++seq % 10000, rnd);
}

void dm_spool_path(const char *dir, const char *job, const char *ext, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s", dir, job, ext);
}

dm_kind dm_kind_of(mode_t mode)
{
    if (S_ISREG(mode)) return DM_KIND_FILE;
    if (S_ISDIR(mode)) return DM_KIND_DIR;
    if (S_ISLNK(mode)) return DM_KIND_SYMLINK;
    if (S_ISFIFO(mode)) return DM_KIND_FIFO;
    if (S_ISSOCK(mode)) return DM_KIND_SOCKET;
    return DM_KIND_DEVICE;
}

const char *dm_kind_name(dm_kind k)
{
    switch (k) {
    case DM_KIND_FILE: return "a regular file";
    case DM_KIND_DIR: return "a folder";
    case DM_KIND_SYMLINK: return "a symbolic link";
    case DM_KIND_FIFO: return "a FIFO (named pipe)";
    case DM_KIND_SOCKET: return "a socket";
    case DM_KIND_DEVICE: return "a device node";
    }
    return "something unknown";
}

void dm_file_id_of(const struct stat *st, dm_file_id *id)
{
    id->dev = (uint64_t)st->st_dev;
    id->ino = (uint64_t)st->st_ino;
    id->size = (int64_t)st->st_size;
    id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int dm_file_id_same(const dm_file_id *a, const dm_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

int dm_spool_identify(int dfd, const char *name, dm_kind *kind, dm_file_id *id, en_err *err)
{
    struct stat st;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return en_err_set(err, errno == ENOENT ? EN_ENOTFOUND : EN_EIO, "cannot look at %s: %s",
                          name, strerror(errno));
    *kind = dm_kind_of(st.st_mode);
    dm_file_id_of(&st, id);
    return EN_OK;
}

int dm_spool_open_verified(const char *path, const dm_file_id *expect, int *fd_out, en_err *err)
{
    struct stat st;
    dm_file_id got;
    int fd;

    *fd_out = -1;
    /* O_NONBLOCK: a FIFO in its place must not block the open. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return en_err_set(err, errno == ELOOP ? EN_EPERM : en_errno_code(errno),
                          "%s: %s", path, errno == ELOOP ? "is a symbolic link, not the "
                          "file that was checked" : strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return en_err_set(err, EN_EIO, "%s: %s", path, strerror(e));
    }
    dm_file_id_of(&st, &got);
    if (!S_ISREG(st.st_mode) || got.dev != expect->dev || got.ino != expect->ino) {
        close(fd);
        return en_err_set(err, EN_EPERM, "%s is %s, not the file that was checked",
                          path, S_ISREG(st.st_mode) ? "another file" :
                          dm_kind_name(dm_kind_of(st.st_mode)));
    }
    /* Reads must not block either, but they never do on a regular file;
     * clear the flag so the descriptor is an ordinary one. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *fd_out = fd;
    return EN_OK;
}

/* ---- moves ---- */

int dm_spool_move_at(int from_dfd, const char *from, int to_dfd, const char *to, en_err *err)
{
    int rc = renameat2(from_dfd, from, to_dfd, to, RENAME_NOREPLACE);
    int e;

    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* A file system without RENAME_NOREPLACE: link + unlink never
         * replaces either (a folder cannot be linked: it stays). */
        rc = linkat(from_dfd, from, to_dfd, to, 0) == 0 ? unlinkat(from_dfd, from, 0) : -1;
    }
    if (rc != 0) {
        e = errno;
        rc = en_err_set(err, e == ENOENT ? EN_ENOTFOUND : en_errno_code(e), "cannot move %s: %s",
                        to, strerror(e));
        errno = e;
        return rc;
    }
    /* The destination first: after a crash the file is in one place or
     * the other, never in neither. */
    if (fsync(to_dfd) != 0 || fsync(from_dfd) != 0) {
        dm_fields f = { .job = to };
        dm_log(DM_WARN, &f, "moved, but the folders could not be synced (%s): a power loss "
               "now could undo the move", strerror(errno));
    }
    return EN_OK;
}

int dm_spool_move(const char *from_dir, const char *from, const char *to_dir, const char *to,
                  en_err *err)
{
    int fd1 = open(from_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd2 = open(to_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd1 < 0 || fd2 < 0) {
        int e = errno;
        rc = en_err_set(err, en_errno_code(e), "cannot open %s: %s", fd1 < 0 ? from_dir : to_dir,
                        strerror(e));
    } else {
        rc = dm_spool_move_at(fd1, from, fd2, to, err);
        if (rc != EN_OK)
            en_err_prefix(err, "from %s to %s", from_dir, to_dir);
    }
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    return rc;
}

int dm_spool_claim(const char *work_dir, int from_dfd, const char *name, char job[DM_JOB_MAX],
                   dm_kind *kind, dm_file_id *id, en_err *err)
{
    char dcm[DM_JOB_MAX + 8];
    int wfd = open(work_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (wfd < 0)
        return en_err_set(err, en_errno_code(errno), "cannot open the work folder %s: %s",
                          work_dir, strerror(errno));
    dm_spool_job_name(job);
    snprintf(dcm, sizeof dcm, "%s.dcm", job);
    rc = dm_spool_move_at(from_dfd, name, wfd, dcm, err);
    if (rc == EN_OK && (rc = dm_spool_identify(wfd, dcm, kind, id, err)) != EN_OK)
        en_err_prefix(err, "claimed into %s", work_dir);
    close(wfd);
    return rc;
}

/* ---- sidecars and reasons ---- */

int dm_spool_write_text(const char *path, const char *what, const char *text, en_err *err)
{
    en_atomic_file af;
    size_t len = strlen(text), off = 0;
    int rc;

    if ((rc = en_atomic_open(&af, path, what, err)) != EN_OK)
        return rc;
    while (off < len) {
        ssize_t w = write(af.fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = en_err_set(err, en_errno_code(errno), "%s '%s': %s", what, path, strerror(errno));
            en_atomic_discard(&af);
            return rc;
        }
        off += (size_t)w;
    }
    return en_atomic_commit(&af, err);
}

/* "attempts N" and "study PSEUDONYM" lines; a bare number is the format
 * of earlier versions. */
int dm_sidecar_read(const char *work_dir, const char *job, dm_sidecar *sc)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16], line[128], word[16], val[EN_STORE_KEY_MAX];
    long long n;
    FILE *f;

    memset(sc, 0, sizeof *sc);
    dm_spool_path(work_dir, job, ".attempts", p, sizeof p);
    if (!(f = fopen(p, "re")))
        return errno == ENOENT ? EN_OK : EN_EIO;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (en_parse_ll(line, 0, 1000, &n) == EN_OK) {
            sc->attempts = (int)n;
        } else if (sscanf(line, "%15s %64s", word, val) == 2) {
            if (!strcmp(word, "attempts") && en_parse_ll(val, 0, 1000, &n) == EN_OK)
                sc->attempts = (int)n;
            else if (!strcmp(word, "study") && val[strspn(val, "0123456789abcdef")] == 0)
                snprintf(sc->study, sizeof sc->study, "%s", val);
        }
    }
    fclose(f);
    return EN_OK;
}

int dm_sidecar_write(const char *work_dir, const char *job, const dm_sidecar *sc, en_err *err)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16], t[EN_STORE_KEY_MAX + 64];

    dm_spool_path(work_dir, job, ".attempts", p, sizeof p);
    snprintf(t, sizeof t, "attempts %d\n%s%s%s", sc->attempts, sc->study[0] ? "study " : "",
             sc->study, sc->study[0] ? "\n" : "");
    return dm_spool_write_text(p, "attempt counter", t, err);
}

void dm_sidecar_drop(const char *work_dir, const char *job)
{
    char p[EN_PATH_MAX + DM_JOB_MAX + 16];

    dm_spool_path(work_dir, job, ".attempts", p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT) {
        dm_fields f = { .job = job };
        dm_log(DM_WARN, &f, "cannot remove the attempt counter %s: %s", p, strerror(errno));
    }
}

/* ---- temporaries ---- */

/* The pid of the process that was writing a temporary file, from its
 * name, or 0 when the name is not a temporary's: en_atomic's
 * "<name>.tmp.<pid>.<n>", and the pipeline's video in the making,
 * ".incoming-<pid>-<n>.avi". */
static long temp_pid(const char *name)
{
    const char *t = NULL, *p;
    char pid[24];
    long long v;
    size_t l = 0;

    for (p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        t = p + 5;
    if (t) {
        l = strspn(t, "0123456789");
        if (t[l] != '.' || !t[l + 1] || t[l + 1 + strspn(t + l + 1, "0123456789")] != 0)
            l = 0;
    }
    if (l == 0 && !strncmp(name, ".incoming-", 10)) {
        t = name + 10;
        l = strspn(t, "0123456789");
        if (t[l] != '-' || strspn(t + l + 1, "0123456789") == 0 ||
            strcmp(t + l + 1 + strspn(t + l + 1, "0123456789"), ".avi"))
            l = 0;
    }
    if (l == 0 || l >= sizeof pid)
        return 0;
    memcpy(pid, t, l);
    pid[l] = 0;
    return en_parse_ll(pid, 1, 1L << 30, &v) == EN_OK ? (long)v : 0;
}

/* 1 when pid names a live process.  A zombie is not one: a killed
 * daemon's children are reparented, and not every init reaps them. */
static int pid_running(long pid)
{
    char path[64], buf[256], *close_paren;
    FILE *f;
    size_t n;

    if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "re")))
        return 1;       /* no /proc: trust kill() */
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* "pid (comm) S ...": the state follows the last ')'. */
    if (!(close_paren = strrchr(buf, ')')) || close_paren[1] != ' ')
        return 1;
    return close_paren[2] != 'Z' && close_paren[2] != 'X';
}

int dm_spool_clean_temps(const char *dir, long pid, int *removed, en_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (removed)
        *removed = 0;
    if (!d)
        return en_err_set(err, en_errno_code(errno), "cannot read %s: %s", dir, strerror(errno));
    while ((de = readdir(d))) {
        long p = temp_pid(de->d_name);
        if (p == 0)
            continue;
        if (pid > 0 && p != pid)
            continue;
        /* At start-up our own pid can only be a namesake: a daemon
         * restarted in a container is often pid 1 again. */
        if (pid == 0 && p != (long)getpid() && pid_running(p))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        (void)en_fsync_dir(dir);
    if (removed)
        *removed = n;
    return EN_OK;
}

int64_t dm_spool_free_mb(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return -1;
    return (int64_t)((uint64_t)v.f_bavail * v.f_frsize >> 20);
}

/*
 * intake.c - the inbox: watched with uv_fs_event (inotify) and rescanned on
 * a timer (inotify misses NFS changes and drops events on overflow).
 *
 * A file is taken when, on two looks, its size and mtime are unchanged and
 * it has not been modified for settle_ms (by its mtime, or, if the clocks
 * disagree, by our own observation), and it is a whole DICOM file
 * (en_dicom_scan: every element fits, the last ends at the end of the file).
 * A file renamed in complete has an old mtime and is taken at the second
 * look, a fraction of a second later; a file still being written keeps a
 * fresh mtime and waits; a copy that stalled mid-file waits up to
 * incomplete_wait_s for the rest and is then taken anyway, to fail with the
 * reader's reason rather than sit in the inbox unexplained.  The walk only
 * follows lengths (no decoding), so running it here, outside the per-study
 * child, exposes the daemon to nothing a hostile file could exploit.  Names starting
 * with "." or ending in ".tmp" or ".part", and anything that is not a
 * regular file, are ignored.
 *
 * Taking is an atomic rename (RENAME_NOREPLACE) into work/ under a name of
 * the daemon's own, "j<unix ms>-<seq>-<random hex>.dcm": never derived from
 * the delivered name, which may hold a patient's name.  Then both folders
 * are fsynced, so after a crash the file is either still in the inbox or in
 * work/, where start-up resumes it.
 *
 * Backpressure: nothing is taken while queue_max files are claimed and
 * unfinished, or while the work or output file system has less than
 * min_free_mb free; the change is logged (MESSAGE_ID backpressure) and
 * shown in STATUS=.  Files simply wait in the inbox, so memory stays
 * bounded whatever arrives: the table of files waiting to settle is capped
 * too.
 */
#include "config.h"

#include "daemon.h"
#include "en_dicom_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

uint64_t dm_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int ignored_name(const char *n)
{
    size_t l = strlen(n);
    return n[0] == '.' || (l >= 4 && !strcmp(n + l - 4, ".tmp")) ||
           (l >= 5 && !strcmp(n + l - 5, ".part"));
}

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

static int64_t free_mb(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return -1;
    return (int64_t)((uint64_t)v.f_bavail * v.f_frsize >> 20);
}

int dm_pressure(dm_daemon *d)
{
    int was = d->paused, now = DM_PAUSE_NONE;
    int64_t fw = free_mb(d->cfg.work_dir), fo = free_mb(d->cfg.output_dir);
    int64_t fmin = fw < 0 ? fo : (fo < 0 ? fw : (fw < fo ? fw : fo));

    if (fmin >= 0 && fmin < d->cfg.min_free_mb)
        now = DM_PAUSE_DISK;
    else if (d->nqueued + d->nrunning >= d->cfg.queue_max)
        now = DM_PAUSE_QUEUE;
    if (now != was) {
        dm_fields f = { .msgid = DM_MSGID_BACKPRESSURE };
        char ex[64];
        snprintf(ex, sizeof ex, "ECHONET_FREE_MB=%lld", (long long)fmin);
        f.extra[0] = ex;
        if (now == DM_PAUSE_DISK)
            dm_log(DM_WARN, &f, "backpressure: less than %d MiB free (%lld MiB): not taking "
                   "new files", d->cfg.min_free_mb, (long long)fmin);
        else if (now == DM_PAUSE_QUEUE)
            dm_log(DM_NOTICE, &f, "backpressure: %d files claimed and unfinished (queue_max): "
                   "not taking new files", d->nqueued + d->nrunning);
        else
            dm_log(DM_NOTICE, &f, "backpressure over: taking files again");
        d->paused = now;
        dm_status(d);
    }
    return now;
}

/* ---- the table of files waiting to settle ---- */

static dm_seen *seen_find(dm_daemon *d, const char *name)
{
    for (size_t i = 0; i < d->nseen; i++)
        if (!strcmp(d->seen[i].name, name))
            return &d->seen[i];
    return NULL;
}

static void seen_drop(dm_daemon *d, size_t i)
{
    free(d->seen[i].name);
    d->seen[i] = d->seen[--d->nseen];
}

static dm_seen *seen_add(dm_daemon *d, const char *name)
{
    if (d->nseen == d->capseen) {
        size_t cap = d->capseen ? d->capseen * 2 : 64;
        dm_seen *n = realloc(d->seen, cap * sizeof *n);
        if (!n)
            return NULL;
        d->seen = n;
        d->capseen = cap;
    }
    memset(&d->seen[d->nseen], 0, sizeof d->seen[0]);
    if (!(d->seen[d->nseen].name = strdup(name)))
        return NULL;
    return &d->seen[d->nseen++];
}

int dm_move(const char *from_dir, const char *from, const char *to_dir, const char *to,
            en_err *err)
{
    int fd1 = open(from_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd2 = open(to_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = -1, e = 0;

    if (fd1 >= 0 && fd2 >= 0) {
        rc = renameat2(fd1, from, fd2, to, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS))  /* file system without it */
            rc = linkat(fd1, from, fd2, to, 0) == 0 ? unlinkat(fd1, from, 0) : -1;
    }
    e = errno;
    if (rc == 0) {
        fsync(fd2);
        fsync(fd1);
    }
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    if (rc != 0) {
        en_err_set(err, EN_EIO, "moving %s from %s to %s: %s", to, from_dir, to_dir,
                   strerror(e));
        errno = e;
        return EN_EIO;
    }
    return EN_OK;
}

/* Claims one settled file: rename into work/ under a new job name. */
static int claim(dm_daemon *d, const char *name)
{
    char job[DM_JOB_MAX], work[DM_JOB_MAX + 8];
    uint32_t rnd = 0;
    struct timespec ts;
    en_err e;

    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)(uv_hrtime() ^ (uint64_t)getpid() << 16);
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(job, sizeof job, "j%lld-%04u-%08x",
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, ++d->seq % 10000, rnd);
    snprintf(work, sizeof work, "%s.dcm", job);
    if (dm_move(d->cfg.inbox_dir, name, d->cfg.work_dir, work, &e) != EN_OK) {
        /* The message names the job, not the delivered file. */
        dm_fields f = { .job = job };
        if (errno == ENOENT)
            return -1;  /* gone meanwhile (taken by someone else) */
        dm_log(DM_ERR, &f, "cannot claim a file from the inbox into %s: %s",
               d->cfg.work_dir, strerror(errno));
        return -1;
    }
    {
        dm_fields f = { .job = job, .stage = "queued" };
        en_err ig;
        en_store_log(d->db, 0, EN_STORE_EV_QUEUED, "intake", EN_STORE_NONE, job,
                     "taken from the inbox", &ig);
        dm_log(DM_INFO, &f, "taken from the inbox");
    }
    dm_job_add(d, job);
    return 0;
}

static void on_soon(uv_timer_t *t);

/* 1 when a settled file may be taken: it is whole DICOM, or the walk cannot
 * tell (the reader decides), or it has waited incomplete_wait_s.  A cut
 * file is walked once per size+mtime, not at every look. */
static int whole_enough(dm_daemon *d, int dfd, const char *name, dm_seen *s, uint64_t now)
{
    en_dicom_scan sc;
    en_err e;

    if (!s->scanned) {
        if (en_dicom_scan_file(dfd, name, &sc, &e) != EN_OK || sc.state != EN_SCAN_TRUNCATED)
            return 1;
        s->scanned = 1;
        if (!s->warned) {
            /* The delivered name may identify the patient: not logged. */
            dm_log(DM_NOTICE, NULL, "a settled file in the inbox is not whole DICOM yet (%s at "
                   "byte %lld of %lld); waiting up to %d s for the rest", sc.detail, sc.end,
                   sc.size, d->cfg.incomplete_wait_s);
            s->warned = 1;
        }
    }
    if (now - s->first_ms >= (uint64_t)d->cfg.incomplete_wait_s * 1000) {
        dm_log(DM_WARN, NULL, "a file in the inbox stayed incomplete for %d s: taking it "
               "anyway (it will fail with the reason)", d->cfg.incomplete_wait_s);
        return 1;
    }
    return 0;
}

static void scan(dm_daemon *d)
{
    DIR *dir;
    struct dirent *de;
    uint64_t now = dm_now_ms();
    int64_t wnow = wall_ns(), settle_ns = (int64_t)d->cfg.settle_ms * 1000000;
    int pending = 0;
    size_t cap = (size_t)d->cfg.queue_max * 2 + 64;

    if (d->stopping || dm_pressure(d) != DM_PAUSE_NONE)
        return;
    if (!(dir = opendir(d->cfg.inbox_dir))) {
        dm_log(DM_ERR, NULL, "cannot read the inbox %s: %s", d->cfg.inbox_dir, strerror(errno));
        return;
    }
    d->gen++;
    while ((de = readdir(dir))) {
        struct stat st;
        dm_seen *s;
        int64_t mt;

        if (ignored_name(de->d_name))
            continue;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (!(s = seen_find(d, de->d_name))) {
            if (d->nseen >= cap || !(s = seen_add(d, de->d_name)))
                continue;   /* bounded: the rest wait for a later scan */
            s->size = st.st_size;
            s->mtime_ns = mt;
            s->first_ms = now;
            s->looks = 1;
            s->gen = d->gen;
            pending = 1;
            continue;
        }
        s->gen = d->gen;
        if (s->size != st.st_size || s->mtime_ns != mt) {
            s->size = st.st_size;
            s->mtime_ns = mt;
            s->first_ms = now;
            s->looks = 1;
            s->scanned = 0;
            pending = 1;
            continue;
        }
        s->looks++;
        if (wnow - mt < settle_ns && now - s->first_ms < (uint64_t)d->cfg.settle_ms) {
            pending = 1;
            continue;
        }
        if (!whole_enough(d, dirfd(dir), de->d_name, s, now)) {
            pending = 1;
            continue;
        }
        if (d->nqueued + d->nrunning >= d->cfg.queue_max) {
            pending = 1;
            continue;
        }
        claim(d, de->d_name);
        s->gen = 0;     /* forget it below */
    }
    closedir(dir);
    for (size_t i = 0; i < d->nseen;)
        if (d->seen[i].gen != d->gen)
            seen_drop(d, i);
        else
            i++;
    dm_pressure(d);
    dm_jobs_pump(d);
    if (pending && !d->stopping) {
        /* look again soon: a fraction of the settle time */
        uint64_t t = (uint64_t)d->cfg.settle_ms / 4;
        if (t < 50) t = 50;
        if (t > 1000) t = 1000;
        if (!uv_is_active((uv_handle_t *)&d->soon) || uv_timer_get_due_in(&d->soon) > t)
            uv_timer_start(&d->soon, on_soon, t, 0);
    }
}

static void on_soon(uv_timer_t *t)
{
    scan(t->data);
}

static void on_rescan(uv_timer_t *t)
{
    scan(t->data);
}

static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status)
{
    dm_daemon *d = h->data;
    (void)name; (void)events;
    if (status < 0)
        dm_log(DM_WARN, NULL, "inbox watch: %s (the rescan timer still finds files)",
               uv_strerror(status));
    dm_intake_kick(d);
}

void dm_intake_kick(dm_daemon *d)
{
    if (d->stopping)
        return;
    if (!uv_is_active((uv_handle_t *)&d->soon) || uv_timer_get_due_in(&d->soon) > 50)
        uv_timer_start(&d->soon, on_soon, 50, 0);
}

int dm_intake_start(dm_daemon *d, en_err *err)
{
    int rc;

    d->soon.data = d->rescan.data = d->watch.data = d;
    uv_timer_start(&d->rescan, on_rescan, 0, (uint64_t)d->cfg.rescan_ms);
    rc = uv_fs_event_start(&d->watch, on_fs_event, d->cfg.inbox_dir, 0);
    if (rc < 0) {
        /* Not fatal: the timer still rescans. */
        dm_log(DM_WARN, NULL, "cannot watch the inbox %s (%s): relying on the %d ms rescan",
               d->cfg.inbox_dir, uv_strerror(rc), d->cfg.rescan_ms);
        d->watching = 0;
    } else {
        d->watching = 1;
    }
    (void)err;
    return EN_OK;
}

void dm_intake_stop(dm_daemon *d)
{
    uv_timer_stop(&d->rescan);
    uv_timer_stop(&d->soon);
    if (d->watching)
        uv_fs_event_stop(&d->watch);
    d->watching = 0;
    for (size_t i = 0; i < d->nseen; i++)
        free(d->seen[i].name);
    d->nseen = 0;
}

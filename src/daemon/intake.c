/*
 * intake.c - the inbox: watched with uv_fs_event (inotify) and rescanned on
 * a timer (inotify misses NFS changes and drops events on overflow).
 *
 * A file is taken when, on two looks, it is the same file (device, inode,
 * size and mtime unchanged) and it has not been modified for settle_ms (by
 * its mtime, or, if the clocks disagree, by our own observation), and it
 * is a whole DICOM file (en_dicom_scan: every element fits, the last ends
 * at the end of the file).  A file renamed in complete has an old mtime
 * and is taken at the second look, a fraction of a second later; a file
 * still being written keeps a fresh mtime and waits; a copy that stalled
 * mid-file, or a file that cannot be opened for the walk, waits up to
 * incomplete_wait_s and is then taken anyway, to fail with the reader's
 * reason rather than sit in the inbox unexplained.  The walk only follows
 * lengths (no decoding), so running it here, outside the per-study child,
 * exposes the daemon to nothing a hostile file could exploit.  Names
 * starting with "." or ending in ".tmp" or ".part" are ignored.
 *
 * Folders (a PACS export, a USB copy) are walked too, up to
 * DM_INBOX_DEPTH levels: each file inside is taken like a top-level one,
 * under a job name of its own, and a folder that stayed empty as long as
 * a stalled copy is given (incomplete_wait_s, at least settle_ms) is
 * removed.  Anything else (a symbolic link, a
 * FIFO, a socket, a device node, a folder nested deeper) cannot be
 * processed: it is moved to failed/ with a .reason like a bad file, or,
 * if even that fails, logged once.
 *
 * Taking is an atomic rename (RENAME_NOREPLACE) into work/ under a name of
 * the daemon's own, "j<unix ms>-<seq>-<random hex>.dcm": never derived from
 * the delivered name, which may hold a patient's name.  What arrived in
 * work/ is then compared with what was checked (spool.c): a link or other
 * oddity swapped in meanwhile is quarantined, another regular file goes
 * back to the inbox to be checked in its turn.  Every move fsyncs both
 * folders, so after a crash a file is either still in the inbox or in
 * work/, where start-up resumes it.
 *
 * Backpressure (jobs.c decides when): files simply wait in the inbox, so
 * memory stays bounded whatever arrives: the table of files waiting to
 * settle is capped too.
 */
#include "config.h"

#include "daemon.h"
#include "en_dicom_scan.h"
#include "en_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DM_INBOX_DEPTH 8        /* folder levels walked below the inbox */
#define DM_REL_MAX 4096         /* a path relative to the inbox */

/* One pass over the inbox. */
typedef struct dm_pass {
    dm_daemon *d;
    double now;             /* en_mono_ms */
    int64_t wall_ms;        /* en_wall_ms, against mtimes */
    size_t cap;             /* bound of the seen table */
    int pending;            /* something is settling: look again soon */
} dm_pass;

/* Test-only (EN_DAEMON_FAULT=claim-delay:MS, read at start): a pause
 * between the last check of a file and its claim, so that a test can
 * swap something else in there at will.  The shipped unit does not set it. */
static useconds_t claim_delay_us;

static int ignored_name(const char *n)
{
    size_t l = strlen(n);
    return n[0] == '.' || (l >= 4 && !strcmp(n + l - 4, ".tmp")) ||
           (l >= 5 && !strcmp(n + l - 5, ".part"));
}

/* ---- the table of things seen in the inbox ---- */

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

/* The entry for name, created (first look) when absent; NULL when the
 * table is full: the rest wait for a later pass. */
static dm_seen *seen_get(dm_pass *ps, const char *name, const dm_file_id *id, int *fresh)
{
    dm_daemon *d = ps->d;
    dm_seen *s = seen_find(d, name);

    *fresh = 0;
    if (!s) {
        if (d->nseen >= ps->cap)
            return NULL;
        if (d->nseen == d->capseen) {
            size_t cap = d->capseen ? d->capseen * 2 : 64;
            dm_seen *n = realloc(d->seen, cap * sizeof *n);
            if (!n)
                return NULL;
            d->seen = n;
            d->capseen = cap;
        }
        s = &d->seen[d->nseen];
        memset(s, 0, sizeof *s);
        if (!(s->name = strdup(name)))
            return NULL;
        d->nseen++;
        *fresh = 1;
    } else if (!dm_file_id_same(&s->id, id)) {
        *fresh = 1;
    }
    if (*fresh) {
        char *keep = s->name;
        memset(s, 0, sizeof *s);
        s->name = keep;
        s->id = *id;
        s->first_ms = ps->now;
    }
    s->looks++;
    s->gen = d->gen;
    return s;
}

/* ---- taking ---- */

/* What arrived in work/ is not what was checked (or was never a file). */
static void not_as_checked(dm_daemon *d, const char *job, dm_kind kind, const dm_file_id *id,
                           const char *context)
{
    char why[256], dcm[DM_JOB_MAX + 8];
    dm_fields f = { .job = job };
    en_err e;

    if (kind != DM_KIND_FILE) {
        snprintf(why, sizeof why, "%s %s: echonetd takes regular files only",
                 dm_kind_name(kind), context);
        dm_job_reject(d, job, why);
        return;
    }
    /* Another regular file took the checked one's name: it has not been
     * checked, so it goes back to be, under its job name. */
    snprintf(dcm, sizeof dcm, "%s.dcm", job);
    if (dm_spool_move(d->cfg.work_dir, dcm, d->cfg.inbox_dir, dcm, &e) == EN_OK) {
        dm_log(DM_NOTICE, &f, "another file took the place of the one checked, just before it "
               "was taken: returned to the inbox to be checked");
        return;
    }
    dm_log(DM_WARN, &f, "another file took the place of the one checked and cannot go back "
           "to the inbox (%s): processing it as it is", e.msg);
    if (dm_job_add(d, job, id, &e) != EN_OK)
        dm_log(DM_ERR, &f, "%s", e.msg);
}

/* Claims dfd/name, checked as want (and for a file, as *want_id).  EN_OK
 * when it left the inbox, EN_ENOTFOUND when it was gone already, another
 * code when it could not be moved (logged unless quiet: each thing says so
 * once). */
static int take(dm_daemon *d, int dfd, const char *name, dm_kind want, const dm_file_id *want_id,
                const char *why_not, int quiet)
{
    char job[DM_JOB_MAX];
    dm_file_id id;
    dm_kind kind;
    en_err e;
    int rc = dm_spool_claim(d->cfg.work_dir, dfd, name, job, &kind, &id, &e);

    if (rc == EN_ENOTFOUND)
        return rc;      /* gone meanwhile (taken by someone else) */
    if (rc != EN_OK) {
        /* The message names the job, not the delivered file. */
        dm_fields f = { .job = job };
        if (!quiet)
            dm_log(DM_ERR, &f, "cannot take %s from the inbox into %s: %s (trying again at "
                   "every look, silently)", dm_kind_name(want), d->cfg.work_dir, e.msg);
        return rc;
    }
    if (want == DM_KIND_FILE && kind == DM_KIND_FILE && dm_file_id_same(&id, want_id)) {
        if (dm_job_add(d, job, &id, &e) != EN_OK) {
            dm_fields f = { .job = job };
            dm_log(DM_ERR, &f, "%s", e.msg);
        }
        return EN_OK;
    }
    if (want == DM_KIND_FILE)
        not_as_checked(d, job, kind, &id, "swapped in for the checked file just before it was "
                       "taken");
    else
        not_as_checked(d, job, kind, &id, why_not);
    return EN_OK;
}

/* ---- one pass ---- */

static void on_soon(uv_timer_t *t);

/* 1 when a settled file may be taken: it is whole DICOM, or the walk cannot
 * tell (the reader decides), or it has waited incomplete_wait_s.  A cut
 * file is walked once per identity, not at every look. */
static int whole_enough(dm_pass *ps, int dfd, const char *name, dm_seen *s)
{
    dm_daemon *d = ps->d;
    uint64_t wait_ms = (uint64_t)d->cfg.incomplete_wait_s * 1000;
    en_dicom_scan sc;
    dm_file_id now_id;
    dm_kind kind;
    en_err e;

    if (!s->scanned) {
        if (en_dicom_scan_file(dfd, name, &sc, &e) != EN_OK) {
            /* Not whole: it could not even be opened (a link swapped in,
             * seen as one at the next look; or unreadable: taken after
             * incomplete_wait_s, to fail with the reader's reason).  The
             * message would name the delivered file: not logged. */
            if (s->unreadable_ms <= 0) {
                s->unreadable_ms = ps->now;
                dm_log(DM_NOTICE, NULL, "a settled file in the inbox cannot be opened for the "
                       "wholeness check; waiting up to %d s", d->cfg.incomplete_wait_s);
            }
            return ps->now - s->unreadable_ms >= (double)wait_ms;
        }
        s->unreadable_ms = 0;
        /* The walk opened the name again: it must still be this file. */
        if (dm_spool_identify(dfd, name, &kind, &now_id, &e) != EN_OK ||
            kind != DM_KIND_FILE || !dm_file_id_same(&now_id, &s->id)) {
            s->looks = 0;
            return 0;
        }
        if (sc.state != EN_SCAN_TRUNCATED)
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
    if (ps->now - s->first_ms >= (double)wait_ms) {
        dm_log(DM_WARN, NULL, "a file in the inbox stayed incomplete for %d s: taking it "
               "anyway (it will fail with the reason)", d->cfg.incomplete_wait_s);
        return 1;
    }
    return 0;
}

/* A regular file: 1 when it was taken. */
static int look_file(dm_pass *ps, int dfd, const char *name, const char *rel,
                     const dm_file_id *id)
{
    dm_daemon *d = ps->d;
    int64_t age_ms = ps->wall_ms - id->mtime_ns / 1000000;
    int fresh, rc;
    dm_seen *s = seen_get(ps, rel, id, &fresh);

    if (!s || fresh || s->looks < 2 ||
        (age_ms < d->cfg.settle_ms && ps->now - s->first_ms < (double)d->cfg.settle_ms) ||
        !whole_enough(ps, dfd, name, s) || d->nqueued + d->nrunning >= d->cfg.queue_max) {
        ps->pending = 1;
        return 0;
    }
    if (claim_delay_us)
        usleep(claim_delay_us);
    rc = take(d, dfd, name, DM_KIND_FILE, &s->id, NULL, s->warned);
    if (rc == EN_OK) {
        s->gen = 0;     /* forget it at the end of the pass */
        return 1;
    }
    if (rc != EN_ENOTFOUND)
        s->warned = 1;
    ps->pending = 1;
    return 0;
}

/* Something that is not a file: turned away once; 1 when it left. */
static int look_other(dm_pass *ps, int dfd, const char *name, const char *rel, dm_kind kind,
                      const dm_file_id *id, const char *why)
{
    int fresh, rc;
    dm_seen *s = seen_get(ps, rel, id, &fresh);

    if (!s)
        return 0;
    rc = take(ps->d, dfd, name, kind, id, why, s->warned);
    if (rc == EN_OK) {
        s->gen = 0;
        return 1;
    }
    if (rc != EN_ENOTFOUND) {
        if (!s->warned)
            dm_log(DM_ERR, NULL, "%s in the inbox cannot be processed and cannot be moved to "
                   "the failed folder (see the line above): remove it by hand",
                   dm_kind_name(kind));
        s->warned = 1;
    }
    return 0;
}

static int walk(dm_pass *ps, int dfd, const char *prefix, int depth, int *only_folders);

/* A folder: walked; removed once it has stayed empty.  1 when it left. */
static int look_dir(dm_pass *ps, int dfd, const char *name, const char *rel,
                    const dm_file_id *id, int depth)
{
    dm_daemon *d = ps->d;
    int sub, left, fresh, only_folders;
    double quiet, age;
    dm_seen *s;

    if (depth >= DM_INBOX_DEPTH)
        return look_other(ps, dfd, name, rel, DM_KIND_DIR, id, "nested more than "
                          "8 folders deep in the inbox");
    sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
        if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR)
            look_other(ps, dfd, name, rel, DM_KIND_DIR, id, "that cannot be read");
        return 0;
    }
    left = walk(ps, sub, rel, depth + 1, &only_folders);
    if (left > 0)
        return 0;
    /* Empty: a copy may still be about to create the next file in it
     * (and fail if the folder went), so it goes only once it has stayed
     * empty and unchanged as long as a stalled copy is given. */
    quiet = (double)d->cfg.incomplete_wait_s * 1000;
    if (quiet < d->cfg.settle_ms)
        quiet = d->cfg.settle_ms;
    age = (double)(ps->wall_ms - id->mtime_ns / 1000000);
    s = seen_get(ps, rel, id, &fresh);
    if (!s)
        return 0;
    /* A folder that held only folders removed just now (a/b/c of an
     * export) is as quiet as its mtime from before this pass says. */
    if (!(only_folders && age >= quiet) &&
        (fresh || s->looks < 2 || (ps->now - s->first_ms < quiet && age < quiet))) {
        ps->pending = 1;
        return 0;
    }
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0) {
        if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT && !s->warned) {
            dm_log(DM_WARN, NULL, "cannot remove an emptied folder from the inbox: %s",
                   strerror(errno));
            s->warned = 1;
        }
        return 0;
    }
    if (fsync(dfd) != 0)
        dm_log(DM_WARN, NULL, "cannot sync the inbox after removing an emptied folder: %s",
               strerror(errno));
    dm_log(DM_INFO, NULL, "removed an emptied folder from the inbox");
    s->gen = 0;
    return 1;
}

/* Walks one folder of the inbox (dfd, closed here); returns how many
 * entries are still in it.  *only_folders: it held entries, all of them
 * folders that this pass removed. */
static int walk(dm_pass *ps, int dfd, const char *prefix, int depth, int *only_folders)
{
    DIR *dir = fdopendir(dfd);
    struct dirent *de;
    int left = 0, seen = 0, folders_gone = 0;

    if (!dir) {
        dm_log(DM_ERR, NULL, "cannot read %s: %s", depth ? "a folder in the inbox" :
               ps->d->cfg.inbox_dir, strerror(errno));
        close(dfd);
        return 1;
    }
    while ((de = readdir(dir))) {
        char rel[DM_REL_MAX];
        dm_file_id id;
        dm_kind kind;
        en_err e;
        int n, gone;

        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        left++;
        seen++;
        if (ignored_name(de->d_name))
            continue;
        n = snprintf(rel, sizeof rel, "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof rel ||
            dm_spool_identify(dirfd(dir), de->d_name, &kind, &id, &e) != EN_OK)
            continue;
        if (kind == DM_KIND_FILE)
            gone = look_file(ps, dirfd(dir), de->d_name, rel, &id);
        else if (kind == DM_KIND_DIR)
            gone = look_dir(ps, dirfd(dir), de->d_name, rel, &id, depth);
        else
            gone = look_other(ps, dirfd(dir), de->d_name, rel, kind, &id, "in the inbox");
        left -= gone;
        folders_gone += kind == DM_KIND_DIR && gone;
    }
    closedir(dir);
    *only_folders = seen > 0 && folders_gone == seen;
    return left;
}

static void scan(dm_daemon *d)
{
    dm_pass ps = { .d = d, .now = en_mono_ms(), .wall_ms = en_wall_ms(),
                   .cap = (size_t)d->cfg.queue_max * 2 + 64 };
    int fd, only_folders;

    if (d->stopping || dm_pressure(d) != DM_PAUSE_NONE)
        return;
    if ((fd = open(d->cfg.inbox_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        dm_log(DM_ERR, NULL, "cannot read the inbox %s: %s", d->cfg.inbox_dir, strerror(errno));
        return;
    }
    d->gen++;
    walk(&ps, fd, "", 0, &only_folders);
    for (size_t i = 0; i < d->nseen;)
        if (d->seen[i].gen != d->gen)
            seen_drop(d, i);
        else
            i++;
    dm_pressure(d);
    dm_jobs_pump(d);
    if (ps.pending && !d->stopping) {
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

    const char *fault = getenv("EN_DAEMON_FAULT");
    long long ms;

    (void)err;  /* nothing here is fatal: the timer always rescans */
    if (fault && !strncmp(fault, "claim-delay:", 12) &&
        en_parse_ll(fault + 12, 0, 1000, &ms) == EN_OK)
        claim_delay_us = (useconds_t)ms * 1000;
    d->soon.data = d->rescan.data = d->watch.data = d;
    uv_timer_start(&d->rescan, on_rescan, 0, (uint64_t)d->cfg.rescan_ms);
    rc = uv_fs_event_start(&d->watch, on_fs_event, d->cfg.inbox_dir, 0);
    if (rc < 0) {
        dm_log(DM_WARN, NULL, "cannot watch the inbox %s (%s): relying on the %d ms rescan",
               d->cfg.inbox_dir, uv_strerror(rc), d->cfg.rescan_ms);
        d->watching = 0;
    } else {
        d->watching = 1;
    }
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

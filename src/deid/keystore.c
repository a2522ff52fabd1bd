/*
 * keystore.c - the optional re-identification key store (see en_deid.h).
 *
 * Kept apart from the results database, so that the database can be shared
 * for research while the key store stays with whoever may re-identify.  It
 * used to be a tab-separated file rewritten whole on every study, which lost
 * mappings when studies were converted at the same time (each writer
 * renamed its own copy over the others').  It is now an SQLite file:
 *
 * - One IMMEDIATE transaction per study: the write lock is taken first (so
 *   the busy handler waits for it instead of SQLite failing at once on a
 *   read-to-write upgrade), two INSERT OR IGNOREs, a count.
 * - Writers queue on an flock of <path>.lock (mode 0600, empty, never
 *   removed) before they touch SQLite's locks, polled every 1-2 ms for up
 *   to KS_BUSY_MS.  SQLite alone lets a writer starve: its busy handler
 *   sleeps up to 100 ms between tries, and in rollback-journal mode every
 *   try takes a shared lock that delays the committing writer, so with 16
 *   writers at once some waited over 10 s.  Polling an flock disturbs no
 *   one.  A separate file, because on NFS flock is a POSIX lock, and one
 *   on the database file itself would be dropped with SQLite's own when
 *   either descriptor closes.  SQLite's busy handler (1-4 ms retries, same
 *   bound) covers the rest: readers, and setting up a new store.
 * - Rollback journal (SQLite's default), not WAL: the key store may live on
 *   storage of its own where WAL's shared memory does not work, writes are
 *   one short transaction per study, and no -wal/-shm files holding
 *   identifiers stay beside it.  synchronous=FULL: a committed mapping
 *   survives power loss.
 * - Append-only: records are unique on every identifying field, so a repeat
 *   is ignored and a disagreeing file adds a record; a trigger refuses
 *   UPDATE.  (DELETE stays possible for an authorised person erasing a
 *   patient by hand.)
 * - application_id and user_version mark the file as ours, so pointing
 *   keystore_file at the results database (or any other SQLite file) is
 *   refused instead of written into.
 *
 * Migration from the tab-separated format happens on open, once, under an
 * exclusive flock on the old file: the rows are written to a new SQLite
 * file beside it, the old file is hard-linked to <path>.migrated (copied
 * when the file system has no hard links), and the new file is renamed over
 * the path.  At every moment the path holds either the complete old store
 * or the complete new one; processes that waited for the lock see the new
 * inode and open that.
 */
#include "en_deid.h"
#include "en_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define KS_APP_ID 0x656e6b73       /* "enks" in the SQLite header */
#define KS_VERSION 1
#define KS_BUSY_MS 30000
#define KS_PSEUDONYM_MAX 64
#define KS_TSV_HEADER "# echonetd key store"
#define KS_TSV_FIELDS 11           /* pseudonym + the ten identity fields */
#define KS_OPEN_TRIES 20

struct en_keystore {
    sqlite3 *db;
    int readonly;
    double busy_since;       /* when the current wait for a lock began */
    int lock_fd;             /* <path>.lock, opened at the first put */
    char path[4096];
};

/* The identity fields, in the order of the old tab-separated lines; the
 * first eight identify the study's patient and visit, the last two one
 * file (kept per file in the instances table). */
typedef struct ks_field {
    const char *column;
    size_t off, cap;
} ks_field;

#define KS_F(m) { #m, offsetof(en_dicom_identity, m), sizeof(((en_dicom_identity *)0)->m) }
static const ks_field ks_study_fields[] = {
    KS_F(study_instance_uid), KS_F(patient_name), KS_F(patient_id), KS_F(patient_birth_date),
    KS_F(accession_number), KS_F(study_date), KS_F(study_time), KS_F(institution_name),
};
static const ks_field ks_file_fields[] = { KS_F(series_instance_uid), KS_F(sop_instance_uid) };
/* Field i of a tab-separated line (after the pseudonym). */
static const ks_field ks_tsv_fields[KS_TSV_FIELDS - 1] = {
    KS_F(study_instance_uid), KS_F(series_instance_uid), KS_F(sop_instance_uid),
    KS_F(patient_name), KS_F(patient_id), KS_F(patient_birth_date), KS_F(accession_number),
    KS_F(study_date), KS_F(study_time), KS_F(institution_name),
};
#undef KS_F
#define KS_NSTUDY (sizeof ks_study_fields / sizeof ks_study_fields[0])

static const char ks_schema[] =
    "CREATE TABLE links ("
    " id INTEGER PRIMARY KEY,"
    " pseudonym TEXT NOT NULL,"
    " study_instance_uid TEXT NOT NULL, patient_name TEXT NOT NULL, patient_id TEXT NOT NULL,"
    " patient_birth_date TEXT NOT NULL, accession_number TEXT NOT NULL, study_date TEXT NOT NULL,"
    " study_time TEXT NOT NULL, institution_name TEXT NOT NULL,"
    " series_instance_uid TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,"
    " stored_ms INTEGER," /* NULL: migrated from the old format, time unknown */
    " UNIQUE (pseudonym, study_instance_uid, patient_name, patient_id, patient_birth_date,"
    "         accession_number, study_date, study_time, institution_name));"
    "CREATE TABLE instances ("
    " pseudonym TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,"
    " series_instance_uid TEXT NOT NULL, stored_ms INTEGER,"
    " PRIMARY KEY (pseudonym, sop_instance_uid)) WITHOUT ROWID;"
    "CREATE TRIGGER links_never_change BEFORE UPDATE ON links"
    " BEGIN SELECT RAISE(ABORT, 'key store records are never changed'); END;"
    "CREATE TRIGGER instances_never_change BEFORE UPDATE ON instances"
    " BEGIN SELECT RAISE(ABORT, 'key store records are never changed'); END;";

static char *field_ptr(en_dicom_identity *id, const ks_field *f)
{
    return (char *)id + f->off;
}

/* ---- errors ------------------------------------------------------------ */

/* An SQLite failure as an EN_* code and a message naming the file, what
 * was being done and what the operator can do about it. */
static int ks_fail(const char *path, sqlite3 *db, int src, const char *doing, en_err *err)
{
    const char *why = db ? sqlite3_errmsg(db) : sqlite3_errstr(src);

    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return en_err_set(err, EN_EIO, "key store %s: %s: still locked by another process after "
                          "%d s (%s); try again, and look for a process stuck holding it",
                          path, doing, KS_BUSY_MS / 1000, why);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return en_err_set(err, EN_EPERM, "key store %s: %s: %s; the file must be readable and "
                          "writable (mode 600) by the user echonetd runs as, and its folder "
                          "writable too (SQLite writes a journal beside it)", path, doing, why);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return en_err_set(err, EN_EIO, "key store %s: %s: the file is damaged (%s); restore it "
                          "from a backup (echonetd never overwrites it)", path, doing, why);
    case SQLITE_FULL:
        return en_err_set(err, EN_EIO, "key store %s: %s: the disk is full (%s); free space "
                          "and try again", path, doing, why);
    case SQLITE_NOMEM:
        return en_err_set(err, EN_ENOMEM, "key store %s: %s: out of memory", path, doing);
    default:
        return en_err_set(err, EN_EIO, "key store %s: %s: %s", path, doing, why);
    }
}

static int ks_exec(en_keystore *ks, const char *sql, const char *doing, en_err *err)
{
    int rc = sqlite3_exec(ks->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? EN_OK : ks_fail(ks->path, ks->db, rc, doing, err);
}

static int ks_prepare(en_keystore *ks, const char *sql, sqlite3_stmt **st, const char *doing,
                      en_err *err)
{
    int rc = sqlite3_prepare_v2(ks->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? EN_OK : ks_fail(ks->path, ks->db, rc, doing, err);
}

/* A single integer from a one-row query such as a PRAGMA. */
static int ks_int(en_keystore *ks, const char *sql, long long *out, const char *doing, en_err *err)
{
    sqlite3_stmt *st;
    int rc = ks_prepare(ks, sql, &st, doing, err);

    if (rc)
        return rc;
    rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = EN_OK;
    else
        rc = ks_fail(ks->path, ks->db, rc, doing, err);
    sqlite3_finalize(st);
    return rc;
}

static void ks_rollback(en_keystore *ks)
{
    if (!sqlite3_get_autocommit(ks->db))
        (void)sqlite3_exec(ks->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- records ------------------------------------------------------------ */

static int ks_pseudonym_ok(const char *p)
{
    size_t n = p ? strlen(p) : 0;

    if (n == 0 || n > KS_PSEUDONYM_MAX)
        return 0;
    for (; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

/* Binds ?1 = pseudonym, then the given fields from ?2 on. */
static int ks_bind(sqlite3_stmt *st, const char *pseudonym, const en_dicom_identity *id,
                   const ks_field *f, size_t n, long long stored_ms)
{
    int rc = sqlite3_bind_text(st, 1, pseudonym, -1, SQLITE_STATIC);

    for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_text(st, (int)i + 2, field_ptr((en_dicom_identity *)id, &f[i]), -1,
                               SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = stored_ms >= 0 ? sqlite3_bind_int64(st, (int)n + 2, stored_ms)
                            : sqlite3_bind_null(st, (int)n + 2);
    return rc;
}

static int ks_run(en_keystore *ks, sqlite3_stmt *st, int rc, const char *doing, en_err *err)
{
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? EN_OK : ks_fail(ks->path, ks->db, rc, doing, err);
    sqlite3_finalize(st);
    return rc;
}

/* The two INSERT OR IGNOREs of one file, inside the caller's transaction;
 * stored_ms < 0 stores NULL (time unknown). */
static int ks_insert(en_keystore *ks, const char *pseudonym, const en_dicom_identity *id,
                     long long stored_ms, en_err *err)
{
    static const char links_sql[] =
        "INSERT OR IGNORE INTO links (pseudonym, study_instance_uid, patient_name, patient_id,"
        " patient_birth_date, accession_number, study_date, study_time, institution_name,"
        " stored_ms, series_instance_uid, sop_instance_uid)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
    static const char inst_sql[] =
        "INSERT OR IGNORE INTO instances (pseudonym, series_instance_uid, sop_instance_uid,"
        " stored_ms) VALUES (?1, ?2, ?3, ?4)";
    const char *doing = "cannot record a study";
    sqlite3_stmt *st;
    int rc;

    if ((rc = ks_prepare(ks, links_sql, &st, doing, err)))
        return rc;
    rc = ks_bind(st, pseudonym, id, ks_study_fields, KS_NSTUDY, stored_ms);
    /* The first file's series and SOP UIDs ride along with a new record. */
    for (int i = 0; i < 2 && rc == SQLITE_OK; i++)
        rc = sqlite3_bind_text(st, 11 + i, field_ptr((en_dicom_identity *)id, &ks_file_fields[i]),
                               -1, SQLITE_STATIC);
    if ((rc = ks_run(ks, st, rc, doing, err)))
        return rc;
    if (!id->sop_instance_uid[0])
        return EN_OK;
    if ((rc = ks_prepare(ks, inst_sql, &st, doing, err)))
        return rc;
    return ks_run(ks, st, ks_bind(st, pseudonym, id, ks_file_fields, 2, stored_ms), doing, err);
}

static void ks_read_row(sqlite3_stmt *st, en_dicom_identity *id)
{
    memset(id, 0, sizeof *id);
    for (size_t i = 0; i < KS_NSTUDY; i++) {
        const unsigned char *v = sqlite3_column_text(st, (int)i + 1);
        snprintf(field_ptr(id, &ks_study_fields[i]), ks_study_fields[i].cap, "%s",
                 v ? (const char *)v : "");
    }
    for (int i = 0; i < 2; i++) {
        const unsigned char *v = sqlite3_column_text(st, (int)KS_NSTUDY + 1 + i);
        snprintf(field_ptr(id, &ks_file_fields[i]), ks_file_fields[i].cap, "%s",
                 v ? (const char *)v : "");
    }
}

#define KS_SELECT "SELECT pseudonym, study_instance_uid, patient_name, patient_id," \
    " patient_birth_date, accession_number, study_date, study_time, institution_name," \
    " series_instance_uid, sop_instance_uid FROM links"

/* Takes the writers' lock (see the top of this file). */
static int ks_writer_lock(en_keystore *ks, en_err *err)
{
    char lock[sizeof ks->path + 8];
    double t0 = en_mono_ms();

    snprintf(lock, sizeof lock, "%s.lock", ks->path);
    if (ks->lock_fd < 0)
        ks->lock_fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (ks->lock_fd < 0)
        return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "key store %s: cannot open its "
                          "lock file %s: %s; its folder must be writable by the user echonetd "
                          "runs as", ks->path, lock, strerror(errno));
    for (unsigned n = 0; flock(ks->lock_fd, LOCK_EX | LOCK_NB) != 0; n++) {
        struct timespec ts = { 0, (long)(1 + n % 2) * 1000000L };
        if (errno != EWOULDBLOCK && errno != EINTR)
            return en_err_set(err, EN_EIO, "key store %s: cannot lock %s: %s", ks->path, lock,
                              strerror(errno));
        if (en_mono_ms() - t0 >= KS_BUSY_MS)
            return en_err_set(err, EN_EIO, "key store %s: another process has held its lock file "
                              "%s for %d s; try again, and look for a process stuck holding it",
                              ks->path, lock, KS_BUSY_MS / 1000);
        nanosleep(&ts, NULL);
    }
    return EN_OK;
}

/* ---- schema ------------------------------------------------------------- */

static int ks_create_schema(en_keystore *ks, en_err *err)
{
    const char *doing = "cannot set up a new key store";
    long long version, tables;
    int rc;

    if ((rc = ks_exec(ks, "BEGIN IMMEDIATE", doing, err)))
        return rc;
    /* Another process may have set it up while this one waited. */
    if ((rc = ks_int(ks, "PRAGMA user_version", &version, doing, err)) ||
        (rc = ks_int(ks, "SELECT count(*) FROM sqlite_master", &tables, doing, err)))
        goto out;
    if (version == 0 && tables > 0) {
        rc = en_err_set(err, EN_EFORMAT, "key store %s is an SQLite database but not an echonetd "
                        "key store (is keystore_file pointing at another database?); set "
                        "keystore_file to a file of its own", ks->path);
        goto out;
    }
    if (version == 0) {
        char pragmas[96];
        snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 KS_APP_ID, KS_VERSION);
        if ((rc = ks_exec(ks, ks_schema, doing, err)) || (rc = ks_exec(ks, pragmas, doing, err)))
            goto out;
    }
    rc = ks_exec(ks, "COMMIT", doing, err);
out:
    ks_rollback(ks);
    return rc;
}

static int ks_check_schema(en_keystore *ks, en_err *err)
{
    const char *doing = "cannot read the key store";
    long long app, version;
    int rc;

    if ((rc = ks_int(ks, "PRAGMA user_version", &version, doing, err)))
        return rc;
    if (version == 0) {
        if (ks->readonly)
            return en_err_set(err, EN_EPERM, "key store %s is empty and read-only for this user: "
                              "give the user echonetd runs as write access (mode 600)", ks->path);
        if ((rc = ks_create_schema(ks, err)) ||
            (rc = ks_int(ks, "PRAGMA user_version", &version, doing, err)))
            return rc;
    }
    if ((rc = ks_int(ks, "PRAGMA application_id", &app, doing, err)))
        return rc;
    if (app != KS_APP_ID)
        return en_err_set(err, EN_EFORMAT, "key store %s is an SQLite database but not an echonetd "
                          "key store (is keystore_file pointing at another database?); set "
                          "keystore_file to a file of its own", ks->path);
    if (version > KS_VERSION)
        return en_err_set(err, EN_EFORMAT, "key store %s was written by a newer echonetd (format "
                          "%lld, this one reads %d): upgrade echonetd", ks->path, version, KS_VERSION);
    return EN_OK;
}

/* ---- files ---------------------------------------------------------------- */

typedef enum ks_kind { KS_SQLITE, KS_TSV, KS_OTHER } ks_kind;

/* What the file at fd holds, from its first bytes.  An empty file is an
 * SQLite store that nobody has written to yet. */
static ks_kind ks_sniff(int fd)
{
    char head[512];
    ssize_t n;

    do
        n = pread(fd, head, sizeof head, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return KS_SQLITE;
    if (n >= 16 && memcmp(head, "SQLite format 3", 16) == 0)
        return KS_SQLITE;
    if (n > 0 && (size_t)n >= sizeof KS_TSV_HEADER - 1 &&
        memcmp(head, KS_TSV_HEADER, sizeof KS_TSV_HEADER - 1) == 0)
        return KS_TSV;
    return KS_OTHER;
}

static void ks_dirname(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(dir, n, ".");
    else if (slash == path)
        snprintf(dir, n, "/");
    else
        snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

/* Creates an empty store file, mode 0600, never following a symlink; a
 * file that appeared meanwhile is fine (another process made it). */
static int ks_create_file(const char *path, en_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    char dir[4096];

    if (fd >= 0) {
        close(fd);
        ks_dirname(path, dir, sizeof dir);
        (void)en_fsync_dir(dir); /* the store is durable from its first commit on */
        return EN_OK;
    }
    if (errno == EEXIST)
        return EN_OK;
    if (errno == ENOENT)
        return en_err_set(err, EN_ENOTFOUND, "key store %s: cannot create it: its folder does not "
                          "exist; create the folder (mode 700) or fix keystore_file", path);
    return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "key store %s: cannot create it: "
                      "%s; the folder must be writable by the user echonetd runs as",
                      path, strerror(errno));
}

/* SQLite's busy handler: n counts the retries of one wait. */
static int ks_busy(void *ctx, int n)
{
    en_keystore *ks = ctx;
    double now = en_mono_ms();
    struct timespec ts = { 0, (long)(1 + n % 4) * 1000000L };

    if (n == 0)
        ks->busy_since = now;
    if (now - ks->busy_since >= KS_BUSY_MS)
        return 0;
    nanosleep(&ts, NULL);
    return 1;
}

/* Opens path with SQLite, read-write when permitted. */
static int ks_open_db(en_keystore *ks, en_err *err)
{
    int rc = sqlite3_open_v2(ks->path, &ks->db, SQLITE_OPEN_READWRITE, NULL);

    if (rc != SQLITE_OK) {
        rc = ks_fail(ks->path, ks->db, rc, "cannot open it", err);
        sqlite3_close(ks->db);
        ks->db = NULL;
        return rc;
    }
    sqlite3_extended_result_codes(ks->db, 1);
    sqlite3_busy_handler(ks->db, ks_busy, ks);
    ks->readonly = sqlite3_db_readonly(ks->db, "main") == 1;
    return ks_exec(ks, "PRAGMA synchronous = FULL", "cannot open it", err);
}

/* ---- migration from the tab-separated format -------------------------------- */

/* One line of the old format into pseudonym and id; 0 when malformed. */
static int ks_parse_line(char *line, char **pseudonym, en_dicom_identity *id)
{
    char *field[KS_TSV_FIELDS];
    int n = 0;

    field[n++] = line;
    for (char *p = line; *p; p++) {
        if (*p != '\t')
            continue;
        if (n == KS_TSV_FIELDS)
            return 0;
        *p = '\0';
        field[n++] = p + 1;
    }
    if (n != KS_TSV_FIELDS || !ks_pseudonym_ok(field[0]))
        return 0;
    memset(id, 0, sizeof *id);
    for (int i = 1; i < n; i++) {
        const ks_field *f = &ks_tsv_fields[i - 1];
        if (strlen(field[i]) >= f->cap)
            return 0;
        memcpy(field_ptr(id, f), field[i], strlen(field[i]) + 1);
    }
    *pseudonym = field[0];
    return 1;
}

/* Imports every line of the old file (read through fd) into the new store,
 * in one transaction: all of it or nothing. */
static int ks_import_tsv(en_keystore *ks, int fd, const char *old_path, en_err *err)
{
    FILE *in;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc, dfd = dup(fd);

    if (dfd < 0 || !(in = fdopen(dfd, "r"))) {
        if (dfd >= 0)
            close(dfd);
        return en_err_set(err, EN_EIO, "key store %s: cannot read it for migration: %s",
                          old_path, strerror(errno));
    }
    rewind(in);
    rc = ks_exec(ks, "BEGIN IMMEDIATE", "cannot migrate the tab-separated key store", err);
    while (rc == EN_OK && (len = getline(&line, &cap, in)) >= 0) {
        en_dicom_identity id;
        char *pseudonym;
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (!ks_parse_line(line, &pseudonym, &id)) {
            rc = en_err_set(err, EN_EFORMAT, "key store %s: line %ld is not a key store line "
                            "(pseudonym and ten tab-separated fields), so it cannot be migrated; "
                            "fix or remove that line and run again (nothing was changed)",
                            old_path, lineno);
            break;
        }
        rc = ks_insert(ks, pseudonym, &id, -1, err);
        memset(&id, 0, sizeof id);
    }
    if (rc == EN_OK && ferror(in))
        rc = en_err_set(err, EN_EIO, "key store %s: cannot read it for migration: %s",
                        old_path, strerror(errno));
    if (rc == EN_OK)
        rc = ks_exec(ks, "COMMIT", "cannot migrate the tab-separated key store", err);
    ks_rollback(ks);
    if (line)
        memset(line, 0, cap);
    free(line);
    fclose(in);
    return rc;
}

/* Copies the old file when it cannot be hard-linked (file systems without
 * hard links).  0 or an errno value. */
static int ks_copy(int fd, const char *dst)
{
    char buf[65536];
    off_t off = 0;
    ssize_t n;
    int e = 0, out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (out < 0)
        return errno;
    while (e == 0 && (n = pread(fd, buf, sizeof buf, off)) != 0) {
        if (n < 0)
            e = errno == EINTR ? 0 : errno;
        else if (write(out, buf, (size_t)n) != n)
            e = errno ? errno : EIO;
        else
            off += n;
    }
    if (e == 0 && fsync(out) != 0)
        e = errno;
    close(out);
    if (e)
        unlink(dst);
    return e;
}

/* Keeps the old file as <path>.migrated (or .migrated.N when that name is
 * taken by something else); its name goes into kept. */
static int ks_keep_old(int fd, const char *path, char *kept, size_t n, en_err *err)
{
    struct stat a, b;
    int e = 0;

    if (fstat(fd, &a) != 0)
        return en_err_set(err, EN_EIO, "key store %s: %s", path, strerror(errno));
    for (int k = 0; k < 100; k++) {
        if (k == 0)
            snprintf(kept, n, "%s.migrated", path);
        else
            snprintf(kept, n, "%s.migrated.%d", path, k);
        if (link(path, kept) == 0)
            return EN_OK;
        e = errno;
        if (e == EEXIST) {
            /* Left by a migration that stopped before its rename: the same file. */
            if (stat(kept, &b) == 0 && b.st_dev == a.st_dev && b.st_ino == a.st_ino)
                return EN_OK;
            continue;
        }
        if (e == EPERM || e == ENOTSUP || e == EXDEV || e == EMLINK || e == ENOSYS) {
            if ((e = ks_copy(fd, kept)) == 0)
                return EN_OK;
            if (e == EEXIST)
                continue;
        }
        break;
    }
    return en_err_set(err, EN_EIO, "key store %s: cannot keep the tab-separated store as %s "
                      "during migration: %s; make the folder writable and run again (nothing "
                      "was changed)", path, kept, e ? strerror(e) : "too many old copies");
}

/* Migrates the tab-separated store open at fd.  Returns EN_OK when the
 * path now holds an SQLite store (made here or by another process). */
static int ks_migrate(const char *path, int fd, en_err *err)
{
    en_keystore tmp = { .lock_fd = -1 };
    char kept[4200], dir[4096];
    struct stat a, b;
    int rc, tfd;

    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return en_err_set(err, EN_EIO, "key store %s: cannot lock it for migration: %s",
                              path, strerror(errno));
    /* Whoever held the lock may have migrated it already. */
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return EN_OK;
    if ((size_t)snprintf(tmp.path, sizeof tmp.path, "%s.migrating", path) >= sizeof tmp.path)
        return en_err_set(err, EN_EINVAL, "key store path %s is too long", path);
    unlink(tmp.path); /* left by a migration that failed: never the store itself */
    tfd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (tfd < 0)
        return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "key store %s: cannot create "
                          "%s to migrate the tab-separated store: %s; make the folder writable "
                          "by the user echonetd runs as", path, tmp.path, strerror(errno));
    close(tfd);
    rc = ks_open_db(&tmp, err);
    if (rc == EN_OK)
        rc = ks_check_schema(&tmp, err);
    if (rc == EN_OK)
        rc = ks_import_tsv(&tmp, fd, path, err);
    if (tmp.db && sqlite3_close(tmp.db) != SQLITE_OK && rc == EN_OK)
        rc = en_err_set(err, EN_EIO, "key store %s: cannot close %s", path, tmp.path);
    if (rc == EN_OK)
        rc = ks_keep_old(fd, path, kept, sizeof kept, err);
    if (rc == EN_OK && rename(tmp.path, path) != 0)
        rc = en_err_set(err, EN_EIO, "key store %s: cannot put the migrated store in place: %s "
                        "(the tab-separated store is unchanged)", path, strerror(errno));
    if (rc != EN_OK) {
        unlink(tmp.path);
        return rc;
    }
    ks_dirname(path, dir, sizeof dir);
    (void)en_fsync_dir(dir);
    return EN_OK;
}

/* ---- the API ---------------------------------------------------------------- */

static int ks_open(en_keystore **out, const char *path, int create, en_err *err)
{
    en_keystore *ks;
    int rc = EN_OK;

    *out = NULL;
    if (!path || !*path)
        return en_err_set(err, EN_EINVAL, "no key store path given");
    if (strlen(path) + 32 > sizeof ks->path)
        return en_err_set(err, EN_EINVAL, "key store path %s is too long", path);
    for (int tries = 0;; tries++) {
        struct stat st;
        ks_kind kind;
        int fd;

        if (tries == KS_OPEN_TRIES)
            return en_err_set(err, EN_EIO, "key store %s keeps changing while it is opened; make "
                              "sure only echonetd writes it", path);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT) {
            if (!create)
                return en_err_set(err, EN_ENOTFOUND, "key store %s does not exist", path);
            if ((rc = ks_create_file(path, err)))
                return rc;
            continue;
        }
        if (fd < 0)
            return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "key store %s: cannot open "
                              "it: %s; it must be readable and writable (mode 600) by the user "
                              "echonetd runs as", path, strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return en_err_set(err, EN_EINVAL, "key store %s is not a regular file; set "
                              "keystore_file to a file", path);
        }
        if (st.st_mode & 077) {
            close(fd);
            return en_err_set(err, EN_EPERM, "key store %s is readable by others (mode %03o): run "
                              "chmod 600 on it", path, (unsigned)(st.st_mode & 0777));
        }
        kind = ks_sniff(fd);
        if (kind == KS_TSV) {
            rc = ks_migrate(path, fd, err);
            close(fd);
            if (rc)
                return rc;
            continue; /* open what is at the path now */
        }
        close(fd);
        if (kind == KS_OTHER)
            return en_err_set(err, EN_EFORMAT, "key store %s is neither an echonetd key store nor "
                              "one of the older tab-separated format; restore it from a backup, "
                              "or set keystore_file to a new file", path);
        break;
    }
    if (!(ks = calloc(1, sizeof *ks)))
        return en_err_set(err, EN_ENOMEM, "key store %s: out of memory", path);
    ks->lock_fd = -1;
    snprintf(ks->path, sizeof ks->path, "%s", path);
    if ((rc = ks_open_db(ks, err)) || (rc = ks_check_schema(ks, err))) {
        en_keystore_close(ks);
        return rc;
    }
    *out = ks;
    return EN_OK;
}

int en_keystore_open(en_keystore **ks, const char *path, en_err *err)
{
    return ks_open(ks, path, 1, err);
}

int en_keystore_put(en_keystore *ks, const char *pseudonym, const en_dicom_identity *id,
                    en_err *err)
{
    const char *doing = "cannot record a study";
    sqlite3_stmt *st;
    long long count = 0;
    int rc;

    if (!ks_pseudonym_ok(pseudonym))
        return en_err_set(err, EN_EINVAL, "key store %s: not a pseudonym (lower-case hex, 1..%d "
                          "characters)", ks->path, KS_PSEUDONYM_MAX);
    if (ks->readonly)
        return en_err_set(err, EN_EPERM, "key store %s is read-only for this user: the file must "
                          "be writable (mode 600) by the user echonetd runs as", ks->path);
    if ((rc = ks_writer_lock(ks, err)))
        return rc;
    if ((rc = ks_exec(ks, "BEGIN IMMEDIATE", doing, err))) {
        flock(ks->lock_fd, LOCK_UN);
        return rc;
    }
    rc = ks_insert(ks, pseudonym, id, en_wall_ms(), err);
    if (rc == EN_OK && (rc = ks_prepare(ks, "SELECT count(*) FROM links WHERE pseudonym = ?1",
                                        &st, doing, err)) == EN_OK) {
        int s = sqlite3_bind_text(st, 1, pseudonym, -1, SQLITE_STATIC);
        if (s == SQLITE_OK)
            s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            count = sqlite3_column_int64(st, 0);
        else
            rc = ks_fail(ks->path, ks->db, s, doing, err);
        sqlite3_finalize(st);
    }
    if (rc == EN_OK)
        rc = ks_exec(ks, "COMMIT", doing, err);
    ks_rollback(ks);
    flock(ks->lock_fd, LOCK_UN);
    if (rc)
        return rc;
    return count > 0 && count < 1000000 ? (int)count : 1;
}

int en_keystore_get(en_keystore *ks, const char *pseudonym, en_dicom_identity *id, en_err *err)
{
    const char *doing = "cannot look a pseudonym up";
    sqlite3_stmt *st;
    int rc, s;

    memset(id, 0, sizeof *id);
    if (!ks_pseudonym_ok(pseudonym))
        return en_err_set(err, EN_ENOTFOUND, "key store %s holds only hex pseudonyms", ks->path);
    if ((rc = ks_prepare(ks, KS_SELECT " WHERE pseudonym = ?1 ORDER BY id LIMIT 1", &st, doing, err)))
        return rc;
    s = sqlite3_bind_text(st, 1, pseudonym, -1, SQLITE_STATIC);
    if (s == SQLITE_OK)
        s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        ks_read_row(st, id);
    else if (s == SQLITE_DONE)
        rc = en_err_set(err, EN_ENOTFOUND, "pseudonym %s is not in key store %s", pseudonym, ks->path);
    else
        rc = ks_fail(ks->path, ks->db, s, doing, err);
    sqlite3_finalize(st);
    return rc;
}

int en_keystore_list(en_keystore *ks, en_keystore_fn fn, void *ctx, en_err *err)
{
    const char *doing = "cannot list it";
    sqlite3_stmt *st;
    en_dicom_identity id;
    int rc, s;

    if ((rc = ks_prepare(ks, KS_SELECT " ORDER BY pseudonym, id", &st, doing, err)))
        return rc;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        ks_read_row(st, &id);
        rc = fn(ctx, (const char *)sqlite3_column_text(st, 0), &id);
        if (rc)
            break;
    }
    memset(&id, 0, sizeof id);
    if (rc == EN_OK && s != SQLITE_DONE)
        rc = ks_fail(ks->path, ks->db, s, doing, err);
    sqlite3_finalize(st);
    return rc;
}

const char *en_keystore_path(const en_keystore *ks)
{
    return ks->path;
}

void en_keystore_close(en_keystore *ks)
{
    if (!ks)
        return;
    sqlite3_close_v2(ks->db);
    if (ks->lock_fd >= 0)
        close(ks->lock_fd);
    free(ks);
}

int en_deid_keystore_put(const char *path, const char *pseudonym,
                         const en_dicom_identity *id, en_err *err)
{
    en_keystore *ks;
    int rc = en_keystore_open(&ks, path, err);

    if (rc)
        return rc;
    rc = en_keystore_put(ks, pseudonym, id, err);
    en_keystore_close(ks);
    return rc < 0 ? rc : EN_OK;
}

int en_deid_keystore_get(const char *path, const char *pseudonym,
                         en_dicom_identity *id, en_err *err)
{
    en_keystore *ks;
    int rc = ks_open(&ks, path, 0, err);

    memset(id, 0, sizeof *id);
    if (rc)
        return rc;
    rc = en_keystore_get(ks, pseudonym, id, err);
    en_keystore_close(ks);
    return rc;
}

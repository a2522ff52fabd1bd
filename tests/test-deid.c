/*
 * test-deid.c - pseudonyms are keyed, stable and irreversible without the
 * secret; the secret and key store refuse unsafe permissions; the key store
 * round-trips, never loses or changes a mapping (also with 16 writers at
 * once), migrates the old tab-separated format, and refuses what is not a
 * key store with a message naming the file.
 */
#include "en_deid.h"
#include "tst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/hmac.h>

static char dir[256];

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void test_secret_created_0600(void)
{
    char p[512];
    struct stat st;
    en_deid d;
    en_err e;

    path_in(p, sizeof p, "sub/secret");
    CHECK(en_deid_open(&d, p, &e) == EN_OK);
    CHECK(stat(p, &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(st.st_size == EN_SECRET_BYTES);
    en_deid_close(&d);
}

static void test_pseudonym_stable_and_keyed(void)
{
    char p[512], a[EN_PSEUDONYM_LEN + 1], b[EN_PSEUDONYM_LEN + 1], c[EN_PSEUDONYM_LEN + 1];
    unsigned char mac[32];
    unsigned int len = 0;
    char expect[EN_PSEUDONYM_LEN + 1];
    en_deid d1, d2, d3;
    en_err e;
    const char *uid = "1.2.826.0.1.3680043.8.498.12345";

    path_in(p, sizeof p, "sub/secret");
    CHECK(en_deid_open(&d1, p, &e) == EN_OK);
    CHECK(en_deid_open(&d2, p, &e) == EN_OK);
    CHECK(en_deid_pseudonym(&d1, uid, a, &e) == EN_OK);
    CHECK(en_deid_pseudonym(&d2, uid, b, &e) == EN_OK);
    CHECK(strcmp(a, b) == 0);
    CHECK(strlen(a) == EN_PSEUDONYM_LEN);
    CHECK(strstr(a, "12345") == NULL || strcmp(a, uid) != 0);

    /* Independent check against OpenSSL's one-shot HMAC. */
    HMAC(EVP_sha256(), d1.secret, EN_SECRET_BYTES, (const unsigned char *)uid, strlen(uid), mac, &len);
    for (int i = 0; i < EN_PSEUDONYM_LEN / 2; i++)
        sprintf(expect + 2 * i, "%02x", mac[i]);
    CHECK(strcmp(a, expect) == 0);

    /* A different site secret gives a different pseudonym. */
    path_in(p, sizeof p, "other-secret");
    CHECK(en_deid_open(&d3, p, &e) == EN_OK);
    CHECK(en_deid_pseudonym(&d3, uid, c, &e) == EN_OK);
    CHECK(strcmp(a, c) != 0);

    CHECK(en_deid_pseudonym(&d1, "", c, &e) == EN_EINVAL);
    en_deid_close(&d1);
    en_deid_close(&d2);
    en_deid_close(&d3);
}

static void test_secret_refused_when_unsafe(void)
{
    char p[512];
    en_deid d;
    en_err e;
    FILE *f;

    path_in(p, sizeof p, "sub/secret");
    CHECK(chmod(p, 0644) == 0);
    CHECK(en_deid_open(&d, p, &e) == EN_EPERM);
    CHECK(strstr(e.msg, "chmod 600") != NULL);
    CHECK(chmod(p, 0600) == 0);

    path_in(p, sizeof p, "short-secret");
    f = fopen(p, "w");
    fputs("short", f);
    fclose(f);
    chmod(p, 0600);
    CHECK(en_deid_open(&d, p, &e) == EN_EFORMAT);
    CHECK(strstr(e.msg, p) != NULL);
}

static void identity(en_dicom_identity *id, const char *name, const char *pid, const char *sop)
{
    memset(id, 0, sizeof *id);
    strcpy(id->study_instance_uid, "1.2.3.4");
    snprintf(id->patient_name, sizeof id->patient_name, "%s", name);
    snprintf(id->patient_id, sizeof id->patient_id, "%s", pid);
    strcpy(id->study_date, "20200101");
    strcpy(id->series_instance_uid, "1.2.3.4.5");
    snprintf(id->sop_instance_uid, sizeof id->sop_instance_uid, "%s", sop);
}

static int is_sqlite(const char *p)
{
    char head[16] = "";
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;

    if (f)
        fclose(f);
    return n == 16 && memcmp(head, "SQLite format 3", 16) == 0;
}

static int count_cb(void *ctx, const char *pseudonym, const en_dicom_identity *id)
{
    (void)pseudonym;
    (void)id;
    ++*(int *)ctx;
    return 0;
}

static int records(const char *p)
{
    en_keystore *ks;
    en_err e;
    int n = 0;

    if (en_keystore_open(&ks, p, &e) != EN_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    if (en_keystore_list(ks, count_cb, &n, &e) != EN_OK)
        n = -1;
    en_keystore_close(ks);
    return n;
}

/* Round trip; a repeat changes nothing; a disagreeing file of the same
 * study adds a record and never replaces the first. */
static void test_keystore(void)
{
    char p[512];
    en_dicom_identity id, back;
    en_keystore *ks;
    en_err e;
    struct stat st;

    path_in(p, sizeof p, "keys.db");
    identity(&id, "DOE^JANE\tX", "ID42", "1.2.3.4.5.1");
    CHECK(en_deid_keystore_get(p, "abc", &back, &e) == EN_ENOTFOUND);
    CHECK(stat(p, &st) != 0); /* looking up creates nothing */
    CHECK(en_deid_keystore_put(p, "0011223344556677", &id, &e) == EN_OK);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(is_sqlite(p));

    CHECKF(en_keystore_open(&ks, p, &e) == EN_OK, "%s", e.msg);
    CHECK(strcmp(en_keystore_path(ks), p) == 0);
    CHECK(en_keystore_put(ks, "0011223344556677", &id, &e) == 1);
    identity(&id, "DOE^JANE\tX", "ID42", "1.2.3.4.5.2"); /* another file of the study */
    CHECK(en_keystore_put(ks, "0011223344556677", &id, &e) == 1);
    identity(&id, "DOE^JANE", "ID43", "1.2.3.4.5.3"); /* a corrected name and ID */
    CHECK(en_keystore_put(ks, "0011223344556677", &id, &e) == 2);
    CHECK(en_keystore_put(ks, "8899aabbccddeeff", &id, &e) == 1);
    CHECK(en_keystore_put(ks, "NOT-HEX", &id, &e) == EN_EINVAL);
    CHECK(en_keystore_put(ks, "", &id, &e) == EN_EINVAL);
    CHECK(en_keystore_get(ks, "0011223344556677", &back, &e) == EN_OK);
    CHECK(strcmp(back.patient_id, "ID42") == 0);            /* the first stays first */
    CHECK(strcmp(back.patient_name, "DOE^JANE\tX") == 0);   /* values kept as they were */
    CHECK(strcmp(back.study_date, "20200101") == 0);
    CHECK(strcmp(back.study_instance_uid, "1.2.3.4") == 0);
    CHECK(strcmp(back.sop_instance_uid, "1.2.3.4.5.1") == 0);
    CHECK(back.accession_number[0] == '\0');
    CHECK(en_keystore_get(ks, "ffffffffffffffff", &back, &e) == EN_ENOTFOUND);
    CHECK(strstr(e.msg, p) != NULL);
    en_keystore_close(ks);
    CHECK(records(p) == 3);
    {
        char lock[600];
        snprintf(lock, sizeof lock, "%s.lock", p);
        CHECK(stat(lock, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 0);
    }
    CHECK(en_deid_keystore_get(p, "8899aabbccddeeff", &back, &e) == EN_OK);
    CHECK(strcmp(back.patient_id, "ID43") == 0);

    chmod(p, 0640);
    CHECK(en_deid_keystore_put(p, "0011223344556677", &id, &e) == EN_EPERM);
    CHECK(strstr(e.msg, "chmod 600") != NULL && strstr(e.msg, p) != NULL);
    chmod(p, 0600);
}

static void write_file(const char *p, const char *text, mode_t mode)
{
    FILE *f = fopen(p, "w");

    if (!f) {
        perror(p);
        exit(99);
    }
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
}

static int file_has(const char *p, const char *needle)
{
    char buf[4096];
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;

    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

#define TSV_HEADER "# echonetd key store: pseudonym -> identifiers. CONFIDENTIAL.\n"

/* A store of the tab-separated format becomes an SQLite store with the
 * same mappings; the old file stays beside it as .migrated. */
static void test_migration(void)
{
    char p[512], old[600], text[2048];
    en_dicom_identity back;
    struct stat st;
    en_err e;

    path_in(p, sizeof p, "old.tsv");
    snprintf(text, sizeof text, "%s%s%s",
             TSV_HEADER,
             "0011223344556677\t1.2.3\t1.2.3.1\t1.2.3.1.1\tDOE^JOHN\tP1\t19700101\tACC1\t20200102"
             "\t101010\tGeneral Hospital\n",
             "8899aabbccddeeff\t1.2.4\t\t\tROE^RICHARD\tP2\t\t\t\t\t\n");
    write_file(p, text, 0600);
    CHECKF(en_deid_keystore_get(p, "0011223344556677", &back, &e) == EN_OK, "%s", e.msg);
    CHECK(strcmp(back.patient_name, "DOE^JOHN") == 0);
    CHECK(strcmp(back.patient_birth_date, "19700101") == 0);
    CHECK(strcmp(back.accession_number, "ACC1") == 0);
    CHECK(strcmp(back.study_time, "101010") == 0);
    CHECK(strcmp(back.institution_name, "General Hospital") == 0);
    CHECK(strcmp(back.sop_instance_uid, "1.2.3.1.1") == 0);
    CHECK(en_deid_keystore_get(p, "8899aabbccddeeff", &back, &e) == EN_OK);
    CHECK(strcmp(back.patient_id, "P2") == 0 && back.series_instance_uid[0] == '\0');
    CHECK(is_sqlite(p));
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(old, sizeof old, "%s.migrated", p);
    CHECK(file_has(old, "ROE^RICHARD"));
    CHECK(stat(old, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(old, sizeof old, "%s.migrating", p);
    CHECK(stat(old, &st) != 0);
    CHECK(records(p) == 2); /* a second open does not migrate again */

    /* A line that is not a key store line: refused, nothing changed. */
    path_in(p, sizeof p, "bad.tsv");
    write_file(p, TSV_HEADER "0011223344556677\tonly\tthree\n", 0600);
    CHECK(en_deid_keystore_put(p, "0011223344556677", &back, &e) == EN_EFORMAT);
    CHECK(strstr(e.msg, p) != NULL && strstr(e.msg, "line 2") != NULL);
    CHECK(file_has(p, "only\tthree"));
    snprintf(old, sizeof old, "%s.migrated", p);
    CHECK(stat(old, &st) != 0);
    snprintf(old, sizeof old, "%s.migrating", p);
    CHECK(stat(old, &st) != 0);
}

/* Not a key store, a damaged one, someone else's database, no folder, a
 * folder: each refused with a message naming the file. */
static void test_refusals(void)
{
    char p[512], sql[700];
    en_dicom_identity id;
    en_err e;
    FILE *f;

    identity(&id, "X", "Y", "1.2");
    path_in(p, sizeof p, "junk");
    write_file(p, "this is not a key store\n", 0600);
    CHECK(en_deid_keystore_put(p, "00", &id, &e) == EN_EFORMAT);
    CHECK(strstr(e.msg, p) != NULL && strstr(e.msg, "restore") != NULL);

    path_in(p, sizeof p, "damaged.db");
    f = fopen(p, "w");
    fwrite("SQLite format 3\0", 1, 16, f);
    for (int i = 0; i < 4080; i++)
        fputc(0x5a, f);
    fclose(f);
    chmod(p, 0600);
    CHECK(en_deid_keystore_put(p, "00", &id, &e) == EN_EIO);
    CHECKF(strstr(e.msg, p) != NULL && strstr(e.msg, "damaged") != NULL, "%s", e.msg);

    path_in(p, sizeof p, "other.db");
    snprintf(sql, sizeof sql, "umask 077 && sqlite3 '%s' 'CREATE TABLE t(x)' 2>/dev/null", p);
    if (system(sql) == 0) {
        CHECK(en_deid_keystore_put(p, "00", &id, &e) == EN_EFORMAT);
        CHECK(strstr(e.msg, "not an echonetd key store") != NULL);
    }

    path_in(p, sizeof p, "no-such-folder/keys.db");
    CHECK(en_deid_keystore_put(p, "00", &id, &e) == EN_ENOTFOUND);
    CHECK(strstr(e.msg, p) != NULL && strstr(e.msg, "folder") != NULL);
    CHECK(en_deid_keystore_put(dir, "00", &id, &e) == EN_EINVAL);
}

/* A user who may not write the store gets EN_EPERM and the remedy.  Run
 * in a child that is not root (root writes anything), as nobody when the
 * test runs as root. */
static void test_unwritable(void)
{
    char p[512];
    en_dicom_identity id;
    int status = -1;
    pid_t pid;

    path_in(p, sizeof p, "keys.db");
    identity(&id, "X", "Y", "1.2");
    pid = fork();
    if (pid == 0) {
        en_err e;
        int rc;
        if (geteuid() != 0 && chmod(p, 0400) != 0)
            _exit(4);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        rc = en_deid_keystore_put(p, "0123", &id, &e);
        if (rc != EN_EPERM || !strstr(e.msg, p) || !strstr(e.msg, "writable")) {
            fprintf(stderr, "unwritable store: %d %s\n", rc, e.msg);
            _exit(1);
        }
        _exit(0);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    chmod(p, 0600);
}

#define WRITERS 16
#define PUTS 50

/* WRITERS processes put PUTS studies each, one open/put/close per study as
 * en_convert_file does, all at once, plus one study every writer shares:
 * every mapping is there afterwards and the shared one exactly once.  When
 * the store starts in the tab-separated format they also race to migrate
 * it. */
static void concurrent_writers(const char *p, int preexisting)
{
    pid_t pids[WRITERS];
    int bad = 0, fds[2];
    char go;

    CHECK(pipe(fds) == 0);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            en_dicom_identity id;
            en_err e;
            char pseudonym[17], name[32];
            close(fds[1]);
            if (read(fds[0], &go, 1) != 0) /* all start when the pipe closes */
                _exit(2);
            for (int i = 0; i < PUTS; i++) {
                int rc;
                snprintf(pseudonym, sizeof pseudonym, "%08x%08x", w + 1, i);
                snprintf(name, sizeof name, "WRITER%d^STUDY%d", w, i);
                identity(&id, name, "P", pseudonym);
                rc = en_deid_keystore_put(p, pseudonym, &id, &e);
                if (rc == EN_OK && i == PUTS / 2) {
                    /* the shared study: first this writer's own
                     * identifiers, then ones every writer gives */
                    rc = en_deid_keystore_put(p, "5a5a5a5a5a5a5a5a", &id, &e);
                    identity(&id, "SHARED", "S", "9");
                    if (rc == EN_OK)
                        rc = en_deid_keystore_put(p, "5a5a5a5a5a5a5a5a", &id, &e);
                }
                if (rc != EN_OK) {
                    fprintf(stderr, "writer %d: %s\n", w, e.msg);
                    _exit(1);
                }
            }
            _exit(0);
        }
    }
    close(fds[0]);
    close(fds[1]);
    for (int w = 0; w < WRITERS; w++) {
        int status = -1;
        if (pids[w] <= 0 || waitpid(pids[w], &status, 0) != pids[w] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            bad++;
    }
    CHECKF(bad == 0, "%d of %d writers failed", bad, WRITERS);
    {
        en_keystore *ks;
        en_dicom_identity back;
        en_err e;
        int missing = 0, n = 0;
        char pseudonym[17], name[48];   /* room for two ints, whatever gcc infers */
        CHECKF(en_keystore_open(&ks, p, &e) == EN_OK, "%s", e.msg);
        for (int w = 0; w < WRITERS && ks; w++)
            for (int i = 0; i < PUTS; i++) {
                snprintf(pseudonym, sizeof pseudonym, "%08x%08x", w + 1, i);
                snprintf(name, sizeof name, "WRITER%d^STUDY%d", w, i);
                if (en_keystore_get(ks, pseudonym, &back, &e) != EN_OK ||
                    strcmp(back.patient_name, name) != 0)
                    missing++;
            }
        CHECKF(missing == 0, "%d of %d mappings missing", missing, WRITERS * PUTS);
        CHECK(ks && en_keystore_get(ks, "5a5a5a5a5a5a5a5a", &back, &e) == EN_OK &&
              strcmp(back.patient_name, "SHARED") != 0);
        CHECK(ks && en_keystore_list(ks, count_cb, &n, &e) == EN_OK);
        /* per writer: PUTS own, one (its own) shared record under the
         * shared pseudonym, plus one SHARED record in all */
        CHECKF(n == WRITERS * PUTS + WRITERS + 1 + preexisting, "%d records", n);
        en_keystore_close(ks);
    }
}

static void test_concurrent(void)
{
    char p[512];
    struct stat st;

    path_in(p, sizeof p, "race.db");
    concurrent_writers(p, 0);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);

    path_in(p, sizeof p, "race.tsv");
    write_file(p, TSV_HEADER "ffff000000000001\t1.9\t\t\tOLD^ONE\tP9\t\t\t\t\t\n", 0600);
    concurrent_writers(p, 1);
    CHECK(is_sqlite(p));
}

int main(void)
{
    char cmd[300];

    snprintf(dir, sizeof dir, "/tmp/en-test-deid-XXXXXX");
    if (!mkdtemp(dir))
        return 99;
    test_secret_created_0600();
    test_pseudonym_stable_and_keyed();
    test_secret_refused_when_unsafe();
    test_keystore();
    test_migration();
    test_refusals();
    test_unwritable();
    test_concurrent();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    TST_DONE();
}

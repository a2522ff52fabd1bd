/*
 * keystore.c - the optional re-identification key store (see en_deid.h).
 *
 * A plain tab-separated file, mode 0600, kept apart from the results
 * database so that the database can be shared for research while the key
 * store stays with whoever may re-identify.  One line per pseudonym;
 * rewriting replaces the line, and every update is written to a temporary
 * file, fsynced and renamed so a crash leaves the old or the new store,
 * never a torn one.
 */
#include "en_deid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KS_HEADER "# echonetd key store: pseudonym -> identifiers. CONFIDENTIAL.\n"
#define KS_FIELDS 11

/* Field order on a line, after the pseudonym. */
static char *field_ptr(en_dicom_identity *id, int i, size_t *cap)
{
#define F(member) do { *cap = sizeof id->member; return id->member; } while (0)
    switch (i) {
    case 0: F(study_instance_uid);
    case 1: F(series_instance_uid);
    case 2: F(sop_instance_uid);
    case 3: F(patient_name);
    case 4: F(patient_id);
    case 5: F(patient_birth_date);
    case 6: F(accession_number);
    case 7: F(study_date);
    case 8: F(study_time);
    case 9: F(institution_name);
    }
#undef F
    *cap = 0;
    return NULL;
}

/* Tabs and newlines inside a value would split the line: flatten them. */
static void put_clean(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc((*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s, f);
}

static int line_is(const char *line, const char *pseudonym)
{
    size_t n = strlen(pseudonym);
    return strncmp(line, pseudonym, n) == 0 && line[n] == '\t';
}

static int check_mode(const char *path, en_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? EN_ENOTFOUND
                               : en_err_set(err, EN_EIO, "key store %s: %s", path, strerror(errno));
    if (st.st_mode & 077)
        return en_err_set(err, EN_EPERM,
                          "key store %s is readable by others (mode %03o): run chmod 600 on it",
                          path, (unsigned)(st.st_mode & 0777));
    return EN_OK;
}

int en_deid_keystore_put(const char *path, const char *pseudonym,
                         const en_dicom_identity *id, en_err *err)
{
    char tmp[4200], line[4096];
    FILE *in, *out;
    int fd, rc = check_mode(path, err);

    if (rc != EN_OK && rc != EN_ENOTFOUND)
        return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(out = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        return en_err_set(err, EN_EIO, "cannot write key store %s: %s", tmp, strerror(errno));
    }
    fputs(KS_HEADER, out);
    in = fopen(path, "r");
    while (in && fgets(line, sizeof line, in)) {
        if (line[0] != '#' && !line_is(line, pseudonym))
            fputs(line, out);
    }
    if (in)
        fclose(in);
    fputs(pseudonym, out);
    for (int i = 0; i < KS_FIELDS - 1; i++) {
        size_t cap;
        fputc('\t', out);
        put_clean(out, field_ptr((en_dicom_identity *)id, i, &cap));
    }
    fputc('\n', out);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
        fclose(out);
        unlink(tmp);
        return en_err_set(err, EN_EIO, "cannot write key store %s: %s", tmp, strerror(errno));
    }
    fclose(out);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return en_err_set(err, EN_EIO, "cannot replace key store %s: %s", path, strerror(errno));
    }
    return EN_OK;
}

int en_deid_keystore_get(const char *path, const char *pseudonym,
                         en_dicom_identity *id, en_err *err)
{
    char line[4096];
    FILE *in;
    int rc = check_mode(path, err);

    if (rc == EN_ENOTFOUND)
        return en_err_set(err, EN_ENOTFOUND, "key store %s does not exist", path);
    if (rc != EN_OK)
        return rc;
    if (!(in = fopen(path, "r")))
        return en_err_set(err, EN_EIO, "cannot read key store %s: %s", path, strerror(errno));
    memset(id, 0, sizeof *id);
    while (fgets(line, sizeof line, in)) {
        char *save = NULL, *tok;
        if (line[0] == '#' || !line_is(line, pseudonym))
            continue;
        line[strcspn(line, "\n")] = '\0';
        strtok_r(line, "\t", &save);
        /* strtok_r would merge empty fields, so walk the tabs by hand. */
        tok = save;
        for (int i = 0; i < KS_FIELDS - 1 && tok; i++) {
            size_t cap;
            char *tab = strchr(tok, '\t');
            char *dst = field_ptr(id, i, &cap);
            if (tab)
                *tab = '\0';
            snprintf(dst, cap, "%s", tok);
            tok = tab ? tab + 1 : NULL;
        }
        fclose(in);
        return EN_OK;
    }
    fclose(in);
    return en_err_set(err, EN_ENOTFOUND, "pseudonym %s is not in key store %s", pseudonym, path);
}

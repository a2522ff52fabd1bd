/*
 * test-deid.c - pseudonyms are keyed, stable and irreversible without the
 * secret; the secret and key store refuse unsafe permissions; the key store
 * round-trips and replaces rather than duplicates.
 */
#include "en_deid.h"
#include "tst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static void test_keystore(void)
{
    char p[512];
    en_dicom_identity id, back;
    en_err e;
    struct stat st;
    FILE *f;
    char line[1024];
    int lines = 0;

    path_in(p, sizeof p, "keys.tsv");
    memset(&id, 0, sizeof id);
    strcpy(id.study_instance_uid, "1.2.3.4");
    strcpy(id.patient_name, "DOE^JANE\tX");
    strcpy(id.patient_id, "ID42");
    strcpy(id.study_date, "20200101");

    CHECK(en_deid_keystore_get(p, "abc", &back, &e) == EN_ENOTFOUND);
    CHECK(en_deid_keystore_put(p, "0011223344556677", &id, &e) == EN_OK);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    strcpy(id.patient_id, "ID43");
    CHECK(en_deid_keystore_put(p, "0011223344556677", &id, &e) == EN_OK);
    CHECK(en_deid_keystore_put(p, "8899aabbccddeeff", &id, &e) == EN_OK);
    CHECK(en_deid_keystore_get(p, "0011223344556677", &back, &e) == EN_OK);
    CHECK(strcmp(back.patient_id, "ID43") == 0);
    CHECK(strcmp(back.patient_name, "DOE^JANE X") == 0);
    CHECK(strcmp(back.study_date, "20200101") == 0);
    CHECK(back.series_instance_uid[0] == '\0');
    CHECK(en_deid_keystore_get(p, "ffffffffffffffff", &back, &e) == EN_ENOTFOUND);

    f = fopen(p, "r");
    while (f && fgets(line, sizeof line, f))
        if (line[0] != '#')
            lines++;
    if (f)
        fclose(f);
    CHECK(lines == 2);

    chmod(p, 0640);
    CHECK(en_deid_keystore_put(p, "0011223344556677", &id, &e) == EN_EPERM);
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
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    TST_DONE();
}

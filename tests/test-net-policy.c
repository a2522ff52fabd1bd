/*
 * test-net-policy.c - the receiver's decisions that need no network: AE
 * title rules and lists, which C-STORE requests are admitted and how a
 * refusal is worded, the transfer syntaxes offered, and the staging
 * hand-over (a cut file is refused and stays out of the inbox; a whole one
 * is renamed in; leftovers are removed at open; two file systems or the
 * inbox itself as staging are refused).
 */
#include "en_net.h"
#include "../src/net/net_int.h"
#include "tst.h"

#include <fcntl.h>
#include <string.h>

static void check_ae(void)
{
    en_net_scp_config c;
    en_err e;

    en_net_scp_config_default(&c);
    CHECK(c.nallow == 0 && strcmp(c.ae_title, "ECHONETD") == 0 && c.port == 11112);
    CHECK(en_net_parse_ae_list("US1, PACS_A\tECHO3 ,", &c, &e) == EN_OK);
    CHECK(c.nallow == 3 && !strcmp(c.allow[0], "US1") && !strcmp(c.allow[1], "PACS_A") &&
          !strcmp(c.allow[2], "ECHO3"));
    CHECK(en_net_parse_ae_list("", &c, &e) == EN_OK && c.nallow == 0);
    CHECK(en_net_parse_ae_list("OK SEVENTEEN_CHARS_X", &c, &e) == EN_EINVAL);
    CHECK(strstr(e.msg, "SEVENTEEN_CHARS") && strstr(e.msg, "[recv] allow"));
    CHECK(en_net_parse_ae_list("BACK\\SLASH", &c, &e) == EN_EINVAL);
    CHECK(en_net_check_ae("SIXTEEN_CHARS_OK", "x", &e) == EN_OK);
    CHECK(en_net_check_ae("   ", "x", &e) == EN_EINVAL);
    CHECK(en_net_check_ae("", "x", &e) == EN_EINVAL);
    CHECK(en_net_check_ae("caf\xc3\xa9", "x", &e) == EN_EINVAL);
    {
        char many[EN_NET_MAX_PEERS * 5 + 16] = "";
        for (int i = 0; i <= EN_NET_MAX_PEERS; i++)
            snprintf(many + strlen(many), sizeof many - strlen(many), "A%d ", i);
        CHECK(en_net_parse_ae_list(many, &c, &e) == EN_EINVAL);
    }
    {
        char out[EN_NET_AE_MAX];
        net_ae_copy(out, "  US1   ");
        CHECK(!strcmp(out, "US1"));
    }
}

#define US_MF "1.2.840.10008.5.1.4.1.1.3.1"
#define CT "1.2.840.10008.5.1.4.1.1.2"

static void check_admit(void)
{
    en_net_scp_config c;
    net_request r = { US_MF, US_MF, "UltrasoundMultiframeImageStorage", 0, 10.0, -1 };
    net_verdict v;

    en_net_scp_config_default(&c);
    snprintf(c.staging_dir, sizeof c.staging_dir, "/spool/incoming");
    v = net_admit(&c, &r);
    CHECK(v.status == 0 && v.kind == NET_ADMITTED);
    for (const char *const *u = (const char *const[]){ "1.2.840.10008.5.1.4.1.1.6.1",
             "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.7",
             "1.2.840.10008.5.1.4.1.1.7.4", "1.2.840.10008.5.1.4.1.1.88.11",
             "1.2.840.10008.5.1.4.1.1.88.33", NULL }; *u; u++)
        CHECKF(net_sop_usable(*u), "%s", *u);

    r.sop_class = r.context_class = CT;
    r.class_name = "CTImageStorage";
    v = net_admit(&c, &r);
    CHECK(v.status == 0x0122 && v.kind == NET_REFUSE_CLASS);
    CHECK(strstr(v.why, "CTImageStorage") && strlen(v.comment) <= 64);

    r.sop_class = US_MF;
    r.context_class = "1.2.840.10008.5.1.4.1.1.6.1";
    v = net_admit(&c, &r);
    CHECK(v.status == 0x0122 && v.kind == NET_REFUSE_CONTEXT);

    r.context_class = US_MF;
    r.assoc_bytes = c.max_association_bytes;
    v = net_admit(&c, &r);
    CHECK(v.status == 0xA700 && v.kind == NET_REFUSE_SIZE && strstr(v.why, "max_association_mb"));

    r.assoc_bytes = 0;
    r.assoc_ms = c.max_association_s * 1000.0;
    v = net_admit(&c, &r);
    CHECK(v.status == 0xA700 && v.kind == NET_REFUSE_TIME && strstr(v.why, "max_association_s"));

    r.assoc_ms = 0;
    r.free_bytes = (int64_t)c.min_free_bytes - 1;
    v = net_admit(&c, &r);
    CHECK(v.status == 0xA700 && v.kind == NET_REFUSE_DISK && strstr(v.why, "/spool/incoming"));
    r.free_bytes = (int64_t)c.min_free_bytes;
    CHECK(net_admit(&c, &r).status == 0);
}

static void check_syntaxes(void)
{
    const char *ts[NET_MAX_SYNTAXES];
    int n = net_syntaxes(ts, NET_MAX_SYNTAXES);

    CHECK(n >= 11);
    CHECK(n > 0 && !strcmp(ts[0], "1.2.840.10008.1.2.1"));   /* uncompressed first */
    for (int i = 0; i < n; i++)
        CHECKF(en_dicom_syntax_supported(ts[i]), "%s offered but not decodable", ts[i]);
}

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n);
    if (f)
        fclose(f);
}

static void check_spool(void)
{
    char dir[512], staging[600], inbox[600], path[1200], leftover[700];
    net_spool sp;
    net_file f;
    en_err e;
    int removed = -1;
    static unsigned char dicm[132 + 28 + 10];   /* meta: transfer syntax; data: Modality */

    tst_scratch_dir(dir, sizeof dir, "net-spool");
    snprintf(staging, sizeof staging, "%s/incoming", dir);
    snprintf(inbox, sizeof inbox, "%s/inbox", dir);
    CHECK(mkdir(staging, 0700) == 0 && mkdir(inbox, 0700) == 0);
    snprintf(leftover, sizeof leftover, "%s/r1700000000000-000001-0badf00d.part", staging);
    write_file(leftover, "half", 4);
    snprintf(path, sizeof path, "%s/not-ours.part", staging);
    write_file(path, "x", 1);

    CHECK(net_spool_open(&sp, staging, staging, &removed, &e) == EN_EINVAL);
    CHECK(net_spool_open(&sp, staging, inbox, &removed, &e) == EN_OK);
    CHECK(removed == 1 && access(leftover, F_OK) != 0 && access(path, F_OK) == 0);

    /* A file cut inside an element never reaches the inbox. */
    memcpy(dicm + 128, "DICM", 4);
    memcpy(dicm + 132, "\x02\x00\x10\x00UI\x14\x00" "1.2.840.10008.1.2.1\0", 28);
    memcpy(dicm + 160, "\x08\x00\x60\x00" "CS\x02\x00" "US", 10);
    CHECK(net_spool_create(&sp, &f, &e) == EN_OK);
    CHECK(write(f.fd, dicm, sizeof dicm - 1) == (ssize_t)sizeof dicm - 1);
    CHECK(net_spool_commit(&sp, &f, &e) == EN_EFORMAT);
    CHECK(strstr(e.msg, "not whole DICOM") != NULL);
    net_spool_discard(&sp, &f);

    /* A whole one is renamed in under the same name, .dcm. */
    CHECK(net_spool_create(&sp, &f, &e) == EN_OK);
    CHECK(write(f.fd, dicm, sizeof dicm) == (ssize_t)sizeof dicm);
    {
        char name[64], dst[1300];
        snprintf(name, sizeof name, "%s", f.name);
        CHECKF(net_spool_commit(&sp, &f, &e) == EN_OK, "%s", e.msg);
        snprintf(dst, sizeof dst, "%s/%.*s.dcm", inbox, (int)(strlen(name) - 5), name);
        CHECKF(access(dst, F_OK) == 0, "%s", dst);
    }
    {
        DIR *d = opendir(staging);
        struct dirent *de;
        int n = 0;
        while (d && (de = readdir(d)))
            n += de->d_name[0] == 'r';
        if (d)
            closedir(d);
        CHECK(n == 0);
    }
    CHECK(net_spool_free_bytes(&sp) > 0);
    net_spool_close(&sp);
}

int main(void)
{
    check_ae();
    check_admit();
    check_syntaxes();
    check_spool();
    TST_DONE();
}

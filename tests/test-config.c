/*
 * test-config.c - echonetd.conf: values apply, and unknown keys, bad numbers
 * and syntax errors are refused with the file and line.
 */
#include "en_config.h"
#include "tst.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    char path[] = "/tmp/en-test-config-XXXXXX";
    int fd = mkstemp(path);
    en_config cfg;
    en_err e;

    if (fd < 0)
        return 99;
    close(fd);

    en_config_defaults(&cfg);
    CHECK(cfg.video_size == 112);
    CHECK(cfg.keystore_file[0] == '\0');
    CHECK(cfg.limits.max_frames > 0);

    write_file(path, "# comment\n[limits]\nmax_frames = 50\nmax_pixel_mb = 3\n"
                     "[deid]\nkeystore_file = /x/keys.tsv\n[video]\nquality = 5\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_OK);
    CHECK(cfg.limits.max_frames == 50);
    CHECK(cfg.limits.max_pixel_bytes == 3u << 20);
    CHECK(strcmp(cfg.keystore_file, "/x/keys.tsv") == 0);
    CHECK(cfg.video_quality == 5);

    write_file(path, "[limits]\nmax_frames = 50\nmax_frame = 2\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, ":3:") && strstr(e.msg, "max_frame"), "%s", e.msg);

    write_file(path, "[limits]\nmax_frames = lots\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, ":2:") && strstr(e.msg, "whole number"), "%s", e.msg);

    write_file(path, "[video]\nquality = 99\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);

    write_file(path, "[video\nquality = 3\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, ":1:") != NULL, "%s", e.msg);

    write_file(path, "[report]\npdf = no\noverlay_video = yes\n[nn]\nbatch = 4\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_OK);
    CHECK(cfg.report_pdf == 0 && cfg.overlay_video == 1 && cfg.nn_batch == 4);
    write_file(path, "[report]\npdf = maybe\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);

    /* The shipped, fully commented configuration must load as the defaults. */
    {
        char shipped[1200];
        en_config def;
        snprintf(shipped, sizeof shipped, "%s/etc/echonetd.conf", tst_env("EN_TOP_SRCDIR"));
        en_config_defaults(&cfg);
        en_config_defaults(&def);
        CHECKF(en_config_load(&cfg, shipped, &e) == EN_OK, "%s", e.msg);
        CHECK(memcmp(&cfg, &def, sizeof cfg) == 0);
    }

    unlink(path);
    CHECK(en_config_load(&cfg, path, &e) == EN_EIO);
    CHECK(strstr(e.msg, path) != NULL);
    TST_DONE();
}

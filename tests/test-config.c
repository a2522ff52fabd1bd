/*
 * test-config.c - echonetd.conf: values apply, and unknown keys, bad numbers
 * and syntax errors are refused with the file and line; the settings table
 * gives the defaults and the reload rules, and etc/echonetd.conf documents
 * exactly its rows, each with its default.
 */
#include "en_config.h"
#include "tst.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Each row's default is what the file would say, so it must parse, and
 * within the row's own bounds. */
static void check_table(void)
{
    size_t n;
    const en_config_row *rows = en_config_rows(&n);
    en_config cfg, def;
    en_dicom_limits lim;
    en_err e;

    CHECK(n >= 33);
    en_config_defaults(&def);
    for (size_t i = 0; i < n; i++) {
        const en_config_row *r = &rows[i];
        char buf[EN_PATH_MAX];
        CHECKF(r->def[0] != '@' || r->type == EN_CONF_PATH, "[%s] %s", r->section, r->key);
        CHECKF(r->type != EN_CONF_ENUM || (r->names && r->names[0]), "[%s] %s", r->section, r->key);
        for (size_t k = 0; k < i; k++)
            CHECKF(strcmp(rows[k].section, r->section) || strcmp(rows[k].key, r->key),
                   "[%s] %s declared twice", r->section, r->key);
        if (r->def[0] == '@')
            continue;
        memset(&cfg, 0x5a, sizeof cfg);
        CHECKF(en_config_set(&cfg, r->section, r->key, r->def, &e) == EN_OK, "%s", e.msg);
        en_config_format(&cfg, r, buf, sizeof buf);
        CHECKF(strcmp(buf, r->def) == 0, "[%s] %s: default '%s' reads back as '%s'",
               r->section, r->key, r->def, buf);
        en_config_format(&def, r, buf, sizeof buf);
        CHECKF(strcmp(buf, r->def) == 0, "[%s] %s: en_config_defaults gives '%s', the row '%s'",
               r->section, r->key, buf, r->def);
    }
    /* The reader's built-in limits and the configured defaults agree. */
    en_dicom_limits_default(&lim);
    CHECK(memcmp(&lim, &def.limits, sizeof lim) == 0);
}

/* Paths under the given folders; the models from dirs.models exactly. */
static void check_dirs(void)
{
    en_config_dirs dirs = { "/st", "/sp", "/md" };
    en_config cfg;

    en_config_defaults_in(&cfg, &dirs);
    CHECK(strcmp(cfg.secret_file, "/st/site-secret") == 0);
    CHECK(strcmp(cfg.database, "/st/results.db") == 0);
    CHECK(strcmp(cfg.output_dir, "/st/output") == 0);
    CHECK(strcmp(cfg.work_dir, "/sp/work") == 0);
    CHECK(strcmp(cfg.inbox_dir, "/sp/inbox") == 0);
    CHECK(strcmp(cfg.seg_weights, "/md/" EN_DEFAULT_SEG_MODEL) == 0);
    CHECK(strcmp(cfg.ef_weights, "/md/" EN_DEFAULT_EF_MODEL) == 0);
}

static void check_user_state_dir(void)
{
    char buf[EN_PATH_MAX], small[8];
    en_err e;

    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    setenv("HOME", "/home/ann", 1);
    CHECK(en_config_user_state_dir(buf, sizeof buf, &e) == EN_OK);
    CHECK(strcmp(buf, "/xdg/state/echonetd") == 0);
    /* A relative XDG_STATE_HOME is invalid (XDG spec) and ignored. */
    setenv("XDG_STATE_HOME", "rel/state", 1);
    CHECK(en_config_user_state_dir(buf, sizeof buf, &e) == EN_OK);
    CHECK(strcmp(buf, "/home/ann/.local/state/echonetd") == 0);
    unsetenv("XDG_STATE_HOME");
    CHECK(en_config_user_state_dir(buf, sizeof buf, &e) == EN_OK);
    CHECK(strcmp(buf, "/home/ann/.local/state/echonetd") == 0);
    CHECK(en_config_user_state_dir(small, sizeof small, &e) == EN_EINVAL);
    unsetenv("HOME");
    CHECK(en_config_user_state_dir(buf, sizeof buf, &e) == EN_ENOTFOUND);
    CHECKF(strstr(e.msg, "-c FILE") != NULL, "%s", e.msg);
}

typedef struct seen {
    char names[64][80];
    int n;
} seen;

static void on_change(const en_config_change *c, void *user)
{
    seen *s = user;
    if (s->n < 64)
        snprintf(s->names[s->n++], sizeof s->names[0], "%s.%s %s>%s", c->row->section,
                 c->row->key, c->old_value, c->new_value);
}

static int saw(const seen *s, const char *what)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], what))
            return 1;
    return 0;
}

/* SIGHUP: restart-only settings keep their running value and are named;
 * the others are adopted and say which kind of change they are. */
static void check_reload(void)
{
    en_config run, nw;
    char msg[512];
    seen s = { .n = 0 };
    unsigned bits;
    en_err e;

    en_config_defaults(&run);
    nw = run;
    CHECK(en_config_reload_check(&run, &nw, msg, sizeof msg) == 0);
    CHECK(msg[0] == '\0');
    en_config_diff(&run, &nw, on_change, &s);
    CHECK(s.n == 0);

    CHECK(en_config_set(&nw, "daemon", "rescan_ms", "700", &e) == EN_OK);
    CHECK(en_config_set(&nw, "limits", "max_frames", "10", &e) == EN_OK);
    CHECK(en_config_set(&nw, "daemon", "work", "/elsewhere/work", &e) == EN_OK);
    CHECK(en_config_set(&nw, "daemon", "inbox", "/elsewhere/inbox", &e) == EN_OK);
    bits = en_config_reload_check(&run, &nw, msg, sizeof msg);
    CHECK(bits == (EN_RELOAD_BIT(EN_RELOAD_NOW) | EN_RELOAD_BIT(EN_RELOAD_STUDY)));
    CHECK(strcmp(nw.work_dir, run.work_dir) == 0 && strcmp(nw.inbox_dir, run.inbox_dir) == 0);
    CHECK(nw.rescan_ms == 700 && nw.limits.max_frames == 10);
    CHECKF(strstr(msg, "[daemon] inbox ") && strstr(msg, "-> /elsewhere/inbox; [daemon] work ")
           && strstr(msg, "-> /elsewhere/work"), "%s", msg);
    en_config_diff(&run, &nw, on_change, &s);
    CHECK(s.n == 2);
    CHECK(saw(&s, "daemon.rescan_ms 5000>700"));
    CHECK(saw(&s, "limits.max_frames 2000>10"));

    /* Models, secret, database, precision: the daemon must open them first. */
    nw = run;
    CHECK(en_config_set(&nw, "nn", "precision", "bf16", &e) == EN_OK);
    bits = en_config_reload_check(&run, &nw, msg, sizeof msg);
    CHECK(bits == EN_RELOAD_BIT(EN_RELOAD_CHECKED) && msg[0] == '\0');
    nw = run;
    CHECK(en_config_set(&nw, "deid", "secret_file", "/x/secret", &e) == EN_OK);
    CHECK(en_config_reload_check(&run, &nw, msg, sizeof msg) == EN_RELOAD_BIT(EN_RELOAD_CHECKED));
    /* A short buffer still holds a terminated start of the list. */
    nw = run;
    CHECK(en_config_set(&nw, "daemon", "failed", "/a/very/long/folder/name/for/failures", &e) == EN_OK);
    CHECK(en_config_reload_check(&run, &nw, msg, 12) == 0);
    CHECK(strlen(msg) == 11 && strcmp(nw.failed_dir, run.failed_dir) == 0);
    /* A path shortened after a longer one compares by its text only. */
    nw = run;
    CHECK(en_config_set(&nw, "paths", "output_dir", "/a/much/longer/output/folder", &e) == EN_OK);
    CHECK(en_config_set(&nw, "paths", "output_dir", run.output_dir, &e) == EN_OK);
    CHECK(en_config_reload_check(&run, &nw, msg, sizeof msg) == 0);
}

static void trim(char *s)
{
    size_t l = strlen(s);
    while (l > 0 && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
}

/* etc/echonetd.conf shows every row, set or commented out ("#key = value",
 * no space after the #, which is how it tells a setting from prose), with
 * the default for the packaged layout; and it shows nothing else. */
static void check_documented(const char *shipped)
{
    const en_config_dirs pkg = { "/var/lib/echonetd", "/var/spool/echonetd",
                                 "/usr/share/echonetd/models" };
    size_t n;
    const en_config_row *rows = en_config_rows(&n);
    int *count = calloc(n, sizeof *count);
    char line[2048], section[64] = "", want[EN_PATH_MAX];
    en_config doc;
    FILE *f = fopen(shipped, "r");
    int lineno = 0;

    CHECKF(f != NULL, "%s", shipped);
    if (!f || !count) {
        free(count);
        if (f)
            fclose(f);
        return;
    }
    en_config_defaults_in(&doc, &pkg);
    while (fgets(line, sizeof line, f)) {
        char *p = line, *eq, *val;
        size_t klen;
        const en_config_row *r = NULL;

        lineno++;
        trim(line);
        if (line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        if (*p == '#')
            p++;
        if (!islower((unsigned char)*p) || !(eq = strchr(p, '=')))
            continue;
        klen = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (p + klen + strspn(p + klen, " \t") != eq)
            continue;
        for (val = eq + 1; *val == ' ' || *val == '\t'; val++)
            ;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(rows[i].section, section) && strlen(rows[i].key) == klen &&
                !strncmp(rows[i].key, p, klen))
                r = &rows[i];
        CHECKF(r != NULL, "%s:%d: [%s] %.*s is not a setting", shipped, lineno, section,
               (int)klen, p);
        if (!r)
            continue;
        count[r - rows]++;
        en_config_format(&doc, r, want, sizeof want);
        CHECKF(strcmp(val, want) == 0, "%s:%d: [%s] %s shows '%s', the default is '%s'",
               shipped, lineno, section, r->key, val, want);
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        CHECKF(count[i] == 1, "%s documents [%s] %s %d times, expected once", shipped,
               rows[i].section, rows[i].key, count[i]);
    free(count);
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

    write_file(path, "[nn]\nprecision = bf16\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_OK && cfg.nn_precision == EN_PRECISION_BF16);
    write_file(path, "[nn]\nprecision = fast\n");
    CHECK(en_config_load(&cfg, path, &e) == EN_EINVAL);
    CHECKF(strstr(e.msg, ":2:") && strstr(e.msg, "auto, fp32, bf16"), "%s", e.msg);

    check_table();
    check_dirs();
    check_reload();

    /* The shipped, fully commented configuration must load as the defaults. */
    {
        char shipped[1200];
        en_config def;
        snprintf(shipped, sizeof shipped, "%s/etc/echonetd.conf", tst_env("EN_TOP_SRCDIR"));
        en_config_defaults(&cfg);
        en_config_defaults(&def);
        CHECKF(en_config_load(&cfg, shipped, &e) == EN_OK, "%s", e.msg);
        CHECK(memcmp(&cfg, &def, sizeof cfg) == 0);
        check_documented(shipped);
    }

    unlink(path);
    CHECK(en_config_load(&cfg, path, &e) == EN_EIO);
    CHECK(strstr(e.msg, path) != NULL);
    /* Last: it changes HOME and XDG_STATE_HOME. */
    check_user_state_dir();
    TST_DONE();
}

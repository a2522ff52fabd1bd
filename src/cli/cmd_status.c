/*
 * cmd_status.c - `echonetctl status [--json]`: what the daemon has in hand
 * (files waiting in the inbox, claimed in work/, quarantined in failed/)
 * and what the database says (studies per state, the latest failures).
 *
 * It reads the spool folders and the database only, so it works whether or
 * not echonetd is running, and never needs the daemon's privileges beyond
 * read access.
 */
#include "cli.h"

#include "en_json.h"
#include "en_store.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* Files in dir whose name ends in suffix (NULL: any), ignoring the names the
 * daemon ignores (hidden files).  -1 when the folder cannot be read. */
static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
        if (e->d_name[0] == '.')
            continue;
        if (suffix && (len < sl || strcmp(e->d_name + len - sl, suffix) != 0))
            continue;
        n++;
    }
    closedir(d);
    return n;
}

typedef struct fail_ctx {
    int json;
    en_json *j;
} fail_ctx;

static int fail_row(const en_store_clip *s, void *ud)
{
    fail_ctx *f = ud;
    char when[EN_STORE_TIME_MAX];

    en_store_format_time(s->r.finished_ms ? s->r.finished_ms : s->r.received_ms, when);
    if (f->json) {
        en_json_begin_object(f->j, NULL);
        en_json_string(f->j, "pseudonym", s->r.pseudonym);
        en_json_string(f->j, "when", when);
        en_json_string(f->j, "stage", s->stage);
        en_json_string(f->j, "error", s->last_error);
        en_json_end_object(f->j);
    } else {
        printf("  %s  %-20.20s  %-8s  %s\n", s->r.pseudonym, when, s->stage, s->last_error);
    }
    return 0;
}

int cli_status(cli_ctx *ctx, int argc, char **argv)
{
    const en_config *c = &ctx->cfg;
    int inbox, work, failed, json = argc == 2 && !strcmp(argv[1], "--json");
    int64_t counts[EN_STORE_NSTATUS];
    en_store_filter f;
    en_store *db;
    en_err e;
    en_json j;
    fail_ctx fc = { json, &j };
    int rc;

    if (argc > 2 || (argc == 2 && !json)) {
        fprintf(stderr, "usage: echonetctl status [--json]\n");
        return CLI_USAGE;
    }
    inbox = count_files(c->inbox_dir, NULL);
    work = count_files(c->work_dir, ".dcm");
    failed = count_files(c->failed_dir, ".reason");
    if (en_store_open(c->database, EN_STORE_READONLY, &db, &e) != EN_OK) {
        fprintf(stderr, "echonetctl status: %s\n", e.msg);
        return CLI_SETUP;
    }
    rc = en_store_counts(db, counts, &e);
    memset(&f, 0, sizeof f);
    f.status_mask = 1u << EN_STORE_FAILED;
    f.limit = 5;
    if (json) {
        en_json_init(&j, stdout, 2);
        en_json_begin_object(&j, NULL);
        en_json_begin_object(&j, "spool");
        en_json_int(&j, "inbox", inbox);
        en_json_int(&j, "work", work);
        en_json_int(&j, "failed", failed);
        en_json_end_object(&j);
        en_json_begin_object(&j, "studies");
        for (int s = 0; rc == EN_OK && s < EN_STORE_NSTATUS; s++)
            en_json_int(&j, en_store_status_name((en_store_status)s), counts[s]);
        en_json_end_object(&j);
        cli_status_outbox(c, &j);
        en_json_begin_array(&j, "last_failures");
    } else if (rc == EN_OK) {
        printf("spool      inbox %d, in work %d, quarantined %d  (-1: folder unreadable)\n",
               inbox, work, failed);
        printf("studies    %lld queued, %lld processing, %lld done, %lld failed\n",
               (long long)counts[EN_STORE_QUEUED], (long long)counts[EN_STORE_PROCESSING],
               (long long)counts[EN_STORE_DONE], (long long)counts[EN_STORE_FAILED]);
        cli_status_outbox(c, NULL);
        printf("last failures:\n");
    }
    if (rc == EN_OK)
        rc = en_store_list(db, &f, fail_row, &fc, &e);
    if (json) {
        en_json_end_array(&j);
        en_json_end_object(&j);
        en_json_finish(&j);
    }
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl status: %s\n", e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

/*
 * cmd_send.c - `echonetctl send PSEUDONYM`: queue a study's current result
 * again for echonetd-send, by hand (a PACS that lost it, a version that
 * failed after [send] give_up_after_s), and the outbox lines of
 * `echonetctl status`.
 *
 * echonetctl has no network (it may run where echonetd runs); it only
 * writes the outbox, and echonetd-send, the one process that talks to the
 * PACS, sends within [send] poll_s.  The same version goes with the same
 * UIDs, so the PACS replaces what it may already have.
 */
#include "cli.h"

#include "en_json.h"
#include "en_outbox.h"
#include "en_store.h"
#include "en_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int cli_send(cli_ctx *ctx, int argc, char **argv)
{
    const en_config *c = &ctx->cfg;
    en_store *db = NULL;
    en_store_study s;
    en_outbox *ob = NULL;
    en_err e;
    int rc;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: echonetctl send PSEUDONYM\n"
                        "queues the study's current result for echonetd-send "
                        "(docs/dicom-network.md)\n");
        return CLI_USAGE;
    }
    if (!c->send_enabled) {
        fprintf(stderr, "echonetctl send: sending is off ([send] enabled = no in %s); set "
                "[send] and start echonetd-send (docs/dicom-network.md)\n",
                ctx->config_path ? ctx->config_path : "the built-in defaults");
        return CLI_SETUP;
    }
    if (en_store_open(c->database, EN_STORE_READONLY, &db, &e) != EN_OK) {
        fprintf(stderr, "echonetctl send: %s\n", e.msg);
        return CLI_SETUP;
    }
    memset(&s, 0, sizeof s);
    rc = en_store_study_show(db, argv[1], 0, &s, &e);
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl send: %s\n", e.msg);
        return rc == EN_ENOTFOUND ? CLI_FAILED : CLI_SETUP;
    }
    if (s.res.version < 1 || isnan(s.res.ef_mean) || s.res.beats <= 0) {
        fprintf(stderr, "echonetctl send: study %s has no result with an EF to send (%s)\n",
                argv[1], s.res.version < 1 ? "not computed yet"
                         : s.res.no_ef_reason[0] ? s.res.no_ef_reason : "no usable beat");
        en_store_study_free(&s);
        return CLI_FAILED;
    }
    if (en_outbox_open(c->send_outbox, &ob, &e) != EN_OK ||
        en_outbox_requeue(ob, s.pseudonym, s.res.version, en_wall_ms(), &e) != EN_OK) {
        fprintf(stderr, "echonetctl send: %s\n", e.msg);
        en_outbox_close(ob);
        en_store_study_free(&s);
        return CLI_SETUP;
    }
    printf("study %s result version %d queued: echonetd-send sends it to %s within %d s "
           "(`echonetctl status` shows the outbox)\n", s.pseudonym, s.res.version,
           c->send_peer_ae_title, c->send_poll_s);
    en_outbox_close(ob);
    en_store_study_free(&s);
    return CLI_OK;
}

typedef struct failed_ctx {
    en_json *j;
    int n;
} failed_ctx;

static int failed_row(const en_outbox_item *it, void *ud)
{
    failed_ctx *f = ud;
    char when[EN_STORE_TIME_MAX];

    if (f->n++ >= 5)
        return 1;
    en_store_format_time(it->done_ms, when);
    if (f->j) {
        en_json_begin_object(f->j, NULL);
        en_json_string(f->j, "pseudonym", it->pseudonym);
        en_json_int(f->j, "version", it->version);
        en_json_string(f->j, "when", when);
        en_json_int(f->j, "attempts", it->attempts);
        en_json_string(f->j, "error", it->last_error);
        en_json_end_object(f->j);
    } else {
        printf("  %s v%d  %-24.24s  %d attempts  %s\n", it->pseudonym, it->version, when,
               it->attempts, it->last_error);
    }
    return 0;
}

/* The outbox part of `echonetctl status` (j NULL: text).  Nothing when
 * sending is off and there is no outbox; a problem with it is a line, not a
 * failure of the whole status. */
void cli_status_outbox(const en_config *c, en_json *j)
{
    int64_t n[EN_OUTBOX_NSTATES];
    failed_ctx fc = {j, 0};
    en_outbox *ob = NULL;
    struct stat sb;
    en_err e;
    int rc;

    if (stat(c->send_outbox, &sb) != 0) {
        if (c->send_enabled && !j)
            printf("outbox     none yet (%s): echonetd-send creates it\n", c->send_outbox);
        return;
    }
    rc = en_outbox_open(c->send_outbox, &ob, &e);
    if (rc == EN_OK)
        rc = en_outbox_counts(ob, n, &e);
    if (rc != EN_OK) {
        if (j)
            en_json_string(j, "outbox_error", e.msg);
        else
            printf("outbox     %s\n", e.msg);
        en_outbox_close(ob);
        return;
    }
    if (j) {
        en_json_begin_object(j, "outbox");
        for (int s = 0; s < EN_OUTBOX_NSTATES; s++)
            en_json_int(j, en_outbox_state_name((en_outbox_state)s), n[s]);
        en_json_begin_array(j, "failed_sends");
    } else {
        printf("outbox     %lld pending, %lld sending, %lld sent, %lld failed, %lld superseded"
               "%s\n", (long long)n[EN_OUTBOX_PENDING], (long long)n[EN_OUTBOX_SENDING],
               (long long)n[EN_OUTBOX_SENT], (long long)n[EN_OUTBOX_FAILED],
               (long long)n[EN_OUTBOX_SUPERSEDED], c->send_enabled ? "" : " (sending is off)");
        if (n[EN_OUTBOX_FAILED])
            printf("failed sends (echonetctl send PSEUDONYM queues one again):\n");
    }
    rc = en_outbox_list(ob, EN_OUTBOX_FAILED, failed_row, &fc, &e);
    if (j) {
        en_json_end_array(j);
        en_json_end_object(j);
    }
    if (rc < 0)
        fprintf(stderr, "echonetctl status: %s\n", e.msg);
    en_outbox_close(ob);
}

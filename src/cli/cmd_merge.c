/*
 * cmd_merge.c - `echonetctl merge SHARD.db... [--into DB]`: the databases
 * of a back-fill's array tasks combined into one (en_merge.h), then the
 * result of every study whose clips came from more than one of them
 * computed again over all its clips.
 *
 * Each shard is merged in a transaction of its own, so a shard that is
 * refused (another schema version, another site secret, not an echonetd
 * database) leaves the others merged; the exit status is then 1.  What
 * each shard brought is printed per table: rows added, already present,
 * replaced (a clip a killed task left unfinished, now finished), left out.
 */
#include "cli.h"

#include "en_json.h"
#include "en_merge.h"
#include "en_store.h"
#include "en_study.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void print_shard(const char *shard, const en_merge_stats *s, int json)
{
    if (json) {
        en_json j;
        en_json_init(&j, stdout, 0);
        en_json_begin_object(&j, NULL);
        en_json_string(&j, "kind", "shard");
        en_json_string(&j, "shard", shard);
        en_json_begin_object(&j, "tables");
        for (int i = 0; i < s->ntables; i++) {
            en_json_begin_object(&j, s->t[i].table);
            en_json_int(&j, "added", s->t[i].added);
            en_json_int(&j, "present", s->t[i].present);
            en_json_int(&j, "replaced", s->t[i].replaced);
            en_json_int(&j, "left_out", s->t[i].left_out);
            en_json_end_object(&j);
        }
        en_json_end_object(&j);
        en_json_end_object(&j);
        en_json_finish(&j);
        return;
    }
    printf("%s:\n", shard);
    for (int i = 0; i < s->ntables; i++) {
        const en_merge_count *c = &s->t[i];
        printf("  %-8s %lld added, %lld already present", c->table, (long long)c->added,
               (long long)c->present);
        if (c->replaced)
            printf(", %lld replaced (unfinished here, finished in the shard)",
                   (long long)c->replaced);
        if (c->left_out)
            printf(", %lld left out (nothing to recognise them by)", (long long)c->left_out);
        printf("\n");
    }
}

static void print_study(const char *pseudonym, int version, const en_store_study *s, int json)
{
    const en_store_study_result *r = &s->res;

    if (json) {
        en_json j;
        en_json_init(&j, stdout, 0);
        en_json_begin_object(&j, NULL);
        en_json_string(&j, "kind", "study");
        en_json_string(&j, "pseudonym", pseudonym);
        en_json_int(&j, "version", version);
        en_json_int(&j, "clips_total", r->clips_total);
        en_json_int(&j, "clips_usable", r->clips_usable);
        en_json_int(&j, "beats", r->beats);
        en_json_double(&j, "ef_mean", r->ef_mean);
        en_json_end_object(&j);
        en_json_finish(&j);
        return;
    }
    printf("study %s  result v%d over %d clips: ", pseudonym, version, r->clips_total);
    if (isfinite(r->ef_mean))
        printf("EF %.1f %%  %d/%d clips usable  %d beats\n", r->ef_mean, r->clips_usable,
               r->clips_total, r->beats);
    else
        printf("no EF: %s\n", r->no_ef_reason);
}

/* The studies whose clips came from several databases: their result over
 * all their clips now, as a new version.  A study with a clip still
 * unfinished (its task was stopped) is computed too: what is there counts,
 * and the study is computed again when the finished clip is merged. */
static int recompute(const char *into, const en_merge_stats *stale, int json, int *failed)
{
    en_study_params params;
    en_store *db;
    en_err e;
    int n = 0;

    if (stale->nstale == 0)
        return 0;
    if (en_store_open(into, 0, &db, &e) != EN_OK) {
        fprintf(stderr, "echonetctl merge: %s\n", e.msg);
        (*failed)++;
        return 0;
    }
    en_study_params_default(&params);
    for (int i = 0; i < stale->nstale; i++) {
        en_store_study s;
        int version, changed;
        if (en_study_recompute(db, stale->stale[i], &params, 0, &version, &changed, &e) != EN_OK ||
            en_store_study_show(db, stale->stale[i], 0, &s, &e) != EN_OK) {
            fprintf(stderr, "echonetctl merge: study %s: %s\n", stale->stale[i], e.msg);
            (*failed)++;
            continue;
        }
        n += changed;
        print_study(stale->stale[i], version, &s, json);
        en_store_study_free(&s);
    }
    en_store_close(db);
    return n;
}

static int site_fingerprint(const cli_ctx *ctx, char fp[EN_MERGE_FP_LEN + 1])
{
    en_deid d;
    en_err e;
    int rc;

    /* en_deid_open would make a new secret: a merge must use the site's. */
    if (access(ctx->cfg.secret_file, F_OK) != 0) {
        fprintf(stderr, "echonetctl merge: no site secret at %s ([deid] secret_file): the "
                "merge checks every shard against the secret its studies were made with; "
                "give the configuration the back-fill ran with (-c FILE)\n",
                ctx->cfg.secret_file);
        return CLI_SETUP;
    }
    rc = en_deid_open(&d, ctx->cfg.secret_file, &e);
    if (rc == EN_OK)
        rc = en_merge_fingerprint(&d, fp, &e);
    en_deid_close(&d);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl merge: %s\n", e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

int cli_merge(cli_ctx *ctx, int argc, char **argv)
{
    char fp[EN_MERGE_FP_LEN + 1];
    const char *into = ctx->cfg.database;
    en_merge_stats stats = { 0 };
    int json = 0, flags = 0, nshards = 0, refused = 0, failed = 0, rc;
    en_store *db;
    en_err e;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--into") && i + 1 < argc) {
            into = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--assume-same-site")) {
            flags |= EN_MERGE_ASSUME_SITE;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "echonetctl merge: unknown option '%s'\n", argv[i]);
            return CLI_USAGE;
        } else {
            argv[++nshards] = argv[i];  /* shards gather at argv[1..] */
        }
    }
    if (nshards == 0 || !into[0]) {
        fprintf(stderr, "usage: echonetctl merge [--json] [--assume-same-site] SHARD.db... "
                "[--into DB]\n");
        return CLI_USAGE;
    }
    if ((rc = site_fingerprint(ctx, fp)) != CLI_OK)
        return rc;
    /* Created or brought to the current schema by the store itself. */
    if (en_store_open(into, 0, &db, &e) != EN_OK) {
        fprintf(stderr, "echonetctl merge: %s\n", e.msg);
        return CLI_SETUP;
    }
    en_store_close(db);
    for (int i = 1; i <= nshards; i++) {
        if (en_merge_shard(into, argv[i], fp, flags, &stats, &e) != EN_OK) {
            fprintf(stderr, "echonetctl merge: %s\n", e.msg);
            refused++;
            continue;
        }
        print_shard(argv[i], &stats, json);
        fflush(stdout);
    }
    rc = recompute(into, &stats, json, &failed);
    if (!json)
        printf("merged %d of %d shard%s into %s; %d study result%s computed again\n",
               nshards - refused, nshards, nshards == 1 ? "" : "s", into, rc, rc == 1 ? "" : "s");
    en_merge_stats_free(&stats);
    return refused || failed ? CLI_FAILED : CLI_OK;
}

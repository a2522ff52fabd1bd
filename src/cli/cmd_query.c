/*
 * cmd_query.c - reading the results database: `echonetctl list` (one line
 * per study), `show` (a study, then every clip of it with its verdict),
 * `export` and `report` (re-render a study's page from what is stored).
 *
 * Human tables on a terminal, --json for scripts.  The database is opened
 * read-only; `report` also loads the segmentation model, to outline the
 * key frames again.
 */
#include "cli.h"

#include "en_analysis.h"
#include "en_json.h"
#include "en_nn.h"
#include "en_pipeline.h"
#include "en_store.h"
#include "en_video.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int open_db(cli_ctx *ctx, const char *cmd, en_store **db)
{
    en_err e;
    if (en_store_open(ctx->cfg.database, EN_STORE_READONLY, db, &e) != EN_OK) {
        fprintf(stderr, "echonetctl %s: %s\n", cmd, e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

/* Parses the filter options shared by list and export; *i is advanced past
 * an option and its value.  Returns 1 when argv[*i] was a filter option, 0
 * when not, -1 on a bad value (message printed). */
static int parse_filter(const char *cmd, int argc, char **argv, int *i, en_store_filter *f)
{
    const char *o = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    en_store_status st;
    en_err e;

    if (!strcmp(o, "--flagged")) { f->flags_any = ~(uint64_t)0 >> 1; return 1; }
    if (!strcmp(o, "--unflagged")) { f->flags_none = UINT64_MAX; return 1; }
    if (strcmp(o, "--since") && strcmp(o, "--until") && strcmp(o, "--status") &&
        strcmp(o, "--class") && strcmp(o, "--limit"))
        return 0;
    if (!v) {
        fprintf(stderr, "echonetctl %s: %s needs a value\n", cmd, o);
        return -1;
    }
    (*i)++;
    if (!strcmp(o, "--since") || !strcmp(o, "--until")) {
        int64_t *t = o[2] == 's' ? &f->since_ms : &f->until_ms;
        if (en_store_parse_time(v, o[2] == 'u', t, &e) != EN_OK) {
            fprintf(stderr, "echonetctl %s: %s: %s\n", cmd, o, e.msg);
            return -1;
        }
    } else if (!strcmp(o, "--status")) {
        if (en_store_status_parse(v, &st) != EN_OK) {
            fprintf(stderr, "echonetctl %s: --status expects queued, processing, done or failed\n", cmd);
            return -1;
        }
        f->status_mask |= 1u << st;
    } else if (!strcmp(o, "--class")) {
        f->ef_class = v;
    } else {
        f->limit = atoi(v);
        if (f->limit <= 0) {
            fprintf(stderr, "echonetctl %s: --limit expects a positive number\n", cmd);
            return -1;
        }
    }
    return 1;
}

typedef struct list_ctx {
    int json;
    int count;
    en_json j;
} list_ctx;

/* A study without an EF says why in its last column. */
static const char *study_note(const en_store_study *s)
{
    if (s->clips_unfinished > 0 && s->res.version == 0)
        return "clips still being processed";
    if (s->res.version == 0)
        return "no result yet";
    return s->res.no_ef_reason[0] ? s->res.no_ef_reason : "";
}

static int list_row(const en_store_study *s, void *ud)
{
    list_ctx *l = ud;
    const en_store_study_result *r = &s->res;
    char when[EN_STORE_TIME_MAX], clips[32], flags[2 * EN_STORE_TEXT_MAX + 16];

    en_store_format_time(s->first_received_ms, when);
    l->count++;
    if (l->json) {
        en_json_begin_object(&l->j, NULL);
        en_json_string(&l->j, "pseudonym", s->pseudonym);
        en_json_string(&l->j, "received", when);
        /* done: a result over every clip it has; waiting: clips unfinished,
         * or a clip changed since the result (a new version will follow) */
        en_json_string(&l->j, "status", r->version > 0 && !s->stale && !s->clips_unfinished
                                            ? "done" : "waiting");
        en_json_int(&l->j, "version", r->version);
        en_json_bool(&l->j, "stale", s->stale);
        en_json_double(&l->j, "ef_mean", r->ef_mean);
        en_json_double(&l->j, "ef_sd", r->ef_sd);
        en_json_string(&l->j, "ef_class", r->ef_class[0] ? r->ef_class : NULL);
        en_json_int(&l->j, "clips", s->clips);
        en_json_int(&l->j, "clips_usable", r->clips_usable);
        en_json_int(&l->j, "clips_failed", s->clips_failed);
        en_json_int(&l->j, "clips_unfinished", s->clips_unfinished);
        en_json_int(&l->j, "beats", r->beats);
        en_json_string(&l->j, "flags", r->flags_text);
        en_json_string(&l->j, "no_ef_reason", r->no_ef_reason[0] ? r->no_ef_reason : NULL);
        en_json_end_object(&l->j);
        return 0;
    }
    snprintf(clips, sizeof clips, "%d/%d", r->clips_usable, s->clips);
    snprintf(flags, sizeof flags, "%s%s%s", r->flags_text, s->stale && r->version ? " (stale)" : "",
             r->flags_text[0] || (s->stale && r->version) ? "" : study_note(s));
    printf("%-16s  %-24s  ", s->pseudonym, when);
    if (isnan(r->ef_mean))
        printf("%6s  %-12s", "-", "-");
    else
        printf("%6.1f  %-12s", r->ef_mean, r->ef_class);
    printf("  %7s  %5d  %s\n", clips, r->beats, flags);
    return 0;
}

int cli_list(cli_ctx *ctx, int argc, char **argv)
{
    en_store_filter f;
    list_ctx l;
    en_store *db;
    en_err e;
    int rc;

    memset(&f, 0, sizeof f);
    memset(&l, 0, sizeof l);
    for (int i = 1; i < argc; i++) {
        int r = parse_filter("list", argc, argv, &i, &f);
        if (r < 0)
            return CLI_USAGE;
        if (r == 0 && !strcmp(argv[i], "--json")) {
            l.json = 1;
        } else if (r == 0) {
            fprintf(stderr, "usage: echonetctl list [--since DATE] [--until DATE] [--status S] "
                            "[--class C] [--flagged|--unflagged] [--limit N] [--json]\n");
            return CLI_USAGE;
        }
    }
    if ((rc = open_db(ctx, "list", &db)) != CLI_OK)
        return rc;
    if (l.json) {
        en_json_init(&l.j, stdout, 0);
        en_json_begin_array(&l.j, NULL);
    } else {
        printf("%-16s  %-24s  %6s  %-12s  %7s  %5s  %s\n", "STUDY", "RECEIVED (UTC)", "EF %",
               "CLASS", "CLIPS", "BEATS", "FLAGS / WHY NO EF");
    }
    rc = en_store_study_list(db, &f, list_row, &l, &e);
    if (l.json) {
        en_json_end_array(&l.j);
        en_json_finish(&l.j);
    }
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl list: %s\n", e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

/* "DICOM: apical two-chamber", or what the images looked like. */
static const char *view_evidence(const en_store_clip *c, char *buf, size_t n)
{
    if (c->r.view_dicom[0])
        snprintf(buf, n, "DICOM %.32s", c->r.view_dicom);
    else if (!strcmp(c->r.verdict, "usable"))
        snprintf(buf, n, "images a4c");
    else if (!strcmp(c->r.verdict, "unusable"))
        snprintf(buf, n, "images not a4c");
    else
        snprintf(buf, n, "-");
    return buf;
}

static void show_clip(const en_store_clip *c, int i)
{
    char view[64], ef[16], frames[16], label[32];

    snprintf(label, sizeof label, "%d %.8s", i + 1, c->r.dedup_key[0] ? c->r.dedup_key : "-");
    snprintf(ef, sizeof ef, isnan(c->r.ef_mean) ? "-" : "%.1f", c->r.ef_mean);
    snprintf(frames, sizeof frames, c->r.src_frames > 0 ? "%d" : "-", c->r.src_frames);
    printf("  %-11s  %-10s  %-15s  %6s  %5d  %6s  %s\n", label, en_store_status_name(c->status),
           view_evidence(c, view, sizeof view), frames, c->r.nbeats, ef,
           c->status == EN_STORE_DONE ? (c->r.verdict[0] ? c->r.verdict : "never judged")
                                      : c->last_error);
    if (c->status == EN_STORE_DONE && c->r.verdict_text[0])
        printf("%15s%s\n", "", c->r.verdict_text);
    if (c->r.nbeats) {
        printf("%15sbeat EFs:", "");
        for (int b = 0; b < c->r.nbeats; b++)
            printf(" %.1f%s", c->r.beats[b].ef, c->r.beats[b].shift ? " (shifted)" : "");
        printf("\n");
    }
}

static void show_human(const en_store_study *s)
{
    const en_store_study_result *r = &s->res;
    char first[EN_STORE_TIME_MAX], last[EN_STORE_TIME_MAX], at[EN_STORE_TIME_MAX];

    en_store_format_time(s->first_received_ms, first);
    en_store_format_time(s->last_received_ms, last);
    printf("study        %s\n", s->pseudonym);
    printf("received     %s .. %s (%d instance%s)\n", first, last, s->clips,
           s->clips == 1 ? "" : "s");
    if (r->version == 0) {
        printf("result       none yet (%d clips unfinished)\n", s->clips_unfinished);
    } else {
        en_store_format_time(r->computed_ms, at);
        printf("result       version %d, %s%s\n", r->version, at,
               s->stale ? " (stale: a clip changed since)" : "");
        if (isnan(r->ef_mean))
            printf("EF           - : %s\n", r->no_ef_reason);
        else
            printf("EF           %.1f %% (SD %.1f) over %d beats of %d usable clips (of %d): %s\n",
                   r->ef_mean, isnan(r->ef_sd) ? 0.0 : r->ef_sd, r->beats, r->clips_usable,
                   r->clips_total, r->ef_class);
        if (r->clips_usable > 1)
            printf("clip means   %.1f .. %.1f %% (disagreement limit %.0f points)\n",
                   r->clip_ef_min, r->clip_ef_max, r->disagreement_points);
        printf("flags        %s\n", r->flags_text[0] ? r->flags_text : "none");
    }
    printf("\n  %-11s  %-10s  %-15s  %6s  %5s  %6s  %s\n", "CLIP", "STATUS", "VIEW EVIDENCE",
           "FRAMES", "BEATS", "EF %", "VERDICT / REASONS");
    for (int i = 0; i < s->nclips; i++)
        show_clip(&s->clip[i], i);
}

int cli_show(cli_ctx *ctx, int argc, char **argv)
{
    const char *pseudonym = NULL;
    en_store_study s;
    en_store *db;
    en_err e;
    int json = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!pseudonym && argv[i][0] != '-')
            pseudonym = argv[i];
        else {
            fprintf(stderr, "usage: echonetctl show PSEUDONYM [--json]\n");
            return CLI_USAGE;
        }
    }
    if (!pseudonym) {
        fprintf(stderr, "usage: echonetctl show PSEUDONYM [--json]\n");
        return CLI_USAGE;
    }
    if ((rc = open_db(ctx, "show", &db)) != CLI_OK)
        return rc;
    rc = en_store_study_show(db, pseudonym, 0, &s, &e);
    if (rc == EN_OK && json) {
        en_store_filter f;
        memset(&f, 0, sizeof f);
        f.pseudonym = pseudonym;
        rc = en_store_export(db, EN_STORE_EXPORT_JSON, &f, stdout, &e);
    } else if (rc == EN_OK) {
        show_human(&s);
    }
    en_store_study_free(&s);
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl show: %s\n", e.msg);
        return rc == EN_ENOTFOUND ? CLI_FAILED : CLI_SETUP;
    }
    return CLI_OK;
}

int cli_export(cli_ctx *ctx, int argc, char **argv)
{
    en_store_export_format fmt = EN_STORE_EXPORT_JSON;
    en_store_filter f;
    const char *out = NULL;
    FILE *fp = stdout;
    en_store *db;
    en_err e;
    int rc;

    memset(&f, 0, sizeof f);
    for (int i = 1; i < argc; i++) {
        int r = parse_filter("export", argc, argv, &i, &f);
        if (r < 0)
            return CLI_USAGE;
        if (r == 1)
            continue;
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            if (en_store_export_format_parse(argv[++i], &fmt) != EN_OK) {
                fprintf(stderr, "echonetctl export: --format expects size, clips or json\n");
                return CLI_USAGE;
            }
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !f.pseudonym) {
            f.pseudonym = argv[i];
        } else {
            fprintf(stderr, "usage: echonetctl export [--format size|clips|json] [-o FILE] "
                            "[PSEUDONYM] [filters as for list]\n");
            return CLI_USAGE;
        }
    }
    if ((rc = open_db(ctx, "export", &db)) != CLI_OK)
        return rc;
    if (out && !(fp = fopen(out, "w"))) {
        fprintf(stderr, "echonetctl export: cannot write %s\n", out);
        en_store_close(db);
        return CLI_SETUP;
    }
    rc = en_store_export(db, fmt, &f, fp, &e);
    if (fp != stdout && fclose(fp) != 0 && rc == EN_OK)
        rc = en_err_set(&e, EN_EIO, "cannot write %s", out);
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl export: %s\n", e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

int cli_report(cli_ctx *ctx, int argc, char **argv)
{
    char pdf[EN_PATH_MAX + 64], png[EN_PATH_MAX + 64];
    en_study_keyframes k[EN_STUDY_REPORT_KEYCLIPS];
    uint8_t *pixels = NULL;
    en_store_study s;
    en_store *db;
    en_err e;
    int nk = 0, rc;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: echonetctl report PSEUDONYM\n");
        return CLI_USAGE;
    }
    if ((rc = open_db(ctx, "report", &db)) != CLI_OK)
        return rc;
    rc = en_store_study_show(db, argv[1], EN_STORE_SHOW_FRAMES, &s, &e);
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl report: %s\n", e.msg);
        return rc == EN_ENOTFOUND ? CLI_FAILED : CLI_SETUP;
    }
    if (s.res.version == 0) {
        fprintf(stderr, "echonetctl report: study %s has no result yet (%d of its %d clips "
                "unfinished): nothing to report\n", argv[1], s.clips_unfinished, s.clips);
        en_store_study_free(&s);
        return CLI_FAILED;
    }
    rc = en_study_keyframes_load(&ctx->cfg, NULL, &s, k, &nk, &pixels, &e);
    if (rc == EN_OK)
        rc = en_study_report(&ctx->cfg, &s, k, nk, pdf, png, sizeof pdf, &e);
    free(pixels);
    en_store_study_free(&s);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl report: study %s: %s\n", argv[1], e.msg);
        return CLI_FAILED;
    }
    if (pdf[0])
        printf("%s\n", pdf);
    if (png[0])
        printf("%s\n", png);
    return CLI_OK;
}

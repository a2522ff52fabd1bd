/*
 * cmd_query.c - reading the results database: `echonetctl list`, `show`,
 * `export` and `report` (re-render a study's page from what is stored).
 *
 * Human tables on a terminal, --json for scripts.  The database is opened
 * read-only except by `report`, which only reads too but needs the models.
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

static int list_row(const en_store_study *s, void *ud)
{
    list_ctx *l = ud;
    char when[EN_STORE_TIME_MAX];

    en_store_format_time(s->r.received_ms, when);
    l->count++;
    if (l->json) {
        en_json_begin_object(&l->j, NULL);
        en_json_string(&l->j, "pseudonym", s->r.pseudonym);
        en_json_string(&l->j, "received", when);
        en_json_string(&l->j, "status", en_store_status_name(s->status));
        en_json_double(&l->j, "ef_mean", s->r.ef_mean);
        en_json_double(&l->j, "ef_sd", s->r.ef_sd);
        en_json_string(&l->j, "ef_class", s->r.ef_class);
        en_json_int(&l->j, "beats", s->beat_count);
        en_json_string(&l->j, "flags", s->r.flags_text);
        en_json_string(&l->j, "last_error", s->last_error);
        en_json_end_object(&l->j);
        return 0;
    }
    printf("%-16s  %-20.20s  %-10s  ", s->r.pseudonym, when, en_store_status_name(s->status));
    if (isnan(s->r.ef_mean))
        printf("%6s  %-12s", "-", "-");
    else
        printf("%6.1f  %-12s", s->r.ef_mean, s->r.ef_class);
    printf("  %5d  %s\n", s->beat_count,
           s->status == EN_STORE_FAILED ? s->last_error : s->r.flags_text);
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
        printf("%-16s  %-20s  %-10s  %6s  %-12s  %5s  %s\n", "PSEUDONYM", "RECEIVED (UTC)",
               "STATUS", "EF %", "CLASS", "BEATS", "FLAGS / ERROR");
    }
    rc = en_store_list(db, &f, list_row, &l, &e);
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

static void show_human(const en_store_study *s)
{
    const en_store_result *r = &s->r;
    char when[EN_STORE_TIME_MAX];

    en_store_format_time(r->received_ms, when);
    printf("study        %s\n", r->pseudonym);
    printf("status       %s (attempts %d)%s%s\n", en_store_status_name(s->status), s->attempts,
           s->last_error[0] ? ": " : "", s->last_error);
    printf("received     %s\n", when);
    printf("source       %d frames, %dx%d, %.3g fps from %s, sector by %s\n", r->src_frames,
           r->src_cols, r->src_rows, r->fps, r->fps_source, r->sector_method);
    if (isnan(r->ef_mean))
        printf("EF           - (no beat)\n");
    else
        printf("EF           %.1f %% (SD %.1f) over %d beats: %s\n", r->ef_mean, r->ef_sd,
               r->nbeats, r->ef_class);
    printf("flags        %s\n", r->flags_text[0] ? r->flags_text : "none");
    printf("models       %s %.12s; %s %.12s\n", r->seg_model.architecture, r->seg_model.sha256,
           r->ef_model.architecture, r->ef_model.sha256);
    if (r->nbeats)
        printf("\n  beat  systole  clip start  ED frame     EF %%\n");
    for (int i = 0; i < r->nbeats; i++)
        printf("  %4d  %7d  %10d  %8d  %7.1f%s\n", i + 1, r->beats[i].systole_frame,
               r->beats[i].clip_start, r->beats[i].ed_frame, r->beats[i].ef,
               r->beats[i].shift ? "  (clip shifted)" : "");
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
    if (json) {
        en_store_filter f;
        memset(&f, 0, sizeof f);
        f.pseudonym = pseudonym;
        rc = en_store_export(db, EN_STORE_EXPORT_JSON, &f, stdout, &e);
    } else {
        rc = en_store_show(db, pseudonym, &s, &e);
        if (rc == EN_OK) {
            show_human(&s);
            en_store_study_free(&s);
        }
    }
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

/* Re-segments the first beat's ED and ES frames of the stored AVI, so the
 * re-rendered page shows the same outlines as the original. */
static int keyframes(cli_ctx *ctx, const en_store_result *r, en_frames *video,
                     uint8_t *masks, en_study_keyframes *k, en_err *err)
{
    char path[EN_PATH_MAX + 64];
    en_nn_model *seg;
    en_frames two;
    float *logits;
    int ed, es, rc;
    size_t px;

    k->ed = k->es = -1;
    if (r->nbeats == 0 || r->beats[0].ed_frame == EN_STORE_NONE || !ctx->cfg.seg_weights[0])
        return EN_OK;
    en_study_path(&ctx->cfg, r->pseudonym, ".avi", path, sizeof path);
    if ((rc = en_video_read(path, 1, video, NULL, err)) != EN_OK)
        return rc;
    ed = r->beats[0].ed_frame;
    es = r->beats[0].systole_frame;
    if (ed >= video->nframes || es >= video->nframes)
        return en_err_set(err, EN_EFORMAT, "%s has %d frames, fewer than the stored result", path,
                          video->nframes);
    px = (size_t)video->rows * video->cols;
    if (2 * px > 2 * 1024 * 1024)
        return en_err_set(err, EN_ELIMIT, "%s: frames of %dx%d are larger than a report key frame "
                          "can be", path, video->cols, video->rows);
    if ((rc = en_frames_alloc(&two, 2, video->rows, video->cols, 1)) != EN_OK)
        return en_err_set(err, rc, "out of memory");
    memcpy(two.data, en_frames_frame(video, ed), px);
    memcpy(two.data + px, en_frames_frame(video, es), px);
    logits = malloc(2 * px * sizeof *logits);
    rc = logits ? en_nn_model_load(ctx->cfg.seg_weights, &seg, err) : EN_ENOMEM;
    if (rc == EN_OK) {
        rc = en_nn_segment_frames(seg, &two, logits, NULL, err);
        en_nn_model_free(seg);
    }
    for (size_t i = 0; rc == EN_OK && i < 2 * px; i++)
        masks[i] = logits[i] > 0.0f;
    free(logits);
    en_frames_free(&two);
    if (rc == EN_OK) {
        *k = (en_study_keyframes){ ed, en_frames_frame(video, ed), masks,
                                   es, en_frames_frame(video, es), masks + px };
    }
    return rc;
}

int cli_report(cli_ctx *ctx, int argc, char **argv)
{
    char pdf[EN_PATH_MAX + 64], png[EN_PATH_MAX + 64];
    static uint8_t masks[2 * 1024 * 1024];
    en_study_keyframes k;
    en_frames video = { 0 };
    en_store_study s;
    en_store *db;
    en_err e;
    int rc;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: echonetctl report PSEUDONYM\n");
        return CLI_USAGE;
    }
    if ((rc = open_db(ctx, "report", &db)) != CLI_OK)
        return rc;
    rc = en_store_show(db, argv[1], &s, &e);
    en_store_close(db);
    if (rc != EN_OK) {
        fprintf(stderr, "echonetctl report: %s\n", e.msg);
        return rc == EN_ENOTFOUND ? CLI_FAILED : CLI_SETUP;
    }
    if (s.status != EN_STORE_DONE) {
        fprintf(stderr, "echonetctl report: study %s is %s, not done: nothing to report\n",
                argv[1], en_store_status_name(s.status));
        en_store_study_free(&s);
        return CLI_FAILED;
    }
    rc = keyframes(ctx, &s.r, &video, masks, &k, &e);
    if (rc == EN_OK)
        rc = en_study_report(&ctx->cfg, &s.r, &k, pdf, png, sizeof pdf, &e);
    en_frames_free(&video);
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

/*
 * cmd_process.c - `echonetctl process FILE...`: the whole pipeline on each
 * file (one clip each), without the daemon, then the result of every study
 * those files belong to, over all its clips in the database, with its
 * report beside the AVIs.
 *
 * On a terminal, a progress line per stage goes to stderr; the outcome of
 * each file, then of each study, goes to stdout (one line, or one JSON
 * object with --json, "kind" telling which).  Exit status: 0 when every
 * file and study succeeded, 1 when any failed.
 */
#include "cli.h"

#include "en_json.h"
#include "en_pipeline.h"
#include "inputs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct progress_ctx {
    int tty;
    int index, total;
} progress_ctx;

static void on_progress(const char *stage, const char *detail, void *ud)
{
    progress_ctx *p = ud;

    if (!p->tty)
        return;
    fprintf(stderr, "\r\033[K[%d/%d] %-8s %s", p->index, p->total, stage, detail);
    fflush(stderr);
}

static void print_human(const en_pipeline_result *r)
{
    printf("%s  clip %.8s  ", r->conv.pseudonym,
           r->conv.dedup_key[0] ? r->conv.dedup_key : "(no key)");
    if (r->duplicate) {
        printf("duplicate: already processed, not processed again\n");
        return;
    }
    if (!strcmp(r->verdict, "not_analysed")) {
        printf("not analysed: %s\n", r->verdict_text);
        return;
    }
    if (r->nbeats > 0)
        printf("EF %.1f %%", r->ef_mean);
    else
        printf("EF -");
    if (r->nbeats > 1)
        printf(" (SD %.1f)", r->ef_sd);
    printf("  %d beat%s  %d frames  flags: %s\n    %s: %s\n", r->nbeats,
           r->nbeats == 1 ? "" : "s", r->nframes, r->flags_text[0] ? r->flags_text : "none",
           r->verdict, r->verdict_text);
}

static void print_json(const en_pipeline_result *r)
{
    en_json j;

    en_json_init(&j, stdout, 0);
    en_json_begin_object(&j, NULL);
    en_json_string(&j, "kind", "clip");
    en_json_string(&j, "pseudonym", r->conv.pseudonym);
    en_json_int(&j, "clip_id", (long long)r->clip_id);
    en_json_string(&j, "status", r->duplicate ? "duplicate" : "done");
    en_json_string(&j, "verdict", r->verdict[0] ? r->verdict : NULL);
    en_json_string(&j, "verdict_text", r->verdict_text[0] ? r->verdict_text : NULL);
    en_json_int(&j, "frames", r->nframes);
    en_json_int(&j, "beats", r->nbeats);
    en_json_double(&j, "ef_mean", r->ef_mean);
    en_json_double(&j, "ef_sd", r->ef_sd);
    en_json_string(&j, "ef_class", r->ef_class);
    en_json_int(&j, "flags", r->flags);
    en_json_string(&j, "flags_text", r->flags_text);
    en_json_string(&j, "video", r->video[0] ? r->video : NULL);
    en_json_string(&j, "overlay_video", r->overlay_avi[0] ? r->overlay_avi : NULL);
    en_json_double(&j, "ms_total", r->ms_total);
    en_json_end_object(&j);
    en_json_finish(&j);
}

static void print_study(const char *pseudonym, const en_pipeline_study *st, int json)
{
    const en_store_study_result *r = &st->res;

    if (json) {
        en_json j;
        en_json_init(&j, stdout, 0);
        en_json_begin_object(&j, NULL);
        en_json_string(&j, "kind", "study");
        en_json_string(&j, "pseudonym", pseudonym);
        en_json_int(&j, "version", st->version);
        en_json_bool(&j, "changed", st->changed);
        en_json_int(&j, "clips_total", r->clips_total);
        en_json_int(&j, "clips_usable", r->clips_usable);
        en_json_int(&j, "beats", r->beats);
        en_json_double(&j, "ef_mean", r->ef_mean);
        en_json_double(&j, "ef_sd", r->ef_sd);
        en_json_double(&j, "clip_ef_min", r->clip_ef_min);
        en_json_double(&j, "clip_ef_max", r->clip_ef_max);
        en_json_string(&j, "ef_class", r->ef_class[0] ? r->ef_class : NULL);
        en_json_int(&j, "flags", (long long)r->flags);
        en_json_string(&j, "flags_text", r->flags_text);
        en_json_string(&j, "no_ef_reason", r->no_ef_reason[0] ? r->no_ef_reason : NULL);
        en_json_string(&j, "report_pdf", st->report_pdf[0] ? st->report_pdf : NULL);
        en_json_string(&j, "report_png", st->report_png[0] ? st->report_png : NULL);
        en_json_end_object(&j);
        en_json_finish(&j);
        return;
    }
    printf("study %s  result v%d%s: ", pseudonym, st->version, st->changed ? "" : " (unchanged)");
    if (isfinite(r->ef_mean))
        printf("EF %.1f %%%s  %s  %d/%d clips usable  %d beats  flags: %s\n", r->ef_mean,
               "", r->ef_class, r->clips_usable, r->clips_total, r->beats,
               r->flags_text[0] ? r->flags_text : "none");
    else
        printf("no EF: %s\n", r->no_ef_reason);
    if (st->report_pdf[0])
        printf("    report %s\n", st->report_pdf);
}

/* The studies this run touched, in the order first seen. */
typedef struct touched {
    char (*pseudonym)[EN_STORE_KEY_MAX];
    int n;
} touched;

static int touch(touched *t, const char *pseudonym)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->pseudonym[i], pseudonym))
            return EN_OK;
    void *grown = realloc(t->pseudonym, (size_t)(t->n + 1) * sizeof *t->pseudonym);
    if (!grown)
        return EN_ENOMEM;
    t->pseudonym = grown;
    snprintf(t->pseudonym[t->n++], EN_STORE_KEY_MAX, "%s", pseudonym);
    return EN_OK;
}

static void one_line(char *msg)
{
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

/* Each study touched: its result over all its clips (a new version when
 * they changed) and its report. */
static int finish_studies(en_pipeline *p, const touched *t, int json)
{
    int failed = 0;

    for (int i = 0; i < t->n; i++) {
        en_pipeline_study st;
        en_err e;
        int rc = en_pipeline_finish_study(p, t->pseudonym[i], 0, &st, &e);
        if (rc != EN_OK && st.version == 0) {
            one_line(e.msg);
            fprintf(stderr, "echonetctl process: %s\n", e.msg);
            failed++;
            continue;
        }
        print_study(t->pseudonym[i], &st, json);
        if (rc != EN_OK) {   /* the result is stored; only the page failed */
            one_line(e.msg);
            fprintf(stderr, "echonetctl process: %s\n", e.msg);
            failed++;
        }
    }
    return failed;
}

/* After the first file: the models, loading meanwhile, are there, or their
 * error is the setup's (every file would fail the same way), so it is
 * reported as such and nothing more is processed. */
static int models_check(en_pipeline *p)
{
    en_err e;

    if (en_pipeline_models_wait(p, &e) != EN_OK) {
        fprintf(stderr, "echonetctl process: %s\n", e.msg);
        return 0;
    }
    if (en_pipeline_phantom(p))
        fprintf(stderr, "echonetctl process: note: using the phantom-trained default models, "
                "not for clinical use (set [models] to real weights: see README)\n");
    return 1;
}

int cli_process(cli_ctx *ctx, int argc, char **argv)
{
    progress_ctx prog = { isatty(STDERR_FILENO), 0, 0 };
    touched studies = { NULL, 0 };
    en_pipeline p;
    en_err e;
    int json = 0, failed = 0, first = 1, taken, models_ready = 0;
    cli_inputs in;
    cli_progress pr;

    cli_inputs_init(&in);
    for (; first < argc && argv[first][0] == '-'; first++) {
        if ((taken = cli_inputs_option(&in, "process", argc, argv, &first)) != 0) {
            if (taken < 0)
                return CLI_USAGE;
        } else if (!strcmp(argv[first], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "echonetctl process: unknown option '%s'\n", argv[first]);
            return CLI_USAGE;
        }
    }
    if ((taken = cli_inputs_ready(&in, "process", argv + first, argc - first)) >= 0) {
        cli_inputs_free(&in);
        return taken;
    }
    /* The models load while the first file is read and converted. */
    if (en_pipeline_open_early(&p, &ctx->cfg, &e) != EN_OK ||
        cli_stamp_site(ctx->cfg.database, &p.deid, &e) != EN_OK) {
        fprintf(stderr, "echonetctl process: %s\n", e.msg);
        en_pipeline_close(&p);
        cli_inputs_free(&in);
        return CLI_SETUP;
    }
    /* Files named by hand are done again, replacing the clip's result; a
     * list or folders (a back-fill) skip what the same models did. */
    p.reprocess = !cli_inputs_skip_done(&in);
    prog.total = (int)in.n;
    cli_progress_begin(&pr, "echonetctl process", &in);
    for (size_t i = 0; i < in.n; i++) {
        en_pipeline_result r;
        int rc;
        prog.index = (int)i + 1;
        rc = en_pipeline_process(&p, in.path[i], &r, on_progress, &prog, &e);
        if (prog.tty)
            fputs("\r\033[K", stderr);
        if (!models_ready && !(models_ready = models_check(&p)))
            break;
        cli_progress_file(&pr, rc != EN_OK ? CLI_FILE_FAILED : r.duplicate ? CLI_FILE_SKIPPED
                                                                         : CLI_FILE_DONE,
                          r.ms_total);
        if (r.conv.pseudonym[0] && (r.clip_id > 0 || r.duplicate) &&
            touch(&studies, r.conv.pseudonym) != EN_OK) {
            fprintf(stderr, "echonetctl process: out of memory\n");
            failed++;
        }
        if (rc != EN_OK) {
            one_line(e.msg);
            fprintf(stderr, "echonetctl process: %s\n", e.msg);
            failed++;
            continue;
        }
        if (json)
            print_json(&r);
        else
            print_human(&r);
        fflush(stdout);
    }
    if (!models_ready && in.n == 0)
        models_ready = models_check(&p);
    if (models_ready)
        failed += finish_studies(&p, &studies, json);
    free(studies.pseudonym);
    en_pipeline_close(&p);
    cli_inputs_free(&in);
    return !models_ready ? CLI_SETUP : failed ? CLI_FAILED : CLI_OK;
}

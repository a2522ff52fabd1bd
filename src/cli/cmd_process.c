/*
 * cmd_process.c - `echonetctl process FILE...`: the whole pipeline on each
 * file, without the daemon, leaving a complete result in the database and
 * the report beside the AVI.
 *
 * On a terminal, a progress line per stage goes to stderr; the outcome of
 * each file goes to stdout (one line, or one JSON object with --json).
 * Exit status: 0 when every file succeeded, 1 when any failed.
 */
#include "cli.h"

#include "en_json.h"
#include "en_pipeline.h"

#include <math.h>
#include <stdio.h>
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
    printf("%s  ", r->conv.pseudonym);
    if (r->nbeats > 0)
        printf("EF %.1f %%", r->ef_mean);
    else
        printf("EF -");
    if (r->nbeats > 1)
        printf(" (SD %.1f)", r->ef_sd);
    printf("  %s  %d beat%s  %d frames  flags: %s\n", r->ef_class, r->nbeats,
           r->nbeats == 1 ? "" : "s", r->nframes, r->flags_text[0] ? r->flags_text : "none");
    if (r->report_pdf[0])
        printf("    report %s\n", r->report_pdf);
}

static void print_json(const en_pipeline_result *r)
{
    en_json j;

    en_json_init(&j, stdout, 0);
    en_json_begin_object(&j, NULL);
    en_json_string(&j, "pseudonym", r->conv.pseudonym);
    en_json_string(&j, "status", "done");
    en_json_int(&j, "frames", r->nframes);
    en_json_int(&j, "beats", r->nbeats);
    en_json_double(&j, "ef_mean", r->ef_mean);
    en_json_double(&j, "ef_sd", r->ef_sd);
    en_json_string(&j, "ef_class", r->ef_class);
    en_json_int(&j, "flags", r->flags);
    en_json_string(&j, "flags_text", r->flags_text);
    en_json_string(&j, "video", r->conv.avi_path);
    en_json_string(&j, "report_pdf", r->report_pdf[0] ? r->report_pdf : NULL);
    en_json_string(&j, "report_png", r->report_png[0] ? r->report_png : NULL);
    en_json_string(&j, "overlay_video", r->overlay_avi[0] ? r->overlay_avi : NULL);
    en_json_double(&j, "ms_total", r->ms_total);
    en_json_end_object(&j);
    en_json_finish(&j);
}

int cli_process(cli_ctx *ctx, int argc, char **argv)
{
    progress_ctx prog = { isatty(STDERR_FILENO), 0, 0 };
    en_pipeline p;
    en_err e;
    int json = 0, failed = 0, first = 1;

    for (; first < argc && argv[first][0] == '-'; first++) {
        if (!strcmp(argv[first], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "echonetctl process: unknown option '%s'\n", argv[first]);
            return CLI_USAGE;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "usage: echonetctl process [--json] FILE.dcm...\n");
        return CLI_USAGE;
    }
    if (en_pipeline_open(&p, &ctx->cfg, &e) != EN_OK) {
        fprintf(stderr, "echonetctl process: %s\n", e.msg);
        return CLI_SETUP;
    }
    p.reprocess = 1;    /* asked by hand: do it again, replacing the result */
    if (en_pipeline_phantom(&p))
        fprintf(stderr, "echonetctl process: note: using the phantom-trained default models, "
                "not for clinical use (set [models] to real weights: see README)\n");
    prog.total = argc - first;
    for (int i = first; i < argc; i++) {
        en_pipeline_result r;
        prog.index = i - first + 1;
        if (en_pipeline_process(&p, argv[i], &r, on_progress, &prog, &e) != EN_OK) {
            if (prog.tty)
                fputs("\r\033[K", stderr);
            for (char *c = e.msg; *c; c++)
                if (*c == '\n')
                    *c = ' ';
            fprintf(stderr, "echonetctl process: %s\n", e.msg);
            failed++;
            continue;
        }
        if (prog.tty)
            fputs("\r\033[K", stderr);
        if (json)
            print_json(&r);
        else
            print_human(&r);
        fflush(stdout);
    }
    en_pipeline_close(&p);
    return failed ? CLI_FAILED : CLI_OK;
}

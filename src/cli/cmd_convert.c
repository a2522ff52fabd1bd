/*
 * cmd_convert.c - `echonetctl convert IN.dcm [OUT.avi|DIR] [--json[=FILE]]`.
 *
 * Errors go to stderr on one line that names the file, the stage and the
 * cause; the human summary goes to stdout, or JSON with --json.
 */
#include "cli.h"

#include "en_convert.h"
#include "en_deid.h"

#include <stdio.h>
#include <string.h>

static int exit_code_for(int rc)
{
    switch (rc) {
    case EN_EPERM:
        return CLI_SETUP;
    default:
        return CLI_FAILED;
    }
}

int cli_convert(cli_ctx *ctx, int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *json_path = NULL;
    int want_json = 0, rc;
    en_convert_result res;
    en_deid deid;
    en_err e;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            want_json = 1;
        } else if (!strncmp(argv[i], "--json=", 7)) {
            want_json = 1;
            json_path = argv[i] + 7;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "echonetctl convert: unknown option '%s'\n", argv[i]);
            return CLI_USAGE;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            fprintf(stderr, "echonetctl convert: too many arguments\n");
            return CLI_USAGE;
        }
    }
    if (!in) {
        fprintf(stderr, "usage: echonetctl convert IN.dcm [OUT.avi|DIR] [--json[=FILE]]\n");
        return CLI_USAGE;
    }
    if (en_deid_open(&deid, ctx->cfg.secret_file, &e) != EN_OK) {
        fprintf(stderr, "echonetctl convert: %s\n", e.msg);
        return CLI_SETUP;
    }
    rc = en_convert_file(&ctx->cfg, &deid, in, out, &res, &e);
    en_deid_close(&deid);
    if (rc != EN_OK) {
        /* One line, always: scripts and the test suite rely on it. */
        for (char *p = e.msg; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        fprintf(stderr, "echonetctl convert: %s\n", e.msg);
        return exit_code_for(rc);
    }
    if (want_json && json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            fprintf(stderr, "echonetctl convert: cannot write %s\n", json_path);
            return CLI_SETUP;
        }
        en_convert_result_json(&res, f);
        fclose(f);
        en_convert_result_print(&res, stdout);
    } else if (want_json) {
        en_convert_result_json(&res, stdout);
    } else {
        en_convert_result_print(&res, stdout);
    }
    return CLI_OK;
}

/*
 * echonetctl.c - the command users run by hand, as subcommands
 * (`echonetctl convert ...`), like git or systemctl.
 *
 * Global options come before the subcommand: -c/--config FILE and
 * --set section.key=value (repeatable) override settings for one run.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EN_SYSCONFDIR
#define EN_SYSCONFDIR "/etc"
#endif

static void usage(FILE *f)
{
    fprintf(f,
        "usage: echonetctl [-c FILE] [--set SECTION.KEY=VALUE]... COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  convert IN.dcm [OUT.avi|DIR] [--json[=FILE]]\n"
        "          deidentify an echo DICOM, locate its ultrasound sector and write the\n"
        "          112x112 AVI that EchoNet-Dynamic's networks take\n"
        "  process [--json] FILE.dcm...\n"
        "          the whole pipeline: convert, segment, beats, beat-by-beat EF, store the\n"
        "          result in the database, draw the report\n"
        "  list [--since DATE] [--until DATE] [--status S] [--class C]\n"
        "       [--flagged|--unflagged] [--limit N] [--json]\n"
        "          studies in the database, newest first\n"
        "  show PSEUDONYM [--json]\n"
        "          one study: summary, beats, flags, models\n"
        "  export [--format size|clips|json] [-o FILE] [PSEUDONYM] [filters]\n"
        "          upstream's size.csv or clip predictions, or everything as JSON\n"
        "  status [--json]\n"
        "          the daemon's spool (inbox, work, quarantine) and studies per state,\n"
        "          with the latest failures\n"
        "  report PSEUDONYM\n"
        "          draw the study's report again from the database\n"
        "  segment VIDEO.avi [--weights SEG] [--out size.csv] [--masks F] [--logits F]\n"
        "          per-frame LV sizes of a 112x112 video\n"
        "  ef VIDEO.avi [--weights EF] [--start N]\n"
        "          EF of one 32-frame clip\n"
        "  convert-weights IN.pt OUT.safetensors --arch ARCH [options]\n"
        "          turn upstream's or torchvision's PyTorch weights into echonetd's format\n"
        "  help    this text\n"
        "\n"
        "options:\n"
        "  -c, --config FILE   configuration (default: $ECHONETD_CONF, else\n"
        "                      " EN_SYSCONFDIR "/echonetd.conf when it exists)\n"
        "  --set S.K=V         override one setting, e.g. --set limits.max_frames=500\n"
        "\n"
        "exit codes: 0 success, 1 the input could not be processed, 2 usage error,\n"
        "            3 configuration or environment error\n");
}

static const char *default_config(void)
{
    static char path[1100];
    const char *env = getenv("ECHONETD_CONF");

    if (env && *env)
        return env;
    snprintf(path, sizeof path, "%s/echonetd.conf", EN_SYSCONFDIR);
    return access(path, R_OK) == 0 ? path : NULL;
}

static int apply_set(en_config *cfg, const char *arg)
{
    char buf[EN_PATH_MAX + 128];
    char *dot, *eq;
    en_err e;

    snprintf(buf, sizeof buf, "%s", arg);
    dot = strchr(buf, '.');
    eq = strchr(buf, '=');
    if (!dot || !eq || dot > eq) {
        fprintf(stderr, "echonetctl: --set expects SECTION.KEY=VALUE, got '%s'\n", arg);
        return CLI_USAGE;
    }
    *dot = *eq = '\0';
    if (en_config_set(cfg, buf, dot + 1, eq + 1, &e) != EN_OK) {
        fprintf(stderr, "echonetctl: --set %s\n", e.msg);
        return CLI_SETUP;
    }
    return CLI_OK;
}

int main(int argc, char **argv)
{
    cli_ctx ctx;
    const char *sets[64];
    int nsets = 0, i = 1;
    en_err e;

    memset(&ctx, 0, sizeof ctx);
    ctx.prog = "echonetctl";
    ctx.config_path = default_config();
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            ctx.config_path = argv[++i];
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 64) {
            sets[nsets++] = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CLI_OK;
        } else {
            fprintf(stderr, "echonetctl: unknown option '%s' (see echonetctl help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    en_config_defaults(&ctx.cfg);
    if (ctx.config_path && en_config_load(&ctx.cfg, ctx.config_path, &e) != EN_OK) {
        fprintf(stderr, "echonetctl: %s\n", e.msg);
        return CLI_SETUP;
    }
    for (int k = 0; k < nsets; k++) {
        int rc = apply_set(&ctx.cfg, sets[k]);
        if (rc != CLI_OK)
            return rc;
    }
    static const struct { const char *name; int (*fn)(cli_ctx *, int, char **); } cmds[] = {
        { "convert", cli_convert }, { "process", cli_process }, { "list", cli_list },
        { "show", cli_show }, { "status", cli_status }, { "export", cli_export }, { "report", cli_report },
        { "segment", cli_segment }, { "ef", cli_ef }, { "convert-weights", cli_convert_weights },
    };
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(argv[i], cmds[k].name))
            return cmds[k].fn(&ctx, argc - i, argv + i);
    if (!strcmp(argv[i], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    fprintf(stderr, "echonetctl: unknown command '%s' (see echonetctl help)\n", argv[i]);
    return CLI_USAGE;
}

/*
 * cli.h - what echonetctl's subcommands share: the loaded configuration and
 * the exit codes scripts rely on.
 */
#ifndef EN_CLI_H
#define EN_CLI_H

#include "en_config.h"

/* Exit codes: documented in README and `echonetctl help`. */
enum {
    CLI_OK = 0,
    CLI_FAILED = 1,   /* the input could not be processed (reason on stderr) */
    CLI_USAGE = 2,    /* wrong command line */
    CLI_SETUP = 3     /* configuration, permissions or environment problem */
};

typedef struct cli_ctx {
    en_config cfg;
    const char *config_path;   /* NULL: built-in defaults only */
    const char *prog;
} cli_ctx;

int cli_convert(cli_ctx *ctx, int argc, char **argv);
int cli_process(cli_ctx *ctx, int argc, char **argv);
int cli_list(cli_ctx *ctx, int argc, char **argv);
int cli_show(cli_ctx *ctx, int argc, char **argv);
int cli_export(cli_ctx *ctx, int argc, char **argv);
int cli_report(cli_ctx *ctx, int argc, char **argv);
int cli_status(cli_ctx *ctx, int argc, char **argv);
int cli_merge(cli_ctx *ctx, int argc, char **argv);
int cli_segment(cli_ctx *ctx, int argc, char **argv);
int cli_ef(cli_ctx *ctx, int argc, char **argv);
int cli_convert_weights(cli_ctx *ctx, int argc, char **argv);
int cli_send(cli_ctx *ctx, int argc, char **argv);

struct en_json;
/* cmd_send.c: the outbox lines of `status` (j NULL: text). */
void cli_status_outbox(const en_config *c, struct en_json *j);

#endif

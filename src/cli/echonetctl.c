/*
 * echonetctl.c - the command users run by hand, as subcommands
 * (`echonetctl convert ...`), like git or systemctl.
 *
 * Global options come before the subcommand: -c/--config FILE and
 * --set section.key=value (repeatable) override settings for one run.
 *
 * A person trying echonetctl on a fresh build has no configuration and no
 * writable system state folder (that is made by `make install` and
 * systemd-tmpfiles, for the daemon's user).  Then the site secret, the
 * database and the output live in a per-user state folder instead, created
 * private (0700), and the first run says where the secret was made and why
 * it must be kept.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef EN_SYSCONFDIR
#define EN_SYSCONFDIR "/etc"
#endif

static void usage(FILE *f)
{
    en_config_dirs dirs;

    en_config_system_dirs(&dirs);
    fprintf(f,
        "usage: echonetctl [-c FILE] [--set SECTION.KEY=VALUE]... COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  convert IN.dcm [OUT.avi|DIR] [--json[=FILE]]\n"
        "          deidentify an echo DICOM, locate its ultrasound sector and write the\n"
        "          112x112 AVI that EchoNet-Dynamic's networks take\n"
        "  process [--json] FILE.dcm|FOLDER... [--files LIST [--shard K/N]]\n"
        "          the whole pipeline: convert, segment, beats, beat-by-beat EF, store the\n"
        "          result in the database, draw the report (`process --help`: options)\n"
        "  merge SHARD.db... [--into DB] [--json]\n"
        "          combine the databases of a back-fill's tasks into one (docs/scale.md)\n"
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
        "  send PSEUDONYM\n"
        "          queue the study's result for echonetd-send again (to the PACS)\n"
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
        "Without a configuration, the site secret, database and output are kept in\n"
        "%s when it is writable, else in $XDG_STATE_HOME/echonetd\n"
        "(default ~/.local/state/echonetd).\n"
        "\n"
        "exit codes: 0 success, 1 the input could not be processed, 2 usage error,\n"
        "            3 configuration or environment error\n", dirs.state);
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

/* Creates path and any missing parent with mode (the umask may only take
 * more away); a folder that exists is left as it is. */
static int make_dirs(const char *path, mode_t mode, en_err *err)
{
    char buf[EN_PATH_MAX];
    struct stat st;

    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return en_err_set(err, EN_EINVAL, "folder path too long: %s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "cannot create folder "
                              "%s: %s", buf, strerror(errno));
        *p = c;
        if (!c)
            break;
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return en_err_set(err, EN_EIO, "%s exists and is not a folder", path);
    return EN_OK;
}

/* Which defaults a run without configuration starts from.  The system's
 * state folder is used when it is there and writable (an installed site);
 * otherwise the per-user one, and *why says why, for the note. */
static int pick_dirs(en_config_dirs *dirs, char *user_state, size_t n, const char **why,
                     en_err *err)
{
    const char *reason;

    en_config_system_dirs(dirs);
    *why = NULL;
    if (access(dirs->state, W_OK | X_OK) == 0)
        return EN_OK;
    reason = errno == ENOENT ? "does not exist" : "is not writable";
    if (en_config_user_state_dir(user_state, n, err) != EN_OK)
        return en_err_prefix(err, "%s %s", dirs->state, reason);
    dirs->state = user_state;
    *why = reason;
    return EN_OK;
}

static int under(const char *path, const char *dir)
{
    size_t l = strlen(dir);
    return strncmp(path, dir, l) == 0 && path[l] == '/';
}

/* What a subcommand keeps on disk, so that a run makes only the folders it
 * will use (a test that passes --set deid.secret_file=... must not grow a
 * folder in the HOME of whoever runs it). */
enum { USES_SECRET = 1, USES_DATABASE = 2, WRITES_OUTPUT = 4 };

/* `convert IN OUT` writes OUT; only `convert IN` writes to output_dir. */
static int convert_uses(int argc, char **argv)
{
    int positional = 0;

    for (int i = 1; i < argc; i++)
        positional += argv[i][0] != '-' || !argv[i][1];
    return USES_SECRET | (positional < 2 ? WRITES_OUTPUT : 0);
}

/* The per-user state folder is made (0700, with its parents) when a path
 * this run uses lies in it.  The output folder is made when missing, one
 * level only outside that folder: a mistyped path in a configuration should
 * fail, not grow a tree. */
static int uses_folder(const en_config *c, int uses, const char *dir)
{
    return ((uses & USES_SECRET) && under(c->secret_file, dir)) ||
           ((uses & USES_DATABASE) && under(c->database, dir)) ||
           ((uses & WRITES_OUTPUT) && under(c->output_dir, dir));
}

static int prepare_folders(const cli_ctx *ctx, const char *user_state, int uses, en_err *err)
{
    const en_config *c = &ctx->cfg;
    struct stat st;
    int rc;

    if (user_state && uses_folder(c, uses, user_state) &&
        (rc = make_dirs(user_state, 0700, err)) != EN_OK)
        return en_err_prefix(err, "per-user state folder");
    if (!(uses & WRITES_OUTPUT) || !c->output_dir[0] || stat(c->output_dir, &st) == 0)
        return EN_OK;
    if (user_state && under(c->output_dir, user_state))
        rc = make_dirs(c->output_dir, 0700, err);
    else if (mkdir(c->output_dir, 0700) == 0 || errno == EEXIST)
        rc = EN_OK;
    else
        rc = en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "cannot create folder %s: %s",
                        c->output_dir, strerror(errno));
    return rc == EN_OK ? EN_OK : en_err_prefix(err, "[paths] output_dir");
}

/* Said once, when this run made the secret: losing it silently breaks the
 * link between a study and its re-deliveries. */
static void note_new_secret(const char *secret, const char *system_state, const char *why)
{
    fprintf(stderr, "echonetctl: created the site secret %s", secret);
    if (why)
        fprintf(stderr, " (in your own folder: no configuration, and %s %s)", system_state, why);
    fprintf(stderr, ".\nechonetctl: keep it and back it up: pseudonyms are derived from it; "
            "without it a study delivered again gets a new pseudonym, unlinked from its earlier "
            "results.\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(cli_ctx *, int, char **);
        int uses;
    } cmds[] = {
        { "convert", cli_convert, USES_SECRET | WRITES_OUTPUT },
        { "process", cli_process, USES_SECRET | USES_DATABASE | WRITES_OUTPUT },
        { "report", cli_report, USES_DATABASE | WRITES_OUTPUT },
        { "merge", cli_merge, USES_SECRET | USES_DATABASE },
        { "list", cli_list, USES_DATABASE }, { "show", cli_show, USES_DATABASE },
        { "status", cli_status, USES_DATABASE }, { "export", cli_export, USES_DATABASE },
        { "segment", cli_segment, 0 }, { "ef", cli_ef, 0 },
        { "convert-weights", cli_convert_weights, 0 },
        { "send", cli_send, USES_DATABASE },
    };
    cli_ctx ctx;
    const char *sets[64], *why = NULL;
    char user_state[EN_PATH_MAX];
    en_config_dirs dirs, sys;
    int nsets = 0, i = 1, cmd = -1, uses, no_user_state, had_secret, rc;
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
    if (!strcmp(argv[i], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(argv[i], cmds[k].name))
            cmd = (int)k;
    if (cmd < 0) {
        fprintf(stderr, "echonetctl: unknown command '%s' (see echonetctl help)\n", argv[i]);
        return CLI_USAGE;
    }
    en_config_system_dirs(&sys);
    dirs = sys;
    uses = cmds[cmd].fn == cli_convert ? convert_uses(argc - i, argv + i) : cmds[cmd].uses;
    /* Without a per-user folder the system one stays; that is only an
     * error if this run then really needs it (--set may point elsewhere). */
    no_user_state = !ctx.config_path && uses &&
                    pick_dirs(&dirs, user_state, sizeof user_state, &why, &e) != EN_OK;
    en_config_defaults_in(&ctx.cfg, &dirs);
    if (ctx.config_path && en_config_load(&ctx.cfg, ctx.config_path, &e) != EN_OK) {
        fprintf(stderr, "echonetctl: %s\n", e.msg);
        return CLI_SETUP;
    }
    for (int k = 0; k < nsets; k++) {
        rc = apply_set(&ctx.cfg, sets[k]);
        if (rc != CLI_OK)
            return rc;
    }
    if ((no_user_state && uses_folder(&ctx.cfg, uses, sys.state)) ||
        prepare_folders(&ctx, why ? user_state : NULL, uses, &e) != EN_OK) {
        fprintf(stderr, "echonetctl: %s\n", e.msg);
        return CLI_SETUP;
    }
    had_secret = access(ctx.cfg.secret_file, F_OK) == 0;
    rc = cmds[cmd].fn(&ctx, argc - i, argv + i);
    if ((uses & USES_SECRET) && !had_secret && access(ctx.cfg.secret_file, F_OK) == 0)
        note_new_secret(ctx.cfg.secret_file, sys.state, why);
    return rc;
}

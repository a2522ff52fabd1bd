/*
 * inputs.h - what `echonetctl process` works through when it is given an
 * archive rather than a few files: a list file, one shard of it, folders
 * walked as archives lay them out; and the progress lines a long run
 * prints (files done of all, rate, time left).  docs/scale.md shows them
 * at work in a Slurm job array.
 */
#ifndef EN_CLI_INPUTS_H
#define EN_CLI_INPUTS_H

#include <stddef.h>

#include "en_deid.h"
#include "en_err.h"

typedef struct cli_inputs {
    /* options */
    const char *list;       /* --files LIST: one path per line ("-": stdin) */
    long shard_k, shard_n;  /* --shard K/N: block K (1..N) of N; 0/0 = all */
    int skip_done;          /* --skip-done 1, --reprocess 0, unset -1 */
    int dry_run;            /* --dry-run: print the files, process none */
    int help;               /* --help: print the usage, process none */
    double progress_s;      /* --progress SECONDS between lines (off a terminal) */
    /* the result of cli_inputs_collect */
    char **path;            /* this run's files, in order */
    size_t n;
    size_t listed;          /* files before sharding */
    size_t not_dicom;       /* files met in folders without the DICOM preamble */
    size_t hidden;          /* hidden files and DICOMDIR indexes left aside */
    int walked;             /* 1 when a list or a folder gave inputs */
} cli_inputs;

void cli_inputs_init(cli_inputs *in);
void cli_inputs_free(cli_inputs *in);

/* The input options at argv[*i] (and its value, *i advanced past it):
 * 1 taken, 0 not one of them, -1 a bad value (message printed, naming
 * cmd). */
int cli_inputs_option(cli_inputs *in, const char *cmd, int argc, char **argv, int *i);

/* The usage text of those options, for a command's usage message. */
extern const char cli_inputs_usage[];

/* The run's files: args (files, or folders walked recursively: regular
 * files with the DICOM preamble, sorted by name, hidden ones and DICOMDIR
 * left aside), then the list's lines (blank and '#' lines skipped; a line
 * naming a folder is walked too), then the shard taken.  Messages never
 * name a file (a site may name files after patients). */
int cli_inputs_collect(cli_inputs *in, char **args, int nargs, en_err *err);

/* Collects the inputs (cli_inputs_collect) for cmd and says what was left
 * aside.  Returns -1 to go on; else the exit code to return now: CLI_OK
 * after --dry-run printed the files, CLI_USAGE or CLI_SETUP on errors. */
int cli_inputs_ready(cli_inputs *in, const char *cmd, char **args, int nargs);

/* Records the site fingerprint (en_merge.h) in the database a run writes,
 * so `echonetctl merge` can tell the site it came from; a database of
 * another site is refused (EN_EPERM), before anything is written to it. */
int cli_stamp_site(const char *database, const en_deid *d, en_err *err);

/* 1 when instances already done by the same models should be skipped:
 * as asked, else for a list or folders (a back-fill resumes) but not for
 * files named one by one (asked by hand: processed again). */
int cli_inputs_skip_done(const cli_inputs *in);

/* ---- progress ----------------------------------------------------------------- */

typedef enum cli_outcome {
    CLI_FILE_DONE = 0,      /* processed now */
    CLI_FILE_SKIPPED,       /* already done by the same models */
    CLI_FILE_FAILED
} cli_outcome;

typedef struct cli_progress {
    const char *cmd;
    size_t total, seen, done, skipped, failed;
    double start_ms, work_ms, last_ms, every_ms;
    int tty;
} cli_progress;

/* A line every --progress seconds; without it, every 10 s for a list or
 * folders, none for files named one by one. */
void cli_progress_begin(cli_progress *p, const char *cmd, const cli_inputs *in);

/* One file ended after ms milliseconds; prints a line when one is due (the
 * first file, then every every_s seconds, and the last file). */
void cli_progress_file(cli_progress *p, cli_outcome outcome, double ms);

#endif

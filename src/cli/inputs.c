/*
 * inputs.c - the files of a back-fill (inputs.h): folders walked, a list
 * file read, one shard of it taken, and the progress lines of a long run.
 *
 * The shard rule is contiguous blocks: of M files, shard K of N takes
 * files floor((K-1)M/N) .. floor(KM/N)-1 (as GNU split -n l/K/N counts,
 * from 1).  A list made by walking an archive is sorted, so the instances
 * of one study, which archives keep in one folder, stay together and at
 * most N-1 studies straddle two shards (the merge computes those again).
 * The rule depends only on the list, so a task re-run after a failure
 * takes exactly the files it had.
 *
 * Files met while walking a folder are taken only when they carry the
 * DICOM preamble ("DICM" after 128 bytes): archives hold reports, thumbnails
 * and index files beside the images, and each would otherwise become a
 * failed file.  Files named on the command line or in a list are taken as
 * they are: someone chose them.
 */
#include "inputs.h"

#include "cli.h"
#include "en_merge.h"
#include "en_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char cli_inputs_usage[] =
    "  --files LIST     the files to process, one path per line ('-': stdin)\n"
    "  --shard K/N      only block K of N (1..N) of the files, e.g. $SLURM_ARRAY_TASK_ID/N\n"
    "  --skip-done      skip instances already done by the same models (the default for\n"
    "                   a list or folders, so an interrupted back-fill resumes)\n"
    "  --reprocess      process them again (the default for files named one by one)\n"
    "  --progress S     a progress line every S seconds (default 10 for a list or folders)\n"
    "  --dry-run        print the files that would be processed, one per line, and stop\n"
    "  a FOLDER is walked: its DICOM files (with the 'DICM' preamble), sorted by name\n";

void cli_inputs_init(cli_inputs *in)
{
    memset(in, 0, sizeof *in);
    in->skip_done = -1;
    in->progress_s = -1;
}

void cli_inputs_free(cli_inputs *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->path[i]);
    free(in->path);
    in->path = NULL;
    in->n = 0;
}

static int parse_shard(const char *v, long *k, long *n)
{
    char buf[64];
    char *slash;
    long long kk, nn;

    if (snprintf(buf, sizeof buf, "%s", v) >= (int)sizeof buf || !(slash = strchr(buf, '/')))
        return EN_EINVAL;
    *slash = '\0';
    if (en_parse_ll(slash + 1, 1, 1000000, &nn) != EN_OK ||
        en_parse_ll(buf, 1, nn, &kk) != EN_OK)
        return EN_EINVAL;
    *k = (long)kk;
    *n = (long)nn;
    return EN_OK;
}

int cli_inputs_option(cli_inputs *in, const char *cmd, int argc, char **argv, int *i)
{
    const char *o = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long secs;

    if (!strcmp(o, "--skip-done") || !strcmp(o, "--reprocess")) {
        in->skip_done = !strcmp(o, "--skip-done");
        return 1;
    }
    if (!strcmp(o, "--dry-run") || !strcmp(o, "--help") || !strcmp(o, "-h")) {
        *(o[2] == 'd' ? &in->dry_run : &in->help) = 1;
        return 1;
    }
    if (strcmp(o, "--files") && strcmp(o, "--shard") && strcmp(o, "--progress"))
        return 0;
    if (!v) {
        fprintf(stderr, "echonetctl %s: %s needs a value\n", cmd, o);
        return -1;
    }
    (*i)++;
    if (!strcmp(o, "--files")) {
        in->list = v;
    } else if (!strcmp(o, "--shard")) {
        if (parse_shard(v, &in->shard_k, &in->shard_n) != EN_OK) {
            fprintf(stderr, "echonetctl %s: --shard expects K/N with 1 <= K <= N, got '%s' "
                    "(with Slurm: --shard $SLURM_ARRAY_TASK_ID/N and --array=1-N)\n", cmd, v);
            return -1;
        }
    } else {
        if (en_parse_ll(v, 0, 86400, &secs) != EN_OK) {
            fprintf(stderr, "echonetctl %s: --progress expects seconds (0 = a line per file), "
                    "got '%s'\n", cmd, v);
            return -1;
        }
        in->progress_s = (double)secs;
    }
    return 1;
}

/* ---- collecting ------------------------------------------------------------ */

typedef struct plist {
    char **path;
    size_t n, cap;
} plist;

static int push(plist *l, const char *path, en_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **grown = realloc(l->path, cap * sizeof *grown);
        if (!grown)
            return en_err_set(err, EN_ENOMEM, "out of memory listing the input files");
        l->path = grown;
        l->cap = cap;
    }
    if (!(l->path[l->n] = strdup(path)))
        return en_err_set(err, EN_ENOMEM, "out of memory listing the input files");
    l->n++;
    return EN_OK;
}

/* Part 10 files begin with a 128-byte preamble and "DICM". */
static int has_preamble(const char *path)
{
    unsigned char buf[132];
    ssize_t got = 0, r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return 0;
    while (got < (ssize_t)sizeof buf &&
           ((r = read(fd, buf + got, sizeof buf - (size_t)got)) > 0 || (r < 0 && errno == EINTR)))
        got += r > 0 ? r : 0;
    close(fd);
    return got == (ssize_t)sizeof buf && !memcmp(buf + 128, "DICM", 4);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Depth first, names in byte order, so the same archive always gives the
 * same list.  Folder links are not followed (an archive with a link to a
 * parent would never end); links to files are. */
static int walk(cli_inputs *in, plist *l, const char *dir, int depth, en_err *err)
{
    struct dirent **ents = NULL;
    char path[4096];
    int n, rc = EN_OK;

    if (depth > 64)
        return en_err_set(err, EN_ELIMIT, "folders nested deeper than 64 levels under an "
                          "input folder: is there a loop of bind mounts?");
    n = scandir(dir, &ents, NULL, by_name);
    if (n < 0)
        return en_err_set(err, errno == EACCES ? EN_EPERM : EN_EIO, "cannot read an input "
                          "folder (%d levels down): %s", depth, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        struct stat lst, st;
        if (rc != EN_OK || !strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        if (name[0] == '.' || !strcmp(name, "DICOMDIR")) {
            in->hidden++;   /* transfer leftovers, editors' files, media indexes */
            continue;
        }
        if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
            rc = en_err_set(err, EN_ELIMIT, "a path under an input folder is longer than %zu "
                            "bytes", sizeof path - 1);
            continue;
        }
        if (lstat(path, &lst) != 0 || stat(path, &st) != 0)
            continue;   /* gone meanwhile, or a dangling link */
        if (S_ISDIR(st.st_mode)) {
            if (!S_ISLNK(lst.st_mode))
                rc = walk(in, l, path, depth + 1, err);
        } else if (S_ISREG(st.st_mode)) {
            if (has_preamble(path))
                rc = push(l, path, err);
            else
                in->not_dicom++;
        }
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    return rc;
}

static int add_input(cli_inputs *in, plist *l, const char *path, en_err *err)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        in->walked = 1;
        return walk(in, l, path, 0, err);
    }
    return push(l, path, err);  /* a missing file fails when processed, in its turn */
}

static int read_list(cli_inputs *in, plist *l, en_err *err)
{
    FILE *f = strcmp(in->list, "-") ? fopen(in->list, "r") : stdin;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = EN_OK;

    if (!f)
        return en_err_set(err, errno == EACCES ? EN_EPERM : EN_ENOTFOUND,
                          "cannot read the list of files %s: %s", in->list, strerror(errno));
    in->walked = 1;
    while (rc == EN_OK && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        rc = add_input(in, l, line, err);
    }
    if (rc == EN_OK && ferror(f))
        rc = en_err_set(err, EN_EIO, "cannot read the list of files %s: %s", in->list,
                        strerror(errno));
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

int cli_inputs_collect(cli_inputs *in, char **args, int nargs, en_err *err)
{
    plist l = { 0 };
    size_t from, to, kept = 0;
    int rc = EN_OK;

    for (int i = 0; rc == EN_OK && i < nargs; i++)
        rc = add_input(in, &l, args[i], err);
    if (rc == EN_OK && in->list)
        rc = read_list(in, &l, err);
    in->listed = l.n;
    from = 0;
    to = l.n;
    if (in->shard_n > 0) {
        /* Block K of N; in 128 bits would be exact, and a list of more
         * than 2^32 files is not a worry. */
        from = (size_t)((unsigned long long)(in->shard_k - 1) * l.n / (unsigned long long)in->shard_n);
        to = (size_t)((unsigned long long)in->shard_k * l.n / (unsigned long long)in->shard_n);
    }
    for (size_t i = 0; i < l.n; i++) {
        if (rc == EN_OK && i >= from && i < to) {
            l.path[kept++] = l.path[i];
        } else {
            free(l.path[i]);
        }
    }
    in->path = l.path;
    in->n = kept;
    if (rc != EN_OK) {
        free(l.path);
        in->path = NULL;
    }
    return rc;
}

int cli_inputs_skip_done(const cli_inputs *in)
{
    return in->skip_done >= 0 ? in->skip_done : in->walked;
}

int cli_inputs_ready(cli_inputs *in, const char *cmd, char **args, int nargs)
{
    en_err e;

    if (in->help || (nargs == 0 && !in->list)) {
        fprintf(in->help ? stdout : stderr, "usage: echonetctl %s [--json] [options] "
                "FILE.dcm|FOLDER...\n       echonetctl %s [options] --files LIST [--shard K/N]"
                "\n%s", cmd, cmd, cli_inputs_usage);
        return in->help ? CLI_OK : CLI_USAGE;
    }
    if (cli_inputs_collect(in, args, nargs, &e) != EN_OK) {
        fprintf(stderr, "echonetctl %s: %s\n", cmd, e.msg);
        return e.code == EN_ENOMEM || e.code == EN_ELIMIT ? CLI_FAILED : CLI_SETUP;
    }
    if (in->not_dicom || in->hidden)
        fprintf(stderr, "echonetctl %s: left aside in the folders: %zu file%s without the DICOM "
                "preamble, %zu hidden file%s or DICOMDIR index%s\n", cmd, in->not_dicom,
                in->not_dicom == 1 ? "" : "s", in->hidden, in->hidden == 1 ? "" : "s",
                in->hidden == 1 ? "" : "es");
    if (in->shard_n > 0)
        fprintf(stderr, "echonetctl %s: shard %ld/%ld: %zu of %zu files\n", cmd, in->shard_k,
                in->shard_n, in->n, in->listed);
    if (!in->dry_run)
        return -1;
    for (size_t i = 0; i < in->n; i++)
        printf("%s\n", in->path[i]);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
}

int cli_stamp_site(const char *database, const en_deid *d, en_err *err)
{
    char fp[EN_MERGE_FP_LEN + 1];
    int rc = en_merge_fingerprint(d, fp, err);

    return rc == EN_OK ? en_merge_stamp(database, fp, err) : rc;
}

/* ---- progress ------------------------------------------------------------------- */

void cli_progress_begin(cli_progress *p, const char *cmd, const cli_inputs *in)
{
    double every_s = in->progress_s >= 0 ? in->progress_s : in->walked ? 10 : -1;

    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->total = in->n;
    p->every_ms = every_s * 1000.0;
    p->start_ms = en_mono_ms();
    p->tty = isatty(STDERR_FILENO);
}

static void clock_text(double s, char *buf, size_t len)
{
    long long t = (long long)(s + 0.5);

    snprintf(buf, len, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
}

void cli_progress_file(cli_progress *p, cli_outcome outcome, double ms)
{
    double now = en_mono_ms(), per_file_s, rate;
    char eta[32], elapsed[32];
    size_t left;

    p->seen++;
    if (outcome == CLI_FILE_DONE) {
        p->done++;
        p->work_ms += ms;
    } else if (outcome == CLI_FILE_SKIPPED) {
        p->skipped++;
    } else {
        p->failed++;
        p->work_ms += ms;
    }
    if (p->every_ms < 0 ||
        (p->seen != 1 && p->seen != p->total && now - p->last_ms < p->every_ms))
        return;
    p->last_ms = now;
    left = p->total - p->seen;
    /* Skipped files cost next to nothing: the rate is over the files
     * worked on, and the time left assumes the rest need work. */
    per_file_s = p->done + p->failed ? p->work_ms / 1000.0 / (double)(p->done + p->failed) : 0;
    rate = per_file_s > 0 ? 3600.0 / per_file_s : 0;
    clock_text((now - p->start_ms) / 1000.0, elapsed, sizeof elapsed);
    if (left == 0)
        snprintf(eta, sizeof eta, "finished");
    else if (per_file_s > 0)
        clock_text(per_file_s * (double)left, eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "unknown");
    fprintf(stderr, "%s%s: %zu/%zu files (%zu processed, %zu already done, %zu failed)  "
            "%.0f clips/h  elapsed %s  left %s\n", p->tty ? "\r\033[K" : "", p->cmd, p->seen,
            p->total, p->done, p->skipped, p->failed, rate, elapsed, eta);
    fflush(stderr);
}

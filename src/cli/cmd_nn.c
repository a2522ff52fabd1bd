/*
 * cmd_nn.c - `echonetctl segment` and `echonetctl ef`: the inference engine
 * (en_nn.h) on a 112x112 AVI, for users and for comparing with upstream's
 * outputs.
 *
 *   echonetctl segment VIDEO.avi [--weights SEG.safetensors] [--out size.csv]
 *                      [--logits FILE] [--masks FILE] [--threads N] [--batch N]
 *                      [--precision auto|fp32|bf16]
 *     writes EchoNet's size.csv columns (Filename,Frame,Size,HumanLarge,
 *     HumanSmall,ComputerSmall; the Human columns are 0 - no tracings - and
 *     ComputerSmall is left empty: systole detection is the beats stage's job)
 *     to --out or stdout; --logits writes float32 N x H x W little-endian,
 *     --masks uint8 0/1 N x H x W.
 *   echonetctl ef VIDEO.avi [--weights EF.safetensors] [--start N] [--threads N]
 *                 [--precision auto|fp32|bf16]
 *     prints upstream's clip-prediction row: filename,clip_start,ef
 *   Without --weights both use the configured [models] (by default the
 *   phantom-trained models); without --precision auto|fp32|bf16, the
 *   configured [nn] precision (fp32 is the parity path, for comparisons
 *   with upstream).
 *   echonetctl convert-weights IN.pt OUT.safetensors [options]
 *     runs the installed Python converter (tools/convert-weights) with the
 *     same arguments; $ECHONETD_CONVERT_WEIGHTS overrides its path.
 */
#include "en_util.h"
#include "cli.h"

#include "en_nn.h"
#include "en_video.h"

#include <assert.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EN_PKGLIBEXECDIR
#define EN_PKGLIBEXECDIR "/usr/local/libexec/echonetd"
#endif

int cli_segment(cli_ctx *ctx, int argc, char **argv);
int cli_ef(cli_ctx *ctx, int argc, char **argv);
int cli_convert_weights(cli_ctx *ctx, int argc, char **argv);

typedef struct nn_args {
    const char *video, *weights, *out, *logits, *masks;
    int threads, batch, start;
    en_nn_prec precision;
} nn_args;

static int parse_int_arg(const char *cmd, const char *opt, const char *v, int lo, int *out)
{
    long long n;
    if (en_parse_ll(v, lo, 1 << 20, &n) != EN_OK) {
        fprintf(stderr, "echonetctl %s: %s expects an integer >= %d\n", cmd, opt, lo);
        return CLI_USAGE;
    }
    *out = (int)n;
    return CLI_OK;
}

static int parse(const cli_ctx *ctx, const char *cmd, int argc, char **argv, nn_args *a)
{
    memset(a, 0, sizeof *a);
    a->precision = (en_nn_prec)ctx->cfg.nn_precision;   /* same values (en_nn.h) */
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = CLI_OK;
        assert(o != NULL);   /* argv[i] is never NULL below argc */
        if (!strcmp(o, "--weights") && v) { a->weights = v; i++; }
        else if (!strcmp(o, "--out") && v && !strcmp(cmd, "segment")) { a->out = v; i++; }
        else if (!strcmp(o, "--logits") && v && !strcmp(cmd, "segment")) { a->logits = v; i++; }
        else if (!strcmp(o, "--masks") && v && !strcmp(cmd, "segment")) { a->masks = v; i++; }
        else if (!strcmp(o, "--threads")) { rc = parse_int_arg(cmd, o, v, 0, &a->threads); i++; }
        else if (!strcmp(o, "--precision") && v) {
            static const char *const names[] = { "auto", "fp32", "bf16" };
            static const en_nn_prec values[] = { EN_NN_PREC_AUTO, EN_NN_PREC_FP32,
                                                 EN_NN_PREC_BF16 };
            rc = CLI_USAGE;
            for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
                if (!strcmp(v, names[k])) {
                    a->precision = values[k];
                    rc = CLI_OK;
                }
            if (rc != CLI_OK)
                fprintf(stderr, "echonetctl %s: --precision expects auto, fp32 or bf16, not '%s'\n",
                        cmd, v);
            i++;
        }
        else if (!strcmp(o, "--batch") && !strcmp(cmd, "segment")) {
            rc = parse_int_arg(cmd, o, v, 1, &a->batch); i++;
        } else if (!strcmp(o, "--start") && !strcmp(cmd, "ef")) {
            rc = parse_int_arg(cmd, o, v, 0, &a->start); i++;
        } else if (o[0] == '-' && o[1]) {
            fprintf(stderr, "echonetctl %s: unknown option or missing value '%s'\n", cmd, o);
            return CLI_USAGE;
        } else if (!a->video) {
            a->video = o;
        } else {
            fprintf(stderr, "echonetctl %s: too many arguments\n", cmd);
            return CLI_USAGE;
        }
        if (rc != CLI_OK)
            return rc;
    }
    if (!a->weights)
        a->weights = !strcmp(cmd, "ef") ? ctx->cfg.ef_weights : ctx->cfg.seg_weights;
    if (!a->video || !a->weights[0]) {
        fprintf(stderr, "usage: echonetctl %s VIDEO.avi [--weights FILE]%s\n", cmd,
                !strcmp(cmd, "ef") ? " [--start N] [--threads N] [--precision auto|fp32|bf16]"
                : " [--out size.csv] [--logits FILE] [--masks FILE] [--threads N] [--batch N]\n"
                  "       [--precision auto|fp32|bf16]");
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int load(const char *cmd, const nn_args *a, en_nn_arch want, en_nn_model **m)
{
    en_nn_opts o = { .threads = a->threads, .batch = a->batch, .precision = a->precision };
    en_err e;
    if (en_nn_model_load_opts(a->weights, &o, m, &e) != EN_OK) {
        fprintf(stderr, "echonetctl %s: %s\n", cmd, e.msg);
        return CLI_SETUP;
    }
    if (en_nn_model_info(*m)->arch != want) {
        fprintf(stderr, "echonetctl %s: %s holds %s weights, not the %s network\n", cmd,
                a->weights, en_nn_model_info(*m)->arch_name,
                want == EN_NN_ARCH_R2PLUS1D_18 ? "EF" : "segmentation");
        en_nn_model_free(*m);
        return CLI_SETUP;
    }
    return CLI_OK;
}

static int write_file(const char *cmd, const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "echonetctl %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        return CLI_FAILED;
    }
    return CLI_OK;
}

int cli_segment(cli_ctx *ctx, int argc, char **argv)
{
    nn_args a;
    en_nn_model *m = NULL;
    en_frames fr = { 0, 0, 0, 0, NULL };
    float *logits = NULL;
    int *sizes = NULL, rc;
    size_t plane, n;
    char namebuf[4096];
    en_err e;
    FILE *out = stdout;

    if ((rc = parse(ctx, "segment", argc, argv, &a)) != CLI_OK ||
        (rc = load("segment", &a, EN_NN_ARCH_DEEPLABV3_RESNET50, &m)) != CLI_OK)
        return rc;
    if (en_video_read(a.video, 3, &fr, NULL, &e) != EN_OK) {
        fprintf(stderr, "echonetctl segment: %s\n", e.msg);
        en_nn_model_free(m);
        return CLI_FAILED;
    }
    plane = (size_t)fr.rows * (size_t)fr.cols;
    n = (size_t)fr.nframes * plane;
    logits = malloc(n * sizeof *logits);
    sizes = malloc((size_t)fr.nframes * sizeof *sizes);
    rc = CLI_FAILED;
    if (!logits || !sizes) {
        fprintf(stderr, "echonetctl segment: out of memory for %d frames\n", fr.nframes);
    } else if (en_nn_segment_frames(m, &fr, logits, sizes, &e) != EN_OK) {
        fprintf(stderr, "echonetctl segment: %s: %s\n", a.video, e.msg);
    } else if (a.out && !(out = fopen(a.out, "w"))) {
        fprintf(stderr, "echonetctl segment: cannot write %s: %s\n", a.out, strerror(errno));
    } else {
        snprintf(namebuf, sizeof namebuf, "%s", a.video);
        fprintf(out, "Filename,Frame,Size,HumanLarge,HumanSmall,ComputerSmall\n");
        for (int i = 0; i < fr.nframes; i++)
            fprintf(out, "%s,%d,%d,0,0,\n", basename(namebuf), i, sizes[i]);
        rc = (out != stdout && fclose(out) != 0) ? CLI_FAILED : CLI_OK;
        if (rc == CLI_OK && a.logits)
            rc = write_file("segment", a.logits, logits, n * sizeof *logits);
        if (rc == CLI_OK && a.masks) {
            unsigned char *mk = malloc(n);
            if (!mk) {
                rc = CLI_FAILED;
            } else {
                for (size_t i = 0; i < n; i++)
                    mk[i] = logits[i] > 0.0f;
                rc = write_file("segment", a.masks, mk, n);
                free(mk);
            }
        }
    }
    free(logits);
    free(sizes);
    en_frames_free(&fr);
    en_nn_model_free(m);
    return rc;
}

int cli_ef(cli_ctx *ctx, int argc, char **argv)
{
    nn_args a;
    en_nn_model *m = NULL;
    en_frames fr = { 0, 0, 0, 0, NULL };
    char namebuf[4096];
    float ef;
    int rc;
    en_err e;

    if ((rc = parse(ctx, "ef", argc, argv, &a)) != CLI_OK ||
        (rc = load("ef", &a, EN_NN_ARCH_R2PLUS1D_18, &m)) != CLI_OK)
        return rc;
    rc = CLI_FAILED;
    if (en_video_read(a.video, 3, &fr, NULL, &e) != EN_OK) {
        fprintf(stderr, "echonetctl ef: %s\n", e.msg);
    } else if (en_nn_ef_frames(m, &fr, a.start, &ef, &e) != EN_OK) {
        fprintf(stderr, "echonetctl ef: %s: %s\n", a.video, e.msg);
    } else {
        snprintf(namebuf, sizeof namebuf, "%s", a.video);
        printf("%s,%d,%.4f\n", basename(namebuf), a.start, ef);
        rc = CLI_OK;
    }
    en_frames_free(&fr);
    en_nn_model_free(m);
    return rc;
}

int cli_convert_weights(cli_ctx *ctx, int argc, char **argv)
{
    const char *tool = getenv("ECHONETD_CONVERT_WEIGHTS");
    char **args = calloc((size_t)argc + 2, sizeof *args);

    (void)ctx;
    if (!tool || !*tool)
        tool = EN_PKGLIBEXECDIR "/convert-weights";
#ifdef EN_SRCDIR
    /* Run from a build tree before `make install`: use the source copy. */
    if (access(tool, X_OK) != 0 && !getenv("ECHONETD_CONVERT_WEIGHTS"))
        tool = EN_SRCDIR "/tools/convert-weights";
#endif
    if (!args) {
        fprintf(stderr, "echonetctl convert-weights: out of memory\n");
        return CLI_FAILED;
    }
    /* argv[0] is "convert-weights": the tool gets the rest unchanged */
    args[0] = (char *)tool;
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    fflush(NULL);
    execv(tool, args);
    fprintf(stderr, "echonetctl convert-weights: cannot run %s: %s (is echonetd installed, "
            "and Debian's python3-torch?)\n", tool, strerror(errno));
    free(args);
    return CLI_SETUP;
}

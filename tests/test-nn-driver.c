/*
 * test-nn-driver.c - runs the inference engine for the Python parity tests
 * (not a test by itself): reads normalised float32 inputs from a raw file,
 * writes float32 outputs to another, prints the model's metadata, or reports
 * why a weights file is refused.
 *
 *   test-nn-driver load MODEL
 *   test-nn-driver info MODEL
 *   test-nn-driver seg MODEL IN OUT N H W [THREADS [BATCH]]
 *   test-nn-driver ef MODEL IN OUT NCLIPS T H W [THREADS]
 *   test-nn-driver frames MODEL OUT NFRAMES ROWS COLS CHANNELS START
 *     8-bit frames from synthetic_pixel() through en_nn_segment_frames (OUT:
 *     logits, OUT.sizes: int32 LV sizes) or en_nn_ef_frames (OUT: the EF)
 *   test-nn-driver study SEG EF IN NFRAMES ROWS COLS OUT [START,...]
 *     what the pipeline computes from a video's 8-bit grey frames (IN):
 *     segmentation (OUT: logits), systoles and one EF clip per beat as
 *     en_analysis plans them (OUT.json: sizes, systoles, beats with clip
 *     start and EF, the precision and kernel used), and the EF of clips
 *     starting at the given frames ("clips")
 * The products run in fp32 (the parity path) unless EN_NN_PRECISION says
 * auto or bf16 (the accuracy tests of the fast path).
 * Exit 0 on success, 1 with the engine's message on stderr on failure.
 */
#include "en_analysis.h"
#include "en_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *read_raw(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *p = malloc(n * sizeof *p);
    if (!f || !p || fread(p, sizeof *p, n, f) != n) {
        fprintf(stderr, "test-nn-driver: cannot read %zu floats from %s\n", n, path);
        exit(2);
    }
    fclose(f);
    return p;
}

static void write_raw(const char *path, const float *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof *p, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "test-nn-driver: cannot write %s\n", path);
        exit(2);
    }
}

/* The synthetic 8-bit video the Python side rebuilds (nn_common.py). */
static unsigned char synthetic_pixel(int f, int y, int x, int c)
{
    return (unsigned char)((f * 31 + y * 7 + x * 3 + (x * y) % 13 + c * 50) % 256);
}

static int run_frames(en_nn_model *m, char **argv, en_err *err)
{
    int n = atoi(argv[4]), rows = atoi(argv[5]), cols = atoi(argv[6]);
    int ch = atoi(argv[7]), start = atoi(argv[8]), rc;
    en_frames fr;
    char path[4096];

    if ((rc = en_frames_alloc(&fr, n, rows, cols, ch)) != EN_OK)
        return en_err_set(err, rc, "cannot allocate frames");
    for (int f = 0; f < n; f++)
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++)
                for (int c = 0; c < ch; c++)
                    fr.data[(((size_t)f * rows + y) * cols + x) * ch + c] = synthetic_pixel(f, y, x, c);
    if (en_nn_model_info(m)->arch == EN_NN_ARCH_R2PLUS1D_18) {
        float ef;
        if ((rc = en_nn_ef_frames(m, &fr, start, &ef, err)) == EN_OK)
            write_raw(argv[3], &ef, 1);
    } else {
        size_t nf = (size_t)n * rows * cols;
        float *logits = malloc(nf * sizeof *logits);
        int *sizes = malloc((size_t)n * sizeof *sizes);
        if (!logits || !sizes)
            rc = en_err_set(err, EN_ENOMEM, "out of memory");
        else if ((rc = en_nn_segment_frames(m, &fr, logits, sizes, err)) == EN_OK) {
            write_raw(argv[3], logits, nf);
            snprintf(path, sizeof path, "%s.sizes", argv[3]);
            write_raw(path, (const float *)(const void *)sizes, (size_t)n);
        }
        free(logits);
        free(sizes);
    }
    en_frames_free(&fr);
    return rc;
}

/* study SEG EF IN NFRAMES ROWS COLS OUT [START,...] (see the top of the file) */
static int run_study(const en_nn_opts *o, int argc, char **argv, en_err *err)
{
    const int n = atoi(argv[5]), rows = atoi(argv[6]), cols = atoi(argv[7]);
    en_nn_model *seg = NULL, *ef = NULL;
    en_analysis_params ap;
    en_systoles sys;
    en_beat *beats = NULL;
    en_frames fr = { 0 };
    float *logits = NULL;
    int *sizes = NULL;
    double *dsize = NULL;
    int nb = 0, dropped = 0, rc;
    char path[4096];
    FILE *f;

    if ((rc = en_nn_model_load_opts(argv[2], o, &seg, err)) != EN_OK ||
        (rc = en_nn_model_load_opts(argv[3], o, &ef, err)) != EN_OK ||
        (rc = en_frames_alloc(&fr, n, rows, cols, 1)) != EN_OK)
        goto out;
    {
        FILE *in = fopen(argv[4], "rb");
        size_t want = (size_t)n * rows * cols;
        if (!in || fread(fr.data, 1, want, in) != want) {
            rc = en_err_set(err, EN_EIO, "cannot read %zu bytes of frames from %s", want, argv[4]);
            if (in)
                fclose(in);
            goto out;
        }
        fclose(in);
    }
    logits = malloc((size_t)n * rows * cols * sizeof *logits);
    sizes = malloc((size_t)n * sizeof *sizes);
    dsize = malloc((size_t)n * sizeof *dsize);
    beats = malloc(EN_ANALYSIS_MAX_SYSTOLES * sizeof *beats);
    if (!logits || !sizes || !dsize || !beats) {
        rc = en_err_set(err, EN_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = en_nn_segment_frames(seg, &fr, logits, sizes, err)) != EN_OK)
        goto out;
    for (int i = 0; i < n; i++)
        dsize[i] = sizes[i];
    en_analysis_params_default(&ap);
    if ((rc = en_analysis_systoles(dsize, n, &ap.systole, &sys, err)) != EN_OK ||
        (rc = en_analysis_plan_beats(dsize, n, &sys, &ap.clip, beats, &nb, &dropped, err)) != EN_OK)
        goto out;
    for (int b = 0; b < nb; b++) {
        float v;
        if ((rc = en_nn_ef_frames(ef, &fr, beats[b].clip_start, &v, err)) != EN_OK)
            goto out;
        beats[b].ef = v;
    }
    write_raw(argv[8], logits, (size_t)n * rows * cols);
    snprintf(path, sizeof path, "%s.json", argv[8]);
    if (!(f = fopen(path, "w"))) {
        rc = en_err_set(err, EN_EIO, "cannot write %s", path);
        goto out;
    }
    fprintf(f, "{\"precision\": \"%s\", \"kernel\": \"%s\", \"sizes\": [",
            en_nn_prec_name(en_nn_model_info(seg)->precision), en_nn_model_info(seg)->kernel);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? ", " : "", sizes[i]);
    fprintf(f, "], \"systoles\": [");
    for (int i = 0; i < sys.count; i++)
        fprintf(f, "%s%d", i ? ", " : "", sys.frame[i]);
    fprintf(f, "], \"beats\": [");
    for (int b = 0; b < nb; b++)
        fprintf(f, "%s{\"systole\": %d, \"clip_start\": %d, \"ef\": %.6f}", b ? ", " : "",
                beats[b].systole, beats[b].clip_start, beats[b].ef);
    fprintf(f, "], \"clips\": [");
    if (argc > 9) {
        const char *p = argv[9];
        for (int first = 1; *p; first = 0) {
            char *end;
            long start = strtol(p, &end, 10);
            float v;
            if (end == p || (*end && *end != ',')) {
                rc = en_err_set(err, EN_EINVAL, "bad clip start list '%s'", argv[9]);
                break;
            }
            if ((rc = en_nn_ef_frames(ef, &fr, (int)start, &v, err)) != EN_OK)
                break;
            fprintf(f, "%s{\"start\": %ld, \"ef\": %.6f}", first ? "" : ", ", start, v);
            p = *end ? end + 1 : end;
        }
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0 && rc == EN_OK)
        rc = en_err_set(err, EN_EIO, "cannot write %s", path);
out:
    en_nn_model_free(seg);
    en_nn_model_free(ef);
    en_frames_free(&fr);
    free(logits);
    free(sizes);
    free(dsize);
    free(beats);
    return rc;
}

int main(int argc, char **argv)
{
    en_nn_opts o;
    en_nn_model *m = NULL;
    en_err err;
    int rc;

    memset(&o, 0, sizeof o);
    o.precision = EN_NN_PREC_FP32;
    if (getenv("EN_NN_PRECISION") && en_nn_prec_parse(getenv("EN_NN_PRECISION"),
                                                      &o.precision) != EN_OK) {
        fprintf(stderr, "test-nn-driver: EN_NN_PRECISION must be auto, fp32 or bf16\n");
        return 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: test-nn-driver load|info|seg|ef|frames|study MODEL ...\n");
        return 2;
    }
    if (strcmp(argv[1], "study") == 0) {
        if (argc < 9) {
            fprintf(stderr, "test-nn-driver: study SEG EF IN NFRAMES ROWS COLS OUT\n");
            return 2;
        }
        if ((rc = run_study(&o, argc, argv, &err)) != EN_OK) {
            fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
            return 1;
        }
        return 0;
    }
    if (strcmp(argv[1], "frames") == 0)
        o.batch = 3;   /* a partial last batch on purpose */
    if (strcmp(argv[1], "seg") == 0 && argc > 8)
        o.threads = atoi(argv[8]);
    if (strcmp(argv[1], "seg") == 0 && argc > 9)
        o.batch = atoi(argv[9]);
    if (strcmp(argv[1], "ef") == 0 && argc > 9)
        o.threads = atoi(argv[9]);
    if ((rc = en_nn_model_load_opts(argv[2], &o, &m, &err)) != EN_OK) {
        fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
        return 1;
    }
    if (strcmp(argv[1], "info") == 0) {
        const en_nn_info *i = en_nn_model_info(m);
        printf("arch=%s\nmean=%g,%g,%g\nstd=%g,%g,%g\nclip_frames=%d\nclip_period=%d\n"
               "origin=%s\nsha256=%s\nhash_verified=%d\nthreads=%d\nbatch=%d\nnparams=%zu\n"
               "blas_core=%s\nprecision=%s\nkernel=%s\n",
               i->arch_name, i->mean[0], i->mean[1], i->mean[2], i->std[0], i->std[1],
               i->std[2], i->clip_frames, i->clip_period, i->origin,
               i->sha256 ? i->sha256 : "", i->hash_verified, i->threads, i->batch, i->nparams,
               i->blas_core ? i->blas_core : "", en_nn_prec_name(i->precision), i->kernel);
    } else if (strcmp(argv[1], "seg") == 0 && argc >= 8) {
        size_t n = strtoul(argv[5], NULL, 10);
        int h = atoi(argv[6]), w = atoi(argv[7]);
        float *in = read_raw(argv[3], n * 3 * (size_t)h * w);
        float *out = malloc(n * (size_t)h * w * sizeof *out);
        if ((rc = en_nn_segment(m, in, n, h, w, out, &err)) != EN_OK)
            fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
        else
            write_raw(argv[4], out, n * (size_t)h * w);
        free(in);
        free(out);
    } else if (strcmp(argv[1], "ef") == 0 && argc >= 9) {
        int nclips = atoi(argv[5]), t = atoi(argv[6]), h = atoi(argv[7]), w = atoi(argv[8]);
        size_t per = 3 * (size_t)t * h * w;
        float *in = read_raw(argv[3], (size_t)nclips * per);
        float *out = malloc((size_t)nclips * sizeof *out);
        rc = EN_OK;
        for (int c = 0; c < nclips && rc == EN_OK; c++)
            if ((rc = en_nn_ef(m, in + (size_t)c * per, t, h, w, &out[c], &err)) != EN_OK)
                fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
        if (rc == EN_OK)
            write_raw(argv[4], out, (size_t)nclips);
        free(in);
        free(out);
    } else if (strcmp(argv[1], "frames") == 0 && argc >= 9) {
        if ((rc = run_frames(m, argv, &err)) != EN_OK)
            fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
    } else if (strcmp(argv[1], "load") != 0) {
        fprintf(stderr, "test-nn-driver: bad command line\n");
        rc = -100;
    }
    en_nn_model_free(m);
    return rc == -100 ? 2 : rc != EN_OK ? 1 : 0;
}

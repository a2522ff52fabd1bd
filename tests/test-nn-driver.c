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
 * Exit 0 on success, 1 with the engine's message on stderr on failure.
 */
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

int main(int argc, char **argv)
{
    en_nn_opts o = { 0, 0, 0 };
    en_nn_model *m = NULL;
    en_err err;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: test-nn-driver load|info|seg|ef MODEL ...\n");
        return 2;
    }
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
               "blas_core=%s\n",
               i->arch_name, i->mean[0], i->mean[1], i->mean[2], i->std[0], i->std[1],
               i->std[2], i->clip_frames, i->clip_period, i->origin,
               i->sha256 ? i->sha256 : "", i->hash_verified, i->threads, i->batch, i->nparams,
               i->blas_core ? i->blas_core : "");
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
    } else if (strcmp(argv[1], "load") != 0) {
        fprintf(stderr, "test-nn-driver: bad command line\n");
        rc = -100;
    }
    en_nn_model_free(m);
    return rc == -100 ? 2 : rc != EN_OK ? 1 : 0;
}

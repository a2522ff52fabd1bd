/*
 * nn-bench.c - times the inference engine on synthetic normalised input:
 * segmentation ms/frame (frames batched as in production) and EF ms/clip,
 * and reports the process's peak RSS.  Driven by bench/nn-bench.py, which
 * runs the same work in torchvision and prints the ratios.
 *
 *   nn-bench seg WEIGHTS FRAMES THREADS BATCH REPS
 *   nn-bench ef WEIGHTS CLIPS THREADS REPS
 * EN_NN_PRECISION=auto|fp32|bf16 chooses the products' precision (default
 * auto).  Prints one line of JSON.
 */
#include "en_nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fill(float *p, size_t n)
{
    unsigned s = 7;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 9) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

/* VmHWM, not getrusage: ru_maxrss survives execve and would count the
 * (large) Python process that started us. */
static long peak_rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    en_nn_opts o;
    en_nn_model *m;
    en_err err;
    double t0, load_s, best = 1e30, total = 0;
    int seg, n, reps;
    long rss_loaded;

    if (argc < 6 || (strcmp(argv[1], "seg") && strcmp(argv[1], "ef")) ||
        (!strcmp(argv[1], "seg") && argc < 7)) {
        fprintf(stderr, "usage: nn-bench seg WEIGHTS FRAMES THREADS BATCH REPS\n"
                        "       nn-bench ef WEIGHTS CLIPS THREADS REPS\n");
        return 2;
    }
    memset(&o, 0, sizeof o);
    if (getenv("EN_NN_PRECISION") && en_nn_prec_parse(getenv("EN_NN_PRECISION"),
                                                      &o.precision) != EN_OK) {
        fprintf(stderr, "nn-bench: EN_NN_PRECISION must be auto, fp32 or bf16\n");
        return 2;
    }
    seg = strcmp(argv[1], "seg") == 0;
    n = atoi(argv[3]);
    o.threads = atoi(argv[4]);
    o.batch = seg ? atoi(argv[5]) : 0;
    reps = atoi(argv[seg ? 6 : 5]);
    t0 = now();
    if (en_nn_model_load_opts(argv[2], &o, &m, &err) != EN_OK) {
        fprintf(stderr, "nn-bench: %s\n", err.msg);
        return 1;
    }
    load_s = now() - t0;
    rss_loaded = peak_rss_kb();
    {
        size_t per = seg ? 3 * 112 * 112 : 3 * 32 * 112 * 112;
        float *in = malloc((size_t)n * per * sizeof *in);
        float *out = malloc((size_t)n * 112 * 112 * sizeof *out);
        fill(in, (size_t)n * per);
        for (int r = -1; r < reps; r++) {     /* r = -1: warm-up */
            double t = now(), dt;
            int rc = EN_OK;
            if (seg) {
                rc = en_nn_segment(m, in, (size_t)n, 112, 112, out, &err);
            } else {
                for (int c = 0; c < n && rc == EN_OK; c++)
                    rc = en_nn_ef(m, in + (size_t)c * per, 32, 112, 112, out + c, &err);
            }
            if (rc != EN_OK) {
                fprintf(stderr, "nn-bench: %s\n", err.msg);
                return 1;
            }
            dt = (now() - t) / n;
            if (r >= 0) {
                total += dt;
                if (dt < best)
                    best = dt;
            }
        }
        free(in);
        free(out);
    }
    printf("{\"engine\":\"echonetd\",\"task\":\"%s\",\"threads\":%d,\"batch\":%d,"
           "\"n\":%d,\"reps\":%d,\"ms_best\":%.2f,\"ms_mean\":%.2f,\"load_s\":%.3f,"
           "\"rss_loaded_mb\":%.1f,\"peak_rss_mb\":%.1f,\"blas_core\":\"%s\","
           "\"precision\":\"%s\",\"kernel\":\"%s\"}\n",
           argv[1], en_nn_model_info(m)->threads, en_nn_model_info(m)->batch, n, reps,
           best * 1e3, total / reps * 1e3, load_s, rss_loaded / 1024.0, peak_rss_kb() / 1024.0,
           en_nn_model_info(m)->blas_core, en_nn_prec_name(en_nn_model_info(m)->precision),
           en_nn_model_info(m)->kernel);
    en_nn_model_free(m);
    return 0;
}

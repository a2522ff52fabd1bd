/*
 * nn-bench.c - times the inference engine on synthetic normalised input:
 * segmentation ms/frame (frames batched as in production) and EF ms/clip,
 * and reports the process's peak RSS.  Driven by bench/nn-bench.py, which
 * runs the same work in torchvision and prints the ratios.
 *
 *   nn-bench seg WEIGHTS FRAMES THREADS BATCH REPS
 *   nn-bench ef WEIGHTS CLIPS THREADS REPS
 *   nn-bench fork SEG_WEIGHTS EF_WEIGHTS THREADS
 * fork: loads and prepares both models (en_nn_model_prepare), runs 8 frames
 * and a clip warm, then forks a child that prepares again (as a pre-forked
 * worker does while it waits) and runs the same: how long loading takes,
 * and whether the child's first step costs more than the parent's warm one
 * (child_first_ms against warm_ms).
 * EN_NN_PRECISION=auto|fp32|bf16 chooses the products' precision (default
 * auto).  Prints one line of JSON (cpu_ms_best: the process CPU time of
 * the best pass, per frame or clip).
 */
#include "en_nn.h"
#include "gemm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all threads): on a shared machine it
 * varies far less than the wall time with other jobs' load. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
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

/* 8 frames and one clip of zeros-and-noise through both models: ms */
static double study_step(en_nn_model *seg, en_nn_model *ef, const float *in, float *out,
                         en_err *err)
{
    double t = now();
    if (en_nn_segment(seg, in, 8, 112, 112, out, err) != EN_OK ||
        en_nn_ef(ef, in, 32, 112, 112, out, err) != EN_OK)
        return -1;
    return (now() - t) * 1e3;
}

static int run_fork(char **argv, const en_nn_opts *o)
{
    en_nn_model *seg = NULL, *ef = NULL;
    en_err err;
    double t0 = now(), load, prepare, warm, child_first = -1, child_prep = -1, fork_ms = -1;
    float *in = malloc(3 * 32 * 112 * 112 * sizeof *in), *out = malloc(8 * 112 * 112 * sizeof *out);
    int fd[2], status, rc = 1;
    pid_t pid;

    if (!in || !out)
        goto out;
    fill(in, 3 * 32 * 112 * 112);
    if (en_nn_model_load_opts(argv[2], o, &seg, &err) != EN_OK ||
        en_nn_model_load_opts(argv[3], o, &ef, &err) != EN_OK) {
        fprintf(stderr, "nn-bench: %s\n", err.msg);
        goto out;
    }
    load = now() - t0;
    t0 = now();
    if (en_nn_model_prepare(seg, 112, 112, &err) != EN_OK ||
        en_nn_model_prepare(ef, 112, 112, &err) != EN_OK) {
        fprintf(stderr, "nn-bench: %s\n", err.msg);
        goto out;
    }
    prepare = now() - t0;
    study_step(seg, ef, in, out, &err);
    warm = study_step(seg, ef, in, out, &err);
    if (pipe(fd) != 0)
        goto out;
    t0 = now();
    pid = fork();
    if (pid == 0) {
        /* as a pre-forked worker: prepare while no study waits, then the
         * study's first step */
        double r[3], t;
        r[0] = (now() - t0) * 1e3;      /* fork returned in the child */
        t = now();
        if (en_nn_model_prepare(seg, 112, 112, &err) != EN_OK ||
            en_nn_model_prepare(ef, 112, 112, &err) != EN_OK)
            _exit(1);
        r[1] = (now() - t) * 1e3;
        r[2] = study_step(seg, ef, in, out, &err);
        if (write(fd[1], r, sizeof r) != (ssize_t)sizeof r)
            _exit(1);
        _exit(r[2] < 0 ? 1 : 0);
    }
    if (pid < 0 || read(fd[0], &fork_ms, sizeof fork_ms) != (ssize_t)sizeof fork_ms ||
        read(fd[0], &child_prep, sizeof child_prep) != (ssize_t)sizeof child_prep ||
        read(fd[0], &child_first, sizeof child_first) != (ssize_t)sizeof child_first ||
        waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "nn-bench: the forked child failed\n");
        goto out;
    }
    printf("{\"engine\":\"echonetd\",\"task\":\"fork\",\"threads\":%d,\"precision\":\"%s\","
           "\"kernel\":\"%s\",\"load_s\":%.3f,\"prepare_s\":%.3f,\"warm_ms\":%.1f,"
           "\"fork_ms\":%.2f,\"child_prepare_ms\":%.1f,\"child_first_ms\":%.1f,"
           "\"peak_rss_mb\":%.1f}\n",
           en_nn_model_info(seg)->threads, en_nn_prec_name(en_nn_model_info(seg)->precision),
           en_nn_model_info(seg)->kernel, load, prepare, warm, fork_ms, child_prep, child_first,
           peak_rss_kb() / 1024.0);
    rc = 0;
out:
    en_nn_model_free(seg);
    en_nn_model_free(ef);
    free(in);
    free(out);
    return rc;
}

int main(int argc, char **argv)
{
    en_nn_opts o;
    en_nn_model *m;
    en_err err;
    double t0, load_s, best = 1e30, cpu_best = 1e30, total = 0;
    int seg, n, reps;
    long rss_loaded;

    memset(&o, 0, sizeof o);
    if (getenv("EN_NN_PRECISION") && en_nn_prec_parse(getenv("EN_NN_PRECISION"),
                                                      &o.precision) != EN_OK) {
        fprintf(stderr, "nn-bench: EN_NN_PRECISION must be auto, fp32 or bf16\n");
        return 2;
    }
    if (argc == 5 && strcmp(argv[1], "fork") == 0) {
        o.threads = atoi(argv[4]);
        return run_fork(argv, &o);
    }
    if (argc < 6 || (strcmp(argv[1], "seg") && strcmp(argv[1], "ef")) ||
        (!strcmp(argv[1], "seg") && argc < 7)) {
        fprintf(stderr, "usage: nn-bench seg WEIGHTS FRAMES THREADS BATCH REPS\n"
                        "       nn-bench ef WEIGHTS CLIPS THREADS REPS\n"
                        "       nn-bench fork SEG_WEIGHTS EF_WEIGHTS THREADS\n");
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
            double t = now(), tc = cpu_now(), dt, dc;
            int rc = EN_OK;
            if (seg) {
                rc = en_nn_segment(m, in, (size_t)n, 112, 112, out, &err);
            } else {
                for (int c = 0; c < n && rc == EN_OK; c++)
                    rc = en_nn_ef(m, in + (size_t)c * per, 32, 112, 112, out + c, &err);
            }
            if (rc != EN_OK) {
                fprintf(stderr, "nn-bench: %s\n", err.msg);
                free(in);
                free(out);
                en_nn_model_free(m);
                return 1;
            }
            dt = (now() - t) / n;
            dc = (cpu_now() - tc) / n;
            if (r >= 0) {
                total += dt;
                if (dt < best)
                    best = dt;
                if (dc < cpu_best)
                    cpu_best = dc;
            }
        }
        free(in);
        free(out);
    }
    printf("{\"engine\":\"echonetd\",\"task\":\"%s\",\"threads\":%d,\"batch\":%d,"
           "\"n\":%d,\"reps\":%d,\"ms_best\":%.2f,\"ms_mean\":%.2f,\"cpu_ms_best\":%.2f,\"load_s\":%.3f,"
           "\"rss_loaded_mb\":%.1f,\"peak_rss_mb\":%.1f,\"blas_core\":\"%s\","
           "\"precision\":\"%s\",\"kernel\":\"%s\",\"fp32_products\":\"%s\"}\n",
           argv[1], en_nn_model_info(m)->threads, en_nn_model_info(m)->batch, n, reps,
           best * 1e3, total / reps * 1e3, cpu_best * 1e3, load_s, rss_loaded / 1024.0, peak_rss_kb() / 1024.0,
           en_nn_model_info(m)->blas_core, en_nn_prec_name(en_nn_model_info(m)->precision),
           en_nn_model_info(m)->kernel,
           /* (fp32 convolutions: docs/engine.md) */
           nn_sgemm_packed_usable() ? "own avx512" : "openblas");
    en_nn_model_free(m);
    return 0;
}

/*
 * nn-peak.c - what this machine's matrix units can do, measured, so that
 * docs/performance.md can say which fraction of it the engine reaches:
 *
 *   gemm   large products (M = N = K = SIZE) on THREADS threads, each thread
 *          its own product: OpenBLAS sgemm (fp32), the engine's own fp32
 *          kernel where usable (nn_sgemm_packed, as a 1x1 convolution calls
 *          it: A packed once, B's K slices copied inside the timing), and
 *          its bf16 products (nn_gemm_bf16 on every tier this CPU offers),
 *          the right-hand matrix packed once outside the timing
 *   shape  one product M x K x N through the engine (packing included and
 *          timed separately), for the shapes of the networks' layers
 *
 *   nn-peak gemm SIZE THREADS SECONDS
 *   nn-peak shape M K N THREADS SECONDS
 * Prints one line of JSON per measurement: GFLOP/s (2 M N K per product).
 */
#include "nn_int.h"

#include <cblas.h>
#include <pthread.h>
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

static float *rnd(size_t n, unsigned seed)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, n * sizeof *p) != 0) {
        fprintf(stderr, "nn-peak: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 9) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

typedef struct job {
    nn_kern kern;        /* NN_KERN_FP32: cblas_sgemm, or the own kernel */
    int own;
    int m, k, n;
    double seconds;
    long reps;           /* out */
    double pack_s;       /* out: packing B, per product */
    double t;            /* out */
} job;

static void *run(void *arg)
{
    job *j = arg;
    float *a = rnd((size_t)j->m * j->k, 1), *b = rnd((size_t)j->k * j->n, 2);
    float *c = rnd((size_t)j->m * j->n, 3);
    double t0, end;

    if (j->own) {
        float *ap = NULL, *bwork = NULL;
        if (posix_memalign((void **)&ap, 64, nn_sgemm_pack_size(j->m, j->k) * 4) != 0 ||
            posix_memalign((void **)&bwork, 64, nn_sgemm_bwork_size(j->n) * 4) != 0) {
            fprintf(stderr, "nn-peak: out of memory\n");
            exit(1);
        }
        nn_sgemm_pack(a, j->k, j->m, j->k, ap);
        nn_sgemm_packed(j->m, j->n, j->k, ap, (int64_t)j->k * NN_SGEMM_MR, b, j->n, c, j->n, 0,
                        NULL, bwork);
        t0 = now();
        end = t0 + j->seconds;
        for (j->reps = 0; now() < end; j->reps++)
            nn_sgemm_packed(j->m, j->n, j->k, ap, (int64_t)j->k * NN_SGEMM_MR, b, j->n, c,
                            j->n, 0, NULL, bwork);
        j->t = now() - t0;
        free(ap);
        free(bwork);
    } else if (j->kern == NN_KERN_FP32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->m, j->n, j->k, 1.0f, a, j->k,
                    b, j->n, 0.0f, c, j->n);
        t0 = now();
        end = t0 + j->seconds;
        for (j->reps = 0; now() < end; j->reps++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->m, j->n, j->k, 1.0f, a,
                        j->k, b, j->n, 0.0f, c, j->n);
        j->t = now() - t0;
    } else {
        const int ks = nn_kstep(j->kern), kp = (j->k + ks - 1) / ks * ks;
        int32_t *kmap = malloc((size_t)kp * sizeof *kmap);
        const float **rows = malloc((size_t)kp * sizeof *rows);
        uint16_t *bp = NULL;
        float *work = NULL;
        nn_pack pk;
        nn_bmat bm;
        en_err err;
        nn_gemm_out o = { .c = c, .ldc = j->n };

        for (int i = 0; i < kp; i++) {
            kmap[i] = i < j->k ? i : -1;
            rows[i] = i < j->k ? b + (size_t)i * j->n : NULL;
        }
        if (nn_pack_a(j->kern, a, j->k, j->m, kmap, kp, &pk, &err) != EN_OK ||
            posix_memalign((void **)&bp, 64, nn_bpack_elems(kp, j->n) * 2) != 0 ||
            posix_memalign((void **)&work, 64, nn_gemm_work(&pk, j->n) * 4 + 64) != 0) {
            fprintf(stderr, "nn-peak: %s\n", err.msg);
            exit(1);
        }
        t0 = now();
        for (int r = 0; r < 10; r++)
            nn_bpack(bp, rows, NULL, NULL, kp, j->n);
        j->pack_s = (now() - t0) / 10;
        bm = nn_bmat_packed(bp, kp);
        nn_gemm_bf16(&pk, 0, j->m, &bm, j->n, &o, work, NULL);
        t0 = now();
        end = t0 + j->seconds;
        for (j->reps = 0; now() < end; j->reps++)
            nn_gemm_bf16(&pk, 0, j->m, &bm, j->n, &o, work, NULL);
        j->t = now() - t0;
        nn_pack_free(&pk);
        free(bp);
        free(work);
        free(kmap);
        free(rows);
    }
    free(a);
    free(b);
    free(c);
    return NULL;
}

static void measure(nn_kern kern, int own, int m, int k, int n, int threads, double seconds,
                    const char *what)
{
    job jobs[64];
    pthread_t tid[64];
    double flops = 0, t = 0, pack = 0;

    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){ kern, own, m, k, n, seconds, 0, 0, 0 };
        pthread_create(&tid[i], NULL, run, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        flops += 2.0 * m * (double)k * n * (double)jobs[i].reps;
        if (jobs[i].t > t)
            t = jobs[i].t;
        pack += jobs[i].pack_s / threads;
    }
    printf("{\"what\":\"%s\",\"kernel\":\"%s\",\"m\":%d,\"k\":%d,\"n\":%d,\"threads\":%d,"
           "\"gflops\":%.1f,\"pack_ms\":%.3f,\"pack_gbs\":%.2f,\"blas_core\":\"%s\"}\n",
           what, own ? "own-sgemm" : kern == NN_KERN_FP32 ? "openblas-sgemm" : nn_kern_name(kern),
           m, k, n,
           threads, flops / t * 1e-9, pack * 1e3, pack > 0 ? 4.0 * k * (double)n / pack * 1e-9 : 0,
           openblas_get_corename());
}

int main(int argc, char **argv)
{
    int threads;
    double secs;

    openblas_set_num_threads(1);     /* one product per thread, as the engine */
    if (argc == 5 && strcmp(argv[1], "gemm") == 0) {
        int size = atoi(argv[2]);
        threads = atoi(argv[3]);
        secs = atof(argv[4]);
        if (size < 32 || threads < 1 || threads > 64)
            return 2;
        for (nn_kern k = NN_KERN_FP32; k <= NN_KERN_AMX; k++)
            if (nn_kern_usable(k))
                measure(k, 0, size, size, size, threads, secs, "gemm");
        if (nn_sgemm_packed_usable())
            measure(NN_KERN_FP32, 1, size, size, size, threads, secs, "gemm");
        return 0;
    }
    if (argc == 7 && strcmp(argv[1], "shape") == 0) {
        int m = atoi(argv[2]), k = atoi(argv[3]), n = atoi(argv[4]);
        threads = atoi(argv[5]);
        secs = atof(argv[6]);
        if (m < 1 || k < 1 || n < 1 || threads < 1 || threads > 64)
            return 2;
        for (nn_kern kk = NN_KERN_FP32; kk <= NN_KERN_AMX; kk++)
            if (nn_kern_usable(kk))
                measure(kk, 0, m, k, n, threads, secs, "shape");
        if (nn_sgemm_packed_usable())
            measure(NN_KERN_FP32, 1, m, k, n, threads, secs, "shape");
        return 0;
    }
    fprintf(stderr, "usage: nn-peak gemm SIZE THREADS SECONDS\n"
                    "       nn-peak shape M K N THREADS SECONDS\n");
    return 2;
}

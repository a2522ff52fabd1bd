/*
 * dicom-decode-bench.c - how long en_dicom_read takes per frame with DCMTK's
 * JPEG codec and with libjpeg-turbo (issue 13), in the same run, and whether
 * the two give the same pixels.  Also the test tool that holds the turbo
 * path to DCMTK's output (tests/dicom_jpeg_turbo.py).
 *
 *   dicom-decode-bench [--reps N] [--threads T] FILE...
 *
 * Each file is read N times (default 3) each way, alternating, and the
 * best time of each is kept (the least disturbed by the shared machine).
 * libjpeg-turbo decodes with T threads (en_dicom_limits.threads, default
 * 1; DCMTK's codec always uses one).
 * Prints one line per file:
 *   FILE frames=F dcmtk_ms_frame=X turbo_ms_frame=Y diff_bytes=D max_diff=M
 *        touch_ms_frame=T
 * T is what both include for the output buffer alone: a fresh buffer of
 * the decoded shape from en_frames_alloc, as the reader makes it, touched
 * once per page (the kernel's page faults), so the decoders' own share can
 * be told apart.
 * Exit status: 0 when every file was read both ways with equal sizes, 1
 * otherwise (pixel differences are reported, the caller judges them).
 */
#include "en_dicom.h"
#include "en_err.h"
#include "en_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fresh buffer of like's shape, written once per page, as a decoder does. */
static double touch_ms(const en_frames *like)
{
    double t0 = en_mono_ms();
    en_frames f;
    size_t n;

    if (en_frames_alloc(&f, like->nframes, like->rows, like->cols, like->channels) != EN_OK)
        return 0;
    n = (size_t)f.nframes * en_frames_frame_bytes(&f);
    for (size_t i = 0; i < n; i += 4096)
        ((volatile uint8_t *)f.data)[i] = 1;
    en_frames_free(&f);
    return en_mono_ms() - t0;
}

static int turbo_threads = 1;

/* Reads path once; returns the elapsed ms or a negative EN_* code. */
static double read_once(const char *path, int via_dcmtk, en_frames *out)
{
    en_dicom_limits lim;
    en_dicom_info info;
    en_err err;
    double t0;
    int rc;

    en_dicom_limits_default(&lim);
    lim.jpeg_via_dcmtk = via_dcmtk;
    lim.threads = turbo_threads;
    en_frames_free(out);
    t0 = en_mono_ms();
    rc = en_dicom_read(path, &lim, &info, NULL, out, &err);
    if (rc != EN_OK) {
        fprintf(stderr, "dicom-decode-bench: %s\n", err.msg);
        return rc;
    }
    return en_mono_ms() - t0;
}

static int bench_file(const char *path, int reps)
{
    en_frames a, b;
    double best[2] = { 1e300, 1e300 };
    size_t diff = 0, n;
    int maxd = 0, rc = 0;

    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (int r = 0; r < reps && rc == 0; r++) {
        double ms = read_once(path, 1, &a);
        double mt = ms >= 0 ? read_once(path, 0, &b) : ms;
        if (ms < 0 || mt < 0) {
            rc = 1;
            break;
        }
        best[0] = ms < best[0] ? ms : best[0];
        best[1] = mt < best[1] ? mt : best[1];
    }
    if (rc == 0 && (a.nframes != b.nframes || a.rows != b.rows || a.cols != b.cols ||
                    a.channels != b.channels)) {
        fprintf(stderr, "dicom-decode-bench: %s: the two decodes differ in size\n", path);
        rc = 1;
    }
    if (rc == 0) {
        double touch = 1e300;
        n = (size_t)a.nframes * en_frames_frame_bytes(&a);
        for (int r = 0; r < reps; r++) {
            double t = touch_ms(&a);
            touch = t < touch ? t : touch;
        }
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)a.data[i] - (int)b.data[i]);
            diff += d != 0;
            maxd = d > maxd ? d : maxd;
        }
        printf("%s frames=%d dcmtk_ms_frame=%.3f turbo_ms_frame=%.3f diff_bytes=%zu max_diff=%d "
               "touch_ms_frame=%.3f turbo_threads=%d\n", path, a.nframes, best[0] / a.nframes,
               best[1] / a.nframes, diff, maxd, touch / a.nframes, turbo_threads);
    }
    en_frames_free(&a);
    en_frames_free(&b);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = 3, rc = 0, i = 1;

    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            turbo_threads = atoi(argv[i + 1]);
        else
            reps = 0;
    }
    if (i >= argc || reps < 1 || turbo_threads < 1) {
        fprintf(stderr, "usage: dicom-decode-bench [--reps N] [--threads T] FILE...\n");
        return 2;
    }
    for (; i < argc; i++)
        rc |= bench_file(argv[i], reps);
    return rc;
}

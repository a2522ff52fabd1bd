/*
 * test-video-roundtrip.c - what en_video_write_avi writes, en_video_read
 * reads back: the same number of frames, the same size, the frame rate
 * (also non-integer ones) within 0.01, grey levels within a few steps at
 * quality 2, and black outside the sector still black.  Also RGB clips,
 * sizes other than 112x112, quality ordering, byte-for-byte determinism, and
 * replacing an existing file without leaving temporary files behind.
 * Prints the measured errors and the write time per frame.
 */
#include "en_video.h"
#include "tst.h"
#include "video_synth.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[512];

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Errors of a decoded clip against its source, same shape. */
typedef struct diff {
    double mae;        /* mean absolute error over every sample */
    int max;           /* largest absolute error */
    double black_mean; /* mean decoded value where the source is black */
    int black_max;     /* largest decoded value where the source is black */
    int deep_max;      /* ... and at least 4 pixels away from any non-black */
} diff;

/* 1 when the whole 16x16 JPEG macroblock holding (x, y) is black in the
 * source: there no edge can ring, so the decoded value must stay black.
 * (Blocks that straddle the sector edge ring by up to ~12 levels at
 * quality 2, exactly as in OpenCV-written files.) */
static int is_deep_black(const en_frames *s, int f, int x, int y)
{
    for (int yy = y / 16 * 16; yy < y / 16 * 16 + 16 && yy < s->rows; yy++)
        for (int xx = x / 16 * 16; xx < x / 16 * 16 + 16 && xx < s->cols; xx++) {
            const uint8_t *p = en_frames_frame(s, f) + ((size_t)yy * (size_t)s->cols + (size_t)xx) * (size_t)s->channels;
            for (int c = 0; c < s->channels; c++)
                if (p[c])
                    return 0;
        }
    return 1;
}

static diff compare(const en_frames *s, const en_frames *d)
{
    diff r = { 0, 0, 0, 0, 0 };
    double sum = 0, bsum = 0;
    size_t n = 0, nb = 0;

    for (int f = 0; f < s->nframes; f++)
        for (int y = 0; y < s->rows; y++)
            for (int x = 0; x < s->cols; x++) {
                size_t o = ((size_t)y * (size_t)s->cols + (size_t)x) * (size_t)s->channels;
                const uint8_t *a = en_frames_frame(s, f) + o, *b = en_frames_frame(d, f) + o;
                int black = 1, deep = -1;
                for (int c = 0; c < s->channels; c++) {
                    int e = abs((int)a[c] - (int)b[c]);
                    sum += e;
                    n++;
                    if (e > r.max)
                        r.max = e;
                    black = black && a[c] == 0;
                }
                if (!black)
                    continue;
                for (int c = 0; c < s->channels; c++) {
                    bsum += b[c];
                    nb++;
                    if (b[c] > r.black_max)
                        r.black_max = b[c];
                    if (deep < 0)
                        deep = is_deep_black(s, f, x, y);
                    if (deep && b[c] > r.deep_max)
                        r.deep_max = b[c];
                }
            }
    r.mae = n ? sum / (double)n : 0;
    r.black_mean = nb ? bsum / (double)nb : 0;
    return r;
}

static void test_grey_roundtrip(double fps)
{
    char p[600], name[64];
    en_frames src, back, rgb;
    en_err e;
    double got_fps = -1, t0, t1;

    snprintf(name, sizeof name, "grey-%g.avi", fps);
    path_in(p, sizeof p, name);
    CHECK(en_frames_alloc(&src, 60, 112, 112, 1) == EN_OK);
    vs_fill(&src);
    t0 = now();
    CHECKF(en_video_write_avi(p, &src, fps, 2, &e) == EN_OK, "%s", e.msg);
    t1 = now();
    CHECKF(en_video_read(p, 1, &back, &got_fps, &e) == EN_OK, "%s", e.msg);
    CHECK(back.nframes == 60 && back.rows == 112 && back.cols == 112 && back.channels == 1);
    CHECKF(fabs(got_fps - fps) < 0.01, "wrote %g fps, read %g", fps, got_fps);
    if (back.nframes == 60 && back.rows == 112 && back.cols == 112) {
        diff d = compare(&src, &back);
        printf("grey 112x112 @%g fps q2: mae %.3f max %d black mean %.3f max %d "
               "(deep black max %d); write %.3f ms/frame\n",
               fps, d.mae, d.max, d.black_mean, d.black_max, d.deep_max,
               (t1 - t0) * 1000.0 / 60);
        CHECKF(d.mae < 3.0, "mean abs error %.3f", d.mae);
        CHECKF(d.black_mean < 0.5, "black mean %.3f", d.black_mean);
        CHECKF(d.deep_max <= 2, "deep black max %d", d.deep_max);
    }
    /* Grey written, read as RGB: the three channels equal the grey read. */
    CHECKF(en_video_read(p, 3, &rgb, NULL, &e) == EN_OK, "%s", e.msg);
    if (rgb.nframes == back.nframes && rgb.rows == back.rows && rgb.cols == back.cols) {
        size_t px = (size_t)rgb.nframes * (size_t)rgb.rows * (size_t)rgb.cols, bad = 0;
        for (size_t i = 0; i < px; i++) {
            const uint8_t *q = rgb.data + 3 * i;
            if (q[0] != q[1] || q[1] != q[2] || q[0] != back.data[i])
                bad++;
        }
        CHECKF(bad == 0, "%zu pixels are not grey, or differ from the grey read", bad);
    }
    en_frames_free(&src);
    en_frames_free(&back);
    en_frames_free(&rgb);
}

static void test_rgb_roundtrip(void)
{
    char p[600];
    en_frames src, back;
    en_err e;
    double fps = 0;

    path_in(p, sizeof p, "rgb.avi");
    CHECK(en_frames_alloc(&src, 20, 112, 112, 3) == EN_OK);
    vs_fill(&src);
    CHECKF(en_video_write_avi(p, &src, 30.0, 2, &e) == EN_OK, "%s", e.msg);
    CHECKF(en_video_read(p, 3, &back, &fps, &e) == EN_OK, "%s", e.msg);
    CHECK(back.nframes == 20 && back.rows == 112 && back.cols == 112 && back.channels == 3);
    CHECK(fabs(fps - 30.0) < 0.01);
    if (back.nframes == 20 && back.rows == 112 && back.cols == 112) {
        diff d = compare(&src, &back);
        printf("rgb 112x112 q2: mae %.3f max %d black mean %.3f (deep black max %d)\n",
               d.mae, d.max, d.black_mean, d.deep_max);
        /* Colour edges cost a little more than grey ones. */
        CHECKF(d.mae < 3.0, "mean abs error %.3f", d.mae);
        CHECKF(d.black_mean < 1.0, "black mean %.3f", d.black_mean);
        CHECKF(d.deep_max <= 2, "deep black max %d", d.deep_max);
    }
    en_frames_free(&back);
    /* RGB read as grey: the BT.601 luma of the source. */
    CHECKF(en_video_read(p, 1, &back, NULL, &e) == EN_OK, "%s", e.msg);
    if (back.nframes == 20 && back.rows == 112 && back.cols == 112 && back.channels == 1) {
        size_t px = (size_t)20 * 112 * 112;
        double sum = 0;
        for (size_t i = 0; i < px; i++) {
            const uint8_t *q = src.data + 3 * i;
            double y = 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];
            sum += fabs(y - back.data[i]);
        }
        printf("rgb 112x112 q2 read as grey: mae %.3f against BT.601 luma\n", sum / (double)px);
        CHECKF(sum / (double)px < 3.0, "grey of RGB: mean abs error %.3f", sum / (double)px);
    }
    en_frames_free(&src);
    en_frames_free(&back);
}

/* Any size, odd ones included, and a single frame. */
static void test_sizes(void)
{
    static const int sz[][3] = { { 1, 1, 1 }, { 2, 2, 3 }, { 9, 17, 1 }, { 77, 113, 3 },
                                 { 480, 640, 1 }, { 112, 112, 1 } };
    char p[600];
    en_err e;

    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        en_frames src, back;
        int rows = sz[i][0], cols = sz[i][1], ch = sz[i][2];
        int n = i == sizeof sz / sizeof sz[0] - 1 ? 1 : 5;
        snprintf(p, sizeof p, "%s/size-%dx%d.avi", dir, cols, rows);
        CHECK(en_frames_alloc(&src, n, rows, cols, ch) == EN_OK);
        vs_fill(&src);
        CHECKF(en_video_write_avi(p, &src, 25.0, 2, &e) == EN_OK, "%dx%d: %s", cols, rows, e.msg);
        CHECKF(en_video_read(p, ch, &back, NULL, &e) == EN_OK, "%dx%d: %s", cols, rows, e.msg);
        CHECKF(back.nframes == n && back.rows == rows && back.cols == cols,
               "%dx%dx%d read as %dx%dx%d", cols, rows, n, back.cols, back.rows, back.nframes);
        if (back.nframes == n && back.rows == rows && back.cols == cols && rows * cols >= 64) {
            diff d = compare(&src, &back);
            CHECKF(d.mae < 4.0, "%dx%d: mean abs error %.3f", cols, rows, d.mae);
        }
        en_frames_free(&src);
        en_frames_free(&back);
    }
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Better quality (lower qscale): smaller error, larger file. */
static void test_quality_order(void)
{
    static const int q[] = { 1, 2, 5, 10, 31 };
    double prev_mae = -1;
    long prev_size = -1;
    en_frames src, back;
    en_err e;
    char p[600];

    CHECK(en_frames_alloc(&src, 10, 112, 112, 1) == EN_OK);
    vs_fill(&src);
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        snprintf(p, sizeof p, "%s/q%d.avi", dir, q[i]);
        CHECKF(en_video_write_avi(p, &src, 50.0, q[i], &e) == EN_OK, "%s", e.msg);
        CHECKF(en_video_read(p, 1, &back, NULL, &e) == EN_OK, "%s", e.msg);
        if (back.nframes != src.nframes) {
            en_frames_free(&back);
            continue;
        }
        diff d = compare(&src, &back);
        long size = file_size(p);
        printf("quality %2d: mae %.3f max %d black max %d, %ld bytes (%.0f per frame)\n",
               q[i], d.mae, d.max, d.black_max, size, (double)size / src.nframes);
        CHECKF(d.mae > prev_mae, "quality %d: mae %.3f not above %.3f", q[i], d.mae, prev_mae);
        CHECKF(prev_size < 0 || size < prev_size, "quality %d: %ld bytes", q[i], size);
        prev_mae = d.mae;
        prev_size = size;
        en_frames_free(&back);
    }
    en_frames_free(&src);
}

static int read_file(const char *p, unsigned char **buf, long *n)
{
    FILE *f = fopen(p, "rb");
    *buf = NULL;
    *n = file_size(p);
    if (!f || *n <= 0 || !(*buf = malloc((size_t)*n)) || fread(*buf, 1, (size_t)*n, f) != (size_t)*n) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

/* Same frames, same bytes; no libav version string in the file. */
static void test_deterministic(void)
{
    char a[600], b[600];
    unsigned char *ba = NULL, *bb = NULL;
    long na = 0, nb = 0;
    en_frames src;
    en_err e;

    path_in(a, sizeof a, "det-a.avi");
    path_in(b, sizeof b, "det-b.avi");
    CHECK(en_frames_alloc(&src, 8, 112, 112, 1) == EN_OK);
    vs_fill(&src);
    CHECK(en_video_write_avi(a, &src, 29.97, 2, &e) == EN_OK);
    CHECK(en_video_write_avi(b, &src, 29.97, 2, &e) == EN_OK);
    CHECK(read_file(a, &ba, &na) == 0 && read_file(b, &bb, &nb) == 0);
    CHECK(na == nb && ba && bb && memcmp(ba, bb, (size_t)na) == 0);
    CHECK(ba && !memmem(ba, (size_t)na, "Lavf", 4) && !memmem(ba, (size_t)na, "Lavc", 4));
    free(ba);
    free(bb);
    en_frames_free(&src);
}

/* Writing over an existing video replaces it; nothing else stays behind. */
static void test_replace_and_no_temp(void)
{
    char p[600];
    en_frames a, b, back;
    en_err e;
    DIR *d;
    struct dirent *de;
    int temps = 0;

    path_in(p, sizeof p, "replace.avi");
    CHECK(en_frames_alloc(&a, 3, 112, 112, 1) == EN_OK);
    CHECK(en_frames_alloc(&b, 7, 112, 112, 1) == EN_OK);
    vs_fill(&a);
    vs_fill(&b);
    CHECK(en_video_write_avi(p, &a, 25, 2, &e) == EN_OK);
    CHECK(en_video_write_avi(p, &b, 25, 2, &e) == EN_OK);
    CHECK(en_video_read(p, 1, &back, NULL, &e) == EN_OK);
    CHECK(back.nframes == 7);
    d = opendir(dir);
    CHECK(d != NULL);
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".tmp."))
            temps++;
    if (d)
        closedir(d);
    CHECKF(temps == 0, "%d temporary files left in %s", temps, dir);
    en_frames_free(&a);
    en_frames_free(&b);
    en_frames_free(&back);
}

/* A colon in the name must not be taken for a libav protocol. */
static void test_colon_in_name(void)
{
    char p[600];
    en_frames src, back;
    en_err e;

    path_in(p, sizeof p, "http:odd name.avi");
    CHECK(en_frames_alloc(&src, 2, 112, 112, 1) == EN_OK);
    vs_fill(&src);
    CHECKF(en_video_write_avi(p, &src, 25, 2, &e) == EN_OK, "%s", e.msg);
    CHECKF(en_video_read(p, 1, &back, NULL, &e) == EN_OK, "%s", e.msg);
    CHECK(back.nframes == 2);
    en_frames_free(&src);
    en_frames_free(&back);
}

int main(void)
{
    static const double rates[] = { 29.97, 50.0, 30.0, 25.0, 50.5, 59.94, 7.5 };

    tst_scratch_dir(dir, sizeof dir, "video-roundtrip");
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        test_grey_roundtrip(rates[i]);
    test_rgb_roundtrip();
    test_sizes();
    test_quality_order();
    test_deterministic();
    test_replace_and_no_temp();
    test_colon_in_name();
    if (!tst_failures)
        tst_scratch_remove(dir);
    TST_DONE();
}

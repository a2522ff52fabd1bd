/*
 * test-video-errors.c - the video module fails cleanly: bad arguments give
 * EN_EINVAL; a folder that is missing or not a folder, a final name that
 * cannot be replaced and a write that runs out of room each give an error
 * naming the path and leave no temporary file behind; reading something
 * that is not a video (or is missing, empty, truncated or corrupt) gives an
 * error naming the file, never a crash; and the reader's limits on frames,
 * picture size and bytes hold.
 */
#include "en_video.h"
#include "tst.h"
#include "video_int.h"
#include "video_synth.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/log.h>

static char dir[512];
static en_frames clip;   /* 10 frames of 112x112 grey */

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* Number of names in folder d containing ".tmp." */
static int count_temps(const char *d)
{
    DIR *h = opendir(d);
    struct dirent *de;
    int n = 0;

    while (h && (de = readdir(h)))
        if (strstr(de->d_name, ".tmp."))
            n++;
    if (h)
        closedir(h);
    return n;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void write_bytes(const char *p, const void *buf, size_t n)
{
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(buf, 1, n, f) == n);
        fclose(f);
    }
}

/* ---- arguments ----------------------------------------------------------- */

static void test_bad_arguments(void)
{
    char p[600];
    en_frames empty = { 0, 0, 0, 0, NULL }, two = clip;
    en_err e;

    path_in(p, sizeof p, "args.avi");
    CHECK(en_video_write_avi(p, &clip, 0.0, 2, &e) == EN_EINVAL);
    CHECK(strstr(e.msg, p) != NULL);
    CHECK(en_video_write_avi(p, &clip, -25.0, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &clip, NAN, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &clip, INFINITY, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &clip, 1e9, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &clip, 25.0, 0, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &clip, 25.0, 32, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, &empty, 25.0, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(p, NULL, 25.0, 2, &e) == EN_EINVAL);
    two.channels = 2;
    CHECK(en_video_write_avi(p, &two, 25.0, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi(NULL, &clip, 25.0, 2, &e) == EN_EINVAL);
    CHECK(en_video_write_avi("", &clip, 25.0, 2, &e) == EN_EINVAL);
    {
        en_frames wide;
        CHECK(en_frames_alloc(&wide, 1, 2, 70000, 1) == EN_OK);
        CHECK(en_video_write_avi(p, &wide, 25.0, 2, &e) == EN_EINVAL);
        CHECK(strstr(e.msg, p) != NULL && strstr(e.msg, "65500") != NULL);
        en_frames_free(&wide);
    }
    /* err may be NULL */
    CHECK(en_video_write_avi(p, &clip, 0.0, 2, NULL) == EN_EINVAL);
    CHECK(!exists(p));
    CHECK(count_temps(dir) == 0);
}

/* ---- writing where it cannot be done ------------------------------------ */

static void test_missing_folder(void)
{
    char p[600], d[600];
    en_err e;

    path_in(d, sizeof d, "no-such-folder");
    snprintf(p, sizeof p, "%.500s/clip.avi", d);
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) == EN_ENOTFOUND);
    CHECKF(strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
    CHECK(!exists(d));
}

/* A regular file where the folder should be. */
static void test_folder_is_a_file(void)
{
    char p[600], f[600];
    en_err e;

    path_in(f, sizeof f, "plain-file");
    write_bytes(f, "x", 1);
    snprintf(p, sizeof p, "%.500s/clip.avi", f);
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) < 0);
    CHECKF(strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
}

/* A folder that refuses new files.  Root ignores file modes, so as root we
 * use /sys, where even root may not create files. */
static void test_unwritable_folder(void)
{
    char p[600], d[600];
    struct stat st;
    en_err e;

    if (geteuid() == 0) {
        if (stat("/sys", &st) != 0 || !S_ISDIR(st.st_mode)) {
            printf("unwritable folder: skipped, root without /sys\n");
            return;
        }
        snprintf(d, sizeof d, "/sys");
    } else {
        path_in(d, sizeof d, "read-only");
        CHECK(mkdir(d, 0555) == 0);
    }
    snprintf(p, sizeof p, "%.500s/echonetd-video-test.avi", d);
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) == EN_EPERM);
    CHECKF(strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
    printf("unwritable folder: %s\n", e.msg);
    CHECK(count_temps(d) == 0);
    if (geteuid() != 0)
        rmdir(d);
}

/* The whole video is written, then the rename fails because the final name
 * is a folder: the error names the path, the temporary file is gone and the
 * folder is untouched. */
static void test_rename_fails(void)
{
    char p[600], inner[700];
    en_err e;

    path_in(p, sizeof p, "is-a-folder.avi");
    CHECK(mkdir(p, 0777) == 0);
    snprintf(inner, sizeof inner, "%s/keep", p);
    write_bytes(inner, "k", 1);
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) < 0);
    CHECKF(strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
    CHECK(count_temps(dir) == 0);
    CHECK(exists(inner));
    unlink(inner);
    rmdir(p);
}

/* The disk "fills" mid-write (a file size limit makes write() fail with
 * EFBIG): an error naming the path and libav's reason, no temporary file,
 * and an existing video of that name left as it was. */
static void test_write_fails_midway(void)
{
    char p[600];
    struct rlimit old, small;
    en_frames big, back;
    en_err e;
    int rc;

    path_in(p, sizeof p, "full.avi");
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) == EN_OK);
    CHECK(en_frames_alloc(&big, 200, 112, 112, 1) == EN_OK);
    vs_fill(&big);
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    small = old;
    small.rlim_cur = 100000;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    rc = en_video_write_avi(p, &big, 25.0, 1, &e);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_DFL);
    CHECKF(rc == EN_EIO, "got %s: %s", en_err_name(rc), e.msg);
    CHECKF(strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
    CHECKF(strstr(e.msg, "large") != NULL, "message lacks the cause: %s", e.msg);
    printf("mid-write failure: %s\n", e.msg);
    CHECK(count_temps(dir) == 0);
    CHECK(en_video_read(p, 1, &back, NULL, &e) == EN_OK);
    CHECK(back.nframes == clip.nframes);
    en_frames_free(&back);
    en_frames_free(&big);
    unlink(p);
}

/* ---- reading what is not a video ---------------------------------------- */

/* Reading p must fail with an error naming it and leave frames empty. */
static void expect_read_fails(const char *p, const char *what)
{
    en_frames f;
    en_err e;
    int rc = en_video_read(p, 1, &f, NULL, &e);

    CHECKF(rc < 0, "%s: read succeeded", what);
    if (rc < 0) {
        CHECKF(strstr(e.msg, p) != NULL, "%s: message does not name the file: %s", what, e.msg);
        printf("%s: %s: %s\n", what, en_err_name(rc), e.msg);
    }
    CHECK(f.data == NULL && f.nframes == 0);
    en_frames_free(&f);
}

static void test_read_not_a_video(void)
{
    char p[600];
    unsigned char noise[4096];
    unsigned s = 12345;
    en_frames f;
    en_err e;

    path_in(p, sizeof p, "notes.txt");
    write_bytes(p, "This is not a video.\nJust some text.\n", 37);
    expect_read_fails(p, "text file");

    path_in(p, sizeof p, "noise.bin");
    for (size_t i = 0; i < sizeof noise; i++) {
        s = s * 1103515245u + 12345u;
        noise[i] = (unsigned char)(s >> 16);
    }
    write_bytes(p, noise, sizeof noise);
    expect_read_fails(p, "random bytes");

    path_in(p, sizeof p, "empty.avi");
    write_bytes(p, "", 0);
    expect_read_fails(p, "empty file");

    path_in(p, sizeof p, "missing.avi");
    CHECK(en_video_read(p, 1, &f, NULL, &e) == EN_ENOTFOUND);
    CHECK(strstr(e.msg, p) != NULL);

    expect_read_fails(dir, "a folder");

    path_in(p, sizeof p, "any.avi");
    CHECK(en_video_read(p, 2, &f, NULL, &e) == EN_EINVAL);
    CHECK(en_video_read(NULL, 1, &f, NULL, &e) == EN_EINVAL);
}

/* Returns the bytes of a freshly written copy of the clip. */
static unsigned char *clip_bytes(const char *p, long *n)
{
    FILE *f;
    unsigned char *buf = NULL;
    en_err e;
    struct stat st;

    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) == EN_OK);
    if (stat(p, &st) != 0 || !(f = fopen(p, "rb")))
        return NULL;
    *n = (long)st.st_size;
    buf = malloc((size_t)*n);
    if (buf && fread(buf, 1, (size_t)*n, f) != (size_t)*n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Truncated and bit-flipped AVIs: an error naming the file (or, for a flip
 * that lands somewhere harmless, a clip of the right length), never a crash
 * or a leak (the sanitizer build is what watches for those). */
static void test_read_damaged(void)
{
    char p[600], q[600];
    long n = 0;
    unsigned char *buf;
    unsigned s = 777;
    en_frames f;
    en_err e;

    path_in(p, sizeof p, "whole.avi");
    path_in(q, sizeof q, "damaged.avi");
    int fails = 0, oks = 0;

    buf = clip_bytes(p, &n);
    CHECK(buf != NULL);
    if (!buf)
        return;
    /* libav reports each damaged packet on stderr; we check our messages. */
    av_log_set_level(AV_LOG_QUIET);
    for (long cut = 16; cut < n; cut += n / 7) {
        write_bytes(q, buf, (size_t)cut);
        int rc = en_video_read(q, 1, &f, NULL, &e);
        CHECKF(rc < 0 && strstr(e.msg, q) != NULL, "cut at %ld of %ld: %s", cut, n,
               rc == EN_OK ? "read as complete" : e.msg);
        en_frames_free(&f);
    }
    /* Cut exactly before the sixth frame's chunk: nothing is damaged, but
     * the header lists ten frames. */
    {
        int seen = 0;
        long at = -1;
        for (long i = 0; i + 4 <= n && at < 0; i++)
            /* the first "00dc" is the OpenDML index entry in the header */
            if (memcmp(buf + i, "00dc", 4) == 0 && ++seen == 7)
                at = i;
        CHECK(at > 0);
        if (at > 0) {
            write_bytes(q, buf, (size_t)at);
            int rc = en_video_read(q, 1, &f, NULL, &e);
            CHECKF(rc == EN_EFORMAT && strstr(e.msg, q) && strstr(e.msg, "only 5 of the 10"),
                   "cut before frame 6: %s", rc == EN_OK ? "read as complete" : e.msg);
            en_frames_free(&f);
        }
    }
    for (int trial = 0; trial < 40; trial++) {
        unsigned char *bad = malloc((size_t)n);
        CHECK(bad != NULL);
        if (!bad)
            break;
        memcpy(bad, buf, (size_t)n);
        for (int k = 0; k < 8; k++) {
            s = s * 1103515245u + 12345u;
            bad[(s >> 8) % (unsigned long)n] ^= (unsigned char)(1u << (s % 8));
        }
        write_bytes(q, bad, (size_t)n);
        int rc = en_video_read(q, trial % 2 ? 3 : 1, &f, NULL, &e);
        CHECKF(rc == EN_OK ? f.nframes == clip.nframes : strstr(e.msg, q) != NULL,
               "trial %d: %s", trial, rc == EN_OK ? "wrong frame count" : e.msg);
        if (rc == EN_OK)
            oks++;
        else
            fails++;
        en_frames_free(&f);
        free(bad);
    }
    av_log_set_level(AV_LOG_INFO);
    printf("bit flips: %d files refused, %d read (flips in padding or index)\n", fails, oks);
    free(buf);
    unlink(p);
    unlink(q);
}

/* ---- limits ---------------------------------------------------------------- */

static void test_limits(void)
{
    char p[600];
    vid_limits lim = { VID_MAX_FRAMES, VID_MAX_SIDE, VID_MAX_BYTES };
    en_frames f;
    en_err e;
    double fps = 0;

    path_in(p, sizeof p, "limits.avi");
    CHECK(en_video_write_avi(p, &clip, 25.0, 2, &e) == EN_OK);

    CHECK(vid_read(p, 1, &lim, &f, &fps, &e) == EN_OK);
    CHECK(f.nframes == clip.nframes);
    en_frames_free(&f);

    lim.max_frames = clip.nframes;
    CHECK(vid_read(p, 1, &lim, &f, NULL, &e) == EN_OK);
    en_frames_free(&f);
    lim.max_frames = clip.nframes - 1;
    CHECK(vid_read(p, 1, &lim, &f, NULL, &e) == EN_ELIMIT);
    CHECK(strstr(e.msg, p) != NULL && f.data == NULL);
    lim.max_frames = VID_MAX_FRAMES;

    lim.max_side = 111;
    CHECK(vid_read(p, 1, &lim, &f, NULL, &e) == EN_ELIMIT);
    CHECK(strstr(e.msg, p) != NULL && f.data == NULL);
    lim.max_side = VID_MAX_SIDE;

    /* Grey fits in 10 frames' worth; RGB is three times that. */
    lim.max_bytes = (size_t)clip.nframes * 112 * 112;
    CHECK(vid_read(p, 1, &lim, &f, NULL, &e) == EN_OK);
    en_frames_free(&f);
    CHECK(vid_read(p, 3, &lim, &f, NULL, &e) == EN_ELIMIT);
    CHECK(strstr(e.msg, p) != NULL && f.data == NULL);
    unlink(p);
}

int main(void)
{
    tst_scratch_dir(dir, sizeof dir, "video-errors");
    if (en_frames_alloc(&clip, 10, 112, 112, 1) != EN_OK)
        return 99;
    vs_fill(&clip);
    test_bad_arguments();
    test_missing_folder();
    test_folder_is_a_file();
    test_unwritable_folder();
    test_rename_fails();
    test_write_fails_midway();
    test_read_not_a_video();
    test_read_damaged();
    test_limits();
    en_frames_free(&clip);
    if (!tst_failures)
        tst_scratch_remove(dir);
    TST_DONE();
}

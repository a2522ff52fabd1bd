/*
 * test-report-overlay.c - the segmentation-overlay video, read back through
 * the video module: as many frames as given, 112x112, three channels, the
 * frame rate kept; the outline colour exactly where each frame's mask
 * boundary is (the mask changes size from frame to frame, so an outline
 * from the wrong frame or a shifted one fails), and grey, close to the
 * source, away from it.  MJPEG is lossy, so the 8x8 blocks the outline
 * crosses (ringing) are judged only on the outline itself, and the rest
 * with tolerances.
 */
#include "en_report.h"
#include "en_video.h"
#include "report_int.h"
#include "tst.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S EN_REPORT_SIDE
#define N 12

static uint8_t grey[N][S * S], mask[N][S * S];

static void make_clip(void)
{
    for (int f = 0; f < N; f++) {
        double rx = 14 + f, ry = 28 - f;
        for (int y = 0; y < S; y++) {
            for (int x = 0; x < S; x++) {
                double ex = (x - 55.5) / rx, ey = (y - 60.5) / ry;
                grey[f][y * S + x] = (uint8_t)(60 + x + y / 2);
                mask[f][y * S + x] = ex * ex + ey * ey <= 1;
            }
        }
    }
}

/* 1 when the 8x8 JPEG block holding (x, y) has no outline pixel: the
 * colour's ringing stays inside the blocks that hold the outline (MJPEG
 * codes each 8x8 block alone, and the writer does not subsample chroma). */
static int far_from_outline(const uint8_t *m, int x, int y)
{
    int bx = x / 8 * 8, by = y / 8 * 8;

    for (int yy = by; yy < by + 8 && yy < S; yy++)
        for (int xx = bx; xx < bx + 8 && xx < S; xx++)
            if (rep_mask_edges(m, S, xx, yy))
                return 0;
    return 1;
}

static void check_frame(const en_frames *v, int f)
{
    const uint8_t *px = en_frames_frame(v, f);
    double on_r = 0, on_g = 0, on_b = 0, far_err = 0, far_chroma = 0;
    int on = 0, on_red = 0, far = 0, far_bad = 0;

    for (int y = 0; y < S; y++) {
        for (int x = 0; x < S; x++) {
            const uint8_t *p = px + 3 * (y * S + x);
            if (rep_mask_edges(mask[f], S, x, y)) {
                on++;
                on_r += p[0], on_g += p[1], on_b += p[2];
                on_red += p[0] > p[1] + 100 && p[0] > p[2] + 100;
            } else if (far_from_outline(mask[f], x, y)) {
                int g = grey[f][y * S + x];
                double chroma = abs(p[0] - p[1]) + abs(p[1] - p[2]);
                far++;
                far_err += abs(p[1] - g);
                far_chroma += chroma;
                far_bad += chroma > 12;
            }
        }
    }
    CHECKF(on > 50, "frame %d: %d outline pixels", f, on);
    CHECKF(on_r / on > 200 && on_g / on < 90 && on_b / on < 90,
           "frame %d: outline mean RGB %.0f %.0f %.0f", f, on_r / on, on_g / on, on_b / on);
    CHECKF(on_red >= on * 9 / 10, "frame %d: %d of %d outline pixels red", f, on_red, on);
    CHECKF(far_err / far < 4, "frame %d: grey differs by %.1f on average", f, far_err / far);
    CHECKF(far_chroma / far < 3 && far_bad == 0, "frame %d: colour away from the outline "
           "(mean %.1f, %d pixels)", f, far_chroma / far, far_bad);
}

static void test_video(const char *dir)
{
    char path[512];
    en_frames v = {0};
    en_err err = {0};
    double fps = 0;

    snprintf(path, sizeof path, "%s/overlay.avi", dir);
    CHECKF(en_report_overlay_video(&grey[0][0], &mask[0][0], N, 25.0, path, &err) == EN_OK,
           "%s", err.msg);
    CHECKF(en_video_read(path, 3, &v, &fps, &err) == EN_OK, "%s", err.msg);
    CHECK(v.nframes == N && v.rows == S && v.cols == S && v.channels == 3);
    CHECKF(fabs(fps - 25.0) < 0.01, "fps %g", fps);
    for (int f = 0; f < v.nframes && f < N; f++)
        check_frame(&v, f);
    en_frames_free(&v);
    unlink(path);
}

static void test_errors(const char *dir)
{
    char path[512];
    en_err err = {0};

    snprintf(path, sizeof path, "%s/bad.avi", dir);
    CHECK(en_report_overlay_video(&grey[0][0], &mask[0][0], 0, 25, path, &err) == EN_EINVAL);
    CHECK(en_report_overlay_video(&grey[0][0], NULL, N, 25, path, &err) == EN_EINVAL);
    CHECK(en_report_overlay_video(&grey[0][0], &mask[0][0], N, 0, path, &err) == EN_EINVAL);
    CHECK(en_report_overlay_video(&grey[0][0], &mask[0][0], N, NAN, path, &err) == EN_EINVAL);
    CHECK(en_report_overlay_video(&grey[0][0], &mask[0][0], N, 25, NULL, &err) == EN_EINVAL);
    snprintf(path, sizeof path, "%s/missing/bad.avi", dir);
    CHECK(en_report_overlay_video(&grey[0][0], &mask[0][0], N, 25, path, &err) < 0);
    CHECKF(strstr(err.msg, path) != NULL, "%s", err.msg);
}

int main(void)
{
    char dir[256];

    snprintf(dir, sizeof dir, "%s/en-report-overlay-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 99;
    }
    make_clip();
    test_video(dir);
    test_errors(dir);
    rmdir(dir);
    TST_DONE();
}

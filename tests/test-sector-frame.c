/*
 * test-sector-frame.c - en_sector_frame: the network's 112x112 view.
 *
 * Checks what the rest of the pipeline relies on:
 *   - nothing outside the fan survives: no non-zero output pixel outside
 *     the output-space fan, and burned-in text outside the source fan
 *     leaves no trace (the output is identical with and without it);
 *   - the framing matches the training videos: apex at (61, 7), and a
 *     45-degree fan reaching both sides of the image by row ~70;
 *   - pixels land where the similarity transform says (a bright dot);
 *   - RGB becomes BT.601 luma; bad geometry and sizes are refused.
 */
#include "en_sector.h"
#include "tst.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 2463534242u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static en_sector fan45(double ax, double ay, double r)
{
    en_sector s;
    memset(&s, 0, sizeof s);
    s.apex_x = ax;
    s.apex_y = ay;
    s.angle_left = -M_PI / 4;
    s.angle_right = M_PI / 4;
    s.radius = r;
    return s;
}

/* Frames with the fan at `inside` (random when < 0) and bright text-like
 * noise everywhere else when `junk`. */
static void paint(en_frames *f, const en_sector *s, int inside, int junk)
{
    uint8_t *m = malloc((size_t)f->rows * f->cols);
    en_sector_mask(s, f->rows, f->cols, m);
    for (int i = 0; i < f->nframes; i++) {
        uint8_t *p = en_frames_frame(f, i);
        for (size_t k = 0; k < (size_t)f->rows * f->cols; k++)
            for (int c = 0; c < f->channels; c++) {
                uint8_t v = m[k] ? (inside < 0 ? (uint8_t)(20 + rnd() % 200) : (uint8_t)inside)
                                 : (junk ? (uint8_t)(rnd() % 3 ? 0 : 255) : 0);
                p[k * f->channels + c] = v;
            }
    }
    free(m);
}

/* No non-zero pixel outside the view's mask, in any frame. */
static long outside_nonzero(const en_frames *out, const en_sector *view)
{
    uint8_t *m = malloc((size_t)out->rows * out->cols);
    long bad = 0;
    en_sector_mask(view, out->rows, out->cols, m);
    for (int i = 0; i < out->nframes; i++) {
        const uint8_t *p = en_frames_frame(out, i);
        for (size_t k = 0; k < (size_t)out->rows * out->cols; k++)
            bad += !m[k] && p[k];
    }
    free(m);
    return bad;
}

static void test_nothing_outside(void)
{
    static const int dims[][2] = { { 434, 636 }, { 600, 800 }, { 708, 1016 }, { 120, 90 } };
    for (int k = 0; k < 4; k++) {
        int rows = dims[k][0], cols = dims[k][1];
        en_sector s = fan45(cols * 0.5 + k, k == 1 ? -40 : 20, rows * 0.85);
        en_frames f, clean, out, out2;
        en_sector view;
        en_err err = { 0, "" };
        int rc;

        if (k == 2) {              /* asymmetric, curved top */
            s.angle_left = -0.62;
            s.angle_right = 0.70;
            s.radius_inner = 60;
        }
        en_frames_alloc(&f, 3, rows, cols, k == 3 ? 3 : 1);
        en_frames_alloc(&clean, 3, rows, cols, k == 3 ? 3 : 1);
        paint(&f, &s, -1, 1);
        /* Same fan pixels, no junk around them. */
        memcpy(clean.data, f.data, (size_t)f.nframes * en_frames_frame_bytes(&f));
        {
            uint8_t *m = malloc((size_t)rows * cols);
            en_sector_mask(&s, rows, cols, m);
            for (int i = 0; i < 3; i++)
                for (size_t p = 0; p < (size_t)rows * cols; p++)
                    if (!m[p])
                        memset(en_frames_frame(&clean, i) + p * clean.channels, 0,
                               (size_t)clean.channels);
            free(m);
        }
        rc = en_sector_frame(&f, &s, 112, &out, &err);
        CHECKF(rc == 0, "%s", err.msg);
        rc = en_sector_frame(&clean, &s, 112, &out2, &err);
        CHECKF(rc == 0, "%s", err.msg);
        CHECK(en_sector_view(&s, 112, &view, &err) == 0);
        if (out.data && out2.data) {
            CHECK(out.nframes == 3 && out.rows == 112 && out.cols == 112 && out.channels == 1);
            CHECKF(outside_nonzero(&out, &view) == 0, "%dx%d: pixels outside the fan", cols, rows);
            CHECKF(memcmp(out.data, out2.data, (size_t)3 * 112 * 112) == 0,
                   "%dx%d: text outside the fan changed the output", cols, rows);
        }
        en_frames_free(&out);
        en_frames_free(&out2);
        en_frames_free(&f);
        en_frames_free(&clean);
    }
}

/* Left and right ends of the non-zero run of row y. */
static int row_extent(const uint8_t *img, int size, int y, int *l, int *r)
{
    *l = *r = -1;
    for (int x = 0; x < size; x++)
        if (img[y * size + x]) {
            if (*l < 0)
                *l = x;
            *r = x;
        }
    return *l >= 0;
}

/* Fits x = a + b y to one side's ends over rows y0..y1. */
static void side_line(const uint8_t *img, int size, int y0, int y1, int side, double *a, double *b)
{
    double sy = 0, sx = 0, syy = 0, sxy = 0;
    int n = 0;
    for (int y = y0; y <= y1; y++) {
        int l, r;
        if (!row_extent(img, size, y, &l, &r))
            continue;
        /* The run's outer pixel centre is up to a pixel inside the edge. */
        double x = side < 0 ? l - 0.5 : r + 0.5;
        sy += y; sx += x; syy += (double)y * y; sxy += y * x; n++;
    }
    *b = (n * sxy - sy * sx) / (n * syy - sy * sy);
    *a = (sx - *b * sy) / n;
}

static void test_framing(void)
{
    static const double radii[] = { 300, 520, 161.3, 90 };
    for (int k = 0; k < 4; k++) {
        int rows = 708, cols = 1016;
        en_sector s = fan45(500.3 + 7 * k, k == 1 ? -53.6 : 31.2, radii[k]), view;
        en_frames f, out;
        en_err err = { 0, "" };
        double la, lb, ra, rb, ay, ax;
        int l, r;

        en_frames_alloc(&f, 1, rows, cols, 1);
        paint(&f, &s, 200, 0);
        if (en_sector_frame(&f, &s, 112, &out, &err) != 0) {
            CHECKF(0, "%s", err.msg);
            en_frames_free(&f);
            continue;
        }
        en_sector_view(&s, 112, &view, &err);
        CHECKF(fabs(view.apex_x - EN_ECHONET_APEX_X) <= 1.5 &&
               fabs(view.apex_y - EN_ECHONET_APEX_Y) <= 1.5 &&
               fabs(view.radius - EN_ECHONET_RADIUS) <= 2.0,
               "view apex %.2f,%.2f radius %.2f", view.apex_x, view.apex_y, view.radius);
        /* From the pixels: edges' intersection is the apex. */
        side_line(out.data, 112, 15, 45, -1, &la, &lb);
        side_line(out.data, 112, 15, 45, +1, &ra, &rb);
        ay = (la - ra) / (rb - lb);
        ax = la + lb * ay;
        CHECKF(fabs(ax - 61) <= 1.5 && fabs(ay - 7) <= 1.5, "radius %.1f: apex at %.2f,%.2f",
               radii[k], ax, ay);
        CHECKF(fabs(lb + 1) < 0.08 && fabs(rb - 1) < 0.08, "edge slopes %.3f %.3f", lb, rb);
        /* The fan spans the width from about row 68 (left) down. */
        CHECK(row_extent(out.data, 112, 72, &l, &r) && l == 0 && r == 111);
        CHECK(row_extent(out.data, 112, 60, &l, &r) && l > 0 && r == 111);
        /* Inside, the uniform fan stays uniform (no darkening of the edge
         * from the zeros beyond it, a pixel in). */
        CHECKF(out.data[50 * 112 + 61] >= 195 && out.data[50 * 112 + 61] <= 205, "centre %d",
               out.data[50 * 112 + 61]);
        /* Below the arc (radius 107 from the apex) it is black. */
        CHECK(out.data[111 * 112 + 61] == 0 || 111 - 7 <= 107);
        en_frames_free(&out);
        en_frames_free(&f);
    }
}

/* A dot in the source lands where the transform maps it. */
static void test_dot(void)
{
    int rows = 600, cols = 800;
    en_sector s = fan45(400, 30, 500), view;
    en_frames f, out;
    en_err err = { 0, "" };
    double sx = 0, sy = 0, w = 0, k;
    int dx = 430, dy = 300;

    en_frames_alloc(&f, 1, rows, cols, 1);
    for (int y = dy - 3; y <= dy + 3; y++)
        for (int x = dx - 3; x <= dx + 3; x++)
            f.data[y * cols + x] = 250;
    if (en_sector_frame(&f, &s, 112, &out, &err) != 0) {
        CHECKF(0, "%s", err.msg);
        en_frames_free(&f);
        return;
    }
    en_sector_view(&s, 112, &view, &err);
    k = view.radius / s.radius;
    for (int y = 0; y < 112; y++)
        for (int x = 0; x < 112; x++) {
            double v = out.data[y * 112 + x];
            sx += v * x; sy += v * y; w += v;
        }
    CHECK(w > 0);
    if (w > 0) {
        double ex = view.apex_x + (dx - s.apex_x) * k, ey = view.apex_y + (dy - s.apex_y) * k;
        CHECKF(fabs(sx / w - ex) < 0.6 && fabs(sy / w - ey) < 0.6,
               "dot at %.2f,%.2f, expected %.2f,%.2f", sx / w, sy / w, ex, ey);
    }
    en_frames_free(&out);
    en_frames_free(&f);
}

static void test_rgb_and_sizes(void)
{
    int rows = 300, cols = 400;
    en_sector s = fan45(200, 10, 280), view;
    en_frames f, out;
    en_err err = { 0, "" };

    en_frames_alloc(&f, 2, rows, cols, 3);
    for (size_t p = 0; p < (size_t)2 * rows * cols; p++) {
        f.data[3 * p] = 200;
        f.data[3 * p + 1] = 100;
        f.data[3 * p + 2] = 50;
    }
    CHECK(en_sector_frame(&f, &s, 112, &out, &err) == 0);
    if (out.data) {
        int want = (int)lround(0.299 * 200 + 0.587 * 100 + 0.114 * 50);
        CHECKF(abs(out.data[60 * 112 + 61] - want) <= 1, "luma %d, want %d",
               out.data[60 * 112 + 61], want);
        CHECK(out.nframes == 2);
    }
    en_frames_free(&out);
    /* Other sizes scale the apex and radius proportionally. */
    CHECK(en_sector_frame(&f, &s, 224, &out, &err) == 0);
    CHECK(en_sector_view(&s, 224, &view, &err) == 0);
    CHECKF(fabs(view.apex_x - 122.5) <= 1.5 && fabs(view.apex_y - 14.5) <= 1.5 &&
           fabs(view.radius - 214) <= 3, "224: apex %.2f,%.2f r %.2f", view.apex_x,
           view.apex_y, view.radius);
    CHECK(out.rows == 224 && out.cols == 224);
    en_frames_free(&out);
    /* Refusals. */
    {
        en_sector bad = s;
        bad.radius = 0;
        CHECK(en_sector_frame(&f, &bad, 112, &out, &err) == EN_EINVAL && out.data == NULL);
        bad = s;
        bad.angle_left = 1.0;   /* left of right */
        CHECK(en_sector_frame(&f, &bad, 112, &out, &err) == EN_EINVAL);
        bad = s;
        bad.apex_x = NAN;
        CHECK(en_sector_frame(&f, &bad, 112, &out, &err) == EN_EINVAL);
        bad = s;
        bad.radius = 1e9;
        CHECK(en_sector_frame(&f, &bad, 112, &out, &err) == EN_EINVAL);
        CHECK(en_sector_frame(&f, &s, 0, &out, &err) == EN_EINVAL);
        CHECK(en_sector_frame(NULL, &s, 112, &out, &err) == EN_EINVAL);
    }
    en_frames_free(&f);
    {
        /* A tiny fan in a tiny image still frames (upscaling), safely. */
        en_sector t = fan45(2, 0, 3);
        en_frames g;
        en_frames_alloc(&g, 1, 1, 1, 1);
        g.data[0] = 90;
        CHECK(en_sector_frame(&g, &t, 112, &out, &err) == 0);
        en_frames_free(&out);
        en_frames_free(&g);
    }
}

int main(void)
{
    test_nothing_outside();
    test_framing();
    test_dot();
    test_rgb_and_sizes();
    TST_DONE();
}

/*
 * test-sector-synth.c - en_sector_locate on synthetic echo loops.
 *
 * Fans are drawn here, in the test, from a known geometry: speckle that
 * changes from frame to frame over a tissue pattern with a dark cavity,
 * around it the furniture of real files (burned-in text, a solid bright
 * label, a sweeping 1-px ECG trace, a static header band).  The located
 * fan must cover the true one with IoU >= 0.95; the truth mask is drawn
 * with atan2 here, independently of the module's own rasteriser.
 *
 * Also: the regions path (a plausible region is used and checked; an
 * implausible one falls back to motion and says so), the single-frame
 * path, EN_ENOTFOUND on blank and text-only images, and inputs too small
 * or too strange to hold a fan.
 */
#include "en_sector.h"
#include "tst.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small deterministic RNG ---------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static double rndu(void) { return (rnd() & 0xffffff) / 16777216.0; }
static double rnd_in(double a, double b) { return a + (b - a) * rndu(); }

/* ---- truth ------------------------------------------------------------ */

typedef struct fan {
    double ax, ay, tl, tr, rin, r;   /* apex, edge angles (rad), radii */
    double top;                      /* flat cut: rows above are outside */
} fan;

static int truth_inside(const fan *t, double x, double y)
{
    double dx = x - t->ax, dy = y - t->ay, d = hypot(dx, dy), phi = atan2(dx, dy);
    return d <= t->r && d >= t->rin && phi >= t->tl && phi <= t->tr && y >= t->top;
}

static void truth_mask(const fan *t, int rows, int cols, uint8_t *m)
{
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
            m[(size_t)y * cols + x] = (uint8_t)truth_inside(t, x, y);
}

static double iou_masks(const uint8_t *a, const uint8_t *b, size_t n)
{
    long both = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        both += a[i] && b[i];
        any += a[i] || b[i];
    }
    return any ? (double)both / any : 0;
}

/* IoU of a located sector with the truth mask. */
static double iou_with(const en_sector *s, const uint8_t *truth, int rows, int cols)
{
    uint8_t *m = malloc((size_t)rows * cols);
    double v;
    en_sector_mask(s, rows, cols, m);
    v = iou_masks(m, truth, (size_t)rows * cols);
    free(m);
    return v;
}

/* Non-zero output pixels outside the view's fan, over all frames. */
static long outside_fan(const en_frames *out, const en_sector *view)
{
    uint8_t *m = malloc((size_t)out->rows * out->cols);
    long bad = 0;
    en_sector_mask(view, out->rows, out->cols, m);
    for (int i = 0; i < out->nframes; i++)
        for (size_t k = 0; k < (size_t)out->rows * out->cols; k++)
            bad += !m[k] && en_frames_frame(out, i)[k];
    free(m);
    return bad;
}

/* ---- drawing a loop --------------------------------------------------- */

typedef struct scene {
    int rows, cols, nframes, channels;
    fan t;
    int header;      /* header band height (0: none) */
    int text;        /* burned-in text blocks */
    int label;       /* solid bright label */
    int ecg;         /* sweeping 1-px ECG trace */
    int colour;      /* colour Doppler box in the fan (RGB only) */
    int frozen;      /* every frame the same */
    double motion;   /* share of the speckle that changes per frame */
    int shadow;      /* dark, near-static wedge along the left edge */
    int markers;     /* depth ticks and numbers hugging the right edge */
    int bgnoise;     /* faint noise everywhere, new each frame (lossy codec) */
    int strip;       /* scrolling spectral Doppler strip below the fan */
} scene;

static void put(en_frames *f, int i, int x, int y, int r, int g, int b)
{
    uint8_t *p;
    if (x < 0 || y < 0 || x >= f->cols || y >= f->rows)
        return;
    p = en_frames_frame(f, i) + ((size_t)y * f->cols + x) * f->channels;
    p[0] = (uint8_t)r;
    if (f->channels == 3) {
        p[1] = (uint8_t)g;
        p[2] = (uint8_t)b;
    }
}

/* Tissue brightness before speckle: bands, a dark cavity, attenuation,
 * and optionally a shadow (rib, poor contact) along the left edge. */
static double tissue(const fan *t, int shadow, double x, double y)
{
    double d = hypot(x - t->ax, y - t->ay) / t->r;

    if (shadow && d > 0.4 && atan2(x - t->ax, y - t->ay) < t->tl + 0.25 * (t->tr - t->tl))
        return 1.5;
    double cx = t->ax, cy = t->ay + 0.55 * t->r;
    double ex = (x - cx) / (0.16 * t->r), ey = (y - cy) / (0.26 * t->r);
    double v = 55 + 35 * sin(x / 17.0) * cos(y / 23.0);

    if (ex * ex + ey * ey < 1)
        v = 7;                       /* blood pool */
    return v * (1.0 - 0.45 * d);
}

static void draw_fan(en_frames *f, const scene *sc, const uint8_t *truth, const float *stat)
{
    for (int i = 0; i < f->nframes; i++)
        for (int y = 0; y < f->rows; y++)
            for (int x = 0; x < f->cols; x++) {
                size_t p = (size_t)y * f->cols + x;
                double sp, v;
                if (!truth[p])
                    continue;
                sp = sc->frozen ? stat[p]
                                : (1 - sc->motion) * stat[p] - sc->motion * log(1e-6 + rndu());
                v = tissue(&sc->t, sc->shadow, x, y) * sp;
                v = v > 255 ? 255 : v;
                put(f, i, x, y, (int)v, (int)v, (int)v);
            }
}

/* A block of glyph-like strokes (static: the same in every frame). */
static void draw_text(en_frames *f, const uint8_t *truth, int bx, int by, int nch)
{
    for (int c = 0; c < nch; c++) {
        int gx = bx + c * 8;
        for (int s = 0; s < 4; s++) {
            int horiz = rnd() & 1, w = 1 + (int)(rnd() % 2);
            int sx = gx + (int)(rnd() % 5), sy = by + (int)(rnd() % 9);
            int len = 3 + (int)(rnd() % 5);
            for (int k = 0; k < len; k++)
                for (int j = 0; j < w; j++) {
                    int x = horiz ? sx + k : sx + j, y = horiz ? sy + j : sy + k;
                    if (x < 0 || y < 0 || x >= f->cols || y >= f->rows ||
                        truth[(size_t)y * f->cols + x])
                        continue;
                    for (int i = 0; i < f->nframes; i++)
                        put(f, i, x, y, 230, 230, 230);
                }
        }
    }
}

/* Is the w x h box at (x, y) clear of the fan by a margin? */
static int clear_of_fan(const uint8_t *truth, int rows, int cols, int x, int y, int w, int h)
{
    for (int yy = y - 4; yy < y + h + 4; yy++)
        for (int xx = x - 4; xx < x + w + 4; xx++) {
            if (xx < 0 || yy < 0 || xx >= cols || yy >= rows)
                return 0;
            if (truth[(size_t)yy * cols + xx])
                return 0;
        }
    return 1;
}

static void draw_furniture(en_frames *f, const scene *sc, const uint8_t *truth)
{
    int rows = f->rows, cols = f->cols;
    /* Text and a label in whichever corners are free. */
    int spots[4][2] = { { 6, sc->header + 6 }, { cols - 80, sc->header + 6 },
                        { 6, rows - 40 }, { cols - 80, rows - 40 } };

    for (int k = 0; k < 4 && sc->text; k++)
        if (clear_of_fan(truth, rows, cols, spots[k][0], spots[k][1], 72, 10))
            draw_text(f, truth, spots[k][0], spots[k][1], 9);
    if (sc->label)
        for (int k = 0; k < 4; k++) {
            int lx = spots[k][0], ly = spots[k][1] + 14;
            if (!clear_of_fan(truth, rows, cols, lx, ly, 30, 14))
                continue;
            for (int y = ly; y < ly + 14; y++)
                for (int x = lx; x < lx + 30; x++)
                    for (int i = 0; i < f->nframes; i++)
                        put(f, i, x, y, 250, 250, 250);
            break;
        }
    if (sc->header)
        for (int y = 0; y < sc->header; y++)
            for (int x = 0; x < cols; x++)
                for (int i = 0; i < f->nframes; i++)
                    put(f, i, x, y, 70, 70, 90);
    if (sc->ecg) {
        int base = rows - 12;
        for (int i = 0; i < f->nframes; i++) {
            int sweep = (int)((double)(i + 1) / f->nframes * cols);
            for (int x = 0; x < sweep; x++) {
                double ph = fmod(x / 90.0, 1.0);
                int y = base - (int)(3 * sin(x / 11.0)) - (ph > 0.45 && ph < 0.5 ? 9 : 0);
                if (!truth[(size_t)y * cols + x])
                    put(f, i, x, y, 40, 240, 40);
            }
        }
    }
}

/* Depth ticks and their numbers just outside the right edge. */
static void draw_markers(en_frames *f, const scene *sc, const uint8_t *truth)
{
    double ux = sin(sc->t.tr), uy = cos(sc->t.tr);   /* along the edge */
    for (int k = 1; k < 10; k++) {
        double d = sc->t.r * k / 10.0;
        int x = (int)(sc->t.ax + d * ux + 3 * uy), y = (int)(sc->t.ay + d * uy - 3 * ux);
        for (int yy = y - 1; yy <= y + 1; yy++)
            for (int xx = x - 1; xx <= x + 1; xx++)
                if (xx >= 0 && yy >= 0 && xx < f->cols && yy < f->rows &&
                    !truth[(size_t)yy * f->cols + xx])
                    for (int i = 0; i < f->nframes; i++)
                        put(f, i, xx, yy, 255, 255, 255);
        draw_text(f, truth, x + 5, y - 4, 2);
    }
}

/* Faint noise outside the fan, new in every frame. */
static void draw_bgnoise(en_frames *f, const uint8_t *truth)
{
    for (int i = 0; i < f->nframes; i++)
        for (size_t p = 0; p < (size_t)f->rows * f->cols; p++) {
            uint8_t *px = en_frames_frame(f, i) + p * f->channels;
            int v = px[0] + (int)(rnd() % 4);
            if (truth[p])
                continue;
            for (int c = 0; c < f->channels; c++)
                px[c] = (uint8_t)(v > 255 ? 255 : v);
        }
}

/* A spectral Doppler strip scrolling 4 px a frame, below the fan. */
static void draw_strip(en_frames *f, const uint8_t *truth)
{
    int y0 = f->rows * 70 / 100, y1 = f->rows - 20, x0 = f->cols / 10, x1 = f->cols * 9 / 10;
    int mid = (y0 + y1) / 2;
    for (int i = 0; i < f->nframes; i++)
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                int u = x + 4 * i;
                double amp = (y1 - y0) * 0.4 * fabs(sin(u / 37.0));
                unsigned hash = (unsigned)u * 7919u + (unsigned)y * 104729u;
                int v = abs(y - mid) < amp ? 60 + (int)(hash % 150) : 0;
                if (!truth[(size_t)y * f->cols + x])
                    put(f, i, x, y, v, v, v);
            }
}

/* Colour flow: a box in the fan whose pixels flicker red and blue. */
static void draw_colour(en_frames *f, const scene *sc, const uint8_t *truth)
{
    int cx = (int)sc->t.ax, cy = (int)(sc->t.ay + 0.4 * sc->t.r);
    for (int i = 0; i < f->nframes; i++)
        for (int y = cy; y < cy + 40; y++)
            for (int x = cx - 30; x < cx + 30; x++) {
                if (x < 0 || y < 0 || x >= f->cols || y >= f->rows ||
                    !truth[(size_t)y * f->cols + x] || rnd() % 3 == 0)
                    continue;
                if (rnd() & 1)
                    put(f, i, x, y, 200 + (int)(rnd() % 50), 30, 20);
                else
                    put(f, i, x, y, 20, 40, 180 + (int)(rnd() % 70));
            }
}

/* Draws the scene; truth receives the true fan mask.  0 on success. */
static int make_scene(const scene *sc, en_frames *f, uint8_t *truth)
{
    size_t n = (size_t)sc->rows * sc->cols;
    float *stat = malloc(n * sizeof *stat);

    if (!stat || en_frames_alloc(f, sc->nframes, sc->rows, sc->cols, sc->channels) != 0) {
        free(stat);
        return -1;
    }
    truth_mask(&sc->t, sc->rows, sc->cols, truth);
    for (size_t p = 0; p < n; p++)
        stat[p] = (float)-log(1e-6 + rndu());
    draw_fan(f, sc, truth, stat);
    draw_furniture(f, sc, truth);
    if (sc->colour && sc->channels == 3)
        draw_colour(f, sc, truth);
    if (sc->markers)
        draw_markers(f, sc, truth);
    if (sc->strip)
        draw_strip(f, truth);
    if (sc->bgnoise)
        draw_bgnoise(f, truth);
    free(stat);
    return 0;
}

/* A random fan: apex near the top centre (sometimes above the image),
 * half-angles 35-45 degrees, radius filling most of the height. */
static fan random_fan(int rows, int cols, int above, int inner)
{
    fan t;
    double hl = rnd_in(35, 45) * M_PI / 180, hr = hl + rnd_in(-3, 3) * M_PI / 180;
    double depth;

    t.ax = cols * rnd_in(0.42, 0.58);
    t.ay = above ? -rows * rnd_in(0.03, 0.15) : rows * rnd_in(0.03, 0.10);
    depth = rows - 8 - t.ay;
    t.r = depth * rnd_in(0.80, 0.98);
    /* Keep the arc's ends on the image unless the scene wants it cut. */
    if (t.ax - t.r * sin(hl) < 2)
        t.r = (t.ax - 2) / sin(hl);
    if (t.ax + t.r * sin(hr) > cols - 3)
        t.r = (cols - 3 - t.ax) / sin(hr);
    t.tl = -hl;
    t.tr = hr;
    t.rin = inner ? t.r * rnd_in(0.12, 0.25) : 0;
    t.top = 0;
    return t;
}

static en_sector sector_of(const fan *t)
{
    en_sector s;
    memset(&s, 0, sizeof s);
    s.apex_x = t->ax;
    s.apex_y = t->ay;
    s.angle_left = t->tl;
    s.angle_right = t->tr;
    s.radius_inner = t->rin;
    s.radius = t->r;
    s.top_y = t->top;
    return s;
}

/* ---- the tests -------------------------------------------------------- */

static const int sizes[][2] = { { 434, 636 }, { 600, 800 }, { 708, 1016 } };

/* Locates sc and checks method and IoU; returns the IoU (-1 on error). */
static double locate_scene(const scene *sc, const en_dicom_info *info, en_sector_method want,
                           double min_iou, en_sector *got)
{
    en_frames f;
    en_err err = { 0, "" };
    uint8_t *truth = malloc((size_t)sc->rows * sc->cols);
    en_sector s;
    double iou = -1;
    int rc;

    if (!truth || make_scene(sc, &f, truth) != 0) {
        free(truth);
        CHECK(!"out of memory drawing a scene");
        return -1;
    }
    rc = en_sector_locate(&f, info, &s, &err);
    CHECKF(rc == 0, "%dx%d: %s", sc->cols, sc->rows, err.msg);
    if (rc == 0) {
        iou = iou_with(&s, truth, sc->rows, sc->cols);
        CHECKF(iou >= min_iou && s.method == want,
               "%dx%d apex %.1f,%.1f angles %.1f,%.1f r %.1f rin %.1f: got %s apex %.1f,%.1f "
               "angles %.1f,%.1f r %.1f rin %.1f IoU %.3f (%s)",
               sc->cols, sc->rows, sc->t.ax, sc->t.ay, sc->t.tl * 180 / M_PI,
               sc->t.tr * 180 / M_PI, sc->t.r, sc->t.rin, en_sector_method_name(s.method),
               s.apex_x, s.apex_y, s.angle_left * 180 / M_PI, s.angle_right * 180 / M_PI,
               s.radius, s.radius_inner, iou, s.detail);
        CHECKF(s.x0 >= 0 && s.y0 >= 0 && s.x1 < sc->cols && s.y1 < sc->rows &&
               s.x0 <= s.x1 && s.y0 <= s.y1, "bbox %d,%d-%d,%d", s.x0, s.y0, s.x1, s.y1);
        CHECK(s.confidence > 0 && s.confidence <= 1);
        CHECK(s.detail[0] != '\0');
        if (got)
            *got = s;
    }
    en_frames_free(&f);
    free(truth);
    return iou;
}

static scene base_scene(int k, int nframes)
{
    scene sc;
    memset(&sc, 0, sizeof sc);
    sc.rows = sizes[k % 3][0];
    sc.cols = sizes[k % 3][1];
    sc.nframes = nframes;
    sc.channels = 1;
    sc.text = sc.label = sc.ecg = 1;
    sc.motion = 0.5;
    return sc;
}

static void test_motion_random(void)
{
    double worst = 1;
    for (int k = 0; k < 12; k++) {
        scene sc = base_scene(k, 12);
        int above = k % 4 == 1, inner = k % 4 == 2;
        double iou;
        sc.t = random_fan(sc.rows, sc.cols, above, inner);
        if (!above && sc.t.ay > 40)
            sc.header = 24;
        iou = locate_scene(&sc, NULL, EN_SECTOR_MOTION, 0.95, NULL);
        if (iou < worst)
            worst = iou;
    }
    fprintf(stderr, "motion: worst IoU over 12 random fans %.3f\n", worst);
}

/* Located, then framed: where does the TRUE apex land in the network's
 * view, and how long is the true radius there?  Detection error included,
 * the apex must be within 1.5 px of (61, 7) and the radius near 107. */
static void test_framing_located(void)
{
    for (int k = 0; k < 3; k++) {
        scene sc = base_scene(k, 8);
        en_sector s, view;
        en_err err = { 0, "" };
        double sc_k, ax, ay;

        sc.t = random_fan(sc.rows, sc.cols, k == 1, 0);
        sc.t.tl = -M_PI / 4;
        sc.t.tr = M_PI / 4;
        if (locate_scene(&sc, NULL, EN_SECTOR_MOTION, 0.95, &s) < 0)
            continue;
        CHECK(en_sector_view(&s, EN_ECHONET_SIZE, &view, &err) == 0);
        sc_k = view.radius / s.radius;
        ax = view.apex_x + (sc.t.ax - s.apex_x) * sc_k;
        ay = view.apex_y + (sc.t.ay - s.apex_y) * sc_k;
        CHECKF(fabs(ax - EN_ECHONET_APEX_X) <= 1.5 && fabs(ay - EN_ECHONET_APEX_Y) <= 1.5 &&
               fabs(sc.t.r * sc_k - EN_ECHONET_RADIUS) <= 2.5,
               "true apex lands at %.2f,%.2f, true radius %.2f", ax, ay, sc.t.r * sc_k);
    }
}

/* The furniture that trips simpler detectors: a shadow along one edge,
 * depth ticks hugging the other, codec noise everywhere, a scrolling
 * Doppler strip bigger than the fan. */
static void test_motion_hard(void)
{
    for (int k = 0; k < 6; k++) {
        scene sc = base_scene(k, 10);
        sc.t = random_fan(sc.rows, sc.cols, k == 1, k == 2);
        sc.shadow = k == 0 || k == 4 || k == 5;
        sc.markers = k == 1 || k == 4 || k == 5;
        sc.bgnoise = k == 2 || k == 5;
        sc.strip = k == 3;
        if (sc.strip)
            sc.t.r = sc.rows * 0.62 - sc.t.ay;
        locate_scene(&sc, NULL, EN_SECTOR_MOTION, 0.95, NULL);
    }
    {
        /* The same furniture in a single frame (no strip: it would not
         * scroll). */
        scene sc = base_scene(1, 1);
        sc.t = random_fan(sc.rows, sc.cols, 0, 0);
        sc.markers = sc.bgnoise = 1;
        locate_scene(&sc, NULL, EN_SECTOR_INTENSITY, 0.95, NULL);
    }
}

/* A fan cut flat below a header whose text lies inside the wedge: the cut
 * is found, and the header text cannot reach the network's view. */
static void test_flat_top(void)
{
    scene sc = base_scene(2, 10);
    uint64_t seed = rng_state;
    en_frames f, g, out_f, out_g;
    en_sector s;
    en_err err = { 0, "" };
    uint8_t *truth = malloc((size_t)sc.rows * sc.cols);

    sc.t = random_fan(sc.rows, sc.cols, 1, 0);
    sc.t.ay = -80;
    sc.t.top = 60;
    sc.header = 44;
    if (locate_scene(&sc, NULL, EN_SECTOR_MOTION, 0.95, &s) < 0) {
        free(truth);
        return;
    }
    CHECKF(fabs(s.top_y - 59.5) <= 2.0 && s.radius_inner < 1, "top_y %.1f rin %.1f",
           s.top_y, s.radius_inner);
    /* Same fan pixels with and without the header text. */
    rng_state = seed;
    make_scene(&sc, &f, truth);
    sc.header = 0;
    sc.text = 0;
    rng_state = seed;
    make_scene(&sc, &g, truth);
    CHECK(en_sector_frame(&f, &s, 112, &out_f, &err) == 0);
    CHECK(en_sector_frame(&g, &s, 112, &out_g, &err) == 0);
    if (out_f.data && out_g.data)
        CHECK(memcmp(out_f.data, out_g.data, (size_t)out_f.nframes * 112 * 112) == 0);
    en_frames_free(&out_f);
    en_frames_free(&out_g);
    en_frames_free(&f);
    en_frames_free(&g);
    free(truth);
}

static void test_motion_rgb_colour(void)
{
    scene sc = base_scene(1, 10);
    sc.channels = 3;
    sc.colour = 1;
    sc.t = random_fan(sc.rows, sc.cols, 0, 0);
    locate_scene(&sc, NULL, EN_SECTOR_MOTION, 0.95, NULL);
}

static en_dicom_info info_with_region(int x0, int y0, int x1, int y1, int fmt, int type,
                                      int ref, int rx, int ry)
{
    en_dicom_info info;
    memset(&info, 0, sizeof info);
    info.nregions = 1;
    info.regions[0].x0 = x0;
    info.regions[0].y0 = y0;
    info.regions[0].x1 = x1;
    info.regions[0].y1 = y1;
    info.regions[0].spatial_format = fmt;
    info.regions[0].data_type = type;
    info.regions[0].has_reference = ref;
    info.regions[0].ref_x = rx;
    info.regions[0].ref_y = ry;
    return info;
}

/* The region a scanner would write for fan t: its box, apex as the
 * reference pixel (relative to the box, so negative above it). */
static en_dicom_info scanner_region(const fan *t, int rows, int cols)
{
    uint8_t *m = malloc((size_t)rows * cols);
    int x0 = cols, y0 = rows, x1 = -1, y1 = -1;

    truth_mask(t, rows, cols, m);
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
            if (m[(size_t)y * cols + x]) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    free(m);
    return info_with_region(x0, y0, x1, y1, 1, 1, 1, (int)lround(t->ax) - x0,
                            (int)lround(t->ay) - y0);
}

static void test_regions(void)
{
    scene sc = base_scene(2, 10);
    en_sector s;

    sc.t = random_fan(sc.rows, sc.cols, 0, 0);
    {
        en_dicom_info info = scanner_region(&sc.t, sc.rows, sc.cols);
        locate_scene(&sc, &info, EN_SECTOR_REGIONS, 0.95, &s);
        CHECKF(strstr(s.detail, "ReferencePixel") && strstr(s.detail, "agrees"), "%s", s.detail);
    }
    {
        /* Same box without a reference pixel: apex at the box's top centre. */
        en_dicom_info info = scanner_region(&sc.t, sc.rows, sc.cols);
        scene sym = sc;
        info.regions[0].has_reference = 0;
        info.regions[0].data_type = 0;     /* unknown type: still tissue-like */
        sym.t.tr = -sym.t.tl;
        sym.t.ax = 0.5 * (info.regions[0].x0 + info.regions[0].x1);
        locate_scene(&sym, &info, EN_SECTOR_REGIONS, 0.90, &s);
        CHECKF(strstr(s.detail, "box top centre") != NULL, "%s", s.detail);
    }
    {
        /* Apex above the box (negative ReferencePixelY0), near field on an
         * arc: the region is used and the pixels supply the arc. */
        scene hi = sc;
        en_dicom_info info;
        hi.t.ay = -30;
        hi.t.rin = 90;
        info = scanner_region(&hi.t, hi.rows, hi.cols);
        CHECK(info.regions[0].ref_y < 0);
        locate_scene(&hi, &info, EN_SECTOR_REGIONS, 0.95, &s);
        CHECKF(fabs(s.radius_inner - 90) < 4, "inner radius %.1f", s.radius_inner);
    }
    {
        /* A plausible-looking box in the wrong place: the pixels win. */
        en_dicom_info info = info_with_region(0, sc.rows / 3, sc.cols / 2, sc.rows - 1, 1, 1,
                                              0, 0, 0);
        locate_scene(&sc, &info, EN_SECTOR_MOTION, 0.95, &s);
        CHECKF(strstr(s.detail, "disagrees") != NULL, "%s", s.detail);
    }
    {
        /* Too small, and not tissue: ignored, and said so. */
        en_dicom_info info = info_with_region(10, 10, 40, 40, 1, 1, 0, 0, 0);
        info.nregions = 2;
        info.regions[1] = info.regions[0];
        info.regions[1].x1 = sc.cols - 10;
        info.regions[1].y1 = sc.rows - 10;
        info.regions[1].data_type = 2;
        locate_scene(&sc, &info, EN_SECTOR_MOTION, 0.95, &s);
        CHECKF(strstr(s.detail, "no plausible") != NULL, "%s", s.detail);
    }
}

static void test_single_frame(void)
{
    double worst = 1;
    for (int k = 0; k < 6; k++) {
        scene sc = base_scene(k, 1);
        double iou;
        sc.t = random_fan(sc.rows, sc.cols, k % 3 == 1, k % 3 == 2);
        sc.header = sc.t.ay > 40 ? 24 : 0;
        iou = locate_scene(&sc, NULL, EN_SECTOR_INTENSITY, 0.95, NULL);
        if (iou < worst)
            worst = iou;
    }
    fprintf(stderr, "intensity: worst IoU over 6 single frames %.3f\n", worst);
    {
        /* A frozen loop: no motion, found by intensity. */
        scene sc = base_scene(0, 8);
        sc.frozen = 1;
        sc.t = random_fan(sc.rows, sc.cols, 0, 0);
        locate_scene(&sc, NULL, EN_SECTOR_INTENSITY, 0.95, NULL);
    }
}

/* Runs locate on f and expects EN_ENOTFOUND with a message. */
static void expect_notfound(const en_frames *f, const char *what)
{
    en_sector s;
    en_err err = { 0, "" };
    int rc = en_sector_locate(f, NULL, &s, &err);
    CHECKF(rc == EN_ENOTFOUND && err.msg[0], "%s: rc %d (%s) detail %s", what, rc, err.msg,
           s.detail);
}

static void test_not_found(void)
{
    en_frames f;
    scene sc = base_scene(1, 6);
    uint8_t *truth = malloc((size_t)sc.rows * sc.cols);

    /* Blank, many frames and one. */
    en_frames_alloc(&f, 6, 600, 800, 1);
    expect_notfound(&f, "blank loop");
    en_frames_free(&f);
    en_frames_alloc(&f, 1, 600, 800, 3);
    expect_notfound(&f, "blank frame");
    en_frames_free(&f);

    /* Text and labels only, static, no fan: loop and single frame. */
    sc.t.r = 1e-3;   /* no fan pixels */
    sc.t.ax = -100;
    sc.t.ay = -100;
    sc.t.tl = -0.1;
    sc.t.tr = 0.1;
    sc.header = 30;
    make_scene(&sc, &f, truth);
    expect_notfound(&f, "static text loop");
    en_frames_free(&f);
    sc.nframes = 1;
    make_scene(&sc, &f, truth);
    expect_notfound(&f, "text-only frame");
    en_frames_free(&f);

    /* A fan too small to be a view: under 5% of the image. */
    sc = base_scene(1, 6);
    sc.t.ax = 400; sc.t.ay = 100; sc.t.tl = -0.6; sc.t.tr = 0.6; sc.t.r = 110; sc.t.rin = 0;
    make_scene(&sc, &f, truth);
    expect_notfound(&f, "tiny fan");
    en_frames_free(&f);
    free(truth);
}

static void test_degenerate(void)
{
    static const int dims[][3] = { { 1, 1, 1 }, { 1, 1000, 2 }, { 1000, 1, 2 }, { 15, 15, 3 },
                                   { 16, 16, 3 }, { 17, 40, 1 }, { 64, 64, 5 }, { 300, 200, 4 } };
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        for (int fill = 0; fill < 3; fill++) {
            en_frames f;
            en_sector s;
            en_err err = { 0, "" };
            size_t n;
            int rc;
            if (en_frames_alloc(&f, dims[k][2], dims[k][0], dims[k][1], k % 2 ? 3 : 1) != 0)
                continue;
            n = (size_t)f.nframes * en_frames_frame_bytes(&f);
            for (size_t i = 0; i < n; i++)      /* 0: blank, 1: constant, 2: noise */
                f.data[i] = fill == 0 ? 0 : fill == 1 ? 255 : (uint8_t)rnd();
            rc = en_sector_locate(&f, NULL, &s, &err);
            CHECKF(rc == 0 || (rc < 0 && err.msg[0]), "%dx%d fill %d: rc %d", dims[k][1],
                   dims[k][0], fill, rc);
            CHECKF(rc != 0 || s.confidence > 0, "%dx%d fill %d found %s", dims[k][1],
                   dims[k][0], fill, s.detail);
            if (fill > 0 && f.rows >= 64)
                CHECKF(rc == EN_ENOTFOUND, "%dx%d fill %d: rc %d %s", dims[k][1], dims[k][0],
                       fill, rc, s.detail);
            en_frames_free(&f);
        }
    }
    {
        /* Invalid inputs are refused, not crashed on. */
        en_frames f = { 0, 0, 0, 1, NULL };
        en_sector s;
        en_err err = { 0, "" };
        CHECK(en_sector_locate(&f, NULL, &s, &err) == EN_EINVAL);
        CHECK(en_sector_locate(NULL, NULL, &s, &err) == EN_EINVAL);
    }
}

/* Values a hostile or broken file could carry. */
static int wild_int(void)
{
    static const int v[] = { INT_MIN, INT_MIN + 1, -100000, -3, -1, 0, 1, 2, 7, 300, 599, 600,
                             601, 799, 800, 100000, INT_MAX - 1, INT_MAX };
    return rnd() % 4 ? v[rnd() % (sizeof v / sizeof v[0])] : (int)(rnd() % 1000) - 100;
}

static double wild_double(void)
{
    static const double v[] = { 0.0, -0.0, 1e-300, -1e-9, 0.5, -1.0, 1.5707963, -1.5707963,
                                3.2, 1e6, -1e6, 1e300, -1e300, HUGE_VAL, -HUGE_VAL, NAN };
    return rnd() % 3 ? v[rnd() % (sizeof v / sizeof v[0])] : rnd_in(-800, 1200);
}

/* Garbage regions must not crash the locator, and garbage geometry must
 * not crash the rasteriser or the framer (nor leave a half-made output). */
static void test_wild_inputs(void)
{
    scene sc = base_scene(1, 4);
    en_frames f;
    uint8_t *truth = malloc((size_t)sc.rows * sc.cols);

    sc.t = random_fan(sc.rows, sc.cols, 0, 0);
    make_scene(&sc, &f, truth);
    for (int k = 0; k < 60; k++) {
        en_dicom_info info;
        en_sector s;
        en_err err = { 0, "" };
        int rc;
        memset(&info, 0, sizeof info);
        info.nregions = 1 + (int)(rnd() % EN_DICOM_MAX_REGIONS);
        for (int i = 0; i < info.nregions; i++) {
            en_us_region *r = &info.regions[i];
            r->x0 = wild_int(); r->y0 = wild_int(); r->x1 = wild_int(); r->y1 = wild_int();
            r->spatial_format = rnd() % 3;
            r->data_type = rnd() % 3;
            r->has_reference = rnd() % 2;
            r->ref_x = wild_int();
            r->ref_y = wild_int();
        }
        rc = en_sector_locate(&f, &info, &s, &err);
        CHECKF(rc == 0 || rc == EN_ENOTFOUND, "wild regions: rc %d %s", rc, err.msg);
    }
    for (int k = 0; k < 200; k++) {
        en_sector s, view;
        en_frames out;
        en_err err = { 0, "" };
        uint8_t m[64 * 48];
        int rc;
        memset(&s, 0, sizeof s);
        s.apex_x = wild_double(); s.apex_y = wild_double();
        s.angle_left = wild_double(); s.angle_right = wild_double();
        s.radius_inner = wild_double(); s.radius = wild_double(); s.top_y = wild_double();
        en_sector_mask(&s, 48, 64, m);
        rc = en_sector_frame(&f, &s, 112, &out, &err);
        CHECK(rc == 0 || (rc == EN_EINVAL && out.data == NULL));
        if (rc == 0) {
            CHECK(en_sector_view(&s, 112, &view, &err) == 0);
            CHECK(outside_fan(&out, &view) == 0);
        }
        en_frames_free(&out);
    }
    en_frames_free(&f);
    free(truth);
}

/* en_sector_mask against this file's atan2 rasteriser. */
static void test_mask(void)
{
    for (int k = 0; k < 6; k++) {
        int rows = 300, cols = 400;
        fan t = random_fan(rows, cols, k % 2, k % 3 == 0);
        en_sector s = sector_of(&t);
        uint8_t *a = malloc((size_t)rows * cols), *b = malloc((size_t)rows * cols);
        long diff = 0;
        truth_mask(&t, rows, cols, a);
        en_sector_mask(&s, rows, cols, b);
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            diff += a[i] != b[i];
        CHECKF(diff <= 2, "mask differs from atan2 raster in %ld pixels", diff);
        free(a);
        free(b);
    }
    {
        /* An unusable model rasterises to nothing. */
        en_sector s;
        uint8_t m[100];
        memset(&s, 0, sizeof s);
        s.radius = NAN;
        memset(m, 7, sizeof m);
        en_sector_mask(&s, 10, 10, m);
        for (int i = 0; i < 100; i++)
            CHECK(m[i] == 0);
    }
    CHECK(strcmp(en_sector_method_name(EN_SECTOR_REGIONS), "regions") == 0);
    CHECK(strcmp(en_sector_method_name(EN_SECTOR_MOTION), "motion") == 0);
    CHECK(strcmp(en_sector_method_name(EN_SECTOR_INTENSITY), "intensity") == 0);
}

int main(void)
{
    test_mask();
    test_motion_random();
    test_motion_rgb_colour();
    test_motion_hard();
    test_framing_located();
    test_flat_top();
    test_regions();
    test_single_frame();
    test_not_found();
    test_degenerate();
    test_wild_inputs();
    TST_DONE();
}

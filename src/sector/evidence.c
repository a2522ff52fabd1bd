/*
 * evidence.c - which pixels belong to the fan, as a cleaned binary map.
 *
 * In a cine loop the fan is where the pixels change: speckle decorrelates
 * from frame to frame while burned-in text, rulers, colour bars and header
 * bands stay put.  The score of a pixel is the mean absolute difference
 * between successive sampled frames (at most 64 frames, spread over the
 * loop).  A mean of differences rather than max-minus-min, because a
 * sweeping ECG trace lights a pixel for a frame or two per sweep: its
 * range is full but its mean change small, while speckle changes always.
 *
 * Single frames, and loops that do not change (a frozen cine), fall back on
 * intensity: the fan is the large bright region, text is small or thin.
 *
 * Either map is smoothed (a small box mean: speckle is noisy pixel by
 * pixel), thresholded, opened (drops 1-4 px lines: ECG traces, calipers,
 * text strokes), closed (joins the fan across dark blood pools), and
 * labelled; the largest components are the candidates the fit tries.
 *
 * Grey here is the largest channel: colour Doppler pixels inside the fan
 * are fan, and blue flow would be dark in luma or in channel 0.
 *
 * Memory: a fixed number of rows*cols buffers, whatever the frame count.
 */
#include "sector-int.h"

#include <stdlib.h>
#include <string.h>

#define SEC_MAX_SAMPLES 64

/* Largest channel of frame i, into g. */
static void frame_grey(const en_frames *f, int i, uint8_t *g)
{
    size_t n = (size_t)f->rows * f->cols;
    const uint8_t *p = en_frames_frame(f, i);

    if (f->channels == 1) {
        memcpy(g, p, n);
        return;
    }
    for (size_t k = 0; k < n; k++, p += 3) {
        uint8_t m = p[0] > p[1] ? p[0] : p[1];
        g[k] = m > p[2] ? m : p[2];
    }
}

/* Mean absolute change between successive sampled frames, times 4 so that
 * faint changes keep some resolution, saturated at 255; maxg gets the
 * per-pixel maximum over the same samples (for the intensity fallback). */
static int motion_score(const en_frames *f, uint8_t *score, uint8_t *maxg,
                        int *used)
{
    size_t n = (size_t)f->rows * f->cols;
    int ns = f->nframes < SEC_MAX_SAMPLES ? f->nframes : SEC_MAX_SAMPLES;
    uint16_t *acc = calloc(n, sizeof *acc);
    uint8_t *prev = malloc(n), *cur = malloc(n);

    if (!acc || !prev || !cur) {
        free(acc); free(prev); free(cur);
        return EN_ENOMEM;
    }
    frame_grey(f, 0, prev);
    memcpy(maxg, prev, n);
    for (int k = 1; k < ns; k++) {
        uint8_t *t;
        frame_grey(f, (int)((long)k * (f->nframes - 1) / (ns - 1)), cur);
        for (size_t p = 0; p < n; p++) {
            int d = cur[p] - prev[p];
            acc[p] += (uint16_t)(d < 0 ? -d : d);
            if (cur[p] > maxg[p])
                maxg[p] = cur[p];
        }
        t = prev; prev = cur; cur = t;
    }
    for (size_t p = 0; p < n; p++) {
        unsigned v = ns > 1 ? (4u * acc[p] + (unsigned)(ns - 1) / 2) / (unsigned)(ns - 1) : 0;
        score[p] = (uint8_t)(v > 255 ? 255 : v);
    }
    *used = ns;
    free(acc); free(prev); free(cur);
    return 0;
}

static void histogram(const uint8_t *v, size_t n, uint64_t hist[256])
{
    memset(hist, 0, 256 * sizeof *hist);
    for (size_t p = 0; p < n; p++)
        hist[v[p]]++;
}

/* Median of the histogram's values above t (t itself when none are). */
static int median_above(const uint64_t h[256], int t)
{
    uint64_t total = 0, acc = 0;

    for (int i = t + 1; i < 256; i++)
        total += h[i];
    for (int i = t + 1; i < 256; i++) {
        acc += h[i];
        if (2 * acc >= total)
            return i;
    }
    return t;
}

/* Motion threshold.  How much a pixel changes scales with how bright it
 * is, so within one fan the score spans a factor of ten (bright walls, dim
 * far field, dark blood) while static pixels sit near zero.  Otsu's split
 * on the logarithm of the score falls in the gap between "static" and
 * "changes at all", where a split of the score itself would part bright
 * tissue from dim and lose the far field.  But lossy codecs ring around
 * the fan's edge, changing a few pixels beyond it a little in every frame,
 * and the box mean spreads the edge: so the threshold is also at least a
 * third of the fan's typical score (the median above the split), which
 * puts the mask's edge near the half-way point of the smoothed step and
 * keeps ringing out.  The floor stays clear of the static level, which the
 * fifth percentile measures (the fan never fills the whole image). */
static int motion_threshold(const uint8_t *score, size_t n)
{
    uint64_t h[256];
    int t, floor, level;

    histogram(score, n, h);
    t = sec_otsu_log(h);
    level = median_above(h, t) * 35 / 100;
    floor = sec_hist_quantile(h, 0.05) + 4;
    if (t < level)
        t = level;
    return t > floor ? t : floor;
}

/* Intensity threshold: "not dark", by the same rule as motion (a fan's
 * brightness, like its motion, varies by a factor from wall to far field,
 * and a bright strip or label must not lift the threshold over dim
 * tissue); the floor keeps clear of the background, which the tenth
 * percentile measures (outside the fan, blood pools). */
static int intensity_threshold(const uint8_t *grey, size_t n)
{
    uint64_t h[256];
    int t, floor, level;

    histogram(grey, n, h);
    t = sec_otsu_log(h);
    level = median_above(h, t) * 35 / 100;
    floor = sec_hist_quantile(h, 0.10) + 10;
    if (t < level)
        t = level;
    return t > floor ? t : floor;
}

static void binarise(const uint8_t *v, size_t n, int t, uint8_t *m)
{
    for (size_t p = 0; p < n; p++)
        m[p] = v[p] > t;
}

/* A header band spanning the width and touching the fan's top would join
 * it; drop rows at the top that are almost all lit.  (The fan's own top
 * rows are narrow, or cut by the image top, where the edge fit does not
 * need them.) */
static void drop_top_bands(uint8_t *m, int rows, int cols)
{
    for (int y = 0; y < rows; y++) {
        uint8_t *row = m + (size_t)y * cols;
        int lit = 0;
        for (int x = 0; x < cols; x++)
            lit += row[x];
        if (lit * 10 < cols * 9)
            break;
        memset(row, 0, (size_t)cols);
    }
}

static long largest_area(const sec_evidence *ev)
{
    return ev->cc.keep > 0 ? ev->cc.area[0] : 0;
}

/* Cleans ev->mask and labels it. */
static void clean_and_label(sec_evidence *ev, sec_scratch *sc, int r_open, int r_close)
{
    sec_open(ev->mask, sc, ev->rows, ev->cols, r_open);
    sec_close(ev->mask, sc, ev->rows, ev->cols, r_close);
    sec_label(ev->mask, ev->rows, ev->cols, ev->cc.label, ev->queue, &ev->cc);
}

static int alloc_buffers(sec_evidence *ev, int rows, int cols,
                         uint8_t **score, uint8_t **grey, sec_scratch *sc)
{
    size_t n = (size_t)rows * cols;

    memset(ev, 0, sizeof *ev);
    ev->rows = rows;
    ev->cols = cols;
    ev->mask = calloc(n, 1);   /* zeroed: never a byte no stage wrote */
    ev->queue = malloc(n * sizeof *ev->queue);
    ev->cc.label = malloc(n * sizeof *ev->cc.label);
    *score = malloc(n);
    *grey = malloc(n);
    sc->tmp = malloc(n);
    sc->cnt = malloc((size_t)cols * sizeof *sc->cnt);
    if (ev->mask && ev->queue && ev->cc.label && *score && *grey && sc->tmp && sc->cnt)
        return 0;
    free(*score); free(*grey); free(sc->tmp); free(sc->cnt);
    sec_evidence_free(ev);
    return EN_ENOMEM;
}

int sec_evidence_build(sec_evidence *ev, const en_frames *f)
{
    int rows = f->rows, cols = f->cols, mind = rows < cols ? rows : cols;
    size_t n = (size_t)rows * cols;
    uint8_t *score, *grey;
    sec_scratch sc;
    int rc, r_smooth = mind >= 300 ? 2 : 1;
    /* The box mean widens a 1-px line to 2 r_smooth + 1: open wider. */
    int r_open = r_smooth + 1;

    if ((rc = alloc_buffers(ev, rows, cols, &score, &grey, &sc)) != 0)
        return rc;
    if (f->nframes > 1) {
        if ((rc = motion_score(f, score, grey, &ev->frames_used)) != 0)
            goto out;
        ev->source = SEC_SRC_MOTION;
        sec_box_mean(score, &sc, rows, cols, r_smooth);
        ev->threshold = motion_threshold(score, n);
        binarise(score, n, ev->threshold, ev->mask);
        clean_and_label(ev, &sc, r_open, mind / 80 > 2 ? mind / 80 : 2);
        /* Motion found nothing fan-sized: a frozen loop; try intensity. */
        if ((double)largest_area(ev) >= 0.02 * (double)n)
            goto out;
    } else {
        frame_grey(f, 0, grey);
        ev->frames_used = 1;
    }
    ev->source = SEC_SRC_INTENSITY;
    sec_box_mean(grey, &sc, rows, cols, r_smooth);
    ev->threshold = intensity_threshold(grey, n);
    binarise(grey, n, ev->threshold, ev->mask);
    drop_top_bands(ev->mask, rows, cols);
    clean_and_label(ev, &sc, r_open, 2);
out:
    free(score); free(grey); free(sc.tmp); free(sc.cnt);
    if (rc)
        sec_evidence_free(ev);
    return rc;
}

void sec_evidence_free(sec_evidence *ev)
{
    free(ev->mask);
    free(ev->queue);
    free(ev->cc.label);
    ev->mask = NULL;
    ev->queue = NULL;
    ev->cc.label = NULL;
}

static int listed(int32_t l, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == l)
            return 1;
    return 0;
}

void sec_evidence_spans(const sec_evidence *ev, const int32_t *ids, int n,
                        sec_spans *sp)
{
    if (n == 0) {
        ids = ev->cc.id;
        n = ev->cc.keep;
    }
    sec_spans_clear(sp);
    for (int y = 0; y < ev->rows; y++) {
        const int32_t *row = ev->cc.label + (size_t)y * ev->cols;
        int lo = -1, hi = -1;
        for (int x = 0; x < ev->cols; x++) {
            if (row[x] && listed(row[x], ids, n)) {
                if (lo < 0)
                    lo = x;
                hi = x;
            }
        }
        if (lo >= 0)
            sec_spans_add(sp, y, lo, hi);
    }
    sec_spans_measure(sp);
}

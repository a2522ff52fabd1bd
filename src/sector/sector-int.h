/*
 * sector-int.h - what the files of the sector module share.
 *
 * One job per file:
 *   evidence.c  turns the cine loop into a binary "this pixel is fan" map
 *               (pixels that change over time, or non-dark pixels for a
 *               single frame), cleaned of thin lines and text, labelled;
 *   morph.c     the image tools evidence.c uses (thresholds, box mean,
 *               opening/closing, connected components);
 *   hull.c      a region held as one span per row, and its convex hull;
 *   fit.c       fits the annular-sector model to a region's row extents;
 *   geom.c      the model itself: the inside test, rasterising, IoU;
 *   locate.c    en_sector_locate: a region's model checked against the
 *               pixels, or the pixels' own fan;
 *   frame.c     en_sector_frame: the network's 112x112 view.
 *
 * Internal names start with sec_.  Coordinates are pixel indices: pixel
 * (x, y) has its centre at (x, y), so a model and its raster agree.
 */
#ifndef EN_SECTOR_INT_H
#define EN_SECTOR_INT_H

#include <stddef.h>
#include <stdint.h>

#include "en_sector.h"

/* ---- geom.c: the model ---------------------------------------------- */

/* The model with its trigonometry done once, for fast inside tests. */
typedef struct sec_model {
    double ax, ay;          /* apex */
    double lx, ly, rx, ry;  /* unit directions of the left and right edges */
    double rin2, r2;        /* squared inner and outer radius */
    double top;             /* rows above are outside */
} sec_model;

/* Fills m from s; returns 0, or -1 when s is not a usable model (NaN,
 * radius <= 0, edges not ordered, span >= 180 degrees). */
int sec_model_init(sec_model *m, const en_sector *s);

static inline int sec_model_inside(const sec_model *m, double x, double y)
{
    double px = x - m->ax, py = y - m->ay;
    double d2 = px * px + py * py;

    /* Cross products instead of atan2: the point is clockwise of the left
     * edge and anticlockwise of the right one (angles grow from +y to +x). */
    if (d2 > m->r2 || d2 < m->rin2 || y < m->top)
        return 0;
    return px * m->ly - py * m->lx >= -1e-9 && m->rx * py - m->ry * px >= -1e-9;
}

/* Pixels inside s within a rows x cols image, and the bounding box of
 * those pixels (x0 > x1 when none). */
long sec_model_area(const en_sector *s, int rows, int cols,
                    int *x0, int *y0, int *x1, int *y1);

/* ---- hull.c: a convex region as one span per row ------------------- */

typedef struct sec_spans {
    int rows, cols;
    int y0, y1;      /* first and last row holding a span; y0 > y1 if empty */
    int *xl, *xr;    /* span of row y is xl[y]..xr[y]; empty when xl > xr */
    long area;       /* pixels inside: see sec_spans_measure */
} sec_spans;

int sec_spans_alloc(sec_spans *sp, int rows, int cols);
void sec_spans_free(sec_spans *sp);
void sec_spans_clear(sec_spans *sp);
/* Widens row y's span to take in x0..x1 (area is then stale). */
void sec_spans_add(sec_spans *sp, int y, int x0, int x1);
void sec_spans_measure(sec_spans *sp);
void sec_spans_copy(sec_spans *dst, const sec_spans *src);
/* Replaces the spans by those of their convex hull.  Needs scratch for
 * 2 * rows points (allocated here; returns -1 on ENOMEM). */
int sec_spans_hull(sec_spans *sp);

/* IoU of the model with the region, counted over the image's pixels. */
double sec_iou(const en_sector *s, const sec_spans *sp);

/* ---- morph.c: binary image tools ----------------------------------- */

/* Otsu's threshold of a 256-bin histogram: values > t are foreground. */
int sec_otsu(const uint64_t hist[256]);
/* The same on log(1 + value): for data whose classes differ by a factor
 * rather than an offset (motion scales with the echo's brightness). */
int sec_otsu_log(const uint64_t hist[256]);
/* Value at fraction q (0..1) of a histogram's mass. */
int sec_hist_quantile(const uint64_t hist[256], double q);

/* Scratch for the morphology: tmp holds rows*cols bytes, cnt cols ints. */
typedef struct sec_scratch {
    uint8_t *tmp;
    int32_t *cnt;
} sec_scratch;

/* Binary erosion / dilation by a (2r+1)^2 square, in place.  Pixels beyond
 * the border do not count either way, so a fan cut by the image border is
 * not eaten from that side. */
void sec_erode(uint8_t *m, sec_scratch *sc, int rows, int cols, int r);
void sec_dilate(uint8_t *m, sec_scratch *sc, int rows, int cols, int r);
void sec_open(uint8_t *m, sec_scratch *sc, int rows, int cols, int r);
void sec_close(uint8_t *m, sec_scratch *sc, int rows, int cols, int r);
/* Grey-level mean over a (2r+1)^2 window (clipped at the border), in place. */
void sec_box_mean(uint8_t *v, sec_scratch *sc, int rows, int cols, int r);

/* Connected components (8-connected) of a binary image. */
#define SEC_MAX_COMPONENTS 6
typedef struct sec_components {
    int32_t *label;                 /* rows*cols; 0 = background */
    int n;                          /* components found */
    int keep;                       /* the largest, at most SEC_MAX_COMPONENTS */
    int32_t id[SEC_MAX_COMPONENTS]; /* their labels, largest first */
    long area[SEC_MAX_COMPONENTS];
} sec_components;

/* Labels m; label must hold rows*cols, queue as well (BFS work list). */
void sec_label(const uint8_t *m, int rows, int cols, int32_t *label,
               int32_t *queue, sec_components *cc);

/* ---- evidence.c: where the fan is, as a binary map ----------------- */

typedef enum sec_source { SEC_SRC_MOTION, SEC_SRC_INTENSITY } sec_source;

typedef struct sec_evidence {
    int rows, cols;
    sec_source source;
    int frames_used;        /* frames sampled */
    int threshold;          /* on the score map, for the detail text */
    uint8_t *mask;          /* rows*cols, cleaned binary map */
    sec_components cc;      /* its components */
    int32_t *queue;         /* scratch for labelling */
} sec_evidence;

/* Builds the evidence from motion when frames vary, from intensity
 * otherwise (single frame, frozen loop).  Returns 0, EN_ENOMEM. */
int sec_evidence_build(sec_evidence *ev, const en_frames *f);
void sec_evidence_free(sec_evidence *ev);
/* Row extents of the listed components (all kept ones when n == 0). */
void sec_evidence_spans(const sec_evidence *ev, const int32_t *ids, int n,
                        sec_spans *sp);

/* ---- fit.c: the annular-sector model from a region ------------------ */

/* Fits apex, edges and radii to the region sp (the row extents of the
 * components ids[0..nids), not their hull: a blob of text stuck to one
 * edge spoils a few rows there but would bend a hull edge for many); the
 * raw pixels of the components decide whether the top is an inner arc.  Returns
 * 0 with s's geometry filled, or -1 with why[] saying what failed. */
int sec_fit(const sec_spans *sp, const sec_evidence *ev, const int32_t *ids,
            int nids, en_sector *s, char *why, size_t whylen);

/* Shapes the top of s from the raw top of components ids: an arc about
 * the apex sets radius_inner, a flat cut sets top_y, a point apex neither.
 * Returns -1 on ENOMEM. */
int sec_fit_top(const sec_evidence *ev, const int32_t *ids, int nids, en_sector *s);

#endif

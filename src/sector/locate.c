/*
 * locate.c - en_sector_locate: where the fan is, and how sure we are.
 *
 * Two witnesses.  The scanner's SequenceOfUltrasoundRegions says where it
 * put the 2D tissue image, but files are re-exported, cropped, or carry
 * regions for a different layout; the pixels say where something moves
 * (or, for one frame, where it is bright).  The pixels are always read:
 * they give the fan when there is no plausible region, and they check a
 * region's model when there is one.  A region whose model does not agree
 * with the pixels (IoU < 0.8) is not trusted, and the detail says so.
 *
 * Pixel fan: each of the largest evidence components is fitted on its own
 * (a scrolling Doppler strip can outgrow a small fan, so size alone does
 * not decide); the best fit, by agreement weighted by size, wins.  Then
 * the other components lying inside that fan, widened a little, are taken
 * in (a fan split by a dark band) and the fit is redone.
 */
#include "sector-int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SEC_MIN_COMPONENT 0.03  /* of the image: smaller is not a fan */
#define SEC_MIN_FAN 0.05        /* of the image: the located fan */
#define SEC_MIN_REGION 0.10     /* of the image: a plausible region */
#define SEC_MIN_AGREE 0.80      /* IoU: region model vs pixels */
#define SEC_MIN_FIT 0.70        /* IoU: pixel model vs pixels */
#define SEC_MAX_PIXELS (1L << 28)

/* The pixel witness: the best fitted fan and the region it was fitted to. */
typedef struct pixel_fan {
    int found;                 /* a fan was fitted */
    en_sector s;
    double iou;                /* of s with hull */
    sec_spans hull;            /* the evidence the check compares with */
    int32_t ids[SEC_MAX_COMPONENTS];
    int nids;
    char why[96];              /* when !found */
} pixel_fan;

/* Scratch for one fit: the components' row extents and their hull. */
typedef struct trial {
    sec_spans raw, hull;
} trial;

/* Fits one set of components; returns the fan's IoU with their hull, or
 * -1 when no fan fits (why says why). */
static double try_fit(const sec_evidence *ev, const int32_t *ids, int n, trial *t,
                      en_sector *s, char *why, size_t len)
{
    sec_evidence_spans(ev, ids, n, &t->raw);
    sec_spans_copy(&t->hull, &t->raw);
    memset(s, 0, sizeof *s);
    if (sec_spans_hull(&t->hull) != 0) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    if (sec_fit(&t->raw, ev, ids, n, s, why, len) != 0)
        return -1;
    return sec_iou(s, &t->hull);
}

static void take_hull(pixel_fan *pf, trial *t)
{
    sec_spans keep = pf->hull;
    pf->hull = t->hull;
    t->hull = keep;
}

/* Components mostly inside a widened copy of s (the fan's own pieces). */
static int inside_components(const sec_evidence *ev, const en_sector *s,
                             int32_t *ids)
{
    en_sector w = *s;
    double span = s->angle_right - s->angle_left;
    long in[SEC_MAX_COMPONENTS] = { 0 };
    sec_model m;
    int n = 0;

    w.angle_left = fmax(s->angle_left - 0.1 * span, -M_PI / 2 + 1e-3);
    w.angle_right = fmin(s->angle_right + 0.1 * span, M_PI / 2 - 1e-3);
    w.radius = s->radius * 1.15;
    w.radius_inner = 0;
    if (sec_model_init(&m, &w) != 0)
        return 0;
    for (int y = 0; y < ev->rows; y++)
        for (int x = 0; x < ev->cols; x++) {
            int32_t l = ev->cc.label[(size_t)y * ev->cols + x];
            if (!l)
                continue;
            for (int i = 0; i < ev->cc.keep; i++)
                if (l == ev->cc.id[i] && sec_model_inside(&m, x, y))
                    in[i]++;
        }
    for (int i = 0; i < ev->cc.keep; i++)
        if (in[i] >= 0.8 * ev->cc.area[i])
            ids[n++] = ev->cc.id[i];
    return n;
}

/* Joins the fan's other pieces and refits; keeps the better of the two. */
static void merge_pieces(const sec_evidence *ev, pixel_fan *pf, trial *t)
{
    int32_t ids[SEC_MAX_COMPONENTS];
    int n = inside_components(ev, &pf->s, ids);
    en_sector s;
    char why[96];
    double iou;

    if (n <= pf->nids)
        return;
    iou = try_fit(ev, ids, n, t, &s, why, sizeof why);
    if (iou < pf->iou - 0.02)
        return;
    pf->s = s;
    pf->iou = iou;
    pf->nids = n;
    memcpy(pf->ids, ids, (size_t)n * sizeof *ids);
    take_hull(pf, t);
}

static const char *evidence_adj(const sec_evidence *ev)
{
    return ev->source == SEC_SRC_MOTION ? "moving" : "bright";
}

static void pick_best(const sec_evidence *ev, pixel_fan *pf, trial *t)
{
    double n = (double)ev->rows * ev->cols, best = 0;

    snprintf(pf->why, sizeof pf->why, "no %s region larger than %.0f%% of the image",
             evidence_adj(ev), 100 * SEC_MIN_COMPONENT);
    for (int i = 0; i < ev->cc.keep; i++) {
        en_sector s;
        char why[96];
        double iou, score;

        if (ev->cc.area[i] < SEC_MIN_COMPONENT * n)
            break;
        iou = try_fit(ev, &ev->cc.id[i], 1, t, &s, why, sizeof why);
        if (iou < 0) {
            if (!pf->found && i == 0)
                snprintf(pf->why, sizeof pf->why, "largest %s region: %.60s",
                         evidence_adj(ev), why);
            continue;
        }
        score = iou * iou * (double)t->hull.area;
        if (iou < SEC_MIN_FIT || score <= best) {
            if (!pf->found && i == 0)
                snprintf(pf->why, sizeof pf->why,
                         "largest %s region is not fan-shaped (IoU %.2f)", evidence_adj(ev), iou);
            continue;
        }
        best = score;
        pf->found = 1;
        pf->s = s;
        pf->iou = iou;
        pf->ids[0] = ev->cc.id[i];
        pf->nids = 1;
        take_hull(pf, t);
    }
}

/* The pixel witness.  Without a fitted fan, pf->hull still holds the
 * largest component's hull for checking a region against. */
static int pixel_witness(const sec_evidence *ev, pixel_fan *pf)
{
    trial t;
    int rc = EN_ENOMEM;

    memset(pf, 0, sizeof *pf);
    memset(&t, 0, sizeof t);
    if (sec_spans_alloc(&pf->hull, ev->rows, ev->cols) != 0 ||
        sec_spans_alloc(&t.raw, ev->rows, ev->cols) != 0 ||
        sec_spans_alloc(&t.hull, ev->rows, ev->cols) != 0)
        goto out;
    pick_best(ev, pf, &t);
    if (pf->found) {
        merge_pieces(ev, pf, &t);
    } else if (ev->cc.keep > 0) {
        sec_evidence_spans(ev, ev->cc.id, 1, &pf->hull);
        if (sec_spans_hull(&pf->hull) != 0)
            goto out;
    }
    rc = 0;
out:
    sec_spans_free(&t.raw);
    sec_spans_free(&t.hull);
    return rc;
}

/* ---- regions -------------------------------------------------------- */

/* A plausible region, clipped to the image, its reference pixel made
 * absolute (in doubles: the stored values may be anything). */
typedef struct region_box {
    int x0, y0, x1, y1;
    int has_ref;
    double ref_x, ref_y;
} region_box;

/* The largest 2D tissue region inside the image (a pixel or two of slack
 * for off-by-one writers); -1 when none is plausible. */
static int pick_region(const en_dicom_info *info, int rows, int cols, region_box *out)
{
    long best = 0;
    int item = -1;

    for (int i = 0; info && i < info->nregions && i < EN_DICOM_MAX_REGIONS; i++) {
        const en_us_region *r = &info->regions[i];
        region_box b;
        long area;

        if (r->spatial_format != 1 || (r->data_type != 1 && r->data_type != 0))
            continue;
        if (r->x0 < -2 || r->y0 < -2 || r->x1 > cols + 1 || r->y1 > rows + 1)
            continue;
        b.has_ref = r->has_reference;
        b.ref_x = (double)r->x0 + r->ref_x;
        b.ref_y = (double)r->y0 + r->ref_y;
        b.x0 = r->x0 < 0 ? 0 : r->x0;
        b.y0 = r->y0 < 0 ? 0 : r->y0;
        b.x1 = r->x1 > cols - 1 ? cols - 1 : r->x1;
        b.y1 = r->y1 > rows - 1 ? rows - 1 : r->y1;
        if (b.x1 <= b.x0 || b.y1 <= b.y0)
            continue;
        area = (long)(b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1);
        if (area < SEC_MIN_REGION * rows * cols || area <= best)
            continue;
        best = area;
        item = i;
        *out = b;
    }
    return item;
}

/* The fan a region box describes: apex at the reference pixel when it is
 * plausible (within the box's columns, not below its top), else at the
 * top centre; the box's bottom is the arc, its sides the arc's ends. */
static int region_model(const region_box *r, en_sector *s)
{
    int from_ref = 0;
    double dl, dr;

    memset(s, 0, sizeof *s);
    s->apex_x = 0.5 * (r->x0 + r->x1);
    s->apex_y = r->y0;
    if (r->has_ref && r->ref_x >= r->x0 && r->ref_x <= r->x1 &&
        r->ref_y <= r->y0 + 0.05 * (r->y1 - r->y0) && r->ref_y > r->y0 - 2.0 * (r->y1 - r->y0)) {
        s->apex_x = r->ref_x;
        s->apex_y = r->ref_y;
        from_ref = 1;
    }
    s->radius = r->y1 - s->apex_y + 0.5;
    dl = (s->apex_x - r->x0 + 0.5) / s->radius;
    dr = (r->x1 - s->apex_x + 0.5) / s->radius;
    s->angle_left = -asin(fmin(fmax(dl, 0.02), 0.996));
    s->angle_right = asin(fmin(fmax(dr, 0.02), 0.996));
    /* Nothing above the box is fan: a flat top at the box's first row
     * (it cuts nothing when the apex is on that row). */
    s->top_y = r->y0 - 0.5;
    return from_ref;
}

/* With the apex above the box the near field may start on an arc; the
 * pixels say whether it does, and the arc must meet the box's top row
 * where it meets the edges. */
static int region_top(const sec_evidence *ev, const pixel_fan *pf, const region_box *r,
                      en_sector *s)
{
    en_sector t = *s;
    double c = cos(fmax(-s->angle_left, s->angle_right)), rise = r->y0 - s->apex_y;

    if (!pf->found || rise < 2)
        return 0;
    if (sec_fit_top(ev, pf->ids, pf->nids, &t) != 0)
        return -1;
    if (t.radius_inner > 0 && fabs(t.radius_inner * c - rise) <= fmax(3.0, 0.03 * rise))
        s->radius_inner = t.radius_inner;
    return 0;
}

/* ---- assembling the answer ----------------------------------------- */

static const char *evidence_name(const sec_evidence *ev)
{
    return ev->source == SEC_SRC_MOTION ? "motion" : "intensity";
}

/* "motion: 64 of 200 frames, fitted (IoU 0.97)" */
static void pixel_detail(char *buf, size_t len, const sec_evidence *ev,
                         const en_frames *f, double iou)
{
    if (ev->source == SEC_SRC_MOTION)
        snprintf(buf, len, "motion: %d of %d frames, fan fitted to moving pixels (IoU %.2f)",
                 ev->frames_used, f->nframes, iou);
    else if (f->nframes > 1)
        snprintf(buf, len, "intensity: loop does not move, fan fitted to bright pixels (IoU %.2f)",
                 iou);
    else
        snprintf(buf, len, "intensity: single frame, fan fitted to bright pixels (IoU %.2f)", iou);
}

/* Fills the bounding box, refuses a fan too small to be one. */
static int finish(en_sector *s, int rows, int cols, en_err *err)
{
    long area = sec_model_area(s, rows, cols, &s->x0, &s->y0, &s->x1, &s->y1);

    if ((double)area < SEC_MIN_FAN * rows * cols)
        return en_err_set(err, EN_ENOTFOUND,
                          "sector: the fan found covers %.1f%% of the image, less than %.0f%%: "
                          "not a usable echo view (%s)",
                          100.0 * area / ((double)rows * cols), 100 * SEC_MIN_FAN, s->detail);
    return EN_OK;
}

/* Returns 0 with out filled when the region's model agrees with the
 * pixels, 1 when it does not (agree says how far), or an error. */
static int use_region(const sec_evidence *ev, const pixel_fan *pf, int item,
                      const region_box *r, en_sector *out, double *agree, en_err *err)
{
    en_sector s;
    int from_ref = region_model(r, &s);

    *agree = pf->hull.area > 0 ? sec_iou(&s, &pf->hull) : 0;
    if (*agree < SEC_MIN_AGREE)
        return 1;
    if (region_top(ev, pf, r, &s) != 0)
        return en_err_set(err, EN_ENOMEM, "sector: out of memory");
    s.method = EN_SECTOR_REGIONS;
    s.confidence = *agree;
    snprintf(s.detail, sizeof s.detail,
             "regions: item %d box %d,%d-%d,%d apex from %s; agrees with %s mask (IoU %.2f)",
             item + 1, r->x0, r->y0, r->x1, r->y1,
             from_ref ? "ReferencePixel" : "box top centre", evidence_name(ev), *agree);
    *out = s;
    return 0;
}

static int use_pixels(const sec_evidence *ev, const pixel_fan *pf, const en_frames *f,
                      const char *before, en_sector *out, en_err *err)
{
    char px[100];

    if (!pf->found)
        return en_err_set(err, EN_ENOTFOUND, "sector: no fan found: %s%s%s", pf->why,
                          before[0] ? "; " : "", before);
    pixel_detail(px, sizeof px, ev, f, pf->iou);
    *out = pf->s;
    out->method = ev->source == SEC_SRC_MOTION ? EN_SECTOR_MOTION : EN_SECTOR_INTENSITY;
    out->confidence = pf->iou;
    if (before[0])
        snprintf(out->detail, sizeof out->detail, "%.90s; %.67s", before, px);
    else
        snprintf(out->detail, sizeof out->detail, "%s", px);
    return 0;
}

static int check_input(const en_frames *f, en_err *err)
{
    if (!f || !f->data || f->nframes <= 0 || f->rows <= 0 || f->cols <= 0 ||
        (f->channels != 1 && f->channels != 3))
        return en_err_set(err, EN_EINVAL, "sector: no frames to search");
    if ((long)f->rows * f->cols > SEC_MAX_PIXELS)
        return en_err_set(err, EN_ELIMIT, "sector: %dx%d image too large to search",
                          f->cols, f->rows);
    if (f->rows < 16 || f->cols < 16)
        return en_err_set(err, EN_ENOTFOUND, "sector: %dx%d image too small to hold a fan",
                          f->cols, f->rows);
    return EN_OK;
}

static int decide(const sec_evidence *ev, const pixel_fan *pf, const en_frames *f,
                  const en_dicom_info *info, en_sector *out, en_err *err)
{
    region_box r = { 0, 0, 0, 0, 0, 0.0, 0.0 };
    char before[160] = "";
    int item = pick_region(info, f->rows, f->cols, &r), rc;
    double agree;

    if (item >= 0) {
        if ((rc = use_region(ev, pf, item, &r, out, &agree, err)) <= 0)
            return rc;
        snprintf(before, sizeof before,
                 "region item %d (box %d,%d-%d,%d) disagrees with %s mask (IoU %.2f)",
                 item + 1, r.x0, r.y0, r.x1, r.y1, evidence_name(ev), agree);
    } else if (info && info->nregions > 0) {
        snprintf(before, sizeof before, "no plausible 2D tissue region among %d", info->nregions);
    }
    return use_pixels(ev, pf, f, before, out, err);
}

int en_sector_locate(const en_frames *frames, const en_dicom_info *info,
                     en_sector *out, en_err *err)
{
    sec_evidence ev;
    pixel_fan pf;
    int rc;

    if (!out)
        return en_err_set(err, EN_EINVAL, "sector: nowhere to put the result");
    memset(out, 0, sizeof *out);
    if ((rc = check_input(frames, err)) != 0)
        return rc;
    if (sec_evidence_build(&ev, frames) != 0)
        return en_err_set(err, EN_ENOMEM, "sector: out of memory for a %dx%d search",
                          frames->cols, frames->rows);
    rc = pixel_witness(&ev, &pf);
    if (rc == 0)
        rc = decide(&ev, &pf, frames, info, out, err);
    else
        en_err_set(err, rc, "sector: out of memory");
    if (rc == 0)
        rc = finish(out, frames->rows, frames->cols, err);
    sec_spans_free(&pf.hull);
    sec_evidence_free(&ev);
    if (rc != 0) {
        char keep[sizeof out->detail];
        memcpy(keep, out->detail, sizeof keep);
        memset(out, 0, sizeof *out);
        memcpy(out->detail, keep, sizeof keep);
    }
    return rc;
}

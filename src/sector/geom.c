/*
 * geom.c - the annular-sector model: validity, the inside test's set-up,
 * rasterising (en_sector_mask), area and agreement with a pixel region.
 *
 * Every other file decides "inside" through sec_model_inside so that the
 * mask the locator scores, the mask that cleans the pixels and the mask
 * applied after resizing are one and the same definition.
 */
#include "sector-int.h"

#include <math.h>
#include <string.h>

const char *en_sector_method_name(en_sector_method m)
{
    switch (m) {
    case EN_SECTOR_REGIONS: return "regions";
    case EN_SECTOR_MOTION: return "motion";
    case EN_SECTOR_INTENSITY: return "intensity";
    }
    return "unknown";
}

int sec_model_init(sec_model *m, const en_sector *s)
{
    double vals[7] = { s->apex_x, s->apex_y, s->angle_left, s->angle_right,
                       s->radius_inner, s->radius, s->top_y };

    for (int i = 0; i < 7; i++)
        if (!isfinite(vals[i]))
            return -1;
    /* Each edge within 90 degrees of straight down keeps the span below
     * 180 degrees, which the two-cross-product inside test relies on. */
    if (s->radius <= 0 || s->radius_inner < 0 || s->radius_inner >= s->radius ||
        !(s->angle_left < s->angle_right) ||
        s->angle_left <= -M_PI / 2 || s->angle_right >= M_PI / 2)
        return -1;
    m->ax = s->apex_x;
    m->ay = s->apex_y;
    m->lx = sin(s->angle_left);
    m->ly = cos(s->angle_left);
    m->rx = sin(s->angle_right);
    m->ry = cos(s->angle_right);
    m->rin2 = s->radius_inner * s->radius_inner;
    m->r2 = s->radius * s->radius;
    m->top = s->top_y - 1e-9;
    return 0;
}

/* Calls fn for each row's run of inside pixels.  A row of an annular
 * sector may hold two runs (either side of the inner arc), so the row is
 * scanned, but only between the columns the outer circle allows. */
/* floor/ceil of v clamped to [lo, hi] before the conversion to int, which
 * would be undefined for a far-away apex. */
static int clamp_floor(double v, int lo, int hi)
{
    return v <= lo ? lo : v >= hi ? hi : (int)floor(v);
}

static int clamp_ceil(double v, int lo, int hi)
{
    return v <= lo ? lo : v >= hi ? hi : (int)ceil(v);
}

/* Calls fn for each inside pixel.  A row of an annular sector may hold two
 * runs (either side of the inner arc), so the row is scanned, but only
 * between the columns the outer circle allows. */
static void for_each_inside(const sec_model *m, int rows, int cols,
                            void (*fn)(void *ctx, int y, int x), void *ctx)
{
    double r = sqrt(m->r2);
    int ylo = clamp_floor(fmax(m->ay - r, m->top), 0, rows - 1);
    int yhi = clamp_ceil(m->ay + r, 0, rows - 1);

    for (int y = ylo; y <= yhi; y++) {
        double dy = y - m->ay, h2 = m->r2 - dy * dy;
        int xlo, xhi;

        if (h2 < 0)
            continue;
        xlo = clamp_floor(m->ax - sqrt(h2) - 1, 0, cols - 1);
        xhi = clamp_ceil(m->ax + sqrt(h2) + 1, 0, cols - 1);
        for (int x = xlo; x <= xhi; x++)
            if (sec_model_inside(m, x, y))
                fn(ctx, y, x);
    }
}

typedef struct mask_ctx { uint8_t *mask; int cols; } mask_ctx;

static void set_mask(void *ctx, int y, int x)
{
    mask_ctx *c = ctx;
    c->mask[(size_t)y * c->cols + x] = 1;
}

void en_sector_mask(const en_sector *s, int rows, int cols, uint8_t *mask)
{
    sec_model m;
    mask_ctx c = { mask, cols };

    if (rows <= 0 || cols <= 0 || !mask)
        return;
    memset(mask, 0, (size_t)rows * cols);
    if (!s || sec_model_init(&m, s) != 0)
        return;
    for_each_inside(&m, rows, cols, set_mask, &c);
}

typedef struct area_ctx { long n; int x0, y0, x1, y1; } area_ctx;

static void count_area(void *ctx, int y, int x)
{
    area_ctx *c = ctx;
    c->n++;
    if (x < c->x0) c->x0 = x;
    if (x > c->x1) c->x1 = x;
    if (y < c->y0) c->y0 = y;
    if (y > c->y1) c->y1 = y;
}

long sec_model_area(const en_sector *s, int rows, int cols,
                    int *x0, int *y0, int *x1, int *y1)
{
    sec_model m;
    area_ctx c = { 0, cols, rows, -1, -1 };

    if (sec_model_init(&m, s) == 0)
        for_each_inside(&m, rows, cols, count_area, &c);
    *x0 = c.x0; *y0 = c.y0; *x1 = c.x1; *y1 = c.y1;
    return c.n;
}

typedef struct iou_ctx { const sec_spans *sp; long model, both; } iou_ctx;

static void count_iou(void *ctx, int y, int x)
{
    iou_ctx *c = ctx;
    c->model++;
    if (x >= c->sp->xl[y] && x <= c->sp->xr[y])
        c->both++;
}

double sec_iou(const en_sector *s, const sec_spans *sp)
{
    sec_model m;
    iou_ctx c = { sp, 0, 0 };
    long uni;

    if (sec_model_init(&m, s) != 0)
        return 0.0;
    for_each_inside(&m, sp->rows, sp->cols, count_iou, &c);
    uni = c.model + sp->area - c.both;
    return uni > 0 ? (double)c.both / (double)uni : 0.0;
}

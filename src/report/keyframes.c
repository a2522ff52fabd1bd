/*
 * keyframes.c - the end-diastole and end-systole frames, scaled up, with
 * the segmentation outline drawn over them in colour.  They let a reader
 * check with their own eyes what the EF rests on: whether the network
 * outlined the left ventricle, or the atrium, or nothing.
 *
 * Pixels are drawn with nearest-neighbour scaling (a smoothed 112x112 image
 * would suggest detail the network never saw), and the outline runs along
 * pixel edges, as vector segments, so it stays exact in the PDF at any zoom.
 */
#include "report_int.h"

#include <stdio.h>

#define LABEL_H 14.0

/* A cairo RGB24 surface holding a grey SIDE x SIDE image. */
static cairo_surface_t *grey_surface(const uint8_t *img)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, EN_REPORT_SIDE,
                                                    EN_REPORT_SIDE);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
        return s;
    cairo_surface_flush(s);
    unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int y = 0; y < EN_REPORT_SIDE; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)y * (size_t)stride);
        for (int x = 0; x < EN_REPORT_SIDE; x++) {
            uint32_t g = img[y * EN_REPORT_SIDE + x];
            row[x] = 0xff000000u | (g << 16) | (g << 8) | g;
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

static void draw_image(cairo_t *cr, const uint8_t *img, double x, double y, double side)
{
    cairo_surface_t *s = grey_surface(img);
    double k = side / EN_REPORT_SIDE;

    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, k, k);
    cairo_set_source_surface(cr, s, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_rectangle(cr, 0, 0, EN_REPORT_SIDE, EN_REPORT_SIDE);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(s);
}

static void draw_outline(cairo_t *cr, const uint8_t *mask, double x, double y, double side)
{
    cairo_new_path(cr);
    rep_outline_path(cr, mask, EN_REPORT_SIDE, x, y, side / EN_REPORT_SIDE);
    cairo_set_source_rgb(cr, EN_REPORT_OUTLINE_R / 255.0, EN_REPORT_OUTLINE_G / 255.0,
                         EN_REPORT_OUTLINE_B / 255.0);
    cairo_set_line_width(cr, 1.0);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
    cairo_stroke(cr);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
}

static void placeholder(cairo_t *cr, double x, double y, double side)
{
    rep_rgb(cr, REP_SHADE);
    cairo_rectangle(cr, x, y, side, side);
    cairo_fill(cr);
    rep_rgb(cr, REP_GREY);
    rep_font(cr, 8.5, REP_REGULAR);
    rep_text(cr, x + side / 2, y + side / 2, REP_CENTER, "not available");
}

void rep_draw_keyframe(cairo_t *cr, const en_report_keyframe *k, double x, double y,
                       double side)
{
    if (!k->image) {
        placeholder(cr, x, y, side);
        return;
    }
    draw_image(cr, k->image, x, y, side);
    if (k->mask)
        draw_outline(cr, k->mask, x, y, side);
}

static void keyframe(cairo_t *cr, const en_report_keyframe *k, const char *name,
                     double x, double y)
{
    char label[64], fr[32];

    snprintf(label, sizeof label, "%s, frame %s", name, rep_fmt_frame(fr, sizeof fr, k->frame));
    rep_font(cr, 8.5, REP_BOLD);
    rep_rgb(cr, REP_INK);
    rep_text(cr, x, y + 10, REP_LEFT, label);
    rep_draw_keyframe(cr, k, x, y + LABEL_H, REP_KEY_SIDE);
}

double rep_keyframes(rep_page *p, double x, double y)
{
    keyframe(p->cr, &p->in->ed, "ED", x, y);
    keyframe(p->cr, &p->in->es, "ES", x + REP_KEY_SIDE + REP_GAP, y);
    rep_font(p->cr, 7.5, REP_REGULAR);
    rep_rgb(p->cr, REP_GREY);
    rep_text(p->cr, x, y + LABEL_H + REP_KEY_SIDE + 10, REP_LEFT,
             "End-diastole and end-systole; outline: LV segmentation");
    return LABEL_H + REP_KEY_SIDE + 14;
}

/*
 * outline.c - the outline of a segmentation mask, as the reader should see
 * it: the boundary between LV pixels and the rest, along pixel edges.
 *
 * The key frames draw it as vector segments on the pixel grid (sharp at any
 * zoom in the PDF); the overlay video colours the mask's own boundary
 * pixels.  Both use the same definition: an LV pixel is on the boundary on
 * each side whose 4-neighbour is not LV or lies off the image.
 */
#include "report_int.h"

static int inside(const uint8_t *mask, int side, int x, int y)
{
    if (x < 0 || y < 0 || x >= side || y >= side)
        return 0;
    return mask[y * side + x] != 0;
}

unsigned rep_mask_edges(const uint8_t *mask, int side, int x, int y)
{
    unsigned e = 0;

    if (!inside(mask, side, x, y))
        return 0;
    if (!inside(mask, side, x, y - 1))
        e |= REP_EDGE_TOP;
    if (!inside(mask, side, x, y + 1))
        e |= REP_EDGE_BOTTOM;
    if (!inside(mask, side, x - 1, y))
        e |= REP_EDGE_LEFT;
    if (!inside(mask, side, x + 1, y))
        e |= REP_EDGE_RIGHT;
    return e;
}

static void segment(cairo_t *cr, double xa, double ya, double xb, double yb)
{
    cairo_move_to(cr, xa, ya);
    cairo_line_to(cr, xb, yb);
}

void rep_outline_path(cairo_t *cr, const uint8_t *mask, int side,
                      double x0, double y0, double px)
{
    for (int y = 0; y < side; y++) {
        for (int x = 0; x < side; x++) {
            unsigned e = rep_mask_edges(mask, side, x, y);
            double l = x0 + x * px, t = y0 + y * px, r = l + px, b = t + px;

            if (e & REP_EDGE_TOP)
                segment(cr, l, t, r, t);
            if (e & REP_EDGE_BOTTOM)
                segment(cr, l, b, r, b);
            if (e & REP_EDGE_LEFT)
                segment(cr, l, t, l, b);
            if (e & REP_EDGE_RIGHT)
                segment(cr, r, t, r, b);
        }
    }
}

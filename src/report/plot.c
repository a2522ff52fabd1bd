/*
 * plot.c - the LV size curve: segmented pixels per frame over the whole
 * video, the curve the beats were found on.  Frames along the bottom axis
 * and seconds along the top (when the frame rate is known), the detected
 * systoles as vertical lines, and each beat's ED and ES frames as markers,
 * so a reader can see whether the detected beats match the rhythm.
 *
 * Long videos are drawn as one min-max span per half point of width rather
 * than one vertex per frame: a 10,000-frame recording keeps its peaks and
 * troughs and the PDF stays small.  Missing sizes (NaN) break the line
 * instead of being drawn as zero.
 */
#include "report_int.h"

#include <math.h>
#include <stdio.h>

typedef struct plot_box {
    double l, t, r, b;          /* box in points */
    double xmin, xmax;          /* frames */
    double ymin, ymax;          /* LV size */
} plot_box;

static double px(const plot_box *b, double f)
{
    return b->l + (f - b->xmin) / (b->xmax - b->xmin) * (b->r - b->l);
}

static double py(const plot_box *b, double v)
{
    return b->b - (v - b->ymin) / (b->ymax - b->ymin) * (b->b - b->t);
}

/* Sizes beyond this are not pixel counts of any mask: drawn as missing,
 * so that garbage cannot stretch the axis to infinity. */
#define SIZE_LIMIT 1e12
/* Tick loops stop here whatever the arithmetic says. */
#define MAX_TICKS 40

/* 1, 2 or 5 times a power of ten, giving about target steps over range. */
static double nice_step(double range, int target)
{
    double raw = range / target, mag, f;

    if (!(raw > 0) || !isfinite(raw))
        return 1;
    mag = pow(10, floor(log10(raw)));
    f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

/* Decimals needed to print multiples of step. */
static int step_decimals(double step)
{
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d > 6 ? 6 : d;
}

static int usable(double v)
{
    return isfinite(v) && fabs(v) <= SIZE_LIMIT;
}

/* Min and max of the usable sizes; 0 when there is none. */
static int size_range(const en_report_input *in, double *lo, double *hi)
{
    int n = 0;

    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < in->n_frames; i++) {
        double v = in->lv_size[i];
        if (!usable(v))
            continue;
        n++;
        *lo = fmin(*lo, v);
        *hi = fmax(*hi, v);
    }
    return n;
}

static void y_axis(cairo_t *cr, const plot_box *b)
{
    double step = nice_step(b->ymax - b->ymin, 4);
    int dec = step_decimals(step);
    char lab[32];

    rep_font(cr, 7.5, REP_REGULAR);
    double v0 = ceil(b->ymin / step) * step;
    for (int k = 0; k < MAX_TICKS && v0 + k * step <= b->ymax; k++) {
        double v = v0 + k * step;
        double y = py(b, v);
        rep_rgb(cr, REP_SHADE);
        cairo_move_to(cr, b->l, y);
        cairo_line_to(cr, b->r, y);
        cairo_stroke(cr);
        rep_rgb(cr, REP_GREY);
        snprintf(lab, sizeof lab, "%.*f", dec, v);
        rep_text(cr, b->l - 4, y + 2.5, REP_RIGHT, lab);
    }
}

static void x_axes(cairo_t *cr, const plot_box *b, double fps)
{
    double step = nice_step(b->xmax - b->xmin, 8);
    char lab[32];

    if (step < 1)
        step = 1;
    rep_font(cr, 7.5, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    for (int k = 0; k < MAX_TICKS && k * step <= b->xmax + 1e-9; k++) {
        double f = k * step;
        snprintf(lab, sizeof lab, "%.0f", f);
        rep_text(cr, px(b, f), b->b + 10, REP_CENTER, lab);
        cairo_move_to(cr, px(b, f), b->b);
        cairo_line_to(cr, px(b, f), b->b + 3);
        cairo_stroke(cr);
    }
    rep_text(cr, b->r, b->b + 20, REP_RIGHT, "frame");
    if (!rep_fps_known(fps))
        return;
    double seconds = b->xmax / fps, sstep = nice_step(seconds, 8);
    int dec = step_decimals(sstep);
    for (int k = 0; k < MAX_TICKS && k * sstep <= seconds + 1e-9; k++) {
        double s = k * sstep;
        double x = px(b, s * fps);
        snprintf(lab, sizeof lab, "%.*f s", dec, s);
        rep_text(cr, x, b->t - 4, REP_CENTER, lab);
        cairo_move_to(cr, x, b->t);
        cairo_line_to(cr, x, b->t - 3);
        cairo_stroke(cr);
    }
}

/* Systoles as lines across the plot; when they would be closer than
 * DENSE_PT apart (a long recording), as short ticks along its foot so the
 * curve stays visible. */
#define DENSE_PT 4.0

static int dense(const plot_box *b, int count)
{
    return count * DENSE_PT > b->r - b->l;
}

static void systoles(cairo_t *cr, const plot_box *b, const en_report_input *in)
{
    double top = dense(b, in->n_systoles) ? b->b - 6 : b->t;

    rep_rgb(cr, REP_SYSTOLE);
    cairo_set_line_width(cr, 0.7);
    for (int i = 0; i < in->n_systoles; i++) {
        int s = in->systoles[i];
        if (s < 0 || s >= in->n_frames)
            continue;
        cairo_move_to(cr, px(b, s), top);
        cairo_line_to(cr, px(b, s), b->b);
    }
    cairo_stroke(cr);
}

/* One vertex per frame; NaN breaks the line, an isolated point is a dot. */
static void curve_direct(cairo_t *cr, const plot_box *b, const double *v, int n)
{
    int pen_down = 0;

    for (int i = 0; i < n; i++) {
        if (!usable(v[i])) {
            pen_down = 0;
            continue;
        }
        double x = px(b, i), y = py(b, v[i]);
        int alone = (i == 0 || !usable(v[i - 1])) && (i + 1 == n || !usable(v[i + 1]));
        if (alone) {
            cairo_stroke(cr);
            cairo_arc(cr, x, y, 1.0, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        if (pen_down)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
        pen_down = 1;
    }
    cairo_stroke(cr);
}

/* nb columns, each the min-max span of its frames, joined in order. */
static void curve_buckets(cairo_t *cr, const plot_box *b, const double *v, int n, int nb)
{
    int pen_down = 0;

    for (int k = 0; k < nb; k++) {
        int i0 = (int)((long long)k * n / nb), i1 = (int)((long long)(k + 1) * n / nb);
        double lo = INFINITY, hi = -INFINITY;
        for (int i = i0; i < i1; i++) {
            if (usable(v[i])) {
                lo = fmin(lo, v[i]);
                hi = fmax(hi, v[i]);
            }
        }
        if (!(lo <= hi)) {
            pen_down = 0;
            continue;
        }
        double x = px(b, (i0 + i1 - 1) / 2.0);
        if (pen_down)
            cairo_line_to(cr, x, py(b, lo));
        else
            cairo_move_to(cr, x, py(b, lo));
        cairo_line_to(cr, x, py(b, hi));
        pen_down = 1;
    }
    cairo_stroke(cr);
}

static void marker(cairo_t *cr, const plot_box *b, const en_report_input *in, int f, int es)
{
    if (f < 0 || f >= in->n_frames || !usable(in->lv_size[f]))
        return;
    double x = px(b, f), y = py(b, in->lv_size[f]);
    if (es)
        cairo_rectangle(cr, x - 2, y - 2, 4, 4);
    else
        cairo_arc(cr, x, y, 2.2, 0, 2 * M_PI);
    cairo_fill(cr);
}

static void beat_markers(cairo_t *cr, const plot_box *b, const en_report_input *in)
{
    rep_rgb(cr, REP_BLUE);
    for (int i = 0; i < in->n_beats; i++)
        marker(cr, b, in, in->beats[i].ed_frame, 0);
    rep_rgb(cr, REP_RED);
    for (int i = 0; i < in->n_beats; i++)
        marker(cr, b, in, in->beats[i].es_frame, 1);
}

/* The legend, right-aligned on the title's baseline. */
static void legend(cairo_t *cr, double y)
{
    static const char *names[] = {"LV size", "systole", "ED", "ES"};
    double x = REP_X1;

    rep_font(cr, 7.5, REP_REGULAR);
    for (int i = 3; i >= 0; i--) {
        rep_rgb(cr, REP_INK);
        x -= rep_text(cr, x, y, REP_RIGHT, names[i]) + 4;
        if (i == 0 || i == 1) {
            rep_rgb(cr, i == 0 ? REP_INK : REP_SYSTOLE);
            cairo_set_line_width(cr, i == 0 ? 1.0 : 1.5);
            cairo_move_to(cr, x - 10, y - 3);
            cairo_line_to(cr, x, y - 3);
            cairo_stroke(cr);
            x -= 10;
        } else {
            rep_rgb(cr, i == 2 ? REP_BLUE : REP_RED);
            if (i == 2)
                cairo_arc(cr, x - 2.5, y - 3, 2.2, 0, 2 * M_PI);
            else
                cairo_rectangle(cr, x - 4.5, y - 5, 4, 4);
            cairo_fill(cr);
            x -= 5;
        }
        x -= 10;
    }
}

/* Under the plot, left: how a long video was drawn. */
static void plot_note(cairo_t *cr, const plot_box *b, const en_report_input *in, int nb)
{
    char note[160];
    int n = 0;

    if (in->n_frames > nb)
        n = snprintf(note, sizeof note, "%d frames; each column spans about %d frames (min"
                     REP_NDASH "max)", in->n_frames, (in->n_frames + nb - 1) / nb);
    if (dense(b, in->n_beats))
        snprintf(note + n, sizeof note - (size_t)n, "%sED/ES markers omitted at this scale",
                 n ? "; " : "");
    else if (n == 0)
        return;
    rep_font(cr, 7, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, b->l, b->b + 20, REP_LEFT, note);
}

static void plot_data(cairo_t *cr, const plot_box *b, const en_report_input *in)
{
    int nb = (int)((b->r - b->l) * 2);

    cairo_save(cr);
    cairo_rectangle(cr, b->l, b->t, b->r - b->l, b->b - b->t);
    cairo_clip(cr);
    systoles(cr, b, in);
    rep_rgb(cr, REP_INK);
    cairo_set_line_width(cr, 0.9);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (in->n_frames <= nb)
        curve_direct(cr, b, in->lv_size, in->n_frames);
    else
        curve_buckets(cr, b, in->lv_size, in->n_frames, nb);
    if (!dense(b, in->n_beats))
        beat_markers(cr, b, in);
    cairo_restore(cr);
    plot_note(cr, b, in, nb);
}

double rep_plot(rep_page *p, double y, double height)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    plot_box b = {REP_X0 + 34, y + 30, REP_X1 - 4, y + height - 24, 0, 1, 0, 1};
    double lo, hi;

    rep_font(cr, 9.5, REP_BOLD);
    rep_rgb(cr, REP_INK);
    if (in->curve_label && *in->curve_label) {
        char title[160];
        snprintf(title, sizeof title, "LV size per frame of clip %.40s (pixels inside the LV "
                 "outline)", in->curve_label);
        rep_text(cr, REP_X0, y + 10, REP_LEFT, title);
    } else {
        rep_text(cr, REP_X0, y + 10, REP_LEFT, "LV size per frame (pixels inside the LV outline)");
    }
    legend(cr, y + 10);
    cairo_set_line_width(cr, 0.6);
    if (size_range(in, &lo, &hi) == 0) {
        rep_rgb(cr, REP_LIGHT);
        cairo_rectangle(cr, b.l, b.t, b.r - b.l, b.b - b.t);
        cairo_stroke(cr);
        rep_font(cr, 9, REP_REGULAR);
        rep_rgb(cr, REP_GREY);
        rep_text(cr, (b.l + b.r) / 2, (b.t + b.b) / 2, REP_CENTER, "no LV size data");
        return height;
    }
    /* a flat curve is drawn flat: the span is at least a quarter of the
     * largest size, so noise of a few pixels is not blown up into beats */
    double span = fmax(hi - lo, fmax(0.25 * fmax(fabs(lo), fabs(hi)), 2.0));
    double mid = (lo + hi) / 2;
    b.ymin = mid - 0.54 * span;
    b.ymax = mid + 0.54 * span;
    b.xmax = in->n_frames > 1 ? in->n_frames - 1 : 1;
    y_axis(cr, &b);
    x_axes(cr, &b, in->fps);
    plot_data(cr, &b, in);
    rep_rgb(cr, REP_GREY);
    cairo_set_line_width(cr, 0.6);
    cairo_rectangle(cr, b.l, b.t, b.r - b.l, b.b - b.t);
    cairo_stroke(cr);
    return height;
}

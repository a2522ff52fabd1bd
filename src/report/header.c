/*
 * header.c - the top of the page: which study (by pseudonym only), when it
 * was processed, the facts about the source video a reader needs to judge
 * the numbers (frame count and rate, and where the rate came from, since a
 * guessed rate changes every time axis), and, when a model was trained on
 * phantoms only, a red banner no reader can miss.
 */
#include "report_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define HEADER_H 46.0
#define BANNER_H 22.0

static void format_time(time_t t, char *buf, size_t n)
{
    struct tm tm;

    if (t == 0 || !gmtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        snprintf(buf, n, "not recorded");
}

/* "180 frames at 50.0 fps (CineRate), source 600 x 800 px, sector: regions" */
static void format_source(const en_report_input *in, char *buf, size_t n)
{
    char fps[64], geom[64], sector[96];
    int used = 0;

    if (in->n_clips > 0) {   /* a study: its instances */
        for (int i = 0; i < in->n_clips; i++)
            used += in->clips[i].used != 0;
        snprintf(buf, n, "%d instance%s, %d used for the EF", in->n_clips,
                 in->n_clips == 1 ? "" : "s", used);
        return;
    }
    if (rep_fps_known(in->fps))
        snprintf(fps, sizeof fps, " at %.1f fps (%s)", in->fps,
                 in->fps_source && *in->fps_source ? in->fps_source : "source not stated");
    else
        snprintf(fps, sizeof fps, ", frame rate not known");
    geom[0] = sector[0] = '\0';
    if (in->src_rows > 0 && in->src_cols > 0)
        snprintf(geom, sizeof geom, ", source %d x %d px", in->src_cols, in->src_rows);
    if (in->sector_method && *in->sector_method)
        snprintf(sector, sizeof sector, ", sector: %.60s", in->sector_method);
    snprintf(buf, n, "%d frames%s%s%s", in->src_frames, fps, geom, sector);
}

double rep_header(rep_page *p, double y)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    char buf[256];

    rep_rgb(cr, REP_INK);
    rep_font(cr, 16, REP_BOLD);
    rep_text(cr, REP_X0, y + 14, REP_LEFT, "Echocardiogram EF report");
    format_time(in->processed, buf, sizeof buf);
    rep_font(cr, 9, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    char when[300];
    snprintf(when, sizeof when, "Processed %s", buf);
    rep_text(cr, REP_X1, y + 12, REP_RIGHT, when);

    rep_rgb(cr, REP_INK);
    rep_font(cr, 11, REP_REGULAR);
    double w = rep_text(cr, REP_X0, y + 32, REP_LEFT, "Study ");
    rep_font(cr, 11, REP_BOLD);
    rep_text(cr, REP_X0 + w, y + 32, REP_LEFT, in->pseudonym);
    format_source(in, buf, sizeof buf);
    rep_font(cr, 8.5, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, REP_X1, y + 32, REP_RIGHT, buf);

    rep_rgb(cr, REP_LIGHT);
    cairo_set_line_width(cr, 0.8);
    cairo_move_to(cr, REP_X0, y + 40);
    cairo_line_to(cr, REP_X1, y + 40);
    cairo_stroke(cr);
    return HEADER_H;
}

static int any_phantom(const en_report_input *in)
{
    for (int i = 0; i < in->n_models; i++)
        if (in->models[i].phantom)
            return 1;
    return 0;
}

double rep_phantom_banner(rep_page *p, double y)
{
    cairo_t *cr = p->cr;

    if (!any_phantom(p->in))
        return 0;
    rep_rgb(cr, REP_RED);
    cairo_rectangle(cr, REP_X0, y, REP_WIDTH, BANNER_H);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    rep_font(cr, 11, REP_BOLD);
    rep_text(cr, REP_X0 + REP_WIDTH / 2, y + 15, REP_CENTER,
             "WARNING: " EN_REPORT_PHANTOM_TEXT);
    return BANNER_H + REP_GAP;
}

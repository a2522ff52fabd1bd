/*
 * table.c - the per-beat table: for each detected systole, the clip the EF
 * came from and that clip's EF, as upstream's beat-by-beat analysis lists
 * them.  The reader sees which beats pull the mean, and which clips were
 * shifted back to fit inside the video.
 *
 * The table gets whatever height the layout leaves it.  A study with more
 * beats than rows (a long recording) shows the first ones and a closing
 * "and N more beats" line, never rows running off the page.
 */
#include "report_int.h"

#include <stdio.h>

#define TITLE_H 16.0
#define HEAD_H 13.0
#define ROW_H 11.5

typedef struct column {
    const char *title;
    double x;    /* offset from the left margin */
    int align;
} column;

static const column cols[] = {
    {"Beat", 24, REP_RIGHT},       {"Systole", 80, REP_RIGHT},
    {"Clip start", 140, REP_RIGHT}, {"ED", 180, REP_RIGHT},
    {"ES", 220, REP_RIGHT},        {"EF (%)", 275, REP_RIGHT},
    {"Note", 300, REP_LEFT},
};
#define NCOLS (int)(sizeof cols / sizeof cols[0])

double rep_table_min_height(void)
{
    return TITLE_H + HEAD_H + 3 * ROW_H;
}

static void header_row(cairo_t *cr, double y)
{
    rep_font(cr, 8.5, REP_BOLD);
    rep_rgb(cr, REP_INK);
    for (int c = 0; c < NCOLS; c++)
        rep_text(cr, REP_X0 + cols[c].x, y + 9, cols[c].align, cols[c].title);
    rep_rgb(cr, REP_LIGHT);
    cairo_set_line_width(cr, 0.6);
    cairo_move_to(cr, REP_X0, y + HEAD_H - 1);
    cairo_line_to(cr, REP_X1, y + HEAD_H - 1);
    cairo_stroke(cr);
}

static const char *beat_note(const en_report_beat *b)
{
    if (!rep_printable(b->ef))
        return b->shifted ? "no EF; clip shifted back to fit the video" : "no EF";
    return b->shifted ? "clip shifted back to fit the video" : "";
}

static void beat_row(cairo_t *cr, double y, int i, const en_report_beat *b)
{
    char cell[NCOLS][48];
    const char *txt[NCOLS];

    if (i % 2) {
        rep_rgb(cr, REP_SHADE);
        cairo_rectangle(cr, REP_X0, y, REP_WIDTH, ROW_H);
        cairo_fill(cr);
    }
    snprintf(cell[0], sizeof cell[0], "%d", i + 1);
    txt[0] = cell[0];
    txt[1] = rep_fmt_frame(cell[1], sizeof cell[1], b->systole_frame);
    txt[2] = rep_fmt_frame(cell[2], sizeof cell[2], b->clip_start);
    txt[3] = rep_fmt_frame(cell[3], sizeof cell[3], b->ed_frame);
    txt[4] = rep_fmt_frame(cell[4], sizeof cell[4], b->es_frame);
    txt[5] = rep_fmt1(cell[5], sizeof cell[5], b->ef);
    txt[6] = beat_note(b);
    rep_font(cr, 8.5, REP_REGULAR);
    rep_rgb(cr, REP_INK);
    for (int c = 0; c < NCOLS; c++)
        rep_text(cr, REP_X0 + cols[c].x, y + 8.5, cols[c].align, txt[c]);
}

/* Rows that fit in max_h, keeping one for "and N more" when truncating. */
static int rows_shown(int n_beats, double max_h)
{
    int fit = (int)((max_h - TITLE_H - HEAD_H) / ROW_H);

    if (fit < 1)
        fit = 1;
    if (n_beats <= fit)
        return n_beats;
    return fit - 1;
}

double rep_table(rep_page *p, double y, double max_h)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    int shown = rows_shown(in->n_beats, max_h);
    double ry = y + TITLE_H + HEAD_H;
    char buf[96];

    rep_font(cr, 11, REP_BOLD);
    rep_rgb(cr, REP_INK);
    double w = rep_text(cr, REP_X0, y + 11, REP_LEFT, "Beats");
    rep_font(cr, 8, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, REP_X0 + w + 8, y + 11, REP_LEFT,
             "EF of one 32-frame clip (every 2nd frame) centred on each detected systole");
    header_row(cr, y + TITLE_H);
    if (in->n_beats == 0) {
        rep_font(cr, 8.5, REP_REGULAR);
        rep_rgb(cr, REP_INK);
        rep_text(cr, REP_X0 + 4, ry + 8.5, REP_LEFT, "No beats were detected.");
        return TITLE_H + HEAD_H + ROW_H;
    }
    for (int i = 0; i < shown; i++, ry += ROW_H)
        beat_row(cr, ry, i, &in->beats[i]);
    if (shown < in->n_beats) {
        int more = in->n_beats - shown;
        snprintf(buf, sizeof buf, "and %d more beat%s", more, more == 1 ? "" : "s");
        rep_font(cr, 8.5, REP_BOLD);
        rep_rgb(cr, REP_INK);
        rep_text(cr, REP_X0 + 4, ry + 8.5, REP_LEFT, buf);
        ry += ROW_H;
    }
    return ry - y;
}

/*
 * clips.c - what a study page adds: the key frames of the clips the EF
 * came from, and a table of every instance of the study with what became
 * of it.
 *
 * A study's EF is only as good as the clips that went into it, so the
 * reader sees the outlines of each used clip side by side (a view that
 * slipped in shows at a glance), and for every other instance the reason
 * it was left out, in words, so nothing disappears silently.  The table
 * gets the height the layout leaves; rows beyond it are summarised as "and
 * N more instances", and long reasons are cut with "...".
 */
#include "report_int.h"

#include <stdio.h>
#include <string.h>

#define KEY_SIDE 64.0
#define KEY_LABEL_H 12.0
#define TITLE_H 16.0
#define HEAD_H 13.0
#define ROW_LINE 10.0

/* ---- key frames of the used clips ------------------------------------------- */

static void small_frame(cairo_t *cr, const en_report_keyframe *k, const char *name, double x,
                        double y)
{
    char label[48], fr[32];

    snprintf(label, sizeof label, "%s %s", name, rep_fmt_frame(fr, sizeof fr, k->frame));
    rep_font(cr, 7.5, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, x, y + KEY_LABEL_H + KEY_SIDE + 9, REP_LEFT, label);
    rep_draw_keyframe(cr, k, x, y + KEY_LABEL_H, KEY_SIDE);
}

double rep_keyclips(rep_page *p, double y)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    double pair_w = 2 * KEY_SIDE + 6, x = REP_X0;
    char title[96];

    rep_font(cr, 11, REP_BOLD);
    rep_rgb(cr, REP_INK);
    double w = rep_text(cr, REP_X0, y + 11, REP_LEFT, "Clips used");
    rep_font(cr, 8, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, REP_X0 + w + 8, y + 11, REP_LEFT,
             "end-diastole and end-systole of the first beat; outline: LV segmentation");
    y += TITLE_H;
    if (in->n_keyclips == 0) {
        rep_font(cr, 8.5, REP_REGULAR);
        rep_rgb(cr, REP_INK);
        rep_text(cr, REP_X0 + 4, y + 9, REP_LEFT,
                 "No clip was used: the study has no EF (see the table below).");
        return TITLE_H + 16;
    }
    for (int i = 0; i < in->n_keyclips && x + pair_w <= REP_X1 + 0.5; i++) {
        const en_report_keyclip *k = &in->keyclips[i];
        snprintf(title, sizeof title, "clip %s", k->label ? k->label : "?");
        rep_font(cr, 8, REP_BOLD);
        rep_rgb(cr, REP_INK);
        rep_text(cr, x, y + 9, REP_LEFT, title);
        small_frame(cr, &k->ed, "ED", x, y);
        small_frame(cr, &k->es, "ES", x + KEY_SIDE + 6, y);
        x += pair_w + 14;
    }
    return TITLE_H + KEY_LABEL_H + KEY_SIDE + 12;
}

/* ---- the clip table -------------------------------------------------------- */

typedef struct column {
    const char *title;
    double x;    /* offset from the left margin */
    int align;
} column;

static const column cols[] = {
    {"Clip", 0, REP_LEFT},      {"View evidence", 66, REP_LEFT},
    {"Frames", 188, REP_RIGHT}, {"Beats", 220, REP_RIGHT},
    {"EF (%)", 256, REP_RIGHT}, {"Verdict and reasons", 266, REP_LEFT},
};
#define NCOLS (int)(sizeof cols / sizeof cols[0])
#define REASON_W (REP_WIDTH - 266)
#define REASON_LINES 1

double rep_clip_table_min_height(void)
{
    return TITLE_H + HEAD_H + 2 * ROW_LINE + 4;
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

/* The verdict and its reasons as one wrapped text. */
static void verdict_text(const en_report_clip *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s", c->verdict ? c->verdict : "", c->reasons && *c->reasons ? ": " : "",
             c->reasons ? c->reasons : "");
}

static int row_lines(cairo_t *cr, const en_report_clip *c)
{
    char buf[1400];

    verdict_text(c, buf, sizeof buf);
    rep_font(cr, 7.5, REP_REGULAR);
    return rep_wrap(cr, 0, 0, REASON_W, 0, ROW_LINE, REASON_LINES, 0, buf);
}

static double clip_row(cairo_t *cr, double y, int i, const en_report_clip *c, int lines)
{
    char frames[32], beats[32], ef[32], buf[1400];
    double h = lines * ROW_LINE + 3;

    if (i % 2) {
        rep_rgb(cr, REP_SHADE);
        cairo_rectangle(cr, REP_X0, y, REP_WIDTH, h);
        cairo_fill(cr);
    }
    snprintf(frames, sizeof frames, "%d", c->frames);
    snprintf(beats, sizeof beats, "%d", c->beats);
    rep_font(cr, 8, c->used ? REP_BOLD : REP_REGULAR);
    rep_rgb(cr, c->used ? REP_GREEN : REP_INK);
    rep_text(cr, REP_X0 + cols[0].x + 2, y + 8, REP_LEFT, c->label ? c->label : "?");
    rep_font(cr, 7.5, REP_REGULAR);
    rep_rgb(cr, REP_INK);
    rep_wrap(cr, REP_X0 + cols[1].x, y + 8, cols[2].x - cols[1].x - 34, 0, ROW_LINE, lines, 1,
             c->view ? c->view : "");
    rep_font(cr, 8, REP_REGULAR);
    rep_text(cr, REP_X0 + cols[2].x, y + 8, REP_RIGHT, c->frames > 0 ? frames : REP_DASH);
    rep_text(cr, REP_X0 + cols[3].x, y + 8, REP_RIGHT, beats);
    rep_text(cr, REP_X0 + cols[4].x, y + 8, REP_RIGHT, rep_fmt1(ef, sizeof ef, c->ef));
    verdict_text(c, buf, sizeof buf);
    rep_font(cr, 7.5, REP_REGULAR);
    rep_rgb(cr, c->used ? REP_GREEN : REP_INK);
    rep_wrap(cr, REP_X0 + cols[5].x, y + 8, REASON_W, 0, ROW_LINE, lines, 1, buf);
    return h;
}

double rep_clip_table(rep_page *p, double y, double max_h)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    double ry = y + TITLE_H + HEAD_H, bottom = y + max_h;
    char buf[256];
    int i;

    rep_font(cr, 11, REP_BOLD);
    rep_rgb(cr, REP_INK);
    double w = rep_text(cr, REP_X0, y + 11, REP_LEFT, "Instances of the study");
    rep_font(cr, 8, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    snprintf(buf, sizeof buf, "%d in all; clips in green were used for the EF", in->n_clips);
    rep_text(cr, REP_X0 + w + 8, y + 11, REP_LEFT, buf);
    header_row(cr, y + TITLE_H);
    for (i = 0; i < in->n_clips; i++) {
        int lines = row_lines(cr, &in->clips[i]);
        double h = lines * ROW_LINE + 3;
        /* keep a line for "and N more" unless this is the last row */
        if (ry + h + (i + 1 < in->n_clips ? ROW_LINE + 3 : 0) > bottom)
            break;
        ry += clip_row(cr, ry, i, &in->clips[i], lines);
    }
    if (i < in->n_clips) {
        int more = in->n_clips - i;
        size_t n = (size_t)snprintf(buf, sizeof buf, "and %d more instance%s:", more,
                                    more == 1 ? "" : "s");
        /* what they were, by verdict, in table order */
        for (int k = i; k < in->n_clips && n < sizeof buf; k++) {
            const char *v = in->clips[k].verdict ? in->clips[k].verdict : "?";
            int seen = 0, count = 0;
            for (int j = i; j < k; j++)
                seen |= in->clips[j].verdict && !strcmp(in->clips[j].verdict, v);
            if (seen)
                continue;
            for (int j = k; j < in->n_clips; j++)
                count += in->clips[j].verdict && !strcmp(in->clips[j].verdict, v);
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s %d %s", k > i ? "," : "", count, v);
        }
        rep_font(cr, 8.5, REP_BOLD);
        rep_rgb(cr, REP_INK);
        rep_text(cr, REP_X0 + 4, ry + 8.5, REP_LEFT, buf);
        ry += ROW_LINE + 3;
    }
    return ry - y;
}

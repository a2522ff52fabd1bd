/*
 * notes.c - the text at the foot of the page: the quality flags a reader
 * must weigh before trusting the EF, which models produced it, and the
 * fixed note that this is not a diagnosis.
 *
 * Each function can measure without drawing (draw = 0): the layout sizes
 * these blocks first and gives the beat table what is left.  An empty flag
 * list is printed as "No quality flags." rather than left out, so a reader
 * can tell "checked, nothing found" from "section missing".
 */
#include "report_int.h"

#include <stdio.h>
#include <string.h>

#include "config.h"

#define TITLE_H 16.0
#define LINE_H 11.0
/* a pipeline has two; more would be a caller bug, not a reason to overflow */
#define MAX_MODELS 4

static void title(cairo_t *cr, double y, const char *s, int draw)
{
    if (!draw)
        return;
    rep_font(cr, 11, REP_BOLD);
    rep_rgb(cr, REP_INK);
    rep_text(cr, REP_X0, y + 11, REP_LEFT, s);
}

/* One flag: "name: explanation", the name in bold, wrapped. */
static double flag(cairo_t *cr, double y, const en_report_flag *f, int draw)
{
    char name[160], nm[128];
    double w;

    snprintf(name, sizeof name, "%s:", rep_clean(f->name, nm, sizeof nm));
    rep_font(cr, 8.5, REP_BOLD);
    rep_rgb(cr, REP_RED);
    w = draw ? rep_text(cr, REP_X0 + 8, y + 9, REP_LEFT, name) : rep_text_width(cr, name);
    rep_font(cr, 8.5, REP_REGULAR);
    rep_rgb(cr, REP_INK);
    int lines = rep_wrap(cr, REP_X0 + 8, y + 9, REP_WIDTH - 8, w + 4, LINE_H, 4, draw,
                         f->explanation);
    return (lines > 0 ? lines : 1) * LINE_H;
}

double rep_flags(rep_page *p, double y, double max_h, int draw)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    double cy = y + TITLE_H;
    int i;

    title(cr, y, "Quality flags", draw);
    if (in->n_flags == 0) {
        if (draw) {
            rep_font(cr, 8.5, REP_REGULAR);
            rep_rgb(cr, REP_INK);
            rep_text(cr, REP_X0 + 8, cy + 9, REP_LEFT, "No quality flags.");
        }
        return TITLE_H + LINE_H;
    }
    for (i = 0; i < in->n_flags; i++) {
        double h = flag(cr, cy, &in->flags[i], 0);
        int last = i + 1 == in->n_flags;
        /* keep a line for "and N more" unless this is the last flag */
        if (cy + h + (last ? 0 : LINE_H) - y > max_h && i > 0)
            break;
        if (draw)
            flag(cr, cy, &in->flags[i], 1);
        cy += h;
    }
    if (i < in->n_flags) {
        if (draw) {
            char buf[64];
            snprintf(buf, sizeof buf, "and %d more flag%s", in->n_flags - i,
                     in->n_flags - i == 1 ? "" : "s");
            rep_font(cr, 8.5, REP_BOLD);
            rep_rgb(cr, REP_INK);
            rep_text(cr, REP_X0 + 8, cy + 9, REP_LEFT, buf);
        }
        cy += LINE_H;
    }
    return cy - y;
}

/* "segmentation: deeplabv3_resnet50, weights 1a2b3c4d, origin: ..." */
static double model(cairo_t *cr, double y, const en_report_model *m, int draw)
{
    char line[768];

    snprintf(line, sizeof line, "%.60s: %.80s, weights %.40s, origin: %.400s%s",
             m->role && *m->role ? m->role : "model",
             m->architecture && *m->architecture ? m->architecture : "unknown architecture",
             m->hash && *m->hash ? m->hash : "(no hash)",
             m->origin && *m->origin ? m->origin : "not recorded",
             m->phantom ? " (phantom-trained)" : "");
    rep_font(cr, 8.5, REP_REGULAR);
    rep_rgb(cr, m->phantom ? REP_RED : REP_INK);
    return LINE_H * rep_wrap(cr, REP_X0 + 8, y + 9, REP_WIDTH - 8, 0, LINE_H, 2, draw, line);
}

double rep_models(rep_page *p, double y, int draw)
{
    const en_report_input *in = p->in;
    double cy = y + TITLE_H;

    title(p->cr, y, "Models", draw);
    if (in->n_models == 0) {
        if (draw) {
            rep_font(p->cr, 8.5, REP_REGULAR);
            rep_rgb(p->cr, REP_INK);
            rep_text(p->cr, REP_X0 + 8, cy + 9, REP_LEFT, "not recorded");
        }
        return TITLE_H + LINE_H;
    }
    int shown = in->n_models <= MAX_MODELS ? in->n_models : MAX_MODELS - 1;
    for (int i = 0; i < shown; i++)
        cy += model(p->cr, cy, &in->models[i], draw);
    if (shown < in->n_models) {
        char buf[64];
        snprintf(buf, sizeof buf, "and %d more models", in->n_models - shown);
        rep_font(p->cr, 8.5, REP_REGULAR);
        rep_rgb(p->cr, REP_INK);
        if (draw)
            rep_text(p->cr, REP_X0 + 8, cy + 9, REP_LEFT, buf);
        cy += LINE_H;
    }
    return cy - y;
}

/* The fixed note; its first sentence ("Not a diagnosis.") in bold. */
double rep_note(rep_page *p, double y, int draw)
{
    cairo_t *cr = p->cr;
    const char *note = p->in->n_clips > 0 ? EN_REPORT_NOTE_STUDY : EN_REPORT_NOTE;
    const char *rest = strchr(note, '.');
    char first[64];
    double w;
    int lines;

    rest = rest ? rest + 1 : note;
    snprintf(first, sizeof first, "%.*s", (int)(rest - note), note);
    rep_font(cr, 8, REP_BOLD);
    rep_rgb(cr, REP_INK);
    w = draw ? rep_text(cr, REP_X0, y + 14, REP_LEFT, first) : rep_text_width(cr, first);
    rep_font(cr, 8, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    lines = rep_wrap(cr, REP_X0, y + 14, REP_WIDTH, w, 10, 6, draw, rest);
    if (draw) {
        rep_rgb(cr, REP_LIGHT);
        cairo_set_line_width(cr, 0.8);
        cairo_move_to(cr, REP_X0, y + 3);
        cairo_line_to(cr, REP_X1, y + 3);
        cairo_stroke(cr);
        rep_font(cr, 7, REP_REGULAR);
        rep_rgb(cr, REP_GREY);
        rep_text(cr, REP_X1, y + 14 + lines * 10 + 2, REP_RIGHT,
                 "echonetd " PACKAGE_VERSION);
    }
    return 14 + lines * 10 + 4;
}

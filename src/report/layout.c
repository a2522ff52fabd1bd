/*
 * layout.c - where each section goes on the one A4 page.
 *
 * A page about one video, top down: header (study, date, source), the
 * phantom-model banner when it applies, the EF summary beside the ED/ES key
 * frames, the LV size curve, the beat table, the quality flags and the
 * models; the not-a-diagnosis note sits at the foot.  A study page puts the
 * study's EF summary first, then the key frames of the clips used, the
 * first used clip's curve (shorter), and the table of every instance in
 * place of the beat table.  The fixed-size blocks are placed first; the
 * flags and models are measured; the table gets the height left over, so
 * whatever the study (no beats, hundreds of beats or instances, many
 * flags) the page never overflows and the note is always printed.
 */
#include "report_int.h"

#include <math.h>

#define PLOT_H 190.0
#define STUDY_PLOT_H 118.0
/* flags beyond this height are summarised as "and N more flags" */
#define FLAGS_MAX_H 170.0

/* EF summary on the left, key frames on the right; returns the height. */
static double top_row(rep_page *p, double y)
{
    double kx = REP_X1 - REP_KEYFRAMES_W;
    double hs = rep_summary(p, y, kx - REP_X0 - REP_GAP);
    double hk = rep_keyframes(p, kx, y);

    return fmax(hs, hk);
}

void rep_draw_page(rep_page *p)
{
    int study = p->in->n_clips > 0;
    double y = REP_MARGIN;

    cairo_set_source_rgb(p->cr, 1, 1, 1);
    cairo_paint(p->cr);
    y += rep_header(p, y);
    y += rep_phantom_banner(p, y);
    if (study) {
        y += rep_summary(p, y, REP_WIDTH) + REP_GAP;
        y += rep_keyclips(p, y) + REP_GAP;
        y += rep_plot(p, y, STUDY_PLOT_H) + REP_GAP;
    } else {
        y += top_row(p, y) + REP_GAP;
        y += rep_plot(p, y, PLOT_H) + REP_GAP;
    }

    double note_y = REP_Y1 - rep_note(p, 0, 0);
    double models_h = rep_models(p, 0, 0);
    /* room for the table and the flags, between the plot and the models */
    double room = note_y - REP_GAP - models_h - REP_GAP - y;
    double table_min = study ? rep_clip_table_min_height() : rep_table_min_height();
    double flags_max = fmin(FLAGS_MAX_H, room - table_min - REP_GAP);
    double flags_h = rep_flags(p, 0, flags_max, 0);

    if (study)
        y += rep_clip_table(p, y, room - flags_h - REP_GAP) + REP_GAP;
    else
        y += rep_table(p, y, room - flags_h - REP_GAP) + REP_GAP;
    y += rep_flags(p, y, flags_max, 1) + REP_GAP;
    rep_models(p, y, 1);
    rep_note(p, note_y, 1);
}

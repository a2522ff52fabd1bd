/*
 * summary.c - the number the reader came for: the EF (mean of the beat
 * EFs, as upstream's beat-by-beat analysis) in large type, its class, and
 * how much the beats agree (SD, min-max, beat count), because one mean of
 * three discordant beats is not the same finding as the mean of ten close
 * ones.  Then where the mean lies against each threshold (50 % is
 * upstream's reduced-EF cut; 40 and 35 are the other common cuts).
 *
 * With no EF (no beat found, or no clip could be scored) the big number is
 * an em dash and the reason is printed beneath it: a blank would read as a
 * rendering fault, and a zero as a catastrophic EF.
 */
#include "report_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define LINE 13.0

/* min, max and count of the printable beat EFs. */
static int beat_range(const en_report_input *in, double *lo, double *hi)
{
    int n = 0;

    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < in->n_beats; i++) {
        double ef = in->beats[i].ef;
        if (!rep_printable(ef))
            continue;
        n++;
        *lo = fmin(*lo, ef);
        *hi = fmax(*hi, ef);
    }
    return n;
}

static const char *no_ef_reason(const en_report_input *in)
{
    if (in->no_ef_reason && *in->no_ef_reason)
        return in->no_ef_reason;
    if (in->n_beats == 0)
        return "no beat was detected in the LV size curve";
    return "no beat's clip could be scored";
}

/* "Beat spread: SD 3.6 %, range 45.0–52.1 %, 3 beats" */
static void spread_line(const en_report_input *in, char *buf, size_t n)
{
    char sd[32], lo_s[32], hi_s[32], extra[64] = "";
    double lo, hi;
    int scored = beat_range(in, &lo, &hi);

    if (scored < in->n_beats)
        snprintf(extra, sizeof extra, " (%d without EF)", in->n_beats - scored);
    snprintf(buf, n, "Beat spread: SD %s %%, range %s" REP_NDASH "%s %%, %d beat%s%s",
             rep_fmt1(sd, sizeof sd, in->ef_sd), rep_fmt1(lo_s, sizeof lo_s, lo),
             rep_fmt1(hi_s, sizeof hi_s, hi), in->n_beats, in->n_beats == 1 ? "" : "s",
             extra);
}

/* "Below 50 %: yes   Below 40 %: no   Below 35 %: no" */
static void threshold_line(const en_report_input *in, char *buf, size_t n)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; i < EN_REPORT_NTHRESH && o < n; i++) {
        double t = in->thresholds[i];
        if (!(t > 0))
            continue;
        o += (size_t)snprintf(buf + o, n - o, "%sBelow %g %%: %s", o ? "    " : "", t,
                              in->ef_mean < t ? "yes" : "no");
    }
}

static void big_number(cairo_t *cr, double y, double ef)
{
    char num[32], txt[48];

    rep_font(cr, 40, REP_BOLD);
    rep_rgb(cr, REP_INK);
    if (rep_printable(ef))
        snprintf(txt, sizeof txt, "%s %%", rep_fmt1(num, sizeof num, ef));
    else
        snprintf(txt, sizeof txt, "%s", REP_DASH);
    rep_text(cr, REP_X0, y, REP_LEFT, txt);
}

double rep_summary(rep_page *p, double y, double width)
{
    cairo_t *cr = p->cr;
    const en_report_input *in = p->in;
    int has_ef = rep_printable(in->ef_mean);
    char buf[256];
    double cy;

    rep_font(cr, 9, REP_REGULAR);
    rep_rgb(cr, REP_GREY);
    rep_text(cr, REP_X0, y + 10, REP_LEFT,
             in->n_clips > 0 ? "Ejection fraction of the study (mean of the beats of the clips "
                               "used)"
                             : "Ejection fraction (mean of the beats)");
    big_number(cr, y + 52, in->ef_mean);
    cy = y + 74;
    if (has_ef && in->ef_class && *in->ef_class) {
        int reduced = in->thresholds[0] > 0 && in->ef_mean < in->thresholds[0];
        rep_font(cr, 13, REP_BOLD);
        rep_rgb(cr, reduced ? REP_RED : REP_GREEN);
        cy += 15 * (rep_wrap(cr, REP_X0, cy, width, 0, 15, 2, 1, in->ef_class) - 1) + 17;
    }
    rep_font(cr, 9.5, REP_REGULAR);
    rep_rgb(cr, REP_INK);
    if (!has_ef) {
        snprintf(buf, sizeof buf, "No EF: %s", no_ef_reason(in));
        cy += LINE * rep_wrap(cr, REP_X0, cy, width, 0, LINE, 3, 1, buf);
    }
    if (in->n_clips > 0 && in->summary_note && *in->summary_note)
        cy += LINE * rep_wrap(cr, REP_X0, cy, width, 0, LINE, 3, 1, in->summary_note);
    else if (in->n_beats > 0) {
        spread_line(in, buf, sizeof buf);
        cy += LINE * rep_wrap(cr, REP_X0, cy, width, 0, LINE, 2, 1, buf);
    }
    if (has_ef) {
        threshold_line(in, buf, sizeof buf);
        cy += LINE * rep_wrap(cr, REP_X0, cy, width, 0, LINE, 2, 1, buf);
    }
    return cy - y;
}

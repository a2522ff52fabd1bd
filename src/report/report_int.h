/*
 * report_int.h - what the report module's files share: the page geometry,
 * the drawing context every section gets, text helpers, the sections
 * themselves, mask outlines, and the write-then-rename output stream.
 * Internal names carry the rep_ prefix; nothing here is API.
 *
 * All drawing is in PostScript points on an A4 page, origin top left, y
 * down.  The PDF surface takes points directly; the PNG's image surface is
 * scaled by 150/72 first, so one set of drawing functions makes both.
 */
#ifndef EN_REPORT_INT_H
#define EN_REPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <cairo.h>

#include "en_err.h"
#include "en_report.h"

/* Page geometry in points. */
#define REP_MARGIN 36.0
#define REP_X0 REP_MARGIN
#define REP_X1 (EN_REPORT_PAGE_W_PT - REP_MARGIN)
#define REP_WIDTH (REP_X1 - REP_X0)
#define REP_Y1 (EN_REPORT_PAGE_H_PT - REP_MARGIN)
#define REP_GAP 10.0

/* One page being drawn: the cairo context (PDF or PNG surface) and the
 * study.  Sections that take a draw flag can also just measure themselves,
 * so the layout can size the flexible parts before anything is drawn. */
typedef struct rep_page {
    cairo_t *cr;
    const en_report_input *in;
} rep_page;

/* --- text.c: fonts, clean UTF-8, placing and wrapping text --- */
enum { REP_REGULAR = 0, REP_BOLD = 1 };
enum { REP_LEFT = 0, REP_RIGHT = 1, REP_CENTER = 2 };

void rep_font(cairo_t *cr, double size, int bold);
void rep_rgb(cairo_t *cr, uint32_t rgb);  /* 0xRRGGBB */
/* Copies s into buf (size n) with invalid UTF-8 and control characters
 * replaced by '?', truncated on a character boundary.  NULL gives "". */
const char *rep_clean(const char *s, char *buf, size_t n);
/* Width in points of s in the current font (s is cleaned first). */
double rep_text_width(cairo_t *cr, const char *s);
/* Shows s with its baseline at y, aligned at x; returns the width. */
double rep_text(cairo_t *cr, double x, double y, int align, const char *s);
/* Word-wraps s into width, baseline of the first line at y, lines line_h
 * apart; the first line starts indent points to the right.  At most
 * max_lines lines (the last ends in "..." when cut).  Draws only when draw
 * is set.  Returns the number of lines. */
int rep_wrap(cairo_t *cr, double x, double y, double width, double indent,
             double line_h, int max_lines, int draw, const char *s);
/* A number the report prints: finite and below a million in magnitude
 * (an EF of 1e300 is a fault upstream, not a finding). */
int rep_printable(double v);
/* A frame rate the time axis can use: finite, 0.01 to 100000 fps. */
int rep_fps_known(double fps);
/* "47.3" (one decimal), or an em dash for values not rep_printable. */
const char *rep_fmt1(char *buf, size_t n, double v);
/* "23", or an em dash for negative frame indices. */
const char *rep_fmt_frame(char *buf, size_t n, int frame);

#define REP_DASH "\xe2\x80\x94"   /* em dash, U+2014 */
#define REP_NDASH "\xe2\x80\x93"  /* en dash, U+2013 */

/* Colours. */
#define REP_INK 0x1a1a1a
#define REP_GREY 0x666666
#define REP_LIGHT 0xdddddd
#define REP_SHADE 0xf2f2f2
#define REP_RED 0xb3261e
#define REP_GREEN 0x1e6b3a
#define REP_BLUE 0x1f5fa8
#define REP_SYSTOLE 0x8aa9d6

/* --- sections: each returns the height it takes from y downwards --- */
double rep_header(rep_page *p, double y);          /* header.c */
double rep_phantom_banner(rep_page *p, double y);  /* header.c; 0 if none */
double rep_summary(rep_page *p, double y, double width);     /* summary.c */
double rep_keyframes(rep_page *p, double x, double y);       /* keyframes.c */
#define REP_KEY_SIDE 118.0                 /* key frame edge in points */
#define REP_KEYFRAMES_W (2 * REP_KEY_SIDE + REP_GAP)
double rep_plot(rep_page *p, double y, double height);       /* plot.c */
/* The beat table in at most max_h points (rows beyond are summarised as
 * "and N more beats"). */
double rep_table(rep_page *p, double y, double max_h);       /* table.c */
double rep_table_min_height(void);
/* clips.c: the study page's key frames of the used clips and its table of
 * every instance (at most max_h). */
double rep_keyclips(rep_page *p, double y);
double rep_clip_table(rep_page *p, double y, double max_h);
double rep_clip_table_min_height(void);
/* keyframes.c: one key frame (image and outline) in a side x side square. */
void rep_draw_keyframe(cairo_t *cr, const en_report_keyframe *k, double x, double y,
                       double side);
/* notes.c: flags (at most max_h), models, the fixed note (anchored at the
 * page foot by the caller). */
double rep_flags(rep_page *p, double y, double max_h, int draw);
double rep_models(rep_page *p, double y, int draw);
double rep_note(rep_page *p, double y, int draw);
/* layout.c: the whole page. */
void rep_draw_page(rep_page *p);

/* --- outline.c: where a 0/1 mask's outline runs --- */
/* Bit set for each side of pixel (x, y) on the mask's boundary: the pixel
 * is inside and the neighbour on that side is outside (or off the image). */
enum { REP_EDGE_TOP = 1, REP_EDGE_BOTTOM = 2, REP_EDGE_LEFT = 4, REP_EDGE_RIGHT = 8 };
unsigned rep_mask_edges(const uint8_t *mask, int side, int x, int y);
/* Adds the outline of mask (side x side) to cr's path, one pixel = px
 * points, origin at (x0, y0). */
void rep_outline_path(cairo_t *cr, const uint8_t *mask, int side,
                      double x0, double y0, double px);

/* --- atomic.c: cairo streams into an en_atomic_file --- */
#include "en_atomic.h"
typedef struct rep_out {
    en_atomic_file f;  /* the temporary file and its final path */
    int werrno;        /* first write error, 0 if none */
} rep_out;

/* Creates "<path>.tmp.<pid>.<n>" exclusively (mode 0666 less umask). */
int rep_out_open(rep_out *o, const char *path, en_err *err);
/* A cairo_write_func_t writing to o->fd; remembers the first error. */
cairo_status_t rep_out_write(void *closure, const unsigned char *data, unsigned int len);
/* fsyncs, closes and renames into place, fsyncs the folder.  The
 * temporary file is removed on failure. */
int rep_out_commit(rep_out *o, en_err *err);
/* Closes and removes the temporary file; safe after commit. */
void rep_out_discard(rep_out *o);

#endif

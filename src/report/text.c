/*
 * text.c - text on the report page: fonts, cleaning strings before cairo
 * sees them, alignment, word wrapping and number formats.
 *
 * Text goes through cairo_show_text with the toy "sans-serif" face, so the
 * PDF carries real glyphs with a Unicode map and pdftotext (or a reader's
 * search) finds every word.  cairo refuses invalid UTF-8 by putting the
 * whole context in an error state, so every string from the input is
 * cleaned first: one bad byte in a flag's explanation must not lose the
 * report.
 */
#include "report_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void rep_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

void rep_rgb(cairo_t *cr, uint32_t rgb)
{
    cairo_set_source_rgb(cr, ((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0,
                         (rgb & 0xff) / 255.0);
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

const char *rep_clean(const char *s, char *buf, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return "";
    if (!s) {
        buf[0] = '\0';
        return buf;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len = utf8_len(p);
        if (len == 0 || (len == 1 && (*p < 0x20 || *p == 0x7f))) {
            /* a tab or newline reads as a space; anything else as '?' */
            if (o + 1 >= n)
                break;
            buf[o++] = (*p == '\t' || *p == '\n' || *p == '\r') ? ' ' : '?';
            p++;
            continue;
        }
        if (o + len >= n)
            break;
        memcpy(buf + o, p, len);
        o += len;
        p += len;
    }
    buf[o] = '\0';
    return buf;
}

double rep_text_width(cairo_t *cr, const char *s)
{
    char buf[1024];
    cairo_text_extents_t ext;

    cairo_text_extents(cr, rep_clean(s, buf, sizeof buf), &ext);
    return ext.x_advance;
}

double rep_text(cairo_t *cr, double x, double y, int align, const char *s)
{
    char buf[1024];
    cairo_text_extents_t ext;

    rep_clean(s, buf, sizeof buf);
    cairo_text_extents(cr, buf, &ext);
    if (align == REP_RIGHT)
        x -= ext.x_advance;
    else if (align == REP_CENTER)
        x -= ext.x_advance / 2;
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, buf);
    return ext.x_advance;
}

/* Width of the first len bytes of s. */
static double prefix_width(cairo_t *cr, const char *s, size_t len)
{
    char buf[1024];
    cairo_text_extents_t ext;

    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    cairo_text_extents(cr, buf, &ext);
    return ext.x_advance;
}

/* Length of the longest prefix of s that fits in width: whole words when
 * at least one fits, else as many characters of the first word as fit (at
 * least one, so wrapping always advances). */
static size_t wrap_fit(cairo_t *cr, const char *s, double width)
{
    size_t best = 0;

    /* The loops stop at the NUL they reach (s[i - 1] is the last byte a
     * prefix of length i takes), so no index is ever past the string. */
    for (size_t i = 1; s[i - 1]; i++) {
        if (s[i] && s[i] != ' ')
            continue;
        if (prefix_width(cr, s, i) > width)
            break;
        best = i;
    }
    if (best)
        return best;
    for (size_t i = 1; s[i - 1]; i++) {
        if (((unsigned char)s[i] & 0xc0) == 0x80)
            continue;  /* only cut at character boundaries */
        if (best && prefix_width(cr, s, i) > width)
            break;
        best = i;
    }
    return best;
}

/* Drops the last UTF-8 character of line (length *len). */
static void drop_last_char(char *line, size_t *len)
{
    do
        (*len)--;
    while (*len > 0 && ((unsigned char)line[*len] & 0xc0) == 0x80);
    line[*len] = '\0';
}

int rep_wrap(cairo_t *cr, double x, double y, double width, double indent,
             double line_h, int max_lines, int draw, const char *s)
{
    char text[1024], line[1024 + 4];  /* room for "..." */
    const char *p = rep_clean(s, text, sizeof text);
    int lines = 0;

    while (*p && lines < max_lines) {
        double avail = width - (lines == 0 ? indent : 0);
        size_t len = wrap_fit(cr, p, avail > 10 ? avail : 10);
        int last = lines + 1 == max_lines && p[len];

        memcpy(line, p, len);
        line[len] = '\0';
        if (last) {
            /* cut: make room for the ellipsis */
            while (len > 0 && rep_text_width(cr, line) + rep_text_width(cr, "...") > avail)
                drop_last_char(line, &len);
            strcat(line, "...");
        }
        if (draw) {
            cairo_move_to(cr, x + (lines == 0 ? indent : 0), y + lines * line_h);
            cairo_show_text(cr, line);
        }
        lines++;
        p += strlen(line) - (last ? 3 : 0);
        if (last)
            break;
        while (*p == ' ')
            p++;
    }
    return lines;
}

int rep_printable(double v)
{
    return isfinite(v) && fabs(v) < 1e6;
}

int rep_fps_known(double fps)
{
    return isfinite(fps) && fps >= 0.01 && fps <= 1e5;
}

const char *rep_fmt1(char *buf, size_t n, double v)
{
    if (!rep_printable(v))
        snprintf(buf, n, "%s", REP_DASH);
    else
        snprintf(buf, n, "%.1f", v);
    return buf;
}

const char *rep_fmt_frame(char *buf, size_t n, int frame)
{
    if (frame < 0)
        snprintf(buf, n, "%s", REP_DASH);
    else
        snprintf(buf, n, "%d", frame);
    return buf;
}

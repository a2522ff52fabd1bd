/*
 * scan.c - structural walk of a DICOM file (see en_dicom_scan.h).  Plain C
 * on purpose: the daemon runs it on files nobody has vetted, and the reader
 * runs it before DCMTK, so it follows lengths and nothing else, with every
 * loop bounded by the file and the limits in en_dicom_scan.h.
 *
 * Reading goes through one 64 KiB window.  For a plain file the window is
 * refilled with pread wherever the walk is (skipping a value costs
 * nothing); past the start of a deflated data set it slides forward over
 * zlib's output, so skipping a value there means inflating it.  The walk
 * only moves forward, except that a failed trial (below) steps back to the
 * end of the value it tried, which is always still in the window.
 *
 * Trials: in implicit VR the walk cannot know which elements DCMTK's
 * dictionary calls sequences, so a defined-length value that starts with an
 * item tag is walked as a sequence "on trial".  If it is not one, the value
 * is skipped as data and nothing is said; limits reached inside a trial
 * refuse the file all the same, since DCMTK may well recurse into it.
 */
#include "en_dicom_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define UNDEFINED 0xFFFFFFFFu
#define TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))
#define ITEM TAG(0xFFFE, 0xE000)
#define ITEM_END TAG(0xFFFE, 0xE00D)
#define SEQ_END TAG(0xFFFE, 0xE0DD)
#define PIXEL_DATA TAG(0x7FE0, 0x0010)
#define WINDOW 65536
#define DEFLATED_TS "1.2.840.10008.1.2.1.99"

/* How a deflated stream stands. */
enum { Z_RUNNING = 0, Z_ENDED, Z_DAMAGED, Z_CUT, Z_TOO_BIG };

typedef struct walker {
    int fd;
    long long size;          /* bytes in the file */
    long long pos;           /* walk position (logical: see en_dicom_scan.h's end) */
    uint8_t *win;            /* WINDOW bytes: logical [woff, woff + wlen) */
    long long woff;
    size_t wlen;
    /* a deflated data set: logical bytes from dstart on are zlib's output */
    int inflating, zstate;
    long long dstart, zin;   /* where the stream starts; next compressed byte */
    z_stream z;
    uint8_t zbuf[16384];
    /* the walk */
    long elements;
    long long zero_bytes;    /* bytes of zero "elements" so far */
    long long zero_from;     /* where the current run of them began, or -1 */
    int trial;               /* nesting of trial walks: failures are not verdicts */
    long long trial_end;     /* where the innermost trial's value ends */
    int raw;                 /* no DICM magic: walked as a raw data set */
    en_dicom_scan *out;
} walker;

/* The encoding of the elements being walked: UN of undefined length holds
 * implicit VR little endian whatever the file's syntax. */
typedef struct enc {
    int explicit_vr, big_endian;
} enc;

/* ---- verdicts ---------------------------------------------------------- */

/* A verdict, with the reason; returns 1 so callers can `return verdict(...)`
 * to stop the walk.  Inside a trial it only ends the trial, silently.  A raw
 * data set that does not walk is "unknown": it may not be DICOM at all, and
 * nothing is on its way. */
static int verdict(walker *w, en_dicom_scan_state st, const char *fmt, ...)
{
    char why[sizeof w->out->detail - 40];
    va_list ap;

    if (w->trial)
        return 1;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (w->raw && st != EN_SCAN_COMPLETE)
        st = EN_SCAN_UNKNOWN;
    w->out->state = st;
    w->out->end = w->pos;
    snprintf(w->out->detail, sizeof w->out->detail, "%s%s",
             w->raw ? "no DICM magic; as a raw data set: " : "", why);
    return 1;
}

/* A refusal: the reader must not parse the file, whatever the walk would
 * have said (trials included). */
static int refuse(walker *w, int code, en_dicom_scan_state st, const char *fmt, ...)
{
    va_list ap;

    w->trial = 0;
    w->out->refuse = code;
    w->out->state = w->raw && st != EN_SCAN_TRUNCATED ? EN_SCAN_UNKNOWN : st;
    w->out->end = w->pos;
    va_start(ap, fmt);
    vsnprintf(w->out->detail, sizeof w->out->detail, fmt, ap);
    va_end(ap);
    return 1;
}

/* ---- reading ------------------------------------------------------------ */

static ssize_t pread_full(int fd, void *buf, size_t n, long long off)
{
    ssize_t r;
    do
        r = pread(fd, buf, n, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r;
}

/* Inflates into the window until it holds n bytes from pos, the stream
 * ends, or something is wrong (zstate says what). */
static int inflate_to(walker *w, size_t n)
{
    size_t keep = (size_t)(w->woff + (long long)w->wlen - w->pos);

    /* Bytes before pos are done with: slide the window. */
    memmove(w->win, w->win + (w->pos - w->woff), keep);
    w->woff = w->pos;
    w->wlen = keep;
    while (w->wlen < n && w->zstate == Z_RUNNING) {
        int rc;
        if (w->z.avail_in == 0) {
            ssize_t r = w->zin < w->size ? pread_full(w->fd, w->zbuf, sizeof w->zbuf, w->zin) : 0;
            if (r <= 0) {
                w->zstate = r < 0 ? Z_DAMAGED : Z_CUT;
                break;
            }
            w->zin += r;
            w->z.next_in = w->zbuf;
            w->z.avail_in = (uInt)r;
        }
        w->z.next_out = w->win + w->wlen;
        w->z.avail_out = (uInt)(WINDOW - w->wlen);
        rc = inflate(&w->z, Z_NO_FLUSH);
        w->wlen = WINDOW - w->z.avail_out;
        if (rc == Z_STREAM_END)
            w->zstate = Z_ENDED;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            w->zstate = Z_DAMAGED;
        if (w->woff + (long long)w->wlen - w->dstart > EN_DICOM_SCAN_MAX_INFLATED)
            w->zstate = Z_TOO_BIG;
    }
    return w->wlen >= n;
}

/* Makes bytes [pos, pos + n) readable in the window (n <= WINDOW / 2);
 * 0 when the data ends first. */
static int need(walker *w, size_t n)
{
    long long lim;
    ssize_t r;

    if (w->pos >= w->woff && w->pos + (long long)n <= w->woff + (long long)w->wlen)
        return 1;
    if (w->inflating)
        return inflate_to(w, n);
    lim = w->size;
    if (w->pos + (long long)n > lim)
        return 0;
    r = pread_full(w->fd, w->win, (size_t)(lim - w->pos < WINDOW ? lim - w->pos : WINDOW), w->pos);
    if (r < (ssize_t)n)
        return 0;
    w->woff = w->pos;
    w->wlen = (size_t)r;
    return 1;
}

/* Reads n bytes at the walk position and moves past them. */
static int get(walker *w, void *buf, size_t n)
{
    if (!need(w, n))
        return 0;
    memcpy(buf, w->win + (w->pos - w->woff), n);
    w->pos += (long long)n;
    return 1;
}

static int peek(walker *w, void *buf, size_t n)
{
    if (!need(w, n))
        return 0;
    memcpy(buf, w->win + (w->pos - w->woff), n);
    return 1;
}

/* Moves n bytes on; 0 when the data ends first (the position is then
 * wherever the data ended). */
static int skip(walker *w, unsigned long long n)
{
    if (!w->inflating) {
        if (w->pos + (long long)n > w->size)
            return 0;
        w->pos += (long long)n;
        return 1;
    }
    while (n > 0) {
        long long have = w->woff + (long long)w->wlen - w->pos;
        if (have <= 0) {
            if (!inflate_to(w, 1))
                return 0;
            continue;
        }
        if ((unsigned long long)have > n)
            have = (long long)n;
        w->pos += have;
        n -= (unsigned long long)have;
    }
    return 1;
}

/* Bytes known to be left: exact for a plain file, unbounded while
 * inflating (the stream says when it ends). */
static long long left(const walker *w)
{
    return w->inflating ? (long long)1 << 62 : w->size - w->pos;
}

/* 1 when the walk is at the very end of the data. */
static int at_end(walker *w)
{
    return w->inflating ? !need(w, 1) && w->zstate == Z_ENDED : w->pos == w->size;
}

/* The data ended (need or skip failed): why, as a verdict. */
static int ended(walker *w, const char *what)
{
    if (w->inflating && w->zstate == Z_TOO_BIG)
        return refuse(w, EN_ELIMIT, EN_SCAN_UNKNOWN, "the deflated data set inflates to more "
                      "than %lld MiB", EN_DICOM_SCAN_MAX_INFLATED >> 20);
    if (w->inflating && w->zstate == Z_DAMAGED)
        return verdict(w, EN_SCAN_UNKNOWN, "the deflated data set is damaged (zlib: %s)",
                       w->z.msg ? w->z.msg : "read error");
    return verdict(w, EN_SCAN_TRUNCATED, "%s", what);
}

static uint16_t u16(const uint8_t *p, int be)
{
    return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t u32(const uint8_t *p, int be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---- element headers ---------------------------------------------------- */

/* The standard VRs; those with 2 reserved bytes and a 32-bit length come
 * first. */
static const char *const vrs[] = {
    "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV",
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN",
    "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US",
};
#define NLONG_VRS 13

/* 2 for a long-form VR, 1 for a short one, 0 for no standard VR. */
static int vr_kind(const uint8_t vr[2])
{
    for (size_t i = 0; i < sizeof vrs / sizeof vrs[0]; i++)
        if (vr[0] == (uint8_t)vrs[i][0] && vr[1] == (uint8_t)vrs[i][1])
            return i < NLONG_VRS ? 2 : 1;
    return 0;
}

typedef struct elem {
    uint32_t tag;
    uint32_t len;
    int sq;      /* explicit SQ */
    int un;      /* explicit UN */
} elem;

/* Zero bytes where an element belongs: walked as (0000,0000) elements of
 * length 0, as DCMTK does, but only so many.  Past the bound the file is
 * refused; whether it ends in zeros (a file still being written, or a
 * sparse one: "truncated") or not (zeros inside: "unknown") is told by its
 * last bytes. */
static int zero_element(walker *w, long long at)
{
    uint8_t tail[8];
    int zeros = 0;

    if (w->zero_from < 0)
        w->zero_from = at;
    w->zero_bytes += 8;
    if (w->zero_bytes <= EN_DICOM_SCAN_MAX_ZERO_BYTES)
        return 0;
    if (!w->inflating && w->size >= 8 && pread_full(w->fd, tail, 8, w->size - 8) == 8)
        zeros = !memcmp(tail, "\0\0\0\0\0\0\0\0", 8);
    return refuse(w, EN_EFORMAT, zeros ? EN_SCAN_TRUNCATED : EN_SCAN_UNKNOWN,
                  "more than %d zero bytes where data elements belong (from byte %lld): a "
                  "zero-filled or sparse file, or one still being written",
                  EN_DICOM_SCAN_MAX_ZERO_BYTES, w->zero_from);
}

/* Reads one element header.  Returns 1 on success, 0 when the walk must
 * stop (a verdict is set). */
static int header(walker *w, elem *e, enc c)
{
    uint8_t h[12];
    long long at = w->pos;

    if (!get(w, h, 8))
        return ended(w, "ends inside an element header"), 0;
    e->tag = TAG(u16(h, c.big_endian), u16(h + 2, c.big_endian));
    e->sq = e->un = 0;
    if (!memcmp(h, "\0\0\0\0\0\0\0\0", 8)) {
        e->len = 0;
        return zero_element(w, at) ? 0 : 1;
    }
    w->zero_from = -1;
    /* Items and delimiters have no VR in any syntax. */
    if ((e->tag >> 16) == 0xFFFE || !c.explicit_vr) {
        e->len = u32(h + 4, c.big_endian);
        return 1;
    }
    switch (vr_kind(h + 4)) {
    case 2:
        if (!get(w, h + 8, 4))
            return ended(w, "ends inside an element header"), 0;
        e->len = u32(h + 8, c.big_endian);
        e->sq = h[4] == 'S' && h[5] == 'Q';
        e->un = h[4] == 'U' && h[5] == 'N';
        return 1;
    case 1:
        e->len = u16(h + 6, c.big_endian);
        return 1;
    }
    return verdict(w, EN_SCAN_UNKNOWN, "malformed element header at byte %lld (no such VR)", at), 0;
}

/* ---- the walk ------------------------------------------------------------- */

static int walk_elements(walker *w, int depth, long long limit, int in_undefined_item, enc c);
static int walk_items(walker *w, int depth, int fragments, enc c);

/* Inside a trial, a length reaching past the value on trial ends the trial
 * before anything is read there (so stepping back stays in the window). */
static int overruns_trial(walker *w, unsigned long long len)
{
    return w->trial && w->pos + (long long)len > w->trial_end &&
           verdict(w, EN_SCAN_UNKNOWN, "past the value on trial");
}

static int deeper(walker *w, int depth)
{
    if (depth <= EN_DICOM_SCAN_MAX_DEPTH)
        return 0;
    return refuse(w, EN_ELIMIT, EN_SCAN_UNKNOWN, "sequences nested deeper than %d (at byte %lld)",
                  EN_DICOM_SCAN_MAX_DEPTH, w->pos);
}

static int counted(walker *w)
{
    if (++w->elements <= EN_DICOM_SCAN_MAX_ELEMENTS)
        return 0;
    return refuse(w, EN_ELIMIT, EN_SCAN_UNKNOWN, "more than %d data elements (at byte %lld)",
                  EN_DICOM_SCAN_MAX_ELEMENTS, w->pos);
}

/* The items of a defined-length sequence, which fill exactly len bytes. */
static int walk_sequence(walker *w, int depth, uint32_t len, enc c)
{
    long long end = w->pos + len;

    if (overruns_trial(w, len))
        return 1;
    if ((long long)len > left(w))
        return ended(w, "a sequence runs past the end of the file");
    while (w->pos < end) {
        elem it;
        if (counted(w) || !header(w, &it, (enc){ 0, c.big_endian }))
            return 1;
        if (it.tag != ITEM)
            return verdict(w, EN_SCAN_UNKNOWN, "a sequence holds a non-item at byte %lld", w->pos - 8);
        if (it.len == UNDEFINED) {
            if (walk_elements(w, depth, -1, 1, c))
                return 1;
        } else {
            long long iend = w->pos + it.len;
            if (iend > end)
                return verdict(w, EN_SCAN_UNKNOWN, "an item overruns its sequence");
            if (walk_elements(w, depth, iend, 0, c))
                return 1;
        }
    }
    if (w->pos != end)
        return verdict(w, EN_SCAN_UNKNOWN, "a sequence's items overrun it");
    return 0;
}

/* Steps back to a position still in the window (after a failed trial). */
static int back_to(walker *w, long long to)
{
    if (w->inflating && to < w->woff)
        return verdict(w, EN_SCAN_UNKNOWN, "internal: cannot step back to byte %lld", to);
    w->pos = to;
    return 0;
}

/* An implicit VR value of len bytes that starts with an item tag: walked as
 * a sequence on trial; if it is none, skipped as data. */
static int try_sequence(walker *w, int depth, uint32_t len, enc c)
{
    long long end = w->pos + len, outer_end = w->trial_end;
    int r;

    w->trial++;
    w->trial_end = end;
    r = walk_sequence(w, depth, len, c);
    if (w->out->refuse)
        return 1;
    w->trial--;
    w->trial_end = outer_end;
    if (!r && w->pos == end)
        return 0;
    if (w->pos > end)
        return back_to(w, end);
    return skip(w, (unsigned long long)(end - w->pos)) ? 0 : ended(w, "a value runs past the end "
                                                                   "of the file");
}

static int starts_with_item(walker *w, enc c)
{
    uint8_t t[4];
    return peek(w, t, 4) && u16(t, c.big_endian) == 0xFFFE && u16(t + 2, c.big_endian) == 0xE000;
}

/* Walks elements until the end of the data (depth 0), an item delimiter
 * (inside an undefined-length item) or limit (a defined-length item).
 * Returns 0 to go on, 1 when a verdict was reached. */
static int walk_elements(walker *w, int depth, long long limit, int in_undefined_item, enc c)
{
    for (;;) {
        elem e;
        if (limit >= 0 && w->pos == limit)
            return 0;
        if (depth == 0 && at_end(w))
            return w->zero_from < 0
                ? verdict(w, EN_SCAN_COMPLETE, "%ld elements, ends on the last one", w->elements)
                : verdict(w, EN_SCAN_COMPLETE, "%ld elements, then %lld bytes of zeros",
                          w->elements, w->pos - w->zero_from);
        if (w->trial && w->pos > w->trial_end)
            return verdict(w, EN_SCAN_UNKNOWN, "past the value on trial");
        if (counted(w) || !header(w, &e, c))
            return 1;
        if (e.tag == ITEM_END) {
            if (in_undefined_item)
                return 0;
            return verdict(w, EN_SCAN_UNKNOWN, "stray item delimiter at byte %lld", w->pos - 8);
        }
        if ((e.tag >> 16) == 0xFFFE)
            return verdict(w, EN_SCAN_UNKNOWN, "stray item tag at byte %lld", w->pos - 8);
        if (e.len == UNDEFINED) {
            /* DCMTK reads an undefined-length UN as a sequence in implicit VR. */
            enc inner = e.un ? (enc){ 0, 0 } : c;
            if (deeper(w, depth + 1) || walk_items(w, depth + 1, e.tag == PIXEL_DATA && !e.sq, inner))
                return 1;
        } else if (e.sq && e.len > 0) {
            if (deeper(w, depth + 1) || walk_sequence(w, depth + 1, e.len, c))
                return 1;
        } else if (!c.explicit_vr && e.len >= 8 && e.tag != PIXEL_DATA && starts_with_item(w, c)) {
            if (deeper(w, depth + 1) || try_sequence(w, depth + 1, e.len, c))
                return 1;
        } else if (overruns_trial(w, e.len)) {
            return 1;
        } else if ((long long)e.len > left(w)) {
            return verdict(w, EN_SCAN_TRUNCATED, "an element's value runs past the end of the file "
                           "(%lld bytes missing)", (long long)e.len - left(w));
        } else if (!skip(w, e.len)) {
            return ended(w, "an element's value runs past the end of the data");
        }
        if (limit >= 0 && w->pos > limit)
            return verdict(w, EN_SCAN_UNKNOWN, "an element overruns its item");
    }
}

/* The items of an undefined-length sequence, or the fragments of
 * encapsulated pixel data, up to the sequence delimiter. */
static int walk_items(walker *w, int depth, int fragments, enc c)
{
    for (;;) {
        elem it;
        if (w->trial && w->pos > w->trial_end)
            return verdict(w, EN_SCAN_UNKNOWN, "past the value on trial");
        if (counted(w))
            return 1;
        if (!w->inflating && w->pos == w->size)
            return verdict(w, EN_SCAN_TRUNCATED, "a sequence is not closed (its delimiter "
                           "is missing at the end)");
        if (!header(w, &it, (enc){ 0, c.big_endian }))
            return 1;
        if (it.tag == SEQ_END)
            return 0;
        if (it.tag != ITEM)
            return verdict(w, EN_SCAN_UNKNOWN, "a sequence holds a non-item at byte %lld",
                           w->pos - 8);
        if (it.len == UNDEFINED) {
            if (fragments)
                return verdict(w, EN_SCAN_UNKNOWN, "a pixel data fragment of undefined length");
            if (walk_elements(w, depth, -1, 1, c))
                return 1;
        } else if (overruns_trial(w, it.len)) {
            return 1;
        } else if (fragments) {
            if ((long long)it.len > left(w) || !skip(w, it.len))
                return ended(w, "a pixel data fragment runs past the end of the file");
        } else {
            if ((long long)it.len > left(w))
                return ended(w, "an item runs past the end of the file");
            if (walk_elements(w, depth, w->pos + it.len, 0, c))
                return 1;
        }
    }
}

/* ---- where the data set starts -------------------------------------------- */

/* Starts inflating the data set at the walk position. */
static int start_inflating(walker *w)
{
    memset(&w->z, 0, sizeof w->z);
    if (inflateInit2(&w->z, -MAX_WBITS) != Z_OK)
        return verdict(w, EN_SCAN_UNKNOWN, "cannot start inflating the deflated data set");
    w->inflating = 1;
    w->dstart = w->zin = w->pos;
    w->woff = w->pos;
    w->wlen = 0;
    return 0;
}

/* The file meta group: explicit VR little endian, and the transfer
 * syntax that says how the rest is encoded. */
static int meta(walker *w, enc *c)
{
    char ts[68] = "";
    for (;;) {
        uint8_t g[2];
        elem e;
        if (!peek(w, g, 2))
            return verdict(w, EN_SCAN_TRUNCATED, "ends inside the file meta information");
        if (u16(g, 0) != 0x0002)
            break;
        if (!header(w, &e, (enc){ 1, 0 }))
            return 1;
        if (e.len == UNDEFINED || (long long)e.len > left(w))
            return verdict(w, e.len == UNDEFINED ? EN_SCAN_UNKNOWN : EN_SCAN_TRUNCATED,
                           "the file meta information is cut or malformed");
        if (e.tag == TAG(0x0002, 0x0010) && e.len < sizeof ts) {
            if (!get(w, ts, e.len))
                return verdict(w, EN_SCAN_TRUNCATED, "ends inside the transfer syntax");
            ts[e.len] = '\0';
            for (size_t i = strlen(ts); i > 0 && (ts[i - 1] == '\0' || ts[i - 1] == ' '); i--)
                ts[i - 1] = '\0';
        } else {
            w->pos += e.len;
        }
        if (w->pos == w->size)
            return verdict(w, EN_SCAN_TRUNCATED, "has file meta information but no dataset");
    }
    if (!ts[0])
        return verdict(w, EN_SCAN_UNKNOWN, "no transfer syntax in the file meta information");
    c->explicit_vr = strcmp(ts, "1.2.840.10008.1.2") != 0;
    c->big_endian = !strcmp(ts, "1.2.840.10008.1.2.2");
    return !strcmp(ts, DEFLATED_TS) ? start_inflating(w) : 0;
}

/* A data set without the Part 10 header, read the way DCMTK guesses it:
 * explicit VR when the first element has a standard VR, big endian when
 * only that byte order makes its group small.  One that starts with the
 * meta group has it after all. */
static int raw_start(walker *w, enc *c)
{
    uint8_t h[6];

    w->raw = 1;
    w->pos = 0;
    if (!peek(w, h, 6))
        return verdict(w, EN_SCAN_UNKNOWN, "shorter than an element");
    if (u16(h, 0) == 0x0002)
        return meta(w, c);
    c->big_endian = u16(h, 0) > 0x00FF && u16(h, 1) <= 0x00FF;
    c->explicit_vr = vr_kind(h + 4) != 0;
    return 0;
}

/* 1 when the whole (short) file is zero bytes. */
static int all_zeros(walker *w)
{
    uint8_t buf[132];
    if (w->size == 0)
        return 1;
    if (pread_full(w->fd, buf, (size_t)w->size, 0) != w->size)
        return 0;
    for (long long i = 0; i < w->size; i++)
        if (buf[i])
            return 0;
    return 1;
}

static void walk_file(walker *w)
{
    uint8_t magic[4];
    enc c = { 1, 0 };

    if (w->size < 132 && all_zeros(w)) {
        /* Still inside the preamble: a file being written has zeros so far
         * (the usual preamble). */
        verdict(w, EN_SCAN_TRUNCATED, "shorter than the DICOM preamble");
        return;
    }
    w->pos = 128;
    if (w->size >= 132 && get(w, magic, 4) && memcmp(magic, "DICM", 4) == 0) {
        w->out->part10 = 1;
        if (meta(w, &c))
            return;
    } else if (raw_start(w, &c)) {
        return;
    }
    walk_elements(w, 0, -1, 0, c);
}

int en_dicom_scan_file(int dirfd, const char *name, en_dicom_scan *out, en_err *err)
{
    walker *w;
    struct stat st;
    int fd;

    memset(out, 0, sizeof *out);
    do
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return en_err_set(err, EN_EIO, "cannot open %s: %s", name, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return en_err_set(err, EN_EIO, "%s is not a readable regular file", name);
    }
    if (!(w = calloc(1, sizeof *w)) || !(w->win = malloc(WINDOW))) {
        free(w);
        close(fd);
        return en_err_set(err, EN_ENOMEM, "%s: out of memory for the structure check", name);
    }
    w->fd = fd;
    w->size = (long long)st.st_size;
    w->zero_from = -1;
    w->out = out;
    out->size = w->size;
    walk_file(w);
    if (w->inflating)
        inflateEnd(&w->z);
    free(w->win);
    free(w);
    close(fd);
    return EN_OK;
}

const char *en_dicom_scan_state_name(en_dicom_scan_state s)
{
    switch (s) {
    case EN_SCAN_COMPLETE: return "complete";
    case EN_SCAN_TRUNCATED: return "truncated";
    case EN_SCAN_UNKNOWN: return "unknown";
    }
    return "?";
}

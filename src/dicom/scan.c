/*
 * scan.c - structural completeness walk of a DICOM Part 10 file (see
 * en_dicom_scan.h).  Plain C on purpose: the daemon runs it in its own
 * process on files nobody has vetted, so it follows lengths and nothing
 * else.
 */
#include "en_dicom_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNDEFINED 0xFFFFFFFFu
#define TAG(g, e) (((uint32_t)(g) << 16) | (uint32_t)(e))
#define ITEM TAG(0xFFFE, 0xE000)
#define ITEM_END TAG(0xFFFE, 0xE00D)
#define SEQ_END TAG(0xFFFE, 0xE0DD)
#define PIXEL_DATA TAG(0x7FE0, 0x0010)

typedef struct walker {
    int fd;
    long long size;
    long long pos;
    int explicit_vr, big_endian;
    long elements;
    en_dicom_scan *out;
} walker;

/* A verdict, with the reason; returns 1 so callers can `return verdict(...)`
 * to stop the walk. */
static int verdict(walker *w, en_dicom_scan_state st, const char *fmt, ...)
{
    va_list ap;
    w->out->state = st;
    w->out->end = w->pos;
    va_start(ap, fmt);
    vsnprintf(w->out->detail, sizeof w->out->detail, fmt, ap);
    va_end(ap);
    return 1;
}

/* Reads n bytes at the walk position; 0 when the file ends first. */
static int get(walker *w, void *buf, size_t n)
{
    ssize_t r;
    if (w->pos + (long long)n > w->size)
        return 0;
    do
        r = pread(w->fd, buf, n, (off_t)w->pos);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)n)
        return 0;
    w->pos += (long long)n;
    return 1;
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

/* VRs whose explicit header has 2 reserved bytes and a 32-bit length. */
static int long_vr(const uint8_t vr[2])
{
    static const char *const l[] = { "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV",
                                     "UC", "UN", "UR", "UT", "UV" };
    for (size_t i = 0; i < sizeof l / sizeof l[0]; i++)
        if (vr[0] == (uint8_t)l[i][0] && vr[1] == (uint8_t)l[i][1])
            return 1;
    return 0;
}

typedef struct elem {
    uint32_t tag;
    uint32_t len;
    int sq;      /* explicit SQ, or undefined length (a sequence or fragments) */
} elem;

/* Reads one element header.  Returns 1 on success, 0 if the file ends
 * inside it (a verdict is set), -1 for a malformed header (verdict set). */
static int header(walker *w, elem *e, int explicit_vr, int be)
{
    uint8_t h[12];
    if (!get(w, h, 8))
        return verdict(w, EN_SCAN_TRUNCATED, "ends inside an element header"), 0;
    e->tag = TAG(u16(h, be), u16(h + 2, be));
    e->sq = 0;
    /* Items and delimiters have no VR in any syntax. */
    if ((e->tag >> 16) == 0xFFFE || !explicit_vr) {
        e->len = u32(h + 4, be);
        return 1;
    }
    if (h[4] < 'A' || h[4] > 'Z' || h[5] < 'A' || h[5] > 'Z')
        return verdict(w, EN_SCAN_UNKNOWN, "malformed element header at byte %lld", w->pos - 8), -1;
    if (long_vr(h + 4)) {
        if (!get(w, h + 8, 4))
            return verdict(w, EN_SCAN_TRUNCATED, "ends inside an element header"), 0;
        e->len = u32(h + 8, be);
        e->sq = h[4] == 'S' && h[5] == 'Q';
    } else {
        e->len = u16(h + 6, be);
    }
    return 1;
}

static int walk_items(walker *w, int depth, int fragments);

/* Walks elements until the end of the file (depth 0), an item delimiter
 * (inside an undefined-length item) or limit (a defined-length item).
 * Returns 0 to go on, 1 when a verdict was reached. */
static int walk_elements(walker *w, int depth, long long limit, int in_undefined_item)
{
    for (;;) {
        elem e;
        int r;
        if (limit >= 0 && w->pos == limit)
            return 0;
        if (depth == 0 && w->pos == w->size)
            return verdict(w, EN_SCAN_COMPLETE, "%ld elements, ends on the last one", w->elements);
        if (++w->elements > EN_DICOM_SCAN_MAX_ELEMENTS)
            return verdict(w, EN_SCAN_UNKNOWN, "more than %d elements", EN_DICOM_SCAN_MAX_ELEMENTS);
        if ((r = header(w, &e, w->explicit_vr, w->big_endian)) != 1)
            return 1;
        if (e.tag == ITEM_END) {
            if (in_undefined_item)
                return 0;
            return verdict(w, EN_SCAN_UNKNOWN, "stray item delimiter at byte %lld", w->pos - 8);
        }
        if ((e.tag >> 16) == 0xFFFE)
            return verdict(w, EN_SCAN_UNKNOWN, "stray item tag at byte %lld", w->pos - 8);
        if (e.len == UNDEFINED) {
            if (depth + 1 > EN_DICOM_SCAN_MAX_DEPTH)
                return verdict(w, EN_SCAN_UNKNOWN, "sequences nested deeper than %d",
                               EN_DICOM_SCAN_MAX_DEPTH);
            if (walk_items(w, depth + 1, e.tag == PIXEL_DATA && !e.sq))
                return 1;
        } else if (e.sq && e.len > 0) {
            long long end = w->pos + e.len;
            if (end > w->size)
                return verdict(w, EN_SCAN_TRUNCATED, "a sequence runs past the end of the file");
            /* A defined-length sequence: its items fill exactly len bytes. */
            while (w->pos < end) {
                elem it;
                if ((r = header(w, &it, 0, w->big_endian)) != 1)
                    return 1;
                if (it.tag != ITEM)
                    return verdict(w, EN_SCAN_UNKNOWN, "a sequence holds a non-item");
                if (it.len == UNDEFINED) {
                    if (walk_elements(w, depth + 1, -1, 1))
                        return 1;
                } else {
                    long long iend = w->pos + it.len;
                    if (iend > end)
                        return verdict(w, EN_SCAN_UNKNOWN, "an item overruns its sequence");
                    if (walk_elements(w, depth + 1, iend, 0))
                        return 1;
                }
            }
            if (w->pos != end)
                return verdict(w, EN_SCAN_UNKNOWN, "a sequence's items overrun it");
        } else {
            if (w->pos + (long long)e.len > w->size)
                return verdict(w, EN_SCAN_TRUNCATED, "an element's value runs past the end of "
                               "the file (%lld bytes missing)", w->pos + (long long)e.len - w->size);
            w->pos += e.len;
        }
        if (limit >= 0 && w->pos > limit)
            return verdict(w, EN_SCAN_UNKNOWN, "an element overruns its item");
    }
}

/* The items of an undefined-length sequence, or the fragments of
 * encapsulated pixel data, up to the sequence delimiter. */
static int walk_items(walker *w, int depth, int fragments)
{
    for (;;) {
        elem it;
        int r;
        if (++w->elements > EN_DICOM_SCAN_MAX_ELEMENTS)
            return verdict(w, EN_SCAN_UNKNOWN, "more than %d elements", EN_DICOM_SCAN_MAX_ELEMENTS);
        if (w->pos == w->size)
            return verdict(w, EN_SCAN_TRUNCATED, "a sequence is not closed (its delimiter "
                           "is missing at the end)");
        if ((r = header(w, &it, 0, w->big_endian)) != 1)
            return 1;
        if (it.tag == SEQ_END)
            return 0;
        if (it.tag != ITEM)
            return verdict(w, EN_SCAN_UNKNOWN, "a sequence holds a non-item at byte %lld",
                           w->pos - 8);
        if (it.len == UNDEFINED) {
            if (fragments)
                return verdict(w, EN_SCAN_UNKNOWN, "a pixel data fragment of undefined length");
            if (walk_elements(w, depth, -1, 1))
                return 1;
        } else if (fragments) {
            if (w->pos + (long long)it.len > w->size)
                return verdict(w, EN_SCAN_TRUNCATED, "a pixel data fragment runs past the end "
                               "of the file");
            w->pos += it.len;
        } else {
            long long end = w->pos + it.len;
            if (end > w->size)
                return verdict(w, EN_SCAN_TRUNCATED, "an item runs past the end of the file");
            if (walk_elements(w, depth, end, 0))
                return 1;
        }
    }
}

/* The file meta group: explicit VR little endian, and the transfer
 * syntax that says how the rest is encoded. */
static int meta(walker *w)
{
    char ts[68] = "";
    for (;;) {
        uint8_t g[2];
        elem e;
        long long at = w->pos;
        if (!get(w, g, 2))
            return verdict(w, EN_SCAN_TRUNCATED, "ends inside the file meta information");
        w->pos = at;
        if (u16(g, 0) != 0x0002)
            break;
        if (header(w, &e, 1, 0) != 1)
            return 1;
        if (e.len == UNDEFINED || w->pos + (long long)e.len > w->size)
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
    if (!strcmp(ts, "1.2.840.10008.1.2.1.99"))
        return verdict(w, EN_SCAN_UNKNOWN, "deflated dataset: not walked");
    w->explicit_vr = strcmp(ts, "1.2.840.10008.1.2") != 0;
    w->big_endian = !strcmp(ts, "1.2.840.10008.1.2.2");
    return 0;
}

/* 1 when the whole (short) file is zero bytes. */
static int zeros(walker *w)
{
    uint8_t buf[132];
    long long n = w->size;
    w->pos = 0;
    if (n == 0)
        return 1;
    if (!get(w, buf, (size_t)n))
        return 0;
    for (long long i = 0; i < n; i++)
        if (buf[i])
            return 0;
    return 1;
}

int en_dicom_scan_file(int dirfd, const char *name, en_dicom_scan *out, en_err *err)
{
    walker w;
    struct stat st;
    uint8_t magic[4];
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
    memset(&w, 0, sizeof w);
    w.fd = fd;
    w.size = (long long)st.st_size;
    w.out = out;
    out->size = w.size;
    w.pos = 128;
    if (w.size < 132) {
        /* Still inside the preamble: a file being written has zeros so far
         * (the usual preamble); anything else is not a DICOM file coming. */
        verdict(&w, zeros(&w) ? EN_SCAN_TRUNCATED : EN_SCAN_UNKNOWN,
                "shorter than the DICOM preamble");
    } else if (!get(&w, magic, 4) || memcmp(magic, "DICM", 4) != 0) {
        /* A raw dataset without the Part 10 header: nothing to measure
         * against. */
        w.pos = 0;
        verdict(&w, EN_SCAN_UNKNOWN, "no DICM magic at byte 128");
    } else if (!meta(&w)) {
        walk_elements(&w, 0, -1, 0);
    }
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

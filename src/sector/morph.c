/*
 * morph.c - the binary image tools the evidence step needs: Otsu's
 * threshold, square-window erosion and dilation, connected components.
 *
 * Erosion and dilation count the ones in a sliding window (separably, rows
 * then columns), so their cost does not grow with the window: a closing
 * wide enough to bridge the dark blood pool of a ventricle costs the same
 * as a 3x3 one.  The column pass keeps one running count per column and
 * walks the image row by row, which keeps memory access sequential.
 */
#include "sector-int.h"

#include <math.h>
#include <string.h>

/* Otsu's threshold with bin i standing for value v(i): the split that
 * maximises the between-class variance of v. */
static int otsu_mapped(const uint64_t hist[256], const double v[256])
{
    double total = 0, sum = 0, wb = 0, sumb = 0, best = -1;
    int t = 0;

    for (int i = 0; i < 256; i++) {
        total += (double)hist[i];
        sum += v[i] * (double)hist[i];
    }
    for (int i = 0; i < 255; i++) {
        double wf, mb, mf, between;

        wb += (double)hist[i];
        sumb += v[i] * (double)hist[i];
        wf = total - wb;
        if (wb <= 0)
            continue;
        if (wf <= 0)
            break;
        mb = sumb / wb;
        mf = (sum - sumb) / wf;
        between = wb * wf * (mb - mf) * (mb - mf);
        if (between > best) {
            best = between;
            t = i;
        }
    }
    return t;
}

int sec_otsu(const uint64_t hist[256])
{
    double v[256];
    for (int i = 0; i < 256; i++)
        v[i] = i;
    return otsu_mapped(hist, v);
}

int sec_otsu_log(const uint64_t hist[256])
{
    double v[256];
    for (int i = 0; i < 256; i++)
        v[i] = log1p(i);
    return otsu_mapped(hist, v);
}

int sec_hist_quantile(const uint64_t hist[256], double q)
{
    uint64_t total = 0, acc = 0, want;

    for (int i = 0; i < 256; i++)
        total += hist[i];
    want = (uint64_t)(q * (double)total);
    for (int i = 0; i < 256; i++) {
        acc += hist[i];
        if (acc > want)
            return i;
    }
    return 255;
}

/* One row, horizontally: out[x] = 1 when the window's in-image pixels are
 * all ones (erode) or hold any one (dilate). */
static void row_pass(const uint8_t *in, uint8_t *out, int cols, int r, int erode)
{
    int count = 0;

    for (int x = 0; x < r && x < cols; x++)
        count += in[x] != 0;
    for (int x = 0; x < cols; x++) {
        int lo = x - r < 0 ? 0 : x - r;
        int hi = x + r > cols - 1 ? cols - 1 : x + r;

        if (x + r < cols)
            count += in[x + r] != 0;
        out[x] = erode ? count == hi - lo + 1 : count > 0;
        if (x - r >= 0)
            count -= in[x - r] != 0;
    }
}

/* Vertical pass over the whole image, one running count per column. */
static void col_pass(const uint8_t *in, uint8_t *out, int32_t *cnt,
                     int rows, int cols, int r, int erode)
{
    memset(cnt, 0, (size_t)cols * sizeof *cnt);
    for (int y = 0; y < r && y < rows; y++)
        for (int x = 0; x < cols; x++)
            cnt[x] += in[(size_t)y * cols + x] != 0;
    for (int y = 0; y < rows; y++) {
        int lo = y - r < 0 ? 0 : y - r;
        int hi = y + r > rows - 1 ? rows - 1 : y + r;
        int full = hi - lo + 1;
        uint8_t *o = out + (size_t)y * cols;

        if (y + r < rows) {
            const uint8_t *add = in + (size_t)(y + r) * cols;
            for (int x = 0; x < cols; x++)
                cnt[x] += add[x] != 0;
        }
        for (int x = 0; x < cols; x++)
            o[x] = erode ? cnt[x] == full : cnt[x] > 0;
        if (y - r >= 0) {
            const uint8_t *sub = in + (size_t)(y - r) * cols;
            for (int x = 0; x < cols; x++)
                cnt[x] -= sub[x] != 0;
        }
    }
}

static void box_op(uint8_t *m, sec_scratch *sc, int rows, int cols, int r, int erode)
{
    if (r <= 0)
        return;
    for (int y = 0; y < rows; y++)
        row_pass(m + (size_t)y * cols, sc->tmp + (size_t)y * cols, cols, r, erode);
    col_pass(sc->tmp, m, sc->cnt, rows, cols, r, erode);
}

void sec_erode(uint8_t *m, sec_scratch *sc, int rows, int cols, int r)
{
    box_op(m, sc, rows, cols, r, 1);
}

void sec_dilate(uint8_t *m, sec_scratch *sc, int rows, int cols, int r)
{
    box_op(m, sc, rows, cols, r, 0);
}

void sec_open(uint8_t *m, sec_scratch *sc, int rows, int cols, int r)
{
    sec_erode(m, sc, rows, cols, r);
    sec_dilate(m, sc, rows, cols, r);
}

void sec_close(uint8_t *m, sec_scratch *sc, int rows, int cols, int r)
{
    sec_dilate(m, sc, rows, cols, r);
    sec_erode(m, sc, rows, cols, r);
}

/* Mean over the in-image part of a (2r+1)^2 window, in place: speckle is
 * noisy pixel by pixel, and a threshold on the raw values riddles the fan
 * with holes that an opening would then widen. */
void sec_box_mean(uint8_t *v, sec_scratch *sc, int rows, int cols, int r)
{
    if (r <= 0)
        return;
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = v + (size_t)y * cols;
        uint8_t *out = sc->tmp + (size_t)y * cols;
        int sum = 0;
        for (int x = 0; x < r && x < cols; x++)
            sum += in[x];
        for (int x = 0; x < cols; x++) {
            int lo = x - r < 0 ? 0 : x - r, hi = x + r > cols - 1 ? cols - 1 : x + r;
            if (x + r < cols)
                sum += in[x + r];
            out[x] = (uint8_t)((sum + (hi - lo + 1) / 2) / (hi - lo + 1));
            if (x - r >= 0)
                sum -= in[x - r];
        }
    }
    memset(sc->cnt, 0, (size_t)cols * sizeof *sc->cnt);
    for (int y = 0; y < r && y < rows; y++)
        for (int x = 0; x < cols; x++)
            sc->cnt[x] += sc->tmp[(size_t)y * cols + x];
    for (int y = 0; y < rows; y++) {
        int lo = y - r < 0 ? 0 : y - r, hi = y + r > rows - 1 ? rows - 1 : y + r;
        int k = hi - lo + 1;
        uint8_t *o = v + (size_t)y * cols;
        if (y + r < rows)
            for (int x = 0; x < cols; x++)
                sc->cnt[x] += sc->tmp[(size_t)(y + r) * cols + x];
        for (int x = 0; x < cols; x++)
            o[x] = (uint8_t)((sc->cnt[x] + k / 2) / k);
        if (y - r >= 0)
            for (int x = 0; x < cols; x++)
                sc->cnt[x] -= sc->tmp[(size_t)(y - r) * cols + x];
    }
}

/* Keeps the largest components, largest first, by insertion. */
static void keep_largest(sec_components *cc, int32_t id, long area)
{
    int i = cc->keep < SEC_MAX_COMPONENTS ? cc->keep++ : SEC_MAX_COMPONENTS;

    if (i == SEC_MAX_COMPONENTS && area <= cc->area[SEC_MAX_COMPONENTS - 1])
        return;
    if (i == SEC_MAX_COMPONENTS)
        i = SEC_MAX_COMPONENTS - 1;
    while (i > 0 && cc->area[i - 1] < area) {
        cc->area[i] = cc->area[i - 1];
        cc->id[i] = cc->id[i - 1];
        i--;
    }
    cc->area[i] = area;
    cc->id[i] = id;
}

/* Breadth-first flood of one component from seed; returns its area. */
static long flood(const uint8_t *m, int rows, int cols, int32_t *label,
                  int32_t *queue, int32_t seed, int32_t id)
{
    long head = 0, tail = 0;

    label[seed] = id;
    queue[tail++] = seed;
    while (head < tail) {
        int32_t p = queue[head++];
        int y = p / cols, x = p % cols;

        for (int dy = -1; dy <= 1; dy++) {
            int yy = y + dy;
            if (yy < 0 || yy >= rows)
                continue;
            for (int dx = -1; dx <= 1; dx++) {
                int xx = x + dx;
                int32_t q = yy * cols + xx;
                if (xx < 0 || xx >= cols || !m[q] || label[q])
                    continue;
                label[q] = id;
                queue[tail++] = q;
            }
        }
    }
    return tail;
}

void sec_label(const uint8_t *m, int rows, int cols, int32_t *label,
               int32_t *queue, sec_components *cc)
{
    int32_t n = (int32_t)rows * cols;

    memset(cc, 0, sizeof *cc);
    cc->label = label;
    memset(label, 0, (size_t)n * sizeof *label);
    for (int32_t p = 0; p < n; p++) {
        if (!m[p] || label[p])
            continue;
        cc->n++;
        keep_largest(cc, cc->n, flood(m, rows, cols, label, queue, p, cc->n));
    }
}

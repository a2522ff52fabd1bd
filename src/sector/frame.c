/*
 * frame.c - en_sector_frame: the fan as EchoNet-Dynamic's networks saw
 * their training videos.
 *
 * Order matters for deidentification.  Pixels outside the fan are zeroed
 * in the source first (the Clean Pixel Data step: burned-in names and
 * dates live outside the fan), so the resampling kernel cannot carry any
 * of them inwards; after resizing, the fan mask is applied again in output
 * space so that the kernel's ringing cannot leave a non-zero pixel outside.
 *
 * Framing.  The transform is a similarity without rotation: one scale and
 * a translation putting the apex at (61, 7) of 112x112 (proportionally
 * for other sizes).  The scale maps the fan's outer radius to 107 output
 * pixels (EN_ECHONET_RADIUS).  The other candidate rule, "the fan's widest
 * chord fills the width", gives radius 112 / (2 sin t): 79 px for a 45
 * degree half-angle, 98 px for 35 degrees, i.e. a fan much smaller than
 * in any training video.  The training videos were made by cropping the
 * scanner image to a square and resizing, so their depth fills the height
 * whatever the sector's angle: the radius rule reproduces that for every
 * angle, and the edges' angles (hence where the fan meets the sides: row
 * 68 at 45 degrees, row 94 at 35) follow from the probe, as they did in
 * training.  With the apex fixed, the scale is the only free choice.
 *
 * The resize is a crop of the matching square source window (black where
 * it leaves the image) and one bicubic libswscale pass.  The window has a
 * whole number of pixels, so the scale and apex actually used differ from
 * the ideal by under half a source pixel; en_sector_view reports the ones
 * used, and the output mask is built from them.
 *
 * Bicubic with B = 0, C = 0.75 is the kernel OpenCV's INTER_CUBIC uses
 * (a = -0.75), which upstream used to make the training videos.  (Unlike
 * OpenCV, libswscale widens the kernel when shrinking, i.e. low-pass
 * filters first; upstream's videos are a little more aliased.)
 */
#include "sector-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/mem.h>
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>

#define SEC_MAX_WINDOW 8192   /* source window side: 64 MiB at most */

/* The source square that becomes the output. */
typedef struct window {
    int x0, y0, w;   /* top-left source pixel and side */
    double k;        /* output pixels per source pixel */
} window;

static int plan_window(const en_sector *s, int size, window *win, en_sector *view,
                       en_err *err)
{
    sec_model m;
    double want, ax, ay;

    if (!s || sec_model_init(&m, s) != 0)
        return en_err_set(err, EN_EINVAL, "sector: not a valid fan geometry");
    if (size < 8 || size > 4096)
        return en_err_set(err, EN_EINVAL, "sector: output size %d outside 8..4096", size);
    if (fabs(s->apex_x) > 1e6 || fabs(s->apex_y) > 1e6)
        return en_err_set(err, EN_EINVAL, "sector: apex far outside the image");
    want = size / (double)EN_ECHONET_SIZE * EN_ECHONET_RADIUS / s->radius;
    if (!(size / want <= SEC_MAX_WINDOW))
        return en_err_set(err, EN_EINVAL, "sector: fan radius %.0f px too large to frame",
                          s->radius);
    win->w = (int)lround(size / want);
    if (win->w < 2)
        win->w = 2;
    win->k = size / (double)win->w;
    /* Ideal output apex, pixel centres scaled with the image. */
    ax = (EN_ECHONET_APEX_X + 0.5) * size / EN_ECHONET_SIZE - 0.5;
    ay = (EN_ECHONET_APEX_Y + 0.5) * size / EN_ECHONET_SIZE - 0.5;
    /* swscale maps output centre u to window position (u + 0.5)/k - 0.5. */
    win->x0 = (int)floor(s->apex_x + 0.5 - (ax + 0.5) / win->k + 0.5);
    win->y0 = (int)floor(s->apex_y + 0.5 - (ay + 0.5) / win->k + 0.5);
    *view = *s;
    view->apex_x = (s->apex_x + 0.5 - win->x0) * win->k - 0.5;
    view->apex_y = (s->apex_y + 0.5 - win->y0) * win->k - 0.5;
    view->radius = s->radius * win->k;
    view->radius_inner = s->radius_inner * win->k;
    view->top_y = (s->top_y + 0.5 - win->y0) * win->k - 0.5;
    sec_model_area(view, size, size, &view->x0, &view->y0, &view->x1, &view->y1);
    return EN_OK;
}

int en_sector_view(const en_sector *s, int size, en_sector *view, en_err *err)
{
    window win;
    return plan_window(s, size, &win, view, err);
}

/* Grey of pixel p.  For RGB, BT.601 luma: on grey B-mode pixels (R = G = B)
 * it equals channel 0, which is what upstream fed the network; on colour
 * Doppler pixels it keeps a brightness of the flow rather than its red
 * part alone (channel 0 would turn blue flow black). */
static inline uint8_t grey_at(const uint8_t *px, int channels)
{
    if (channels == 1)
        return px[0];
    return (uint8_t)((77 * px[0] + 150 * px[1] + 29 * px[2] + 128) >> 8);
}

/* Everything one call needs besides the frames. */
typedef struct framer {
    window win;
    en_sector view;
    int size;
    uint8_t *smask;          /* source fan mask */
    uint8_t *omask;          /* output fan mask */
    uint8_t *wbuf, *obuf;    /* window and output, aligned for swscale */
    int wstride, ostride;
    int cx0, cx1, cy0, cy1;  /* source pixels copied: fan box within window */
    struct SwsContext *sws;
} framer;

static void framer_free(framer *fr)
{
    free(fr->smask);
    free(fr->omask);
    av_free(fr->wbuf);
    av_free(fr->obuf);
    sws_freeContext(fr->sws);
}

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

static int framer_init(framer *fr, const en_frames *in, const en_sector *s, int size,
                       en_err *err)
{
    static const double bicubic[2] = { 0.0, 0.75 };  /* OpenCV's kernel */
    int rc, bx0, by0, bx1, by1;

    memset(fr, 0, sizeof *fr);
    if ((rc = plan_window(s, size, &fr->win, &fr->view, err)) != 0)
        return rc;
    fr->size = size;
    fr->wstride = (fr->win.w + 63) & ~63;
    fr->ostride = (size + 63) & ~63;
    fr->smask = malloc((size_t)in->rows * in->cols);
    fr->omask = malloc((size_t)size * size);
    fr->wbuf = av_mallocz((size_t)fr->wstride * fr->win.w);
    fr->obuf = av_malloc((size_t)fr->ostride * size);
    if (!fr->smask || !fr->omask || !fr->wbuf || !fr->obuf)
        return en_err_set(err, EN_ENOMEM, "sector: out of memory framing %dx%d",
                          in->cols, in->rows);
    en_sector_mask(s, in->rows, in->cols, fr->smask);
    en_sector_mask(&fr->view, size, size, fr->omask);
    sec_model_area(s, in->rows, in->cols, &bx0, &by0, &bx1, &by1);
    fr->cx0 = imax(bx0, fr->win.x0);
    fr->cy0 = imax(by0, fr->win.y0);
    fr->cx1 = imin(bx1, fr->win.x0 + fr->win.w - 1);
    fr->cy1 = imin(by1, fr->win.y0 + fr->win.w - 1);
    fr->sws = sws_getContext(fr->win.w, fr->win.w, AV_PIX_FMT_GRAY8, size, size,
                             AV_PIX_FMT_GRAY8, SWS_BICUBIC | SWS_ACCURATE_RND,
                             NULL, NULL, bicubic);
    if (!fr->sws)
        return en_err_set(err, EN_ECODEC, "sector: libswscale refused %dx%d -> %dx%d",
                          fr->win.w, fr->win.w, size, size);
    return EN_OK;
}

/* Fan pixels of frame i into the window (the rest of it stays black). */
static void fill_window(const framer *fr, const en_frames *in, int i)
{
    const uint8_t *src = en_frames_frame(in, i);

    for (int y = fr->cy0; y <= fr->cy1; y++) {
        const uint8_t *m = fr->smask + (size_t)y * in->cols;
        const uint8_t *p = src + (size_t)y * in->cols * in->channels;
        uint8_t *w = fr->wbuf + (size_t)(y - fr->win.y0) * fr->wstride;
        for (int x = fr->cx0; x <= fr->cx1; x++)
            w[x - fr->win.x0] = m[x] ? grey_at(p + (size_t)x * in->channels, in->channels) : 0;
    }
}

static int frame_one(framer *fr, const en_frames *in, int i, en_frames *out, en_err *err)
{
    const uint8_t *const srcp[4] = { fr->wbuf, NULL, NULL, NULL };
    const int srcs[4] = { fr->wstride, 0, 0, 0 };
    uint8_t *const dstp[4] = { fr->obuf, NULL, NULL, NULL };
    const int dsts[4] = { fr->ostride, 0, 0, 0 };
    uint8_t *o = en_frames_frame(out, i);

    fill_window(fr, in, i);
    if (sws_scale(fr->sws, srcp, srcs, 0, fr->win.w, dstp, dsts) != fr->size)
        return en_err_set(err, EN_ECODEC, "sector: libswscale failed on frame %d", i);
    for (int y = 0; y < fr->size; y++) {
        const uint8_t *b = fr->obuf + (size_t)y * fr->ostride;
        const uint8_t *m = fr->omask + (size_t)y * fr->size;
        for (int x = 0; x < fr->size; x++)
            o[(size_t)y * fr->size + x] = m[x] ? b[x] : 0;
    }
    return EN_OK;
}

int en_sector_frame(const en_frames *in, const en_sector *s, int size,
                    en_frames *out, en_err *err)
{
    framer fr;
    int rc;

    memset(out, 0, sizeof *out);
    if (!in || !in->data || in->nframes <= 0 || in->rows <= 0 || in->cols <= 0 ||
        (in->channels != 1 && in->channels != 3))
        return en_err_set(err, EN_EINVAL, "sector: no frames to frame");
    rc = framer_init(&fr, in, s, size, err);
    if (rc == 0 && (rc = en_frames_alloc(out, in->nframes, size, size, 1)) != 0)
        en_err_set(err, rc, "sector: out of memory for %d frames of %dx%d",
                   in->nframes, size, size);
    for (int i = 0; rc == 0 && i < in->nframes; i++)
        rc = frame_one(&fr, in, i, out, err);
    framer_free(&fr);
    if (rc != 0)
        en_frames_free(out);
    return rc;
}

/*
 * video_synth.h - a deterministic, echo-like synthetic cine loop for the
 * video tests: black outside a fan-shaped sector (as EchoNet expects), and
 * inside it a depth gradient, a slow texture, a dark chamber that beats and
 * a bright wall segment that moves, so frames differ and edges exist.
 * The RGB variant tints the same picture so the three channels differ.
 */
#ifndef EN_VIDEO_SYNTH_H
#define EN_VIDEO_SYNTH_H

#include "en_frames.h"

#include <stdint.h>
#include <stdlib.h>

static inline int vs_clamp(int v)
{
    return v < 0 ? 0 : v > 255 ? 255 : v;
}

/* 1 when (x, y) lies inside the sector: apex at the top centre, half-angle
 * about 40 degrees, radius 95% of the height. */
static inline int vs_in_fan(int x, int y, int w, int h)
{
    long dx = x - w / 2, dy = y;
    long r = (long)h * 95 / 100;

    return dy > 0 && labs(dx) * 6 <= dy * 5 && dx * dx + dy * dy <= r * r;
}

static inline uint8_t vs_grey(int f, int x, int y, int w, int h)
{
    long cx, cy, rx, ry, dx, dy;
    int v;

    if (!vs_in_fan(x, y, w, h))
        return 0;
    v = 50 + y * 110 / h + ((x + y + f) / 4) % 8 * 3;
    /* chamber: a dark ellipse whose size beats over 16 frames */
    cx = w / 2;
    cy = h * 55 / 100;
    rx = w / 7 + (f % 16 < 8 ? f % 8 : 8 - f % 8);
    ry = h / 5;
    dx = x - cx;
    dy = y - cy;
    if (dx * dx * ry * ry + dy * dy * rx * rx <= rx * rx * ry * ry)
        v = 12;
    /* wall: a bright block sliding left and right */
    if (labs(x - (w / 3 + (f * 3) % (w / 3 + 1))) < w / 16 + 1 && labs(y - h * 3 / 4) < h / 20 + 1)
        v = 235;
    return (uint8_t)vs_clamp(v);
}

/* Fills frames (already allocated, channels 1 or 3) with the clip. */
static inline void vs_fill(en_frames *fr)
{
    for (int f = 0; f < fr->nframes; f++) {
        uint8_t *p = en_frames_frame(fr, f);
        for (int y = 0; y < fr->rows; y++)
            for (int x = 0; x < fr->cols; x++) {
                int g = vs_grey(f, x, y, fr->cols, fr->rows);
                uint8_t *px = p + ((size_t)y * (size_t)fr->cols + (size_t)x) * (size_t)fr->channels;
                if (fr->channels == 1) {
                    px[0] = (uint8_t)g;
                } else if (g == 0) {
                    px[0] = px[1] = px[2] = 0;
                } else {
                    /* a warm tint that drifts with depth: smooth chroma */
                    px[0] = (uint8_t)vs_clamp(g + 30);
                    px[1] = (uint8_t)vs_clamp(g + y * 20 / fr->rows - 10);
                    px[2] = (uint8_t)vs_clamp(g - 30);
                }
            }
    }
}

#endif

/*
 * en_frames.h - an 8-bit cine loop in memory: the currency between the DICOM
 * reader, the sector locator and the video writer.
 *
 * Pixels are interleaved, row-major, frame after frame:
 *   data[((f * rows + y) * cols + x) * channels + c]
 * channels is 1 (grey) or 3 (RGB).
 */
#ifndef EN_FRAMES_H
#define EN_FRAMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct en_frames {
    int nframes;
    int rows;
    int cols;
    int channels;
    uint8_t *data;
} en_frames;

/* Allocates zeroed storage; returns EN_ENOMEM / EN_EINVAL on failure. */
int en_frames_alloc(en_frames *f, int nframes, int rows, int cols, int channels);
void en_frames_free(en_frames *f);

static inline size_t en_frames_frame_bytes(const en_frames *f)
{
    return (size_t)f->rows * (size_t)f->cols * (size_t)f->channels;
}

static inline uint8_t *en_frames_frame(const en_frames *f, int i)
{
    return f->data + (size_t)i * en_frames_frame_bytes(f);
}

#endif

/*
 * frames.c - allocation of the in-memory cine loop (see en_frames.h).
 */
#include "en_frames.h"
#include "en_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int en_frames_alloc(en_frames *f, int nframes, int rows, int cols, int channels)
{
    size_t n;

    memset(f, 0, sizeof *f);
    if (nframes <= 0 || rows <= 0 || cols <= 0 || (channels != 1 && channels != 3))
        return EN_EINVAL;
    n = (size_t)rows * (size_t)cols * (size_t)channels;
    if ((size_t)nframes > SIZE_MAX / n)
        return EN_ENOMEM;
    f->data = calloc((size_t)nframes, n);
    if (!f->data)
        return EN_ENOMEM;
    f->nframes = nframes;
    f->rows = rows;
    f->cols = cols;
    f->channels = channels;
    return EN_OK;
}

void en_frames_free(en_frames *f)
{
    if (f) {
        free(f->data);
        memset(f, 0, sizeof *f);
    }
}

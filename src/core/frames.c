/*
 * frames.c - allocation of the in-memory cine loop (see en_frames.h).
 *
 * A decoded study is large (a 640x480 RGB loop of 200 frames is 184 MB) and
 * is written once, frame after frame, by the decoder.  With 4 KB pages the
 * kernel's faults for that first touch cost a third of a millisecond per
 * frame, as much as a quarter of libjpeg-turbo's decode; asking for
 * transparent huge pages cuts them to a tenth (docs/performance.md, "DICOM
 * JPEG Baseline decoding").
 */
#include "en_frames.h"
#include "en_err.h"
#include "en_util.h"

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
    /* A block this large is a fresh mapping that calloc does not clear (it
     * is zero already): nothing has touched it yet. */
    en_advise_huge(f->data, (size_t)nframes * n);
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

/*
 * video-read-test.c - reads a video with en_video_read and dumps the frames
 * raw, for tests/video_foreign.py to compare with what another encoder was
 * given.  Also handy by hand: what does our reader make of this file?
 *
 * usage: video-read-test IN RAW [channels]
 * Prints "nframes rows cols channels fps" on success; on failure prints
 * "CODE: message" to stderr and exits 1.
 */
#include "en_video.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int channels = argc > 3 ? atoi(argv[3]) : 1;
    en_frames fr;
    en_err err;
    double fps = 0;
    FILE *f;
    size_t n;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: %s IN RAW [channels]\n", argv[0]);
        return 2;
    }
    rc = en_video_read(argv[1], channels, &fr, &fps, &err);
    if (rc != EN_OK) {
        fprintf(stderr, "%s: %s\n", en_err_name(rc), err.msg);
        return 1;
    }
    n = en_frames_frame_bytes(&fr) * (size_t)fr.nframes;
    f = fopen(argv[2], "wb");
    if (!f || fwrite(fr.data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write %s\n", argv[0], argv[2]);
        en_frames_free(&fr);
        return 1;
    }
    printf("%d %d %d %d %.6f\n", fr.nframes, fr.rows, fr.cols, fr.channels, fps);
    en_frames_free(&fr);
    return 0;
}

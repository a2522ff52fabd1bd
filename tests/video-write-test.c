/*
 * video-write-test.c - writes the synthetic clip of video_synth.h with
 * en_video_write_avi, for tests/video_opencv.py to read back with OpenCV
 * and ffprobe.  The source pixels go to a raw file beside it, so the Python
 * side compares against the very bytes we encoded instead of re-deriving
 * them.
 *
 * usage: video-write-test OUT.avi RAW [fps [channels [frames [size]]]]
 * Prints "nframes rows cols channels fps" on success.
 */
#include "en_video.h"
#include "video_synth.h"

#include <stdio.h>
#include <stdlib.h>

static int write_raw(const char *path, const en_frames *fr)
{
    FILE *f = fopen(path, "wb");
    size_t n = en_frames_frame_bytes(fr) * (size_t)fr->nframes;
    int ok = f && fwrite(fr->data, 1, n, f) == n;

    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    double fps = argc > 3 ? atof(argv[3]) : 50.0;
    int channels = argc > 4 ? atoi(argv[4]) : 1;
    int nframes = argc > 5 ? atoi(argv[5]) : 40;
    int size = argc > 6 ? atoi(argv[6]) : 112;
    en_frames fr;
    en_err err;

    if (argc < 3) {
        fprintf(stderr, "usage: %s OUT.avi RAW [fps [channels [frames [size]]]]\n", argv[0]);
        return 2;
    }
    if (en_frames_alloc(&fr, nframes, size, size, channels) != EN_OK) {
        fprintf(stderr, "%s: bad clip shape\n", argv[0]);
        return 2;
    }
    vs_fill(&fr);
    if (en_video_write_avi(argv[1], &fr, fps, 2, &err) != EN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        en_frames_free(&fr);
        return 1;
    }
    if (write_raw(argv[2], &fr) != 0) {
        fprintf(stderr, "%s: cannot write %s\n", argv[0], argv[2]);
        en_frames_free(&fr);
        return 1;
    }
    printf("%d %d %d %d %.6f\n", fr.nframes, fr.rows, fr.cols, fr.channels, fps);
    en_frames_free(&fr);
    return 0;
}

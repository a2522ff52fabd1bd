/*
 * fuzz-avi.c - libFuzzer harness for the video reader (src/video/
 * avi_read.c over libavformat and libavcodec), which takes AVIs from
 * outside for the stages that accept them directly.  libav's demuxers and
 * decoders are Debian's and not instrumented; what is fuzzed is our side:
 * limits checked before each frame is stored, size changes refused, and
 * the conversion into en_frames.  Limits are small (64 frames, 512 px,
 * 16 MiB); odd-sized inputs are read as RGB and even-sized ones as grey,
 * so both output paths run without spending input bytes on a choice.
 */
#include "fuzz.h"

#include <string.h>

#include "en_video.h"
#include "video_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(data, size);
    vid_limits lim = { 64, 512, 16u << 20 };
    int channels = (size & 1) ? 3 : 1;
    en_frames frames;
    en_err err;
    double fps = -1;
    size_t bytes;
    unsigned sum = 0;
    int rc;

    memset(&frames, 0, sizeof frames);
    memset(&err, 0, sizeof err);
    rc = vid_read(path, channels, &lim, &frames, &fps, &err);
    FZ_CHECK(rc <= 0 && rc >= EN_EPERM);
    if (rc < 0) {
        FZ_CHECK(err.msg[0] != '\0');
        FZ_CHECK(frames.data == NULL);
        return 0;
    }
    FZ_CHECK(frames.nframes > 0 && frames.nframes <= lim.max_frames);
    FZ_CHECK(frames.rows > 0 && frames.rows <= lim.max_side);
    FZ_CHECK(frames.cols > 0 && frames.cols <= lim.max_side);
    FZ_CHECK(frames.channels == channels);
    FZ_CHECK(fps >= 0);
    bytes = en_frames_frame_bytes(&frames) * (size_t)frames.nframes;
    FZ_CHECK(bytes <= lim.max_bytes);
    for (size_t i = 0; i < bytes; i++)
        sum += frames.data[i];
    __asm__ volatile("" : : "r"(sum));
    en_frames_free(&frames);
    return 0;
}

/*
 * av_common.c - the glue both directions of the video module need: turning
 * libav error codes into our codes and messages, and naming pixel formats so
 * libswscale converts with the right range without complaining.
 */
#include "video_int.h"

#include <errno.h>
#include <stdio.h>

#include <libavutil/error.h>
#include <libavutil/pixfmt.h>

int vid_code(int averr)
{
    switch (averr) {
    case AVERROR(ENOMEM):
        return EN_ENOMEM;
    case AVERROR(ENOENT):
    case AVERROR(ENOTDIR):
        return EN_ENOTFOUND;
    case AVERROR(EACCES):
    case AVERROR(EPERM):
    case AVERROR(EROFS):
        return EN_EPERM;
    case AVERROR_INVALIDDATA:
        return EN_EFORMAT;
    case AVERROR(EINVAL):
        /* from libav this means parameters it cannot handle, not an OS
         * failure */
        return EN_ECODEC;
    case AVERROR_DECODER_NOT_FOUND:
    case AVERROR_ENCODER_NOT_FOUND:
    case AVERROR_DEMUXER_NOT_FOUND:
    case AVERROR_MUXER_NOT_FOUND:
    case AVERROR_PATCHWELCOME:
        return EN_EUNSUPPORTED;
    }
    /* AVERROR(e) is -e for every errno value; libav's own codes are
     * large negative FFERRTAG values far outside the errno range. */
    if (averr < 0 && averr > -4096)
        return EN_EIO;
    return EN_ECODEC;
}

#undef vid_fail /* video_int.h models it for the analyzer; defined here */
int vid_fail(en_err *err, const char *path, const char *what, int averr)
{
    char buf[AV_ERROR_MAX_STRING_SIZE];

    if (av_strerror(averr, buf, sizeof buf) < 0)
        snprintf(buf, sizeof buf, "libav error %d", averr);
    return en_err_set(err, vid_code(averr), "video '%s': %s: %s", path, what, buf);
}

enum AVPixelFormat vid_sws_format(enum AVPixelFormat fmt, int *full_range)
{
    switch (fmt) {
    case AV_PIX_FMT_YUVJ420P:
        *full_range = 1;
        return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P:
        *full_range = 1;
        return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P:
        *full_range = 1;
        return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P:
        *full_range = 1;
        return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P:
        *full_range = 1;
        return AV_PIX_FMT_YUV411P;
    default:
        return fmt;
    }
}

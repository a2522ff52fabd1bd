/*
 * en_video.h - writing and reading the 112x112 AVI that the networks take.
 *
 * MJPEG in an AVI container, as upstream writes with OpenCV's MJPG fourcc,
 * produced through libavformat/libavcodec.  Grey frames are written as
 * three equal channels.  Frames are stored as full-range YUVJ444P MJPEG
 * (grey passes through without a 16-235 squeeze, colour does not bleed into
 * the black surround), and identical input gives a byte-identical file.
 */
#ifndef EN_VIDEO_H
#define EN_VIDEO_H

#include "en_err.h"
#include "en_frames.h"

/* Writes frames (channels 1 or 3) to path at fps.  The file is written to a
 * temporary name beside path and renamed into place only when complete, so a
 * reader never sees half a video.  quality: MJPEG qscale 1 (best) .. 31. */
int en_video_write_avi(const char *path, const en_frames *frames, double fps,
                       int quality, en_err *err);

/* Reads any video libavformat understands into grey (channels = 1) or RGB
 * (channels = 3) frames; fps may be NULL and is set to 0 when the file
 * states no frame rate.  Used by tests and by later stages
 * that take AVIs directly. */
int en_video_read(const char *path, int channels, en_frames *frames,
                  double *fps, en_err *err);

#endif

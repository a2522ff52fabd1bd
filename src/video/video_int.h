/*
 * video_int.h - what the video module's files share: the memory limits the
 * reader enforces, the reader entry point that takes them (so tests can use
 * small limits), and the glue between libav's error codes and pixel formats
 * and ours.  Internal names carry the vid_ prefix; nothing here is API.
 */
#ifndef EN_VIDEO_INT_H
#define EN_VIDEO_INT_H

#include "en_err.h"
#include "en_frames.h"

#include <stddef.h>

#include <libavutil/pixfmt.h>

/* Bounds on what en_video_read will hold in memory.  A corrupt or hostile
 * file can claim any size; these stop it before it exhausts the daemon. */
typedef struct vid_limits {
    int max_frames;    /* frames decoded from one file */
    int max_side;      /* width or height in pixels */
    size_t max_bytes;  /* decoded pixels of the whole clip */
} vid_limits;

/* The defaults: a long echo clip is a few hundred frames of at most
 * 1024x768, so these leave a wide margin while keeping one clip under 2 GiB. */
#define VID_MAX_FRAMES 100000
#define VID_MAX_SIDE 16384
#define VID_MAX_BYTES ((size_t)2 << 30)

/* en_video_read with explicit limits. */
int vid_read(const char *path, int channels, const vid_limits *lim,
             en_frames *frames, double *fps, en_err *err);

/* Our code for a libav error: AVERROR(ENOMEM) -> EN_ENOMEM, missing file ->
 * EN_ENOTFOUND, permission -> EN_EPERM, invalid data -> EN_EFORMAT, missing
 * codec or format -> EN_EUNSUPPORTED, EINVAL and libav's own codes ->
 * EN_ECODEC, other OS errors -> EN_EIO. */
int vid_code(int averr);

/* Fills err with "video '<path>': <what>: <libav's text for averr>" and
 * returns the matching EN_* code. */
int vid_fail(en_err *err, const char *path, const char *what, int averr);
#ifdef __clang_analyzer__
/* For the analyzer, which cannot see av_common.c: vid_code, hence
 * vid_fail, always returns a negative EN_* code (see en_err.h). */
#define vid_fail(...) en__analyzer_failed(vid_fail(__VA_ARGS__))
#endif

/* libswscale warns, on every context, about the YUVJ ("JPEG range") pixel
 * formats.  The same memory layout is available as plain YUV with a
 * full-range flag: this returns that plain format and sets *full_range when
 * fmt is a YUVJ one, and returns fmt unchanged otherwise. */
enum AVPixelFormat vid_sws_format(enum AVPixelFormat fmt, int *full_range);

/* A libswscale context converting src's size and format to dst's, with the
 * ranges and matrix stated explicitly (see sws_conv.c).  Only the frames'
 * width, height, format, color_range and colorspace are looked at.  NULL
 * when libswscale cannot convert (or is out of memory). */
struct SwsContext;
struct AVFrame;
struct SwsContext *vid_sws_open(const struct AVFrame *src, const struct AVFrame *dst);

/* Output files are written through en_atomic_file (en_atomic.h). */
#include "en_atomic.h"

#endif

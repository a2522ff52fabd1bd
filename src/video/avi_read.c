/*
 * avi_read.c - en_video_read: any video libavformat can demux and libavcodec
 * can decode becomes an en_frames cine loop, grey (GRAY8) or RGB24.
 *
 * The reader is for our own AVIs and for later stages that take AVIs
 * directly, so it is strict: a decode error, or a picture size that changes
 * mid-stream, fails the whole file rather than yielding a clip with holes.
 * Memory is bounded by vid_limits (frames, side, total bytes), checked
 * before each frame is stored, since a file can claim anything.
 *
 * The path is handed to libavformat as "file:<path>" with only the file
 * protocol allowed, so a name is never taken for a URL and a playlist-type
 * input cannot make us open network resources.
 */
#include "en_video.h"
#include "video_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/dict.h>
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>

typedef struct vid_reader {
    const char *path;
    en_err *err;
    const vid_limits *lim;
    int channels;
    AVFormatContext *ic;
    AVCodecContext *dec;
    int stream;
    AVPacket *pkt;
    AVFrame *frame;          /* as decoded */
    AVFrame *out;            /* converted to GRAY8 / RGB24, padded */
    struct SwsContext *sws;
    int src_format;          /* pixel format sws was set up for */
    uint8_t *buf;            /* the frames so far, en_frames layout */
    size_t cap;
    int n;
} vid_reader;

/* ---- opening ------------------------------------------------------------- */

static int rd_open_input(vid_reader *r)
{
    AVDictionary *opts = NULL;
    char *url = av_asprintf("file:%s", r->path);
    int rc;

    if (!url)
        return vid_fail(r->err, r->path, "opening", AVERROR(ENOMEM));
    av_dict_set(&opts, "protocol_whitelist", "file", 0);
    rc = avformat_open_input(&r->ic, url, NULL, &opts);
    av_dict_free(&opts);
    av_free(url);
    if (rc < 0)
        return vid_fail(r->err, r->path, "cannot open as a video", rc);
    rc = avformat_find_stream_info(r->ic, NULL);
    if (rc < 0)
        return vid_fail(r->err, r->path, "cannot read stream information", rc);
    return EN_OK;
}

static int rd_open_decoder(vid_reader *r)
{
    const AVCodec *codec = NULL;
    const AVCodecParameters *par;
    int rc = av_find_best_stream(r->ic, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);

    if (rc == AVERROR_STREAM_NOT_FOUND)
        return en_err_set(r->err, EN_EFORMAT, "video '%s': the file has no video stream",
                          r->path);
    if (rc < 0)
        return vid_fail(r->err, r->path, "no decoder for the video stream", rc);
    r->stream = rc;
    par = r->ic->streams[r->stream]->codecpar;
    if (par->width > r->lim->max_side || par->height > r->lim->max_side)
        return en_err_set(r->err, EN_ELIMIT,
                          "video '%s': pictures of %dx%d exceed the limit of %d pixels a side",
                          r->path, par->width, par->height, r->lim->max_side);
    r->dec = avcodec_alloc_context3(codec);
    if (!r->dec)
        return vid_fail(r->err, r->path, "opening the decoder", AVERROR(ENOMEM));
    rc = avcodec_parameters_to_context(r->dec, par);
    if (rc < 0)
        return vid_fail(r->err, r->path, "opening the decoder", rc);
    r->dec->pkt_timebase = r->ic->streams[r->stream]->time_base;
    /* Fail on damaged data instead of concealing it (see the top). */
    r->dec->err_recognition |= AV_EF_EXPLODE;
    rc = avcodec_open2(r->dec, codec, NULL);
    if (rc < 0)
        return vid_fail(r->err, r->path, "opening the decoder", rc);
    r->pkt = av_packet_alloc();
    r->frame = av_frame_alloc();
    r->out = av_frame_alloc();
    if (!r->pkt || !r->frame || !r->out)
        return vid_fail(r->err, r->path, "allocating frames", AVERROR(ENOMEM));
    return EN_OK;
}

/* ---- storing decoded pictures ----------------------------------------- */

/* On the first picture: size the output frame.  On a change of pixel format
 * (some MJPEG sources switch sampling mid-stream): a new converter. */
static int rd_setup_conversion(vid_reader *r, const AVFrame *f)
{
    if (!r->out->data[0]) {
        if (f->width <= 0 || f->height <= 0 || f->width > r->lim->max_side ||
            f->height > r->lim->max_side)
            return en_err_set(r->err, EN_ELIMIT,
                              "video '%s': pictures of %dx%d exceed the limit of %d pixels a side",
                              r->path, f->width, f->height, r->lim->max_side);
        r->out->format = r->channels == 1 ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24;
        r->out->width = f->width;
        r->out->height = f->height;
        r->out->color_range = AVCOL_RANGE_JPEG;
        if (av_frame_get_buffer(r->out, 0) < 0)
            return vid_fail(r->err, r->path, "allocating frames", AVERROR(ENOMEM));
    } else if (f->width != r->out->width || f->height != r->out->height) {
        return en_err_set(r->err, EN_EFORMAT,
                          "video '%s': picture size changes from %dx%d to %dx%d at frame %d",
                          r->path, r->out->width, r->out->height, f->width, f->height,
                          r->n + 1);
    }
    if (r->sws && f->format == r->src_format)
        return EN_OK;
    sws_freeContext(r->sws);
    r->sws = vid_sws_open(f, r->out);
    r->src_format = f->format;
    if (!r->sws)
        return en_err_set(r->err, EN_EUNSUPPORTED,
                          "video '%s': cannot convert pixel format %d", r->path, f->format);
    return EN_OK;
}

/* Room for one more frame of frame_bytes, within the limits. */
static int rd_reserve(vid_reader *r, size_t frame_bytes)
{
    size_t need, cap;
    uint8_t *p;

    if (r->n >= r->lim->max_frames)
        return en_err_set(r->err, EN_ELIMIT, "video '%s': more than %d frames",
                          r->path, r->lim->max_frames);
    if (frame_bytes > r->lim->max_bytes / (size_t)(r->n + 1))
        return en_err_set(r->err, EN_ELIMIT,
                          "video '%s': more than %zu bytes of decoded pictures (at frame %d)",
                          r->path, r->lim->max_bytes, r->n + 1);
    need = (size_t)(r->n + 1) * frame_bytes;
    if (need <= r->cap)
        return EN_OK;
    cap = r->cap ? r->cap * 2 : frame_bytes * 64;
    if (cap < need)
        cap = need;
    if (cap > r->lim->max_bytes)
        cap = r->lim->max_bytes;
    p = realloc(r->buf, cap);
    if (!p)
        return en_err_set(r->err, EN_ENOMEM, "video '%s': out of memory at frame %d",
                          r->path, r->n + 1);
    r->buf = p;
    r->cap = cap;
    return EN_OK;
}

static int rd_store(vid_reader *r, const AVFrame *f)
{
    size_t row = (size_t)f->width * (size_t)r->channels;
    size_t frame_bytes = row * (size_t)f->height;
    uint8_t *dst;
    int rc = rd_setup_conversion(r, f);

    if (rc == EN_OK)
        rc = rd_reserve(r, frame_bytes);
    if (rc < 0)
        return rc;
    sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height,
              r->out->data, r->out->linesize);
    dst = r->buf + (size_t)r->n * frame_bytes;
    for (int y = 0; y < f->height; y++)
        memcpy(dst + (size_t)y * row, r->out->data[0] + (size_t)y * (size_t)r->out->linesize[0], row);
    r->n++;
    return EN_OK;
}

/* ---- decoding -------------------------------------------------------------- */

/* Sends one packet (NULL: end of stream) and stores every picture it yields. */
static int rd_decode(vid_reader *r, const AVPacket *pkt)
{
    int rc = avcodec_send_packet(r->dec, pkt);

    if (rc < 0)
        return vid_fail(r->err, r->path, "decoding", rc);
    for (;;) {
        rc = avcodec_receive_frame(r->dec, r->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return EN_OK;
        if (rc < 0)
            return vid_fail(r->err, r->path, "decoding", rc);
        rc = rd_store(r, r->frame);
        av_frame_unref(r->frame);
        if (rc < 0)
            return rc;
    }
}

/* An AVI cut at a frame boundary demuxes cleanly, but its header still
 * counts every frame: fewer decoded means the file is incomplete.  (Only
 * for AVI: in MP4 an edit list legitimately drops frames the header counts.) */
static int rd_check_count(const vid_reader *r)
{
    int64_t want = r->ic->streams[r->stream]->nb_frames;

    if (strcmp(r->ic->iformat->name, "avi") != 0 || want <= 0 || r->n >= want)
        return EN_OK;
    return en_err_set(r->err, EN_EFORMAT,
                      "video '%s': only %d of the %lld frames its header lists are present "
                      "(file cut short?)", r->path, r->n, (long long)want);
}

static int rd_decode_all(vid_reader *r)
{
    int rc;

    while ((rc = av_read_frame(r->ic, r->pkt)) >= 0) {
        if (r->pkt->stream_index == r->stream && (r->pkt->flags & AV_PKT_FLAG_CORRUPT))
            rc = en_err_set(r->err, EN_EFORMAT,
                            "video '%s': frame %d is damaged or cut short", r->path, r->n + 1);
        else if (r->pkt->stream_index == r->stream)
            rc = rd_decode(r, r->pkt);
        av_packet_unref(r->pkt);
        if (rc < 0)
            return rc;
    }
    if (rc != AVERROR_EOF)
        return vid_fail(r->err, r->path, "reading", rc);
    rc = rd_decode(r, NULL);
    if (rc == EN_OK && r->n == 0)
        rc = en_err_set(r->err, EN_EFORMAT, "video '%s': no picture could be decoded",
                        r->path);
    if (rc == EN_OK)
        rc = rd_check_count(r);
    return rc;
}

static double rd_fps(const vid_reader *r)
{
    const AVStream *st = r->ic->streams[r->stream];

    if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
        return av_q2d(st->avg_frame_rate);
    if (st->r_frame_rate.num > 0 && st->r_frame_rate.den > 0)
        return av_q2d(st->r_frame_rate);
    return 0.0;
}

static void rd_close(vid_reader *r)
{
    sws_freeContext(r->sws);
    av_frame_free(&r->frame);
    av_frame_free(&r->out);
    av_packet_free(&r->pkt);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->ic);
    free(r->buf);
}

/* ---- entry points ---------------------------------------------------------- */

int vid_read(const char *path, int channels, const vid_limits *lim,
             en_frames *frames, double *fps, en_err *err)
{
    vid_reader r = { .path = path, .err = err, .lim = lim, .channels = channels,
                     .stream = -1, .src_format = -1 };
    int rc;

    if (frames)
        memset(frames, 0, sizeof *frames);
    if (!path || !*path || !frames || !lim)
        return en_err_set(err, EN_EINVAL, "video: no input path or output given");
    if (channels != 1 && channels != 3)
        return en_err_set(err, EN_EINVAL, "video '%s': %d channels asked (need 1 or 3)",
                          path, channels);
    rc = rd_open_input(&r);
    if (rc == EN_OK)
        rc = rd_open_decoder(&r);
    if (rc == EN_OK)
        rc = rd_decode_all(&r);
    if (rc == EN_OK) {
        frames->nframes = r.n;
        frames->rows = r.out->height;
        frames->cols = r.out->width;
        frames->channels = channels;
        frames->data = r.buf;
        r.buf = NULL;
        if (fps)
            *fps = rd_fps(&r);
    }
    rd_close(&r);
    return rc;
}

int en_video_read(const char *path, int channels, en_frames *frames,
                  double *fps, en_err *err)
{
    static const vid_limits defaults = { VID_MAX_FRAMES, VID_MAX_SIDE, VID_MAX_BYTES };

    return vid_read(path, channels, &defaults, frames, fps, err);
}

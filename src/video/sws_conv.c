/*
 * sws_conv.c - one pixel conversion through libswscale with explicit ranges.
 *
 * libswscale assumes "limited" (16..235) range for GRAY8 and plain YUV
 * unless told otherwise, which would stretch or squash every grey level by
 * up to 20 steps.  Grey, RGB and JPEG video are all full range (0..255), so
 * every context here states both ranges and the BT.601 matrix that JPEG uses
 * (or the one the source video declares).  Measured: grey -> YUV -> grey and
 * YUV -> RGB of grey are then exact for all 256 levels.
 */
#include "video_int.h"

#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

/* Chroma is resampled with a bicubic filter from the full-resolution input
 * (FULL_CHR_H_INP) and interpolated to every output pixel (FULL_CHR_H_INT);
 * ACCURATE_RND trades a little speed for correct rounding.  At 112x112 the
 * cost is negligible. */
#define VID_SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP | \
                       SWS_FULL_CHR_H_INT)

static int vid_is_full_range(const AVFrame *f, enum AVPixelFormat fmt)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(fmt);

    if (f && f->color_range == AVCOL_RANGE_JPEG)
        return 1;
    if (f && f->color_range == AVCOL_RANGE_MPEG)
        return 0;
    /* Unlabelled: RGB and grey are full range by nature; YUV is limited
     * unless it is one of the YUVJ formats (handled by the caller). */
    return d && ((d->flags & AV_PIX_FMT_FLAG_RGB) || d->nb_components <= 2);
}

struct SwsContext *vid_sws_open(const AVFrame *src, const AVFrame *dst)
{
    enum AVPixelFormat sf = src->format, df = dst->format;
    int sfull = 0, dfull = 0, sspace = SWS_CS_ITU601;
    struct SwsContext *c;

    sf = vid_sws_format(sf, &sfull);
    df = vid_sws_format(df, &dfull);
    sfull = sfull || vid_is_full_range(src, sf);
    dfull = dfull || vid_is_full_range(dst, df);
    if (src->colorspace == AVCOL_SPC_BT709)
        sspace = SWS_CS_ITU709;
    else if (src->colorspace == AVCOL_SPC_BT2020_NCL || src->colorspace == AVCOL_SPC_BT2020_CL)
        sspace = SWS_CS_BT2020;

    c = sws_getContext(src->width, src->height, sf, dst->width, dst->height, df,
                       VID_SWS_FLAGS, NULL, NULL, NULL);
    if (!c)
        return NULL;
    /* Fails only for formats without a matrix (RGB to RGB); the default
     * then is already right. */
    sws_setColorspaceDetails(c, sws_getCoefficients(sspace), sfull,
                             sws_getCoefficients(SWS_CS_ITU601), dfull,
                             0, 1 << 16, 1 << 16);
    return c;
}

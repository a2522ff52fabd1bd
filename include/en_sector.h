/*
 * en_sector.h - locating the ultrasound fan in a cine loop, and framing it
 * the way EchoNet-Dynamic's training videos are framed.
 *
 * The fan is modelled as an annular sector: an apex (possibly above the
 * image), two straight edges at angles measured from straight down (left
 * edge negative, right edge positive), an outer radius, an inner radius
 * when the near field starts on an arc, and a row above which nothing is
 * fan when the top is cut flat (a region box's top, a truncated apex).  Everything
 * outside the fan (burned-in text, ECG traces, rulers, colour bars) is
 * removed by zeroing it, which is also the Clean Pixel Data step of
 * deidentification.
 */
#ifndef EN_SECTOR_H
#define EN_SECTOR_H

#include <stdint.h>

#include "en_dicom.h"
#include "en_err.h"
#include "en_frames.h"

typedef enum en_sector_method {
    EN_SECTOR_REGIONS = 0,  /* SequenceOfUltrasoundRegions, checked against pixels */
    EN_SECTOR_MOTION,       /* pixels that change over time */
    EN_SECTOR_INTENSITY     /* single frame: largest bright compact region */
} en_sector_method;

const char *en_sector_method_name(en_sector_method m); /* "regions", ... */

typedef struct en_sector {
    en_sector_method method;
    double apex_x, apex_y;          /* source pixels; y may be negative */
    double angle_left, angle_right; /* radians from +y (down); left < 0 < right */
    double radius_inner;            /* 0 for a point apex */
    double radius;                  /* outer radius, source pixels */
    double top_y;                   /* flat-cut top: rows above are outside
                                     * (0 = not cut; the image starts there) */
    int x0, y0, x1, y1;             /* bounding box in the image, inclusive */
    double confidence;              /* 0..1: agreement of model and pixels */
    char detail[160];               /* how it was found, for the user */
} en_sector;

/* Locates the fan.  info supplies the ultrasound regions (may be NULL).
 * Returns EN_ENOTFOUND with a message saying why when no plausible fan
 * exists (e.g. a blank or text-only image). */
int en_sector_locate(const en_frames *frames, const en_dicom_info *info,
                     en_sector *out, en_err *err);

/* Rasterises the sector model: mask[y*cols+x] = 1 where the pixel centre
 * (x, y) lies between the edges, radius_inner <= distance <= radius and
 * y >= top_y; 0 elsewhere (all 0 for an unusable model). */
void en_sector_mask(const en_sector *s, int rows, int cols, uint8_t *mask);

/* Where EchoNet-Dynamic's released 112x112 videos put the fan. */
#define EN_ECHONET_SIZE 112
#define EN_ECHONET_APEX_X 61.0
#define EN_ECHONET_APEX_Y 7.0
#define EN_ECHONET_RADIUS 107.0

/* Produces the network's view: grey (BT.601 luma for RGB), the fan alone,
 * square, apex at (EN_ECHONET_APEX_X, EN_ECHONET_APEX_Y), scaled so the
 * outer radius is EN_ECHONET_RADIUS (both in 112-pixel units, scaled for
 * other sizes; a 45-degree fan then spans the width from row ~68, as in the
 * training videos), bicubic-resized to size x size, exactly 0 outside the
 * fan.  out is allocated here with channels = 1 (the writer replicates grey
 * to 3 channels); EN_EINVAL for an unusable geometry or size. */
int en_sector_frame(const en_frames *in, const en_sector *s, int size,
                    en_frames *out, en_err *err);

/* The fan as en_sector_frame places it in its size x size output: apex,
 * radii and bounding box in output pixels, angles unchanged (the ones
 * actually used, after rounding the source window to whole pixels), so
 * en_sector_mask(view, size, size, m) is exactly the output's fan mask.
 * Returns EN_EINVAL for an unusable geometry or size. */
int en_sector_view(const en_sector *s, int size, en_sector *view, en_err *err);

#endif

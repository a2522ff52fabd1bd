/*
 * overlay.c - the segmentation-overlay video: every frame of the 112x112
 * video with the LV outline drawn in colour, the counterpart of upstream's
 * `--save_video` output, for a reader who wants to watch the segmentation
 * follow the ventricle through the beats.
 *
 * Upstream paints the whole mask into the blue channel; an outline leaves
 * the ventricle's own pixels visible, which is what a reader checks.  The
 * outline is the mask's boundary pixels (outline.c: an LV pixel with a
 * non-LV 4-neighbour), the same definition the report's key frames use.
 * Written by the video module, so it is MJPEG in an AVI like the network's
 * input, at MJPEG quality 2 (OpenCV's default), and atomically.
 */
#include "report_int.h"

#include <math.h>

#include "en_frames.h"
#include "en_video.h"

#define OVERLAY_QUALITY 2

static void paint_frame(uint8_t *rgb, const uint8_t *grey, const uint8_t *mask)
{
    for (int y = 0; y < EN_REPORT_SIDE; y++) {
        for (int x = 0; x < EN_REPORT_SIDE; x++) {
            int i = y * EN_REPORT_SIDE + x;
            uint8_t *px = rgb + 3 * i;
            if (rep_mask_edges(mask, EN_REPORT_SIDE, x, y)) {
                px[0] = EN_REPORT_OUTLINE_R;
                px[1] = EN_REPORT_OUTLINE_G;
                px[2] = EN_REPORT_OUTLINE_B;
            } else {
                px[0] = px[1] = px[2] = grey[i];
            }
        }
    }
}

int en_report_overlay_video(const uint8_t *frames, const uint8_t *masks, int n,
                            double fps, const char *path, en_err *err)
{
    const size_t plane = (size_t)EN_REPORT_SIDE * EN_REPORT_SIDE;
    en_frames out;
    int rc;

    if (!path || !*path)
        return en_err_set(err, EN_EINVAL, "overlay video: no output path given");
    if (!frames || !masks || n <= 0)
        return en_err_set(err, EN_EINVAL, "overlay video '%s': no frames given", path);
    if (!(fps > 0) || !isfinite(fps))
        return en_err_set(err, EN_EINVAL, "overlay video '%s': frame rate %g is not positive",
                          path, fps);
    rc = en_frames_alloc(&out, n, EN_REPORT_SIDE, EN_REPORT_SIDE, 3);
    if (rc)
        return en_err_set(err, rc, "overlay video '%s': out of memory for %d frames", path, n);
    for (int f = 0; f < n; f++)
        paint_frame(en_frames_frame(&out, f), frames + (size_t)f * plane,
                    masks + (size_t)f * plane);
    rc = en_video_write_avi(path, &out, fps, OVERLAY_QUALITY, err);
    en_frames_free(&out);
    return rc;
}

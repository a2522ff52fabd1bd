/*
 * fuzz-dicom-read.c - libFuzzer harness for the DICOM reader: DCMTK behind
 * src/dicom's C++ wrapper, with every transfer syntax it decodes (native,
 * deflated, JPEG, JPEG-LS, RLE, JPEG 2000).  It is what each study's child
 * process runs on a delivered file, the widest door to outside input.
 *
 * en_dicom.h has no entry point from memory, so the input goes through a
 * scratch file (fuzz.h).  Limits are small (64 frames, 512 x 512, 16 MiB),
 * as a tight configuration would set them, so libFuzzer spends its time on
 * parsing rather than on allocating legitimately large clips; the reader
 * must refuse everything beyond them before allocating.  On success the
 * clip must agree with the info and the limits, and every decoded byte is
 * read, so a short buffer is caught by ASan.
 */
#include "fuzz.h"

#include <string.h>

#include "en_dicom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(data, size);
    en_dicom_limits lim;
    en_dicom_info info;
    en_dicom_identity id;
    en_frames frames;
    en_err err;
    size_t bytes;
    unsigned sum = 0;
    int rc;

    en_dicom_limits_default(&lim);
    lim.max_frames = 64;
    lim.max_rows = 512;
    lim.max_cols = 512;
    lim.max_file_bytes = 16u << 20;
    lim.max_pixel_bytes = 16u << 20;
    memset(&frames, 0, sizeof frames);
    memset(&err, 0, sizeof err);
    rc = en_dicom_read(path, &lim, &info, &id, &frames, &err);
    FZ_CHECK(rc <= 0 && rc >= EN_EPERM);
    if (rc < 0) {
        FZ_CHECK(err.msg[0] != '\0');
        FZ_CHECK(frames.data == NULL);
        return 0;
    }
    FZ_CHECK(frames.data != NULL);
    FZ_CHECK(frames.nframes > 0 && (uint32_t)frames.nframes <= lim.max_frames);
    FZ_CHECK(frames.rows > 0 && (uint32_t)frames.rows <= lim.max_rows);
    FZ_CHECK(frames.cols > 0 && (uint32_t)frames.cols <= lim.max_cols);
    FZ_CHECK(frames.channels == 1 || frames.channels == 3);
    FZ_CHECK(frames.channels == info.channels);
    FZ_CHECK(frames.rows == info.rows && frames.cols == info.cols);
    FZ_CHECK(info.nregions >= 0 && info.nregions <= EN_DICOM_MAX_REGIONS);
    FZ_CHECK(info.nwarnings >= 0 && info.nwarnings <= EN_DICOM_MAX_WARNINGS);
    FZ_CHECK(info.fps > 0);
    bytes = en_frames_frame_bytes(&frames) * (size_t)frames.nframes;
    FZ_CHECK(bytes <= lim.max_pixel_bytes);
    for (size_t i = 0; i < bytes; i++)
        sum += frames.data[i];
    /* Kept observable, so the loop that reads every byte stays. */
    __asm__ volatile("" : : "r"(sum));
    en_frames_free(&frames);
    return 0;
}

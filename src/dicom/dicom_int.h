/*
 * dicom_int.h - what the two halves of the DICOM reader share (C++ only).
 *
 * dicom.cc loads, validates and decodes a file; dicom_attrs.cc reads the
 * attributes that do not need pixel data (frame rate, ultrasound regions,
 * identity, names).  Both go through the tolerant getters declared here,
 * because hostile or merely sloppy files store numbers with unexpected VRs
 * and the reader must never trust one.
 */
#ifndef EN_DICOM_INT_H
#define EN_DICOM_INT_H

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"

#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "en_dicom.h"
}

/* One en_dicom_read call: its arguments and what has been learnt so far. */
struct dcm_ctx {
    const char *path;
    const en_dicom_limits *lim;
    en_dicom_info *info;
    en_frames *frames;
    en_err *err;
    DcmFileFormat ff;
    DcmDataset *ds;
    E_TransferSyntax xfer;
    bool has_dicm;
    uint64_t file_bytes;
    bool invert; /* MONOCHROME1: flip output to MONOCHROME2 polarity */
};

/* JPEG 2000 (dicom_j2k.cc): DCMTK has no decoder, so frames go through
 * OpenJPEG when the build has it.  dcm_j2k_available() tells which. */
bool dcm_j2k_available(void);
bool dcm_is_j2k(E_TransferSyntax x);
/* Decodes every frame into c->frames (already allocated). */
int dcm_decode_j2k(dcm_ctx *c);

/* JPEG Baseline (dicom_jpeg.cc): libjpeg-turbo, with DCMTK's output.
 * Decodes every frame into c->frames (already allocated) and returns EN_OK,
 * or DCM_JPEG_DECLINED for anything it does not take (other syntaxes and
 * precisions, several fragments per frame, unusual sampling, a damaged
 * stream): the caller then decodes the whole file with DCMTK, which
 * overwrites whatever frames were written. */
#define DCM_JPEG_DECLINED 1
int dcm_decode_jpeg_turbo(dcm_ctx *c);

/* Copies src into dst[cap], always terminated, never splitting a UTF-8
 * sequence, dropping control characters. */
void dcm_copy_str(char *dst, size_t cap, const char *src);

/* Appends a formatted warning to info (silently drops past the maximum). */
void dcm_warn(en_dicom_info *info, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Value `pos` of `tag` in `item` as a number, whatever its VR (binary or
 * decimal string).  Returns false when absent, empty or not a finite number. */
bool dcm_get_num(DcmItem *item, const DcmTagKey &tag, unsigned long pos, double *out);

/* Value `pos` of `tag` as a string with padding removed; false if absent. */
bool dcm_get_str(DcmItem *item, const DcmTagKey &tag, unsigned long pos, OFString &out);

/* Number of values of `tag` (0 when absent). */
unsigned long dcm_vm(DcmItem *item, const DcmTagKey &tag);

void dcm_read_fps(DcmItem *ds, en_dicom_info *info);
void dcm_read_regions(DcmItem *ds, en_dicom_info *info);
void dcm_read_view(DcmItem *ds, en_dicom_info *info);
void dcm_read_identity(DcmItem *ds, en_dicom_identity *id);

#endif

/*
 * en_dicom.h - reading echo DICOM files (C API over DCMTK).
 *
 * The only door to DCMTK: one C++ file implements this, nothing else in the
 * project includes a DCMTK header.  The reader decodes every frame to 8 bits
 * (grey, or RGB for colour photometric interpretations), reads the geometry
 * and timing needed downstream, and keeps identifying attributes apart in
 * en_dicom_identity so that the caller decides what may leave memory.
 */
#ifndef EN_DICOM_H
#define EN_DICOM_H

#include <stdint.h>

#include "en_err.h"
#include "en_frames.h"

/* Refuse files beyond these before allocating for them (hostile input). */
typedef struct en_dicom_limits {
    uint32_t max_frames;      /* NumberOfFrames */
    uint32_t max_rows;        /* Rows */
    uint32_t max_cols;        /* Columns */
    uint64_t max_file_bytes;  /* size of the file on disk */
    uint64_t max_pixel_bytes; /* decoded 8-bit frames*rows*cols*channels */
    int jpeg_via_dcmtk;       /* 1: JPEG Baseline through DCMTK's codec instead
                                 of libjpeg-turbo (comparisons, benchmarks) */
    int threads;              /* JPEG Baseline frames decoded at once; 0: one
                                 per CPU the process may use (at most 8) */
} en_dicom_limits;

/* Defaults: 2000 frames, 2048 x 2048, 2 GiB file, 1 GiB decoded,
 * libjpeg-turbo for JPEG Baseline, threads 0. */
void en_dicom_limits_default(en_dicom_limits *lim);

typedef enum en_fps_source {
    EN_FPS_CINE_RATE = 0,          /* (0018,0040) CineRate */
    EN_FPS_FRAME_TIME,             /* (0018,1063) FrameTime, ms */
    EN_FPS_FRAME_TIME_VECTOR,      /* (0018,1065) mean of FrameTimeVector */
    EN_FPS_RECOMMENDED,            /* (0008,2144) RecommendedDisplayFrameRate */
    EN_FPS_DEFAULT                 /* none usable: 30 fps, as upstream */
} en_fps_source;

const char *en_fps_source_name(en_fps_source s); /* "CineRate", ... "default" */

/* One item of SequenceOfUltrasoundRegions (0018,6011), as stored. */
typedef struct en_us_region {
    int x0, y0, x1, y1;          /* RegionLocationMin/Max X0/Y0/X1/Y1, inclusive */
    int spatial_format;          /* RegionSpatialFormat: 1 = 2D */
    int data_type;               /* RegionDataType: 1 = tissue */
    uint32_t flags;              /* RegionFlags */
    int has_reference;           /* ReferencePixelX0/Y0 present */
    int ref_x, ref_y;            /* relative to region's x0,y0 */
    double delta_x, delta_y;     /* PhysicalDeltaX/Y (0 when absent) */
    int units_x, units_y;        /* PhysicalUnitsX/YDirection (3 = cm) */
} en_us_region;

#define EN_DICOM_MAX_REGIONS 16
#define EN_DICOM_MAX_WARNINGS 8
#define EN_DICOM_UID_MAX 65

/* Non-identifying facts about the file; safe to print. */
typedef struct en_dicom_info {
    char sop_class_uid[EN_DICOM_UID_MAX];
    char sop_class_name[64];        /* "US Multi-frame Image Storage" */
    char transfer_syntax_uid[EN_DICOM_UID_MAX];
    char transfer_syntax_name[80];  /* "JPEG-LS Lossless" */
    char photometric[24];           /* as stored, e.g. "YBR_FULL_422" */
    char modality[17];
    int rows, cols, frames;         /* source geometry */
    int samples_per_pixel, bits_allocated, bits_stored, planar_configuration;
    int channels;                   /* of the decoded en_frames: 1 or 3 */
    double fps;
    en_fps_source fps_source;
    int nregions;                   /* usable regions copied below */
    en_us_region regions[EN_DICOM_MAX_REGIONS];
    /* The view the machine names, from View Code Sequence (0054,0220)'s
     * first item, else View Name (0008,2127) as the meaning; "" when the
     * file names none.  A code for a view, never anything about a person. */
    char view_scheme[17];           /* CodingSchemeDesignator: "SCT", "SRT" */
    char view_value[17];            /* CodeValue: "399214001", "G-A19C" */
    char view_meaning[65];          /* CodeMeaning: "Apical four chamber" */
    int nwarnings;
    char warnings[EN_DICOM_MAX_WARNINGS][160];
} en_dicom_info;

/* Identifying attributes, for the pseudonym and the optional key store only.
 * Never log, print or store these unless configuration says so. */
typedef struct en_dicom_identity {
    char study_instance_uid[EN_DICOM_UID_MAX];
    char series_instance_uid[EN_DICOM_UID_MAX];
    char sop_instance_uid[EN_DICOM_UID_MAX];
    char patient_name[128];
    char patient_id[65];
    char patient_birth_date[9];
    char accession_number[17];
    char study_date[9];
    char study_time[17];
    char institution_name[65];
} en_dicom_identity;

/* Reads and decodes `path`.  On success fills info, id and frames (caller
 * frees frames with en_frames_free).  On failure returns EN_EFORMAT (not
 * DICOM, truncated, lying lengths), EN_ENOTIMAGE, EN_EUNSUPPORTED (names the
 * transfer syntax / photometric interpretation), EN_ELIMIT (names the limit
 * and the value), EN_EIO, EN_ENOMEM; err names the file.  Never aborts.
 * lim NULL means the defaults; id and err may be NULL.  On EN_ENOTIMAGE
 * (a data set without pixel data: an SR, an encapsulated PDF) info's SOP
 * fields and id are still filled, so the caller can account for the
 * instance in its study; on every other failure id is cleared.
 *
 * Pixels: stored values are scaled linearly from their BitsStored range to
 * 0..255 (identity for 8-bit data); no VOI window or modality LUT is
 * applied; MONOCHROME1 is inverted to look like MONOCHROME2; YBR and
 * PALETTE COLOR become RGB.  A NumberOfFrames larger than the pixel data
 * holds (bytes when native, fragments when compressed) is EN_EFORMAT: no
 * frame is ever invented or padded.  Identity values never appear in err or
 * info->warnings. */
int en_dicom_read(const char *path, const en_dicom_limits *lim,
                  en_dicom_info *info, en_dicom_identity *id,
                  en_frames *frames, en_err *err);

/* 1 if this build can decode transfer syntax `uid` (JPEG 2000 depends on
 * OpenJPEG being found by configure), else 0. */
int en_dicom_syntax_supported(const char *uid);

#endif

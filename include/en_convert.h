/*
 * en_convert.h - one DICOM file to one deidentified 112x112 AVI: the first
 * half of the pipeline (dicom -> deid -> sector -> video), shared by
 * `echonetctl convert` and the daemon.
 */
#ifndef EN_CONVERT_H
#define EN_CONVERT_H

#include <stdio.h>

#include "en_config.h"
#include "en_deid.h"
#include "en_dicom.h"
#include "en_err.h"
#include "en_frames.h"
#include "en_sector.h"

typedef struct en_convert_result {
    char pseudonym[EN_PSEUDONYM_LEN + 1];
    /* Keyed hash of the SOPInstanceUID: recognises a re-delivered instance
     * without storing its UID ("" when the file has none). */
    char dedup_key[EN_PSEUDONYM_LEN + 1];
    en_dicom_info info;          /* non-identifying facts only */
    en_sector sector;
    char avi_path[EN_PATH_MAX];
    int out_frames;
    int out_size;
    double ms_read, ms_sector, ms_write;
} en_convert_result;

/* Converts in_path.  out_path may name the AVI, name an existing folder
 * (the AVI is then <folder>/<pseudonym>.avi), or be NULL (the configured
 * output_dir).  Identifying attributes are used for the pseudonym and, when
 * cfg->keystore_file is set, the key store, then wiped from memory. */
int en_convert_file(const en_config *cfg, const en_deid *deid,
                    const char *in_path, const char *out_path,
                    en_convert_result *res, en_err *err);

/* As en_convert_file, and hands the network's view (size x size grey
 * frames, as written to the AVI) to the caller in *net instead of freeing
 * it; the caller frees it with en_frames_free.  net is empty on failure. */
int en_convert_file_frames(const en_config *cfg, const en_deid *deid,
                           const char *in_path, const char *out_path,
                           en_convert_result *res, en_frames *net, en_err *err);

/* Writes the result as one JSON object (no identifying values). */
void en_convert_result_json(const en_convert_result *res, FILE *f);

/* Writes the result as a human summary. */
void en_convert_result_print(const en_convert_result *res, FILE *f);

#endif

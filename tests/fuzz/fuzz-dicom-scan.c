/*
 * fuzz-dicom-scan.c - libFuzzer harness for the intake's structural DICOM
 * walk (en_dicom_scan_file), which the daemon runs on every file dropped in
 * its inbox before any child process is involved, so a fault here takes the
 * daemon down.  Beyond "no crash", it holds the scanner to its header's
 * promises: a known verdict, and a complete file accounted for to its
 * last byte.
 */
#include "fuzz.h"

#include <fcntl.h>
#include <string.h>

#include "en_dicom_scan.h"

/* Deflated Explicit VR Little Endian */
#define DEFLATED_UID "1.2.840.10008.1.2.1.99"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(data, size);
    en_dicom_scan scan;
    en_err err;
    int rc;

    memset(&err, 0, sizeof err);
    rc = en_dicom_scan_file(AT_FDCWD, path, &scan, &err);
    FZ_CHECK(rc == EN_OK || rc == EN_EIO);
    if (rc != EN_OK) {
        FZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    FZ_CHECK(scan.state == EN_SCAN_COMPLETE || scan.state == EN_SCAN_TRUNCATED ||
             scan.state == EN_SCAN_UNKNOWN);
    FZ_CHECK(scan.size == (long long)size);
    FZ_CHECK(scan.end >= 0);
    /* A deflated data set is walked, and its end counted, inflated. */
    if (scan.state == EN_SCAN_COMPLETE &&
        !memmem(data, size, DEFLATED_UID, sizeof DEFLATED_UID - 1))
        FZ_CHECK(scan.end == scan.size);
    FZ_CHECK(memchr(scan.detail, '\0', sizeof scan.detail) != NULL);
    FZ_CHECK(en_dicom_scan_state_name(scan.state) != NULL);
    return 0;
}

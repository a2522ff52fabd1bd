/*
 * en_dicom_scan.h - is this file a whole DICOM file yet?  A structural walk
 * of a Part 10 file's elements (no pixel decoding, no DCMTK), bounded by the
 * file's size, for the daemon's intake: a file that is still being copied
 * in ends inside an element and is left to settle longer.
 *
 * The walk only follows lengths: every element must fit in the file, every
 * undefined-length sequence and encapsulated pixel data must be closed by
 * its delimiter, and the last element must end exactly at the end of the
 * file.  It reads headers with pread, never allocates more than a few
 * hundred bytes, and stops after EN_DICOM_SCAN_MAX_ELEMENTS, so a hostile
 * file costs the daemon nothing.  Whether the content makes sense is the
 * reader's job, in the per-study child process.
 */
#ifndef EN_DICOM_SCAN_H
#define EN_DICOM_SCAN_H

#include "en_err.h"

#define EN_DICOM_SCAN_MAX_ELEMENTS 4000000
#define EN_DICOM_SCAN_MAX_DEPTH 32

typedef enum en_dicom_scan_state {
    EN_SCAN_COMPLETE = 0,   /* every element accounted for, to the last byte */
    EN_SCAN_TRUNCATED,      /* ends inside an element or an open sequence */
    EN_SCAN_UNKNOWN         /* cannot tell (no DICM magic, deflated dataset,
                               malformed): the reader decides */
} en_dicom_scan_state;

typedef struct en_dicom_scan {
    en_dicom_scan_state state;
    long long size;          /* bytes in the file */
    long long end;           /* where the walk stopped */
    char detail[160];        /* why, for a log line (no values from the file) */
} en_dicom_scan;

/* Scans the file name relative to dirfd (AT_FDCWD for a plain path).
 * Returns EN_EIO when the file cannot be opened or read; otherwise EN_OK
 * with the verdict in *out. */
int en_dicom_scan_file(int dirfd, const char *name, en_dicom_scan *out, en_err *err);

const char *en_dicom_scan_state_name(en_dicom_scan_state s);

#endif

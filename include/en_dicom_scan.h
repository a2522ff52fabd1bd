/*
 * en_dicom_scan.h - is this file a whole DICOM file yet, and is it safe to
 * hand to the parser?  A structural walk of a file's elements (no pixel
 * decoding, no DCMTK) that answers two callers:
 *
 * - the daemon's intake and the network receiver ask "whole yet?": a file
 *   still being copied in ends inside an element (or in zeros where
 *   elements should be) and is left to settle longer;
 * - the reader (en_dicom_read) asks "safe to parse?" before DCMTK sees the
 *   file, because DCMTK parses sequences recursively (a file nested 7000
 *   deep overflows its stack) and walks zero bytes eight at a time (a
 *   sparse or zero-filled file holds a worker for minutes).
 *
 * The walk only follows lengths: every element must fit in the file, every
 * undefined-length sequence and encapsulated pixel data must be closed by
 * its delimiter, and the last element must end exactly at the end of the
 * file.  It follows the nesting DCMTK would: explicit SQ, undefined
 * lengths (UN ones in implicit VR, as DCMTK reads them), and in implicit VR
 * any defined-length value that starts with an item (DCMTK knows its
 * dictionary's sequences; the walk cannot, so it tries).  A deflated data
 * set is inflated as it is walked (zlib, a 64 KiB window), up to
 * EN_DICOM_SCAN_MAX_INFLATED bytes.  A file without the Part 10 header is
 * walked in the encoding its first element suggests, as DCMTK guesses it.
 *
 * It reads through a 64 KiB window (its only allocation, with zlib's state
 * for a deflated data set) and refuses (the
 * `refuse` code below) what no echo file does and what would make the
 * parser crash or spin: sequences nested deeper than
 * EN_DICOM_SCAN_MAX_DEPTH, more than EN_DICOM_SCAN_MAX_ELEMENTS elements,
 * more than EN_DICOM_SCAN_MAX_ZERO_BYTES of zero bytes where elements
 * belong (zero "elements" (0000,0000) of length 0; fewer at the very end
 * are tolerated as padding), a deflated data set inflating beyond its
 * bound.  Refusing stops the walk at once, so a 2 GiB sparse file costs
 * microseconds.  Whether the content makes sense is the reader's job.
 */
#ifndef EN_DICOM_SCAN_H
#define EN_DICOM_SCAN_H

#include "en_err.h"

/* Elements (and items) in one file: a 2000-frame enhanced multi-frame
 * with generous per-frame functional groups holds about 100,000. */
#define EN_DICOM_SCAN_MAX_ELEMENTS 1000000
/* Sequence nesting: echo files nest 2 or 3 deep, structured reports a
 * dozen; DCMTK's recursive parser needs about 1 KiB of stack a level. */
#define EN_DICOM_SCAN_MAX_DEPTH 64
/* Zero bytes walked as elements, in all: tolerates zero padding at the
 * end of a file, refuses zero-filled and sparse files. */
#define EN_DICOM_SCAN_MAX_ZERO_BYTES 65536
/* Inflated size of a deflated data set (the default max_file_mb). */
#define EN_DICOM_SCAN_MAX_INFLATED (2LL << 30)

typedef enum en_dicom_scan_state {
    EN_SCAN_COMPLETE = 0,   /* every element accounted for, to the last byte */
    EN_SCAN_TRUNCATED,      /* ends inside an element or an open sequence, or
                               in zeros where elements belong */
    EN_SCAN_UNKNOWN         /* cannot tell: malformed, or no DICM magic and
                               not walkable as a raw data set */
} en_dicom_scan_state;

typedef struct en_dicom_scan {
    en_dicom_scan_state state;
    int part10;              /* 1 when the file has the DICM magic */
    int refuse;              /* 0, or the EN_* code the reader refuses the file
                                with before parsing: EN_ELIMIT (nesting, element
                                count, inflated size), EN_EFORMAT (zeros) */
    long long size;          /* bytes in the file */
    long long end;           /* where the walk stopped (in a deflated data
                                set: counted in inflated bytes) */
    char detail[200];        /* why, for a log line (no values from the file) */
} en_dicom_scan;

/* Scans the file name relative to dirfd (AT_FDCWD for a plain path).
 * Returns EN_EIO when the file cannot be opened or read; otherwise EN_OK
 * with the verdict in *out. */
int en_dicom_scan_file(int dirfd, const char *name, en_dicom_scan *out, en_err *err);

const char *en_dicom_scan_state_name(en_dicom_scan_state s);

#endif

/*
 * en_atomic.h - output files that appear whole or not at all.
 *
 * Bytes go to "<path>.tmp.<pid>.<n>" beside the final path (same folder,
 * same file system, so the rename is atomic); commit fsyncs and closes it,
 * renames it over the final name and fsyncs the folder so the rename
 * survives a crash.  Any failure removes the temporary file.  Videos and
 * reports are written this way, so no reader ever sees half of either.
 *
 * The file is created with O_EXCL and mode 0666 so the process umask
 * (systemd's UMask=) decides who may read outputs; mkstemp would force 0600.
 */
#ifndef EN_ATOMIC_H
#define EN_ATOMIC_H

#include "en_err.h"

typedef struct en_atomic_file {
    const char *path;   /* final path (borrowed) */
    const char *what;   /* "video", "report": names the output in errors */
    char *tmp;          /* temporary path; NULL when none exists */
    int fd;             /* open for writing; -1 when closed */
} en_atomic_file;

/* Creates the temporary file.  Errors read "<what> '<path>': ...". */
int en_atomic_open(en_atomic_file *f, const char *path, const char *what, en_err *err);

/* fsync, close, rename into place, fsync the folder.  On failure the
 * temporary file is removed. */
int en_atomic_commit(en_atomic_file *f, en_err *err);

/* Closes and removes the temporary file; safe after commit or failure. */
void en_atomic_discard(en_atomic_file *f);

/* errno of a failed open/rename/write as an EN_E* code. */
int en_errno_code(int e);

#endif

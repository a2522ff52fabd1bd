/*
 * fuzz_file.c - the harnesses' scratch file (see fuzz.h).  One file per
 * process, truncated and rewritten per input, so a long campaign does not
 * churn directory entries; it is removed when the process exits.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_path[4096];
static int fz_fd = -1;

static void fz_cleanup(void)
{
    if (fz_path[0])
        unlink(fz_path);
}

void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz: invariant broken: %s\n", what);
    abort();
}

const char *fz_file(const uint8_t *data, size_t size)
{
    size_t done = 0;

    if (fz_fd < 0) {
        const char *dir = getenv("TMPDIR");
        int n = snprintf(fz_path, sizeof fz_path, "%s/echonetd-fuzz-XXXXXX",
                         dir && *dir ? dir : "/tmp");
        if (n < 0 || (size_t)n >= sizeof fz_path)
            fz_fail("TMPDIR too long");
        fz_fd = mkstemp(fz_path);
        if (fz_fd < 0)
            fz_fail("cannot create the scratch file (TMPDIR)");
        atexit(fz_cleanup);
    }
    if (ftruncate(fz_fd, 0) != 0)
        fz_fail("cannot truncate the scratch file");
    while (done < size) {
        ssize_t w = pwrite(fz_fd, data + done, size - done, (off_t)done);
        if (w <= 0)
            fz_fail("cannot write the scratch file");
        done += (size_t)w;
    }
    return fz_path;
}

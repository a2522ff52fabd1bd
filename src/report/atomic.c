/*
 * atomic.c - report files appear whole or not at all: cairo writes the PDF
 * and the PNG through a stream callback into an en_atomic_file (temporary
 * file beside the final path, renamed into place on commit; see
 * en_atomic.h).  A write error is remembered and reported at commit, since
 * cairo only sees a status.
 */
#include "report_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int rep_out_open(rep_out *o, const char *path, en_err *err)
{
    o->werrno = 0;
    return en_atomic_open(&o->f, path, "report", err);
}

cairo_status_t rep_out_write(void *closure, const unsigned char *data, unsigned int len)
{
    rep_out *o = closure;

    while (len > 0 && !o->werrno) {
        ssize_t w = write(o->f.fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            o->werrno = errno;
            break;
        }
        data += w;
        len -= (unsigned)w;
    }
    return o->werrno ? CAIRO_STATUS_WRITE_ERROR : CAIRO_STATUS_SUCCESS;
}

int rep_out_commit(rep_out *o, en_err *err)
{
    if (o->werrno) {
        int e = o->werrno;
        en_atomic_discard(&o->f);
        return en_err_set(err, en_errno_code(e), "report '%s': cannot write: %s", o->f.path,
                          strerror(e));
    }
    return en_atomic_commit(&o->f, err);
}

void rep_out_discard(rep_out *o)
{
    en_atomic_discard(&o->f);
}

/*
 * err.c - the project's single error representation (see en_err.h).
 */
#include "en_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* en_err.h's models for the static analyzer describe these functions to
 * their callers; here they are defined. */
#undef en_err_set
#undef en_err_prefix

int en_err_set(en_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int en_err_prefix(en_err *err, const char *fmt, ...)
{
    char head[EN_ERR_MSG_MAX / 2], old[EN_ERR_MSG_MAX];
    va_list ap;

    if (!err)
        return EN_EINVAL;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Keep the head short so the original cause always survives. */
    snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", head, old);
    if (err->code >= 0)
        err->code = EN_EINVAL;
    return err->code;
}

void en_err_clear(en_err *err)
{
    if (err) {
        err->code = EN_OK;
        err->msg[0] = '\0';
    }
}

const char *en_err_name(int code)
{
    switch (code) {
    case EN_OK: return "EN_OK";
    case EN_EINVAL: return "EN_EINVAL";
    case EN_EIO: return "EN_EIO";
    case EN_ENOMEM: return "EN_ENOMEM";
    case EN_EFORMAT: return "EN_EFORMAT";
    case EN_EUNSUPPORTED: return "EN_EUNSUPPORTED";
    case EN_ELIMIT: return "EN_ELIMIT";
    case EN_ENOTIMAGE: return "EN_ENOTIMAGE";
    case EN_ENOTFOUND: return "EN_ENOTFOUND";
    case EN_ECODEC: return "EN_ECODEC";
    case EN_EPERM: return "EN_EPERM";
    }
    return "EN_EUNKNOWN";
}

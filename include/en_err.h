/*
 * en_err.h - error codes and error messages shared by every echonetd module.
 *
 * A function that can fail returns 0 on success or a negative EN_E* code, and
 * fills an en_err with a message a user can act on: which file or study, which
 * stage, what was wrong, and what to do.  Messages never hold patient data.
 */
#ifndef EN_ERR_H
#define EN_ERR_H

#include <stddef.h>

enum {
    EN_OK = 0,
    EN_EINVAL = -1,      /* bad argument or configuration value */
    EN_EIO = -2,         /* read/write/OS failure */
    EN_ENOMEM = -3,      /* allocation failed */
    EN_EFORMAT = -4,     /* input is not DICOM, or is malformed/truncated */
    EN_EUNSUPPORTED = -5,/* valid input we cannot handle (syntax, SOP class) */
    EN_ELIMIT = -6,      /* input exceeds a configured limit */
    EN_ENOTIMAGE = -7,   /* DICOM file without usable pixel data */
    EN_ENOTFOUND = -8,   /* a required thing is absent (sector, file, key) */
    EN_ECODEC = -9,      /* encoder/decoder failure */
    EN_EPERM = -10       /* permissions unsafe or denied */
};

#define EN_ERR_MSG_MAX 512

typedef struct en_err {
    int code;
    char msg[EN_ERR_MSG_MAX];
} en_err;

/* Sets code and a printf-style message; returns code so callers can
 * `return en_err_set(err, EN_EIO, "...")`.  err may be NULL. */
int en_err_set(en_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (adds context as an error
 * travels up: "study ab12cd: sector: ...").  Returns err->code, which is
 * always negative: a callee that failed without setting a code leaves
 * EN_EINVAL, so an error travelling up can never turn into EN_OK.  err NULL
 * gives EN_EINVAL. */
int en_err_prefix(en_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void en_err_clear(en_err *err);

/* Short name of a code ("EN_EFORMAT"), for logs and JSON. */
const char *en_err_name(int code);

/* clang's static analyzer (scripts/static-check.sh) reads one file at a
 * time and cannot see into err.c, so it would follow paths on which a
 * failure "returned EN_OK" and report what goes wrong after.  These tell it
 * what err.c guarantees: en_err_set returns its code, en_err_prefix a
 * negative code.  Only the analyzer compiles them. */
#ifdef __clang_analyzer__
static inline int en__analyzer_failed(int code)
{
    if (code >= 0)
        __builtin_unreachable();
    return code;
}
#define en_err_set(err, code, ...) (en_err_set((err), (code), __VA_ARGS__), (code))
#define en_err_prefix(...) en__analyzer_failed(en_err_prefix(__VA_ARGS__))
#endif

#endif

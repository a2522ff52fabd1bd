/*
 * tst.h - the few macros our C tests share.  A test program runs its checks,
 * prints each failure with file:line, and exits 1 if any failed, 77 to skip
 * (automake's convention), 0 otherwise.
 */
#ifndef EN_TST_H
#define EN_TST_H

#include <stdio.h>
#include <stdlib.h>

static int tst_failures;

#define CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        tst_failures++; \
    } \
} while (0)

#define CHECKF(cond, ...) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr); \
        tst_failures++; \
    } \
} while (0)

#define TST_SKIP(...) do { fprintf(stderr, "skip: " __VA_ARGS__); fputc('\n', stderr); exit(77); } while (0)

static inline const char *tst_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "environment variable %s is not set: run through make check\n", name);
        exit(99);
    }
    return v;
}

#define TST_DONE() do { \
    if (tst_failures) fprintf(stderr, "%d check(s) failed\n", tst_failures); \
    return tst_failures ? 1 : 0; \
} while (0)

#endif

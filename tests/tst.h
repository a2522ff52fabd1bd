/*
 * tst.h - the few macros our C tests share.  A test program runs its checks,
 * prints each failure with file:line, and exits 1 if any failed, 77 to skip
 * (automake's convention), 0 otherwise.
 */
#ifndef EN_TST_H
#define EN_TST_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A fresh scratch folder <builddir>/tests/out/<prefix>-XXXXXX in dir;
 * exits 99 (a harness error, not a test failure) when it cannot be made. */
static inline void tst_scratch_dir(char *dir, size_t len, const char *prefix)
{
    char out[400];

    snprintf(out, sizeof out, "%s/tests/out", tst_env("EN_TOP_BUILDDIR"));
    if (mkdir(out, 0777) < 0 && errno != EEXIST) {
        perror(out);
        exit(99);
    }
    snprintf(dir, len, "%s/%s-XXXXXX", out, prefix);
    if (!mkdtemp(dir)) {
        perror(dir);
        exit(99);
    }
}

/* Removes a scratch folder and the files directly in it. */
static inline void tst_scratch_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[1024];

    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

#define TST_DONE() do { \
    if (tst_failures) fprintf(stderr, "%d check(s) failed\n", tst_failures); \
    return tst_failures ? 1 : 0; \
} while (0)

#endif

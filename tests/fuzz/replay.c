/*
 * replay.c - main() for a harness outside libFuzzer: runs every file named
 * on the command line (or found directly inside a named folder) through
 * LLVMFuzzerTestOneInput once.  Built in every ordinary build, so `make
 * check` (and the ASan/UBSan build) replays the saved crashes and seeds of
 * tests/fuzz/ with no clang or libFuzzer needed; a crash is the test's
 * failure.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    do {
        if (len == cap) {
            uint8_t *nb;
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                return 1;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int bad = 0, runs = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]);
            runs++;
            continue;
        }
        d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: cannot read folder %s\n", argv[i]);
            bad = 1;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            struct stat fs;
            if (e->d_name[0] == '.')
                continue;
            if (snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name) >= (int)sizeof path)
                continue;
            if (stat(path, &fs) != 0 || !S_ISREG(fs.st_mode))
                continue;
            bad |= run_file(path);
            runs++;
        }
        closedir(d);
    }
    printf("replay: %d inputs\n", runs);
    return bad;
}

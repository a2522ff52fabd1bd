/*
 * fuzz-json.c - libFuzzer harness for the engine's minimal JSON parser
 * (src/nn/json_min.c), which reads every weights file's header before any
 * check on the tensors can run.  Input straight from memory: nj_parse
 * takes a buffer and its length, with no terminating NUL, so ASan sees any
 * read past the end.  A parsed document is walked whole (strings must be
 * NUL-terminated, counts must match) and freed.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "nn_int.h"

static size_t walk(const nj_val *v, int depth)
{
    size_t n = 1;

    FZ_CHECK(depth < 10000);
    switch (v->type) {
    case NJ_STR:
        FZ_CHECK(v->str != NULL);
        n += strlen(v->str);
        break;
    case NJ_OBJ:
    case NJ_ARR:
        FZ_CHECK(v->n == 0 || v->items != NULL);
        for (size_t i = 0; i < v->n; i++) {
            if (v->type == NJ_OBJ) {
                FZ_CHECK(v->keys[i] != NULL);
                FZ_CHECK(nj_get(v, v->keys[i]) != NULL);
            }
            n += walk(&v->items[i], depth + 1);
        }
        break;
    case NJ_NULL:
    case NJ_BOOL:
    case NJ_NUM:
        break;
    default:
        fz_fail("unknown JSON value type");
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so a read past the end is ASan's. */
    char *copy = malloc(size ? size : 1);
    nj_val v;
    en_err err;
    int rc;

    FZ_CHECK(copy != NULL);
    if (size)
        memcpy(copy, data, size);
    memset(&v, 0, sizeof v);
    memset(&err, 0, sizeof err);
    rc = nj_parse(copy, size, &v, &err);
    FZ_CHECK(rc <= 0 && rc >= EN_EPERM);
    if (rc == EN_OK) {
        walk(&v, 0);
        nj_free(&v);
    } else {
        FZ_CHECK(err.msg[0] != '\0');
    }
    free(copy);
    return 0;
}

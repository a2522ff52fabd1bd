/*
 * fuzz-weights.c - libFuzzer harness for the weights file reader
 * (src/nn/safetensors.c over the JSON parser in json_min.c): an 8-byte
 * header length, a JSON header naming every tensor's dtype, shape and
 * offsets, then the data.  A weights file comes from outside (upstream's
 * checkpoints converted by an operator, or a file named in the
 * configuration), and nn_st_open promises to check every entry before
 * anything is used.  This harness calls the engine's internal reader
 * (nn_int.h) as the model loader does, then holds it to that promise:
 * every tensor it accepted must lie inside the data section, and is read
 * whole.
 */
#include "fuzz.h"

#include <string.h>

#include "nn_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(data, size);
    nn_st st;
    en_err err;
    char hex[65];
    int rc;

    memset(&st, 0, sizeof st);
    memset(&err, 0, sizeof err);
    rc = nn_st_open(path, &st, &err);
    FZ_CHECK(rc <= 0 && rc >= EN_EPERM);
    if (rc < 0) {
        FZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < st.nt; i++) {
        const nn_st_tensor *t = &st.t[i];
        const uint8_t *p = (const uint8_t *)t->data;
        float acc = 0;
        FZ_CHECK(t->name != NULL);
        FZ_CHECK(nn_st_find(&st, t->name) != NULL);
        FZ_CHECK(t->ndim >= 0 && t->ndim <= 8);
        FZ_CHECK(t->numel == 0 || (p >= st.data && p + t->numel * sizeof(float) <=
                                   st.data + st.data_len));
        for (size_t j = 0; j < t->numel; j++)
            acc += t->data[j];
        __asm__ volatile("" : : "r"(acc));
    }
    for (size_t i = 0; i < st.nmeta; i++)
        FZ_CHECK(nn_st_meta(&st, st.meta_keys[i]) != NULL);
    rc = nn_st_sha256(&st, hex, &err);
    FZ_CHECK(rc == EN_OK && strlen(hex) == 64);
    nn_st_close(&st);
    return 0;
}

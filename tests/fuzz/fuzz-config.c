/*
 * fuzz-config.c - libFuzzer harness for the configuration parser
 * (src/config: libinih and the settings table).  A configuration is
 * written by an operator, often by hand, and a typo must become an error
 * naming the line, never a crash or a value out of its row's bounds.
 * After a load that succeeds, every integer setting must lie within its
 * row's bounds, and every row is formatted and compared with the defaults
 * as the daemon's reload does.
 */
#include "fuzz.h"

#include <string.h>

#include "en_config.h"

static void on_change(const en_config_change *c, void *user)
{
    size_t *n = user;
    FZ_CHECK(c->row != NULL && c->old_value != NULL && c->new_value != NULL);
    (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(data, size);
    const en_config_row *rows;
    en_config def, cfg;
    en_err err;
    size_t nrows, changes = 0;
    char buf[2 * EN_PATH_MAX];
    int rc;

    en_config_defaults(&def);
    cfg = def;
    memset(&err, 0, sizeof err);
    rc = en_config_load(&cfg, path, &err);
    FZ_CHECK(rc <= 0 && rc >= EN_EPERM);
    if (rc < 0) {
        FZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    rows = en_config_rows(&nrows);
    for (size_t i = 0; i < nrows; i++) {
        const en_config_row *r = &rows[i];
        const char *field = (const char *)&cfg + r->offset;
        long long v;
        switch (r->type) {
        case EN_CONF_INT:
        case EN_CONF_BOOL:
            v = *(const int *)field;
            FZ_CHECK(v >= r->min && v <= r->max);
            break;
        case EN_CONF_U32:
            v = *(const uint32_t *)field;
            FZ_CHECK(v >= r->min && v <= r->max);
            break;
        case EN_CONF_MB:
            v = (long long)(*(const uint64_t *)field >> 20);
            FZ_CHECK(v >= r->min && v <= r->max);
            break;
        case EN_CONF_PATH:
            FZ_CHECK(memchr(field, '\0', EN_PATH_MAX) != NULL);
            break;
        default:
            break;
        }
        en_config_format(&cfg, r, buf, sizeof buf);
        FZ_CHECK(memchr(buf, '\0', sizeof buf) != NULL);
    }
    en_config_diff(&def, &cfg, on_change, &changes);
    FZ_CHECK(changes <= nrows);
    return 0;
}

/*
 * en_json.h - a minimal streaming JSON writer for machine-readable output
 * (echonetctl --json).  It only writes; the project never parses JSON in C.
 */
#ifndef EN_JSON_H
#define EN_JSON_H

#include <stdio.h>

typedef struct en_json {
    FILE *f;
    int depth;
    int need_comma[32];
    int indent;          /* pretty-print when non-zero */
} en_json;

void en_json_init(en_json *j, FILE *f, int indent);
void en_json_begin_object(en_json *j, const char *key);  /* key NULL at top/in arrays */
void en_json_end_object(en_json *j);
void en_json_begin_array(en_json *j, const char *key);
void en_json_end_array(en_json *j);
void en_json_string(en_json *j, const char *key, const char *value); /* NULL -> null */
void en_json_int(en_json *j, const char *key, long long value);
void en_json_double(en_json *j, const char *key, double value);     /* non-finite -> null */
void en_json_bool(en_json *j, const char *key, int value);
/* A value that is already JSON text (valid by construction, e.g. a column
 * the database checks with json_valid), written as it is. */
void en_json_raw(en_json *j, const char *key, const char *json);
void en_json_finish(en_json *j);  /* final newline */

#endif

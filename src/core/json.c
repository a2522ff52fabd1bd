/*
 * json.c - the streaming JSON writer (see en_json.h).  Strings are escaped
 * per RFC 8259 so that any byte from a file name or a DICOM value yields
 * valid JSON.
 */
#include "en_json.h"

#include <math.h>

void en_json_init(en_json *j, FILE *f, int indent)
{
    j->f = f;
    j->depth = 0;
    j->need_comma[0] = 0;
    j->indent = indent;
}

static void put_escaped(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void separator(en_json *j, const char *key)
{
    if (j->need_comma[j->depth])
        fputc(',', j->f);
    j->need_comma[j->depth] = 1;
    if (j->indent && j->depth > 0) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth * j->indent; i++)
            fputc(' ', j->f);
    }
    if (key) {
        put_escaped(j->f, key);
        fputs(j->indent ? ": " : ":", j->f);
    }
}

static void open_(en_json *j, const char *key, char c)
{
    separator(j, key);
    fputc(c, j->f);
    if (j->depth < 31)
        j->depth++;
    j->need_comma[j->depth] = 0;
}

static void close_(en_json *j, char c)
{
    int had = j->need_comma[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (j->indent && had) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth * j->indent; i++)
            fputc(' ', j->f);
    }
    fputc(c, j->f);
}

void en_json_begin_object(en_json *j, const char *key) { open_(j, key, '{'); }
void en_json_end_object(en_json *j) { close_(j, '}'); }
void en_json_begin_array(en_json *j, const char *key) { open_(j, key, '['); }
void en_json_end_array(en_json *j) { close_(j, ']'); }

void en_json_string(en_json *j, const char *key, const char *value)
{
    separator(j, key);
    if (value)
        put_escaped(j->f, value);
    else
        fputs("null", j->f);
}

void en_json_int(en_json *j, const char *key, long long value)
{
    separator(j, key);
    fprintf(j->f, "%lld", value);
}

void en_json_double(en_json *j, const char *key, double value)
{
    separator(j, key);
    if (isfinite(value))
        fprintf(j->f, "%.6g", value);
    else
        fputs("null", j->f);
}

void en_json_bool(en_json *j, const char *key, int value)
{
    separator(j, key);
    fputs(value ? "true" : "false", j->f);
}

void en_json_raw(en_json *j, const char *key, const char *json)
{
    separator(j, key);
    fputs(json && *json ? json : "null", j->f);
}

void en_json_finish(en_json *j)
{
    fputc('\n', j->f);
    fflush(j->f);
}

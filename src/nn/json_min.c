/*
 * json_min.c - a minimal JSON parser for the safetensors header, the only
 * JSON the engine reads.  The header comes from a file the user supplies, so
 * the parser treats it as hostile: it never reads past len, limits nesting,
 * checks every allocation, follows RFC 8259's grammar strictly (no trailing
 * commas, no leading zeros, no bare words), and refuses \u0000 because
 * strings are handed on as C strings.  Errors give the byte offset.
 */
#include "nn_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NJ_MAX_DEPTH 16

typedef struct nj_parser {
    const char *s;
    size_t len, pos;
    en_err *err;
} nj_parser;

static int fail(nj_parser *p, const char *what)
{
    return en_err_set(p->err, EN_EFORMAT, "JSON header: %s at byte %zu", what, p->pos);
}

static void skip_ws(nj_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int hex4(nj_parser *p, unsigned *out)
{
    unsigned v = 0;
    if (p->len - p->pos < 4)
        return fail(p, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "bad \\u escape");
    }
    *out = v;
    return EN_OK;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->pos is just past the opening quote. */
static int parse_string(nj_parser *p, char **out)
{
    size_t start = p->pos, n = 0;
    char *buf, *o;

    /* The decoded string is never longer than its source. */
    while (p->pos < p->len && p->s[p->pos] != '"') {
        if (p->s[p->pos] == '\\')
            p->pos++;
        p->pos++;
    }
    if (p->pos >= p->len)
        return fail(p, "unterminated string");
    n = p->pos - start;
    p->pos = start;
    if (!(buf = malloc(n + 1)))
        return en_err_set(p->err, EN_ENOMEM, "JSON header: out of memory");
    o = buf;
    while (p->s[p->pos] != '"') {
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c < 0x20) {
            free(buf);
            return fail(p, "control character in string");
        }
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        c = (unsigned char)p->s[p->pos++];
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p, &cp) != EN_OK) { free(buf); return p->err ? p->err->code : EN_EFORMAT; }
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(buf);
                    return fail(p, "unpaired surrogate");
                }
                p->pos += 2;
                if (hex4(p, &lo) != EN_OK) { free(buf); return EN_EFORMAT; }
                if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return fail(p, "unpaired surrogate"); }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                free(buf);
                return fail(p, "unpaired surrogate");
            }
            if (cp == 0) { free(buf); return fail(p, "\\u0000 in string"); }
            /* 6 source bytes (or 12 for a pair) always cover <= 4 output bytes */
            o += put_utf8(o, cp);
            break;
        }
        default:
            free(buf);
            return fail(p, "bad escape");
        }
    }
    p->pos++;   /* closing quote */
    *o = '\0';
    *out = buf;
    return EN_OK;
}

static int parse_number(nj_parser *p, double *out)
{
    size_t start = p->pos;
    char tmp[64];

    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len)
        return fail(p, "bad number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    } else {
        return fail(p, "bad number");
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos - start >= sizeof tmp)
        return fail(p, "number too long");
    memcpy(tmp, p->s + start, p->pos - start);
    tmp[p->pos - start] = '\0';
    *out = strtod(tmp, NULL);
    if (!isfinite(*out))
        return fail(p, "number out of range");
    return EN_OK;
}

static int parse_value(nj_parser *p, nj_val *v, int depth);

static int push(nj_parser *p, nj_val *v, size_t *cap)
{
    if (v->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        nj_val *ni = realloc(v->items, nc * sizeof *ni);
        if (!ni)
            return en_err_set(p->err, EN_ENOMEM, "JSON header: out of memory");
        v->items = ni;
        if (v->type == NJ_OBJ) {
            char **nk = realloc(v->keys, nc * sizeof *nk);
            if (!nk)
                return en_err_set(p->err, EN_ENOMEM, "JSON header: out of memory");
            v->keys = nk;
        }
        *cap = nc;
    }
    memset(&v->items[v->n], 0, sizeof v->items[0]);
    if (v->type == NJ_OBJ)
        v->keys[v->n] = NULL;
    v->n++;
    return EN_OK;
}

static int parse_container(nj_parser *p, nj_val *v, int depth, char close)
{
    size_t cap = 0;
    int rc;

    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return EN_OK;
    }
    for (;;) {
        if ((rc = push(p, v, &cap)) != EN_OK)
            return rc;
        skip_ws(p);
        if (v->type == NJ_OBJ) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, "expected a key");
            p->pos++;
            if ((rc = parse_string(p, &v->keys[v->n - 1])) != EN_OK)
                return rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, "expected ':'");
            p->pos++;
        }
        if ((rc = parse_value(p, &v->items[v->n - 1], depth + 1)) != EN_OK)
            return rc;
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, "unterminated container");
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] == close) {
            p->pos++;
            return EN_OK;
        }
        return fail(p, "expected ',' or end of container");
    }
}

static int literal(nj_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, "unexpected character");
    p->pos += n;
    return EN_OK;
}

static int parse_value(nj_parser *p, nj_val *v, int depth)
{
    memset(v, 0, sizeof *v);
    if (depth > NJ_MAX_DEPTH)
        return fail(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, "unexpected end");
    switch (p->s[p->pos]) {
    case '{':
        p->pos++;
        v->type = NJ_OBJ;
        return parse_container(p, v, depth, '}');
    case '[':
        p->pos++;
        v->type = NJ_ARR;
        return parse_container(p, v, depth, ']');
    case '"':
        p->pos++;
        v->type = NJ_STR;
        return parse_string(p, &v->str);
    case 't':
        v->type = NJ_BOOL;
        v->boolean = 1;
        return literal(p, "true");
    case 'f':
        v->type = NJ_BOOL;
        return literal(p, "false");
    case 'n':
        v->type = NJ_NULL;
        return literal(p, "null");
    default:
        v->type = NJ_NUM;
        return parse_number(p, &v->num);
    }
}

int nj_parse(const char *s, size_t len, nj_val *out, en_err *err)
{
    nj_parser p = { s, len, 0, err };
    int rc = parse_value(&p, out, 0);

    if (rc == EN_OK) {
        skip_ws(&p);
        if (p.pos != len)
            rc = fail(&p, "trailing characters");
    }
    if (rc != EN_OK)
        nj_free(out);
    return rc;
}

void nj_free(nj_val *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        nj_free(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof *v);
}

const nj_val *nj_get(const nj_val *obj, const char *key)
{
    if (!obj || obj->type != NJ_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (obj->keys[i] && strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

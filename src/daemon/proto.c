/*
 * proto.c - the child-to-daemon line protocol (see proto.h): one encoder,
 * one decoder, so the two sides cannot drift apart.
 */
#include "config.h"

#include "proto.h"
#include "en_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kw[] = {
    [DM_MSG_STAGE] = "stage", [DM_MSG_STUDY] = "study", [DM_MSG_WARNING] = "warning",
    [DM_MSG_DONE] = "done", [DM_MSG_DUPLICATE] = "duplicate", [DM_MSG_FAILED] = "failed",
    [DM_MSG_RESULT] = "result", [DM_MSG_READY] = "ready"
};

/* A word: non-empty, no blank, fits in cap (with its NUL). */
static int word_ok(const char *w, size_t cap)
{
    size_t l = strlen(w);
    return l > 0 && l < cap && strcspn(w, " \t\r\n") == l;
}

static int study_ok(const char *s)
{
    return word_ok(s, EN_STORE_KEY_MAX) && s[strspn(s, "0123456789abcdef")] == 0;
}

int dm_msg_send(FILE *f, const dm_msg *m)
{
    char text[DM_MSG_TEXT];
    const char *study = m->study[0] ? m->study : "-";
    int n = -1;

    snprintf(text, sizeof text, "%s", m->text[0] ? m->text : "-");
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    switch (m->kind) {
    case DM_MSG_STAGE:
        if (word_ok(m->stage, sizeof m->stage))
            n = fprintf(f, "stage %s\n", m->stage);
        break;
    case DM_MSG_STUDY:
        if (study_ok(m->study))
            n = fprintf(f, "study %s\n", m->study);
        break;
    case DM_MSG_WARNING:
        if (word_ok(m->stage, sizeof m->stage))
            n = fprintf(f, "warning %s %s\n", m->stage, text);
        break;
    case DM_MSG_DONE:
        if (study_ok(m->study) && word_ok(m->flags[0] ? m->flags : "none", sizeof m->flags))
            n = fprintf(f, "done %s %lld %.2f %d %.0f %s\n", m->study, m->study_id,
                        m->nbeats > 0 ? m->ef : NAN, m->nbeats, m->ms,
                        m->flags[0] ? m->flags : "none");
        break;
    case DM_MSG_DUPLICATE:
        if (study_ok(m->study))
            n = fprintf(f, "duplicate %s %lld\n", m->study, m->study_id);
        break;
    case DM_MSG_FAILED:
        if (word_ok(m->code, sizeof m->code) && word_ok(m->stage, sizeof m->stage) &&
            (!m->study[0] || study_ok(m->study)))
            n = fprintf(f, "failed %s %s %s %s\n", m->code, m->stage, study, text);
        break;
    case DM_MSG_RESULT:
        if (study_ok(m->study) && word_ok(m->flags[0] ? m->flags : "none", sizeof m->flags))
            n = fprintf(f, "result %s %d %d %.2f %d %d %d %s\n", m->study, m->version,
                        m->changed ? 1 : 0, m->nbeats > 0 ? m->ef : NAN, m->clips_usable,
                        m->clips_total, m->nbeats, m->flags[0] ? m->flags : "none");
        break;
    case DM_MSG_READY:
        if (word_ok(m->stage, sizeof m->stage) && m->ms >= 0)
            n = fprintf(f, "ready %s %.0f\n", m->stage, m->ms);
        break;
    case DM_MSG_NONE:
        break;
    }
    if (n < 0)
        return ferror(f) ? EN_EIO : EN_EINVAL;
    return fflush(f) == 0 ? EN_OK : EN_EIO;
}

/* Copies the next blank-separated word into buf; EN_EFORMAT when there is
 * none or it does not fit. */
static int next_word(const char **p, char *buf, size_t cap)
{
    const char *s = *p;
    size_t l = strcspn(s, " ");

    if (l == 0 || l >= cap)
        return EN_EFORMAT;
    memcpy(buf, s, l);
    buf[l] = 0;
    *p = s[l] ? s + l + 1 : s + l;
    return EN_OK;
}

static int next_ll(const char **p, long long min, long long max, long long *v)
{
    char w[32];
    return next_word(p, w, sizeof w) == EN_OK && en_parse_ll(w, min, max, v) == EN_OK
           ? EN_OK : EN_EFORMAT;
}

static int next_double(const char **p, double *v)
{
    char w[64], *end;

    if (next_word(p, w, sizeof w) != EN_OK)
        return EN_EFORMAT;
    *v = strtod(w, &end);
    return *end ? EN_EFORMAT : EN_OK;
}

static int next_study(const char **p, char *buf)
{
    if (next_word(p, buf, EN_STORE_KEY_MAX) != EN_OK)
        return EN_EFORMAT;
    if (!strcmp(buf, "-")) {
        buf[0] = 0;
        return EN_OK;
    }
    return study_ok(buf) ? EN_OK : EN_EFORMAT;
}

int dm_msg_parse(const char *line, dm_msg *m)
{
    char k[16];
    const char *p = line;
    long long v;
    int rc = EN_EFORMAT;

    memset(m, 0, sizeof *m);
    m->ef = NAN;
    if (next_word(&p, k, sizeof k) != EN_OK)
        return EN_EFORMAT;
    for (size_t i = 1; i < sizeof kw / sizeof kw[0]; i++)
        if (!strcmp(k, kw[i]))
            m->kind = (dm_msg_kind)i;
    switch (m->kind) {
    case DM_MSG_STAGE:
        rc = next_word(&p, m->stage, sizeof m->stage);
        break;
    case DM_MSG_STUDY:
        if ((rc = next_study(&p, m->study)) == EN_OK && !m->study[0])
            rc = EN_EFORMAT;
        break;
    case DM_MSG_WARNING:
        if ((rc = next_word(&p, m->stage, sizeof m->stage)) == EN_OK)
            snprintf(m->text, sizeof m->text, "%s", p);
        break;
    case DM_MSG_DONE:
        rc = EN_EFORMAT;
        if (next_study(&p, m->study) == EN_OK && m->study[0] &&
            next_ll(&p, 0, INT64_MAX, &m->study_id) == EN_OK && next_double(&p, &m->ef) == EN_OK &&
            next_ll(&p, 0, 1000000, &v) == EN_OK && next_double(&p, &m->ms) == EN_OK &&
            next_word(&p, m->flags, sizeof m->flags) == EN_OK) {
            m->nbeats = (int)v;
            rc = EN_OK;
        }
        break;
    case DM_MSG_DUPLICATE:
        rc = next_study(&p, m->study) == EN_OK && m->study[0] &&
             next_ll(&p, 0, INT64_MAX, &m->study_id) == EN_OK ? EN_OK : EN_EFORMAT;
        break;
    case DM_MSG_FAILED:
        if ((rc = next_word(&p, m->code, sizeof m->code)) == EN_OK &&
            (rc = next_word(&p, m->stage, sizeof m->stage)) == EN_OK &&
            (rc = next_study(&p, m->study)) == EN_OK)
            snprintf(m->text, sizeof m->text, "%s", p);
        break;
    case DM_MSG_RESULT: {
        long long ver, chg, use, all;
        rc = EN_EFORMAT;
        if (next_study(&p, m->study) == EN_OK && m->study[0] &&
            next_ll(&p, 0, INT32_MAX, &ver) == EN_OK && next_ll(&p, 0, 1, &chg) == EN_OK &&
            next_double(&p, &m->ef) == EN_OK && next_ll(&p, 0, 1000000, &use) == EN_OK &&
            next_ll(&p, 0, 1000000, &all) == EN_OK && next_ll(&p, 0, 1000000, &v) == EN_OK &&
            next_word(&p, m->flags, sizeof m->flags) == EN_OK) {
            m->version = (int)ver;
            m->changed = (int)chg;
            m->clips_usable = (int)use;
            m->clips_total = (int)all;
            m->nbeats = (int)v;
            rc = EN_OK;
        }
        break;
    }
    case DM_MSG_READY:
        rc = next_word(&p, m->stage, sizeof m->stage) == EN_OK &&
             next_double(&p, &m->ms) == EN_OK && m->ms >= 0 ? EN_OK : EN_EFORMAT;
        break;
    case DM_MSG_NONE:
        break;
    }
    if (rc != EN_OK || (m->kind != DM_MSG_WARNING && m->kind != DM_MSG_FAILED && *p)) {
        m->kind = DM_MSG_NONE;
        return EN_EFORMAT;
    }
    return EN_OK;
}

int dm_msg_final(const dm_msg *m)
{
    return m->kind == DM_MSG_DONE || m->kind == DM_MSG_DUPLICATE || m->kind == DM_MSG_FAILED ||
           m->kind == DM_MSG_RESULT;
}

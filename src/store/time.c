/*
 * time.c - the store's one time format.  Times are stored as UTC text,
 * "2024-05-01T12:34:56.789Z": it sorts as it reads, date() and friends in
 * sqlite3 understand it, and an operator can type a prefix of it in a
 * WHERE clause.  The C side speaks Unix milliseconds.
 */
#include "en_util.h"
#include "store_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void en_store_format_time(int64_t ms, char buf[EN_STORE_TIME_MAX])
{
    char tmp[96];   /* roomy: gcc cannot see that each field has 2-4 digits */
    time_t sec;
    struct tm tm;
    size_t n;

    if (ms < 0)
        ms = 0;
    sec = (time_t)(ms / 1000);
    if (!gmtime_r(&sec, &tm) || tm.tm_year + 1900 > 9999) {
        snprintf(buf, EN_STORE_TIME_MAX, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    n = strlen(tmp);
    if (n >= EN_STORE_TIME_MAX)
        n = EN_STORE_TIME_MAX - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return 0;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

enum precision { P_DAY, P_MINUTE, P_SECOND, P_MILLI };

typedef struct parsed {
    int y, mo, d, h, mi, s, ms;
    enum precision prec;
} parsed;

/* Strict: no signs, no spaces other than a date/time separator. */
static int parse(const char *t, parsed *out)
{
    memset(out, 0, sizeof *out);
    if (!digits(&t, 4, &out->y) || *t++ != '-' || !digits(&t, 2, &out->mo) ||
        *t++ != '-' || !digits(&t, 2, &out->d))
        return 0;
    out->prec = P_DAY;
    if (*t == 'T' || *t == ' ') {
        t++;
        if (!digits(&t, 2, &out->h) || *t++ != ':' || !digits(&t, 2, &out->mi))
            return 0;
        out->prec = P_MINUTE;
        if (*t == ':') {
            t++;
            if (!digits(&t, 2, &out->s))
                return 0;
            out->prec = P_SECOND;
            if (*t == '.') {
                int n = 0, v = 0;
                t++;
                while (t[n] >= '0' && t[n] <= '9' && n < 3)
                    v = v * 10 + (t[n++] - '0');
                if (n == 0)
                    return 0;
                for (int k = n; k < 3; k++)
                    v *= 10;
                t += n;
                out->ms = v;
                out->prec = P_MILLI;
            }
        }
    }
    if (*t == 'Z')
        t++;
    return *t == '\0';
}

/* Fields to Unix ms, refusing dates that do not exist (2024-02-30). */
static int to_ms(const parsed *p, int64_t *ms)
{
    struct tm tm = {0}, back;
    time_t sec;

    if (p->y < 1970 || p->mo < 1 || p->mo > 12 || p->d < 1 || p->d > 31 ||
        p->h > 23 || p->mi > 59 || p->s > 59)
        return 0;
    tm.tm_year = p->y - 1900;
    tm.tm_mon = p->mo - 1;
    tm.tm_mday = p->d;
    tm.tm_hour = p->h;
    tm.tm_min = p->mi;
    tm.tm_sec = p->s;
    sec = timegm(&tm);
    if (sec == (time_t)-1 || !gmtime_r(&sec, &back) || back.tm_mday != p->d ||
        back.tm_mon != p->mo - 1)
        return 0;
    *ms = (int64_t)sec * 1000 + p->ms;
    return 1;
}

int64_t en__time_from_iso(const char *s)
{
    parsed p;
    int64_t ms;

    if (!s || !parse(s, &p) || !to_ms(&p, &ms))
        return -1;
    return ms;
}

int en_store_parse_time(const char *text, int end_of_period, int64_t *ms,
                        en_err *err)
{
    static const int64_t period[] = {86400000, 60000, 1000, 1};
    parsed p;

    if (!text || !parse(text, &p) || !to_ms(&p, ms))
        return en_err_set(err, EN_EINVAL,
                          "'%s' is not a date: use YYYY-MM-DD, optionally with "
                          "THH:MM[:SS[.mmm]] (UTC), e.g. 2024-05-01 or 2024-05-01T14:30",
                          text ? text : "(null)");
    if (end_of_period)
        *ms += period[p.prec];
    return EN_OK;
}

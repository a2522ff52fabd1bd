/*
 * dlog.c - echonetd's log lines and systemd notifications.
 *
 * Under the journal (JOURNAL_STREAM names our stderr) a line is sent with
 * sd_journal_send and fields of our own: ECHONET_JOB= (the daemon's job
 * name), ECHONET_STUDY= (the pseudonym), ECHONET_STAGE=, MESSAGE_ID= for
 * the events operators alert on, plus any extra fields (durations, EF).
 * Otherwise one plain line goes to stderr.  Callers never pass a patient
 * identifier or a delivered file name: only job names and pseudonyms.
 *
 * Without HAVE_LIBSYSTEMD everything goes to stderr and en_service_notify is a
 * no-op.
 */
#include "config.h"

#include "daemon.h"
#include "en_service.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif

static int use_journal;
static int log_verbose;

void dm_log_init(int verbose)
{
    log_verbose = verbose;
    use_journal = en_service_journal();
}

void dm_log(int prio, const dm_fields *f, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (prio >= DM_DEBUG && !log_verbose)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
#ifdef HAVE_LIBSYSTEMD
    if (use_journal) {
        char buf[12][2200];
        struct iovec iov[12];
        int n = 0;
#define ADD(...) do { snprintf(buf[n], sizeof buf[n], __VA_ARGS__); \
                      iov[n].iov_base = buf[n]; iov[n].iov_len = strlen(buf[n]); n++; } while (0)
        ADD("MESSAGE=%s", msg);
        ADD("PRIORITY=%d", prio);
        ADD("SYSLOG_IDENTIFIER=echonetd");
        if (f && f->job && f->job[0]) ADD("ECHONET_JOB=%s", f->job);
        if (f && f->study && f->study[0]) ADD("ECHONET_STUDY=%s", f->study);
        if (f && f->stage && f->stage[0]) ADD("ECHONET_STAGE=%s", f->stage);
        if (f && f->msgid) ADD("MESSAGE_ID=%s", f->msgid);
        for (int i = 0; f && i < 4 && f->extra[i] && n < 12; i++)
            ADD("%s", f->extra[i]);
#undef ADD
        sd_journal_sendv(iov, n);
        return;
    }
#endif
    {
        char pre[256] = "";
        size_t l = 0;
        if (f && f->job && f->job[0])
            l += (size_t)snprintf(pre + l, sizeof pre - l, " job=%s", f->job);
        if (f && f->study && f->study[0] && l < sizeof pre)
            l += (size_t)snprintf(pre + l, sizeof pre - l, " study=%.16s", f->study);
        if (f && f->stage && f->stage[0] && l < sizeof pre)
            snprintf(pre + l, sizeof pre - l, " stage=%s", f->stage);
        fprintf(stderr, "echonetd: %s:%s %s\n", en_service_prio_name(prio), pre, msg);
        fflush(stderr);
    }
}


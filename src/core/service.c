/*
 * service.c - the systemd side shared by echonetd's services (see
 * en_service.h), once instead of once per program.
 */
#include "config.h"

#include "en_service.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

int en_service_journal(void)
{
#ifdef HAVE_LIBSYSTEMD
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
#else
    return 0;
#endif
}

void en_service_notify(const char *fmt, ...)
{
#ifdef HAVE_LIBSYSTEMD
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sd_notify(0, buf);
#else
    (void)fmt;
#endif
}

uint64_t en_service_watchdog_ms(void)
{
#ifdef HAVE_LIBSYSTEMD
    uint64_t usec;

    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec / 1000;
#endif
    return 0;
}

const char *en_service_prio_name(int prio)
{
    static const char *const names[] = {"emerg", "alert", "crit", "error", "warning",
                                        "notice", "info", "debug"};
    return names[prio < 0 ? 0 : prio > 7 ? 7 : prio];
}

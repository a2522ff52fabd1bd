/*
 * en_service.h - what each of echonetd's services (echonetd, echonetd-recv,
 * echonetd-send) asks of systemd in the same way: is stderr the journal,
 * the notify socket, the watchdog interval, and a priority's name for the
 * one-line stderr form.  All of it works, doing nothing, without systemd.
 */
#ifndef EN_SERVICE_H
#define EN_SERVICE_H

#include <stdint.h>

/* 1 when stderr is the journal's stream (JOURNAL_STREAM names it), so
 * lines go through sd_journal_send with fields of their own. */
int en_service_journal(void);

/* sd_notify of one printf-formatted state line ("READY=1", "STATUS=..."). */
void en_service_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval systemd set for this service in ms, 0 when off. */
uint64_t en_service_watchdog_ms(void);

/* "error", "warning", ... for a syslog priority (0-7). */
const char *en_service_prio_name(int prio);

#endif

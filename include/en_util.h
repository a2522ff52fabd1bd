/*
 * en_util.h - the small helpers every module needs once: clocks, integer
 * parsing, a folder fsync, the CPUs to use and huge-page advice.  One copy
 * here, so a fix lands everywhere.
 */
#ifndef EN_UTIL_H
#define EN_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds, for durations only (never stored). */
double en_mono_ms(void);

/* Wall-clock milliseconds since the Unix epoch, for what is stored. */
int64_t en_wall_ms(void);

/* Parses a whole decimal integer in [min, max]: EN_OK, or EN_EINVAL for an
 * empty string, trailing characters, overflow or a value out of range. */
int en_parse_ll(const char *s, long long min, long long max, long long *out);

/* fsync of a folder, so a rename or unlink in it is durable: EN_OK, or
 * EN_EIO with errno kept from the failing call. */
int en_fsync_dir(const char *dir);

/* CPUs this process may run on (its affinity mask; else those online;
 * at least 1): what a thread count of 0 means. */
int en_cpu_count(void);

/* Asks for transparent huge pages on the whole 2 MB pages inside
 * [p, p + n), before anything touches them: a page fault per 2 MB instead
 * of per 4 KB for a large buffer written once.  Advice only: nothing
 * happens without THP or without a whole huge page inside. */
void en_advise_huge(void *p, size_t n);

#endif

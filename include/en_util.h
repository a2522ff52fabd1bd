/*
 * en_util.h - the small helpers every module needs once: clocks, integer
 * parsing and a folder fsync.  One copy here, so a fix lands everywhere.
 */
#ifndef EN_UTIL_H
#define EN_UTIL_H

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

#endif

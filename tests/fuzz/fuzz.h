/*
 * fuzz.h - what the libFuzzer harnesses in tests/fuzz/ share.
 *
 * Most of echonetd's parsers take a path, as the daemon hands them files
 * from its spool, so a harness writes each input to one scratch file of its
 * own and parses that: the parsers are fuzzed through the same door the
 * daemon uses (open, fstat, pread or mmap), with nothing changed for the
 * harness.  The file lives in $TMPDIR (or /tmp), is made once per process
 * and rewritten for every input.
 *
 * Each harness is built twice: with -fsanitize=fuzzer (scripts/fuzz.sh,
 * libFuzzer's own main) and with replay.c as main in every ordinary build,
 * where `make check` runs the saved crashes and seeds through it
 * (tests/fuzz_replay.sh), so a fixed crash stays fixed.
 */
#ifndef EN_FUZZ_H
#define EN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point, defined by each harness. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to this process's scratch file and returns its path; aborts
 * when the file cannot be written (a broken harness, not a finding). */
const char *fz_file(const uint8_t *data, size_t size);

/* Aborts with a message on stderr: an invariant the parser promises was
 * broken, which libFuzzer reports as a crash with the input saved. */
void fz_fail(const char *what) __attribute__((noreturn));

#define FZ_CHECK(cond) ((cond) ? (void)0 : fz_fail(#cond))

#endif

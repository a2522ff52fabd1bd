#!/bin/sh
# A gcc build with warnings as errors that never costs the tests: configures
# and builds DIR (programs and test programs) with configure --enable-werror;
# if a warning stops it, lists every one, finishes the build without -Werror
# so `make check` can still run, and counts one failure.  Run by test.sh for
# build/ and build-asan/.
#
#   scripts/werror-build.sh DIR [CONFIGURE-ARGS...]
#
# Writes DIR/werror.log in the form of automake's test-suite.log, which
# scripts/test-summary.sh adds up, and the compiler's messages to
# DIR/werror.out.  Exit status 0 when DIR is built (with or without
# -Werror), 1 when it cannot be built at all.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
name=$1
shift
dir=$top/$name
out=$dir/werror.out
jobs=$(nproc)
mkdir -p "$dir"

"$top/scripts/build.sh" "$name" --enable-werror "$@" > /dev/null 2> "$out"
rc=$?
if [ -f "$dir/Makefile" ] && ! grep -q '^EN_WARN_CFLAGS = .*-Werror' "$dir/Makefile"; then
    echo "note: $name was configured earlier without --enable-werror; delete it to check warnings there"
fi
# The test programs too (check_DATA= TESTS=: built, nothing generated or run).
[ $rc -eq 0 ] && { make -C "$dir" -j"$jobs" check check_DATA= TESTS= > /dev/null 2>> "$out" || rc=1; }
if [ $rc -eq 0 ]; then
    printf '# PASS: 1\n# FAIL: 0\nPASS: gcc -Werror build (%s)\n' "$name" > "$dir/werror.log"
    exit 0
fi
printf '# PASS: 0\n# FAIL: 1\nFAIL: gcc -Werror build (%s: see %s/werror.out)\n' "$name" "$name" \
    > "$dir/werror.log"
[ -f "$dir/Makefile" ] || { cat "$out"; exit 1; }
# Every file that does not build under -Werror, not only the first.
make -C "$dir" -k -j"$jobs" check check_DATA= TESTS= > /dev/null 2>> "$out"
echo "== $name: gcc -Werror stopped the build:"
grep -E ': (fatal )?error: ' "$out" | sort -u | head -20
echo "== $name: building again without -Werror, so the tests still run"
cflags=$(sed -n 's/^EN_WARN_CFLAGS = //p' "$dir/Makefile" | sed 's/ -Werror//')
cxxflags=$(sed -n 's/^EN_WARN_CXXFLAGS = //p' "$dir/Makefile" | sed 's/ -Werror//')
make -C "$dir" -j"$jobs" EN_WARN_CFLAGS="$cflags" EN_WARN_CXXFLAGS="$cxxflags" \
    check check_DATA= TESTS= > /dev/null

#!/bin/sh
# Static analysis as a habit (docs/testing.md): run by test.sh on every CI
# run, each check counted in its "N passed, N failed" line.
#
#   scripts/static-check.sh [DIR]      (default: build-static)
#
# 1. clang -Werror: the whole tree (programs and test programs) compiled by
#    clang with warnings as errors, compile only (the normal and ASan builds
#    of test.sh are gcc's -Werror builds, and run the tests).
# 2. scan-build: clang's static analyzer over that same build, no finding
#    allowed.
# 3. cppcheck over src/ and include/ with the build's -I and -D flags, no
#    finding allowed.
#
# Suppressions are in this file, each with the reason it is a false
# positive, or in the source as "// cppcheck-suppress ID" beside the line
# with its reason.  Findings in files listed in scripts/static-pending.txt
# (being rewritten by others) are printed but not counted; the list must end
# empty.  Writes DIR/static-check.log in the form of automake's
# test-suite.log, which scripts/test-summary.sh adds up.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-build-static}
dir=$top/$name
log=$dir/static-check.log
findings=$dir/static-findings.txt
jobs=$(nproc)
mkdir -p "$dir"
cd "$dir" || exit 1
rm -f "$log" "$findings"

pending=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$top/scripts/static-pending.txt" 2>/dev/null)

# Reads "path:line: message" lines on stdin; lists them (on stderr and in
# $findings) marked as counted or pending, and echoes the number counted.
classify() {
    n=0
    while IFS= read -r line; do
        f=${line%%:*}
        is_pending=no
        for p in $pending; do
            case $f in "$p"*) is_pending=yes ;; esac
        done
        if [ $is_pending = yes ]; then
            echo "  pending: $line" | tee -a "$findings" >&2
        else
            echo "  $line" | tee -a "$findings" >&2
            n=$((n + 1))
        fi
    done
    echo $n
}

pass=0
fail=0
result() {   # NAME COUNTED-FINDINGS DETAIL
    if [ "$2" -eq 0 ]; then
        echo "PASS: $1" >> "$log.tmp"
        echo "== static: PASS: $1 $3"
        pass=$((pass + 1))
    else
        echo "FAIL: $1 ($2 findings: see $name/static-findings.txt)" >> "$log.tmp"
        echo "== static: FAIL: $1: $2 findings $3"
        fail=$((fail + 1))
    fi
}
rm -f "$log.tmp"

# Paths as the tree names them: "../src/x.c" from the build folder and
# "$top/src/x.c" both become "src/x.c".
relpath() { sed -e "s|^$top/||" -e 's|^\(\.\./\)*||'; }

scan_cfg="deadcode.DeadStores:WarnForDeadNestedAssignments=false"
# Why each analyzer option:
#  - WarnForDeadNestedAssignments=false: the project's idiom
#    `if ((rc = f()) != EN_OK) return ...;` stores rc for the error path's
#    readers; plain dead stores are still reported.
scan="scan-build-14 --use-cc=clang --use-c++=clang++ -analyzer-config $scan_cfg"
command -v scan-build-14 > /dev/null || scan="scan-build --use-cc=clang --use-c++=clang++ -analyzer-config $scan_cfg"

echo "== static: configuring $name (clang, -Werror, under scan-build)"
[ -x "$top/configure" ] || "$top/autogen.sh"
if [ ! -f Makefile ]; then
    $scan "$top/configure" --enable-werror CC=clang CXX=clang++ \
        CFLAGS="-O1 -g0" CXXFLAGS="-O1 -g0" > configure.out 2>&1 || {
        echo "configure failed: $name/configure.out"; tail -20 configure.out
        echo "FAIL: configure ($name/configure.out)" >> "$log.tmp"
        fail=$((fail + 3))
    }
fi
if [ -f Makefile ]; then
    # The analyzer sees only what is compiled: always from clean.
    make clean > /dev/null 2>&1
    echo "== static: clang -Werror build and scan-build (make all and the test programs)"
    $scan -o "$dir/scan-reports" make -k -j"$jobs" all > static-check.out 2>&1
    build_rc=$?
    # check_DATA= TESTS=: the test programs are built, nothing is generated
    # or run.
    $scan -o "$dir/scan-reports" make -k -j"$jobs" check check_DATA= TESTS= >> static-check.out 2>&1 \
        || build_rc=1

    errs=$(grep -E '^[^ :]+:[0-9]+:[0-9]+: (fatal )?error: ' static-check.out | relpath | sort -u)
    echo "== static: compile errors:" | tee -a "$findings" >&2
    n=$(printf '%s\n' "$errs" | sed '/^$/d' | classify)
    if [ "$build_rc" -ne 0 ] && [ "$n" -eq 0 ] && [ -z "$errs" ]; then
        # Failed, but not at a compiler diagnostic (a link error, say).
        grep -E 'error|Error' static-check.out | tail -10 >&2
        n=1
    fi
    result "clang -Werror build" "$n" ""

    finds=$(grep -E '^[^ :]+:[0-9]+:[0-9]+: warning: .*\[[a-z]+\.[A-Za-z.]+\]$' static-check.out \
            | relpath | sort -u)
    echo "== static: scan-build findings:" | tee -a "$findings" >&2
    n=$(printf '%s\n' "$finds" | sed '/^$/d' | classify)
    result "scan-build" "$n" "(reports: $name/scan-reports)"
fi

# cppcheck: the flags the build compiles with (AM_CPPFLAGS and config.h),
# one configuration (so #ifdef branches the build does not take are not
# checked), x86-64 as built here.
echo "== static: cppcheck" | tee -a "$findings"
cpp_out=$dir/cppcheck.out
# Why each suppression is a false positive for this code:
#  - memsetClassFloat: zeroing a struct holding doubles with memset gives
#    0.0 on IEEE 754, which every architecture Debian supports uses.
#  - readdirCalled: readdir_r is deprecated (glibc 2.24, POSIX 2024);
#    readdir on a stream that one thread owns is thread-safe.
cppcheck --enable=warning,portability,performance --library=posix \
    --std=c11 --inline-suppr --error-exitcode=0 -q -j"$jobs" \
    --suppress=memsetClassFloat --suppress=readdirCalled \
    -I"$top/include" -I"$dir" -D_GNU_SOURCE -D__GNUC__ -D__x86_64__ \
    -DEN_SYSCONFDIR='"/etc"' -DEN_LOCALSTATEDIR='"/var"' \
    -DEN_PKGDATADIR='"/usr/share/echonetd"' -DEN_SRCDIR="\"$top\"" \
    --template='{file}:{line}: {severity}: {message} [{id}]' \
    "$top/src" "$top/include" > /dev/null 2> "$cpp_out"
cpp_rc=$?
finds=$(grep -E '^[^ :]+:[0-9]+: ' "$cpp_out" | relpath | sort -u)
n=$(printf '%s\n' "$finds" | sed '/^$/d' | classify)
[ "$cpp_rc" -ne 0 ] && { echo "cppcheck did not run: $cpp_out" >&2; n=$((n + 1)); }
result "cppcheck" "$n" ""

{ echo "# PASS: $pass"; echo "# FAIL: $fail"; cat "$log.tmp"; } > "$log"
rm -f "$log.tmp"
[ "$fail" -eq 0 ]

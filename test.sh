#!/bin/sh
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds, runs `make check` in a normal build and again in an
# ASan/UBSan build, then static analysis and a bounded libFuzzer run, and
# ends with one line: "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
./scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

san="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
status=0
# Both gcc builds treat warnings as errors (configure --enable-werror); a
# warning is one counted failure, and the tests still run.
./scripts/werror-build.sh build || status=1
./scripts/werror-build.sh build-asan CFLAGS="$san" CXXFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" || status=1
echo "== make check (normal build)"
( cd build && make -j"$(nproc)" check ) || status=1
# EN_SANITIZE lets the slowest tests (full-size networks) use smaller inputs
# under the sanitizers; every test still runs.
echo "== make check (ASan/UBSan build)"
( cd build-asan && EN_SANITIZE=1 make -j"$(nproc)" check ) || status=1
# Static analysis and fuzzing (docs/testing.md): each writes a log in the
# form of test-suite.log, so each of their checks is counted below.
echo "== static analysis (clang -Werror build, scan-build, cppcheck)"
./scripts/static-check.sh build-static
echo "== fuzzing (libFuzzer, every parser of outside input, ${EN_FUZZ_SECONDS:-40} s each)"
./scripts/fuzz.sh -d build-fuzz
exec "$top/scripts/test-summary.sh" $status build/test-suite.log build-asan/test-suite.log \
    build/werror.log build-asan/werror.log build-static/static-check.log build-fuzz/fuzz-suite.log

#!/bin/sh
# The whole test suite, from a fresh Debian 12 machine: installs what is
# missing, builds, runs `make check` in a normal build and again in an
# ASan/UBSan build, and ends with one line: "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
./scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }

san="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
status=0
./scripts/build.sh build || status=1
./scripts/build.sh build-asan CFLAGS="$san" CXXFLAGS="$san" LDFLAGS="-fsanitize=address,undefined" || status=1
echo "== make check (normal build)"
( cd build && make -j"$(nproc)" check ) || status=1
# EN_SANITIZE lets the slowest tests (full-size networks) use smaller inputs
# under the sanitizers; every test still runs.
echo "== make check (ASan/UBSan build)"
( cd build-asan && EN_SANITIZE=1 make -j"$(nproc)" check ) || status=1
exec "$top/scripts/test-summary.sh" $status build/test-suite.log build-asan/test-suite.log

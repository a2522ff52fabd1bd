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
for d in build build-asan; do
    echo "== make check in $d"
    ( cd "$d" && make -j"$(nproc)" check ) || status=1
done
exec "$top/scripts/test-summary.sh" $status build/test-suite.log build-asan/test-suite.log

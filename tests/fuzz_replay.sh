#!/bin/sh
# Runs every libFuzzer harness (tests/fuzz/) once over its saved crashes
# (tests/fuzz/crashes/<target>/), over seeds made now by
# tests/fuzz/make_seeds.py, and over the project's own hostile and shipped
# inputs: the generator's broken DICOMs, the shipped models, the documented
# configuration.  Built with replay.c as main, so it needs no clang: in the
# ASan/UBSan build this is where a crash found by fuzzing, once fixed, is
# held fixed.  A crash, a sanitizer report or a broken invariant fails it.
set -u
top=${EN_TOP_SRCDIR:?run under make check}
bld=${EN_TOP_BUILDDIR:?run under make check}
data=${EN_TESTDATA:?run under make check}
seeds=$bld/tests/out/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds"
"${PYTHON:-/usr/bin/python3}" "$top/tests/fuzz/make_seeds.py" --out "$seeds" || {
    echo "FAIL: make_seeds.py could not write the seeds"; exit 1; }
export TMPDIR="$seeds"

fail=0
for t in dicom-scan dicom-read weights json config avi; do
    set -- "$seeds/$t"
    [ -d "$top/tests/fuzz/crashes/$t" ] && set -- "$@" "$top/tests/fuzz/crashes/$t"
    case $t in
    dicom-*) set -- "$@" "$data/bad" ;;
    weights) set -- "$@" "$top"/models/*.safetensors ;;
    config) set -- "$@" "$top/etc/echonetd.conf" ;;
    esac
    if out=$("$bld/tests/fuzz/replay-$t" "$@" 2>&1); then
        echo "ok: $t: $(echo "$out" | tail -1)"
    else
        echo "FAIL: $t"
        echo "$out" | tail -40
        fail=1
    fi
done
rm -rf "$seeds"
exit $fail

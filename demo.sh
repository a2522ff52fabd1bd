#!/bin/sh
# The main job end to end on generated sample data, from a fresh Debian 12
# machine: installs what is missing, builds, generates synthetic echo
# studies, converts each to its deidentified 112x112 AVI and prints what it
# produced.  Everything lands in sample-out/.
set -eu
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
./scripts/install-deps.sh
./scripts/build.sh build >/dev/null

out="$top/sample-out"
rm -rf "$out/studies" "$out/output"
mkdir -p "$out/site" "$out/output"
chmod 700 "$out/site"
cat > "$out/site/echonetd.conf" <<CONF
[paths]
output_dir = $out/output
[deid]
secret_file = $out/site/site-secret
CONF
echo "generating sample echo studies in $out/studies ..."
/usr/bin/python3 tests/gen/make_dicoms.py --out "$out/studies" --quick >/dev/null
exec /usr/bin/python3 scripts/demo_summary.py "$top/build/echonetctl" "$out/site/echonetd.conf" "$out/studies"

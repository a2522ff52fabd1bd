#!/bin/sh
# The main job end to end on the bundled defaults, from a fresh Debian 12
# machine: installs what is missing, builds, simulates apical-4-chamber echo
# studies with known truth, runs echonetd on them (inbox -> DICOM ->
# deidentify -> sector -> 112x112 AVI -> segmentation -> beats -> EF beat
# by beat -> SQLite -> report) with the phantom-trained default models, and
# prints the results from the database beside the truth.  Everything lands
# in sample-out/.
set -eu
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
./scripts/install-deps.sh
./scripts/build.sh build >/dev/null
exec /usr/bin/python3 scripts/demo_run.py "$top" "$top/sample-out" --studies "${DEMO_STUDIES:-6}"

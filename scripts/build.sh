#!/bin/sh
# Configures and builds echonetd out of tree in DIR (default build/), passing
# any further arguments to configure.  Re-running only rebuilds.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
[ $# -gt 0 ] && shift
[ -x "$top/configure" ] || "$top/autogen.sh"
mkdir -p "$top/$dir"
cd "$top/$dir"
[ -f Makefile ] || "$top/configure" "$@"
make -j"$(nproc)"

#!/bin/sh
# submit.sh - submits a back-fill: the array of echonetd-array.sbatch (one
# task per shard) and echonetd-merge.sbatch after it
# (--dependency=afterany, so the merge also runs, and says what to submit
# again, when a task failed or was cancelled).  docs/scale.md walks
# through it.
#
#   ECHONETD_CONF=site.conf ECHONETD_LIST=files.txt ECHONETD_SHARDS=64 \
#   ECHONETD_SHARD_DIR=/shared/backfill contrib/slurm/submit.sh [--tasks K,...] \
#       [--at-once M] [-- SBATCH OPTIONS FOR THE ARRAY...]
#
# --tasks submits only those shards (again), with a new merge after them;
# --at-once runs at most M tasks at a time (sbatch --array=...%M), to spare
# the shared file system.  Anything after -- goes to the array's sbatch
# (--partition, --time, --cpus-per-task, --mem).  Prints the two job ids,
# "array ID" and "merge ID".
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tasks=
at_once=
while [ $# -gt 0 ]; do
    case $1 in
    --tasks) tasks=$2; shift 2 ;;
    --at-once) at_once=%$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--tasks K,...] [--at-once M] [-- SBATCH_OPTIONS...]" >&2; exit 2 ;;
    esac
done
: "${ECHONETD_CONF:?set ECHONETD_CONF}" "${ECHONETD_LIST:?set ECHONETD_LIST}"
: "${ECHONETD_SHARDS:?set ECHONETD_SHARDS}" "${ECHONETD_SHARD_DIR:?set ECHONETD_SHARD_DIR}"
# Jobs may start elsewhere than here: absolute paths.
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
ECHONETD_CONF=$(abs "$ECHONETD_CONF")
ECHONETD_LIST=$(abs "$ECHONETD_LIST")
ECHONETD_SHARD_DIR=$(abs "$ECHONETD_SHARD_DIR")
export ECHONETD_CONF ECHONETD_LIST ECHONETD_SHARDS ECHONETD_SHARD_DIR
mkdir -p "$ECHONETD_SHARD_DIR/logs"

array=$(sbatch --parsable --array="${tasks:-1-$ECHONETD_SHARDS}$at_once" --export=ALL \
    --output="$ECHONETD_SHARD_DIR/logs/shard-%a-job-%A.log" "$@" "$here/echonetd-array.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterany:$array" --export=ALL \
    --output="$ECHONETD_SHARD_DIR/logs/merge-job-%j.log" "$here/echonetd-merge.sbatch")
merge=${merge%%;*}
echo "array $array"
echo "merge $merge"

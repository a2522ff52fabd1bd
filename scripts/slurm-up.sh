#!/bin/sh
# slurm-up.sh - a single-node Slurm cluster on this machine, for the tests
# and CI (tests/slurm_backfill.py) and for trying contrib/slurm/ by hand.
#
#   scripts/slurm-up.sh up STATE      start munged, slurmctld and slurmd
#   scripts/slurm-up.sh down STATE    stop them (the ones started from STATE)
#   scripts/slurm-up.sh status STATE  exit 0 when the node takes jobs
#
# Everything lives in STATE (a folder of its own: a munge key made for it,
# slurm.conf naming this host with CPUs=2, spool, state, logs, pid files),
# so nothing under /etc is read or changed and a machine's own Slurm, if it
# has one, is left alone: the daemons listen on ports of their own
# (ECHONETD_SLURM_PORT, default 16817, and the next one).  `up` is
# idempotent: daemons already running from STATE are kept.  After `up`,
# point Slurm's commands at the cluster with SLURM_CONF=STATE/slurm.conf
# (`up` prints that line).
#
# Needs root (slurmd starts jobs as their users; munged and Slurm check
# their files' owners) and Debian's slurm-wlm and munge.  Exit 77 (the
# automake SKIP code) says why when the cluster cannot be started here.
set -eu

cmd=${1:-}
state=${2:-}
case $cmd in up|down|status) ;; *)
    echo "usage: $0 up|down|status STATE_DIR" >&2; exit 2 ;;
esac
[ -n "$state" ] || { echo "$0: give a state folder" >&2; exit 2; }
mkdir -p "$state"
state=$(cd "$state" && pwd)
port=${ECHONETD_SLURM_PORT:-16817}
conf=$state/slurm.conf
host=$(hostname -s)
export SLURM_CONF="$conf"

skip() { echo "SKIP: $*" >&2; exit 77; }

# A daemon of ours is running when its pid file names a live process of
# that program (a recycled pid of another program does not count).
alive() {
    pidf=$state/run/$1.pid
    [ -s "$pidf" ] || return 1
    pid=$(cat "$pidf")
    [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ]
}

stop() {
    alive "$1" || return 0
    pid=$(cat "$state/run/$1.pid")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/run/$1.pid"
}

node_state() {
    sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1
}

if [ "$cmd" = down ]; then
    stop slurmd
    stop slurmctld
    stop munged
    exit 0
fi

if [ "$cmd" = status ]; then
    alive slurmctld && alive slurmd && alive munged || exit 1
    case $(node_state) in idle*|mix*|alloc*) exit 0 ;; *) exit 1 ;; esac
fi

# ---- up ---------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "a test Slurm cluster needs root (slurmd starts jobs as their users)"
for prog in munged slurmctld slurmd sbatch sinfo scontrol; do
    command -v "$prog" >/dev/null 2>&1 ||
        skip "$prog is not installed (Debian: apt-get install slurm-wlm munge)"
done

mkdir -p "$state/munge" "$state/run" "$state/log" "$state/spool/ctld" "$state/spool/d"
chmod 0700 "$state/munge" "$state/spool/ctld" "$state/spool/d"
chmod 0755 "$state" "$state/run" "$state/log"
# munged refuses a key that others may read; 1024 random bytes as mungekey makes
if [ ! -s "$state/munge/munge.key" ]; then
    ( umask 077; head -c 1024 /dev/urandom > "$state/munge/munge.key" )
fi
chmod 0400 "$state/munge/munge.key"

cat > "$conf.tmp" <<EOF
# Written by scripts/slurm-up.sh: a one-node test cluster, state in $state.
ClusterName=echonetdtest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$state/spool/ctld
SlurmdSpoolDir=$state/spool/d
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
# No cgroups: the tests run in containers and VMs alike.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to scontrol for an hour (no accounting here).
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdTimeout=120
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
if [ -f "$conf" ] && cmp -s "$conf" "$conf.tmp"; then
    rm -f "$conf.tmp"
else
    mv "$conf.tmp" "$conf"
    # A new configuration: daemons started from an older one go.
    stop slurmd
    stop slurmctld
fi

if ! alive munged; then
    munged --force --socket="$state/munge/munge.socket" --key-file="$state/munge/munge.key" \
        --pid-file="$state/run/munged.pid" --log-file="$state/log/munged.log" \
        --seed-file="$state/munge/munged.seed" ||
        skip "munged does not start here (see $state/log/munged.log)"
fi
if ! alive slurmctld; then
    slurmctld -f "$conf" ||
        skip "slurmctld does not start here (see $state/log/slurmctld.log)"
fi
if ! alive slurmd; then
    slurmd -f "$conf" || skip "slurmd does not start here (see $state/log/slurmd.log)"
fi

# The node takes jobs once slurmd has registered with slurmctld.
i=0
while :; do
    st=$(node_state || true)
    case $st in
    idle*|mix*|alloc*) break ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
    esac
    i=$((i + 1))
    if [ $i -gt 120 ]; then
        echo "$0: node $host is '$st' after 60 s; logs in $state/log" >&2
        tail -n 5 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "SLURM_CONF=$conf"

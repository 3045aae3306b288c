#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on localhost, to test sbatch scripts for real.
#
#   eval "$(bash scripts/slurm_local.sh start)"   # prints: export SLURM_CONF=...
#   sbatch --test-only --ntasks=1 --cpus-per-task=1 examples/label_gpaw_array.sbatch
#   sbatch --wait --array=0-1 --cpus-per-task=1 examples/slurm_relax_array.sh candidates.extxyz
#   bash scripts/slurm_local.sh status
#   bash scripts/slurm_local.sh stop
#
# Everything lives in $CSCLI_SLURM_DIR (default /tmp/cscli-slurm-$UID, mode 0700): slurm.conf,
# state, spool, logs, pid files and a munge daemon of its own (fresh key, its own socket), so
# nothing in /etc is touched and no system munged is needed. (Slurm 22.05 also builds auth/none,
# but then anyone who reaches the slurmctld port - it listens on all interfaces - could run jobs
# as this user; munge keeps it to processes of this user on this machine.) The daemons run as the
# current user (root in a container); the node is this machine with the CPUs and memory that
# `slurmd -C` reports; one partition "cpu" (the name the examples use); no accounting.
# Ports: the first free pair from $CSCLI_SLURM_PORT (default 6817) up, so clusters in different
# folders can run side by side. Needs slurmctld, slurmd, sinfo, munged, mungekey (Debian:
# apt-get install slurm-wlm munge). $CSCLI_SLURM_TIMEOUT: seconds to wait for an idle node (30).
set -euo pipefail

DIR="${CSCLI_SLURM_DIR:-/tmp/cscli-slurm-$(id -u)}"
CONF="$DIR/slurm.conf"
TIMEOUT="${CSCLI_SLURM_TIMEOUT:-30}"

die() { echo "slurm_local: $*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() {  # running PID: alive and not a zombie (pid 1 of a container may reap late)
    kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo R)" != Z ]
}

alive() {  # alive PIDFILE: the daemon in PIDFILE is running
    local pid
    [ -s "$1" ] && pid="$(cat "$1")" && [ -n "$pid" ] && running "$pid"
}

node_state() { SLURM_CONF="$CONF" sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n 1; }

write_conf() {
    local user hw node ctld_port slurmd_port
    user="$(id -un)"
    # this machine as slurmd sees it: "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ... RealMemory=24105"
    hw="$(slurmd -C | head -n 1)"
    node="$(tr ' ' '\n' <<<"$hw" | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')"
    grep -q 'CPUs=' <<<"$node" && grep -q 'RealMemory=' <<<"$node" \
        || die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
    ctld_port="${CSCLI_SLURM_PORT:-6817}"
    while port_busy "$ctld_port" || port_busy $((ctld_port + 1)); do
        ctld_port=$((ctld_port + 2))
        [ "$ctld_port" -lt 65000 ] || die "no free port pair found"
    done
    slurmd_port=$((ctld_port + 1))
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    : > "$DIR/plugstack.conf"
    # MinJobAge=4: finished jobs stay in squeue/scontrol 4 s; short, so that `sbatch --wait`
    # polls every 2 s (it backs off to 8 s and more when MinJobAge allows)
    cat > "$CONF" <<EOF
# written by scripts/slurm_local.sh: a throwaway one-node cluster for tests
ClusterName=cscli-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
PlugStackConfig=$DIR/plugstack.conf
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
MinJobAge=4
NodeName=localhost NodeAddr=127.0.0.1 ${node}State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    local tool
    for tool in slurmctld slurmd sinfo squeue scancel munged mungekey; do
        command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install slurm-wlm munge)"
    done
    if alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
        echo "slurm_local: already running in $DIR" >&2
    else
        stop >/dev/null 2>&1 || true
        mkdir -p "$DIR" && [ -O "$DIR" ] && chmod 700 "$DIR" && mkdir -p "$DIR/log" \
            || die "$DIR is not a folder of mine"
        [ -s "$DIR/munge.key" ] || mungekey --create --keyfile="$DIR/munge.key" \
            || die "mungekey could not write $DIR/munge.key"
        # --force: munged wants a world-searchable socket folder; this one is private on purpose
        munged --force --socket="$DIR/munge.socket" --key-file="$DIR/munge.key" \
            --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed" \
            || die "munged did not start; see $DIR/log/munged.log"
        write_conf
        # -c: a clean start (no jobs or node state from an earlier run of this folder)
        slurmctld -c -f "$CONF" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
        slurmd -N localhost -f "$CONF" || die "slurmd did not start; see $DIR/log/slurmd.log"
    fi
    local waited=0 state=""
    while :; do
        state="$(node_state || true)"
        case "$state" in idle|mixed|allocated) break ;; esac
        if [ "$waited" -ge "$((TIMEOUT * 2))" ]; then
            echo "slurm_local: node not idle after ${TIMEOUT} s (state: ${state:-no answer}); logs:" >&2
            tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
            stop >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "slurm_local: node localhost $state; config $CONF" >&2
    echo "export SLURM_CONF=$CONF"
}

stop() {
    local name pid stopped=""
    # cancel what still runs, so no job step outlives its slurmd
    if alive "$DIR/slurmctld.pid"; then
        SLURM_CONF="$CONF" scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [ -z "$(SLURM_CONF="$CONF" squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    for name in slurmd slurmctld munged; do
        if alive "$DIR/$name.pid"; then
            pid="$(cat "$DIR/$name.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
            running "$pid" && kill -9 "$pid" 2>/dev/null || true
            stopped="$stopped $name($pid)"
        fi
        rm -f "$DIR/$name.pid"
    done
    echo "slurm_local: stopped${stopped:- nothing} in $DIR" >&2
}

status() {
    local name rc=0
    for name in munged slurmctld slurmd; do
        if alive "$DIR/$name.pid"; then echo "$name: running (pid $(cat "$DIR/$name.pid"))"
        else echo "$name: not running"; rc=1; fi
    done
    [ "$rc" = 0 ] && SLURM_CONF="$CONF" sinfo -N -l
    [ "$rc" = 0 ] && echo "export SLURM_CONF=$CONF"
    return "$rc"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (folder: \$CSCLI_SLURM_DIR, now $DIR)" >&2; exit 2 ;;
esac

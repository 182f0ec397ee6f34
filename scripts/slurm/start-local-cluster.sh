#!/usr/bin/env bash
# Starts a real, single-node SLURM cluster on this machine (Debian/Ubuntu, as root, no systemd needed),
# for the SLURM tests (tests/test_pipeline_slurm.py) and for trying `snakemake --profile slurm` locally.
#
#   sudo bash scripts/slurm/start-local-cluster.sh     # idempotent: a healthy cluster is left as is
#   sudo bash scripts/slurm/stop-local-cluster.sh
#
# What it does: installs slurmctld/slurmd/slurm-client/munge (apt, --no-install-recommends) if missing,
# creates the munge key, writes /etc/slurm/slurm.conf and gres.conf for ONE node named `hostname -s`
# with the CPUs/RealMemory that `slurmd -C` reports, FAKE_GPUS fake GPUs (gres backed by /dev/null-like
# files: jobs get CUDA_VISIBLE_DEVICES, no real device), one partition `debug` (Default=YES), then
# starts munged, slurmctld and slurmd directly and waits until `sinfo` shows the node idle.
# No accounting daemon: sacct answers "accounting storage is disabled", so the profile uses
# `slurm-status-command: squeue` and MinJobAge=600 keeps finished jobs visible to squeue.
#
# Environment: FAKE_GPUS (default 2), PARTITION (default debug), START_TIMEOUT seconds (default 60),
# SLURM_FORCE_RESTART=1 rewrites the config and restarts the daemons even if the cluster is healthy.
# On failure it prints the daemon logs (/var/log/slurm/*.log) and exits non-zero; it never waits forever.
set -euo pipefail

FAKE_GPUS=${FAKE_GPUS:-2}
PARTITION=${PARTITION:-debug}
START_TIMEOUT=${START_TIMEOUT:-60}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
RUN_DIR=/run/slurm
MARK="# written by protoseg-repro scripts/slurm/start-local-cluster.sh"
export SLURM_CONF=$CONF_DIR/slurm.conf
t0=$(date +%s.%N)

log() { printf '[slurm-local] %s\n' "$*" >&2; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

diagnose() {
  log "FAILED after $(elapsed) s; diagnostics follow"
  for f in "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "----- tail -n 40 $f"; tail -n 40 "$f"; }
  done
  echo "----- processes"; ps -eo pid,user,args | grep -E '[m]unged|[s]lurmctld|[s]lurmd' || true
  echo "----- sinfo"; timeout 10 sinfo -N -l 2>&1 || true
  echo "----- scontrol show node"; timeout 10 scontrol show node 2>&1 | head -30 || true
}
trap 'rc=$?; [ $rc -ne 0 ] && diagnose; exit $rc' EXIT

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages and starts daemons)"; exit 1
fi

node=$(hostname -s)

healthy() {  # the node answers and is idle/mixed/allocated in our partition
  local state
  # scontrol ping answers at once; sinfo retries a dead controller for ~10 s
  timeout 5 scontrol ping 2>/dev/null | grep -q UP || return 1
  state=$(timeout 10 sinfo -h -p "$PARTITION" -n "$node" -o '%t' 2>/dev/null | head -1) || return 1
  [[ "$state" =~ ^(idle|mix|alloc)$ ]]
}

if [ "${SLURM_FORCE_RESTART:-0}" != 1 ] && grep -qF "$MARK" "$SLURM_CONF" 2>/dev/null && healthy; then
  log "cluster already up (node $node, partition $PARTITION): nothing to do"
  trap - EXIT; exit 0
fi

# ---- packages ---------------------------------------------------------------------------------------
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq </dev/null
  timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
fi

# ---- stop what runs (ours or leftovers), so the new config is the one in force -----------------------
stop_daemon() {  # name pidfile
  local pid
  pid=$(cat "$2" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$2"
}
stop_daemon slurmd "$RUN_DIR/slurmd.pid"
stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"

# ---- munge ------------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
  old_pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
  [ -n "$old_pid" ] && kill "$old_pid" 2>/dev/null || true
  rm -f /run/munge/munged.pid
  runuser -u munge -- munged --force
  for _ in $(seq 50); do timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
timeout 5 munge -n | timeout 5 unmunge >/dev/null || { log "munge does not work"; exit 1; }

# ---- config -----------------------------------------------------------------------------------------
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR" "$RUN_DIR"
hw=$(slurmd -C | head -1)  # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
hw=${hw#NodeName=* }
gres_node="" gres_types=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  gres_types="GresTypes=gpu"; gres_node="Gres=gpu:$FAKE_GPUS"
  # gres needs one device file per GPU (a Count-only line makes the node INVAL). With task/none there is
  # no cgroup, so plain files work: /dev/null, /dev/zero, ... then fake files under $RUN_DIR.
  : > "$CONF_DIR/gres.conf.new"
  echo "$MARK" >> "$CONF_DIR/gres.conf.new"
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    case $i in 0) f=/dev/null ;; 1) f=/dev/zero ;; *) f=$RUN_DIR/fake-gpu$i; : > "$f" ;; esac
    echo "NodeName=$node Name=gpu File=$f" >> "$CONF_DIR/gres.conf.new"
  done
  mv "$CONF_DIR/gres.conf.new" "$CONF_DIR/gres.conf"
else
  rm -f "$CONF_DIR/gres.conf"
fi

cat > "$SLURM_CONF" <<EOF
$MARK
# A one-node test cluster; see scripts/slurm/start-local-cluster.sh and docs/slurm.md.
ClusterName=protoseg-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire seconds (default 120): short for the tests
AuthInfo=cred_expire=20
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# finished jobs stay visible to squeue for 10 min (the plugin's squeue status needs >= 3x its first check)
MinJobAge=600
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
Waittime=0
$gres_types
NodeName=$node NodeAddr=127.0.0.1 $hw $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
chmod 0644 "$SLURM_CONF"

# ---- daemons ----------------------------------------------------------------------------------------
log "starting slurmctld and slurmd (node $node: $hw ${gres_node:-no gres})"
# -c: clean start (no saved jobs/node state from an earlier config); -i: ignore errors in saved state
timeout 30 slurmctld -c -i
for _ in $(seq $((START_TIMEOUT * 5))); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
timeout 5 scontrol ping | grep -q UP || { log "slurmctld does not answer"; exit 1; }
timeout 30 slurmd

deadline=$(( $(date +%s) + START_TIMEOUT ))
until healthy; do
  if [ "$(date +%s)" -ge "$deadline" ]; then log "node $node not idle within ${START_TIMEOUT}s"; exit 1; fi
  state=$(timeout 10 sinfo -h -n "$node" -o '%t' 2>/dev/null | head -1 || true)
  if [[ "$state" =~ ^(down|drain|inval|fail) ]]; then
    timeout 10 scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
  fi
  sleep 0.5
done
log "cluster up in $(elapsed) s: node $node idle in partition $PARTITION ($FAKE_GPUS fake GPUs)"
trap - EXIT

#!/usr/bin/env bash
# Stops the local test cluster started by scripts/slurm/start-local-cluster.sh: cancels its jobs, then
# stops slurmd and slurmctld by their pid files (munged keeps running unless STOP_MUNGE=1).
# Packages and /etc/slurm stay; the next start is a clean start.
set -uo pipefail
RUN_DIR=/run/slurm
export SLURM_CONF=/etc/slurm/slurm.conf

if [ "$(id -u)" -ne 0 ]; then echo "[slurm-local] must run as root" >&2; exit 1; fi
timeout 10 scancel --full --user=root 2>/dev/null || true

stop_pidfile() {  # pidfile
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
stop_pidfile "$RUN_DIR/slurmd.pid"
stop_pidfile "$RUN_DIR/slurmctld.pid"
[ "${STOP_MUNGE:-0}" = 1 ] && stop_pidfile /run/munge/munged.pid
echo "[slurm-local] stopped" >&2

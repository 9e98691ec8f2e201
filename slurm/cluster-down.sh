#!/usr/bin/env bash
# cluster-down.sh - stop what cluster-up.sh started: cancel the jobs, then each daemon by its recorded PID.
set -uo pipefail
D=${SLURM_CI_DIR:-/tmp/slurm-ci}

gone() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -z "$st" ] || [ "${st:0:1}" = Z ]; }
stop() {  # stop NAME COMM
  local pid; pid=$(cat "$D/$1.pid" 2>/dev/null) || return 0
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do gone "$pid" && break; sleep 0.1; done
    gone "$pid" || kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$D/$1.pid"
}

pid=$(cat "$D/slurmctld.pid" 2>/dev/null) || pid=
if [ -n "$pid" ] && ! gone "$pid"; then
  ids=$(squeue -h -o %A 2>/dev/null)          # every job of this private cluster
  [ -n "$ids" ] && scancel --full $ids 2>/dev/null
  for _ in $(seq 100); do [ -z "$(squeue -h -t R,CG,S 2>/dev/null)" ] && break; sleep 0.1; done
fi
stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadbd mariadbd
stop munged munged
echo "slurm down"

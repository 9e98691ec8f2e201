#!/usr/bin/env bash
# cluster-up.sh - start a single-node SLURM cluster on localhost as root, without systemd.
# Idempotent: daemons already running (tracked by PID files in $SLURM_CI_DIR) are left alone;
# the script always ends by waiting until `sinfo` shows the node idle.
#   SLURM_CI_DIR         state/spool/logs/pid files (default /tmp/slurm-ci)
#   SLURM_CI_ACCOUNTING  1 (default) = slurmdbd + MariaDB so `sacct` works; 0 = no accounting
set -euo pipefail
D=${SLURM_CI_DIR:-/tmp/slurm-ci}
ACCT=${SLURM_CI_ACCOUNTING:-1}
CONF=/etc/slurm/slurm.conf

alive() {  # alive NAME COMM: the PID in $D/NAME.pid is a live (non-zombie) process named COMM
  local pid st; pid=$(cat "$D/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] || return 1
  st=$(ps -o stat= -p "$pid" 2>/dev/null); [ -n "$st" ] && [ "${st:0:1}" != Z ]
}
waitfor() {  # waitfor SECONDS CMD...: poll CMD every 0.1 s
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# 1. Debian packages (bookworm: slurm 22.05.8, munge 0.5.15, mariadb 10.11)
pkgs=(munge slurmctld slurmd slurm-client)
[ "$ACCT" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # keep the packages' init scripts from starting daemons of their own that would clash with ours
  [ -e /usr/sbin/policy-rc.d ] || printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
mkdir -p "$D"/{state,spool,log} /etc/slurm

# 2. munged, as user munge (the package's postinst made /etc/munge/munge.key)
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
fi
if ! alive munged munged; then
  install -d -o munge -g munge -m 0755 /run/munge
  setpriv --reuid=munge --regid=munge --init-groups \
    /usr/sbin/munged --foreground </dev/null >"$D/log/munged.out" 2>&1 &
  echo $! >"$D/munged.pid"
  waitfor 10 sh -c 'munge -n </dev/null | unmunge' || { echo "munged failed" >&2; exit 1; }
fi

fresh=0; alive slurmctld slurmctld || fresh=1

# 3. accounting: private MariaDB (datadir under $D, default socket path) + slurmdbd
if [ "$ACCT" = 1 ]; then
  if ! alive mariadbd mariadbd; then
    [ -d "$D/mysql/mysql" ] || mariadb-install-db --no-defaults --datadir="$D/mysql" --user=root \
        --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install.out" 2>&1
    install -d -o root -g root -m 0755 /run/mysqld
    /usr/sbin/mariadbd --no-defaults --user=root --datadir="$D/mysql" --skip-networking \
      --socket=/run/mysqld/mysqld.sock --pid-file="$D/mariadbd.daemon.pid" \
      --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 </dev/null >"$D/log/mariadbd.out" 2>&1 &
    echo $! >"$D/mariadbd.pid"
    waitfor 30 mariadb-admin --socket=/run/mysqld/mysqld.sock ping || { echo "mariadbd failed" >&2; exit 1; }
  fi
  if ! alive slurmdbd slurmdbd; then
    # job ids restart at 1 on a fresh slurmctld, so old accounting rows must go too
    [ "$fresh" = 1 ] && mariadb --socket=/run/mysqld/mysqld.sock -e 'DROP DATABASE IF EXISTS slurm_acct_db'
    cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/slurmdbd.daemon.pid
CONF
    chmod 600 /etc/slurm/slurmdbd.conf
    /usr/sbin/slurmdbd -D </dev/null >"$D/log/slurmdbd.out" 2>&1 &
    echo $! >"$D/slurmdbd.pid"
    waitfor 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/6819" || { echo "slurmdbd failed" >&2; exit 1; }
  fi
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt"
fi

# 4. slurm.conf (written only when slurmctld is down) and the two slurm daemons
if [ "$fresh" = 1 ]; then
  # node line from the real hardware (slurmd -C), renamed localhost, 90% of RAM as RealMemory
  NODE=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/')
  MEM=$(echo "$NODE" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  NODE=$(echo "$NODE" | sed "s/RealMemory=[0-9]*/RealMemory=$((MEM * 9 / 10))/")
  cat >"$CONF" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=cred_expire=5
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
$ACCT_LINES
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
KillWait=5
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.daemon.pid
SlurmdPidFile=$D/slurmd.daemon.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$NODE State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=10
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
CONF
  rm -rf "$D/state"/* "$D/spool"/*
  /usr/sbin/slurmctld -D </dev/null >"$D/log/slurmctld.out" 2>&1 &
  echo $! >"$D/slurmctld.pid"
fi
if ! alive slurmd slurmd; then
  /usr/sbin/slurmd -D -N localhost </dev/null >"$D/log/slurmd.out" 2>&1 &
  echo $! >"$D/slurmd.pid"
fi

# 5. wait (30 s max) until the node is idle
for _ in $(seq 150); do
  st=$(sinfo -h -N -n localhost -p debug -o '%T' 2>/dev/null || true)
  if [ "$st" = idle ]; then echo "slurm up: node localhost idle (accounting=$ACCT)"; exit 0; fi
  sleep 0.2
done
echo "slurm did not come up (node state: '${st:-none}')" >&2
tail -n 20 "$D"/log/*.log >&2 || true
exit 1

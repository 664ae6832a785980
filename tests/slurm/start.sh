#!/usr/bin/env bash
# Start a real single-node SLURM (munge, slurmctld, slurmd from Debian's packages) with one
# fake `gpu` gres of type `fake` (two devices) and the node feature `ci`; state, logs and config live under STATE_DIR. Snakemake's jobstep plugin
# strips SLURM_CONF before its nested srun, so the config is also linked at /etc/slurm (an
# existing file is moved aside to STATE_DIR/etc-backup and restored by stop.sh). Installs the
# packages with apt-get when missing (needs root). Writes the PIDs of the daemons it started
# to STATE_DIR/*.pid so stop.sh stops exactly those.
#   tests/slurm/start.sh STATE_DIR        then: export SLURM_CONF=STATE_DIR/slurm.conf
set -euo pipefail
STATE=$(realpath -m "${1:?usage: start.sh STATE_DIR}")
mkdir -p "$STATE"
# slurmctld runs as user slurm and must reach its state directory
if ! runuser -u slurm -- test -x "$STATE" 2>/dev/null && id slurm >/dev/null 2>&1; then
  echo "$STATE is not reachable by user slurm (a 0700 parent?); use e.g. /tmp/xyz" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
fi

NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >> /etc/hosts
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# munge: reuse a running daemon, else start our own
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi

mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log"
chown -R slurm:slurm "$STATE/ctld" "$STATE/log"
cat > "$STATE/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
DefMemPerCPU=500
MinJobAge=600
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
GresTypes=gpu
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM Gres=gpu:fake:2 Feature=ci State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$STATE/gres.conf" <<CONF
AutoDetect=off
NodeName=$NODE Name=gpu Type=fake File=/dev/null,/dev/zero
CONF
chmod 644 "$STATE/slurm.conf" "$STATE/gres.conf"
mkdir -p /etc/slurm "$STATE/etc-backup"
for f in slurm.conf gres.conf; do
  if [ -e "/etc/slurm/$f" ] || [ -L "/etc/slurm/$f" ]; then mv "/etc/slurm/$f" "$STATE/etc-backup/$f"; fi
  ln -s "$STATE/$f" "/etc/slurm/$f"
done
export SLURM_CONF="$STATE/slurm.conf"

setsid /usr/sbin/slurmctld -D -f "$SLURM_CONF" > "$STATE/log/slurmctld.out" 2>&1 &
echo $! > "$STATE/slurmctld.pid"
setsid /usr/sbin/slurmd -D -f "$SLURM_CONF" > "$STATE/log/slurmd.out" 2>&1 &
echo $! > "$STATE/slurmd.pid"

for _ in $(seq 150); do
  for d in slurmctld slurmd; do
    if ! kill -0 "$(cat "$STATE/$d.pid")" 2>/dev/null; then
      echo "$d exited:" >&2; tail -n 5 "$STATE/log/$d.out" "$STATE/log/$d.log" >&2 || true
      exit 1
    fi
  done
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  case "$state" in
    idle*) echo "slurm up: $NODE, $CPUS cpus, 2 fake gpus"; exit 0 ;;
    drain*|inval*|down*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
echo "slurm did not come up; see $STATE/log" >&2
tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
exit 1

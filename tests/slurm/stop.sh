#!/usr/bin/env bash
# Stop exactly the daemons start.sh started (by the PIDs it recorded) and restore /etc/slurm.
STATE=$(realpath -m "${1:?usage: stop.sh STATE_DIR}")
for name in slurmd slurmctld munged; do
  f="$STATE/$name.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
done
for f in slurm.conf gres.conf; do
  if [ "$(readlink "/etc/slurm/$f" 2>/dev/null)" = "$STATE/$f" ]; then rm -f "/etc/slurm/$f"; fi
  if [ -e "$STATE/etc-backup/$f" ]; then mv "$STATE/etc-backup/$f" "/etc/slurm/$f"; fi
done
exit 0

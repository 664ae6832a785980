#!/usr/bin/env bash
# Stop exactly the daemons start.sh started (by the PIDs it recorded).
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
exit 0

#!/usr/bin/env bash
# soak-leadership.sh — leadership stability of an idle three-node cluster
# while other processes keep both cores busy (issue 11's goal: 0 leader
# changes in 30 minutes).
#
# Starts three rookeryd processes on 127.0.0.1 (ports BASE+1..BASE+3 for
# raft, +101.. for gRPC, +201.. for the debug page), BUSY busy-loop
# processes, and polls every node's /debug/vars every POLL seconds for
# DURATION seconds. It prints every change of term or leader as it is seen
# and, at the end, the terms and the nodes' own leader-change counters, and
# the load average. Extra rookeryd flags go in ROOKERYD_FLAGS, e.g.
#   ROOKERYD_FLAGS="-raft.leader_lease_timeout 100ms" scripts/soak-leadership.sh
# Each node runs with make run's GOMAXPROCS (its share of the cores; a
# GOMAXPROCS in the environment overrides it). AUTOGROUP_NICE (root only for negative values; default as make run: -10
# for root, else 0) sets the CPU weight of each node's scheduler autogroup:
# with kernel.sched_autogroup_enabled, CPU is shared per session, and plain
# nice does not reach across sessions. AUTOGROUP_NICE=0 measures without.
# Everything it started is stopped by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
BASE=${BASE:-17000}
DURATION=${DURATION:-1800}
POLL=${POLL:-2}
BUSY=${BUSY:-2}
LOG_STORE=${ROOKERY_LOG_STORE:-bolt}
DATA=$(mktemp -d "${TMPDIR:-/tmp}/rookery-soak.XXXXXX")
read -r -a EXTRA <<<"${ROOKERYD_FLAGS:-}"
# make run's default CPU priority for the nodes (scripts/run-local.sh).
AUTOGROUP_NICE=${AUTOGROUP_NICE:-$([ "$(id -u)" = 0 ] && echo -10 || echo 0)}
# make run's GOMAXPROCS: each node's share of the host's cores.
PROCS=${GOMAXPROCS:-$(($(nproc) / 3))}
[ "$PROCS" -ge 1 ] 2>/dev/null || PROCS=1

for i in 1 2 3; do
  for p in $((BASE + i)) $((BASE + 100 + i)) $((BASE + 200 + i)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "port $p is in use; choose another BASE" >&2; exit 1
    fi
  done
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

printf 'pw\n' | "$BIN/rookeryd" hash-password | sed 's/^/admin:/' >"$DATA/users"
head -c 18 /dev/urandom | base64 >"$DATA/secret"
PEERS=""
for i in 1 2 3; do
  PEERS+="${PEERS:+,}n$i=127.0.0.1:$((BASE + i))/127.0.0.1:$((BASE + 100 + i))"
done
for i in 1 2 3; do
  mkdir -p "$DATA/n$i"
  # As make run: a session (scheduler autogroup) per node, at AUTOGROUP_NICE.
  setsid sh -c '[ "$0" = 0 ] || echo "$0" >/proc/self/autogroup; exec "$@"' "$AUTOGROUP_NICE" \
    env GOMAXPROCS="$PROCS" "$BIN/rookeryd" -node.id "n$i" -node.data_dir "$DATA/n$i" \
    -raft.address "127.0.0.1:$((BASE + i))" -raft.peers "$PEERS" -raft.log_store "$LOG_STORE" \
    -raft.peer_secret_file "$DATA/secret" -grpc.listen "127.0.0.1:$((BASE + 100 + i))" \
    -debug.listen "127.0.0.1:$((BASE + 200 + i))" -mupdate.listen "127.0.0.1:0" \
    -auth.users_file "$DATA/users" -auth.admins admin "${EXTRA[@]}" \
    >"$DATA/n$i/rookeryd.log" 2>&1 &
  pids+=($!)
done
# fsync probe: a 256 B append and fdatasync every 20 ms on the nodes' disk;
# the slow ones are logged with their time, to set against leader changes.
python3 - "$DATA/fsync-probe" >"$DATA/fsync.log" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
n, lat = 0, []
try:
    while True:
        t = time.monotonic()
        os.write(fd, b"x" * 256)
        os.fdatasync(fd)
        d = time.monotonic() - t
        lat.append(d); n += 1
        if d >= 0.05:
            print("%s slow fdatasync %.0f ms" % (time.strftime("%H:%M:%S", time.gmtime()), d * 1000), flush=True)
        if n % 500 == 0:
            lat.sort()
            print("%s fdatasync last 500: p50 %.2f ms p99 %.1f ms max %.1f ms" % (time.strftime("%H:%M:%S", time.gmtime()), lat[250] * 1000, lat[495] * 1000, lat[-1] * 1000), flush=True)
            lat = []
        time.sleep(0.02)
except KeyboardInterrupt:
    pass
PY
pids+=($!)
# Busy loops in sessions of their own: other work on the host, not work
# sharing the nodes' autogroup.
for _ in $(seq "$BUSY"); do
  setsid sh -c 'while :; do :; done' &
  pids+=($!)
done

# vars N prints "state term leader leader_changes" of node N, or "down".
vars() {
  curl -fsS --max-time 2 "http://127.0.0.1:$((BASE + 200 + $1))/debug/vars" 2>/dev/null |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["status"]; print(s["State"], s["Term"], s["Leader"]["ID"] or "-", "changes=%s" % s.get("LeaderChanges", "?"), "stalls=%s" % s.get("Stalls", "?"), "longest_stall_ms=%.0f" % (s.get("LongestStall", 0) / 1e6))' 2>/dev/null ||
    echo down
}

echo "soak: $DURATION s, $BUSY busy loops, log store $LOG_STORE, autogroup nice ${AUTOGROUP_NICE:-0}, flags: ${EXTRA[*]:-(defaults)}"
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
sleep 3
declare -A last
first=""
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
  line=""
  for i in 1 2 3; do line+="n$i[$(vars $i)] "; done
  # term and leader as the first node that answers sees them
  key=$(echo "$line" | grep -o '\[[A-Za-z]* [0-9]* [^ ]*' | head -1 | awk '{print $2, $3}')
  [ -n "$first" ] || first=$key
  if [ "${last[k]:-}" != "$key" ]; then
    echo "$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) $line"
    last[k]=$key
  fi
  sleep "$POLL"
done
echo "end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "first (term leader): $first   last: ${last[k]:-}"
for i in 1 2 3; do echo "n$i: $(vars $i)"; done
echo "fdatasync probe: $(grep -c slow "$DATA/fsync.log" || true) calls >= 50 ms; slowest:"
grep slow "$DATA/fsync.log" | sort -k4 -n | tail -3 || true
grep 'last 500' "$DATA/fsync.log" | tail -3 || true
# Which step-downs and elections followed a stall of the same process?
python3 - "$DATA" <<'PY'
import re, sys, datetime
def ts(line):
    m = re.search(r'time=(\S+)', line)
    return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) if m else None
for i in (1, 2, 3):
    lines = open("%s/n%d/rookeryd.log" % (sys.argv[1], i), errors="replace").read().splitlines()
    stalls = [(ts(l), int(re.search(r'stall=(\d+)ms', l).group(1))) for l in lines if "process stalled" in l and re.search(r'stall=(\d+)ms', l)]
    events = [(ts(l), "step-down" if "failed to contact quorum" in l else "election") for l in lines
              if "failed to contact quorum" in l or "heartbeat timeout reached" in l]
    hist = {}
    for _, ms in stalls:
        b = next(x for x in (100, 200, 300, 500, 1000, 10**9) if ms < x)
        hist[b] = hist.get(b, 0) + 1
    after = sum(1 for t, _ in events if any(abs((t - s).total_seconds()) < 0.05 for s, _ in stalls))
    print("n%d: stalls by length (< ms: count) %s; %d step-downs/elections, %d of them within 50 ms of a stall of this process" % (
        i, dict(sorted(hist.items())), len(events), after))
PY
for i in 1 2 3; do
  printf 'n%s log: %s "heartbeat timeout reached", %s "failed to contact quorum", %s "entering candidate"\n' "$i" \
    "$(grep -c 'heartbeat timeout reached' "$DATA/n$i/rookeryd.log" || true)" \
    "$(grep -c 'failed to contact quorum' "$DATA/n$i/rookeryd.log" || true)" \
    "$(grep -c 'entering candidate' "$DATA/n$i/rookeryd.log" || true)"
done

#!/usr/bin/env bash
# bench-mupdate.sh -- put the same MUPDATE load on the real Cyrus mupdate
# master and on Rookery in ONE run, and print both with their ratio.
#
# It starts a throwaway real Cyrus murder (internal/murder/testdata/murder-up.sh:
# roles master and be1, plus be2 when Rookery is given) on free ports of
# 127.0.0.1, runs `rookery-bench mupdate` and `rookery-bench ctlmboxlist`,
# and stops Cyrus again.
#
# Environment:
#   ROOKERY_MUPDATE     host:port of a Rookery MUPDATE listener (for example
#                       127.0.0.1:3905 from `make run`). Unset: only Cyrus is measured.
#   BENCH_CONNS         connection counts                 [1,16,128]
#   BENCH_DURATION      length of each phase              [5s]
#   BENCH_ROUNDS        run the list of phases this many times; ratios then also
#                       give each phase's median over the rounds [1]
#   BENCH_STREAM_NOOP   NOOP period on the UPDATE connection, 0 = passive [0]
#   BENCH_CTL_N         local mailboxes for the ctl_mboxlist -m step, 0 skips it [10000]
#   BENCH_CTL_MISSING   of those, missing on the MUPDATE server [9000]
#   BENCH_CTL_TOTAL     first fill BOTH directories with this many other mailboxes
#                       (user.fill..., on servers fill0..fill7), so ctl_mboxlist -m
#                       runs among them; 0 = no fill [0]. The Cyrus master gets them
#                       by cvt_cyrusdb into its mailboxes.db (stopped meanwhile),
#                       Rookery by `rookeryctl import --from-dump --merge=skip-existing`
#                       (needs ROOKERY_ENDPOINTS, gRPC host:port list, and a writer
#                       in ROOKERY_TOKEN [mupdate:mupdatepw]). The fill stays in
#                       Rookery afterwards; its names are fixed, so a second run
#                       finds it there.
#   ROOKERY_METRICS     comma-separated /metrics URLs of every Rookery node; each phase then
#                       reports the nodes' CPU per op, raft entries, commands per entry and
#                       log syncs per entry [make run's http://127.0.0.1:7201..7203/metrics
#                       when ROOKERY_MUPDATE is 127.0.0.1:3905..3907 and they answer]
#   BENCH_FLOOR         1 = measure the machine's limit as a third target: `rookery-bench
#                       floor`, Rookery's MUPDATE front end and state machine over the leanest
#                       three-process replication (internal/floor, docs/bench-floor.md); each
#                       Rookery figure is then also given as a share of it [1 with ROOKERY_MUPDATE]
#   BENCH_FLOOR_FLAGS   extra flags for the floor, e.g. "--in-flight 4" or "--sync-first" []
#   BENCH_FLOOR_VIA     the floor's path the `floor` target measures: leader = MUPDATE on its
#                       leader; follower = MUPDATE on its follower 1, which forwards every write
#                       and read barrier to the leader (`--follower-listen`), the floor to put
#                       beside a ROOKERY_MUPDATE that is a raft follower [leader]
#   BENCH_CLEANUP       1 = delete this run's entries from Rookery afterwards [1]
#   KEEP                1 = keep the Cyrus state directory (logs) [0]
#
# Rookery must accept the murder's MUPDATE login, PLAIN mupdate/mupdatepw: the
# tool uses it for every target and the Cyrus backend be2 logs in with it.
# Needs root (Cyrus's master drops to user cyrus) and the packages from
# scripts/install-deps.sh. The machine may be shared: compare the targets
# within one run, not across runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

ROOKERY_MUPDATE=${ROOKERY_MUPDATE:-}
BENCH_CONNS=${BENCH_CONNS:-1,16,128}
BENCH_DURATION=${BENCH_DURATION:-5s}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_STREAM_NOOP=${BENCH_STREAM_NOOP:-0}
BENCH_CTL_N=${BENCH_CTL_N:-10000}
BENCH_CTL_MISSING=${BENCH_CTL_MISSING:-9000}
BENCH_CTL_TOTAL=${BENCH_CTL_TOTAL:-0}
BENCH_CLEANUP=${BENCH_CLEANUP:-1}
BENCH_FLOOR=${BENCH_FLOOR:-$([ -n "$ROOKERY_MUPDATE" ] && echo 1 || echo 0)}
BENCH_FLOOR_FLAGS=${BENCH_FLOOR_FLAGS:-}
BENCH_FLOOR_VIA=${BENCH_FLOOR_VIA:-leader}
KEEP=${KEEP:-0}

say() { echo "bench-mupdate: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

case "$BENCH_FLOOR_VIA" in
  leader|follower) ;;
  *) die "BENCH_FLOOR_VIA must be leader or follower, got $BENCH_FLOOR_VIA" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (the real Cyrus master starts as root)"
command -v python3 >/dev/null || die "python3 missing (scripts/install-deps.sh)"

RUNID=$(python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_lowercase+string.digits) for _ in range(6)))')
STATE=$(mktemp -d /tmp/benchmup.XXXXXX)
chmod 755 "$STATE"
DIR=$STATE/murder
MURDER_UP=$ROOT/internal/murder/testdata/murder-up.sh

BENCH=${ROOKERY_BENCH:-$STATE/rookery-bench}
if [ -z "${ROOKERY_BENCH:-}" ]; then
  say "building rookery-bench"
  go build -o "$BENCH" ./cmd/rookery-bench
fi
if [ "$BENCH_CTL_TOTAL" -gt 0 ] && [ -n "$ROOKERY_MUPDATE" ]; then
  [ -n "${ROOKERY_ENDPOINTS:-}" ] || die "BENCH_CTL_TOTAL with ROOKERY_MUPDATE needs ROOKERY_ENDPOINTS (Rookery's gRPC host:port list) for the import"
  CTL=${ROOKERYCTL:-$STATE/rookeryctl}
  if [ -z "${ROOKERYCTL:-}" ]; then
    say "building rookeryctl"
    go build -o "$CTL" ./cmd/rookeryctl
  fi
fi

# Free ports on 127.0.0.1 (held together while picking, so they differ).
read -r P_MASTER P_BE1I P_BE1L P_BE2I P_BE2L P_FLOOR P_FLOOR_FOLLOWER < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')

# Unique backend servernames: ctl_mboxlist -m DELETEs every entry at
# "<servername>!" that the backend does not have, so never reuse a name that
# a real murder on the same Rookery uses.
export MASTER_PORT=$P_MASTER BE1_IMAP_PORT=$P_BE1I BE1_LMTP_PORT=$P_BE1L BE2_IMAP_PORT=$P_BE2I BE2_LMTP_PORT=$P_BE2L
export BE1_NAME=benchcyrus$RUNID BE2_NAME=benchrookery$RUNID
ROLES="master be1"

FLOOR_PID=
cleanup() {
  if [ -n "$FLOOR_PID" ]; then
    say "stopping the floor"
    kill "$FLOOR_PID" 2>/dev/null || true
    wait "$FLOOR_PID" 2>/dev/null || true
  fi
  say "stopping Cyrus"
  MURDER_ROLES="$ROLES" "$MURDER_UP" "$DIR" stop >/dev/null 2>&1 || true
  if [ "$KEEP" = 1 ]; then say "state kept in $STATE"; else rm -rf "$STATE"; fi
}
trap cleanup EXIT

say "starting the real Cyrus mupdate master (127.0.0.1:$P_MASTER) and backend $BE1_NAME"
MURDER_ROLES="master be1" "$MURDER_UP" "$DIR" start

if [ "$BENCH_CTL_TOTAL" -gt 0 ]; then
  echo "== fill: $BENCH_CTL_TOTAL other mailboxes into each directory, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  MURDER_ROLES=master "$MURDER_UP" "$DIR" stop >/dev/null
  "$BENCH" fill --total "$BENCH_CTL_TOTAL" --dump "$STATE/fill.json" --cyrus-master-conf "$DIR/master/imapd.conf"
  # Its START recovers the databases first: minutes for a large mailboxes.db.
  MURDER_ROLES=master WAIT_SECS=900 "$MURDER_UP" "$DIR" start
  if [ -n "$ROOKERY_MUPDATE" ]; then
    t0=$(date +%s.%N)
    ROOKERY_TOKEN=${ROOKERY_TOKEN:-mupdate:mupdatepw} "$CTL" --endpoints "$ROOKERY_ENDPOINTS" \
      import --from-dump "$STATE/fill.json" --merge=skip-existing
    echo "fill: rookeryctl import took $(python3 -c "import sys; print('%.1fs' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)")"
  fi
  rm -f "$STATE/fill.json"
fi

TARGETS=(--target "cyrus=127.0.0.1:$P_MASTER")
# The CPU the real master spends per phase: its master process and mupdate
# service, found by their configuration file (this run's own processes).
CYRUS_PIDS=$(pgrep -d, -f "$DIR/master/imapd.conf" || true)
[ -n "$CYRUS_PIDS" ] && TARGETS+=(--pids "cyrus=$CYRUS_PIDS")
BACKENDS=(--backend "cyrus=$DIR/be1/imapd.conf")
if [ -n "$ROOKERY_MUPDATE" ]; then
  host=${ROOKERY_MUPDATE%:*}; port=${ROOKERY_MUPDATE##*:}
  [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ] || die "ROOKERY_MUPDATE must be on 127.0.0.1, got $ROOKERY_MUPDATE"
  say "starting backend $BE2_NAME against Rookery at $ROOKERY_MUPDATE"
  ROLES="master be1 be2"
  MURDER_ROLES=be2 BE_MUPDATE_HOST=127.0.0.1 BE_MUPDATE_PORT=$port "$MURDER_UP" "$DIR" start
  TARGETS+=(--target "rookery=$ROOKERY_MUPDATE")
  if [ -z "${ROOKERY_METRICS:-}" ] && [ "$host" = 127.0.0.1 ] && [ "$port" -ge 3905 ] && [ "$port" -le 3907 ]; then
    urls=http://127.0.0.1:7201/metrics,http://127.0.0.1:7202/metrics,http://127.0.0.1:7203/metrics
    if python3 - "$urls" 2>/dev/null <<'PY'
import sys, urllib.request
for u in sys.argv[1].split(","):
    urllib.request.urlopen(u, timeout=2).read(1)
PY
    then ROOKERY_METRICS=$urls; say "reading make run's node metrics ($urls)"; fi
  fi
  [ -n "${ROOKERY_METRICS:-}" ] && TARGETS+=(--metrics "rookery=$ROOKERY_METRICS")
  BACKENDS+=(--backend "rookery=$DIR/be2/imapd.conf")
else
  say "ROOKERY_MUPDATE is not set: measuring the real Cyrus master only (no ratio)."
  say "  Start Rookery (make run) and set ROOKERY_MUPDATE=127.0.0.1:3905 to compare."
fi

if [ "$BENCH_FLOOR" = 1 ]; then
  FLOOR_TARGET=127.0.0.1:$P_FLOOR
  FLOOR_VIA=()
  if [ "$BENCH_FLOOR_VIA" = follower ]; then
    FLOOR_TARGET=127.0.0.1:$P_FLOOR_FOLLOWER
    FLOOR_VIA=(--follower-listen "$FLOOR_TARGET")
  fi
  say "starting the floor (rookery-bench floor), leader on 127.0.0.1:$P_FLOOR; measuring its $BENCH_FLOOR_VIA path at $FLOOR_TARGET"
  mkdir -p "$STATE/floor"
  # shellcheck disable=SC2086 # BENCH_FLOOR_FLAGS is a list of flags
  ROOKERY_MUPDATE_PASSWORD=mupdatepw "$BENCH" floor --listen "127.0.0.1:$P_FLOOR" "${FLOOR_VIA[@]}" --dir "$STATE/floor" \
    $BENCH_FLOOR_FLAGS >"$STATE/floor.log" 2>&1 &
  FLOOR_PID=$!
  for _ in $(seq 1 100); do
    grep -q "^floor: MUPDATE on" "$STATE/floor.log" && break
    kill -0 "$FLOOR_PID" 2>/dev/null || die "the floor did not start: $(cat "$STATE/floor.log")"
    sleep 0.1
  done
  grep -q "^floor: MUPDATE on" "$STATE/floor.log" || die "the floor did not start in 10 s"
  head -1 "$STATE/floor.log"
  # Its CPU per phase: the leader and its two follower children.
  FLOOR_PIDS=$FLOOR_PID$(pgrep -P "$FLOOR_PID" | sed 's/^/,/' | tr -d '\n')
  TARGETS+=(--target "floor=$FLOOR_TARGET" --pids "floor=$FLOOR_PIDS" --limit floor)
fi

echo "== bench-mupdate run $RUNID on $(hostname), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   (the machine may be shared with other work: compare targets within this run)"
if [ "$BENCH_FLOOR" = 1 ]; then
  if [ "$BENCH_FLOOR_VIA" = follower ]; then
    echo "   floor: measured through its follower ($FLOOR_TARGET, forwarding to its leader): put it beside a Rookery follower"
  else
    echo "   floor: measured through its leader ($FLOOR_TARGET): put it beside a Rookery leader"
  fi
fi

"$BENCH" mupdate "${TARGETS[@]}" --run-id "$RUNID" --conns "$BENCH_CONNS" --rounds "$BENCH_ROUNDS" \
  --duration "$BENCH_DURATION" --stream-duration "$BENCH_DURATION" --stream-noop "$BENCH_STREAM_NOOP"

if [ "$BENCH_CTL_N" -gt 0 ]; then
  echo
  "$BENCH" ctlmboxlist "${BACKENDS[@]}" --run-id "$RUNID" --n "$BENCH_CTL_N" --missing "$BENCH_CTL_MISSING"
fi

if [ -n "$ROOKERY_MUPDATE" ] && [ "$BENCH_CLEANUP" = 1 ]; then
  echo
  "$BENCH" cleanup --target "$ROOKERY_MUPDATE" --prefix "user.bench$RUNID."
  if [ "$BENCH_CTL_N" -gt 0 ]; then
    "$BENCH" cleanup --target "$ROOKERY_MUPDATE" --prefix "user.cmb$RUNID"
  fi
fi

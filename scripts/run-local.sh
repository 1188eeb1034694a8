#!/usr/bin/env bash
# run-local.sh — start a local three-node Rookery cluster on 127.0.0.1, as in
# production: three rookeryd processes (so one can be killed), data under
# ./data that survives restarts. Ctrl-C stops the nodes this run started.
#
#   node  raft             gRPC (rookeryctl)   MUPDATE          metrics, pprof
#   n1    127.0.0.1:7001   127.0.0.1:7101      127.0.0.1:3905   127.0.0.1:7201
#   n2    127.0.0.1:7002   127.0.0.1:7102      127.0.0.1:3906   127.0.0.1:7202
#   n3    127.0.0.1:7003   127.0.0.1:7103      127.0.0.1:3907   127.0.0.1:7203
#
# Running it again:
#   - every node of ./data running: refuses (exit 1) and touches nothing;
#   - some nodes running (one was killed): starts only the missing ones, in
#     this terminal (Ctrl-C here stops just those), leaving credentials alone;
#   - nothing running: starts all three on the existing data.
#
# Identities: admin (writer) with $ROOKERY_ADMIN_PASSWORD and reader
# (read-only) with $ROOKERY_READER_PASSWORD; a password that is unset is
# taken from $DATA/passwords (kept from the last run) or generated. With
# $ROOKERY_MUPDATE_PASSWORD set, a writer identity "mupdate" is added too:
# what Cyrus backends configured with mupdate_authname: mupdate log in as.
# Every password in use is written to $DATA/passwords (mode 0600) as
# name:password lines; $DATA/users holds their bcrypt hashes.
# ROOKERY_MUPDATE_REQUIRE_TLS=1 refuses MUPDATE logins before STARTTLS
# (mupdate.require_tls), with the certificate in $ROOKERY_MUPDATE_TLS_CERT and
# $ROOKERY_MUPDATE_TLS_KEY, or a self-signed one for 127.0.0.1 made under $DATA.
# $ROOKERY_LOG_STORE chooses the raft log store of a new ./data: bolt
# (raft-boltdb, the default) or wal (raft-wal, one fsync per append).
# $ROOKERY_READ_MODE is raft.read_mode: linearizable (the default) or lease.
# ROOKERY_BOLT_DIRECT=1 sets raft.bolt_direct: bolt appends go straight into
# raft.db (two syncs each) instead of through raft.journal (for comparison).
# The nodes run with raft.follower_hold 2ms: their logs share one disk, and
# the follower a commit does not need then gets new entries in batches, so
# its syncs compete less with the two a commit waits for (NOTES.md,
# fifteenth session). Early append (a follower writes each entry while the
# leader does, rookeryd's default) stays on: with the hold it made 25 % more
# one-connection creates than raft's own order. ROOKERY_EARLY_APPEND=0 sets
# raft.persist_before_replicate (raft's order) for comparison.
# ROOKERYD_FLAGS adds rookeryd flags to every node, e.g.
#   ROOKERYD_FLAGS="-raft.proposals_in_flight 3" make run
# RAFT_PORTS, GRPC_PORTS, MUPDATE_PORTS and DEBUG_PORTS (three ports each,
# space-separated) move the listeners, for tests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DATA=${DATA:-data}
LOG_STORE=${ROOKERY_LOG_STORE:-bolt}
READ_MODE=${ROOKERY_READ_MODE:-linearizable}
BOLT_DIRECT=()
[ "${ROOKERY_BOLT_DIRECT:-0}" = 1 ] && BOLT_DIRECT=(-raft.bolt_direct)
EARLY=(-raft.follower_hold 2ms)
[ "${ROOKERY_EARLY_APPEND:-1}" = 0 ] && EARLY=(-raft.persist_before_replicate -raft.follower_hold 2ms)
read -r -a EXTRA <<<"${ROOKERYD_FLAGS:-}"
read -r -a RAFT <<<"${RAFT_PORTS:-7001 7002 7003}"
read -r -a GRPC <<<"${GRPC_PORTS:-7101 7102 7103}"
read -r -a MUPD <<<"${MUPDATE_PORTS:-3905 3906 3907}"
read -r -a DEBUG <<<"${DEBUG_PORTS:-7201 7202 7203}"
mkdir -p "$DATA"

# A node runs when its data directory's LOCK is held: rookeryd holds an
# exclusive flock on it for its whole life.
running() { [ -e "$DATA/n$1/LOCK" ] && ! flock -n "$DATA/n$1/LOCK" true 2>/dev/null; }
up=() down=()
for i in 1 2 3; do
  if running "$i"; then up+=("n$i"); else down+=("$i"); fi
done
if [ ${#down[@]} -eq 0 ]; then
  echo "run-local: every node of $DATA is already running (${up[*]}); nothing started, nothing changed." >&2
  echo "run-local: stop it with Ctrl-C where it runs, or kill one node and run this again to restart it." >&2
  exit 1
fi

randpw() { head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20; }
storedpw() { [ -f "$DATA/passwords" ] && sed -n "s/^$1://p" "$DATA/passwords" | head -1 || true; }
ADMIN_PW=${ROOKERY_ADMIN_PASSWORD:-$(storedpw admin)}
READER_PW=${ROOKERY_READER_PASSWORD:-$(storedpw reader)}
MUPDATE_PW=${ROOKERY_MUPDATE_PASSWORD:-$(storedpw mupdate)}

if [ ${#up[@]} -eq 0 ]; then
  # Nothing runs: (re)write the credentials. Passwords stay the same from
  # run to run unless a variable says otherwise.
  [ -n "$ADMIN_PW" ] || { ADMIN_PW=$(randpw); GEN_ADMIN=1; }
  [ -n "$READER_PW" ] || { READER_PW=$(randpw); GEN_READER=1; }
  umask 077
  {
    printf 'admin:%s\n' "$(printf '%s' "$ADMIN_PW" | "$BIN/rookeryd" hash-password)"
    printf 'reader:%s\n' "$(printf '%s' "$READER_PW" | "$BIN/rookeryd" hash-password)"
    if [ -n "$MUPDATE_PW" ]; then
      printf 'mupdate:%s\n' "$(printf '%s' "$MUPDATE_PW" | "$BIN/rookeryd" hash-password)"
    fi
  } >"$DATA/users.new"
  {
    printf 'admin:%s\nreader:%s\n' "$ADMIN_PW" "$READER_PW"
    [ -z "$MUPDATE_PW" ] || printf 'mupdate:%s\n' "$MUPDATE_PW"
  } >"$DATA/passwords.new"
  mv "$DATA/users.new" "$DATA/users"
  mv "$DATA/passwords.new" "$DATA/passwords"
  # The cluster secret authenticates node-to-node gRPC; kept across runs.
  [ -s "$DATA/cluster-secret" ] || randpw >"$DATA/cluster-secret"
  umask 022
else
  # Part of the cluster runs on these credentials: never change them.
  echo "run-local: ${up[*]} already running on $DATA; restarting only the missing node(s); credentials unchanged."
  for id in admin reader mupdate; do
    v=ROOKERY_${id^^}_PASSWORD
    if [ -n "${!v:-}" ] && [ "${!v}" != "$(storedpw "$id")" ]; then
      echo "run-local: ignoring \$$v: the running nodes use $DATA/users (README: rotate passwords)." >&2
    fi
  done
fi

TLS_ARGS=()
if [ "${ROOKERY_MUPDATE_REQUIRE_TLS:-0}" = 1 ]; then
  CERT=${ROOKERY_MUPDATE_TLS_CERT:-$DATA/mupdate-cert.pem}
  KEY=${ROOKERY_MUPDATE_TLS_KEY:-$DATA/mupdate-key.pem}
  if [ ! -s "$CERT" ] && [ -z "${ROOKERY_MUPDATE_TLS_CERT:-}" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$KEY" -out "$CERT" 2>/dev/null
    chmod 600 "$KEY"
  fi
  TLS_ARGS=(-mupdate.tls_cert "$CERT" -mupdate.tls_key "$KEY" -mupdate.require_tls)
fi

PEERS="n1=127.0.0.1:${RAFT[0]}/127.0.0.1:${GRPC[0]},n2=127.0.0.1:${RAFT[1]}/127.0.0.1:${GRPC[1]},n3=127.0.0.1:${RAFT[2]}/127.0.0.1:${GRPC[2]}"
pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping rookeryd (SIGTERM)..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  echo "stopped; data kept in $DATA"
  exit "${1:-0}"
}
trap stop INT TERM

# CPU priority (docs/raft-timeouts.md): a leader that gets no CPU for longer
# than raft.heartbeat_timeout is replaced, so, as etcd's tuning guide advises,
# the nodes get CPU priority over other work on the host. Each node runs in a
# session of its own, so the kernel's scheduler autogroup is its own, and that
# group's nice is set to ROOKERY_AUTOGROUP_NICE (default -10; a negative
# value needs root, so other users keep 0). Plain nice would not reach across
# autogroups. In production the service's CPUWeight= does the same.
AUTOGROUP_NICE=${ROOKERY_AUTOGROUP_NICE:-$([ "$(id -u)" = 0 ] && echo -10 || echo 0)}

# Cores per node: the three nodes share this host's cores, so each runs with
# GOMAXPROCS set to its share (cores / 3, at least 1) unless GOMAXPROCS is
# set. A Go process with more Ps than the cores it gets wakes idle Ps to spin
# on every goroutine hand-off, and on a shared host those spinning threads
# take CPU from the other nodes (NOTES.md, eleventh session).
PROCS=${GOMAXPROCS:-$(($(nproc) / 3))}
[ "$PROCS" -ge 1 ] 2>/dev/null || PROCS=1

for i in "${down[@]}"; do
  k=$((i - 1))
  mkdir -p "$DATA/n$i"
  # Appended, never truncated: the log of the previous run stays readable.
  # setsid, then the session's new autogroup gets its nice, then exec: the
  # PID stays the node's.
  setsid sh -c '[ "$0" = 0 ] || echo "$0" >/proc/self/autogroup || echo "could not set autogroup nice $0" >&2; exec "$@"' \
    "$AUTOGROUP_NICE" env GOMAXPROCS="$PROCS" "$BIN/rookeryd" \
    -node.id "n$i" -node.data_dir "$DATA/n$i" \
    -raft.address "127.0.0.1:${RAFT[$k]}" -raft.peers "$PEERS" -raft.log_store "$LOG_STORE" -raft.read_mode "$READ_MODE" \
    -grpc.listen "127.0.0.1:${GRPC[$k]}" -grpc.open_reads -debug.listen "127.0.0.1:${DEBUG[$k]}" \
    -mupdate.listen "127.0.0.1:${MUPD[$k]}" -mupdate.servername "rookery-n$i" \
    -raft.peer_secret_file "$DATA/cluster-secret" \
    -auth.users_file "$DATA/users" -auth.admins admin,mupdate -auth.readers reader \
    ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} ${BOLT_DIRECT[@]+"${BOLT_DIRECT[@]}"} ${EARLY[@]+"${EARLY[@]}"} ${EXTRA[@]+"${EXTRA[@]}"} \
    >>"$DATA/n$i/rookeryd.log" 2>&1 &
  pids+=($!)
done

sleep 1
for j in "${!down[@]}"; do
  i=${down[$j]}
  if ! kill -0 "${pids[$j]}" 2>/dev/null; then
    echo "rookeryd n$i failed to start:" >&2
    tail -20 "$DATA/n$i/rookeryd.log" >&2
    stop 1
  fi
done

started=$(printf 'n%s ' "${down[@]}")
cat <<INFO
Rookery local cluster is up; this run started: ${started% } (logs: $DATA/n{1,2,3}/rookeryd.log)
  node  raft             gRPC             MUPDATE          metrics (/metrics), pprof
  n1    127.0.0.1:${RAFT[0]}   127.0.0.1:${GRPC[0]}   127.0.0.1:${MUPD[0]}   127.0.0.1:${DEBUG[0]}
  n2    127.0.0.1:${RAFT[1]}   127.0.0.1:${GRPC[1]}   127.0.0.1:${MUPD[1]}   127.0.0.1:${DEBUG[1]}
  n3    127.0.0.1:${RAFT[2]}   127.0.0.1:${GRPC[2]}   127.0.0.1:${MUPD[2]}   127.0.0.1:${DEBUG[2]}
gRPC reads are open on this local cluster (-grpc.open_reads); writes and cluster
operations need a writer: rookeryctl --token admin:PASSWORD (or ROOKERY_TOKEN).
Identities (SASL PLAIN/LOGIN on MUPDATE; bearer "user:password" on gRPC); every
password is in $DATA/passwords (mode 0600, name:password):
INFO
if [ -n "${GEN_ADMIN:-}" ]; then echo "  admin   (writer)    password: $ADMIN_PW   (generated; set ROOKERY_ADMIN_PASSWORD to choose)"; else echo "  admin   (writer)"; fi
if [ -n "${GEN_READER:-}" ]; then echo "  reader  (read-only) password: $READER_PW   (generated; set ROOKERY_READER_PASSWORD to choose)"; else echo "  reader  (read-only)"; fi
if grep -q '^mupdate:' "$DATA/passwords" 2>/dev/null; then
  echo "  mupdate (writer)    for Cyrus backends: mupdate_authname: mupdate"
else
  echo "  mupdate             not configured (set ROOKERY_MUPDATE_PASSWORD for Cyrus backends' mupdate_authname: mupdate)"
fi
cat <<INFO
Try:  $BIN/rookeryctl status
      ROOKERY_TOKEN=admin:\$(sed -n 's/^admin://p' $DATA/passwords) $BIN/rookeryctl activate user.alice 'be1!default' "\$(printf 'alice\tlrswipkxtecdan\t')"
      $BIN/rookeryctl get user.alice
      /usr/lib/cyrus/bin/mupdatetest -p ${MUPD[0]} -a admin -w "\$(sed -n 's/^admin://p' $DATA/passwords)" -m PLAIN 127.0.0.1
      curl -s 127.0.0.1:${DEBUG[0]}/metrics | grep ^rookery_server
Ctrl-C stops the node(s) this run started.
INFO
wait

#!/usr/bin/env bash
# run-local.sh — start a local three-node Rookery cluster on 127.0.0.1, as in
# production: three rookeryd processes (so one can be killed), data under
# ./data that survives restarts. Ctrl-C stops all of them cleanly.
#
#   node  raft             gRPC (rookeryctl)   MUPDATE
#   n1    127.0.0.1:7001   127.0.0.1:7101      127.0.0.1:3905
#   n2    127.0.0.1:7002   127.0.0.1:7102      127.0.0.1:3906
#   n3    127.0.0.1:7003   127.0.0.1:7103      127.0.0.1:3907
#
# Identities: admin (writer) with $ROOKERY_ADMIN_PASSWORD and reader
# (read-only) with $ROOKERY_READER_PASSWORD; a random password is generated
# and printed for each one that is unset. With $ROOKERY_MUPDATE_PASSWORD set,
# a writer identity "mupdate" is added too: what Cyrus backends configured
# with mupdate_authname: mupdate log in as (murder-up.sh, bench-mupdate).
# ROOKERY_MUPDATE_REQUIRE_TLS=1 refuses MUPDATE logins before STARTTLS
# (mupdate.require_tls), with the certificate in $ROOKERY_MUPDATE_TLS_CERT and
# $ROOKERY_MUPDATE_TLS_KEY, or a self-signed one for 127.0.0.1 made under $DATA.
# $ROOKERY_LOG_STORE chooses the raft log store of a new ./data: bolt
# (raft-boltdb, the default) or wal (raft-wal, one fsync per append).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DATA=${DATA:-data}
LOG_STORE=${ROOKERY_LOG_STORE:-bolt}
mkdir -p "$DATA"

randpw() { head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20; }
ADMIN_PW=${ROOKERY_ADMIN_PASSWORD:-}
READER_PW=${ROOKERY_READER_PASSWORD:-}
[ -n "$ADMIN_PW" ] || { ADMIN_PW=$(randpw); GEN_ADMIN=1; }
[ -n "$READER_PW" ] || { READER_PW=$(randpw); GEN_READER=1; }

# The users file holds bcrypt hashes only; it is rewritten on every start.
umask 077
{
  printf 'admin:%s\n' "$(printf '%s' "$ADMIN_PW" | "$BIN/rookeryd" hash-password)"
  printf 'reader:%s\n' "$(printf '%s' "$READER_PW" | "$BIN/rookeryd" hash-password)"
  if [ -n "${ROOKERY_MUPDATE_PASSWORD:-}" ]; then
    printf 'mupdate:%s\n' "$(printf '%s' "$ROOKERY_MUPDATE_PASSWORD" | "$BIN/rookeryd" hash-password)"
  fi
} > "$DATA/users"
# The cluster secret authenticates node-to-node gRPC; kept across runs.
[ -s "$DATA/cluster-secret" ] || randpw > "$DATA/cluster-secret"
umask 022

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

PEERS="n1=127.0.0.1:7001/127.0.0.1:7101,n2=127.0.0.1:7002/127.0.0.1:7102,n3=127.0.0.1:7003/127.0.0.1:7103"
pids=()
stop() {
  trap - INT TERM
  echo
  echo "stopping rookeryd (SIGTERM)..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  echo "stopped; data kept in $DATA"
  exit 0
}
trap stop INT TERM

for i in 1 2 3; do
  mkdir -p "$DATA/n$i"
  "$BIN/rookeryd" \
    -node.id "n$i" -node.data_dir "$DATA/n$i" \
    -raft.address "127.0.0.1:700$i" -raft.peers "$PEERS" -raft.log_store "$LOG_STORE" \
    -grpc.listen "127.0.0.1:710$i" -grpc.open_reads -debug.listen "127.0.0.1:720$i" \
    -mupdate.listen "127.0.0.1:390$((4 + i))" -mupdate.servername "rookery-n$i" \
    -raft.peer_secret_file "$DATA/cluster-secret" \
    -auth.users_file "$DATA/users" -auth.admins admin,mupdate -auth.readers reader \
    ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
    >"$DATA/n$i/rookeryd.log" 2>&1 &
  pids+=($!)
done

sleep 1
for i in 1 2 3; do
  if ! kill -0 "${pids[$((i-1))]}" 2>/dev/null; then
    echo "rookeryd n$i failed to start:"; tail -20 "$DATA/n$i/rookeryd.log"; stop
  fi
done

cat <<INFO
Rookery local cluster is up (logs: $DATA/n{1,2,3}/rookeryd.log)
  node  raft             gRPC             MUPDATE
  n1    127.0.0.1:7001   127.0.0.1:7101   127.0.0.1:3905
  n2    127.0.0.1:7002   127.0.0.1:7102   127.0.0.1:3906
  n3    127.0.0.1:7003   127.0.0.1:7103   127.0.0.1:3907
gRPC reads are open on this local cluster (-grpc.open_reads); writes and cluster
operations need a writer: rookeryctl --token admin:PASSWORD (or ROOKERY_TOKEN).
Identities (SASL PLAIN/LOGIN on MUPDATE; bearer "user:password" on gRPC):
INFO
if [ -n "${GEN_ADMIN:-}" ]; then echo "  admin  (writer)    password: $ADMIN_PW   (generated; set ROOKERY_ADMIN_PASSWORD to choose)"; else echo "  admin  (writer)    password from \$ROOKERY_ADMIN_PASSWORD"; fi
if [ -n "${GEN_READER:-}" ]; then echo "  reader (read-only) password: $READER_PW   (generated; set ROOKERY_READER_PASSWORD to choose)"; else echo "  reader (read-only) password from \$ROOKERY_READER_PASSWORD"; fi
cat <<INFO
Try:  $BIN/rookeryctl status
      ROOKERY_TOKEN=admin:PASSWORD $BIN/rookeryctl activate user.alice 'be1!default' "\$(printf 'alice\tlrswipkxtecdan\t')"
      $BIN/rookeryctl get user.alice
      /usr/lib/cyrus/bin/mupdatetest -p 3905 -a admin -w PASSWORD -m PLAIN 127.0.0.1
Ctrl-C stops all three nodes.
INFO
wait

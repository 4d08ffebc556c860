#!/usr/bin/env bash
# Starts or stops the local 3-server NATS JetStream cluster on loopback that idgraph's cluster mode
# runs on (configuration: scripts/nats/; layout and settings: docs/cluster.md).
#
#   scripts/nats-cluster.sh up DIR     install nats-server if missing (scripts/install-nats.sh),
#                                      start n1, n2, n3 with their data, logs and pid files in DIR,
#                                      wait until the JetStream cluster is ready (a meta leader
#                                      that sees both other servers), print the client URLs
#   scripts/nats-cluster.sh down DIR   stop the servers whose pid files are in DIR (only those)
#
# Ports: clients 4222-4224, routes 6222-6224, monitoring 8222-8224, all on 127.0.0.1.
# Data survives `down`; delete DIR to start from nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nodes=(n1 n2 n3)
client_ports=(4222 4223 4224)
monitor_ports=(8222 8223 8224)
# How long `up` waits for the cluster to be ready (it takes a few seconds).
ready_timeout_s=30

usage() {
  echo "usage: $0 up|down DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
command="$1"
dir="$2"

# The pid in DIR/NODE.pid if that process is still running.
running_pid() {
  local file="$dir/$1.pid"
  [ -f "$file" ] || return 1
  local pid
  pid="$(cat "$file")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# True once all three servers (monitoring ports as arguments) name the same JetStream meta
# leader and the leader sees the other two as current (before that, creating an R3 stream can
# fail with "no suitable peers for placement").
cluster_ready() {
  python3 - "$@" <<'PY'
import json, sys, urllib.request
def meta(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=1) as r:
        return json.load(r).get("meta_cluster") or {}
try:
    metas = [meta(port) for port in sys.argv[1:]]
    leaders = {m.get("leader") for m in metas}
    leader = leaders.pop() if len(leaders) == 1 else None
    # The leader's own report lists the other servers as its replicas.
    own = [m.get("replicas") or [] for m in metas
           if leader and all(p.get("name") != leader for p in m.get("replicas") or [])]
    peers = own[0] if own else []
    ok = bool(leader) and len(peers) == len(metas) - 1 and all(
        p.get("current") and not p.get("offline") for p in peers)
    sys.exit(0 if ok else 1)
except Exception:
    sys.exit(1)
PY
}

up() {
  local bin
  bin="$("$here/install-nats.sh")"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local i
  for i in "${!nodes[@]}"; do
    local node="${nodes[$i]}"
    if pid="$(running_pid "$node")"; then
      echo "$node already running (pid $pid)" >&2
      continue
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/${client_ports[$i]}") 2>/dev/null; then
      echo "port ${client_ports[$i]} is taken by another process; stop it first" >&2
      exit 1
    fi
    mkdir -p "$dir/$node"
    IDGRAPH_NATS_STORE="$dir/$node" nohup "$bin" -c "$here/nats/$node.conf" \
      >>"$dir/$node.log" 2>&1 </dev/null &
    echo $! >"$dir/$node.pid"
  done
  local deadline=$((SECONDS + ready_timeout_s))
  until cluster_ready "${monitor_ports[@]}"; do
    if [ $SECONDS -ge $deadline ]; then
      echo "the JetStream cluster is not ready after ${ready_timeout_s}s; logs in $dir/n*.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  for i in "${!nodes[@]}"; do
    echo "${nodes[$i]} nats://127.0.0.1:${client_ports[$i]}"
  done
}

down() {
  local node pid stopped=()
  for node in "${nodes[@]}"; do
    if pid="$(running_pid "$node")"; then
      kill "$pid"
      stopped+=("$pid")
    fi
    rm -f "$dir/$node.pid"
  done
  # Wait (at most 10 s) for a clean shutdown, then force.
  local deadline=$((SECONDS + 10))
  for pid in ${stopped[@]+"${stopped[@]}"}; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        kill -9 "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done
}

case "$command" in
  up) up ;;
  down) down ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# A local idgraph cluster on loopback (docs/cluster.md): 3 NATS JetStream servers
# (scripts/nats-cluster.sh) and 3 idgraph nodes over them.
#
#   scripts/cluster.sh up [DIR]     build idgraph if needed, start the NATS servers and nodes n1-n3
#                                   (HTTP on 127.0.0.1:8091-8093), print their URLs
#   scripts/cluster.sh down [DIR]   stop them (data stays in DIR; delete it to start afresh)
#
# DIR defaults to ./idgraph-cluster. IDGRAPH_SNAPSHOT_EVERY sets the nodes' snapshot_every_entries
# (how often a follower stores a snapshot for joining nodes; default 1,000,000). Each node runs under a small supervisor loop that starts it
# again when it exits with status 75 (a writer that stepped down comes back as a follower) and,
# after a second, when it fails otherwise (NATS unreachable for long, say), as a service manager
# would (systemd: Restart=on-failure, RestartForceExitStatus=75); `down` stops it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-}"
dir="${2:-idgraph-cluster}"
nodes=(n1 n2 n3)
http_ports=(8091 8092 8093)

[ "$command" = up ] || [ "$command" = down ] || { echo "usage: $0 up|down [DIR]" >&2; exit 2; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

if [ "$command" = down ]; then
  for node in "${nodes[@]}"; do
    if [ -f "$dir/$node.supervisor.pid" ]; then
      kill "$(cat "$dir/$node.supervisor.pid")" 2>/dev/null || true
      rm -f "$dir/$node.supervisor.pid"
    fi
    if [ -f "$dir/$node.pid" ]; then
      kill "$(cat "$dir/$node.pid")" 2>/dev/null || true
      rm -f "$dir/$node.pid"
    fi
  done
  "$root/scripts/nats-cluster.sh" down "$dir/nats"
  exit 0
fi

source "$root/scripts/env.sh"
bin="${IDGRAPH_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release -p idgraph-cli >&2)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/idgraph"
fi
"$root/scripts/nats-cluster.sh" up "$dir/nats" >/dev/null
for i in "${!nodes[@]}"; do
  node="${nodes[$i]}"
  port="${http_ports[$i]}"
  cat >"$dir/$node.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$dir/$node"
snapshot_every_entries = ${IDGRAPH_SNAPSHOT_EVERY:-1000000}

[[workspace]]
name = "default"
api_key = "dev-key"
api_secret = "dev-secret"
allow_key_only = true

[cluster]
nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
node = "$node"
TOML
  # The supervisor: restarts the node after a step-down (75) at once, after a failure in a
  # second; stops when the node stopped cleanly (0) or was stopped by `down` (SIGTERM).
  (
    trap 'kill "$(cat "$dir/$node.pid")" 2>/dev/null; exit 0' TERM
    while true; do
      "$bin" serve --config "$dir/$node.toml" >>"$dir/$node.log" 2>&1 &
      echo $! >"$dir/$node.pid"
      status=0
      wait $! || status=$?
      case "$status" in
        0) exit 0 ;;
        75) ;;
        *) sleep 1 ;;
      esac
    done
  ) >/dev/null 2>&1 &
  echo $! >"$dir/$node.supervisor.pid"
done
for i in "${!nodes[@]}"; do
  url="http://127.0.0.1:${http_ports[$i]}"
  for _ in $(seq 300); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "${nodes[$i]} $url $(curl -s "$url/healthz" || echo 'not answering: see '"$dir/${nodes[$i]}.log")"
done

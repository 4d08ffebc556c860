#!/usr/bin/env bash
# Sets up a fresh machine and runs the idgraph CLI (release build) with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
source scripts/env.sh
cargo build --locked --release -p idgraph-cli
idgraph_cache_rocksdb
exec "${CARGO_TARGET_DIR:-target}/release/idgraph" "$@"

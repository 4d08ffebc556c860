# Sourced by the other scripts: the build environment shared by tests, runs and CI.
#
# RocksDB's C++ build costs about half an hour of CPU, and cargo redoes it whenever the build
# script's own dependencies change features (adding any proc-macro crate can do that). So the
# static library, once built, is kept outside the target folder, keyed by the librocksdb-sys
# version in Cargo.lock, and handed to later builds through ROCKSDB_LIB_DIR / ROCKSDB_STATIC,
# which makes librocksdb-sys link it instead of compiling it again.

idgraph_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rocksdb_version="$(grep -A1 '^name = "librocksdb-sys"' "$idgraph_root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
IDGRAPH_ROCKSDB_CACHE="${IDGRAPH_ROCKSDB_CACHE:-$HOME/.cache/idgraph/rocksdb/$rocksdb_version}"

if [ -f "$IDGRAPH_ROCKSDB_CACHE/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR="$IDGRAPH_ROCKSDB_CACHE"
  export ROCKSDB_STATIC=1
fi

# Saves the library a build just compiled, for the next builds.
idgraph_cache_rocksdb() {
  [ -f "$IDGRAPH_ROCKSDB_CACHE/librocksdb.a" ] && return 0
  local target="${CARGO_TARGET_DIR:-$idgraph_root/target}"
  local built
  built="$(ls -t "$target"/*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)"
  if [ -n "$built" ]; then
    mkdir -p "$IDGRAPH_ROCKSDB_CACHE"
    cp "$built" "$IDGRAPH_ROCKSDB_CACHE/librocksdb.a.tmp"
    mv "$IDGRAPH_ROCKSDB_CACHE/librocksdb.a.tmp" "$IDGRAPH_ROCKSDB_CACHE/librocksdb.a"
    export ROCKSDB_LIB_DIR="$IDGRAPH_ROCKSDB_CACHE" ROCKSDB_STATIC=1
  fi
}

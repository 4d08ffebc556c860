//! Memory per identity of the projection, measured by the allocator: the bytes live after a replay
//! minus the bytes live before, divided by the number of distinct identities (profiles, the graph
//! and every index included). Reported twice: as grown (with vector growth slack) and after
//! `shrink_to_fit`, the projection's own size. (After loading, the engine keeps room for an eighth
//! more: `Projection::shrink_leaving_room`.)
//!
//! Run: `cargo bench --bench projection_memory`; `IDGRAPH_BENCH_ENTRIES` sets the log size (default
//! 1,000,000 entries). Target: ≤ 150 bytes per identity.

use std::alloc::System;

use idgraph::model::Seq;
use idgraph::projection::Projection;
use idgraph::projection::generate::LogGenerator;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated. stats_alloc counts a growing realloc in `bytes_allocated` (and a
/// shrinking one in `bytes_deallocated`), so live bytes are their difference.
fn live_bytes() -> usize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated - stats.bytes_deallocated
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means "not this one".
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with('-') && !"projection_memory".contains(arg.as_str()))
    {
        return;
    }
    let n: u64 = std::env::var("IDGRAPH_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let before = live_bytes();
    let mut projection = Projection::new();
    let mut n_events = 0u64;
    for (idx, entry) in LogGenerator::new(1).take(n as usize).enumerate() {
        n_events += entry.events.len() as u64;
        projection.apply(Seq(idx as u64 + 1), &entry).unwrap();
    }
    let grown = live_bytes() - before;
    println!(
        "projection_memory: as grown, by component (capacity): {:?}",
        projection.memory_breakdown()
    );
    projection.shrink_to_fit();
    let shrunk = live_bytes() - before;
    let n_identities = projection.n_identities() as f64;
    println!(
        "projection_memory: {n} entries, {n_events} events, {} identities, {} profiles, {} lookups",
        projection.n_identities(),
        projection.n_profiles(),
        projection.n_lookups()
    );
    println!(
        "projection_memory: as grown {grown} B = {:.1} B/identity; after shrink_to_fit {shrunk} B = {:.1} B/identity",
        grown as f64 / n_identities,
        shrunk as f64 / n_identities
    );
}

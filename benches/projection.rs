//! Projection: replay throughput from RocksDB, and memory per identity.
//!
//! Run: `cargo bench --bench projection`. `IDGRAPH_BENCH_ENTRIES` sets the log size (default
//! 1,000,000; the second point is 10,000,000). Targets: ≥ 1M events/s replay on one core,
//! ≤ 150 bytes per identity including indexes.
//!
//! Memory is measured with a counting global allocator: the bytes live after folding minus the bytes
//! live before, divided by the number of distinct identities (profiles and all indexes included).

use std::alloc::System;
use std::ops::ControlFlow;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, Seq};
use idgraph::projection::Projection;
use idgraph::projection::generate::LogGenerator;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated through the global allocator.
fn live_bytes() -> usize {
    let stats = GLOBAL.stats();
    (stats.bytes_allocated as isize + stats.bytes_reallocated - stats.bytes_deallocated as isize)
        .max(0) as usize
}

fn n_entries() -> u64 {
    std::env::var("IDGRAPH_BENCH_ENTRIES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}

fn fill(log: &Log, n: u64) -> u64 {
    let mut n_events = 0;
    let mut generator = LogGenerator::new(1);
    let mut batch: Vec<Entry> = Vec::with_capacity(10_000);
    for _ in 0..n {
        let entry = generator.next().expect("endless");
        n_events += entry.events.len() as u64;
        batch.push(entry);
        if batch.len() == 10_000 {
            log.append_batch(&batch, Durability::Deferred).unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        log.append_batch(&batch, Durability::Deferred).unwrap();
    }
    log.sync().unwrap();
    n_events
}

fn replay(log: &Log) -> Projection {
    let mut projection = Projection::new();
    log.scan(Seq::ZERO, |seq, entry| {
        projection.apply(seq, &entry).unwrap();
        ControlFlow::Continue(())
    })
    .unwrap();
    projection
}

fn replay_from_rocksdb(c: &mut Criterion) {
    let n = n_entries();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let started = Instant::now();
    let n_events = fill(&log, n);
    eprintln!("filled {n} entries ({n_events} events) in {:.1} s", started.elapsed().as_secs_f64());
    log.close().unwrap();
    let log = Log::open(dir.path()).unwrap();

    let before = live_bytes();
    let projection = replay(&log);
    let after = live_bytes();
    let n_identities = projection.n_identities();
    eprintln!(
        "memory: {n_identities} identities, {} profiles, {} lookups: {} bytes live = {:.1} bytes/identity (allocator), estimate {:.1}",
        projection.n_profiles(),
        projection.n_lookups(),
        after - before,
        (after - before) as f64 / n_identities as f64,
        projection.heap_bytes() as f64 / n_identities as f64,
    );
    drop(projection);

    let mut group = c.benchmark_group("projection/replay_rocksdb");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n_events));
    group.bench_function(format!("{n}_entries"), |b| b.iter(|| replay(&log)));
    group.finish();

    let entries: Vec<(Seq, Entry)> = log.read_range(Seq::ZERO, 200_000).unwrap();
    let n_events_fold: u64 = entries.iter().map(|(_, e)| e.events.len() as u64).sum();
    let mut group = c.benchmark_group("projection/fold_in_memory");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n_events_fold));
    group.bench_function("200000_entries", |b| {
        b.iter(|| {
            let mut projection = Projection::new();
            for (seq, entry) in &entries {
                projection.apply(*seq, entry).unwrap();
            }
            projection
        })
    });
    group.finish();
}

criterion_group!(benches, replay_from_rocksdb);
criterion_main!(benches);

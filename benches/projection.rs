//! Projection: replay throughput from RocksDB (one thread: scan, checksum, decode, fold; and the
//! two-thread replay the engine uses by default), decode alone, and fold alone. Memory per
//! identity is `benches/projection_memory.rs`.
//!
//! Run: `cargo bench --bench projection`. `IDGRAPH_BENCH_ENTRIES` sets the log size (default
//! 1,000,000; the second point is 10,000,000). Target: ≥ 1M events/s replay on one core.
//! `IDGRAPH_BENCH_LOG_DIR=path` keeps the generated log there and reuses it on the next run with the
//! same size (filling 10M entries takes about half a minute).

use std::ops::ControlFlow;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, Seq};
use idgraph::projection::Projection;
use idgraph::projection::generate::LogGenerator;

// The allocator the `idgraph` binary uses: decoding allocates a few small strings per entry.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Replay as the engine does it: on one thread (`engine::replay_until_on_one_thread`: read,
/// checksum, decode, warm up and fold in turn), or on two (`engine::replay_until`: one thread reads
/// and checksums, the other decodes, warms up and folds).
fn replay(log: &Log, threads: u8) -> Projection {
    let mut projection = Projection::new();
    let until = Seq(u64::MAX);
    match threads {
        1 => idgraph::engine::replay_until_on_one_thread(log, &mut projection, until, &mut |_| {}),
        _ => idgraph::engine::replay_until(log, &mut projection, until, &mut |_| {}),
    }
    .unwrap();
    projection
}

fn replay_from_rocksdb(c: &mut Criterion) {
    let n = n_entries();
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("IDGRAPH_BENCH_LOG_DIR").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned()).join(format!("log-{n}"));
    let log = Log::open(&dir).unwrap();
    let n_events = if kept.is_some() && log.last_seq().0 == n {
        let mut n_events = 0;
        log.scan_views(Seq::ZERO, |_, entry| {
            n_events += entry.events.len() as u64;
            ControlFlow::Continue(())
        })
        .unwrap();
        eprintln!("reusing {n} entries ({n_events} events) in {}", dir.display());
        n_events
    } else {
        assert_eq!(log.last_seq(), Seq::ZERO, "{} holds another log: remove it", dir.display());
        let started = Instant::now();
        let n_events = fill(&log, n);
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!("filled {n} entries ({n_events} events) in {elapsed:.1} s");
        n_events
    };
    log.close().unwrap();
    let log = Log::open(&dir).unwrap();

    let mut group = c.benchmark_group("projection/replay_rocksdb");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n_events));
    group.bench_function(format!("{n}_entries"), |b| b.iter(|| replay(&log, 1)));
    group.bench_function(format!("{n}_entries_two_threads"), |b| b.iter(|| replay(&log, 2)));
    group.finish();

    let entries: Vec<(Seq, Entry)> = log.read_range(Seq::ZERO, 200_000).unwrap();
    let memory_log = Log::in_memory();
    for chunk in entries.chunks(10_000) {
        let batch: Vec<Entry> = chunk.iter().map(|(_, entry)| entry.clone()).collect();
        memory_log.append_batch(&batch, Durability::Deferred).unwrap();
    }
    let mut group = c.benchmark_group("projection/decode_only");
    group.sample_size(10);
    group.throughput(Throughput::Elements(200_000));
    group.bench_function("memory_log_200000_entries", |b| {
        b.iter(|| {
            let mut n = 0u64;
            memory_log
                .scan(Seq::ZERO, |_, entry| {
                    n += entry.events.len() as u64;
                    ControlFlow::Continue(())
                })
                .unwrap();
            n
        })
    });
    group.bench_function("rocksdb_200000_entries", |b| {
        b.iter(|| {
            let mut n = 0u64;
            log.scan(Seq::ZERO, |seq, entry| {
                n += entry.events.len() as u64;
                if seq.0 >= 200_000 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .unwrap();
            n
        })
    });
    group.bench_function("rocksdb_200000_views", |b| {
        b.iter(|| {
            let mut n = 0u64;
            log.scan_views(Seq::ZERO, |seq, entry| {
                n += entry.events.len() as u64;
                if seq.0 >= 200_000 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .unwrap();
            n
        })
    });
    group.finish();
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

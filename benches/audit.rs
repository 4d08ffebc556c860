//! Audit over a large log: replay (decode thread + fold thread) throughput and as-of latency at
//! random points, answered from the nearest snapshot plus a tail fold.
//!
//! Run: `cargo bench --bench audit`. `IDGRAPH_BENCH_ENTRIES` (default 1,000,000) sets the log
//! size; a snapshot is written every quarter of it (`IDGRAPH_BENCH_SNAPSHOTS` snapshots, default 4).
//! Prints its measurements (this is not a criterion bench: each as-of is a long single operation).

use std::time::Instant;

use idgraph::engine::{audit, replay_into};
use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, Seq};
use idgraph::projection::Projection;
use idgraph::projection::generate::{LogGenerator, Rng};

// The allocator the `idgraph` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize]
}

fn main() {
    if std::env::args().skip(1).any(|arg| !arg.starts_with('-') && !"audit".contains(arg.as_str()))
    {
        return;
    }
    let n = env("IDGRAPH_BENCH_ENTRIES", 1_000_000);
    let n_snapshots = env("IDGRAPH_BENCH_SNAPSHOTS", 4).max(1);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let started = Instant::now();
    let mut live = Projection::new();
    let mut batch: Vec<Entry> = Vec::with_capacity(10_000);
    let every = n / n_snapshots;
    for (idx, entry) in LogGenerator::new(3).take(n as usize).enumerate() {
        batch.push(entry);
        let done = idx as u64 + 1;
        if batch.len() == 10_000 || done == n || done.is_multiple_of(every) {
            let (first, _) = log.append_batch(&batch, Durability::Deferred).unwrap();
            for (offset, entry) in batch.iter().enumerate() {
                live.apply(Seq(first.0 + offset as u64), entry).unwrap();
            }
            batch.clear();
        }
        if done.is_multiple_of(every) && done < n {
            log.sync().unwrap();
            log.save_snapshot(live.last_seq(), &live.to_snapshot(), n_snapshots as usize).unwrap();
        }
    }
    log.close().unwrap();
    println!(
        "audit: filled {n} entries with {} snapshots in {:.1} s",
        n_snapshots - 1,
        started.elapsed().as_secs_f64()
    );
    let log = Log::open(dir.path()).unwrap();

    let started = Instant::now();
    let mut replayed = Projection::new();
    let n_replayed = replay_into(&log, &mut replayed).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(replayed.content_digest(), live.content_digest());
    println!(
        "audit: replay (2 threads) {n_replayed} entries in {seconds:.2} s = {:.0} entries/s, {:.0} events/s",
        n_replayed as f64 / seconds,
        replayed.n_events_applied() as f64 / seconds
    );
    drop(replayed);
    drop(live);

    let mut rng = Rng::new(7);
    let mut latencies_ms = Vec::new();
    for _ in 0..40 {
        let seq = Seq(1 + rng.below(n));
        let started = Instant::now();
        let projection = audit::projection_as_of(&log, seq).unwrap();
        latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(projection.last_seq(), seq);
    }
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "audit: as-of at 40 random points: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99),
        latencies_ms[latencies_ms.len() - 1]
    );
}

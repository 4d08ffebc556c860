//! Audit over a large log: replay (decode thread + fold thread) throughput, and as-of latency at
//! random points: a profile and a search from the log's indexes (`audit::past::profiles_as_of`,
//! `audit::past::lookup_as_of`), and the whole graph from the nearest snapshot plus a tail fold.
//!
//! Run: `cargo bench --bench audit`. `IDGRAPH_BENCH_ENTRIES` (default 1,000,000) sets the log
//! size; a snapshot is written every quarter of it (`IDGRAPH_BENCH_SNAPSHOTS` snapshots, default 4).
//! `IDGRAPH_BENCH_FULL_AS_OF=0|1` skips or forces the whole-graph as-of (default: on up to 2M
//! entries; each one loads a snapshot of the whole graph). `IDGRAPH_BENCH_AS_OF_SAMPLES` (default
//! 2,000) sets how many indexed as-of questions are timed.
//! Prints its measurements (this is not a criterion bench: the log is built once, and the as-of
//! latencies are a distribution over random questions, not one repeated operation).

use std::time::Instant;

use idgraph::engine::{audit, replay_into};
use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, Event, Identity, Mpid, Seq};
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
    // What existed when: (seq, scope, mpid) of each creation, (seq, scope, identity) of every 16th
    // attach.
    let mut created: Vec<(Seq, String, Mpid)> = Vec::new();
    let mut attached: Vec<(Seq, String, Identity)> = Vec::new();
    for (idx, entry) in LogGenerator::new(3).take(n as usize).enumerate() {
        let seq = Seq(idx as u64 + 1);
        for event in &entry.events {
            match event {
                Event::ProfileCreated { mpid } => {
                    created.push((seq, entry.request.scope.clone(), *mpid))
                }
                Event::IdentityAttached { identity, .. } if seq.0.is_multiple_of(16) => {
                    attached.push((seq, entry.request.scope.clone(), identity.clone()))
                }
                _ => {}
            }
        }
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

    let samples = env("IDGRAPH_BENCH_AS_OF_SAMPLES", 2_000) as usize;
    let mut rng = Rng::new(7);
    let mut profile_ms = Vec::new();
    let mut n_events = 0u64;
    for _ in 0..samples {
        // A random point, and a profile that existed then.
        let seq = Seq(1 + rng.below(n));
        let n_existing = created.partition_point(|(at, _, _)| *at <= seq);
        if n_existing == 0 {
            continue;
        }
        let (_, scope, mpid) = &created[rng.below(n_existing as u64) as usize];
        let mpid = *mpid;
        let started = Instant::now();
        let projection = audit::past::profiles_as_of(&log, scope, &[mpid], seq).unwrap();
        profile_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(projection.profile_id(mpid).is_some(), "{mpid} existed at {seq}");
        n_events += projection.n_events_applied();
    }
    report("profile as-of (indexed)", &mut profile_ms);
    println!(
        "audit:   {:.1} events folded per question",
        n_events as f64 / profile_ms.len() as f64
    );
    let mut search_ms = Vec::new();
    for _ in 0..samples {
        let seq = Seq(1 + rng.below(n));
        let n_known = attached.partition_point(|(at, ..)| *at <= seq);
        if n_known == 0 {
            continue;
        }
        let (_, scope, identity) = &attached[rng.below(n_known as u64) as usize];
        let started = Instant::now();
        let projection =
            audit::past::lookup_as_of(&log, scope, std::slice::from_ref(identity), None, seq)
                .unwrap();
        search_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(projection.n_profiles() > 0, "someone held {identity} by {seq}");
    }
    report("search as-of (indexed)", &mut search_ms);

    let full = match std::env::var("IDGRAPH_BENCH_FULL_AS_OF").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => n <= 2_000_000,
    };
    if full {
        let mut latencies_ms = Vec::new();
        for _ in 0..20 {
            let seq = Seq(1 + rng.below(n));
            let started = Instant::now();
            let projection = audit::past::projection_as_of(&log, seq).unwrap();
            latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(projection.last_seq(), seq);
        }
        report("whole graph as-of (snapshot + tail)", &mut latencies_ms);
    }
}

fn report(what: &str, latencies_ms: &mut [f64]) {
    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "audit: {what} at {} random points: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies_ms.len(),
        percentile(latencies_ms, 0.5),
        percentile(latencies_ms, 0.9),
        percentile(latencies_ms, 0.99),
        latencies_ms[latencies_ms.len() - 1]
    );
}

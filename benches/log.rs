//! Log throughput: durable appends with 1, 16 and 64 concurrent appenders (group commit), bulk
//! import in batches of 1,000, and a full scan. Throughput is reported in entries; each benchmark
//! entry carries 2 events, so events/s is twice the entries/s criterion prints.
//!
//! Run: `cargo bench --bench log`. Targets on a 2-core machine: bulk import ≥ 150k events/s,
//! durable with 64 appenders ≥ 10k events/s, scan ≥ 1M events/s.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use idgraph::log::{Durability, Log};
use idgraph::model::{
    Entry, Environment, Event, Identity, IdentityRequest, IdentityType, Mpid, Operation, Outcome,
    Request, Seq, Timestamp,
};

// The allocator the `idgraph` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A realistic entry: an identify that created a profile with a device ID and an email.
fn entry(n: u64) -> Entry {
    let mpid = Mpid::new((n as i64).wrapping_mul(0x9E37_79B9) | 1).unwrap();
    let device = Identity::new(IdentityType::IosIdfv, format!("{n:032x}"));
    let email = Identity::new(IdentityType::Email, format!("user{n}@example.com"));
    Entry {
        recorded_at: Timestamp(1_700_000_000_000_000),
        request: Request {
            request_id: Some(format!("{n:036}")),
            workspace: "shop".into(),
            scope: "shop".into(),
            environment: Environment::Production,
            operation: Operation::Identify(IdentityRequest {
                known_identities: vec![email.clone(), device.clone()],
                previous_mpid: None,
            }),
        },
        events: vec![
            Event::ProfileCreated { mpid },
            Event::IdentityAttached { mpid, identity: device },
            Event::IdentityAttached { mpid, identity: email },
        ],
        outcome: Outcome::Resolved { mpid, is_logged_in: false, matched: vec![] },
    }
}

const EVENTS_PER_ENTRY: u64 = 3;

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/durable_append");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for n_appenders in [1u64, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path()).unwrap());
        let entries_per_appender = if n_appenders == 1 { 200 } else { 100 };
        group.throughput(Throughput::Elements(
            n_appenders * entries_per_appender * EVENTS_PER_ENTRY,
        ));
        group.bench_function(BenchmarkId::from_parameter(n_appenders), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    std::thread::scope(|scope| {
                        for t in 0..n_appenders {
                            let log = &log;
                            scope.spawn(move || {
                                for i in 0..entries_per_appender {
                                    log.append(&entry(t * 1_000_000 + i)).unwrap();
                                }
                            });
                        }
                    });
                    elapsed += started.elapsed();
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn bulk_import(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/bulk_import");
    group.sample_size(10);
    let batch: Vec<Entry> = (0..1_000).map(entry).collect();
    let n_batches = 20u64;
    group.throughput(Throughput::Elements(n_batches * 1_000 * EVENTS_PER_ENTRY));
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    group.bench_function("batches_of_1000", |b| {
        b.iter(|| {
            for _ in 0..n_batches {
                log.append_batch(&batch, Durability::Deferred).unwrap();
            }
            log.sync().unwrap();
        });
    });
    group.finish();
}

fn full_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("log/scan");
    group.sample_size(10);
    let n_entries = 200_000u64;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let entries: Vec<Entry> = (0..n_entries).map(entry).collect();
    for batch in entries.chunks(10_000) {
        log.append_batch(batch, Durability::Deferred).unwrap();
    }
    log.close().unwrap();
    let log = Log::open(dir.path()).unwrap();
    group.throughput(Throughput::Elements(n_entries * EVENTS_PER_ENTRY));
    group.bench_function("decode_all", |b| {
        b.iter(|| {
            let mut n_events = 0usize;
            log.scan(Seq::ZERO, |_, entry| {
                n_events += entry.events.len();
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(n_events as u64, n_entries * EVENTS_PER_ENTRY);
        });
    });
    group.finish();
}

criterion_group!(benches, durable_appends, bulk_import, full_scan);
criterion_main!(benches);

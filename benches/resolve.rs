//! Resolution throughput on a graph of 1M profiles (set `IDGRAPH_BENCH_PROFILES` to change it).
//!
//! - `resolve/decide/*`: the resolver alone (pure decision against the projection), one core;
//! - `resolve/engine/*`: the whole write path (decide, append to an in-memory log, apply, answer).
//!
//! Run: `cargo bench --bench resolve`. Target: ≥ 1M read-identifies/s/core. Latency percentiles of
//! the decide path are printed to stderr before the criterion runs.

use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use idgraph::engine::{Command, Engine, EngineConfig, ManualClock, RequestMeta, Workspace};
use idgraph::model::{Environment, Identity, IdentityChange, IdentityType, Timestamp};
use idgraph::query::{IdentityOp, IdentityQuery, Resolver, ResolverConfig, Strategy, World};

// The allocator the `idgraph` binary uses.
use idgraph_test_support::CountingMpids;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config() -> ResolverConfig {
    let priority = vec![
        IdentityType::CustomerId,
        IdentityType::Email,
        IdentityType::IosIdfv,
        IdentityType::DeviceApplicationStamp,
    ];
    let login = [IdentityType::CustomerId, IdentityType::Email];
    ResolverConfig::new(Strategy::ProfileConversion, priority, &login, &login, &[]).unwrap()
}

fn device(n: u64) -> Identity {
    Identity::new(IdentityType::DeviceApplicationStamp, format!("das-{n:016x}"))
}

fn meta() -> RequestMeta {
    RequestMeta { workspace: "shop".into(), environment: Environment::Production, request_id: None }
}

fn identify(identities: Vec<Identity>, op: IdentityOp) -> Command {
    Command::Identity(IdentityQuery { op, known_identities: identities, previous_mpid: None })
}

/// An engine holding `n` anonymous profiles, a third of them known (converted by a login).
fn populated(n: u64) -> Engine {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000_000), 1);
    let workspace = Workspace { name: "shop".into(), scope: "shop".into(), resolver: config() };
    let engine = Engine::in_memory(
        EngineConfig::single(workspace),
        Box::new(clock),
        Box::new(CountingMpids::default()),
    );
    let started = Instant::now();
    for i in 0..n {
        engine.handle(&meta(), identify(vec![device(i)], IdentityOp::Identify)).unwrap();
        if i % 3 == 0 {
            let email = Identity::new(IdentityType::Email, format!("user{i}@example.com"));
            engine.handle(&meta(), identify(vec![device(i), email], IdentityOp::Login)).unwrap();
        }
    }
    eprintln!("populated {n} profiles in {:.1} s", started.elapsed().as_secs_f64());
    engine
}

/// A device whose profile is anonymous (every third profile was converted by a login, and a
/// device alone cannot return a known profile), so identifying with it is a pure read.
fn anonymous_device(k: u64, n: u64) -> u64 {
    let i = (k * 7919) % n;
    match i % 3 {
        0 if i == 0 => 1,
        0 => i - 1,
        _ => i,
    }
}

fn percentiles(mut samples: Vec<u64>) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    format!("p50 {} ns, p99 {} ns, p99.9 {} ns", at(0.5), at(0.99), at(0.999))
}

fn benches(c: &mut Criterion) {
    let n: u64 = std::env::var("IDGRAPH_BENCH_PROFILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let engine = populated(n);
    let config = config();
    let world = World { scope: "shop".into(), environment: Environment::Production };
    let now = Timestamp(i64::MAX / 2);

    engine.with_projection(|projection| {
        let resolver = Resolver { projection, config: &config };
        let mut latencies = Vec::with_capacity(200_000);
        for i in 0..200_000u64 {
            let query = IdentityQuery {
                op: IdentityOp::Identify,
                known_identities: vec![device(anonymous_device(i, n))],
                previous_mpid: None,
            };
            let started = Instant::now();
            let decision =
                resolver.identity(&world, &query, now, &mut CountingMpids::default()).unwrap();
            latencies.push(started.elapsed().as_nanos() as u64);
            assert!(decision.events.is_empty());
        }
        eprintln!("decide identify-hit latency: {}", percentiles(latencies));

        let mut group = c.benchmark_group("resolve/decide");
        group.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        group.bench_function("identify_hit", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    IdentityQuery {
                        op: IdentityOp::Identify,
                        known_identities: vec![device(anonymous_device(i, n))],
                        previous_mpid: None,
                    }
                },
                |query| {
                    resolver.identity(&world, &query, now, &mut CountingMpids::default()).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        let mut fresh = n;
        group.bench_function("identify_create", |b| {
            b.iter_batched(
                || {
                    fresh += 1;
                    IdentityQuery {
                        op: IdentityOp::Identify,
                        known_identities: vec![device(fresh)],
                        previous_mpid: None,
                    }
                },
                |query| {
                    resolver
                        .identity(&world, &query, now, &mut CountingMpids::after(i64::MAX / 4))
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    });

    let mut group = c.benchmark_group("resolve/engine");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("identify_hit", |b| {
        b.iter(|| {
            i += 1;
            engine
                .handle(
                    &meta(),
                    identify(vec![device(anonymous_device(i, n))], IdentityOp::Identify),
                )
                .unwrap()
        })
    });
    let mut fresh = n * 2;
    group.bench_function("identify_create", |b| {
        b.iter(|| {
            fresh += 1;
            engine.handle(&meta(), identify(vec![device(fresh)], IdentityOp::Identify)).unwrap()
        })
    });
    // Login that converts: each iteration creates an anonymous profile, then logs it in.
    let mut convert = n * 3;
    group.throughput(Throughput::Elements(2));
    group.bench_function("identify_then_login_converts", |b| {
        b.iter(|| {
            convert += 1;
            engine.handle(&meta(), identify(vec![device(convert)], IdentityOp::Identify)).unwrap();
            let email = Identity::new(IdentityType::Email, format!("new{convert}@example.com"));
            engine
                .handle(&meta(), identify(vec![device(convert), email], IdentityOp::Login))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut k = 0u64;
    group.bench_function("modify_email", |b| {
        b.iter(|| {
            k = (k + 3) % n; // every third profile is known, with an email
            let mpid = engine
                .with_projection(|p| {
                    let world = p.world("shop", Environment::Production)?;
                    let id = p.identity_id(
                        world,
                        IdentityType::DeviceApplicationStamp,
                        &device(k).value,
                    )?;
                    p.profiles_of(id).first().map(|profile| p.mpid(*profile))
                })
                .unwrap();
            let change = IdentityChange {
                identity_type: IdentityType::Email,
                old_value: Some(format!("user{k}@example.com")),
                new_value: Some(format!("moved{k}@example.com")),
            };
            engine
                .handle(&meta(), Command::Modify { mpid, identity_changes: vec![change] })
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(resolve, benches);
criterion_main!(resolve);

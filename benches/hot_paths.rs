//! Hot paths of the resolver, decided against a fixed projection (nothing is applied, so every
//! iteration does the same work): the priority walk with 1, 5 and 18 prioritised types in the
//! request, modify with a unique-ID move, and alias validation.
//!
//! Run: `cargo bench --bench hot_paths`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use idgraph::engine::{Command, Engine, EngineConfig, ManualClock, RequestMeta, Workspace};
use idgraph::model::{Environment, Identity, IdentityChange, IdentityType, Mpid, Timestamp};
use idgraph::query::{
    AliasQuery, IdentityOp, IdentityQuery, Resolver, ResolverConfig, Strategy, World,
};

// The allocator the `idgraph` binary uses.
use idgraph_test_support::CountingMpids;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 18 prioritised types: the default hierarchy plus `other2` and `other3`.
fn priority() -> Vec<IdentityType> {
    let mut types = idgraph::query::DEFAULT_PRIORITY.to_vec();
    types.extend([IdentityType::Other2, IdentityType::Other3]);
    types
}

fn config() -> ResolverConfig {
    let login = [IdentityType::CustomerId, IdentityType::Email];
    ResolverConfig::new(Strategy::ProfileConversion, priority(), &login, &login, &[]).unwrap()
}

fn meta() -> RequestMeta {
    RequestMeta { workspace: "shop".into(), environment: Environment::Production, request_id: None }
}

/// 100k anonymous profiles, each with a device stamp; profile 0 and 1 are known (emails).
fn engine() -> (Engine, Mpid, Mpid) {
    let workspace = Workspace { name: "shop".into(), scope: "shop".into(), resolver: config() };
    let clock = ManualClock::new(Timestamp(1_700_000_000_000_000), 1);
    let engine = Engine::in_memory(
        EngineConfig::single(workspace),
        Box::new(clock),
        Box::new(CountingMpids::default()),
    );
    let mut mpids = Vec::new();
    for i in 0..100_000u64 {
        let mut identities =
            vec![Identity::new(IdentityType::DeviceApplicationStamp, format!("das-{i}"))];
        if i < 2 {
            identities.push(Identity::new(IdentityType::Email, format!("known{i}@example.com")));
        }
        let op = if i < 2 { IdentityOp::Login } else { IdentityOp::Identify };
        let answer = engine
            .handle(
                &meta(),
                Command::Identity(IdentityQuery {
                    op,
                    known_identities: identities,
                    previous_mpid: None,
                }),
            )
            .unwrap();
        if let idgraph::query::Answer::Resolved(answer) = answer {
            mpids.push(answer.mpid);
        }
    }
    (engine, mpids[0], mpids[1])
}

fn benches(c: &mut Criterion) {
    let (engine, first, second) = engine();
    let config = config();
    let world = World { scope: "shop".into(), environment: Environment::Production };
    let now = Timestamp(1_800_000_000_000_000);
    engine.with_projection(|projection| {
        let resolver = Resolver { projection, config: &config };
        let mut group = c.benchmark_group("hot/priority_walk");
        group.throughput(Throughput::Elements(1));
        for n_types in [1usize, 5, 18] {
            // The request carries `n_types` prioritised identities: unknown values for all types
            // but the last in priority order, which matches an anonymous profile, so the walk visits
            // every type.
            let mut identities: Vec<Identity> = priority()
                .into_iter()
                .filter(|t| *t != IdentityType::DeviceApplicationStamp)
                .take(n_types - 1)
                .map(|t| Identity::new(t, "unseen-value"))
                .collect();
            identities.push(Identity::new(IdentityType::DeviceApplicationStamp, "das-777"));
            let query = IdentityQuery {
                op: IdentityOp::Identify,
                known_identities: identities,
                previous_mpid: None,
            };
            group.bench_function(BenchmarkId::from_parameter(n_types), |b| {
                b.iter(|| {
                    resolver
                        .identity(&world, &query, now, &mut CountingMpids::after(1 << 40))
                        .unwrap()
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group("hot/modify");
        group.throughput(Throughput::Elements(1));
        // `second` takes `first`'s unique email: a detach from one profile and an attach to another.
        let steal = vec![IdentityChange {
            identity_type: IdentityType::Email,
            old_value: None,
            new_value: Some("known0@example.com".into()),
        }];
        group.bench_function("unique_id_move", |b| {
            b.iter(|| resolver.modify(&world, second, &steal).unwrap())
        });
        group.finish();

        let mut group = c.benchmark_group("hot/alias");
        group.throughput(Throughput::Elements(1));
        let alias = AliasQuery { source: first, destination: second, start: None, end: None };
        group.bench_function("validate", |b| {
            b.iter(|| resolver.alias(&world, &alias, now).unwrap())
        });
        group.finish();
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);

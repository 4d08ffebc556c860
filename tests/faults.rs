//! Storage faults seen from the engine (issue #14): on a simulated disk that fails writes and syncs
//! or crashes in one (`idgraph_log::sim`), the engine answers the failing request with the log's
//! error, refuses every later request with `EngineError::Halted` naming the cause, and after a
//! crash and a reopen it holds exactly the recovered entries: every answered request among them,
//! and a projection whose running digest equals one folded from those entries alone.
//!
//! The log's own, larger simulation is `crates/log/tests/sim.rs`.

use idgraph::engine::{Command, Engine, EngineError};
use idgraph::log::{Error, Log};
use idgraph::model::{Environment, Identity, IdentityType, Seq};
use idgraph::projection::Projection;
use idgraph::query::{IdentityOp, IdentityQuery, Strategy};
use idgraph_log::sim::{SimFaults, SimStorage, splitmix64};
use idgraph_test_support::{CountingMpids, engine_config, manual_clock, meta, resolver_config};

/// Seeds per run; each drives a few dozen requests.
const N_SEEDS: u64 = 64;

fn open_engine(sim: &SimStorage) -> Result<Engine, EngineError> {
    let log = Log::with_sim_storage(sim)?;
    let config = engine_config(resolver_config(Strategy::ProfileConversion));
    let clock = Box::new(manual_clock(1_000));
    // MPIDs far apart per open, so that a reopened engine never proposes one already used.
    let mpids = Box::new(CountingMpids::after(1_000_000 * (log.last_seq().0 as i64 + 1)));
    Engine::with_log(log, config, clock, mpids).map(|(engine, _)| engine)
}

/// A request that creates a profile (a new email each time), so its entry is appended `Synced`.
fn signup(n: u64) -> Command {
    let email = Identity::new(IdentityType::Email, format!("user-{n}@example.com"));
    Command::Identity(IdentityQuery {
        op: IdentityOp::Identify,
        known_identities: vec![email],
        previous_mpid: None,
    })
}

/// Returns whether the engine halted.
fn run_seed(seed: u64) -> bool {
    let mut rng = seed;
    let faults = SimFaults {
        write_error_per_mille: 20 + (splitmix64(&mut rng) % 40) as u32,
        enospc_per_mille: 10,
        sync_error_per_mille: 20,
        crash_at_call: seed.is_multiple_of(2).then(|| 1 + splitmix64(&mut rng) % 20),
        ..SimFaults::default()
    };
    let sim = SimStorage::new(splitmix64(&mut rng), faults);
    let engine = open_engine(&sim).unwrap();
    let meta = meta(Environment::Production, None);
    let mut n_answered = 0;
    let mut cause = None;
    for n in 0..60 {
        match engine.handle(&meta, signup(n)) {
            Ok(_) => n_answered += 1,
            Err(EngineError::Log(Error::Poisoned { cause: log_cause })) => {
                assert!(sim.injected().contains(&log_cause), "seed {seed}: {log_cause}");
                cause = Some(log_cause);
                break;
            }
            Err(err) => panic!("seed {seed}: request {n}: {err:?}"),
        }
    }
    let halted = cause.is_some();
    if let Some(cause) = cause {
        // Halted for good, saying why.
        for n in 60..63 {
            match engine.handle(&meta, signup(n)) {
                Err(EngineError::Halted { cause: halted }) => {
                    assert!(halted.contains(&cause), "seed {seed}: {halted} / {cause}")
                }
                other => panic!("seed {seed}: a request after {cause}: {other:?}"),
            }
        }
    }
    drop(engine);

    let report = sim.crash();
    if let Some(torn) = report.torn {
        let refused = open_engine(&sim);
        assert!(
            matches!(refused, Err(EngineError::Log(Error::Corrupt { seq, .. })) if seq == torn),
            "seed {seed}: a torn record must stop the open"
        );
        sim.drop_torn_tail(torn);
    }
    let engine = open_engine(&sim).unwrap_or_else(|err| panic!("seed {seed}: reopen: {err}"));
    let mut entries = Vec::new();
    engine
        .log()
        .scan(Seq::ZERO, |seq, entry| {
            entries.push((seq, entry));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap_or_else(|err| panic!("seed {seed}: the recovered log: {err}"));
    assert!(entries.len() >= n_answered, "seed {seed}: {n_answered} answered, fewer recovered");
    let mut folded = Projection::new();
    for (seq, entry) in &entries {
        folded.apply(*seq, entry).unwrap();
    }
    let running = engine.with_projection(|projection| projection.running_digest());
    assert_eq!(running, folded.running_digest(), "seed {seed}: replay = fold of what survived");
    // The reopened engine takes requests again.
    assert!(engine.handle(&meta, signup(1_000)).is_ok(), "seed {seed}: after reopening");
    halted
}

#[test]
fn the_engine_halts_on_storage_faults_and_recovers_exactly_the_surviving_entries() {
    let n_halted = (0..N_SEEDS).filter(|seed| run_seed(*seed)).count() as u64;
    assert!(n_halted > N_SEEDS / 4, "only {n_halted} seeds met a fault: the test is vacuous");
    assert!(n_halted < N_SEEDS, "every seed met a fault: none checks a clean run");
}

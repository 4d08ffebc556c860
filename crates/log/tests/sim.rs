//! The storage fault simulation (issue #14): for each seed, a random workload of appends (batches,
//! every `Durability`, several submits in flight before a wait leads their group commit) runs on a
//! simulated disk (`idgraph_log::sim::SimStorage`) that fails writes, runs out of space, fails or
//! lies about syncs and may crash in any write or sync; then the disk crashes and the log reopens
//! on what survived, and a model checks it:
//! 1. every acknowledged durable entry is recovered with its content (unless a sync lied);
//! 2. sequences are gap-free from 1, and a hole (possible only after a lying sync) is reported as
//!    `Error::Gap`, never skipped;
//! 3. with read errors and bit flips injected, every read returns an entry as appended or an error
//!    (`Corrupt`, `Storage`, `Gap`): never other content, never a panic; a torn last record stops
//!    the open with `Corrupt` at its sequence;
//! 4. after a failed write or sync the log refuses appends (`Error::Poisoned`) naming the injected
//!    fault, and after reopening it appends again.
//!
//! `IDGRAPH_SIM_SEEDS=N` runs N seeds (default 1,000); `IDGRAPH_SIM_SEED=N` runs seed N alone. A
//! failing seed prints the command that replays it and the faults it injected.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;

use idgraph_log::sim::{SimFaults, SimStorage, splitmix64};
use idgraph_log::{Durability, Error, Log, Pending};
use idgraph_model::{
    Entry, Environment, Event, Identity, IdentityRequest, IdentityType, Mpid, Operation, Outcome,
    Request, Seq, Timestamp,
};

const SEEDS_VAR: &str = "IDGRAPH_SIM_SEEDS";
const SEED_VAR: &str = "IDGRAPH_SIM_SEED";
const SEEDS_DEFAULT: u64 = 1_000;

/// A deterministic entry whose content is a function of `n` (and its time `n`, so that entries
/// appended in order never go back in time).
fn entry(n: u64) -> Entry {
    let mpid = Mpid::new(n as i64 + 1).unwrap();
    let identity = Identity::new(IdentityType::Email, format!("user-{n}@example.com"));
    Entry {
        recorded_at: Timestamp(n as i64),
        request: Request {
            request_id: Some(format!("req-{n}")),
            workspace: "shop".into(),
            scope: format!("scope-{}", n % 3),
            environment: Environment::Production,
            operation: Operation::Identify(IdentityRequest {
                known_identities: vec![identity.clone()],
                previous_mpid: None,
            }),
        },
        events: vec![Event::ProfileCreated { mpid }, Event::IdentityAttached { mpid, identity }],
        outcome: Outcome::Resolved { mpid, is_logged_in: false, matched: vec![] },
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { splitmix64(&mut self.0) % n }
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A fault rate: none half of the time, else up to 6 %.
    fn rate(&mut self) -> u32 {
        if self.chance(500) { 0 } else { self.below(60) as u32 + 1 }
    }
}

/// What the workload was told.
#[derive(Default)]
struct Model {
    /// Every entry that got a sequence, by sequence.
    appended: BTreeMap<u64, Entry>,
    /// The last sequence acknowledged durable (a `Synced` wait or a `sync` that returned `Ok`).
    acked_durable: u64,
    /// The cause of the first write-path failure.
    poisoned: Option<String>,
}

/// What one seed saw, for the summary that shows the simulation is not vacuous.
#[derive(Default, Debug)]
struct Seen {
    poisoned: bool,
    crashed_in_call: bool,
    lied: bool,
    torn: bool,
    holes: bool,
    read_faults_caught: bool,
    n_acked: u64,
}

type Checked<T> = Result<T, String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn run_seed(seed: u64) -> Checked<Seen> {
    let mut rng = Rng(seed ^ 0x51D_5EED);
    let faults = SimFaults {
        write_error_per_mille: rng.rate(),
        enospc_per_mille: rng.rate(),
        sync_error_per_mille: rng.rate(),
        // Some disks lie often: with commit groups a lie must span several group writes before a
        // crash can leave a hole, so these seeds are what exercises holes.
        sync_lie_per_mille: if rng.chance(100) { 300 + rng.below(500) as u32 } else { rng.rate() },
        read_error_per_mille: 0,
        read_flip_per_mille: 0,
        crash_at_call: rng.chance(400).then(|| rng.below(12) + 1),
    };
    let sim = SimStorage::new(splitmix64(&mut rng.0), faults);
    let log = Log::with_sim_storage(&sim).map_err(|err| format!("an empty log opens: {err}"))?;
    let mut model = Model::default();
    let mut seen = Seen::default();
    workload(&log, &sim, &mut rng, &mut model)?;
    seen.poisoned = model.poisoned.is_some();
    seen.crashed_in_call = sim.crashed();
    drop(log);

    let report = sim.crash();
    seen.lied = sim.lied();
    seen.holes = report.holes;
    check!(!report.holes || seen.lied, "holes after a crash without a lying sync: {report:?}");
    if let Some(torn) = report.torn {
        seen.torn = true;
        check!(
            seen.lied || torn.0 > model.acked_durable,
            "the torn record {torn} was acknowledged durable (up to {})",
            model.acked_durable
        );
        match Log::with_sim_storage(&sim) {
            Err(Error::Corrupt { seq, .. }) if seq == torn => {}
            other => return Err(format!("a torn last record {torn}: open gave {other:?}")),
        }
        sim.drop_torn_tail(torn);
    }
    recover_and_check(&sim, &mut rng, &model, &mut seen)?;
    seen.n_acked = model.acked_durable;
    Ok(seen)
}

/// Appends, waits, syncs and reads at random until the log is poisoned or the disk crashed.
fn workload(log: &Log, sim: &SimStorage, rng: &mut Rng, model: &mut Model) -> Checked<()> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut next_n = 0u64;
    let n_ops = 10 + rng.below(30);
    for _ in 0..n_ops {
        let res = match rng.below(10) {
            0..=4 => {
                let n_entries = 1 + rng.below(3);
                let entries: Vec<Entry> = (next_n..next_n + n_entries).map(entry).collect();
                next_n += n_entries;
                let durability = match rng.below(10) {
                    0..=3 => Durability::Synced,
                    4..=6 => Durability::Deferred,
                    _ => Durability::Queued,
                };
                log.submit(&entries, durability).map(|p| {
                    for (seq, entry) in (p.first.0..=p.last.0).zip(entries) {
                        model.appended.insert(seq, entry);
                    }
                    pending.push(p);
                })
            }
            5..=6 if !pending.is_empty() => {
                let p = pending.remove(rng.below(pending.len() as u64) as usize);
                log.wait(p).map(|(_, last)| {
                    if p.durability == Durability::Synced {
                        model.acked_durable = model.acked_durable.max(last.0);
                    }
                })
            }
            7 => log.sync().map(|seq| model.acked_durable = model.acked_durable.max(seq.0)),
            8 => log.flush().map(|_| ()),
            _ => {
                check_get(log, model, Seq(rng.below(next_n + 2)), false)?;
                Ok(())
            }
        };
        if let Err(err) = res {
            return check_refusal(log, sim, model, err);
        }
        if sim.crashed() {
            return Err("the disk crashed but the log answered Ok".to_owned());
        }
    }
    // Sometimes wait for everything still pending, acknowledging it.
    if rng.chance(500) {
        for p in pending {
            match log.wait(p) {
                Ok((_, last)) if p.durability == Durability::Synced => {
                    model.acked_durable = model.acked_durable.max(last.0)
                }
                Ok(_) => {}
                Err(err) => return check_refusal(log, sim, model, err),
            }
        }
    }
    Ok(())
}

/// After the first failure of the write path: it is `Poisoned`, names an injected fault, and every
/// later append and sync is refused with the same cause.
fn check_refusal(log: &Log, sim: &SimStorage, model: &mut Model, err: Error) -> Checked<()> {
    let Error::Poisoned { cause } = &err else {
        return Err(format!("a write-path failure that is not Poisoned: {err:?}"));
    };
    check!(
        sim.injected().contains(cause),
        "the log's cause {cause:?} names no injected fault: {:?}",
        sim.injected()
    );
    let again = log.submit(&[entry(u64::MAX >> 2)], Durability::Deferred);
    check!(
        matches!(&again, Err(Error::Poisoned { cause: c }) if c == cause),
        "an append after {cause:?} was not refused: {again:?}"
    );
    // A sync still answers `Ok` when everything assigned was already durable before the failure
    // (true: what was synced stays synced); otherwise it is refused.
    let synced = log.sync();
    let all_durable = log.durable_seq() == log.assigned_seq();
    check!(
        matches!(&synced, Err(Error::Poisoned { cause: c }) if c == cause)
            || (all_durable && synced == Ok(log.durable_seq())),
        "a sync after {cause:?} gave {synced:?} (durable {}, assigned {})",
        log.durable_seq(),
        log.assigned_seq(),
    );
    model.poisoned = Some(cause.clone());
    Ok(())
}

/// A point read: the entry as appended, nothing past the end, or (with read faults) an error.
fn check_get(log: &Log, model: &Model, seq: Seq, faults: bool) -> Checked<bool> {
    match log.get(seq) {
        Ok(Some(entry)) => {
            check!(
                model.appended.get(&seq.0) == Some(&entry),
                "get({seq}) served an entry that was not appended there"
            );
            Ok(false)
        }
        Ok(None) => Ok(false),
        Err(Error::Corrupt { seq: at, .. }) if faults && at == seq => Ok(true),
        Err(Error::Storage { .. }) if faults => Ok(true),
        Err(err) => Err(format!("get({seq}): {err:?}")),
    }
}

/// Scans from `from`: every served entry as appended, in order without a gap. Returns the last
/// sequence served and the error the scan ended with.
fn scan_checked(log: &Log, model: &Model, from: Seq) -> Checked<(u64, Option<Error>)> {
    let mut expected = from.0.max(1);
    let mut wrong = None;
    let res = log.scan(from, |seq, entry| {
        if seq.0 != expected || model.appended.get(&seq.0) != Some(&entry) {
            wrong = Some(format!("the scan served {seq} (expected {expected}) with other content"));
            return ControlFlow::Break(());
        }
        expected += 1;
        ControlFlow::Continue(())
    });
    if let Some(wrong) = wrong {
        return Err(wrong);
    }
    Ok((expected - 1, res.err()))
}

fn recover_and_check(
    sim: &SimStorage,
    rng: &mut Rng,
    model: &Model,
    seen: &mut Seen,
) -> Checked<()> {
    let lied = seen.lied;
    let log = match Log::with_sim_storage(sim) {
        Ok(log) => log,
        Err(Error::Gap { missing: Seq(1) }) if seen.holes => return Ok(()),
        Err(err) => return Err(format!("reopening after the crash: {err:?}")),
    };
    let last = log.last_seq();
    // 1 and 2: what survived is a prefix of what was appended, gap-free, holding every
    // acknowledged entry (unless a sync lied).
    let (n_recovered, err) = scan_checked(&log, model, Seq::ZERO)?;
    match &err {
        None => check!(n_recovered == last.0, "the scan ended at {n_recovered}, the log at {last}"),
        Some(Error::Gap { missing }) if seen.holes && missing.0 == n_recovered + 1 => {}
        Some(err) => return Err(format!("the recovered log does not scan: {err:?}")),
    }
    check!(
        lied || n_recovered >= model.acked_durable,
        "acknowledged durable up to {} but only {n_recovered} recovered",
        model.acked_durable
    );
    let verified = log.verify();
    match (&verified, &err) {
        (Ok(report), None) => check!(report.last_seq == last, "verify: {report:?}"),
        (Err(Error::Gap { .. }), Some(Error::Gap { .. })) => {}
        _ => return Err(format!("verify gave {verified:?}, the scan {err:?}")),
    }
    // 3: with read errors and bit flips, nothing but intact entries or errors.
    sim.set_faults(SimFaults {
        read_error_per_mille: 1 + rng.below(80) as u32,
        read_flip_per_mille: 1 + rng.below(80) as u32,
        ..SimFaults::default()
    });
    for _ in 0..3 {
        let from = Seq(rng.below(last.0 + 2));
        let (_, err) = scan_checked(&log, model, from)?;
        match err {
            None => {}
            Some(Error::Corrupt { .. } | Error::Storage { .. }) => seen.read_faults_caught = true,
            Some(Error::Gap { .. }) if seen.holes => {}
            Some(err) => return Err(format!("a scan with read faults: {err:?}")),
        }
        seen.read_faults_caught |= check_get(&log, model, Seq(rng.below(last.0 + 2)), true)?;
    }
    sim.set_faults(SimFaults::default());
    // 4: the reopened log appends again, after what survived.
    if !seen.holes {
        let appended = log.append(&entry(u64::MAX >> 2));
        check!(appended == Ok(last.next()), "appending after recovery: {appended:?}");
    }
    Ok(())
}

fn replay_command(seed: u64) -> String {
    format!("{SEED_VAR}={seed} cargo test -p idgraph-log --test sim")
}

#[test]
fn every_seed_keeps_acknowledged_entries_and_serves_nothing_corrupt() {
    let seeds: Vec<u64> = match std::env::var(SEED_VAR) {
        Ok(seed) => vec![seed.parse().expect("IDGRAPH_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var(SEEDS_VAR).ok().and_then(|n| n.parse().ok());
            (0..n.unwrap_or(SEEDS_DEFAULT)).collect()
        }
    };
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in &seeds {
        let seed = *seed;
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| run_seed(seed)));
        let seen = match res {
            Ok(Ok(seen)) => seen,
            Ok(Err(failure)) => panic!("seed {seed}: {failure}\nreplay: {}", replay_command(seed)),
            Err(_) => panic!("seed {seed} panicked (above)\nreplay: {}", replay_command(seed)),
        };
        for (name, hit) in [
            ("poisoned", seen.poisoned),
            ("crashed in a call", seen.crashed_in_call),
            ("a sync lied", seen.lied),
            ("torn tail", seen.torn),
            ("holes", seen.holes),
            ("read faults caught", seen.read_faults_caught),
            ("acknowledged entries", seen.n_acked > 0),
        ] {
            *totals.entry(name).or_default() += u64::from(hit);
        }
    }
    eprintln!("{} seeds; seeds that saw each case: {totals:?}", seeds.len());
    if seeds.len() as u64 >= SEEDS_DEFAULT {
        for (name, n_seeds) in &totals {
            assert!(*n_seeds > 0, "no seed saw '{name}': the simulation is vacuous");
        }
    }
}

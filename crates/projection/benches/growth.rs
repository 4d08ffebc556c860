//! Growth stalls: folds a generated log, one `Projection::apply` at a time, up to a number of
//! identities (10M unless `IDGRAPH_GROWTH_IDENTITIES` says otherwise), timing every apply, and
//! reports the slowest apply, the p99.99 and where the slowest ones happened (the sequence, the
//! number of identities then, and which structures changed capacity during that apply).
//!
//! The engine applies each request under its write lock (`decide_batch`), so the slowest apply is
//! the longest a growth can stall every request. The fold is deterministic, so a growth happens at
//! the same sequence in every run while the scheduler's preemptions do not: the fold runs
//! `IDGRAPH_GROWTH_RUNS` times (2 by default) and each apply counts its fastest run, which keeps
//! the projection's own stalls and drops most of a busy machine's. The first run's raw figures are
//! printed too.
//!
//! As the engine does, the fold starts from a projection given `shrink_leaving_room` (what
//! `load_projection` calls before the engine serves); `IDGRAPH_GROWTH_FROM_NEW=1` starts from a bare
//! `Projection::new()` instead.
//!
//! Run (release, about 2.5 GB of memory at 10M identities, a minute a run):
//! `cargo bench -p idgraph-projection --bench growth`. Not a criterion bench: one fold is the
//! measurement. Under `cargo test --benches` it folds 20,000 identities once, to stay working.

use std::collections::BTreeMap;
use std::time::Instant;

use idgraph_model::Seq;
use idgraph_projection::Projection;
use idgraph_projection::generate::LogGenerator;

// The allocator the `idgraph` binary uses: its `realloc` of a large block allocates and copies
// (the system allocator's can remap pages instead), so this is the stall the server would see.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Slow applies listed in the report.
const SLOWEST_LISTED: usize = 12;

/// Components whose capacity changed during an apply, with their bytes before and after.
type Grew = Vec<(&'static str, usize, usize)>;

/// One timed fold.
struct Run {
    /// Nanoseconds of each apply, by sequence - 1.
    nanos: Vec<u32>,
    /// Identities after each apply, by sequence - 1.
    n_identities: Vec<u32>,
    /// The applies during which a component's capacity changed, by sequence.
    grew: BTreeMap<u64, Grew>,
    n_events: u64,
    fold_nanos: u64,
    projection: Projection,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.replace('_', "").parse().ok()).unwrap_or(default)
}

fn fold_timed(n_identities_target: usize, seed: u64, from_new: bool) -> Run {
    let mut projection = Projection::new();
    if !from_new {
        projection.shrink_leaving_room();
    }
    let mut generator = LogGenerator::new(seed);
    let mut run = Run {
        nanos: Vec::with_capacity(n_identities_target * 3 / 2),
        n_identities: Vec::with_capacity(n_identities_target * 3 / 2),
        grew: BTreeMap::new(),
        n_events: 0,
        fold_nanos: 0,
        projection: Projection::new(),
    };
    let mut breakdown = projection.memory_breakdown();
    let mut seq = 0u64;
    while projection.n_identities() < n_identities_target {
        let entry = generator.next().expect("endless");
        seq += 1;
        run.n_events += entry.events.len() as u64;
        let before = Instant::now();
        projection.apply(Seq(seq), &entry).expect("in sequence");
        let elapsed = before.elapsed().as_nanos() as u64;
        run.fold_nanos += elapsed;
        run.nanos.push(elapsed.min(u64::from(u32::MAX)) as u32);
        run.n_identities.push(projection.n_identities() as u32);
        let after = projection.memory_breakdown();
        if after != breakdown {
            let grew: Grew = breakdown
                .iter()
                .zip(&after)
                .filter(|((_, a), (_, b))| a != b)
                .map(|((name, a), (_, b))| (*name, *a, *b))
                .collect();
            run.grew.insert(seq, grew);
            breakdown = after;
        }
    }
    run.projection = projection;
    run
}

fn report(title: &str, nanos: &[u32], run: &Run) {
    let n_applies = nanos.len();
    let mut sorted = nanos.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| f64::from(sorted[((n_applies as f64 - 1.0) * q) as usize]) / 1e6;
    let over = |ms: f64| sorted.iter().filter(|n| f64::from(**n) / 1e6 > ms).count();
    println!(
        "growth: {title}: apply max {:.3} ms, p99.99 {:.4} ms, p99.9 {:.4} ms, p99 {:.4} ms, p50 {:.5} ms; over 1 ms: {}, over 5 ms: {}",
        f64::from(sorted[n_applies - 1]) / 1e6,
        at(0.9999),
        at(0.999),
        at(0.99),
        at(0.5),
        over(1.0),
        over(5.0),
    );
    let mut slowest: Vec<usize> = (0..n_applies).collect();
    slowest.sort_by_key(|idx| std::cmp::Reverse(nanos[*idx]));
    for idx in slowest.into_iter().take(SLOWEST_LISTED) {
        let seq = idx as u64 + 1;
        let grew = run.grew.get(&seq).map_or("nothing".to_owned(), |grew| {
            let grew: Vec<String> =
                grew.iter().map(|(name, a, b)| format!("{name} {a} -> {b} B")).collect();
            grew.join(", ")
        });
        println!(
            "  {:9.3} ms at seq {seq:>9} ({:>9} identities); capacity changed: {grew}",
            f64::from(nanos[idx]) / 1e6,
            run.n_identities[idx],
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick run keeps the
    // program compiled and working.
    let testing = !std::env::args().any(|arg| arg == "--bench");
    let n_identities_target =
        env_usize("IDGRAPH_GROWTH_IDENTITIES", if testing { 20_000 } else { 10_000_000 });
    let n_runs = env_usize("IDGRAPH_GROWTH_RUNS", if testing { 1 } else { 2 }).max(1);
    let seed = env_usize("IDGRAPH_GROWTH_SEED", 1) as u64;
    let from_new = std::env::var_os("IDGRAPH_GROWTH_FROM_NEW").is_some_and(|v| v == "1");
    println!(
        "growth: {n_identities_target} identities, {n_runs} runs, {}",
        if from_new {
            "from Projection::new()"
        } else {
            "after shrink_leaving_room, as the engine"
        }
    );

    let mut fastest: Vec<u32> = Vec::new();
    let mut last: Option<Run> = None;
    for run_idx in 0..n_runs {
        drop(last.take());
        let started = Instant::now();
        let run = fold_timed(n_identities_target, seed, from_new);
        let sizes = run.projection.sizes();
        println!(
            "growth: run {}: {} applies ({} events), {} identities, {} profiles, {} edges; fold {:.3} s ({:.0} events/s, timed applies only), {:.1} s with generation",
            run_idx + 1,
            run.nanos.len(),
            run.n_events,
            sizes.identities,
            sizes.profiles,
            sizes.edges,
            run.fold_nanos as f64 / 1e9,
            run.n_events as f64 / (run.fold_nanos as f64 / 1e9),
            started.elapsed().as_secs_f64(),
        );
        if run_idx == 0 {
            report("run 1", &run.nanos, &run);
            fastest = run.nanos.clone();
        } else {
            assert_eq!(fastest.len(), run.nanos.len(), "the same log");
            for (fast, nanos) in fastest.iter_mut().zip(&run.nanos) {
                *fast = (*fast).min(*nanos);
            }
        }
        last = Some(run);
    }
    let run = last.expect("at least one run");
    if n_runs > 1 {
        report(&format!("fastest of {n_runs} runs"), &fastest, &run);
    }
    let projection = &run.projection;
    println!("growth: heap {} B: {:?}", projection.heap_bytes(), projection.memory_breakdown());
    println!("growth: heap written {} B; {}", projection.heap_bytes_in_use(), memory_status());
}

/// The process's resident memory now (and how much of it is in transparent huge pages) and at its
/// peak, and its address space (Linux).
fn memory_status() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        let line = status.lines().find(|line| line.starts_with(name));
        line.map_or("?", |line| line[name.len()..].trim())
    };
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let huge = rollup.lines().find(|line| line.starts_with("AnonHugePages:"));
    let huge = huge.map_or("?", |line| line["AnonHugePages:".len()..].trim());
    let (rss, hwm, size) = (field("VmRSS:"), field("VmHWM:"), field("VmSize:"));
    format!("VmRSS {rss} (in transparent huge pages {huge}), VmHWM {hwm}, VmSize {size}")
}

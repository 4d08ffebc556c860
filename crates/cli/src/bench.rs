//! `idgraph bench`: replay a workload (generated in memory, or read from a JSON Lines file) against
//! the in-process engine (durable, RocksDB in a folder) or an HTTP endpoint (`--url`), with N
//! concurrent clients; report throughput, latency percentiles (HDR histogram), errors, peak RSS,
//! log size on disk and bytes per identity. Without arguments it runs a small standard suite.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use idgraph_engine::{Command, Engine, EngineConfig, EngineError, RequestMeta, Workspace};
use idgraph_model::{IdentityType, Mpid};
use idgraph_query::{Answer, IdentityOp, IdentityQuery, ResolverConfig, Strategy};
use idgraph_workload::{Generator, LineRef, Op, Reader, WorkloadRequest, WorkloadSpec};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A workload file from `idgraph gen`; default: generate one in memory.
    #[arg(long)]
    workload: Option<PathBuf>,
    /// Requests to generate (without --workload).
    #[arg(long)]
    requests: Option<u64>,
    /// User population to generate (without --workload).
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// In-process: each client sends up to this many consecutive requests as one pipelined batch
    /// (`Engine::handle_batch`: one lock, one wait for durability) and gets every answer when the
    /// batch is durable. A batch ends early at a request that needs an answer from the same batch.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Benchmark an HTTP endpoint (e.g. http://127.0.0.1:8080) instead of the in-process engine.
    #[arg(long)]
    url: Option<String>,
    /// API key for --url (HTTP Basic).
    #[arg(long, default_value = "dev-key")]
    api_key: String,
    /// API secret for --url.
    #[arg(long, default_value = "dev-secret")]
    api_secret: String,
    /// In-process: the data folder for the log (default: a fresh temporary folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// What one run measured.
#[derive(Debug)]
struct Report {
    name: String,
    requests: u64,
    errors: u64,
    rejected: u64,
    skipped: u64,
    seconds: f64,
    latency: Histogram<u64>,
    /// References sent unresolved: the referenced line was still in flight.
    unresolved: u64,
    peak_rss_bytes: Option<u64>,
    /// CPU time this process used during the run, all threads (Linux `/proc/self/stat`). For an
    /// in-process run that is the engine's and the bench's own; for `--url`, the client's only.
    cpu_seconds: Option<f64>,
    log_bytes: Option<u64>,
    /// The projection's heap bytes in use ([`idgraph_projection::Projection::heap_bytes_in_use`])
    /// per identity.
    bytes_per_identity: Option<f64>,
}

impl Report {
    fn json(&self) -> serde_json::Value {
        let q = |q: f64| self.latency.value_at_quantile(q);
        serde_json::json!({
            "name": self.name, "requests": self.requests, "errors": self.errors, "rejected": self.rejected,
            "skipped": self.skipped, "unresolved_references": self.unresolved, "seconds": self.seconds,
            "requests_per_second": self.requests as f64 / self.seconds,
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": self.latency.max()},
            "peak_rss_bytes": self.peak_rss_bytes, "cpu_seconds": self.cpu_seconds,
            "cpu_us_per_request": self.cpu_us_per_request(), "log_bytes": self.log_bytes, "bytes_per_identity": self.bytes_per_identity,
        })
    }

    /// CPU microseconds per request, over all threads.
    fn cpu_us_per_request(&self) -> Option<f64> {
        self.cpu_seconds.map(|cpu| cpu * 1e6 / self.requests.max(1) as f64)
    }

    fn row(&self) -> String {
        let q = |q: f64| self.latency.value_at_quantile(q);
        let mib = |b: Option<u64>| {
            b.map(|b| format!("{:.0}", b as f64 / (1 << 20) as f64)).unwrap_or_else(|| "-".into())
        };
        format!(
            "{:<46} {:>9} {:>10.0} {:>7} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>6}",
            self.name,
            self.requests,
            self.requests as f64 / self.seconds,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            self.errors,
            self.cpu_us_per_request().map(|us| format!("{us:.1}")).unwrap_or_else(|| "-".into()),
            mib(self.peak_rss_bytes),
            mib(self.log_bytes),
            self.bytes_per_identity.map(|b| format!("{b:.0}")).unwrap_or_else(|| "-".into()),
        )
    }
}

const HEADER: &str = "run                                             requests      req/s  p50 us  p90 us  p99 us p99.9 us  errors  CPU us/r  RSS MiB  log MiB  B/id";

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let suite = args.workload.is_none() && args.requests.is_none() && args.url.is_none();
    let mut reports = Vec::new();
    if suite {
        // The standard suite: small enough for a newcomer to see numbers in under a minute.
        for (clients, pipeline) in [(1, 1), (16, 1), (64, 1), (4, 256)] {
            let requests = Some(if pipeline > 1 { 500_000 } else { 50_000 });
            let mut run_args = BenchArgs { requests, clients, pipeline, ..args_clone(&args) };
            run_args.quiet = true;
            reports.push(run_once(&run_args, run_name(&run_args))?);
            if !args.json {
                if reports.len() == 1 {
                    outln!("{HEADER}");
                }
                outln!("{}", reports.last().expect("pushed").row());
            }
        }
    } else {
        anyhow::ensure!(
            args.pipeline >= 1 && (args.pipeline == 1 || args.url.is_none()),
            "--pipeline: at least 1, and only for the in-process engine"
        );
        reports.push(run_once(&args, run_name(&args))?);
        if !args.json {
            outln!("{HEADER}\n{}", reports[0].row());
        }
    }
    if !args.json {
        for report in reports.iter().filter(|r| r.unresolved + r.skipped + r.rejected > 0) {
            outln!(
                "{}: {} rejected (4xx), {} modify skipped and {} references sent unresolved \
                 (their line was still in flight)",
                report.name,
                report.rejected,
                report.skipped,
                report.unresolved
            );
        }
    }
    if args.json {
        let all: Vec<serde_json::Value> = reports.iter().map(Report::json).collect();
        outln!("{}", serde_json::Value::Array(all));
    }
    Ok(())
}

fn run_name(args: &BenchArgs) -> String {
    let target = if args.url.is_some() { "http" } else { "in-process durable" };
    match args.pipeline {
        1 => format!("{target}, {} clients", args.clients),
        n => format!("{target}, {} clients x {n} pipelined", args.clients),
    }
}

fn args_clone(args: &BenchArgs) -> BenchArgs {
    BenchArgs {
        workload: args.workload.clone(),
        requests: args.requests,
        users: args.users,
        seed: args.seed,
        clients: args.clients,
        pipeline: args.pipeline,
        url: args.url.clone(),
        api_key: args.api_key.clone(),
        api_secret: args.api_secret.clone(),
        data_dir: args.data_dir.clone(),
        json: args.json,
        quiet: args.quiet,
    }
}

/// Requests in order, shared by the clients: each takes the next lines under a lock.
type Source = Box<dyn Iterator<Item = anyhow::Result<WorkloadRequest>> + Send>;

/// The shared source, and the lines held back for the next chunk.
struct Shared {
    requests: Source,
    /// The last line number taken from `requests`.
    line: u64,
    /// Lines taken but not sent yet, in line order: each references a line of the chunk that was
    /// being built when it was taken.
    held: VecDeque<(u64, WorkloadRequest)>,
}

/// Most lines held back at once; past it, chunks are cut short.
const HELD_MAX: usize = 4_096;

/// The next up-to-`n_max` lines, with their line numbers (empty: the workload is finished). A
/// chunk never holds a request together with a line it references (that answer cannot be known
/// when the chunk is sent): such a request waits for the next chunk. A reference to a line another
/// client still has in flight is sent unresolved, as a device that has not heard back yet would
/// (counted in the report); with one client and no pipeline, every reference is resolved.
fn next_chunk(source: &Mutex<Shared>, n_max: usize) -> anyhow::Result<Vec<(u64, WorkloadRequest)>> {
    let mut shared = source.lock().unwrap_or_else(|p| p.into_inner());
    let Shared { requests, line, held } = &mut *shared;
    let mut chunk: Vec<(u64, WorkloadRequest)> = Vec::with_capacity(n_max);
    let mut lines = BTreeSet::new();
    let mut deferred = VecDeque::new();
    let refers_to_chunk = |request: &WorkloadRequest, lines: &BTreeSet<u64>| {
        request.references().any(|r| lines.contains(&r.line))
    };
    while chunk.len() < n_max {
        let Some((held_line, request)) = held.pop_front() else { break };
        if refers_to_chunk(&request, &lines) {
            deferred.push_back((held_line, request));
        } else {
            lines.insert(held_line);
            chunk.push((held_line, request));
        }
    }
    while chunk.len() < n_max && held.len() + deferred.len() < HELD_MAX {
        let Some(request) = requests.next() else { break };
        *line += 1;
        let request = request?;
        if refers_to_chunk(&request, &lines) {
            deferred.push_back((*line, request));
        } else {
            lines.insert(*line);
            chunk.push((*line, request));
        }
    }
    // Deferred lines go before the rest of the held ones: they are older.
    deferred.extend(held.drain(..));
    *held = deferred;
    Ok(chunk)
}

fn source(args: &BenchArgs) -> anyhow::Result<(Source, Option<u64>)> {
    match &args.workload {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let shown = path.display().to_string();
            let reader = Reader::new(BufReader::new(file)).map(move |res| {
                res.map_err(|err| anyhow::anyhow!("{shown}:{}: {}", err.line, err.kind))
            });
            Ok((Box::new(reader), None))
        }
        None => {
            let spec = WorkloadSpec {
                seed: args.seed,
                requests: args.requests.unwrap_or(100_000),
                users: args.users,
                ..WorkloadSpec::default()
            };
            let requests = spec.requests;
            Ok((Box::new(Generator::new(&spec)?.map(Ok)), Some(requests)))
        }
    }
}

/// The MPID each line got, for `{"ref": line}` references; lines finish out of order.
struct Book {
    /// By line: the MPID answered, 0 for an answer without one, [`UNANSWERED`] for none yet.
    results: Mutex<Vec<i64>>,
    /// References resolved before the referenced line was answered (sent unresolved).
    n_unresolved: AtomicU64,
}

/// A line not answered yet (never a valid MPID answer: MPIDs are drawn as positive).
const UNANSWERED: i64 = i64::MIN;

impl Book {
    fn new() -> Book {
        Book { results: Mutex::new(Vec::new()), n_unresolved: AtomicU64::new(0) }
    }

    fn record(&self, line: u64, mpid: Option<Mpid>) {
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let idx = line as usize;
        if results.len() <= idx {
            results.resize(idx + 1, UNANSWERED);
        }
        results[idx] = mpid.map_or(0, Mpid::get);
    }

    fn resolve(&self, reference: Option<LineRef>) -> Option<Mpid> {
        let line = reference?.line as usize;
        let results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        match results.get(line).copied().unwrap_or(UNANSWERED) {
            UNANSWERED => {
                self.n_unresolved.fetch_add(1, Ordering::Relaxed);
                None
            }
            mpid => Mpid::new(mpid),
        }
    }
}

/// A backend executes one request and says which MPID it answered with.
enum Outcome {
    Answered(Option<Mpid>),
    Rejected,
    Skipped,
    Failed(String),
}

fn bench_config() -> ResolverConfig {
    let login = [IdentityType::CustomerId, IdentityType::Email];
    ResolverConfig::new(
        Strategy::ProfileConversion,
        idgraph_query::DEFAULT_PRIORITY.to_vec(),
        &login,
        &login,
        &[],
    )
    .expect("valid")
}

fn run_once(args: &BenchArgs, name: String) -> anyhow::Result<Report> {
    let (source, total) = source(args)?;
    let source = Mutex::new(Shared { requests: source, line: 0, held: VecDeque::new() });
    let book = Book::new();
    let temp = tempfile_dir(args)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.clone());
    let engine = match &args.url {
        Some(_) => None,
        None => {
            let workspace =
                Workspace { name: "bench".into(), scope: "bench".into(), resolver: bench_config() };
            Some(
                Engine::open(&data_dir, EngineConfig::single(workspace))
                    .map_err(|err| anyhow::anyhow!("{err}"))?
                    .0,
            )
        }
    };
    let progress =
        if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total.unwrap_or(0)) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let counters = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let failure = Mutex::new(None::<String>);
    let cpu_at_start = cpu_seconds();
    let started = Instant::now();
    let histograms: Vec<Histogram<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.clients.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut histogram =
                        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                    let http = args.url.as_ref().map(|url| {
                        (reqwest::blocking::Client::new(), url.trim_end_matches('/').to_owned())
                    });
                    loop {
                        let chunk = match next_chunk(&source, args.pipeline.max(1)) {
                            Ok(chunk) if chunk.is_empty() => break,
                            Ok(chunk) => chunk,
                            Err(err) => {
                                failure
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(err.to_string());
                                break;
                            }
                        };
                        let sent = Instant::now();
                        let outcomes = match (&engine, &http) {
                            (Some(engine), _) if chunk.len() == 1 => {
                                vec![in_process(engine, &book, &chunk[0].1)]
                            }
                            (Some(engine), _) => in_process_batch(engine, &book, &chunk),
                            (None, Some((client, url))) => chunk
                                .iter()
                                .map(|(_, request)| over_http(client, url, args, &book, request))
                                .collect(),
                            (None, None) => unreachable!("one backend is set"),
                        };
                        let micros = sent.elapsed().as_micros().max(1) as u64;
                        for ((line, _), outcome) in chunk.iter().zip(outcomes) {
                            histogram.saturating_record(micros);
                            let (counter, mpid) = match outcome {
                                Outcome::Answered(mpid) => (0, mpid),
                                Outcome::Rejected => (1, None),
                                Outcome::Skipped => (2, None),
                                Outcome::Failed(message) => {
                                    failure
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .get_or_insert(message);
                                    (3, None)
                                }
                            };
                            counters[counter].fetch_add(1, Ordering::Relaxed);
                            book.record(*line, mpid);
                            if line % 1024 == 0 {
                                progress.set_position(*line);
                            }
                        }
                    }
                    histogram
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client thread")).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds().zip(cpu_at_start).map(|(end, start)| end - start);
    progress.finish_and_clear();
    if let Some(message) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if counters[0].load(Ordering::Relaxed) == 0 {
            anyhow::bail!("{name}: {message}");
        }
        eprintln!("{name}: first error: {message}");
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for histogram in &histograms {
        latency.add(histogram).expect("same bounds");
    }
    let bytes_per_identity = engine.as_ref().map(|e| {
        e.with_projection(|p| p.heap_bytes_in_use() as f64 / p.n_identities().max(1) as f64)
    });
    if let Some(engine) = engine {
        engine.close().map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let log_bytes = args.url.is_none().then(|| folder_bytes(&data_dir));
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    let [answered, rejected, skipped, errors] = counters.map(|c| c.into_inner());
    Ok(Report {
        name,
        requests: answered + rejected + skipped + errors,
        errors,
        rejected,
        skipped,
        seconds,
        latency,
        unresolved: book.n_unresolved.load(Ordering::Relaxed),
        peak_rss_bytes: peak_rss(),
        cpu_seconds,
        log_bytes,
        bytes_per_identity,
    })
}

fn tempfile_dir(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "idgraph-bench-{}-{}-{}",
        std::process::id(),
        args.clients,
        args.seed
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Sends a chunk as one [`Engine::handle_batch`].
fn in_process_batch(
    engine: &Engine,
    book: &Book,
    chunk: &[(u64, WorkloadRequest)],
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(chunk.len());
    let mut batch = Vec::with_capacity(chunk.len());
    for (_, request) in chunk {
        match command_of(book, request) {
            Some(command) => {
                batch.push((meta_of(request), command));
                outcomes.push(None);
            }
            None => outcomes.push(Some(Outcome::Skipped)),
        }
    }
    let mut answers = engine.handle_batch(batch).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| outcome_of(answers.next().expect("one answer per request")))
        })
        .collect()
}

fn meta_of(request: &WorkloadRequest) -> RequestMeta {
    RequestMeta {
        workspace: "bench".into(),
        environment: request.environment,
        request_id: Some(request.request_id.clone()),
    }
}

/// The engine command of a request, or `None` when it needs an MPID the book does not have.
fn command_of(book: &Book, request: &WorkloadRequest) -> Option<Command> {
    Some(match request.op {
        Op::Modify => Command::Modify {
            mpid: book.resolve(request.mpid)?,
            identity_changes: request.identity_changes.clone(),
        },
        op => {
            let op = match op {
                Op::Identify => IdentityOp::Identify,
                Op::Login => IdentityOp::Login,
                Op::Logout => IdentityOp::Logout,
                _ => IdentityOp::Search,
            };
            Command::Identity(IdentityQuery {
                op,
                known_identities: request.identities(),
                previous_mpid: book.resolve(request.previous_mpid),
            })
        }
    })
}

fn outcome_of(answer: Result<Answer, EngineError>) -> Outcome {
    match answer {
        Ok(Answer::Resolved(answer)) => Outcome::Answered(Some(answer.mpid)),
        Ok(_) => Outcome::Answered(None),
        Err(EngineError::Request(_)) => Outcome::Rejected,
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

fn in_process(engine: &Engine, book: &Book, request: &WorkloadRequest) -> Outcome {
    let Some(command) = command_of(book, request) else { return Outcome::Skipped };
    outcome_of(engine.handle(&meta_of(request), command))
}

fn over_http(
    client: &reqwest::blocking::Client,
    url: &str,
    args: &BenchArgs,
    book: &Book,
    request: &WorkloadRequest,
) -> Outcome {
    let (path, body) = match request.op {
        Op::Modify => {
            let Some(mpid) = book.resolve(request.mpid) else { return Outcome::Skipped };
            let changes: Vec<serde_json::Value> = request
                .identity_changes
                .iter()
                .map(|c| serde_json::json!({"identity_type": c.identity_type.wire_name(), "old_value": c.old_value, "new_value": c.new_value}))
                .collect();
            (
                format!("/v1/{mpid}/modify"),
                serde_json::json!({"environment": request.environment.wire_name(), "request_id": request.request_id, "identity_changes": changes}),
            )
        }
        op => {
            let identities: serde_json::Map<String, serde_json::Value> = request
                .known_identities
                .iter()
                .map(|(t, v)| (t.wire_name().to_owned(), serde_json::Value::String(v.clone())))
                .collect();
            let previous = book.resolve(request.previous_mpid).map(|m| m.to_string());
            (
                format!("/v1/{}", op.name()),
                serde_json::json!({"environment": request.environment.wire_name(), "request_id": request.request_id, "previous_mpid": previous, "known_identities": identities}),
            )
        }
    };
    let response = client
        .post(format!("{url}{path}"))
        .basic_auth(&args.api_key, Some(&args.api_secret))
        .json(&body)
        .send();
    match response {
        Ok(response) if response.status().is_success() => {
            let mpid = response
                .json::<serde_json::Value>()
                .ok()
                .and_then(|v| v["mpid"].as_str().and_then(|m| m.parse().ok()));
            Outcome::Answered(mpid)
        }
        Ok(response) if response.status().as_u16() == 400 || response.status().as_u16() == 404 => {
            Outcome::Rejected
        }
        Ok(response) => Outcome::Failed(format!("HTTP {}", response.status())),
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

/// Peak resident set size of this process (Linux `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time used so far by this process, all threads, user and system (Linux `/proc/self/stat`,
/// in clock ticks of 1/100 s: `USER_HZ` is 100 on every Linux ABI).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(cpu_ticks_of_stat(&stat)? as f64 / 100.0)
}

/// User plus system clock ticks from the text of `/proc/<pid>/stat`.
fn cpu_ticks_of_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its
    // last closing parenthesis, where utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_whatever_the_command_name() {
        let stat = "4242 (idg (x) y) R 1 4242 4242 0 -1 4194304 2567 0 0 0 731 45 0 0 20 0 3 0";
        assert_eq!(cpu_ticks_of_stat(stat), Some(776));
        assert_eq!(cpu_ticks_of_stat("4242 (idgraph) R 1"), None, "too short");
        assert!(cpu_seconds().is_some(), "this process's own stat parses");
    }
}

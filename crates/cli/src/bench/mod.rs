//! `idgraph bench`: replay a workload (generated in memory, or read from a JSON Lines file) against
//! the in-process engine (durable, RocksDB in a folder) or an HTTP endpoint (`--url`), with N
//! concurrent clients; report throughput, latency percentiles (HDR histogram), errors, CPU time per
//! request, peak RSS, log size on disk and bytes per identity. Without arguments it runs a small
//! standard suite.
//!
//! The runner itself (chunking and pipelining, resolving references through the MPID book,
//! counting, latencies, the report's table and JSON) is `idgraph_workload::run` (a thread per
//! client, over a `Target`) and `idgraph_workload::run_multiplexed` (clients driven by event
//! loops, over a `Multiplexed` target). This module is the command around it: flags and the suite
//! (here), the two targets (`in_process.rs`, a `Target`; `http.rs`, a `Multiplexed` event loop,
//! with the bytes it writes and reads in `wire.rs`) and what is measured outside the runner
//! (`measure.rs`).

mod http;
mod in_process;
mod measure;
mod wire;

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use idgraph_workload::{
    Generator, Reader, Report, Resources, RunOptions, RunStats, WorkloadRequest, WorkloadSpec,
};
use indicatif::{ProgressBar, ProgressStyle};

use self::http::Http;
use self::in_process::InProcess;

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
    /// Each client sends up to this many consecutive requests as one pipelined batch and gets every
    /// answer when the batch is done: in-process, `Engine::handle_batch` (one lock, one wait for
    /// durability); over HTTP, HTTP/1.1 pipelining on the client's connection. A batch ends early
    /// at a request that needs an answer from the same batch.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Benchmark an HTTP endpoint (e.g. http://127.0.0.1:8080) instead of the in-process engine.
    #[arg(long)]
    url: Option<String>,
    /// With --url: threads driving the clients, each an event loop over its share of their
    /// connections (one is enough to keep a server on the same machine busy).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
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
                    outln!("{}", Report::HEADER);
                }
                outln!("{}", reports.last().expect("pushed").row());
            }
        }
    } else {
        anyhow::ensure!(args.pipeline >= 1, "--pipeline: at least 1");
        anyhow::ensure!(args.client_threads >= 1, "--client-threads: at least 1");
        reports.push(run_once(&args, run_name(&args))?);
        if !args.json {
            outln!("{}\n{}", Report::HEADER, reports[0].row());
        }
    }
    if !args.json {
        for notes in reports.iter().filter_map(Report::notes) {
            outln!("{notes}");
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
        client_threads: args.client_threads,
        api_key: args.api_key.clone(),
        api_secret: args.api_secret.clone(),
        data_dir: args.data_dir.clone(),
        json: args.json,
        quiet: args.quiet,
    }
}

/// Requests in line order: a workload file or a generator.
type Source = Box<dyn Iterator<Item = anyhow::Result<WorkloadRequest>> + Send>;

/// The workload's requests, and how many there are when known in advance.
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

/// One run: the workload against the target the flags name, measured.
fn run_once(args: &BenchArgs, name: String) -> anyhow::Result<Report> {
    let (requests, total) = source(args)?;
    let temp = tempfile_dir(args)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.clone());
    let options = RunOptions { clients: args.clients.max(1), pipeline: args.pipeline.max(1) };
    let mut resources = Resources::default();
    let stats = match &args.url {
        Some(url) => {
            let target = Http::new(url, &args.api_key, &args.api_secret)?;
            let server_cpu_at_start = target.server_cpu_seconds();
            let stats = measured_run(args, total, &mut resources, |progress| {
                idgraph_workload::run_multiplexed(
                    requests,
                    &target,
                    options,
                    args.client_threads,
                    progress,
                )
            });
            resources.server_cpu_seconds = target
                .server_cpu_seconds()
                .zip(server_cpu_at_start)
                .map(|(end, start)| end - start);
            stats
        }
        None => {
            let target = InProcess::open(&data_dir)?;
            let stats = measured_run(args, total, &mut resources, |progress| {
                idgraph_workload::run(requests, &target, options, progress)
            });
            resources.bytes_per_identity = Some(target.bytes_per_identity());
            target.close()?;
            resources.log_bytes = Some(measure::folder_bytes(&data_dir));
            stats
        }
    };
    if let Some(message) = &stats.first_failure {
        if stats.answered == 0 {
            anyhow::bail!("{name}: {message}");
        }
        eprintln!("{name}: first error: {message}");
    }
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    resources.peak_rss_bytes = measure::peak_rss();
    Ok(Report { name, stats, resources })
}

/// Runs the workload (`run`, given the progress callback) with a progress bar (unless `--quiet`),
/// and the process's CPU time over it.
fn measured_run(
    args: &BenchArgs,
    total: Option<u64>,
    resources: &mut Resources,
    run: impl FnOnce(&(dyn Fn(u64) + Sync)) -> RunStats,
) -> RunStats {
    let progress =
        if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total.unwrap_or(0)) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let cpu_at_start = measure::cpu_seconds();
    let stats = run(&|line| progress.set_position(line));
    resources.cpu_seconds =
        measure::cpu_seconds().zip(cpu_at_start).map(|(end, start)| end - start);
    progress.finish_and_clear();
    stats
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

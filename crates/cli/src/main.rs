//! `idgraph`: the command-line tool.
//!
//! Subcommands are thin: each parses arguments, opens what it needs and calls into the library
//! crates. Errors are `anyhow` chains whose top line names the file (and line) at fault.

/// `println!` that exits quietly when standard output is closed (`idgraph log show | head`),
/// instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(err) = writeln!(std::io::stdout(), $($arg)*) {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod audit_cmd;
mod bench;
mod demo;
mod gen_cmd;
mod log_cmd;
mod replay;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// idgraph: an event-sourced identity resolution engine.
#[derive(Debug, Parser)]
#[command(name = "idgraph", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Identity API. Without --config: one workspace on the `default` strategy with a
    /// development key (printed at start-up), storing in ./idgraph-data.
    Serve {
        /// The TOML configuration file (see docs/configuration.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; overrides the file's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data folder; overrides the file's `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a seeded, reproducible workload as JSON Lines (see docs/workloads.md).
    Gen(gen_cmd::GenArgs),
    /// Run a workload against the in-process engine or an HTTP endpoint and report throughput,
    /// latency percentiles, errors and memory. Without arguments: a small standard suite.
    Bench(bench::BenchArgs),
    /// How a profile became known (--mpid), or which profiles held an identity (--identity).
    History(audit_cmd::HistoryArgs),
    /// Explain how a stored identify / login / logout entry was decided, step by step.
    Explain(audit_cmd::ExplainArgs),
    /// A profile as it was at a sequence or a time.
    AsOf(audit_cmd::AsOfArgs),
    /// Re-decide every recorded request under another configuration and report the difference.
    WhatIf(audit_cmd::WhatIfArgs),
    /// Inspect and maintain the append-only log.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Run the signup flow of the IDSync guide through the engine, on the data folder, and print
    /// each request, answer and explanation.
    Demo {
        /// The data folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Rebuild the identity graph from the log and report its digests and throughput.
    Replay {
        /// The data folder.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Skip the comparison with the snapshot-based load.
        #[arg(long)]
        full: bool,
        /// Stop after this sequence, or after the last entry at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Threads: 2 (one decoding, one folding) or 1 (everything on one core).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
        threads: u8,
    },
}

/// mimalloc, not the system allocator: decoding log entries and answering requests allocate many
/// small strings, and mimalloc makes replay about 1.5x faster than glibc's malloc (benches/).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the data lives when no `--data-dir` is given.
const DATA_DIR_DEFAULT: &str = "idgraph-data";

fn data_dir_arg(data_dir: Option<PathBuf>) -> PathBuf {
    data_dir.unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Serve { config, listen, data_dir } => serve::run(config, listen, data_dir),
        Command::Gen(args) => gen_cmd::run(args),
        Command::Bench(args) => bench::run(args),
        Command::History(args) => audit_cmd::history(args),
        Command::Explain(args) => audit_cmd::explain(args),
        Command::AsOf(args) => audit_cmd::as_of(args),
        Command::WhatIf(args) => audit_cmd::what_if(args),
        Command::Log(command) => log_cmd::run(command),
        Command::Demo { data_dir } => demo::run(&data_dir_arg(data_dir)),
        Command::Replay { data_dir, full, until, threads } => {
            replay::run(&data_dir_arg(data_dir), full, until, threads)
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

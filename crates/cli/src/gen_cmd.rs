//! `idgraph gen`: write a seeded workload as JSON Lines.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use idgraph_workload::{Generator, WorkloadSpec, write_jsonl};

/// The knobs most runs change; the rest keep the defaults of docs/workloads.md.
#[derive(Debug, Args)]
pub(crate) struct GenArgs {
    /// Requests (lines) to generate.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) requests: u64,
    /// The user population.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) users: u64,
    /// Seed: the same seed and knobs give the same bytes.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Zipf exponent of activity across users.
    #[arg(long, default_value_t = 0.9)]
    pub(crate) zipf: f64,
    /// Share of requests carrying a blocked junk value.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) junk_rate: f64,
    /// Share of requests re-sent with the same request_id.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) repeat_rate: f64,
    /// Output file (default: standard output).
    #[arg(long, short)]
    pub(crate) out: Option<PathBuf>,
}

impl GenArgs {
    pub(crate) fn spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            seed: self.seed,
            requests: self.requests,
            users: self.users,
            zipf_exponent: self.zipf,
            junk_rate: self.junk_rate,
            repeat_request_id_rate: self.repeat_rate,
            ..WorkloadSpec::default()
        }
    }
}

pub(crate) fn run(args: GenArgs) -> anyhow::Result<()> {
    let mut generator = Generator::new(&args.spec())?;
    let started = Instant::now();
    let n = match &args.out {
        Some(path) => write_jsonl(
            &mut generator,
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )?,
        None => write_jsonl(&mut generator, std::io::stdout().lock())?,
    };
    eprintln!(
        "generated {n} requests in {:.2} s; {:?}",
        started.elapsed().as_secs_f64(),
        generator.stats()
    );
    Ok(())
}

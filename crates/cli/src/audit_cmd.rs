//! `idgraph history`, `idgraph explain`, `idgraph as-of`: audit the log (docs/audit.md).

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use idgraph_engine::audit;
use idgraph_log::Log;
use idgraph_model::{Identity, IdentityTypeSet, Mpid, Seq, Timestamp};
use idgraph_query::history::{IdentityHistoryBuilder, ProfileHistoryBuilder};
use idgraph_server::ServerConfig;

/// Where the log is and how its workspaces are configured.
#[derive(Debug, Args)]
pub(crate) struct Source {
    /// The data folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server configuration (workspaces' login IDs and strategies); default: the development
    /// configuration of `idgraph serve`.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Source {
    fn open(&self) -> anyhow::Result<(Log, ServerConfig)> {
        let config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::development(
                "127.0.0.1:0".parse().expect("valid"),
                PathBuf::from(crate::DATA_DIR_DEFAULT),
            ),
        };
        let data_dir = self.data_dir.clone().unwrap_or_else(|| config.data_dir.clone());
        let log = Log::open(data_dir.join("log"))
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
        Ok((log, config))
    }
}

fn login_ids(config: &ServerConfig) -> IdentityTypeSet {
    config.workspaces.iter().flat_map(|w| w.workspace.resolver.login_ids.iter()).collect()
}

/// `idgraph history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The profile whose history to show.
    #[arg(long, conflicts_with = "identity")]
    mpid: Option<String>,
    /// An identity, `type=value`: which profiles held it over time.
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let (log, config) = args.source.open()?;
    if let Some(mpid) = &args.mpid {
        let mpid: Mpid = mpid.parse().with_context(|| format!("--mpid {mpid}"))?;
        let mut builder = ProfileHistoryBuilder::new(mpid, login_ids(&config));
        log.scan(Seq::ZERO, |seq, entry| {
            builder.feed(seq, &entry);
            ControlFlow::Continue(())
        })?;
        let history = builder.finish();
        anyhow::ensure!(!history.steps.is_empty(), "no entry of the log mentions MPID {mpid}");
        outln!("{history}");
        return Ok(());
    }
    let identity = args.identity.as_deref().context("give --mpid or --identity")?;
    let (identity_type, value) = identity
        .split_once('=')
        .with_context(|| format!("--identity {identity}: expected type=value"))?;
    let identity = Identity::new(identity_type.parse()?, value);
    let mut builder = IdentityHistoryBuilder::new(identity.clone(), None);
    log.scan(Seq::ZERO, |seq, entry| {
        builder.feed(seq, &entry);
        ControlFlow::Continue(())
    })?;
    outln!("holders of {identity}");
    for holding in builder.finish() {
        let until = match &holding.until {
            Some((seq, time, reason)) => format!("until #{seq} {time} ({reason:?})"),
            None => "still held".to_owned(),
        };
        outln!("  {} from #{} {} {until}", holding.mpid, holding.from.0, holding.from.1);
    }
    Ok(())
}

/// `idgraph explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The sequence of the stored entry to explain.
    #[arg(long)]
    seq: u64,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let (log, config) = args.source.open()?;
    let entry =
        log.get(Seq(args.seq))?.with_context(|| format!("no entry at sequence {}", args.seq))?;
    let workspace = config
        .workspaces
        .iter()
        .find(|w| w.workspace.name == entry.request.workspace)
        .with_context(|| {
            format!(
                "entry {} belongs to workspace `{}`, which the configuration lacks",
                args.seq, entry.request.workspace
            )
        })?;
    match audit::explain_entry(&log, &workspace.workspace, Seq(args.seq))
        .map_err(|err| anyhow::anyhow!("{err}"))?
    {
        None => outln!(
            "entry {} is a {}: only identify, login and logout are explained",
            args.seq,
            entry.request.operation.name()
        ),
        Some(explained) => {
            outln!("entry #{} at {}", args.seq, entry.recorded_at);
            outln!("{}", explained.explanation);
            outln!(
                "{}",
                if explained.agrees {
                    "agrees with the recorded decision"
                } else {
                    "DIFFERS from the recorded decision (configuration changed since?)"
                }
            );
        }
    }
    Ok(())
}

/// `idgraph as-of`.
#[derive(Debug, Args)]
pub(crate) struct AsOfArgs {
    /// A sequence: the state after that entry.
    #[arg(long, conflicts_with = "time")]
    seq: Option<u64>,
    /// A time (RFC 3339, e.g. 2026-05-01T12:00:00Z): the state after the last entry at or before it.
    #[arg(long)]
    time: Option<String>,
    /// The profile to show.
    #[arg(long)]
    mpid: String,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn as_of(args: AsOfArgs) -> anyhow::Result<()> {
    let (log, _) = args.source.open()?;
    let mpid: Mpid = args.mpid.parse().with_context(|| format!("--mpid {}", args.mpid))?;
    let (seq, projection) = match (&args.seq, &args.time) {
        (Some(seq), _) => (
            Seq(*seq),
            audit::projection_as_of(&log, Seq(*seq)).map_err(|err| anyhow::anyhow!("{err}"))?,
        ),
        (None, Some(time)) => {
            let time = chrono::DateTime::parse_from_rfc3339(time)
                .with_context(|| format!("--time {time}: expected RFC 3339"))?;
            audit::projection_at_time(&log, Timestamp::from_datetime(time.to_utc()))
                .map_err(|err| anyhow::anyhow!("{err}"))?
        }
        (None, None) => anyhow::bail!("give --seq or --time"),
    };
    outln!("as of #{seq}");
    match projection.profile_id(mpid) {
        None => outln!("  {mpid} did not exist yet"),
        Some(profile) => {
            let view = projection.profile(profile);
            let identities: Vec<String> =
                projection.identities_of_sorted(profile).iter().map(Identity::to_string).collect();
            outln!(
                "  {mpid}: created {}, last seen {}, identities {{{}}}",
                view.created,
                view.last_seen,
                identities.join(", ")
            );
        }
    }
    Ok(())
}

/// `idgraph what-if`.
#[derive(Debug, Args)]
pub(crate) struct WhatIfArgs {
    /// The workspace whose recorded requests are re-decided (default: the configuration's first).
    #[arg(long)]
    workspace: Option<String>,
    /// The strategy to try.
    #[arg(long)]
    strategy: Option<String>,
    /// The identity priority to try (comma-separated).
    #[arg(long, value_delimiter = ',')]
    priority: Option<Vec<String>>,
    /// Login ID types to try (comma-separated).
    #[arg(long, value_delimiter = ',')]
    login: Option<Vec<String>>,
    /// Unique ID types to try (comma-separated).
    #[arg(long, value_delimiter = ',')]
    unique: Option<Vec<String>>,
    #[command(flatten)]
    source: Source,
}

fn types(names: &[String]) -> anyhow::Result<Vec<idgraph_model::IdentityType>> {
    names.iter().map(|name| name.parse().map_err(anyhow::Error::from)).collect()
}

pub(crate) fn what_if(args: WhatIfArgs) -> anyhow::Result<()> {
    let (log, config) = args.source.open()?;
    let base = match &args.workspace {
        Some(name) => config
            .workspaces
            .iter()
            .find(|w| &w.workspace.name == name)
            .with_context(|| format!("no workspace `{name}` in the configuration"))?,
        None => &config.workspaces[0],
    };
    let current = &base.workspace.resolver;
    let strategy = match &args.strategy {
        Some(name) => idgraph_query::Strategy::from_name(name)
            .with_context(|| format!("--strategy {name}: unknown strategy"))?,
        None => current.strategy,
    };
    let priority = match &args.priority {
        Some(names) => types(names)?,
        None => current.identity_priority.clone(),
    };
    let login = match &args.login {
        Some(names) => types(names)?,
        None => current.login_ids.iter().collect(),
    };
    let unique = match &args.unique {
        Some(names) => types(names)?,
        None => current.unique_ids.iter().collect(),
    };
    let immutable: Vec<_> =
        current.immutable_ids.iter().filter(|t| login.contains(t) && unique.contains(t)).collect();
    let mut alternative =
        idgraph_query::ResolverConfig::new(strategy, priority, &login, &unique, &immutable)?;
    alternative.tie_break = current.tie_break;
    alternative.guardrails = current.guardrails.clone();
    let started = std::time::Instant::now();
    let report = idgraph_engine::whatif::what_if(&log, &base.workspace.name, &alternative)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let seconds = started.elapsed().as_secs_f64();
    outln!(
        "re-decided {} requests of workspace `{}` under {} in {seconds:.3} s ({:.0} requests/s)",
        report.n_requests,
        base.workspace.name,
        strategy,
        report.n_requests as f64 / seconds.max(1e-9)
    );
    outln!("requests that would get another MPID: {}", report.n_different_mpid);
    outln!("requests that would be rejected: {}", report.n_rejected);
    outln!(
        "profiles: {} recorded, {} under the alternative",
        report.n_profiles_recorded,
        report.n_profiles_alternative
    );
    for example in &report.examples {
        let alternative =
            example.alternative.map(|m| m.to_string()).unwrap_or_else(|| "rejected".to_owned());
        outln!(
            "\n#{} {}: recorded {}, would be {alternative}",
            example.seq,
            example.operation,
            example.recorded
        );
        outln!("{}", example.explanation);
    }
    Ok(())
}

//! `idgraph history`, `idgraph explain`, `idgraph as-of`, `idgraph what-if`: audit the log
//! (docs/audit.md). Each parses its arguments, calls the engine's audit use case
//! (`idgraph_engine::audit::Audit`, the same the HTTP API calls) and renders the report as text.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use idgraph_engine::Workspace;
use idgraph_engine::audit::{AsOf, Audit};
use idgraph_log::Log;
use idgraph_model::{Environment, Identity, Mpid, Seq, Timestamp};
use idgraph_server::ServerConfig;

/// Where the log is, how its workspaces are configured, and which one asks.
#[derive(Debug, Args)]
pub(crate) struct Source {
    /// The data folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server configuration (workspaces' login IDs and strategies); default: the development
    /// configuration of `idgraph serve`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The workspace that asks: answers are confined to its identity scope, and use its
    /// configuration (default: the configuration's first).
    #[arg(long)]
    workspace: Option<String>,
}

/// An opened log and the configured workspaces, with the caller's index.
struct Opened {
    log: Log,
    workspaces: Vec<Workspace>,
    caller: usize,
}

impl Opened {
    fn audit(&self) -> Audit<'_> {
        Audit {
            log: &self.log,
            caller: &self.workspaces[self.caller],
            workspaces: &self.workspaces,
        }
    }
}

impl Source {
    fn open(&self) -> anyhow::Result<Opened> {
        let config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::development(
                "127.0.0.1:0".parse().expect("valid"),
                PathBuf::from(crate::DATA_DIR_DEFAULT),
            ),
        };
        let workspaces: Vec<Workspace> =
            config.workspaces.iter().map(|w| w.workspace.clone()).collect();
        let caller = match &self.workspace {
            Some(name) => workspaces
                .iter()
                .position(|w| &w.name == name)
                .with_context(|| format!("no workspace `{name}` in the configuration"))?,
            None => {
                anyhow::ensure!(!workspaces.is_empty(), "the configuration has no workspace");
                0
            }
        };
        let data_dir = self.data_dir.clone().unwrap_or_else(|| config.data_dir.clone());
        let log = Log::open(data_dir.join("log"))
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
        Ok(Opened { log, workspaces, caller })
    }
}

/// Parses an MPID argument (negative ones too: about half of all MPIDs are).
fn mpid_arg(flag: &str, text: &str) -> anyhow::Result<Mpid> {
    text.parse().with_context(|| format!("{flag} {text}: expected a non-zero 64-bit integer"))
}

/// Parses a `type=value` argument.
fn identity_arg(flag: &str, text: &str) -> anyhow::Result<Identity> {
    let (identity_type, value) =
        text.split_once('=').with_context(|| format!("{flag} {text}: expected type=value"))?;
    let identity_type = identity_type.parse().with_context(|| format!("{flag} {text}"))?;
    Ok(Identity::new(identity_type, value))
}

/// `idgraph history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The profile whose history to show.
    #[arg(long, conflicts_with = "identity", allow_hyphen_values = true)]
    mpid: Option<String>,
    /// An identity, `type=value`: which profiles held it over time.
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let opened = args.source.open()?;
    let audit = opened.audit();
    if let Some(mpid) = &args.mpid {
        let history = audit.profile_history(mpid_arg("--mpid", mpid)?)?;
        outln!("{history}");
        return Ok(());
    }
    let identity = args.identity.as_deref().context("give --mpid or --identity")?;
    let identity = identity_arg("--identity", identity)?;
    outln!("holders of {identity}");
    for holding in audit.identity_history(&identity)? {
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
    let opened = args.source.open()?;
    let explained = opened.audit().explain_entry(Seq(args.seq))?;
    outln!("entry #{} at {}", explained.seq, explained.entry.recorded_at);
    outln!("{}", explained.explanation);
    outln!(
        "{}",
        if explained.agrees {
            "agrees with the recorded decision"
        } else {
            "DIFFERS from the recorded decision (configuration changed since?)"
        }
    );
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
    #[arg(long, required_unless_present = "identity", allow_hyphen_values = true)]
    mpid: Option<String>,
    /// Instead of a profile: search for these identities (`type=value`, repeatable) as of then.
    #[arg(long, conflicts_with = "mpid")]
    identity: Vec<String>,
    /// The environment the search runs in.
    #[arg(long, default_value = "production")]
    environment: String,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn as_of(args: AsOfArgs) -> anyhow::Result<()> {
    let opened = args.source.open()?;
    let audit = opened.audit();
    let as_of = match (&args.seq, &args.time) {
        (Some(seq), _) => AsOf::Seq(Seq(*seq)),
        (None, Some(time)) => {
            let time = chrono::DateTime::parse_from_rfc3339(time)
                .with_context(|| format!("--time {time}: expected RFC 3339"))?;
            AsOf::Time(Timestamp::from_datetime(time.to_utc()))
        }
        (None, None) => anyhow::bail!("give --seq or --time"),
    };
    let started = std::time::Instant::now();
    let Some(mpid) = &args.mpid else {
        let identities = args
            .identity
            .iter()
            .map(|text| identity_arg("--identity", text))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let environment = Environment::from_wire_name(&args.environment).with_context(|| {
            format!("--environment {}: expected production or development", args.environment)
        })?;
        let search = audit.search_as_of(environment, identities, as_of)?;
        outln!("search in {environment} as of #{}", search.as_of);
        outln!("{}", search.explanation);
        return Ok(());
    };
    let mpid = mpid_arg("--mpid", mpid)?;
    let report = audit.profile_as_of(mpid, as_of)?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    outln!("as of #{} ({} events folded in {ms:.1} ms)", report.as_of, report.n_events_folded);
    match report.profile {
        None => outln!("  {mpid} did not exist yet"),
        Some(profile) => {
            let identities: Vec<String> =
                profile.identities.iter().map(Identity::to_string).collect();
            outln!(
                "  {mpid}: created {}, last seen {}, identities {{{}}}",
                profile.created,
                profile.last_seen,
                identities.join(", ")
            );
            for alias in &profile.aliased_to {
                outln!("  aliased to {} at #{}", alias.destination, alias.seq);
            }
        }
    }
    Ok(())
}

/// `idgraph what-if`.
#[derive(Debug, Args)]
pub(crate) struct WhatIfArgs {
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
    let opened = args.source.open()?;
    let audit = opened.audit();
    let changes = idgraph_engine::whatif::ConfigChanges {
        strategy: match &args.strategy {
            Some(name) => Some(
                idgraph_query::Strategy::from_name(name)
                    .with_context(|| format!("--strategy {name}: unknown strategy"))?,
            ),
            None => None,
        },
        priority: args.priority.as_deref().map(types).transpose()?,
        login: args.login.as_deref().map(types).transpose()?,
        unique: args.unique.as_deref().map(types).transpose()?,
    };
    let strategy = changes.strategy.unwrap_or(audit.caller.resolver.strategy);
    let started = std::time::Instant::now();
    let report = audit.what_if(&changes)?;
    let seconds = started.elapsed().as_secs_f64();
    outln!(
        "re-decided {} requests of workspace `{}` under {} in {seconds:.3} s ({:.0} requests/s)",
        report.n_requests,
        audit.caller.name,
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

//! `idgraph history`, `idgraph explain`, `idgraph as-of`: audit the log (docs/audit.md).

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

/// The workspace called `name`, or the configuration's first.
fn workspace_named<'c>(
    config: &'c ServerConfig,
    name: Option<&str>,
) -> anyhow::Result<&'c idgraph_server::WorkspaceConfig> {
    match name {
        Some(name) => config
            .workspaces
            .iter()
            .find(|w| w.workspace.name == name)
            .with_context(|| format!("no workspace `{name}` in the configuration")),
        None => config.workspaces.first().context("the configuration has no workspace"),
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
        for (seq, entry) in audit::entries_of_profile(&log, mpid, log.last_seq())? {
            builder.feed(seq, &entry);
        }
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
    // The identity index is per identity scope: follow the identity in every configured scope.
    let mut scopes: Vec<&str> =
        config.workspaces.iter().map(|w| w.workspace.scope.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let mut entries = Vec::new();
    for scope in scopes {
        entries.extend(audit::entries_of_identity(&log, scope, &identity, log.last_seq())?);
    }
    entries.sort_by_key(|(seq, _)| *seq);
    let mut builder = IdentityHistoryBuilder::new(identity.clone(), None);
    for (seq, entry) in &entries {
        builder.feed(*seq, entry);
    }
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
    #[arg(long, required_unless_present = "identity")]
    mpid: Option<String>,
    /// Instead of a profile: search for these identities (`type=value`, repeatable) as of then.
    #[arg(long, conflicts_with = "mpid")]
    identity: Vec<String>,
    /// The workspace whose scope and configuration the search uses (default: the first).
    #[arg(long)]
    workspace: Option<String>,
    #[command(flatten)]
    source: Source,
}

pub(crate) fn as_of(args: AsOfArgs) -> anyhow::Result<()> {
    let (log, config) = args.source.open()?;
    let seq = match (&args.seq, &args.time) {
        (Some(seq), _) => Seq(*seq),
        (None, Some(time)) => {
            let time = chrono::DateTime::parse_from_rfc3339(time)
                .with_context(|| format!("--time {time}: expected RFC 3339"))?;
            log.seq_at(Timestamp::from_datetime(time.to_utc()))?
        }
        (None, None) => anyhow::bail!("give --seq or --time"),
    };
    let started = std::time::Instant::now();
    let Some(mpid) = &args.mpid else {
        return search_as_of(&log, &config, &args, seq);
    };
    let mpid: Mpid = mpid.parse().with_context(|| format!("--mpid {mpid}"))?;
    let projection = audit::profiles_as_of(&log, &[mpid], seq)?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    outln!("as of #{seq} ({} events folded in {ms:.1} ms)", projection.n_events_applied());
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
            for alias in projection.aliases_from(mpid) {
                outln!("  aliased to {} at #{}", alias.destination, alias.seq);
            }
        }
    }
    Ok(())
}

fn search_as_of(log: &Log, config: &ServerConfig, args: &AsOfArgs, seq: Seq) -> anyhow::Result<()> {
    let workspace = workspace_named(config, args.workspace.as_deref())?;
    let mut identities = Vec::new();
    for text in &args.identity {
        let (identity_type, value) = text
            .split_once('=')
            .with_context(|| format!("--identity {text}: expected type=value"))?;
        let identity_type = identity_type.parse().with_context(|| format!("--identity {text}"))?;
        identities.push(Identity::new(identity_type, value));
    }
    let scope = &workspace.workspace.scope;
    let projection = audit::lookup_as_of(log, scope, &identities, None, seq)?;
    let resolver =
        idgraph_query::Resolver { projection: &projection, config: &workspace.workspace.resolver };
    let world = idgraph_query::World {
        scope: scope.clone(),
        environment: idgraph_model::Environment::Production,
    };
    let query = idgraph_query::IdentityQuery {
        op: idgraph_query::IdentityOp::Search,
        known_identities: identities,
        previous_mpid: None,
    };
    let (res, explanation) = resolver.explain_identity(
        &world,
        &query,
        projection.last_time(),
        &mut idgraph_engine::RandomMpids,
    );
    res.map_err(|err| anyhow::anyhow!("{err}"))?;
    outln!("search in production as of #{seq}");
    outln!("{explanation}");
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
    let base = workspace_named(&config, args.workspace.as_deref())?;
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
    let alternative = changes.apply_to(&base.workspace.resolver)?;
    let strategy = alternative.strategy;
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

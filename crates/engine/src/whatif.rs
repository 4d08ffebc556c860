//! What-if: re-decide every recorded request under another configuration, into a scratch
//! projection, and report what would differ. Nothing is written; the log is only read.

use std::ops::ControlFlow;

use idgraph_log::Log;
use idgraph_model::IdentityType;
use idgraph_model::{AdminCorrection, Entry, Event, Mpid, Operation, Outcome, Seq};
use idgraph_projection::Projection;
use idgraph_query::{
    AliasQuery, Answer, ConfigError, Decision, IdentityOp, IdentityQuery, MpidSource, RequestError,
    Resolver, ResolverConfig, Strategy, World,
};

use crate::EngineError;

/// Draws the MPIDs the recorded entry created first, so that identical decisions give identical
/// MPIDs; then fresh ones (a decision that differs gets an MPID the log never had).
struct ReplayedMpids {
    recorded: Vec<i64>,
    fresh: i64,
}

impl MpidSource for ReplayedMpids {
    fn next_candidate(&mut self) -> i64 {
        if self.recorded.is_empty() {
            self.fresh = self.fresh.wrapping_add(0x1E37_79B9_7F4A_7C15);
            self.fresh
        } else {
            self.recorded.remove(0)
        }
    }
}

/// One request that would be answered with another profile.
#[derive(Debug, Clone)]
pub struct WhatIfExample {
    /// The recorded entry.
    pub seq: Seq,
    /// The operation.
    pub operation: &'static str,
    /// The MPID recorded.
    pub recorded: Mpid,
    /// The MPID under the other configuration (`None`: rejected).
    pub alternative: Option<Mpid>,
    /// How the other configuration decides it.
    pub explanation: String,
}

/// What would differ.
#[derive(Debug, Clone, Default)]
pub struct WhatIfReport {
    /// Entries re-decided.
    pub n_requests: u64,
    /// identify / login / logout entries whose answer would be another MPID.
    pub n_different_mpid: u64,
    /// Entries the other configuration would reject.
    pub n_rejected: u64,
    /// Profiles in the log's world(s) as recorded, and under the other configuration.
    pub n_profiles_recorded: u64,
    /// Profiles under the other configuration.
    pub n_profiles_alternative: u64,
    /// The first differing requests, with explanations.
    pub examples: Vec<WhatIfExample>,
}

/// Changes to try on a workspace's configuration; `None` keeps the current setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Another strategy.
    pub strategy: Option<Strategy>,
    /// Another identity priority.
    pub priority: Option<Vec<IdentityType>>,
    /// Other login ID types.
    pub login: Option<Vec<IdentityType>>,
    /// Other unique ID types.
    pub unique: Option<Vec<IdentityType>>,
}

impl ConfigChanges {
    /// `current` with these changes, checked like any configuration. Immutable IDs stay those of
    /// `current` that are still login and unique IDs; the tie-break and guardrails are kept.
    pub fn apply_to(&self, current: &ResolverConfig) -> Result<ResolverConfig, ConfigError> {
        let strategy = self.strategy.unwrap_or(current.strategy);
        let priority = self.priority.clone().unwrap_or_else(|| current.identity_priority.clone());
        let login = self.login.clone().unwrap_or_else(|| current.login_ids.iter().collect());
        let unique = self.unique.clone().unwrap_or_else(|| current.unique_ids.iter().collect());
        let immutable: Vec<IdentityType> = current
            .immutable_ids
            .iter()
            .filter(|t| login.contains(t) && unique.contains(t))
            .collect();
        let mut alternative = ResolverConfig::new(strategy, priority, &login, &unique, &immutable)?;
        alternative.tie_break = current.tie_break;
        alternative.guardrails = current.guardrails.clone();
        Ok(alternative)
    }
}

/// Examples kept in a report.
pub const WHAT_IF_EXAMPLES_MAX: usize = 10;

/// Re-decides every entry of `workspace` under `config`.
pub fn what_if(
    log: &Log,
    workspace: &str,
    config: &ResolverConfig,
) -> Result<WhatIfReport, EngineError> {
    let mut report = WhatIfReport::default();
    let mut scratch = Projection::new();
    let mut fresh = 1i64;
    let mut failure = None;
    log.scan(Seq::ZERO, |seq, entry| {
        if entry.request.workspace != workspace {
            return ControlFlow::Continue(());
        }
        report.n_requests += 1;
        report.n_profiles_recorded +=
            entry.events.iter().filter(|e| matches!(e, Event::ProfileCreated { .. })).count()
                as u64;
        let recorded_created = entry
            .events
            .iter()
            .filter_map(|e| {
                if let Event::ProfileCreated { mpid } = e { Some(mpid.get()) } else { None }
            })
            .collect();
        let mut mpids = ReplayedMpids { recorded: recorded_created, fresh };
        let (res, explanation) = redecide(&scratch, config, &entry, &mut mpids);
        fresh = mpids.fresh;
        let recorded = match &entry.outcome {
            Outcome::Resolved { mpid, .. } => Some(*mpid),
            _ => None,
        };
        match res {
            Err(_) => {
                report.n_rejected += 1;
                if let Some(recorded) = recorded {
                    report.n_different_mpid += 1;
                    keep(&mut report, seq, &entry, recorded, None, explanation);
                }
            }
            Ok(decision) => {
                if let (Some(recorded), Answer::Resolved(answer)) = (recorded, &decision.answer)
                    && answer.mpid != recorded
                {
                    report.n_different_mpid += 1;
                    keep(&mut report, seq, &entry, recorded, Some(answer.mpid), explanation);
                }
                report.n_profiles_alternative += decision
                    .events
                    .iter()
                    .filter(|e| matches!(e, Event::ProfileCreated { .. }))
                    .count() as u64;
                let Some(outcome) = decision.outcome else { return ControlFlow::Continue(()) };
                let applied = Entry {
                    recorded_at: entry.recorded_at,
                    request: entry.request.clone(),
                    events: decision.events,
                    outcome,
                };
                if let Err(err) = scratch.apply(scratch.last_seq().next(), &applied) {
                    failure = Some(err);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(report),
    }
}

fn keep(
    report: &mut WhatIfReport,
    seq: Seq,
    entry: &Entry,
    recorded: Mpid,
    alternative: Option<Mpid>,
    explanation: Option<String>,
) {
    if report.examples.len() < WHAT_IF_EXAMPLES_MAX {
        let operation = entry.request.operation.name();
        report.examples.push(WhatIfExample {
            seq,
            operation,
            recorded,
            alternative,
            explanation: explanation.unwrap_or_default(),
        });
    }
}

/// Decides a recorded request again, against `projection`, under `config`.
fn redecide(
    projection: &Projection,
    config: &ResolverConfig,
    entry: &Entry,
    mpids: &mut dyn MpidSource,
) -> (Result<Decision, RequestError>, Option<String>) {
    let resolver = Resolver { projection, config };
    let world =
        World { scope: entry.request.scope.clone(), environment: entry.request.environment };
    let now = entry.recorded_at;
    let identity = |op, request: &idgraph_model::IdentityRequest| IdentityQuery {
        op,
        known_identities: request.known_identities.clone(),
        previous_mpid: request.previous_mpid,
    };
    let query = match &entry.request.operation {
        Operation::Identify(request) => identity(IdentityOp::Identify, request),
        Operation::Login(request) => identity(IdentityOp::Login, request),
        Operation::Logout(request) => identity(IdentityOp::Logout, request),
        Operation::Modify { mpid, identity_changes } => {
            return (resolver.modify(&world, *mpid, identity_changes), None);
        }
        Operation::Alias { source, destination, start, end } => {
            let query = AliasQuery {
                source: *source,
                destination: *destination,
                start: Some(*start),
                end: Some(*end),
            };
            return (resolver.alias(&world, &query, now), None);
        }
        Operation::AdminDetach(AdminCorrection { mpid, identities, .. }) => {
            return (resolver.admin_detach(&world, *mpid, identities), None);
        }
        Operation::AdminSplit(AdminCorrection { mpid, identities, .. }) => {
            return (resolver.admin_split(&world, *mpid, identities, mpids), None);
        }
    };
    let (res, explanation) = resolver.explain_identity(&world, &query, now, mpids);
    (res, Some(explanation.to_string()))
}

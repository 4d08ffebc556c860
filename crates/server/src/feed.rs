//! The change feed, `GET /v1/events`: the log's durable entries after a sequence, for followers.
//!
//! Its JSON is the server's own ([`FeedPage`] and the types below it), converted by hand from the
//! persisted schema (`idgraph_model::Entry`), so that the log's schema can evolve without changing
//! the wire, and the wire without touching the log. The JSON is the one the feed has always sent
//! (serde's external enum tagging of the persisted types, object keys in alphabetical order, MPIDs
//! and times as numbers): the fields of each type below are declared in alphabetical order for
//! that reason, and `feed_tests.rs` checks the text against the persisted types' own serialisation.

use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use idgraph_model as model;
use idgraph_model::Seq;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::admit::{Admin, Caller, blocking};
use crate::wire::ApiError;

/// Most entries per change-feed page.
const FEED_PAGE_ENTRIES_MAX: usize = 1_000;
/// Longest long-poll wait: longer than most proxies' idle timeouts would be pointless.
const FEED_WAIT_MS_MAX: u64 = 30_000;
/// How often a long poll looks at the log's durable sequence.
const FEED_POLL_INTERVAL_MS: u64 = 50;

/// The query string of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    wait_ms: Option<u64>,
}

/// `GET /v1/events?after=SEQ&limit=N&wait_ms=MS`: log entries after SEQ, in order, only durable
/// ones (a follower never sees an entry a crash could take back) and only those of the caller's
/// identity scope; with `wait_ms`, waits (long poll) until there is at least one of them. Resume
/// with `after` = `next_after`, which moves past the other scopes' entries too.
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller<Admin>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100).clamp(1, FEED_PAGE_ENTRIES_MAX);
    let deadline =
        Instant::now() + Duration::from_millis(query.wait_ms.unwrap_or(0).min(FEED_WAIT_MS_MAX));
    let scope = caller.workspace().workspace.scope.clone();
    let mut after = query.after;
    // Pages of other scopes' entries are skipped (`after` moves past them) until one holds an entry
    // of the caller's scope or the wait is over; between pages, the wait for new durable entries
    // sleeps, so a long poll never spins.
    let (entries, durable) = loop {
        let durable = durable_after(&state, after, deadline).await;
        if durable.0 <= after {
            break (Vec::new(), durable);
        }
        let from = Seq(after.saturating_add(1));
        let entries =
            blocking(&state, move |engine| Ok(engine.log().read_range(from, limit)?)).await?;
        let next_after =
            entries.iter().map(|(seq, _)| *seq).take_while(|seq| *seq <= durable).last();
        let mine =
            entries.iter().any(|(seq, entry)| *seq <= durable && entry.request.scope == scope);
        match next_after {
            Some(next_after) if !mine && Instant::now() < deadline => after = next_after.0,
            _ => break (entries, durable),
        }
    };
    let mut page = FeedPage { entries: Vec::new(), next_after: after };
    for (seq, entry) in entries.iter().take_while(|(seq, _)| *seq <= durable) {
        page.next_after = seq.0;
        // A workspace sees the entries of its own scope only.
        if entry.request.scope == scope {
            page.entries.push(FeedEntry { entry: FeedRecord::from(entry), seq: seq.0 });
        }
    }
    Ok((StatusCode::OK, axum::Json(page)).into_response())
}

/// The log's durable sequence once it is past `after`, or at `deadline`.
async fn durable_after(state: &AppState, after: u64, deadline: Instant) -> Seq {
    loop {
        let durable = state.engine.log().durable_seq();
        if durable.0 > after || Instant::now() >= deadline {
            return durable;
        }
        tokio::time::sleep(Duration::from_millis(FEED_POLL_INTERVAL_MS)).await;
    }
}

/// One page of the feed.
#[derive(Debug, Serialize)]
pub(crate) struct FeedPage<'a> {
    /// The entries of the caller's scope, in log order.
    pub(crate) entries: Vec<FeedEntry<'a>>,
    /// The last sequence looked at (the `after` of the next page): past entries of other scopes
    /// too, so a follower never reads them again.
    pub(crate) next_after: u64,
}

/// An entry and its sequence.
#[derive(Debug, Serialize)]
pub(crate) struct FeedEntry<'a> {
    pub(crate) entry: FeedRecord<'a>,
    pub(crate) seq: u64,
}

/// One handled request: `model::Entry` on the wire.
#[derive(Debug, Serialize)]
pub(crate) struct FeedRecord<'a> {
    events: Vec<FeedEvent<'a>>,
    outcome: FeedOutcome<'a>,
    /// Microseconds since the Unix epoch.
    recorded_at: i64,
    request: FeedRequest<'a>,
}

/// `model::Request`.
#[derive(Debug, Serialize)]
struct FeedRequest<'a> {
    /// `production` or `development`.
    environment: &'static str,
    operation: FeedOperation<'a>,
    request_id: Option<&'a str>,
    scope: &'a str,
    workspace: &'a str,
}

/// `model::Operation`.
#[derive(Debug, Serialize)]
enum FeedOperation<'a> {
    Identify(FeedIdentityRequest<'a>),
    Login(FeedIdentityRequest<'a>),
    Logout(FeedIdentityRequest<'a>),
    Modify { identity_changes: Vec<FeedIdentityChange<'a>>, mpid: i64 },
    Alias { destination: i64, end: i64, source: i64, start: i64 },
    AdminDetach(FeedCorrection<'a>),
    AdminSplit(FeedCorrection<'a>),
}

/// `model::IdentityRequest`.
#[derive(Debug, Serialize)]
struct FeedIdentityRequest<'a> {
    known_identities: Vec<FeedIdentity<'a>>,
    previous_mpid: Option<i64>,
}

/// `model::IdentityChange`.
#[derive(Debug, Serialize)]
struct FeedIdentityChange<'a> {
    identity_type: &'static str,
    new_value: Option<&'a str>,
    old_value: Option<&'a str>,
}

/// `model::AdminCorrection`.
#[derive(Debug, Serialize)]
struct FeedCorrection<'a> {
    actor: &'a str,
    identities: Vec<FeedIdentity<'a>>,
    mpid: i64,
    reason: &'a str,
}

/// `model::Identity`.
#[derive(Debug, Serialize)]
struct FeedIdentity<'a> {
    /// The IDSync wire name of the type.
    identity_type: &'static str,
    value: &'a str,
}

/// `model::Event`.
#[derive(Debug, Serialize)]
enum FeedEvent<'a> {
    ProfileCreated { mpid: i64 },
    IdentityAttached { identity: FeedIdentity<'a>, mpid: i64 },
    IdentityDetached { identity: FeedIdentity<'a>, mpid: i64, reason: FeedDetachReason },
    AliasRecorded { destination: i64, end: i64, source: i64, start: i64 },
}

/// `model::DetachReason`.
#[derive(Debug, Serialize)]
enum FeedDetachReason {
    Modified,
    MovedTo { mpid: i64 },
    AdminDetached,
    SplitTo { mpid: i64 },
}

/// `model::Outcome`.
#[derive(Debug, Serialize)]
enum FeedOutcome<'a> {
    Resolved { is_logged_in: bool, matched: Vec<&'static str>, mpid: i64 },
    Modified { mpid: i64 },
    AliasAccepted,
    AliasIgnored { reason: &'a str },
    AdminApplied { new_mpid: Option<i64> },
}

impl<'a> From<&'a model::Entry> for FeedRecord<'a> {
    fn from(entry: &'a model::Entry) -> FeedRecord<'a> {
        FeedRecord {
            events: entry.events.iter().map(FeedEvent::from).collect(),
            outcome: FeedOutcome::from(&entry.outcome),
            recorded_at: entry.recorded_at.unix_micros(),
            request: FeedRequest::from(&entry.request),
        }
    }
}

impl<'a> From<&'a model::Request> for FeedRequest<'a> {
    fn from(request: &'a model::Request) -> FeedRequest<'a> {
        FeedRequest {
            environment: request.environment.wire_name(),
            operation: FeedOperation::from(&request.operation),
            request_id: request.request_id.as_deref(),
            scope: &request.scope,
            workspace: &request.workspace,
        }
    }
}

impl<'a> From<&'a model::Operation> for FeedOperation<'a> {
    fn from(operation: &'a model::Operation) -> FeedOperation<'a> {
        use model::Operation;
        match operation {
            Operation::Identify(request) => FeedOperation::Identify(request.into()),
            Operation::Login(request) => FeedOperation::Login(request.into()),
            Operation::Logout(request) => FeedOperation::Logout(request.into()),
            Operation::Modify { mpid, identity_changes } => FeedOperation::Modify {
                identity_changes: identity_changes.iter().map(FeedIdentityChange::from).collect(),
                mpid: mpid.get(),
            },
            Operation::Alias { source, destination, start, end } => FeedOperation::Alias {
                destination: destination.get(),
                end: end.unix_micros(),
                source: source.get(),
                start: start.unix_micros(),
            },
            Operation::AdminDetach(correction) => FeedOperation::AdminDetach(correction.into()),
            Operation::AdminSplit(correction) => FeedOperation::AdminSplit(correction.into()),
        }
    }
}

impl<'a> From<&'a model::IdentityRequest> for FeedIdentityRequest<'a> {
    fn from(request: &'a model::IdentityRequest) -> FeedIdentityRequest<'a> {
        FeedIdentityRequest {
            known_identities: request.known_identities.iter().map(FeedIdentity::from).collect(),
            previous_mpid: request.previous_mpid.map(model::Mpid::get),
        }
    }
}

impl<'a> From<&'a model::IdentityChange> for FeedIdentityChange<'a> {
    fn from(change: &'a model::IdentityChange) -> FeedIdentityChange<'a> {
        FeedIdentityChange {
            identity_type: change.identity_type.wire_name(),
            new_value: change.new_value.as_deref(),
            old_value: change.old_value.as_deref(),
        }
    }
}

impl<'a> From<&'a model::AdminCorrection> for FeedCorrection<'a> {
    fn from(correction: &'a model::AdminCorrection) -> FeedCorrection<'a> {
        FeedCorrection {
            actor: &correction.actor,
            identities: correction.identities.iter().map(FeedIdentity::from).collect(),
            mpid: correction.mpid.get(),
            reason: &correction.reason,
        }
    }
}

impl<'a> From<&'a model::Identity> for FeedIdentity<'a> {
    fn from(identity: &'a model::Identity) -> FeedIdentity<'a> {
        FeedIdentity { identity_type: identity.identity_type.wire_name(), value: &identity.value }
    }
}

impl<'a> From<&'a model::Event> for FeedEvent<'a> {
    fn from(event: &'a model::Event) -> FeedEvent<'a> {
        use model::Event;
        match event {
            Event::ProfileCreated { mpid } => FeedEvent::ProfileCreated { mpid: mpid.get() },
            Event::IdentityAttached { mpid, identity } => {
                FeedEvent::IdentityAttached { identity: identity.into(), mpid: mpid.get() }
            }
            Event::IdentityDetached { mpid, identity, reason } => FeedEvent::IdentityDetached {
                identity: identity.into(),
                mpid: mpid.get(),
                reason: FeedDetachReason::from(reason),
            },
            Event::AliasRecorded { source, destination, start, end } => FeedEvent::AliasRecorded {
                destination: destination.get(),
                end: end.unix_micros(),
                source: source.get(),
                start: start.unix_micros(),
            },
        }
    }
}

impl From<&model::DetachReason> for FeedDetachReason {
    fn from(reason: &model::DetachReason) -> FeedDetachReason {
        use model::DetachReason;
        match reason {
            DetachReason::Modified => FeedDetachReason::Modified,
            DetachReason::MovedTo { mpid } => FeedDetachReason::MovedTo { mpid: mpid.get() },
            DetachReason::AdminDetached => FeedDetachReason::AdminDetached,
            DetachReason::SplitTo { mpid } => FeedDetachReason::SplitTo { mpid: mpid.get() },
        }
    }
}

impl<'a> From<&'a model::Outcome> for FeedOutcome<'a> {
    fn from(outcome: &'a model::Outcome) -> FeedOutcome<'a> {
        use model::Outcome;
        match outcome {
            Outcome::Resolved { mpid, is_logged_in, matched } => FeedOutcome::Resolved {
                is_logged_in: *is_logged_in,
                matched: matched.iter().map(|t| t.wire_name()).collect(),
                mpid: mpid.get(),
            },
            Outcome::Modified { mpid } => FeedOutcome::Modified { mpid: mpid.get() },
            Outcome::AliasAccepted => FeedOutcome::AliasAccepted,
            Outcome::AliasIgnored { reason } => FeedOutcome::AliasIgnored { reason },
            Outcome::AdminApplied { new_mpid } => {
                FeedOutcome::AdminApplied { new_mpid: new_mpid.map(model::Mpid::get) }
            }
        }
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;

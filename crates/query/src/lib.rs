//! # idgraph-query
//!
//! The resolver: decides IDSync requests (identify, login, logout, search, modify, alias) against a
//! [`Projection`] and a per-workspace [`ResolverConfig`], and explains its decisions.
//!
//! ## Key design decision: decide, don't do
//! The resolver never mutates anything. [`Resolver::identity`], [`Resolver::modify`] and
//! [`Resolver::alias`] return a [`Decision`]: the [`Event`]s to record, the [`Outcome`] to store
//! with them, and the [`Answer`] for the client. The caller (the engine) appends them to the log and
//! folds them into the projection. So replaying the log reproduces every decision's effect, and a
//! what-if run can re-decide recorded requests under another configuration into a scratch
//! projection.
//!
//! ## API themes
//! - Sans-IO and deterministic: randomness (new MPIDs) and time come from the caller
//!   ([`MpidSource`], `now`).
//! - Errors are [`RequestError`]s with an IDSync error code; the server maps them to HTTP.
//! - POD results with public fields; projection internals (ids) stay hidden behind MPIDs.
//! - Ambiguities of the IDSync spec are decided in `docs/resolution.md`, each with its reason.

mod admin;
mod alias;
mod config;
pub mod explain;
pub mod history;
mod modify;
mod resolve;

use idgraph_model::{
    Environment, Event, Identity, IdentityType, IdentityTypeSet, Mpid, Outcome, Timestamp,
};
use idgraph_projection::Projection;

pub use crate::alias::{ALIAS_WINDOW_MAX_MICROS, AliasQuery};
pub use crate::config::{
    ConfigError, DEFAULT_PRIORITY, Guardrails, ResolverConfig, Strategy, TieBreak, ZERO_AD_ID,
};
pub use crate::explain::Explanation;
pub use crate::modify::ChangeResult;
pub use crate::resolve::{IdentityOp, IdentityQuery};

/// The world a request addresses: an identity scope in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct World {
    /// The identity scope (by default, the workspace name).
    pub scope: String,
    /// Production or development.
    pub environment: Environment,
}

/// IDSync error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `LOOKUP_ERROR`: the request cannot be resolved as given (HTTP 400).
    LookupError,
    /// `INVALID_DATA`: malformed or inconsistent data (HTTP 400).
    InvalidData,
    /// `ALIAS_NOT_PROVISIONED`: the workspace's strategy does not support aliasing (HTTP 403).
    AliasNotProvisioned,
}

impl ErrorCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LookupError => "LOOKUP_ERROR",
            ErrorCode::InvalidData => "INVALID_DATA",
            ErrorCode::AliasNotProvisioned => "ALIAS_NOT_PROVISIONED",
        }
    }

    /// The HTTP status the server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::LookupError | ErrorCode::InvalidData => 400,
            ErrorCode::AliasNotProvisioned => 403,
        }
    }
}

/// A request the resolver refuses, with a message that says what is wrong. Nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RequestError {
    /// The IDSync code.
    pub code: ErrorCode,
    /// For the client.
    pub message: String,
}

impl RequestError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError { code, message: message.into() }
    }

    /// An `INVALID_DATA` error (400): a field the caller sent is malformed or too large.
    pub fn invalid_data(message: impl Into<String>) -> RequestError {
        RequestError::new(ErrorCode::InvalidData, message)
    }
}

/// A source of MPID candidates (random non-zero i64s in production, a counter in tests).
pub trait MpidSource {
    /// The next candidate value; 0 and values already in use are skipped by [`MpidSource::draw`].
    fn next_candidate(&mut self) -> i64;

    /// A fresh MPID: non-zero and unused in the projection.
    fn draw(&mut self, projection: &Projection) -> Mpid {
        loop {
            if let Some(mpid) = Mpid::new(self.next_candidate())
                && projection.profile_id(mpid).is_none()
            {
                return mpid;
            }
        }
    }
}

/// The answer to identify, login, logout or search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAnswer {
    /// The profile returned.
    pub mpid: Mpid,
    /// Whether it holds a login ID (always false under Best Match).
    pub is_logged_in: bool,
    /// The request's identities whose values were on the profile before the request.
    pub matched_identities: Vec<Identity>,
    /// Whether the profile was created by this request.
    pub created: bool,
}

/// What the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A profile.
    Resolved(ResolvedAnswer),
    /// search found nothing (HTTP 404).
    NotFound,
    /// modify applied.
    Modified {
        /// The profile modified.
        mpid: Mpid,
        /// Profiles that lost a unique identity to this modify.
        change_results: Vec<ChangeResult>,
    },
    /// An administrative correction applied.
    Admin {
        /// The profile a split created.
        new_mpid: Option<Mpid>,
    },
    /// alias acknowledged (HTTP 202).
    Alias {
        /// Applied, or ignored under the IDSync alias rules.
        accepted: bool,
        /// Why it was ignored.
        reason: Option<String>,
    },
}

/// The resolver's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The state changes to record, in order.
    pub events: Vec<Event>,
    /// The outcome to record; `None` for search, which is not recorded.
    pub outcome: Option<Outcome>,
    /// The answer.
    pub answer: Answer,
}

/// Decides requests against a projection with one workspace's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Resolver<'a> {
    /// The state decided against.
    pub projection: &'a Projection,
    /// The workspace's configuration.
    pub config: &'a ResolverConfig,
}

impl Resolver<'_> {
    /// Decides identify, login, logout or search.
    pub fn identity(
        &self,
        world: &World,
        query: &IdentityQuery,
        now: Timestamp,
        mpids: &mut dyn MpidSource,
    ) -> Result<Decision, RequestError> {
        validate_identities(self.config, &query.known_identities)?;
        resolve::decide(self.projection, self.config, world, query, now, mpids, None)
    }

    /// Decides like [`Resolver::identity`] and explains how: the candidates after each priority
    /// step, the login-ID protection applied and the rule that decided.
    pub fn explain_identity(
        &self,
        world: &World,
        query: &IdentityQuery,
        now: Timestamp,
        mpids: &mut dyn MpidSource,
    ) -> (Result<Decision, RequestError>, Explanation) {
        let mut explanation = Explanation::new(self.config, query.op);
        if let Err(err) = validate_identities(self.config, &query.known_identities) {
            return (Err(err), explanation);
        }
        let res = resolve::decide(
            self.projection,
            self.config,
            world,
            query,
            now,
            mpids,
            Some(&mut explanation),
        );
        if let Ok(decision) = &res {
            explanation.answer = Some(decision.answer.clone());
        }
        (res, explanation)
    }

    /// Decides a modify.
    pub fn modify(
        &self,
        world: &World,
        mpid: Mpid,
        changes: &[idgraph_model::IdentityChange],
    ) -> Result<Decision, RequestError> {
        modify::decide(self.projection, self.config, world, mpid, changes)
    }

    /// Decides an administrative detach of identities from a profile.
    pub fn admin_detach(
        &self,
        world: &World,
        mpid: Mpid,
        identities: &[Identity],
    ) -> Result<Decision, RequestError> {
        admin::detach(self.projection, world, mpid, identities)
    }

    /// Decides an administrative split of identities off a profile into a new one.
    pub fn admin_split(
        &self,
        world: &World,
        mpid: Mpid,
        identities: &[Identity],
        mpids: &mut dyn MpidSource,
    ) -> Result<Decision, RequestError> {
        admin::split(self.projection, world, mpid, identities, mpids)
    }

    /// Decides an alias request.
    pub fn alias(
        &self,
        world: &World,
        query: &AliasQuery,
        now: Timestamp,
    ) -> Result<Decision, RequestError> {
        alias::decide(self.projection, self.config, world, query, now)
    }
}

/// Checks a request's identities: no duplicate types, no over-long values, and at least one
/// usable identity once blocked placeholder values are set aside (guardrails). Blocked identities
/// stay in the recorded request but take no part in resolution.
pub fn validate_identities(
    config: &ResolverConfig,
    identities: &[Identity],
) -> Result<(), RequestError> {
    let mut seen = IdentityTypeSet::EMPTY;
    for identity in identities {
        if seen.contains(identity.identity_type) {
            return Err(RequestError::new(
                ErrorCode::LookupError,
                format!("identity type `{}` appears twice", identity.identity_type),
            ));
        }
        seen.insert(identity.identity_type);
        check_value_length(config, identity.identity_type, &identity.value)?;
    }
    if identities.is_empty() {
        return Err(RequestError::new(ErrorCode::LookupError, "knownIdentities is empty."));
    }
    if identities
        .iter()
        .all(|identity| config.guardrails.is_blocked(identity.identity_type, &identity.value))
    {
        let names: Vec<String> = identities
            .iter()
            .map(|identity| format!("{}={:?}", identity.identity_type, identity.value))
            .collect();
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!(
                "knownIdentities has no usable identity: {} only blocked placeholder values",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_value_length(
    config: &ResolverConfig,
    identity_type: IdentityType,
    value: &str,
) -> Result<(), RequestError> {
    if value.len() > config.guardrails.value_bytes_max {
        return Err(RequestError::new(
            ErrorCode::LookupError,
            format!(
                "the {identity_type} value is {} bytes long; the limit is {}",
                value.len(),
                config.guardrails.value_bytes_max
            ),
        ));
    }
    Ok(())
}

//! Audit use cases (`docs/audit.md`): how a profile became known, which profiles held an identity,
//! a profile or a search as of a past point, the explanation of a stored or a hypothetical request,
//! and what-if. The CLI and the HTTP API call these and only render what they return, so both give
//! the same answer to the same question.
//!
//! Every use case answers for one *caller*: a workspace, whose identity scope bounds what is read.
//! Nothing of another scope is ever returned: a profile or an entry of another scope is
//! [`EngineError::NotFound`], exactly as if it did not exist.
//!
//! The building blocks (partial folds of the profiles a question is about, read from the log's
//! indexes) are in [`past`]; the re-decision of a stored entry in `explain.rs`.

mod explain;
mod graph;
pub mod past;

use idgraph_log::Log;
use idgraph_model::{Environment, Identity, Mpid, Seq, Timestamp};
use idgraph_projection::{AliasRecord, Projection};
use idgraph_query::history::{
    Holding, IdentityHistoryBuilder, ProfileHistory, ProfileHistoryBuilder,
};
use idgraph_query::{Answer, Explanation, IdentityOp, IdentityQuery, MpidSource, Resolver, World};

pub use self::explain::EntryExplanation;
pub use self::graph::{IdentityNeighbours, Neighbourhood, NeighbourhoodLimits};
use crate::whatif::{ConfigChanges, WhatIfReport};
use crate::{EngineError, Workspace};

/// Which point of the log a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After this entry (a sequence past the end means the end).
    Seq(Seq),
    /// After the last entry recorded at or before this time.
    Time(Timestamp),
    /// After the last entry.
    Now,
}

/// A profile as it was at a past point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileAsOf {
    /// The point, as a sequence.
    pub as_of: Seq,
    /// Events folded to rebuild it (what it cost).
    pub n_events_folded: u64,
    /// The profile; `None` if it did not exist then (in the caller's scope).
    pub profile: Option<ProfileState>,
}

/// A profile's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileState {
    /// The profile.
    pub mpid: Mpid,
    /// When it was created.
    pub created: Timestamp,
    /// When a request last resolved to it.
    pub last_seen: Timestamp,
    /// Its identities, sorted.
    pub identities: Vec<Identity>,
    /// The aliases it is the source of, oldest first.
    pub aliased_to: Vec<AliasRecord>,
}

/// A search as it would have been answered at a past point.
#[derive(Debug, Clone)]
pub struct SearchAsOf {
    /// The point, as a sequence.
    pub as_of: Seq,
    /// The answer: a profile and the identities that matched, or not found.
    pub answer: Answer,
    /// How it was decided, step by step.
    pub explanation: Explanation,
}

/// The audit use cases, for one caller over one log.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    /// The log read.
    pub log: &'a Log,
    /// The caller's workspace: answers are confined to its identity scope.
    pub caller: &'a Workspace,
    /// Every configured workspace: a stored entry is re-decided with the configuration of the
    /// workspace that recorded it (the caller's, if that one is no longer configured).
    pub workspaces: &'a [Workspace],
}

impl<'a> Audit<'a> {
    /// The sequence `as_of` names.
    pub fn resolve(&self, as_of: AsOf) -> Result<Seq, EngineError> {
        let last = self.log.last_seq();
        Ok(match as_of {
            AsOf::Seq(seq) => seq.min(last),
            AsOf::Time(time) => self.log.seq_at(time)?,
            AsOf::Now => last,
        })
    }

    /// Every entry that touched profile `mpid`, and how it changed the profile, oldest first.
    /// [`EngineError::NotFound`] if no entry of the caller's scope mentions it.
    pub fn profile_history(&self, mpid: Mpid) -> Result<ProfileHistory, EngineError> {
        let scope = &self.caller.scope;
        let entries = past::entries_of_profile(self.log, scope, mpid, self.log.last_seq())?;
        let mut builder = ProfileHistoryBuilder::new(mpid, self.caller.resolver.login_ids);
        for (seq, entry) in &entries {
            builder.feed(*seq, entry);
        }
        let history = builder.finish();
        if history.steps.is_empty() {
            return Err(EngineError::NotFound(format!("no entry mentions MPID {mpid}")));
        }
        Ok(history)
    }

    /// Which profiles held `identity` (in the caller's scope, any environment), and when, oldest
    /// first. Empty if none ever did.
    pub fn identity_history(&self, identity: &Identity) -> Result<Vec<Holding>, EngineError> {
        let scope = &self.caller.scope;
        let entries = past::entries_of_identity(self.log, scope, identity, self.log.last_seq())?;
        let mut builder = IdentityHistoryBuilder::new(identity.clone(), Some(scope.clone()));
        for (seq, entry) in &entries {
            builder.feed(*seq, entry);
        }
        Ok(builder.finish())
    }

    /// Profile `mpid` as it was at `as_of`, rebuilt from only the entries that touched it.
    pub fn profile_as_of(&self, mpid: Mpid, as_of: AsOf) -> Result<ProfileAsOf, EngineError> {
        let as_of = self.resolve(as_of)?;
        let projection = past::profiles_as_of(self.log, &self.caller.scope, &[mpid], as_of)?;
        let profile = projection.profile_id(mpid).map(|id| {
            let view = projection.profile(id);
            ProfileState {
                mpid,
                created: view.created,
                last_seen: view.last_seen,
                identities: projection.identities_of_sorted(id),
                aliased_to: projection.aliases_from(mpid),
            }
        });
        Ok(ProfileAsOf { as_of, n_events_folded: projection.n_events_applied(), profile })
    }

    /// A search for `identities` in `environment` as it would have been answered at `as_of`, with
    /// its explanation, from the profiles that held those identities.
    pub fn search_as_of(
        &self,
        environment: Environment,
        identities: Vec<Identity>,
        as_of: AsOf,
    ) -> Result<SearchAsOf, EngineError> {
        let as_of = self.resolve(as_of)?;
        let scope = &self.caller.scope;
        let projection = past::lookup_as_of(self.log, scope, &identities, None, as_of)?;
        let query = IdentityQuery {
            op: IdentityOp::Search,
            known_identities: identities,
            previous_mpid: None,
        };
        let world = World { scope: scope.clone(), environment };
        let (answer, explanation) = explain_query(&projection, self.caller, &world, &query)?;
        Ok(SearchAsOf { as_of, answer, explanation })
    }

    /// Why stored entry `seq` resolved the way it did: re-decided against the state just before it,
    /// step by step. [`EngineError::NotFound`] if there is no such entry in the caller's scope,
    /// [`EngineError::Invalid`] if it is not an identify, login or logout.
    pub fn explain_entry(&self, seq: Seq) -> Result<EntryExplanation, EngineError> {
        let entry = match self.log.get(seq)? {
            Some(entry) if entry.request.scope == self.caller.scope => entry,
            _ => return Err(EngineError::NotFound(format!("no entry at sequence {seq}"))),
        };
        let recorder = self
            .workspaces
            .iter()
            .find(|w| w.name == entry.request.workspace && w.scope == entry.request.scope)
            .unwrap_or(self.caller);
        explain::explain_entry(self.log, &recorder.resolver, seq, entry)
    }

    /// Re-decides every recorded request of the caller's workspace under its configuration with
    /// `changes`, and reports what would differ. Reads the whole log.
    pub fn what_if(&self, changes: &ConfigChanges) -> Result<WhatIfReport, EngineError> {
        let alternative = changes
            .apply_to(&self.caller.resolver)
            .map_err(|err| EngineError::Invalid(err.to_string()))?;
        crate::whatif::what_if(self.log, &self.caller.name, &alternative)
    }
}

/// How `query` would be decided against `projection` with `workspace`'s configuration, step by step.
/// Nothing is recorded; a request that would create a profile gets a placeholder MPID.
pub fn explain_query(
    projection: &Projection,
    workspace: &Workspace,
    world: &World,
    query: &IdentityQuery,
) -> Result<(Answer, Explanation), EngineError> {
    let resolver = Resolver { projection, config: &workspace.resolver };
    let (decision, explanation) =
        resolver.explain_identity(world, query, projection.last_time(), &mut PlaceholderMpids(0));
    Ok((decision?.answer, explanation))
}

/// MPIDs for hypothetical profiles: a counter from 1, never recorded anywhere.
struct PlaceholderMpids(i64);

impl MpidSource for PlaceholderMpids {
    fn next_candidate(&mut self) -> i64 {
        self.0 += 1;
        self.0
    }
}

//! Audit: how a profile became known, which profiles held an identity over time. Sans-IO: the
//! caller feeds log entries in order (from `Log::scan`), the functions keep what concerns them.

use std::fmt;

use idgraph_model::{
    DetachReason, Entry, Event, Identity, IdentityTypeSet, Mpid, Operation, Seq, Timestamp,
};

/// What one entry changed for the profile (or identity) followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The profile was created.
    Created,
    /// An identity was attached.
    Attached(Identity),
    /// An identity was detached, and why.
    Detached(Identity, DetachReason),
    /// The first login ID arrived: the profile became known.
    BecameKnown(Identity),
    /// The profile was the source of an accepted alias to `destination`.
    AliasedTo(Mpid),
    /// The profile was the destination of an accepted alias from `source`.
    AliasedFrom(Mpid),
}

/// One log entry in a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStep {
    /// Its sequence.
    pub seq: Seq,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// The operation's name.
    pub operation: &'static str,
    /// The client's request id.
    pub request_id: Option<String>,
    /// The identities the request carried (for modify: none).
    pub identities: Vec<Identity>,
    /// The profile the request resolved to, if any.
    pub resolved: Option<Mpid>,
    /// What changed for the profile followed (empty: it was only seen).
    pub changes: Vec<Change>,
}

/// Every entry that touched a profile, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileHistory {
    /// The profile.
    pub mpid: Mpid,
    /// The steps.
    pub steps: Vec<HistoryStep>,
}

impl ProfileHistory {
    /// The step where the profile became known (its first login ID arrived), if it did.
    pub fn became_known(&self) -> Option<&HistoryStep> {
        self.steps
            .iter()
            .find(|step| step.changes.iter().any(|c| matches!(c, Change::BecameKnown(_))))
    }
}

/// Builds a profile's history from entries fed in log order.
#[derive(Debug)]
pub struct ProfileHistoryBuilder {
    history: ProfileHistory,
    login_ids: IdentityTypeSet,
    known: bool,
}

fn identities_of(entry: &Entry) -> Vec<Identity> {
    match &entry.request.operation {
        Operation::Identify(request) | Operation::Login(request) | Operation::Logout(request) => {
            request.known_identities.clone()
        }
        Operation::AdminDetach(correction) | Operation::AdminSplit(correction) => {
            correction.identities.clone()
        }
        Operation::Modify { .. } | Operation::Alias { .. } => Vec::new(),
    }
}

impl ProfileHistoryBuilder {
    /// Follows `mpid`; `login_ids` decides when it "became known".
    pub fn new(mpid: Mpid, login_ids: IdentityTypeSet) -> ProfileHistoryBuilder {
        ProfileHistoryBuilder {
            history: ProfileHistory { mpid, steps: Vec::new() },
            login_ids,
            known: false,
        }
    }

    /// Feeds the next entry.
    pub fn feed(&mut self, seq: Seq, entry: &Entry) {
        let mpid = self.history.mpid;
        let mut changes = Vec::new();
        for event in &entry.events {
            match event {
                Event::ProfileCreated { mpid: created } if *created == mpid => {
                    changes.push(Change::Created)
                }
                Event::IdentityAttached { mpid: target, identity } if *target == mpid => {
                    changes.push(Change::Attached(identity.clone()));
                    if !self.known && self.login_ids.contains(identity.identity_type) {
                        self.known = true;
                        changes.push(Change::BecameKnown(identity.clone()));
                    }
                }
                Event::IdentityDetached { mpid: target, identity, reason } if *target == mpid => {
                    changes.push(Change::Detached(identity.clone(), reason.clone()));
                }
                Event::AliasRecorded { source, destination, .. } if *source == mpid => {
                    changes.push(Change::AliasedTo(*destination))
                }
                Event::AliasRecorded { source, destination, .. } if *destination == mpid => {
                    changes.push(Change::AliasedFrom(*source))
                }
                _ => {}
            }
        }
        let resolved = entry.outcome.seen_mpid();
        if changes.is_empty() && resolved != Some(mpid) {
            return;
        }
        self.history.steps.push(HistoryStep {
            seq,
            recorded_at: entry.recorded_at,
            operation: entry.request.operation.name(),
            request_id: entry.request.request_id.clone(),
            identities: identities_of(entry),
            resolved,
            changes,
        });
    }

    /// The history.
    pub fn finish(self) -> ProfileHistory {
        self.history
    }
}

/// One period during which a profile held an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The profile.
    pub mpid: Mpid,
    /// When it was attached.
    pub from: (Seq, Timestamp),
    /// When it was detached, and why; `None` while still held.
    pub until: Option<(Seq, Timestamp, DetachReason)>,
}

/// Which profiles held an identity over time, oldest first, from entries fed in log order.
#[derive(Debug)]
pub struct IdentityHistoryBuilder {
    identity: Identity,
    scope: Option<String>,
    holdings: Vec<Holding>,
}

impl IdentityHistoryBuilder {
    /// Follows `identity`, in one scope (or any, with `None`).
    pub fn new(identity: Identity, scope: Option<String>) -> IdentityHistoryBuilder {
        IdentityHistoryBuilder { identity, scope, holdings: Vec::new() }
    }

    /// Feeds the next entry.
    pub fn feed(&mut self, seq: Seq, entry: &Entry) {
        if self.scope.as_ref().is_some_and(|scope| *scope != entry.request.scope) {
            return;
        }
        for event in &entry.events {
            match event {
                Event::IdentityAttached { mpid, identity } if *identity == self.identity => {
                    self.holdings.push(Holding {
                        mpid: *mpid,
                        from: (seq, entry.recorded_at),
                        until: None,
                    });
                }
                Event::IdentityDetached { mpid, identity, reason }
                    if *identity == self.identity =>
                {
                    if let Some(holding) = self
                        .holdings
                        .iter_mut()
                        .rev()
                        .find(|h| h.mpid == *mpid && h.until.is_none())
                    {
                        holding.until = Some((seq, entry.recorded_at, reason.clone()));
                    }
                }
                _ => {}
            }
        }
    }

    /// The holdings.
    pub fn finish(self) -> Vec<Holding> {
        self.holdings
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Created => f.write_str("created"),
            Change::Attached(identity) => write!(f, "+{identity}"),
            Change::Detached(identity, reason) => match reason {
                DetachReason::Modified => write!(f, "-{identity} (modify)"),
                DetachReason::MovedTo { mpid } => write!(f, "-{identity} (moved to {mpid})"),
                DetachReason::AdminDetached => write!(f, "-{identity} (admin)"),
                DetachReason::SplitTo { mpid } => write!(f, "-{identity} (split to {mpid})"),
            },
            Change::BecameKnown(identity) => write!(f, "became known via {identity}"),
            Change::AliasedTo(mpid) => write!(f, "aliased to {mpid}"),
            Change::AliasedFrom(mpid) => write!(f, "alias from {mpid}"),
        }
    }
}

impl fmt::Display for ProfileHistory {
    /// One line per step: `#seq time operation {identities} -> mpid: changes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history of {}", self.mpid)?;
        for step in &self.steps {
            let identities: Vec<String> = step.identities.iter().map(Identity::to_string).collect();
            let changes: Vec<String> = step.changes.iter().map(Change::to_string).collect();
            let resolved = step.resolved.map(|m| format!(" -> {m}")).unwrap_or_default();
            let changes = if changes.is_empty() { "seen".to_owned() } else { changes.join(", ") };
            writeln!(
                f,
                "  #{} {} {} {{{}}}{resolved}: {changes}",
                step.seq,
                step.recorded_at,
                step.operation,
                identities.join(", ")
            )?;
        }
        match self.became_known() {
            Some(step) => write!(
                f,
                "became known at #{} ({}), after {} anonymous step(s)",
                step.seq,
                step.operation,
                self.steps.iter().take_while(|s| s.seq < step.seq).count()
            ),
            None => write!(f, "never known (no login ID)"),
        }
    }
}

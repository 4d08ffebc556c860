//! The persisted schema: log entries and the events they carry.
//!
//! One [`Entry`] is appended per handled request. It records *when* ([`Entry::recorded_at`]),
//! *what was asked* ([`Request`]), *what was decided* ([`Event`]s, in the order they apply) and
//! *what was answered* ([`Outcome`]). The projection folds events; the audit reads whole entries.
//!
//! Schema evolution: this is the one deliberate compatibility boundary of idgraph. The binary codec
//! is positional, so new enum variants and new fields are only ever added at the end, and a change
//! that reinterprets existing bytes needs a new codec id (see `docs/adr/0001-event-encoding.md`).

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{Identity, IdentityType, Mpid};

/// A position in the log. Sequences are gap-free and start at 1; `Seq(0)` means "before the first
/// entry" (an empty log, or "replay from the beginning").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first entry.
    pub const ZERO: Seq = Seq(0);

    /// The sequence after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time as microseconds since the Unix epoch (UTC). Entries carry one; it is read from a
/// clock only by the writer, never by the projection or the resolver.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp `micros` microseconds after the epoch.
    pub const fn from_unix_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// The timestamp `millis` milliseconds after the epoch (saturating).
    pub const fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Milliseconds since the epoch, rounded down.
    pub const fn unix_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// As a chrono date-time, or `None` when out of chrono's range.
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_micros(self.0).single()
    }

    /// From a chrono date-time.
    pub fn from_datetime(datetime: DateTime<Utc>) -> Timestamp {
        Timestamp(datetime.timestamp_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(datetime) => f.write_str(&datetime.to_rfc3339_opts(SecondsFormat::Micros, true)),
            None => write!(f, "@{}us", self.0),
        }
    }
}

/// The IDSync environment. Identities are partitioned by environment: nothing resolves across it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// `production`
    Production,
    /// `development`
    Development,
}

impl Environment {
    /// The wire name.
    pub const fn wire_name(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Development => "development",
        }
    }

    /// The environment with this wire name.
    pub fn from_wire_name(name: &str) -> Option<Environment> {
        match name {
            "production" => Some(Environment::Production),
            "development" => Some(Environment::Development),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The unit appended to the log: one handled request with the events it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the writer handled the request. Non-decreasing along the log.
    pub recorded_at: Timestamp,
    /// The request as the resolver saw it (after validation and normalisation).
    pub request: Request,
    /// The state changes decided for this request, in application order. May be empty: a request
    /// that changes nothing is still evidence (last-seen times, tie-breaks, audit).
    pub events: Vec<Event>,
    /// The answer sent back.
    pub outcome: Outcome,
}

/// Which request an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's `request_id`, used for idempotency and audit.
    pub request_id: Option<String>,
    /// The workspace whose key the request came with.
    pub workspace: String,
    /// The identity scope the workspace belongs to; events apply within `(scope, environment)`.
    pub scope: String,
    /// Production or development.
    pub environment: Environment,
    /// The operation and its arguments.
    pub operation: Operation,
}

/// An operation with its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `POST /v1/identify`.
    Identify(IdentityRequest),
    /// `POST /v1/login`.
    Login(IdentityRequest),
    /// `POST /v1/logout`.
    Logout(IdentityRequest),
    /// `POST /v1/{mpid}/modify`.
    Modify {
        /// The profile to change.
        mpid: Mpid,
        /// The requested changes, as sent.
        identity_changes: Vec<IdentityChange>,
    },
    /// An alias request: attribute `source`'s history to `destination`.
    Alias {
        /// The (typically anonymous) profile whose data is copied.
        source: Mpid,
        /// The (typically known) profile that receives it.
        destination: Mpid,
        /// Start of the copied window.
        start: Timestamp,
        /// End of the copied window.
        end: Timestamp,
    },
    /// An administrator detached identities from a profile (a reversible-link correction).
    AdminDetach(AdminCorrection),
    /// An administrator split identities off a profile into a new profile.
    AdminSplit(AdminCorrection),
}

impl Operation {
    /// The short name used in logs, metrics and renderings.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Identify(_) => "identify",
            Operation::Login(_) => "login",
            Operation::Logout(_) => "logout",
            Operation::Modify { .. } => "modify",
            Operation::Alias { .. } => "alias",
            Operation::AdminDetach(_) => "admin_detach",
            Operation::AdminSplit(_) => "admin_split",
        }
    }
}

/// The arguments of an administrative correction (detach or split).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AdminCorrection {
    /// The profile corrected.
    pub mpid: Mpid,
    /// The identities detached from it (or moved to the new profile, for a split).
    pub identities: Vec<Identity>,
    /// Who asked.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// The arguments of identify, login and logout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityRequest {
    /// The identities the request carried, sorted by type (one value per type).
    pub known_identities: Vec<Identity>,
    /// The MPID the client held before this request.
    pub previous_mpid: Option<Mpid>,
}

/// One requested change of a modify request. `old_value: None` adds, `new_value: None` removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityChange {
    /// The type being changed.
    pub identity_type: IdentityType,
    /// The value to replace or remove.
    pub old_value: Option<String>,
    /// The value to set.
    pub new_value: Option<String>,
}

/// A decided state change. Named as a past-tense fact; the projection folds these and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new profile exists. Its MPID was drawn by the writer and is recorded so replay never
    /// re-draws it.
    ProfileCreated {
        /// The new profile.
        mpid: Mpid,
    },
    /// An identity now looks up a profile.
    IdentityAttached {
        /// The profile.
        mpid: Mpid,
        /// The identity.
        identity: Identity,
    },
    /// An identity no longer looks up a profile.
    IdentityDetached {
        /// The profile.
        mpid: Mpid,
        /// The identity.
        identity: Identity,
        /// Why it was detached.
        reason: DetachReason,
    },
    /// An alias request was accepted. It does not change lookups.
    AliasRecorded {
        /// The profile whose history is attributed to `destination`.
        source: Mpid,
        /// The profile that receives it.
        destination: Mpid,
        /// Start of the window.
        start: Timestamp,
        /// End of the window.
        end: Timestamp,
    },
}

impl Event {
    /// The profile this event is about (for aliases, the source).
    pub fn mpid(&self) -> Mpid {
        match self {
            Event::ProfileCreated { mpid }
            | Event::IdentityAttached { mpid, .. }
            | Event::IdentityDetached { mpid, .. } => *mpid,
            Event::AliasRecorded { source, .. } => *source,
        }
    }
}

/// Why an identity was detached from a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetachReason {
    /// A modify request on this profile removed or replaced it.
    Modified,
    /// A modify request on another profile claimed this unique identity.
    MovedTo {
        /// The profile that now holds it.
        mpid: Mpid,
    },
    /// An administrator detached it.
    AdminDetached,
    /// An administrator split it off into another profile.
    SplitTo {
        /// The profile created by the split.
        mpid: Mpid,
    },
}

/// The answer an entry recorded: enough to replay the response of a repeated `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// identify, login or logout returned a profile.
    Resolved {
        /// The profile returned.
        mpid: Mpid,
        /// Whether the profile holds a login ID.
        is_logged_in: bool,
        /// The request's identity types whose values were already on the returned profile.
        matched: Vec<IdentityType>,
    },
    /// modify changed (or confirmed) a profile.
    Modified {
        /// The profile modified.
        mpid: Mpid,
    },
    /// The alias request was accepted and recorded.
    AliasAccepted,
    /// The alias request was acknowledged (202) but not applied, as IDSync does for requests that
    /// break its alias rules.
    AliasIgnored {
        /// Why it was not applied.
        reason: String,
    },
    /// An administrative correction was applied.
    AdminApplied {
        /// The profile created by a split, if any.
        new_mpid: Option<Mpid>,
    },
}

impl Outcome {
    /// The profile a request was answered with, or that a modify changed: the one it was seen by.
    pub fn seen_mpid(&self) -> Option<Mpid> {
        match self {
            Outcome::Resolved { mpid, .. } | Outcome::Modified { mpid } => Some(*mpid),
            _ => None,
        }
    }
}

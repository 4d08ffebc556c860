//! Borrowed views of stored entries, for replay.
//!
//! An [`EntryView`] is what the projection folds from a stored entry: the same facts as an
//! [`Entry`], but its strings borrow from the record instead of being copied, and the parts the fold
//! does not read (the request id, the workspace, the operation's arguments, the outcome's details)
//! are left out. The log's codec decodes views straight from the stored bytes (`idgraph_log`'s
//! `codec.rs`), so decoding allocates nothing for most entries.
//!
//! Keep the types here in step with `entry.rs`. The codec's property tests decode views of
//! arbitrary entries and compare them with the owned decoding ([`EntryView::agrees_with`]), so a
//! schema change the view decoder misses fails the tests.

use std::fmt;

use smallvec::SmallVec;

use crate::{DetachReason, Entry, Environment, Event, Identity, IdentityType, Mpid, Timestamp};

/// A borrowed [`Entry`]: what the projection folds.
#[derive(Debug, Clone)]
pub struct EntryView<'a> {
    /// When the request was handled.
    pub recorded_at: Timestamp,
    /// The world the request was for.
    pub request: RequestView<'a>,
    /// The state changes, in order (most entries have at most two: no allocation).
    pub events: SmallVec<[EventView<'a>; 2]>,
    /// What the outcome says about the profile that was seen.
    pub outcome: OutcomeView,
}

/// The parts of a [`crate::Request`] the fold reads: the world it was for.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The identity scope.
    pub scope: &'a str,
    /// The environment.
    pub environment: Environment,
}

/// A borrowed [`Identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityView<'a> {
    /// What kind of identifier this is.
    pub identity_type: IdentityType,
    /// The identifier.
    pub value: &'a str,
}

impl<'a> From<&'a Identity> for IdentityView<'a> {
    fn from(identity: &'a Identity) -> IdentityView<'a> {
        IdentityView { identity_type: identity.identity_type, value: &identity.value }
    }
}

impl fmt::Display for IdentityView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.identity_type, self.value)
    }
}

/// A borrowed [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum EventView<'a> {
    ProfileCreated { mpid: Mpid },
    IdentityAttached { mpid: Mpid, identity: IdentityView<'a> },
    IdentityDetached { mpid: Mpid, identity: IdentityView<'a>, reason: DetachReason },
    AliasRecorded { source: Mpid, destination: Mpid, start: Timestamp, end: Timestamp },
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(event: &'a Event) -> EventView<'a> {
        match event {
            Event::ProfileCreated { mpid } => EventView::ProfileCreated { mpid: *mpid },
            Event::IdentityAttached { mpid, identity } => {
                EventView::IdentityAttached { mpid: *mpid, identity: identity.into() }
            }
            Event::IdentityDetached { mpid, identity, reason } => EventView::IdentityDetached {
                mpid: *mpid,
                identity: identity.into(),
                reason: reason.clone(),
            },
            Event::AliasRecorded { source, destination, start, end } => EventView::AliasRecorded {
                source: *source,
                destination: *destination,
                start: *start,
                end: *end,
            },
        }
    }
}

/// The part of an [`crate::Outcome`] the fold reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeView {
    /// [`crate::Outcome::seen_mpid`].
    pub seen_mpid: Option<Mpid>,
}

impl OutcomeView {
    /// The profile a request was answered with, or that a modify changed: the one it was seen by.
    pub fn seen_mpid(&self) -> Option<Mpid> {
        self.seen_mpid
    }
}

impl<'a> From<&'a Entry> for EntryView<'a> {
    fn from(entry: &'a Entry) -> EntryView<'a> {
        EntryView {
            recorded_at: entry.recorded_at,
            request: RequestView {
                scope: &entry.request.scope,
                environment: entry.request.environment,
            },
            events: entry.events.iter().map(EventView::from).collect(),
            outcome: OutcomeView { seen_mpid: entry.outcome.seen_mpid() },
        }
    }
}

impl EntryView<'_> {
    /// Whether this view says what `entry` says about the parts a view keeps (everything the fold
    /// reads). For tests of the view against the owned decoding.
    pub fn agrees_with(&self, entry: &Entry) -> bool {
        self.recorded_at == entry.recorded_at
            && self.request.scope == entry.request.scope
            && self.request.environment == entry.request.environment
            && self.events.len() == entry.events.len()
            && self.events.iter().zip(&entry.events).all(|(view, event)| *view == event.into())
            && self.outcome.seen_mpid() == entry.outcome.seen_mpid()
    }
}

//! Borrowed views of stored entries, for replay.
//!
//! An [`EntryView`] decodes from the same bytes as an [`Entry`] (the field and variant order mirror
//! it exactly), but its strings borrow from the record instead of being copied, and the parts the
//! fold does not read (the request's operation, the outcome's matched types) are parsed and
//! dropped. Folding a view is what replay does, so decoding allocates at most the event list.
//!
//! Keep every type here in step with `entry.rs`: a field or variant added there must be added here
//! at the same position. The log's codec tests decode views of arbitrary entries and compare them
//! with the owned decoding, so a mismatch fails the build's tests.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use smallvec::SmallVec;

use crate::{DetachReason, Entry, Environment, Event, Identity, IdentityType, Mpid, Timestamp};

/// A borrowed [`Entry`]: what the projection folds.
#[derive(Debug, Clone, Deserialize)]
pub struct EntryView<'a> {
    /// When the request was handled.
    pub recorded_at: Timestamp,
    /// The request, without its operation's arguments.
    #[serde(borrow)]
    pub request: RequestView<'a>,
    /// The state changes, in order (most entries have at most two: no allocation).
    #[serde(borrow)]
    pub events: SmallVec<[EventView<'a>; 2]>,
    /// The outcome, without the matched types.
    #[serde(borrow)]
    pub outcome: OutcomeView<'a>,
}

/// A borrowed [`crate::Request`]: the world it was for. The request id, the workspace and the
/// operation are parsed (as stored bytes: their UTF-8 is not checked again) and dropped, so a view
/// stays small and cheap to move.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestView<'a> {
    /// The client's request id (dropped).
    #[serde(borrow)]
    pub request_id: Skipped<Option<&'a [u8]>>,
    /// The workspace (dropped).
    #[serde(borrow)]
    pub workspace: Skipped<&'a [u8]>,
    /// The identity scope.
    pub scope: &'a str,
    /// The environment.
    pub environment: Environment,
    /// The operation (dropped).
    #[serde(borrow)]
    pub operation: Skipped<OperationView<'a>>,
}

/// A [`crate::Operation`], arguments dropped.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub enum OperationView<'a> {
    Identify(#[serde(borrow)] IdentityRequestView<'a>),
    Login(#[serde(borrow)] IdentityRequestView<'a>),
    Logout(#[serde(borrow)] IdentityRequestView<'a>),
    Modify {
        mpid: Mpid,
        #[serde(borrow)]
        identity_changes: Dropped<IdentityChangeView<'a>>,
    },
    Alias {
        source: Mpid,
        destination: Mpid,
        start: Timestamp,
        end: Timestamp,
    },
    AdminDetach(#[serde(borrow)] AdminCorrectionView<'a>),
    AdminSplit(#[serde(borrow)] AdminCorrectionView<'a>),
}

/// A [`crate::IdentityRequest`], identities dropped.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct IdentityRequestView<'a> {
    #[serde(borrow)]
    pub known_identities: Dropped<StoredIdentity<'a>>,
    pub previous_mpid: Option<Mpid>,
}

/// A [`crate::IdentityChange`].
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct IdentityChangeView<'a> {
    pub identity_type: IdentityType,
    #[serde(borrow)]
    pub old_value: Option<&'a [u8]>,
    #[serde(borrow)]
    pub new_value: Option<&'a [u8]>,
}

/// A [`crate::AdminCorrection`], identities dropped.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct AdminCorrectionView<'a> {
    pub mpid: Mpid,
    #[serde(borrow)]
    pub identities: Dropped<StoredIdentity<'a>>,
    pub actor: &'a [u8],
    pub reason: &'a [u8],
}

/// An identity the fold does not read: its value as stored bytes (not checked as UTF-8 again).
#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub struct StoredIdentity<'a> {
    pub identity_type: IdentityType,
    pub value: &'a [u8],
}

/// A borrowed [`Identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum EventView<'a> {
    ProfileCreated {
        mpid: Mpid,
    },
    IdentityAttached {
        mpid: Mpid,
        #[serde(borrow)]
        identity: IdentityView<'a>,
    },
    IdentityDetached {
        mpid: Mpid,
        #[serde(borrow)]
        identity: IdentityView<'a>,
        reason: DetachReason,
    },
    AliasRecorded {
        source: Mpid,
        destination: Mpid,
        start: Timestamp,
        end: Timestamp,
    },
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

/// A borrowed [`Outcome`], matched types dropped.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub enum OutcomeView<'a> {
    Resolved { mpid: Mpid, is_logged_in: bool, matched: Dropped<IdentityType> },
    Modified { mpid: Mpid },
    AliasAccepted,
    AliasIgnored { reason: &'a [u8] },
    AdminApplied { new_mpid: Option<Mpid> },
}

impl OutcomeView<'_> {
    /// The profile a request was answered with, or that a modify changed: the one it was seen by.
    pub fn seen_mpid(&self) -> Option<Mpid> {
        match self {
            OutcomeView::Resolved { mpid, .. } | OutcomeView::Modified { mpid } => Some(*mpid),
            _ => None,
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

/// A value parsed and dropped: takes no room in the view.
pub struct Skipped<T>(PhantomData<T>);

impl<T> fmt::Debug for Skipped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Skipped")
    }
}

impl<T> Clone for Skipped<T> {
    fn clone(&self) -> Self {
        Skipped(PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Skipped<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer)?;
        Ok(Skipped(PhantomData))
    }
}

/// A sequence parsed element by element and dropped: no allocation.
pub struct Dropped<T>(PhantomData<T>);

impl<T> fmt::Debug for Dropped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dropped")
    }
}

impl<T> Clone for Dropped<T> {
    fn clone(&self) -> Self {
        Dropped(PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Dropped<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Skipper<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Skipper<T> {
            type Value = Dropped<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dropped<T>, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(Dropped(PhantomData))
            }
        }
        deserializer.deserialize_seq(Skipper(PhantomData))
    }
}

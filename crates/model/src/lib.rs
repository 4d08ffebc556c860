//! # idgraph-model
//!
//! The vocabulary every other idgraph crate speaks: identity types and identities
//! ([`IdentityType`], [`Identity`]), profile identifiers ([`Mpid`]), log positions ([`Seq`]) and
//! times ([`Timestamp`]), and the persisted schema: the [`Entry`] appended once per handled request,
//! with its [`Request`], decided [`Event`]s and [`Outcome`].
//!
//! ## Design
//! This crate is the only place where the persisted schema is defined, so it is the only crate
//! where `#[derive(Serialize, Deserialize)]` is routine. It knows nothing about storage, HTTP or
//! resolution rules. It has no I/O and no clock.
//!
//! ## API themes
//! - Identifiers are newtypes with explicit sizes: `Mpid(NonZeroI64)`, `Seq(u64)`,
//!   `Timestamp(i64 µs)`. A bare integer never crosses a crate boundary.
//! - Events are past-tense facts (`ProfileCreated`, `IdentityAttached`, ...). One meaning per word:
//!   *attach* and *detach* are about lookups, *alias* is only ever the IDSync alias.

mod entry;
mod identity;
mod view;

pub use entry::{
    AdminCorrection, DetachReason, Entry, Environment, Event, IdentityChange, IdentityRequest,
    Operation, Outcome, Request, Seq, Timestamp,
};
pub use identity::{
    IDENTITY_TYPE_COUNT, Identity, IdentityType, IdentityTypeSet, Mpid, MpidError,
    UnknownIdentityType,
};
pub use view::{EntryView, EventView, IdentityView, OutcomeView, RequestView};

#[cfg(any(test, feature = "arbitrary"))]
pub mod arbitrary;

//! Proptest strategies for every persisted type (feature `arbitrary`), shared by the property tests
//! of the crates above this one.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::{
    AdminCorrection, DetachReason, Entry, Environment, Event, Identity, IdentityChange,
    IdentityRequest, IdentityType, Mpid, Operation, Outcome, Request, Timestamp,
};

/// Any identity type.
pub fn identity_type() -> impl Strategy<Value = IdentityType> {
    proptest::sample::select(IdentityType::ALL)
}

/// Any MPID (never 0).
pub fn mpid() -> impl Strategy<Value = Mpid> {
    any::<i64>().prop_filter_map("0 is not an MPID", Mpid::new)
}

/// Any identity, with values that include empty and non-ASCII strings.
pub fn identity() -> impl Strategy<Value = Identity> {
    (identity_type(), ".{0,24}")
        .prop_map(|(identity_type, value)| Identity { identity_type, value })
}

/// Any timestamp.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn identity_request() -> impl Strategy<Value = IdentityRequest> {
    (vec(identity(), 0..5), option::of(mpid())).prop_map(|(known_identities, previous_mpid)| {
        IdentityRequest { known_identities, previous_mpid }
    })
}

fn identity_change() -> impl Strategy<Value = IdentityChange> {
    (identity_type(), option::of(".{0,12}"), option::of(".{0,12}")).prop_map(
        |(identity_type, old_value, new_value)| IdentityChange {
            identity_type,
            old_value,
            new_value,
        },
    )
}

/// Any operation.
pub fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        identity_request().prop_map(Operation::Identify),
        identity_request().prop_map(Operation::Login),
        identity_request().prop_map(Operation::Logout),
        (mpid(), vec(identity_change(), 0..4))
            .prop_map(|(mpid, identity_changes)| Operation::Modify { mpid, identity_changes }),
        (mpid(), mpid(), timestamp(), timestamp()).prop_map(|(source, destination, start, end)| {
            Operation::Alias { source, destination, start, end }
        }),
        (mpid(), vec(identity(), 0..3), ".{0,8}", ".{0,8}").prop_map(
            |(mpid, identities, actor, reason)| Operation::AdminDetach(AdminCorrection {
                mpid,
                identities,
                actor,
                reason
            })
        ),
        (mpid(), vec(identity(), 0..3), ".{0,8}", ".{0,8}").prop_map(
            |(mpid, identities, actor, reason)| Operation::AdminSplit(AdminCorrection {
                mpid,
                identities,
                actor,
                reason
            })
        ),
    ]
}

fn detach_reason() -> impl Strategy<Value = DetachReason> {
    prop_oneof![
        Just(DetachReason::Modified),
        mpid().prop_map(|mpid| DetachReason::MovedTo { mpid }),
        Just(DetachReason::AdminDetached),
        mpid().prop_map(|mpid| DetachReason::SplitTo { mpid }),
    ]
}

/// Any event.
pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        mpid().prop_map(|mpid| Event::ProfileCreated { mpid }),
        (mpid(), identity())
            .prop_map(|(mpid, identity)| Event::IdentityAttached { mpid, identity }),
        (mpid(), identity(), detach_reason()).prop_map(|(mpid, identity, reason)| {
            Event::IdentityDetached { mpid, identity, reason }
        }),
        (mpid(), mpid(), timestamp(), timestamp()).prop_map(|(source, destination, start, end)| {
            Event::AliasRecorded { source, destination, start, end }
        }),
    ]
}

/// Any outcome.
pub fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (mpid(), any::<bool>(), vec(identity_type(), 0..4)).prop_map(
            |(mpid, is_logged_in, matched)| Outcome::Resolved { mpid, is_logged_in, matched }
        ),
        mpid().prop_map(|mpid| Outcome::Modified { mpid }),
        Just(Outcome::AliasAccepted),
        ".{0,16}".prop_map(|reason| Outcome::AliasIgnored { reason }),
        option::of(mpid()).prop_map(|new_mpid| Outcome::AdminApplied { new_mpid }),
    ]
}

/// Any entry. Not necessarily a *valid* one: events need not agree with the request.
pub fn entry() -> impl Strategy<Value = Entry> {
    let request = (
        option::of("[a-f0-9-]{0,36}"),
        "[a-z]{1,8}",
        "[a-z]{1,8}",
        prop_oneof![Just(Environment::Production), Just(Environment::Development)],
        operation(),
    )
        .prop_map(|(request_id, workspace, scope, environment, operation)| Request {
            request_id,
            workspace,
            scope,
            environment,
            operation,
        });
    (timestamp(), request, vec(event(), 0..6), outcome()).prop_map(
        |(recorded_at, request, events, outcome)| Entry { recorded_at, request, events, outcome },
    )
}

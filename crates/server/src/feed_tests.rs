//! The change feed's JSON: the exact text for a sample of every operation, event, detach reason and
//! outcome, and, for any entry, the same text as the persisted types' own serialisation through
//! `serde_json::Value` (what the feed sent before it had its own types).

use idgraph_model::{
    AdminCorrection, DetachReason, Entry, Environment, Event, Identity, IdentityChange,
    IdentityRequest, IdentityType, Mpid, Operation, Outcome, Request, Timestamp,
};
use proptest::prelude::*;

use super::{FeedEntry, FeedPage, FeedRecord};

fn mpid(value: i64) -> Mpid {
    Mpid::new(value).unwrap()
}

fn email(value: &str) -> Identity {
    Identity::new(IdentityType::Email, value)
}

fn entry(operation: Operation, events: Vec<Event>, outcome: Outcome) -> Entry {
    Entry {
        recorded_at: Timestamp::from_unix_micros(1_764_400_000_000_001),
        request: Request {
            request_id: None,
            workspace: "shop".into(),
            scope: "acme".into(),
            environment: Environment::Development,
            operation,
        },
        events,
        outcome,
    }
}

fn feed_json(entry: &Entry) -> String {
    serde_json::to_string(&FeedRecord::from(entry)).unwrap()
}

/// The JSON the feed sent before: `json!({"seq": .., "entry": entry})`, keys sorted by `Value`.
fn model_json(entry: &Entry) -> String {
    serde_json::to_value(entry).unwrap().to_string()
}

#[track_caller]
fn check(entry: Entry, expected: &str) {
    let text = feed_json(&entry);
    assert_eq!(text, model_json(&entry), "the feed's JSON differs from the persisted types'");
    let prefix = r#"{"events":"#;
    let expected = format!("{prefix}{expected}");
    assert_eq!(text, expected.replace(['\n', ' '], ""));
}

const REQUEST_TAIL: &str = r#""request_id":null,"scope":"acme","workspace":"shop"}}"#;

#[test]
fn identity_operations() {
    let mut identify = entry(
        Operation::Identify(IdentityRequest {
            known_identities: vec![Identity::new(IdentityType::CustomerId, "C-1"), email("e@x")],
            previous_mpid: Some(mpid(-5)),
        }),
        vec![
            Event::ProfileCreated { mpid: mpid(42) },
            Event::IdentityAttached { mpid: mpid(42), identity: email("e@x") },
        ],
        Outcome::Resolved {
            mpid: mpid(42),
            is_logged_in: true,
            matched: vec![IdentityType::Email],
        },
    );
    identify.request.request_id = Some("r-1".into());
    identify.request.environment = Environment::Production;
    check(
        identify,
        r#"[{"ProfileCreated":{"mpid":42}},
            {"IdentityAttached":{"identity":{"identity_type":"email","value":"e@x"},"mpid":42}}],
           "outcome":{"Resolved":{"is_logged_in":true,"matched":["email"],"mpid":42}},
           "recorded_at":1764400000000001,
           "request":{"environment":"production",
             "operation":{"Identify":{"known_identities":[
               {"identity_type":"customerid","value":"C-1"},{"identity_type":"email","value":"e@x"}],
               "previous_mpid":-5}},
             "request_id":"r-1","scope":"acme","workspace":"shop"}}"#,
    );
    let request = IdentityRequest { known_identities: vec![email("e@x")], previous_mpid: None };
    let resolved = Outcome::Resolved { mpid: mpid(7), is_logged_in: false, matched: vec![] };
    for (operation, name) in [
        (Operation::Login(request.clone()), "Login"),
        (Operation::Logout(request.clone()), "Logout"),
    ] {
        check(
            entry(operation, vec![], resolved.clone()),
            &format!(
                r#"[],"outcome":{{"Resolved":{{"is_logged_in":false,"matched":[],"mpid":7}}}},
                   "recorded_at":1764400000000001,
                   "request":{{"environment":"development","operation":{{"{name}":{{
                     "known_identities":[{{"identity_type":"email","value":"e@x"}}],
                     "previous_mpid":null}}}},{REQUEST_TAIL}"#
            ),
        );
    }
}

#[test]
fn modify_and_its_detach_reasons() {
    let modify = Operation::Modify {
        mpid: mpid(9),
        identity_changes: vec![
            IdentityChange {
                identity_type: IdentityType::Email,
                old_value: Some("a@x".into()),
                new_value: Some("b@x".into()),
            },
            IdentityChange {
                identity_type: IdentityType::CustomerId,
                old_value: None,
                new_value: Some("C-2".into()),
            },
        ],
    };
    let events = vec![
        Event::IdentityDetached {
            mpid: mpid(9),
            identity: email("a@x"),
            reason: DetachReason::Modified,
        },
        Event::IdentityDetached {
            mpid: mpid(3),
            identity: Identity::new(IdentityType::CustomerId, "C-2"),
            reason: DetachReason::MovedTo { mpid: mpid(9) },
        },
    ];
    check(
        entry(modify, events, Outcome::Modified { mpid: mpid(9) }),
        &format!(
            r#"[{{"IdentityDetached":{{"identity":{{"identity_type":"email","value":"a@x"}},"mpid":9,"reason":"Modified"}}}},
                {{"IdentityDetached":{{"identity":{{"identity_type":"customerid","value":"C-2"}},"mpid":3,
                  "reason":{{"MovedTo":{{"mpid":9}}}}}}}}],
               "outcome":{{"Modified":{{"mpid":9}}}},"recorded_at":1764400000000001,
               "request":{{"environment":"development","operation":{{"Modify":{{"identity_changes":[
                 {{"identity_type":"email","new_value":"b@x","old_value":"a@x"}},
                 {{"identity_type":"customerid","new_value":"C-2","old_value":null}}],"mpid":9}}}},{REQUEST_TAIL}"#
        ),
    );
}

#[test]
fn alias_accepted_and_ignored() {
    let alias = Operation::Alias {
        source: mpid(1),
        destination: mpid(2),
        start: Timestamp::from_unix_millis(1_000),
        end: Timestamp::from_unix_millis(2_000),
    };
    let operation =
        r#""operation":{"Alias":{"destination":2,"end":2000000,"source":1,"start":1000000}}"#;
    let recorded = Event::AliasRecorded {
        source: mpid(1),
        destination: mpid(2),
        start: Timestamp::from_unix_millis(1_000),
        end: Timestamp::from_unix_millis(2_000),
    };
    check(
        entry(alias.clone(), vec![recorded], Outcome::AliasAccepted),
        &format!(
            r#"[{{"AliasRecorded":{{"destination":2,"end":2000000,"source":1,"start":1000000}}}}],
               "outcome":"AliasAccepted","recorded_at":1764400000000001,
               "request":{{"environment":"development",{operation},{REQUEST_TAIL}"#
        ),
    );
    check(
        entry(alias, vec![], Outcome::AliasIgnored { reason: "a\"b".into() }),
        &format!(
            r#"[],"outcome":{{"AliasIgnored":{{"reason":"a\"b"}}}},"recorded_at":1764400000000001,
               "request":{{"environment":"development",{operation},{REQUEST_TAIL}"#
        ),
    );
}

#[test]
fn admin_corrections() {
    let correction = AdminCorrection {
        mpid: mpid(5),
        identities: vec![email("k@x")],
        actor: "ops".into(),
        reason: "kiosk".into(),
    };
    let correction_json = r#"{"actor":"ops","identities":[{"identity_type":"email","value":"k@x"}],"mpid":5,"reason":"kiosk"}"#;
    let detached =
        |reason| Event::IdentityDetached { mpid: mpid(5), identity: email("k@x"), reason };
    check(
        entry(
            Operation::AdminDetach(correction.clone()),
            vec![detached(DetachReason::AdminDetached)],
            Outcome::AdminApplied { new_mpid: None },
        ),
        &format!(
            r#"[{{"IdentityDetached":{{"identity":{{"identity_type":"email","value":"k@x"}},"mpid":5,"reason":"AdminDetached"}}}}],
               "outcome":{{"AdminApplied":{{"new_mpid":null}}}},"recorded_at":1764400000000001,
               "request":{{"environment":"development","operation":{{"AdminDetach":{correction_json}}},{REQUEST_TAIL}"#
        ),
    );
    check(
        entry(
            Operation::AdminSplit(correction),
            vec![
                Event::ProfileCreated { mpid: mpid(6) },
                detached(DetachReason::SplitTo { mpid: mpid(6) }),
                Event::IdentityAttached { mpid: mpid(6), identity: email("k@x") },
            ],
            Outcome::AdminApplied { new_mpid: Some(mpid(6)) },
        ),
        &format!(
            r#"[{{"ProfileCreated":{{"mpid":6}}}},
                {{"IdentityDetached":{{"identity":{{"identity_type":"email","value":"k@x"}},"mpid":5,"reason":{{"SplitTo":{{"mpid":6}}}}}}}},
                {{"IdentityAttached":{{"identity":{{"identity_type":"email","value":"k@x"}},"mpid":6}}}}],
               "outcome":{{"AdminApplied":{{"new_mpid":6}}}},"recorded_at":1764400000000001,
               "request":{{"environment":"development","operation":{{"AdminSplit":{correction_json}}},{REQUEST_TAIL}"#
        ),
    );
}

/// A page: the envelope around the entries.
#[test]
fn page() {
    let entry = entry(
        Operation::Logout(IdentityRequest { known_identities: vec![], previous_mpid: None }),
        vec![],
        Outcome::AliasAccepted,
    );
    let page = FeedPage {
        entries: vec![FeedEntry { entry: FeedRecord::from(&entry), seq: 3 }],
        next_after: 4,
    };
    let before = serde_json::json!({"entries": [{"seq": 3, "entry": entry}], "next_after": 4});
    assert_eq!(serde_json::to_string(&page).unwrap(), before.to_string());
}

proptest! {
    /// Any entry: the same text as the persisted types' serialisation.
    #[test]
    fn any_entry_has_the_json_it_always_had(entry in idgraph_model::arbitrary::entry()) {
        prop_assert_eq!(feed_json(&entry), model_json(&entry));
    }
}

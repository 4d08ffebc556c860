//! Rendering a [`Draft`]: straight to JSON bytes (the fast path behind `write_jsonl`), or into a
//! [`WorkloadRequest`].
//!
//! The fast path writes exactly what `serde_json::to_string(&WorkloadRequest)` writes (same field
//! order, same omissions, no whitespace); `tests.rs` checks this on every kind of line. It exists
//! because building a `WorkloadRequest` costs about ten small allocations per line, which
//! dominates generation time at tens of millions of lines. Generated values are ASCII without
//! quotes or backslashes, so they are written without escaping.

use std::collections::BTreeMap;

use idgraph_model::{IdentityChange, IdentityType};

use crate::draft::{Draft, EmailChange};
use crate::population::{JUNK, Value, push_decimal, push_uuid};
use crate::request::{LineRef, WorkloadRequest};
use crate::rng::mix64;

/// Appends the draft as one JSON object and a `\n`.
pub(crate) fn write_json_line(draft: &Draft, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(draft.op.name().as_bytes());
    out.extend_from_slice(b"\",\"environment\":\"");
    out.extend_from_slice(draft.environment.wire_name().as_bytes());
    out.push(b'"');
    let identities = draft.identities();
    if !identities.as_slice().is_empty() {
        out.extend_from_slice(b",\"known_identities\":{");
        for (idx, (identity_type, value)) in identities.as_slice().iter().enumerate() {
            if idx > 0 {
                out.push(b',');
            }
            push_quoted(out, identity_type.wire_name().as_bytes());
            out.push(b':');
            out.push(b'"');
            value.render(out);
            out.push(b'"');
        }
        out.push(b'}');
    }
    if let Some(line) = draft.previous {
        push_reference(out, b"previous_mpid", line);
    }
    if let Some(change) = draft.change {
        push_reference(out, b"mpid", change.target);
        let (old_value, new_value) = change_values(&change, draft.junk);
        out.extend_from_slice(
            b",\"identity_changes\":[{\"identity_type\":\"email\",\"old_value\":",
        );
        push_optional(out, old_value);
        out.extend_from_slice(b",\"new_value\":");
        push_optional(out, Some(new_value));
        out.extend_from_slice(b"}]");
    }
    out.extend_from_slice(b",\"request_id\":\"");
    push_request_id(out, draft.request_key);
    out.extend_from_slice(b"\"}\n");
}

/// The draft as a typed request.
pub(crate) fn to_request(draft: &Draft) -> WorkloadRequest {
    let known_identities: BTreeMap<IdentityType, String> = draft
        .identities()
        .as_slice()
        .iter()
        .map(|(identity_type, value)| (*identity_type, value.to_string_value()))
        .collect();
    let mut request_id = Vec::with_capacity(36);
    push_request_id(&mut request_id, draft.request_key);
    let identity_changes = match draft.change {
        Some(change) => {
            let (old_value, new_value) = change_values(&change, draft.junk);
            vec![IdentityChange {
                identity_type: IdentityType::Email,
                old_value: old_value.map(Value::to_string_value),
                new_value: Some(new_value.to_string_value()),
            }]
        }
        None => Vec::new(),
    };
    WorkloadRequest {
        op: draft.op,
        environment: draft.environment,
        known_identities,
        previous_mpid: draft.previous.map(|line| LineRef { line }),
        mpid: draft.change.map(|change| LineRef { line: change.target }),
        identity_changes,
        request_id: String::from_utf8(request_id).expect("request IDs are ASCII"),
    }
}

/// The old and new email values of a modify; a junk modify's new value is the placeholder.
fn change_values(change: &EmailChange, junk: Option<usize>) -> (Option<Value>, Value) {
    let email = |version| Value::Email { person_key: change.person_key, version };
    let new_value = match junk {
        Some(junk_idx) => Value::Fixed(JUNK[junk_idx].1),
        None => email(change.new_version),
    };
    (change.old_version.map(email), new_value)
}

/// A lower-case UUID whose low half is the (per-line unique) request key.
fn push_request_id(out: &mut Vec<u8>, request_key: u64) {
    push_uuid(out, mix64(request_key ^ 0x5eed), request_key, false);
}

fn push_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

fn push_reference(out: &mut Vec<u8>, field: &[u8], line: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(field);
    out.extend_from_slice(b"\":{\"ref\":");
    push_decimal(out, line);
    out.push(b'}');
}

fn push_optional(out: &mut Vec<u8>, value: Option<Value>) {
    match value {
        Some(value) => {
            out.push(b'"');
            value.render(out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

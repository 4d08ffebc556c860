//! The hand-written encoder of the write path: an [`Entry`] to bincode's bytes (the format is
//! described in the module docs of `codec.rs`), the same bytes serde + bincode write, without
//! serde's visitor machinery.

use idgraph_model::{DetachReason, Entry, Environment, Event, Identity, Mpid, Operation, Outcome};

use super::EncodeError;
use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;

/// Encodes an entry in bincode's format (see the module docs), by hand: the same bytes as serde +
/// bincode give (a property test checks it), at a fraction of the cost on the write path. Fails only
/// when the entry is larger than [`ENTRY_PAYLOAD_BYTES_MAX`].
pub(crate) fn encode(entry: &Entry) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer(Vec::with_capacity(ENCODED_BYTES_GUESS));
    w.entry(entry);
    if w.0.len() > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(EncodeError::TooLarge { n_bytes: w.0.len() });
    }
    Ok(w.0)
}

/// What most entries encode to, at most: one allocation for them.
const ENCODED_BYTES_GUESS: usize = 256;

/// The writing half of the format the view decoder (`codec/view.rs`) reads.
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, value: u64) {
        if value <= 250 {
            self.0.push(value as u8);
        } else if let Ok(value) = u16::try_from(value) {
            self.0.push(251);
            self.0.extend_from_slice(&value.to_le_bytes());
        } else if let Ok(value) = u32::try_from(value) {
            self.0.push(252);
            self.0.extend_from_slice(&value.to_le_bytes());
        } else {
            self.0.push(253);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn i64(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    fn variant(&mut self, index: u32) {
        self.varint(u64::from(index));
    }

    fn u8(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    fn str(&mut self, value: &str) {
        self.len(value.len());
        self.0.extend_from_slice(value.as_bytes());
    }

    fn optional_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
        }
    }

    fn mpid(&mut self, mpid: Mpid) {
        self.i64(mpid.get());
    }

    fn optional_mpid(&mut self, mpid: Option<Mpid>) {
        match mpid {
            None => self.u8(0),
            Some(mpid) => {
                self.u8(1);
                self.mpid(mpid);
            }
        }
    }

    fn identity(&mut self, identity: &Identity) {
        self.u8(identity.identity_type.code());
        self.str(&identity.value);
    }

    fn identities(&mut self, identities: &[Identity]) {
        self.len(identities.len());
        for identity in identities {
            self.identity(identity);
        }
    }

    fn entry(&mut self, entry: &Entry) {
        self.i64(entry.recorded_at.0);
        let request = &entry.request;
        self.optional_str(request.request_id.as_deref());
        self.str(&request.workspace);
        self.str(&request.scope);
        self.variant(match request.environment {
            Environment::Production => 0,
            Environment::Development => 1,
        });
        self.operation(&request.operation);
        self.len(entry.events.len());
        for event in &entry.events {
            self.event(event);
        }
        self.outcome(&entry.outcome);
    }

    fn operation(&mut self, operation: &Operation) {
        match operation {
            Operation::Identify(request)
            | Operation::Login(request)
            | Operation::Logout(request) => {
                self.variant(match operation {
                    Operation::Identify(_) => 0,
                    Operation::Login(_) => 1,
                    _ => 2,
                });
                self.identities(&request.known_identities);
                self.optional_mpid(request.previous_mpid);
            }
            Operation::Modify { mpid, identity_changes } => {
                self.variant(3);
                self.mpid(*mpid);
                self.len(identity_changes.len());
                for change in identity_changes {
                    self.u8(change.identity_type.code());
                    self.optional_str(change.old_value.as_deref());
                    self.optional_str(change.new_value.as_deref());
                }
            }
            Operation::Alias { source, destination, start, end } => {
                self.variant(4);
                self.mpid(*source);
                self.mpid(*destination);
                self.i64(start.0);
                self.i64(end.0);
            }
            Operation::AdminDetach(correction) | Operation::AdminSplit(correction) => {
                self.variant(if matches!(operation, Operation::AdminDetach(_)) { 5 } else { 6 });
                self.mpid(correction.mpid);
                self.identities(&correction.identities);
                self.str(&correction.actor);
                self.str(&correction.reason);
            }
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::ProfileCreated { mpid } => {
                self.variant(0);
                self.mpid(*mpid);
            }
            Event::IdentityAttached { mpid, identity } => {
                self.variant(1);
                self.mpid(*mpid);
                self.identity(identity);
            }
            Event::IdentityDetached { mpid, identity, reason } => {
                self.variant(2);
                self.mpid(*mpid);
                self.identity(identity);
                match reason {
                    DetachReason::Modified => self.variant(0),
                    DetachReason::MovedTo { mpid } => {
                        self.variant(1);
                        self.mpid(*mpid);
                    }
                    DetachReason::AdminDetached => self.variant(2),
                    DetachReason::SplitTo { mpid } => {
                        self.variant(3);
                        self.mpid(*mpid);
                    }
                }
            }
            Event::AliasRecorded { source, destination, start, end } => {
                self.variant(3);
                self.mpid(*source);
                self.mpid(*destination);
                self.i64(start.0);
                self.i64(end.0);
            }
        }
    }

    fn outcome(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Resolved { mpid, is_logged_in, matched } => {
                self.variant(0);
                self.mpid(*mpid);
                self.bool(*is_logged_in);
                self.len(matched.len());
                for identity_type in matched {
                    self.u8(identity_type.code());
                }
            }
            Outcome::Modified { mpid } => {
                self.variant(1);
                self.mpid(*mpid);
            }
            Outcome::AliasAccepted => self.variant(2),
            Outcome::AliasIgnored { reason } => {
                self.variant(3);
                self.str(reason);
            }
            Outcome::AdminApplied { new_mpid } => {
                self.variant(4);
                self.optional_mpid(*new_mpid);
            }
        }
    }
}

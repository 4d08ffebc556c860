//! The one place that knows how an [`Entry`] becomes bytes: bincode 2.0.1's encoding of the serde
//! data model, codec id 1.
//!
//! bincode is pinned exactly (`=2.0.1`): its format is positional and version-sensitive, and the
//! crate is unmaintained (RUSTSEC-2025-0141). `docs/adr/0001-event-encoding.md` records the decision
//! and the exit: a new codec gets a new id, and records keep saying which codec wrote them.
//!
//! The hot paths do not go through serde. Appends encode by hand ([`encode`]) and replay decodes
//! borrowed [`EntryView`]s by hand ([`decode_view`]): serde's visitor machinery cost more than half
//! of either. serde + bincode remain the reference, and decode owned entries ([`decode`]). The
//! format is bincode's standard configuration with variable-length integers:
//! - an unsigned integer up to 250 is one byte; 251, 252 and 253 announce a little-endian `u16`,
//!   `u32` and `u64`; a signed one is zigzag-encoded first;
//! - `u8` and `bool` are one byte, an `Option` is a tag byte (0 or 1) and the value;
//! - a string or a sequence is its length (an unsigned integer) and its items;
//! - a struct is its fields in order, an enum its variant index (an unsigned integer) and fields.
//!
//! The tests below check that the encoder writes serde's bytes for arbitrary entries (and for the
//! long strings those do not reach) and that views of arbitrary entries agree with serde's decoding,
//! so neither can drift from the reference unnoticed.

use idgraph_model::{
    DetachReason, Entry, EntryView, Environment, Event, EventView, Identity, IdentityType,
    IdentityView, Mpid, Operation, Outcome, OutcomeView, RequestView, Timestamp,
};
use smallvec::SmallVec;

use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;

/// The codec id stored in every record header.
pub(crate) const CODEC_BINCODE2_SERDE: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<ENTRY_PAYLOAD_BYTES_MAX>()
}

/// Encodes an entry in bincode's format (see the module docs), by hand: the same bytes as serde +
/// bincode give (a property test checks it), at a fraction of the cost on the write path. Fails only
/// when the entry is larger than [`ENTRY_PAYLOAD_BYTES_MAX`].
pub(crate) fn encode(entry: &Entry) -> Result<Vec<u8>, String> {
    let mut w = Writer(Vec::with_capacity(ENCODED_BYTES_GUESS));
    w.entry(entry);
    if w.0.len() > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(format!(
            "the entry encodes to {} bytes, more than the {ENTRY_PAYLOAD_BYTES_MAX} bytes an entry may take",
            w.0.len()
        ));
    }
    Ok(w.0)
}

/// What most entries encode to, at most: one allocation for them.
const ENCODED_BYTES_GUESS: usize = 256;

/// The writing half of the format [`Reader`] reads.
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

/// Decodes an entry, rejecting trailing bytes.
pub(crate) fn decode(payload: &[u8]) -> Result<Entry, String> {
    let (entry, n_read): (Entry, usize) =
        bincode::serde::decode_from_slice(payload, config()).map_err(|err| err.to_string())?;
    if n_read != payload.len() {
        return Err(format!("{} trailing bytes after the entry", payload.len() - n_read));
    }
    Ok(entry)
}

/// Decodes a borrowed view of an entry (strings point into `payload`), rejecting trailing bytes.
/// The request id, the workspace and the operation's arguments are walked over, not checked as
/// UTF-8 (the record's checksum already vouches for them; [`decode`] checks everything).
pub(crate) fn decode_view(payload: &[u8]) -> Result<EntryView<'_>, String> {
    let mut r = Reader { bytes: payload, at: 0 };
    let view = r.entry().map_err(|err| err.to_string())?;
    if r.at != payload.len() {
        return Err(format!("{} trailing bytes after the entry", payload.len() - r.at));
    }
    Ok(view)
}

/// A cursor over an entry's bytes, in bincode's format (see the module docs).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// What is wrong with a record a view is decoded from, and where: cheap to build (no message until
/// it is displayed), so the reader's small functions stay small enough to inline.
#[derive(Debug)]
struct Malformed {
    what: &'static str,
    value: u64,
    at: usize,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} at offset {}", self.what, self.value, self.at)
    }
}

type Decoded<T> = Result<T, Malformed>;

fn malformed<T>(what: &'static str, value: impl Into<u64>, at: usize) -> Decoded<T> {
    Err(Malformed { what, value: value.into(), at })
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let taken = self.at.checked_add(n).and_then(|end| self.bytes.get(self.at..end));
        let Some(taken) = taken else {
            return malformed("entry ends early: bytes wanted", n as u64, self.at);
        };
        self.at += n;
        Ok(taken)
    }

    #[inline]
    fn u8(&mut self) -> Decoded<u8> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    #[inline]
    fn varint(&mut self) -> Decoded<u64> {
        match self.u8()? {
            small @ 0..=250 => Ok(u64::from(small)),
            251 => Ok(u64::from(u16::from_le_bytes(self.array()?))),
            252 => Ok(u64::from(u32::from_le_bytes(self.array()?))),
            253 => Ok(u64::from_le_bytes(self.array()?)),
            marker => malformed("integer marker", marker, self.at - 1),
        }
    }

    #[inline]
    fn i64(&mut self) -> Decoded<i64> {
        let zigzag = self.varint()?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    /// An enum's variant index, below `n_variants`.
    #[inline]
    fn variant(&mut self, n_variants: u64, what: &'static str) -> Decoded<u64> {
        let at = self.at;
        match self.varint()? {
            index if index < n_variants => Ok(index),
            index => malformed(what, index, at),
        }
    }

    #[inline]
    fn len(&mut self) -> Decoded<usize> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.bytes.len() - self.at => Ok(len),
            _ => malformed("length past the end of the entry", len, self.at),
        }
    }

    #[inline]
    fn bool(&mut self) -> Decoded<bool> {
        self.zero_or_one("bool byte")
    }

    /// An `Option`'s tag: whether a value follows.
    #[inline]
    fn some(&mut self) -> Decoded<bool> {
        self.zero_or_one("option tag")
    }

    /// A byte that must be 0 or 1 (`what` names it in the error).
    #[inline]
    fn zero_or_one(&mut self, what: &'static str) -> Decoded<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => malformed(what, byte, self.at - 1),
        }
    }

    #[inline]
    fn bytes(&mut self) -> Decoded<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    #[inline]
    fn str(&mut self) -> Decoded<&'a str> {
        let at = self.at;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes)
            .or_else(|_| malformed("not UTF-8: string of length", bytes.len() as u64, at))
    }

    #[inline]
    fn timestamp(&mut self) -> Decoded<Timestamp> {
        Ok(Timestamp(self.i64()?))
    }

    #[inline]
    fn mpid(&mut self) -> Decoded<Mpid> {
        let at = self.at;
        Mpid::new(self.i64()?).map_or_else(|| malformed("MPID", 0u8, at), Ok)
    }

    #[inline]
    fn identity_type(&mut self) -> Decoded<IdentityType> {
        let code = self.u8()?;
        IdentityType::from_code(code)
            .map_or_else(|| malformed("identity type code", code, self.at - 1), Ok)
    }

    #[inline]
    fn identity(&mut self) -> Decoded<IdentityView<'a>> {
        Ok(IdentityView { identity_type: self.identity_type()?, value: self.str()? })
    }

    /// A `Vec<Identity>`, walked over.
    #[inline]
    fn skip_identities(&mut self) -> Decoded<()> {
        for _ in 0..self.len()? {
            self.identity_type()?;
            self.bytes()?;
        }
        Ok(())
    }

    /// An `Option<String>`, walked over.
    #[inline]
    fn skip_optional_string(&mut self) -> Decoded<()> {
        if self.some()? {
            self.bytes()?;
        }
        Ok(())
    }

    fn entry(&mut self) -> Decoded<EntryView<'a>> {
        let recorded_at = self.timestamp()?;
        let request = self.request()?;
        let n_events = self.len()?;
        let mut events = SmallVec::with_capacity(n_events);
        for _ in 0..n_events {
            events.push(self.event()?);
        }
        let outcome = self.outcome()?;
        Ok(EntryView { recorded_at, request, events, outcome })
    }

    fn request(&mut self) -> Decoded<RequestView<'a>> {
        self.skip_optional_string()?; // request id
        self.bytes()?; // workspace
        let scope = self.str()?;
        let environment = match self.variant(2, "unknown environment variant")? {
            0 => Environment::Production,
            _ => Environment::Development,
        };
        self.skip_operation()?;
        Ok(RequestView { scope, environment })
    }

    fn skip_operation(&mut self) -> Decoded<()> {
        match self.variant(7, "unknown operation variant")? {
            // Identify, Login, Logout (an `IdentityRequest`).
            0..=2 => {
                self.skip_identities()?;
                if self.some()? {
                    self.mpid()?;
                }
            }
            // Modify.
            3 => {
                self.mpid()?;
                for _ in 0..self.len()? {
                    self.identity_type()?;
                    self.skip_optional_string()?;
                    self.skip_optional_string()?;
                }
            }
            // Alias.
            4 => {
                self.mpid()?;
                self.mpid()?;
                self.timestamp()?;
                self.timestamp()?;
            }
            // AdminDetach, AdminSplit (an `AdminCorrection`).
            _ => {
                self.mpid()?;
                self.skip_identities()?;
                self.bytes()?; // actor
                self.bytes()?; // reason
            }
        }
        Ok(())
    }

    fn event(&mut self) -> Decoded<EventView<'a>> {
        Ok(match self.variant(4, "unknown event variant")? {
            0 => EventView::ProfileCreated { mpid: self.mpid()? },
            1 => EventView::IdentityAttached { mpid: self.mpid()?, identity: self.identity()? },
            2 => EventView::IdentityDetached {
                mpid: self.mpid()?,
                identity: self.identity()?,
                reason: match self.variant(4, "unknown detach reason variant")? {
                    0 => DetachReason::Modified,
                    1 => DetachReason::MovedTo { mpid: self.mpid()? },
                    2 => DetachReason::AdminDetached,
                    _ => DetachReason::SplitTo { mpid: self.mpid()? },
                },
            },
            _ => EventView::AliasRecorded {
                source: self.mpid()?,
                destination: self.mpid()?,
                start: self.timestamp()?,
                end: self.timestamp()?,
            },
        })
    }

    fn outcome(&mut self) -> Decoded<OutcomeView> {
        let seen_mpid = match self.variant(5, "unknown outcome variant")? {
            // Resolved.
            0 => {
                let mpid = self.mpid()?;
                self.bool()?; // is_logged_in
                for _ in 0..self.len()? {
                    self.identity_type()?; // matched
                }
                Some(mpid)
            }
            // Modified.
            1 => Some(self.mpid()?),
            // AliasAccepted.
            2 => None,
            // AliasIgnored.
            3 => {
                self.bytes()?;
                None
            }
            // AdminApplied.
            _ => {
                if self.some()? {
                    self.mpid()?;
                }
                None
            }
        };
        Ok(OutcomeView { seen_mpid })
    }
}

#[cfg(test)]
mod tests {
    use idgraph_model::arbitrary;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_entry_round_trips(entry in arbitrary::entry()) {
            let bytes = encode(&entry).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), entry);
        }

        /// The hand-written encoder writes exactly what serde + bincode write, so records written
        /// by either read the same.
        #[test]
        fn the_encoder_writes_serdes_bytes(entry in arbitrary::entry()) {
            let by_serde = bincode::serde::encode_to_vec(&entry, config()).unwrap();
            prop_assert_eq!(encode(&entry).unwrap(), by_serde);
        }

        /// The view mirrors the schema: it consumes exactly the bytes of every entry and keeps
        /// what the owned decoding says.
        #[test]
        fn every_entry_decodes_as_an_agreeing_view(entry in arbitrary::entry()) {
            let bytes = encode(&entry).unwrap();
            let view = decode_view(&bytes).unwrap();
            prop_assert!(view.agrees_with(&entry), "{view:?}\n{entry:?}");
        }

        #[test]
        fn decoding_garbage_as_a_view_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_view(&bytes);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let entry = proptest::strategy::ValueTree::current(
            &arbitrary::entry()
                .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
                .unwrap(),
        );
        let mut bytes = encode(&entry).unwrap();
        bytes.push(0);
        assert!(decode(&bytes).unwrap_err().contains("trailing"));
        assert!(decode_view(&bytes).unwrap_err().contains("trailing"));
    }

    /// Lengths of 251 bytes and more take the longer integer forms, which the generated entries
    /// (short strings) do not reach; an entry over the limit is refused.
    #[test]
    fn long_strings_encode_as_serde_does_and_oversized_entries_are_refused() {
        let mut entry = proptest::strategy::ValueTree::current(
            &arbitrary::entry()
                .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
                .unwrap(),
        );
        for len in [250, 251, 300, 65_535, 65_536, 70_000] {
            entry.request.workspace = "w".repeat(len);
            let by_serde = bincode::serde::encode_to_vec(&entry, config()).unwrap();
            assert_eq!(encode(&entry).unwrap(), by_serde, "length {len}");
            assert_eq!(decode(&by_serde).unwrap(), entry);
            assert!(decode_view(&by_serde).unwrap().agrees_with(&entry));
        }
        entry.request.workspace = "w".repeat(ENTRY_PAYLOAD_BYTES_MAX);
        let err = encode(&entry).unwrap_err();
        assert!(err.contains("more than the 1048576 bytes"), "{err}");
    }

    #[test]
    fn a_damaged_view_says_what_is_wrong_and_where() {
        let entry = proptest::strategy::ValueTree::current(
            &arbitrary::entry()
                .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
                .unwrap(),
        );
        let bytes = encode(&entry).unwrap();
        let err = decode_view(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(
            (err.contains("ends early") || err.contains("past the end"))
                && err.contains("at offset"),
            "{err}"
        );
        // The request id's `Option` tag is the byte after the timestamp.
        let mut bytes = bytes;
        let tag_at = if bytes[0] < 251 { 1 } else { 1 + [2, 4, 8][usize::from(bytes[0] - 251)] };
        bytes[tag_at] = 7;
        let err = decode_view(&bytes).unwrap_err();
        assert_eq!(err, format!("option tag 7 at offset {tag_at}"));
    }
}

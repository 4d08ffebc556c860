//! The codec's error types: why an entry cannot be encoded ([`EncodeError`]) and why a payload does
//! not decode ([`DecodeError`], with the [`Field`] that held an invalid tag or value).

use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;

/// Why an entry cannot be encoded. It leaves the crate as [`crate::Error::Rejected`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The entry encodes to more than [`ENTRY_PAYLOAD_BYTES_MAX`] bytes.
    #[error(
        "the entry encodes to {n_bytes} bytes, more than the {ENTRY_PAYLOAD_BYTES_MAX} bytes an entry may take"
    )]
    TooLarge { n_bytes: usize },
}

/// Why a payload does not decode as an entry: one variant per kind of problem, shared by the owned
/// decoder ([`decode`](super::decode), whose offsets bincode does not report) and the view decoder
/// ([`decode_view`](super::decode_view)). Small and cheap to build (no message until it is
/// displayed), so the view reader's small functions stay small enough to inline. It leaves the crate as
/// [`crate::Error::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The payload ends before the entry does.
    #[error("entry ends early: {n_bytes_missing} more bytes wanted")]
    Truncated { n_bytes_missing: u64 },
    /// A string's or a sequence's length reaches past the end of the payload.
    #[error("length {len} at offset {at} reaches past the end of the entry")]
    LengthPastEnd { len: u64, at: usize },
    /// A tag (integer marker, enum variant index, option tag, bool) or a value (identity type
    /// code, MPID) that is out of its range.
    #[error("{field} {value}{}", at_offset(.at))]
    Invalid { field: Field, value: u64, at: Option<usize> },
    /// A string that is not UTF-8.
    #[error("not UTF-8: a string{}", at_offset(.at))]
    NotUtf8 { at: Option<usize> },
    /// Bytes are left after the entry.
    #[error("{n_bytes} trailing bytes after the entry")]
    TrailingBytes { n_bytes: usize },
    /// The entry claims more than [`ENTRY_PAYLOAD_BYTES_MAX`] bytes.
    #[error("the entry is larger than the {ENTRY_PAYLOAD_BYTES_MAX} bytes an entry may take")]
    TooLarge,
    /// Anything else serde + bincode refuse (owned decoding only), as they describe it.
    #[error("{0}")]
    Other(String),
}

// The view reader returns `Result<_, DecodeError>` from every small read: a larger error would
// make every one of those results larger (the error it replaced was 32 bytes too).
const _: () = assert!(std::mem::size_of::<DecodeError>() <= 32, "keep DecodeError small");

fn at_offset(at: &Option<usize>) -> String {
    at.map(|at| format!(" at offset {at}")).unwrap_or_default()
}

/// What a decoder was reading when it found an invalid tag or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// The first byte of a variable-length integer (250 or below, or 251 to 253).
    IntegerMarker,
    /// `Environment`'s variant index.
    EnvironmentVariant,
    /// `Operation`'s variant index.
    OperationVariant,
    /// `Event`'s variant index.
    EventVariant,
    /// `DetachReason`'s variant index.
    DetachReasonVariant,
    /// `Outcome`'s variant index.
    OutcomeVariant,
    /// An `Option`'s tag (0 or 1).
    OptionTag,
    /// A `bool` (0 or 1).
    Bool,
    /// An identity type's one-byte code.
    IdentityTypeCode,
    /// An MPID (never 0).
    Mpid,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::IntegerMarker => "integer marker",
            Field::EnvironmentVariant => "unknown environment variant",
            Field::OperationVariant => "unknown operation variant",
            Field::EventVariant => "unknown event variant",
            Field::DetachReasonVariant => "unknown detach reason variant",
            Field::OutcomeVariant => "unknown outcome variant",
            Field::OptionTag => "option tag",
            Field::Bool => "bool byte",
            Field::IdentityTypeCode => "identity type code",
            Field::Mpid => "MPID",
        })
    }
}

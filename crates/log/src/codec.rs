//! The one place that knows how an [`Entry`] becomes bytes: bincode 2.0.1's encoding of the serde
//! data model, codec id 1.
//!
//! bincode is pinned exactly (`=2.0.1`): its format is positional and version-sensitive, and the
//! crate is unmaintained (RUSTSEC-2025-0141). `docs/adr/0001-event-encoding.md` records the decision
//! and the exit: a new codec gets a new id, and records keep saying which codec wrote them.
//!
//! The hot paths do not go through serde. Appends encode by hand ([`encode()`]) and replay decodes
//! borrowed views ([`idgraph_model::EntryView`]) by hand ([`decode_view`]): serde's visitor
//! machinery cost more than half of either. serde + bincode remain the reference, and decode owned
//! entries ([`decode`]). The format is bincode's standard configuration with variable-length
//! integers:
//! - an unsigned integer up to 250 is one byte; 251, 252 and 253 announce a little-endian `u16`,
//!   `u32` and `u64`; a signed one is zigzag-encoded first;
//! - `u8` and `bool` are one byte, an `Option` is a tag byte (0 or 1) and the value;
//! - a string or a sequence is its length (an unsigned integer) and its items;
//! - a struct is its fields in order, an enum its variant index (an unsigned integer) and fields.
//!
//! The module is split by job: the hand-written encoder (`codec/encode.rs`), the borrowed view
//! decoder (`codec/view.rs`), the error types (`codec/error.rs`) and, here, the owned decoder
//! through serde + bincode. The tests (`codec/tests.rs`) check that the encoder writes serde's
//! bytes for arbitrary entries (and for the long strings those do not reach) and that views of
//! arbitrary entries agree with serde's decoding, so neither can drift from the reference
//! unnoticed.

mod encode;
mod error;
#[cfg(test)]
mod tests;
mod view;

use idgraph_model::Entry;

use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;
pub(crate) use encode::encode;
pub(crate) use error::{DecodeError, EncodeError, Field};
pub(crate) use view::decode_view;

/// The codec id stored in every record header.
pub(crate) const CODEC_BINCODE2_SERDE: u8 = 1;

pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<ENTRY_PAYLOAD_BYTES_MAX>()
}

/// Decodes an entry, rejecting trailing bytes.
pub(crate) fn decode(payload: &[u8]) -> Result<Entry, DecodeError> {
    // serde + bincode reserve what a length field claims (up to bincode's limit, 1 MiB) before
    // they find the payload shorter: a 124-byte record could make every read allocate a megabyte.
    // The view decoder checks every claim against the bytes left and allocates nothing, so it
    // vets the payload first; only a payload it accepts reaches serde.
    decode_view(payload)?;
    let (entry, n_read): (Entry, usize) =
        bincode::serde::decode_from_slice(payload, config()).map_err(from_bincode)?;
    if n_read != payload.len() {
        return Err(DecodeError::TrailingBytes { n_bytes: payload.len() - n_read });
    }
    Ok(entry)
}

/// Sorts bincode's errors into [`DecodeError`]'s kinds (bincode reports no offsets).
fn from_bincode(err: bincode::error::DecodeError) -> DecodeError {
    use bincode::error::DecodeError as Bincode;
    let field = |type_name: &str| match type_name {
        "Environment" => Some(Field::EnvironmentVariant),
        "Operation" => Some(Field::OperationVariant),
        "Event" => Some(Field::EventVariant),
        "DetachReason" => Some(Field::DetachReasonVariant),
        "Outcome" => Some(Field::OutcomeVariant),
        _ => None,
    };
    match err {
        Bincode::UnexpectedEnd { additional } => {
            DecodeError::Truncated { n_bytes_missing: additional as u64 }
        }
        Bincode::LimitExceeded => DecodeError::TooLarge,
        Bincode::Utf8 { .. } => DecodeError::NotUtf8 { at: None },
        Bincode::InvalidBooleanValue(byte) => {
            DecodeError::Invalid { field: Field::Bool, value: u64::from(byte), at: None }
        }
        Bincode::UnexpectedVariant { type_name, found, .. } => match field(type_name) {
            Some(field) => DecodeError::Invalid { field, value: u64::from(found), at: None },
            None => DecodeError::Other(err.to_string()),
        },
        other => DecodeError::Other(other.to_string()),
    }
}

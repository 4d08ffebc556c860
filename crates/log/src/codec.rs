//! The one place that knows how an [`Entry`] becomes bytes: serde + bincode 2.0.1, codec id 1.
//!
//! bincode is pinned exactly (`=2.0.1`): its format is positional and version-sensitive, and the
//! crate is unmaintained (RUSTSEC-2025-0141). `docs/adr/0001-event-encoding.md` records the decision
//! and the exit: a new codec gets a new id, and records keep saying which codec wrote them.

use idgraph_model::{Entry, EntryView};

use crate::limits::ENTRY_PAYLOAD_BYTES_MAX;

/// The codec id stored in every record header.
pub(crate) const CODEC_BINCODE2_SERDE: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<ENTRY_PAYLOAD_BYTES_MAX>()
}

/// Encodes an entry. Fails only when the entry is larger than [`ENTRY_PAYLOAD_BYTES_MAX`].
pub(crate) fn encode(entry: &Entry) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(entry, config()).map_err(|err| err.to_string())
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
pub(crate) fn decode_view(payload: &[u8]) -> Result<EntryView<'_>, String> {
    let (view, n_read): (EntryView<'_>, usize) =
        bincode::serde::borrow_decode_from_slice(payload, config())
            .map_err(|err| err.to_string())?;
    if n_read != payload.len() {
        return Err(format!("{} trailing bytes after the entry", payload.len() - n_read));
    }
    Ok(view)
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
    }
}

//! Tests of the codec: the hand-written encoder writes serde + bincode's bytes, the view decoder
//! agrees with serde's decoding, garbage never makes either decoder panic, and errors say what is
//! wrong and where.

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
    assert_eq!(decode(&bytes).unwrap_err(), DecodeError::TrailingBytes { n_bytes: 1 });
    assert_eq!(decode_view(&bytes).unwrap_err(), DecodeError::TrailingBytes { n_bytes: 1 });
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
    assert!(matches!(err, EncodeError::TooLarge { n_bytes } if n_bytes > ENTRY_PAYLOAD_BYTES_MAX));
    assert!(err.to_string().contains("more than the 1048576 bytes"), "{err}");
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
        matches!(
            err,
            DecodeError::Truncated { n_bytes_missing: 1.. } | DecodeError::LengthPastEnd { .. }
        ),
        "{err}"
    );
    // The owned decoder vets the payload with the view decoder first: the same error.
    assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap_err(), err);
    // The request id's `Option` tag is the byte after the timestamp.
    let mut bytes = bytes;
    let tag_at = if bytes[0] < 251 { 1 } else { 1 + [2, 4, 8][usize::from(bytes[0] - 251)] };
    bytes[tag_at] = 7;
    let err = decode_view(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::Invalid { field: Field::OptionTag, value: 7, at: Some(tag_at) });
    assert_eq!(err.to_string(), format!("option tag 7 at offset {tag_at}"));
}

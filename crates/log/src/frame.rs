//! Record framing: every stored record is wrapped in a 12-byte header that says how to read it and
//! lets a reader prove it is intact before decoding a single byte of it.
//!
//! ```text
//! offset size field
//!      0    1 format_version   1 = one entry (written before commit groups), 2 = a commit group
//!      1    1 codec_id         1 = serde + bincode 2.0.1 (standard config, varint, little endian)
//!      2    2 flags            0 (reserved; a reader rejects non-zero flags)
//!      4    4 payload_len      u32 little endian
//!      8    4 crc32c           u32 little endian, CRC32C (Castagnoli) of
//!                              payload ‖ seq as u64 little endian ‖ bytes 0..8 of this header
//!     12    n payload          version 1: the encoded entry; version 2: a group (`group.rs`)
//! ```
//!
//! `seq` is the record's key: the sequence of its (first) entry. Covering it in the checksum means
//! a record copied to the wrong key is caught as corruption, not served as other entries. See
//! `docs/log-format.md`.

use idgraph_model::Seq;

/// The version of a record holding one entry: what builds before commit groups wrote. Still read,
/// as a group of one.
pub(crate) const VERSION_ENTRY: u8 = 1;
/// The version of a record holding a commit group: what this build writes.
pub(crate) const VERSION_GROUP: u8 = 2;
/// Header length in bytes.
pub(crate) const HEADER_LEN: usize = 12;

/// Frames a payload of format `version` for storage at `seq`. `payload_crc` is `crc32c(payload)`.
pub(crate) fn frame(
    seq: Seq,
    version: u8,
    codec_id: u8,
    payload: &[u8],
    payload_crc: u32,
) -> Vec<u8> {
    assert!(payload.len() <= u32::MAX as usize, "the length is framed as u32");
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.push(version);
    record.push(codec_id);
    record.extend_from_slice(&0u16.to_le_bytes());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = finish_crc(payload_crc, seq, &record);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn finish_crc(payload_crc: u32, seq: Seq, header_prefix: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(payload_crc, &seq.0.to_le_bytes());
    crc32c::crc32c_append(crc, header_prefix)
}

/// Why a stored record is refused: one variant per kind of damage, checked in this order.
/// It leaves the crate as [`crate::Error::Corrupt`] (its message is the detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The record is shorter than its header.
    #[error("record is {n_bytes} bytes, shorter than its header")]
    TruncatedHeader { n_bytes: usize },
    /// The header names a format version this build does not read.
    #[error(
        "unsupported format version {version} (this build reads {VERSION_ENTRY} and {VERSION_GROUP})"
    )]
    UnknownVersion { version: u8 },
    /// The reserved flags are not zero.
    #[error("reserved flags are set ({flags:#06x})")]
    ReservedFlags { flags: u16 },
    /// The record holds fewer payload bytes than its header says.
    #[error("header says {n_bytes_framed} payload bytes, record holds {n_bytes}")]
    TruncatedPayload { n_bytes_framed: u32, n_bytes: usize },
    /// The record holds more payload bytes than its header says.
    #[error("header says {n_bytes_framed} payload bytes, record holds {n_bytes}")]
    TrailingBytes { n_bytes_framed: u32, n_bytes: usize },
    /// The checksum (over payload, sequence and header) does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum { stored: u32, computed: u32 },
    /// An intact group record whose table of entries does not describe its payload.
    #[error("malformed commit group: {detail}")]
    BadGroup { detail: String },
    /// An intact record, written with another codec than the reader expects.
    #[error("unknown codec id {codec_id} (expected {expected})")]
    UnknownCodec { codec_id: u8, expected: u8 },
}

/// Checks a stored record read back from `seq`, and returns its format version and payload only if
/// it is intact and was written with `codec_id`.
pub(crate) fn verify(seq: Seq, record: &[u8], codec_id: u8) -> Result<(u8, &[u8]), FrameError> {
    let (header, payload) = record
        .split_at_checked(HEADER_LEN)
        .ok_or(FrameError::TruncatedHeader { n_bytes: record.len() })?;
    let [version, found_codec_id, flags0, flags1, l0, l1, l2, l3, c0, c1, c2, c3] = *header else {
        return Err(FrameError::TruncatedHeader { n_bytes: record.len() });
    };
    if version != VERSION_ENTRY && version != VERSION_GROUP {
        return Err(FrameError::UnknownVersion { version });
    }
    let flags = u16::from_le_bytes([flags0, flags1]);
    if flags != 0 {
        return Err(FrameError::ReservedFlags { flags });
    }
    let n_bytes_framed = u32::from_le_bytes([l0, l1, l2, l3]);
    let n_bytes = payload.len();
    match (n_bytes_framed as usize).cmp(&n_bytes) {
        std::cmp::Ordering::Greater => {
            return Err(FrameError::TruncatedPayload { n_bytes_framed, n_bytes });
        }
        std::cmp::Ordering::Less => {
            return Err(FrameError::TrailingBytes { n_bytes_framed, n_bytes });
        }
        std::cmp::Ordering::Equal => {}
    }
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let header_prefix = header.get(..8).unwrap_or_default();
    let computed = finish_crc(crc32c::crc32c(payload), seq, header_prefix);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    if found_codec_id != codec_id {
        return Err(FrameError::UnknownCodec { codec_id: found_codec_id, expected: codec_id });
    }
    Ok((version, payload))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn framed(seq: u64, payload: &[u8]) -> Vec<u8> {
        frame(Seq(seq), VERSION_ENTRY, 1, payload, crc32c::crc32c(payload))
    }

    #[test]
    fn layout_matches_the_documented_bytes() {
        let record = framed(7, b"abc");
        assert_eq!(&record[..8], &[1, 1, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&record[12..], b"abc");
        assert_eq!(verify(Seq(7), &record, 1).unwrap(), (VERSION_ENTRY, &b"abc"[..]));
        assert_eq!(
            verify(Seq(7), &record, 2).unwrap_err(),
            FrameError::UnknownCodec { codec_id: 1, expected: 2 }
        );
    }

    #[test]
    fn a_record_read_at_the_wrong_sequence_is_corrupt() {
        let record = framed(7, b"abc");
        assert!(matches!(verify(Seq(8), &record, 1), Err(FrameError::BadChecksum { .. })));
    }

    #[test]
    fn truncated_and_empty_records_are_corrupt() {
        let record = framed(1, b"hello");
        for len in 0..record.len() {
            let err = verify(Seq(1), &record[..len], 1).unwrap_err();
            if len < HEADER_LEN {
                assert_eq!(err, FrameError::TruncatedHeader { n_bytes: len });
            } else {
                let n_bytes = len - HEADER_LEN;
                assert_eq!(err, FrameError::TruncatedPayload { n_bytes_framed: 5, n_bytes });
            }
        }
        let mut longer = record.clone();
        longer.push(0);
        assert_eq!(
            verify(Seq(1), &longer, 1).unwrap_err(),
            FrameError::TrailingBytes { n_bytes_framed: 5, n_bytes: 6 }
        );
    }

    #[test]
    fn version_and_flags_are_checked_before_the_checksum() {
        let mut record = framed(3, b"abc");
        record[0] = 3;
        assert_eq!(
            verify(Seq(3), &record, 1).unwrap_err(),
            FrameError::UnknownVersion { version: 3 }
        );
        let mut record = framed(3, b"abc");
        record[3] = 0x80;
        let err = verify(Seq(3), &record, 1).unwrap_err();
        assert_eq!(err, FrameError::ReservedFlags { flags: 0x8000 });
        assert_eq!(err.to_string(), "reserved flags are set (0x8000)");
    }

    proptest! {
        #[test]
        fn any_single_byte_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            position in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let mut record = framed(42, &payload);
            let position = position.index(record.len());
            record[position] ^= mask;
            prop_assert!(verify(Seq(42), &record, 1).is_err());
        }
    }
}

//! Record framing: every stored entry is wrapped in a 12-byte header that says how to read it and
//! lets a reader prove it is intact before decoding a single byte of it.
//!
//! ```text
//! offset size field
//!      0    1 format_version   1
//!      1    1 codec_id         1 = serde + bincode 2.0.1 (standard config, varint, little endian)
//!      2    2 flags            0 (reserved; a reader rejects non-zero flags)
//!      4    4 payload_len      u32 little endian (entries: at most ENTRY_PAYLOAD_BYTES_MAX)
//!      8    4 crc32c           u32 little endian, CRC32C (Castagnoli) of
//!                              payload ‖ seq as u64 little endian ‖ bytes 0..8 of this header
//!     12    n payload          the encoded entry
//! ```
//!
//! Covering the sequence number in the checksum means a record copied to the wrong key is caught
//! as corruption, not served as another entry. See `docs/log-format.md`.

use idgraph_model::Seq;

/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Header length in bytes.
pub(crate) const HEADER_LEN: usize = 12;

/// Frames an encoded payload for storage at `seq`. `payload_crc` is `crc32c(payload)`, computed by
/// the caller outside the writer lock.
pub(crate) fn frame(seq: Seq, codec_id: u8, payload: &[u8], payload_crc: u32) -> Vec<u8> {
    assert!(payload.len() <= u32::MAX as usize, "the length is framed as u32");
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.push(FORMAT_VERSION);
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

/// A framed record whose checksum has been verified.
#[derive(Debug)]
pub(crate) struct Verified<'a> {
    pub(crate) codec_id: u8,
    pub(crate) payload: &'a [u8],
}

/// Checks a stored record read back from `seq`, and returns its payload only if it is intact.
pub(crate) fn verify(seq: Seq, record: &[u8]) -> Result<Verified<'_>, String> {
    let (header, payload) = record
        .split_at_checked(HEADER_LEN)
        .ok_or_else(|| format!("record is {} bytes, shorter than its header", record.len()))?;
    let [version, codec_id, flags0, flags1, l0, l1, l2, l3, c0, c1, c2, c3] = *header else {
        return Err("header is not 12 bytes".to_owned());
    };
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    if flags0 != 0 || flags1 != 0 {
        return Err(format!("reserved flags are set ({flags0:#04x} {flags1:#04x})"));
    }
    let payload_len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if payload_len != payload.len() {
        return Err(format!(
            "header says {payload_len} payload bytes, record holds {}",
            payload.len()
        ));
    }
    let stored_crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let header_prefix = header.get(..8).unwrap_or_default();
    let actual_crc = finish_crc(crc32c::crc32c(payload), seq, header_prefix);
    if stored_crc != actual_crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})"
        ));
    }
    Ok(Verified { codec_id, payload })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn framed(seq: u64, payload: &[u8]) -> Vec<u8> {
        frame(Seq(seq), 1, payload, crc32c::crc32c(payload))
    }

    #[test]
    fn layout_matches_the_documented_bytes() {
        let record = framed(7, b"abc");
        assert_eq!(&record[..8], &[1, 1, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&record[12..], b"abc");
        let verified = verify(Seq(7), &record).unwrap();
        assert_eq!(verified.payload, b"abc");
        assert_eq!(verified.codec_id, 1);
    }

    #[test]
    fn a_record_read_at_the_wrong_sequence_is_corrupt() {
        let record = framed(7, b"abc");
        assert!(verify(Seq(8), &record).unwrap_err().contains("checksum"));
    }

    #[test]
    fn truncated_and_empty_records_are_corrupt() {
        let record = framed(1, b"hello");
        for len in 0..record.len() {
            assert!(verify(Seq(1), &record[..len]).is_err(), "truncated to {len}");
        }
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
            prop_assert!(verify(Seq(42), &record).is_err());
        }
    }
}

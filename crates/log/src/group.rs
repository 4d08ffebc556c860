//! Commit groups: the entries of one group commit, stored as one framed record under the sequence
//! of its first entry, with one time key.
//!
//! ```text
//! payload of a version-2 record (all integers u32 little endian)
//!   n_entries ‖ len_1 ‖ … ‖ len_n ‖ entry_1 ‖ … ‖ entry_n
//! ```
//!
//! Entries keep their own sequences (`first`, `first + 1`, …) and stay individually readable: a
//! reader verifies the group's one checksum, then slices out the entry it wants. A version-1
//! record (one entry, written before groups existed) reads as a group of one, so a log written by
//! an older build needs no rewrite (`docs/log-format.md`, "Format versions").
//!
//! Invariants checked on every read, before any entry is handed out: `1 <= n_entries <=`
//! [`limits::GROUP_ENTRIES_MAX`], every length at most [`limits::ENTRY_PAYLOAD_BYTES_MAX`], and
//! the lengths add up to exactly the bytes that follow the table.

use idgraph_model::Seq;

use crate::frame::{self, FrameError};
use crate::{codec, limits};

/// A verified record: the entries it holds and the sequence of the first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Group<'a> {
    first: Seq,
    n_entries: usize,
    /// The length table (`4 * n_entries` bytes); empty for a version-1 record.
    lengths: &'a [u8],
    /// The entries' payloads, back to back.
    body: &'a [u8],
}

impl<'a> Group<'a> {
    /// Verifies the record stored under `first` and reads its table. The only way to a `Group`.
    pub(crate) fn parse(first: Seq, record: &'a [u8]) -> Result<Group<'a>, FrameError> {
        let (version, payload) = frame::verify(first, record, codec::CODEC_BINCODE2_SERDE)?;
        if version == frame::VERSION_ENTRY {
            return Ok(Group { first, n_entries: 1, lengths: &[], body: payload });
        }
        let bad = |detail: String| FrameError::BadGroup { detail };
        let (count, rest) = payload
            .split_first_chunk::<4>()
            .ok_or_else(|| bad(format!("{} bytes, too short for a group", payload.len())))?;
        let n_entries = u32::from_le_bytes(*count) as usize;
        if n_entries == 0 || n_entries > limits::GROUP_ENTRIES_MAX {
            return Err(bad(format!(
                "{n_entries} entries (a group holds 1 to {})",
                limits::GROUP_ENTRIES_MAX
            )));
        }
        let (lengths, body) = rest
            .split_at_checked(4 * n_entries)
            .ok_or_else(|| bad(format!("the table of {n_entries} lengths is cut short")))?;
        let mut total = 0usize;
        for chunk in lengths.chunks_exact(4) {
            let len = u32::from_le_bytes(chunk.try_into().unwrap_or_default()) as usize;
            if len > limits::ENTRY_PAYLOAD_BYTES_MAX {
                return Err(bad(format!("an entry of {len} bytes")));
            }
            total += len;
        }
        if total != body.len() {
            return Err(bad(format!(
                "the lengths add up to {total} bytes, the group holds {}",
                body.len()
            )));
        }
        Ok(Group { first, n_entries, lengths, body })
    }

    /// The sequence of its last entry.
    pub(crate) fn last(&self) -> Seq {
        Seq(self.first.0 + self.n_entries as u64 - 1)
    }

    /// Its entries' payloads with their sequences, in order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Seq, &'a [u8])> + 'a {
        let Group { first, n_entries, lengths, body } = *self;
        let mut start = 0usize;
        (0..n_entries).map(move |idx| {
            let len = match lengths.get(4 * idx..4 * idx + 4) {
                Some(chunk) => u32::from_le_bytes(chunk.try_into().unwrap_or_default()) as usize,
                None => body.len(), // a version-1 record: the whole payload
            };
            // `parse` checked that the lengths cover the body exactly.
            let payload = body.get(start..start + len).unwrap_or_default();
            start += len;
            (Seq(first.0 + idx as u64), payload)
        })
    }

    /// The payload of entry `seq`, if the group holds it.
    pub(crate) fn entry(&self, seq: Seq) -> Option<&'a [u8]> {
        let idx = seq.0.checked_sub(self.first.0)?;
        self.entries().nth(usize::try_from(idx).ok()?).map(|(_, payload)| payload)
    }
}

/// Frames the encoded entries `payloads` (sequences `first`, `first + 1`, …) as one version-2
/// record. The caller keeps a group within [`limits::GROUP_ENTRIES_MAX`] entries.
pub(crate) fn encode<'p>(
    first: Seq,
    payloads: impl ExactSizeIterator<Item = &'p [u8]> + Clone,
) -> Vec<u8> {
    let n_entries = payloads.len();
    assert!((1..=limits::GROUP_ENTRIES_MAX).contains(&n_entries), "a group of {n_entries}");
    let body_len: usize = payloads.clone().map(<[u8]>::len).sum();
    let mut payload = Vec::with_capacity(4 + 4 * n_entries + body_len);
    payload.extend_from_slice(&(n_entries as u32).to_le_bytes());
    for entry in payloads.clone() {
        payload.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    }
    for entry in payloads {
        payload.extend_from_slice(entry);
    }
    let crc = crc32c::crc32c(&payload);
    frame::frame(first, frame::VERSION_GROUP, codec::CODEC_BINCODE2_SERDE, &payload, crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads() -> Vec<Vec<u8>> {
        vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]
    }

    fn encoded(first: u64) -> Vec<u8> {
        let payloads = payloads();
        encode(Seq(first), payloads.iter().map(Vec::as_slice))
    }

    #[test]
    fn a_group_reads_back_entry_by_entry() {
        let record = encoded(10);
        let group = Group::parse(Seq(10), &record).unwrap();
        assert_eq!((group.first, group.last(), group.n_entries), (Seq(10), Seq(12), 3));
        let read: Vec<(Seq, Vec<u8>)> = group.entries().map(|(s, p)| (s, p.to_vec())).collect();
        let expected: Vec<(Seq, Vec<u8>)> =
            payloads().into_iter().enumerate().map(|(i, p)| (Seq(10 + i as u64), p)).collect();
        assert_eq!(read, expected);
        assert_eq!(group.entry(Seq(12)), Some(&b"three"[..]));
        assert_eq!(group.entry(Seq(13)), None);
        assert_eq!(group.entry(Seq(9)), None);
    }

    #[test]
    fn a_group_stored_under_another_key_is_corrupt() {
        let record = encoded(10);
        assert!(matches!(Group::parse(Seq(11), &record), Err(FrameError::BadChecksum { .. })));
    }

    #[test]
    fn a_version_1_record_is_a_group_of_one() {
        let payload = b"entry";
        let record = frame::frame(
            Seq(5),
            frame::VERSION_ENTRY,
            codec::CODEC_BINCODE2_SERDE,
            payload,
            crc32c::crc32c(payload),
        );
        let group = Group::parse(Seq(5), &record).unwrap();
        assert_eq!((group.first, group.last()), (Seq(5), Seq(5)));
        assert_eq!(group.entries().collect::<Vec<_>>(), vec![(Seq(5), &payload[..])]);
    }

    /// A table that does not describe its body is refused even with a valid checksum (a bug in a
    /// writer, not bit rot): nothing is sliced out of it.
    #[test]
    fn a_table_that_lies_is_refused() {
        let framed = |payload: &[u8]| {
            let crc = crc32c::crc32c(payload);
            frame::frame(Seq(1), frame::VERSION_GROUP, codec::CODEC_BINCODE2_SERDE, payload, crc)
        };
        let cases: [(&[u8], &str); 4] = [
            (&[0, 0, 0, 0], "0 entries"),
            (&[1, 0], "too short"),
            (&[2, 0, 0, 0, 1, 0, 0, 0], "cut short"),
            (&[1, 0, 0, 0, 5, 0, 0, 0, b'a'], "add up to 5 bytes, the group holds 1"),
        ];
        for (payload, message) in cases {
            let err = Group::parse(Seq(1), &framed(payload)).unwrap_err();
            assert!(err.to_string().contains(message), "{err} lacks {message:?}");
        }
    }
}

//! The read path: point reads ([`Log::get`]), scans of owned entries, of borrowed views and of
//! record batches, paging ([`Log::read_range`]), the secondary indexes and the time index.
//!
//! Every record (a commit group, `group.rs`) is verified (frame, checksum over payload and key,
//! table of entries) before one byte of an entry is decoded, and scans check that each record
//! starts where the one before ended: what fails is `Error::Corrupt` or `Error::Gap`, never an
//! entry. Readers of the secondary indexes first bring the indexer up to the sequence they ask
//! about (`indexer.rs`).

use std::ops::ControlFlow;

use idgraph_model::{Entry, EntryView, Seq, Timestamp};

use crate::group::Group;
use crate::{Error, IndexKey, Log, Result, codec, read_error};

impl Log {
    /// The entry at `seq`, or `None` past the end.
    pub fn get(&self, seq: Seq) -> Result<Option<Entry>> {
        if seq == Seq::ZERO {
            return Ok(None);
        }
        match self.storage.get(seq).map_err(|err| read_error(seq, err))? {
            None => Ok(None),
            Some((key, bytes)) => {
                // Damage is reported at the sequence asked for, naming the record that holds it.
                let group = parse_group(key, &bytes).map_err(|err| match err {
                    Error::Corrupt { detail, .. } if key != seq => Error::Corrupt {
                        seq,
                        detail: format!("the record of entries from {key} on: {detail}"),
                    },
                    err => err,
                })?;
                match group.entry(seq) {
                    None => Ok(None),
                    Some(payload) => decode_entry(seq, payload).map(Some),
                }
            }
        }
    }

    /// Visits entries from `from` (inclusive; `Seq::ZERO` means the start) in order, until `visit`
    /// breaks or the log ends. Stops with an error at the first damaged record or gap.
    pub fn scan(
        &self,
        from: Seq,
        mut visit: impl FnMut(Seq, Entry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_records(from, &mut |seq, payload| {
            decode_entry(seq, payload).map(|entry| visit(seq, entry))
        })
    }

    /// [`Log::scan`] with borrowed views ([`EntryView`]: strings point into the stored record,
    /// the operation's arguments are skipped): what replay folds, with no allocation per string.
    pub fn scan_views(
        &self,
        from: Seq,
        mut visit: impl FnMut(Seq, &EntryView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_records(from, &mut |seq, payload| {
            decode_view(seq, payload).map(|view| visit(seq, &view))
        })
    }

    /// Reads records from `from` (inclusive) in one pass, checks their checksums and sequence
    /// continuity, and hands them to `visit` in [`RecordBatch`]es of up to `n_per_batch` records
    /// (payloads copied into one buffer per batch), until `visit` breaks or the log ends. Decoding
    /// is left to [`RecordBatch::for_each_view`], so one thread can read while another decodes.
    pub fn scan_batches(
        &self,
        from: Seq,
        n_per_batch: usize,
        mut visit: impl FnMut(RecordBatch) -> ControlFlow<()>,
    ) -> Result<()> {
        let n_per_batch = n_per_batch.max(1);
        let mut batch = RecordBatch { first: from.max(Seq(1)), ..RecordBatch::default() };
        let mut stopped = false;
        self.scan_records(from, &mut |seq, payload| {
            if batch.ends.is_empty() {
                batch.first = seq;
            }
            batch.bytes.extend_from_slice(payload);
            batch.ends.push(batch.bytes.len());
            if batch.ends.len() < n_per_batch {
                return Ok(ControlFlow::Continue(()));
            }
            let full = std::mem::take(&mut batch);
            let flow = visit(full);
            stopped = flow.is_break();
            Ok(flow)
        })?;
        if !stopped && !batch.is_empty() {
            let _ = visit(batch);
        }
        Ok(())
    }

    /// Verifies each stored record from the one holding `from`, checks that each starts where the
    /// one before ended, and hands the payload of every entry from `from` on to
    /// `decode_and_visit`.
    fn scan_records(&self, from: Seq, decode_and_visit: &mut DecodeAndVisit<'_>) -> Result<()> {
        let mut expected = from.max(Seq(1));
        let mut first_record = true;
        let mut failure = None;
        let res = self.storage.scan(from, &mut |key, bytes| {
            let flow = visit_record(key, bytes, &mut expected, first_record, decode_and_visit);
            first_record = false;
            flow.unwrap_or_else(|err| {
                failure = Some(err);
                ControlFlow::Break(())
            })
        });
        if let Some(err) = failure {
            return Err(err);
        }
        res.map_err(|err| read_error(expected, err))
    }

    /// The sequences of the entries indexed under `key` (see [`IndexKey`]), at or before `up_to`,
    /// oldest first. Cheap: one index seek and a short iteration, no entry is read (once the
    /// indexer has caught up to `up_to`, which this waits for: [`Log::catch_up_index`]).
    pub fn indexed(&self, key: IndexKey, up_to: Seq) -> Result<Vec<Seq>> {
        self.catch_up_index(up_to)?;
        let mut seqs = Vec::new();
        self.storage
            .index_scan(key, up_to, &mut |seq| {
                seqs.push(seq);
                ControlFlow::Continue(())
            })
            .map_err(|err| read_error(Seq::ZERO, err))?;
        Ok(seqs)
    }

    /// The last entry indexed under `key` at or before `up_to`.
    pub fn last_indexed(&self, key: IndexKey, up_to: Seq) -> Result<Option<Seq>> {
        self.catch_up_index(up_to)?;
        self.storage.index_last(key, up_to).map_err(|err| read_error(Seq::ZERO, err))
    }

    /// How many records (commit groups, or entries of a format-1 log) are stored: a cluster node's
    /// position in the stream of groups (`docs/cluster.md`). Reads every key.
    pub fn record_count(&self) -> Result<u64> {
        self.storage.n_records().map_err(|err| read_error(Seq::ZERO, err))
    }

    /// Up to `n_max` entries from `from` (inclusive), for paging through the log.
    pub fn read_range(&self, from: Seq, n_max: usize) -> Result<Vec<(Seq, Entry)>> {
        let mut entries = Vec::new();
        if n_max == 0 {
            return Ok(entries);
        }
        self.scan(from, |seq, entry| {
            entries.push((seq, entry));
            if entries.len() >= n_max { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })?;
        Ok(entries)
    }

    /// The last sequence recorded at or before `time` (`Seq::ZERO` if none): "the log as of
    /// `time`" is the prefix up to it. One index seek and one record read, not a scan: the time
    /// index finds the last record whose first entry is not later than `time` (every later record
    /// starts later), and the answer is the last entry of it that is not.
    pub fn seq_at(&self, time: Timestamp) -> Result<Seq> {
        let key = self.storage.record_at(time).map_err(|err| read_error(Seq::ZERO, err))?;
        if key == Seq::ZERO {
            return Ok(Seq::ZERO);
        }
        let Some((key, bytes)) = self.storage.get(key).map_err(|err| read_error(key, err))? else {
            return Err(Error::Gap { missing: key });
        };
        let mut at = Seq(key.0.saturating_sub(1));
        for (seq, payload) in parse_group(key, &bytes)?.entries() {
            if decode_view(seq, payload)?.recorded_at > time {
                break;
            }
            at = seq;
        }
        Ok(at)
    }
}

/// Consecutive verified records, their payloads copied into one buffer: see [`Log::scan_batches`].
#[derive(Debug, Default)]
pub struct RecordBatch {
    first: Seq,
    bytes: Vec<u8>,
    /// Where each payload ends in `bytes`.
    ends: Vec<usize>,
}

impl RecordBatch {
    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none (the log ended).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The sequence of its last record (`None` if empty).
    pub fn last_seq(&self) -> Option<Seq> {
        let n = self.ends.len() as u64;
        (n > 0).then(|| Seq(self.first.0 + n - 1))
    }

    /// Decodes each record as an [`EntryView`] borrowing from the batch and visits it, in order,
    /// until `visit` breaks.
    pub fn for_each_view<'a>(
        &'a self,
        mut visit: impl FnMut(Seq, EntryView<'a>) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut start = 0;
        for (offset, end) in self.ends.iter().enumerate() {
            let seq = Seq(self.first.0 + offset as u64);
            let payload = self.bytes.get(start..*end).unwrap_or_default();
            let view = codec::decode_view(payload).map_err(|err| undecodable(seq, err))?;
            if visit(seq, view).is_break() {
                break;
            }
            start = *end;
        }
        Ok(())
    }
}

/// What [`Log::scan_records`] calls with each stored record: decode it, visit it, say whether to go
/// on.
type DecodeAndVisit<'a> = dyn FnMut(Seq, &[u8]) -> Result<ControlFlow<()>> + 'a;

/// One stored record of a scan: verified, checked against the sequence expected next, and each of
/// its entries from `expected` on handed to `decode_and_visit`.
fn visit_record(
    key: Seq,
    bytes: &[u8],
    expected: &mut Seq,
    first_record: bool,
    decode_and_visit: &mut DecodeAndVisit<'_>,
) -> Result<ControlFlow<()>> {
    // The first record may start before `from` (it holds it); every later one starts right after
    // the one before.
    let starts_right = if first_record { key <= *expected } else { key == *expected };
    if !starts_right {
        if key > *expected {
            return Err(Error::Gap { missing: *expected });
        }
        return Err(Error::Corrupt {
            seq: key,
            detail: format!(
                "a record starts at {key}, inside the one before (expected {expected})"
            ),
        });
    }
    let group = parse_group(key, bytes)?;
    let skip = expected.0.saturating_sub(key.0);
    for (seq, payload) in group.entries().skip(usize::try_from(skip).unwrap_or(usize::MAX)) {
        *expected = seq.next();
        if decode_and_visit(seq, payload)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    *expected = (*expected).max(group.last().next());
    Ok(ControlFlow::Continue(()))
}

/// Verifies the record stored under `key`: frame, checksum, table of entries.
pub(crate) fn parse_group(key: Seq, bytes: &[u8]) -> Result<Group<'_>> {
    Group::parse(key, bytes).map_err(|err| Error::Corrupt { seq: key, detail: err.to_string() })
}

/// Decodes a verified entry payload. The only path from stored bytes to an [`Entry`].
pub(crate) fn decode_entry(seq: Seq, payload: &[u8]) -> Result<Entry> {
    codec::decode(payload).map_err(|err| undecodable(seq, err))
}

pub(crate) fn decode_view(seq: Seq, payload: &[u8]) -> Result<EntryView<'_>> {
    codec::decode_view(payload).map_err(|err| undecodable(seq, err))
}

/// A payload that passed its checksum but does not decode: [`Error::Corrupt`].
fn undecodable(seq: Seq, err: codec::DecodeError) -> Error {
    Error::Corrupt { seq, detail: format!("undecodable payload: {err}") }
}

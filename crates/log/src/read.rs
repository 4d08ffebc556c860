//! The read path: point reads ([`Log::get`]), scans of owned entries, of borrowed views and of
//! record batches, paging ([`Log::read_range`]), the secondary indexes and the time index.
//!
//! Every record is verified (frame, checksum over payload and sequence) before one byte of it is
//! decoded, and scans check that sequences follow each other: what fails is `Error::Corrupt` or
//! `Error::Gap`, never an entry.

use std::ops::ControlFlow;

use idgraph_model::{Entry, EntryView, Seq, Timestamp};

use crate::{Error, IndexKey, Log, Result, codec, frame, read_error};

impl Log {
    /// The entry at `seq`, or `None` past the end.
    pub fn get(&self, seq: Seq) -> Result<Option<Entry>> {
        match self.storage.get(seq).map_err(|err| read_error(seq, err))? {
            None => Ok(None),
            Some(bytes) => decode_record(seq, &bytes).map(Some),
        }
    }

    /// Visits entries from `from` (inclusive; `Seq::ZERO` means the start) in order, until `visit`
    /// breaks or the log ends. Stops with an error at the first damaged record or gap.
    pub fn scan(
        &self,
        from: Seq,
        mut visit: impl FnMut(Seq, Entry) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_records(from, &mut |seq, bytes| decode_record(seq, bytes).map(|e| visit(seq, e)))
    }

    /// [`Log::scan`] with borrowed views ([`EntryView`]: strings point into the stored record,
    /// the operation's arguments are skipped): what replay folds, with no allocation per string.
    pub fn scan_views(
        &self,
        from: Seq,
        mut visit: impl FnMut(Seq, &EntryView<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_records(from, &mut |seq, bytes| decode_view(seq, bytes).map(|v| visit(seq, &v)))
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
        self.scan_records(from, &mut |seq, bytes| {
            if batch.ends.is_empty() {
                batch.first = seq;
            }
            batch.bytes.extend_from_slice(verified_payload(seq, bytes)?);
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

    /// Checks sequence continuity and hands each stored record to `decode_and_visit`.
    fn scan_records(&self, from: Seq, decode_and_visit: &mut DecodeAndVisit<'_>) -> Result<()> {
        let mut expected = from.max(Seq(1));
        let mut failure = None;
        let res = self.storage.scan(from, &mut |seq, bytes| {
            if seq != expected {
                failure = Some(Error::Gap { missing: expected });
                return ControlFlow::Break(());
            }
            expected = seq.next();
            match decode_and_visit(seq, bytes) {
                Ok(flow) => flow,
                Err(err) => {
                    failure = Some(err);
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        res.map_err(|err| read_error(expected, err))
    }

    /// The sequences of the entries indexed under `key` (see [`IndexKey`]), at or before `up_to`,
    /// oldest first. Cheap: one index seek and a short iteration, no entry is read.
    pub fn indexed(&self, key: IndexKey, up_to: Seq) -> Result<Vec<Seq>> {
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
        self.storage.index_last(key, up_to).map_err(|err| read_error(Seq::ZERO, err))
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
    /// `time`" is the prefix up to it. One index seek, not a scan.
    pub fn seq_at(&self, time: Timestamp) -> Result<Seq> {
        self.storage.seq_at(time).map_err(|err| read_error(Seq::ZERO, err))
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

/// Verifies and decodes one stored record. The only path from stored bytes to an [`Entry`].
pub(crate) fn decode_record(seq: Seq, bytes: &[u8]) -> Result<Entry> {
    let payload = verified_payload(seq, bytes)?;
    codec::decode(payload).map_err(|err| undecodable(seq, err))
}

pub(crate) fn decode_view(seq: Seq, bytes: &[u8]) -> Result<EntryView<'_>> {
    let payload = verified_payload(seq, bytes)?;
    codec::decode_view(payload).map_err(|err| undecodable(seq, err))
}

pub(crate) fn verified_payload(seq: Seq, bytes: &[u8]) -> Result<&[u8]> {
    frame::verify(seq, bytes, codec::CODEC_BINCODE2_SERDE)
        .map_err(|err| Error::Corrupt { seq, detail: err.to_string() })
}

/// A payload that passed its checksum but does not decode: [`Error::Corrupt`].
fn undecodable(seq: Seq, err: codec::DecodeError) -> Error {
    Error::Corrupt { seq, detail: format!("undecodable payload: {err}") }
}

//! The storage seam: what the writer and readers need from a key-value backend. Two backends
//! implement it: RocksDB ([`crate::rocks`]) and memory ([`crate::memory`]) (and, for tests, the
//! simulated disk of `crate::sim`). Everything above this trait (sequencing, group commit,
//! framing, indexing, poisoning) is shared, so the in-memory log behaves exactly like the durable
//! one except for durability itself.
//!
//! The backend stores *records* keyed by the sequence of their first entry: a record is a framed
//! commit group (`crate::group`), or one entry in a log written before groups existed. The backend
//! never looks inside a record; it only needs each record's first sequence and first time.

use std::ops::ControlFlow;

use idgraph_model::{Seq, Timestamp};

use crate::index::IndexKey;

/// One framed record ready to be written.
#[derive(Debug)]
pub(crate) struct StoredRecord {
    /// The sequence of its first entry: its key.
    pub(crate) first: Seq,
    /// The sequence of its last entry.
    pub(crate) last: Seq,
    /// `recorded_at` of its first entry: its time key.
    pub(crate) first_time: Timestamp,
    pub(crate) bytes: Vec<u8>,
}

/// A backend failure, with the backend's own description. `corruption` is set when the backend
/// itself detected damaged data (a RocksDB block checksum, say).
#[derive(Debug, Clone)]
pub(crate) struct StorageError {
    pub(crate) message: String,
    pub(crate) corruption: bool,
}

impl StorageError {
    pub(crate) fn io(message: impl Into<String>) -> StorageError {
        StorageError { message: message.into(), corruption: false }
    }
}

pub(crate) trait Storage: Send + Sync + std::fmt::Debug {
    /// Writes `records` atomically, in order. With `sync`, returns only once they are on stable
    /// storage together with everything written before them.
    fn write(&self, records: &[StoredRecord], sync: bool) -> Result<(), StorageError>;

    /// Makes everything written so far durable.
    fn sync(&self) -> Result<(), StorageError>;

    /// The record with the greatest key at or before `seq` (the one that holds `seq`, if any entry
    /// does), with its key.
    fn get(&self, seq: Seq) -> Result<Option<(Seq, Vec<u8>)>, StorageError>;

    /// The last record, with its key.
    fn last(&self) -> Result<Option<(Seq, Vec<u8>)>, StorageError>;

    /// Visits records in key order, starting with the one that holds `from` (or the first after
    /// it), until `visit` breaks or the log ends.
    fn scan(
        &self,
        from: Seq,
        visit: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError>;

    /// How many records are stored (keys only are read).
    fn n_records(&self) -> Result<u64, StorageError>;

    /// The key of the last record whose first entry was recorded at or before `time`, or
    /// `Seq::ZERO`.
    fn record_at(&self, time: Timestamp) -> Result<Seq, StorageError>;

    /// Visits, in log order, the sequences indexed under `key` up to `up_to`, until `visit` breaks.
    fn index_scan(
        &self,
        key: IndexKey,
        up_to: Seq,
        visit: &mut dyn FnMut(Seq) -> ControlFlow<()>,
    ) -> Result<(), StorageError>;

    /// Whether the index holds `key` for entry `seq`.
    fn index_contains(&self, key: IndexKey, seq: Seq) -> Result<bool, StorageError>;

    /// The last sequence indexed under `key` at or before `up_to`. By default a forward walk of
    /// the subject's keys keeping the last (RocksDB's `index` memtable, a hash of skip lists,
    /// cannot seek backwards); a storage that can seek backwards overrides it.
    fn index_last(&self, key: IndexKey, up_to: Seq) -> Result<Option<Seq>, StorageError> {
        let mut last = None;
        self.index_scan(key, up_to, &mut |seq| {
            last = Some(seq);
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(last)
    }

    /// Writes index keys for entries already stored, and records, in the same atomic write, that
    /// every entry up to `covered` is indexed.
    fn index_write(&self, keys: &[(Seq, IndexKey)], covered: Seq) -> Result<(), StorageError>;

    /// The last sequence whose index keys are all stored (`Seq::ZERO`: none).
    fn indexed_seq(&self) -> Result<Seq, StorageError>;

    /// Stores a framed snapshot taken at `seq`, durably, replacing any snapshot at that sequence.
    fn put_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError>;

    /// The snapshots stored, newest first, at or before `seq`: their sequences only.
    fn snapshot_seqs(&self, at_or_before: Seq) -> Result<Vec<Seq>, StorageError>;

    /// The framed snapshot taken at `seq`.
    fn get_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>, StorageError>;

    /// Removes the snapshot taken at `seq`.
    fn delete_snapshot(&self, seq: Seq) -> Result<(), StorageError>;

    /// Flushes buffers and releases resources ahead of drop, reporting errors drop would swallow.
    fn close(&self) -> Result<(), StorageError>;

    /// Replaces the stored bytes of the record keyed `seq` without any checks. Only for tests that
    /// simulate on-disk damage or store records of an older format.
    #[cfg(any(test, feature = "test-support"))]
    fn overwrite_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError>;
}

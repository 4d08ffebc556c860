//! # idgraph-log
//!
//! The append-only log of identity entries: the only ground truth of idgraph. Every other state
//! (the identity graph, indexes, snapshots) is derived from it and can be rebuilt by replaying it.
//!
//! ## Principal types
//! - [`Log`]: open with [`Log::open`] (RocksDB in a folder) or [`Log::in_memory`]; append with
//!   [`Log::append`] / [`Log::append_batch`]; read with [`Log::get`], [`Log::scan`],
//!   [`Log::read_range`], [`Log::seq_at`].
//! - [`Durability`]: whether an append returns only once durable.
//! - [`Error`]: what went wrong, sorted by who must act.
//!
//! ## Key design decision: our own group commit
//! Sequence numbers are gap-free from 1. If appenders wrote to RocksDB concurrently, a crash could
//! keep sequence 6 and lose 5. So sequences are assigned under one lock, and one appender at a time
//! (the *leader*) writes everything queued so far as one atomic RocksDB batch with one fsync, while
//! the others wait on a condition variable and return when their sequence is covered. Many
//! concurrent appenders share one fsync; batches reach storage in sequence order.
//!
//! ## API themes
//! - *Acknowledged means durable*: [`Log::append`] and [`Durability::Synced`] return only after
//!   fsync. [`Durability::Deferred`] is the named exception (bulk import, answers that changed
//!   nothing) and is durable only after a later synced append or [`Log::sync`].
//! - *Poisoning*: after any write or sync error every later append fails with
//!   [`Error::Poisoned`]; reopen to recover.
//! - *Nothing corrupt is served*: every record is checksummed (the framing is described in
//!   `frame.rs` and `docs/log-format.md`) and verified before it is decoded.
//! - *The format is pinned*: golden fixtures (`tests/fixtures/`) hold records written by this
//!   code for every event, operation and outcome; a test decodes them and re-encodes them to the
//!   same bytes, so a format change shows as a fixture change (and needs a format-version bump).
//! - Limits are named in [`limits`].
//!
//! ## Where things are
//! One job per file: `open.rs` (opening, the last record), `writer.rs` (sequencing, group commit,
//! flush and sync, poisoning), `read.rs` (point reads, scans, the indexes), `indexer.rs` (writing
//! the index keys behind the writer), `verify.rs`, `snapshots.rs`; below them the storage seam
//! (`storage.rs`) and its backends (`rocks.rs`, `memory.rs`); the record framing (`frame.rs`), the
//! commit-group record (`group.rs`) and the entry codec (`codec.rs` and `codec/`); replication of
//! records for cluster mode (`replica.rs`). With the feature `test-support`, `sim` (`sim.rs`) is a
//! simulated disk with seeded faults, for the fault simulation (`docs/log-format.md`, "Faults").

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

mod codec;
mod error;
mod frame;
#[cfg(test)]
mod golden;
mod group;
mod index;
mod indexer;
pub mod limits;
mod memory;
mod open;
mod read;
mod replica;
mod rocks;
#[cfg(any(test, feature = "test-support"))]
pub mod sim;
mod snapshots;
mod storage;
mod verify;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use idgraph_model::Seq;

pub use crate::error::{Error, Result};
pub use crate::index::{IndexKey, IndexKeys, index_keys};
pub use crate::memory::FaultSwitch;
pub use crate::read::RecordBatch;
pub use crate::replica::{GroupRecord, Replicator};
pub use crate::snapshots::SNAPSHOT_CODEC_OPAQUE;
use crate::storage::{Storage, StorageError};
pub use crate::verify::VerifyReport;
use crate::writer::WriterState;

/// Whether an append waits for its data to reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Return only after the entries (and everything before them) are fsynced.
    Synced,
    /// Return once the entries are written to the storage engine, before fsync. They become
    /// durable with the next synced append or [`Log::sync`]; a crash before then may lose them
    /// (never an earlier synced entry, and never leaving a gap). For bulk imports and for answers
    /// that changed nothing.
    Deferred,
    /// Return as soon as the entries have their sequences, before they are written. The next group
    /// commit writes them (any later append that waits, [`Log::flush`], [`Log::sync`], or the
    /// append that finds [`limits::QUEUED_ENTRIES_MAX`] entries queued). Until then readers do
    /// not see them, and a crash loses them (only them and what follows them: never a gap).
    /// For answers that changed nothing, which may be lost without any later decision depending
    /// on them being durable.
    Queued,
}

/// Entries accepted by [`Log::submit`] and not yet waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "queued entries are written only when someone waits"]
pub struct Pending {
    /// The first sequence assigned.
    pub first: Seq,
    /// The last sequence assigned.
    pub last: Seq,
    /// What the submitter asked for.
    pub durability: Durability,
}

/// Counters for monitoring; monotonically increasing since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Storage writes (group commits) performed.
    pub n_writes: u64,
    /// Writes that were fsynced.
    pub n_syncs: u64,
    /// Entries written.
    pub n_entries_written: u64,
    /// Group commits by batch size: `batch_sizes[i]` counts writes of at most
    /// [`BATCH_SIZE_BUCKETS`]`[i]` entries (and more than the bucket before).
    pub batch_sizes: [u64; BATCH_SIZE_BUCKETS.len()],
}

/// Upper bounds of the batch-size histogram in [`LogStats`]; the last bucket takes the rest.
pub const BATCH_SIZE_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, u64::MAX];

/// The append-only log. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Log {
    storage: Box<dyn Storage>,
    /// Sequencing and group-commit state. A std `Mutex` (not an async one): no `.await` happens
    /// under it and it is held only to queue records or hand a batch to a leader, never across I/O.
    writer: Mutex<WriterState>,
    /// Signalled by a leader after each write (success or failure) so waiters re-check progress.
    progress: Condvar,
    n_writes: AtomicU64,
    n_syncs: AtomicU64,
    n_entries_written: AtomicU64,
    batch_sizes: [AtomicU64; BATCH_SIZE_BUCKETS.len()],
    /// The last sequence whose index keys are stored (`indexer.rs`).
    indexed: AtomicU64,
    /// Held by whoever is indexing: one indexer at a time.
    indexer: Mutex<()>,
    /// Where group commits go before the local write, in cluster mode (`replica.rs`).
    replicator: std::sync::OnceLock<std::sync::Arc<dyn Replicator>>,
    /// Set on a cluster node: appends need a replicator (`replica.rs`).
    require_replicator: std::sync::atomic::AtomicBool,
}

impl Log {
    /// Monitoring counters.
    pub fn stats(&self) -> LogStats {
        LogStats {
            n_writes: self.n_writes.load(Ordering::Relaxed),
            n_syncs: self.n_syncs.load(Ordering::Relaxed),
            n_entries_written: self.n_entries_written.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|idx| {
                self.batch_sizes.get(idx).map_or(0, |counter| counter.load(Ordering::Relaxed))
            }),
        }
    }

    /// Syncs, flushes and closes, reporting errors that dropping would swallow.
    pub fn close(self) -> Result<()> {
        self.sync()?;
        self.storage.close().map_err(|err| Error::Storage { message: err.message })
    }

    /// Overwrites the stored bytes of record `seq` without any check, to simulate on-disk damage in
    /// tests (feature `test-support`). Never use it otherwise.
    #[cfg(any(test, feature = "test-support"))]
    pub fn overwrite_record_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<()> {
        self.storage
            .overwrite_for_tests(seq, bytes)
            .map_err(|err| Error::Storage { message: err.message })
    }

    /// The framed bytes of the record keyed `seq` (the commit group whose first entry is `seq`) as
    /// stored, for tests that damage or pin them (feature `test-support`). `None` if no record
    /// starts at `seq`.
    #[cfg(any(test, feature = "test-support"))]
    pub fn raw_record_for_tests(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        let found = self.storage.get(seq).map_err(|err| read_error(seq, err))?;
        Ok(found.filter(|(key, _)| *key == seq).map(|(_, bytes)| bytes))
    }

    /// Creates, in the folder `path`, a log of format 1 (`idgraph-log/1`, one record per entry,
    /// index keys written with the entries) holding `entries` from sequence 1, as a build before
    /// commit groups wrote it: to test the upgrade on open (feature `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn create_format_1_for_tests(
        path: impl AsRef<std::path::Path>,
        entries: &[idgraph_model::Entry],
    ) -> Result<()> {
        let mut records = Vec::with_capacity(entries.len());
        for (idx, entry) in entries.iter().enumerate() {
            let seq = Seq(idx as u64 + 1);
            let payload =
                codec::encode(entry).map_err(|err| Error::Rejected { reason: err.to_string() })?;
            let crc = crc32c::crc32c(&payload);
            let bytes =
                frame::frame(seq, frame::VERSION_ENTRY, codec::CODEC_BINCODE2_SERDE, &payload, crc);
            records.push((seq, entry.recorded_at, bytes, index::index_keys(entry)));
        }
        rocks::RocksStorage::create_v1_for_tests(path.as_ref(), &records)
            .map_err(|err| Error::Storage { message: err.message })
    }
}

fn read_error(seq: Seq, err: StorageError) -> Error {
    if err.corruption {
        Error::Corrupt { seq, detail: err.message }
    } else {
        Error::Storage { message: err.message }
    }
}

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
//! - *Nothing corrupt is served*: every record is checksummed (see [`frame`](crate) docs and
//!   `docs/log-format.md`) and verified before it is decoded.
//! - Limits are named in [`limits`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

mod codec;
mod error;
mod frame;
mod index;
pub mod limits;
mod memory;
mod rocks;
mod storage;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use idgraph_model::{Entry, EntryView, Seq, Timestamp};
use smallvec::SmallVec;

pub use crate::error::{Error, Result};
pub use crate::index::{IndexKey, IndexKeys, index_keys};
pub use crate::memory::FaultSwitch;
use crate::storage::{Storage, StorageError, StoredRecord};

/// The codec id of snapshot frames: the payload is opaque bytes owned by whoever saved it (the
/// projection's own snapshot format, which carries its own version).
pub const SNAPSHOT_CODEC_OPAQUE: u8 = 0x80;

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

/// What [`Log::verify`] found in a log that is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked (checksum, decode, sequence, time order).
    pub n_entries: u64,
    /// The last sequence.
    pub last_seq: Seq,
    /// Secondary index keys found present, one per (entry, subject) (`docs/log-format.md`).
    pub n_index_keys: u64,
}

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
}

#[derive(Debug)]
struct WriterState {
    /// The sequence the next appended entry gets.
    next_seq: Seq,
    /// `recorded_at` of the last queued entry: entries must not go back in time, so that the time
    /// index agrees with sequence order.
    last_time: Timestamp,
    /// Framed records with assigned sequences, not yet handed to a leader. Contiguous, starting at
    /// `written_seq + 1` (or after the batch a leader is writing).
    queue: Vec<StoredRecord>,
    /// The vector of the last batch written, emptied, kept to become the next `queue`: the queue
    /// then grows without reallocating.
    spare: Vec<StoredRecord>,
    /// Whether anything in `queue` asked for [`Durability::Synced`].
    queue_wants_sync: bool,
    /// Whether some appender is writing a batch right now (with the lock released).
    leader_active: bool,
    /// Everything up to here is in the storage engine (visible to readers).
    written_seq: Seq,
    /// Everything up to here is fsynced.
    durable_seq: Seq,
    /// Set by the first failed write or sync; from then on every append fails.
    poisoned: Option<String>,
}

impl Log {
    /// Opens the log stored in the folder `path`, creating it if missing, and checks its last
    /// record. Only one process may have a log open; a second open fails with [`Error::Storage`].
    pub fn open(path: impl AsRef<Path>) -> Result<Log> {
        let path = path.as_ref();
        let storage = rocks::RocksStorage::open(path).map_err(|err| Error::Storage {
            message: format!("cannot open log at {}: {}", path.display(), err.message),
        })?;
        Log::with_storage(Box::new(storage))
    }

    /// An empty log in memory, with the same behaviour as an on-disk one except durability.
    pub fn in_memory() -> Log {
        Log::in_memory_with_faults().0
    }

    /// An empty in-memory log and a switch that makes its storage fail, for tests.
    pub fn in_memory_with_faults() -> (Log, FaultSwitch) {
        let storage = memory::MemoryStorage::default();
        let switch = storage.fault_switch();
        let log = Log::with_storage(Box::new(storage)).expect("an empty in-memory log opens");
        (log, switch)
    }

    fn with_storage(storage: Box<dyn Storage>) -> Result<Log> {
        let last = storage.last().map_err(|err| read_error(Seq::ZERO, err))?;
        let (last_seq, last_time) = match last {
            None => (Seq::ZERO, Timestamp(i64::MIN)),
            Some((seq, bytes)) => (seq, decode_record(seq, &bytes)?.recorded_at),
        };
        if last_seq > Seq::ZERO && storage.get(Seq(1)).map_err(|e| read_error(Seq(1), e))?.is_none()
        {
            return Err(Error::Gap { missing: Seq(1) });
        }
        backfill_index(storage.as_ref())?;
        let writer = WriterState {
            next_seq: last_seq.next(),
            last_time,
            queue: Vec::new(),
            spare: Vec::new(),
            queue_wants_sync: false,
            leader_active: false,
            written_seq: last_seq,
            durable_seq: last_seq,
            poisoned: None,
        };
        Ok(Log {
            storage,
            writer: Mutex::new(writer),
            progress: Condvar::new(),
            n_writes: AtomicU64::new(0),
            n_syncs: AtomicU64::new(0),
            n_entries_written: AtomicU64::new(0),
            batch_sizes: Default::default(),
        })
    }

    /// Appends one entry durably and returns its sequence.
    pub fn append(&self, entry: &Entry) -> Result<Seq> {
        let (first, _) = self.append_batch(std::slice::from_ref(entry), Durability::Synced)?;
        Ok(first)
    }

    /// Appends entries atomically (all or none) with consecutive sequences and returns the first
    /// and last. Entries must not go back in time. At most [`limits::BATCH_ENTRIES_MAX`] entries.
    pub fn append_batch(&self, entries: &[Entry], durability: Durability) -> Result<(Seq, Seq)> {
        let pending = self.submit(entries, durability)?;
        self.wait(pending)
    }

    /// The first half of [`Log::append_batch`]: validates the entries and assigns their sequences
    /// (visible to the caller at once), without waiting for the write. The caller must then call
    /// [`Log::wait`]; until someone waits, queued entries are not written.
    ///
    /// This split lets a single-threaded decider (the resolver) decide and queue under its own lock
    /// and wait for durability after releasing it, so concurrent requests share one fsync.
    pub fn submit(&self, entries: &[Entry], durability: Durability) -> Result<Pending> {
        if entries.is_empty() || entries.len() > limits::BATCH_ENTRIES_MAX {
            return Err(Error::Rejected {
                reason: format!(
                    "a batch holds 1 to {} entries, not {}",
                    limits::BATCH_ENTRIES_MAX,
                    entries.len()
                ),
            });
        }
        // Encoding and the payload checksum happen before taking the lock.
        let mut encoded: SmallVec<[_; 1]> = SmallVec::with_capacity(entries.len());
        for entry in entries {
            let payload = codec::encode(entry).map_err(|reason| Error::Rejected { reason })?;
            let payload_crc = crc32c::crc32c(&payload);
            encoded.push((entry.recorded_at, payload, payload_crc, index::index_keys(entry)));
        }
        let mut writer = self.lock_writer();
        if let Some(cause) = &writer.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        let mut last_time = writer.last_time;
        for (recorded_at, ..) in &encoded {
            if *recorded_at < last_time {
                return Err(Error::time_regressed(last_time, *recorded_at));
            }
            last_time = *recorded_at;
        }
        let first = writer.next_seq;
        for (recorded_at, payload, payload_crc, index) in encoded {
            let seq = writer.next_seq;
            let bytes = frame::frame(seq, codec::CODEC_BINCODE2_SERDE, &payload, payload_crc);
            writer.queue.push(StoredRecord { seq, recorded_at, bytes, index });
            writer.next_seq = seq.next();
        }
        let last = Seq(writer.next_seq.0 - 1);
        writer.last_time = last_time;
        writer.queue_wants_sync |= durability == Durability::Synced;
        Ok(Pending { first, last, durability })
    }

    /// Waits until the entries of `pending` are written (and, for [`Durability::Synced`], fsynced),
    /// leading a group commit when no one else is. Returns their first and last sequence.
    pub fn wait(&self, pending: Pending) -> Result<(Seq, Seq)> {
        self.wait_for(self.lock_writer(), pending.last, pending.durability)?;
        Ok((pending.first, pending.last))
    }

    /// Blocks until `seq` is written (and, for `Synced`, durable), leading group commits as needed.
    fn wait_for<'a>(
        &'a self,
        mut writer: MutexGuard<'a, WriterState>,
        seq: Seq,
        durability: Durability,
    ) -> Result<()> {
        loop {
            let done = match durability {
                Durability::Synced => writer.durable_seq >= seq,
                Durability::Deferred => writer.written_seq >= seq,
                Durability::Queued => writer.queue.len() < limits::QUEUED_ENTRIES_MAX,
            };
            if done {
                return Ok(());
            }
            if let Some(cause) = &writer.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if writer.leader_active {
                writer = self.progress.wait(writer).unwrap_or_else(|poison| poison.into_inner());
            } else if !writer.queue.is_empty() {
                writer = self.lead_group_commit(writer);
            } else {
                // Written but not yet durable, and nothing queued that would carry a sync: the
                // batch flag makes this unreachable, but an explicit sync is the safe answer.
                drop(writer);
                self.sync()?;
                writer = self.lock_writer();
            }
        }
    }

    /// Writes everything queued as one batch, with the lock released during I/O.
    fn lead_group_commit<'a>(
        &'a self,
        mut writer: MutexGuard<'a, WriterState>,
    ) -> MutexGuard<'a, WriterState> {
        let spare = std::mem::take(&mut writer.spare);
        let mut batch = std::mem::replace(&mut writer.queue, spare);
        let sync = std::mem::take(&mut writer.queue_wants_sync);
        writer.leader_active = true;
        drop(writer);

        let batch_last = batch.last().map(|record| record.seq).unwrap_or_default();
        let n_written = batch.len();
        let res = self.storage.write(&batch, sync);
        batch.clear(); // Frees the records outside the lock.

        let mut writer = self.lock_writer();
        writer.leader_active = false;
        if writer.spare.capacity() < batch.capacity() {
            writer.spare = batch;
        }
        match res {
            Ok(()) => {
                assert!(batch_last > writer.written_seq, "batches are written in order");
                writer.written_seq = batch_last;
                if sync {
                    writer.durable_seq = batch_last;
                    self.n_syncs.fetch_add(1, Ordering::Relaxed);
                }
                self.n_writes.fetch_add(1, Ordering::Relaxed);
                self.n_entries_written.fetch_add(n_written as u64, Ordering::Relaxed);
                let bucket = BATCH_SIZE_BUCKETS.iter().position(|max| n_written as u64 <= *max);
                if let Some(counter) = bucket.and_then(|idx| self.batch_sizes.get(idx)) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(err) => {
                writer.poisoned.get_or_insert(err.message);
            }
        }
        self.progress.notify_all();
        writer
    }

    /// Writes every queued entry (without fsync) and returns the last written sequence.
    pub fn flush(&self) -> Result<Seq> {
        let writer = self.lock_writer();
        let target = Seq(writer.next_seq.0 - 1);
        Ok(self.lock_until_written(writer, target)?.written_seq)
    }

    /// Makes every entry appended so far durable, including [`Durability::Deferred`] ones, and
    /// returns the last durable sequence.
    pub fn sync(&self) -> Result<Seq> {
        let mut writer = self.lock_writer();
        let target = Seq(writer.next_seq.0 - 1);
        if writer.durable_seq >= target {
            return Ok(writer.durable_seq);
        }
        // Wait until everything queued is written, then fsync outside the lock.
        writer = self.lock_until_written(writer, target)?;
        drop(writer);
        let res = self.storage.sync();
        let mut writer = self.lock_writer();
        match res {
            Ok(()) => {
                writer.durable_seq = writer.durable_seq.max(target);
                self.n_syncs.fetch_add(1, Ordering::Relaxed);
                Ok(writer.durable_seq)
            }
            Err(err) => {
                let cause = writer.poisoned.get_or_insert(err.message).clone();
                self.progress.notify_all();
                Err(Error::Poisoned { cause })
            }
        }
    }

    fn lock_until_written<'a>(
        &'a self,
        mut writer: MutexGuard<'a, WriterState>,
        target: Seq,
    ) -> Result<MutexGuard<'a, WriterState>> {
        loop {
            if let Some(cause) = &writer.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if writer.written_seq >= target {
                return Ok(writer);
            }
            if writer.leader_active || writer.queue.is_empty() {
                writer = self.progress.wait(writer).unwrap_or_else(|poison| poison.into_inner());
            } else {
                writer = self.lead_group_commit(writer);
            }
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that matters:
        // every mutation under the lock is a plain field assignment.
        self.writer.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The last sequence assigned (including [`Durability::Queued`] entries not yet written).
    pub fn assigned_seq(&self) -> Seq {
        Seq(self.lock_writer().next_seq.0 - 1)
    }

    /// The last sequence written (visible to readers; durable only up to [`Log::durable_seq`]).
    pub fn last_seq(&self) -> Seq {
        self.lock_writer().written_seq
    }

    /// The last sequence known to be on stable storage.
    pub fn durable_seq(&self) -> Seq {
        self.lock_writer().durable_seq
    }

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

    /// Reads the whole log and checks every record: checksum, decode, no gaps, time order; and that
    /// the secondary indexes hold every key each entry should have (once they are complete).
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport { n_entries: 0, last_seq: Seq::ZERO, n_index_keys: 0 };
        let mut last_time = Timestamp(i64::MIN);
        let mut failure = None;
        let check_index =
            self.storage.index_complete().map_err(|err| read_error(Seq::ZERO, err))?;
        self.scan(Seq(1), |seq, entry| {
            if entry.recorded_at < last_time {
                failure = Some(Error::Corrupt {
                    seq,
                    detail: format!("recorded_at {} is before {last_time}", entry.recorded_at),
                });
                return ControlFlow::Break(());
            }
            last_time = entry.recorded_at;
            report.n_entries += 1;
            report.last_seq = seq;
            let keys =
                if check_index { index::index_keys(&entry) } else { index::IndexKeys::new() };
            for key in keys {
                match self.storage.index_contains(key, seq) {
                    Ok(true) => report.n_index_keys += 1,
                    Ok(false) => {
                        failure = Some(Error::Corrupt {
                            seq,
                            detail: format!(
                                "index key {key:?} is missing (derived data: rebuild the index)"
                            ),
                        });
                        return ControlFlow::Break(());
                    }
                    Err(err) => {
                        failure = Some(read_error(seq, err));
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }

    /// Stores an opaque snapshot of derived state taken after applying entries up to `seq`, framed
    /// and checksummed like a record (codec id [`SNAPSHOT_CODEC_OPAQUE`]), and keeps only the newest
    /// `n_keep` snapshots. Snapshots are an optimisation: losing one never loses data.
    pub fn save_snapshot(&self, seq: Seq, bytes: &[u8], n_keep: usize) -> Result<()> {
        let record = frame::frame(seq, SNAPSHOT_CODEC_OPAQUE, bytes, crc32c::crc32c(bytes));
        let storage_error = |err: StorageError| Error::Storage { message: err.message };
        self.storage.put_snapshot(seq, &record).map_err(storage_error)?;
        let seqs = self.storage.snapshot_seqs(Seq(u64::MAX)).map_err(storage_error)?;
        for old in seqs.into_iter().skip(n_keep.max(1)) {
            self.storage.delete_snapshot(old).map_err(storage_error)?;
        }
        Ok(())
    }

    /// The sequences of stored snapshots at or before `seq`, newest first.
    pub fn snapshots_at_or_before(&self, seq: Seq) -> Result<Vec<Seq>> {
        self.storage.snapshot_seqs(seq).map_err(|err| read_error(seq, err))
    }

    /// The verified bytes of the snapshot taken at `seq`. A damaged snapshot is
    /// [`Error::Corrupt`]; callers discard it and replay the log instead.
    pub fn load_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        let Some(record) = self.storage.get_snapshot(seq).map_err(|err| read_error(seq, err))?
        else {
            return Ok(None);
        };
        let verified = frame::verify(seq, &record)
            .map_err(|detail| Error::Corrupt { seq, detail: format!("snapshot: {detail}") })?;
        if verified.codec_id != SNAPSHOT_CODEC_OPAQUE {
            return Err(Error::Corrupt { seq, detail: "snapshot with a record codec".to_owned() });
        }
        Ok(Some(verified.payload.to_vec()))
    }

    /// Replaces a stored snapshot's bytes without checks, to simulate damage in tests.
    #[doc(hidden)]
    pub fn overwrite_snapshot_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<()> {
        self.storage.put_snapshot(seq, bytes).map_err(|err| Error::Storage { message: err.message })
    }

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
    /// tests. Never use it otherwise.
    #[doc(hidden)]
    pub fn overwrite_record_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<()> {
        self.storage
            .overwrite_for_tests(seq, bytes)
            .map_err(|err| Error::Storage { message: err.message })
    }

    /// The framed bytes of record `seq` as stored, for tests that damage them.
    #[doc(hidden)]
    pub fn raw_record_for_tests(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        self.storage.get(seq).map_err(|err| read_error(seq, err))
    }
}

/// Consecutive verified records, their payloads copied into one buffer: see [`Log::read_batch`].
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

/// Entries per batch when indexing an older database.
const BACKFILL_BATCH_ENTRIES: usize = 10_000;

/// Indexes the entries of a database written before the secondary indexes existed (once; resumes
/// where an interrupted run stopped).
fn backfill_index(storage: &dyn Storage) -> Result<()> {
    if storage.index_complete().map_err(|err| read_error(Seq::ZERO, err))? {
        return Ok(());
    }
    let from = storage.index_backfilled().map_err(|err| read_error(Seq::ZERO, err))?.next();
    let mut keys = Vec::new();
    let (mut n_batched, mut covered) = (0, Seq::ZERO);
    let mut failure = None;
    storage
        .scan(from, &mut |seq, bytes| {
            let entry = match decode_record(seq, bytes) {
                Ok(entry) => entry,
                Err(err) => {
                    failure = Some(err);
                    return ControlFlow::Break(());
                }
            };
            keys.extend(index::index_keys(&entry).into_iter().map(|key| (seq, key)));
            (n_batched, covered) = (n_batched + 1, seq);
            if n_batched == BACKFILL_BATCH_ENTRIES {
                if let Err(err) = storage.index_backfill(&keys, covered, false) {
                    failure = Some(read_error(seq, err));
                    return ControlFlow::Break(());
                }
                keys.clear();
                n_batched = 0;
            }
            ControlFlow::Continue(())
        })
        .map_err(|err| read_error(covered.next(), err))?;
    if let Some(err) = failure {
        return Err(err);
    }
    storage.index_backfill(&keys, covered, true).map_err(|err| read_error(covered, err))
}

fn read_error(seq: Seq, err: StorageError) -> Error {
    if err.corruption {
        Error::Corrupt { seq, detail: err.message }
    } else {
        Error::Storage { message: err.message }
    }
}

/// Verifies and decodes one stored record. The only path from stored bytes to an [`Entry`].
fn decode_record(seq: Seq, bytes: &[u8]) -> Result<Entry> {
    let payload = verified_payload(seq, bytes)?;
    codec::decode(payload).map_err(|err| undecodable(seq, err))
}

fn decode_view(seq: Seq, bytes: &[u8]) -> Result<EntryView<'_>> {
    let payload = verified_payload(seq, bytes)?;
    codec::decode_view(payload).map_err(|err| undecodable(seq, err))
}

fn verified_payload(seq: Seq, bytes: &[u8]) -> Result<&[u8]> {
    let corrupt = |detail: String| Error::Corrupt { seq, detail };
    let verified = frame::verify(seq, bytes).map_err(corrupt)?;
    if verified.codec_id != codec::CODEC_BINCODE2_SERDE {
        return Err(corrupt(format!("unknown codec id {}", verified.codec_id)));
    }
    Ok(verified.payload)
}

fn undecodable(seq: Seq, err: String) -> Error {
    Error::Corrupt { seq, detail: format!("undecodable payload: {err}") }
}

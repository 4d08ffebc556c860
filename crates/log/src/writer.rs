//! The write path: validating and sequencing appends ([`Log::submit`]), waiting for them
//! ([`Log::wait`]), the group commit that writes everything queued as one batch with one fsync,
//! [`Log::flush`] and [`Log::sync`], and poisoning after a failed write or sync.
//!
//! Sequences are assigned under one lock and batches reach storage in sequence order (one leader at
//! a time), so a crash loses at most a suffix and never leaves a gap (the crate docs say why).
//! A group commit stores what was queued as one record (`crate::group`), or a few when it exceeds
//! [`limits::GROUP_ENTRIES_MAX`] entries or [`limits::GROUP_PAYLOAD_BYTES_MAX`] bytes; the leader
//! frames and checksums them outside the lock.

use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use idgraph_model::{Entry, Seq, Timestamp};
use smallvec::SmallVec;

use crate::storage::{StorageError, StoredRecord};
use crate::{
    BATCH_SIZE_BUCKETS, Durability, Error, GroupRecord, Log, Pending, Result, codec, group, limits,
};

/// An encoded entry with its sequence, queued for the next group commit.
#[derive(Debug)]
pub(crate) struct QueuedEntry {
    seq: Seq,
    recorded_at: Timestamp,
    payload: Vec<u8>,
}

/// Sequencing and group-commit state, behind [`Log`]'s writer lock.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// The sequence the next appended entry gets.
    next_seq: Seq,
    /// `recorded_at` of the last queued entry: entries must not go back in time, so that the time
    /// index agrees with sequence order.
    last_time: Timestamp,
    /// Encoded entries with assigned sequences, not yet handed to a leader. Contiguous, starting at
    /// `written_seq + 1` (or after the batch a leader is writing).
    queue: Vec<QueuedEntry>,
    /// The vector of the last batch written, emptied, kept to become the next `queue`: the queue
    /// then grows without reallocating.
    spare: Vec<QueuedEntry>,
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

impl WriterState {
    /// The state of a log whose last stored record is `last_seq`, recorded at `last_time`
    /// (everything stored counts as durable: it was found on open).
    pub(crate) fn new(last_seq: Seq, last_time: Timestamp) -> WriterState {
        WriterState {
            next_seq: last_seq.next(),
            last_time,
            queue: Vec::new(),
            spare: Vec::new(),
            queue_wants_sync: false,
            leader_active: false,
            written_seq: last_seq,
            durable_seq: last_seq,
            poisoned: None,
        }
    }
}

impl WriterState {
    pub(crate) fn next_seq(&self) -> Seq {
        self.next_seq
    }

    pub(crate) fn last_time(&self) -> Timestamp {
        self.last_time
    }

    /// Whether appends are queued or being written (a follower appends replicated records only
    /// into a log nobody else appends to).
    pub(crate) fn busy(&self) -> bool {
        !self.queue.is_empty() || self.leader_active
    }

    /// Records the first failure; returns the cause every later append will report.
    pub(crate) fn poison(&mut self, cause: String) -> String {
        self.poisoned.get_or_insert(cause).clone()
    }

    /// A replicated record up to `last`, recorded at `last_time`, was written (not synced).
    pub(crate) fn advance_replicated(&mut self, last: Seq, last_time: Timestamp) {
        self.next_seq = last.next();
        self.last_time = last_time;
        self.written_seq = last;
    }
}

impl Log {
    /// The writer lock, for a follower's replicated append: refused once poisoned.
    pub(crate) fn lock_writer_for_replica(&self) -> Result<MutexGuard<'_, WriterState>> {
        let writer = self.lock_writer();
        if let Some(cause) = &writer.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        Ok(writer)
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
        self.check_may_append()?;
        if entries.is_empty() || entries.len() > limits::BATCH_ENTRIES_MAX {
            return Err(Error::Rejected {
                reason: format!(
                    "a batch holds 1 to {} entries, not {}",
                    limits::BATCH_ENTRIES_MAX,
                    entries.len()
                ),
            });
        }
        // Encoding happens before taking the lock.
        let mut encoded: SmallVec<[_; 1]> = SmallVec::with_capacity(entries.len());
        for entry in entries {
            encoded.push((entry.recorded_at, codec::encode(entry).map_err(rejected)?));
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
        for (recorded_at, payload) in encoded {
            let seq = writer.next_seq;
            writer.queue.push(QueuedEntry { seq, recorded_at, payload });
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

        let batch_last = batch.last().map(|queued| queued.seq).unwrap_or_default();
        let n_written = batch.len();
        let records = group_records(&batch);
        let res = self.replicate(&records).and_then(|()| self.storage.write(&records, sync));
        drop(records);
        batch.clear(); // Frees the entries outside the lock.

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
}

impl Log {
    /// Hands a group commit's records to the replicator, if there is one (cluster mode's writer).
    fn replicate(&self, records: &[StoredRecord]) -> std::result::Result<(), StorageError> {
        let Some(replicator) = self.replicator.get() else { return Ok(()) };
        let outgoing: SmallVec<[GroupRecord<'_>; 1]> = records
            .iter()
            .map(|record| GroupRecord {
                first: record.first,
                last: record.last,
                bytes: &record.bytes,
            })
            .collect();
        replicator
            .replicate(&outgoing)
            .map_err(|message| StorageError::io(format!("replication failed: {message}")))
    }
}

/// The records of one group commit: the queued entries cut into groups of at most
/// [`limits::GROUP_ENTRIES_MAX`] entries and (unless one entry alone is larger)
/// [`limits::GROUP_PAYLOAD_BYTES_MAX`] payload bytes.
fn group_records(batch: &[QueuedEntry]) -> SmallVec<[StoredRecord; 1]> {
    let mut records = SmallVec::new();
    let mut rest = batch;
    while let Some(head) = rest.first() {
        let mut n = 0;
        let mut n_bytes = 0;
        for queued in rest.iter().take(limits::GROUP_ENTRIES_MAX) {
            if n > 0 && n_bytes + queued.payload.len() > limits::GROUP_PAYLOAD_BYTES_MAX {
                break;
            }
            n += 1;
            n_bytes += queued.payload.len();
        }
        let (members, after) = rest.split_at(n);
        let payloads = members.iter().map(|queued| queued.payload.as_slice());
        records.push(StoredRecord {
            first: head.seq,
            last: members.last().map_or(head.seq, |queued| queued.seq),
            first_time: head.recorded_at,
            bytes: group::encode(head.seq, payloads),
        });
        rest = after;
    }
    records
}

/// An entry that cannot be encoded: the caller's fault, [`Error::Rejected`].
fn rejected(err: codec::EncodeError) -> Error {
    Error::Rejected { reason: err.to_string() }
}

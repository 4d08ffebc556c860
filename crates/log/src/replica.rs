//! Replication at the level of stored records, for cluster mode (`docs/cluster.md`): the writer's
//! group commits go to a [`Replicator`] before they are written locally, and a follower appends
//! the very same records, received from the log of record, with [`Log::append_replicated`]. Both
//! sides store identical bytes under identical keys, so their logs, and the projections folded
//! from them, are equal at every sequence.
//!
//! Invariants:
//! - A group is handed to the replicator before the local write and is acknowledged (its `wait`
//!   returns) only after both succeed; a replicator failure poisons the log like a failed write,
//!   so nothing decided after it is answered.
//! - A replicated record is appended only if it verifies (checksum, group table), starts at the
//!   next sequence, and does not go back in time: a follower never stores what the writer could
//!   not have written.

use std::sync::Arc;

use idgraph_model::{Entry, Seq};

use crate::group::Group;
use crate::read::{decode_entry, decode_view};
use crate::storage::StoredRecord;
use crate::{Error, Log, Result};

/// One stored record (a commit group) as it leaves the writer or reaches a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord<'a> {
    /// The sequence of its first entry (its key).
    pub first: Seq,
    /// The sequence of its last entry.
    pub last: Seq,
    /// The framed record, as stored (`docs/log-format.md`).
    pub bytes: &'a [u8],
}

/// Where a writer's group commits go before they are written locally: the log of record of a
/// cluster. `replicate` returns once the records are durable there, or an error that stops the
/// writer (a lost lease, a fenced append, an unreachable cluster).
pub trait Replicator: Send + Sync + std::fmt::Debug {
    /// Makes `records` (consecutive, in order) durable in the log of record.
    fn replicate(&self, records: &[GroupRecord<'_>]) -> std::result::Result<(), String>;
}

impl Log {
    /// Refuses appends until a replicator is set: a cluster node's log, which only the writer
    /// appends to (through [`Log::set_replicator`]) and a follower only by
    /// [`Log::append_replicated`]. Guards against a decision taken on a follower by mistake, which
    /// would make its log differ from the log of record.
    pub fn require_replicator(&self) {
        self.require_replicator.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether an append may be made now: refused on a cluster node that is not the writer (see
    /// [`Log::require_replicator`]).
    pub fn check_may_append(&self) -> Result<()> {
        let required = self.require_replicator.load(std::sync::atomic::Ordering::Acquire);
        if required && self.replicator.get().is_none() {
            return Err(Error::Rejected {
                reason: "this node is not the cluster's writer: only the writer appends".into(),
            });
        }
        Ok(())
    }

    /// From now on, every group commit is handed to `replicator` first (cluster mode's writer).
    /// Set once, before the first append; a second call is refused.
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) -> Result<()> {
        self.replicator
            .set(replicator)
            .map_err(|_| Error::Rejected { reason: "the log already has a replicator".into() })
    }

    /// Appends a record received from the log of record (cluster mode's follower): verified, at
    /// the next sequence, written as is (without fsync: the log of record is the durable copy, and
    /// a follower that loses a suffix in a crash fetches it again). Returns its entries, decoded,
    /// for the caller to fold.
    pub fn append_replicated(&self, first: Seq, bytes: &[u8]) -> Result<Vec<(Seq, Entry)>> {
        let mut entries = Vec::new();
        self.append_replicated_batch(&[(first, bytes)], Some(&mut entries))?;
        Ok(entries)
    }

    /// [`Log::append_replicated`] for consecutive records at once, in one storage write; their
    /// entries are decoded into `entries` if given (a joining node appends records a snapshot
    /// already covers without decoding them: only their times are read, from borrowed views).
    /// All or nothing: a record that fails a check refuses the whole batch.
    pub fn append_replicated_batch(
        &self,
        records: &[(Seq, &[u8])],
        mut entries: Option<&mut Vec<(Seq, Entry)>>,
    ) -> Result<()> {
        let mut stored = Vec::with_capacity(records.len());
        let mut times = Vec::with_capacity(records.len());
        for (first, bytes) in records {
            let corrupt = |detail: String| Error::Corrupt { seq: *first, detail };
            let group = Group::parse(*first, bytes).map_err(|err| corrupt(err.to_string()))?;
            let mut previous: Option<idgraph_model::Timestamp> = None;
            let mut first_time = None;
            for (seq, payload) in group.entries() {
                let time = match entries.as_deref_mut() {
                    Some(entries) => {
                        let entry = decode_entry(seq, payload)?;
                        let time = entry.recorded_at;
                        entries.push((seq, entry));
                        time
                    }
                    None => decode_view(seq, payload)?.recorded_at,
                };
                if previous.is_some_and(|previous| time < previous) {
                    return Err(corrupt("its entries go back in time".into()));
                }
                first_time.get_or_insert(time);
                previous = Some(time);
            }
            let (Some(first_time), Some(last_time)) = (first_time, previous) else {
                return Err(corrupt("an empty group".into()));
            };
            times.push((first_time, last_time));
            stored.push(StoredRecord {
                first: *first,
                last: group.last(),
                first_time,
                bytes: bytes.to_vec(),
            });
        }
        let mut writer = self.lock_writer_for_replica()?;
        let (mut next, mut last_time) = (writer.next_seq(), writer.last_time());
        for (record, (first_time, record_last_time)) in stored.iter().zip(&times) {
            if record.first != next || writer.busy() {
                return Err(Error::Rejected {
                    reason: format!(
                        "a replicated record starting at {} does not follow the log (next is \
                         {next})",
                        record.first
                    ),
                });
            }
            if *first_time < last_time {
                return Err(Error::time_regressed(last_time, *first_time));
            }
            (next, last_time) = (record.last.next(), *record_last_time);
        }
        let Some(last) = stored.last().map(|record| record.last) else { return Ok(()) };
        if let Err(err) = self.storage.write(&stored, false) {
            let cause = writer.poison(err.message);
            return Err(Error::Poisoned { cause });
        }
        writer.advance_replicated(last, last_time);
        Ok(())
    }
}

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
use crate::read::decode_entry;
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
        let corrupt = |detail: String| Error::Corrupt { seq: first, detail };
        let group = Group::parse(first, bytes).map_err(|err| corrupt(err.to_string()))?;
        let mut entries = Vec::new();
        for (seq, payload) in group.entries() {
            entries.push((seq, decode_entry(seq, payload)?));
        }
        let (first_time, last_time) = match (entries.first(), entries.last()) {
            (Some((_, head)), Some((_, tail))) => (head.recorded_at, tail.recorded_at),
            _ => return Err(corrupt("an empty group".into())),
        };
        let times = entries.iter().map(|(_, entry)| entry.recorded_at);
        if times.clone().zip(times.skip(1)).any(|(before, after)| after < before) {
            return Err(corrupt("its entries go back in time".into()));
        }
        let mut writer = self.lock_writer_for_replica()?;
        if first != writer.next_seq() || writer.busy() {
            return Err(Error::Rejected {
                reason: format!(
                    "a replicated record starting at {first} does not follow the log (next is {})",
                    writer.next_seq()
                ),
            });
        }
        if first_time < writer.last_time() {
            return Err(Error::time_regressed(writer.last_time(), first_time));
        }
        let record = StoredRecord { first, last: group.last(), first_time, bytes: bytes.to_vec() };
        if let Err(err) = self.storage.write(std::slice::from_ref(&record), false) {
            let cause = writer.poison(err.message);
            return Err(Error::Poisoned { cause });
        }
        writer.advance_replicated(group.last(), last_time);
        Ok(entries)
    }
}

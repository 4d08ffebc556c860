//! The in-memory backend: the same interface as RocksDB, for tests of the crates above the log and
//! for fault injection. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use idgraph_model::{Seq, Timestamp};

use crate::index::{self, IndexKey};
use crate::storage::{Storage, StorageError, StoredRecord};

#[derive(Debug, Default)]
pub(crate) struct MemoryStorage {
    /// Records in sequence order: `records[i]` holds sequence `i + 1`, so the vector is gap-free by
    /// construction.
    records: RwLock<Vec<(Timestamp, Vec<u8>)>>,
    /// Stored index keys (`crate::index`), in key order.
    index: RwLock<BTreeSet<Vec<u8>>>,
    /// Snapshots by the sequence they were taken at.
    snapshots: RwLock<BTreeMap<Seq, Vec<u8>>>,
    /// Fault injection: while set, writes and syncs fail with an I/O error.
    fail_writes: Arc<AtomicBool>,
}

/// A switch that makes the in-memory log's storage fail, to test how the writer reacts to I/O
/// errors.
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<AtomicBool>);

impl FaultSwitch {
    /// From now on, every write and sync fails.
    pub fn fail_writes(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl MemoryStorage {
    pub(crate) fn fault_switch(&self) -> FaultSwitch {
        FaultSwitch(Arc::clone(&self.fail_writes))
    }

    fn check_faults(&self) -> Result<(), StorageError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StorageError::io("injected I/O error"));
        }
        Ok(())
    }

    fn snapshots_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Seq, Vec<u8>>> {
        self.snapshots.write().unwrap_or_else(|poison| poison.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(Timestamp, Vec<u8>)>> {
        self.records.read().unwrap_or_else(|poison| poison.into_inner())
    }
}

fn index_of(seq: Seq) -> Option<usize> {
    usize::try_from(seq.0.checked_sub(1)?).ok()
}

impl Storage for MemoryStorage {
    fn write(&self, records: &[StoredRecord], _sync: bool) -> Result<(), StorageError> {
        self.check_faults()?;
        let mut stored = self.records.write().unwrap_or_else(|poison| poison.into_inner());
        let mut index = self.index.write().unwrap_or_else(|poison| poison.into_inner());
        for record in records {
            assert_eq!(record.seq.0, stored.len() as u64 + 1, "the writer appends in sequence");
            stored.push((record.recorded_at, record.bytes.clone()));
            index.extend(record.index.iter().map(|key| key.stored(record.seq)));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check_faults()
    }

    fn get(&self, seq: Seq) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(index_of(seq).and_then(|idx| self.read().get(idx).map(|(_, bytes)| bytes.clone())))
    }

    fn last(&self) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let records = self.read();
        Ok(records.last().map(|(_, bytes)| (Seq(records.len() as u64), bytes.clone())))
    }

    fn scan(
        &self,
        from: Seq,
        visit: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let records = self.read();
        let start = index_of(from.max(Seq(1))).unwrap_or(usize::MAX);
        for (idx, (_, bytes)) in records.iter().enumerate().skip(start) {
            if visit(Seq(idx as u64 + 1), bytes).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn seq_at(&self, time: Timestamp) -> Result<Seq, StorageError> {
        let records = self.read();
        Ok(Seq(records.partition_point(|(recorded_at, _)| *recorded_at <= time) as u64))
    }

    fn index_scan(
        &self,
        key: IndexKey,
        up_to: Seq,
        visit: &mut dyn FnMut(Seq) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let index = self.index.read().unwrap_or_else(|poison| poison.into_inner());
        for stored in index.range(key.stored(Seq::ZERO)..=key.stored(up_to)) {
            if let Some(seq) = index::seq_of_stored(stored)
                && visit(seq).is_break()
            {
                break;
            }
        }
        Ok(())
    }

    fn index_last(&self, key: IndexKey, up_to: Seq) -> Result<Option<Seq>, StorageError> {
        let index = self.index.read().unwrap_or_else(|poison| poison.into_inner());
        let last = index.range(key.stored(Seq::ZERO)..=key.stored(up_to)).next_back();
        Ok(last.and_then(|stored| index::seq_of_stored(stored)))
    }

    fn index_contains(&self, key: IndexKey, seq: Seq) -> Result<bool, StorageError> {
        let index = self.index.read().unwrap_or_else(|poison| poison.into_inner());
        Ok(index.contains(&key.stored(seq)))
    }

    fn index_complete(&self) -> Result<bool, StorageError> {
        // Every record ever written here came with its index keys.
        Ok(true)
    }

    fn index_backfill(
        &self,
        keys: &[(Seq, IndexKey)],
        _covered: Seq,
        _complete: bool,
    ) -> Result<(), StorageError> {
        let mut index = self.index.write().unwrap_or_else(|poison| poison.into_inner());
        index.extend(keys.iter().map(|(seq, key)| key.stored(*seq)));
        Ok(())
    }

    fn index_backfilled(&self) -> Result<Seq, StorageError> {
        Ok(Seq::ZERO)
    }

    fn put_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_faults()?;
        self.snapshots_mut().insert(seq, bytes.to_vec());
        Ok(())
    }

    fn snapshot_seqs(&self, at_or_before: Seq) -> Result<Vec<Seq>, StorageError> {
        let snapshots = self.snapshots.read().unwrap_or_else(|poison| poison.into_inner());
        Ok(snapshots.range(..=at_or_before).rev().map(|(seq, _)| *seq).collect())
    }

    fn get_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>, StorageError> {
        let snapshots = self.snapshots.read().unwrap_or_else(|poison| poison.into_inner());
        Ok(snapshots.get(&seq).cloned())
    }

    fn delete_snapshot(&self, seq: Seq) -> Result<(), StorageError> {
        self.snapshots_mut().remove(&seq);
        Ok(())
    }

    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }

    #[cfg(any(test, feature = "test-support"))]
    fn overwrite_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        let mut records = self.records.write().unwrap_or_else(|poison| poison.into_inner());
        let slot = index_of(seq).and_then(|idx| records.get_mut(idx));
        let slot = slot.ok_or_else(|| StorageError::io(format!("no record at {seq}")))?;
        slot.1 = bytes.to_vec();
        Ok(())
    }
}

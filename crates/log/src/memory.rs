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
    /// Records by key (the sequence of their first entry), with the time of their first entry.
    records: RwLock<BTreeMap<Seq, (Timestamp, Vec<u8>)>>,
    /// The last sequence whose index keys are stored.
    indexed: RwLock<Seq>,
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Seq, (Timestamp, Vec<u8>)>> {
        self.records.read().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn write(&self, records: &[StoredRecord], _sync: bool) -> Result<(), StorageError> {
        self.check_faults()?;
        let mut stored = self.records.write().unwrap_or_else(|poison| poison.into_inner());
        for record in records {
            let after_last = stored.last_key_value().is_none_or(|(key, _)| record.first > *key);
            assert!(after_last, "the writer appends in sequence");
            stored.insert(record.first, (record.first_time, record.bytes.clone()));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check_faults()
    }

    fn get(&self, seq: Seq) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let records = self.read();
        Ok(records.range(..=seq).next_back().map(|(key, (_, bytes))| (*key, bytes.clone())))
    }

    fn last(&self) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        Ok(self.read().last_key_value().map(|(key, (_, bytes))| (*key, bytes.clone())))
    }

    fn scan(
        &self,
        from: Seq,
        visit: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let records = self.read();
        let start = records.range(..=from).next_back().map_or(from, |(key, _)| *key);
        for (key, (_, bytes)) in records.range(start..) {
            if visit(*key, bytes).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn n_records(&self) -> Result<u64, StorageError> {
        Ok(self.read().len() as u64)
    }

    fn record_at(&self, time: Timestamp) -> Result<Seq, StorageError> {
        // Times do not decrease along the keys: the last record at or before `time` is found by
        // walking back from the end until one is.
        let records = self.read();
        let mut at = records.iter().rev().filter(|(_, (first_time, _))| *first_time <= time);
        Ok(at.next().map_or(Seq::ZERO, |(key, _)| *key))
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

    fn index_write(&self, keys: &[(Seq, IndexKey)], covered: Seq) -> Result<(), StorageError> {
        let mut index = self.index.write().unwrap_or_else(|poison| poison.into_inner());
        index.extend(keys.iter().map(|(seq, key)| key.stored(*seq)));
        *self.indexed.write().unwrap_or_else(|poison| poison.into_inner()) = covered;
        Ok(())
    }

    fn indexed_seq(&self) -> Result<Seq, StorageError> {
        Ok(*self.indexed.read().unwrap_or_else(|poison| poison.into_inner()))
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
        let slot = records.get_mut(&seq);
        let slot = slot.ok_or_else(|| StorageError::io(format!("no record at {seq}")))?;
        slot.1 = bytes.to_vec();
        Ok(())
    }
}

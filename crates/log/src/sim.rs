//! A simulated storage backend with seeded, deterministic faults, for the fault simulation of
//! `tests/sim.rs` and the engine-level fault test of the root package (feature `test-support`).
//!
//! [`SimStorage`] models what a disk promises and what it does not:
//! - a write lands in a *volatile* layer (the page cache): readers see it, a crash may lose it;
//! - a sync makes everything written *durable*: it survives any crash;
//! - a [`SimStorage::crash`] drops the volatile layer, except a random prefix of it (the OS wrote
//!   some pages back on its own), and may tear the last record it keeps (a half-written page).
//!
//! A seeded RNG (splitmix64, no dependency) injects, per call: failed writes (an I/O error or
//! ENOSPC; a failed write may leave a prefix of its batch in the volatile layer), failed syncs (a
//! random prefix of the volatile layer became durable anyway), *lying* syncs (success is reported
//! and nothing is persisted), read errors in the middle of a scan, bit flips in what a read
//! returns, and a crash at a chosen write or sync call (before it, half-way through the batch,
//! after the write, or after the sync, but before the caller hears of it). After a lying sync, a
//! crash may keep any subset of the volatile layer, not only a prefix: pages reach the disk in any
//! order.
//!
//! Everything is deterministic for a given seed as long as one thread drives the log.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};

use idgraph_model::{Seq, Timestamp};

use crate::index::{self, IndexKey};
use crate::storage::{Storage, StorageError, StoredRecord};
use crate::{Log, Result};

/// How often each fault strikes, in parts per thousand of the calls that can suffer it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// A write fails with an I/O error (leaving a random prefix of its batch written).
    pub write_error_per_mille: u32,
    /// A write fails with ENOSPC (nothing written).
    pub enospc_per_mille: u32,
    /// A sync fails (a random prefix of what was unsynced became durable anyway).
    pub sync_error_per_mille: u32,
    /// A sync reports success without persisting anything.
    pub sync_lie_per_mille: u32,
    /// A read (point read, or a record of a scan) fails with an I/O error.
    pub read_error_per_mille: u32,
    /// A read returns the record with one bit flipped.
    pub read_flip_per_mille: u32,
    /// The write or sync call (counted from 1 across both) during which the process crashes.
    pub crash_at_call: Option<u64>,
}

/// A record as the simulated disk holds it.
#[derive(Debug, Clone)]
struct SimRecord {
    first_time: Timestamp,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct SimState {
    rng: u64,
    faults: SimFaults,
    /// Records that survive any crash.
    durable: BTreeMap<Seq, SimRecord>,
    /// Records written since the last sync; they shadow `durable`.
    volatile: BTreeMap<Seq, SimRecord>,
    /// Stored index keys and the last sequence they cover: derived data, which a crash drops
    /// whole (a storage may lose it; the log indexes again on open).
    index: BTreeSet<Vec<u8>>,
    indexed: Seq,
    snapshots: BTreeMap<Seq, Vec<u8>>,
    /// Write and sync calls so far (for [`SimFaults::crash_at_call`]).
    n_mutating_calls: u64,
    /// Set once the simulated process has crashed: every call fails until [`SimStorage::crash`].
    dead: bool,
    /// Whether some sync lied since the simulation started.
    lied: bool,
    /// Descriptions of the faults injected, in order.
    injected: Vec<String>,
}

/// The simulated storage. Clones share one simulated disk: keep one to crash it and to open the
/// log again on what survived ([`Log::with_sim_storage`]).
#[derive(Debug, Clone)]
pub struct SimStorage(Arc<Mutex<SimState>>);

/// What [`SimStorage::crash`] left on the simulated disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// The last sequence the disk holds intact (`Seq::ZERO` if none).
    pub last_seq: Seq,
    /// The key (first sequence) of the record the crash tore (its bytes cut short), if any.
    pub torn: Option<Seq>,
    /// Whether what survived has holes (possible only after a lying sync).
    pub holes: bool,
}

impl SimStorage {
    /// An empty simulated disk whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: SimFaults) -> SimStorage {
        SimStorage(Arc::new(Mutex::new(SimState {
            rng: seed,
            faults,
            durable: BTreeMap::new(),
            volatile: BTreeMap::new(),
            index: BTreeSet::new(),
            indexed: Seq::ZERO,
            snapshots: BTreeMap::new(),
            n_mutating_calls: 0,
            dead: false,
            lied: false,
            injected: Vec::new(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Replaces the fault rates (say, none while the log is reopened, then read faults only).
    pub fn set_faults(&self, faults: SimFaults) {
        self.state().faults = faults;
    }

    /// Whether some sync reported success without persisting (acknowledged entries may be lost).
    pub fn lied(&self) -> bool {
        self.state().lied
    }

    /// Whether the simulated process has crashed (at [`SimFaults::crash_at_call`]).
    pub fn crashed(&self) -> bool {
        self.state().dead
    }

    /// The faults injected so far, one description each, for a failing seed's report.
    pub fn injected(&self) -> Vec<String> {
        self.state().injected.clone()
    }

    /// The process dies (if it had not already) and restarts: the volatile layer is lost, except
    /// a random prefix of it (any subset after a lying sync), and the last record kept may be torn.
    /// Faults are switched off; set new ones with [`SimStorage::set_faults`].
    pub fn crash(&self) -> CrashReport {
        let mut state = self.state();
        let volatile = std::mem::take(&mut state.volatile);
        let n_volatile = volatile.len() as u64;
        let scatter = state.lied;
        let n_kept_prefix = state.below(n_volatile + 1);
        let mut kept = Vec::new();
        for (idx, (seq, record)) in volatile.into_iter().enumerate() {
            let keep = if scatter { state.chance(500) } else { (idx as u64) < n_kept_prefix };
            if keep {
                kept.push((seq, record));
            }
        }
        let mut torn = None;
        if state.chance(300)
            && let Some((seq, record)) = kept.last_mut()
        {
            let cut = state.below(record.bytes.len() as u64) as usize;
            record.bytes.truncate(cut);
            torn = Some(*seq);
        }
        state.durable.extend(kept);
        state.index.clear();
        state.indexed = Seq::ZERO;
        state.dead = false;
        state.faults = SimFaults::default();
        state.injected.push(format!("crash: torn {torn:?}, scattered {scatter}"));
        // Walk the records that read intact: each must start where the one before ended.
        let (mut last_seq, mut holes) = (Seq::ZERO, false);
        for (key, record) in &state.durable {
            let Ok(group) = crate::group::Group::parse(*key, &record.bytes) else { break };
            holes |= *key != last_seq.next();
            last_seq = group.last();
        }
        CrashReport { last_seq, torn, holes }
    }

    /// Drops a torn last record, as RocksDB's write-ahead-log recovery does with a torn tail
    /// (`TolerateCorruptedTailRecords`): the repair after [`CrashReport::torn`].
    pub fn drop_torn_tail(&self, torn: Seq) {
        self.state().durable.remove(&torn);
    }
}

impl SimState {
    fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    /// A number below `n` (0 if `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < u64::from(per_mille)
    }

    fn fault(&mut self, message: String) -> StorageError {
        self.injected.push(message.clone());
        StorageError::io(message)
    }

    fn check_alive(&self) -> Result<(), StorageError> {
        if self.dead {
            return Err(StorageError::io("simulated crash: the process is gone"));
        }
        Ok(())
    }

    /// Whether this write or sync call is the one the process dies in.
    fn crashes_now(&mut self) -> bool {
        self.n_mutating_calls += 1;
        self.faults.crash_at_call == Some(self.n_mutating_calls)
    }

    fn visible_records(&self) -> BTreeMap<Seq, &SimRecord> {
        let mut all: BTreeMap<Seq, &SimRecord> =
            self.durable.iter().map(|(s, r)| (*s, r)).collect();
        all.extend(self.volatile.iter().map(|(s, r)| (*s, r)));
        all
    }

    /// A record as a read returns it: maybe an I/O error, maybe with a bit flipped.
    fn read(&mut self, seq: Seq, bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
        if self.chance(self.faults.read_error_per_mille) {
            return Err(self.fault(format!("injected read error at {seq}")));
        }
        let mut bytes = bytes.to_vec();
        if !bytes.is_empty() && self.chance(self.faults.read_flip_per_mille) {
            let at = self.below(bytes.len() as u64) as usize;
            let bit = 1u8 << self.below(8);
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= bit;
            }
            self.injected.push(format!("flipped a bit of {seq} on read"));
        }
        Ok(bytes)
    }

    fn persist_volatile_prefix(&mut self, n: u64) {
        let volatile = std::mem::take(&mut self.volatile);
        for (idx, (seq, record)) in volatile.into_iter().enumerate() {
            if (idx as u64) < n {
                self.durable.insert(seq, record);
            } else {
                self.volatile.insert(seq, record);
            }
        }
    }

    fn sync_volatile(&mut self) -> Result<(), StorageError> {
        if self.chance(self.faults.sync_error_per_mille) {
            let n = self.below(self.volatile.len() as u64 + 1);
            self.persist_volatile_prefix(n);
            return Err(self.fault("injected fsync error (EIO)".to_owned()));
        }
        if self.chance(self.faults.sync_lie_per_mille) {
            self.lied = true;
            self.injected.push("a sync lied".to_owned());
            return Ok(());
        }
        self.durable.append(&mut self.volatile);
        Ok(())
    }
}

/// A splitmix64 step: the simulation's only source of randomness.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sim_record(record: &StoredRecord) -> SimRecord {
    SimRecord { first_time: record.first_time, bytes: record.bytes.clone() }
}

impl Storage for SimStorage {
    fn write(&self, records: &[StoredRecord], sync: bool) -> Result<(), StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        if state.crashes_now() {
            // Die before, during or after the write, or after its sync: the caller never hears.
            let stage = state.below(4);
            let n_written = match stage {
                0 => 0,
                1 => state.below(records.len() as u64 + 1) as usize,
                _ => records.len(),
            };
            for record in records.iter().take(n_written) {
                state.volatile.insert(record.first, sim_record(record));
            }
            if stage == 3 && sync {
                let _ = state.sync_volatile();
            }
            state.dead = true;
            return Err(state.fault(format!("simulated crash in a write (stage {stage})")));
        }
        let faults = state.faults;
        if state.chance(faults.enospc_per_mille) {
            return Err(
                state.fault("injected write error: No space left on device (ENOSPC)".into())
            );
        }
        if state.chance(faults.write_error_per_mille) {
            let n_written = state.below(records.len() as u64) as usize;
            for record in records.iter().take(n_written) {
                state.volatile.insert(record.first, sim_record(record));
            }
            return Err(state.fault(format!(
                "injected write error (EIO) after {n_written} of {} records",
                records.len()
            )));
        }
        for record in records {
            state.volatile.insert(record.first, sim_record(record));
        }
        if sync { state.sync_volatile() } else { Ok(()) }
    }

    fn sync(&self) -> Result<(), StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        if state.crashes_now() {
            if state.chance(500) {
                let _ = state.sync_volatile();
            }
            state.dead = true;
            return Err(state.fault("simulated crash in a sync".to_owned()));
        }
        state.sync_volatile()
    }

    fn get(&self, seq: Seq) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        let found =
            state.visible_records().range(..=seq).next_back().map(|(k, r)| (*k, r.bytes.clone()));
        let Some((key, bytes)) = found else {
            return Ok(None);
        };
        state.read(key, &bytes).map(|bytes| Some((key, bytes)))
    }

    fn last(&self) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        let last = state.visible_records().iter().next_back().map(|(s, r)| (*s, r.bytes.clone()));
        match last {
            None => Ok(None),
            Some((seq, bytes)) => Ok(Some((seq, state.read(seq, &bytes)?))),
        }
    }

    fn scan(
        &self,
        from: Seq,
        visit: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        // Copied first, so `visit` runs without the lock (it may read the storage again).
        let records: Vec<(Seq, Vec<u8>)> = {
            let state = self.state();
            state.check_alive()?;
            let visible = state.visible_records();
            let start = visible.range(..=from).next_back().map_or(from, |(key, _)| *key);
            visible.range(start..).map(|(seq, record)| (*seq, record.bytes.clone())).collect()
        };
        for (seq, bytes) in records {
            let bytes = self.state().read(seq, &bytes)?;
            if visit(seq, &bytes).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn n_records(&self) -> Result<u64, StorageError> {
        let state = self.state();
        state.check_alive()?;
        Ok(state.visible_records().len() as u64)
    }

    fn record_at(&self, time: Timestamp) -> Result<Seq, StorageError> {
        let state = self.state();
        state.check_alive()?;
        let visible = state.visible_records();
        let at = visible.iter().filter(|(_, record)| record.first_time <= time).map(|(s, _)| *s);
        Ok(at.max().unwrap_or(Seq::ZERO))
    }

    fn index_scan(
        &self,
        key: IndexKey,
        up_to: Seq,
        visit: &mut dyn FnMut(Seq) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let index = {
            let state = self.state();
            state.check_alive()?;
            state.index.clone()
        };
        for stored in index.range(key.stored(Seq::ZERO)..=key.stored(up_to)) {
            if let Some(seq) = index::seq_of_stored(stored)
                && visit(seq).is_break()
            {
                break;
            }
        }
        Ok(())
    }

    fn index_contains(&self, key: IndexKey, seq: Seq) -> Result<bool, StorageError> {
        let state = self.state();
        state.check_alive()?;
        Ok(state.index.contains(&key.stored(seq)))
    }

    fn index_write(&self, keys: &[(Seq, IndexKey)], covered: Seq) -> Result<(), StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        state.index.extend(keys.iter().map(|(seq, key)| key.stored(*seq)));
        state.indexed = covered;
        Ok(())
    }

    fn indexed_seq(&self) -> Result<Seq, StorageError> {
        let state = self.state();
        state.check_alive()?;
        Ok(state.indexed)
    }

    fn put_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.state();
        state.check_alive()?;
        state.snapshots.insert(seq, bytes.to_vec());
        Ok(())
    }

    fn snapshot_seqs(&self, at_or_before: Seq) -> Result<Vec<Seq>, StorageError> {
        let state = self.state();
        Ok(state.snapshots.range(..=at_or_before).rev().map(|(seq, _)| *seq).collect())
    }

    fn get_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state().snapshots.get(&seq).cloned())
    }

    fn delete_snapshot(&self, seq: Seq) -> Result<(), StorageError> {
        self.state().snapshots.remove(&seq);
        Ok(())
    }

    fn close(&self) -> Result<(), StorageError> {
        self.state().check_alive()
    }

    // Redundant (the whole module is test-support), but the tidy check reads items, not modules.
    #[cfg(any(test, feature = "test-support"))]
    fn overwrite_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.state();
        let record = match state.volatile.get_mut(&seq) {
            Some(record) => Some(record),
            None => state.durable.get_mut(&seq),
        };
        let record = record.ok_or_else(|| StorageError::io(format!("no record keyed {seq}")))?;
        record.bytes = bytes.to_vec();
        Ok(())
    }
}

impl Log {
    /// Opens a log on a simulated disk (feature `test-support`): an empty one, or what survived
    /// [`SimStorage::crash`]. The log checks it exactly as it checks a RocksDB database.
    pub fn with_sim_storage(sim: &SimStorage) -> Result<Log> {
        Log::with_storage(Box::new(sim.clone()))
    }
}

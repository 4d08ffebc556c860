//! Opening a log: on RocksDB ([`Log::open`]) or in memory, finding and checking the last record
//! (it gives the next sequence and the time the next entry may not precede), checking that the log
//! starts at sequence 1, and reading how far the secondary indexes go.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex};

use idgraph_model::{Seq, Timestamp};

use crate::group::Group;
use crate::read::{decode_view, parse_group};
use crate::storage::{Storage, StorageError};
use crate::writer::WriterState;
use crate::{Error, FaultSwitch, Log, Result, memory, read_error, rocks};

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

    pub(crate) fn with_storage(storage: Box<dyn Storage>) -> Result<Log> {
        let last = match storage.last() {
            Ok(last) => last,
            Err(err) if err.corruption => return Err(damaged_tail(storage.as_ref(), err)),
            // Not about any record: `Error::Storage`, which names no sequence.
            Err(err) => return Err(read_error(Seq::ZERO, err)),
        };
        let (last_seq, last_time) = match last {
            None => (Seq::ZERO, Timestamp(i64::MIN)),
            Some((key, bytes)) => {
                let group = parse_group(key, &bytes)?;
                let (seq, payload) = group.entries().last().unwrap_or((key, &[]));
                (seq, decode_view(seq, payload)?.recorded_at)
            }
        };
        if last_seq > Seq::ZERO {
            let first = storage.get(Seq(1)).map_err(|e| read_error(Seq(1), e))?;
            if first.is_none_or(|(key, _)| key != Seq(1)) {
                return Err(Error::Gap { missing: Seq(1) });
            }
        }
        let log = Log {
            storage,
            writer: Mutex::new(WriterState::new(last_seq, last_time)),
            progress: Condvar::new(),
            n_writes: AtomicU64::new(0),
            n_syncs: AtomicU64::new(0),
            n_entries_written: AtomicU64::new(0),
            batch_sizes: Default::default(),
            indexed: AtomicU64::new(0),
            indexer: Mutex::new(()),
            replicator: std::sync::OnceLock::new(),
            require_replicator: std::sync::atomic::AtomicBool::new(false),
        };
        // The indexes are caught up behind the writer (by a background indexer, or by the first
        // reader that needs them), not here: a damaged record must not keep the log from opening.
        log.load_indexed_seq()?;
        Ok(log)
    }
}

/// The error for a log whose last record cannot be read because the storage found the block
/// holding it damaged (issue #14, item 9: it used to say "sequence 0"). [`Error::Corrupt`] at the
/// first sequence that does not read back, which is the first one the damaged block holds: point
/// reads keep the storage's own checks, the records before the damage read and none after it does,
/// so an exponential probe and a binary search find it in O(log n) reads.
fn damaged_tail(storage: &dyn Storage, err: StorageError) -> Error {
    let reads = |seq: u64| match storage.get(Seq(seq)) {
        Ok(Some((key, bytes))) => Group::parse(key, &bytes).is_ok_and(|g| g.last() >= Seq(seq)),
        _ => false,
    };
    // `lo` reads (0 stands for "before the log"), `hi` does not.
    let (mut lo, mut hi) = (0u64, 1u64);
    while hi < u64::MAX && reads(hi) {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reads(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let intact = match lo {
        0 => "no record reads intact".to_owned(),
        lo => format!("sequence {lo} is the last that reads intact"),
    };
    Error::Corrupt {
        seq: Seq(hi),
        detail: format!(
            "{} (the block holding the last records is damaged: {intact}, the records after it \
             cannot be read)",
            err.message
        ),
    }
}

//! The RocksDB backend: the only code in idgraph that touches the filesystem for the log.
//!
//! Layout, five column families in one database:
//! - `entries`: key = the sequence of a record's first entry, u64 big endian (so key order is log
//!   order), value = the framed record (a commit group, or one entry of an older log);
//! - `time`: key = the recorded time of a record's first entry (i64 µs, sign bit flipped, big
//!   endian) ‖ the record's key, value empty: the time → sequence index behind "as of
//!   2026-05-01T12:00Z";
//! - `meta`: `format` = the on-disk format name, checked on open (and upgraded from
//!   `idgraph-log/1`); `indexed` = the last sequence whose index keys are stored;
//! - `snapshots`: key = sequence (u64 big endian), value = a framed projection snapshot;
//! - `index`: the secondary indexes of `crate::index` (profile → entries, identity → entries),
//!   value empty, written by the indexer behind the writer together with `indexed`.
//!
//! A group commit's records and their time keys go into one RocksDB `WriteBatch`, so they become
//! visible, and durable, together. A write with `sync` fsyncs the write-ahead log before returning;
//! RocksDB syncs earlier unsynced WAL files too, so a synced record implies every earlier one. The
//! indexer's writes come after the records they index in the write-ahead log, so recovery never
//! keeps index keys without their entries.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use idgraph_model::{Seq, Timestamp};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode,
    Direction, ErrorKind, IteratorMode, MemtableFactory, Options, ReadOptions, SliceTransform,
    WriteBatch, WriteOptions,
};

use crate::index::{self, IndexKey};
use crate::storage::{Storage, StorageError, StoredRecord};

const CF_ENTRIES: &str = "entries";
const CF_TIME: &str = "time";
const CF_META: &str = "meta";
const CF_SNAPSHOTS: &str = "snapshots";
const CF_INDEX: &str = "index";
/// Table block size of the `entries` column family: 64 KiB (RocksDB's default is 4 KiB).
const ENTRIES_BLOCK_BYTES: usize = 64 * 1024;
const META_FORMAT_KEY: &[u8] = b"format";
const META_INDEXED_KEY: &[u8] = b"indexed";
/// Keys of format 1: whether the index was complete, how far a backfill of it got. Read once, when
/// a format-1 database is upgraded.
const META_V1_INDEX_COMPLETE_KEY: &[u8] = b"index_complete";
const META_V1_INDEX_BACKFILLED_KEY: &[u8] = b"index_backfilled";
/// The format name stored in `meta`. Bumped only with a change that an older build cannot read.
pub(crate) const FORMAT_NAME: &[u8] = b"idgraph-log/2";
/// The format this build upgrades on open: logs of one-entry records with their index keys
/// written alongside.
pub(crate) const FORMAT_NAME_V1: &[u8] = b"idgraph-log/1";

#[derive(Debug)]
pub(crate) struct RocksStorage {
    db: DB,
    path: PathBuf,
}

fn storage_error(err: rocksdb::Error) -> StorageError {
    StorageError { corruption: err.kind() == ErrorKind::Corruption, message: err.into_string() }
}

fn time_key(time: Timestamp, seq: Seq) -> [u8; 16] {
    let mut key = [0u8; 16];
    let (time_part, seq_part) = key.split_at_mut(8);
    // Flipping the sign bit makes big-endian byte order agree with signed integer order.
    time_part.copy_from_slice(&((time.0 as u64) ^ (1 << 63)).to_be_bytes());
    seq_part.copy_from_slice(&seq.0.to_be_bytes());
    key
}

fn seq_from_key(key: &[u8]) -> Result<Seq, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StorageError {
        message: format!("entry key of {} bytes", key.len()),
        corruption: true,
    })?;
    Ok(Seq(u64::from_be_bytes(bytes)))
}

impl RocksStorage {
    /// Opens (creating if missing) the database at `path`. Returns the storage and whether the
    /// database was newly created.
    pub(crate) fn open(path: &Path) -> Result<RocksStorage, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // A torn last WAL record can only be a write that was never acknowledged (a crash during
        // the write); anything else that fails its checksum stops recovery with an error.
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        options.set_paranoid_checks(true);
        options.set_compression_type(DBCompressionType::None);
        options.set_keep_log_file_num(4);
        // One leader writes at a time anyway; the `index` memtable (a hash of skip lists) needs it.
        options.set_allow_concurrent_memtable_write(false);
        let column_families = [CF_ENTRIES, CF_TIME, CF_META, CF_SNAPSHOTS, CF_INDEX].map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_compression_type(DBCompressionType::None);
            if name == CF_INDEX {
                // Index keys arrive in random subject order; in a plain skip list each insert is a
                // search through the whole memtable. Hashing on the subject's first bytes gives
                // every subject its own small skip list, appended in sequence order. Readers only
                // ever iterate within one subject.
                cf_options.set_prefix_extractor(SliceTransform::create_fixed_prefix(
                    index::MEMTABLE_PREFIX_BYTES,
                ));
                cf_options.set_memtable_factory(MemtableFactory::HashSkipList {
                    bucket_count: 1 << 20,
                    height: 4,
                    branching_factor: 4,
                });
            }
            if name == CF_ENTRIES {
                // The log is read mostly by full scans (replay): large blocks mean fewer block
                // reads and checksum checks per entry. Point reads (audit) stay cheap enough.
                let mut table = BlockBasedOptions::default();
                table.set_block_size(ENTRIES_BLOCK_BYTES);
                cf_options.set_block_based_table_factory(&table);
            }
            ColumnFamilyDescriptor::new(name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, path, column_families).map_err(storage_error)?;
        let storage = RocksStorage { db, path: path.to_owned() };
        storage.check_format()?;
        Ok(storage)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        // The column families are created by `open` before any other call can run.
        self.db.cf_handle(name).expect("column family created on open")
    }

    fn check_format(&self) -> Result<(), StorageError> {
        let meta = self.cf(CF_META);
        let found = self.db.get_cf(meta, META_FORMAT_KEY).map_err(storage_error)?;
        match found.as_deref() {
            Some(FORMAT_NAME) => Ok(()),
            Some(FORMAT_NAME_V1) => self.upgrade_from_v1(),
            Some(found) => Err(StorageError {
                message: format!(
                    "{} holds log format {:?}; this build reads {:?} (and upgrades {:?}): run a \
                     newer idgraph",
                    self.path.display(),
                    String::from_utf8_lossy(found),
                    String::from_utf8_lossy(FORMAT_NAME),
                    String::from_utf8_lossy(FORMAT_NAME_V1),
                ),
                corruption: false,
            }),
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, META_FORMAT_KEY, FORMAT_NAME);
                self.write_synced(batch)
            }
        }
    }

    /// Upgrades a format-1 database in place: its one-entry records stay as they are (they read as
    /// groups of one) and so do their index keys; only `meta` changes, in one synced write, so an
    /// interrupted upgrade leaves format 1 behind and is simply done again. An older build refuses
    /// the upgraded database, naming both formats.
    fn upgrade_from_v1(&self) -> Result<(), StorageError> {
        let meta = self.cf(CF_META);
        let complete =
            self.db.get_cf(meta, META_V1_INDEX_COMPLETE_KEY).map_err(storage_error)?.is_some();
        let indexed = if complete {
            // Format 1 wrote one record per entry: the last key is the last sequence.
            self.last()?.map_or(Seq::ZERO, |(seq, _)| seq)
        } else {
            match self.db.get_cf(meta, META_V1_INDEX_BACKFILLED_KEY).map_err(storage_error)? {
                None => Seq::ZERO,
                Some(bytes) => seq_from_key(&bytes)?,
            }
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_INDEXED_KEY, indexed.0.to_be_bytes());
        batch.delete_cf(meta, META_V1_INDEX_COMPLETE_KEY);
        batch.delete_cf(meta, META_V1_INDEX_BACKFILLED_KEY);
        batch.put_cf(meta, META_FORMAT_KEY, FORMAT_NAME);
        self.write_synced(batch)
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        self.db.write_opt(batch, &write_options).map_err(storage_error)
    }

    /// Creates a format-1 database holding `records` (one framed entry each, keyed by sequence,
    /// with their time and index keys), as a build before commit groups wrote it: for the tests of
    /// the upgrade.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn create_v1_for_tests(
        path: &Path,
        records: &[(Seq, Timestamp, Vec<u8>, index::IndexKeys)],
    ) -> Result<(), StorageError> {
        let storage = RocksStorage::open(path)?;
        let (entries, time, index, meta) = (
            storage.cf(CF_ENTRIES),
            storage.cf(CF_TIME),
            storage.cf(CF_INDEX),
            storage.cf(CF_META),
        );
        let mut batch = WriteBatch::default();
        for (seq, recorded_at, bytes, keys) in records {
            batch.put_cf(entries, seq.0.to_be_bytes(), bytes);
            batch.put_cf(time, time_key(*recorded_at, *seq), []);
            for key in keys {
                batch.put_cf(index, key.stored(*seq), []);
            }
        }
        batch.put_cf(meta, META_FORMAT_KEY, FORMAT_NAME_V1);
        batch.put_cf(meta, META_V1_INDEX_COMPLETE_KEY, [1]);
        batch.delete_cf(meta, META_INDEXED_KEY);
        storage.write_synced(batch)?;
        storage.close()
    }
}

impl Storage for RocksStorage {
    fn write(&self, records: &[StoredRecord], sync: bool) -> Result<(), StorageError> {
        let (entries, time) = (self.cf(CF_ENTRIES), self.cf(CF_TIME));
        let mut batch = WriteBatch::default();
        for record in records {
            batch.put_cf(entries, record.first.0.to_be_bytes(), &record.bytes);
            batch.put_cf(time, time_key(record.first_time, record.first), []);
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        self.db.write_opt(batch, &write_options).map_err(storage_error)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true).map_err(storage_error)
    }

    fn get(&self, seq: Seq) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_ENTRIES));
        iter.seek_for_prev(seq.0.to_be_bytes());
        match (iter.key(), iter.value()) {
            (Some(key), Some(value)) => Ok(Some((seq_from_key(key)?, value.to_vec()))),
            _ => iter.status().map(|()| None).map_err(storage_error),
        }
    }

    fn last(&self) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let mut iter = self.db.iterator_cf(self.cf(CF_ENTRIES), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(Err(err)) => Err(storage_error(err)),
            Some(Ok((key, value))) => Ok(Some((seq_from_key(&key)?, value.into_vec()))),
        }
    }

    fn scan(
        &self,
        from: Seq,
        visit: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let mut read_options = ReadOptions::default();
        read_options.fill_cache(false);
        read_options.set_readahead_size(4 << 20);
        // Every record carries its own CRC32C over payload and sequence, checked before decoding,
        // and the scan checks that sequences follow each other: damage inside a table block shows
        // up as a corrupt record or a gap either way. Skipping RocksDB's block checksums on scans
        // saves hashing every byte twice during replay. Point reads keep them.
        read_options.set_verify_checksums(false);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_ENTRIES), read_options);
        // The record holding `from` starts at or before it.
        iter.seek_for_prev(from.0.to_be_bytes());
        if !iter.valid() {
            iter.status().map_err(storage_error)?;
            iter.seek(from.0.to_be_bytes());
        }
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else { break };
            if visit(seq_from_key(key)?, value).is_break() {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(storage_error)
    }

    fn n_records(&self) -> Result<u64, StorageError> {
        let mut read_options = ReadOptions::default();
        read_options.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_ENTRIES), read_options);
        iter.seek_to_first();
        let mut n = 0;
        while iter.valid() {
            n += 1;
            iter.next();
        }
        iter.status().map(|()| n).map_err(storage_error)
    }

    fn record_at(&self, time: Timestamp) -> Result<Seq, StorageError> {
        let bound = time_key(time, Seq(u64::MAX));
        let mut iter =
            self.db.iterator_cf(self.cf(CF_TIME), IteratorMode::From(&bound, Direction::Reverse));
        match iter.next() {
            None => Ok(Seq::ZERO),
            Some(Err(err)) => Err(storage_error(err)),
            Some(Ok((key, _))) => seq_from_key(key.get(8..).unwrap_or_default()),
        }
    }

    fn index_scan(
        &self,
        key: IndexKey,
        up_to: Seq,
        visit: &mut dyn FnMut(Seq) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let prefix = key.prefix();
        let prefix = prefix.as_bytes();
        let mut read_options = ReadOptions::default();
        read_options.set_prefix_same_as_start(true);
        read_options.set_iterate_upper_bound(key.stored(up_to.next()));
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_INDEX), read_options);
        iter.seek(prefix);
        while iter.valid() {
            let Some(stored) = iter.key() else { break };
            if !stored.starts_with(prefix) {
                break;
            }
            let seq = index::seq_of_stored(stored).ok_or_else(|| StorageError {
                message: format!("index key of {} bytes", stored.len()),
                corruption: true,
            })?;
            if visit(seq).is_break() {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(storage_error)
    }

    fn index_contains(&self, key: IndexKey, seq: Seq) -> Result<bool, StorageError> {
        let found = self.db.get_cf(self.cf(CF_INDEX), key.stored(seq)).map_err(storage_error)?;
        Ok(found.is_some())
    }

    fn index_write(&self, keys: &[(Seq, IndexKey)], covered: Seq) -> Result<(), StorageError> {
        let (index, meta) = (self.cf(CF_INDEX), self.cf(CF_META));
        let mut batch = WriteBatch::default();
        for (seq, key) in keys {
            batch.put_cf(index, key.stored(*seq), []);
        }
        batch.put_cf(meta, META_INDEXED_KEY, covered.0.to_be_bytes());
        // Derived data: a crash loses at most what the indexer redoes on the next open.
        self.db.write(batch).map_err(storage_error)
    }

    fn indexed_seq(&self) -> Result<Seq, StorageError> {
        match self.db.get_cf(self.cf(CF_META), META_INDEXED_KEY).map_err(storage_error)? {
            None => Ok(Seq::ZERO),
            Some(bytes) => seq_from_key(&bytes),
        }
    }

    fn put_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_SNAPSHOTS), seq.0.to_be_bytes(), bytes);
        self.db.write_opt(batch, &write_options).map_err(storage_error)
    }

    fn snapshot_seqs(&self, at_or_before: Seq) -> Result<Vec<Seq>, StorageError> {
        let bound = at_or_before.0.to_be_bytes();
        let mode = IteratorMode::From(&bound, Direction::Reverse);
        let mut seqs = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_SNAPSHOTS), mode) {
            let (key, _) = item.map_err(storage_error)?;
            seqs.push(seq_from_key(&key)?);
        }
        Ok(seqs)
    }

    fn get_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(CF_SNAPSHOTS), seq.0.to_be_bytes()).map_err(storage_error)
    }

    fn delete_snapshot(&self, seq: Seq) -> Result<(), StorageError> {
        self.db.delete_cf(self.cf(CF_SNAPSHOTS), seq.0.to_be_bytes()).map_err(storage_error)
    }

    fn close(&self) -> Result<(), StorageError> {
        // Flushing memtables makes the next open fast (nothing to replay from the WAL) and puts
        // every record in a checksummed table file.
        self.db
            .flush_cfs_opt(
                &[self.cf(CF_ENTRIES), self.cf(CF_TIME), self.cf(CF_INDEX)],
                &Default::default(),
            )
            .map_err(storage_error)
    }

    #[cfg(any(test, feature = "test-support"))]
    fn overwrite_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<(), StorageError> {
        self.db.put_cf(self.cf(CF_ENTRIES), seq.0.to_be_bytes(), bytes).map_err(storage_error)
    }
}

//! The indexer: writes the secondary index keys (`index.rs`) of the entries already stored, behind
//! the writer and off the write path, and records how far it got (`indexed` in `meta`, in the same
//! atomic write as the keys).
//!
//! Invariants:
//! - `indexed_seq <= last_seq`: only stored entries are indexed; the indexer's writes follow the
//!   records they index in the storage's write-ahead log, so recovery never keeps keys without
//!   their entries.
//! - Every entry up to `indexed_seq` has all its keys stored. A reader of the indexes calls
//!   [`Log::catch_up_index`] with the sequence it asks about first, so no answer is built on a
//!   half-indexed log: if a background indexer is keeping up this costs nothing, otherwise the
//!   reader does (or waits for) the missing work.
//! - One indexer at a time (a mutex), so `indexed` only grows.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use idgraph_model::Seq;

use crate::{Error, IndexKey, Log, Result, index, limits, read_error};

impl Log {
    /// The last sequence whose index keys are all stored.
    pub fn indexed_seq(&self) -> Seq {
        Seq(self.indexed.load(Ordering::Acquire))
    }

    /// Indexes every stored entry up to `target` (or up to the last stored one, if that is
    /// earlier) that is not indexed yet, and returns the indexed sequence. Cheap when there is
    /// nothing to do; waits while another thread indexes.
    pub fn catch_up_index(&self, target: Seq) -> Result<Seq> {
        let done = self.indexed_seq();
        if done >= target {
            return Ok(done);
        }
        let _one_indexer = self.indexer.lock().unwrap_or_else(|poison| poison.into_inner());
        let target = target.min(self.last_seq());
        let from = self.indexed_seq().next();
        if from > target {
            return Ok(self.indexed_seq());
        }
        let mut keys: Vec<(Seq, IndexKey)> = Vec::new();
        let (mut n_batched, mut covered) = (0, from.0.saturating_sub(1));
        let mut failure = None;
        self.scan_views(from, |seq, view| {
            if seq > target {
                return ControlFlow::Break(());
            }
            keys.extend(index::view_index_keys(view).into_iter().map(|key| (seq, key)));
            (n_batched, covered) = (n_batched + 1, seq.0);
            if n_batched == limits::INDEX_BATCH_ENTRIES {
                if let Err(err) = self.write_index(&keys, Seq(covered)) {
                    failure = Some(err);
                    return ControlFlow::Break(());
                }
                keys.clear();
                n_batched = 0;
            }
            ControlFlow::Continue(())
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        if n_batched > 0 {
            self.write_index(&keys, Seq(covered))?;
        }
        Ok(self.indexed_seq())
    }

    fn write_index(&self, keys: &[(Seq, IndexKey)], covered: Seq) -> Result<()> {
        self.storage.index_write(keys, covered).map_err(|err| Error::Storage {
            message: format!("writing index keys up to {covered}: {}", err.message),
        })?;
        self.indexed.store(covered.0, Ordering::Release);
        Ok(())
    }

    /// Reads where the stored indexes end, for [`Log::with_storage`] (clamped to the last entry).
    pub(crate) fn load_indexed_seq(&self) -> Result<()> {
        let stored = self.storage.indexed_seq().map_err(|err| read_error(Seq::ZERO, err))?;
        self.indexed.store(stored.min(self.last_seq()).0, Ordering::Release);
        Ok(())
    }
}

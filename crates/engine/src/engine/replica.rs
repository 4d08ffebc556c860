//! The engine's side of cluster mode (`docs/cluster.md`): a follower folding the records of the
//! log of record, and an empty node joining from a snapshot of another node's projection.
//!
//! Invariants:
//! - A follower's projection, log and idempotency index advance together, record by record, in
//!   the log of record's order; nothing is decided here.
//! - A snapshot is installed only over a log that ends exactly where the snapshot was taken, so
//!   the projection is still the fold of the local log (a restart replays to the same digests).

use idgraph_model::Seq;
use idgraph_projection::Projection;

use super::Engine;
use crate::EngineError;
use crate::idempotency::IdempotencyIndex;

impl Engine {
    /// Appends a record received from the log of record and folds its entries (cluster mode's
    /// follower; `idgraph_log::Log::append_replicated` says what is checked). Returns the last
    /// sequence applied. A record that does not follow the local log is refused and changes
    /// nothing; a failure after the local write halts the engine. The idempotency index follows
    /// too, so a follower can become the writer in place and still recognise a retried
    /// `request_id`.
    pub fn apply_replicated(&self, first: Seq, record: &[u8]) -> Result<Seq, EngineError> {
        self.apply_replicated_batch(&[(first, record)])
    }

    /// [`Engine::apply_replicated`] for consecutive records, in one local write and one
    /// acquisition of the write lock (all or nothing).
    pub fn apply_replicated_batch(&self, records: &[(Seq, &[u8])]) -> Result<Seq, EngineError> {
        self.check_poisoned()?;
        let mut state = self.write_state();
        let mut entries = Vec::new();
        self.log.append_replicated_batch(records, Some(&mut entries))?;
        let mut last = state.projection.last_seq();
        for (seq, entry) in &entries {
            if let Err(err) = state.projection.apply(*seq, entry) {
                return Err(self.poison(err.into()));
            }
            state.recent.remember(*seq, entry);
            last = *seq;
        }
        // Durable in the log of record, which is what a follower's reads answer from.
        state.last_change = last;
        Ok(last)
    }

    /// Appends consecutive records of the log of record that a snapshot about to be installed
    /// already covers, without folding or even decoding them (an empty node joining from a
    /// snapshot: its local log must hold every entry, for audit, but folding them again is what
    /// the snapshot saves). Returns the log's last sequence. Only before
    /// [`Engine::install_snapshot`], on an engine whose projection is still empty.
    pub fn append_covered(&self, records: &[(Seq, &[u8])]) -> Result<Seq, EngineError> {
        self.check_poisoned()?;
        let state = self.read_state();
        if state.projection.last_seq() != Seq::ZERO {
            return Err(EngineError::Invalid(
                "records are appended unfolded only before a snapshot is installed".into(),
            ));
        }
        self.log.append_replicated_batch(records, None)?;
        Ok(self.log.last_seq())
    }

    /// Replaces the (empty) projection with the snapshot `bytes` of another node's projection,
    /// taken where the local log now ends; rebuilds the idempotency index from the log. Returns
    /// the snapshot's sequence. Refused, changing nothing, if the snapshot does not verify or was
    /// taken at another sequence.
    pub fn install_snapshot(&self, bytes: &[u8]) -> Result<Seq, EngineError> {
        self.check_poisoned()?;
        let projection = Projection::from_snapshot(bytes)
            .map_err(|err| EngineError::Invalid(format!("the snapshot does not load: {err}")))?;
        let seq = projection.last_seq();
        let mut state = self.write_state();
        let log_last = self.log.last_seq();
        if state.projection.last_seq() != Seq::ZERO || seq != log_last {
            return Err(EngineError::Invalid(format!(
                "a snapshot taken at {seq} cannot be installed over a log ending at {log_last} \
                 and a projection at {}",
                state.projection.last_seq()
            )));
        }
        let recent = IdempotencyIndex::rebuild(
            &self.log,
            projection.last_time(),
            self.config.idempotency_window_micros,
        )?;
        // The covered records were appended without fsync: the snapshot must not be ahead of
        // the local disk when the node restarts from it.
        self.log.sync().map_err(|err| self.poison(err.into()))?;
        state.projection = projection;
        state.recent = recent;
        state.last_change = seq;
        Ok(seq)
    }

    /// A snapshot of the projection with the sequence it was taken at (cluster mode: a follower
    /// stores it in the cluster's snapshot store for nodes joining empty).
    pub fn projection_snapshot(&self) -> (Seq, Vec<u8>) {
        let state = self.read_state();
        (state.projection.last_seq(), state.projection.to_snapshot())
    }
}

//! [`Log::verify`]: reads the whole log and checks every record, the order of time, and the
//! secondary index keys each indexed entry should have.

use std::ops::ControlFlow;

use idgraph_model::{Seq, Timestamp};

use crate::{Error, Log, Result, index, read_error};

/// What [`Log::verify`] found in a log that is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked (checksum, decode, sequence, time order).
    pub n_entries: u64,
    /// The last sequence.
    pub last_seq: Seq,
    /// Secondary index keys found present, one per (entry, subject) (`docs/log-format.md`).
    pub n_index_keys: u64,
    /// The last sequence the indexer had covered when the check began (the keys of later entries
    /// are not written yet, so not checked).
    pub indexed_seq: Seq,
}

impl Log {
    /// Reads the whole log and checks every record: checksum, decode, no gaps, time order; and that
    /// the secondary indexes hold every key each indexed entry should have.
    /// Indexes any stored entry not indexed yet first (derived data), so every key is checked.
    pub fn verify(&self) -> Result<VerifyReport> {
        let indexed_seq = self.catch_up_index(self.last_seq())?;
        let mut report =
            VerifyReport { n_entries: 0, last_seq: Seq::ZERO, n_index_keys: 0, indexed_seq };
        let mut last_time = Timestamp(i64::MIN);
        let mut failure = None;
        self.scan(Seq(1), |seq, entry| {
            if entry.recorded_at < last_time {
                failure = Some(Error::Corrupt {
                    seq,
                    detail: format!("recorded_at {} is before {last_time}", entry.recorded_at),
                });
                return ControlFlow::Break(());
            }
            last_time = entry.recorded_at;
            report.n_entries += 1;
            report.last_seq = seq;
            let keys = if seq <= indexed_seq {
                index::index_keys(&entry)
            } else {
                index::IndexKeys::new()
            };
            for key in keys {
                match self.storage.index_contains(key, seq) {
                    Ok(true) => report.n_index_keys += 1,
                    Ok(false) => {
                        failure = Some(Error::Corrupt {
                            seq,
                            detail: format!(
                                "index key {key:?} is missing (derived data: rebuild the index)"
                            ),
                        });
                        return ControlFlow::Break(());
                    }
                    Err(err) => {
                        failure = Some(read_error(seq, err));
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }
}

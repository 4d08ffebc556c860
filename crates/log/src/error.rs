//! The log's error type, sorted by who must act.

use idgraph_model::{Seq, Timestamp};

/// Everything that can go wrong with the log. Each variant says how a server maps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's entry cannot be appended (too large, time going backwards, batch too large).
    /// Nothing was written. **Handling:** a bug in the caller; 500 for the one request.
    #[error("entry rejected: {reason}")]
    Rejected {
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier write or sync failed, so the writer refuses every append: after an I/O error the
    /// state of the storage is unknown, and guessing could lose or reorder acknowledged entries.
    /// **Handling:** 503 and alert; reopen the log (restart) once the cause is fixed.
    #[error("the log refuses appends after an I/O error: {cause}")]
    Poisoned {
        /// The error that poisoned the writer.
        cause: String,
    },
    /// A stored record failed its checksum or could not be decoded. It is never served.
    /// **Handling:** stop serving from this log and restore it; 500.
    #[error("corrupt record at sequence {seq}: {detail}")]
    Corrupt {
        /// The sequence of the damaged record (for damage RocksDB detects in a table block, the
        /// first sequence read from that block).
        seq: Seq,
        /// What was found.
        detail: String,
    },
    /// The log has a hole: `missing` is absent although a later sequence exists.
    /// **Handling:** as [`Error::Corrupt`].
    #[error("gap in the log: sequence {missing} is missing")]
    Gap {
        /// The first missing sequence.
        missing: Seq,
    },
    /// The storage engine failed (I/O error, lock held by another process, ...).
    /// **Handling:** 503; the message says what failed.
    #[error("storage error: {message}")]
    Storage {
        /// The engine's description, with the path where relevant.
        message: String,
    },
}

impl Error {
    pub(crate) fn time_regressed(last: Timestamp, given: Timestamp) -> Error {
        Error::Rejected {
            reason: format!("recorded_at {given} is before the previous entry's {last}"),
        }
    }
}

/// `Result` with the log's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Snapshot storage: opaque snapshots of derived state, framed and checksummed like records, kept
//! newest first. Snapshots are an optimisation; a damaged one is `Error::Corrupt` and the caller
//! replays the log instead.

use idgraph_model::Seq;

use crate::storage::StorageError;
use crate::{Error, Log, Result, frame, read_error};

/// The codec id of snapshot frames: the payload is opaque bytes owned by whoever saved it (the
/// projection's own snapshot format, which carries its own version).
pub const SNAPSHOT_CODEC_OPAQUE: u8 = 0x80;

impl Log {
    /// Stores an opaque snapshot of derived state taken after applying entries up to `seq`, framed
    /// and checksummed like a record (codec id [`SNAPSHOT_CODEC_OPAQUE`]), and keeps only the newest
    /// `n_keep` snapshots. Snapshots are an optimisation: losing one never loses data.
    pub fn save_snapshot(&self, seq: Seq, bytes: &[u8], n_keep: usize) -> Result<()> {
        let crc = crc32c::crc32c(bytes);
        let record = frame::frame(seq, frame::VERSION_ENTRY, SNAPSHOT_CODEC_OPAQUE, bytes, crc);
        let storage_error = |err: StorageError| Error::Storage { message: err.message };
        self.storage.put_snapshot(seq, &record).map_err(storage_error)?;
        let seqs = self.storage.snapshot_seqs(Seq(u64::MAX)).map_err(storage_error)?;
        for old in seqs.into_iter().skip(n_keep.max(1)) {
            self.storage.delete_snapshot(old).map_err(storage_error)?;
        }
        Ok(())
    }

    /// The sequences of stored snapshots at or before `seq`, newest first.
    pub fn snapshots_at_or_before(&self, seq: Seq) -> Result<Vec<Seq>> {
        self.storage.snapshot_seqs(seq).map_err(|err| read_error(seq, err))
    }

    /// The verified bytes of the snapshot taken at `seq`. A damaged snapshot is
    /// [`Error::Corrupt`]; callers discard it and replay the log instead.
    pub fn load_snapshot(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        let Some(record) = self.storage.get_snapshot(seq).map_err(|err| read_error(seq, err))?
        else {
            return Ok(None);
        };
        let corrupt =
            |detail: String| Error::Corrupt { seq, detail: format!("snapshot: {detail}") };
        let (version, payload) = frame::verify(seq, &record, SNAPSHOT_CODEC_OPAQUE)
            .map_err(|err| corrupt(err.to_string()))?;
        if version != frame::VERSION_ENTRY {
            return Err(corrupt(format!("format version {version}, snapshots are version 1")));
        }
        Ok(Some(payload.to_vec()))
    }

    /// Replaces a stored snapshot's bytes without checks, to simulate damage in tests (feature
    /// `test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn overwrite_snapshot_for_tests(&self, seq: Seq, bytes: &[u8]) -> Result<()> {
        self.storage.put_snapshot(seq, bytes).map_err(|err| Error::Storage { message: err.message })
    }
}

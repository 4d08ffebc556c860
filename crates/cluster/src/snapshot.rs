//! Snapshots in the object store bucket `<stream>-snapshots`: one object per snapshot, named
//! `snapshot-<stream_seq, 20 digits>` (so names sort by sequence), its bytes opaque here. The
//! object store checks each object's SHA-256 digest when it is read. The newest
//! [`SNAPSHOTS_KEPT`] are kept.

use async_nats::jetstream::object_store::ObjectMetadata;
use futures_util::TryStreamExt;
use tokio::io::AsyncReadExt;

use crate::Cluster;
use crate::error::ClusterError;
use crate::limits::{SNAPSHOT_CHUNK_BYTES, SNAPSHOT_READ_ATTEMPTS, SNAPSHOTS_KEPT};

const PREFIX: &str = "snapshot-";

fn object_name(stream_seq: u64) -> String {
    format!("{PREFIX}{stream_seq:020}")
}

fn stream_seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Cluster {
    /// Stores a snapshot of the state after folding the stream up to and including
    /// `stream_seq`, then deletes all but the newest [`SNAPSHOTS_KEPT`]. A node that loads it
    /// reads the stream from `stream_seq + 1`.
    pub async fn put_snapshot(&self, stream_seq: u64, bytes: &[u8]) -> Result<(), ClusterError> {
        let meta = ObjectMetadata {
            name: object_name(stream_seq),
            description: Some(format!("idgraph snapshot at stream sequence {stream_seq}")),
            chunk_size: Some(SNAPSHOT_CHUNK_BYTES),
            ..Default::default()
        };
        let mut reader = bytes;
        self.objects
            .put(meta, &mut reader)
            .await
            .map_err(|err| ClusterError::nats("snapshot put", err))?;
        let seqs = self.snapshot_seqs().await?;
        for old in seqs.iter().rev().skip(SNAPSHOTS_KEPT) {
            self.objects
                .delete(object_name(*old))
                .await
                .map_err(|err| ClusterError::nats("snapshot delete", err))?;
        }
        Ok(())
    }

    /// The stream sequences of the stored snapshots, ascending.
    pub async fn snapshot_seqs(&self) -> Result<Vec<u64>, ClusterError> {
        let list =
            self.objects.list().await.map_err(|err| ClusterError::nats("snapshot list", err))?;
        let infos: Vec<_> =
            list.try_collect().await.map_err(|err| ClusterError::nats("snapshot list", err))?;
        let mut seqs: Vec<u64> = infos
            .iter()
            .filter(|info| !info.deleted)
            .filter_map(|info| stream_seq_of(&info.name))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// The newest snapshot that reads back whole (its digest checked): its stream sequence and
    /// bytes. Falls back to an older one if the newest fails; `None` if there is none.
    pub async fn newest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, ClusterError> {
        let mut first_error = None;
        for seq in self.snapshot_seqs().await?.into_iter().rev() {
            match self.get_snapshot(seq).await {
                Ok(bytes) => return Ok(Some((seq, bytes))),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(None),
        }
    }

    /// Reads a snapshot whole, up to [`SNAPSHOT_READ_ATTEMPTS`] times: the object reader
    /// streams chunks through an ordered consumer, and under load a read can fail midway (a
    /// consumer recreated after missed heartbeats, seen once in about 10 runs); a fresh read usually
    /// succeeds. A read that succeeds has matched the object's SHA-256 digest and size.
    async fn get_snapshot(&self, stream_seq: u64) -> Result<Vec<u8>, ClusterError> {
        let name = object_name(stream_seq);
        let mut reason = String::new();
        for _ in 0..SNAPSHOT_READ_ATTEMPTS {
            let mut object = self
                .objects
                .get(&name)
                .await
                .map_err(|err| ClusterError::nats("snapshot get", err))?;
            match read_whole(&mut object).await {
                Ok(bytes) => return Ok(bytes),
                Err(err) => reason = err,
            }
        }
        Err(ClusterError::Snapshot { name, reason })
    }
}

/// Reads an object to its end with `read_buf` (not `read_to_end`, whose debug assertion fires
/// when a reader fails after handing over bytes in the same call, as the object reader can).
async fn read_whole(
    object: &mut async_nats::jetstream::object_store::Object,
) -> Result<Vec<u8>, String> {
    let size = object.info().size;
    let mut bytes = Vec::with_capacity(size);
    loop {
        // `read_buf` reads into the spare capacity; none would look like the end.
        bytes.reserve(SNAPSHOT_CHUNK_BYTES);
        let read = object.read_buf(&mut bytes).await.map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        if bytes.len() > size {
            return Err(format!("read more than its {size} bytes"));
        }
    }
    if bytes.len() != size {
        return Err(format!("read {} bytes of {size}", bytes.len()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_sequence_and_parse_back() {
        assert_eq!(object_name(42), "snapshot-00000000000000000042");
        assert!(object_name(9) < object_name(10));
        assert_eq!(stream_seq_of(&object_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(stream_seq_of("snapshot-42"), None);
        assert_eq!(stream_seq_of("other"), None);
    }
}

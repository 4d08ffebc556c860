//! `ClusterError`: every way the cluster layer fails, grouped by what the caller does about it.
//! Configuration errors stop a node at start; `Fenced` and `LeaseLost` make a writer step down;
//! `Nats` is transient (retry); `Corrupt` means the stream holds something that is not a group.

/// What went wrong talking to the cluster. Each variant says how the engine handles it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `[cluster]` configuration is invalid (an empty URL list, a bad node name). Found
    /// before connecting. **Handling:** refuse to start, print the message.
    #[error("bad cluster configuration: {message}")]
    Config { message: String },

    /// No NATS server answered within [`crate::limits::CONNECT_TIMEOUT`]. **Handling:** refuse to
    /// start, print the message (it names the URLs tried).
    #[error("cannot reach NATS at {urls} within {timeout_s} s: {reason}", urls = urls.join(", "))]
    Unreachable { urls: Vec<String>, timeout_s: u64, reason: String },

    /// A stream or bucket of the expected name exists with another value of a setting this node
    /// relies on (another storage, replication, subject, retention...). Nothing is changed.
    /// **Handling:** refuse to start; an operator fixes the configuration or the stream.
    #[error(
        "{what} exists with {setting} = {existing}, but this node needs {setting} = {wanted} \
         (change the [cluster] configuration or the {what}; idgraph does not change it)"
    )]
    Settings { what: String, setting: &'static str, existing: String, wanted: String },

    /// The stream (or a bucket's stream) has no Raft leader after
    /// [`crate::limits::LEADER_WAIT`]: fewer than a majority of its servers are up or connected.
    /// **Handling:** refuse to start; an operator brings the servers back.
    #[error(
        "JetStream stream {stream:?} has no leader after {waited_s} s: are a majority of its \
         servers up and connected to each other?"
    )]
    NoLeader { stream: String, waited_s: u64 },

    /// Another live process is registered under this node's name (its presence key was renewed
    /// while we watched it). **Handling:** refuse to start; give each node its own name.
    #[error(
        "node name {node:?} is already in use by a live node in cluster {stream:?} (its \
         presence key was renewed while this node waited {waited_s} s): give every node its \
         own cluster.node"
    )]
    DuplicateNode { node: String, stream: String, waited_s: u64 },

    /// The publish's expected last stream sequence was not the stream's last: another writer
    /// appended first (or this writer is behind). Nothing was appended. **Handling:** the group
    /// is void; read the stream from `expected + 1`, then decide again if still the writer.
    #[error(
        "fenced: expected the stream's last sequence to be {expected}, it is {}",
        actual.map_or_else(|| "another".to_owned(), |seq| seq.to_string())
    )]
    Fenced { expected: u64, actual: Option<u64> },

    /// The writer lease is gone: its renewal found another revision (it expired and another
    /// node took it, or it was released). **Handling:** stop deciding; become a follower.
    #[error("the writer lease (term {term}) is lost{}", holder.as_ref().map_or_else(String::new, |node| format!(" to node {node:?}")))]
    LeaseLost { term: u64, holder: Option<String> },

    /// A group's payload is larger than [`crate::limits::GROUP_BYTES_MAX`]. Not sent.
    /// **Handling:** a bug in the engine's grouping (it must split groups); refuse the requests.
    #[error("commit group of {bytes} bytes is larger than the {max} bytes a message may carry")]
    GroupTooLarge { bytes: usize, max: usize },

    /// A message in the stream is not a well-formed group (missing or bad headers), or the
    /// sequences skip (the stream denies deletes, so they cannot). **Handling:** stop folding;
    /// this is a data-integrity failure.
    #[error("stream message {stream_seq} is not a valid commit group: {reason}")]
    Corrupt { stream_seq: u64, reason: String },

    /// A snapshot in the object store is unusable (bad name, failed digest). **Handling:** try
    /// the previous snapshot or fold the whole stream.
    #[error("snapshot {name:?}: {reason}")]
    Snapshot { name: String, reason: String },

    /// A NATS request failed or timed out (a leader election, a lost connection). **Handling:**
    /// transient; retry the operation (a publish with the same group, which deduplicates).
    #[error("NATS {operation} failed: {source}")]
    Nats {
        operation: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

impl ClusterError {
    /// Wraps a client error as [`ClusterError::Nats`].
    pub(crate) fn nats(
        operation: &'static str,
        source: impl Into<async_nats::Error>,
    ) -> ClusterError {
        ClusterError::Nats { operation, source: source.into() }
    }
}

/// Whether a client error is the server refusing a conditional write because the stream's (or
/// the key's) last sequence is another than the expected one. The server answers with one of two
/// codes (10071 with the actual sequence, 10164 without), and the client classifies only the
/// first as a wrong-sequence error, so the cause chain is searched for either.
pub(crate) fn is_wrong_last_sequence(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::ErrorCode;
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(js) = error.downcast_ref::<async_nats::jetstream::Error>() {
            let code = js.error_code();
            if code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                || code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            {
                return true;
            }
        }
        next = error.source();
    }
    false
}

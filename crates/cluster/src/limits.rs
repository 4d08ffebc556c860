//! Every limit and timing of the cluster layer, with its unit and the reason for its value.
//! The lease's safety does not depend on any of these times (the stream's expected-last-sequence
//! condition fences a stale writer; `docs/cluster.md`, "Fencing"); they decide only how fast a
//! dead writer is replaced and how much work a stale one wastes.

use std::time::Duration;

/// Longest node or stream name, in bytes. Names go into subjects, KV keys, bucket names and
/// message headers; 64 keeps all of them short.
pub const NAME_BYTES_MAX: usize = 64;

/// Most replicas JetStream allows for a stream.
pub const REPLICAS_MAX: usize = 5;

/// How long [`crate::Cluster::connect`] may take to reach a NATS server before it gives up and
/// names the URLs. A healthy server on the same network answers in milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one JetStream request (stream info, a publish's acknowledgement, a KV update) may
/// take. A stream leader election after a server failure takes a few seconds; a publish that
/// times out is retried by the caller with the same group (deduplicated by its message id).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`crate::Cluster::connect`] waits for the stream and the buckets to have a Raft
/// leader (a stream just created elects one within a second or two; an existing one without a
/// majority of its servers up has none), and how long it retries transient failures while
/// setting up. With [`CONNECT_TIMEOUT`], one request's [`REQUEST_TIMEOUT`] and
/// [`PRESENCE_WAIT`], `connect` returns within about 25 s whatever happens.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The life of a lease or presence key without renewal: the KV bucket's `max_age`. A writer that
/// stops renewing (crashed, paused, partitioned) is replaced after about this long.
pub const KEY_TTL: Duration = Duration::from_secs(3);

/// How often the lease and the presence key are renewed: a third of [`KEY_TTL`], so two renewals
/// may fail (a slow request, a leader election) before the key expires.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// How much earlier than the server a lease holder considers its lease over: the lease is taken
/// as live until `sent + KEY_TTL - LEASE_MARGIN`, where `sent` is when the successful create or
/// renewal was *sent* (the server stamped it later). The margin covers the server's expiry timer
/// firing early relative to our clock; it is not needed for safety.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

const _: () = assert!(RENEW_INTERVAL.as_millis() * 3 <= KEY_TTL.as_millis());
const _: () = assert!(LEASE_MARGIN.as_millis() < KEY_TTL.as_millis());

/// How long [`crate::Cluster::connect`] watches a presence key that another process holds under
/// this node's name before concluding that it is live: longer than [`KEY_TTL`], so the key of a
/// process that just stopped expires within it, and long enough to see a live node renew it.
pub const PRESENCE_WAIT: Duration = Duration::from_secs(5);

const _: () = assert!(PRESENCE_WAIT.as_millis() > KEY_TTL.as_millis() + RENEW_INTERVAL.as_millis());

/// The stream's duplicate window: a group published again with the same message id within this
/// time is acknowledged with its first sequence instead of being stored twice. Two minutes (the
/// JetStream default) covers any retry after a timeout.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Largest commit group payload, in bytes: the servers' `max_payload` (8 MB in
/// `scripts/nats/common.conf`) less room for the headers. A larger group is refused before it is
/// sent ([`crate::ClusterError::GroupTooLarge`]).
pub const GROUP_BYTES_MAX: usize = 8 * 1024 * 1024 - 4 * 1024;

/// How many snapshots the object store keeps: the newest and the one before (a node that is
/// still reading the older one when a new one lands can finish).
pub const SNAPSHOTS_KEPT: usize = 2;

/// Object store chunk size for snapshots, in bytes: big chunks mean fewer messages; 1 MiB stays
/// well within `max_payload`.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// How many times a snapshot is read before it counts as unusable (`snapshot.rs`: a read can
/// fail midway under load, and a fresh one usually succeeds).
pub const SNAPSHOT_READ_ATTEMPTS: usize = 3;

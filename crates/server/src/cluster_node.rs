//! Cluster mode (`docs/cluster.md`, "Engine integration"): this node's part in a cluster whose log
//! of record is a NATS JetStream stream (`idgraph_cluster`).
//!
//! ```text
//!   start ──► catching_up ──(applied the stream's tail)──► follower ──(won the lease, caught up)──► writer
//!                 ▲  folds the stream's groups                │  folds groups as they come,       │ publishes every
//!                 │  (Engine::apply_replicated)               │  forwards recorded requests       │ group commit first
//!                 │                                           │  to the writer                    │ (NatsReplicator)
//!   restart ◄─────┴──────────────────── exit(75): lease lost, or a publish fenced ◄─────────────────┘
//! ```
//!
//! Invariants:
//! - **One writer, fenced.** Only the holder of the lease publishes, each group on condition that
//!   the stream ends where this writer last saw it end; a stale writer's publish is refused and
//!   its engine halts, so nothing it decides after that is answered. A writer that loses its lease
//!   or is fenced exits (crash-only step-down); its supervisor starts it again as a follower.
//! - **Same bytes everywhere.** A follower appends the very records the writer published, so every
//!   node has the same log and the same running digest at the same sequence.
//! - **A node writes only once caught up.** The lease is taken only when every group in the
//!   stream is applied here, and the first publish is fenced on that position.
//! - **Records and stream messages correspond one to one**, so a node's position in the stream is
//!   the number of records in its local log (checked against the stream at start).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use idgraph_cluster::{Acquired, Cluster, ClusterError, Committed, Group};
use idgraph_engine::Engine;
use idgraph_log::{GroupRecord, Replicator};
use idgraph_model::Seq;

/// This node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Folding the stream's backlog; reads may be stale, so `/healthz` says so.
    CatchingUp = 0,
    /// Up to date with the stream; forwards recorded requests to the writer.
    Follower = 1,
    /// Holds the lease: decides and publishes.
    Writer = 2,
}

impl Role {
    /// The name `/healthz` reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::CatchingUp => "catching_up",
            Role::Follower => "follower",
            Role::Writer => "writer",
        }
    }

    fn of(code: u8) -> Role {
        match code {
            2 => Role::Writer,
            1 => Role::Follower,
            _ => Role::CatchingUp,
        }
    }
}

/// The exit code of a node that stepped down as the writer or lost its way in the stream
/// (`EX_TEMPFAIL`): a supervisor starts it again, and it comes back as a follower.
pub const EXIT_STEPPED_DOWN: i32 = 75;

/// How long a follower relays to the writer it looked up before looking again.
const WRITER_URL_KEPT: Duration = Duration::from_millis(500);

/// How often a follower looks at the lease.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// How long a follower waits for the next group before it checks whether the stream grew (and,
/// if it did, reads again from its position).
const FOLLOW_STALL: Duration = Duration::from_secs(2);

/// Most groups a follower applies in one blocking-pool task.
const FOLLOW_BATCH_GROUPS: usize = 512;

/// Attempts in a row to read the stream that may fail before the node gives up.
const FOLLOW_FAILURES_MAX: u32 = 60;

/// How long a publish is retried through a stream leader election before the writer gives up.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(15);

/// A node of a cluster: its connection, its engine, its role and its position in the stream.
#[derive(Debug)]
pub struct ClusterNode {
    cluster: Arc<Cluster>,
    engine: Arc<Engine>,
    role: AtomicU8,
    /// The stream sequence of the last group applied or published here.
    stream_seq: Arc<AtomicU64>,
    /// The writer's URL as last looked up, and when: recorded requests are relayed there without
    /// two key-value reads each ([`ClusterNode::writer_url`]).
    writer: std::sync::Mutex<Option<(String, std::time::Instant)>>,
    /// Entries a follower applies between two looks at the cluster's snapshot store (0: never):
    /// a follower stores a snapshot there when nobody did since its last look.
    snapshot_every_entries: u64,
}

impl ClusterNode {
    /// Joins the cluster (connected with [`Cluster::connect_at`] and this node's URL) with an
    /// engine opened on this node's data folder: checks that the local log is a prefix of the
    /// stream. Then call [`ClusterNode::run`].
    pub async fn join(
        cluster: Cluster,
        engine: Arc<Engine>,
        snapshot_every_entries: u64,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let cluster = Arc::new(cluster);
        let n_records = {
            let engine = Arc::clone(&engine);
            tokio::task::spawn_blocking(move || engine.log().record_count()).await??
        };
        let local_last = engine.log().last_seq();
        let deadline = tokio::time::Instant::now() + PUBLISH_RETRY_FOR;
        loop {
            match check_prefix(&cluster, n_records, local_last).await {
                Err(ClusterError::Nats { operation, source })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(operation, error = %source, "checking the stream; retrying");
                    tokio::time::sleep(LEASE_POLL).await;
                }
                res => break res?,
            }
        }
        Ok(Arc::new(ClusterNode {
            cluster,
            engine,
            role: AtomicU8::new(Role::CatchingUp as u8),
            stream_seq: Arc::new(AtomicU64::new(n_records)),
            writer: std::sync::Mutex::new(None),
            snapshot_every_entries,
        }))
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        Role::of(self.role.load(Ordering::Acquire))
    }

    /// The URL recorded requests are forwarded to (the writer's), if another node is the writer:
    /// looked up in the key-value bucket at most every 500 ms, or again after a relay
    /// failed ([`ClusterNode::forget_writer`]).
    pub async fn writer_url(&self) -> Result<Option<String>, ClusterError> {
        let cached = self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((url, at)) = cached
            && at.elapsed() < WRITER_URL_KEPT
        {
            return Ok(Some(url));
        }
        let url = match self.cluster.lease_holder().await? {
            Some(holder) if holder != self.cluster.node() => self.cluster.url_of(&holder).await?,
            _ => None,
        };
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) =
            url.clone().map(|url| (url, std::time::Instant::now()));
        Ok(url)
    }

    /// Forgets the writer's URL: the relay to it failed, so it may have changed.
    pub fn forget_writer(&self) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Waits until this node has applied `seq` (read-your-writes), at most `timeout`; whether it
    /// has.
    pub async fn wait_applied(&self, seq: Seq, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.engine.log().last_seq() >= seq {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Follows the stream, and takes the lease when it is free and this node is caught up; as the
    /// writer, waits for the lease to be lost and then exits the process
    /// ([`EXIT_STEPPED_DOWN`]). Returns only on an error that stops the node.
    pub async fn run(self: Arc<ClusterNode>) -> anyhow::Result<()> {
        let follower = tokio::spawn(Arc::clone(&self).follow());
        loop {
            tokio::time::sleep(LEASE_POLL).await;
            if follower.is_finished() {
                return match follower.await {
                    Ok(Err(err)) => Err(err),
                    _ => Err(anyhow::anyhow!("following the stream stopped")),
                };
            }
            let lease = match self.try_lease().await {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                // A leader election of the bucket or the stream: try again at the next poll.
                Err(ClusterError::Nats { operation, source }) => {
                    tracing::debug!(operation, error = %source, "lease poll failed; retrying");
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            // Caught up to the end of the stream as it is now: another writer may still append
            // (a stale one), and then our first publish is fenced and we start over.
            let tail = loop {
                match self.cluster.last_stream_seq().await {
                    Ok(tail) => break tail,
                    Err(ClusterError::Nats { .. }) => tokio::time::sleep(LEASE_POLL / 5).await,
                    Err(err) => return Err(err.into()),
                }
            };
            let deadline = tokio::time::Instant::now() + PUBLISH_RETRY_FOR;
            while self.stream_seq.load(Ordering::Acquire) < tail {
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("won the lease but could not catch up to the stream's end");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            follower.abort();
            let _ = follower.await;
            let mut keeper = self.cluster.keep_lease(lease);
            let replicator = NatsReplicator {
                cluster: Arc::clone(&self.cluster),
                term: keeper.term(),
                stream_seq: Arc::clone(&self.stream_seq),
                runtime: tokio::runtime::Handle::current(),
            };
            self.engine.log().set_replicator(Arc::new(replicator))?;
            self.role.store(Role::Writer as u8, Ordering::Release);
            tracing::info!(node = self.cluster.node(), term = keeper.term(), "became the writer");
            let reason = tokio::select! {
                reason = keeper.lost() => reason,
                reason = self.halted() => reason,
            };
            tracing::error!(%reason, "stepping down: the writer exits, to come back as a follower");
            std::process::exit(EXIT_STEPPED_DOWN);
        }
    }

    /// The lease, if this node is a caught-up follower and nobody holds it.
    async fn try_lease(&self) -> Result<Option<idgraph_cluster::Lease>, ClusterError> {
        if self.role() != Role::Follower || self.cluster.lease_holder().await?.is_some() {
            return Ok(None);
        }
        match self.cluster.acquire_lease().await? {
            Acquired::Won(lease) => Ok(Some(lease)),
            Acquired::Held { .. } => Ok(None),
        }
    }

    /// [`ClusterNode::run`], exiting the process with [`EXIT_STEPPED_DOWN`] (75, `EX_TEMPFAIL`:
    /// start me again) on the error that stopped it: a node that lost its way in the stream (a
    /// lease won but the stream's end out of reach, reads failing for a minute) must not go on
    /// answering from a stale graph, and starting again from its local copy is the one recovery
    /// path.
    pub async fn run_or_exit(self: Arc<ClusterNode>) {
        if let Err(err) = self.run().await {
            tracing::error!(error = %err, "the cluster node stopped; exiting to be started again");
            std::process::exit(EXIT_STEPPED_DOWN);
        }
    }

    /// Resolves when the engine halts (a publish fenced or failed).
    async fn halted(&self) -> String {
        loop {
            if let Some(cause) = self.engine.halted() {
                return cause;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Applies the stream's groups from this node's position on, in order; says `follower` once
    /// the backlog found at start is applied. Reads again from its position whenever the reader
    /// fails or stalls while the stream has grown (a consumer lost with its server is noticed by
    /// the client library only after missed heartbeats).
    async fn follow(self: Arc<ClusterNode>) -> anyhow::Result<()> {
        if self.stream_seq.load(Ordering::Acquire) == 0 {
            self.join_from_snapshot().await?;
        }
        let mut snapshots = SnapshotWatch {
            next_look: self.engine.log().last_seq().0 + self.snapshot_every_entries,
            stored_at_last_look: 0,
        };
        let mut backlog_end = None;
        let mut n_failures = 0u32;
        loop {
            if n_failures > FOLLOW_FAILURES_MAX {
                anyhow::bail!("cannot read the stream: {n_failures} attempts in a row failed");
            }
            if n_failures > 0 {
                tokio::time::sleep(FOLLOW_STALL / 4).await;
            }
            let end = match backlog_end {
                Some(end) => end,
                None => match self.cluster.last_stream_seq().await {
                    Ok(end) => *backlog_end.insert(end),
                    Err(ClusterError::Nats { .. }) => {
                        n_failures += 1;
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                },
            };
            self.note_caught_up(end);
            let from = self.stream_seq.load(Ordering::Acquire) + 1;
            let mut groups = match self.cluster.read_from(from).await {
                Ok(groups) => groups,
                Err(ClusterError::Nats { .. }) => {
                    n_failures += 1;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            loop {
                let item = match tokio::time::timeout(FOLLOW_STALL, groups.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => {
                        // Nothing new: fine if the stream did not grow either.
                        let position = self.stream_seq.load(Ordering::Acquire);
                        match self.cluster.last_stream_seq().await {
                            Ok(tail) if tail <= position => continue,
                            _ => break,
                        }
                    }
                };
                // This group and those already delivered behind it, applied in one go (a backlog
                // is folded in batches, not one blocking-pool hop per group).
                let mut batch = Vec::new();
                let mut next = Some(item);
                let mut reread = false;
                while let Some(item) = next.take() {
                    match item {
                        Ok(committed) => batch.push(committed),
                        Err(ClusterError::Nats { .. }) => {}
                        Err(ClusterError::Corrupt { stream_seq, reason }) => {
                            tracing::warn!(stream_seq, %reason, "reading the stream again");
                            reread = true;
                            break;
                        }
                        Err(err) => return Err(err.into()),
                    }
                    if batch.len() < FOLLOW_BATCH_GROUPS {
                        next = groups.next().now_or_never().flatten();
                    }
                }
                let position = self.stream_seq.load(Ordering::Acquire);
                batch.retain(|committed| committed.stream_seq > position);
                if let Some(last) = batch.last().map(|committed| committed.stream_seq) {
                    let engine = Arc::clone(&self.engine);
                    tokio::task::spawn_blocking(move || {
                        engine.apply_replicated_batch(&as_records(&batch))
                    })
                    .await??;
                    self.stream_seq.store(last, Ordering::Release);
                    n_failures = 0;
                    self.note_caught_up(end);
                    self.maybe_store_snapshot(&mut snapshots).await;
                }
                if reread {
                    break;
                }
            }
            n_failures += 1;
        }
    }

    /// An empty node joining a cluster whose snapshot store has a snapshot: appends the records
    /// it covers without folding them (the local log must hold every entry, for audit and
    /// restarts), installs it, and leaves the tail to [`ClusterNode::follow`]. A failure half-way
    /// stops the node; started again, it opens its partial log like any other and folds it.
    async fn join_from_snapshot(&self) -> anyhow::Result<()> {
        let Some((covered, snapshot)) = self.cluster.newest_snapshot().await? else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let mut groups = self.cluster.read_from(1).await?;
        while self.stream_seq.load(Ordering::Acquire) < covered {
            let mut batch = Vec::new();
            while batch.len() < FOLLOW_BATCH_GROUPS {
                let position = self.stream_seq.load(Ordering::Acquire) + batch.len() as u64;
                if position >= covered {
                    break;
                }
                let next = if batch.is_empty() {
                    tokio::time::timeout(FOLLOW_STALL * 5, groups.next()).await.ok().flatten()
                } else {
                    groups.next().now_or_never().flatten()
                };
                match next {
                    Some(Ok(committed)) => batch.push(committed),
                    Some(Err(ClusterError::Nats { .. })) => {}
                    Some(Err(err)) => return Err(err.into()),
                    None if batch.is_empty() => {
                        anyhow::bail!("the stream stopped before {covered}")
                    }
                    None => break,
                }
            }
            let Some(last) = batch.last().map(|committed| committed.stream_seq) else { continue };
            let engine = Arc::clone(&self.engine);
            tokio::task::spawn_blocking(move || engine.append_covered(&as_records(&batch)))
                .await??;
            self.stream_seq.store(last, Ordering::Release);
        }
        let engine = Arc::clone(&self.engine);
        let seq = tokio::task::spawn_blocking(move || engine.install_snapshot(&snapshot)).await??;
        tracing::info!(
            stream_seq = covered,
            seq = %seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "joined from the cluster's snapshot"
        );
        Ok(())
    }

    /// Every `snapshot_every_entries` applied entries, stores a snapshot of the projection in the
    /// cluster's snapshot store unless another node stored one since this node's last look.
    /// Failures are logged: snapshots only speed up joining.
    async fn maybe_store_snapshot(&self, watch: &mut SnapshotWatch) {
        if self.snapshot_every_entries == 0 || self.engine.log().last_seq().0 < watch.next_look {
            return;
        }
        watch.next_look = self.engine.log().last_seq().0 + self.snapshot_every_entries;
        let newest = match self.cluster.snapshot_seqs().await {
            Ok(seqs) => seqs.last().copied().unwrap_or(0),
            Err(err) => {
                tracing::warn!(error = %err, "cannot list the cluster's snapshots");
                return;
            }
        };
        let stored_since = newest > watch.stored_at_last_look;
        watch.stored_at_last_look = newest;
        if stored_since {
            return;
        }
        // The follow loop is this log's only appender, and it waits here: the projection is the
        // fold of the stream exactly up to `position`.
        let position = self.stream_seq.load(Ordering::Acquire);
        let engine = Arc::clone(&self.engine);
        let Ok((seq, bytes)) =
            tokio::task::spawn_blocking(move || engine.projection_snapshot()).await
        else {
            return;
        };
        match self.cluster.put_snapshot(position, &bytes).await {
            Ok(()) => {
                watch.stored_at_last_look = position;
                tracing::info!(stream_seq = position, seq = %seq, bytes = bytes.len(), "stored a snapshot in the cluster");
            }
            Err(err) => tracing::warn!(error = %err, "cannot store a snapshot in the cluster"),
        }
    }

    /// Says `follower` once the backlog found at start is applied.
    fn note_caught_up(&self, backlog_end: u64) {
        let position = self.stream_seq.load(Ordering::Acquire);
        if position >= backlog_end && self.role() == Role::CatchingUp {
            self.role.store(Role::Follower as u8, Ordering::Release);
            tracing::info!(stream_seq = position, "caught up: following");
        }
    }
}

/// Checks that a local log of `n_records` records ending at `local_last` is a prefix of the
/// stream: [`ClusterError::Config`] if not (this folder belongs elsewhere).
async fn check_prefix(
    cluster: &Cluster,
    n_records: u64,
    local_last: Seq,
) -> Result<(), ClusterError> {
    let stream_last = cluster.last_stream_seq().await?;
    let elsewhere = |what: String| ClusterError::Config {
        message: format!(
            "{what}: this data folder does not belong to this cluster (start it empty)"
        ),
    };
    if n_records > stream_last {
        return Err(elsewhere(format!(
            "the local log holds {n_records} records but the stream {} only {stream_last}",
            cluster.config().stream
        )));
    }
    if n_records == 0 {
        return Ok(());
    }
    // The stream's group at our position must end where our log ends.
    let mut at = cluster.read_from(n_records).await?;
    let group = match at.next().await {
        Some(group) => group?,
        None => return Err(elsewhere(format!("the stream ended before group {n_records}"))),
    };
    if group.group.last_seq != local_last.0 {
        return Err(elsewhere(format!(
            "the local log ends at sequence {local_last} after {n_records} records, but group \
             {n_records} of the stream ends at {}",
            group.group.last_seq
        )));
    }
    Ok(())
}

/// Groups read from the stream as the log's records: (first sequence, framed bytes).
fn as_records(batch: &[Committed]) -> Vec<(Seq, &[u8])> {
    batch
        .iter()
        .map(|committed| (Seq(committed.group.first_seq), committed.group.bytes.as_slice()))
        .collect()
}

/// When a follower looks at the cluster's snapshot store next, and what it found there last.
#[derive(Debug)]
struct SnapshotWatch {
    /// The entry sequence at which to look next.
    next_look: u64,
    /// The newest stored snapshot's stream sequence at the last look.
    stored_at_last_look: u64,
}

/// The writer's [`Replicator`]: publishes each record of a group commit as one message, fenced
/// on the stream's last sequence as this node last saw it, and waits for the quorum's
/// acknowledgement. Called from the log's group-commit leader (a plain thread), so it hands the
/// publish to the async runtime and waits for its answer.
#[derive(Debug)]
struct NatsReplicator {
    cluster: Arc<Cluster>,
    term: u64,
    stream_seq: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
}

impl Replicator for NatsReplicator {
    fn replicate(&self, records: &[GroupRecord<'_>]) -> Result<(), String> {
        for record in records {
            let group = Group {
                first_seq: record.first.0,
                last_seq: record.last.0,
                bytes: record.bytes.to_vec(),
            };
            let expected = self.stream_seq.load(Ordering::Acquire);
            let (cluster, term) = (Arc::clone(&self.cluster), self.term);
            let (answer, answered) = std::sync::mpsc::sync_channel(1);
            self.runtime.spawn(async move {
                let _ = answer.send(publish_retrying(&cluster, term, expected, &group).await);
            });
            let stream_seq = answered
                .recv()
                .map_err(|_| "the publish task stopped".to_owned())?
                .map_err(|err| err.to_string())?;
            self.stream_seq.store(stream_seq, Ordering::Release);
        }
        Ok(())
    }
}

/// Publishes, retrying what may be transient (a stream leader election) for
/// [`PUBLISH_RETRY_FOR`]; a retry of a publish that was in fact stored is answered with its
/// sequence (the message id is the same).
async fn publish_retrying(
    cluster: &Cluster,
    term: u64,
    expected: u64,
    group: &Group,
) -> Result<u64, ClusterError> {
    let deadline = tokio::time::Instant::now() + PUBLISH_RETRY_FOR;
    loop {
        match cluster.publish_group(term, expected, group).await {
            Err(ClusterError::Nats { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

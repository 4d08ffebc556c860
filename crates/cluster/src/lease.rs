//! The writer lease: the key `writer` in the coordination bucket, created by the node that
//! becomes the writer and renewed by it (a revision-checked update) every [`RENEW_INTERVAL`];
//! the bucket's `max_age` ([`KEY_TTL`]) ends it when renewals stop. Its **term** is the KV
//! revision at which it was acquired: revisions only grow, so a later lease has a larger term.
//!
//! The lease decides who *should* write; it does not by itself stop a stale writer (a paused
//! process wakes up believing it holds the lease). What stops it is the stream: every group is
//! published on condition that the stream's last sequence is the one the writer last saw
//! (`Nats-Expected-Last-Sequence`, [`crate::Cluster::publish_group`]), so once another writer
//! has appended, the stale one's publish fails with [`ClusterError::Fenced`]
//! (`docs/cluster.md`, "Fencing").

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Cluster;
use crate::error::{ClusterError, is_wrong_last_sequence};
use crate::layout::LEASE_KEY;
use crate::limits::{KEY_TTL, LEASE_MARGIN, RENEW_INTERVAL};

/// A held writer lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    term: u64,
    revision: u64,
    live_until: Instant,
}

impl Lease {
    /// The lease's term: the KV revision at which it was acquired. It goes into every group the
    /// writer publishes (header `Idgraph-Term`); a later lease always has a larger term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The KV revision of the last successful create or renewal.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Until when this node may take the lease as its own: [`KEY_TTL`] less [`LEASE_MARGIN`]
    /// after the last successful create or renewal was sent.
    pub fn live_until(&self) -> Instant {
        self.live_until
    }

    /// Whether the lease is still ours by our own clock. A writer checks this before deciding a
    /// group, to waste no work; safety does not depend on it (see the module doc).
    pub fn is_live(&self) -> bool {
        Instant::now() < self.live_until
    }
}

/// The outcome of [`Cluster::acquire_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// This node holds the lease now.
    Won(Lease),
    /// Another node holds it (`holder` is its name, or empty if it could not be read).
    Held { holder: String },
}

impl Cluster {
    /// Tries to become the writer: creates the lease key if nobody holds it. Does not wait.
    pub async fn acquire_lease(&self) -> Result<Acquired, ClusterError> {
        let value = Bytes::from(self.config.node.clone());
        // Twice: the key may expire between a failed create and the read of its holder.
        for _ in 0..2 {
            let sent = Instant::now();
            match self.kv.create(LEASE_KEY, value.clone()).await {
                Ok(revision) => {
                    return Ok(Acquired::Won(Lease {
                        term: revision,
                        revision,
                        live_until: sent + KEY_TTL - LEASE_MARGIN,
                    }));
                }
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if let Some(holder) = self.lease_holder().await? {
                        return Ok(Acquired::Held { holder });
                    }
                }
                Err(err) => return Err(ClusterError::nats("lease create", err)),
            }
        }
        Ok(Acquired::Held { holder: String::new() })
    }

    /// Renews the lease: a revision-checked update, so it succeeds only if nobody wrote the key
    /// since our last create or renewal. [`ClusterError::LeaseLost`] if somebody did (or the key
    /// expired); [`ClusterError::Nats`] on a transient failure, after which the lease may still
    /// be renewed until [`Lease::live_until`].
    pub async fn renew_lease(&self, lease: &mut Lease) -> Result<(), ClusterError> {
        renew(&self.kv, &self.config.node, lease).await
    }

    /// Gives the lease up (deletes the key if it is still ours), so another node can take it at
    /// once instead of after [`KEY_TTL`].
    pub async fn release_lease(&self, lease: Lease) -> Result<(), ClusterError> {
        match self.kv.delete_expect_revision(LEASE_KEY, Some(lease.revision)).await {
            Ok(()) => Ok(()),
            // Not ours any more: nothing to release.
            Err(err)
                if err.kind() == kv::DeleteErrorKind::WrongLastRevision
                    || is_wrong_last_sequence(&err) =>
            {
                Ok(())
            }
            Err(err) => Err(ClusterError::nats("lease release", err)),
        }
    }

    /// The name of the node holding the lease, if any.
    pub async fn lease_holder(&self) -> Result<Option<String>, ClusterError> {
        lease_holder(&self.kv).await
    }

    /// Hands the lease to a background task that renews it every [`RENEW_INTERVAL`] until it is
    /// lost or the keeper is dropped or stopped.
    pub fn keep_lease(&self, lease: Lease) -> LeaseKeeper {
        let term = lease.term;
        let shared = Arc::new(Mutex::new(lease));
        let (lost_tx, lost_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(keep(
            self.kv.clone(),
            self.config.node.clone(),
            Arc::clone(&shared),
            lost_tx,
            stop_rx,
        ));
        LeaseKeeper { term, shared, lost: lost_rx, stop: stop_tx, task: Some(task) }
    }
}

async fn lease_holder(kv: &kv::Store) -> Result<Option<String>, ClusterError> {
    let entry = kv.entry(LEASE_KEY).await.map_err(|err| ClusterError::nats("lease read", err))?;
    Ok(entry
        .filter(|entry| entry.operation == kv::Operation::Put)
        .map(|entry| String::from_utf8_lossy(&entry.value).into_owned()))
}

async fn renew(kv: &kv::Store, node: &str, lease: &mut Lease) -> Result<(), ClusterError> {
    let sent = Instant::now();
    match kv.update(LEASE_KEY, Bytes::from(node.to_owned()), lease.revision).await {
        Ok(revision) => {
            lease.revision = revision;
            lease.live_until = sent + KEY_TTL - LEASE_MARGIN;
            Ok(())
        }
        Err(err)
            if err.kind() == kv::UpdateErrorKind::WrongLastRevision
                || is_wrong_last_sequence(&err) =>
        {
            lease.live_until = sent;
            let holder = lease_holder(kv).await.ok().flatten();
            Err(ClusterError::LeaseLost { term: lease.term, holder })
        }
        Err(err) => Err(ClusterError::nats("lease renew", err)),
    }
}

/// Renews until the lease is lost (a renewal refused, [`ClusterError::LeaseLost`], or
/// [`Lease::live_until`] passed without a successful renewal) or `stop` turns true. A renewal
/// under way is finished before stopping, so the shared lease has the key's last revision.
async fn keep(
    kv: kv::Store,
    node: String,
    shared: Arc<Mutex<Lease>>,
    lost: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(RENEW_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let mut lease = shared.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        let result = renew(&kv, &node, &mut lease).await;
        let live = lease.is_live();
        *shared.lock().unwrap_or_else(|poison| poison.into_inner()) = lease;
        let reason = match result {
            Ok(()) => continue,
            Err(err @ ClusterError::LeaseLost { .. }) => err.to_string(),
            Err(err) if !live => format!("not renewed in time (last error: {err})"),
            // Transient; the lease is still ours for a while.
            Err(_) => continue,
        };
        lost.send_replace(Some(reason));
        return;
    }
}

/// A lease renewed in the background ([`Cluster::keep_lease`]). Dropping it stops the renewals
/// at once (the lease then expires by itself); [`LeaseKeeper::stop`] stops them cleanly.
#[derive(Debug)]
pub struct LeaseKeeper {
    term: u64,
    shared: Arc<Mutex<Lease>>,
    lost: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl LeaseKeeper {
    /// The lease's term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The lease as last renewed.
    pub fn lease(&self) -> Lease {
        self.shared.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Whether the lease is still ours: not lost, and renewed recently enough by our clock.
    pub fn is_live(&self) -> bool {
        self.lost.borrow().is_none() && self.lease().is_live()
    }

    /// Waits until the lease is lost; returns why.
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the lease keeper stopped".to_owned(),
        }
    }

    /// Stops renewing, after the renewal under way if any, and returns the lease as last
    /// renewed (to release it, for example).
    pub async fn stop(mut self) -> Lease {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            // A panic in the task would have been a bug; its lease is returned all the same.
            let _ = task.await;
        }
        self.lease()
    }
}

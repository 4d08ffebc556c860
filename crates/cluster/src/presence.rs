//! Node presence: each node holds the key `nodes.<node>` in the coordination bucket, created at
//! connect (refused while another live process holds it) and renewed by a background task every
//! [`RENEW_INTERVAL`]; the bucket's `max_age` removes it [`KEY_TTL`] after the last renewal. Its
//! value is the URL where the node answers HTTP (empty if it gave none): where the others forward
//! recorded requests when it is the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, is_wrong_last_sequence};
use crate::layout::{Names, PRESENCE_PREFIX};
use crate::limits::{PRESENCE_WAIT, RENEW_INTERVAL};

/// This node's registration: the renewal task and whether the key is still ours.
#[derive(Debug)]
pub(crate) struct Presence {
    key: String,
    live: Arc<AtomicBool>,
    /// The revision of our last write, for the final delete.
    revision: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Presence {
    /// Creates this node's presence key. If another process holds it, watches it for up to
    /// [`PRESENCE_WAIT`]: renewed means a live node of the same name (refused); gone means a
    /// node that stopped (its key expired), and the key is ours.
    pub(crate) async fn register(
        kv: &kv::Store,
        config: &ClusterConfig,
        names: &Names,
        url: &str,
    ) -> Result<Presence, ClusterError> {
        let key = names.presence_key.clone();
        let value = Bytes::from(url.to_owned());
        let started = Instant::now();
        let duplicate = || ClusterError::DuplicateNode {
            node: config.node.clone(),
            stream: config.stream.clone(),
            waited_s: started.elapsed().as_secs(),
        };
        let mut seen_revision = None;
        let revision = loop {
            match kv.create(&key, value.clone()).await {
                Ok(revision) => break revision,
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let entry = kv
                        .entry(&key)
                        .await
                        .map_err(|err| ClusterError::nats("presence read", err))?;
                    if let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put)
                    {
                        match seen_revision {
                            None => seen_revision = Some(entry.revision),
                            Some(seen) if seen != entry.revision => return Err(duplicate()),
                            Some(_) => {}
                        }
                    }
                    if started.elapsed() >= PRESENCE_WAIT {
                        return Err(duplicate());
                    }
                    tokio::time::sleep(RENEW_INTERVAL / 4).await;
                }
                Err(err) => return Err(ClusterError::nats("presence create", err)),
            }
        };
        let live = Arc::new(AtomicBool::new(true));
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(revision));
        let task = tokio::spawn(renew(
            kv.clone(),
            key.clone(),
            value,
            Arc::clone(&live),
            Arc::clone(&revision),
        ));
        Ok(Presence { key, live, revision, task })
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Stops renewing and deletes the key if it is still ours.
    pub(crate) async fn unregister(self, kv: &kv::Store) -> Result<(), ClusterError> {
        self.task.abort();
        if self.is_live() {
            let revision = self.revision.load(Ordering::Acquire);
            kv.delete_expect_revision(&self.key, Some(revision))
                .await
                .map_err(|err| ClusterError::nats("presence delete", err))?;
        }
        Ok(())
    }
}

/// Renews the key every [`RENEW_INTERVAL`] on condition that it still has our last revision.
/// If it expired (we were cut off for longer than its life) and nobody took it, creates it
/// again; if somebody did, the name is no longer ours: `live` turns false and the task ends.
async fn renew(
    kv: kv::Store,
    key: String,
    value: Bytes,
    live: Arc<AtomicBool>,
    revision: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut interval = tokio::time::interval(RENEW_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let last = revision.load(Ordering::Acquire);
        match kv.update(&key, value.clone(), last).await {
            Ok(next) => revision.store(next, Ordering::Release),
            Err(err)
                if err.kind() == kv::UpdateErrorKind::WrongLastRevision
                    || is_wrong_last_sequence(&err) =>
            {
                match kv.create(&key, value.clone()).await {
                    Ok(next) => revision.store(next, Ordering::Release),
                    Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                        live.store(false, Ordering::Release);
                        return;
                    }
                    // Transient (a leader election, a reconnect): try again next tick.
                    Err(_) => {}
                }
            }
            Err(_) => {}
        }
    }
}

/// The URL a live node registered with, if it is live and gave one.
pub(crate) async fn url_of(kv: &kv::Store, node: &str) -> Result<Option<String>, ClusterError> {
    let entry = kv
        .entry(format!("{PRESENCE_PREFIX}{node}"))
        .await
        .map_err(|err| ClusterError::nats("presence read", err))?;
    let value = entry.filter(|entry| entry.operation == kv::Operation::Put).map(|e| e.value);
    Ok(value.and_then(|bytes| String::from_utf8(bytes.to_vec()).ok()).filter(|u| !u.is_empty()))
}

/// The node names with a presence key, sorted.
pub(crate) async fn live_nodes(kv: &kv::Store) -> Result<Vec<String>, ClusterError> {
    let keys = kv.keys().await.map_err(|err| ClusterError::nats("presence list", err))?;
    let keys: Vec<String> =
        keys.try_collect().await.map_err(|err| ClusterError::nats("presence list", err))?;
    let mut nodes: Vec<String> = keys
        .into_iter()
        .filter_map(|key| key.strip_prefix(PRESENCE_PREFIX).map(str::to_owned))
        .collect();
    nodes.sort();
    Ok(nodes)
}

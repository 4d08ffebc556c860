//! A real 3-server NATS JetStream cluster for one test (`servers.rs`) in a temporary folder,
//! handed to a test once it has a meta leader that sees both peers and has placed a probe R3
//! stream. Without a `nats-server`, a test prints why and passes, unless `IDGRAPH_REQUIRE_NATS`
//! is set (CI), when it fails. Tests run one at a time ([`serial`]):
//! the lease tests measure seconds, and a 2-core machine running three clusters at once
//! would blur them.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use idgraph_cluster::{ClusterConfig, ClusterError};

use crate::servers::{self, READY_TIMEOUT};

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lock that runs the cluster tests one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The three servers of `servers.rs` in a temporary folder, for one test.
#[derive(Debug)]
pub struct NatsCluster {
    /// Dropped first: the servers stop before their folder goes.
    servers: servers::NatsCluster,
    _dir: tempfile::TempDir,
}

impl Deref for NatsCluster {
    type Target = servers::NatsCluster;

    fn deref(&self) -> &servers::NatsCluster {
        &self.servers
    }
}

impl DerefMut for NatsCluster {
    fn deref_mut(&mut self) -> &mut servers::NatsCluster {
        &mut self.servers
    }
}

impl NatsCluster {
    /// Starts the cluster and waits until it places an R3 stream; `None` if there is no binary.
    pub fn start() -> Option<NatsCluster> {
        let bin = servers::nats_server_or_skip()?;
        let dir = tempfile::tempdir().unwrap();
        let servers = servers::NatsCluster::start(bin, dir.path());
        let cluster = NatsCluster { servers, _dir: dir };
        cluster.wait_placement();
        Some(cluster)
    }

    /// Waits until the cluster places an R3 stream: for a moment after the meta leader sees its
    /// peers, placements still fail ("no suitable peers for placement") until the servers have
    /// exchanged their JetStream statistics. Creates and deletes a probe stream.
    fn wait_placement(&self) {
        let urls = self.urls();
        runtime().block_on(async {
            let client = async_nats::connect(urls).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let started = Instant::now();
            let config = async_nats::jetstream::stream::Config {
                name: "probe".to_owned(),
                subjects: vec!["probe".to_owned()],
                num_replicas: 3,
                ..Default::default()
            };
            while let Err(err) = js.create_stream(config.clone()).await {
                assert!(started.elapsed() < READY_TIMEOUT, "no R3 placement: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            js.delete_stream("probe").await.unwrap();
        });
    }

    /// A monitoring endpoint's JSON (`/varz`, `/jsz`), or `None` if the server does not answer.
    pub fn monitor(&self, monitor_port: u16, path: &str) -> Option<serde_json::Value> {
        servers::monitor(monitor_port, path)
    }

    /// A node configuration for the default stream.
    pub fn config(&self, node: &str) -> ClusterConfig {
        ClusterConfig::new(self.urls(), node)
    }
}

/// What a cluster test needs: the lock that runs them one at a time, a fresh cluster and a
/// runtime; `None` (see the module doc) without a `nats-server`.
pub fn cluster_test() -> Option<(NatsCluster, tokio::runtime::Runtime, MutexGuard<'static, ()>)> {
    let serial = serial();
    let cluster = NatsCluster::start()?;
    Some((cluster, runtime(), serial))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// How long [`transient`] retries.
const TRANSIENT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `op` again while it fails with [`ClusterError::Nats`] (a timeout or a leader election,
/// which the API documents as transient; on a loaded 2-core machine with `sync_interval:
/// always`, a request now and then outlasts its 5 s), for up to 30 s. Every other outcome is
/// returned. A publish retried with the same arguments is idempotent, so this is how a writer
/// is meant to publish.
pub async fn transient<T, Fut>(what: &str, mut op: impl FnMut() -> Fut) -> Result<T, ClusterError>
where
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Err(err @ ClusterError::Nats { .. }) if started.elapsed() < TRANSIENT_LIMIT => {
                eprintln!("retrying {what} after {:?}: {err}", started.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => return outcome,
        }
    }
}

//! A real 3-server NATS JetStream cluster for one test: `nats-server` processes started from
//! `scripts/nats/n1.conf`..`n3.conf` (so the tests run the shipped durability settings) with
//! free loopback ports and a temporary store, killed by their own handles when dropped. A
//! cluster is handed to a test once it has a meta leader that sees both peers and has placed a
//! probe R3 stream.
//!
//! The binary: `$NATS_SERVER_BIN`, else where `scripts/install-nats.sh` installs it, else
//! `nats-server` on `PATH`. Without one, a test prints why and passes, unless
//! `IDGRAPH_REQUIRE_NATS` is set (CI), when it fails. Tests run one at a time ([`serial`]):
//! the lease tests measure seconds, and a 2-core machine running three clusters at once
//! would blur them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use idgraph_cluster::{ClusterConfig, ClusterError};

/// The version `scripts/install-nats.sh` installs (keep the two in step).
const NATS_VERSION: &str = "2.15.1";

/// How long a fresh cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lock that runs the cluster tests one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn executable(path: &Path) -> bool {
    path.is_file()
}

/// The `nats-server` binary to run, if there is one.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(executable(&path), "NATS_SERVER_BIN={} is not a file", path.display());
        return Some(path);
    }
    let home = std::env::var_os("IDGRAPH_NATS_HOME").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(format!(".cache/idgraph/nats-server-{NATS_VERSION}")))
    });
    if let Some(bin) = home.map(|home| home.join("bin/nats-server")).filter(|bin| executable(bin)) {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|bin| executable(bin))
}

/// The binary, or `None` after printing why the test is skipped (or a panic if
/// `IDGRAPH_REQUIRE_NATS` is set).
fn nats_server_or_skip() -> Option<PathBuf> {
    let found = nats_server();
    if found.is_none() {
        let message = "nats-server not found ($NATS_SERVER_BIN, the scripts/install-nats.sh \
                       install, PATH): run scripts/install-nats.sh";
        assert!(std::env::var_os("IDGRAPH_REQUIRE_NATS").is_none(), "{message}");
        eprintln!("SKIPPED (cluster test): {message}");
    }
    found
}

/// Ports the OS says are free now (a race with other processes, small on loopback).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// One server of the cluster.
#[derive(Debug)]
struct Server {
    name: String,
    client_port: u16,
    monitor_port: u16,
    cluster_port: u16,
    child: Option<Child>,
}

/// Three `nats-server` processes in one cluster.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    servers: Vec<Server>,
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nats")
}

impl NatsCluster {
    /// Starts the cluster and waits for its meta leader; `None` if there is no binary.
    pub fn start() -> Option<NatsCluster> {
        let bin = nats_server_or_skip()?;
        let ports = free_ports(9);
        let servers = (0..3)
            .map(|i| Server {
                name: format!("n{}", i + 1),
                client_port: ports[i],
                monitor_port: ports[3 + i],
                cluster_port: ports[6 + i],
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { bin, dir: tempfile::tempdir().unwrap(), servers };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_ready();
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

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.cluster_port))
            .collect();
        let server = &self.servers[index];
        let store = self.dir.path().join(&server.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", server.name)))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(conf_dir().join(format!("{}.conf", server.name)))
            .args(["-p", &server.client_port.to_string()])
            .args(["-m", &server.monitor_port.to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", server.cluster_port)])
            .args(["--routes", &routes.join(",")])
            .env("IDGRAPH_NATS_STORE", &store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.servers[index].child = Some(child);
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = self
                .servers
                .iter()
                .filter(|server| server.child.is_some())
                .all(|server| self.meta_leader(server.monitor_port).is_some());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the NATS cluster has no meta leader after {READY_TIMEOUT:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn meta_leader(&self, monitor_port: u16) -> Option<String> {
        let jsz = self.monitor(monitor_port, "/jsz")?;
        jsz["meta_cluster"]["leader"]
            .as_str()
            .filter(|leader| !leader.is_empty())
            .map(str::to_owned)
    }

    /// A monitoring endpoint's JSON (`/varz`, `/jsz`), or `None` if the server does not answer.
    pub fn monitor(&self, monitor_port: u16, path: &str) -> Option<serde_json::Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    /// `(server name, monitoring port)` of each running server.
    pub fn monitor_ports(&self) -> Vec<(String, u16)> {
        self.servers
            .iter()
            .filter(|server| server.child.is_some())
            .map(|server| (server.name.clone(), server.monitor_port))
            .collect()
    }

    /// The client URLs of all three servers (running or not).
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.client_port))
            .collect()
    }

    /// A node configuration for the default stream.
    pub fn config(&self, node: &str) -> ClusterConfig {
        ClusterConfig::new(self.urls(), node)
    }

    /// SIGKILLs the server of that name (`Child::kill` is `kill -9` on Unix).
    pub fn kill(&mut self, name: &str) {
        let server = self.servers.iter_mut().find(|server| server.name == name).unwrap();
        let mut child = server.child.take().expect("the server is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts a killed server again, on its ports and store.
    pub fn restart(&mut self, name: &str) {
        let index = self.servers.iter().position(|server| server.name == name).unwrap();
        self.spawn(index);
        self.wait_ready();
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

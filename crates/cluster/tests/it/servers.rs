//! Three real `nats-server` processes in one JetStream cluster on loopback, for the tests of this
//! crate (`harness.rs`) and the cluster's end-to-end tests (`crates/cli/tests/cluster/nats.rs`
//! includes this file): started from the shipped `scripts/nats/n1.conf`..`n3.conf` (so the tests
//! run the shipped durability settings) with free loopback ports given on the command line and a
//! store under the caller's folder, killed by their own handles when dropped.
//!
//! The binary: `$NATS_SERVER_BIN`, else where `scripts/install-nats.sh` installs it, else
//! `nats-server` on `PATH`. Without one, a test prints `SKIPPED` and passes, unless
//! `IDGRAPH_REQUIRE_NATS` is set (CI, `scripts/test.sh`), when it fails.

#![allow(dead_code, reason = "shared by two test crates, each of which uses a part")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The version `scripts/install-nats.sh` installs (keep the two in step).
const NATS_VERSION: &str = "2.15.1";

/// How long a fresh (or restarted) cluster may take to elect its JetStream meta leader.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` binary to run, if there is one.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "NATS_SERVER_BIN={} is not a file", path.display());
        return Some(path);
    }
    let home = std::env::var_os("IDGRAPH_NATS_HOME").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(format!(".cache/idgraph/nats-server-{NATS_VERSION}")))
    });
    if let Some(bin) = home.map(|home| home.join("bin/nats-server")).filter(|bin| bin.is_file()) {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|bin| bin.is_file())
}

/// The binary, or `None` after printing why the test is skipped (a panic instead if
/// `IDGRAPH_REQUIRE_NATS` is set).
pub fn nats_server_or_skip() -> Option<PathBuf> {
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
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// A monitoring endpoint's JSON (`/jsz`, `/varz`), or `None` if the server does not answer.
pub fn monitor(monitor_port: u16, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// One server of the cluster.
#[derive(Debug)]
struct Server {
    name: String,
    client_port: u16,
    monitor_port: u16,
    cluster_port: u16,
    /// The running process; `None` while killed.
    child: Option<Child>,
}

/// Three `nats-server` processes in one cluster, killed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    /// Stores and logs: `nN/` and `nN.log`.
    dir: PathBuf,
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

impl NatsCluster {
    /// Starts the three servers with their stores and logs in `dir` and waits for a meta leader
    /// that sees both peers.
    pub fn start(bin: PathBuf, dir: &Path) -> NatsCluster {
        std::fs::create_dir_all(dir).unwrap();
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
        let mut cluster = NatsCluster { bin, dir: dir.to_owned(), servers };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_ready();
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.cluster_port))
            .collect();
        let server = &self.servers[index];
        let conf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/nats")
            .join(format!("{}.conf", server.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", server.name)))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(conf)
            .args(["-p", &server.client_port.to_string()])
            .args(["-m", &server.monitor_port.to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", server.cluster_port)])
            .args(["--routes", &routes.join(",")])
            .env("IDGRAPH_NATS_STORE", self.dir.join(&server.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.servers[index].child = Some(child);
    }

    /// Waits until every running server names the same meta leader and that leader sees the
    /// other running servers as current (before that, placing an R3 stream fails).
    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if self.is_ready() {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the NATS cluster is not ready after {READY_TIMEOUT:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn is_ready(&self) -> bool {
        let running: Vec<&Server> =
            self.servers.iter().filter(|server| server.child.is_some()).collect();
        let mut metas = Vec::new();
        for server in &running {
            match monitor(server.monitor_port, "/jsz") {
                Some(jsz) => metas.push(jsz["meta_cluster"].clone()),
                None => return false,
            }
        }
        let leader = metas[0]["leader"].as_str().unwrap_or_default().to_owned();
        if leader.is_empty() || metas.iter().any(|meta| meta["leader"] != leader.as_str()) {
            return false;
        }
        // The leader's own report lists the other servers as its replicas.
        let Some(own) = metas.iter().find(|meta| {
            meta["replicas"]
                .as_array()
                .is_some_and(|peers| peers.iter().all(|peer| peer["name"] != leader.as_str()))
        }) else {
            return false;
        };
        let peers = own["replicas"].as_array().cloned().unwrap_or_default();
        let current = |name: &str| {
            peers.iter().any(|peer| {
                peer["name"] == name && peer["current"] == true && peer["offline"] != true
            })
        };
        running.iter().filter(|server| server.name != leader).all(|server| current(&server.name))
    }

    /// `(server name, monitoring port)` of each running server.
    pub fn monitor_ports(&self) -> Vec<(String, u16)> {
        self.servers
            .iter()
            .filter(|server| server.child.is_some())
            .map(|server| (server.name.clone(), server.monitor_port))
            .collect()
    }

    /// The client ports of the running servers.
    pub fn running_client_ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .filter(|server| server.child.is_some())
            .map(|server| server.client_port)
            .collect()
    }

    /// The client URLs of all three servers (running or not), as a node's `[cluster] nats`.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.client_port))
            .collect()
    }

    /// SIGKILLs the server of that name (`Child::kill` is `kill -9` on Unix).
    pub fn kill(&mut self, name: &str) {
        let server = self.servers.iter_mut().find(|server| server.name == name).unwrap();
        let mut child = server.child.take().expect("the server is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts a killed server again, on its ports and store, and waits until the cluster is
    /// whole again.
    pub fn restart(&mut self, name: &str) {
        let index = self.servers.iter().position(|server| server.name == name).unwrap();
        self.spawn(index);
        self.wait_ready();
    }
}

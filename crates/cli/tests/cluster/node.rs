//! idgraph cluster nodes as real processes: `idgraph serve --config FILE` under a supervisor
//! thread that starts the node again when it exits with status 75 (a writer that stepped down),
//! as `scripts/cluster.sh` and a service manager do; and the HTTP calls the tests make.
//!
//! Each node keeps its HTTP port, data folder and configuration across restarts, so the other
//! nodes and the clients find it where it was. Its stdout and stderr go to `<dir>/<node>.log`
//! (`RUST_LOG=info`), whose tail a failing test prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

/// The status of a writer that lost its lease or was fenced (`EXIT_STEPPED_DOWN`).
pub const EXIT_STEPPED_DOWN: i32 = 75;

/// How long a node may take from its start to answering `/healthz`: connecting to NATS (5 s),
/// waiting for the streams' leaders (10 s) and for a crashed predecessor's name to free (5 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(40);

/// The `[cluster]` settings of a node.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub nats: Vec<String>,
    pub stream: String,
    pub replicas: usize,
}

/// A node's configuration file: listen address, data folder, the development workspace of
/// `scripts/cluster.sh` (key-only `dev-key`) and the `[cluster]` section.
pub fn config_toml(node: &str, port: u16, data_dir: &Path, cluster: &ClusterSettings) -> String {
    let nats: Vec<String> = cluster.nats.iter().map(|url| format!("\"{url}\"")).collect();
    format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = '{data_dir}'
# Followers store a snapshot in the cluster this often, for the node that joins empty.
snapshot_every_entries = 2000

[[workspace]]
name = "default"
api_key = "dev-key"
api_secret = "dev-secret"
allow_key_only = true

[cluster]
nats = [{nats}]
node = "{node}"
stream = "{stream}"
replicas = {replicas}
"#,
        data_dir = data_dir.display(),
        nats = nats.join(", "),
        stream = cluster.stream,
        replicas = cluster.replicas,
    )
}

/// How a node's process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub at: Instant,
    pub status: ExitStatus,
}

/// What the supervisor thread and the test share about a node's process.
#[derive(Debug, Default)]
struct Supervised {
    /// The running process, if any.
    pid: Option<u32>,
    /// Every exit, in order.
    exits: Vec<Exit>,
    /// Set by the test: do not start the node again.
    stop: bool,
}

/// One idgraph node: its files and its supervised process.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    config_path: PathBuf,
    pub log_path: PathBuf,
    /// Locked briefly by both sides: std `Mutex`, since nothing waits while holding it.
    shared: Arc<Mutex<Supervised>>,
    supervisor: Option<JoinHandle<()>>,
}

impl Node {
    /// Writes the node's configuration into `dir` and starts it under its supervisor; does not
    /// wait for it to answer (see [`Node::wait_healthy`]).
    pub fn start(dir: &Path, name: &str, port: u16, cluster: &ClusterSettings) -> Node {
        let config_path = dir.join(format!("{name}.toml"));
        let data_dir = dir.join(name);
        std::fs::write(&config_path, config_toml(name, port, &data_dir, cluster)).unwrap();
        let mut node = Node {
            name: name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            config_path,
            log_path: dir.join(format!("{name}.log")),
            shared: Arc::default(),
            supervisor: None,
        };
        node.supervise();
        node
    }

    fn supervise(&mut self) {
        let (config_path, log_path) = (self.config_path.clone(), self.log_path.clone());
        let shared = Arc::clone(&self.shared);
        self.shared().stop = false;
        self.supervisor = Some(std::thread::spawn(move || {
            loop {
                let mut child = {
                    let mut supervised = lock(&shared);
                    if supervised.stop {
                        return;
                    }
                    let child = spawn_serve(&config_path, &log_path);
                    supervised.pid = Some(child.id());
                    child
                };
                let status = child.wait().unwrap();
                let mut supervised = lock(&shared);
                supervised.pid = None;
                supervised.exits.push(Exit { at: Instant::now(), status });
                if status.code() != Some(EXIT_STEPPED_DOWN) {
                    return;
                }
            }
        }));
    }

    fn shared(&self) -> MutexGuard<'_, Supervised> {
        lock(&self.shared)
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to the node's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.shared().pid.unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// `kill -9`, and waits until the supervisor saw the exit (it does not start it again).
    pub fn kill(&mut self) {
        let pid = {
            let mut supervised = self.shared();
            supervised.stop = true;
            supervised.pid
        };
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.join().unwrap();
        }
    }

    /// Starts a killed node again on its data folder.
    pub fn restart(&mut self) {
        assert!(self.supervisor.is_none(), "{} is supervised already", self.name);
        self.supervise();
    }

    /// Panics if the node's process ended on its own with another status than 75 (the
    /// supervisor then leaves it down): the test's own kills end it by a signal.
    pub fn assert_no_crash(&self) {
        let last = self.shared().exits.last().copied();
        if let Some(exit) = last
            && let Some(code) = exit.status.code()
            && code != EXIT_STEPPED_DOWN
        {
            panic!(
                "{} exited with status {code} (a node stops itself only with \
                 {EXIT_STEPPED_DOWN}, to be started again); its log ends:\n{}",
                self.name,
                self.log_tail(15)
            );
        }
    }

    /// Every exit of the node's processes so far.
    pub fn exits(&self) -> Vec<Exit> {
        self.shared().exits.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `/healthz`, or `None` if the node does not answer within a second.
    pub fn health(&self) -> Option<Health> {
        let response = short_client().get(self.url("/healthz")).send().ok()?;
        let body: Value = response.json().ok()?;
        Some(Health {
            role: body["role"].as_str()?.to_owned(),
            last_seq: body["last_seq"].as_u64()?,
            running_digest: body["running_digest"].as_str()?.to_owned(),
        })
    }

    /// Waits until the node answers `/healthz` and is no longer catching up.
    pub fn wait_healthy(&self, timeout: Duration) -> Health {
        let started = Instant::now();
        loop {
            if let Some(health) = self.health().filter(|health| health.role != "catching_up") {
                return health;
            }
            self.assert_no_crash();
            assert!(
                started.elapsed() < timeout,
                "{} is not up (or still catching up) {timeout:?} after it was started: {:?}",
                self.name,
                self.health()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the node's log.
    pub fn log_tail(&self, n_lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n_lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock(shared: &Mutex<Supervised>) -> MutexGuard<'_, Supervised> {
    shared.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn spawn_serve(config_path: &Path, log_path: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
    Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["serve", "--config"])
        .arg(config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `idgraph serve` with `config` that is expected to refuse to start: its exit status and
/// stderr, and how long it ran; panics if it still runs after `timeout`.
pub fn run_expecting_failure(
    dir: &Path,
    name: &str,
    config: &str,
    timeout: Duration,
) -> (ExitStatus, String, Duration) {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: `idgraph serve` still runs {timeout:?} after it was started");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    (status, reader.join().unwrap(), took)
}

/// A node's `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub role: String,
    pub last_seq: u64,
    pub running_digest: String,
}

fn short_client() -> Client {
    Client::builder().timeout(Duration::from_secs(1)).build().unwrap()
}

/// The client the load and the checks use. A login that a paused writer (or a follower relaying
/// to it) holds is given up after `timeout` and sent again.
pub fn client(timeout: Duration) -> Client {
    Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(2)).build().unwrap()
}

/// The identities of one login.
#[derive(Debug, Clone)]
pub struct Identities {
    pub customerid: String,
    pub email: String,
}

impl Identities {
    fn json(&self) -> Value {
        json!({"customerid": self.customerid, "email": self.email})
    }
}

/// What a node answered.
#[derive(Debug)]
pub enum Answer {
    /// 200 with this MPID, at this `Idgraph-Seq`.
    Mpid { mpid: String, seq: u64 },
    /// 404: nothing found.
    NotFound,
    /// Any other status, with the body.
    Status { status: u16, body: String },
    /// No answer (connection refused or reset, timeout).
    Unanswered { error: String },
}

fn answer(response: reqwest::Result<reqwest::blocking::Response>) -> Answer {
    let response = match response {
        Ok(response) => response,
        Err(err) => return Answer::Unanswered { error: format!("{err:#}") },
    };
    let status = response.status().as_u16();
    let seq = response
        .headers()
        .get("idgraph-seq")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let body = match response.text() {
        Ok(body) => body,
        Err(err) => return Answer::Unanswered { error: format!("reading the body: {err:#}") },
    };
    let mpid = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| json["mpid"].as_str().map(str::to_owned));
    match (status, mpid) {
        (200, Some(mpid)) => Answer::Mpid { mpid, seq },
        (404, _) => Answer::NotFound,
        _ => Answer::Status { status, body },
    }
}

/// `POST /v1/login` as the development workspace (key only).
pub fn login(client: &Client, base: &str, request_id: &str, identities: &Identities) -> Answer {
    let body = json!({"environment": "development", "request_id": request_id,
                      "known_identities": identities.json()});
    let url = format!("{base}/v1/login");
    answer(client.post(url).header("x-mp-key", "dev-key").json(&body).send())
}

/// `POST /v1/search`, answered by this node from its own projection.
pub fn search(client: &Client, base: &str, identities: &Identities) -> Answer {
    let body = json!({"environment": "development", "known_identities": identities.json()});
    let url = format!("{base}/v1/search");
    answer(client.post(url).header("x-mp-key", "dev-key").json(&body).send())
}

//! A real 3-server NATS JetStream cluster for one test, and a small client of the NATS protocol
//! to look at the log stream from outside the nodes.
//!
//! The servers are `nats-server` processes started from the shipped `scripts/nats/n1.conf`..
//! `n3.conf` (so the tests run the shipped durability settings) with free loopback ports given on
//! the command line and a temporary store, the way `crates/cluster/tests/it/harness.rs` starts
//! them. The binary: `$NATS_SERVER_BIN`, else where `scripts/install-nats.sh` installs it, else
//! `nats-server` on `PATH`. Without one, a test prints `SKIPPED` and passes, unless
//! `IDGRAPH_REQUIRE_NATS` is set (CI), when it fails.
//!
//! [`Wire`] speaks just enough of the NATS client protocol (CONNECT, SUB, PUB, MSG, PING) to ask
//! the JetStream API for stream information and for stored messages with their headers. The cli
//! crate does not depend on a NATS client, and these tests must see the stream as NATS stores
//! it, not as the node under test reports it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

/// The version `scripts/install-nats.sh` installs (keep the two in step).
const NATS_VERSION: &str = "2.15.1";

/// How long a fresh (or restarted) cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one JetStream API request over [`Wire`] may take.
const WIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests sent before their answers are read, when reading the whole stream.
const WIRE_PIPELINE_DEPTH: u64 = 256;

/// The `nats-server` binary to run, if there is one.
fn nats_server() -> Option<PathBuf> {
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
    /// Stores and logs: `nN/` and `nN.log` (this folder is `nats/` in the test's folder).
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
    /// Starts the three servers with their stores and logs in `dir/nats/` and waits for a meta
    /// leader that sees both peers.
    pub fn start(bin: PathBuf, dir: &Path) -> NatsCluster {
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).unwrap();
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
        let mut cluster = NatsCluster { bin, dir, servers };
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

    /// The client URLs of all three servers (running or not), as a node's `[cluster] nats`.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| format!("nats://127.0.0.1:{}", server.client_port))
            .collect()
    }

    /// A client of a running server.
    pub fn wire(&self) -> Wire {
        let mut last_err = None;
        for server in self.servers.iter().filter(|server| server.child.is_some()) {
            match Wire::connect(server.client_port) {
                Ok(wire) => return wire,
                Err(err) => last_err = Some(err),
            }
        }
        panic!("no NATS server accepts a client: {last_err:?}")
    }

    /// The server that leads `stream`'s Raft group, asked until one answers (at most 30 s).
    pub fn stream_leader(&self, stream: &str) -> String {
        let started = Instant::now();
        loop {
            let info = self.wire().request(&format!("$JS.API.STREAM.INFO.{stream}"), b"");
            if let Ok(info) = &info
                && let Some(leader) = info["cluster"]["leader"].as_str()
                && !leader.is_empty()
            {
                return leader.to_owned();
            }
            assert!(started.elapsed() < READY_TIMEOUT, "stream {stream} has no leader: {info:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
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

/// A monitoring endpoint's JSON (`/jsz`, `/varz`), or `None` if the server does not answer.
fn monitor(monitor_port: u16, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// One message of the log stream as NATS stores it: its headers (`Idgraph-Writer`,
/// `Idgraph-Term`, `Idgraph-First-Seq`, `Idgraph-Last-Seq`, ...).
#[derive(Debug, Clone)]
pub struct StoredGroup {
    pub stream_seq: u64,
    pub writer: String,
    pub term: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A connection speaking the NATS client protocol, for JetStream API requests.
#[derive(Debug)]
pub struct Wire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The suffix of the next reply subject (`_INBOX.cli-test.<n>`).
    next_inbox: u64,
}

type WireResult<T> = Result<T, String>;

impl Wire {
    fn connect(port: u16) -> WireResult<Wire> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
        stream.set_read_timeout(Some(WIRE_TIMEOUT)).map_err(|err| err.to_string())?;
        let writer = stream.try_clone().map_err(|err| err.to_string())?;
        let mut wire = Wire { reader: BufReader::new(stream), writer, next_inbox: 0 };
        let info = wire.line()?;
        if !info.starts_with("INFO ") {
            return Err(format!("expected INFO, got {info:?}"));
        }
        wire.send(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
              \"no_responders\":true,\"protocol\":1,\"name\":\"idgraph-cli-test\"}\r\n\
              SUB _INBOX.cli-test.* 1\r\nPING\r\n",
        )?;
        loop {
            match wire.line()?.as_str() {
                "PONG" => return Ok(wire),
                "PING" => wire.send(b"PONG\r\n")?,
                other if other.starts_with("-ERR") => return Err(other.to_owned()),
                _ => {}
            }
        }
    }

    fn line(&mut self) -> WireResult<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("the server closed the connection".to_owned()),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> WireResult<()> {
        self.writer.write_all(bytes).map_err(|err| err.to_string())
    }

    /// Publishes `payload` to `subject` with a fresh reply subject; returns its number.
    fn publish(&mut self, subject: &str, payload: &[u8]) -> WireResult<u64> {
        let inbox = self.next_inbox;
        self.next_inbox += 1;
        let mut frame =
            format!("PUB {subject} _INBOX.cli-test.{inbox} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame)?;
        Ok(inbox)
    }

    /// The next reply: its inbox number and its JSON (a "no responders" status is an error).
    fn reply(&mut self) -> WireResult<(u64, Value)> {
        loop {
            let line = self.line()?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("PING") => self.send(b"PONG\r\n")?,
                Some("MSG" | "HMSG") => {
                    let inbox = words[1]
                        .strip_prefix("_INBOX.cli-test.")
                        .and_then(|n| n.parse::<u64>().ok())
                        .ok_or_else(|| format!("a message on {}", words[1]))?;
                    let total: usize = words.last().unwrap().parse().map_err(|_| line.clone())?;
                    let header_len: usize = if words[0] == "HMSG" {
                        words[words.len() - 2].parse().unwrap()
                    } else {
                        0
                    };
                    let mut body = vec![0; total + 2];
                    self.reader.read_exact(&mut body).map_err(|err| err.to_string())?;
                    let (headers, payload) = body[..total].split_at(header_len);
                    if payload.is_empty() {
                        return Err(format!(
                            "status reply: {}",
                            String::from_utf8_lossy(headers).trim()
                        ));
                    }
                    let json = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
                    return Ok((inbox, json));
                }
                Some(other) if other.starts_with("-ERR") => return Err(line),
                _ => {}
            }
        }
    }

    /// One JetStream API request; its answer (an API error is an `Err` naming it).
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> WireResult<Value> {
        let inbox = self.publish(subject, payload)?;
        loop {
            let (answered, json) = self.reply()?;
            if answered == inbox {
                return api_result(json);
            }
        }
    }

    /// The stream's last sequence (0: empty).
    pub fn last_stream_seq(&mut self, stream: &str) -> WireResult<u64> {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")?;
        info["state"]["last_seq"].as_u64().ok_or_else(|| format!("no state.last_seq in {info}"))
    }

    /// Every message of `stream` from 1 to `last`, in order, with its headers.
    pub fn read_stream(&mut self, stream: &str, last: u64) -> WireResult<Vec<StoredGroup>> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let mut groups = Vec::with_capacity(last as usize);
        let mut next = 1;
        while next <= last {
            let batch_end = last.min(next + WIRE_PIPELINE_DEPTH - 1);
            let mut inbox_to_seq = BTreeMap::new();
            for seq in next..=batch_end {
                let inbox = self.publish(&subject, format!("{{\"seq\":{seq}}}").as_bytes())?;
                inbox_to_seq.insert(inbox, seq);
            }
            let mut batch = BTreeMap::new();
            while batch.len() < inbox_to_seq.len() {
                let (inbox, json) = self.reply()?;
                if let Some(seq) = inbox_to_seq.get(&inbox) {
                    batch.insert(*seq, stored_group(*seq, api_result(json)?)?);
                }
            }
            groups.extend(batch.into_values());
            next = batch_end + 1;
        }
        Ok(groups)
    }
}

fn api_result(json: Value) -> WireResult<Value> {
    if json["error"].is_object() {
        Err(format!("JetStream API error: {}", json["error"]))
    } else {
        Ok(json)
    }
}

fn stored_group(seq: u64, answer: Value) -> WireResult<StoredGroup> {
    let message = &answer["message"];
    let headers = message["hdrs"].as_str().ok_or_else(|| format!("message {seq}: no hdrs"))?;
    let headers = base64::engine::general_purpose::STANDARD
        .decode(headers)
        .map_err(|err| format!("message {seq}: hdrs: {err}"))?;
    let headers = String::from_utf8_lossy(&headers);
    let header = |name: &str| -> WireResult<String> {
        headers
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
            .ok_or_else(|| format!("message {seq} has no {name} header: {headers:?}"))
    };
    let number = |name: &str| -> WireResult<u64> {
        header(name)?.parse().map_err(|err| format!("message {seq}: {name}: {err}"))
    };
    Ok(StoredGroup {
        stream_seq: message["seq"].as_u64().unwrap_or(seq),
        writer: header("Idgraph-Writer")?,
        term: number("Idgraph-Term")?,
        first_seq: number("Idgraph-First-Seq")?,
        last_seq: number("Idgraph-Last-Seq")?,
    })
}

//! A real 3-server NATS JetStream cluster for one test, and a small client of the NATS protocol
//! to look at the log stream from outside the nodes.
//!
//! The servers are `nats-server` processes started by `crates/cluster/tests/it/servers.rs`
//! (included here, shared with the cluster crate's tests): the shipped `scripts/nats/n1.conf`..
//! `n3.conf` with free loopback ports. Without a binary, a test prints `SKIPPED` and passes,
//! unless `IDGRAPH_REQUIRE_NATS` is set (CI), when it fails.
//!
//! [`Wire`] speaks just enough of the NATS client protocol (CONNECT, SUB, PUB, MSG, PING) to ask
//! the JetStream API for stream information and for stored messages with their headers. The cli
//! crate does not depend on a NATS client, and these tests must see the stream as NATS stores
//! it, not as the node under test reports it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

// The servers themselves are started by the same code as the cluster crate's own tests.
#[path = "../../../cluster/tests/it/servers.rs"]
mod servers;

use servers::READY_TIMEOUT;
pub use servers::{NatsCluster, free_ports, nats_server_or_skip};

/// How long one JetStream API request over [`Wire`] may take.
const WIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests sent before their answers are read, when reading the whole stream.
const WIRE_PIPELINE_DEPTH: u64 = 256;

/// What the end-to-end tests ask of the NATS cluster beyond starting and killing servers.
pub trait NatsClusterExt {
    /// A client of a running server.
    fn wire(&self) -> Wire;
    /// The server that leads `stream`'s Raft group, asked until one answers (at most 30 s).
    fn stream_leader(&self, stream: &str) -> String;
}

impl NatsClusterExt for NatsCluster {
    fn wire(&self) -> Wire {
        let mut last_err = None;
        for port in self.running_client_ports() {
            match Wire::connect(port) {
                Ok(wire) => return wire,
                Err(err) => last_err = Some(err),
            }
        }
        panic!("no NATS server accepts a client: {last_err:?}")
    }

    fn stream_leader(&self, stream: &str) -> String {
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

//! The HTTP client of `idgraph bench --url` (its event loop, request rendering and response
//! parsing), end to end: against the real `idgraph serve`, and against a small scripted HTTP/1.1
//! server that checks every request, answers some with errors, splits its responses across
//! packets, and closes kept-alive connections, to see that every response is read and counted and
//! that a chunk sent on a connection the server closed is sent again.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use serde_json::Value;

/// Runs `idgraph bench --url URL --json --quiet ARGS` and returns its one report.
fn bench(url: &str, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["bench", "--url", url, "--json", "--quiet", "--api-key", "k", "--api-secret", "s"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    reports[0].clone()
}

#[test]
fn the_real_server_answers_every_request_sent_and_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[workspace]]\nname = \"bench\"\napi_key = \"k\"\napi_secret = \"s\"\n";
    let server = Server::start(dir.path(), config);
    // Another seed each time: the same request ids with other references would be refused.
    for (pipeline, seed) in [("1", "1"), ("8", "2")] {
        let args = ["--requests", "3000", "--clients", "8", "--pipeline", pipeline, "--seed", seed];
        let report = bench(&server.base, &args);
        assert_eq!(report["requests"], 3000, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        let answered = 3000
            - report["rejected"].as_u64().unwrap()
            - report["skipped"].as_u64().unwrap()
            - report["errors"].as_u64().unwrap();
        assert!(answered > 2_900, "{report}");
        assert!(report["server_cpu_us_per_request"].as_f64().unwrap() > 0.0, "{report}");
    }
}

/// How the scripted server misbehaves.
#[derive(Debug, Clone, Copy)]
struct Script {
    /// Close a connection after answering this many requests on it.
    close_after: Option<u64>,
    /// Answer every n-th request (counted over all connections) with 503, and every m-th with
    /// 404 (503 wins).
    fail_every: Option<u64>,
    reject_every: Option<u64>,
    /// Write each response in three pieces, a little apart.
    split: bool,
}

/// What the scripted server saw and answered.
#[derive(Debug, Default)]
struct Seen {
    n_requests: AtomicU64,
    n_failed: AtomicU64,
    n_rejected: AtomicU64,
    /// Requests whose references name an MPID the server never gave out, or that were malformed.
    n_bad: AtomicU64,
    /// MPIDs given out so far.
    mpids: Mutex<BTreeSet<i64>>,
}

/// Starts the scripted server; returns its URL.
fn scripted_server(script: Script, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || serve_connection(stream.unwrap(), script, &seen));
        }
    });
    url
}

fn serve_connection(stream: TcpStream, script: Script, seen: &Seen) {
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut n_answered = 0;
    while let Some((path, body)) = read_request(&mut reader) {
        if path.ends_with("/metrics") {
            // What the bench reads before and after a run; then the connection closes.
            let metrics = "process_cpu_seconds_total 1.5\n";
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", metrics.len());
            let _ = writer.write_all(format!("{head}{metrics}").as_bytes());
            return;
        }
        let n = seen.n_requests.fetch_add(1, Ordering::Relaxed) + 1;
        let (status, answer) = if script.fail_every.is_some_and(|every| n.is_multiple_of(every)) {
            seen.n_failed.fetch_add(1, Ordering::Relaxed);
            ("503 Service Unavailable", r#"{"Errors":[{"code":"busy"}]}"#.to_owned())
        } else if script.reject_every.is_some_and(|every| n.is_multiple_of(every)) {
            seen.n_rejected.fetch_add(1, Ordering::Relaxed);
            ("404 Not Found", r#"{"Errors":[]}"#.to_owned())
        } else {
            ("200 OK", answer(&path, &body, seen))
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let bytes = response.as_bytes();
        let written = if script.split {
            let (head, rest) = bytes.split_at(20);
            let (middle, tail) = rest.split_at(rest.len() - 3);
            [head, middle, tail].iter().try_for_each(|piece| {
                std::thread::sleep(Duration::from_micros(200));
                writer.write_all(piece)
            })
        } else {
            writer.write_all(bytes)
        };
        if written.is_err() {
            return;
        }
        n_answered += 1;
        if script.close_after == Some(n_answered) {
            return;
        }
    }
}

/// One request: its path and body (`None` at the end of the connection).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// The answer to a well-formed request: a fresh MPID for identify, login and logout, none for
/// search and modify. Counts a request whose references the server never gave out as bad.
fn answer(path: &str, body: &[u8], seen: &Seen) -> String {
    let mut mpids = seen.mpids.lock().unwrap();
    let known = |mpid: &str| mpid.parse().is_ok_and(|mpid: i64| mpids.contains(&mpid));
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        seen.n_bad.fetch_add(1, Ordering::Relaxed);
        return "{}".into();
    };
    let well_formed = body["request_id"].is_string() && body["environment"].is_string();
    if let Some(mpid) = path.strip_prefix("/v1/").and_then(|rest| rest.strip_suffix("/modify")) {
        if !well_formed || !known(mpid) || !body["identity_changes"].is_array() {
            seen.n_bad.fetch_add(1, Ordering::Relaxed);
        }
        return "{}".into();
    }
    let previous_ok = match &body["previous_mpid"] {
        Value::Null => true,
        Value::String(mpid) => known(mpid),
        _ => false,
    };
    if !well_formed || !previous_ok || !body["known_identities"].is_object() {
        seen.n_bad.fetch_add(1, Ordering::Relaxed);
    }
    if path == "/v1/search" {
        return r#"{"mpid":null}"#.into();
    }
    let mpid = -1 - mpids.len() as i64;
    mpids.insert(mpid);
    format!(r#"{{"context":null,"matched_identities":{{}},"mpid":"{mpid}","request_id":"r"}}"#)
}

fn answered(report: &Value) -> u64 {
    ["rejected", "skipped", "errors"]
        .iter()
        .fold(report["requests"].as_u64().unwrap(), |n, field| n - report[field].as_u64().unwrap())
}

#[test]
fn every_response_is_counted_by_its_status_and_references_name_given_mpids() {
    let script =
        Script { close_after: None, fail_every: Some(50), reject_every: Some(7), split: true };
    let seen = Arc::new(Seen::default());
    let url = scripted_server(script, Arc::clone(&seen));
    let report = bench(&url, &["--requests", "2000", "--clients", "8", "--pipeline", "4"]);
    assert_eq!(report["requests"], 2000, "{report}");
    assert_eq!(seen.n_bad.load(Ordering::Relaxed), 0, "malformed requests or unknown references");
    assert_eq!(report["errors"], seen.n_failed.load(Ordering::Relaxed), "{report}");
    // Rejected: the server's 404s, plus nothing else (the workload's junk is not refused here).
    assert_eq!(report["rejected"], seen.n_rejected.load(Ordering::Relaxed), "{report}");
    let n_sent = 2000 - report["skipped"].as_u64().unwrap();
    assert_eq!(seen.n_requests.load(Ordering::Relaxed), n_sent, "one request per line sent");
    assert!(answered(&report) > 1_500, "{report}");
}

#[test]
fn a_chunk_on_a_connection_the_server_closed_is_sent_again() {
    // A fresh connection serves more than a chunk, so a chunk fails only where it was cut off.
    for (pipeline, close_after) in [("1", 3), ("5", 12)] {
        let script = Script {
            close_after: Some(close_after),
            fail_every: None,
            reject_every: None,
            split: false,
        };
        let seen = Arc::new(Seen::default());
        let url = scripted_server(script, Arc::clone(&seen));
        let report = bench(&url, &["--requests", "1500", "--clients", "4", "--pipeline", pipeline]);
        assert_eq!(report["requests"], 1500, "{report}");
        assert_eq!(report["errors"], 0, "every chunk gets through on a fresh connection: {report}");
        // A close the client missed would leave a chunk waiting for the 30 s response timeout.
        assert!(report["seconds"].as_f64().unwrap() < 20.0, "{report}");
        assert_eq!(report["rejected"], 0, "{report}");
        assert_eq!(seen.n_bad.load(Ordering::Relaxed), 0);
        // Some requests reached the server twice (the ones whose responses the close cut off).
        let n_sent = 1500 - report["skipped"].as_u64().unwrap();
        assert!(seen.n_requests.load(Ordering::Relaxed) >= n_sent);
    }
}

#[test]
fn a_server_that_is_gone_fails_every_request_with_its_reason() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["bench", "--url", &format!("http://127.0.0.1:{port}")])
        .args(["--requests", "50", "--clients", "2", "--quiet"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "nothing answered: the run fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
}

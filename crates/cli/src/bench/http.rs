//! The HTTP target of `idgraph bench --url`: a load generator light enough that the *server's*
//! cost shows. Each client keeps one HTTP/1.1 connection alive and writes its requests by hand (a
//! reused buffer, the `Authorization` header computed once); with `--pipeline P` it writes a
//! chunk of up to P requests in one system call and then reads the P responses in order (HTTP/1.1
//! pipelining, which the server answers in order on the connection). A general-purpose client
//! (`reqwest`) cost the bench about 90 µs of CPU per request, as much as the server it measured.
//!
//! Only the status and the answer's `mpid` are read from a response. The server's CPU time comes
//! from its `/metrics` (`process_cpu_seconds_total`), read before and after a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use idgraph_model::Mpid;
use idgraph_workload::{Outcome, Ready, Target};
use serde::Serialize;

/// How long a client waits for a response before counting the request failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// An Identity API endpoint and its credentials.
#[derive(Debug)]
pub(super) struct Http {
    address: SocketAddr,
    /// The `Host` header's value.
    host: String,
    /// Without a trailing `/`: prefixed to every path.
    base_path: String,
    /// `Basic base64(key:secret)`.
    authorization: String,
}

/// One client's connection and buffers.
#[derive(Debug)]
pub(super) struct Connection {
    stream: Option<BufReader<TcpStream>>,
    /// The requests of a chunk, written with one call.
    out: Vec<u8>,
    /// One request's JSON body.
    body: Vec<u8>,
    /// One response's body.
    response: Vec<u8>,
    line: String,
}

impl Http {
    /// The endpoint at `url` (`http://host:port[/prefix]`).
    pub(super) fn new(url: &str, api_key: &str, api_secret: &str) -> anyhow::Result<Http> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--url {url}: only http:// URLs are supported"))?;
        let (host, base_path) = rest.split_once('/').unwrap_or((rest, ""));
        let address = host
            .to_socket_addrs()
            .with_context(|| format!("--url {url}: cannot resolve {host}"))?
            .next()
            .with_context(|| format!("--url {url}: {host} has no address"))?;
        let credentials = format!("{api_key}:{api_secret}");
        Ok(Http {
            address,
            host: host.to_owned(),
            base_path: format!("/{}", base_path.trim_end_matches('/'))
                .trim_end_matches('/')
                .to_owned(),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
        })
    }

    /// The server's CPU time so far, from its `/metrics` (`None` if it does not say).
    pub(super) fn server_cpu_seconds(&self) -> Option<f64> {
        let mut connection = self.client();
        let stream = connect(&mut connection.stream, self).ok()?;
        let request = format!(
            "GET {}/metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.base_path, self.host
        );
        stream.get_mut().write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let line = text.lines().find(|line| line.starts_with("process_cpu_seconds_total "))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Appends the HTTP request for `ready` to `connection.out`.
    fn write_request(&self, connection: &mut Connection, ready: &Ready<'_>) {
        connection.body.clear();
        let path = match *ready {
            Ready::Modify { request, mpid } => {
                let body = ModifyBody {
                    environment: request.environment.wire_name(),
                    request_id: &request.request_id,
                    identity_changes: request
                        .identity_changes
                        .iter()
                        .map(|change| ChangeBody {
                            identity_type: change.identity_type.wire_name(),
                            old_value: change.old_value.as_deref(),
                            new_value: change.new_value.as_deref(),
                        })
                        .collect(),
                };
                serde_json::to_writer(&mut connection.body, &body).expect("writes to a Vec");
                format!("{}/v1/{mpid}/modify", self.base_path)
            }
            Ready::Identity { request, previous_mpid } => {
                let body = IdentityBody {
                    environment: request.environment.wire_name(),
                    request_id: &request.request_id,
                    previous_mpid: previous_mpid.map(|mpid| mpid.to_string()),
                    known_identities: request
                        .known_identities
                        .iter()
                        .map(|(identity_type, value)| (identity_type.wire_name(), value.as_str()))
                        .collect(),
                };
                serde_json::to_writer(&mut connection.body, &body).expect("writes to a Vec");
                format!("{}/v1/{}", self.base_path, request.op.name())
            }
        };
        let out = &mut connection.out;
        let _ = write!(
            out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.authorization,
            connection.body.len()
        );
        out.extend_from_slice(&connection.body);
    }

    /// Sends a chunk on the client's connection (pipelined) and reads its responses.
    fn exchange(
        &self,
        connection: &mut Connection,
        requests: &[Ready<'_>],
    ) -> std::io::Result<Vec<Outcome>> {
        connection.out.clear();
        for ready in requests {
            self.write_request(connection, ready);
        }
        let Connection { stream, out, response, line, .. } = connection;
        let stream = connect(stream, self)?;
        stream.get_mut().write_all(out)?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for _ in requests {
            let status = read_response(stream, line, response)?;
            outcomes.push(match status {
                200..=299 => Outcome::Answered(mpid_of(response)),
                400..=499 => Outcome::Rejected,
                status => {
                    Outcome::Failed(format!("HTTP {status}: {}", String::from_utf8_lossy(response)))
                }
            });
        }
        Ok(outcomes)
    }
}

/// The open connection in `stream`, opened to `http` if there is none.
fn connect<'s>(
    stream: &'s mut Option<BufReader<TcpStream>>,
    http: &Http,
) -> std::io::Result<&'s mut BufReader<TcpStream>> {
    if stream.is_none() {
        let opened = TcpStream::connect(http.address)?;
        opened.set_nodelay(true)?;
        opened.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
        // A pipelined chunk is written whole before its responses are read: should both sides'
        // buffers fill, the write must fail rather than block forever.
        opened.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
        *stream = Some(BufReader::with_capacity(64 * 1024, opened));
    }
    Ok(stream.as_mut().expect("just opened"))
}

impl Target for Http {
    type Client = Connection;

    fn client(&self) -> Connection {
        Connection {
            stream: None,
            out: Vec::with_capacity(64 * 1024),
            body: Vec::with_capacity(1024),
            response: Vec::with_capacity(1024),
            line: String::with_capacity(256),
        }
    }

    fn send(&self, connection: &mut Connection, requests: &[Ready<'_>]) -> Vec<Outcome> {
        let reused = connection.stream.is_some();
        let mut res = self.exchange(connection, requests);
        if reused && res.is_err() {
            // A kept-alive connection the server has closed meanwhile: send the chunk again on a
            // fresh one. Safe even if some of it was handled: every request carries its
            // `request_id`, so a repeat gets the first answer and records nothing.
            connection.stream = None;
            res = self.exchange(connection, requests);
        }
        match res {
            Ok(outcomes) => outcomes,
            Err(err) => {
                // The connection is in an unknown state (a response may be half read): drop it, so
                // the next chunk opens a fresh one, and count the whole chunk failed.
                connection.stream = None;
                requests.iter().map(|_| Outcome::Failed(err.to_string())).collect()
            }
        }
    }
}

/// Reads one response: its status, and its body into `body`. Needs `Content-Length` (the server
/// always sends it).
fn read_response(
    stream: &mut BufReader<TcpStream>,
    line: &mut String,
    body: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    line.clear();
    if stream.read_line(line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("a response without a status line"))?;
    let mut length = None;
    loop {
        line.clear();
        if stream.read_line(line)? == 0 {
            return Err(invalid("the connection closed inside a response's headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or_else(|| invalid("a response without Content-Length"))?;
    body.clear();
    body.resize(length, 0);
    stream.read_exact(body)?;
    Ok(status)
}

/// The `mpid` of an identity answer (`{"mpid":"123",...}`), found without parsing the whole body.
fn mpid_of(body: &[u8]) -> Option<Mpid> {
    const KEY: &[u8] = br#""mpid":""#;
    let start = body.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let end = start + body[start..].iter().position(|&byte| byte == b'"')?;
    std::str::from_utf8(&body[start..end]).ok()?.parse().ok()
}

/// The body of identify, login, logout and search (`docs/api.md`).
#[derive(Serialize)]
struct IdentityBody<'a> {
    environment: &'static str,
    request_id: &'a str,
    previous_mpid: Option<String>,
    known_identities: std::collections::BTreeMap<&'static str, &'a str>,
}

/// The body of modify.
#[derive(Serialize)]
struct ModifyBody<'a> {
    environment: &'static str,
    request_id: &'a str,
    identity_changes: Vec<ChangeBody<'a>>,
}

#[derive(Serialize)]
struct ChangeBody<'a> {
    identity_type: &'static str,
    old_value: Option<&'a str>,
    new_value: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mpid_is_read_from_an_answer_and_nothing_else() {
        let answer = br#"{"context":null,"is_ephemeral":false,"is_logged_in":true,"matched_identities":{},"mpid":"-8471","request_id":"r"}"#;
        assert_eq!(mpid_of(answer), Mpid::new(-8471));
        assert_eq!(mpid_of(br#"{"Errors":[],"mpid":"x"}"#), None);
        assert_eq!(mpid_of(b"{}"), None);
    }
}

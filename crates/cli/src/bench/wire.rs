//! The bytes `idgraph bench --url` sends and reads: a request rendered straight into a
//! connection's buffer, and a response parsed in place, with no allocation for either.
//!
//! A request's JSON body is written by hand, byte for byte what `serde_json` wrote for the
//! client's former body structs (fields in the same order, `known_identities` sorted by wire name
//! as a `BTreeMap` of names sorted them, strings escaped the same way); the tests below compare
//! the two. A response is read as far as the runner needs: the status line, `Content-Length`, and
//! the answer's `mpid`.

use idgraph_model::{IdentityType, Mpid};
use idgraph_workload::{Outcome, Ready};

/// Longest response head (status line and headers) accepted: the server's are about 150 bytes.
pub(super) const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;

/// Longest response body accepted (an answer is a few hundred bytes; an error body, a few
/// kilobytes): past it the response is counted failed rather than buffered.
pub(super) const RESPONSE_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The parts of a request that never change: the path prefix and the headers.
#[derive(Debug, Clone)]
pub(super) struct RequestHead {
    /// Without a trailing `/`: prefixed to every path.
    base_path: String,
    /// From the space after the path to `Content-Length: `, whose value follows.
    headers: String,
}

impl RequestHead {
    /// The head of every request to `host` under `base_path`, with `authorization` as the
    /// `Authorization` header's value.
    pub(super) fn new(host: &str, base_path: &str, authorization: &str) -> RequestHead {
        RequestHead {
            base_path: base_path.to_owned(),
            headers: format!(
                " HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: "
            ),
        }
    }

    /// Appends the HTTP request for `ready` to `out`; `body` is scratch space for its body.
    pub(super) fn write_request(&self, out: &mut Vec<u8>, body: &mut Vec<u8>, ready: &Ready<'_>) {
        body.clear();
        write_body(body, ready);
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.base_path.as_bytes());
        match *ready {
            Ready::Modify { mpid, .. } => {
                out.extend_from_slice(b"/v1/");
                push_i64(out, mpid.get());
                out.extend_from_slice(b"/modify");
            }
            Ready::Identity { request, .. } => {
                out.extend_from_slice(b"/v1/");
                out.extend_from_slice(request.op.name().as_bytes());
            }
        }
        out.extend_from_slice(self.headers.as_bytes());
        push_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// Appends the JSON body of `ready` (`docs/api.md`).
fn write_body(out: &mut Vec<u8>, ready: &Ready<'_>) {
    let request = ready.request();
    out.extend_from_slice(b"{\"environment\":");
    push_string(out, request.environment.wire_name());
    out.extend_from_slice(b",\"request_id\":");
    push_string(out, &request.request_id);
    match *ready {
        Ready::Modify { .. } => {
            out.extend_from_slice(b",\"identity_changes\":[");
            for (idx, change) in request.identity_changes.iter().enumerate() {
                if idx > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"identity_type\":");
                push_string(out, change.identity_type.wire_name());
                out.extend_from_slice(b",\"old_value\":");
                push_optional_string(out, change.old_value.as_deref());
                out.extend_from_slice(b",\"new_value\":");
                push_optional_string(out, change.new_value.as_deref());
                out.push(b'}');
            }
            out.push(b']');
        }
        Ready::Identity { previous_mpid, .. } => {
            out.extend_from_slice(b",\"previous_mpid\":");
            match previous_mpid {
                Some(mpid) => {
                    out.push(b'"');
                    push_i64(out, mpid.get());
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"known_identities\":{");
            // By wire name, not by type: the order the former client's map of names gave. A
            // request holds at most one value per type.
            let mut by_name = [("", ""); IdentityType::ALL.len()];
            let mut n_identities = 0;
            for (identity_type, value) in request.known_identities.iter().take(by_name.len()) {
                by_name[n_identities] = (identity_type.wire_name(), value.as_str());
                n_identities += 1;
            }
            let by_name = &mut by_name[..n_identities];
            by_name.sort_unstable_by_key(|(name, _)| *name);
            for (idx, (name, value)) in by_name.iter().enumerate() {
                if idx > 0 {
                    out.push(b',');
                }
                push_string(out, name);
                out.push(b':');
                push_string(out, value);
            }
            out.push(b'}');
        }
    }
    out.push(b'}');
}

fn push_optional_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => push_string(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it: `"`, `\` and the control
/// characters, the common ones by their short forms.
fn push_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (idx, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..idx]);
        out.extend_from_slice(escaped);
        start = idx + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut idx = digits.len();
    loop {
        idx -= 1;
        digits[idx] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[idx..]);
}

fn push_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// A response found whole at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Response {
    /// The status code.
    pub(super) status: u16,
    /// Where the body starts, from the start of the response.
    pub(super) body_start: usize,
    /// The whole response's length, head and body.
    pub(super) len: usize,
}

/// The response at the start of `buf`: `Ok(None)` while it is incomplete, an error if it cannot be
/// one (no status, no `Content-Length`, over the limits). Lines may end in `\r\n` or `\n`.
pub(super) fn parse_response(buf: &[u8]) -> Result<Option<Response>, &'static str> {
    let mut lines = Lines { buf, pos: 0 };
    let Some(status_line) = lines.next() else { return incomplete(buf) };
    let status = status_line
        .split(|byte| byte.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .nth(1)
        .and_then(|code| u16::try_from(parse_decimal(code)?).ok())
        .ok_or("a response without a status line")?;
    let mut content_length = None;
    loop {
        let Some(line) = lines.next() else { return incomplete(buf) };
        let header = line.trim_ascii_end();
        if header.is_empty() {
            break;
        }
        if let Some(colon) = header.iter().position(|&byte| byte == b':')
            && header[..colon].eq_ignore_ascii_case(b"content-length")
        {
            content_length = parse_decimal(header[colon + 1..].trim_ascii());
        }
    }
    let body_len = content_length.ok_or("a response without Content-Length")?;
    if body_len > RESPONSE_BODY_BYTES_MAX {
        return Err("a response body over 16 MiB");
    }
    let len = lines.pos + body_len;
    Ok((buf.len() >= len).then_some(Response { status, body_start: lines.pos, len }))
}

/// The number `digits` spells in decimal (`None`: not only digits, or too large).
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        let digit = usize::from(digit.checked_sub(b'0').filter(|digit| *digit < 10)?);
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// Not yet a whole head: more bytes may complete it, unless there are too many already.
fn incomplete(buf: &[u8]) -> Result<Option<Response>, &'static str> {
    if buf.len() > RESPONSE_HEAD_BYTES_MAX {
        return Err("a response head over 64 KiB");
    }
    Ok(None)
}

/// The `\n`-terminated lines of a buffer, without their `\n`; an unterminated tail is not a line.
struct Lines<'b> {
    buf: &'b [u8],
    /// Where the next line starts.
    pos: usize,
}

impl<'b> Iterator for Lines<'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        let rest = &self.buf[self.pos..];
        let end = rest.iter().position(|&byte| byte == b'\n')?;
        self.pos += end + 1;
        Some(&rest[..end])
    }
}

/// What a response means to the runner: an answer (with the MPID an identity answer carries), a
/// rejection (4xx), or a failure with its status and body.
pub(super) fn outcome_of(status: u16, body: &[u8]) -> Outcome {
    match status {
        200..=299 => Outcome::Answered(mpid_of(body)),
        400..=499 => Outcome::Rejected,
        status => Outcome::Failed(format!("HTTP {status}: {}", String::from_utf8_lossy(body))),
    }
}

/// The `mpid` of an identity answer (`{"mpid":"123",...}`), found without parsing the whole body.
pub(super) fn mpid_of(body: &[u8]) -> Option<Mpid> {
    const KEY: &[u8; 8] = br#""mpid":""#;
    // Compared as one integer at each quote, not as a slice at every position.
    let key = u64::from_ne_bytes(*KEY);
    let last = body.len().checked_sub(KEY.len())?;
    let start = (0..=last).filter(|&idx| body[idx] == b'"').find(|&idx| {
        let window: [u8; 8] = body[idx..idx + KEY.len()].try_into().expect("8 bytes");
        u64::from_ne_bytes(window) == key
    })? + KEY.len();
    let end = start + body[start..].iter().position(|&byte| byte == b'"')?;
    std::str::from_utf8(&body[start..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use idgraph_model::{Environment, IdentityChange};
    use idgraph_workload::{Generator, Op, WorkloadRequest, WorkloadSpec};
    use serde::Serialize;

    use super::*;

    /// The body of identify, login, logout and search, as the former client serialised it.
    #[derive(Serialize)]
    struct IdentityBody<'a> {
        environment: &'static str,
        request_id: &'a str,
        previous_mpid: Option<String>,
        known_identities: BTreeMap<&'static str, &'a str>,
    }

    /// The body of modify, as the former client serialised it.
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

    /// The former client's request, byte for byte.
    fn former_request(ready: &Ready<'_>) -> Vec<u8> {
        let (path, body) = match *ready {
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
                (format!("/base/v1/{mpid}/modify"), serde_json::to_vec(&body).unwrap())
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
                (format!("/base/v1/{}", request.op.name()), serde_json::to_vec(&body).unwrap())
            }
        };
        let mut out = format!(
            "POST {path} HTTP/1.1\r\nHost: h:1\r\nAuthorization: Basic xyz\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    #[track_caller]
    fn check(ready: Ready<'_>) {
        let head = RequestHead::new("h:1", "/base", "Basic xyz");
        let (mut out, mut body) = (Vec::new(), Vec::new());
        head.write_request(&mut out, &mut body, &ready);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(former_request(&ready)).unwrap()
        );
    }

    #[test]
    fn requests_are_what_the_former_client_sent() {
        let spec = WorkloadSpec { seed: 9, requests: 2_000, users: 300, ..WorkloadSpec::default() };
        for (idx, request) in Generator::new(&spec).unwrap().enumerate() {
            let mpid = Mpid::new(-(idx as i64) * 7_919 - 1).unwrap();
            match request.op {
                Op::Modify => check(Ready::Modify { request: &request, mpid }),
                _ => {
                    check(Ready::Identity { request: &request, previous_mpid: None });
                    check(Ready::Identity { request: &request, previous_mpid: Some(mpid) });
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let odd = "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é😀";
        let known_identities = IdentityType::ALL
            .iter()
            .enumerate()
            .map(|(idx, identity_type)| (*identity_type, format!("{odd}{idx}")))
            .collect();
        let request = WorkloadRequest {
            op: Op::Login,
            environment: Environment::Development,
            known_identities,
            previous_mpid: None,
            mpid: None,
            identity_changes: vec![
                IdentityChange {
                    identity_type: IdentityType::Email,
                    old_value: None,
                    new_value: Some(odd.into()),
                },
                IdentityChange {
                    identity_type: IdentityType::CustomerId,
                    old_value: Some(odd.into()),
                    new_value: None,
                },
            ],
            request_id: odd.into(),
        };
        check(Ready::Identity { request: &request, previous_mpid: Mpid::new(i64::MIN) });
        check(Ready::Modify { request: &request, mpid: Mpid::new(i64::MAX).unwrap() });
    }

    #[test]
    fn a_response_is_parsed_once_whole() {
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n{\"mpid\":\"5\"}HTTP/1.1";
        let whole = 12 + response.iter().position(|&b| b == b'{').unwrap();
        for end in 0..whole {
            assert_eq!(parse_response(&response[..end]), Ok(None), "{end} bytes");
        }
        let parsed = parse_response(response).unwrap().unwrap();
        assert_eq!(parsed, Response { status: 200, body_start: whole - 12, len: whole });
        let body = &response[parsed.body_start..parsed.len];
        assert_eq!(outcome_of(parsed.status, body), Outcome::Answered(Mpid::new(5)));
        assert_eq!(mpid_of(br#"{"mpid":"7"}"#), Mpid::new(7));
        let bare = b"HTTP/1.1 404 Not Found\ncontent-length:0\n\n";
        assert_eq!(parse_response(bare).unwrap().unwrap().len, bare.len());
        assert_eq!(outcome_of(404, b""), Outcome::Rejected);
        assert_eq!(outcome_of(503, b"busy"), Outcome::Failed("HTTP 503: busy".into()));
    }

    #[test]
    fn a_response_that_cannot_be_read_is_an_error() {
        let no_length = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_response(no_length), Err("a response without Content-Length"));
        assert_eq!(parse_response(b"garbage\r\n"), Err("a response without a status line"));
        let huge = b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n";
        assert_eq!(parse_response(huge), Err("a response body over 16 MiB"));
        let endless = vec![b'x'; RESPONSE_HEAD_BYTES_MAX + 1];
        assert_eq!(parse_response(&endless), Err("a response head over 64 KiB"));
    }

    #[test]
    fn the_mpid_is_read_from_an_answer_and_nothing_else() {
        let answer = br#"{"context":null,"is_ephemeral":false,"is_logged_in":true,"matched_identities":{},"mpid":"-8471","request_id":"r"}"#;
        assert_eq!(mpid_of(answer), Mpid::new(-8471));
        assert_eq!(mpid_of(br#"{"Errors":[],"mpid":"x"}"#), None);
        assert_eq!(mpid_of(b"{}"), None);
    }
}

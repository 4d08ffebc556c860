//! Fuzzing the HTTP request parsing (issue #14): the router over an in-memory engine (as in
//! `http_tests.rs`), driven with generated requests: any method; paths from the routes with odd
//! segments (numbers past 64 bits, percent-encoded garbage and non-UTF-8), mutated or random;
//! headers `authorization`, `x-mp-key`, `x-mp-signature`, `date`, `content-type`,
//! `content-encoding` and a few CORS ones, with valid, wrong, random and non-UTF-8 values (and
//! sometimes a valid signature); bodies that are valid identify / modify / alias / admin / audit
//! JSON, mutations of it, generated JSON, random bytes, and gzip of any of these (or a gzip bomb,
//! or garbage that says it is gzip).
//!
//! Every answer must come within [`REQUEST_TIME_MAX`], with a status below 500 (or 503), and a
//! JSON body: an IDSync error body for a 4xx; no body only for a 2xx and `HEAD`; Prometheus text
//! for `/metrics` (see [`check_response`]). A panic in a handler fails the test (proptest shrinks
//! the request).
//!
//! `IDGRAPH_FUZZ_CASES=N` runs N requests instead of the quick default (as `tests/fuzz.rs`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri};
use base64::Engine as _;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::ServerConfig;

/// Generated requests per run (default: a quick run).
const CASES_VAR: &str = "IDGRAPH_FUZZ_CASES";
const DEFAULT_CASES: u32 = 8_000;
/// The longest one request may take (debug build, loaded machine); handlers are linear in the
/// request.
const REQUEST_TIME_MAX: Duration = Duration::from_secs(2);
/// Small, so that a gzip bomb reaches it with a few hundred bytes.
const BODY_BYTES_MAX: usize = 4096;

/// Three workspaces: key-only allowed, signature or Basic required, and rate-limited.
fn config() -> ServerConfig {
    let text = format!(
        r#"
body_bytes_max = {BODY_BYTES_MAX}

[[workspace]]
name = "open"
api_key = "open-key"
api_secret = "open-secret"
allow_key_only = true

[[workspace]]
name = "signed"
api_key = "signed-key"
api_secret = "signed-secret"
strategy = "profile_link"
identity_priority = ["customerid", "email", "ios_idfv"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid"]
auto_alias = true

[[workspace]]
name = "tiny"
api_key = "tiny-key"
api_secret = "tiny-secret"
allow_key_only = true
rate_limit_per_second = 2
"#
    );
    ServerConfig::parse(&text).unwrap()
}

fn app() -> Router {
    crate::http_tests::app_with(ServerConfig { data_dir: PathBuf::new(), ..config() })
}

const CREDENTIALS: &[(&str, &str)] =
    &[("open-key", "open-secret"), ("signed-key", "signed-secret"), ("tiny-key", "tiny-secret")];

// Paths.

const ROUTES: &[&str] = &[
    "/v1/identify",
    "/v1/search",
    "/v1/login",
    "/v1/logout",
    "/v1/{mpid}/modify",
    "/v1/identity/{key}/alias",
    "/v1/identity/{key}/Alias",
    "/v1/alias",
    "/v1/admin/{mpid}/{action}",
    "/v1/events?after={n}&limit={n}",
    "/v1/events?{garbage}",
    "/v1/audit/profiles/{mpid}?seq={n}",
    "/v1/audit/profiles/{mpid}?time={time}",
    "/v1/audit/profiles/{mpid}",
    "/v1/audit/search?seq={n}",
    "/v1/audit/search?time={time}&seq={n}",
    "/v1/audit/what-if",
    "/v1/audit/profiles/{mpid}/history",
    "/v1/audit/identities/{type}/{value}/history",
    "/v1/audit/entries/{n}/explain",
    "/v1/audit/explain",
    "/healthz",
    "/metrics",
    "/openapi.json",
];

const MPIDS: &[&str] = &[
    "1",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "1e3",
    "abc",
    "",
    "%20 1",
    "%FF",
    "%00",
    "%E2%82",
];
const NUMBERS: &[&str] =
    &["0", "1", "3", "18446744073709551615", "18446744073709551616", "-1", "x", "", "%FF"];
const TIMES: &[&str] = &[
    "2026-05-01T12:00:00Z",
    "1970-01-01T00:00:00%2B14:00",
    "9999-12-31T23:59:59.999999999Z",
    "0000-01-01T00:00:00Z",
    "2026-13-45T25:61:61Z",
    "%FF",
    "",
];
const KEYS: &[&str] = &["open-key", "signed-key", "tiny-key", "nokey", "%FF%FE", "%2F", ""];
const TYPES: &[&str] = &["email", "customerid", "ios_idfv", "nope", "%FF", "Email"];
const VALUES: &[&str] = &["a%40x", "c1", "%FF%FE", "%00", "%25", "x%2Fy"];
const ACTIONS: &[&str] = &["detach", "split", "merge", "%FF"];
const GARBAGE: &[&str] =
    &["after", "after=1&after=2", "limit=99999999999999999999", "=&=", "%FF=%FE"];

/// A route with its placeholders filled in; an MPID from `seen` (answered earlier) when `seen_at`
/// picks one.
#[derive(Debug, Clone)]
struct PathChoice {
    route: Index,
    picks: [Index; 4],
    seen_mpid: Option<Index>,
}

impl PathChoice {
    fn render(&self, seen: &[String]) -> String {
        let mut path = ROUTES[self.route.index(ROUTES.len())].to_owned();
        let pick = |idx: usize, list: &[&str]| list[self.picks[idx].index(list.len())].to_owned();
        let mpid = match (&self.seen_mpid, seen.is_empty()) {
            (Some(at), false) => seen[at.index(seen.len())].clone(),
            _ => pick(0, MPIDS),
        };
        for (placeholder, value) in [
            ("{mpid}", mpid),
            ("{key}", pick(1, KEYS)),
            ("{action}", pick(2, ACTIONS)),
            ("{type}", pick(2, TYPES)),
            ("{value}", pick(3, VALUES)),
            ("{time}", pick(3, TIMES)),
            ("{garbage}", pick(1, GARBAGE)),
        ] {
            path = path.replace(placeholder, &value);
        }
        while path.contains("{n}") {
            path = path.replacen("{n}", &pick(1, NUMBERS), 1);
        }
        path
    }
}

#[derive(Debug, Clone)]
enum PathInput {
    Route(PathChoice),
    /// A route, then mutated bytes.
    Mutated(PathChoice, Vec<Mutation>),
    /// Random printable ASCII after a slash.
    Random(String),
}

fn path_input() -> impl Strategy<Value = PathInput> {
    let choice = (any::<Index>(), any::<[Index; 4]>(), prop::option::of(any::<Index>()))
        .prop_map(|(route, picks, seen_mpid)| PathChoice { route, picks, seen_mpid });
    prop_oneof![
        6 => choice.clone().prop_map(PathInput::Route),
        2 => (choice, vec(mutation(), 1..4)).prop_map(|(c, m)| PathInput::Mutated(c, m)),
        1 => "/[ -~]{0,40}".prop_map(PathInput::Random),
    ]
}

// Bodies.

const JSON_SEEDS: &[&str] = &[
    r#"{"environment":"development","request_id":"r1","known_identities":{"email":"a@x","customerid":"c1"}}"#,
    r#"{"environment":"production","known_identities":{"ios_idfv":"ABC","email":null},"previous_mpid":"12"}"#,
    r#"{"environment":"development","known_identities":{"email":"a@x"},"previous_mpid":-9223372036854775808}"#,
    r#"{"environment":"development","known_identities":{"customerid":"c1"},"previous_mpid":1e400}"#,
    r#"{"environment":"production","request_id":"m1","identity_changes":[{"identity_type":"email","old_value":"a@x","new_value":"b@x"},{"identity_type":"customerid","new_value":"c2"}]}"#,
    r#"{"environment":"development","request_id":"al","data":{"source_mpid":"1","destination_mpid":2,"start_unixtime_ms":-9223372036854775808,"end_unixtime_ms":9223372036854775807}}"#,
    r#"{"environment":"development","identities":{"email":"a@x"},"actor":"ops","reason":"test"}"#,
    r#"{"strategy":"profile_link","identity_priority":["customerid","email"],"login_ids":["customerid"],"unique_ids":[]}"#,
    r#"{"op":"login","environment":"production","known_identities":{"customerid":"c1"}}"#,
    r#"{"environment":"development","known_identities":{"email":"\ud800\udc00\u0000"}}"#,
    "[]",
    "null",
];

/// Names the bodies use, for generated JSON.
const JSON_KEYS: &[&str] = &[
    "environment",
    "request_id",
    "known_identities",
    "previous_mpid",
    "email",
    "customerid",
    "identity_changes",
    "identity_type",
    "old_value",
    "new_value",
    "data",
    "source_mpid",
    "destination_mpid",
    "start_unixtime_ms",
    "end_unixtime_ms",
    "identities",
    "actor",
    "reason",
    "strategy",
    "op",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        select(&["development", "production", "email", "customerid", "1", "0", ""][..])
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((select(JSON_KEYS), inner), 0..6).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

#[derive(Debug, Clone)]
enum BodyInput {
    Empty,
    Seed(Index),
    Mutated(Index, Vec<Mutation>),
    Generated(Value),
    /// An object of the bodies' fields, with generated values.
    Fields(Vec<(Index, Value)>),
    Random(Vec<u8>),
    /// Nesting past serde_json's recursion limit.
    Deep(u16),
}

fn body_input() -> impl Strategy<Value = BodyInput> {
    prop_oneof![
        1 => Just(BodyInput::Empty),
        6 => any::<Index>().prop_map(BodyInput::Seed),
        4 => (any::<Index>(), vec(mutation(), 1..5)).prop_map(|(i, m)| BodyInput::Mutated(i, m)),
        1 => json().prop_map(BodyInput::Generated),
        2 => vec((any::<Index>(), json()), 0..6).prop_map(BodyInput::Fields),
        1 => vec(any::<u8>(), 0..256).prop_map(BodyInput::Random),
        1 => (100..2_000u16).prop_map(BodyInput::Deep),
    ]
}

impl BodyInput {
    fn render(&self) -> Vec<u8> {
        let seed = |at: &Index| JSON_SEEDS[at.index(JSON_SEEDS.len())].as_bytes().to_vec();
        match self {
            BodyInput::Empty => Vec::new(),
            BodyInput::Seed(at) => seed(at),
            BodyInput::Mutated(at, mutations) => {
                let mut body = seed(at);
                for mutation in mutations {
                    mutation.apply(&mut body);
                }
                body
            }
            BodyInput::Generated(value) => value.to_string().into_bytes(),
            BodyInput::Fields(fields) => {
                let object: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|(key, value)| {
                        (JSON_KEYS[key.index(JSON_KEYS.len())].into(), value.clone())
                    })
                    .collect();
                Value::Object(object).to_string().into_bytes()
            }
            BodyInput::Random(bytes) => bytes.clone(),
            BodyInput::Deep(depth) => {
                let depth = usize::from(*depth);
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            }
        }
    }
}

/// How the body is sent.
#[derive(Debug, Clone)]
enum Encoding {
    Plain,
    /// Valid gzip (stored deflate blocks), with `content-encoding: gzip`.
    Gzip,
    /// Valid gzip of far more zeros than the body limit, whatever the body.
    GzipBomb,
    /// The gzip, cut short.
    GzipTruncated(Index),
    /// The gzip magic, then the body as it is.
    GzipMagicOnly,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        12 => Just(Encoding::Plain),
        3 => Just(Encoding::Gzip),
        1 => Just(Encoding::GzipBomb),
        1 => any::<Index>().prop_map(Encoding::GzipTruncated),
        1 => Just(Encoding::GzipMagicOnly),
    ]
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

fn gzip_trailer(gzip: &mut Vec<u8>, data: &[u8]) {
    gzip.extend_from_slice(&crc32(data).to_le_bytes());
    gzip.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// `data` as gzip with stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut gzip = GZIP_HEADER.to_vec();
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        gzip.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        gzip.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        gzip.extend_from_slice(&len.to_le_bytes());
        gzip.extend_from_slice(&(!len).to_le_bytes());
        gzip.extend_from_slice(chunk);
    }
    gzip_trailer(&mut gzip, data);
    gzip
}

/// Gzip of `n_runs * 258 + 1` zero bytes: one fixed-Huffman deflate block holding a literal 0 and
/// then `n_runs` copies of 258 bytes at distance 1 (13 bits each).
fn gzip_bomb(n_runs: usize) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    // Huffman codes are sent most significant bit first; everything else least significant first.
    let code = |bits: &mut Vec<bool>, value: u32, len: u32| {
        bits.extend((0..len).rev().map(|at| value >> at & 1 == 1));
    };
    bits.extend([true, true, false]); // BFINAL = 1, BTYPE = 01 (fixed Huffman), LSB first
    code(&mut bits, 0x30, 8); // literal 0
    for _ in 0..n_runs {
        code(&mut bits, 0b1100_0101, 8); // length code 285: 258 bytes
        code(&mut bits, 0, 5); // distance code 0: distance 1
    }
    code(&mut bits, 0, 7); // end of block (256)
    let mut gzip = GZIP_HEADER.to_vec();
    for byte_bits in bits.chunks(8) {
        gzip.push(byte_bits.iter().enumerate().map(|(at, bit)| u8::from(*bit) << at).sum());
    }
    gzip_trailer(&mut gzip, &vec![0; n_runs * 258 + 1]);
    gzip
}

impl Encoding {
    /// The bytes sent and whether to say `content-encoding: gzip`.
    fn encode(&self, body: &[u8]) -> (Vec<u8>, bool) {
        match self {
            Encoding::Plain => (body.to_vec(), false),
            Encoding::Gzip => (gzip_stored(body), true),
            Encoding::GzipBomb => (gzip_bomb(4 * BODY_BYTES_MAX / 258), true),
            Encoding::GzipTruncated(at) => {
                let mut gzip = gzip_stored(body);
                gzip.truncate(at.index(gzip.len()));
                (gzip, true)
            }
            Encoding::GzipMagicOnly => {
                let mut gzip = GZIP_HEADER.to_vec();
                gzip.extend_from_slice(body);
                (gzip, true)
            }
        }
    }
}

// Headers.

const HEADER_NAMES: &[&str] = &[
    "authorization",
    "x-mp-key",
    "x-mp-signature",
    "date",
    "content-type",
    "content-encoding",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
];

#[derive(Debug, Clone)]
enum HeaderInput {
    /// `Basic base64(key:secret)` of a known pair, or of the wrong secret.
    Basic {
        pair: Index,
        wrong_secret: bool,
    },
    /// `Basic ` and base64 of these bytes (a missing colon, non-UTF-8).
    BasicOf(Vec<u8>),
    Text(&'static str),
    Bytes(Vec<u8>),
}

fn header_input() -> impl Strategy<Value = (Index, HeaderInput)> {
    let texts = select(
        &[
            "open-key",
            "signed-key",
            "tiny-key",
            "nokey",
            "gzip",
            "GZIP",
            "gzip, gzip",
            "deflate",
            "br",
            "identity",
            "application/json",
            "text/plain; charset=utf-8",
            "Basic",
            "Basic ",
            "Basic !!!",
            "Bearer x",
            "Basic b3Blbi1rZXk6b3Blbi1zZWNyZXQ=extra",
            "Mon, 01 Jan 2024 00:00:00 GMT",
            "20170712T224127Z",
            "Fri, 31 Dec 9999 23:59:59 +9999",
            "00",
            "zz",
            "https://example.com",
            "POST",
        ][..],
    );
    let value = prop_oneof![
        2 => (any::<Index>(), any::<bool>())
            .prop_map(|(pair, wrong_secret)| HeaderInput::Basic { pair, wrong_secret }),
        1 => vec(any::<u8>(), 0..24).prop_map(HeaderInput::BasicOf),
        4 => texts.prop_map(HeaderInput::Text),
        2 => vec(any::<u8>(), 0..40).prop_map(HeaderInput::Bytes),
    ];
    (any::<Index>(), value)
}

impl HeaderInput {
    fn render(&self) -> Vec<u8> {
        let basic = |bytes: &[u8]| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(bytes))
                .into_bytes()
        };
        match self {
            HeaderInput::Basic { pair, wrong_secret } => {
                let (key, secret) = CREDENTIALS[pair.index(CREDENTIALS.len())];
                let secret = if *wrong_secret { "wrong" } else { secret };
                basic(format!("{key}:{secret}").as_bytes())
            }
            HeaderInput::BasicOf(bytes) => basic(bytes),
            HeaderInput::Text(text) => text.as_bytes().to_vec(),
            HeaderInput::Bytes(bytes) => bytes.clone(),
        }
    }
}

// Mutations (of paths and bodies).

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        byte: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Inserts a percent-encoded byte.
    InsertPercent {
        at: Index,
        byte: u8,
    },
    Truncate {
        at: Index,
    },
    Delete {
        at: Index,
        n: u8,
    },
    Duplicate {
        at: Index,
        n: u8,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        (any::<Index>(), vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::InsertPercent { at, byte }),
        any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<Index>(), 1..16u8).prop_map(|(at, n)| Mutation::Delete { at, n }),
        (any::<Index>(), 1..16u8).prop_map(|(at, n)| Mutation::Duplicate { at, n }),
    ]
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let pos = |at: &Index, len: usize| if len == 0 { 0 } else { at.index(len) };
        match self {
            Mutation::FlipBit { at, bit } => {
                if len > 0 {
                    bytes[pos(at, len)] ^= 1 << bit;
                }
            }
            Mutation::SetByte { at, byte } => {
                if len > 0 {
                    bytes[pos(at, len)] = *byte;
                }
            }
            Mutation::Insert { at, bytes: inserted } => {
                let start = pos(at, len + 1);
                bytes.splice(start..start, inserted.iter().copied());
            }
            Mutation::InsertPercent { at, byte } => {
                let start = pos(at, len + 1);
                bytes.splice(start..start, format!("%{byte:02X}").into_bytes());
            }
            Mutation::Truncate { at } => bytes.truncate(pos(at, len)),
            Mutation::Delete { at, n } => {
                let start = pos(at, len);
                bytes.drain(start..(start + usize::from(*n)).min(len));
            }
            Mutation::Duplicate { at, n } => {
                let start = pos(at, len);
                let chunk = bytes[start..(start + usize::from(*n)).min(len)].to_vec();
                bytes.splice(start..start, chunk);
            }
        }
    }
}

// Requests.

#[derive(Debug, Clone)]
struct RequestInput {
    method: &'static str,
    path: PathInput,
    headers: Vec<(Index, HeaderInput)>,
    body: BodyInput,
    encoding: Encoding,
    auth: Auth,
}

/// Credentials of a configured workspace, set before the generated headers (which may add more).
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(Index),
    Key(Index),
    /// `x-mp-key`, `date` and a valid `x-mp-signature` of the request.
    Signed(Index),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        1 => Just(Auth::None),
        3 => any::<Index>().prop_map(Auth::Basic),
        2 => any::<Index>().prop_map(Auth::Key),
        2 => any::<Index>().prop_map(Auth::Signed),
    ]
}

fn request_input() -> impl Strategy<Value = RequestInput> {
    let method = prop_oneof![
        6 => Just("POST"),
        2 => Just("GET"),
        2 => select(&["OPTIONS", "HEAD", "PUT", "DELETE", "PATCH", "TRACE", "X-FUZZ"][..]),
    ];
    (method, path_input(), vec(header_input(), 0..4), body_input(), encoding(), auth()).prop_map(
        |(method, path, headers, body, encoding, auth)| RequestInput {
            method,
            path,
            headers,
            body,
            encoding,
            auth,
        },
    )
}

/// The request, or `None` if `http` refuses its URI or a header value (it never reaches a server).
fn build(input: &RequestInput, seen: &[String]) -> Option<(Request<Body>, String)> {
    let path = match &input.path {
        PathInput::Route(choice) => choice.render(seen).into_bytes(),
        PathInput::Mutated(choice, mutations) => {
            let mut path = choice.render(seen).into_bytes();
            for mutation in mutations {
                mutation.apply(&mut path);
            }
            path
        }
        PathInput::Random(path) => path.clone().into_bytes(),
    };
    let uri = Uri::try_from(path).ok()?;
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str().to_owned())?;
    let body = input.body.render();
    let (sent, gzipped) = input.encoding.encode(&body);
    let mut request = Request::builder()
        .method(Method::from_bytes(input.method.as_bytes()).ok()?)
        .uri(uri)
        .body(Body::from(sent))
        .ok()?;
    let headers = request.headers_mut();
    if gzipped {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    let pair = |at: &Index| CREDENTIALS[at.index(CREDENTIALS.len())];
    match &input.auth {
        Auth::None => {}
        Auth::Basic(at) => {
            let (key, secret) = pair(at);
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"));
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Basic {credentials}")).ok()?,
            );
        }
        Auth::Key(at) => {
            headers.insert("x-mp-key", HeaderValue::from_static(pair(at).0));
        }
        Auth::Signed(at) => {
            let (key, secret) = pair(at);
            let date = chrono::Utc::now().to_rfc2822();
            let signature = crate::auth::sign(secret, input.method, &date, &path_and_query, &body);
            headers.insert("x-mp-key", HeaderValue::from_static(key));
            headers.insert("date", HeaderValue::from_str(&date).ok()?);
            headers.insert("x-mp-signature", HeaderValue::from_str(&signature).ok()?);
        }
    }
    for (name, value) in &input.headers {
        let name = HeaderName::from_static(HEADER_NAMES[name.index(HEADER_NAMES.len())]);
        headers.append(name, HeaderValue::from_bytes(&value.render()).ok()?);
    }
    Some((request, path_and_query))
}

/// What a response must be: no 5xx but 503, a JSON body, an IDSync error body for a 4xx.
fn check_response(
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<(), String> {
    let what = || format!("{method} {path} answered {status} {:?}", String::from_utf8_lossy(body));
    if status >= 500 && status != 503 {
        return Err(what());
    }
    if body.is_empty() {
        // Alias (202), CORS preflight (200) and HEAD have no body.
        let empty_allowed = status < 300 || method == "HEAD";
        return if empty_allowed { Ok(()) } else { Err(what()) };
    }
    if path.starts_with("/metrics") && status == 200 {
        return if content_type.starts_with("text/plain") { Ok(()) } else { Err(what()) };
    }
    let json: Value = serde_json::from_slice(body).map_err(|_| what())?;
    if status >= 400 && json.get("ErrorCode").and_then(Value::as_str).is_none() {
        return Err(what());
    }
    Ok(())
}

#[test]
fn http_requests() {
    let cases = std::env::var(CASES_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = app();
    // MPIDs answered so far, for the paths and bodies that name one.
    let seen: Mutex<Vec<String>> = Mutex::default();
    // Requests sent, by status.
    let statuses: Mutex<std::collections::BTreeMap<u16, u32>> = Mutex::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    });
    let started = Instant::now();
    let res = runner.run(&request_input(), |input| {
        let Some((request, path)) = build(&input, &seen.lock().unwrap()) else { return Ok(()) };
        let mut app = app.clone();
        let sent_at = Instant::now();
        let (status, content_type, body) = runtime.block_on(async move {
            let response = tower_service::Service::call(&mut app, request).await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
            (status, content_type, body)
        });
        let elapsed = sent_at.elapsed();
        *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
        if elapsed > REQUEST_TIME_MAX {
            return Err(TestCaseError::fail(format!("{path}: took {elapsed:?}")));
        }
        check_response(input.method, &path, status, &content_type, &body)
            .map_err(TestCaseError::fail)?;
        if let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(&body)
            && let Some(Value::String(mpid)) = json.get("mpid")
        {
            let mut seen = seen.lock().unwrap();
            if seen.len() < 64 {
                seen.push(mpid.clone());
            }
        }
        Ok(())
    });
    if let Err(err) = res {
        panic!("{err}");
    }
    eprintln!(
        "http_requests: {cases} cases, requests sent by status {:?}, {} MPIDs seen, {:.1?}",
        statuses.lock().unwrap(),
        seen.lock().unwrap().len(),
        started.elapsed()
    );
}

#[test]
fn the_gzip_helpers_write_what_a_decoder_reads() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    let bomb = gzip_bomb(3);
    assert_eq!(bomb.len(), GZIP_HEADER.len() + 8 + 8, "3 + 8 + 3 * 13 + 7 = 57 bits");
    assert_eq!(&gzip_stored(b"")[GZIP_HEADER.len()..GZIP_HEADER.len() + 5], &[1, 0, 0, 0xff, 0xff]);
}

//! End to end: the real `idgraph serve` binary on 127.0.0.1:0, driven over HTTP with each auth
//! mode, restarted on the same data folder, fed malformed requests, and stopped with SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, basic, client};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[workspace]]
name = "shop"
api_key = "shop-key"
api_secret = "shop-secret"
strategy = "profile_conversion"
identity_priority = ["customerid", "email", "ios_idfv", "roku_aid"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]
immutable_ids = []

[[workspace]]
name = "web"
api_key = "web-key"
api_secret = "web-secret"
strategy = "profile_isolation"
identity_priority = ["customerid", "email", "device_application_stamp"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]
allow_key_only = true

[[workspace]]
name = "tiny"
api_key = "tiny-key"
api_secret = "tiny-secret"
rate_limit_per_second = 3
"#;

/// POST with HTTP Basic as the `shop` workspace.
fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(server.url(path))
        .header("authorization", basic("shop-key", "shop-secret"))
        .json(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn identify(identities: Value, previous: Option<&str>) -> Value {
    json!({"environment": "production", "known_identities": identities, "previous_mpid": previous,
           "client_sdk": {"platform": "ios"}, "request_timestamp_ms": 1, "context": null})
}

#[test]
fn the_signup_flow_over_http_survives_a_restart_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let (status, first) =
        post(&server, "/v1/identify", &identify(json!({"ios_idfv": "9876"}), None));
    assert_eq!(status, 200, "{first}");
    let m1 = first["mpid"].as_str().expect("mpid is a JSON string").to_owned();
    assert_eq!(first["is_logged_in"], false);
    assert_eq!(first["is_ephemeral"], false);
    assert!(first["context"].is_null());

    let login = identify(
        json!({"customerid": "ABC123", "email": "ed.hyde@example.com", "ios_idfv": "9876"}),
        Some(&m1),
    );
    let (status, signup) = post(&server, "/v1/login", &login);
    assert_eq!(status, 200);
    assert_eq!(signup["mpid"], m1.as_str(), "profile conversion keeps the MPID");
    assert_eq!(signup["is_logged_in"], true);
    assert_eq!(signup["matched_identities"], json!({"ios_idfv": "9876"}));

    let (status, logout) =
        post(&server, "/v1/logout", &identify(json!({"ios_idfv": "9876"}), Some(&m1)));
    assert_eq!(status, 200);
    let m2 = logout["mpid"].as_str().unwrap().to_owned();
    assert_ne!(m2, m1);

    let (status, modified) = post(
        &server,
        &format!("/v1/{m1}/modify"),
        &json!({"environment": "production", "identity_changes": [
        {"identity_type": "email", "old_value": "ed.hyde@example.com", "new_value": "h.jekyll@example.com"}]}),
    );
    assert_eq!(status, 200, "{modified}");
    assert_eq!(modified["change_results"], json!([]));

    let (status, found) =
        post(&server, "/v1/search", &identify(json!({"email": "h.jekyll@example.com"}), None));
    assert_eq!((status, found["mpid"].as_str()), (200, Some(m1.as_str())));
    let (status, missing) =
        post(&server, "/v1/search", &identify(json!({"email": "nobody@example.com"}), None));
    assert_eq!(status, 404);
    assert_eq!(missing["ErrorCode"], "NOT_FOUND_ERROR");

    // The same requests after a graceful stop and a restart give the same answers.
    assert!(server.stop().success(), "SIGTERM exits 0");
    let server = Server::start(dir.path(), CONFIG);
    let (_, again) = post(
        &server,
        "/v1/login",
        &identify(json!({"customerid": "ABC123", "ios_idfv": "9876"}), None),
    );
    assert_eq!(again["mpid"], m1.as_str());
    let (_, anonymous) =
        post(&server, "/v1/identify", &identify(json!({"ios_idfv": "9876"}), None));
    assert_eq!(
        anonymous["mpid"],
        m2.as_str(),
        "login-ID protection: the device alone finds the anonymous profile"
    );
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("idgraph_http_requests_total{endpoint=\"/v1/login\",status=\"200\"} 1"),
        "{metrics}"
    );
    // identify, login, logout, modify, then login and identify: search is not recorded.
    assert!(metrics.contains("idgraph_log_last_seq 6"), "{metrics}");
    assert!(metrics.contains("idgraph_log_batch_entries_bucket{le=\"+Inf\"}"), "{metrics}");
    let health: Value = client().get(server.url("/healthz")).send().unwrap().json().unwrap();
    assert_eq!(health["status"], "ok");
    assert!(server.stop().success());
}

#[test]
fn hmac_signatures_key_only_cors_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let body = serde_json::to_vec(&identify(json!({"email": "a@example.com"}), None)).unwrap();
    let date = chrono::Utc::now().to_rfc2822().replace("+0000", "GMT");
    let signature = idgraph_server::auth::sign("shop-secret", "POST", &date, "/v1/identify", &body);
    let send = |signature: &str, body: &[u8]| {
        client()
            .post(server.url("/v1/identify"))
            .header("x-mp-key", "shop-key")
            .header("date", &date)
            .header("x-mp-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send(&signature, &body), 200);
    let mut flipped = body.clone();
    flipped[5] ^= 1;
    assert_eq!(send(&signature, &flipped), 401, "a flipped body byte breaks the signature");

    // Key only: refused for `shop`, accepted for `web` (allow_key_only).
    let key_only = |key: &str| {
        client()
            .post(server.url("/v1/identify"))
            .header("x-mp-key", key)
            .body(body.clone())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(key_only("shop-key"), 401);
    assert_eq!(key_only("web-key"), 200);

    // CORS preflight needs no key; errors carry the CORS header too.
    let preflight = client()
        .request(reqwest::Method::OPTIONS, server.url("/v1/identify"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-mp-key")
        .send()
        .unwrap();
    assert!(preflight.status().is_success());
    let allowed =
        preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("x-mp-key") && allowed.contains("content-type"), "{allowed}");
    let error = client()
        .post(server.url("/v1/identify"))
        .header("origin", "https://shop.example")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(error.status().as_u16(), 401);
    assert!(error.headers().contains_key("access-control-allow-origin"));

    // A gzip-compressed body is accepted.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&body).unwrap();
    let gzipped = encoder.finish().unwrap();
    let response = client()
        .post(server.url("/v1/identify"))
        .header("authorization", basic("shop-key", "shop-secret"))
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gzipped)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-mp-max-age"));
}

#[test]
fn malformed_requests_get_a_4xx_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let (_, created) = post(&server, "/v1/identify", &identify(json!({"ios_idfv": "1"}), None));
    let mpid = created["mpid"].as_str().unwrap().to_owned();
    let raw = |path: &str, body: &str| {
        let response = client()
            .post(server.url(path))
            .header("authorization", basic("shop-key", "shop-secret"))
            .body(body.to_owned())
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_str::<Value>(&response.text().unwrap()).unwrap_or(Value::Null))
    };
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("/v1/identify", "{not json".into(), 400, "INVALID_DATA", "malformed"),
        ("/v1/identify", r#"{"environment": 5, "known_identities": {"email": "a"}}"#.into(), 400, "INVALID_DATA", "invalid type"),
        ("/v1/identify", r#"{"environment": "production", "known_identities": {}}"#.into(), 400, "LOOKUP_ERROR", "knownIdentities is empty"),
        ("/v1/identify", r#"{"known_identities": {"email": "a"}}"#.into(), 400, "LOOKUP_ERROR", "environment is required"),
        ("/v1/identify", r#"{"environment": "staging", "known_identities": {"email": "a"}}"#.into(), 400, "LOOKUP_ERROR", "staging"),
        ("/v1/identify", r#"{"environment": "production", "known_identities": {"fire_tv": "a"}}"#.into(), 400, "LOOKUP_ERROR", "unknown identity type `fire_tv`"),
        ("/v1/identify", r#"{"environment": "production", "known_identities": {"email": 7}}"#.into(), 400, "LOOKUP_ERROR", "must be a string"),
        ("/v1/identify", r#"{"environment": "production", "previous_mpid": "abc", "known_identities": {"email": "a"}}"#.into(), 400, "INVALID_DATA", "previous_mpid"),
        ("/v1/0/modify", r#"{"environment": "production", "identity_changes": []}"#.into(), 400, "LOOKUP_ERROR", "non-zero MPID"),
        ("/v1/12345/modify", r#"{"environment": "production", "identity_changes": [{"identity_type": "email", "old_value": null, "new_value": "x@y"}]}"#.into(), 400, "LOOKUP_ERROR", "not found"),
        ("/v1/abc/modify", r#"{"environment": "production", "identity_changes": []}"#.into(), 400, "INVALID_DATA", "64-bit integer"),
        (&*Box::leak(format!("/v1/{mpid}/modify").into_boxed_str()), r#"{"environment": "production"}"#.into(), 400, "LOOKUP_ERROR", "identity_changes is required"),
        ("/v1/alias", r#"{"environment": "production", "data": {"source_mpid": "1", "destination_mpid": "1"}}"#.into(), 400, "INVALID_DATA", "Source MPID is the same"),
        ("/v1/identify", format!(r#"{{"environment": "production", "known_identities": {{"email": "{}"}}}}"#, "x".repeat(70_000)), 413, "PAYLOAD_TOO_LARGE", "larger than"),
        ("/v1/nowhere", "{}".into(), 404, "NOT_FOUND", "no such endpoint"),
    ];
    for (path, body, status, code, message) in cases {
        let (actual_status, error) = raw(path, &body);
        assert_eq!(actual_status, status, "{path} {body:.80}: {error}");
        assert_eq!(error["ErrorCode"], code, "{path} {body:.80}: {error}");
        assert_eq!(error["StatusCode"], status);
        let text = error["Errors"][0]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{path}: `{text}` lacks `{message}`");
    }
    // Credentials.
    let status = |auth: &str| {
        client()
            .post(server.url("/v1/identify"))
            .header("authorization", auth)
            .body("{}")
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&basic("shop-key", "wrong")), 401);
    assert_eq!(status(&basic("nobody", "shop-secret")), 401);
    assert_eq!(status("Bearer x"), 401);
    // The rate limit of `tiny` (3/s): a burst gets 429 with Retry-After.
    let statuses: Vec<reqwest::blocking::Response> = (0..8)
        .map(|_| {
            client()
                .post(server.url("/v1/identify"))
                .header("authorization", basic("tiny-key", "tiny-secret"))
                .json(&identify(json!({"email": "t@x"}), None))
                .send()
                .unwrap()
        })
        .collect();
    let limited: Vec<_> = statuses.iter().filter(|r| r.status().as_u16() == 429).collect();
    assert!(!limited.is_empty(), "no request was rate limited");
    assert!(limited[0].headers().contains_key("retry-after"));
    // The server is still healthy after all of it.
    assert_eq!(client().get(server.url("/healthz")).send().unwrap().status().as_u16(), 200);
}

#[test]
fn a_bad_configuration_names_the_file_and_key_and_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, CONFIG.replace("\"roku_aid\"", "\"roku\"")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("identity_priority")
            && stderr.contains("roku"),
        "{stderr}"
    );
}

#[test]
fn admin_corrections_and_the_change_feed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let (_, login) = post(
        &server,
        "/v1/login",
        &identify(
            json!({"customerid": "C-9", "email": "shared@example.com", "ios_idfv": "kiosk"}),
            None,
        ),
    );
    let mpid = login["mpid"].as_str().unwrap().to_owned();
    // Admin endpoints need the secret, an actor and a reason.
    let body = json!({"environment": "production", "identities": {"email": "shared@example.com"}, "actor": "ops", "reason": "wrong link"});
    let key_only = client()
        .post(server.url(&format!("/v1/admin/{mpid}/split")))
        .header("x-mp-key", "web-key")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(key_only.status().as_u16(), 401);
    let (status, error) = post(
        &server,
        &format!("/v1/admin/{mpid}/split"),
        &json!({"environment": "production", "identities": {"email": "shared@example.com"}}),
    );
    assert_eq!(status, 400, "{error}");
    let (status, split) = post(&server, &format!("/v1/admin/{mpid}/split"), &body);
    assert_eq!(status, 200, "{split}");
    let new_mpid = split["new_mpid"].as_str().unwrap().to_owned();
    let (_, found) =
        post(&server, "/v1/search", &identify(json!({"email": "shared@example.com"}), None));
    assert_eq!(found["mpid"], new_mpid.as_str());

    // The feed lists the durable entries in order and resumes after a sequence.
    let feed = |after: u64| -> Value {
        client()
            .get(server.url(&format!("/v1/events?after={after}&wait_ms=2000")))
            .header("authorization", basic("shop-key", "shop-secret"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let page = feed(0);
    let seqs: Vec<u64> =
        page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2], "{page}");
    assert!(
        page["entries"][1]["entry"]["request"]["operation"]["AdminSplit"].is_object(),
        "{page}"
    );
    let (_, _) = post(&server, "/v1/logout", &identify(json!({"ios_idfv": "kiosk"}), None));
    let next = feed(page["next_after"].as_u64().unwrap());
    let seqs: Vec<u64> =
        next["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3], "{next}");
}

#[test]
fn audit_endpoints_tell_how_a_profile_became_known() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let (_, first) = post(&server, "/v1/identify", &identify(json!({"ios_idfv": "A1"}), None));
    let mpid = first["mpid"].as_str().unwrap().to_owned();
    post(
        &server,
        "/v1/login",
        &identify(json!({"email": "e@example.com", "ios_idfv": "A1"}), Some(&mpid)),
    );
    let get = |path: &str| -> (u16, Value) {
        let response = client()
            .get(server.url(path))
            .header("authorization", basic("shop-key", "shop-secret"))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json().unwrap_or(Value::Null))
    };
    // The change feed serves durable entries only; wait until both are there.
    let _ = client()
        .get(server.url("/v1/events?after=1&wait_ms=3000"))
        .header("authorization", basic("shop-key", "shop-secret"))
        .send()
        .unwrap();

    let (status, history) = get(&format!("/v1/audit/profiles/{mpid}/history"));
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["became_known_seq"], 2, "{history}");
    assert_eq!(history["steps"][1]["operation"], "login");
    let (status, explained) = get("/v1/audit/entries/2/explain");
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["agrees"], true);
    assert!(explained["explanation"].as_str().unwrap().contains("ios_idfv=A1"), "{explained}");
    let (status, as_of) = get(&format!("/v1/audit/profiles/{mpid}?seq=1"));
    assert_eq!(status, 200, "{as_of}");
    assert_eq!(
        as_of["profile"]["identities"],
        json!([{"identity_type": "ios_idfv", "value": "A1"}])
    );
    let (status, holders) = get("/v1/audit/identities/email/e@example.com/history");
    assert_eq!(status, 200);
    assert_eq!(holders["holders"][0]["mpid"], mpid.as_str());
    let (status, hypothetical) = post(
        &server,
        "/v1/audit/explain",
        &json!({"op": "identify", "environment": "production", "known_identities": {"ios_idfv": "A1"}}),
    );
    assert_eq!(status, 200, "{hypothetical}");
    assert!(
        hypothetical["explanation"].as_str().unwrap().contains("login-ID protected"),
        "{hypothetical}"
    );
    // A search as it would have been answered after entry 1 (the email was not known yet) and
    // after entry 2.
    let search =
        json!({"environment": "production", "known_identities": {"email": "e@example.com"}});
    let (status, before) = post(&server, "/v1/audit/search?seq=1", &search);
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        (before["as_of_seq"].as_u64(), before["mpid"].as_str()),
        (Some(1), None),
        "{before}"
    );
    let (status, after) = post(&server, "/v1/audit/search?seq=2", &search);
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["mpid"], mpid.as_str(), "{after}");
    let (status, both) = post(&server, "/v1/audit/search?seq=1&time=2026-01-01T00:00:00Z", &search);
    assert_eq!(status, 400, "{both}");
    let (status, garbled) = post(&server, "/v1/audit/search?seq=abc", &search);
    assert_eq!((status, garbled["ErrorCode"].as_str()), (400, Some("INVALID_DATA")), "{garbled}");
    // What if the workspace had used profile link: the login would have made a new profile.
    let (status, report) = post(&server, "/v1/audit/what-if", &json!({"strategy": "profile_link"}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["n_requests"].as_u64(), report["n_different_mpid"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let (status, same) = post(&server, "/v1/audit/what-if", &json!({}));
    assert_eq!((status, same["n_different_mpid"].as_u64()), (200, Some(0)), "{same}");
    let (status, bad) =
        post(&server, "/v1/audit/what-if", &json!({"strategy": "merge_everything"}));
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("merge_everything"), "{bad}");
    // Nothing hypothetical was recorded, and the audit needs the secret.
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("idgraph_log_last_seq 2"), "{metrics}");
    let key_only = client()
        .get(server.url("/v1/audit/entries/1/explain"))
        .header("x-mp-key", "web-key")
        .send()
        .unwrap();
    assert_eq!(key_only.status().as_u16(), 401);
}

/// Reads from `stream` until the server closes it; how long that took.
fn until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the connection was not closed: {err} after {:?}", started.elapsed()),
    }
    started.elapsed()
}

/// r14, item 7: a client that sends half a request line and then nothing is disconnected after
/// `header_read_timeout_ms`; and SIGTERM with such a client connected (and a long poll in flight)
/// stops the server within `shutdown_timeout_ms`, cleanly.
#[test]
fn r14_a_trickling_client_is_cut_off_and_does_not_hold_up_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let timeouts = "header_read_timeout_ms = 300\nshutdown_timeout_ms = 1000\n";
    let server = Server::start(dir.path(), &format!("{timeouts}{CONFIG}"));
    let mut half = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
    half.write_all(b"GET /heal").unwrap();
    let waited = until_closed(&mut half);
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    assert!(server.stop().success());

    // Only the shutdown deadline can end these: the header read timeout is far away.
    let timeouts = "header_read_timeout_ms = 60000\nshutdown_timeout_ms = 1000\n";
    let server = Server::start(dir.path(), &format!("{timeouts}{CONFIG}"));
    let mut half = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
    half.write_all(b"GET /heal").unwrap();
    let feed = server.url("/v1/events?after=100&wait_ms=30000");
    let long_poll = std::thread::spawn(move || {
        let _ = client().get(feed).header("authorization", basic("shop-key", "shop-secret")).send();
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = server.stop();
    let stopped_after = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(stopped_after < Duration::from_millis(3000), "stopped after {stopped_after:?}");
    assert!(until_closed(&mut half) < Duration::from_secs(1));
    long_poll.join().unwrap();
}

//! The router over an in-memory engine, driven without a socket: admission by access kind (key in
//! the header or the path, secret required), the request id in every error after parsing, and the
//! change feed. The end-to-end tests (`crates/cli/tests/serve.rs`) cover the rest over TCP.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request};
use idgraph_engine::{Engine, EngineConfig, RandomMpids, SystemClock};
use serde_json::{Value, json};

use crate::{AppState, ServerConfig, router};

/// `dev-key:dev-secret`, base64.
const BASIC: &str = "Basic ZGV2LWtleTpkZXYtc2VjcmV0";

fn app() -> Router {
    app_with(ServerConfig::development("127.0.0.1:0".parse().unwrap(), PathBuf::new()))
}

/// The router over an in-memory engine with `config`'s workspaces.
pub(crate) fn app_with(config: ServerConfig) -> Router {
    let workspaces = config.workspaces.iter().map(|w| w.workspace.clone()).collect();
    let engine = Engine::in_memory(
        EngineConfig::new(workspaces),
        Box::new(SystemClock),
        Box::new(RandomMpids),
    );
    router(AppState::new(Arc::new(engine), config).expect("the pipeline starts"))
}

/// Sends a request; the status and the JSON body (null when empty).
async fn call(
    app: &mut Router,
    path: &str,
    auth: (&str, &str),
    body: Option<Value>,
) -> (u16, Value) {
    let method = if body.is_some() { "POST" } else { "GET" };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = tower_service::Service::call(app, request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, body)
}

fn identify(email: &str) -> Value {
    json!({"environment": "development", "request_id": format!("id-{email}"), "known_identities": {"email": email}})
}

#[tokio::test]
async fn healthz_reports_role_positions_index_lag_and_digest() {
    let mut app = app();
    let (_, before) = call(&mut app, "/healthz", ("x-none", "-"), None).await;
    let (status, _) =
        call(&mut app, "/v1/identify", ("x-mp-key", "dev-key"), Some(identify("h@x"))).await;
    assert_eq!(status, 200);
    let (status, health) = call(&mut app, "/healthz", ("x-none", "-"), None).await;
    assert_eq!((status, &health["role"], &health["last_seq"]), (200, &json!("writer"), &json!(1)));
    assert_eq!(health["durable_seq"], json!(1), "an answer is given once durable: {health}");
    let (indexed, lag) =
        (health["indexed_seq"].as_u64().unwrap(), health["index_lag"].as_u64().unwrap());
    assert_eq!(indexed + lag, 1, "{health}");
    let digest = |health: &Value| health["running_digest"].as_str().unwrap().to_owned();
    assert_eq!(digest(&health).len(), 32);
    assert_ne!(digest(&health), digest(&before), "the digest follows the log");
}

#[tokio::test]
async fn access_kinds_request_ids_and_the_feed() {
    let mut app = app();
    let key_only = ("x-mp-key", "dev-key");
    let (status, first) = call(&mut app, "/v1/identify", key_only, Some(identify("a@x"))).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) =
        call(&mut app, "/v1/identify", ("authorization", BASIC), Some(identify("b@x"))).await;

    // The SDKs' alias path carries the key; no header at all.
    let alias = json!({"environment": "development", "request_id": "al-1",
        "data": {"source_mpid": first["mpid"], "destination_mpid": second["mpid"],
                 "start_unixtime_ms": 1, "end_unixtime_ms": 2}});
    let path = "/v1/identity/dev-key/alias";
    assert_eq!(call(&mut app, path, ("x-none", "-"), Some(alias.clone())).await.0, 202);
    let (status, wrong) =
        call(&mut app, "/v1/identity/nokey/alias", ("x-none", "-"), Some(alias)).await;
    assert_eq!((status, &wrong["ErrorCode"]), (401, &json!("UNAUTHORIZED")), "{wrong}");

    // Errors after parsing echo the request id; a search that finds nothing too.
    let mut search = identify("nobody@x");
    search["request_id"] = json!("s-1");
    let (status, missing) = call(&mut app, "/v1/search", key_only, Some(search)).await;
    assert_eq!(
        (status, &missing["ErrorCode"], &missing["RequestId"]),
        (404, &json!("NOT_FOUND_ERROR"), &json!("s-1"))
    );
    let bad = json!({"environment": "staging", "request_id": "m-1", "identity_changes": []});
    let (status, err) = call(&mut app, "/v1/0/modify", key_only, Some(bad)).await;
    assert_eq!((status, &err["RequestId"]), (400, &json!("m-1")), "{err}");
    assert!(err["Errors"][0]["message"].as_str().unwrap().contains("non-zero MPID"), "{err}");

    // Administrative requests and the feed need the secret.
    let correction = json!({"environment": "development", "identities": {"email": "a@x"}, "actor": "ops", "reason": "test"});
    let admin = format!("/v1/admin/{}/detach", first["mpid"].as_str().unwrap());
    assert_eq!(call(&mut app, &admin, key_only, Some(correction.clone())).await.0, 401);
    assert_eq!(call(&mut app, "/v1/events", key_only, None).await.0, 401);
    let (status, detached) =
        call(&mut app, &admin, ("authorization", BASIC), Some(correction)).await;
    assert_eq!((status, &detached["new_mpid"]), (200, &Value::Null), "{detached}");

    let (status, page) =
        call(&mut app, "/v1/events?after=1&limit=10", ("authorization", BASIC), None).await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> =
        page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(page["next_after"], 4);
    let last = &page["entries"][2]["entry"];
    assert_eq!(last["request"]["operation"]["AdminDetach"]["actor"], "ops", "{last}");
    assert_eq!(last["outcome"], json!({"AdminApplied": {"new_mpid": null}}));
    let (status, err) = call(&mut app, "/v1/events?after=x", ("authorization", BASIC), None).await;
    assert_eq!((status, &err["ErrorCode"]), (400, &json!("INVALID_DATA")), "{err}");
}

/// Sends `request`; the status, the `content-type` and the body's text.
async fn send(app: &mut Router, request: Request<Body>) -> (u16, String, String) {
    let response = tower_service::Service::call(app, request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
}

/// r14, item 1: a credential header that is present but not valid UTF-8 is a 401 naming it, never
/// "absent": the browser key alone must not reach what needs the secret (the feed, corrections),
/// nor anything else.
#[tokio::test]
async fn r14_an_undecodable_credential_header_is_refused_not_ignored() {
    let mut app = app(); // `dev-key` allows key-only.
    let (status, created) =
        call(&mut app, "/v1/identify", ("authorization", BASIC), Some(identify("a@x"))).await;
    assert_eq!(status, 200, "{created}");
    let detach = format!("/v1/admin/{}/detach", created["mpid"].as_str().unwrap());
    let correction = json!({"environment": "development", "identities": {"email": "a@x"},
        "actor": "ops", "reason": "test"});
    let now = chrono::Utc::now().to_rfc2822();
    for bad in ["authorization", "x-mp-signature", "date", "x-mp-key"] {
        for (method, path, body) in [
            ("GET", "/v1/events?after=0", None),
            ("POST", detach.as_str(), Some(correction.clone())),
            ("POST", "/v1/identify", Some(identify("b@x"))),
        ] {
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .header("x-mp-key", "dev-key")
                .header("date", &now)
                .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
                .unwrap();
            request.headers_mut().insert(bad, HeaderValue::from_bytes(&[0xff]).unwrap());
            let (status, _, text) = send(&mut app, request).await;
            assert_eq!(status, 401, "{method} {path} with a bad `{bad}`: {text}");
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["ErrorCode"], "UNAUTHORIZED", "{text}");
            let message = error["Errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(bad), "{method} {path}: `{message}` does not name `{bad}`");
        }
    }
    // Nothing was detached.
    let (status, page) = call(&mut app, "/v1/events?after=0", ("authorization", BASIC), None).await;
    assert_eq!((status, page["entries"].as_array().unwrap().len()), (200, 1), "{page}");
}

/// r14, item 8: every error is the IDSync JSON body with the right status, including those axum
/// and tower-http answer on their own (a wrong method, an unsupported content encoding, a path
/// segment of the wrong type or not UTF-8).
#[tokio::test]
async fn r14_every_error_is_an_idsync_json_body() {
    let mut app = app();
    let cases = [
        ("GET", "/v1/identify", None, 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/v1/events", None, 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/v1/identify", Some("br"), 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("POST", "/v1/%ff%fe/modify", None, 400, "INVALID_DATA"),
        ("GET", "/v1/audit/entries/abc/explain", None, 400, "INVALID_DATA"),
        ("GET", "/v1/audit/profiles/%ff/history", None, 400, "INVALID_DATA"),
        ("POST", "/v1/admin/%ff/detach", None, 400, "INVALID_DATA"),
        ("GET", "/v1/nowhere", None, 404, "NOT_FOUND"),
    ];
    for (method, path, encoding, expected_status, expected_code) in cases {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", BASIC)
            .header("content-type", "application/json");
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let body = Body::from(identify("e@x").to_string());
        let (status, content_type, text) = send(&mut app, request.body(body).unwrap()).await;
        let case = format!("{method} {path} ({encoding:?}): {status} {content_type} `{text}`");
        assert_eq!(status, expected_status, "{case}");
        assert_eq!(content_type, "application/json", "{case}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{case}"));
        assert_eq!(error["ErrorCode"], expected_code, "{case}");
        assert_eq!(error["StatusCode"], expected_status, "{case}");
        assert_eq!(error["Errors"][0]["code"], expected_code, "{case}");
        assert!(error["RequestId"].is_string(), "{case}");
    }
}

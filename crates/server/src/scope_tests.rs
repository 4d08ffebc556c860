//! Workspaces in different identity scopes do not see or change each other's profiles through any
//! endpoint (r14, item 2), and the change feed pages past the entries of other scopes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::ServerConfig;
use crate::http_tests::app_with;

const CONFIG: &str = r#"
[[workspace]]
name = "alpha"
api_key = "alpha-key"
api_secret = "alpha-secret"
strategy = "profile_conversion"
identity_priority = ["customerid", "email", "ios_idfv"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]

[[workspace]]
name = "beta"
api_key = "beta-key"
api_secret = "beta-secret"
allow_key_only = true
strategy = "profile_conversion"
identity_priority = ["customerid", "email", "ios_idfv"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]
"#;

/// `alpha-key:alpha-secret` and `beta-key:beta-secret`, base64.
const ALPHA: &str = "Basic YWxwaGEta2V5OmFscGhhLXNlY3JldA==";
const BETA: &str = "Basic YmV0YS1rZXk6YmV0YS1zZWNyZXQ=";

/// Routes that hold no profile data, so there is nothing to see or change across scopes.
/// Routes that serve no profile data (the explorer's files are static; the page itself calls the
/// audit endpoints with the credentials typed into it).
const NO_PROFILE_DATA: [&str; 6] =
    ["/healthz", "/metrics", "/openapi.json", "/explorer", "/explorer/", "/explorer/{*file}"];

fn app() -> Router {
    app_with(ServerConfig::parse(CONFIG).unwrap())
}

/// Sends a request with HTTP Basic `auth`: a POST with `body`, else a GET; the status and the
/// body's text.
async fn call(app: &mut Router, auth: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let request = Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(path)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = tower_service::Service::call(app, request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn call_json(app: &mut Router, auth: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, text) = call(app, auth, path, body).await;
    assert!(status < 300, "{path}: {status} {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

fn identify(identities: Value, previous: Option<&str>) -> Value {
    json!({"environment": "production", "known_identities": identities, "previous_mpid": previous})
}

/// What workspace `alpha` sees of its profiles: each as of now, and the entries of its feed
/// (without the log's last sequence, which others' entries advance).
async fn alpha_view(app: &mut Router, mpids: &[String]) -> Vec<Value> {
    let mut view = Vec::new();
    for mpid in mpids {
        let profile = call_json(app, ALPHA, &format!("/v1/audit/profiles/{mpid}"), None).await;
        view.push(profile["profile"].clone());
    }
    let feed = call_json(app, ALPHA, "/v1/events?after=0&limit=1000", None).await;
    view.push(feed["entries"].clone());
    view
}

/// One request `beta` makes, and the route it exercises.
struct Probe {
    route: (&'static str, &'static str),
    path: String,
    body: Option<Value>,
    /// A correction or write that must be refused (and is answered as for an unknown MPID).
    refused: bool,
}

fn probe(route: (&'static str, &'static str), path: &str, body: Option<Value>) -> Probe {
    Probe { route, path: path.to_owned(), body, refused: false }
}

/// For every route in the router, workspace `beta` (another identity scope) can neither read nor
/// change `alpha`'s profiles: no value of alpha's (identity values, MPIDs) appears in any answer
/// beta gets, unless beta itself sent it earlier; corrections and writes aimed at alpha's MPIDs are
/// refused exactly as for an MPID that does not exist; and alpha's view of its profiles and its
/// feed are the same afterwards. The routes are read from the router's source, so a new route
/// without a probe here fails the test.
#[tokio::test]
async fn r14_another_scope_can_neither_see_nor_change_a_profile_through_any_endpoint() {
    let mut app = app();
    // Alpha: a device, a login that converts it, an email change, a second device aliased to the
    // first profile, and a split.
    let first = call_json(
        &mut app,
        ALPHA,
        "/v1/identify",
        Some(&identify(json!({"ios_idfv": "alpha-device-1"}), None)),
    )
    .await;
    let m1 = first["mpid"].as_str().unwrap().to_owned();
    let login = identify(
        json!({"customerid": "alpha-cust-7", "email": "alpha.person@example.com", "ios_idfv": "alpha-device-1"}),
        Some(&m1),
    );
    call_json(&mut app, ALPHA, "/v1/login", Some(&login)).await;
    let change = json!({"environment": "production", "identity_changes": [{"identity_type": "email",
        "old_value": "alpha.person@example.com", "new_value": "alpha.renamed@example.com"}]});
    call_json(&mut app, ALPHA, &format!("/v1/{m1}/modify"), Some(&change)).await;
    let second = call_json(
        &mut app,
        ALPHA,
        "/v1/identify",
        Some(&identify(json!({"ios_idfv": "alpha-device-2"}), None)),
    )
    .await;
    let m2 = second["mpid"].as_str().unwrap().to_owned();
    let alias = json!({"environment": "production", "data": {"source_mpid": m2, "destination_mpid": m1,
        "start_unixtime_ms": 1, "end_unixtime_ms": 2}});
    call_json(&mut app, ALPHA, "/v1/alias", Some(&alias)).await;
    let split = json!({"environment": "production", "identities": {"ios_idfv": "alpha-device-1"},
        "actor": "ops", "reason": "kiosk"});
    let split = call_json(&mut app, ALPHA, &format!("/v1/admin/{m1}/split"), Some(&split)).await;
    let m3 = split["new_mpid"].as_str().unwrap().to_owned();
    let n_alpha_entries = 6;
    // Beta has a profile of its own.
    call_json(
        &mut app,
        BETA,
        "/v1/identify",
        Some(&identify(json!({"email": "beta.user@example.com"}), None)),
    )
    .await;

    let alpha_secrets: Vec<String> = [
        "alpha-device-1",
        "alpha-device-2",
        "alpha-cust-7",
        "alpha.person@example.com",
        "alpha.renamed@example.com",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([m1.clone(), m2.clone(), m3.clone()])
    .collect();
    let mpids = [m1.clone(), m2.clone(), m3.clone()];
    let before = alpha_view(&mut app, &mpids).await;

    // Beta's probes, reads first. Beta knows alpha's first two MPIDs and one email (as if they
    // had leaked), never the rest.
    let email = json!({"email": "alpha.renamed@example.com"});
    let search = json!({"environment": "production", "known_identities": email});
    let correction = json!({"environment": "production", "identities": email, "actor": "beta",
        "reason": "probe"});
    let mut probes = vec![
        probe(("get", "/v1/events"), "/v1/events?after=0&limit=1000", None),
        probe(("get", "/v1/events"), "/v1/events?after=0&wait_ms=200", None),
        probe(("get", "/v1/audit/profiles/{mpid}"), &format!("/v1/audit/profiles/{m1}"), None),
        probe(
            ("get", "/v1/audit/profiles/{mpid}/graph"),
            &format!("/v1/audit/profiles/{m1}/graph"),
            None,
        ),
        probe(
            ("get", "/v1/audit/profiles/{mpid}"),
            &format!("/v1/audit/profiles/{m2}?seq=5"),
            None,
        ),
        probe(
            ("get", "/v1/audit/profiles/{mpid}/history"),
            &format!("/v1/audit/profiles/{m1}/history"),
            None,
        ),
        probe(
            ("get", "/v1/audit/identities/{identity_type}/{value}/history"),
            "/v1/audit/identities/email/alpha.renamed@example.com/history",
            None,
        ),
        probe(("post", "/v1/audit/search"), "/v1/audit/search", Some(search.clone())),
        probe(("post", "/v1/audit/search"), "/v1/audit/search?seq=3", Some(search.clone())),
        probe(("post", "/v1/audit/what-if"), "/v1/audit/what-if", Some(json!({}))),
        probe(
            ("post", "/v1/audit/what-if"),
            "/v1/audit/what-if",
            Some(json!({"strategy": "profile_link"})),
        ),
        probe(("post", "/v1/audit/explain"), "/v1/audit/explain", Some(search.clone())),
        probe(("post", "/v1/search"), "/v1/search", Some(search.clone())),
    ];
    for seq in 1..=n_alpha_entries {
        let path = format!("/v1/audit/entries/{seq}/explain");
        probes.push(probe(("get", "/v1/audit/entries/{seq}/explain"), &path, None));
    }
    // Then corrections and writes aimed at alpha's profiles.
    let beta_alias = json!({"environment": "production", "data": {"source_mpid": m2,
        "destination_mpid": m1, "start_unixtime_ms": 1, "end_unixtime_ms": 2}});
    let beta_change = json!({"environment": "production", "identity_changes": [{"identity_type":
        "email", "old_value": "alpha.renamed@example.com", "new_value": "beta.took@example.com"}]});
    for (route, path, body) in [
        ("/v1/admin/{mpid}/{action}", format!("/v1/admin/{m1}/detach"), &correction),
        ("/v1/admin/{mpid}/{action}", format!("/v1/admin/{m1}/split"), &correction),
        ("/v1/{mpid}/modify", format!("/v1/{m1}/modify"), &beta_change),
        ("/v1/alias", "/v1/alias".to_owned(), &beta_alias),
        ("/v1/identity/{api_key}/alias", "/v1/identity/beta-key/alias".to_owned(), &beta_alias),
        ("/v1/identity/{api_key}/Alias", "/v1/identity/beta-key/Alias".to_owned(), &beta_alias),
    ] {
        probes.push(Probe {
            route: ("post", route),
            path,
            body: Some(body.clone()),
            refused: true,
        });
    }
    // Identity requests with alpha's MPID as the previous one and alpha's email.
    for route in ["/v1/identify", "/v1/login", "/v1/logout"] {
        let body = identify(email.clone(), Some(&m1));
        probes.push(probe(("post", route), route, Some(body)));
    }

    let mut known_to_beta = BTreeSet::new();
    let mut probed = BTreeSet::new();
    for Probe { route, path, body, refused } in &probes {
        let sent = format!("{path} {}", body.as_ref().map(Value::to_string).unwrap_or_default());
        known_to_beta.extend(alpha_secrets.iter().filter(|s| sent.contains(s.as_str())).cloned());
        let (status, text) = call(&mut app, BETA, path, body.as_ref()).await;
        for secret in alpha_secrets.iter().filter(|s| !known_to_beta.contains(*s)) {
            assert!(
                !text.contains(secret.as_str()),
                "{path}: beta sees alpha's `{secret}`: {text}"
            );
        }
        if *refused {
            // Answered exactly as for an MPID that does not exist in beta's scope.
            let unknown = path.replace(&m1, "4242424242").replace(&m2, "4242424243");
            let unknown_body =
                body.as_ref().map(|b| b.to_string().replace(&m1, "4242").replace(&m2, "4243"));
            let unknown_body = unknown_body.map(|b| serde_json::from_str(&b).unwrap());
            let (unknown_status, unknown_text) =
                call(&mut app, BETA, &unknown, unknown_body.as_ref()).await;
            let code =
                |text: &str| serde_json::from_str::<Value>(text).unwrap()["ErrorCode"].clone();
            assert!(status >= 400, "{path}: beta's correction of alpha's profile: {status} {text}");
            assert_eq!(
                (status, code(&text)),
                (unknown_status, code(&unknown_text)),
                "{path}: {text} vs {unknown_text}"
            );
        }
        if route.1 == "/v1/events" {
            let page: Value = serde_json::from_str(&text).unwrap();
            for entry in page["entries"].as_array().unwrap() {
                assert_eq!(entry["entry"]["request"]["scope"], "beta", "{text}");
            }
        }
        probed.insert((route.0.to_owned(), route.1.to_owned()));
    }

    let routes: BTreeSet<(String, String)> = crate::tests::routes()
        .into_iter()
        .filter(|(_, path)| !NO_PROFILE_DATA.contains(&path.as_str()))
        .collect();
    let unprobed: Vec<_> = routes.difference(&probed).collect();
    assert!(unprobed.is_empty(), "routes without a cross-scope probe: {unprobed:?}");
    assert_eq!(alpha_view(&mut app, &mpids).await, before, "beta changed alpha's profiles");
}

/// The feed shows a workspace only its own scope's entries, advances `next_after` past the
/// others', and a long poll waits for an entry of the caller's scope instead of answering an
/// empty page as soon as another scope writes.
#[tokio::test]
async fn r14_the_feed_pages_past_other_scopes_and_long_polls_for_its_own() {
    let mut app = app();
    for idx in 0..3 {
        let body = identify(json!({"ios_idfv": format!("alpha-{idx}")}), None);
        call_json(&mut app, ALPHA, "/v1/identify", Some(&body)).await;
    }
    let page = call_json(&mut app, BETA, "/v1/events?after=0&limit=2", None).await;
    assert_eq!((page["entries"].as_array().unwrap().len(), &page["next_after"]), (0, &json!(2)));

    // A long poll with only alpha's entries after `after` waits out its time.
    let started = Instant::now();
    let page = call_json(&mut app, BETA, "/v1/events?after=0&wait_ms=400", None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!((page["entries"].as_array().unwrap().len(), &page["next_after"]), (0, &json!(3)));

    // An entry of beta's written during the wait ends it.
    let mut writer = app.clone();
    let write = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let body = identify(json!({"email": "beta.user@example.com"}), None);
        call_json(&mut writer, BETA, "/v1/identify", Some(&body)).await;
    });
    let body = identify(json!({"ios_idfv": "alpha-3"}), None);
    call_json(&mut app, ALPHA, "/v1/identify", Some(&body)).await;
    let started = Instant::now();
    let page = call_json(&mut app, BETA, "/v1/events?after=0&wait_ms=5000", None).await;
    write.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "answered after {:?}",
        started.elapsed()
    );
    let seqs: Vec<&Value> = page["entries"].as_array().unwrap().iter().map(|e| &e["seq"]).collect();
    assert_eq!((seqs, &page["next_after"]), (vec![&json!(5)], &json!(5)), "{page}");
}

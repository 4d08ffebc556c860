//! Audit from the command line and over HTTP is one implementation: the same question, asked of the
//! same log through `idgraph history | explain | as-of | what-if` and through `/v1/audit/...`, gets
//! the same answer, and neither answers a workspace about another identity scope's profiles.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, basic, client};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[workspace]]
name = "shop"
api_key = "shop-key"
api_secret = "shop-secret"
strategy = "profile_conversion"
identity_priority = ["customerid", "email", "ios_idfv"]
login_ids = ["customerid", "email"]
unique_ids = ["customerid", "email"]

[[workspace]]
name = "other"
api_key = "other-key"
api_secret = "other-secret"
"#;

fn call(
    server: &Server,
    credentials: (&str, &str),
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = match body {
        Some(body) => client().post(server.url(path)).json(&body),
        None => client().get(server.url(path)),
    };
    let response =
        request.header("authorization", basic(credentials.0, credentials.1)).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Runs `idgraph ARGS --config CONFIG --data-dir DATA` and returns (success, stdout, stderr).
fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(args)
        .arg("--config")
        .arg(dir.join("idgraph.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

#[test]
fn the_cli_and_the_server_answer_audit_questions_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), CONFIG);
    let shop = ("shop-key", "shop-secret");
    let other = ("other-key", "other-secret");
    let identify = |identities: Value, previous: Option<&str>| json!({"environment": "production", "known_identities": identities, "previous_mpid": previous});
    let (_, first) =
        call(&server, shop, "/v1/identify", Some(identify(json!({"ios_idfv": "A1"}), None)));
    let mpid = first["mpid"].as_str().unwrap().to_owned();
    let login = identify(json!({"email": "e@example.com", "ios_idfv": "A1"}), Some(&mpid));
    assert_eq!(call(&server, shop, "/v1/login", Some(login)).0, 200);
    let (_, third) =
        call(&server, shop, "/v1/identify", Some(identify(json!({"ios_idfv": "B2"}), None)));
    let _ = client()
        .get(server.url("/v1/events?after=2&wait_ms=3000"))
        .header("authorization", basic(shop.0, shop.1))
        .send()
        .unwrap();

    let (status, history) =
        call(&server, shop, &format!("/v1/audit/profiles/{mpid}/history"), None);
    assert_eq!(status, 200, "{history}");
    let (status, holders) =
        call(&server, shop, "/v1/audit/identities/email/e@example.com/history", None);
    assert_eq!(status, 200, "{holders}");
    let (status, explained) = call(&server, shop, "/v1/audit/entries/2/explain", None);
    assert_eq!(status, 200, "{explained}");
    let (status, as_of) = call(&server, shop, &format!("/v1/audit/profiles/{mpid}?seq=1"), None);
    assert_eq!(status, 200, "{as_of}");
    let search =
        json!({"environment": "production", "known_identities": {"email": "e@example.com"}});
    let (status, searched) = call(&server, shop, "/v1/audit/search?seq=2", Some(search));
    assert_eq!(status, 200, "{searched}");
    let (status, what_if) =
        call(&server, shop, "/v1/audit/what-if", Some(json!({"strategy": "profile_link"})));
    assert_eq!(status, 200, "{what_if}");
    // Another identity scope sees none of it: every audit path answers as if it did not exist.
    for path in [
        format!("/v1/audit/profiles/{mpid}/history"),
        format!("/v1/audit/profiles/{mpid}?seq=2"),
        "/v1/audit/entries/2/explain".to_owned(),
    ] {
        let (status, body) = call(&server, other, &path, None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.to_string().contains("e@example.com"), "{path}: {body}");
    }
    let (status, body) =
        call(&server, other, "/v1/audit/identities/email/e@example.com/history", None);
    assert_eq!((status, &body["holders"]), (200, &json!([])), "{body}");
    assert_eq!(server.stop().code(), Some(0));

    // The same questions from the command line (the server has released the data folder).
    let (ok, out, err) = cli(dir.path(), &["history", "--mpid", &mpid]);
    assert!(ok, "{err}");
    assert_eq!(out.trim_end(), history["text"].as_str().unwrap().trim_end());
    let (ok, out, err) = cli(dir.path(), &["history", "--identity", "email=e@example.com"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{mpid} from #2")), "{out}\n{holders}");
    let (ok, out, err) = cli(dir.path(), &["explain", "--seq", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains(explained["explanation"].as_str().unwrap()), "{out}\n{explained}");
    assert!(out.contains("agrees with the recorded decision"), "{out}");
    let (ok, out, err) = cli(dir.path(), &["as-of", "--seq", "1", "--mpid", &mpid]);
    assert!(ok, "{err}");
    assert_eq!(
        as_of["profile"]["identities"],
        json!([{"identity_type": "ios_idfv", "value": "A1"}])
    );
    assert!(out.contains("identities {ios_idfv=A1}"), "{out}");
    let (ok, out, err) =
        cli(dir.path(), &["as-of", "--seq", "2", "--identity", "email=e@example.com"]);
    assert!(ok, "{err}");
    assert!(out.contains(searched["explanation"].as_str().unwrap()), "{out}\n{searched}");
    let (ok, out, err) = cli(dir.path(), &["what-if", "--strategy", "profile_link"]);
    assert!(ok, "{err}");
    let n_different = what_if["n_different_mpid"].as_u64().unwrap();
    assert!(out.contains(&format!("requests that would get another MPID: {n_different}")), "{out}");
    // Another scope, from the command line: nothing.
    let (ok, _, err) = cli(dir.path(), &["history", "--mpid", &mpid, "--workspace", "other"]);
    assert!(!ok && err.contains(&format!("no entry mentions MPID {mpid}")), "{err}");
    let (ok, _, err) = cli(dir.path(), &["explain", "--seq", "2", "--workspace", "other"]);
    assert!(!ok && err.contains("no entry at sequence 2"), "{err}");
    // A negative MPID is an MPID, not a flag.
    let third = third["mpid"].as_str().unwrap();
    let negative = if third.starts_with('-') { third.to_owned() } else { format!("-{third}") };
    let (_, _, err) = cli(dir.path(), &["history", "--mpid", &negative]);
    assert!(!err.contains("unexpected argument"), "{err}");
}

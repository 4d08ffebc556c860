//! The official mParticle Web SDK (`@mparticle/web-sdk` from npm) in headless Chromium against the
//! real server: init (identify), login, modify, logout; the MPIDs the SDK reports must match the
//! server's log.
//!
//! Needs Node.js, `npm install` in `tests/websdk` and Debian's `chromium`; `.ci/run` installs them
//! and sets `IDGRAPH_WEBSDK=1`. Without that variable the test says it was skipped and passes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use idgraph_log::Log;
use idgraph_model::{Operation, Outcome, Seq};
use serde_json::Value;

#[test]
fn the_official_web_sdk_gets_the_mpids_the_log_records() {
    if std::env::var("IDGRAPH_WEBSDK").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set IDGRAPH_WEBSDK=1 (with node, tests/websdk/node_modules and chromium) to run"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut server = Command::new(env!("CARGO_BIN_EXE_idgraph"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "server exited");
        if let Some(address) = line.trim().strip_prefix("listening on ") {
            break address.to_owned();
        }
    };
    std::thread::spawn(move || for _ in stdout.lines() {});

    let websdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/websdk");
    let output = Command::new("node")
        .arg("run.mjs")
        .arg(&base)
        .arg("dev-key")
        .current_dir(&websdk)
        .output()
        .expect("node is installed");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    for _ in 0..100 {
        if server.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser run failed:\n{stderr}");
    let report: Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap_or_else(|err| {
        panic!("{err}: {}\n{stderr}", String::from_utf8_lossy(&output.stdout))
    });
    let steps = report["steps"].as_array().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in {report}\n{stderr}"))
    };
    for name in ["init", "login", "modify", "logout"] {
        assert_eq!(step(name)["httpCode"], 200, "{name}: {report}\n{stderr}");
    }
    let mpid = |name: &str| {
        step(name)["mpid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no mpid: {report}"))
            .to_owned()
    };
    let (m1, m2) = (mpid("init"), mpid("logout"));
    assert_eq!(mpid("login"), m1, "the default strategy converts the anonymous profile at login");
    assert_eq!(mpid("modify"), m1);
    assert_ne!(m2, m1, "logout creates a new profile");
    assert_eq!(step("login")["isLoggedIn"], true);
    assert_eq!(step("logout")["isLoggedIn"], false);

    // The server's log recorded exactly these decisions, in this order.
    let log = Log::open(data_dir.join("log")).unwrap();
    let recorded: Vec<(String, String)> = log
        .read_range(Seq::ZERO, 100)
        .unwrap()
        .into_iter()
        .map(|(_, entry)| {
            let mpid = match (&entry.request.operation, &entry.outcome) {
                (_, Outcome::Resolved { mpid, .. }) | (_, Outcome::Modified { mpid }) => {
                    mpid.to_string()
                }
                (Operation::Alias { .. }, _) => "alias".to_owned(),
                _ => "other".to_owned(),
            };
            (entry.request.operation.name().to_owned(), mpid)
        })
        .collect();
    let expected: Vec<(String, String)> =
        [("identify", &m1), ("login", &m1), ("modify", &m1), ("logout", &m2)]
            .into_iter()
            .map(|(op, mpid)| (op.to_owned(), mpid.clone()))
            .collect();
    assert_eq!(recorded, expected, "browser log:\n{stderr}");
}

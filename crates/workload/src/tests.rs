//! Tests of the generator as a whole: determinism, the mix, the reference scheme, streaming,
//! round trips, junk and repeats. Each test generates at most a few hundred thousand lines, so the
//! suite stays fast in a debug build.

use std::collections::{BTreeMap, BTreeSet};

use idgraph_model::{Environment, IdentityType};

use crate::population::JUNK;
use crate::{
    Generator, LineRef, Mix, Op, ReadErrorKind, Reader, WorkloadRequest, WorkloadSpec,
    read_jsonl_line, write_jsonl,
};

fn spec(seed: u64, requests: u64) -> WorkloadSpec {
    WorkloadSpec { seed, requests, users: 5_000, ..WorkloadSpec::default() }
}

/// A spec that exercises every kind of line often.
fn busy_spec(requests: u64) -> WorkloadSpec {
    WorkloadSpec {
        requests,
        users: 300,
        mix: Mix { search: 0.05, ..Mix::default() },
        junk_rate: 0.1,
        repeat_request_id_rate: 0.1,
        development_rate: 0.3,
        shared_device_login_rate: 0.2,
        new_device_login_rate: 0.3,
        ..WorkloadSpec::default()
    }
}

fn generate_bytes(spec: &WorkloadSpec) -> Vec<u8> {
    let mut generator = Generator::new(spec).unwrap();
    let mut bytes = Vec::new();
    let n_lines = write_jsonl(&mut generator, &mut bytes).unwrap();
    assert_eq!(n_lines, spec.requests);
    bytes
}

fn generate(spec: &WorkloadSpec) -> Vec<WorkloadRequest> {
    Generator::new(spec).unwrap().collect()
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let first = generate_bytes(&spec(7, 20_000));
    assert_eq!(first, generate_bytes(&spec(7, 20_000)));
    assert_ne!(first, generate_bytes(&spec(8, 20_000)));
    // A longer run starts with the shorter one: lines do not depend on the total.
    let longer = generate_bytes(&spec(7, 25_000));
    assert!(longer.starts_with(&first));
    assert_eq!(first.iter().filter(|&&byte| byte == b'\n').count(), 20_000);
}

#[test]
fn fast_writer_matches_serde_on_every_kind_of_line() {
    let spec = busy_spec(20_000);
    let bytes = generate_bytes(&spec);
    let text = std::str::from_utf8(&bytes).unwrap();
    let requests = generate(&spec);
    assert_eq!(text.lines().count(), requests.len());
    for (line_idx, (line, request)) in text.lines().zip(&requests).enumerate() {
        assert_eq!(format!("{line}\n"), request.to_json_line(), "line {}", line_idx + 1);
    }
    let ops: BTreeSet<Op> = requests.iter().map(|request| request.op).collect();
    assert_eq!(ops.len(), 5, "every op appears: {ops:?}");
}

#[test]
fn mix_proportions_hold_over_100k_requests() {
    let spec = WorkloadSpec { requests: 100_000, users: 50_000, ..WorkloadSpec::default() };
    let mut generator = Generator::new(&spec).unwrap();
    let mut by_op: BTreeMap<Op, u64> = BTreeMap::new();
    for request in generator.by_ref() {
        *by_op.entry(request.op).or_default() += 1;
    }
    let share = |op| by_op.get(&op).copied().unwrap_or(0) as f64 / 100_000.0;
    // identify = returning (0.70) + new visitors (0.10).
    for (op, expected) in
        [(Op::Identify, 0.80), (Op::Login, 0.10), (Op::Logout, 0.05), (Op::Modify, 0.05)]
    {
        assert!((share(op) - expected).abs() < 0.006, "{op}: {} vs {expected}", share(op));
    }
    assert_eq!(share(Op::Search), 0.0);

    let stats = generator.stats();
    let originals = (stats.requests - stats.repeats) as f64;
    let new_visitor_share = stats.new_visitors as f64 / originals;
    assert!((new_visitor_share - 0.10).abs() < 0.005, "{new_visitor_share}");
    let logins =
        stats.signups + stats.relogins + stats.new_device_logins + stats.shared_device_logins;
    let kinds = stats.new_visitors
        + stats.browses
        + logins
        + stats.logouts
        + stats.email_changes
        + stats.email_adds
        + stats.searches;
    assert_eq!(kinds + stats.repeats, stats.requests);
    assert!(stats.signups > 0 && stats.relogins > 0 && stats.new_device_logins > 0);
    assert!(stats.shared_device_logins > 0 && stats.email_changes > 0);
}

#[test]
fn a_custom_mix_is_followed() {
    let mix =
        Mix { identify: 0.0, new_visitor: 1.0, login: 0.0, logout: 0.0, modify: 0.0, search: 1.0 };
    let spec = WorkloadSpec { mix, repeat_request_id_rate: 0.0, ..spec(3, 10_000) };
    let requests = generate(&spec);
    let n_search = requests.iter().filter(|request| request.op == Op::Search).count();
    assert!((4_700..5_300).contains(&n_search), "{n_search}");
    assert!(requests.iter().all(|request| matches!(request.op, Op::Identify | Op::Search)));
}

/// Every reference points to an earlier identify, login or logout line, in the same environment;
/// a `previous_mpid` points to a line sent from the same device.
#[test]
fn references_point_to_earlier_result_bearing_lines_of_the_same_device() {
    let requests = generate(&busy_spec(100_000));
    let mut n_previous = 0;
    for (line_idx, request) in requests.iter().enumerate() {
        let line = line_idx as u64 + 1;
        for reference in request.references() {
            assert!(reference.line >= 1 && reference.line < line, "line {line}: {reference:?}");
            let referenced = &requests[(reference.line - 1) as usize];
            assert!(referenced.op.is_result_bearing(), "line {line} refers to a {}", referenced.op);
            assert_eq!(referenced.environment, request.environment, "line {line}");
        }
        if let Some(reference) = request.previous_mpid {
            let stamp = |request: &WorkloadRequest| {
                request.known_identities.get(&IdentityType::DeviceApplicationStamp).cloned()
            };
            let referenced = &requests[(reference.line - 1) as usize];
            assert_eq!(stamp(request), stamp(referenced), "line {line}");
            n_previous += 1;
        }
        if request.op == Op::Modify {
            assert!(request.mpid.is_some() && request.identity_changes.len() == 1);
            // An email change targets the known profile: a line that carried login IDs.
            if let (Some(target), Some(_)) = (request.mpid, &request.identity_changes[0].old_value)
            {
                let referenced = &requests[(target.line - 1) as usize];
                assert!(referenced.known_identities.contains_key(&IdentityType::CustomerId));
            }
        }
    }
    assert!(n_previous > 50_000, "{n_previous}");
}

/// A device's login IDs stay with it: a browse from a logged-in device repeats the login's IDs.
#[test]
fn returning_users_send_stable_identities() {
    let requests = generate(&spec(11, 50_000));
    let mut stamps_to_customer: BTreeMap<String, String> = BTreeMap::new();
    let mut n_checked = 0;
    for request in &requests {
        let ids = &request.known_identities;
        let (Some(stamp), Some(customer)) =
            (ids.get(&IdentityType::DeviceApplicationStamp), ids.get(&IdentityType::CustomerId))
        else {
            continue;
        };
        if customer == "0" || customer.starts_with('[') {
            // Junk hides who is logged in; forget the device rather than guess.
            stamps_to_customer.remove(stamp);
            continue;
        }
        // Only a login changes who is logged in on a device.
        if let (Op::Identify, Some(previous)) = (request.op, stamps_to_customer.get(stamp)) {
            assert_eq!(previous, customer);
            n_checked += 1;
        }
        stamps_to_customer.insert(stamp.clone(), customer.clone());
    }
    assert!(n_checked > 1_000, "{n_checked}");
}

#[test]
fn streaming_a_million_requests_keeps_memory_bounded_by_users() {
    let spec = WorkloadSpec { requests: 1_000_000, users: 1_000, ..WorkloadSpec::default() };
    let mut generator = Generator::new(&spec).unwrap();
    // Rendering keeps no state (and is covered by other tests), so the decisions alone are
    // iterated here; the debug build renders a million lines too slowly for the test budget.
    let mut n_lines = 0u64;
    while let Some(draft) = generator.next_draft() {
        n_lines += 1;
        std::hint::black_box(draft);
    }
    assert_eq!(n_lines, 1_000_000);
    assert_eq!(generator.lines_generated(), 1_000_000);
    assert_eq!(generator.users_in_memory(), 1_000);
    assert!(generator.stats().churned_users > 90_000, "{:?}", generator.stats());
    assert_eq!(generator.recent.capacity(), crate::generator::REPEAT_WINDOW);
}

#[test]
fn write_then_read_round_trips() {
    let spec = busy_spec(30_000);
    let bytes = generate_bytes(&spec);
    let read: Vec<WorkloadRequest> =
        Reader::new(bytes.as_slice()).collect::<Result<_, _>>().unwrap();
    assert_eq!(read, generate(&spec));
}

#[test]
fn junk_rate_is_respected_and_only_blocked_values_are_injected() {
    let spec = WorkloadSpec { junk_rate: 0.05, ..spec(5, 100_000) };
    let requests = generate(&spec);
    let is_junk = |identity_type: IdentityType, value: &str| {
        JUNK.iter()
            .any(|&(junk_type, junk_value)| junk_type == identity_type && junk_value == value)
    };
    let n_junk = requests
        .iter()
        .filter(|request| {
            let in_identities =
                request.known_identities.iter().any(|(t, value)| is_junk(*t, value));
            let in_changes = request.identity_changes.iter().any(|change| {
                change
                    .new_value
                    .as_deref()
                    .is_some_and(|value| is_junk(change.identity_type, value))
            });
            in_identities || in_changes
        })
        .count();
    let share = n_junk as f64 / requests.len() as f64;
    assert!((share - 0.05).abs() < 0.003, "{share}");
    // A request never consists of junk alone: the device stamp or a login ID is always real.
    for request in requests.iter().filter(|request| request.op != Op::Modify) {
        let n_real =
            request.known_identities.iter().filter(|(t, value)| !is_junk(**t, value)).count();
        assert!(n_real >= 1, "{request:?}");
    }
}

#[test]
fn repeated_requests_copy_a_recent_line_with_its_request_id() {
    let spec = WorkloadSpec { repeat_request_id_rate: 0.05, ..spec(9, 50_000) };
    let bytes = generate_bytes(&spec);
    let text = std::str::from_utf8(&bytes).unwrap();
    let mut first_line_of_id: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut n_repeats = 0;
    for (line_idx, line) in text.lines().enumerate() {
        let request_id = &line[line.rfind("\"request_id\":\"").unwrap() + 14..line.len() - 2];
        match first_line_of_id.get(request_id) {
            Some(&(first_idx, first)) => {
                assert_eq!(line, first, "a repeat is the same request");
                assert!(line_idx - first_idx <= 16, "repeats follow closely");
                n_repeats += 1;
            }
            None => {
                first_line_of_id.insert(request_id, (line_idx, line));
            }
        }
    }
    let share = f64::from(n_repeats) / 50_000.0;
    assert!((share - 0.05).abs() < 0.005, "{share}");
}

#[test]
fn environments_follow_the_development_rate() {
    let spec = WorkloadSpec { development_rate: 0.2, users: 50_000, ..spec(4, 50_000) };
    let requests = generate(&spec);
    let n_development =
        requests.iter().filter(|request| request.environment == Environment::Development).count();
    let share = n_development as f64 / requests.len() as f64;
    // Users, not requests, are split, and activity is skewed: allow a wide margin.
    assert!((0.1..0.3).contains(&share), "{share}");
}

/// Pins the format: if this changes, every stored workload changes meaning. Update it only on
/// purpose, together with the example in `docs/workloads.md` (the same lines).
#[test]
fn golden_lines() {
    let spec = WorkloadSpec { seed: 42, requests: 8, users: 100, ..WorkloadSpec::default() };
    let bytes = generate_bytes(&spec);
    let expected = concat!(
        r#"{"op":"identify","environment":"production","known_identities":{"ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"request_id":"a993b632-23bd-a57b-2396-f87e0f0302e0"}"#,
        "\n",
        r#"{"op":"identify","environment":"production","known_identities":{"ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":1},"request_id":"df3290bd-3810-32af-7c0e-00bbebb5ae51"}"#,
        "\n",
        r#"{"op":"login","environment":"production","known_identities":{"customerid":"cf096fe09d542b4e7","email":"uf2f40fb0f881ae9b@example.com","ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":2},"request_id":"f527e4f3-9a69-c002-a641-7ba54e04963b"}"#,
        "\n",
        r#"{"op":"identify","environment":"production","known_identities":{"customerid":"cf096fe09d542b4e7","email":"uf2f40fb0f881ae9b@example.com","ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":3},"request_id":"dcfed837-5f4f-4ebc-2e1a-923c5f56bfa1"}"#,
        "\n",
        r#"{"op":"identify","environment":"production","known_identities":{"customerid":"cf096fe09d542b4e7","email":"uf2f40fb0f881ae9b@example.com","ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":4},"request_id":"cca809da-b3a6-1af2-92e1-d20f02edbc3e"}"#,
        "\n",
        r#"{"op":"modify","environment":"production","mpid":{"ref":5},"identity_changes":[{"identity_type":"email","old_value":"uf2f40fb0f881ae9b@example.com","new_value":"uf2f40fb0f881ae9b.1@example.com"}],"request_id":"6fd57a6d-5415-486f-697e-b480ec0b1c36"}"#,
        "\n",
        r#"{"op":"identify","environment":"production","known_identities":{"customerid":"cf096fe09d542b4e7","email":"uf2f40fb0f881ae9b.1@example.com","ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":5},"request_id":"0526ec35-c66f-5fbe-974b-95ef0f45e2d9"}"#,
        "\n",
        r#"{"op":"logout","environment":"production","known_identities":{"ios_idfa":"F3D37DFB-9CFF-5F2A-756F-93A9E77A4729","ios_idfv":"CAC53247-E02B-EC63-74DC-77CA84698F09","device_application_stamp":"f9b68fb8-86a0-9708-0873-ab8346947332"},"previous_mpid":{"ref":7},"request_id":"09e80995-69f9-4e35-c271-ef065ef63248"}"#,
        "\n",
    );
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), expected);
}

#[test]
fn reader_reports_bad_lines_with_their_number() {
    let good = r#"{"op":"identify","environment":"production","known_identities":{"email":"a@example.com"},"request_id":"r1"}"#;
    let search = r#"{"op":"search","environment":"production","known_identities":{"email":"a@example.com"},"request_id":"r2"}"#;
    let refers_to_search = r#"{"op":"identify","environment":"production","known_identities":{"email":"a@example.com"},"previous_mpid":{"ref":2},"request_id":"r3"}"#;
    let forward = r#"{"op":"logout","environment":"production","known_identities":{"email":"a@example.com"},"previous_mpid":{"ref":9},"request_id":"r4"}"#;
    let modify_without_mpid = r#"{"op":"modify","environment":"production","identity_changes":[{"identity_type":"email","old_value":null,"new_value":"b@example.com"}],"request_id":"r5"}"#;
    let unknown_type = r#"{"op":"identify","environment":"production","known_identities":{"fax":"1"},"request_id":"r6"}"#;
    let modify = r#"{"op":"modify","environment":"production","mpid":{"ref":1},"identity_changes":[{"identity_type":"email","old_value":null,"new_value":"b@example.com"}],"request_id":"r7"}"#;
    let input =
        [good, search, refers_to_search, forward, modify_without_mpid, unknown_type, modify]
            .join("\n");
    let results: Vec<_> = Reader::new(input.as_bytes()).collect();
    assert_eq!(results.len(), 7);
    assert!(results[0].is_ok() && results[1].is_ok() && results[6].is_ok());
    let message = |idx: usize| results[idx].as_ref().unwrap_err().to_string();
    assert_eq!(
        message(2),
        "line 3: reference to line 2, which is not an identify, login or logout"
    );
    assert_eq!(
        message(3),
        "line 4: reference to line 9 is not to an earlier line (lines are numbered from 1)"
    );
    assert_eq!(message(4), "line 5: modify needs `mpid` (a reference to an earlier line)");
    assert!(message(5).starts_with("line 6: not a workload request: unknown identity type `fax`"));
    let error = results[5].as_ref().unwrap_err();
    assert!(matches!(error.kind, ReadErrorKind::Json(_)) && error.line == 6);

    let parsed = read_jsonl_line(7, modify).unwrap();
    assert_eq!(parsed.mpid, Some(LineRef { line: 1 }));
    assert!(
        read_jsonl_line(
            1,
            r#"{"op":"identify","environment":"production","request_id":"x","extra":1}"#
        )
        .is_err()
    );
    let with_null =
        r#"{"op":"identify","environment":"production","previous_mpid":null,"request_id":"x"}"#;
    assert_eq!(read_jsonl_line(1, with_null).unwrap().previous_mpid, None);
}

//! The engine end to end: the signup flow of the IDSync guide, idempotency, guardrails, worlds,
//! durability of answers across a reopen.

use std::sync::Arc;

use idgraph::engine::{Command, Engine, EngineError, ManualClock, RequestMeta};
use idgraph::log::Log;
use idgraph::model::{
    AdminCorrection, Environment, Identity, IdentityType, Mpid, Operation, Seq, Timestamp,
};
use idgraph::query::{
    Answer, ErrorCode, IdentityOp, IdentityQuery, ResolvedAnswer, ResolverConfig, Strategy,
};
use idgraph_test_support::{
    CountingMpids, engine_config, in_memory_engine, manual_clock, meta, resolver_config,
};

/// The seed document's priority (customer ID, email, username, phone number, device stamp) under
/// Profile Conversion.
fn signup_config() -> ResolverConfig {
    resolver_config(Strategy::ProfileConversion)
}

fn clock() -> Box<ManualClock> {
    Box::new(manual_clock(1_000))
}

fn query(
    op: IdentityOp,
    identities: &[(IdentityType, &str)],
    previous_mpid: Option<Mpid>,
) -> Command {
    let known_identities = identities.iter().map(|(t, v)| Identity::new(*t, *v)).collect();
    Command::Identity(IdentityQuery { op, known_identities, previous_mpid })
}

fn resolved(res: Result<Answer, EngineError>) -> ResolvedAnswer {
    match res {
        Ok(Answer::Resolved(answer)) => answer,
        other => panic!("expected a profile, got {other:?}"),
    }
}

/// A line of a generated workload as an engine request, with `previous_mpid` and the modify target
/// taken from the answers so far (`answers[i]`: what line `i + 1` got). `None`: a modify whose
/// target line got no profile.
fn workload_request(
    request: &idgraph_workload::WorkloadRequest,
    answers: &[Option<Mpid>],
) -> Option<(RequestMeta, Command)> {
    use idgraph_workload::Op;
    let line = |reference: Option<idgraph_workload::LineRef>| {
        reference.and_then(|r| answers.get(r.line as usize - 1).copied().flatten())
    };
    let command = match request.op {
        Op::Modify => Command::Modify {
            mpid: line(request.mpid)?,
            identity_changes: request.identity_changes.clone(),
        },
        op => Command::Identity(IdentityQuery {
            op: match op {
                Op::Login => IdentityOp::Login,
                Op::Logout => IdentityOp::Logout,
                Op::Search => IdentityOp::Search,
                _ => IdentityOp::Identify,
            },
            known_identities: request.identities(),
            previous_mpid: line(request.previous_mpid),
        }),
    };
    let meta = RequestMeta {
        workspace: "shop".into(),
        environment: request.environment,
        request_id: Some(request.request_id.clone()),
    };
    Some((meta, command))
}

const DAS: (IdentityType, &str) = (IdentityType::DeviceApplicationStamp, "das-1");
const EMAIL: (IdentityType, &str) = (IdentityType::Email, "ed.hyde@example.com");

/// The five stages of the seed's example, step by step (Profile Conversion).
#[test]
fn signup_flow_of_the_identify_users_guide() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log")).unwrap();
    let (engine, _) = Engine::with_log(
        log,
        engine_config(signup_config()),
        clock(),
        Box::new(CountingMpids::default()),
    )
    .unwrap();
    let prod = meta(Environment::Production, None);

    // 1-3. A new user opens the app: no login ID, nothing matches: a new anonymous profile.
    let first = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    assert!(first.created);
    assert!(!first.is_logged_in);

    // Browsing: every identify from the same device returns the same anonymous profile.
    for _ in 0..3 {
        let again =
            resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], Some(first.mpid))));
        assert_eq!(again.mpid, first.mpid);
        assert_eq!(again.matched_identities, [Identity::new(DAS.0, DAS.1)]);
    }

    // 4-5. Signup with a login ID: the same MPID, now known.
    let signup =
        resolved(engine.handle(&prod, query(IdentityOp::Login, &[DAS, EMAIL], Some(first.mpid))));
    assert_eq!(signup.mpid, first.mpid, "profile conversion keeps the anonymous MPID");
    assert!(signup.is_logged_in);
    assert!(!signup.created);

    // The login ID alone now finds the known profile; the device alone no longer does.
    let search = resolved(engine.handle(&prod, query(IdentityOp::Search, &[EMAIL], None)));
    assert_eq!(search.mpid, first.mpid);
    let device_only = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    assert_ne!(device_only.mpid, first.mpid, "login-ID protection");

    // Every recorded request is in the log, in order, with what it decided.
    let operations: Vec<&str> = engine
        .log()
        .read_range(Seq::ZERO, 100)
        .unwrap()
        .iter()
        .map(|(_, e)| e.request.operation.name())
        .collect();
    assert_eq!(operations, ["identify", "identify", "identify", "identify", "login", "identify"]);

    // After a restart the same requests get the same answers.
    engine.close().unwrap();
    let (engine, report) = Engine::open(dir.path(), engine_config(signup_config())).unwrap();
    assert_eq!(report.n_replayed, 6);
    let after = resolved(engine.handle(&prod, query(IdentityOp::Login, &[DAS, EMAIL], None)));
    assert_eq!(after.mpid, first.mpid);
}

#[test]
fn a_repeated_request_id_gets_the_first_answer_and_appends_nothing_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(dir.path(), engine_config(signup_config())).unwrap();
    let with_id = meta(Environment::Production, Some("req-1"));
    let first = resolved(engine.handle(&with_id, query(IdentityOp::Identify, &[DAS], None)));
    let n_entries = engine.log().last_seq();
    let again = resolved(engine.handle(&with_id, query(IdentityOp::Identify, &[DAS], None)));
    assert_eq!(again, first, "same answer, including `created`");
    assert_eq!(engine.log().last_seq(), n_entries, "nothing appended");
    // A different id is a new request.
    let other = resolved(engine.handle(
        &meta(Environment::Production, Some("req-2")),
        query(IdentityOp::Identify, &[DAS], None),
    ));
    assert_eq!(other.mpid, first.mpid);
    assert!(!other.created);
    engine.close().unwrap();

    let (engine, _) = Engine::open(dir.path(), engine_config(signup_config())).unwrap();
    let replayed = resolved(engine.handle(&with_id, query(IdentityOp::Identify, &[DAS], None)));
    assert_eq!(replayed, first, "the idempotency index is rebuilt from the log");
    assert_eq!(engine.log().last_seq(), Seq(2));
}

#[test]
fn environments_and_scopes_are_separate_worlds() {
    let engine = in_memory_engine(signup_config());
    let prod = resolved(engine.handle(
        &meta(Environment::Production, None),
        query(IdentityOp::Identify, &[DAS, EMAIL], None),
    ));
    let dev = resolved(engine.handle(
        &meta(Environment::Development, None),
        query(IdentityOp::Identify, &[DAS, EMAIL], None),
    ));
    assert_ne!(prod.mpid, dev.mpid);
    assert!(dev.created);
    let search = engine.handle(
        &meta(Environment::Development, None),
        query(IdentityOp::Search, &[(IdentityType::Email, "only-in-prod@x")], None),
    );
    assert_eq!(search, Ok(Answer::NotFound));
    // modify addresses the MPID within the request's world only.
    let change = idgraph::model::IdentityChange {
        identity_type: IdentityType::Email,
        old_value: None,
        new_value: Some("z@x".into()),
    };
    let err = engine
        .handle(
            &meta(Environment::Development, None),
            Command::Modify { mpid: prod.mpid, identity_changes: vec![change] },
        )
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Request(e) if e.code == ErrorCode::LookupError && e.message.contains("not found")),
        "{err}"
    );
}

#[test]
fn blocked_placeholder_values_never_link_profiles() {
    let engine = in_memory_engine(signup_config());
    let prod = meta(Environment::Production, None);
    // Two different devices both send the junk email "undefined": they must not share a profile.
    let a = resolved(engine.handle(
        &prod,
        query(
            IdentityOp::Identify,
            &[(IdentityType::DeviceApplicationStamp, "a"), (IdentityType::Email, "undefined")],
            None,
        ),
    ));
    let b = resolved(engine.handle(
        &prod,
        query(
            IdentityOp::Identify,
            &[(IdentityType::DeviceApplicationStamp, "b"), (IdentityType::Email, "UNDEFINED")],
            None,
        ),
    ));
    assert_ne!(a.mpid, b.mpid);
    assert!(!a.is_logged_in, "a blocked login ID does not make a profile known");
    let holds_junk =
        engine.with_projection(|p| p.identities_of_sorted(p.profile_id(a.mpid).unwrap()));
    assert_eq!(holds_junk, [Identity::new(IdentityType::DeviceApplicationStamp, "a")]);
    // The request is still recorded as sent, for audit.
    let (_, entry) = engine.log().read_range(Seq(1), 1).unwrap().remove(0);
    let Operation::Identify(request) = entry.request.operation else { panic!() };
    assert!(request.known_identities.contains(&Identity::new(IdentityType::Email, "undefined")));
    // A request with nothing but junk is a clear 400.
    let err = engine
        .handle(&prod, query(IdentityOp::Identify, &[(IdentityType::Email, "null")], None))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Request(e) if e.code == ErrorCode::LookupError && e.message.contains("blocked")),
        "{err}"
    );
    // An over-long value is a clear 400 too.
    let long = "x".repeat(2_000);
    let err = engine
        .handle(&prod, query(IdentityOp::Identify, &[(IdentityType::Email, &long)], None))
        .unwrap_err();
    assert!(err.to_string().contains("2000 bytes"), "{err}");
}

#[test]
fn a_profile_gains_at_most_the_configured_values_per_type() {
    let mut resolver = ResolverConfig::new(
        Strategy::BestMatch,
        vec![IdentityType::Email, IdentityType::IosIdfv],
        &[],
        &[],
        &[],
    )
    .unwrap();
    resolver.guardrails.identities_per_type_max = 3;
    let engine = in_memory_engine(resolver);
    let prod = meta(Environment::Production, None);
    let device = (IdentityType::IosIdfv, "shared-kiosk");
    let first = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[device], None)));
    for n in 0..10 {
        let email = format!("visitor{n}@example.com");
        let answer = resolved(engine.handle(
            &prod,
            query(IdentityOp::Identify, &[device, (IdentityType::Email, &email)], None),
        ));
        assert_eq!(answer.mpid, first.mpid, "best match: the shared device wins");
    }
    let n_emails = engine.with_projection(|p| {
        p.identities_of_sorted(p.profile_id(first.mpid).unwrap())
            .iter()
            .filter(|i| i.identity_type == IdentityType::Email)
            .count()
    });
    assert_eq!(n_emails, 3);
}

#[test]
fn answers_follow_the_durable_log_through_reopen_and_a_failed_storage_poisons() {
    let (log, faults) = Log::in_memory_with_faults();
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000), 1_000));
    let (engine, _) = Engine::with_log(
        log,
        engine_config(signup_config()),
        Box::new(Arc::clone(&clock)),
        Box::new(CountingMpids::default()),
    )
    .unwrap();
    let prod = meta(Environment::Production, None);
    resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    faults.fail_writes();
    let err = engine
        .handle(
            &prod,
            query(IdentityOp::Identify, &[(IdentityType::DeviceApplicationStamp, "new")], None),
        )
        .unwrap_err();
    // The failure keeps its kind: the log's, poisoned by the I/O error (503), not a client's.
    assert!(matches!(err, EngineError::Log(idgraph::log::Error::Poisoned { .. })), "{err:?}");
    // Halted: even requests that would change nothing are refused, naming the first failure.
    let err = engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)).unwrap_err();
    let names_cause = matches!(&err, EngineError::Halted { cause } if cause.contains("injected"));
    assert!(names_cause, "{err:?}");
    let batch = vec![(prod.clone(), query(IdentityOp::Identify, &[DAS], None))];
    assert!(matches!(engine.handle_batch(batch)[..], [Err(EngineError::Halted { .. })]));

    // A batch whose write fails answers nothing but the failure, even for the requests that
    // changed nothing: they were decided after entries that are now lost.
    let (log, faults) = Log::in_memory_with_faults();
    let (engine, _) = Engine::with_log(
        log,
        engine_config(signup_config()),
        Box::new(clock),
        Box::new(CountingMpids::default()),
    )
    .unwrap();
    resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    faults.fail_writes();
    let fresh =
        |value| query(IdentityOp::Identify, &[(IdentityType::DeviceApplicationStamp, value)], None);
    let batch = vec![
        (prod.clone(), fresh("new-1")),
        (prod.clone(), query(IdentityOp::Identify, &[DAS], None)),
        (prod.clone(), fresh("new-2")),
    ];
    let answers = engine.handle_batch(batch);
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|a| matches!(a, Err(EngineError::Log(_)))), "{answers:?}");
}

/// History and explanation of the signup flow render as expected: the anonymous browsing, then the
/// login that made the same MPID known.
#[test]
fn history_and_explain_of_the_signup_flow() {
    use idgraph::engine::audit;
    use idgraph::query::history::ProfileHistoryBuilder;
    use std::ops::ControlFlow;

    let engine = in_memory_engine(signup_config());
    let prod = meta(Environment::Production, Some("r1"));
    let first = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    resolved(engine.handle(
        &meta(Environment::Production, Some("r2")),
        query(IdentityOp::Identify, &[DAS], Some(first.mpid)),
    ));
    resolved(engine.handle(
        &meta(Environment::Production, Some("r3")),
        query(IdentityOp::Login, &[DAS, EMAIL], Some(first.mpid)),
    ));
    resolved(engine.handle(
        &meta(Environment::Production, Some("r4")),
        query(IdentityOp::Identify, &[DAS], None),
    ));
    engine.log().flush().unwrap();

    let mut builder = ProfileHistoryBuilder::new(first.mpid, signup_config().login_ids);
    engine
        .log()
        .scan(Seq::ZERO, |seq, entry| {
            builder.feed(seq, &entry);
            ControlFlow::Continue(())
        })
        .unwrap();
    let history = builder.finish();
    assert_eq!(history.became_known().map(|step| step.seq), Some(Seq(3)));
    assert_eq!(
        history.to_string(),
        "history of 1
  #1 2023-11-14T22:13:20.000000Z identify {device_application_stamp=das-1} -> 1: created, +device_application_stamp=das-1
  #2 2023-11-14T22:13:20.001000Z identify {device_application_stamp=das-1} -> 1: seen
  #3 2023-11-14T22:13:20.002000Z login {device_application_stamp=das-1, email=ed.hyde@example.com} -> 1: +email=ed.hyde@example.com, became known via email=ed.hyde@example.com
became known at #3 (login), after 2 anonymous step(s)"
    );

    let explained = engine.audit("shop").unwrap().explain_entry(Seq(4)).unwrap();
    assert!(explained.agrees);
    assert_eq!(
        explained.explanation.to_string(),
        "identify under profile_conversion (priority customerid > email > other > mobile_number > device_application_stamp)
  1. device_application_stamp=das-1: held by [1], login-ID protected [1] -> skipped
  rule: no eligible profile matched: new profile
  answer: 2 (new), logged in: false"
    );
    // As of the first entry, the profile was anonymous with the device only.
    let as_of = audit::past::projection_as_of(engine.log(), Seq(1)).unwrap();
    let profile = as_of.profile_id(first.mpid).unwrap();
    assert_eq!(as_of.identities_of_sorted(profile), [Identity::new(DAS.0, DAS.1)]);
}

/// A wrong link is reversed by compensating events: detach and split are recorded, history shows
/// both the link and its reversal, and a replay of the log gives the same graph as live.
#[test]
fn admin_split_and_detach_are_recorded_and_replay_to_the_same_graph() {
    use idgraph::engine::load_projection;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log")).unwrap();
    let (engine, _) = Engine::with_log(
        log,
        engine_config(signup_config()),
        clock(),
        Box::new(CountingMpids::default()),
    )
    .unwrap();
    let prod = meta(Environment::Production, None);
    // A shared kiosk device linked two people's logins into one profile's history.
    let profile = resolved(engine.handle(
        &prod,
        query(IdentityOp::Login, &[DAS, EMAIL, (IdentityType::Other, "hyde")], None),
    ));
    let admin = |command| engine.handle(&prod, command);
    let err = admin(Command::AdminSplit(AdminCorrection {
        mpid: profile.mpid,
        identities: vec![Identity::new(IdentityType::Email, "nobody@x")],
        actor: "ops".into(),
        reason: "test".into(),
    }))
    .unwrap_err();
    assert!(err.to_string().contains("does not hold"), "{err}");
    let split = admin(Command::AdminSplit(AdminCorrection {
        mpid: profile.mpid,
        identities: vec![Identity::new(IdentityType::Other, "hyde")],
        actor: "ops@example.com".into(),
        reason: "two people on one kiosk".into(),
    }))
    .unwrap();
    let Answer::Admin { new_mpid: Some(new_mpid) } = split else { panic!("{split:?}") };
    admin(Command::AdminDetach(AdminCorrection {
        mpid: profile.mpid,
        identities: vec![Identity::new(DAS.0, DAS.1)],
        actor: "ops".into(),
        reason: "shared device".into(),
    }))
    .unwrap();

    let holdings = |mpid: Mpid| {
        engine.with_projection(|p| p.identities_of_sorted(p.profile_id(mpid).unwrap()))
    };
    assert_eq!(holdings(profile.mpid), [Identity::new(EMAIL.0, EMAIL.1)]);
    assert_eq!(holdings(new_mpid), [Identity::new(IdentityType::Other, "hyde")]);
    // The login ID now finds each person separately.
    let hyde = resolved(
        engine.handle(&prod, query(IdentityOp::Login, &[(IdentityType::Other, "hyde")], None)),
    );
    assert_eq!(hyde.mpid, new_mpid);

    let live = engine.with_projection(|p| (p.running_digest(), p.content_digest()));
    engine.log().flush().unwrap();
    let (replayed, _) = load_projection(engine.log()).unwrap();
    assert_eq!((replayed.running_digest(), replayed.content_digest()), live);
    let operations: Vec<&str> = engine
        .log()
        .read_range(Seq::ZERO, 10)
        .unwrap()
        .iter()
        .map(|(_, e)| e.request.operation.name())
        .collect();
    assert_eq!(operations, ["login", "admin_split", "admin_detach", "login"]);
}

/// What-if: the same configuration reports no difference; Profile Link instead of Profile
/// Conversion gives the signup's login a new known profile, as the spec predicts (§3.3).
#[test]
fn what_if_profile_link_instead_of_conversion_on_the_signup_flow() {
    use idgraph::engine::whatif::what_if;
    let engine = in_memory_engine(signup_config());
    let prod = meta(Environment::Production, None);
    let first = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], Some(first.mpid))));
    let signup =
        resolved(engine.handle(&prod, query(IdentityOp::Login, &[DAS, EMAIL], Some(first.mpid))));
    resolved(engine.handle(&prod, query(IdentityOp::Login, &[EMAIL], None)));
    engine.log().flush().unwrap();

    let same = what_if(engine.log(), "shop", &signup_config()).unwrap();
    assert_eq!((same.n_requests, same.n_different_mpid, same.n_rejected), (4, 0, 0));
    assert_eq!(same.n_profiles_alternative, same.n_profiles_recorded);

    let mut link = signup_config();
    link.strategy = Strategy::ProfileLink;
    let report = what_if(engine.log(), "shop", &link).unwrap();
    // The signup login and the later login both get the new known profile instead of the
    // converted anonymous one; one more profile exists.
    assert_eq!(report.n_different_mpid, 2, "{report:?}");
    assert_eq!(report.n_profiles_alternative, report.n_profiles_recorded + 1);
    let example = &report.examples[0];
    assert_eq!((example.seq, example.operation, example.recorded), (Seq(3), "login", signup.mpid));
    assert!(
        example.explanation.contains("never-seen login ID creates a new known profile"),
        "{}",
        example.explanation
    );
}

/// As-of at every sequence of a scenario equals a projection folded up to that sequence, with
/// and without snapshots on the way.
#[test]
fn as_of_every_sequence_equals_a_fold_up_to_it() {
    use idgraph::engine::audit;
    use idgraph::projection::Projection;
    use std::ops::ControlFlow;

    let engine = in_memory_engine(signup_config());
    let prod = meta(Environment::Production, None);
    for n in 0..40 {
        let device = (IdentityType::DeviceApplicationStamp, format!("d{}", n % 7));
        let email = format!("u{}@example.com", n % 5);
        let identities: Vec<(IdentityType, &str)> = if n % 3 == 0 {
            vec![(device.0, device.1.as_str()), (IdentityType::Email, email.as_str())]
        } else {
            vec![(device.0, device.1.as_str())]
        };
        let op = [IdentityOp::Identify, IdentityOp::Login, IdentityOp::Logout][n % 3];
        engine.handle(&prod, query(op, &identities, None)).unwrap();
        if n == 15 || n == 30 {
            engine.snapshot().unwrap();
        }
    }
    engine.log().flush().unwrap();
    let last = engine.log().last_seq();
    let mut folded = Projection::new();
    let mut expected = vec![folded.content_digest()];
    engine
        .log()
        .scan(Seq::ZERO, |seq, entry| {
            folded.apply(seq, &entry).unwrap();
            expected.push(folded.content_digest());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(expected.len() as u64, last.0 + 1);
    for seq in 0..=last.0 {
        let as_of = audit::past::projection_as_of(engine.log(), Seq(seq)).unwrap();
        assert_eq!(as_of.last_seq(), Seq(seq));
        assert_eq!(as_of.content_digest(), expected[seq as usize], "as of {seq}");
    }
}

/// The indexed as-of (only the entries that touched the profiles asked about, folded into a
/// partial projection) equals a full fold, at every sequence of a generated workload with
/// modifies, aliases and splits: each profile's view, identities and aliases, and the
/// re-decision of every identity request against the state before it.
#[test]
fn indexed_as_of_equals_a_full_fold_at_every_sequence_of_a_generated_workload() {
    use idgraph::engine::audit;
    use idgraph::projection::Projection;
    use idgraph::query::AliasQuery;
    use idgraph_workload::{Generator, WorkloadSpec};
    use std::ops::ControlFlow;

    let engine = in_memory_engine(signup_config());
    let spec = WorkloadSpec { seed: 5, requests: 1_500, users: 150, ..WorkloadSpec::default() };
    let mut answers: Vec<Option<Mpid>> = Vec::new();
    for (n, request) in Generator::new(&spec).unwrap().enumerate() {
        let Some((meta, command)) = workload_request(&request, &answers) else {
            answers.push(None);
            continue;
        };
        let answer = match engine.handle(&meta, command) {
            Ok(Answer::Resolved(answer)) => Some(answer.mpid),
            _ => None,
        };
        answers.push(answer);
        let admin = RequestMeta { request_id: None, ..meta };
        // Now and then an alias between two recent profiles, or a split of one.
        let recent: Vec<Mpid> = answers.iter().rev().flatten().take(40).copied().collect();
        if n % 97 == 50 && recent.len() > 10 {
            let alias =
                AliasQuery { source: recent[0], destination: recent[9], start: None, end: None };
            let _ = engine.handle(&admin, Command::Alias(alias));
        }
        if n % 101 == 60 {
            let mpid = recent[3];
            let identities = engine.with_projection(|p| {
                p.profile_id(mpid).map(|id| p.identities_of_sorted(id)).unwrap_or_default()
            });
            if identities.len() > 1 {
                let split = AdminCorrection {
                    mpid,
                    identities: identities[..1].to_vec(),
                    actor: "test".into(),
                    reason: "split".into(),
                };
                engine.handle(&admin, Command::AdminSplit(split)).unwrap();
            }
        }
    }
    engine.log().flush().unwrap();
    let workspace = engine.workspace("shop").unwrap().clone();

    let view = |p: &Projection, mpid: Mpid| {
        p.profile_id(mpid).map(|id| {
            let v = p.profile(id);
            let flags = (v.was_alias_source, v.was_alias_destination);
            (v.created, v.last_seen, v.types, v.n_identities, flags, p.identities_of_sorted(id))
        })
    };
    let mut full = Projection::new();
    let mut created: Vec<Mpid> = Vec::new();
    let (mut n_checked, mut n_explained, mut n_aliases, mut n_splits) = (0, 0, 0, 0);
    engine
        .log()
        .scan(Seq::ZERO, |seq, entry| {
            full.apply(seq, &entry).unwrap();
            let mut asked: Vec<Mpid> = idgraph::log::index_keys(&entry)
                .into_iter()
                .filter_map(|key| match key {
                    idgraph::log::IndexKey::ProfileChanged(m)
                    | idgraph::log::IndexKey::ProfileSeen(m) => Some(m),
                    _ => None,
                })
                .collect();
            for event in &entry.events {
                if let idgraph::model::Event::ProfileCreated { mpid } = event {
                    created.push(*mpid);
                }
            }
            // And a profile created earlier, not touched now.
            if !created.is_empty() {
                asked.push(created[(seq.0 as usize * 7919) % created.len()]);
            }
            n_aliases += usize::from(matches!(entry.request.operation, Operation::Alias { .. }));
            n_splits += usize::from(matches!(entry.request.operation, Operation::AdminSplit(_)));
            for mpid in asked {
                let partial =
                    audit::past::profiles_as_of(engine.log(), &workspace.scope, &[mpid], seq)
                        .unwrap();
                assert_eq!(view(&partial, mpid), view(&full, mpid), "{mpid} as of {seq}");
                assert_eq!(
                    partial.aliases_from(mpid),
                    full.aliases_from(mpid),
                    "{mpid} as of {seq}"
                );
                n_checked += 1;
            }
            match engine.audit(&workspace.name).unwrap().explain_entry(seq) {
                Ok(explained) => {
                    assert!(explained.agrees, "entry {seq}:\n{}", explained.explanation);
                    n_explained += 1;
                }
                Err(EngineError::Invalid(_)) => {} // Not an identity request.
                Err(err) => panic!("entry {seq}: {err}"),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(n_checked > 2_500 && n_explained > 1_000, "{n_checked} views, {n_explained} explained");
    assert!(n_aliases > 5 && n_splits > 3, "{n_aliases} aliases, {n_splits} splits");
}

/// A pipelined batch is handled exactly as the same requests one at a time: same answers, same
/// log, same graph; and a batch's answers come back only once its entries are durable.
#[test]
fn a_batch_is_handled_like_its_requests_one_by_one() {
    use idgraph_workload::{Generator, WorkloadRequest, WorkloadSpec};

    let spec = WorkloadSpec { seed: 9, requests: 3_000, users: 300, ..WorkloadSpec::default() };
    let requests: Vec<WorkloadRequest> = Generator::new(&spec).unwrap().collect();
    let mpid_of = |answer: &Result<Answer, EngineError>| match answer {
        Ok(Answer::Resolved(answer)) => Some(answer.mpid),
        _ => None,
    };

    let one_by_one = in_memory_engine(signup_config());
    let mut expected = Vec::new();
    let mut answers: Vec<Option<Mpid>> = Vec::new();
    for request in &requests {
        let Some((meta, command)) = workload_request(request, &answers) else {
            answers.push(None);
            expected.push(Ok(Answer::NotFound));
            continue;
        };
        let answer = one_by_one.handle(&meta, command);
        answers.push(mpid_of(&answer));
        expected.push(answer);
    }

    let batched = in_memory_engine(signup_config());
    let mut got: Vec<Result<Answer, EngineError>> = Vec::new();
    let mut answers: Vec<Option<Mpid>> = Vec::new();
    let mut next = 0;
    while next < requests.len() {
        // A batch of up to 64, ending before a request that needs an answer from it.
        let mut end = next + 1;
        while end < requests.len()
            && end - next < 64
            && requests[end].references().all(|r| (r.line as usize) <= next)
        {
            end += 1;
        }
        let commands: Vec<_> =
            requests[next..end].iter().map(|r| workload_request(r, &answers)).collect();
        let batch = commands.iter().flatten().cloned().collect();
        let durable_before = batched.log().durable_seq();
        let mut answered = batched.handle_batch(batch).into_iter();
        // A modify without a target is skipped on both sides.
        let results: Vec<_> = commands
            .iter()
            .map(|c| match c {
                Some(_) => answered.next().unwrap(),
                None => Ok(Answer::NotFound),
            })
            .collect();
        assert_eq!(results.len(), end - next);
        if results.iter().any(|r| matches!(r, Ok(Answer::Resolved(a)) if a.created)) {
            assert!(batched.log().durable_seq() > durable_before, "answered before durable");
        }
        for result in results {
            answers.push(mpid_of(&result));
            got.push(result);
        }
        next = end;
    }
    assert_eq!(got, expected);
    one_by_one.log().flush().unwrap();
    batched.log().flush().unwrap();
    assert_eq!(
        batched.log().read_range(Seq::ZERO, usize::MAX).unwrap(),
        one_by_one.log().read_range(Seq::ZERO, usize::MAX).unwrap()
    );
    let digest = |engine: &Engine| engine.with_projection(|p| p.content_digest());
    assert_eq!(digest(&batched), digest(&one_by_one));
    assert!(got.iter().filter(|r| r.is_ok()).count() > 2_500);
}

#[test]
fn a_request_id_reused_for_another_request_is_refused_and_records_nothing() {
    let engine = in_memory_engine(signup_config());
    let with_id = meta(Environment::Production, Some("req-1"));
    let first = resolved(engine.handle(&with_id, query(IdentityOp::Identify, &[DAS], None)));
    // A retry of the same request gets the same answer and records nothing.
    let again = resolved(engine.handle(&with_id, query(IdentityOp::Identify, &[DAS], None)));
    assert_eq!(again, first);
    assert_eq!(engine.log().last_seq(), Seq(1));
    // The same id for a modify (or a login, or identify with other identities) is a conflict,
    // naming the operation the id was first used for; nothing is recorded or applied.
    let add = idgraph::model::IdentityChange {
        identity_type: IdentityType::Email,
        old_value: None,
        new_value: Some("x@example.com".into()),
    };
    let modify = Command::Modify { mpid: first.mpid, identity_changes: vec![add.clone()] };
    let login = query(IdentityOp::Login, &[DAS, EMAIL], Some(first.mpid));
    let other = query(IdentityOp::Identify, &[(IdentityType::DeviceApplicationStamp, "d2")], None);
    for command in [modify, login, other] {
        let err = engine.handle(&with_id, command).unwrap_err();
        assert!(
            matches!(&err, EngineError::RequestIdReused { request_id, operation: "identify" } if request_id == "req-1"),
            "{err:?}"
        );
        assert!(err.is_client_error());
    }
    assert_eq!(engine.log().last_seq(), Seq(1));
    // Under a new id the modify goes through.
    let modify = Command::Modify { mpid: first.mpid, identity_changes: vec![add] };
    assert!(engine.handle(&meta(Environment::Production, Some("req-2")), modify).is_ok());
    assert_eq!(engine.log().last_seq(), Seq(2));
}

#[test]
fn an_overlong_request_id_is_refused() {
    let engine = in_memory_engine(signup_config());
    let long = "r".repeat(129);
    let err = engine
        .handle(
            &meta(Environment::Production, Some(&long)),
            query(IdentityOp::Identify, &[DAS], None),
        )
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Request(e) if e.code == ErrorCode::InvalidData && e.message.contains("at most 128")),
        "{err:?}"
    );
    assert_eq!(engine.log().last_seq(), Seq::ZERO);
    let ok = "r".repeat(128);
    resolved(engine.handle(
        &meta(Environment::Production, Some(&ok)),
        query(IdentityOp::Identify, &[DAS], None),
    ));
}

#[test]
fn a_modify_cannot_exceed_the_per_type_identity_cap() {
    let engine = in_memory_engine(signup_config());
    let prod = meta(Environment::Production, None);
    let profile = resolved(engine.handle(&prod, query(IdentityOp::Identify, &[DAS], None)));
    let add = |value: String| idgraph::model::IdentityChange {
        identity_type: IdentityType::MobileNumber,
        old_value: None,
        new_value: Some(value),
    };
    // 33 values of one type in one modify: the cap is 32, so the whole modify is refused.
    let changes: Vec<_> = (0..33).map(|n| add(format!("+1555000{n:04}"))).collect();
    let err = engine
        .handle(&prod, Command::Modify { mpid: profile.mpid, identity_changes: changes.clone() })
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Request(e) if e.code == ErrorCode::LookupError && e.message.contains("more than 32")),
        "{err:?}"
    );
    assert_eq!(engine.log().last_seq(), Seq(1));
    // 32 are fine; one more in a later modify is refused; replacing one is fine.
    engine
        .handle(
            &prod,
            Command::Modify { mpid: profile.mpid, identity_changes: changes[..32].to_vec() },
        )
        .unwrap();
    let one_more =
        Command::Modify { mpid: profile.mpid, identity_changes: vec![changes[32].clone()] };
    assert!(engine.handle(&prod, one_more).is_err());
    let replace = idgraph::model::IdentityChange {
        identity_type: IdentityType::MobileNumber,
        old_value: Some("+15550000000".into()),
        new_value: Some("+15559999999".into()),
    };
    engine
        .handle(&prod, Command::Modify { mpid: profile.mpid, identity_changes: vec![replace] })
        .unwrap();
    let n_numbers = engine.with_projection(|p| {
        let id = p.profile_id(profile.mpid).unwrap();
        p.n_identities_of_type(id, IdentityType::MobileNumber)
    });
    assert_eq!(n_numbers, 32);
}

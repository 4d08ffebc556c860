//! The submission pipeline (`idgraph_engine::Pipeline`): requests from many threads decided in groups
//! by one writer, each answered once its group is durable, the same answers as one-by-one handling,
//! a full queue refused at once, and every queued request answered when the pipeline closes.

use std::sync::Arc;

use idgraph::engine::{Command, Engine, EngineError, Pipeline, RequestMeta};
use idgraph::model::{Environment, Identity, IdentityType, Seq};
use idgraph::projection::Projection;
use idgraph::query::{Answer, IdentityOp, IdentityQuery, Strategy};
use idgraph_test_support::{engine_config, in_memory_engine, meta, resolver_config};

fn identify(device: &str, email: Option<&str>) -> Command {
    let mut known_identities = vec![Identity::new(IdentityType::DeviceApplicationStamp, device)];
    let op = match email {
        Some(email) => {
            known_identities.push(Identity::new(IdentityType::Email, email));
            IdentityOp::Login
        }
        None => IdentityOp::Identify,
    };
    Command::Identity(IdentityQuery { op, known_identities, previous_mpid: None })
}

fn open(dir: &std::path::Path) -> Arc<Engine> {
    let config = engine_config(resolver_config(Strategy::ProfileConversion));
    Arc::new(Engine::open(dir, config).unwrap().0)
}

#[test]
fn many_threads_get_durable_answers_decided_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let pipeline = Pipeline::start(Arc::clone(&engine), 4_096).unwrap();
    let n_threads = 8;
    let n_each = 300;
    let answers: Vec<(String, Answer)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n_threads)
            .map(|thread| {
                let pipeline = &pipeline;
                scope.spawn(move || {
                    let mut answers = Vec::new();
                    for n in 0..n_each {
                        let device = format!("d-{thread}-{n}");
                        let email = format!("u{thread}-{n}@example.com");
                        // An anonymous visit, then a login on the same device.
                        for command in [identify(&device, None), identify(&device, Some(&email))] {
                            let ticket = pipeline
                                .submit(meta(Environment::Production, None), command)
                                .unwrap();
                            answers.push((device.clone(), ticket.wait().unwrap()));
                        }
                    }
                    answers
                })
            })
            .collect();
        threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
    });
    // The indexer follows the log on its own thread: with no reader asking, it catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while engine.log().indexed_seq() < engine.log().last_seq() {
        assert!(std::time::Instant::now() < deadline, "the indexer did not catch up");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pipeline.close();
    let stats = engine.log().stats();
    assert!(
        stats.n_writes < stats.n_entries_written,
        "commit groups of several entries: {stats:?}"
    );
    // Every login converted its device's anonymous profile: both answers name the same MPID.
    for pair in answers.chunks(2) {
        let [(_, Answer::Resolved(visit)), (_, Answer::Resolved(login))] = pair else {
            panic!("{pair:?}")
        };
        assert_eq!(visit.mpid, login.mpid, "{pair:?}");
        assert!(login.is_logged_in);
    }
    let n_requests = (n_threads * n_each * 2) as u64;
    assert_eq!(engine.log().last_seq(), Seq(n_requests));
    // Every answered request is in the log: reopened, it holds every entry and folds to the live
    // graph. (That no answer comes before its entry is durable is the fault test below.)
    let live = engine.with_projection(|projection| projection.content_digest());
    drop(engine);
    let reopened = open(dir.path());
    assert_eq!(reopened.log().last_seq(), Seq(n_requests));
    let mut replayed = Projection::new();
    idgraph::engine::replay_into(reopened.log(), &mut replayed).unwrap();
    assert_eq!(replayed.content_digest(), live);
}

#[test]
fn a_full_queue_is_refused_at_once_and_the_rest_is_answered() {
    let engine = Arc::new(in_memory_engine(resolver_config(Strategy::ProfileConversion)));
    let pipeline = Pipeline::start(Arc::clone(&engine), 2).unwrap();
    // While a reader holds the projection, the writer cannot decide: the queue fills.
    let (tickets, n_overloaded) = engine.with_projection(|_| {
        let mut tickets = Vec::new();
        let mut n_overloaded = 0;
        for n in 0..2_000 {
            match pipeline
                .submit(meta(Environment::Production, None), identify(&format!("d{n}"), None))
            {
                Ok(ticket) => tickets.push(ticket),
                Err(EngineError::Overloaded { queue_capacity: 2 }) => n_overloaded += 1,
                Err(err) => panic!("{err}"),
            }
        }
        (tickets, n_overloaded)
    });
    assert!(n_overloaded > 0, "a full queue refuses");
    assert!(tickets.len() <= pipeline_group_bound(), "{} accepted", tickets.len());
    let n_accepted = tickets.len() as u64;
    for ticket in tickets {
        assert!(matches!(ticket.wait(), Ok(Answer::Resolved(_))));
    }
    pipeline.close();
    assert_eq!(engine.log().last_seq(), Seq(n_accepted));
}

/// What can be accepted while the writer is stuck: one group it took, and a full queue.
fn pipeline_group_bound() -> usize {
    idgraph::engine::pipeline::GROUP_REQUESTS_MAX + 2
}

#[test]
fn closing_answers_every_queued_request() {
    let engine = Arc::new(in_memory_engine(resolver_config(Strategy::ProfileConversion)));
    let pipeline = Pipeline::start(Arc::clone(&engine), 10_000).unwrap();
    let meta_of = || RequestMeta { request_id: None, ..meta(Environment::Production, None) };
    let tickets: Vec<_> = (0..5_000)
        .map(|n| pipeline.submit(meta_of(), identify(&format!("d{n}"), None)).unwrap())
        .collect();
    pipeline.close();
    assert!(tickets.into_iter().all(|ticket| matches!(ticket.wait(), Ok(Answer::Resolved(_)))));
    assert_eq!(engine.log().last_seq(), Seq(5_000));
}

#[test]
fn a_closed_pipeline_refuses_and_closing_twice_is_harmless() {
    let engine = Arc::new(in_memory_engine(resolver_config(Strategy::ProfileConversion)));
    let pipeline = Pipeline::start(Arc::clone(&engine), 16).unwrap();
    pipeline.close();
    pipeline.close();
    let err =
        pipeline.submit(meta(Environment::Production, None), identify("d", None)).unwrap_err();
    assert!(matches!(err, EngineError::Halted { .. }), "{err:?}");
    drop(pipeline);
    // The threads are gone: the engine is the caller's alone again.
    assert_eq!(Arc::strong_count(&engine), 1);
}

/// After a group's write fails, no later answer is given, even one that changed nothing (a repeat
/// of a request whose entry never reached storage): it would name state a restart forgets.
#[test]
fn after_a_failed_write_no_answer_rests_on_what_was_lost() {
    for round in 0..100 {
        let (log, faults) = idgraph::log::Log::in_memory_with_faults();
        let engine = Arc::new(
            Engine::with_log(
                log,
                engine_config(resolver_config(Strategy::ProfileConversion)),
                Box::new(idgraph_test_support::manual_clock(1_000)),
                Box::new(idgraph_test_support::CountingMpids::default()),
            )
            .unwrap()
            .0,
        );
        let pipeline = Pipeline::start(Arc::clone(&engine), 64).unwrap();
        let first = pipeline.submit(meta(Environment::Production, None), identify("known", None));
        assert!(first.unwrap().wait().is_ok());
        let device = format!("lost-{round}");
        let with_id = || meta(Environment::Production, Some("retry-1"));
        // Group 1: a new profile, whose write fails. Group 2, decided while group 1 waits for its
        // write: the same identify again and a retry of it by request_id, which change nothing
        // and so wait for nothing durable. (Holding the projection keeps the writer from
        // deciding, so that group 1 holds the first request alone.)
        let (created, again, retried) = engine.with_projection(|_| {
            let created = pipeline.submit(with_id(), identify(&device, None)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            let again =
                pipeline.submit(meta(Environment::Production, None), identify(&device, None));
            let retried = pipeline.submit(with_id(), identify(&device, None)).unwrap();
            faults.fail_writes();
            (created, again.unwrap(), retried)
        });
        let answers = [created.wait(), again.wait(), retried.wait()];
        assert!(answers.iter().all(Result::is_err), "round {round}: {answers:?}");
        pipeline.close();
    }
}

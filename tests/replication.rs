//! Replication of stored records (the groundwork of cluster mode, `docs/cluster.md`): a writer's
//! group commits, handed to a `Replicator`, applied by a follower with `apply_replicated`, give the
//! follower the same log (byte for byte) and the same graph (digests) at the same sequence; a
//! follower refuses what does not follow its log; a writer whose replication fails answers nothing
//! more.

use std::sync::{Arc, Mutex};

use idgraph::engine::{Command, Engine, EngineError, Pipeline};
use idgraph::log::{GroupRecord, Replicator};
use idgraph::model::{Environment, Identity, IdentityType, Seq};
use idgraph::query::{IdentityOp, IdentityQuery, Strategy};
use idgraph_test_support::{engine_config, meta, resolver_config};

/// Keeps what it is handed, in order, like a log of record; fails once told to.
#[derive(Debug, Default)]
struct Recorder {
    records: Mutex<Vec<(Seq, Seq, Vec<u8>)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl Replicator for Recorder {
    fn replicate(&self, records: &[GroupRecord<'_>]) -> Result<(), String> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("fenced: another writer appended".into());
        }
        let mut kept = self.records.lock().unwrap();
        for record in records {
            kept.push((record.first, record.last, record.bytes.to_vec()));
        }
        Ok(())
    }
}

fn login(n: usize) -> Command {
    let known_identities = vec![
        Identity::new(IdentityType::DeviceApplicationStamp, format!("d-{}", n % 97)),
        Identity::new(IdentityType::Email, format!("u{}@example.com", n % 131)),
    ];
    let op = if n.is_multiple_of(3) { IdentityOp::Login } else { IdentityOp::Identify };
    Command::Identity(IdentityQuery { op, known_identities, previous_mpid: None })
}

fn open(dir: &std::path::Path) -> Arc<Engine> {
    let config = engine_config(resolver_config(Strategy::ProfileConversion));
    Arc::new(Engine::open(dir, config).unwrap().0)
}

fn digests(engine: &Engine) -> (Seq, u128, u128) {
    engine.with_projection(|p| (p.last_seq(), p.running_digest().0, p.content_digest().0))
}

#[test]
fn a_follower_applying_the_writers_records_has_the_same_log_and_graph() {
    let (writer_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = open(writer_dir.path());
    let recorder = Arc::new(Recorder::default());
    writer.log().set_replicator(Arc::clone(&recorder) as Arc<dyn Replicator>).unwrap();
    let pipeline = Pipeline::start(Arc::clone(&writer), 1_024).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let pipeline = &pipeline;
            scope.spawn(move || {
                for n in 0..250 {
                    let command = login(thread * 1_000 + n);
                    let ticket = pipeline.submit(meta(Environment::Production, None), command);
                    ticket.unwrap().wait().unwrap();
                }
            });
        }
    });
    pipeline.close();
    let records = recorder.records.lock().unwrap().clone();
    assert!(records.len() < 1_000, "commit groups of several entries: {} records", records.len());

    let follower = open(follower_dir.path());
    for (first, last, bytes) in &records {
        assert_eq!(follower.apply_replicated(*first, bytes).unwrap(), *last);
    }
    assert_eq!(digests(&follower), digests(&writer));
    assert_eq!(digests(&follower).0, Seq(1_000));
    for seq in 1..=1_000 {
        assert_eq!(follower.log().get(Seq(seq)).unwrap(), writer.log().get(Seq(seq)).unwrap());
    }
    // The follower's copy is a log like any other: it verifies, and reopens to the same graph.
    follower.log().sync().unwrap();
    assert_eq!(follower.log().verify().unwrap().last_seq, Seq(1_000));
    let expected = digests(&writer);
    drop(follower);
    let reopened = open(follower_dir.path());
    assert_eq!(digests(&reopened), expected);
    // Promoted (opened as a writer), it goes on from where the log ends.
    let answer = reopened.handle(&meta(Environment::Production, None), login(5_000)).unwrap();
    assert!(matches!(answer, idgraph::query::Answer::Resolved(_)));
    assert_eq!(reopened.log().last_seq(), Seq(1_001));
}

/// A follower keeps the idempotency index too: promoted in place, it answers a retried
/// `request_id` with the writer's first answer and records nothing.
#[test]
fn a_promoted_follower_recognises_a_retried_request_id() {
    let writer_dir = tempfile::tempdir().unwrap();
    let writer = open(writer_dir.path());
    let recorder = Arc::new(Recorder::default());
    writer.log().set_replicator(Arc::clone(&recorder) as Arc<dyn Replicator>).unwrap();
    let request = meta(Environment::Production, Some("retry-me"));
    let first = writer.handle(&request, login(3)).unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open(follower_dir.path());
    for (first_seq, _, bytes) in recorder.records.lock().unwrap().iter() {
        follower.apply_replicated(*first_seq, bytes).unwrap();
    }
    assert_eq!(follower.handle(&request, login(3)).unwrap(), first);
    assert_eq!(follower.log().assigned_seq(), Seq(1), "the retry recorded nothing");
    let reused = follower.handle(&request, login(4)).unwrap_err();
    assert!(matches!(reused, EngineError::RequestIdReused { .. }), "{reused}");
}

#[test]
fn a_follower_refuses_a_record_that_does_not_follow_its_log() {
    let writer_dir = tempfile::tempdir().unwrap();
    let writer = open(writer_dir.path());
    let recorder = Arc::new(Recorder::default());
    writer.log().set_replicator(Arc::clone(&recorder) as Arc<dyn Replicator>).unwrap();
    for n in 0..3 {
        writer.handle(&meta(Environment::Production, None), login(n)).unwrap();
    }
    let records = recorder.records.lock().unwrap().clone();
    assert_eq!(records.len(), 3);
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open(follower_dir.path());
    follower.log().require_replicator();
    // A follower decides nothing itself: it would differ from the log of record.
    let err = follower.handle(&meta(Environment::Production, None), login(7)).unwrap_err();
    assert!(matches!(err, EngineError::NotWriter), "{err}");
    assert_eq!(follower.halted(), None, "refusing is not a failure");
    let before = digests(&follower);
    // A gap: the second record before the first.
    let err = follower.apply_replicated(records[1].0, &records[1].2).unwrap_err();
    assert!(err.to_string().contains("does not follow"), "{err}");
    // A damaged record.
    let mut damaged = records[0].2.clone();
    *damaged.last_mut().unwrap() ^= 1;
    let err = follower.apply_replicated(records[0].0, &damaged).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // A record stored under another key.
    assert!(follower.apply_replicated(Seq(1), &records[1].2).is_err());
    assert_eq!(digests(&follower), before, "nothing refused was applied");
    assert_eq!(follower.log().last_seq(), Seq::ZERO);
    // The right one is applied, and the follower goes on.
    follower.apply_replicated(records[0].0, &records[0].2).unwrap();
    follower.apply_replicated(records[1].0, &records[1].2).unwrap();
    assert_eq!(follower.log().last_seq(), Seq(2));
}

#[test]
fn a_writer_whose_replication_fails_answers_nothing_more_and_keeps_nothing_local() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path());
    let recorder = Arc::new(Recorder::default());
    writer.log().set_replicator(Arc::clone(&recorder) as Arc<dyn Replicator>).unwrap();
    writer.handle(&meta(Environment::Production, None), login(1)).unwrap();
    recorder.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = writer.handle(&meta(Environment::Production, None), login(2)).unwrap_err();
    assert!(err.to_string().contains("fenced"), "{err}");
    let again = writer.handle(&meta(Environment::Production, None), login(3)).unwrap_err();
    assert!(matches!(again, EngineError::Halted { .. }), "{again}");
    drop(writer);
    // What the log of record refused never reached the local log either.
    assert_eq!(open(dir.path()).log().last_seq(), Seq(1));
}

/// An empty node joins from another node's snapshot: the records the snapshot covers are appended
/// unfolded (its log must hold them, for audit), the snapshot installed, the tail folded; it ends
/// with the writer's log and digests, and reopens to them. A snapshot taken elsewhere in the log
/// is refused.
#[test]
fn an_empty_node_joins_from_a_snapshot_and_the_tail() {
    let writer_dir = tempfile::tempdir().unwrap();
    let writer = open(writer_dir.path());
    let recorder = Arc::new(Recorder::default());
    writer.log().set_replicator(Arc::clone(&recorder) as Arc<dyn Replicator>).unwrap();
    for n in 0..300 {
        writer.handle(&meta(Environment::Production, Some(&format!("r-{n}"))), login(n)).unwrap();
    }
    let records = recorder.records.lock().unwrap().clone();
    // A follower that applied the first 200 records takes the snapshot.
    let source_dir = tempfile::tempdir().unwrap();
    let source = open(source_dir.path());
    for (first, _, bytes) in &records[..200] {
        source.apply_replicated(*first, bytes).unwrap();
    }
    let (snapshot_seq, snapshot) = source.projection_snapshot();
    assert_eq!(snapshot_seq, records[199].1);

    let joiner_dir = tempfile::tempdir().unwrap();
    let joiner = open(joiner_dir.path());
    let covered = |range: std::ops::Range<usize>| -> Vec<(Seq, &[u8])> {
        records[range].iter().map(|(first, _, bytes)| (*first, bytes.as_slice())).collect()
    };
    joiner.append_covered(&covered(0..150)).unwrap();
    let err = joiner.install_snapshot(&snapshot).unwrap_err();
    assert!(err.to_string().contains("cannot be installed"), "{err}");
    // Records out of order are refused whole.
    assert!(joiner.append_covered(&covered(151..153)).is_err());
    assert_eq!(joiner.append_covered(&covered(150..200)).unwrap(), snapshot_seq);
    assert_eq!(joiner.install_snapshot(&snapshot).unwrap(), snapshot_seq);
    for (first, last, bytes) in &records[200..] {
        assert_eq!(joiner.apply_replicated(*first, bytes).unwrap(), *last);
    }
    assert_eq!(digests(&joiner), digests(&writer));
    // Its idempotency index was rebuilt with the snapshot: a retry gets the first answer.
    let retried = meta(Environment::Production, Some("r-299"));
    let first_answer = writer.handle(&retried, login(299)).unwrap();
    drop(joiner);
    let reopened = open(joiner_dir.path());
    assert_eq!(digests(&reopened), digests(&writer));
    assert_eq!(reopened.handle(&retried, login(299)).unwrap(), first_answer);
    assert_eq!(reopened.log().verify().unwrap().last_seq, Seq(300));
}

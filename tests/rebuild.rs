//! The projection is derived state: a projection rebuilt from the on-disk log, or from a snapshot
//! plus the tail, equals the live one, digest for digest and byte for byte.

use std::ops::ControlFlow;

use idgraph::engine::load_projection;
use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, Seq};
use idgraph::projection::Projection;
use idgraph::projection::generate::LogGenerator;

fn rebuild(log: &Log) -> Projection {
    let mut projection = Projection::new();
    log.scan(Seq::ZERO, |seq, entry| {
        projection.apply(seq, &entry).unwrap();
        ControlFlow::Continue(())
    })
    .unwrap();
    projection
}

/// Appends `entries` to `log` and folds each into `live` as the engine does.
fn append_live(log: &Log, live: &mut Projection, entries: &[Entry]) {
    for batch in entries.chunks(1_000) {
        let (first, _) = log.append_batch(batch, Durability::Deferred).unwrap();
        for (offset, entry) in batch.iter().enumerate() {
            live.apply(Seq(first.0 + offset as u64), entry).unwrap();
        }
    }
    log.sync().unwrap();
}

#[test]
fn a_rebuilt_projection_equals_the_live_one_after_100k_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let entries: Vec<Entry> = LogGenerator::new(42).take(100_000).collect();
    let mut live = Projection::new();
    append_live(&log, &mut live, &entries);
    log.close().unwrap();

    let log = Log::open(dir.path()).unwrap();
    let rebuilt = rebuild(&log);
    assert_eq!(rebuilt.last_seq(), Seq(100_000));
    assert_eq!(live.diagnostics().1, 0);
    assert_eq!(rebuilt.running_digest(), live.running_digest());
    assert_eq!(rebuilt.content_digest(), live.content_digest());
    assert_eq!(rebuilt.to_snapshot(), live.to_snapshot(), "full contents are equal");
    assert!(live.n_profiles() > 30_000 && !live.aliases().is_empty());

    // Replay as the engine does it: borrowed views on one thread, and two threads; to the end and
    // up to a sequence in the middle of a read batch.
    let mut prefix = Projection::new();
    for (idx, entry) in entries.iter().take(12_345).enumerate() {
        prefix.apply(Seq(idx as u64 + 1), entry).unwrap();
    }
    for replay in [idgraph::engine::replay_until_on_one_thread, idgraph::engine::replay_until] {
        let mut replayed = Projection::new();
        assert_eq!(replay(&log, &mut replayed, Seq(u64::MAX), &mut |_| {}).unwrap(), 100_000);
        assert_eq!(replayed.running_digest(), live.running_digest());
        assert_eq!(replayed.to_snapshot(), live.to_snapshot(), "full contents are equal");
        let mut until = Projection::new();
        assert_eq!(replay(&log, &mut until, Seq(12_345), &mut |_| {}).unwrap(), 12_345);
        assert_eq!(until.to_snapshot(), prefix.to_snapshot(), "replay up to 12,345");
    }
}

#[test]
fn snapshot_plus_tail_equals_full_replay_and_a_bad_snapshot_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let entries: Vec<Entry> = LogGenerator::new(9).take(20_000).collect();
    let mut live = Projection::new();
    for (n_done, chunk) in [(0, 3_000), (3_000, 7_500), (7_500, 15_000), (15_000, 20_000)]
        .map(|(a, b)| (b, &entries[a..b]))
    {
        append_live(&log, &mut live, chunk);
        if n_done < 20_000 {
            log.save_snapshot(live.last_seq(), &live.to_snapshot(), 10).unwrap();
        }
    }
    let full = rebuild(&log);
    // Every snapshot, plus its tail, gives the full replay's state.
    let snapshots = log.snapshots_at_or_before(Seq(u64::MAX)).unwrap();
    assert_eq!(snapshots, [Seq(15_000), Seq(7_500), Seq(3_000)]);
    for seq in &snapshots {
        let mut projection =
            Projection::from_snapshot(&log.load_snapshot(*seq).unwrap().unwrap()).unwrap();
        log.scan(seq.next(), |seq, entry| {
            projection.apply(seq, &entry).unwrap();
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(projection.running_digest(), full.running_digest(), "snapshot at {seq}");
        assert_eq!(projection.content_digest(), full.content_digest(), "snapshot at {seq}");
    }
    let (loaded, report) = load_projection(&log).unwrap();
    assert_eq!(report.snapshot_seq, Some(Seq(15_000)));
    assert_eq!(report.n_replayed, 5_000);
    assert_eq!(loaded.content_digest(), full.content_digest());

    // Damage the newest snapshot: it is discarded and the next one is used.
    let mut bytes = log.load_snapshot(Seq(15_000)).unwrap().unwrap();
    bytes[100] ^= 1;
    log.overwrite_snapshot_for_tests(Seq(15_000), &bytes).unwrap();
    let (loaded, report) = load_projection(&log).unwrap();
    assert_eq!(report.snapshot_seq, Some(Seq(7_500)));
    assert_eq!(report.snapshots_discarded.len(), 1);
    assert_eq!(loaded.running_digest(), full.running_digest());
    // Damage them all: full replay.
    for seq in [Seq(7_500), Seq(3_000)] {
        log.overwrite_snapshot_for_tests(seq, b"garbage").unwrap();
    }
    let (loaded, report) = load_projection(&log).unwrap();
    assert_eq!(report.snapshot_seq, None);
    assert_eq!(report.n_replayed, 20_000);
    assert_eq!(loaded.content_digest(), full.content_digest());
}

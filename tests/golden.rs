//! Golden snapshot: the projection folded from the golden records (`crates/log/tests/fixtures/`),
//! read through the log's public API, snapshotted to the committed bytes, and the committed
//! snapshot loaded to known digests.
//!
//! The records themselves are pinned by the log crate's own golden test (`crates/log/src/golden.rs`).
//! `IDGRAPH_REGENERATE_FIXTURES=1 cargo test --test golden` rewrites the snapshot fixture; see
//! "Golden fixtures" in `docs/log-format.md`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use idgraph::log::{Durability, Log};
use idgraph::model::{Entry, EntryView, Seq};
use idgraph::projection::{Digest, Projection};

#[path = "../crates/log/tests/fixtures/entries.rs"]
mod entries;

use entries::golden_entries;

/// The content digest of the golden snapshot.
const CONTENT_DIGEST: Digest = Digest(0x08ce_4776_dbf3_3fb9_5b72_6655_975b_dfc6);
/// The running digest of the golden snapshot.
const RUNNING_DIGEST: Digest = Digest(0xed49_08e7_b391_5edf_b709_9fc8_83ee_f98e);

/// Set to `1` to rewrite the snapshot fixture instead of only checking it.
const REGENERATE_VAR: &str = "IDGRAPH_REGENERATE_FIXTURES";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/log/tests/fixtures")
}

fn golden_entry_list() -> Vec<Entry> {
    golden_entries().into_iter().map(|golden| golden.entry).collect()
}

fn read_fixture(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A log whose stored record is the committed golden commit group: the golden entries are appended
/// in one batch (one group, which gives the in-memory log its sequences), then the record is
/// replaced by the fixture's bytes.
fn golden_log() -> Log {
    let log = Log::in_memory();
    log.append_batch(&golden_entry_list(), Durability::Synced).unwrap();
    let group = read_fixture(&fixtures_dir().join("records-v2/group.bin"));
    log.overwrite_record_for_tests(Seq(1), &group).unwrap();
    log
}

/// A log written by a build before commit groups: format 1 on disk, upgraded on open, each record
/// then replaced by the committed format-1 fixture's bytes.
fn golden_format_1_log(dir: &Path) -> Log {
    Log::create_format_1_for_tests(dir, &golden_entry_list()).unwrap();
    let log = Log::open(dir).unwrap();
    let records = fixtures_dir().join("records-v1");
    for (idx, golden) in golden_entries().iter().enumerate() {
        let seq = Seq(idx as u64 + 1);
        let record = read_fixture(&records.join(format!("{:02}-{}.bin", seq.0, golden.name)));
        log.overwrite_record_for_tests(seq, &record).unwrap();
    }
    log
}

/// Format-1 records fold to the same graph as the group of this build: the same snapshot bytes.
#[test]
fn a_format_1_log_folds_to_the_golden_snapshot_too() {
    let dir = tempfile::tempdir().unwrap();
    let old = fold(&golden_format_1_log(dir.path()));
    let new = fold(&golden_log());
    assert_eq!(old.to_snapshot(), new.to_snapshot());
    assert_eq!(old.running_digest(), RUNNING_DIGEST);
}

/// Reads the log back through the public API with both decoders and folds it.
fn fold(log: &Log) -> Projection {
    assert_eq!(log.verify().unwrap().n_entries, golden_entries().len() as u64);
    let mut projection = Projection::new();
    let expected = golden_entries();
    log.scan(Seq::ZERO, |seq, entry| {
        assert_eq!(entry, expected[seq.0 as usize - 1].entry, "owned decoding at {seq}");
        projection.apply(seq, &entry).unwrap();
        ControlFlow::Continue(())
    })
    .unwrap();
    log.scan_views(Seq::ZERO, |seq, view| {
        let entry = &expected[seq.0 as usize - 1].entry;
        assert_eq!(format!("{view:?}"), format!("{:?}", EntryView::from(entry)), "view at {seq}");
        ControlFlow::Continue(())
    })
    .unwrap();
    projection
}

/// The snapshot fixture of a format: named after the snapshot's magic (its first 8 bytes).
fn snapshot_path(snapshot: &[u8]) -> PathBuf {
    let magic = String::from_utf8_lossy(snapshot.get(..8).expect("a snapshot has a magic"));
    fixtures_dir().join(format!("snapshot-{}.bin", magic.to_lowercase()))
}

#[test]
fn the_golden_log_folds_to_the_golden_snapshot_and_loads_to_known_digests() {
    let log = golden_log();
    let projection = fold(&log);
    let expected = golden_entries();
    let (diagnostics, n_diagnostics) = projection.diagnostics();
    assert_eq!(n_diagnostics, 0, "the golden log is coherent: {diagnostics:?}");
    assert_eq!(projection.last_seq(), Seq(expected.len() as u64));

    let snapshot = projection.to_snapshot();
    let path = snapshot_path(&snapshot);
    if std::env::var(REGENERATE_VAR).is_ok_and(|value| value == "1") {
        std::fs::write(&path, &snapshot).unwrap();
        eprintln!(
            "{REGENERATE_VAR}=1: rewrote {}; content digest {:#034x}, running digest {:#034x}",
            path.display(),
            projection.content_digest().0,
            projection.running_digest().0
        );
    }
    let committed = std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}. A new snapshot format: generate its fixture with {REGENERATE_VAR}=1 and \
             keep the old ones",
            path.display()
        )
    });
    assert!(
        committed == snapshot,
        "{}: the snapshot of the golden log changed ({} bytes, committed {}). If deliberate, \
         change the snapshot magic and regenerate with {REGENERATE_VAR}=1",
        path.display(),
        snapshot.len(),
        committed.len()
    );

    // The committed snapshot loads, through the log's snapshot storage, to the known digests.
    let seq = projection.last_seq();
    log.save_snapshot(seq, &committed, 1).unwrap();
    let loaded = log.load_snapshot(seq).unwrap().expect("saved just now");
    let loaded = Projection::from_snapshot(&loaded).unwrap();
    assert_eq!(loaded.content_digest(), projection.content_digest());
    assert_eq!(loaded.running_digest(), projection.running_digest());
    assert_eq!(loaded.content_digest(), CONTENT_DIGEST, "content digest of {}", path.display());
    assert_eq!(loaded.running_digest(), RUNNING_DIGEST, "running digest of {}", path.display());
    assert_eq!(loaded.last_seq(), seq);
}

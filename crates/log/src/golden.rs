//! Golden records: the bytes this code stores for the entries of `tests/fixtures/entries.rs`,
//! committed in `tests/fixtures/records-v1/`, decoded to the known entries and re-encoded to the
//! same bytes.
//!
//! The entry schema lives in four places (`idgraph_model::Entry` and its serde derive,
//! `idgraph_model::EntryView`, the hand-written encoder and the view decoder of `codec/`). The
//! property tests of `codec/tests.rs` keep them in step with each other; these fixtures keep them
//! in step with what is already on disk. Reordering a field changes encoder and serde together
//! and passes the property tests, but not these. A deliberate format change is a visible change of the
//! fixtures plus a format-version bump (`docs/log-format.md`, "Golden fixtures").
//!
//! `IDGRAPH_REGENERATE_FIXTURES=1 cargo test -p idgraph-log golden` rewrites the fixtures with the
//! real write path (`Log::append_batch` into an in-memory log, the stored bytes read back).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use idgraph_model::{DetachReason, Entry, EntryView, Event, Operation, Outcome, Seq};

use crate::{Durability, Log, codec, frame};

#[path = "../tests/fixtures/entries.rs"]
mod entries;

use entries::{Golden, golden_entries};

/// Set to `1` to rewrite the fixtures instead of only checking them.
const REGENERATE_VAR: &str = "IDGRAPH_REGENERATE_FIXTURES";

fn regenerating() -> bool {
    std::env::var(REGENERATE_VAR).is_ok_and(|value| value == "1")
}

/// The records of this build's format version and codec.
fn records_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("records-v{}", frame::FORMAT_VERSION))
}

fn file_name(seq: Seq, golden: &Golden) -> String {
    format!("{:02}-{}.bin", seq.0, golden.name)
}

fn seq_of(idx: usize) -> Seq {
    Seq(idx as u64 + 1)
}

/// What the production write path stores for the golden entries, by sequence.
fn written_records(entries: &[Golden]) -> Vec<Vec<u8>> {
    let log = Log::in_memory();
    let batch: Vec<Entry> = entries.iter().map(|golden| golden.entry.clone()).collect();
    let (first, last) = log.append_batch(&batch, Durability::Synced).unwrap();
    assert_eq!((first, last), (Seq(1), seq_of(entries.len() - 1)));
    (1..=last.0).map(|seq| log.raw_record_for_tests(Seq(seq)).unwrap().unwrap()).collect()
}

fn regenerate(entries: &[Golden]) {
    let dir = records_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "bin") {
            std::fs::remove_file(path).unwrap();
        }
    }
    for (idx, (golden, record)) in entries.iter().zip(written_records(entries)).enumerate() {
        std::fs::write(dir.join(file_name(seq_of(idx), golden)), record).unwrap();
    }
    eprintln!("{REGENERATE_VAR}=1: rewrote {}", dir.display());
}

#[test]
fn golden_records_decode_to_the_known_entries_and_reencode_to_the_same_bytes() {
    let entries = golden_entries();
    if regenerating() {
        regenerate(&entries);
    }
    let dir = records_dir();
    let hint = format!(
        "{}: the stored format changed. If that is deliberate, bump the format version \
         (docs/log-format.md, \"Golden fixtures\") and regenerate with {REGENERATE_VAR}=1",
        dir.display()
    );
    let written = written_records(&entries);
    let mut expected_files = BTreeSet::new();
    for (idx, golden) in entries.iter().enumerate() {
        let seq = seq_of(idx);
        let name = file_name(seq, golden);
        let path = dir.join(&name);
        let record = std::fs::read(&path).unwrap_or_else(|err| {
            panic!("{}: {err}; generate it with {REGENERATE_VAR}=1", path.display())
        });
        expected_files.insert(name.clone());
        check_record(seq, &golden.entry, &record, &written[idx], &format!("{name}: {hint}"));
    }
    let found_files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|file| file.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(found_files, expected_files, "{}: stale or missing fixtures", dir.display());
}

/// Decodes `record` (stored at `seq`) with both decoders and compares it with `entry`; encodes
/// `entry` with both encoders and the write path and compares the bytes with `record`.
fn check_record(seq: Seq, entry: &Entry, record: &[u8], written: &[u8], hint: &str) {
    assert_eq!(record.get(..4), Some(&[1, 1, 0, 0][..]), "{hint}\nversion 1, codec 1, no flags");
    let payload = frame::verify(seq, record, codec::CODEC_BINCODE2_SERDE)
        .unwrap_or_else(|err| panic!("{hint}\nframe: {err}"));
    // Decoding: serde + bincode (owned) and the view decoder (borrowed).
    let decoded = codec::decode(payload).unwrap_or_else(|err| panic!("{hint}\ndecode: {err}"));
    assert_eq!(decoded, *entry, "{hint}\nthe owned decoder reads another entry");
    let view = codec::decode_view(payload).unwrap_or_else(|err| panic!("{hint}\nview: {err}"));
    assert_eq!(
        format!("{view:?}"),
        format!("{:?}", EntryView::from(entry)),
        "{hint}\nthe view decoder reads another entry"
    );
    assert!(view.agrees_with(entry), "{hint}");
    // Encoding: the hand-written encoder, serde + bincode, the framing, the whole write path.
    assert_eq!(codec::encode(entry).unwrap(), payload, "{hint}\nthe hand-written encoder");
    let by_serde = bincode::serde::encode_to_vec(entry, codec::config()).unwrap();
    assert_eq!(by_serde, payload, "{hint}\nserde + bincode");
    let framed = frame::frame(seq, codec::CODEC_BINCODE2_SERDE, payload, crc32c::crc32c(payload));
    assert_eq!(framed, record, "{hint}\nthe framing");
    assert_eq!(written, record, "{hint}\nLog::append_batch");
}

/// The fixtures are versioned by the header's first two bytes: a bump of either means a new
/// fixture folder, and a decision about the old one (still read, upcast or refused).
#[test]
fn golden_records_are_format_version_1_codec_1() {
    assert_eq!(frame::FORMAT_VERSION, 1, "a new format version needs records-v2 fixtures");
    assert_eq!(codec::CODEC_BINCODE2_SERDE, 1);
    assert_eq!(crate::rocks::FORMAT_NAME, b"idgraph-log/1");
}

/// Every variant of the persisted enums appears in the golden entries. The matches below have no
/// wildcard on purpose: a new variant does not compile until it is named here, and the test then
/// fails until a golden entry uses it.
#[test]
fn golden_entries_use_every_event_operation_and_outcome() {
    let mut used = BTreeSet::new();
    for golden in golden_entries() {
        let entry = &golden.entry;
        used.insert(operation_name(&entry.request.operation));
        used.insert(outcome_name(&entry.outcome));
        used.insert(format!("{:?}", entry.request.environment));
        for event in &entry.events {
            used.insert(event_name(event));
            if let Event::IdentityDetached { reason, .. } = event {
                used.insert(reason_name(reason));
            }
        }
    }
    let expected = [
        "Operation::Identify",
        "Operation::Login",
        "Operation::Logout",
        "Operation::Modify",
        "Operation::Alias",
        "Operation::AdminDetach",
        "Operation::AdminSplit",
        "Event::ProfileCreated",
        "Event::IdentityAttached",
        "Event::IdentityDetached",
        "Event::AliasRecorded",
        "DetachReason::Modified",
        "DetachReason::MovedTo",
        "DetachReason::AdminDetached",
        "DetachReason::SplitTo",
        "Outcome::Resolved",
        "Outcome::Modified",
        "Outcome::AliasAccepted",
        "Outcome::AliasIgnored",
        "Outcome::AdminApplied",
        "Production",
        "Development",
    ];
    let expected: BTreeSet<String> = expected.into_iter().map(str::to_owned).collect();
    assert_eq!(
        used, expected,
        "add a golden entry (tests/fixtures/entries.rs) for the new variant"
    );
}

fn operation_name(operation: &Operation) -> String {
    match operation {
        Operation::Identify(_) => "Operation::Identify",
        Operation::Login(_) => "Operation::Login",
        Operation::Logout(_) => "Operation::Logout",
        Operation::Modify { .. } => "Operation::Modify",
        Operation::Alias { .. } => "Operation::Alias",
        Operation::AdminDetach(_) => "Operation::AdminDetach",
        Operation::AdminSplit(_) => "Operation::AdminSplit",
    }
    .to_owned()
}

fn event_name(event: &Event) -> String {
    match event {
        Event::ProfileCreated { .. } => "Event::ProfileCreated",
        Event::IdentityAttached { .. } => "Event::IdentityAttached",
        Event::IdentityDetached { .. } => "Event::IdentityDetached",
        Event::AliasRecorded { .. } => "Event::AliasRecorded",
    }
    .to_owned()
}

fn reason_name(reason: &DetachReason) -> String {
    match reason {
        DetachReason::Modified => "DetachReason::Modified",
        DetachReason::MovedTo { .. } => "DetachReason::MovedTo",
        DetachReason::AdminDetached => "DetachReason::AdminDetached",
        DetachReason::SplitTo { .. } => "DetachReason::SplitTo",
    }
    .to_owned()
}

fn outcome_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Resolved { .. } => "Outcome::Resolved",
        Outcome::Modified { .. } => "Outcome::Modified",
        Outcome::AliasAccepted => "Outcome::AliasAccepted",
        Outcome::AliasIgnored { .. } => "Outcome::AliasIgnored",
        Outcome::AdminApplied { .. } => "Outcome::AdminApplied",
    }
    .to_owned()
}

//! Golden records: the bytes stored for the entries of `tests/fixtures/entries.rs`, decoded to the
//! known entries and re-encoded to the same bytes. `tests/fixtures/records-v2/group.bin` is what
//! this build writes (all the entries in one commit group); `tests/fixtures/records-v1/` holds the
//! one-entry records builds before commit groups wrote, which this build still reads.
//!
//! The entry schema lives in four places (`idgraph_model::Entry` and its serde derive,
//! `idgraph_model::EntryView`, the hand-written encoder and the view decoder of `codec/`). The
//! property tests of `codec/tests.rs` keep them in step with each other; these fixtures keep them
//! in step with what is already on disk. Reordering a field changes encoder and serde together
//! and passes the property tests, but not these. A deliberate format change is a visible change of the
//! fixtures plus a format-version bump (`docs/log-format.md`, "Golden fixtures").
//!
//! `IDGRAPH_REGENERATE_FIXTURES=1 cargo test -p idgraph-log golden` rewrites the group fixture with
//! the real write path (`Log::append_batch` into an in-memory log, the stored bytes read back). The
//! format-1 fixtures are never regenerated: they are what older builds left on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use idgraph_model::{DetachReason, Entry, EntryView, Event, Operation, Outcome, Seq};

use crate::group::{self, Group};
use crate::{Durability, Log, codec, frame};

#[path = "../tests/fixtures/entries.rs"]
mod entries;

use entries::{Golden, golden_entries};

/// Set to `1` to rewrite the fixtures instead of only checking them.
const REGENERATE_VAR: &str = "IDGRAPH_REGENERATE_FIXTURES";

fn regenerating() -> bool {
    std::env::var(REGENERATE_VAR).is_ok_and(|value| value == "1")
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn v1_file_name(seq: Seq, golden: &Golden) -> String {
    format!("{:02}-{}.bin", seq.0, golden.name)
}

fn seq_of(idx: usize) -> Seq {
    Seq(idx as u64 + 1)
}

/// What the production write path stores for the golden entries appended in one batch: one group.
fn written_group(entries: &[Golden]) -> Vec<u8> {
    let log = Log::in_memory();
    let batch: Vec<Entry> = entries.iter().map(|golden| golden.entry.clone()).collect();
    let (first, last) = log.append_batch(&batch, Durability::Synced).unwrap();
    assert_eq!((first, last), (Seq(1), seq_of(entries.len() - 1)));
    log.raw_record_for_tests(Seq(1)).unwrap().expect("one group keyed by its first sequence")
}

fn hint(path: &Path) -> String {
    format!(
        "{}: the stored format changed. If that is deliberate, bump the format version \
         (docs/log-format.md, \"Golden fixtures\") and regenerate with {REGENERATE_VAR}=1",
        path.display()
    )
}

#[test]
fn the_golden_group_decodes_to_the_known_entries_and_reencodes_to_the_same_bytes() {
    let entries = golden_entries();
    let path = fixtures_dir().join(format!("records-v{}/group.bin", frame::VERSION_GROUP));
    let written = written_group(&entries);
    if regenerating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &written).unwrap();
        eprintln!("{REGENERATE_VAR}=1: rewrote {}", path.display());
    }
    let hint = hint(&path);
    let record = std::fs::read(&path).unwrap_or_else(|err| {
        panic!("{}: {err}; generate it with {REGENERATE_VAR}=1", path.display())
    });
    assert_eq!(record.get(..4), Some(&[2, 1, 0, 0][..]), "{hint}\nversion 2, codec 1, no flags");
    let group = Group::parse(Seq(1), &record).unwrap_or_else(|err| panic!("{hint}\n{err}"));
    assert_eq!(group.last(), seq_of(entries.len() - 1), "{hint}\nthe group's length");
    let mut payloads = Vec::new();
    for ((seq, payload), golden) in group.entries().zip(&entries) {
        check_payload(&golden.entry, payload, &format!("{hint}\nentry {seq} ({})", golden.name));
        payloads.push(payload);
    }
    assert_eq!(payloads.len(), entries.len());
    let reencoded = group::encode(Seq(1), payloads.iter().copied());
    assert_eq!(reencoded, record, "{hint}\nthe group framing");
    assert_eq!(written, record, "{hint}\nLog::append_batch");
}

/// The one-entry records of format 1 still read, each as a group of one, to the known entries.
#[test]
fn format_1_records_still_decode_to_the_known_entries() {
    let entries = golden_entries();
    let dir = fixtures_dir().join(format!("records-v{}", frame::VERSION_ENTRY));
    let hint = hint(&dir);
    let mut expected_files = BTreeSet::new();
    for (idx, golden) in entries.iter().enumerate() {
        let seq = seq_of(idx);
        let name = v1_file_name(seq, golden);
        let path = dir.join(&name);
        let record = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        expected_files.insert(name.clone());
        let hint = format!("{name}: {hint}");
        assert_eq!(record.get(..4), Some(&[1, 1, 0, 0][..]), "{hint}\nversion 1, codec 1");
        let group = Group::parse(seq, &record).unwrap_or_else(|err| panic!("{hint}\n{err}"));
        let read: Vec<_> = group.entries().collect();
        let [(read_seq, payload)] = read.as_slice() else { panic!("{hint}\na group of one") };
        assert_eq!(*read_seq, seq);
        check_payload(&golden.entry, payload, &hint);
        let crc = crc32c::crc32c(payload);
        let framed =
            frame::frame(seq, frame::VERSION_ENTRY, codec::CODEC_BINCODE2_SERDE, payload, crc);
        assert_eq!(framed, record, "{hint}\nthe format-1 framing");
    }
    let found_files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|file| file.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(found_files, expected_files, "{}: stale or missing fixtures", dir.display());
}

/// Decodes `payload` with both decoders and compares it with `entry`; encodes `entry` with both
/// encoders and compares the bytes with `payload`.
fn check_payload(entry: &Entry, payload: &[u8], hint: &str) {
    let decoded = codec::decode(payload).unwrap_or_else(|err| panic!("{hint}\ndecode: {err}"));
    assert_eq!(decoded, *entry, "{hint}\nthe owned decoder reads another entry");
    let view = codec::decode_view(payload).unwrap_or_else(|err| panic!("{hint}\nview: {err}"));
    assert_eq!(
        format!("{view:?}"),
        format!("{:?}", EntryView::from(entry)),
        "{hint}\nthe view decoder reads another entry"
    );
    assert!(view.agrees_with(entry), "{hint}");
    assert_eq!(codec::encode(entry).unwrap(), payload, "{hint}\nthe hand-written encoder");
    let by_serde = bincode::serde::encode_to_vec(entry, codec::config()).unwrap();
    assert_eq!(by_serde, payload, "{hint}\nserde + bincode");
}

/// The fixtures are versioned by the header's first two bytes: a bump of either means a new
/// fixture folder, and a decision about the old one (still read, upcast or refused).
#[test]
fn golden_records_are_format_versions_1_and_2_codec_1() {
    assert_eq!(frame::VERSION_GROUP, 2, "a new format version needs records-v3 fixtures");
    assert_eq!(frame::VERSION_ENTRY, 1);
    assert_eq!(codec::CODEC_BINCODE2_SERDE, 1);
    assert_eq!(crate::rocks::FORMAT_NAME, b"idgraph-log/2");
    assert_eq!(crate::rocks::FORMAT_NAME_V1, b"idgraph-log/1");
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

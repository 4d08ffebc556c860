//! Fuzzing on the stable toolchain (issue #14): the decoders of untrusted bytes must answer an
//! error, never panic, hang or allocate without bound. Three targets, one `#[test]` each:
//!
//! - `log_record`: a stored record (frame, owned decoder, view decoder) read back through the
//!   log's public API (`get`, `scan`, `scan_views`, `scan_batches`, `read_range`, `verify`);
//! - `snapshot`: `Projection::from_snapshot`;
//! - `config`: `ServerConfig::load` (and `parse`) of a configuration file.
//!
//! Each target first replays its committed corpus (`tests/fuzz-corpus/<target>/`, see the README
//! there), then runs proptest over inputs mutated from valid seeds (bit flips, interesting
//! integers, truncation, insertion, deletion, duplication, splicing of two seeds), random bytes
//! and structured generation. The log and snapshot mutations usually repair the checksum
//! afterwards, so that the input reaches the decoder instead of stopping at the checksum.
//!
//! Every input is checked for: no panic (proptest catches it and shrinks the input), an answer
//! within [`INPUT_TIME_MAX`], and at most [`AllocBound`] bytes allocated (all allocations counted
//! by an instrumented global allocator: a length field that claims 4 GB must not make a decoder
//! reserve 4 GB). The tests of this binary hold [`SERIAL`] throughout, so the allocations counted
//! are their own.
//!
//! `IDGRAPH_FUZZ_CASES=N` runs N generated cases per target instead of the quick default;
//! `IDGRAPH_FUZZ_SAVE=1` writes every input whose outcome is of a kind the corpus does not have
//! yet into the corpus (review and commit them). A failing input is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-failures/` and the failure message names the file.

use std::alloc::System;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use idgraph_log::{Error, Log};
use idgraph_model::{Entry, EntryView, Seq};
use idgraph_projection::Projection;
use idgraph_projection::generate::LogGenerator;
use idgraph_server::ServerConfig;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "../crates/log/tests/fixtures/entries.rs"]
mod entries;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Held by each test for its whole run: the allocation counters are global, so one target at a
/// time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Generated cases per target (default: each target's quick count).
const CASES_VAR: &str = "IDGRAPH_FUZZ_CASES";
/// Set to `1` to write inputs of new outcome kinds into the corpus.
const SAVE_VAR: &str = "IDGRAPH_FUZZ_SAVE";
/// Separates the kinds of outcome of a target's several readers.
const KIND_SEP: &str = " | ";
/// The longest any one input may take. Generous (debug builds, a loaded machine): the decoders
/// are linear, so this only catches pathological slowness.
const INPUT_TIME_MAX: Duration = Duration::from_secs(2);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The most a target may allocate (cumulative bytes, reallocation growth included) for one input:
/// `per_input_byte` times the input's length plus `base`.
#[derive(Debug, Clone, Copy)]
struct AllocBound {
    per_input_byte: u64,
    base: u64,
}

impl AllocBound {
    fn for_input(self, n_bytes: usize) -> u64 {
        self.per_input_byte.saturating_mul(n_bytes as u64).saturating_add(self.base)
    }
}

/// One fuzz target.
struct Target<'a> {
    name: &'static str,
    /// The corpus files' extension.
    extension: &'static str,
    default_cases: u32,
    /// Valid inputs to mutate (the corpus is added to them).
    seeds: Vec<Vec<u8>>,
    /// Inputs built from the target's own structure.
    structured: BoxedStrategy<Vec<u8>>,
    /// Applied after mutation, with a mode drawn by the fuzzer (0: leave the input as it is):
    /// repairs what would otherwise stop every mutated input at the first check (a checksum).
    repair: fn(&mut [u8], u8),
    /// Runs the input. `Ok` names the kind of outcome (an error message with its numbers and
    /// quoted values normalised; a target with several readers joins theirs with [`KIND_SEP`]);
    /// `Err` is a violated property.
    check: &'a dyn Fn(&[u8]) -> Result<String, String>,
    alloc_bound: AllocBound,
}

/// Runs `target.check` on `input`, and checks time and allocation; the outcome's kind and the bytes
/// allocated.
fn measured(target: &Target<'_>, input: &[u8]) -> Result<(String, u64), String> {
    let region = Region::new(GLOBAL);
    let started = Instant::now();
    let res = (target.check)(input);
    let elapsed = started.elapsed();
    let stats = region.change();
    let kind = res?;
    if elapsed > INPUT_TIME_MAX {
        return Err(format!("took {elapsed:?} (at most {INPUT_TIME_MAX:?}); outcome: {kind}"));
    }
    let allocated = stats.bytes_allocated as u64;
    let bound = target.alloc_bound.for_input(input.len());
    if allocated > bound {
        return Err(format!(
            "allocated {allocated} bytes for a {}-byte input (at most {bound}); outcome: {kind}",
            input.len()
        ));
    }
    Ok((kind, allocated))
}

/// The most allocated for one input so far, and that input's length.
#[derive(Debug, Default)]
struct MostAllocated {
    allocated: u64,
    n_bytes: usize,
}

impl MostAllocated {
    fn record(&mut self, allocated: u64, n_bytes: usize) {
        if allocated > self.allocated {
            *self = MostAllocated { allocated, n_bytes };
        }
    }
}

fn cases(default_cases: u32) -> u32 {
    std::env::var(CASES_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases)
}

fn corpus_dir(name: &str) -> PathBuf {
    root().join("tests/fuzz-corpus").join(name)
}

/// The corpus files of a target (not its README), sorted.
fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(name);
    let Ok(read_dir) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = read_dir
        .map(|item| item.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext != "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes =
                std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// FNV-1a, to name files after their content.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A file name for an input of outcome `kind`.
fn file_name(kind: &str, input: &[u8], extension: &str) -> String {
    let mut slug = String::new();
    for c in kind.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(48).collect();
    format!("{}-{:08x}.{extension}", slug.trim_end_matches('-'), fnv(input) as u32)
}

/// Writes a failing input where the developer can find it, and says where.
fn save_failure(name: &str, extension: &str, input: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let path = dir.join(format!("{name}-{:016x}.{extension}", fnv(input)));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => format!("input saved to {}", path.display()),
        Err(err) => format!("input not saved ({err}): {input:?}"),
    }
}

/// Replays the corpus, then fuzzes.
fn fuzz(target: Target<'_>) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let started = Instant::now();
    let mut known_kinds = BTreeMap::new();
    let most = Mutex::new(MostAllocated::default());
    let corpus = corpus(target.name);
    for (path, input) in &corpus {
        match measured(&target, input) {
            Ok((kind, allocated)) => {
                most.lock().unwrap().record(allocated, input.len());
                for part in kind.split(KIND_SEP) {
                    *known_kinds.entry(part.to_owned()).or_insert(0) += 1;
                }
            }
            Err(violation) => panic!("{}: {violation}", path.display()),
        }
    }
    let mut seeds = target.seeds.clone();
    seeds.extend(corpus.iter().map(|(_, input)| input.clone()));
    assert!(!seeds.is_empty(), "{}: no seeds", target.name);
    let strategy = inputs(Arc::new(seeds), target.structured.clone(), target.repair);
    let n_cases = cases(target.default_cases);
    let mut runner = TestRunner::new(Config {
        cases: n_cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    });
    let new_kinds: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::default();
    let res = runner.run(&strategy, |input| match measured(&target, &input) {
        Ok((kind, allocated)) => {
            most.lock().unwrap().record(allocated, input.len());
            let mut new_kinds = new_kinds.lock().unwrap();
            for part in kind.split(KIND_SEP) {
                if !known_kinds.contains_key(part) && !new_kinds.contains_key(part) {
                    new_kinds.insert(part.to_owned(), input.clone());
                }
            }
            Ok(())
        }
        Err(violation) => Err(TestCaseError::fail(violation)),
    });
    match res {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(reason, input)) => {
            let saved = save_failure(target.name, target.extension, &input);
            panic!("{}: {reason}\n(minimal input, {} bytes: {saved})", target.name, input.len());
        }
        Err(err) => panic!("{}: {err}", target.name),
    }
    let new_kinds = new_kinds.into_inner().unwrap();
    if std::env::var(SAVE_VAR).as_deref() == Ok("1") {
        let dir = corpus_dir(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut written = std::collections::BTreeSet::new();
        for (kind, input) in &new_kinds {
            if !written.insert(fnv(input)) {
                continue;
            }
            std::fs::write(dir.join(file_name(kind, input, target.extension)), input).unwrap();
        }
    }
    let most = most.into_inner().unwrap();
    eprintln!(
        "{}: {} corpus inputs ({} outcome kinds), {n_cases} generated cases, {} new outcome kinds \
         ({SAVE_VAR}=1 saves them), at most {} bytes allocated (for {} input bytes), {:.1?}",
        target.name,
        corpus.len(),
        known_kinds.len(),
        new_kinds.len(),
        most.allocated,
        most.n_bytes,
        started.elapsed()
    );
    for kind in new_kinds.keys() {
        eprintln!("  new: {kind}");
    }
}

// Mutations.

/// Integers that sit on the decoders' edges: varint markers (251 to 253), the 1 MiB payload limit,
/// and the extremes of each width.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xfa,
    0xfb,
    0xfc,
    0xfd,
    0xfe,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x10_0001,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX,
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        byte: u8,
    },
    /// Writes an [`INTERESTING`] integer, little endian, `width` bytes of it.
    SetInteger {
        at: Index,
        value: Index,
        width: u8,
    },
    Truncate {
        at: Index,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Delete {
        at: Index,
        n: u8,
    },
    Duplicate {
        at: Index,
        n: u8,
    },
    /// Replaces the input from `at` on with another seed from `from` on.
    Splice {
        other: Index,
        from: Index,
        at: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<Index>(), any::<Index>(), prop::sample::select(&[1u8, 2, 4, 8][..]))
            .prop_map(|(at, value, width)| Mutation::SetInteger { at, value, width }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1..32u8).prop_map(|(at, n)| Mutation::Delete { at, n }),
        1 => (any::<Index>(), 1..32u8).prop_map(|(at, n)| Mutation::Duplicate { at, n }),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(other, from, at)| Mutation::Splice { other, from, at }),
    ]
}

/// A position in `0..len` (`0` when empty).
fn pos(at: &Index, len: usize) -> usize {
    if len == 0 { 0 } else { at.index(len) }
}

fn mutate(input: &mut Vec<u8>, seeds: &[Vec<u8>], mutation: &Mutation) {
    let len = input.len();
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if len > 0 {
                input[pos(at, len)] ^= 1 << bit;
            }
        }
        Mutation::SetByte { at, byte } => {
            if len > 0 {
                input[pos(at, len)] = *byte;
            }
        }
        Mutation::SetInteger { at, value, width } => {
            let bytes = INTERESTING[value.index(INTERESTING.len())].to_le_bytes();
            let start = pos(at, len);
            for (offset, byte) in bytes.iter().take(usize::from(*width)).enumerate() {
                if let Some(slot) = input.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
        }
        Mutation::Truncate { at } => input.truncate(pos(at, len)),
        Mutation::Insert { at, bytes } => {
            let start = pos(at, len + 1);
            input.splice(start..start, bytes.iter().copied());
        }
        Mutation::Delete { at, n } => {
            let start = pos(at, len);
            input.drain(start..(start + usize::from(*n)).min(len));
        }
        Mutation::Duplicate { at, n } => {
            let start = pos(at, len);
            let chunk = input[start..(start + usize::from(*n)).min(len)].to_vec();
            input.splice(start..start, chunk);
        }
        Mutation::Splice { other, from, at } => {
            let other = &seeds[other.index(seeds.len())];
            let start = pos(at, len);
            input.truncate(start);
            input.extend_from_slice(&other[pos(from, other.len())..]);
        }
    }
}

/// Mutated seeds (most), random bytes, structured inputs; then repaired with a drawn mode.
fn inputs(
    seeds: Arc<Vec<Vec<u8>>>,
    structured: BoxedStrategy<Vec<u8>>,
    repair: fn(&mut [u8], u8),
) -> BoxedStrategy<Vec<u8>> {
    let n_seeds = seeds.len();
    let mutated = (any::<Index>(), vec(mutation(), 1..6)).prop_map(move |(seed, mutations)| {
        let mut input = seeds[seed.index(n_seeds)].clone();
        for mutation in &mutations {
            mutate(&mut input, &seeds, mutation);
        }
        input
    });
    let raw = prop_oneof![
        8 => mutated,
        1 => vec(any::<u8>(), 0..512),
        2 => structured,
    ];
    (raw, 0..4u8)
        .prop_map(move |(mut input, mode)| {
            repair(&mut input, mode);
            input
        })
        .boxed()
}

/// An error message as a kind: numbers, hexadecimal values, quoted values (except the
/// configuration's key names) and TOML's source excerpt left out.
fn kind_of(message: &str) -> String {
    // TOML errors quote the offending line and point at it with `^`; the kind is what follows.
    let message = message.rsplit_once('^').map_or(message, |(_, after)| after).trim();
    let mut kind = String::new();
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            let quoted: String = chars.by_ref().take_while(|c| *c != '`').collect();
            let keep =
                TOP_KEYS.contains(&quoted.as_str()) || WORKSPACE_KEYS.contains(&quoted.as_str());
            kind.push('`');
            kind.push_str(if keep { &quoted } else { "_" });
            kind.push('`');
        } else if c == '"' {
            chars.by_ref().take_while(|c| *c != '"').for_each(drop);
            kind.push_str("\"_\"");
        } else if c.is_ascii_digit() {
            while chars.next_if(|c| c.is_ascii_hexdigit() || *c == 'x').is_some() {}
            kind.push('N');
        } else {
            kind.push(c);
        }
    }
    kind.chars().take(160).collect()
}

/// An entry's record as stored at sequence 1 of a fresh log (`None` if the log refuses it).
fn record_of(entry: &Entry) -> Option<Vec<u8>> {
    let log = Log::in_memory();
    log.append(entry).ok()?;
    log.raw_record_for_tests(Seq(1)).ok()?
}

/// A few values of `strategy`, the same every run.
fn samples<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, n: usize) -> Vec<T> {
    let mut runner = TestRunner::deterministic();
    (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

// Target 1: log records.

/// The sequence whose record the fuzzer replaces, in a log of [`N_LOG_ENTRIES`] valid entries, one
/// record each: the last, so that a fuzzed commit group may hold any number of entries without
/// overlapping the next record (where an overlap is reported is covered by the log crate's tests).
const TARGET_SEQ: Seq = Seq(3);
const N_LOG_ENTRIES: usize = 3;
const HEADER_LEN: usize = 12;

/// Repairs a record's header for [`TARGET_SEQ`]: mode 1 the checksum, modes 2 and 3 the payload
/// length and the checksum (`docs/log-format.md`, "Record framing").
fn repair_record(record: &mut [u8], mode: u8) {
    if mode == 0 || record.len() < HEADER_LEN {
        return;
    }
    let (header, payload) = record.split_at_mut(HEADER_LEN);
    if mode >= 2 {
        header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    }
    let crc = crc32c::crc32c(payload);
    let crc = crc32c::crc32c_append(crc, &TARGET_SEQ.0.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &header[..8]);
    header[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Where a read found corruption, and its kind.
type Found = Option<(Seq, String)>;

/// Checks that a read answered a value or `Corrupt` at [`TARGET_SEQ`] or an entry after it (a
/// fuzzed record may be a commit group of several entries); where and of what kind.
fn corruption<T>(what: &str, res: &Result<T, Error>) -> Result<Found, String> {
    match res {
        Ok(_) => Ok(None),
        Err(Error::Corrupt { seq, detail }) if *seq >= TARGET_SEQ => {
            Ok(Some((*seq, kind_of(detail))))
        }
        Err(err) => Err(format!("{what}: {err} (expected Corrupt at {TARGET_SEQ} or after)")),
    }
}

/// Every read of the log with `record` stored at [`TARGET_SEQ`]: each gives a verified entry or
/// `Corrupt` there; the two readers of the same decoder agree; the owned and view decoders agree
/// on what both decode.
fn check_record(log: &Log, record: &[u8]) -> Result<String, String> {
    log.overwrite_record_for_tests(TARGET_SEQ, record).map_err(|err| err.to_string())?;
    let owned = log.get(TARGET_SEQ);
    let get_found = corruption("get", &owned)?;
    if matches!(owned, Ok(None)) {
        return Err("get: None for a stored record".into());
    }
    // A scan stops at the first damaged entry; a point read of that entry fails the same way.
    let agrees_with_get = |found: &Found| -> Result<bool, String> {
        match found {
            None => Ok(get_found.is_none()),
            Some((seq, _)) => Ok(corruption("get", &log.get(*seq))? == *found),
        }
    };
    let mut scanned = None;
    let scan = log.scan(Seq::ZERO, |seq, entry| {
        if seq == TARGET_SEQ {
            scanned = Some(entry);
        }
        ControlFlow::Continue(())
    });
    let scan_found = corruption("scan", &scan)?;
    if !agrees_with_get(&scan_found)? {
        return Err(format!("scan and get disagree: {scan:?} / {owned:?}"));
    }
    let mut view_text = None;
    let views = log.scan_views(Seq::ZERO, |seq, view| {
        if seq == TARGET_SEQ {
            view_text = Some(format!("{view:?}"));
        }
        ControlFlow::Continue(())
    });
    let view_found = corruption("scan_views", &views)?;
    let failed_at_target = matches!(&view_found, Some((seq, _)) if *seq == TARGET_SEQ);
    if failed_at_target == view_text.is_some() {
        return Err(format!("scan_views visited the entry iff it failed there: {views:?}"));
    }
    let mut batch_view = None;
    let mut batch_decoding = Ok(());
    let batches = log.scan_batches(Seq::ZERO, 2, |batch| {
        batch_decoding = batch.for_each_view(|seq, view| {
            if seq == TARGET_SEQ {
                batch_view = Some(format!("{view:?}"));
            }
            ControlFlow::Continue(())
        });
        if batch_decoding.is_ok() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
    });
    let batch_found = match corruption("scan_batches", &batches)? {
        Some(found) => Some(found),
        None => corruption("RecordBatch::for_each_view", &batch_decoding)?,
    };
    if (&batch_found, &batch_view) != (&view_found, &view_text) {
        return Err(format!(
            "scan_batches and scan_views disagree: {batch_found:?} {batch_view:?} / \
             {view_found:?} {view_text:?}"
        ));
    }
    let range = log.read_range(Seq(1), usize::MAX);
    if corruption("read_range", &range)? != scan_found {
        return Err(format!("read_range and scan disagree: {range:?} / {scan:?}"));
    }
    if let (Ok(Some(entry)), Some(view)) = (&owned, &view_text) {
        if *view != format!("{:?}", EntryView::from(entry)) {
            return Err(format!("the decoders disagree: {view} / {entry:?}"));
        }
        if scanned.as_ref() != Some(entry) {
            return Err(format!("scan and get decode differently: {scanned:?} / {entry:?}"));
        }
    }
    // An entry that decodes with an earlier time than the one before is reported at itself.
    let verify = log.verify();
    let verify_found = corruption("verify", &verify)?;
    let name = |found: Found| match found {
        None => "ok".to_owned(),
        Some((seq, kind)) if seq == TARGET_SEQ => kind,
        Some((_, kind)) => format!("later entry: {kind}"),
    };
    Ok(format!(
        "get: {}{KIND_SEP}view: {}{KIND_SEP}verify: {}",
        name(get_found),
        name(view_found),
        name(verify_found)
    ))
}

#[test]
fn log_record() {
    let golden = entries::golden_entries();
    let entries: Vec<Entry> = golden.iter().map(|golden| golden.entry.clone()).collect();
    let log = Log::in_memory();
    let mut seeds = Vec::new();
    for entry in &entries[..N_LOG_ENTRIES] {
        let seq = log.append(entry).unwrap();
        seeds.push(log.raw_record_for_tests(seq).unwrap().expect("a record per append"));
    }
    // A commit group of every golden entry (format 2), and each golden record of format 1.
    let group = root().join("crates/log/tests/fixtures/records-v2/group.bin");
    seeds.push(std::fs::read(&group).unwrap_or_else(|err| panic!("{}: {err}", group.display())));
    // The golden records, each stored at its own sequence (`repair_record` moves them).
    let fixtures = root().join("crates/log/tests/fixtures/records-v1");
    for (idx, golden) in golden.iter().enumerate() {
        let path = fixtures.join(format!("{:02}-{}.bin", idx + 1, golden.name));
        seeds.push(std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display())));
    }
    seeds.extend(samples(idgraph_model::arbitrary::entry(), 32).iter().filter_map(record_of));
    let structured =
        idgraph_model::arbitrary::entry().prop_map(|entry| record_of(&entry).unwrap_or_default());
    let check = |record: &[u8]| check_record(&log, record);
    fuzz(Target {
        name: "log_record",
        extension: "bin",
        default_cases: 15_000,
        seeds,
        structured: structured.boxed(),
        repair: repair_record,
        check: &check,
        // A record is decoded six times (get, scan, scan_views, scan_batches, read_range, verify),
        // with the two other entries of the log each time. The owned decoder once reserved what a
        // length field claimed before finding the payload shorter (a megabyte per read for the
        // 124-byte `owned-decoder-reserves-claimed-length.bin`); it now vets claims with the view
        // decoder first, so allocation follows the input's size, above a constant: the readers'
        // own buffers (a scan batch reserves room for thousands of records, about 1 MB in all
        // for the six reads, whatever the input).
        alloc_bound: AllocBound { per_input_byte: 64, base: 2 * 1024 * 1024 },
    });
}

// Target 2: snapshots.

/// Mode 0 leaves the checksum (the last 16 bytes) as it is; the others recompute it.
fn repair_snapshot(snapshot: &mut [u8], mode: u8) {
    if mode == 0 || snapshot.len() < 16 {
        return;
    }
    let body_len = snapshot.len() - 16;
    let (body, checksum) = snapshot.split_at_mut(body_len);
    checksum.copy_from_slice(&xxhash_rust::xxh3::xxh3_128(body).to_le_bytes());
}

fn generated_snapshot(seed: u64, n_entries: usize) -> Vec<u8> {
    let mut projection = Projection::new();
    for (idx, entry) in LogGenerator::new(seed).take(n_entries).enumerate() {
        projection.apply(Seq(idx as u64 + 1), &entry).unwrap();
    }
    projection.to_snapshot()
}

/// A snapshot of arbitrary (incoherent) entries folded: diagnostics, odd strings.
fn arbitrary_snapshot(entries: &[Entry]) -> Vec<u8> {
    let mut projection = Projection::new();
    for (idx, entry) in entries.iter().enumerate() {
        projection.apply(Seq(idx as u64 + 1), entry).unwrap();
    }
    projection.to_snapshot()
}

/// A snapshot loads or is refused; one that loads saves again to a snapshot that loads to the
/// same digests.
fn check_snapshot(bytes: &[u8]) -> Result<String, String> {
    let projection = match Projection::from_snapshot(bytes) {
        Ok(projection) => projection,
        Err(err) => return Ok(kind_of(&err.to_string())),
    };
    let again = Projection::from_snapshot(&projection.to_snapshot())
        .map_err(|err| format!("a loaded snapshot saved again does not load: {err}"))?;
    if (again.content_digest(), again.running_digest())
        != (projection.content_digest(), projection.running_digest())
    {
        return Err("a loaded snapshot saved again loads to other digests".into());
    }
    Ok("loaded".into())
}

#[test]
fn snapshot() {
    let mut seeds = vec![
        std::fs::read(root().join("crates/log/tests/fixtures/snapshot-idgsnap1.bin")).unwrap(),
    ];
    for (seed, n_entries) in [(1, 0), (2, 1), (3, 3), (4, 12), (5, 40)] {
        seeds.push(generated_snapshot(seed, n_entries));
    }
    let arbitrary_entries = || vec(idgraph_model::arbitrary::entry(), 0..6);
    seeds.extend(samples(arbitrary_entries(), 8).iter().map(|e| arbitrary_snapshot(e)));
    let structured = prop_oneof![
        (any::<u64>(), 0..24usize).prop_map(|(seed, n)| generated_snapshot(seed, n)),
        arbitrary_entries().prop_map(|entries| arbitrary_snapshot(&entries)),
    ];
    fuzz(Target {
        name: "snapshot",
        extension: "bin",
        default_cases: 20_000,
        seeds,
        structured: structured.boxed(),
        repair: repair_snapshot,
        check: &check_snapshot,
        // A loaded projection's tables, graph and interner: a few hundred bytes per identity or
        // profile (at least 7 bytes each in the snapshot), and the empty projection's tables.
        alloc_bound: AllocBound { per_input_byte: 256, base: 1024 * 1024 },
    });
}

// Target 3: the configuration file.

/// Configuration text has nothing to repair.
fn repair_nothing(_: &mut [u8], _: u8) {}

/// A TOML value of any of the types the configuration's keys take, valid or not.
fn toml_value() -> impl Strategy<Value = String> {
    let names = prop::sample::select(
        &[
            "customerid",
            "email",
            "other",
            "other10",
            "ios_idfv",
            "roku_aid",
            "phone",
            "",
            "default",
            "profile_conversion",
            "profile_link",
            "profile_isolation",
            "best_match",
            "most_recently_seen",
            "lowest_mpid",
            "127.0.0.1:0",
            "[::1]:8080",
            "300.1.1.1:80",
        ][..],
    );
    let string = prop_oneof![
        names.prop_map(|name| format!("{name:?}")),
        ".{0,12}".prop_map(|text| format!("{text:?}")),
    ];
    let scalar = prop_oneof![
        string.clone(),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(
            &["0", "-1", "1e400", "nan", "true", "false", "18446744073709551616"][..]
        )
        .prop_map(str::to_owned),
    ];
    prop_oneof![
        3 => scalar,
        1 => vec(string, 0..5).prop_map(|items| format!("[{}]", items.join(", "))),
        1 => Just("{ a = 1 }".to_owned()),
    ]
}

fn toml_key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
        1 => Just("\"quoted key\"".to_owned()),
    ]
}

const TOP_KEYS: &[&str] =
    &["listen", "data_dir", "body_bytes_max", "max_age_seconds", "snapshot_every_entries"];
const WORKSPACE_KEYS: &[&str] = &[
    "name",
    "api_key",
    "api_secret",
    "scope",
    "strategy",
    "identity_priority",
    "login_ids",
    "unique_ids",
    "immutable_ids",
    "allow_key_only",
    "tie_break",
    "auto_alias",
    "rate_limit_per_second",
    "blocked_values",
    "identities_per_type_max",
    "value_bytes_max",
];

/// Configurations of the documented shape with arbitrary keys and values.
fn toml_config() -> impl Strategy<Value = Vec<u8>> {
    let table = |keys| vec((toml_key(keys), toml_value()), 0..6);
    let workspace = (
        prop::sample::select(&["a", "b", "shop"][..]),
        prop::sample::select(&["k1", "k2"][..]),
        table(WORKSPACE_KEYS),
    );
    (table(TOP_KEYS), vec(workspace, 0..3)).prop_map(|(top, workspaces)| {
        let mut text = String::new();
        for (key, value) in top {
            text.push_str(&format!("{key} = {value}\n"));
        }
        for (name, key, rest) in workspaces {
            text.push_str(&format!(
                "[[workspace]]\nname = {name:?}\napi_key = {key:?}\napi_secret = \"s\"\n"
            ));
            for (key, value) in rest {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text.into_bytes()
    })
}

/// A configuration file loads, or its error names the file (and the line, for a TOML error);
/// `parse` agrees with `load`.
fn check_config(path: &Path, bytes: &[u8]) -> Result<String, String> {
    std::fs::write(path, bytes).map_err(|err| format!("{}: {err}", path.display()))?;
    let loaded = ServerConfig::load(path);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let parsed = ServerConfig::parse(text);
        if parsed.is_ok() != loaded.is_ok() {
            return Err(format!("parse and load disagree: {parsed:?} / {loaded:?}"));
        }
    }
    let err = match loaded {
        Ok(_) => return Ok("ok".into()),
        Err(err) => format!("{err:#}"),
    };
    let file = path.display().to_string();
    let Some(message) = err.strip_prefix(&file) else {
        return Err(format!("the error does not start with the file's name: {err}"));
    };
    if message.contains("TOML parse error") && !message.contains(" line ") {
        return Err(format!("a TOML error without a line: {err}"));
    }
    Ok(kind_of(message))
}

#[test]
fn config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idgraph.toml");
    // The corpus holds the documented examples; the development defaults are a seed too.
    let seeds =
        vec![b"[[workspace]]\nname = \"w\"\napi_key = \"k\"\napi_secret = \"s\"\n".to_vec()];
    let check = |bytes: &[u8]| check_config(&path, bytes);
    fuzz(Target {
        name: "config",
        extension: "toml",
        default_cases: 2_000,
        seeds,
        structured: toml_config().boxed(),
        repair: repair_nothing,
        check: &check,
        // The TOML document tree and the error message (which quotes a line of the input); the
        // base covers the backtrace `anyhow` captures when RUST_BACKTRACE is set (about 1 MB).
        alloc_bound: AllocBound { per_input_byte: 256, base: 4 * 1024 * 1024 },
    });
}

#[test]
fn kinds_leave_out_numbers_and_values_but_keep_keys() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(
        kind_of("checksum mismatch (stored 0x1234abcd, computed 0x00000001) at byte 17"),
        "checksum mismatch (stored N, computed N) at byte N"
    );
    assert_eq!(
        kind_of("[[workspace]] #2 (`shop`): key `login_ids`: unknown identity type `phone`"),
        "[[workspace]] #N (`_`): key `login_ids`: unknown identity type `_`"
    );
    assert_eq!(
        kind_of("TOML parse error at line 1, column 3 | 1 | a = | ^ invalid string"),
        "invalid string"
    );
}

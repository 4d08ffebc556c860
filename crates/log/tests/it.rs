//! Integration tests of the log: the same behaviour suite against RocksDB and memory, crash safety
//! with real processes killed by SIGKILL, on-disk corruption and poisoning.

use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idgraph_log::{Durability, Error, IndexKey, Log};
use idgraph_model::{
    Entry, Environment, Event, Identity, IdentityRequest, IdentityType, Mpid, Operation, Outcome,
    Request, Seq, Timestamp,
};

/// A small, deterministic entry whose content is a function of `n` and `time`.
fn entry(n: u64, time: i64) -> Entry {
    let mpid = Mpid::new(n as i64 + 1).unwrap();
    let identity = Identity::new(IdentityType::Email, format!("user-{n}@example.com"));
    Entry {
        recorded_at: Timestamp(time),
        request: Request {
            request_id: Some(format!("req-{n}")),
            workspace: "shop".into(),
            scope: "shop".into(),
            environment: Environment::Production,
            operation: Operation::Identify(IdentityRequest {
                known_identities: vec![identity.clone()],
                previous_mpid: None,
            }),
        },
        events: vec![Event::ProfileCreated { mpid }, Event::IdentityAttached { mpid, identity }],
        outcome: Outcome::Resolved { mpid, is_logged_in: false, matched: vec![] },
    }
}

fn all(log: &Log) -> Vec<(Seq, Entry)> {
    log.read_range(Seq::ZERO, usize::MAX).unwrap()
}

/// The behaviour every backend must share.
fn check_basics(log: &Log) {
    assert_eq!(log.last_seq(), Seq::ZERO);
    assert_eq!(log.get(Seq(1)).unwrap(), None);
    assert_eq!(log.append(&entry(0, 100)).unwrap(), Seq(1));
    let (first, last) = log
        .append_batch(&[entry(1, 100), entry(2, 250), entry(3, 300)], Durability::Synced)
        .unwrap();
    assert_eq!((first, last), (Seq(2), Seq(4)));
    assert_eq!(log.last_seq(), Seq(4));
    assert_eq!(log.durable_seq(), Seq(4));
    assert_eq!(log.get(Seq(3)).unwrap(), Some(entry(2, 250)));
    assert_eq!(log.get(Seq(5)).unwrap(), None);

    let entries = all(log);
    assert_eq!(entries.iter().map(|(seq, _)| seq.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(log.read_range(Seq(3), 10).unwrap().len(), 2);
    assert_eq!(log.read_range(Seq(2), 1).unwrap(), vec![(Seq(2), entry(1, 100))]);
    assert!(log.read_range(Seq(9), 10).unwrap().is_empty());

    // The time index: the last sequence recorded at or before a time.
    assert_eq!(log.seq_at(Timestamp(99)).unwrap(), Seq::ZERO);
    assert_eq!(log.seq_at(Timestamp(100)).unwrap(), Seq(2));
    assert_eq!(log.seq_at(Timestamp(299)).unwrap(), Seq(3));
    assert_eq!(log.seq_at(Timestamp(i64::MAX)).unwrap(), Seq(4));

    // Time never goes backwards, and a rejected batch writes nothing.
    let err = log.append_batch(&[entry(4, 400), entry(5, 10)], Durability::Synced).unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err}");
    assert!(matches!(log.append_batch(&[], Durability::Synced), Err(Error::Rejected { .. })));
    assert_eq!(log.last_seq(), Seq(4));

    // Deferred appends are visible at once and durable after sync.
    let (seq, _) = log.append_batch(&[entry(6, 500)], Durability::Deferred).unwrap();
    assert_eq!(seq, Seq(5));
    assert_eq!(log.get(Seq(5)).unwrap(), Some(entry(6, 500)));
    assert_eq!(log.sync().unwrap(), Seq(5));
    assert_eq!(log.verify().unwrap().n_entries, 5);

    // Queued appends return before the write: invisible until the next group commit writes them.
    let (seq, _) = log.append_batch(&[entry(7, 600)], Durability::Queued).unwrap();
    assert_eq!(seq, Seq(6));
    assert_eq!(log.assigned_seq(), Seq(6));
    assert_eq!(log.last_seq(), Seq(5));
    assert_eq!(log.get(Seq(6)).unwrap(), None);
    assert_eq!(log.flush().unwrap(), Seq(6));
    assert_eq!(log.get(Seq(6)).unwrap(), Some(entry(7, 600)));
    // A synced append writes (and syncs) what was queued before it.
    log.append_batch(&[entry(8, 700)], Durability::Queued).unwrap();
    assert_eq!(log.append(&entry(9, 800)).unwrap(), Seq(8));
    assert_eq!(log.durable_seq(), Seq(8));
    assert_eq!(log.get(Seq(7)).unwrap(), Some(entry(8, 700)));
    // A long run of queued appends writes itself once the queue is full.
    for n in 0..idgraph_log::limits::QUEUED_ENTRIES_MAX as u64 + 1 {
        log.append_batch(&[entry(100 + n, 900)], Durability::Queued).unwrap();
    }
    assert!(log.last_seq() > Seq(8), "the full queue was written");
}

#[test]
fn memory_log_basics() {
    check_basics(&Log::in_memory());
}

#[test]
fn rocksdb_log_basics_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    check_basics(&log);
    log.flush().unwrap();
    let before = all(&log);
    log.close().unwrap();

    let log = Log::open(dir.path()).unwrap();
    assert_eq!(all(&log), before, "a reopened log holds exactly what was appended");
    let last = log.last_seq();
    assert_eq!(
        last.0,
        8 + idgraph_log::limits::QUEUED_ENTRIES_MAX as u64 + 1,
        "close wrote the queue"
    );
    // Appends continue the sequence and the time order of the previous run.
    assert!(matches!(log.append(&entry(7, 1)), Err(Error::Rejected { .. })));
    assert_eq!(log.append(&entry(7, 1_000)).unwrap(), last.next());
}

#[test]
fn a_second_open_of_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path()).unwrap();
    let err = Log::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

fn check_concurrent_appenders(log: Arc<Log>) {
    let n_threads = 16;
    let n_per_thread = 50;
    let threads: Vec<_> = (0..n_threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..n_per_thread)
                    .map(|i| log.append(&entry(t * 1000 + i, 0)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> =
        threads.into_iter().flat_map(|t| t.join().unwrap()).map(|seq| seq.0).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=n_threads * n_per_thread).collect();
    assert_eq!(seqs, expected, "every appender got a distinct sequence, with no gap");
    assert_eq!(log.verify().unwrap().n_entries, n_threads * n_per_thread);
    let stats = log.stats();
    assert_eq!(stats.n_entries_written, n_threads * n_per_thread);
    assert!(stats.n_syncs <= stats.n_writes);
}

#[test]
fn concurrent_appenders_get_gap_free_sequences() {
    check_concurrent_appenders(Arc::new(Log::in_memory()));
    let dir = tempfile::tempdir().unwrap();
    check_concurrent_appenders(Arc::new(Log::open(dir.path()).unwrap()));
}

#[test]
fn appending_after_an_io_failure_is_refused() {
    let (log, faults) = Log::in_memory_with_faults();
    log.append(&entry(0, 1)).unwrap();
    faults.fail_writes();
    let err = log.append(&entry(1, 2)).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    // Poisoned for good: even a write that storage might now accept is refused.
    let err = log.append_batch(&[entry(2, 3)], Durability::Deferred).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
    // What was acknowledged is still readable.
    assert_eq!(all(&log), vec![(Seq(1), entry(0, 1))]);
}

#[test]
fn a_record_failing_its_checksum_is_reported_with_its_sequence_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for n in 0..10 {
        log.append(&entry(n, 10)).unwrap();
    }
    let mut bytes = log.raw_record_for_tests(Seq(4)).unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    log.overwrite_record_for_tests(Seq(4), &bytes).unwrap();
    log.close().unwrap();

    let log = Log::open(dir.path()).unwrap();
    let err = log.get(Seq(4)).unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: Seq(4), .. }), "{err}");
    assert_eq!(log.get(Seq(5)).unwrap(), Some(entry(4, 10)));
    let mut served = Vec::new();
    let err = log
        .scan(Seq::ZERO, |seq, _| {
            served.push(seq.0);
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: Seq(4), .. }), "{err}");
    assert_eq!(served, [1, 2, 3], "the scan stops before the damaged record");
    assert!(matches!(log.verify(), Err(Error::Corrupt { seq: Seq(4), .. })));
}

#[test]
fn a_damaged_last_record_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for n in 0..3 {
        log.append(&entry(n, 10)).unwrap();
    }
    let mut bytes = log.raw_record_for_tests(Seq(3)).unwrap().unwrap();
    bytes[13] ^= 0x80;
    log.overwrite_record_for_tests(Seq(3), &bytes).unwrap();
    log.close().unwrap();
    let err = Log::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: Seq(3), .. }), "{err}");
}

/// Flips one byte of a record inside RocksDB's own files: the damage is found by a checksum (ours
/// or RocksDB's), reported at that sequence, and nothing damaged is returned.
#[test]
fn a_byte_flipped_on_disk_is_reported_as_corruption_at_that_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for n in 0..50 {
        log.append(&entry(n, 10)).unwrap();
    }
    log.close().unwrap();
    let marker = b"user-37@example.com";
    let (file, offset) = find_in_folder(dir.path(), marker).expect("record bytes are on disk");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset + 5] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();

    match Log::open(dir.path()) {
        Err(err) => assert!(matches!(err, Error::Corrupt { .. } | Error::Storage { .. }), "{err}"),
        Ok(log) => {
            let err = log.get(Seq(38)).unwrap_err();
            assert!(matches!(err, Error::Corrupt { seq: Seq(38), .. }), "{err}");
            let mut served = Vec::new();
            let res = log.scan(Seq::ZERO, |seq, entry| {
                served.push((seq, entry));
                ControlFlow::Continue(())
            });
            assert!(matches!(res, Err(Error::Corrupt { seq, .. }) if seq <= Seq(38)), "{res:?}");
            for (seq, entry) in served {
                assert!(seq < Seq(38));
                assert_eq!(entry, self::entry(seq.0 - 1, 10), "only intact entries are served");
            }
        }
    }
}

/// Issue #14, item 9: damage in the newest table block (where open looks for the last record) was
/// reported at "sequence 0". It is reported at the first sequence the damaged block holds, with the
/// last sequence that reads intact.
#[test]
fn r14_damage_in_the_last_block_is_reported_at_the_first_sequence_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    // Enough records for several 64 KiB table blocks.
    let n_entries = 3_000;
    let entries: Vec<Entry> = (0..n_entries).map(|n| entry(n, 10)).collect();
    for chunk in entries.chunks(500) {
        log.append_batch(chunk, Durability::Synced).unwrap();
    }
    log.close().unwrap();
    let marker = format!("user-{}@example.com", n_entries - 1);
    let (file, offset) = find_in_folder(dir.path(), marker.as_bytes()).expect("on disk");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[offset + 5] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();

    let err = Log::open(dir.path()).unwrap_err();
    let Error::Corrupt { seq, detail } = &err else { panic!("{err}") };
    assert!(*seq > Seq(1) && *seq <= Seq(n_entries), "{err}");
    let last_intact = format!("sequence {} is the last that reads intact", seq.0 - 1);
    assert!(detail.contains(&last_intact), "{err}");
    assert!(detail.contains("the records after it"), "{err}");
}

fn find_in_folder(dir: &Path, needle: &[u8]) -> Option<(std::path::PathBuf, usize)> {
    // Table files only: after `close` every record is in one, and the write-ahead log is obsolete.
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sst"))
        .collect();
    paths.sort();
    paths.into_iter().find_map(|path| {
        let bytes = std::fs::read(&path).ok()?;
        let offset = bytes.windows(needle.len()).position(|window| window == needle)?;
        Some((path, offset))
    })
}

// ---------------------------------------------------------------------------------------------
// Crash safety with real processes.

const CHILD_DIR_VAR: &str = "IDGRAPH_CRASH_CHILD_DIR";

/// Child side: when run by `crash_rounds` (the variable is set), appends durably from 8 threads
/// forever and prints `ack <seq>` for each acknowledged append. Otherwise does nothing.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else { return };
    let log = Arc::new(Log::open(&dir).unwrap());
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (log, stdout) = (Arc::clone(&log), Arc::clone(&stdout));
            std::thread::spawn(move || {
                for i in 0.. {
                    let seq = log.append(&entry(t << 32 | i, 0)).unwrap();
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ack {}", seq.0).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A splitmix64 step: a seeded, dependency-free source of kill delays.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn crash_round(dir: &Path, seed: u64) {
    let mut rng = seed;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_process", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| line.strip_prefix("ack ").and_then(|seq| seq.parse::<u64>().ok()))
            .collect::<Vec<_>>()
    });
    // Kill at a random moment after the child has had time to open the log and start appending.
    let delay = Duration::from_millis(30 + splitmix(&mut rng) % 120);
    let started = Instant::now();
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix.
    child.wait().unwrap();
    let acked = reader.join().unwrap();

    let log = Log::open(dir).unwrap();
    let report = log.verify().unwrap_or_else(|err| panic!("seed {seed}: {err}"));
    let max_acked = acked.iter().copied().max().unwrap_or(0);
    assert!(
        report.last_seq.0 >= max_acked,
        "seed {seed}: acknowledged {max_acked} but only {} survived (killed after {:?})",
        report.last_seq,
        started.elapsed()
    );
    for seq in acked {
        assert!(log.get(Seq(seq)).unwrap().is_some(), "seed {seed}: acknowledged {seq} is lost");
    }
}

/// Every acknowledged append survives SIGKILL, intact and gap-free. 30 seeded rounds; set
/// `IDGRAPH_CRASH_ROUNDS` for more.
#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var(CHILD_DIR_VAR).is_ok() {
        return;
    }
    let n_rounds: u64 =
        std::env::var("IDGRAPH_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let mut n_acked_total = 0;
    for round in 0..n_rounds {
        // The same folder across rounds: each round also recovers from the previous crash.
        crash_round(dir.path(), 0x5EED_0000 + round);
        n_acked_total = Log::open(dir.path()).unwrap().last_seq().0;
    }
    assert!(n_acked_total > 0, "the child never acknowledged an append");
}

/// The same, starting from a format-1 log: the child's open upgrades it (in place, `meta` only)
/// and its appends are commit groups after the format-1 records; a kill at any point, the
/// upgrade included, loses neither the old records nor an acknowledged group.
#[test]
fn acknowledged_appends_survive_sigkill_across_the_format_1_upgrade() {
    if std::env::var(CHILD_DIR_VAR).is_ok() {
        return;
    }
    let old: Vec<Entry> = (0..500).map(|n| entry(n, 0)).collect();
    let dir = tempfile::tempdir().unwrap();
    Log::create_format_1_for_tests(dir.path(), &old).unwrap();
    for round in 0..5 {
        crash_round(dir.path(), 0xF0_0000 + round);
        let log = Log::open(dir.path()).unwrap();
        assert!(log.last_seq() >= Seq(500));
        let read = log.read_range(Seq(1), 500).unwrap();
        assert_eq!(read.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), old, "round {round}");
    }
}

/// Entries over small pools of profiles, identities and scopes, so that index subjects repeat.
fn varied_entries(n: usize, seed: u64) -> Vec<Entry> {
    let mut rng = seed;
    let mut pick = |n: u64| splitmix(&mut rng) % n;
    (0..n)
        .map(|i| {
            let mpid = |k: u64| {
                Mpid::new(k as i64 - 3).filter(|_| k != 3).unwrap_or(Mpid::new(9).unwrap())
            };
            let identity = |t: u64, v: u64| {
                let identity_type =
                    if t == 0 { IdentityType::Email } else { IdentityType::CustomerId };
                Identity::new(identity_type, format!("v{v}"))
            };
            let mut events = Vec::new();
            for _ in 0..pick(4) {
                events.push(match pick(4) {
                    0 => Event::ProfileCreated { mpid: mpid(pick(7)) },
                    1 => Event::IdentityAttached {
                        mpid: mpid(pick(7)),
                        identity: identity(pick(2), pick(5)),
                    },
                    2 => Event::IdentityDetached {
                        mpid: mpid(pick(7)),
                        identity: identity(pick(2), pick(5)),
                        reason: idgraph_model::DetachReason::Modified,
                    },
                    _ => Event::AliasRecorded {
                        source: mpid(pick(7)),
                        destination: mpid(pick(7)),
                        start: Timestamp(0),
                        end: Timestamp(1),
                    },
                });
            }
            let outcome = match pick(3) {
                0 => {
                    Outcome::Resolved { mpid: mpid(pick(7)), is_logged_in: false, matched: vec![] }
                }
                1 => Outcome::Modified { mpid: mpid(pick(7)) },
                _ => Outcome::AliasAccepted,
            };
            let mut entry = entry(i as u64, i as i64);
            entry.request.scope = format!("scope-{}", pick(2));
            entry.events = events;
            entry.outcome = outcome;
            entry
        })
        .collect()
}

/// What the indexes must say, computed from the entries without the index code.
fn expected_index(entries: &[Entry]) -> std::collections::BTreeMap<IndexKey, Vec<Seq>> {
    let mut expected: std::collections::BTreeMap<IndexKey, Vec<Seq>> = Default::default();
    for (idx, entry) in entries.iter().enumerate() {
        let seq = Seq(idx as u64 + 1);
        let mut named = Vec::new();
        let mut keys = Vec::new();
        for event in &entry.events {
            match event {
                Event::ProfileCreated { mpid } => named.push(*mpid),
                Event::IdentityAttached { mpid, identity }
                | Event::IdentityDetached { mpid, identity, .. } => {
                    named.push(*mpid);
                    keys.push(IndexKey::identity(&entry.request.scope, identity));
                }
                Event::AliasRecorded { source, destination, .. } => {
                    named.extend([*source, *destination])
                }
            }
        }
        keys.extend(named.iter().map(|mpid| IndexKey::ProfileChanged(*mpid)));
        if let Outcome::Resolved { mpid, .. } | Outcome::Modified { mpid } = &entry.outcome
            && !named.contains(mpid)
        {
            keys.push(IndexKey::ProfileSeen(*mpid));
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            expected.entry(key).or_default().push(seq);
        }
    }
    expected
}

fn check_index(log: &Log, entries: &[Entry]) {
    let expected = expected_index(entries);
    assert!(expected.len() > 20, "the pools repeat subjects");
    let last = Seq(entries.len() as u64);
    for (key, seqs) in &expected {
        for up_to in [Seq::ZERO, Seq(1), Seq(last.0 / 2), last, Seq(u64::MAX)] {
            let want: Vec<Seq> = seqs.iter().copied().filter(|seq| *seq <= up_to).collect();
            assert_eq!(log.indexed(*key, up_to).unwrap(), want, "{key:?} up to {up_to}");
            assert_eq!(log.last_indexed(*key, up_to).unwrap(), want.last().copied());
        }
    }
    let absent = IndexKey::identity("scope-0", &Identity::new(IdentityType::Email, "nobody"));
    assert!(log.indexed(absent, last).unwrap().is_empty());
    assert_eq!(
        log.last_indexed(IndexKey::ProfileSeen(Mpid::new(1234).unwrap()), last).unwrap(),
        None
    );
}

#[test]
fn the_indexes_list_the_entries_that_touched_each_profile_and_identity() {
    let entries = varied_entries(400, 7);
    let memory = Log::in_memory();
    let dir = tempfile::tempdir().unwrap();
    let rocks = Log::open(dir.path()).unwrap();
    for log in [&memory, &rocks] {
        for chunk in entries.chunks(37) {
            log.append_batch(chunk, Durability::Deferred).unwrap();
        }
        check_index(log, &entries);
    }
    rocks.close().unwrap();
    check_index(&Log::open(dir.path()).unwrap(), &entries);
}

#[test]
fn a_database_that_lost_its_indexes_is_indexed_again() {
    let entries = varied_entries(25_000, 11);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for chunk in entries.chunks(1_000) {
        log.append_batch(chunk, Durability::Deferred).unwrap();
    }
    log.close().unwrap();
    // Lose the indexes (derived data): no index keys, no mark of how far they went.
    {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        let mut db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), &names).unwrap();
        db.drop_cf("index").unwrap();
        db.delete_cf(db.cf_handle("meta").unwrap(), b"indexed").unwrap();
    }
    let log = Log::open(dir.path()).unwrap();
    check_index(&log, &entries);
    assert!(log.verify().unwrap().n_index_keys > 25_000);
    // Appends after the backfill are indexed as usual.
    let more = varied_entries(25_100, 11);
    log.append_batch(&more[25_000..], Durability::Synced).unwrap();
    check_index(&log, &more);
}

#[test]
fn verify_reports_a_missing_index_key() {
    let entries = varied_entries(300, 3);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.append_batch(&entries, Durability::Synced).unwrap();
    let report = log.verify().unwrap();
    assert_eq!(
        report.n_index_keys,
        expected_index(&entries).values().map(Vec::len).sum::<usize>() as u64
    );
    log.close().unwrap();
    {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), &names).unwrap();
        let index = db.cf_handle("index").unwrap();
        let first = db.iterator_cf(index, rocksdb::IteratorMode::Start).next().unwrap().unwrap().0;
        db.delete_cf(index, &first).unwrap();
    }
    let err = Log::open(dir.path()).unwrap().verify().unwrap_err();
    assert!(matches!(&err, Error::Corrupt { detail, .. } if detail.contains("index key")), "{err}");
}

/// The format of the `meta` column family's `format` key, read with RocksDB directly.
fn stored_format(path: &Path) -> String {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &names).unwrap();
    let found = db.get_cf(db.cf_handle("meta").unwrap(), b"format").unwrap().unwrap();
    String::from_utf8(found).unwrap()
}

/// A group commit is one record: its entries keep their sequences and read one by one, from any
/// point, and "as of time T" finds the last entry at or before T inside a group.
#[test]
fn a_commit_group_is_one_record_whose_entries_read_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    // Times 10, 10, 20, 20, ..., in groups of 7, 1 and 12 entries.
    let entries: Vec<Entry> = (0..20).map(|n| entry(n, 10 * (n as i64 / 2 + 1))).collect();
    for chunk in [&entries[..7], &entries[7..8], &entries[8..]] {
        log.append_batch(chunk, Durability::Synced).unwrap();
    }
    let stats = log.stats();
    assert_eq!((stats.n_writes, stats.n_entries_written), (3, 20));
    for key in [1, 8, 9] {
        assert!(log.raw_record_for_tests(Seq(key)).unwrap().is_some(), "a record keyed {key}");
    }
    assert!(log.raw_record_for_tests(Seq(2)).unwrap().is_none(), "2 is inside the first group");
    assert_eq!(log.record_count().unwrap(), 3);
    check_group_reads(&log, &entries);
    drop(log);
    let log = Log::open(dir.path()).unwrap();
    check_group_reads(&log, &entries);
    assert_eq!(log.verify().unwrap().last_seq, Seq(20));
    assert_eq!(log.append(&entry(99, 500)).unwrap(), Seq(21));
}

fn check_group_reads(log: &Log, entries: &[Entry]) {
    for (idx, expected) in entries.iter().enumerate() {
        assert_eq!(log.get(Seq(idx as u64 + 1)).unwrap().as_ref(), Some(expected));
    }
    assert_eq!(log.get(Seq(21)).unwrap(), None);
    assert_eq!(log.get(Seq::ZERO).unwrap(), None);
    for from in [0, 1, 3, 7, 8, 9, 15, 20, 21, 40] {
        let read = log.read_range(Seq(from), usize::MAX).unwrap();
        let want: Vec<(Seq, Entry)> =
            (from.max(1)..=20).map(|seq| (Seq(seq), entries[seq as usize - 1].clone())).collect();
        assert_eq!(read, want, "from {from}");
    }
    assert_eq!(log.seq_at(Timestamp(9)).unwrap(), Seq::ZERO);
    assert_eq!(log.seq_at(Timestamp(10)).unwrap(), Seq(2));
    assert_eq!(log.seq_at(Timestamp(35)).unwrap(), Seq(6), "inside the first group");
    assert_eq!(log.seq_at(Timestamp(40)).unwrap(), Seq(8), "across two groups");
    assert_eq!(log.seq_at(Timestamp(95)).unwrap(), Seq(18), "inside the last group");
    assert_eq!(log.seq_at(Timestamp(i64::MAX)).unwrap(), Seq(20));
}

/// A log written by a build before commit groups (format 1: one record per entry, index keys
/// written with the entries) opens, is upgraded in place, reads the same, keeps its indexes, and
/// takes new entries as groups after the old records.
#[test]
fn a_format_1_log_is_upgraded_in_place_and_reads_the_same() {
    let entries = varied_entries(3_000, 5);
    let dir = tempfile::tempdir().unwrap();
    Log::create_format_1_for_tests(dir.path(), &entries).unwrap();
    assert_eq!(stored_format(dir.path()), "idgraph-log/1");

    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.last_seq(), Seq(3_000));
    assert_eq!(log.indexed_seq(), Seq(3_000), "format 1 had every entry indexed");
    let read: Vec<Entry> = all(&log).into_iter().map(|(_, entry)| entry).collect();
    assert_eq!(read, entries);
    check_index(&log, &entries);
    log.close().unwrap();
    assert_eq!(stored_format(dir.path()), "idgraph-log/2");

    let log = Log::open(dir.path()).unwrap();
    let more = varied_entries(3_500, 5);
    log.append_batch(&more[3_000..], Durability::Synced).unwrap();
    assert!(log.raw_record_for_tests(Seq(3_001)).unwrap().is_some(), "one group after them");
    let report = log.verify().unwrap();
    assert_eq!((report.last_seq, report.indexed_seq), (Seq(3_500), Seq(3_500)));
    check_index(&log, &more);
    let read: Vec<Entry> = all(&log).into_iter().map(|(_, entry)| entry).collect();
    assert_eq!(read, more);
}

/// A log of a format this build does not know is refused at open, naming both formats, and left
/// untouched.
#[test]
fn a_log_of_an_unknown_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path()).unwrap().close().unwrap();
    {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), &names).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"format", b"idgraph-log/3").unwrap();
    }
    let err = Log::open(dir.path()).unwrap_err().to_string();
    for needle in ["idgraph-log/3", "idgraph-log/2", "newer idgraph"] {
        assert!(err.contains(needle), "{err} lacks {needle}");
    }
    assert_eq!(stored_format(dir.path()), "idgraph-log/3");
}

//! Tests of the runner against a test double of a target: references resolve to what the
//! referenced line answered, chunks never hold a line with a line it references, outcomes are
//! counted, failures are reported.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use idgraph_model::Mpid;

use super::chunk::Chunker;
use super::{Outcome, Ready, Report, Resources, RunOptions, RunStats, Target, run};
use crate::{Generator, Op, WorkloadRequest, WorkloadSpec};

fn workload(requests: u64) -> Vec<WorkloadRequest> {
    let spec = WorkloadSpec { seed: 3, requests, users: 200, ..WorkloadSpec::default() };
    Generator::new(&spec).unwrap().collect()
}

/// The MPID the double answers a request with: a function of its `request_id`, so a repeat gets
/// the same one and a test can tell which line an MPID came from.
fn mpid_of(request: &WorkloadRequest) -> Mpid {
    let digits: String =
        request.request_id.chars().filter(char::is_ascii_hexdigit).take(15).collect();
    Mpid::new(i64::from_str_radix(&digits, 16).unwrap() + 1).unwrap()
}

/// Answers every identify, login and logout with [`mpid_of`] (or with nothing when `answer` is
/// false); checks every resolved reference against the line it names.
struct Double<'a> {
    lines: &'a [WorkloadRequest],
    answer: bool,
    /// Resolved references that name another MPID than their line's answer.
    n_wrong: AtomicU64,
    /// Requests sent, and the longest chunk.
    n_sent: AtomicU64,
    chunk_len_max: AtomicU64,
}

impl<'a> Double<'a> {
    fn new(lines: &'a [WorkloadRequest], answer: bool) -> Double<'a> {
        Double {
            lines,
            answer,
            n_wrong: AtomicU64::new(0),
            n_sent: AtomicU64::new(0),
            chunk_len_max: AtomicU64::new(0),
        }
    }

    fn check(&self, reference: Option<crate::LineRef>, mpid: Option<Mpid>) {
        if let (Some(reference), Some(mpid)) = (reference, mpid)
            && mpid != mpid_of(&self.lines[reference.line as usize - 1])
        {
            self.n_wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Target for Double<'_> {
    type Client = ();

    fn client(&self) {}

    fn send(&self, _client: &mut (), requests: &[Ready<'_>]) -> Vec<Outcome> {
        self.n_sent.fetch_add(requests.len() as u64, Ordering::Relaxed);
        self.chunk_len_max.fetch_max(requests.len() as u64, Ordering::Relaxed);
        requests
            .iter()
            .map(|ready| match *ready {
                Ready::Identity { request, previous_mpid } => {
                    self.check(request.previous_mpid, previous_mpid);
                    let bears = self.answer && request.op.is_result_bearing();
                    Outcome::Answered(bears.then(|| mpid_of(request)))
                }
                Ready::Modify { request, mpid } => {
                    self.check(request.mpid, Some(mpid));
                    Outcome::Answered(None)
                }
            })
            .collect()
    }
}

fn check_run(lines: &[WorkloadRequest], target: &Double<'_>, options: RunOptions) -> RunStats {
    let requests = lines.iter().cloned().map(Ok::<_, String>);
    let n_progress = AtomicU64::new(0);
    let stats = run(requests, target, options, &|_| {
        n_progress.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(stats.requests(), lines.len() as u64, "every line is accounted for");
    assert_eq!(stats.latency.len(), lines.len() as u64, "one latency per line");
    assert_eq!(target.n_wrong.load(Ordering::Relaxed), 0, "references resolve to their line");
    assert_eq!(n_progress.into_inner(), lines.len() as u64 / 1024);
    stats
}

#[test]
fn one_client_resolves_every_reference() {
    let lines = workload(3_000);
    let target = Double::new(&lines, true);
    let stats = check_run(&lines, &target, RunOptions { clients: 1, pipeline: 1 });
    assert_eq!((stats.answered, stats.unresolved, stats.skipped), (3_000, 0, 0));
    assert_eq!(target.chunk_len_max.into_inner(), 1);
    assert_eq!(stats.first_failure, None);
}

#[test]
fn concurrent_pipelined_clients_resolve_what_was_answered() {
    let lines = workload(3_000);
    let target = Double::new(&lines, true);
    let stats = check_run(&lines, &target, RunOptions { clients: 4, pipeline: 64 });
    assert_eq!(stats.answered + stats.skipped, 3_000);
    assert_eq!(target.n_sent.into_inner(), stats.answered, "skipped modifies are not sent");
    assert!(target.chunk_len_max.into_inner() > 1, "chunks are pipelined");
}

#[test]
fn modifies_whose_target_has_no_mpid_are_skipped() {
    let lines = workload(3_000);
    let n_modify = lines.iter().filter(|request| request.op == Op::Modify).count() as u64;
    assert!(n_modify > 0);
    let target = Double::new(&lines, false);
    let stats = check_run(&lines, &target, RunOptions { clients: 1, pipeline: 1 });
    assert_eq!((stats.skipped, stats.unresolved), (n_modify, 0));
}

#[test]
fn chunks_never_hold_a_line_with_a_line_it_references() {
    let lines = workload(5_000);
    let mut chunker = Chunker::new(lines.iter().cloned().map(Ok::<_, String>));
    let mut seen = BTreeSet::new();
    loop {
        let chunk = chunker.next_chunk(256).unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.is_sorted_by_key(|(line, _)| *line), "a chunk is in line order");
        let in_chunk: BTreeSet<u64> = chunk.iter().map(|(line, _)| *line).collect();
        for (line, request) in &chunk {
            assert!(request.references().all(|r| !in_chunk.contains(&r.line)), "line {line}");
            assert_eq!(request, &lines[*line as usize - 1]);
            assert!(seen.insert(*line), "line {line} sent twice");
        }
    }
    assert_eq!(seen.len(), lines.len(), "every line is sent");
}

#[test]
fn failures_are_counted_and_the_first_one_kept() {
    struct Failing;
    impl Target for Failing {
        type Client = ();
        fn client(&self) {}
        fn send(&self, _client: &mut (), requests: &[Ready<'_>]) -> Vec<Outcome> {
            requests.iter().map(|_| Outcome::Failed("HTTP 503".into())).collect()
        }
    }
    let lines = workload(10);
    let requests =
        lines.into_iter().map(Ok).chain([Err("w.jsonl:11: bad line"), Ok(workload(1).remove(0))]);
    let stats = run(requests, &Failing, RunOptions { clients: 1, pipeline: 1 }, &|_| {});
    assert_eq!((stats.errors, stats.answered), (10, 0));
    assert_eq!(stats.first_failure.as_deref(), Some("HTTP 503"));

    let requests = [Err("w.jsonl:1: bad line")].into_iter().chain(workload(5).into_iter().map(Ok));
    let stats = run(requests, &Failing, RunOptions { clients: 1, pipeline: 1 }, &|_| {});
    assert_eq!(stats.requests(), 0, "a read error stops the client");
    assert_eq!(stats.first_failure.as_deref(), Some("w.jsonl:1: bad line"));
}

#[test]
fn a_report_lines_up_under_its_header() {
    let lines = workload(100);
    let target = Double::new(&lines, true);
    let stats = check_run(&lines, &target, RunOptions { clients: 1, pipeline: 1 });
    let resources = Resources {
        cpu_seconds: Some(0.5),
        server_cpu_seconds: Some(0.25),
        ..Resources::default()
    };
    let report = Report { name: "double, 1 clients".into(), stats, resources };
    assert_eq!(report.row().len(), Report::HEADER.len());
    assert_eq!(report.cpu_us_per_request(), Some(5_000.0));
    assert_eq!(report.server_cpu_us_per_request(), Some(2_500.0));
    assert!(report.row().contains(" 2500.0 "), "{}", report.row());
    let json = report.json();
    assert_eq!(json["requests"], 100);
    assert_eq!(json["cpu_us_per_request"], 5_000.0);
    assert!(json["latency_us"]["p999"].is_u64());
    assert_eq!(report.notes(), None);
}

/// Records what each `request_id` was sent with, and counts retries sent otherwise.
struct RetryChecker {
    sent: std::sync::Mutex<std::collections::BTreeMap<String, Option<Mpid>>>,
    n_retries: AtomicU64,
    n_changed: AtomicU64,
}

impl Target for RetryChecker {
    type Client = ();

    fn client(&self) {}

    fn send(&self, _client: &mut (), requests: &[Ready<'_>]) -> Vec<Outcome> {
        // Slow enough that references are often still in flight when their lines are sent.
        std::thread::sleep(std::time::Duration::from_micros(50));
        let mut sent = self.sent.lock().unwrap();
        requests
            .iter()
            .map(|ready| {
                let (request, reference) = match *ready {
                    Ready::Identity { request, previous_mpid } => (request, previous_mpid),
                    Ready::Modify { request, mpid } => (request, Some(mpid)),
                };
                if let Some(first) = sent.get(&request.request_id) {
                    self.n_retries.fetch_add(1, Ordering::Relaxed);
                    if *first != reference {
                        self.n_changed.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    sent.insert(request.request_id.clone(), reference);
                }
                let bears = request.op.is_result_bearing();
                Outcome::Answered(bears.then(|| mpid_of(request)))
            })
            .collect()
    }
}

/// A workload where one line in ten is a retry, and a target that checks each retry is sent as its
/// original was.
fn retry_workload(seed: u64) -> (Vec<WorkloadRequest>, RetryChecker) {
    let spec = WorkloadSpec {
        seed,
        requests: 20_000,
        users: 300,
        repeat_request_id_rate: 0.1,
        ..WorkloadSpec::default()
    };
    let lines: Vec<WorkloadRequest> = Generator::new(&spec).unwrap().collect();
    let target = RetryChecker {
        sent: Default::default(),
        n_retries: AtomicU64::new(0),
        n_changed: AtomicU64::new(0),
    };
    (lines, target)
}

#[test]
fn a_retry_is_sent_with_the_references_its_original_was_sent_with() {
    // Retries are common here, and four pipelined clients send many lines while the lines they
    // reference are in flight: a retry resolving its reference anew would often differ.
    let (lines, target) = retry_workload(5);
    let stats = run(
        lines.iter().cloned().map(Ok::<_, String>),
        &target,
        RunOptions { clients: 4, pipeline: 32 },
        &|_| {},
    );
    assert!(stats.unresolved > 100, "references in flight: {}", stats.unresolved);
    assert!(target.n_retries.load(Ordering::Relaxed) > 1_000);
    assert_eq!(target.n_changed.load(Ordering::Relaxed), 0, "retries sent with other references");
}

/// A multiplexed double: drives its clients from one thread, answering the chunks in flight in an
/// order that is not the order they were taken in (every third round, the newest first), through
/// the thread-per-client double's `send`.
struct Interleaving<'t, T> {
    inner: &'t T,
}

impl<T: Target<Client = ()>> super::Multiplexed for Interleaving<'_, T> {
    fn drive(&self, n_clients: usize, feed: &mut dyn super::Feed) {
        let mut in_flight: Vec<super::Chunk> = Vec::new();
        let mut outcomes = Vec::new();
        let mut round = 0;
        loop {
            while in_flight.len() < n_clients {
                let Some(chunk) = feed.next_chunk() else { break };
                assert!(chunk.n_ready() > 0, "a feed hands out only chunks with something to send");
                in_flight.push(chunk);
            }
            if in_flight.is_empty() {
                return;
            }
            round += 1;
            let chunk = if round % 3 == 0 { in_flight.pop() } else { Some(in_flight.remove(0)) };
            let chunk = chunk.expect("not empty");
            let ready: Vec<Ready<'_>> = chunk.ready().collect();
            assert_eq!(ready.len(), chunk.n_ready());
            outcomes.extend(self.inner.send(&mut (), &ready));
            drop(ready);
            feed.answered(chunk, &mut outcomes);
            assert!(outcomes.is_empty(), "the feed takes the outcomes");
        }
    }
}

#[test]
fn multiplexed_clients_resolve_what_was_answered() {
    let lines = workload(5_000);
    for (clients, pipeline, n_loops) in [(1, 1, 1), (16, 1, 1), (16, 1, 2), (4, 32, 3)] {
        let target = Double::new(&lines, true);
        let requests = lines.iter().cloned().map(Ok::<_, String>);
        let options = RunOptions { clients, pipeline };
        let multiplexed = Interleaving { inner: &target };
        let stats = super::run_multiplexed(requests, &multiplexed, options, n_loops, &|_| {});
        assert_eq!(stats.requests(), lines.len() as u64, "every line is accounted for");
        assert_eq!(stats.latency.len(), lines.len() as u64, "one latency per line");
        assert_eq!(target.n_wrong.load(Ordering::Relaxed), 0, "references resolve to their line");
        assert_eq!(stats.answered + stats.skipped, lines.len() as u64);
        assert_eq!(target.n_sent.load(Ordering::Relaxed), stats.answered);
        if clients == 1 {
            assert_eq!((stats.unresolved, stats.skipped), (0, 0), "one client resolves everything");
        }
    }
}

#[test]
fn multiplexed_retries_are_sent_with_their_originals_references() {
    let (lines, target) = retry_workload(6);
    let stats = super::run_multiplexed(
        lines.iter().cloned().map(Ok::<_, String>),
        &Interleaving { inner: &target },
        RunOptions { clients: 16, pipeline: 8 },
        1,
        &|_| {},
    );
    assert!(stats.unresolved > 100, "references in flight: {}", stats.unresolved);
    assert!(target.n_retries.load(Ordering::Relaxed) > 1_000);
    assert_eq!(target.n_changed.load(Ordering::Relaxed), 0, "retries sent with other references");
}

//! The workload runner behind `idgraph bench`: [`run`] replays a workload against a [`Target`] with
//! N concurrent clients, each sending one request or a pipelined chunk at a time, and measures
//! throughput, latency (an HDR histogram) and outcomes ([`RunStats`]); [`Report`] formats a run
//! with the resources the caller measured around it.
//!
//! ## Why the runner lives here
//! There is one runner, and it is here rather than in the CLI because everything it does is about
//! the workload, not about a server: cutting the stream into chunks that never contain a request
//! together with a line it references (`chunk.rs`), resolving `{"ref": n}` through the shared
//! [`MpidBook`] before sending, recording each answer's MPID, counting outcomes and latencies.
//! How a request is executed is the one thing it does not know: a [`Target`] does that, and the
//! CLI implements it for the in-process engine and for HTTP. So this crate still knows nothing
//! about the engine (an architecture invariant), and the CLI is left with flags, targets and
//! process measurements (CPU time, peak RSS).
//!
//! Clients are either plain threads ([`run`]: a target's `send` blocks until its answers are
//! known, as an in-process engine call waits for fsync) or driven by a [`Multiplexed`] target's
//! event loop ([`run_multiplexed`]: the HTTP client, where a thread per client would spend more
//! of the process's CPU on sleeping and waking than on the requests). Both take chunks and
//! account for them the same way.

mod chunk;
mod report;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::fmt::Display;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use idgraph_model::Mpid;

use crate::book::{MpidBook, Unresolved};
use crate::request::{Op, WorkloadRequest};

use self::chunk::Chunker;
pub use self::report::{Report, Resources};

/// Longest latency the histograms hold, in microseconds (a minute); longer ones are recorded as
/// this.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// How a request is executed: the in-process engine, an HTTP endpoint, a test double.
pub trait Target: Sync {
    /// What one client keeps between its chunks (an HTTP client and its connections; `()` for an
    /// in-process engine). Made once per client thread, on that thread.
    type Client;

    /// A new client.
    fn client(&self) -> Self::Client;

    /// Executes `requests`, one chunk of consecutive lines (never empty; longer than one only when
    /// pipelining), and returns one outcome per request, in order. Returns when every answer is
    /// known.
    fn send(&self, client: &mut Self::Client, requests: &[Ready<'_>]) -> Vec<Outcome>;
}

/// A request whose references the runner has resolved, ready to send.
#[derive(Debug, Clone, Copy)]
pub enum Ready<'a> {
    /// identify, login, logout or search.
    Identity {
        /// The request; its `previous_mpid` reference is resolved below.
        request: &'a WorkloadRequest,
        /// The MPID the client holds: `None` when the request has no `previous_mpid`, or when its
        /// line has no MPID (it failed, or is still in flight on another client). Send it absent.
        previous_mpid: Option<Mpid>,
    },
    /// modify (one whose target does not resolve is skipped by the runner, never sent).
    Modify {
        /// The request; its `mpid` reference is resolved below.
        request: &'a WorkloadRequest,
        /// The profile to modify.
        mpid: Mpid,
    },
}

impl<'a> Ready<'a> {
    /// The request as read from the workload.
    pub fn request(&self) -> &'a WorkloadRequest {
        match self {
            Ready::Identity { request, .. } | Ready::Modify { request, .. } => request,
        }
    }
}

/// A target that drives many clients from one thread: an event loop over their connections,
/// where a blocking thread per client would cost the process a sleep and a wake-up per request.
/// [`run_multiplexed`] runs it.
pub trait Multiplexed: Sync {
    /// Drives `n_clients` clients on the calling thread: each takes a chunk from `feed`, sends it,
    /// hands its outcomes back with [`Feed::answered`] once all are known, and takes the next,
    /// until `feed` has none left. Returns once every chunk taken is answered.
    fn drive(&self, n_clients: usize, feed: &mut dyn Feed);
}

/// Where a [`Multiplexed`] target's clients take their chunks and return their outcomes: the
/// runner's chunking, reference resolution, counting and latencies, shared with the other loops.
pub trait Feed {
    /// The next chunk to send, with at least one request (`None`: the workload is finished).
    fn next_chunk(&mut self) -> Option<Chunk>;

    /// Accounts for a chunk taken from this feed: `outcomes` holds one outcome per request of
    /// [`Chunk::ready`], in order, and is left empty. The chunk's latency ends here.
    fn answered(&mut self, chunk: Chunk, outcomes: &mut Vec<Outcome>);
}

/// Consecutive lines a client sends together (one request, or a pipelined batch), their
/// references resolved, and when the client took them (where their latency starts).
#[derive(Debug)]
pub struct Chunk {
    /// The lines, with their line numbers.
    lines: Vec<(u64, WorkloadRequest)>,
    /// How each line's reference resolved, in the same order.
    resolved: Vec<Resolved>,
    /// Lines not skipped: the length of [`Chunk::ready`].
    n_ready: usize,
    taken: Instant,
}

/// How a line's reference resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// identify, login, logout, search, with the MPID to send as `previous_mpid` (if any).
    Identity(Option<Mpid>),
    /// A modify of this profile.
    Modify(Mpid),
    /// A modify whose target has no MPID: not sent.
    Skipped,
}

impl Chunk {
    /// The requests to send, in line order (skipped modifies left out).
    pub fn ready(&self) -> impl Iterator<Item = Ready<'_>> + '_ {
        self.lines.iter().zip(&self.resolved).filter_map(|((_, request), resolved)| match *resolved
        {
            Resolved::Identity(previous_mpid) => Some(Ready::Identity { request, previous_mpid }),
            Resolved::Modify(mpid) => Some(Ready::Modify { request, mpid }),
            Resolved::Skipped => None,
        })
    }

    /// How many requests [`Chunk::ready`] gives.
    pub fn n_ready(&self) -> usize {
        self.n_ready
    }
}

/// What a target made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the MPID a later line may reference (`None` for a search, a modify, an answer
    /// without one).
    Answered(Option<Mpid>),
    /// Refused as the client's fault (HTTP 400 or 404): an expected share of junk requests.
    Rejected,
    /// Failed otherwise (HTTP 5xx, connection error, storage error); the message is reported.
    Failed(String),
}

/// How to drive the target. No `Default`: the caller decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Concurrent clients (at least 1).
    pub clients: usize,
    /// Most consecutive requests a client sends as one chunk (at least 1). A chunk ends early at a
    /// request that references a line of the same chunk.
    pub pipeline: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Requests answered.
    pub answered: u64,
    /// Requests refused as the client's fault ([`Outcome::Rejected`]).
    pub rejected: u64,
    /// Modifies not sent because their target line has no MPID.
    pub skipped: u64,
    /// Requests failed otherwise ([`Outcome::Failed`]).
    pub errors: u64,
    /// References sent unresolved: the referenced line was still in flight.
    pub unresolved: u64,
    /// Wall-clock seconds from the first chunk to the last answer.
    pub seconds: f64,
    /// Microseconds per request, from the start of its chunk to the chunk's answers (every
    /// request of a chunk gets the chunk's latency, skipped ones included).
    pub latency: Histogram<u64>,
    /// The first failure: a failed request, or an error reading the workload (which stops the
    /// client that met it).
    pub first_failure: Option<String>,
}

impl RunStats {
    /// Requests taken from the workload and accounted for: answered, rejected, skipped or failed.
    pub fn requests(&self) -> u64 {
        self.answered + self.rejected + self.skipped + self.errors
    }
}

/// How many recently sent `request_id`s the runner remembers the resolved references of, so that a
/// retry (a line repeating an earlier line's `request_id` and body) is sent exactly as its original
/// was, even when the original went out before the line it references was answered. Retries copy
/// one of the last few originals (`docs/workloads.md`), so a short memory suffices.
const RESOLVED_KEPT: usize = 1 << 16;

/// The references recently sent, by `request_id`: what each resolved to (`None`: sent unresolved,
/// or, for a modify, skipped). Oldest forgotten first.
///
/// A hash table keyed by a 64-bit hash of the id, with the id kept beside its value to confirm a
/// match: a lookup costs one hash and about one cache miss, where a `BTreeMap` of the ids
/// compared 36-byte strings down a tree of 65,536 (a tenth of the HTTP bench client's own CPU
/// time). Two ids with the same hash are not confused: the second is simply not remembered, as if
/// it had been forgotten.
#[derive(Debug, Default)]
struct RecentlyResolved {
    // A std `HashMap` (hashbrown inside) with a fixed hasher: it is only probed and removed from
    // by key, never iterated, so its order cannot reach any result (the reason `clippy.toml`
    // steers away from it).
    #[expect(clippy::disallowed_types, reason = "only probed by key, never iterated")]
    by_hash:
        std::collections::HashMap<u64, (Box<str>, Option<Mpid>), BuildHasherDefault<Prehashed>>,
    /// The hashes remembered, oldest first.
    order: VecDeque<u64>,
}

impl RecentlyResolved {
    /// What `request_id` resolved to when it was sent, if it was sent recently.
    fn get(&self, request_id: &str) -> Option<Option<Mpid>> {
        match self.by_hash.get(&hash_of(request_id)) {
            Some((id, resolved)) if **id == *request_id => Some(*resolved),
            _ => None,
        }
    }

    fn remember(&mut self, request_id: &str, resolved: Option<Mpid>) {
        let hash = hash_of(request_id);
        if let Entry::Vacant(entry) = self.by_hash.entry(hash) {
            entry.insert((request_id.into(), resolved));
            self.order.push_back(hash);
            if self.order.len() > RESOLVED_KEPT
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_hash.remove(&oldest);
            }
        }
    }
}

/// A 64-bit hash of a `request_id` (SipHash with fixed keys; it never leaves the process).
fn hash_of(request_id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(request_id.as_bytes());
    hasher.finish()
}

/// The hasher of [`RecentlyResolved`]'s table, whose keys are hashes already: it passes them on.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are `u64`); anything else is folded in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// What the clients share.
struct Shared<'a, S> {
    chunker: Mutex<Chunker<S>>,
    /// The book and the references recently resolved, under one lock (both are read when a chunk
    /// is resolved).
    book: Mutex<(MpidBook, RecentlyResolved)>,
    options: RunOptions,
    progress: &'a (dyn Fn(u64) + Sync),
    /// Answered, rejected, skipped, failed.
    counters: [AtomicU64; 4],
    n_unresolved: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

/// Replays `requests` (in line order, line 1 first) against `target` with `options.clients`
/// clients, one thread each, and says what happened. `progress` is told the line number of every
/// 1,024th line answered.
pub fn run<S, E, T>(
    requests: S,
    target: &T,
    options: RunOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> RunStats
where
    S: Iterator<Item = Result<WorkloadRequest, E>> + Send,
    E: Display,
    T: Target,
{
    let n_clients = options.clients.max(1);
    run_on_threads(requests, options, progress, n_clients, |shared, _| shared.client(target))
}

/// Replays `requests` like [`run`], but with every client driven by `target` on one of `n_loops`
/// threads (an event loop each, its share of `options.clients` clients).
pub fn run_multiplexed<S, E, M>(
    requests: S,
    target: &M,
    options: RunOptions,
    n_loops: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> RunStats
where
    S: Iterator<Item = Result<WorkloadRequest, E>> + Send,
    E: Display,
    M: Multiplexed,
{
    let n_clients = options.clients.max(1);
    let n_loops = n_loops.clamp(1, n_clients);
    run_on_threads(requests, options, progress, n_loops, |shared, loop_idx| {
        let mut feed = LoopFeed { shared, histogram: new_histogram() };
        // Clients are dealt to the loops as evenly as possible.
        let n_mine = n_clients / n_loops + usize::from(loop_idx < n_clients % n_loops);
        target.drive(n_mine, &mut feed);
        feed.histogram
    })
}

/// Runs `thread(shared, idx)` on `n_threads` threads, each returning its latencies, and gathers
/// what they measured.
fn run_on_threads<S, E, F>(
    requests: S,
    options: RunOptions,
    progress: &(dyn Fn(u64) + Sync),
    n_threads: usize,
    thread: F,
) -> RunStats
where
    S: Iterator<Item = Result<WorkloadRequest, E>> + Send,
    E: Display,
    F: Fn(&Shared<'_, S>, usize) -> Histogram<u64> + Sync,
{
    let shared = Shared {
        chunker: Mutex::new(Chunker::new(requests)),
        book: Mutex::new((MpidBook::new(), RecentlyResolved::default())),
        options,
        progress,
        counters: Default::default(),
        n_unresolved: AtomicU64::new(0),
        first_failure: Mutex::new(None),
    };
    let started = Instant::now();
    let histograms: Vec<Histogram<u64>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n_threads)
            .map(|idx| {
                let (shared, thread) = (&shared, &thread);
                scope.spawn(move || thread(shared, idx))
            })
            .collect();
        threads.into_iter().map(|client| client.join().expect("client thread")).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latency = new_histogram();
    for histogram in &histograms {
        latency.add(histogram).expect("same bounds");
    }
    let [answered, rejected, skipped, errors] = shared.counters.map(AtomicU64::into_inner);
    RunStats {
        answered,
        rejected,
        skipped,
        errors,
        unresolved: shared.n_unresolved.into_inner(),
        seconds,
        latency,
        first_failure: shared.first_failure.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

/// One event loop's view of the run: chunks out, outcomes in, and its latencies.
struct LoopFeed<'s, 'a, S> {
    shared: &'s Shared<'a, S>,
    histogram: Histogram<u64>,
}

impl<S, E> Feed for LoopFeed<'_, '_, S>
where
    S: Iterator<Item = Result<WorkloadRequest, E>>,
    E: Display,
{
    fn next_chunk(&mut self) -> Option<Chunk> {
        loop {
            let chunk = self.shared.take()?;
            if chunk.n_ready > 0 {
                return Some(chunk);
            }
            // Nothing to send (every line a skipped modify): accounted for at once, as a client
            // thread does.
            self.shared.account(chunk, std::iter::empty(), &mut self.histogram);
        }
    }

    fn answered(&mut self, chunk: Chunk, outcomes: &mut Vec<Outcome>) {
        self.shared.account(chunk, outcomes.drain(..), &mut self.histogram);
    }
}

impl<S, E> Shared<'_, S>
where
    S: Iterator<Item = Result<WorkloadRequest, E>>,
    E: Display,
{
    /// One client thread: takes chunks until the workload ends, and returns its latencies.
    fn client<T: Target>(&self, target: &T) -> Histogram<u64> {
        let mut histogram = new_histogram();
        let mut client = target.client();
        while let Some(chunk) = self.take() {
            let outcomes = {
                let ready: Vec<Ready<'_>> = chunk.ready().collect();
                if ready.is_empty() { Vec::new() } else { target.send(&mut client, &ready) }
            };
            self.account(chunk, outcomes.into_iter(), &mut histogram);
        }
        histogram
    }

    /// The next chunk, its references resolved (`None`: the workload is finished, or could not be
    /// read). Its latency starts here, once it is taken from the workload.
    fn take(&self) -> Option<Chunk> {
        let next = self
            .chunker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_chunk(self.options.pipeline.max(1));
        let lines = match next {
            Ok(lines) if lines.is_empty() => return None,
            Ok(lines) => lines,
            Err(message) => {
                self.fail(message);
                return None;
            }
        };
        let taken = Instant::now();
        let resolved: Vec<Resolved> = {
            let mut guard = self.book.lock().unwrap_or_else(|p| p.into_inner());
            let (book, recent) = &mut *guard;
            lines.iter().map(|(_, request)| self.resolve(book, recent, request)).collect()
        };
        let n_ready = resolved.iter().filter(|resolved| **resolved != Resolved::Skipped).count();
        Some(Chunk { lines, resolved, n_ready, taken })
    }

    /// Accounts for a chunk: its latency (from when it was taken to now) for every line, the MPID
    /// each line answered with, and its outcomes (one per request sent, in order).
    fn account(
        &self,
        chunk: Chunk,
        outcomes: impl Iterator<Item = Outcome>,
        histogram: &mut Histogram<u64>,
    ) {
        let micros = chunk.taken.elapsed().as_micros().max(1) as u64;
        let mut outcomes = outcomes.fuse();
        let per_line: Vec<Option<Outcome>> = chunk
            .resolved
            .iter()
            .map(|resolved| match resolved {
                Resolved::Skipped => None,
                _ => Some(outcomes.next().expect("a target answers every request it is sent")),
            })
            .collect();
        assert!(outcomes.next().is_none(), "a target answers every request once");
        self.book_answers(&chunk.lines, &per_line);
        for ((line, _), outcome) in chunk.lines.iter().zip(per_line) {
            histogram.saturating_record(micros);
            let counter = match outcome {
                Some(Outcome::Answered(_)) => 0,
                Some(Outcome::Rejected) => 1,
                None => 2,
                Some(Outcome::Failed(message)) => {
                    self.fail(message);
                    3
                }
            };
            self.counters[counter].fetch_add(1, Ordering::Relaxed);
            if line % 1024 == 0 {
                (self.progress)(*line);
            }
        }
    }

    /// Records the MPID each line of the chunk answered with (none for a rejected, skipped or
    /// failed line), under one lock.
    fn book_answers(&self, chunk: &[(u64, WorkloadRequest)], outcomes: &[Option<Outcome>]) {
        let mut guard = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let (book, _) = &mut *guard;
        for ((line, _), outcome) in chunk.iter().zip(outcomes) {
            let mpid = match outcome {
                Some(Outcome::Answered(mpid)) => *mpid,
                _ => None,
            };
            book.record_line(*line, mpid);
        }
    }

    /// How the request's reference resolves: [`Resolved::Skipped`] for a modify whose target has
    /// no MPID. A retry of a recently sent request resolves as its original did.
    fn resolve(
        &self,
        book: &MpidBook,
        recent: &mut RecentlyResolved,
        request: &WorkloadRequest,
    ) -> Resolved {
        let reference = match request.op {
            Op::Modify => request.mpid,
            _ => request.previous_mpid,
        };
        let resolved = match recent.get(&request.request_id) {
            Some(resolved) => resolved,
            None => {
                let resolved = reference.and_then(|reference| match book.resolve(reference) {
                    Ok(mpid) => Some(mpid),
                    Err(Unresolved::NotYetRecorded(_)) => {
                        self.n_unresolved.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Err(_) => None,
                });
                recent.remember(&request.request_id, resolved);
                resolved
            }
        };
        match (request.op, request.mpid, resolved) {
            (Op::Modify, Some(_), Some(mpid)) => Resolved::Modify(mpid),
            (Op::Modify, _, _) => Resolved::Skipped,
            (_, _, previous_mpid) => Resolved::Identity(previous_mpid),
        }
    }

    fn fail(&self, message: String) {
        self.first_failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(message);
    }
}

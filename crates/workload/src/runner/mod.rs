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
//! Clients are plain threads: a target's `send` blocks until its answers are known (an in-process
//! engine call waits for fsync; an HTTP call for the response).

mod chunk;
mod report;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
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
#[derive(Debug, Default)]
struct RecentlyResolved {
    by_id: BTreeMap<String, Option<Mpid>>,
    order: VecDeque<String>,
}

impl RecentlyResolved {
    fn remember(&mut self, request_id: &str, resolved: Option<Mpid>) {
        if self.by_id.insert(request_id.to_owned(), resolved).is_none() {
            self.order.push_back(request_id.to_owned());
            if self.order.len() > RESOLVED_KEPT
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_id.remove(&oldest);
            }
        }
    }
}

/// What the clients share.
struct Shared<'a, S, T> {
    chunker: Mutex<Chunker<S>>,
    /// The book and the references recently resolved, under one lock (both are read when a chunk
    /// is resolved).
    book: Mutex<(MpidBook, RecentlyResolved)>,
    target: &'a T,
    options: RunOptions,
    progress: &'a (dyn Fn(u64) + Sync),
    /// Answered, rejected, skipped, failed.
    counters: [AtomicU64; 4],
    n_unresolved: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

/// Replays `requests` (in line order, line 1 first) against `target` with `options.clients`
/// clients, and says what happened. `progress` is told the line number of every 1,024th line
/// answered.
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
    let shared = Shared {
        chunker: Mutex::new(Chunker::new(requests)),
        book: Mutex::new((MpidBook::new(), RecentlyResolved::default())),
        target,
        options,
        progress,
        counters: Default::default(),
        n_unresolved: AtomicU64::new(0),
        first_failure: Mutex::new(None),
    };
    let started = Instant::now();
    let histograms: Vec<Histogram<u64>> = std::thread::scope(|scope| {
        let clients: Vec<_> =
            (0..options.clients.max(1)).map(|_| scope.spawn(|| shared.client())).collect();
        clients.into_iter().map(|client| client.join().expect("client thread")).collect()
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

impl<S, E, T> Shared<'_, S, T>
where
    S: Iterator<Item = Result<WorkloadRequest, E>>,
    E: Display,
    T: Target,
{
    /// One client: takes chunks until the workload ends, and returns its latencies.
    fn client(&self) -> Histogram<u64> {
        let mut histogram = new_histogram();
        let mut client = self.target.client();
        loop {
            let next = self
                .chunker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_chunk(self.options.pipeline.max(1));
            let chunk = match next {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => chunk,
                Err(message) => {
                    self.fail(message);
                    break;
                }
            };
            let sent = Instant::now();
            let outcomes = self.resolve_and_send(&mut client, &chunk);
            let micros = sent.elapsed().as_micros().max(1) as u64;
            self.book_answers(&chunk, &outcomes);
            for ((line, _), outcome) in chunk.iter().zip(outcomes) {
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
        histogram
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

    /// Resolves the chunk's references and sends what can be sent: one outcome per line, `None`
    /// for a modify skipped because its target has no MPID.
    fn resolve_and_send(
        &self,
        client: &mut T::Client,
        chunk: &[(u64, WorkloadRequest)],
    ) -> Vec<Option<Outcome>> {
        let ready: Vec<Option<Ready<'_>>> = {
            let mut guard = self.book.lock().unwrap_or_else(|p| p.into_inner());
            let (book, recent) = &mut *guard;
            chunk.iter().map(|(_, request)| self.ready(book, recent, request)).collect()
        };
        let sendable: Vec<Ready<'_>> = ready.iter().flatten().copied().collect();
        let mut outcomes =
            if sendable.is_empty() { Vec::new() } else { self.target.send(client, &sendable) };
        assert_eq!(outcomes.len(), sendable.len(), "a target answers every request it is sent");
        outcomes.reverse();
        ready.iter().map(|ready| ready.and_then(|_| outcomes.pop())).collect()
    }

    /// The request with its references resolved; `None` for a modify whose target has no MPID.
    /// A retry of a recently sent request resolves as its original did.
    fn ready<'r>(
        &self,
        book: &MpidBook,
        recent: &mut RecentlyResolved,
        request: &'r WorkloadRequest,
    ) -> Option<Ready<'r>> {
        let reference = match request.op {
            Op::Modify => request.mpid,
            _ => request.previous_mpid,
        };
        let resolved = match recent.by_id.get(&request.request_id) {
            Some(resolved) => *resolved,
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
        Some(match request.op {
            Op::Modify => {
                request.mpid?;
                Ready::Modify { request, mpid: resolved? }
            }
            _ => Ready::Identity { request, previous_mpid: resolved },
        })
    }

    fn fail(&self, message: String) {
        self.first_failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(message);
    }
}

//! The submission pipeline: requests from many callers (async HTTP handlers, client threads) decided
//! in *groups* by one writer thread, without a thread hand-off or a condition variable per request.
//!
//! ```text
//! callers ── submit ──► bounded queue ──► writer thread ──────────► completer thread ──► tickets
//!            (full: Overloaded)            takes whatever is          waits once per group
//!                                          queued (up to 1,024),      for durability, then
//!                                          decides it in order        answers every ticket
//!                                          under one write lock,
//!                                          submits it to the log
//! ```
//!
//! While the completer waits for one group's fsync, the writer is already deciding the next, so
//! the disk and the decisions overlap. Invariants:
//! - **Order of decisions = order of sequences**: one writer decides, in queue order.
//! - **An answer is released only after its group is durable** (`Engine::complete`); an answer
//!   that changed nothing is held with its group too.
//! - **Bounded memory**: the queue holds at most its capacity; a full queue is refused at once
//!   ([`EngineError::Overloaded`]), never waited on, so a caller can answer 503 with `Retry-After`.
//! - **Indexes off the write path**: no answer waits for the secondary indexes; the indexer follows
//!   the log (`Log::catch_up_index`), and a reader of the indexes catches them up to what it asks
//!   about first, so the lag is only ever visible as a number (`/metrics`, `/healthz`).
//!
//! The engine's existing entry points ([`Engine::handle`], [`Engine::handle_batch`]) still work
//! alongside: they take the same lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use idgraph_query::Answer;

use crate::engine::Decided;
use crate::{Command, Engine, EngineError, RequestMeta};

/// Most requests the writer decides as one group.
pub const GROUP_REQUESTS_MAX: usize = 1_024;

/// Groups decided and waiting for durability at once: the writer runs at most this far ahead of
/// the disk.
const GROUPS_IN_FLIGHT: usize = 2;

/// The answer to one submitted request, or why there is none.
pub type Reply = Result<Answer, EngineError>;

/// One request in the queue, with where its answer goes.
struct Submission {
    meta: RequestMeta,
    command: Command,
    reply: oneshot::Sender<Reply>,
}

/// What the queue carries: requests, then one `Stop` when the pipeline closes.
enum Message {
    Request(Submission),
    Stop,
}

/// The promise of a submitted request's answer: `.await` it (async) or [`Ticket::wait`] (a thread).
#[derive(Debug)]
pub struct Ticket(oneshot::Receiver<Reply>);

impl Ticket {
    /// Blocks the calling thread until the answer is durable.
    pub fn wait(self) -> Reply {
        self.0.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl std::future::Future for Ticket {
    type Output = Reply;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Reply> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|res| res.unwrap_or_else(|_| Err(stopped())))
    }
}

/// The error of a request whose pipeline stopped before answering it (a bug or a shutdown race).
fn stopped() -> EngineError {
    EngineError::Halted { cause: "the submission pipeline stopped before answering".to_owned() }
}

/// A running pipeline over an engine, shareable (`Send + Sync`). Stop it with [`Pipeline::close`]
/// (dropping it also stops it) before closing the engine: its threads hold the engine.
#[derive(Debug)]
pub struct Pipeline {
    queue: SyncSender<Message>,
    /// Set by [`Pipeline::close`]: later submissions are refused.
    closed: AtomicBool,
    /// Joined by [`Pipeline::close`]. A mutex only so that closing can take `&self` (the pipeline
    /// is shared by request handlers); never locked on the request path.
    threads: Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the writer and completer threads over `engine`, with a queue of `capacity` requests.
    pub fn start(engine: Arc<Engine>, capacity: usize) -> std::io::Result<Pipeline> {
        let (queue, submissions) = std::sync::mpsc::sync_channel(capacity.max(1));
        let (decided, to_complete) = std::sync::mpsc::sync_channel(GROUPS_IN_FLIGHT);
        // One pending nudge is enough: the indexer catches up to whatever is stored by then.
        let (nudge, nudged) = std::sync::mpsc::sync_channel(1);
        let _ = nudge.try_send(()); // Catch up on what was stored before this start.
        let writer_engine = Arc::clone(&engine);
        let writer = std::thread::Builder::new()
            .name("idgraph-writer".into())
            .spawn(move || write_groups(&writer_engine, &submissions, &decided))?;
        let indexer_engine = Arc::clone(&engine);
        let indexer = std::thread::Builder::new()
            .name("idgraph-indexer".into())
            .spawn(move || index_behind(&indexer_engine, &nudged))?;
        let completer = std::thread::Builder::new()
            .name("idgraph-completer".into())
            .spawn(move || complete_groups(&engine, &to_complete, &nudge))?;
        Ok(Pipeline {
            queue,
            closed: AtomicBool::new(false),
            threads: Mutex::new(vec![writer, completer, indexer]),
            capacity,
        })
    }

    /// Queues a request; its answer comes through the ticket once durable. A full queue is
    /// [`EngineError::Overloaded`] at once.
    pub fn submit(&self, meta: RequestMeta, command: Command) -> Result<Ticket, EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(stopped());
        }
        let (reply, ticket) = oneshot::channel();
        match self.queue.try_send(Message::Request(Submission { meta, command, reply })) {
            Ok(()) => Ok(Ticket(ticket)),
            Err(TrySendError::Full(_)) => {
                Err(EngineError::Overloaded { queue_capacity: self.capacity })
            }
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    /// Stops taking requests, answers every one already queued, and joins the threads. Later
    /// calls do nothing. (A submission racing with it is answered [`EngineError::Halted`].)
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Behind everything already queued: the writer decides all of it, then stops.
        let _ = self.queue.send(Message::Stop);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            // A panic on a pipeline thread is a bug; its tickets answer `Halted`. Pass it on.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.close();
        }
    }
}

/// The writer thread: takes whatever is queued (at least one request, at most
/// [`GROUP_REQUESTS_MAX`]), decides it as one group and hands it to the completer, until the queue
/// is closed and drained.
fn write_groups(
    engine: &Engine,
    submissions: &Receiver<Message>,
    decided: &SyncSender<(Decided, Vec<oneshot::Sender<Reply>>)>,
) {
    let mut group = Vec::with_capacity(GROUP_REQUESTS_MAX);
    let mut stopping = false;
    while !stopping {
        match submissions.recv() {
            Ok(Message::Request(first)) => group.push(first),
            Ok(Message::Stop) | Err(_) => break,
        }
        while group.len() < GROUP_REQUESTS_MAX {
            match submissions.try_recv() {
                Ok(Message::Request(next)) => group.push(next),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut replies = Vec::with_capacity(group.len());
        let requests = group.drain(..).map(|submission| {
            replies.push(submission.reply);
            (submission.meta, submission.command)
        });
        let group_decided = engine.decide_batch(requests.collect::<Vec<_>>());
        if decided.send((group_decided, replies)).is_err() {
            return; // The completer is gone: nothing can be answered any more.
        }
    }
}

/// The completer thread: waits for each group's durability, answers its tickets, and nudges the
/// indexer. It stops when the writer does; dropping `nudge` then stops the indexer.
fn complete_groups(
    engine: &Engine,
    to_complete: &Receiver<(Decided, Vec<oneshot::Sender<Reply>>)>,
    nudge: &SyncSender<()>,
) {
    while let Ok((decided, replies)) = to_complete.recv() {
        for (reply, answer) in replies.into_iter().zip(engine.complete(decided)) {
            // A caller that stopped waiting (a client that hung up) drops its ticket: fine.
            let _ = reply.send(answer);
        }
        // Full means a nudge is already pending: that one covers this group too.
        let _ = nudge.try_send(());
    }
}

/// The indexer thread: after a nudge, indexes every stored entry not indexed yet, then rests for
/// [`INDEX_REST`] so that each catch-up covers many groups (a catch-up has a fixed cost: a log
/// iterator and a storage write). A failure (a damaged record, say) leaves the lag visible;
/// readers of the indexes meet the same error themselves, so nothing is answered from a
/// half-built index.
fn index_behind(engine: &Engine, nudged: &Receiver<()>) {
    loop {
        // Without a nudge (a cluster follower appends without the completer), every second.
        match nudged.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let log = engine.log();
        let _ = log.catch_up_index(log.last_seq());
        std::thread::sleep(INDEX_REST);
    }
}

/// How long the indexer rests after a catch-up: the most its lag grows by between catch-ups, and
/// (an audit reader that finds the lag catches up itself) never a wait for an answer.
const INDEX_REST: std::time::Duration = std::time::Duration::from_millis(20);

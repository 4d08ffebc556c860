//! # idgraph-engine
//!
//! The write path that ties the log, the projection and the resolver together:
//! *decide* against the current projection, *append* one log entry (request + outcome + events),
//! *apply* it to the projection, *answer*. Also: opening a data folder (snapshot + tail replay),
//! snapshots, and `request_id` idempotency.
//!
//! ## Concurrency model
//! One [`RwLock`] guards the projection and the idempotency index. A request that records an entry
//! (identify, login, logout, modify, alias) takes the write lock, decides, *submits* the entry to the
//! log (which assigns its sequence), applies it, and releases the lock; it then waits for the log's
//! group commit outside the lock, so concurrent requests share one fsync. Readers (search, audit)
//! take the read lock. A std lock, not an async one: nothing awaits while holding it, and the
//! critical section is in-memory work only.
//!
//! An answer that changed state is returned only after its entry is fsynced. An entry with no
//! events (a request that changed nothing) is answered once queued (`Durability::Queued`), before
//! it is written: the log is sequential, so any later durable entry implies it is durable too.
//!
//! If a write fails after the entry was applied, the projection is ahead of the log: the engine
//! poisons itself and refuses every request until it is reopened (which replays the log).

mod answer;
pub mod audit;
mod clock;
mod idempotency;
pub mod whatif;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use idgraph_log::{Durability, Log, Pending};
use idgraph_model::{
    AdminCorrection, Entry, EntryView, Environment, IdentityChange, IdentityRequest, Mpid,
    Operation, Request, Seq, Timestamp,
};
use idgraph_projection::Projection;
use idgraph_query::{
    AliasQuery, Answer, IdentityOp, IdentityQuery, MpidSource, RequestError, Resolver,
    ResolverConfig, World,
};

pub use crate::answer::answer_of;
pub use crate::clock::{Clock, ManualClock, SystemClock};
use crate::idempotency::IdempotencyIndex;

/// One workspace: a name (what API keys map to), the identity scope it resolves in, and its
/// resolution configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace name.
    pub name: String,
    /// The identity scope; workspaces sharing a scope share profiles.
    pub scope: String,
    /// How it resolves.
    pub resolver: ResolverConfig,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The workspaces served.
    pub workspaces: Vec<Workspace>,
    /// A repeated `request_id` within this window (of recorded time) gets the first answer again
    /// and appends nothing.
    pub idempotency_window_micros: i64,
    /// Snapshots kept in the log database.
    pub snapshots_kept: usize,
}

impl EngineConfig {
    /// These workspaces and default settings: a 5-minute idempotency window, 2 snapshots kept.
    pub fn new(workspaces: Vec<Workspace>) -> EngineConfig {
        EngineConfig {
            workspaces,
            idempotency_window_micros: 5 * 60 * 1_000_000,
            snapshots_kept: 2,
        }
    }

    /// One workspace and default settings.
    pub fn single(workspace: Workspace) -> EngineConfig {
        EngineConfig::new(vec![workspace])
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// identify, login, logout or search.
    Identity(IdentityQuery),
    /// modify.
    Modify {
        /// The profile.
        mpid: Mpid,
        /// The changes.
        identity_changes: Vec<IdentityChange>,
    },
    /// alias.
    Alias(AliasQuery),
    /// An administrator detaches identities from a profile.
    AdminDetach(AdminCorrection),
    /// An administrator splits identities off a profile into a new one.
    AdminSplit(AdminCorrection),
}

/// Who asks, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    /// The workspace (from the API key).
    pub workspace: String,
    /// The environment.
    pub environment: Environment,
    /// The client's request id.
    pub request_id: Option<String>,
}

/// Why the engine did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is invalid (4xx with the resolver's code and message).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No such workspace (a configuration or authentication problem: 401 at the edge).
    #[error("unknown workspace `{0}`")]
    UnknownWorkspace(String),
    /// The engine cannot record decisions (storage failure; 503). Reopen to recover.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The snapshot loaded, if any.
    pub snapshot_seq: Option<Seq>,
    /// Snapshots found bad and discarded, with why.
    pub snapshots_discarded: Vec<(Seq, String)>,
    /// Entries folded from the log after the snapshot.
    pub n_replayed: u64,
}

/// The engine. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    log: Log,
    state: RwLock<State>,
    workspaces: BTreeMap<String, Workspace>,
    config: EngineConfig,
    clock: Box<dyn Clock>,
    /// Random MPIDs. Behind its own mutex, only ever locked while the state write lock is held.
    mpids: MpidCell,
    /// Set when a write failed after its entry was applied; the reason.
    poisoned: Mutex<Option<String>>,
}

#[derive(Debug)]
struct State {
    projection: Projection,
    recent: IdempotencyIndex,
}

struct MpidCell(Mutex<Box<dyn MpidSource + Send>>);

impl std::fmt::Debug for MpidCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MpidSource")
    }
}

/// MPIDs from the operating system's random source (via UUID v4).
#[derive(Debug, Default)]
pub struct RandomMpids;

impl MpidSource for RandomMpids {
    fn next_candidate(&mut self) -> i64 {
        uuid::Uuid::new_v4().as_u64_pair().0 as i64
    }
}

impl Engine {
    /// Opens the data folder `data_dir` (the log lives in `data_dir/log`): loads the newest good
    /// snapshot and folds the rest of the log.
    pub fn open(
        data_dir: &Path,
        config: EngineConfig,
    ) -> Result<(Engine, OpenReport), EngineError> {
        let log = Log::open(data_dir.join("log"))
            .map_err(|err| EngineError::Unavailable(err.to_string()))?;
        Engine::with_log(log, config, Box::new(SystemClock), Box::new(RandomMpids))
    }

    /// An engine over an in-memory log.
    pub fn in_memory(
        config: EngineConfig,
        clock: Box<dyn Clock>,
        mpids: Box<dyn MpidSource + Send>,
    ) -> Engine {
        Engine::with_log(Log::in_memory(), config, clock, mpids).expect("an empty log opens").0
    }

    /// An engine over `log`, with its clock and MPID source.
    pub fn with_log(
        log: Log,
        config: EngineConfig,
        clock: Box<dyn Clock>,
        mpids: Box<dyn MpidSource + Send>,
    ) -> Result<(Engine, OpenReport), EngineError> {
        let workspaces = config.workspaces.iter().map(|w| (w.name.clone(), w.clone())).collect();
        let (projection, report) = load_projection(&log)?;
        let recent = IdempotencyIndex::rebuild(
            &log,
            projection.last_time(),
            config.idempotency_window_micros,
        )
        .map_err(|err| EngineError::Unavailable(err.to_string()))?;
        let engine = Engine {
            log,
            state: RwLock::new(State { projection, recent }),
            workspaces,
            config,
            clock,
            mpids: MpidCell(Mutex::new(mpids)),
            poisoned: Mutex::new(None),
        };
        Ok((engine, report))
    }

    /// Handles one request: decide, record, apply, answer.
    pub fn handle(&self, meta: &RequestMeta, command: Command) -> Result<Answer, EngineError> {
        let workspace = self.workspace_of(meta)?;
        if let Command::Identity(query) = &command
            && query.op == IdentityOp::Search
        {
            return self.search(workspace, meta, query);
        }
        self.check_poisoned()?;
        let mut state = self.write_state();
        let (answer, pending) = self.decide_and_apply(&mut state, workspace, meta, command)?;
        drop(state);
        if let Some(pending) = pending {
            self.log.wait(pending).map_err(|err| self.poison(err.to_string()))?;
        }
        Ok(answer)
    }

    /// Handles several requests in order, as if each were [`Engine::handle`]d right after the
    /// previous one, under one acquisition of the write lock and one wait for durability: a client
    /// that pipelines its requests pays one group commit per batch instead of one per request.
    /// Each request gets its own answer or error; no answer is returned before every entry of the
    /// batch that changed state is durable.
    pub fn handle_batch(
        &self,
        requests: Vec<(RequestMeta, Command)>,
    ) -> Vec<Result<Answer, EngineError>> {
        let n_requests = requests.len();
        let mut answers = Vec::with_capacity(n_requests);
        let mut last_pending: Option<Pending> = None;
        if let Err(err) = self.check_poisoned() {
            return requests.iter().map(|_| Err(err.clone())).collect();
        }
        let mut state = self.write_state();
        for (meta, command) in requests {
            let workspace = match self.workspace_of(&meta) {
                Ok(workspace) => workspace,
                Err(err) => {
                    answers.push(Err(err));
                    continue;
                }
            };
            if let Command::Identity(query) = &command
                && query.op == IdentityOp::Search
            {
                let resolver =
                    Resolver { projection: &state.projection, config: &workspace.resolver };
                let world = World { scope: workspace.scope.clone(), environment: meta.environment };
                let decision =
                    resolver.identity(&world, query, state.projection.last_time(), &mut NoMpids);
                answers.push(decision.map(|d| d.answer).map_err(EngineError::from));
                continue;
            }
            match self.decide_and_apply(&mut state, workspace, &meta, command) {
                Ok((answer, pending)) => {
                    answers.push(Ok(answer));
                    if let Some(pending) = pending {
                        let durability = match &last_pending {
                            Some(last) if last.durability == Durability::Synced => {
                                Durability::Synced
                            }
                            _ => pending.durability,
                        };
                        last_pending = Some(Pending { durability, ..pending });
                    }
                }
                Err(err @ EngineError::Unavailable(_)) => {
                    // The log failed: nothing after this request can be recorded either.
                    answers.push(Err(err.clone()));
                    while answers.len() < n_requests {
                        answers.push(Err(err.clone()));
                    }
                    break;
                }
                Err(err) => answers.push(Err(err)),
            }
        }
        drop(state);
        // Entries are written in sequence order, so waiting for the last covers them all.
        if let Some(pending) = last_pending
            && let Err(err) = self.log.wait(pending)
        {
            let err = self.poison(err.to_string());
            for answer in &mut answers {
                if answer.is_ok() {
                    *answer = Err(err.clone());
                }
            }
        }
        answers
    }

    fn workspace_of(&self, meta: &RequestMeta) -> Result<&Workspace, EngineError> {
        self.workspaces
            .get(&meta.workspace)
            .ok_or_else(|| EngineError::UnknownWorkspace(meta.workspace.clone()))
    }

    fn search(
        &self,
        workspace: &Workspace,
        meta: &RequestMeta,
        query: &IdentityQuery,
    ) -> Result<Answer, EngineError> {
        let world = World { scope: workspace.scope.clone(), environment: meta.environment };
        let state = self.read_state();
        let resolver = Resolver { projection: &state.projection, config: &workspace.resolver };
        // Search draws no MPID and records nothing.
        let decision =
            resolver.identity(&world, query, state.projection.last_time(), &mut NoMpids)?;
        Ok(decision.answer)
    }

    /// Decides one recorded request under the write lock, queues its entry and applies it; the
    /// caller waits for the returned [`Pending`] (if any) after releasing the lock.
    fn decide_and_apply(
        &self,
        state: &mut State,
        workspace: &Workspace,
        meta: &RequestMeta,
        command: Command,
    ) -> Result<(Answer, Option<Pending>), EngineError> {
        let now = self.clock.now().max(state.projection.last_time());
        if let Some(answer) =
            meta.request_id.as_deref().and_then(|id| state.recent.get(&meta.workspace, id, now))
        {
            return Ok((answer.clone(), None));
        }
        let world = World { scope: workspace.scope.clone(), environment: meta.environment };
        let decision = {
            let resolver = Resolver { projection: &state.projection, config: &workspace.resolver };
            let mut mpids = self.mpids.0.lock().unwrap_or_else(|poison| poison.into_inner());
            match &command {
                Command::Identity(query) => {
                    resolver.identity(&world, query, now, mpids.as_mut())?
                }
                Command::Modify { mpid, identity_changes } => {
                    resolver.modify(&world, *mpid, identity_changes)?
                }
                Command::Alias(query) => resolver.alias(&world, query, now)?,
                Command::AdminDetach(AdminCorrection { mpid, identities, .. }) => {
                    resolver.admin_detach(&world, *mpid, identities)?
                }
                Command::AdminSplit(AdminCorrection { mpid, identities, .. }) => {
                    resolver.admin_split(&world, *mpid, identities, mpids.as_mut())?
                }
            }
        };
        let outcome = decision.outcome.expect("recorded operations have an outcome");
        let entry = Entry {
            recorded_at: now,
            request: Request {
                request_id: meta.request_id.clone(),
                workspace: meta.workspace.clone(),
                scope: workspace.scope.clone(),
                environment: meta.environment,
                operation: operation_of(command, now),
            },
            events: decision.events,
            outcome,
        };
        // An answer that changed nothing may be given before its entry is even written: a crash can
        // only lose it together with every later entry, so no durable decision depends on it.
        let durability =
            if entry.events.is_empty() { Durability::Queued } else { Durability::Synced };
        let pending = self
            .log
            .submit(std::slice::from_ref(&entry), durability)
            .map_err(|err| self.poison(err.to_string()))?;
        if let Err(err) = state.projection.apply(pending.first, &entry) {
            return Err(self.poison(err.to_string()));
        }
        let answer = answer_of(&entry);
        if let Some(request_id) = &meta.request_id {
            state.recent.insert(&meta.workspace, request_id, entry.recorded_at, answer.clone());
        }
        Ok((answer, Some(pending)))
    }

    fn check_poisoned(&self) -> Result<(), EngineError> {
        match &*self.poisoned.lock().unwrap_or_else(|poison| poison.into_inner()) {
            Some(reason) => Err(EngineError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&self, reason: String) -> EngineError {
        let mut poisoned = self.poisoned.lock().unwrap_or_else(|poison| poison.into_inner());
        let reason = poisoned.get_or_insert(reason).clone();
        EngineError::Unavailable(format!("{reason}; restart to replay the log"))
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poison| poison.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs `f` with read access to the projection (for audit and inspection).
    pub fn with_projection<T>(&self, f: impl FnOnce(&Projection) -> T) -> T {
        f(&self.read_state().projection)
    }

    /// The log (read access for audit, the change feed and replay).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A workspace's configuration.
    pub fn workspace(&self, name: &str) -> Option<&Workspace> {
        self.workspaces.get(name)
    }

    /// Writes a snapshot of the projection at its current sequence (holding the read lock while it
    /// serialises) and returns that sequence.
    pub fn snapshot(&self) -> Result<Seq, EngineError> {
        let (seq, bytes) = {
            let state = self.read_state();
            (state.projection.last_seq(), state.projection.to_snapshot())
        };
        // The snapshot must not claim entries that are not durable yet.
        self.log.sync().map_err(|err| self.poison(err.to_string()))?;
        self.log
            .save_snapshot(seq, &bytes, self.config.snapshots_kept)
            .map_err(|err| EngineError::Unavailable(err.to_string()))?;
        Ok(seq)
    }

    /// Makes everything durable and closes the log.
    pub fn close(self) -> Result<(), EngineError> {
        self.log.close().map_err(|err| EngineError::Unavailable(err.to_string()))
    }
}

/// An [`MpidSource`] for read-only decisions, which never create profiles.
struct NoMpids;

impl MpidSource for NoMpids {
    fn next_candidate(&mut self) -> i64 {
        unreachable!("search never creates a profile")
    }
}

/// The recorded form of a command.
fn operation_of(command: Command, now: Timestamp) -> Operation {
    match command {
        Command::Identity(query) => {
            let request = IdentityRequest {
                known_identities: query.known_identities,
                previous_mpid: query.previous_mpid,
            };
            match query.op {
                IdentityOp::Identify | IdentityOp::Search => Operation::Identify(request),
                IdentityOp::Login => Operation::Login(request),
                IdentityOp::Logout => Operation::Logout(request),
            }
        }
        Command::Modify { mpid, identity_changes } => Operation::Modify { mpid, identity_changes },
        Command::AdminDetach(correction) => Operation::AdminDetach(correction),
        Command::AdminSplit(correction) => Operation::AdminSplit(correction),
        Command::Alias(query) => Operation::Alias {
            source: query.source,
            destination: query.destination,
            start: query
                .start
                .unwrap_or(Timestamp(now.0.saturating_sub(idgraph_query::ALIAS_WINDOW_MAX_MICROS))),
            end: query.end.unwrap_or(now),
        },
    }
}

/// Records per batch handed from the reading thread to the folding thread during replay.
const REPLAY_BATCH_ENTRIES: usize = 4_096;
/// Batches in flight between the two threads: bounds replay memory to a few megabytes.
const REPLAY_BATCHES_IN_FLIGHT: usize = 4;

/// Folds every entry after the projection's last sequence into it, and returns how many.
///
/// Two threads: one reads the log (RocksDB iteration, checksums, copying payloads into batches),
/// the other decodes borrowed views and folds them, with a bounded channel of batches between
/// them. The fold stays single-threaded and in log order, so the result is exactly that of a
/// sequential replay.
pub fn replay_into(log: &Log, projection: &mut Projection) -> Result<u64, EngineError> {
    replay_until(log, projection, Seq(u64::MAX), &mut |_| {})
}

/// [`replay_into`], stopping after entry `until`, calling `progress` with the last sequence folded
/// after each batch.
pub fn replay_until(
    log: &Log,
    projection: &mut Projection,
    until: Seq,
    progress: &mut dyn FnMut(Seq),
) -> Result<u64, EngineError> {
    let unavailable = |err: idgraph_log::Error| EngineError::Unavailable(err.to_string());
    let from = projection.last_seq().next();
    let mut presize = Presize::new(log, projection, until);
    let (sender, receiver) =
        std::sync::mpsc::sync_channel::<idgraph_log::RecordBatch>(REPLAY_BATCHES_IN_FLIGHT);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            log.scan_batches(from, REPLAY_BATCH_ENTRIES, |batch| {
                // The folder stops at `until`; reading past it by less than a batch is harmless.
                let past_until = batch.last_seq().is_some_and(|last| last >= until);
                if sender.send(batch).is_err() || past_until {
                    return ControlFlow::Break(()); // The folder stopped, or `until` is read.
                }
                ControlFlow::Continue(())
            })
        });
        let mut n_replayed = 0u64;
        let mut failure = None;
        for batch in receiver.iter() {
            match fold_batch(projection, &batch, until) {
                Ok(n) => n_replayed += n,
                Err(reason) => failure = Some(reason),
            }
            presize.after_batch(projection);
            if failure.is_some() || projection.last_seq() >= until {
                break;
            }
            progress(projection.last_seq());
        }
        drop(receiver);
        let read = reader
            .join()
            .map_err(|_| EngineError::Unavailable("the replay reader panicked".into()))?;
        read.map_err(unavailable)?;
        match failure {
            Some(reason) => Err(EngineError::Unavailable(reason)),
            None => Ok(n_replayed),
        }
    })
}

/// Entries a replay folds before it sizes the projection for the rest ([`Presize`]), at least
/// (unless the log is short).
const PRESIZE_SAMPLE_MIN: u64 = 100_000;

/// [`Presize`] never reserves more than this many times a vector's current size (the sample is a
/// 64th of the log), nor, for the hash tables, which are written whole, more than four times.
const PRESIZE_FACTOR_MAX: usize = 64;

/// Sizes the projection for the whole replay once a sample of it is folded: the structures grow
/// about linearly with the log, so where they will end is predictable, and reserving that room once
/// spares every doubling on the way (each copies a structure whole and zeroes fresh pages, about a
/// tenth of a replay at 10M events). A wrong guess costs little: too little and the structures
/// double as before; too much (a log whose start is denser than the rest, say a bulk import) costs
/// address space in the vectors, which is not memory until written, and at most four times the
/// current size in the two hash tables, which are. Loading trims the excess (in place).
struct Presize {
    start: idgraph_projection::Sizes,
    from: Seq,
    total: u64,
    done: bool,
}

impl Presize {
    fn new(log: &Log, projection: &Projection, until: Seq) -> Presize {
        let from = projection.last_seq();
        let total = until.min(log.last_seq()).0.saturating_sub(from.0);
        Presize { start: projection.sizes(), from, total, done: false }
    }

    /// Called after each folded batch.
    fn after_batch(&mut self, projection: &mut Projection) {
        let folded = projection.last_seq().0.saturating_sub(self.from.0);
        // A 64th of the log, at least 100k entries or an eighth of the log, whichever is less.
        let sample = (self.total / 8).min(PRESIZE_SAMPLE_MIN).max(self.total / 64);
        if self.done || folded < sample {
            return;
        }
        self.done = true;
        if folded * 4 <= self.total {
            let now = projection.sizes();
            let end = now.extrapolate(self.start, folded, self.total, 0.15);
            projection.reserve_for(now.at_most_times(end, PRESIZE_FACTOR_MAX));
        }
    }
}

/// [`replay_until`] on the calling thread alone: scan, checksum, decode and fold in turn, for
/// machines with one core to spare (and to measure replay on one core).
pub fn replay_until_on_one_thread(
    log: &Log,
    projection: &mut Projection,
    until: Seq,
    progress: &mut dyn FnMut(Seq),
) -> Result<u64, EngineError> {
    let mut n_replayed = 0u64;
    let mut failure = None;
    let mut presize = Presize::new(log, projection, until);
    log.scan_batches(projection.last_seq().next(), REPLAY_BATCH_ENTRIES, |batch| {
        match fold_batch(projection, &batch, until) {
            Ok(n) => n_replayed += n,
            Err(reason) => failure = Some(reason),
        }
        presize.after_batch(projection);
        if failure.is_some() || projection.last_seq() >= until {
            return ControlFlow::Break(());
        }
        progress(projection.last_seq());
        ControlFlow::Continue(())
    })
    .map_err(|err| EngineError::Unavailable(err.to_string()))?;
    match failure {
        Some(reason) => Err(EngineError::Unavailable(reason)),
        None => Ok(n_replayed),
    }
}

/// Entries decoded and warmed up together ([`Projection::apply_run`]) before they are folded: enough
/// for the processor to overlap many cache misses, few enough that what they touch is still in
/// cache when they are folded.
const WARM_UP_ENTRIES: usize = 1_024;

/// Folds the entries of `batch` up to `until`, a run of [`WARM_UP_ENTRIES`] at a time, and returns
/// how many. On a record that does not decode, the entries before it are folded and the error
/// returned.
fn fold_batch(
    projection: &mut Projection,
    batch: &idgraph_log::RecordBatch,
    until: Seq,
) -> Result<u64, String> {
    let mut run = Vec::with_capacity(WARM_UP_ENTRIES);
    let mut n_folded = 0u64;
    let mut failure = None;
    let mut fold_run = |projection: &mut Projection, run: &mut Vec<(Seq, EntryView<'_>)>| {
        let (n, folded) = projection.apply_run(run);
        n_folded += n as u64;
        run.clear();
        folded.map_err(|err| err.to_string())
    };
    let read = batch.for_each_view(|seq, entry| {
        if seq > until {
            return ControlFlow::Break(());
        }
        run.push((seq, entry));
        if run.len() == WARM_UP_ENTRIES
            && let Err(reason) = fold_run(projection, &mut run)
        {
            failure = Some(reason);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if failure.is_none()
        && let Err(reason) = fold_run(projection, &mut run)
    {
        failure = Some(reason);
    }
    match (failure, read) {
        (Some(reason), _) => Err(reason),
        (None, Err(err)) => Err(err.to_string()),
        (None, Ok(())) => Ok(n_folded),
    }
}

/// Loads the newest snapshot that verifies and folds the log after it; a bad snapshot is discarded
/// (reported) and the next older one, or a full replay, is used instead.
pub fn load_projection(log: &Log) -> Result<(Projection, OpenReport), EngineError> {
    let unavailable = |err: idgraph_log::Error| EngineError::Unavailable(err.to_string());
    let mut report = OpenReport::default();
    let mut projection = Projection::new();
    for seq in log.snapshots_at_or_before(log.last_seq()).map_err(unavailable)? {
        let loaded = log.load_snapshot(seq).map_err(|err| err.to_string()).and_then(|bytes| {
            let bytes = bytes.ok_or_else(|| "vanished".to_owned())?;
            Projection::from_snapshot(&bytes).map_err(|err| err.to_string())
        });
        match loaded {
            Ok(loaded) if loaded.last_seq() == seq => {
                projection = loaded;
                report.snapshot_seq = Some(seq);
                break;
            }
            Ok(_) => report.snapshots_discarded.push((seq, "sequence differs from its key".into())),
            Err(reason) => report.snapshots_discarded.push((seq, reason)),
        }
    }
    report.n_replayed = replay_into(log, &mut projection)?;
    projection.shrink_leaving_room();
    Ok((projection, report))
}

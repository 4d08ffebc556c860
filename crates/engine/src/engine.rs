//! The engine: the write path (decide, submit to the log, apply, wait for durability), the reads
//! that share its lock (search, inspection), snapshots and closing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use idgraph_log::{Durability, Log, Pending};
use idgraph_model::{AdminCorrection, Entry, IdentityRequest, Operation, Request, Seq, Timestamp};
use idgraph_projection::Projection;
use idgraph_query::{
    Answer, Explanation, IdentityOp, IdentityQuery, MpidSource, RequestError, Resolver, World,
};

use crate::answer::answer_of;
use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::idempotency::{IdempotencyIndex, REQUEST_ID_BYTES_MAX, Seen};
use crate::load::load_projection;
use crate::{Command, EngineConfig, EngineError, OpenReport, RequestMeta, Workspace};

mod replica;

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
    /// Set when a write failed after its entry was applied: the first failure, in words.
    poisoned: Mutex<Option<String>>,
    /// Readers waiting for the state's read lock: the writer lets them in between runs of
    /// [`DECIDE_RUN`] decisions instead of holding the lock for a whole group.
    readers_waiting: AtomicUsize,
}

/// Most decisions the writer makes under one acquisition of the write lock when readers wait: a
/// read waits for at most one run, not a whole group of up to 1,024.
const DECIDE_RUN: usize = 64;

#[derive(Debug)]
struct State {
    projection: Projection,
    recent: IdempotencyIndex,
    /// The last entry that changed the graph: what a search must see durable before answering
    /// (entries that changed nothing cannot change a search's answer).
    last_change: Seq,
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
        let log = Log::open(data_dir.join("log"))?;
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
        )?;
        let engine = Engine {
            log,
            // Everything loaded was found on disk: durable.
            state: RwLock::new(State { projection, recent, last_change: Seq::ZERO }),
            workspaces,
            config,
            clock,
            mpids: MpidCell(Mutex::new(mpids)),
            poisoned: Mutex::new(None),
            readers_waiting: AtomicUsize::new(0),
        };
        Ok((engine, report))
    }

    /// Handles one request: decide, record, apply, answer.
    pub fn handle(&self, meta: &RequestMeta, command: Command) -> Result<Answer, EngineError> {
        let workspace = self.workspace_of(meta)?;
        // A halted engine answers nothing, searches included: its projection may be ahead of the
        // log.
        self.check_poisoned()?;
        if let Command::Identity(query) = &command
            && query.op == IdentityOp::Search
        {
            return self.search(workspace, meta, query);
        }
        let mut state = self.write_state();
        let (answer, pending) = self.decide_and_apply(&mut state, workspace, meta, command)?;
        drop(state);
        if let Some(pending) = pending {
            self.log.wait(pending).map_err(|err| self.poison(err.into()))?;
        }
        // An answer that waited for nothing durable (it changed nothing) stands only if the log
        // did not fail meanwhile: it may rest on an entry that never reached storage.
        self.check_poisoned()?;
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
        let decided = self.decide_batch(requests);
        self.complete(decided)
    }

    /// The first half of [`Engine::handle_batch`]: decides, submits and applies the requests in
    /// order under one acquisition of the write lock, and returns without waiting for durability.
    /// The answers must not be released before [`Engine::complete`] has made them durable.
    pub(crate) fn decide_batch(
        &self,
        requests: impl IntoIterator<Item = (RequestMeta, Command)>,
    ) -> Decided {
        let requests = requests.into_iter();
        let mut answers = Vec::with_capacity(requests.size_hint().0);
        let mut last_pending: Option<Pending> = None;
        if let Err(err) = self.check_poisoned() {
            answers.extend(requests.map(|_| Err(err.clone())));
            return Decided { answers, last_pending };
        }
        let mut state = self.write_state();
        let mut failed: Option<EngineError> = None;
        for (n_decided, (meta, command)) in requests.enumerate() {
            if n_decided % DECIDE_RUN == DECIDE_RUN - 1 {
                state = self.let_readers_in(state);
            }
            if let Some(err) = &failed {
                // The log failed: nothing after that request can be recorded either.
                answers.push(Err(err.clone()));
                continue;
            }
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
                        last_pending = Some(match last_pending {
                            None => pending,
                            Some(last) => covering(last, pending),
                        });
                    }
                }
                Err(err) if !err.is_client_error() => {
                    answers.push(Err(err.clone()));
                    failed = Some(err);
                }
                Err(err) => answers.push(Err(err)),
            }
        }
        Decided { answers, last_pending }
    }

    /// The second half of [`Engine::handle_batch`]: waits until every entry of a decided batch is
    /// durable and returns its answers (each success turned into the log's error if the wait
    /// failed). Entries are written in sequence order, so waiting for the last covers them all.
    pub(crate) fn complete(&self, decided: Decided) -> Vec<Result<Answer, EngineError>> {
        let Decided { mut answers, last_pending } = decided;
        let waited = match last_pending {
            Some(pending) => {
                self.log.wait(pending).map(drop).map_err(|err| self.poison(err.into()))
            }
            None => Ok(()),
        };
        // A batch whose answers changed nothing waited for nothing durable; if the log failed
        // meanwhile (an earlier batch's write), those answers may rest on entries that never
        // reached storage, so they are not given either.
        if let Err(err) = waited.and_then(|()| self.check_poisoned()) {
            for answer in &mut answers {
                if answer.is_ok() {
                    *answer = Err(err.clone());
                }
            }
        }
        answers
    }

    fn workspace_of(&self, meta: &RequestMeta) -> Result<&Workspace, EngineError> {
        if let Some(request_id) = &meta.request_id
            && request_id.len() > REQUEST_ID_BYTES_MAX
        {
            return Err(RequestError::invalid_data(format!(
                "request_id is {} bytes long; at most {REQUEST_ID_BYTES_MAX} are accepted",
                request_id.len()
            ))
            .into());
        }
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
        let read_at = state.last_change;
        drop(state);
        // The projection may be ahead of the disk (a group decided, its fsync in flight): the
        // answer is given only once every change it may have read is durable, like any other
        // answer, so a search never names a profile a crash could take back.
        if read_at > Seq::ZERO {
            let pending = Pending { first: read_at, last: read_at, durability: Durability::Synced };
            self.log.wait(pending).map_err(|err| self.poison(err.into()))?;
        }
        self.check_poisoned()?;
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
        // A cluster node that is not the writer decides nothing (before anything is changed).
        self.log.check_may_append().map_err(|_| EngineError::NotWriter)?;
        let now = self.clock.now().max(state.projection.last_time());
        // The fingerprint of a request with an id (a recorded one: search never gets here).
        let remembered = match &meta.request_id {
            Some(request_id) => {
                let request = state
                    .recent
                    .fingerprint_command(meta.environment, &command)
                    .expect("only recorded requests are decided here");
                match state.recent.get(&meta.workspace, request_id, request, now) {
                    Seen::New => Some((request_id, request)),
                    // The first answer, released (like any answer) only once the entry that
                    // recorded it is durable: it may still be waiting for its fsync.
                    Seen::Repeat(answer, seq) => {
                        let pending =
                            Pending { first: seq, last: seq, durability: Durability::Synced };
                        return Ok((answer.clone(), Some(pending)));
                    }
                    Seen::Conflict(operation) => {
                        return Err(EngineError::RequestIdReused {
                            request_id: request_id.clone(),
                            operation,
                        });
                    }
                }
            }
            None => None,
        };
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
            .map_err(|err| self.poison(err.into()))?;
        if let Err(err) = state.projection.apply(pending.first, &entry) {
            return Err(self.poison(err.into()));
        }
        if durability == Durability::Synced {
            state.last_change = pending.last;
        }
        let answer = answer_of(&entry);
        if let Some((request_id, request)) = remembered {
            state.recent.insert(
                &meta.workspace,
                request_id,
                request,
                pending.first,
                entry.recorded_at,
                answer.clone(),
            );
        }
        Ok((answer, Some(pending)))
    }

    /// Why the engine halted (it answers nothing until reopened), if it did.
    pub fn halted(&self) -> Option<String> {
        self.poisoned.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    fn check_poisoned(&self) -> Result<(), EngineError> {
        match &*self.poisoned.lock().unwrap_or_else(|poison| poison.into_inner()) {
            Some(cause) => Err(EngineError::Halted { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Halts the engine after `err` (the first cause is kept) and returns `err`, whose kind the
    /// caller's answer keeps; later requests get [`EngineError::Halted`].
    fn poison(&self, err: EngineError) -> EngineError {
        let mut poisoned = self.poisoned.lock().unwrap_or_else(|poison| poison.into_inner());
        poisoned.get_or_insert_with(|| err.to_string());
        err
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.readers_waiting.fetch_add(1, Ordering::AcqRel);
        let state = self.state.read().unwrap_or_else(|poison| poison.into_inner());
        self.readers_waiting.fetch_sub(1, Ordering::AcqRel);
        state
    }

    /// Between two runs of a group's decisions: if readers wait for the state, releases the write
    /// lock until they hold it (or a short bound passes), then takes it again. The group stays one
    /// unit for durability; readers see a prefix of its decisions (and, like every reader, answer
    /// only once what they read is durable).
    fn let_readers_in<'a>(
        &'a self,
        state: RwLockWriteGuard<'a, State>,
    ) -> RwLockWriteGuard<'a, State> {
        if self.readers_waiting.load(Ordering::Acquire) == 0 {
            return state;
        }
        drop(state);
        let deadline = std::time::Instant::now() + std::time::Duration::from_micros(200);
        while self.readers_waiting.load(Ordering::Acquire) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        self.write_state()
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

    /// The audit use cases over this engine's log, for workspace `caller`.
    pub fn audit(&self, caller: &str) -> Result<Audit<'_>, EngineError> {
        let caller = self
            .workspaces
            .get(caller)
            .ok_or_else(|| EngineError::UnknownWorkspace(caller.to_owned()))?;
        Ok(Audit { log: &self.log, caller, workspaces: &self.config.workspaces })
    }

    /// How `query` would be decided now for `meta`'s workspace and environment, step by step.
    /// Nothing is recorded; a request that would create a profile gets a placeholder MPID.
    pub fn explain_request(
        &self,
        meta: &RequestMeta,
        query: &IdentityQuery,
    ) -> Result<(Answer, Explanation), EngineError> {
        let workspace = self.workspace_of(meta)?;
        let world = World { scope: workspace.scope.clone(), environment: meta.environment };
        let state = self.read_state();
        crate::audit::explain_query(&state.projection, workspace, &world, query)
    }

    /// Writes a snapshot of the projection at its current sequence (holding the read lock while it
    /// serialises) and returns that sequence.
    pub fn snapshot(&self) -> Result<Seq, EngineError> {
        let (seq, bytes) = {
            let state = self.read_state();
            (state.projection.last_seq(), state.projection.to_snapshot())
        };
        // The snapshot must not claim entries that are not durable yet.
        self.log.sync().map_err(|err| self.poison(err.into()))?;
        self.log.save_snapshot(seq, &bytes, self.config.snapshots_kept)?;
        Ok(seq)
    }

    /// Makes everything durable and closes the log.
    pub fn close(self) -> Result<(), EngineError> {
        Ok(self.log.close()?)
    }
}

/// One wait that covers both `a` and `b`: up to the later sequence, with the stronger durability
/// (entries are written in sequence order, so waiting for the later covers the earlier).
fn covering(a: Pending, b: Pending) -> Pending {
    let strength = |durability| match durability {
        Durability::Queued => 0,
        Durability::Deferred => 1,
        Durability::Synced => 2,
    };
    let durability =
        if strength(a.durability) >= strength(b.durability) { a.durability } else { b.durability };
    Pending { first: a.first.min(b.first), last: a.last.max(b.last), durability }
}

/// A batch decided, submitted and applied, whose answers wait for its entries to be durable.
#[derive(Debug)]
pub(crate) struct Decided {
    /// One per request, in order.
    answers: Vec<Result<Answer, EngineError>>,
    /// The last entry submitted (the strongest durability asked of the batch), if any.
    last_pending: Option<Pending>,
}

/// An [`MpidSource`] for read-only decisions, which never create profiles.
struct NoMpids;

impl MpidSource for NoMpids {
    fn next_candidate(&mut self) -> i64 {
        unreachable!("search never creates a profile")
    }
}

/// The recorded form of a command.
pub(crate) fn operation_of(command: Command, now: Timestamp) -> Operation {
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

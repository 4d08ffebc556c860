//! # idgraph-engine
//!
//! The write path that ties the log, the projection and the resolver together:
//! *decide* against the current projection, *append* one log entry (request + outcome + events),
//! *apply* it to the projection, *answer*. Also: opening a data folder (snapshot + tail replay),
//! snapshots, `request_id` idempotency, and the audit use cases.
//!
//! ## Map
//! - [`Engine`] (`engine.rs`): the write path and the reads that share its lock.
//! - [`Pipeline`] (`pipeline.rs`): requests from many callers decided in groups by one writer
//!   thread, answered once their group is durable.
//! - `load.rs`: opening a data folder: the one snapshot loader, and replay on one or two threads.
//! - [`audit`]: the audit use cases ([`audit::Audit`]), which the CLI and the server only render;
//!   [`whatif`]: re-deciding the log under another configuration.
//! - [`EngineError`] (`error.rs`): what went wrong, keeping the kind of the failure below.
//! - `idempotency.rs`, `answer.rs`, `clock.rs`: remembered answers, answers from entries, time.
//!
//! ## Concurrency model
//! One `RwLock` guards the projection and the idempotency index. A request that records an entry
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
mod engine;
mod error;
mod idempotency;
mod load;
pub mod pipeline;
pub mod whatif;

use idgraph_model::{AdminCorrection, Environment, IdentityChange, Mpid, Seq};
use idgraph_query::{AliasQuery, IdentityQuery, ResolverConfig};

pub use crate::answer::answer_of;
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::engine::{Engine, RandomMpids};
pub use crate::error::EngineError;
pub use crate::load::{load_projection, replay_into, replay_until, replay_until_on_one_thread};
pub use crate::pipeline::{Pipeline, Ticket};

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

//! # idgraph-projection
//!
//! Folds log entries into the identity graph: a petgraph [`Graph`] whose nodes are identities
//! (`type=value` within a *world*, that is an identity scope and an environment) and profiles (an
//! MPID), with a `LooksUp` edge from each identity to each profile it resolves to and an `Alias`
//! edge from an alias source to its destination. Around the graph sit the indexes resolution needs.
//!
//! ## Architecture invariants
//! - **Derived state.** Nothing writes here except the fold ([`Projection::apply`]); replaying the
//!   log from sequence 1 rebuilds the projection exactly ([`Projection::content_digest`] proves
//!   it). A [`PartialProjection`], folded from chosen parts of chosen entries for audit, is a type
//!   of its own and can never be taken for the live state.
//! - **Sans-IO and deterministic.** No files, clocks, threads or randomness that reaches a result.
//!   The hash tables (`table`: the interner's and the MPID index, hashed by hashbrown's randomly
//!   seeded hasher against hash flooding) are only probed, never iterated; every list returned is
//!   sorted.
//! - **Bad data is a diagnostic**, with its sequence, never a panic or a silent skip.
//! - petgraph indices stay inside: the API speaks [`ProfileId`], [`IdentityId`], [`WorldId`].
//!
//! ## Memory
//! Identity strings are interned once in one arena (`interner`); node and edge indices are 32-bit
//! and node and edge weights are packed into 4 bytes (`packed`). Identity nodes are never removed
//! (a detached identity keeps its node and id), so ids are stable.
//!
//! ## Growth without stalls
//! The engine applies each request under its write lock, so no apply may copy a structure in
//! proportion to the projection's size. The profiles are chunks that never move (`segmented`), the
//! interner's arena too (`interner`), and the hash tables grow incrementally (`table`, also behind
//! the shared type counts, `type_counts`). petgraph's node and edge vectors and the alias records
//! are `Vec`s that double: a replay sizes them for its end once ([`ReplaySizing`]), and
//! [`Projection::shrink_leaving_room`], which the engine calls after loading, reserves room for
//! them to double and at least [`GRAPH_NODES_ROOM_MIN`] nodes more (address space until written),
//! so they do not grow while a server grows to about 16M identities (`sizing`).
//! `benches/growth.rs` measures the slowest apply up to 10M identities.
//!
//! ## Code map
//! One job per file:
//! - `lib.rs`: the [`Projection`] state and the ids; `packed.rs`: node and edge packing.
//! - `fold.rs`: the fold and its rules, the only writer; `warm.rs`: the replay's warm-up, which
//!   only reads; `partial.rs`: [`PartialProjection`], the partial fold of audit.
//! - `read.rs`: reads; `digest.rs`: the two digests; `snapshot.rs`: the snapshot format.
//! - `sizing.rs`: sizes, the replay's presizing ([`ReplaySizing`]), memory accounting.
//! - `interner.rs` and `table.rs`: the two big indexes; `type_counts.rs`: identities of a type per
//!   profile; `segmented.rs`: vectors in chunks that never move; `generate.rs`: a generator of
//!   valid logs (feature `generate`).
//!
//! ## API themes
//! - Ids are opaque 32-bit (16-bit for worlds) newtypes, dense and stable for a projection's life.
//! - Errors are typed: [`OutOfSequence`] for a fold given the wrong entry (a caller's bug),
//!   [`SnapshotError`] for a snapshot that cannot be loaded (replay instead). Bad data in the log is
//!   neither: it is a [`Diagnostic`].

mod digest;
mod fold;
#[cfg(feature = "generate")]
pub mod generate;
mod interner;
mod packed;
mod partial;
mod read;
mod segmented;
mod sizing;
mod snapshot;
mod table;
mod type_counts;
mod warm;

use std::collections::BTreeMap;

use hashbrown::DefaultHashBuilder;
use idgraph_model::{Environment, IdentityTypeSet, Mpid, Seq, Timestamp};
use petgraph::graph::{Graph, NodeIndex};

pub use crate::digest::Digest;
pub use crate::fold::{DIAGNOSTICS_KEPT_MAX, Diagnostic, OutOfSequence};
pub use crate::interner::IdentityId;
use crate::interner::Interner;
use crate::packed::{PackedEdge, PackedNode};
pub use crate::partial::PartialProjection;
pub use crate::read::ProfileView;
use crate::segmented::SegVec;
pub use crate::sizing::{
    ALIASES_ROOM_MIN, GRAPH_EDGES_ROOM_MIN, GRAPH_NODES_ROOM_MIN, GROWTH_ROOM_DIVISOR,
    REPLAY_RESERVE_FACTOR_MAX, REPLAY_RESERVE_MARGIN, REPLAY_SAMPLE_ENTRIES_MIN, ReplaySizing,
    Sizes,
};
pub use crate::snapshot::{Malformed, SnapshotError};
use crate::table::ProbeTable;
use crate::type_counts::TypeCounts;

/// A world: one identity scope in one environment. Nothing resolves across worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorldId(pub(crate) u16);

/// A profile, by its dense index in the projection (stable for the projection's life, and the same
/// after a replay of the same log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileId(pub(crate) u32);

/// An accepted alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasRecord {
    /// The profile whose history is attributed to `destination`.
    pub source: Mpid,
    /// The profile that receives it.
    pub destination: Mpid,
    /// Window start.
    pub start: Timestamp,
    /// Window end.
    pub end: Timestamp,
    /// The entry that recorded it.
    pub seq: Seq,
}

/// Per-profile state kept beside the graph.
#[derive(Debug, Clone)]
struct Profile {
    mpid: Mpid,
    world: WorldId,
    node: NodeIndex<u32>,
    created: Timestamp,
    last_seen: Timestamp,
    /// The types of the identities it holds now.
    types: IdentityTypeSet,
    /// How many identities it holds now.
    n_identities: u32,
    was_alias_source: bool,
    was_alias_destination: bool,
}

/// The folded state of a log prefix.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    graph: Graph<PackedNode, PackedEdge, petgraph::Directed, u32>,
    /// Worlds by [`WorldId`]; few, so scanned.
    worlds: Vec<(String, Environment)>,
    /// Worlds in name order, for the content digest.
    world_index: BTreeMap<(String, Environment), WorldId>,
    interner: Interner,
    /// Profiles by [`ProfileId`], in chunks that never move (growing never copies them).
    profiles: SegVec<Profile>,
    /// MPID → profile, confirmed against the profile's own MPID. Probed only, never iterated (see
    /// the crate docs).
    mpid_index: ProbeTable,
    /// The MPID index's hasher (randomly seeded).
    mpid_hasher: DefaultHashBuilder,
    /// How many identities of one type a profile holds, for the (profile, type) pairs with two or
    /// more; a profile's `types` says which have one. Keeps the resolver's guardrail count and a
    /// detach O(1) however many identities a profile holds. Probed only.
    shared_types: TypeCounts,
    aliases: Vec<AliasRecord>,
    last_seq: Seq,
    last_time: Timestamp,
    running_digest: Digest,
    diagnostics: Vec<Diagnostic>,
    n_diagnostics: u64,
    /// Events applied by this value since it was created or loaded (a statistic: not part of the
    /// state, the digests or snapshots).
    n_events_applied: u64,
}

impl Projection {
    /// An empty projection (the state before sequence 1).
    pub fn new() -> Projection {
        Projection::default()
    }
}

#[cfg(test)]
mod tests;

//! # idgraph-projection
//!
//! Folds log entries into the identity graph: a petgraph [`Graph`] whose nodes are identities
//! (`type=value` within a *world*, that is an identity scope and an environment) and profiles (an
//! MPID), with a `LooksUp` edge from each identity to each profile it resolves to and an `Alias`
//! edge from an alias source to its destination. Around the graph sit the indexes resolution needs.
//!
//! ## Architecture invariants
//! - **Derived state.** Nothing writes here except [`Projection::apply`]; replaying the log from
//!   sequence 1 rebuilds the projection exactly ([`Projection::content_digest`] proves it).
//! - **Sans-IO and deterministic.** No files, clocks, threads or randomness that reaches a result.
//!   The hash tables ([`table`]: the interner's and the MPID index, hashed by hashbrown's randomly
//!   seeded hasher against hash flooding) are only probed, never iterated; every list returned is
//!   sorted.
//! - **Bad data is a diagnostic**, with its sequence, never a panic or a silent skip.
//! - petgraph indices stay inside: the API speaks [`ProfileId`], [`IdentityId`], [`WorldId`].
//!
//! ## Memory
//! Identity strings are interned once in one arena ([`interner`]); node and edge indices are 32-bit.
//! Identity nodes are never removed (a detached identity keeps its node and id), so ids are stable.
//! Vectors double as they grow; [`Projection::shrink_to_fit`] drops the slack after a replay.

#[cfg(feature = "generate")]
pub mod generate;
mod interner;
mod snapshot;
mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};
use idgraph_model::{
    DetachReason, Entry, EntryView, Environment, Event, EventView, Identity, IdentityType,
    IdentityTypeSet, IdentityView, Mpid, Seq, Timestamp,
};
use petgraph::Direction::{Incoming, Outgoing};
use petgraph::graph::{EdgeIndex, Graph, NodeIndex};
use petgraph::visit::EdgeRef;
use smallvec::SmallVec;

pub use crate::interner::IdentityId;
use crate::interner::{HINT_MANY, HINT_NONE, Interner, Key};
pub use crate::snapshot::SnapshotError;
use crate::table::ProbeTable;

/// A world: one identity scope in one environment. Nothing resolves across worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorldId(pub(crate) u16);

/// The key of a (profile, identity type) pair in `Projection::shared_types`.
fn type_pair(profile: ProfileId, identity_type: IdentityType) -> u64 {
    u64::from(profile.0) << 8 | u64::from(identity_type.code())
}

/// A profile, by its dense index in the projection (stable for the projection's life, and the same
/// after a replay of the same log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileId(pub(crate) u32);

/// The sizes of the structures that grow with the log ([`Projection::sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Graph nodes (identities and profiles).
    pub nodes: usize,
    /// Graph edges (lookups and aliases).
    pub edges: usize,
    /// Interned identities.
    pub identities: usize,
    /// Bytes of interned identity records.
    pub identity_bytes: usize,
    /// Profiles.
    pub profiles: usize,
}

impl Sizes {
    /// Each size capped at `factor` times what it is in `self`.
    pub fn at_most_times(self, end: Sizes, factor: usize) -> Sizes {
        let cap = |now: usize, end: usize| end.min(now.saturating_mul(factor));
        Sizes {
            nodes: cap(self.nodes, end.nodes),
            edges: cap(self.edges, end.edges),
            identities: cap(self.identities, end.identities),
            identity_bytes: cap(self.identity_bytes, end.identity_bytes),
            profiles: cap(self.profiles, end.profiles),
        }
    }

    /// Where sizes that went from `start` to `self` over `done` entries end after `total`, if they
    /// keep growing at the same rate, plus `margin` (a fraction) of the growth to come.
    pub fn extrapolate(self, start: Sizes, done: u64, total: u64, margin: f64) -> Sizes {
        let scale = total.saturating_sub(done) as f64 / done.max(1) as f64 * (1.0 + margin);
        let grow =
            |now: usize, then: usize| now + (now.saturating_sub(then) as f64 * scale) as usize;
        Sizes {
            nodes: grow(self.nodes, start.nodes),
            edges: grow(self.edges, start.edges),
            identities: grow(self.identities, start.identities),
            identity_bytes: grow(self.identity_bytes, start.identity_bytes),
            profiles: grow(self.profiles, start.profiles),
        }
    }
}

/// [`Projection::reserve_for`] grows a hash table at most this many times over at once.
const TABLE_RESERVE_FACTOR_MAX: usize = 4;

/// [`Projection::shrink_leaving_room`] leaves room for this fraction (1/n) more of everything.
pub const GROWTH_ROOM_DIVISOR: usize = 8;

/// Shrinks `vec` to its length plus `room(len)`, or reserves up to that.
fn fit_vec<T>(vec: &mut Vec<T>, room: fn(usize) -> usize) {
    let target = vec.len() + room(vec.len());
    vec.shrink_to(target);
    vec.reserve_exact(target - vec.len());
}

/// What [`Projection::apply_run`]'s warm-up found for one lookup of the fold.
const NOT_FOUND: u32 = u32::MAX;

/// What [`Projection::apply_run`]'s warm-up found for one event (or, first of an entry's, for its
/// outcome's MPID): the ids of its profiles and identity, each [`NOT_FOUND`] if warm-up did not
/// find it or the event names none.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// The profile the event names (an alias's source).
    profile: u32,
    /// An alias's destination.
    other: u32,
    /// The identity the event attaches or detaches.
    identity: u32,
}

impl Found {
    const NOTHING: Found = Found { profile: NOT_FOUND, other: NOT_FOUND, identity: NOT_FOUND };
}

/// An event, owned or borrowed, seen as an [`EventView`] (borrowing: no copy of its strings).
trait AsEventView {
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R;
}

impl AsEventView for Event {
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R {
        f(&EventView::from(self))
    }
}

impl AsEventView for EventView<'_> {
    fn with_view<R>(&self, f: impl FnOnce(&EventView<'_>) -> R) -> R {
        f(self)
    }
}

/// A 128-bit digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub u128);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Something wrong with the data in the log, found while folding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The entry that carried it.
    pub seq: Seq,
    /// What is wrong.
    pub message: String,
}

/// Most diagnostics kept in memory; later ones are counted only.
pub const DIAGNOSTICS_KEPT_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Identity(IdentityId),
    Profile(ProfileId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// identity → profile: the identity (of this type) looks the profile up.
    LooksUp(IdentityType),
    /// source → destination, with the index of the alias record.
    Alias(u32),
}

/// A [`Node`] in 4 bytes (the top bit says which kind), so a graph node costs 12 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedNode(u32);

/// An [`Edge`] in 4 bytes, so a graph edge costs 20 bytes, not 24: from [`LOOKUP_BASE`] up a
/// lookup, whose low byte is the identity's type code (so a profile's identities of one type are
/// counted from its edges alone), below it an alias record's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedEdge(u32);

const PROFILE_BIT: u32 = 1 << 31;
const LOOKUP_BASE: u32 = 0xFFFF_FF00;

impl Node {
    fn pack(self) -> PackedNode {
        match self {
            Node::Identity(id) => {
                assert!(id.0 < PROFILE_BIT, "identity ids stay below 2^31");
                PackedNode(id.0)
            }
            Node::Profile(id) => {
                assert!(id.0 < PROFILE_BIT, "profile ids stay below 2^31");
                PackedNode(id.0 | PROFILE_BIT)
            }
        }
    }
}

impl PackedNode {
    fn unpack(self) -> Node {
        if self.0 & PROFILE_BIT == 0 {
            Node::Identity(IdentityId(self.0))
        } else {
            Node::Profile(ProfileId(self.0 & !PROFILE_BIT))
        }
    }
}

impl Edge {
    fn pack(self) -> PackedEdge {
        match self {
            Edge::LooksUp(identity_type) => {
                PackedEdge(LOOKUP_BASE | u32::from(identity_type.code()))
            }
            Edge::Alias(idx) => {
                assert!(idx < LOOKUP_BASE, "alias indices stay below 0xFFFF_FF00");
                PackedEdge(idx)
            }
        }
    }
}

impl PackedEdge {
    fn unpack(self) -> Edge {
        match self.lookup_type() {
            Some(identity_type) => Edge::LooksUp(identity_type),
            None => Edge::Alias(self.0),
        }
    }

    fn is_lookup(self) -> bool {
        self.0 >= LOOKUP_BASE
    }

    /// The identity type of a lookup edge (`None` for an alias).
    fn lookup_type(self) -> Option<IdentityType> {
        let code = u8::try_from(self.0.checked_sub(LOOKUP_BASE)?).ok()?;
        Some(IdentityType::from_code(code).expect("packed from a valid type"))
    }
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

/// A read-only view of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileView {
    /// Its MPID.
    pub mpid: Mpid,
    /// The world it lives in.
    pub world: WorldId,
    /// When it was created.
    pub created: Timestamp,
    /// When a request last resolved to it (or modified it).
    pub last_seen: Timestamp,
    /// The types of identities it holds.
    pub types: IdentityTypeSet,
    /// How many identities it holds; 0 means orphaned.
    pub n_identities: u32,
    /// Whether it has been the source of an accepted alias.
    pub was_alias_source: bool,
    /// Whether it has been the destination of an accepted alias.
    pub was_alias_destination: bool,
}

impl ProfileView {
    /// An orphaned profile holds no identity and can never be returned by a lookup.
    pub fn is_orphaned(&self) -> bool {
        self.n_identities == 0
    }
}

/// The folded state of a log prefix.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    graph: Graph<PackedNode, PackedEdge, petgraph::Directed, u32>,
    worlds: Vec<(String, Environment)>,
    world_index: BTreeMap<(String, Environment), WorldId>,
    interner: Interner,
    profiles: Vec<Profile>,
    /// MPID → profile, confirmed against the profile's own MPID. Probed only, never iterated (see
    /// the crate docs).
    mpid_index: ProbeTable,
    /// The MPID index's hasher (randomly seeded).
    mpid_hasher: DefaultHashBuilder,
    /// How many identities of one type a profile holds, for the (profile, type) pairs with two or
    /// more ([`type_pair`]); a profile's `types` says which have one. Keeps the resolver's
    /// guardrail count and a detach O(1) however many identities a profile holds. Probed only.
    shared_types: HashMap<u64, u32>,
    aliases: Vec<AliasRecord>,
    last_seq: Seq,
    last_time: Timestamp,
    running_digest: Digest,
    diagnostics: Vec<Diagnostic>,
    n_diagnostics: u64,
    /// Events applied by this value since it was created or loaded (a statistic: not part of the
    /// state, the digests or snapshots).
    n_events_applied: u64,
    /// Whether this is a [`Projection::partial`] fold of chosen entries.
    partial: bool,
}

/// [`Projection::apply`] was called with an entry that does not follow the last one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {given} applied after {last}: entries must be applied in sequence")]
pub struct OutOfSequence {
    /// The last applied sequence.
    pub last: Seq,
    /// The sequence given.
    pub given: Seq,
}

impl Projection {
    /// An empty projection (the state before sequence 1).
    pub fn new() -> Projection {
        Projection::default()
    }

    /// An empty *partial* projection, folded with [`Projection::apply_selected`]: the state of a few
    /// chosen profiles (and the identities they hold), rebuilt from only the entries that touched
    /// them, for audit questions about a past point ("MPID X as of sequence N"). Everything it says
    /// about those profiles equals what a full fold to the same point says; anything else it lacks.
    /// Its digests do not describe the log.
    pub fn partial() -> Projection {
        Projection { partial: true, ..Projection::default() }
    }

    /// Whether this is a [`Projection::partial`] one.
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Folds the part of entry `seq` that concerns the profiles `keep` accepts, into a
    /// [`Projection::partial`] projection: events naming only accepted MPIDs, and the outcome's
    /// "last seen" for an accepted MPID. Sequences must increase; gaps are expected. The caller
    /// must give every entry that changed an accepted profile (the log's profile index lists
    /// them), or the state of that profile is incomplete.
    ///
    /// # Panics
    /// On a projection that is not partial: gaps would corrupt a full fold.
    pub fn apply_selected(
        &mut self,
        seq: Seq,
        entry: &Entry,
        keep: impl Fn(Mpid) -> bool,
    ) -> Result<(), OutOfSequence> {
        assert!(self.partial, "apply_selected folds into a partial projection");
        if seq <= self.last_seq {
            return Err(OutOfSequence { last: self.last_seq, given: seq });
        }
        self.last_seq = seq;
        self.last_time = self.last_time.max(entry.recorded_at);
        let world = self.intern_world(&entry.request.scope, entry.request.environment);
        for event in &entry.events {
            let event = EventView::from(event);
            let kept = match &event {
                EventView::ProfileCreated { mpid }
                | EventView::IdentityAttached { mpid, .. }
                | EventView::IdentityDetached { mpid, .. } => keep(*mpid),
                EventView::AliasRecorded { source, destination, .. } => {
                    keep(*source) && keep(*destination)
                }
            };
            if kept {
                self.apply_event(seq, world, entry.recorded_at, &event, Found::NOTHING);
                self.n_events_applied += 1;
            }
        }
        if let Some(mpid) = entry.outcome.seen_mpid()
            && keep(mpid)
            && let Some(profile) = self.profile_id(mpid)
        {
            let profile = &mut self.profiles[profile.0 as usize];
            profile.last_seen = profile.last_seen.max(entry.recorded_at);
        }
        Ok(())
    }

    /// Folds one entry. `seq` must be the next sequence. Problems with the entry's data become
    /// [`Diagnostic`]s; the rest of the entry still applies.
    pub fn apply(&mut self, seq: Seq, entry: &Entry) -> Result<(), OutOfSequence> {
        let request = &entry.request;
        let seen = entry.outcome.seen_mpid();
        let world = (request.scope.as_str(), request.environment);
        self.fold(seq, entry.recorded_at, world, &entry.events, seen, &[])
    }

    /// [`Projection::apply`] for a borrowed view of a stored entry (what replay decodes): the same
    /// fold, the same result.
    pub fn apply_view(&mut self, seq: Seq, entry: &EntryView<'_>) -> Result<(), OutOfSequence> {
        let request = &entry.request;
        let seen = entry.outcome.seen_mpid();
        let world = (request.scope, request.environment);
        self.fold(seq, entry.recorded_at, world, &entry.events, seen, &[])
    }

    /// Folds a run of consecutive entries, as [`Projection::apply_view`] on each in turn would, and
    /// returns how many were folded: all of them, or those before the first out of sequence (with
    /// the error).
    ///
    /// Replay folds runs of about a thousand entries. The run is first *warmed up*: everything the
    /// fold will look up (the records of the profiles each entry names, the MPID slots, graph nodes
    /// and interner slots of the identities it attaches or detaches) is read in a tight loop with
    /// no dependency from one entry to the next, so the processor overlaps the cache misses that
    /// dominate a fold beyond a few million identities (`benches/projection.rs` measures replay at
    /// 10M events). What the warm-up finds is handed to the fold, which then looks up only what was
    /// not found yet: profiles and interned identities are never removed, so a found id stays
    /// right, while something an earlier entry of the run creates is looked up again. The result
    /// is exactly that of folding the entries one by one.
    pub fn apply_run(
        &mut self,
        run: &[(Seq, EntryView<'_>)],
    ) -> (usize, Result<(), OutOfSequence>) {
        let mut found = Vec::with_capacity(run.len() * 3);
        for (_, entry) in run {
            self.warm_up(entry, &mut found);
        }
        let mut at = 0;
        for (n_folded, (seq, entry)) in run.iter().enumerate() {
            let n_found = 1 + entry.events.len();
            let entry_found = found.get(at..at + n_found).unwrap_or_default();
            at += n_found;
            let request = &entry.request;
            let seen = entry.outcome.seen_mpid();
            let world = (request.scope, request.environment);
            let folded =
                self.fold(*seq, entry.recorded_at, world, &entry.events, seen, entry_found);
            if let Err(err) = folded {
                return (n_folded, Err(err));
            }
        }
        (run.len(), Ok(()))
    }

    /// Reads what folding `entry` will read, without changing anything, and pushes what it found
    /// onto `found`: one [`Found`] for the outcome's MPID, then one per event. See
    /// [`Projection::apply_run`].
    fn warm_up(&self, entry: &EntryView<'_>, found: &mut Vec<Found>) {
        let mut touched = 0u64;
        // A profile's record and, when a lookup edge will be added or removed, its graph node.
        let mut touch_profile = |mpid: Mpid, node_too: bool| match self.profile_id(mpid) {
            Some(profile) => {
                let record = &self.profiles[profile.0 as usize];
                touched ^= record.last_seen.0 as u64;
                if node_too {
                    touched ^= self.graph.node_weight(record.node).map_or(0, |n| n.0.into());
                }
                profile.0
            }
            None => NOT_FOUND,
        };
        let seen = entry.outcome.seen_mpid().map_or(NOT_FOUND, |mpid| touch_profile(mpid, false));
        found.push(Found { profile: seen, ..Found::NOTHING });
        let first_event = found.len();
        for event in &entry.events {
            found.push(match event {
                // The slot a new profile's MPID will take.
                EventView::ProfileCreated { mpid } => {
                    Found { profile: touch_profile(*mpid, false), ..Found::NOTHING }
                }
                EventView::IdentityAttached { mpid, .. }
                | EventView::IdentityDetached { mpid, .. } => {
                    Found { profile: touch_profile(*mpid, true), ..Found::NOTHING }
                }
                EventView::AliasRecorded { source, destination, .. } => Found {
                    profile: touch_profile(*source, true),
                    other: touch_profile(*destination, true),
                    ..Found::NOTHING
                },
            });
        }
        std::hint::black_box(touched);
        let (scope, environment) = (entry.request.scope, entry.request.environment);
        let Some(world) = self.worlds.iter().position(|(s, e)| s == scope && *e == environment)
        else {
            return;
        };
        for (event, event_found) in entry.events.iter().zip(&mut found[first_event..]) {
            if let EventView::IdentityAttached { identity, .. }
            | EventView::IdentityDetached { identity, .. } = event
            {
                let key = Key {
                    world: WorldId(world as u16),
                    identity_type: identity.identity_type,
                    value: identity.value,
                };
                event_found.identity = self.interner.get(key).map_or(NOT_FOUND, |id| id.0);
            }
        }
    }

    fn fold<E: AsEventView>(
        &mut self,
        seq: Seq,
        recorded_at: Timestamp,
        (scope, environment): (&str, Environment),
        events: &[E],
        seen: Option<Mpid>,
        found: &[Found],
    ) -> Result<(), OutOfSequence> {
        if seq != self.last_seq.next() {
            return Err(OutOfSequence { last: self.last_seq, given: seq });
        }
        self.last_seq = seq;
        self.last_time = self.last_time.max(recorded_at);
        let world = self.intern_world(scope, environment);
        for (i, event) in events.iter().enumerate() {
            let event_found = found.get(1 + i).copied().unwrap_or(Found::NOTHING);
            event.with_view(|event| self.apply_event(seq, world, recorded_at, event, event_found));
        }
        self.n_events_applied += events.len() as u64;
        if let Some(mpid) = seen {
            let seen_found = found.first().map_or(NOT_FOUND, |found| found.profile);
            if let Some(profile) = self.profile_id_or_found(mpid, seen_found) {
                let profile = &mut self.profiles[profile.0 as usize];
                profile.last_seen = profile.last_seen.max(recorded_at);
            } else {
                self.diagnose(seq, format!("outcome names unknown MPID {mpid}"));
            }
        }
        self.running_digest =
            digest::chain(self.running_digest, seq, world, recorded_at, events, seen);
        Ok(())
    }

    fn apply_event(
        &mut self,
        seq: Seq,
        world: WorldId,
        time: Timestamp,
        event: &EventView<'_>,
        found: Found,
    ) {
        match event {
            EventView::ProfileCreated { mpid } => {
                if self.profile_id_or_found(*mpid, found.profile).is_some() {
                    return self.diagnose(seq, format!("profile {mpid} created twice"));
                }
                self.create_profile(*mpid, world, time);
            }
            EventView::IdentityAttached { mpid, identity } => {
                let Some(profile) = self.profile_in_world(seq, *mpid, world, found.profile) else {
                    return;
                };
                self.attach(seq, profile, *identity, found.identity);
            }
            EventView::IdentityDetached { mpid, identity, reason } => {
                let Some(profile) = self.profile_in_world(seq, *mpid, world, found.profile) else {
                    return;
                };
                self.detach(seq, profile, *identity, reason, found.identity);
            }
            EventView::AliasRecorded { source, destination, start, end } => {
                let source_id = self.profile_in_world(seq, *source, world, found.profile);
                let destination_id = self.profile_in_world(seq, *destination, world, found.other);
                let (Some(source_id), Some(destination_id)) = (source_id, destination_id) else {
                    return;
                };
                let record = AliasRecord {
                    source: *source,
                    destination: *destination,
                    start: *start,
                    end: *end,
                    seq,
                };
                self.add_alias(source_id, destination_id, record);
            }
        }
    }

    fn add_node(&mut self, node: Node) -> NodeIndex<u32> {
        self.graph.add_node(node.pack())
    }

    fn add_edge(&mut self, from: NodeIndex<u32>, to: NodeIndex<u32>, edge: Edge) {
        self.graph.add_edge(from, to, edge.pack());
    }

    fn create_profile(&mut self, mpid: Mpid, world: WorldId, time: Timestamp) -> ProfileId {
        let id = ProfileId(self.profiles.len() as u32);
        let node = self.add_node(Node::Profile(id));
        self.profiles.push(Profile {
            mpid,
            world,
            node,
            created: time,
            last_seen: time,
            types: IdentityTypeSet::EMPTY,
            n_identities: 0,
            was_alias_source: false,
            was_alias_destination: false,
        });
        self.index_mpid(mpid, id);
        id
    }

    /// Adds a profile, already pushed, to the MPID index.
    fn index_mpid(&mut self, mpid: Mpid, id: ProfileId) {
        debug_assert_eq!(self.profiles[id.0 as usize].mpid, mpid);
        self.mpid_index.insert_unique(self.mpid_hasher.hash_one(mpid), id.0);
    }

    fn add_alias(&mut self, source: ProfileId, destination: ProfileId, record: AliasRecord) {
        let idx = self.aliases.len() as u32;
        self.aliases.push(record);
        let (source_node, destination_node) =
            (self.profiles[source.0 as usize].node, self.profiles[destination.0 as usize].node);
        self.add_edge(source_node, destination_node, Edge::Alias(idx));
        self.profiles[source.0 as usize].was_alias_source = true;
        self.profiles[destination.0 as usize].was_alias_destination = true;
    }

    fn profile_in_world(
        &mut self,
        seq: Seq,
        mpid: Mpid,
        world: WorldId,
        found: u32,
    ) -> Option<ProfileId> {
        let Some(profile) = self.profile_id_or_found(mpid, found) else {
            self.diagnose(seq, format!("event names unknown MPID {mpid}"));
            return None;
        };
        if self.profiles[profile.0 as usize].world != world {
            self.diagnose(seq, format!("event crosses worlds: MPID {mpid} lives in another scope"));
            return None;
        }
        Some(profile)
    }

    fn attach(&mut self, seq: Seq, profile: ProfileId, identity: IdentityView<'_>, found: u32) {
        let world = self.profiles[profile.0 as usize].world;
        let key = Key { world, identity_type: identity.identity_type, value: identity.value };
        let identity_id = match self.identity_id_or_found(key, found) {
            Some(id) => id,
            None if self.interner.fits(key) => {
                let node = self.add_node(Node::Identity(self.interner.next_id()));
                self.interner.insert(key, node).expect("checked by fits")
            }
            None => {
                let message = format!(
                    "{identity}: value longer than 65,535 bytes, or the identity arena (2 GiB) is full"
                );
                return self.diagnose(seq, message);
            }
        };
        let identity_node = self.interner.node(identity_id);
        let profile_node = self.profiles[profile.0 as usize].node;
        if self.find_lookup_edge(identity_node, profile_node).is_some() {
            return self.diagnose(seq, format!("{identity} attached twice"));
        }
        self.add_edge(identity_node, profile_node, Edge::LooksUp(identity.identity_type));
        self.note_lookup_added(identity_id, profile);
        self.note_type_added(profile, identity.identity_type);
    }

    /// Counts one more identity of `identity_type` on `profile`.
    fn note_type_added(&mut self, profile: ProfileId, identity_type: IdentityType) {
        let record = &mut self.profiles[profile.0 as usize];
        record.n_identities += 1;
        if record.types.contains(identity_type) {
            *self.shared_types.entry(type_pair(profile, identity_type)).or_insert(1) += 1;
        } else {
            record.types.insert(identity_type);
        }
    }

    /// Counts one identity of `identity_type` fewer on `profile`.
    fn note_type_removed(&mut self, profile: ProfileId, identity_type: IdentityType) {
        let record = &mut self.profiles[profile.0 as usize];
        record.n_identities -= 1;
        let pair = type_pair(profile, identity_type);
        match self.shared_types.get_mut(&pair) {
            Some(n) if *n > 2 => *n -= 1,
            Some(_) => {
                self.shared_types.remove(&pair);
            }
            None => record.types.remove(identity_type),
        }
    }

    /// Keeps the interner's profile hint right after a lookup edge was added.
    fn note_lookup_added(&mut self, identity: IdentityId, profile: ProfileId) {
        let hint = if self.interner.hint(identity) == HINT_NONE { profile.0 } else { HINT_MANY };
        self.interner.set_hint(identity, hint);
    }

    /// Recomputes the interner's profile hint from the graph after a lookup edge was removed.
    fn refresh_hint(&mut self, identity: IdentityId) {
        let mut profiles = self.walk_profiles_of(identity).into_iter();
        let hint = match (profiles.next(), profiles.next()) {
            (None, _) => HINT_NONE,
            (Some(profile), None) => profile.0,
            (Some(_), Some(_)) => HINT_MANY,
        };
        self.interner.set_hint(identity, hint);
    }

    fn detach(
        &mut self,
        seq: Seq,
        profile: ProfileId,
        identity: IdentityView<'_>,
        reason: &DetachReason,
        found: u32,
    ) {
        let world = self.profiles[profile.0 as usize].world;
        let key = Key { world, identity_type: identity.identity_type, value: identity.value };
        let identity_id = self.identity_id_or_found(key, found);
        let edge = identity_id.and_then(|identity_id| {
            let identity_node = self.interner.node(identity_id);
            self.find_lookup_edge(identity_node, self.profiles[profile.0 as usize].node)
        });
        let Some(edge) = edge else {
            let mpid = self.profiles[profile.0 as usize].mpid;
            return self.diagnose(
                seq,
                format!("{identity} detached from {mpid} ({reason:?}) but not attached"),
            );
        };
        self.graph.remove_edge(edge);
        if let Some(identity_id) = identity_id {
            self.refresh_hint(identity_id);
        }
        self.note_type_removed(profile, identity.identity_type);
    }

    /// The profile of `mpid`: `found` if warm-up found it (profiles are never removed), else
    /// looked up.
    fn profile_id_or_found(&self, mpid: Mpid, found: u32) -> Option<ProfileId> {
        if found == NOT_FOUND {
            return self.profile_id(mpid);
        }
        debug_assert_eq!(self.profiles[found as usize].mpid, mpid, "found for another MPID");
        Some(ProfileId(found))
    }

    /// The interned id of `key`: `found` if warm-up found it (interned identities are never
    /// removed), else looked up.
    fn identity_id_or_found(&self, key: Key<'_>, found: u32) -> Option<IdentityId> {
        if found == NOT_FOUND {
            return self.interner.get(key);
        }
        debug_assert_eq!(self.interner.get(key), Some(IdentityId(found)), "found for another key");
        Some(IdentityId(found))
    }

    fn find_lookup_edge(
        &self,
        identity: NodeIndex<u32>,
        profile: NodeIndex<u32>,
    ) -> Option<EdgeIndex<u32>> {
        // An identity looks up few profiles, so a scan of its outgoing edges is cheap.
        self.graph
            .edges_directed(identity, Outgoing)
            .find(|edge| edge.target() == profile && edge.weight().is_lookup())
            .map(|edge| edge.id())
    }

    fn intern_world(&mut self, scope: &str, environment: Environment) -> WorldId {
        // Worlds are few: a scan of a short list beats building an owned key per entry.
        if let Some(idx) = self.worlds.iter().position(|(s, e)| s == scope && *e == environment) {
            return WorldId(idx as u16);
        }
        let world = WorldId(self.worlds.len() as u16);
        self.worlds.push((scope.to_owned(), environment));
        self.world_index.insert((scope.to_owned(), environment), world);
        world
    }

    fn diagnose(&mut self, seq: Seq, message: String) {
        self.n_diagnostics += 1;
        if self.diagnostics.len() < DIAGNOSTICS_KEPT_MAX {
            self.diagnostics.push(Diagnostic { seq, message });
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Reads.

    /// The last applied sequence (`Seq::ZERO` when empty).
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The latest `recorded_at` applied.
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }

    /// The world of `scope` in `environment`, if any entry has touched it.
    pub fn world(&self, scope: &str, environment: Environment) -> Option<WorldId> {
        // Worlds are few: a scan of a short list, with no owned key to build.
        let idx = self.worlds.iter().position(|(s, e)| s == scope && *e == environment)?;
        Some(WorldId(idx as u16))
    }

    /// The identity `identity_type=value` in `world`, if ever seen.
    pub fn identity_id(
        &self,
        world: WorldId,
        identity_type: IdentityType,
        value: &str,
    ) -> Option<IdentityId> {
        self.interner.get(Key { world, identity_type, value })
    }

    /// The type and value of an identity.
    pub fn identity(&self, id: IdentityId) -> (IdentityType, &str) {
        let key = self.interner.resolve(id);
        (key.identity_type, key.value)
    }

    /// The profiles `identity` looks up now, sorted by [`ProfileId`].
    pub fn profiles_of(&self, identity: IdentityId) -> SmallVec<[ProfileId; 4]> {
        // Most identities look up one profile, which the interner record names: no graph walk.
        match self.interner.hint(identity) {
            HINT_NONE => SmallVec::new(),
            HINT_MANY => self.walk_profiles_of(identity),
            profile => smallvec::smallvec![ProfileId(profile)],
        }
    }

    /// [`Projection::profiles_of`] by walking the graph.
    fn walk_profiles_of(&self, identity: IdentityId) -> SmallVec<[ProfileId; 4]> {
        let node = self.interner.node(identity);
        let mut profiles: SmallVec<[ProfileId; 4]> = self
            .graph
            .edges_directed(node, Outgoing)
            .filter(|edge| edge.weight().is_lookup())
            .filter_map(|edge| match self.graph[edge.target()].unpack() {
                Node::Profile(profile) => Some(profile),
                Node::Identity(_) => None,
            })
            .collect();
        profiles.sort_unstable();
        profiles
    }

    /// The identities `profile` holds now, sorted by [`IdentityId`] (first-seen order).
    pub fn identities_of(&self, profile: ProfileId) -> SmallVec<[IdentityId; 8]> {
        let node = self.profiles[profile.0 as usize].node;
        let mut identities: SmallVec<[IdentityId; 8]> = self
            .graph
            .edges_directed(node, Incoming)
            .filter(|edge| edge.weight().is_lookup())
            .filter_map(|edge| match self.graph[edge.source()].unpack() {
                Node::Identity(identity) => Some(identity),
                Node::Profile(_) => None,
            })
            .collect();
        identities.sort_unstable();
        identities
    }

    /// How many identities of `identity_type` `profile` holds now (the resolver's guardrail
    /// count, for every identity a request would attach). O(1): a busy profile can hold hundreds
    /// of identities.
    pub fn n_identities_of_type(&self, profile: ProfileId, identity_type: IdentityType) -> usize {
        if !self.profiles[profile.0 as usize].types.contains(identity_type) {
            return 0;
        }
        self.shared_types.get(&type_pair(profile, identity_type)).map_or(1, |n| *n as usize)
    }

    /// The identities of `profile` as owned values, sorted by type then value.
    pub fn identities_of_sorted(&self, profile: ProfileId) -> Vec<Identity> {
        let mut identities: Vec<Identity> = self
            .identities_of(profile)
            .iter()
            .map(|id| {
                let (identity_type, value) = self.identity(*id);
                Identity::new(identity_type, value)
            })
            .collect();
        identities.sort();
        identities
    }

    /// Whether `profile` holds `identity` now.
    pub fn holds(&self, profile: ProfileId, identity: IdentityId) -> bool {
        match self.interner.hint(identity) {
            HINT_NONE => return false,
            HINT_MANY => {}
            single => return single == profile.0,
        }
        let identity_node = self.interner.node(identity);
        self.find_lookup_edge(identity_node, self.profiles[profile.0 as usize].node).is_some()
    }

    /// The profile with this MPID, in any world.
    pub fn profile_id(&self, mpid: Mpid) -> Option<ProfileId> {
        let hash = self.mpid_hasher.hash_one(mpid);
        let found = self.mpid_index.find(hash, |id| self.profiles[id as usize].mpid == mpid);
        found.map(ProfileId)
    }

    /// A view of one profile.
    pub fn profile(&self, profile: ProfileId) -> ProfileView {
        let p = &self.profiles[profile.0 as usize];
        ProfileView {
            mpid: p.mpid,
            world: p.world,
            created: p.created,
            last_seen: p.last_seen,
            types: p.types,
            n_identities: p.n_identities,
            was_alias_source: p.was_alias_source,
            was_alias_destination: p.was_alias_destination,
        }
    }

    /// The MPID of a profile.
    pub fn mpid(&self, profile: ProfileId) -> Mpid {
        self.profiles[profile.0 as usize].mpid
    }

    /// Events applied since this value was created or loaded from a snapshot (a statistic).
    pub fn n_events_applied(&self) -> u64 {
        self.n_events_applied
    }

    /// How many profiles exist (orphaned included).
    pub fn n_profiles(&self) -> usize {
        self.profiles.len()
    }

    /// How many distinct identities have been seen.
    pub fn n_identities(&self) -> usize {
        self.interner.len()
    }

    /// How many identity → profile lookups exist now.
    pub fn n_lookups(&self) -> usize {
        self.graph.edge_count() - self.aliases.len()
    }

    /// Accepted aliases, in log order.
    pub fn aliases(&self) -> &[AliasRecord] {
        &self.aliases
    }

    /// Accepted aliases whose source is `mpid`.
    pub fn aliases_from(&self, mpid: Mpid) -> Vec<AliasRecord> {
        let Some(profile) = self.profile_id(mpid) else { return Vec::new() };
        let node = self.profiles[profile.0 as usize].node;
        let mut records: Vec<AliasRecord> = self
            .graph
            .edges_directed(node, Outgoing)
            .filter_map(|edge| match edge.weight().unpack() {
                Edge::Alias(idx) => Some(self.aliases[idx as usize]),
                Edge::LooksUp(_) => None,
            })
            .collect();
        records.sort_by_key(|record| record.seq);
        records
    }

    /// The diagnostics kept (at most [`DIAGNOSTICS_KEPT_MAX`]) and how many there were in all.
    pub fn diagnostics(&self) -> (&[Diagnostic], u64) {
        (&self.diagnostics, self.n_diagnostics)
    }

    /// A digest chained over every applied entry: equal for two projections exactly when they
    /// folded the same entries (up to hash collisions). O(1).
    pub fn running_digest(&self) -> Digest {
        self.running_digest
    }

    /// A digest of the content (every world, profile, lookup and alias, in canonical order),
    /// recomputed from the graph. Two projections with equal content digests answer every query
    /// the same way. O(n log n).
    pub fn content_digest(&self) -> Digest {
        digest::content(self)
    }

    /// Releases spare capacity (vector growth slack) after a bulk load such as a replay. Appends
    /// after it grow the structures again as needed.
    pub fn shrink_to_fit(&mut self) {
        self.graph.shrink_to_fit();
        self.interner.shrink_to_fit();
        self.profiles.shrink_to_fit();
        self.mpid_index.shrink_to_fit();
        self.shared_types.shrink_to_fit();
        self.aliases.shrink_to_fit();
    }

    /// [`Projection::shrink_to_fit`], but leaving room for an eighth more of everything
    /// ([`GROWTH_ROOM_DIVISOR`]) before anything has to grow again. What the engine calls after
    /// loading: a structure grows by doubling, which copies it whole under the engine's write lock,
    /// so a projection shrunk to fit would stall every request for the copy of all of it (0.7 s at
    /// 6M identities) on the first new identity after a restart. The room is address space, not
    /// resident memory, until it is written (the hash tables excepted, which are written whole).
    pub fn shrink_leaving_room(&mut self) {
        fn room(len: usize) -> usize {
            len / GROWTH_ROOM_DIVISOR + 16
        }
        let (n_nodes, n_edges) = (self.graph.node_count(), self.graph.edge_count());
        let (node_capacity, edge_capacity) = self.graph.capacity();
        if node_capacity > n_nodes + room(n_nodes) {
            self.graph.shrink_to_fit_nodes();
        }
        self.graph.reserve_exact_nodes(room(n_nodes));
        if edge_capacity > n_edges + room(n_edges) {
            self.graph.shrink_to_fit_edges();
        }
        self.graph.reserve_exact_edges(room(n_edges));
        self.interner.shrink_leaving_room(room);
        fit_vec(&mut self.profiles, room);
        self.mpid_index.shrink_to_hold(self.mpid_index.len() + room(self.mpid_index.len()));
        let n_shared = self.shared_types.len();
        self.shared_types.shrink_to(n_shared + room(n_shared));
        fit_vec(&mut self.aliases, room);
    }

    /// How big the structures that grow with the log are: what [`Projection::reserve_for`] takes.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            nodes: self.graph.node_count(),
            edges: self.graph.edge_count(),
            identities: self.interner.len(),
            identity_bytes: self.interner.arena_len(),
            profiles: self.profiles.len(),
        }
    }

    /// Reserves room for the structures to reach `sizes` without growing again: what a replay that
    /// can predict its end calls, so that nothing is copied and zeroed twice on the way. Changes
    /// capacity only; reserved room is address space until written (the hash tables excepted).
    /// The caller bounds `sizes` (the graph's vectors and the hash tables abort the process if
    /// the memory cannot be had, as any growth of them would).
    pub fn reserve_for(&mut self, sizes: Sizes) {
        let more = |target: usize, now: usize| target.saturating_sub(now);
        self.graph.reserve_exact_nodes(more(sizes.nodes, self.graph.node_count()));
        self.graph.reserve_exact_edges(more(sizes.edges, self.graph.edge_count()));
        // The hash tables are written whole: a guess too large would be resident memory, so they
        // grow at most fourfold here and double from there.
        let table_max = |now: usize| now.saturating_mul(TABLE_RESERVE_FACTOR_MAX).max(1 << 16);
        let identities = sizes.identities.min(table_max(self.interner.len()));
        self.interner.reserve_for(identities, sizes.identity_bytes);
        // Only an optimisation: if the room cannot be had, the vector grows as it would have.
        let _ = self.profiles.try_reserve_exact(more(sizes.profiles, self.profiles.len()));
        let profiles = sizes.profiles.min(table_max(self.mpid_index.len()));
        if profiles > self.mpid_index.capacity() * 3 / 4 {
            self.mpid_index.shrink_to_hold(profiles);
        }
    }

    /// Heap bytes by component (capacity-based), for memory investigations.
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        use std::mem::size_of;
        vec![
            ("graph nodes", self.graph.capacity().0 * (size_of::<PackedNode>() + 8)),
            ("graph edges", self.graph.capacity().1 * (size_of::<PackedEdge>() + 16)),
            ("interner", self.interner.heap_bytes()),
            ("profiles", self.profiles.capacity() * size_of::<Profile>()),
            ("mpid index", self.mpid_index.capacity() * size_of::<u64>()),
            ("shared types", self.shared_types.capacity() * (size_of::<(u64, u32)>() + 1)),
            ("aliases", self.aliases.capacity() * size_of::<AliasRecord>()),
        ]
    }

    /// Heap bytes the graph and its indexes have written: [`Projection::heap_bytes`] without the
    /// spare capacity of vectors that grow by doubling, which nothing has touched yet (so it costs
    /// address space, not memory). Hash tables count whole: growing one writes every slot. The
    /// figure `idgraph bench` reports per identity.
    pub fn heap_bytes_in_use(&self) -> usize {
        use std::mem::size_of;
        self.graph.node_count() * (size_of::<PackedNode>() + 8)
            + self.graph.edge_count() * (size_of::<PackedEdge>() + 16)
            + self.interner.heap_bytes_in_use()
            + self.profiles.len() * size_of::<Profile>()
            + self.mpid_index.capacity() * size_of::<u64>()
            + self.shared_types.capacity() * (size_of::<(u64, u32)>() + 1)
            + self.aliases.len() * size_of::<AliasRecord>()
    }

    /// Heap bytes held by the graph and its indexes, by capacity (an estimate from the data
    /// structures; benchmarks measure the allocator instead).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.graph.capacity().0 * (size_of::<PackedNode>() + 8)
            + self.graph.capacity().1 * (size_of::<PackedEdge>() + 16)
            + self.interner.heap_bytes()
            + self.profiles.capacity() * size_of::<Profile>()
            + self.mpid_index.capacity() * size_of::<u64>()
            + self.shared_types.capacity() * (size_of::<(u64, u32)>() + 1)
    }
}

mod digest {
    //! The two digests. Both use XXH3-128 over an explicit byte encoding, never `Hash` impls, so
    //! they are stable across builds and platforms.

    use idgraph_model::{DetachReason, EventView, Identity, IdentityView, Mpid, Seq, Timestamp};
    use smallvec::SmallVec;
    use xxhash_rust::xxh3::Xxh3;

    use super::{AsEventView, Digest, Projection, WorldId};

    fn identity(hasher: &mut Xxh3, identity: &Identity) {
        hasher.update(&[identity.identity_type.code()]);
        hasher.update(&(identity.value.len() as u64).to_le_bytes());
        hasher.update(identity.value.as_bytes());
    }

    /// The bytes of one entry's digest input: on the stack for all but huge entries.
    type Bytes = SmallVec<[u8; 256]>;

    fn push_identity(bytes: &mut Bytes, identity: &IdentityView<'_>) {
        bytes.push(identity.identity_type.code());
        bytes.extend_from_slice(&(identity.value.len() as u64).to_le_bytes());
        bytes.extend_from_slice(identity.value.as_bytes());
    }

    /// The running digest after an entry: XXH3-128 of the previous digest, the sequence, the world
    /// and the entry's state changes. The bytes are gathered first and hashed in one call (the
    /// same value as streaming them, at a fraction of the cost for small pieces).
    pub(super) fn chain<E: AsEventView>(
        previous: Digest,
        seq: Seq,
        world: WorldId,
        recorded_at: Timestamp,
        events: &[E],
        seen: Option<Mpid>,
    ) -> Digest {
        let mut buffer = Bytes::new();
        let out = &mut buffer;
        out.extend_from_slice(&previous.0.to_le_bytes());
        out.extend_from_slice(&seq.0.to_le_bytes());
        out.extend_from_slice(&world.0.to_le_bytes());
        out.extend_from_slice(&recorded_at.0.to_le_bytes());
        for event in events {
            event.with_view(|event| match event {
                EventView::ProfileCreated { mpid } => {
                    out.push(0);
                    out.extend_from_slice(&mpid.get().to_le_bytes());
                }
                EventView::IdentityAttached { mpid, identity: id } => {
                    out.push(1);
                    out.extend_from_slice(&mpid.get().to_le_bytes());
                    push_identity(out, id);
                }
                EventView::IdentityDetached { mpid, identity: id, reason } => {
                    out.push(2);
                    out.extend_from_slice(&mpid.get().to_le_bytes());
                    push_identity(out, id);
                    let (tag, other) = match reason {
                        DetachReason::Modified => (0u8, 0),
                        DetachReason::MovedTo { mpid } => (1, mpid.get()),
                        DetachReason::AdminDetached => (2, 0),
                        DetachReason::SplitTo { mpid } => (3, mpid.get()),
                    };
                    out.push(tag);
                    out.extend_from_slice(&other.to_le_bytes());
                }
                EventView::AliasRecorded { source, destination, start, end } => {
                    out.push(3);
                    for value in [source.get(), destination.get(), start.0, end.0] {
                        out.extend_from_slice(&value.to_le_bytes());
                    }
                }
            });
        }
        if let Some(mpid) = seen {
            out.push(9);
            out.extend_from_slice(&mpid.get().to_le_bytes());
        }
        Digest(xxhash_rust::xxh3::xxh3_128(&buffer))
    }

    pub(super) fn content(projection: &Projection) -> Digest {
        let mut hasher = Xxh3::new();
        // Worlds in name order; within a world, profiles in MPID order; identities sorted.
        let mut by_world: Vec<Vec<usize>> = vec![Vec::new(); projection.worlds.len()];
        for (idx, profile) in projection.profiles.iter().enumerate() {
            by_world[profile.world.0 as usize].push(idx);
        }
        for ((scope, environment), world) in &projection.world_index {
            hasher.update(&(scope.len() as u64).to_le_bytes());
            hasher.update(scope.as_bytes());
            hasher.update(environment.wire_name().as_bytes());
            let mut profiles = by_world[world.0 as usize].clone();
            profiles.sort_unstable_by_key(|idx| projection.profiles[*idx].mpid);
            hasher.update(&(profiles.len() as u64).to_le_bytes());
            for idx in profiles {
                let profile = &projection.profiles[idx];
                for value in [profile.mpid.get(), profile.created.0, profile.last_seen.0] {
                    hasher.update(&value.to_le_bytes());
                }
                let identities = projection.identities_of_sorted(super::ProfileId(idx as u32));
                hasher.update(&(identities.len() as u64).to_le_bytes());
                for id in &identities {
                    identity(&mut hasher, id);
                }
            }
        }
        for alias in &projection.aliases {
            for value in [alias.source.get(), alias.destination.get(), alias.start.0, alias.end.0] {
                hasher.update(&value.to_le_bytes());
            }
            hasher.update(&alias.seq.0.to_le_bytes());
        }
        hasher.update(&projection.last_seq.0.to_le_bytes());
        Digest(hasher.digest128())
    }
}

#[cfg(test)]
mod tests;

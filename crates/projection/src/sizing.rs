//! Sizing and memory accounting: how big the projection's structures are ([`Sizes`]), the whole
//! presizing policy of a replay ([`ReplaySizing`]), reserving and releasing capacity
//! ([`Projection::reserve_for`], [`Projection::shrink_leaving_room`]), and the heap bytes the
//! projection holds and uses.
//!
//! Most structures grow without ever copying much: the profiles and the interner's arena are in
//! chunks that never move (`segmented.rs`, `interner.rs`) and the hash tables grow incrementally
//! (`table.rs`). Two are `Vec`s whose doubling copies them whole under the engine's write lock:
//! the petgraph graph's node and edge vectors (petgraph owns them) and the alias records (read as
//! one slice). For those, the policy is to reserve ahead: a replay predicts where they end (they
//! grow about linearly with the log) and reserves that once, and after loading
//! ([`Projection::shrink_leaving_room`]) they keep room to double, and at least
//! [`GRAPH_NODES_ROOM_MIN`] nodes, [`GRAPH_EDGES_ROOM_MIN`] edges and [`ALIASES_ROOM_MIN`] aliases
//! more, so that a server grows to about 16M identities, or twice what it loaded, before one of
//! them copies. Reserved room is address space, not memory, until written.

use std::mem::size_of;

use crate::packed::{PackedEdge, PackedNode};
use crate::{AliasRecord, Profile, Projection};

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

/// [`Projection::shrink_leaving_room`] leaves room for this fraction (1/n) more in the hash tables
/// (which then grow incrementally).
pub const GROWTH_ROOM_DIVISOR: usize = 8;

/// Graph nodes [`Projection::shrink_leaving_room`] leaves room for at least, beyond those there
/// are (and at least as many again as there are): growing petgraph's node vector copies it whole
/// under the write lock (0.2 s at 5.7M identities), so the room is reserved when the engine loads,
/// as address space (12 bytes a node: 288 MB, resident only once written). A log grows by about
/// 1.5 nodes per new identity (identities and profiles), so this is room for about 16M identities
/// from empty.
pub const GRAPH_NODES_ROOM_MIN: usize = 24 << 20;

/// Graph edges [`Projection::shrink_leaving_room`] leaves room for at least, beyond those there are
/// (and at least as many again): 20 bytes an edge, 320 MB of address space. About 0.93 edges per
/// identity in the generated logs (lookups, less those detached, and aliases).
pub const GRAPH_EDGES_ROOM_MIN: usize = 16 << 20;

/// Alias records [`Projection::shrink_leaving_room`] leaves room for at least (40 bytes each: 40 MB
/// of address space); about 0.03 per identity in the generated logs.
pub const ALIASES_ROOM_MIN: usize = 1 << 20;

/// Entries a replay folds before [`ReplaySizing`] sizes the projection for the rest, at least
/// (unless the log is short).
pub const REPLAY_SAMPLE_ENTRIES_MIN: u64 = 100_000;

/// [`ReplaySizing`] never reserves more than this many times a vector's current size (the sample is
/// a 64th of the log), nor, for the hash tables, whose chunks are soon all written, more than
/// four times ([`Projection::reserve_for`]).
pub const REPLAY_RESERVE_FACTOR_MAX: usize = 64;

/// [`ReplaySizing`] reserves for the growth it predicts plus this fraction of it: a log's rate of
/// growth wobbles, and a little too much costs address space while a little too little costs a
/// doubling of everything.
pub const REPLAY_RESERVE_MARGIN: f64 = 0.15;

/// Sizes the projection for a whole replay once a sample of it is folded: the structures grow
/// about linearly with the log, so where they will end is predictable, and reserving that room
/// once spares every doubling on the way (each copies a structure whole and zeroes fresh pages,
/// about a tenth of a replay at 10M events).
///
/// A wrong guess costs little: too little and the structures double as before; too much (a log
/// whose start is denser than the rest, say a bulk import) costs address space in the vectors,
/// which is not memory until written (at most [`REPLAY_RESERVE_FACTOR_MAX`] times their size), and
/// at most four times the current size in the two hash tables, which soon are. Loading trims the excess
/// ([`Projection::shrink_leaving_room`]).
///
/// The sample is a 64th of the replay, at least [`REPLAY_SAMPLE_ENTRIES_MIN`] entries or an eighth
/// of the replay, whichever is less; it reserves once, and not at all if the sample turns out to
/// be more than a quarter of the replay (little is left to spare).
///
/// ```
/// use idgraph_model::{Entry, Seq};
/// use idgraph_projection::{Projection, ReplaySizing};
///
/// fn replay(projection: &mut Projection, batches: &[Vec<(Seq, Entry)>]) {
///     let n_entries_total = batches.iter().map(|batch| batch.len() as u64).sum();
///     let mut sizing = ReplaySizing::new(projection, n_entries_total);
///     for batch in batches {
///         for (seq, entry) in batch {
///             projection.apply(*seq, entry).expect("in sequence");
///         }
///         sizing.after_batch(projection);
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ReplaySizing {
    /// The sizes when the replay started.
    start: Sizes,
    /// The last sequence folded when the replay started.
    from: idgraph_model::Seq,
    /// Entries the replay folds in all.
    n_entries_total: u64,
    /// Whether it has reserved (or decided not to): it acts once.
    done: bool,
}

impl ReplaySizing {
    /// Sizing for a replay that will fold `n_entries_total` entries onto `projection`, from the
    /// entry after its last sequence.
    pub fn new(projection: &Projection, n_entries_total: u64) -> ReplaySizing {
        ReplaySizing {
            start: projection.sizes(),
            from: projection.last_seq(),
            n_entries_total,
            done: false,
        }
    }

    /// To call after each folded batch of the replay: once the sample is folded, reserves room for
    /// where the structures are predicted to end. Returns the sizes it reserved for, the one time
    /// it does.
    pub fn after_batch(&mut self, projection: &mut Projection) -> Option<Sizes> {
        let n_folded = projection.last_seq().0.saturating_sub(self.from.0);
        let total = self.n_entries_total;
        let sample = (total / 8).min(REPLAY_SAMPLE_ENTRIES_MIN).max(total / 64);
        if self.done || n_folded < sample {
            return None;
        }
        self.done = true;
        if n_folded * 4 > total {
            return None;
        }
        let now = projection.sizes();
        let end = now.extrapolate(self.start, n_folded, total, REPLAY_RESERVE_MARGIN);
        let sizes = now.at_most_times(end, REPLAY_RESERVE_FACTOR_MAX);
        projection.reserve_for(sizes);
        Some(sizes)
    }
}

/// The room [`Projection::shrink_leaving_room`] leaves in a vector that copies itself whole when
/// it grows: as much again as its length, and at least `room_min`.
fn vec_room(len: usize, room_min: usize) -> usize {
    len.max(room_min)
}

/// Heap bytes of one graph node: its weight and its two edge-list heads.
const NODE_BYTES: usize = size_of::<PackedNode>() + 8;
/// Heap bytes of one graph edge: its weight, its two ends and its two next-edge links.
const EDGE_BYTES: usize = size_of::<PackedEdge>() + 16;

impl Projection {
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

    /// [`Projection::shrink_to_fit`], but leaving room to grow without a stall: what the engine
    /// calls after loading, before it serves requests. The graph's node and edge vectors and the
    /// alias records, which copy themselves whole when they grow, get room for as many again as
    /// they hold and at least [`GRAPH_NODES_ROOM_MIN`], [`GRAPH_EDGES_ROOM_MIN`] and
    /// [`ALIASES_ROOM_MIN`] more (address space, not resident memory, until written: a copy of the
    /// graph under the engine's write lock took 0.2-0.4 s at 5-9M identities). The hash tables keep
    /// room for an eighth more ([`GROWTH_ROOM_DIVISOR`]) and grow incrementally from there; the
    /// chunked structures need no room.
    pub fn shrink_leaving_room(&mut self) {
        fn room(len: usize) -> usize {
            len / GROWTH_ROOM_DIVISOR + 16
        }
        let (n_nodes, n_edges) = (self.graph.node_count(), self.graph.edge_count());
        let (node_capacity, edge_capacity) = self.graph.capacity();
        let nodes_room = vec_room(n_nodes, GRAPH_NODES_ROOM_MIN);
        if node_capacity > n_nodes + nodes_room * 2 {
            self.graph.shrink_to_fit_nodes();
        }
        self.graph.reserve_exact_nodes(nodes_room);
        let edges_room = vec_room(n_edges, GRAPH_EDGES_ROOM_MIN);
        if edge_capacity > n_edges + edges_room * 2 {
            self.graph.shrink_to_fit_edges();
        }
        self.graph.reserve_exact_edges(edges_room);
        let aliases_room = vec_room(self.aliases.len(), ALIASES_ROOM_MIN);
        if self.aliases.capacity() > self.aliases.len() + aliases_room * 2 {
            self.aliases.shrink_to_fit();
        }
        self.aliases.reserve_exact(aliases_room);
        self.interner.shrink_leaving_room(room);
        self.profiles.shrink_to_fit();
        self.mpid_index.shrink_to_hold(self.mpid_index.len() + room(self.mpid_index.len()));
        self.shared_types.shrink_leaving_room(room);
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
    /// can predict its end calls ([`ReplaySizing`]), so that nothing is copied and zeroed twice on
    /// the way. Changes capacity only; reserved room is address space until written (the hash
    /// tables excepted). The caller bounds `sizes` (the graph's vectors and the hash tables abort
    /// the process if the memory cannot be had, as any growth of them would).
    pub fn reserve_for(&mut self, sizes: Sizes) {
        let more = |target: usize, now: usize| target.saturating_sub(now);
        self.graph.reserve_exact_nodes(more(sizes.nodes, self.graph.node_count()));
        self.graph.reserve_exact_edges(more(sizes.edges, self.graph.edge_count()));
        // A hash table's slots land all over it, so its chunks are soon all written: a guess too
        // large would be resident memory, so they grow at most fourfold here and double (one
        // bounded step per insert) from there.
        let table_max = |now: usize| now.saturating_mul(TABLE_RESERVE_FACTOR_MAX).max(1 << 16);
        let identities = sizes.identities.min(table_max(self.interner.len()));
        self.interner.reserve_for(identities);
        // The interner's arena and the profiles grow by chunks that never move: nothing to reserve.
        let profiles = sizes.profiles.min(table_max(self.mpid_index.len()));
        if profiles > self.mpid_index.capacity() * 3 / 4 {
            self.mpid_index.shrink_to_hold(profiles);
        }
    }

    /// Heap bytes by component, by capacity (what [`Projection::heap_bytes`] sums), for memory
    /// investigations.
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        self.components(Held::Capacity).to_vec()
    }

    /// Heap bytes the graph and its indexes have written: [`Projection::heap_bytes`] without the
    /// spare capacity of vectors that grow by doubling, which nothing has touched yet (so it costs
    /// address space, not memory). Hash tables count whole: growing one writes every slot. The
    /// figure `idgraph bench` reports per identity. Counts the same components as
    /// [`Projection::heap_bytes`].
    pub fn heap_bytes_in_use(&self) -> usize {
        self.components(Held::Written).iter().map(|(_, n_bytes)| n_bytes).sum()
    }

    /// Heap bytes held by the graph and its indexes, by capacity (an estimate from the data
    /// structures; benchmarks measure the allocator instead): the sum of
    /// [`Projection::memory_breakdown`].
    pub fn heap_bytes(&self) -> usize {
        self.components(Held::Capacity).iter().map(|(_, n_bytes)| n_bytes).sum()
    }

    /// Heap bytes of each component, counted as `held` says: the one list both heap figures sum,
    /// so they cannot disagree about what they count.
    fn components(&self, held: Held) -> [(&'static str, usize); 7] {
        let vec_len = |len: usize, capacity: usize| match held {
            Held::Capacity => capacity,
            Held::Written => len,
        };
        let (node_capacity, edge_capacity) = self.graph.capacity();
        let (n_nodes, n_edges) = (self.graph.node_count(), self.graph.edge_count());
        let interner = match held {
            Held::Capacity => self.interner.heap_bytes(),
            Held::Written => self.interner.heap_bytes_in_use(),
        };
        [
            ("graph nodes", vec_len(n_nodes, node_capacity) * NODE_BYTES),
            ("graph edges", vec_len(n_edges, edge_capacity) * EDGE_BYTES),
            ("interner", interner),
            (
                "profiles",
                vec_len(self.profiles.len(), self.profiles.capacity()) * size_of::<Profile>(),
            ),
            // Hash tables count the chunks written, either way.
            ("mpid index", self.mpid_index.heap_bytes()),
            (
                "shared types",
                match held {
                    Held::Capacity => self.shared_types.heap_bytes(),
                    Held::Written => self.shared_types.heap_bytes_in_use(),
                },
            ),
            (
                "aliases",
                vec_len(self.aliases.len(), self.aliases.capacity()) * size_of::<AliasRecord>(),
            ),
        ]
    }
}

/// Which bytes of a vector [`Projection::components`] counts.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// Its whole capacity: what it holds of the address space.
    Capacity,
    /// Its length: what has been written, so is resident memory.
    Written,
}

#[cfg(test)]
mod tests {
    use idgraph_model::Seq;

    use super::*;
    use crate::tests::{fold, generated};

    #[test]
    fn room_left_after_loading_changes_nothing_but_capacity() {
        let entries = generated(9, 6_000);
        let mut roomy = fold(&entries[..5_000]);
        let mut tight = roomy.clone();
        tight.shrink_to_fit();
        roomy.shrink_leaving_room();
        let (nodes, edges) = (roomy.graph.node_count(), roomy.graph.edge_count());
        let room = |n: usize| n + n / GROWTH_ROOM_DIVISOR;
        assert!(roomy.graph.capacity().0 >= nodes + GRAPH_NODES_ROOM_MIN);
        assert!(roomy.graph.capacity().1 >= edges + GRAPH_EDGES_ROOM_MIN);
        assert!(roomy.aliases.capacity() >= roomy.aliases.len() + ALIASES_ROOM_MIN);
        assert!(roomy.mpid_index.capacity() * 3 >= room(roomy.n_profiles()) * 4);
        assert!(roomy.interner.table_capacity() * 3 >= room(roomy.n_identities()) * 4);
        for (idx, entry) in entries.iter().enumerate().skip(5_000) {
            roomy.apply(Seq(idx as u64 + 1), entry).unwrap();
            tight.apply(Seq(idx as u64 + 1), entry).unwrap();
        }
        assert_eq!(roomy.to_snapshot(), tight.to_snapshot());
        assert_eq!(roomy.content_digest(), fold(&entries).content_digest());
    }

    #[test]
    fn sizes_extrapolate_linearly_and_reserving_them_changes_nothing_but_capacity() {
        let start = Sizes { nodes: 10, edges: 0, identities: 5, identity_bytes: 100, profiles: 5 };
        let now = Sizes { nodes: 30, edges: 10, identities: 15, identity_bytes: 300, profiles: 15 };
        // 20 entries of 100 done: four times as much growth to come, plus a tenth of it.
        let end = now.extrapolate(start, 20, 100, 0.1);
        assert_eq!(
            end,
            Sizes { nodes: 118, edges: 54, identities: 59, identity_bytes: 1180, profiles: 59 }
        );
        assert_eq!(now.extrapolate(start, 100, 100, 0.1), now, "nothing left to fold");
        let capped = now.at_most_times(end, 2);
        assert_eq!(
            capped,
            Sizes { nodes: 60, edges: 20, identities: 30, identity_bytes: 600, profiles: 30 }
        );
        assert_eq!(now.at_most_times(now, 2), now, "a cap never raises a size");

        let entries = generated(13, 4_000);
        let mut reserved = fold(&entries[..1_000]);
        let sizes = reserved.sizes();
        let end = sizes.extrapolate(Sizes::default(), 1_000, 4_000, 0.15);
        reserved.reserve_for(end);
        assert!(
            reserved.graph.capacity().0 >= end.nodes && reserved.graph.capacity().1 >= end.edges
        );
        assert!(reserved.interner.table_capacity() * 3 >= end.identities * 4);
        for (idx, entry) in entries.iter().enumerate().skip(1_000) {
            reserved.apply(Seq(idx as u64 + 1), entry).unwrap();
        }
        assert_eq!(reserved.to_snapshot(), fold(&entries).to_snapshot());
    }

    #[test]
    fn replay_sizing_reserves_once_after_its_sample_and_changes_nothing_but_capacity() {
        let entries = generated(17, 6_400);
        let total = entries.len() as u64;
        let mut projection = crate::Projection::new();
        let mut sizing = ReplaySizing::new(&projection, total);
        let mut reserved = Vec::new();
        // Batches of 100: the sample is an eighth of the log (800 entries), as the log is short.
        for (idx, entry) in entries.iter().enumerate() {
            projection.apply(Seq(idx as u64 + 1), entry).unwrap();
            if (idx + 1) % 100 == 0
                && let Some(sizes) = sizing.after_batch(&mut projection)
            {
                reserved.push((idx + 1, sizes));
            }
        }
        assert_eq!(reserved.len(), 1, "{reserved:?}");
        let (n_folded, sizes) = reserved[0];
        assert_eq!(n_folded, 800);
        assert!(projection.graph.capacity().0 >= sizes.nodes.min(projection.sizes().nodes));
        assert!(sizes.nodes > 4 * projection.sizes().nodes / 5, "predicts about the end");
        assert_eq!(projection.to_snapshot(), fold(&entries).to_snapshot());

        // A first batch that is more than a quarter of the replay: nothing is reserved, then or
        // later.
        let mut projection = fold(&entries[..100]);
        let mut sizing = ReplaySizing::new(&projection, 300);
        for (idx, entry) in entries.iter().enumerate().skip(100).take(300) {
            projection.apply(Seq(idx as u64 + 1), entry).unwrap();
            if (idx + 1) % 100 == 0 {
                assert_eq!(sizing.after_batch(&mut projection), None);
            }
        }
    }

    #[test]
    fn both_heap_figures_count_the_same_components() {
        let mut projection = fold(&generated(7, 5_000));
        assert!(!projection.aliases().is_empty(), "the log records aliases");
        assert!(projection.heap_bytes_in_use() <= projection.heap_bytes());
        let breakdown: usize = projection.memory_breakdown().iter().map(|(_, n)| n).sum();
        assert_eq!(breakdown, projection.heap_bytes());
        // Shrunk to fit, nothing is spare: the two figures are equal, aliases included.
        projection.shrink_to_fit();
        assert_eq!(projection.heap_bytes_in_use(), projection.heap_bytes());
        let aliases = std::mem::size_of_val(projection.aliases());
        assert!(projection.memory_breakdown().contains(&("aliases", aliases)));
    }
}

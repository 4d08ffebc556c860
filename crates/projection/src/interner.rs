//! The identity interner: every distinct `(world, type, value)` is stored once, as one record in a
//! byte arena, and named by the record's offset, an [`IdentityId`].
//!
//! Record layout (little endian):
//! ```text
//! 0..2    value length (u16)
//! 2..6    graph node of the identity (u32)
//! 6..10   profile hint (u32): a [`Hint`], packed: the one profile the identity looks up, or
//!         u32::MAX for none, u32::MAX - 1 for several (profile ids stay below 2^31)
//! 10..12  world (u16)
//! 12      identity type code (u8)
//! 13..    value bytes
//! ```
//! Keeping the node and the profile hint in the record means a lookup that finds the record has, in
//! the same cache line, everything needed to answer "which profile does this identity look up?" for
//! the common case of exactly one, without walking the graph: resolution at scale is bound by
//! memory latency, and this saves about half of its cache misses at no memory cost (the record
//! replaces a separate end-offset vector and an identity → node vector).
//!
//! The offsets sit in a [`ProbeTable`], whose slot holds a tag of the key's hash beside the offset:
//! a lookup that finds its record costs two cache misses (slot, record), not three. The hash is
//! randomly seeded (hashbrown's default hasher), which resists hash flooding by crafted identity
//! values. That randomness never reaches a result: the table is only probed, never iterated.
//! Offsets are assigned in first-seen order, so they are a deterministic function of the log.
//!
//! The arena is one offset space stored in chunks of [`ARENA_CHUNK_BYTES`] that never move, so
//! interning never copies the arena (doubling a 400 MB arena stalled an insert for 0.6 s at 8.6M
//! identities). A record lives whole in the chunk where it starts: a chunk has room for
//! [`RECORD_BYTES_MAX`] beyond its share of the offsets, and the next chunk starts with as many
//! unused bytes as the last record spilled over. Offsets, so ids, are what one contiguous arena
//! would give.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;
use idgraph_model::IdentityType;
use petgraph::graph::NodeIndex;

use crate::table::ProbeTable;
use crate::{ProfileId, WorldId};

/// An interned identity: the offset of its record in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityId(pub(crate) u32);

const HEADER_LEN: usize = 13;
/// [`Hint::None`] in a record.
const HINT_NONE_BITS: u32 = u32::MAX;
/// [`Hint::Many`] in a record.
const HINT_MANY_BITS: u32 = u32::MAX - 1;
/// Largest arena: offsets stay below 2^31, so they fit the identity form of a packed graph node.
const ARENA_BYTES_MAX: usize = 1 << 31;
/// log2 of [`ARENA_CHUNK_BYTES`].
const ARENA_CHUNK_SHIFT: u32 = 20;
/// Offsets per arena chunk (1 MiB): the chunk list stays short (2,048 chunks at the largest arena).
const ARENA_CHUNK_BYTES: usize = 1 << ARENA_CHUNK_SHIFT;
/// The longest record: its header and a value of `u16::MAX` bytes.
const RECORD_BYTES_MAX: usize = HEADER_LEN + u16::MAX as usize;
const _: () =
    assert!(RECORD_BYTES_MAX < ARENA_CHUNK_BYTES, "a record spills into one chunk at most");

/// Which profiles an identity looks up, as far as its record says: enough to answer for the common
/// case of exactly one without walking the graph. Kept in 4 bytes of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    /// It looks up no profile.
    None,
    /// It looks up this profile and no other.
    One(ProfileId),
    /// It looks up several profiles: walk the graph.
    Many,
}

impl Hint {
    fn to_bits(self) -> u32 {
        match self {
            Hint::None => HINT_NONE_BITS,
            Hint::Many => HINT_MANY_BITS,
            Hint::One(profile) => {
                debug_assert!(profile.0 < 1 << 31, "profile ids stay below 2^31");
                profile.0
            }
        }
    }

    fn from_bits(bits: u32) -> Hint {
        match bits {
            HINT_NONE_BITS => Hint::None,
            HINT_MANY_BITS => Hint::Many,
            profile => Hint::One(ProfileId(profile)),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    arena: Arena,
    table: ProbeTable,
    hasher: DefaultHashBuilder,
}

/// The records, by offset, in chunks that never move (see the module docs).
#[derive(Debug, Default, Clone)]
struct Arena {
    /// Chunk `k` holds the records that start at offsets `k << ARENA_CHUNK_SHIFT` and up, from its
    /// byte `offset & (ARENA_CHUNK_BYTES - 1)`; its first bytes, up to where its first record starts,
    /// are unused (the end of the previous chunk's last record).
    chunks: Vec<Vec<u8>>,
    /// Offsets used: where the next record starts.
    len: usize,
}

impl Arena {
    /// The bytes from the record at `offset` to the end of its chunk.
    #[inline]
    fn record(&self, offset: u32) -> &[u8] {
        let at = offset as usize;
        &self.chunks[at >> ARENA_CHUNK_SHIFT][at & (ARENA_CHUNK_BYTES - 1)..]
    }

    #[inline]
    fn record_mut(&mut self, offset: u32) -> &mut [u8] {
        let at = offset as usize;
        &mut self.chunks[at >> ARENA_CHUNK_SHIFT][at & (ARENA_CHUNK_BYTES - 1)..]
    }

    /// Appends a record made of `parts` and returns its offset.
    fn push(&mut self, parts: &[&[u8]]) -> u32 {
        let offset = self.len;
        let (chunk_idx, at) = (offset >> ARENA_CHUNK_SHIFT, offset & (ARENA_CHUNK_BYTES - 1));
        if chunk_idx == self.chunks.len() {
            // The first chunk starts small and doubles (a small projection stays small); the
            // others are allocated whole, room for a spilling record included, so never move.
            let chunk = match chunk_idx {
                0 => Vec::new(),
                _ => Vec::with_capacity(ARENA_CHUNK_BYTES + RECORD_BYTES_MAX),
            };
            self.chunks.push(chunk);
        }
        let chunk = &mut self.chunks[chunk_idx];
        chunk.resize(at, 0);
        let n_bytes: usize = parts.iter().map(|part| part.len()).sum();
        for part in parts {
            chunk.extend_from_slice(part);
        }
        self.len += n_bytes;
        offset as u32
    }

    /// Bytes allocated.
    fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<u8>>()
    }

    /// Bytes written (records and the unused starts of chunks).
    fn written(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum::<usize>()
            + self.chunks.len() * std::mem::size_of::<Vec<u8>>()
    }

    fn shrink_to_fit(&mut self) {
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
    }
}

/// The key an identity is interned under, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) world: WorldId,
    pub(crate) identity_type: IdentityType,
    pub(crate) value: &'a str,
}

/// The arena is full, or a value is longer than a record can hold.
#[derive(Debug)]
pub(crate) struct ArenaFull;

fn u16_at(record: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([record[at], record[at + 1]])
}

fn u32_at(record: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
}

/// The key of the record that `record` starts with.
fn key_of(record: &[u8]) -> Key<'_> {
    let len = u16_at(record, 0) as usize;
    let world = WorldId(u16_at(record, 10));
    let identity_type = IdentityType::from_code(record[12]).expect("interned from a valid type");
    let value =
        std::str::from_utf8(&record[HEADER_LEN..HEADER_LEN + len]).expect("interned from a str");
    Key { world, identity_type, value }
}

fn hash(hasher: &DefaultHashBuilder, key: Key<'_>) -> u64 {
    let mut state = hasher.build_hasher();
    std::hash::Hasher::write_u16(&mut state, key.world.0);
    std::hash::Hasher::write_u8(&mut state, key.identity_type.code());
    std::hash::Hasher::write(&mut state, key.value.as_bytes());
    std::hash::Hasher::finish(&state)
}

impl Interner {
    fn matches(&self, offset: u32, key: Key<'_>) -> bool {
        let record = self.arena.record(offset);
        u16_at(record, 0) as usize == key.value.len()
            && u16_at(record, 10) == key.world.0
            && record[12] == key.identity_type.code()
            && &record[HEADER_LEN..HEADER_LEN + key.value.len()] == key.value.as_bytes()
    }

    /// The id of `key`, if interned.
    pub(crate) fn get(&self, key: Key<'_>) -> Option<IdentityId> {
        let hash = hash(&self.hasher, key);
        self.table.find(hash, |offset| self.matches(offset, key)).map(IdentityId)
    }

    /// The id the next interned key will get.
    pub(crate) fn next_id(&self) -> IdentityId {
        IdentityId(self.arena.len as u32)
    }

    /// Interns a key known to be new, with the graph node made for it. Returns its id, which is
    /// [`Interner::next_id`] as it was before the call.
    pub(crate) fn insert(
        &mut self,
        key: Key<'_>,
        node: NodeIndex<u32>,
    ) -> Result<IdentityId, ArenaFull> {
        debug_assert!(self.get(key).is_none());
        let len = u16::try_from(key.value.len()).map_err(|_| ArenaFull)?;
        if self.arena.len + HEADER_LEN + key.value.len() > ARENA_BYTES_MAX {
            return Err(ArenaFull);
        }
        let offset = self.arena.push(&[
            &len.to_le_bytes(),
            &(node.index() as u32).to_le_bytes(),
            &Hint::None.to_bits().to_le_bytes(),
            &key.world.0.to_le_bytes(),
            &[key.identity_type.code()],
            key.value.as_bytes(),
        ]);
        self.table.insert_unique(hash(&self.hasher, key), offset);
        Ok(IdentityId(offset))
    }

    /// Whether the arena can take a record for `key` (checked before the caller makes its node).
    pub(crate) fn fits(&self, key: Key<'_>) -> bool {
        u16::try_from(key.value.len()).is_ok()
            && self.arena.len + HEADER_LEN + key.value.len() <= ARENA_BYTES_MAX
    }

    /// The key of an interned id.
    pub(crate) fn resolve(&self, id: IdentityId) -> Key<'_> {
        key_of(self.arena.record(id.0))
    }

    /// The graph node of an interned id.
    pub(crate) fn node(&self, id: IdentityId) -> NodeIndex<u32> {
        NodeIndex::new(u32_at(self.arena.record(id.0), 2) as usize)
    }

    /// Sets the graph node of an interned id (snapshot loading interns before it makes nodes).
    pub(crate) fn set_node(&mut self, id: IdentityId, node: NodeIndex<u32>) {
        let record = self.arena.record_mut(id.0);
        record[2..6].copy_from_slice(&(node.index() as u32).to_le_bytes());
    }

    /// The profile hint of an interned id.
    pub(crate) fn hint(&self, id: IdentityId) -> Hint {
        Hint::from_bits(u32_at(self.arena.record(id.0), 6))
    }

    /// Sets the profile hint of an interned id.
    pub(crate) fn set_hint(&mut self, id: IdentityId, hint: Hint) {
        let record = self.arena.record_mut(id.0);
        record[6..10].copy_from_slice(&hint.to_bits().to_le_bytes());
    }

    /// Every id, in first-seen order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = IdentityId> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= self.arena.len {
                return None;
            }
            let id = IdentityId(at as u32);
            at += HEADER_LEN + u16_at(self.arena.record(id.0), 0) as usize;
            Some(id)
        })
    }

    /// How many identities are interned.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Releases spare capacity.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.table.shrink_to_fit();
    }

    /// Bytes of records in the arena (its offsets used).
    pub(crate) fn arena_len(&self) -> usize {
        self.arena.len
    }

    /// Reserves room for `n_identities` in the table. (The arena needs none: it grows by chunks
    /// that never move.)
    pub(crate) fn reserve_for(&mut self, n_identities: usize) {
        if n_identities > self.table.capacity() * 3 / 4 {
            self.table.shrink_to_hold(n_identities);
        }
    }

    /// Shrinks the table to its length plus `room(length)`. (The arena has no room to release
    /// but its last chunk's, which it will fill.)
    pub(crate) fn shrink_leaving_room(&mut self, room: fn(usize) -> usize) {
        self.table.shrink_to_hold(self.table.len() + room(self.table.len()));
    }

    /// Slots of the table.
    #[cfg(test)]
    pub(crate) fn table_capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Heap bytes written: the arena's bytes written and the table's chunks.
    pub(crate) fn heap_bytes_in_use(&self) -> usize {
        self.arena.written() + self.table.heap_bytes()
    }

    /// Heap bytes held, for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.table.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_keys_round_trip() {
        fn key(world: u16, value: &str) -> Key<'_> {
            Key { world: WorldId(world), identity_type: IdentityType::Email, value }
        }
        let mut interner = Interner::default();
        let a = interner.insert(key(0, "a@x"), NodeIndex::new(7)).unwrap();
        let b = interner.insert(key(1, "a@x"), NodeIndex::new(9)).unwrap();
        assert_eq!(interner.get(key(0, "a@x")), Some(a));
        assert_ne!(a, b, "worlds are separate");
        assert_eq!(interner.resolve(b).value, "a@x");
        assert_eq!(interner.resolve(b).world, WorldId(1));
        assert_eq!(interner.node(b), NodeIndex::new(9));
        assert_eq!(interner.hint(a), Hint::None);
        interner.set_hint(a, Hint::One(ProfileId(42)));
        assert_eq!(interner.hint(a), Hint::One(ProfileId(42)));
        interner.set_hint(a, Hint::Many);
        assert_eq!(interner.hint(a), Hint::Many);
        interner.set_hint(a, Hint::One(ProfileId(0)));
        assert_eq!(interner.hint(a), Hint::One(ProfileId(0)));
        assert_eq!(interner.resolve(a).value, "a@x", "the hint does not disturb the key");
        assert_eq!(interner.get(key(2, "a@x")), None);
        for n in 0..10_000 {
            let value = format!("user{n}");
            interner.insert(key(0, &value), NodeIndex::new(n)).unwrap();
        }
        let id = interner.get(key(0, "user777")).unwrap();
        assert_eq!(interner.resolve(id).value, "user777");
        assert_eq!(interner.node(id), NodeIndex::new(777));
        assert_eq!(interner.len(), 10_002);
        assert_eq!(interner.ids().count(), 10_002);
        assert_eq!(interner.ids().nth(1), Some(b));
    }

    #[test]
    fn records_spanning_many_chunks_read_back_with_the_offsets_of_one_arena() {
        let mut interner = Interner::default();
        let mut expected = Vec::new();
        let mut offset = 0u32;
        for n in 0..200usize {
            // Long values, of varying length, so that records spill over chunk ends.
            let value = format!("{n}-{}", "v".repeat(1 + (n * 7_919) % 60_000));
            let key = Key { world: WorldId(3), identity_type: IdentityType::Email, value: &value };
            let id = interner.insert(key, NodeIndex::new(n)).unwrap();
            assert_eq!(id, IdentityId(offset), "the offset one contiguous arena gives");
            offset += (HEADER_LEN + value.len()) as u32;
            interner.set_hint(id, Hint::One(ProfileId(n as u32)));
            expected.push((id, value));
        }
        assert!(interner.arena.chunks.len() > 4, "the test spans chunks");
        assert_eq!(
            interner.ids().collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (n, (id, value)) in expected.iter().enumerate() {
            assert_eq!(interner.resolve(*id).value, value);
            assert_eq!(interner.node(*id), NodeIndex::new(n));
            assert_eq!(interner.hint(*id), Hint::One(ProfileId(n as u32)));
            let key = Key { world: WorldId(3), identity_type: IdentityType::Email, value };
            assert_eq!(interner.get(key), Some(*id));
        }
    }
}

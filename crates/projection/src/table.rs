//! A dense probe table: 32-bit values found by a 64-bit hash, in arrays of 8-byte slots, that grows
//! without ever stalling an insert.
//!
//! The projection's big indexes (identity → record in the interner, MPID → profile, and the shared
//! type counts) map a key to a 32-bit number whose record holds the key itself. At millions of
//! entries every lookup is a cache miss, and a general hash map costs three: its control bytes, its
//! slot, and then the record the caller reads anyway. Here a slot holds the value *and* a 32-bit
//! tag of the key's hash, so a lookup reads one slot (the probe run is short and contiguous) and
//! then the record, which confirms the key. Two misses instead of three, in half the memory of a
//! map holding the key.
//!
//! - **Position from the tag.** A slot's home is the top bits of its tag, so the table grows
//!   without rehashing a single key (each slot's tag says where it goes), and growth writes the new
//!   array almost in order.
//! - **Linear probing**, at most 3/4 full; values are never removed (the projection never forgets
//!   an identity or a profile).
//! - **Incremental growth.** When the table passes 3/4 full it starts a new array of twice the
//!   slots and keeps the old one: each insert then moves [`MOVE_PER_INSERT`] of the old slots over,
//!   and a lookup probes the old array and, if it misses there, the new one, until every slot has
//!   moved; the
//!   old array's chunks are then released one per insert. A moved slot stays readable in the old
//!   array (a value is in both for a while, which is harmless: values never change), so the old
//!   probe runs stay whole. Growing a table of 16M slots in one insert copied and wrote 128 MB (0.17
//!   s at 10M identities, under the engine's write lock); now an insert moves at most 64 slots.
//! - **Chunked, written on demand.** A slot array is chunks of [`CHUNK_SLOTS`] slots, each allocated
//!   and filled with empty slots when a slot in it is first written, so starting a big array costs
//!   nothing and no single insert writes more than one chunk.
//! - **Never iterated for a result.** Callers hash with a randomly seeded hasher against hash
//!   flooding; that randomness only decides where a value sits, never what a query answers.

use std::mem::size_of;

/// An empty slot. A stored slot is `tag << 32 | (value + 1)`, so its low half is never 0.
const EMPTY: u64 = 0;

/// Slots in one chunk of a slot array (512 KiB).
const CHUNK_SLOTS: usize = 1 << 16;

/// Old slots moved to the new array per insert while the table grows. Growth starts when the new
/// array (twice the old) would be 3/8 full and must end before it is 3/4 full, so at least 4/3 of
/// a slot per insert; 64 (half a kilobyte read in order, about a quarter of it placed, a fraction
/// of a microsecond) ends it after a 64th of the old slots' number of inserts, so that lookups
/// rarely have two arrays to probe.
pub(crate) const MOVE_PER_INSERT: usize = 64;
const _: () = assert!(MOVE_PER_INSERT * 3 > 4);

/// Below this many slots, growth moves everything at once (a few microseconds).
const MOVE_AT_ONCE_MAX: usize = 1 << 12;

/// A power-of-two array of slots, in chunks allocated when first written.
#[derive(Debug, Clone, Default)]
struct Slots {
    /// Each is empty (never written: all its slots are empty) or `1 << chunk_shift` slots long.
    chunks: Vec<Vec<u64>>,
    chunk_shift: u32,
    n_slots: usize,
}

impl Slots {
    fn new(n_slots: usize) -> Slots {
        debug_assert!(n_slots.is_power_of_two());
        let chunk_len = n_slots.min(CHUNK_SLOTS);
        Slots {
            chunks: vec![Vec::new(); n_slots / chunk_len],
            chunk_shift: chunk_len.trailing_zeros(),
            n_slots,
        }
    }

    fn get(&self, at: usize) -> u64 {
        let chunk = &self.chunks[at >> self.chunk_shift];
        chunk.get(at & ((1 << self.chunk_shift) - 1)).copied().unwrap_or(EMPTY)
    }

    fn set(&mut self, at: usize, slot: u64) {
        let chunk_len = 1 << self.chunk_shift;
        let chunk = &mut self.chunks[at >> self.chunk_shift];
        if chunk.is_empty() {
            // Allocated, then filled: not `vec![EMPTY; n]`, which asks for zeroed memory, and
            // mimalloc (the binary's allocator) then took up to 10 ms for one chunk now and then,
            // against 0.2 ms at most this way.
            chunk.reserve_exact(chunk_len);
            chunk.resize(chunk_len, EMPTY);
        }
        chunk[at & (chunk_len - 1)] = slot;
    }

    /// The home slot of a tag (the array has at least 2 slots).
    #[inline]
    fn home(&self, tag: u32) -> usize {
        let bits = self.n_slots.trailing_zeros();
        (u64::from(tag) >> (32 - bits)) as usize
    }

    /// The first value stored under `tag` that `is_key` accepts. The probe walks a chunk as a
    /// slice (its end is the slice's bounds check) and looks the next chunk up only when it crosses
    /// into it, so a probe step costs what it does in one flat array; a chunk not written yet reads
    /// as empty slots.
    #[inline(always)]
    fn find(&self, tag: u32, is_key: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        if self.n_slots == 0 {
            return None;
        }
        let home = self.home(tag);
        let mut chunk_idx = home >> self.chunk_shift;
        let mut at = home & ((1 << self.chunk_shift) - 1);
        loop {
            let chunk = &self.chunks[chunk_idx];
            while let Some(&slot) = chunk.get(at) {
                if slot == EMPTY {
                    return None;
                }
                if tag_of(slot) == tag && is_key(value_of(slot)) {
                    return Some(value_of(slot));
                }
                at += 1;
            }
            if chunk.is_empty() {
                return None;
            }
            (chunk_idx, at) = ((chunk_idx + 1) & (self.chunks.len() - 1), 0);
        }
    }

    /// Writes `slot` into the first empty slot from its home on (as [`Slots::find`] walks).
    fn place(&mut self, slot: u64) {
        let home = self.home(tag_of(slot));
        let mut chunk_idx = home >> self.chunk_shift;
        let mut at = home & ((1 << self.chunk_shift) - 1);
        loop {
            let chunk = &self.chunks[chunk_idx];
            while let Some(&found) = chunk.get(at) {
                if found == EMPTY {
                    return self.set((chunk_idx << self.chunk_shift) + at, slot);
                }
                at += 1;
            }
            if chunk.is_empty() {
                return self.set((chunk_idx << self.chunk_shift) + at, slot);
            }
            (chunk_idx, at) = ((chunk_idx + 1) & (self.chunks.len() - 1), 0);
        }
    }

    /// Heap bytes of the chunks written so far and of the chunk list.
    fn heap_bytes(&self) -> usize {
        let written: usize = self.chunks.iter().map(Vec::capacity).sum();
        written * size_of::<u64>() + self.chunks.capacity() * size_of::<Vec<u64>>()
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeTable {
    /// The array inserts go to.
    slots: Slots,
    /// While growing, the array before (its first `moved` slots are copied into `slots`); after,
    /// the chunks left to release. Empty otherwise.
    old: Slots,
    /// Slots of `old` moved so far; growing while it is below `old.n_slots`.
    moved: usize,
    len: usize,
}

fn tag_of(hash_or_slot: u64) -> u32 {
    (hash_or_slot >> 32) as u32
}

fn value_of(slot: u64) -> u32 {
    (slot as u32).wrapping_sub(1)
}

impl ProbeTable {
    /// The number of values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots of the array inserts go to.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.n_slots
    }

    fn growing(&self) -> bool {
        self.moved < self.old.n_slots
    }

    /// The first value stored under `hash` that `is_key` accepts.
    #[inline(always)]
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        if !self.growing() {
            return self.slots.find(tag, &mut is_key);
        }
        // Most lookups are of keys older than the growth, which the old array holds whether moved
        // or not: it comes first.
        self.old.find(tag, &mut is_key).or_else(|| self.slots.find(tag, &mut is_key))
    }

    /// Adds `value` under `hash`; the caller knows its key is not in the table yet.
    ///
    /// # Panics
    /// If `value` is `u32::MAX` (reserved, so that a stored slot is never 0).
    pub(crate) fn insert_unique(&mut self, hash: u64, value: u32) {
        assert_ne!(value, u32::MAX, "u32::MAX is reserved");
        self.step();
        if (self.len + 1) * 4 > self.slots.n_slots * 3 {
            self.start_growing();
        }
        self.slots.place(u64::from(tag_of(hash)) << 32 | u64::from(value + 1));
        self.len += 1;
    }

    /// Moves the next [`MOVE_PER_INSERT`] old slots over, or releases an old chunk once all have.
    fn step(&mut self) {
        if self.growing() {
            let end = (self.moved + MOVE_PER_INSERT).min(self.old.n_slots);
            for at in self.moved..end {
                let slot = self.old.get(at);
                if slot != EMPTY {
                    self.slots.place(slot);
                }
            }
            self.moved = end;
        } else if self.old.chunks.pop().is_some() && self.old.chunks.is_empty() {
            self.old = Slots::default();
            self.moved = 0;
        }
    }

    fn start_growing(&mut self) {
        self.finish_growing();
        let n_slots = (self.slots.n_slots * 2).max(16);
        self.old = std::mem::replace(&mut self.slots, Slots::new(n_slots));
        self.moved = 0;
        if self.old.n_slots <= MOVE_AT_ONCE_MAX {
            self.finish_growing();
        }
    }

    /// Moves every old slot over now and drops the old array.
    fn finish_growing(&mut self) {
        while self.growing() {
            self.step();
        }
        self.old = Slots::default();
        self.moved = 0;
    }

    /// Rebuilds the table with `n_slots` slots at once (sizing, off the write path).
    fn resize(&mut self, n_slots: usize) {
        self.finish_growing();
        let old = std::mem::replace(&mut self.slots, Slots::new(n_slots));
        for at in 0..old.n_slots {
            let slot = old.get(at);
            if slot != EMPTY {
                self.slots.place(slot);
            }
        }
    }

    /// Shrinks to the smallest table that holds the values within the load limit.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.shrink_to_hold(self.len);
    }

    /// Resizes at once to the smallest table that holds `n_values` (at least the values held)
    /// within the load limit, if that is a different size. For sizing a replay and after loading:
    /// it rebuilds the whole table.
    pub(crate) fn shrink_to_hold(&mut self, n_values: usize) {
        if n_values.max(self.len) == 0 {
            return;
        }
        let n_slots = (n_values.max(self.len) * 4).div_ceil(3).next_power_of_two().max(16);
        if n_slots != self.slots.n_slots {
            self.resize(n_slots);
        } else {
            self.finish_growing();
        }
    }

    /// Heap bytes held: the chunks of either array written so far and their lists.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.heap_bytes() + self.old.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weak hash on purpose: keys 2k and 2k + 1 share their whole hash, so finding a value must
    /// rely on the key check, not the tag.
    fn hash(key: u64) -> u64 {
        (key / 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_0000_0000
    }

    #[test]
    fn finds_every_value_and_nothing_else_through_growth_and_shrinking() {
        // Enough keys for the last growth to be incremental (more than MOVE_AT_ONCE_MAX slots)
        // and to span several chunks.
        let n_keys = 400_000u64;
        let keys: Vec<u64> = (0..n_keys).filter(|n| n % 4 != 3).collect();
        let absent = || (0..n_keys).filter(|n| n % 4 == 3);
        let mut table = ProbeTable::default();
        assert_eq!(table.find(hash(1), |_| true), None, "an empty table finds nothing");
        let mut saw_growing = false;
        for (value, &key) in keys.iter().enumerate() {
            table.insert_unique(hash(key), value as u32);
            if table.growing() && value % 97 == 0 {
                saw_growing = true;
                // Mid-growth, everything inserted so far is found, and nothing else.
                for (v, &k) in keys[..=value].iter().enumerate().step_by(13) {
                    assert_eq!(table.find(hash(k), |x| keys[x as usize] == k), Some(v as u32));
                }
                let k = keys[value + 1..].first().copied().unwrap_or(n_keys + 1);
                assert_eq!(table.find(hash(k), |x| keys[x as usize] == k), None);
            }
        }
        assert!(saw_growing, "the test covers lookups during incremental growth");
        assert_eq!(table.len(), keys.len());
        assert!(table.capacity() * 3 >= table.len() * 4, "at most 3/4 full");
        let check = |table: &ProbeTable| {
            for (value, &key) in keys.iter().enumerate() {
                let found = table.find(hash(key), |v| keys[v as usize] == key);
                assert_eq!(found, Some(value as u32), "key {key}");
            }
            for key in absent() {
                assert_eq!(table.find(hash(key), |v| keys[v as usize] == key), None, "key {key}");
            }
        };
        check(&table);
        let mut grown = table.clone();
        grown.resize(table.capacity() * 8);
        grown.shrink_to_fit();
        assert_eq!(grown.capacity(), table.capacity());
        check(&grown);
        // Room for more: a table that holds three times as many within the load limit.
        grown.shrink_to_hold(keys.len() * 3);
        assert!(grown.capacity() * 3 >= keys.len() * 3 * 4);
        check(&grown);
        grown.shrink_to_hold(0);
        assert_eq!(grown.capacity(), table.capacity(), "never smaller than what it holds needs");
        check(&grown);
    }
}

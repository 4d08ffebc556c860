//! How many identities of one type a profile holds, for the (profile, type) pairs that have held
//! two or more: the resolver's guardrail count and a detach stay O(1) however many identities a
//! profile holds, and a profile's type set says which types it holds one of.
//!
//! A [`ProbeTable`] finds a pair's record in a [`SegVec`] of `(pair, count)`, so that growing never
//! stalls an insert (a hash map doubling rehashed 2M pairs in one insert: 85 ms at 7M identities).
//! A record is never removed (the table keeps its values): when its count falls to 1 it goes stale,
//! and a count below 2 means "see the type set", so it is looked up exactly when the hash map was,
//! and answers the same. Only probed, never iterated.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;
use idgraph_model::IdentityType;

use crate::ProfileId;
use crate::packed::type_pair;
use crate::segmented::SegVec;
use crate::table::ProbeTable;

#[derive(Debug, Clone, Default)]
pub(crate) struct TypeCounts {
    /// [`type_pair`] → index in `counts`, confirmed against the record's pair.
    table: ProbeTable,
    /// The table's hasher (randomly seeded).
    hasher: DefaultHashBuilder,
    /// `(pair, identities of that type the profile holds)`.
    counts: SegVec<(u64, u32)>,
}

impl TypeCounts {
    fn find(&self, pair: u64) -> Option<usize> {
        let hash = self.hasher.hash_one(pair);
        self.table.find(hash, |idx| self.counts[idx as usize].0 == pair).map(|idx| idx as usize)
    }

    /// How many identities of `identity_type` `profile` holds, if two or more (a count below 2
    /// in a record is stale: the profile's type set says whether it holds one).
    pub(crate) fn get(&self, profile: ProfileId, identity_type: IdentityType) -> Option<u32> {
        let idx = self.find(type_pair(profile, identity_type))?;
        Some(self.counts[idx].1).filter(|n| *n >= 2)
    }

    /// Counts one more identity of a type `profile` already holds at least one of.
    pub(crate) fn add_another(&mut self, profile: ProfileId, identity_type: IdentityType) {
        let pair = type_pair(profile, identity_type);
        match self.find(pair) {
            Some(idx) if self.counts[idx].1 >= 2 => self.counts[idx].1 += 1,
            Some(idx) => self.counts[idx].1 = 2,
            None => {
                let idx = u32::try_from(self.counts.len()).expect("pairs fit u32");
                self.counts.push((pair, 2));
                self.table.insert_unique(self.hasher.hash_one(pair), idx);
            }
        }
    }

    /// Counts one identity of `identity_type` fewer on `profile` if it held two or more, and
    /// returns whether it did (if not, it held one, and now none).
    pub(crate) fn remove_one(&mut self, profile: ProfileId, identity_type: IdentityType) -> bool {
        let Some(idx) = self.find(type_pair(profile, identity_type)) else { return false };
        let count = &mut self.counts[idx].1;
        if *count < 2 {
            return false;
        }
        // Down to 1, the record goes stale: the type set says the profile holds one.
        *count -= 1;
        true
    }

    /// Releases spare room.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.table.shrink_to_fit();
        self.counts.shrink_to_fit();
    }

    /// Shrinks the table to its length plus `room(length)`.
    pub(crate) fn shrink_leaving_room(&mut self, room: fn(usize) -> usize) {
        self.table.shrink_to_hold(self.table.len() + room(self.table.len()));
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.counts.capacity() * std::mem::size_of::<(u64, u32)>()
    }

    /// Heap bytes written.
    pub(crate) fn heap_bytes_in_use(&self) -> usize {
        self.table.heap_bytes() + self.counts.len() * std::mem::size_of::<(u64, u32)>()
    }
}

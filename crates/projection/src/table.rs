//! A dense probe table: 32-bit values found by a 64-bit hash, in one array of 8-byte slots.
//!
//! The projection's two big indexes (identity → record in the interner, MPID → profile) map a key
//! to a 32-bit number whose record holds the key itself. At millions of entries every lookup is a
//! cache miss, and a general hash map costs three: its control bytes, its slot, and then the record
//! the caller reads anyway. Here a slot holds the value *and* a 32-bit tag of the key's hash, so a
//! lookup reads one slot (the probe run is short and contiguous) and then the record, which
//! confirms the key. Two misses instead of three, in half the memory of a map holding the key.
//!
//! - **Position from the tag.** A slot's home is the top bits of its tag, so the table grows
//!   without rehashing a single key (each slot's tag says where it goes), and growth writes the new
//!   array almost in order.
//! - **Linear probing**, at most 3/4 full; values are never removed (the projection never forgets
//!   an identity or a profile).
//! - **Never iterated for a result.** Callers hash with a randomly seeded hasher against hash
//!   flooding; that randomness only decides where a value sits, never what a query answers.

/// An empty slot's value.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeTable {
    /// `tag << 32 | value`; a power-of-two number of them (or none).
    slots: Vec<u64>,
    len: usize,
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn value_of(slot: u64) -> u32 {
    slot as u32
}

impl ProbeTable {
    /// The number of values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The home slot of a tag in a table of `n_slots` (a power of two, at least 2).
    fn home(tag: u32, n_slots: usize) -> usize {
        let bits = n_slots.trailing_zeros();
        (u64::from(tag) >> (32 - bits)) as usize
    }

    /// The first value stored under `hash` that `is_key` accepts.
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let tag = tag_of(hash);
        let mask = self.slots.len() - 1;
        let mut at = Self::home(tag, self.slots.len());
        loop {
            let slot = self.slots[at];
            let value = value_of(slot);
            if value == EMPTY {
                return None;
            }
            if tag_of(slot) == tag && is_key(value) {
                return Some(value);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `value` under `hash`; the caller knows its key is not in the table yet.
    ///
    /// # Panics
    /// If `value` is `u32::MAX` (the empty marker).
    pub(crate) fn insert_unique(&mut self, hash: u64, value: u32) {
        assert_ne!(value, EMPTY, "u32::MAX marks an empty slot");
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(16));
        }
        Self::place(&mut self.slots, u64::from(tag_of(hash)) << 32 | u64::from(value));
        self.len += 1;
    }

    fn place(slots: &mut [u64], slot: u64) {
        let mask = slots.len() - 1;
        let mut at = Self::home(tag_of(slot), slots.len());
        while value_of(slots[at]) != EMPTY {
            at = (at + 1) & mask;
        }
        slots[at] = slot;
    }

    fn resize(&mut self, n_slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![u64::from(EMPTY); n_slots]);
        for slot in old {
            if value_of(slot) != EMPTY {
                Self::place(&mut self.slots, slot);
            }
        }
    }

    /// Shrinks to the smallest table that holds the values within the load limit.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.shrink_to_hold(self.len);
    }

    /// Resizes to the smallest table that holds `n_values` (at least the values held) within the
    /// load limit, if that is a different size.
    pub(crate) fn shrink_to_hold(&mut self, n_values: usize) {
        if n_values.max(self.len) == 0 {
            return;
        }
        let n_slots = (n_values.max(self.len) * 4).div_ceil(3).next_power_of_two().max(16);
        if n_slots != self.slots.len() {
            self.resize(n_slots);
        }
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
        let keys: Vec<u64> = (0..66_000u64).filter(|n| n % 4 != 3).collect();
        let mut table = ProbeTable::default();
        assert_eq!(table.find(hash(1), |_| true), None, "an empty table finds nothing");
        for (value, &key) in keys.iter().enumerate() {
            table.insert_unique(hash(key), value as u32);
        }
        assert_eq!(table.len(), keys.len());
        assert!(table.capacity() * 3 >= table.len() * 4, "at most 3/4 full");
        let check = |table: &ProbeTable| {
            for (value, &key) in keys.iter().enumerate() {
                let found = table.find(hash(key), |v| keys[v as usize] == key);
                assert_eq!(found, Some(value as u32), "key {key}");
            }
            for key in (0..66_000u64).filter(|n| n % 4 == 3) {
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

//! The identity interner: every distinct `(world, type, value)` is stored once, in one byte arena,
//! and named by a dense 32-bit [`IdentityId`].
//!
//! Layout per identity: the key bytes in `arena` (2 bytes world, 1 byte type, then the value), one
//! `u32` end offset, and one `u32` slot in the hash table. Ids are assigned in first-seen order, so
//! they are a deterministic function of the log.
//!
//! The hash table uses a randomly seeded hasher (hashbrown's default), which resists hash flooding by
//! crafted identity values. That randomness never reaches a result: the table is only probed, never
//! iterated.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use idgraph_model::IdentityType;

use crate::WorldId;

/// A dense id for an interned identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityId(pub(crate) u32);

/// Bytes of world and type before the value in a key.
const KEY_PREFIX_LEN: usize = 3;

#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    arena: Vec<u8>,
    /// `ends[i]` is the end offset of key `i` in `arena`; its start is `ends[i - 1]` (or 0).
    ends: Vec<u32>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// The key an identity is interned under, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) world: WorldId,
    pub(crate) identity_type: IdentityType,
    pub(crate) value: &'a str,
}

/// The arena outgrew 32-bit offsets.
#[derive(Debug)]
pub(crate) struct ArenaFull;

impl Interner {
    fn hash(hasher: &DefaultHashBuilder, key: Key<'_>) -> u64 {
        let mut state = hasher.build_hasher();
        std::hash::Hasher::write_u16(&mut state, key.world.0);
        std::hash::Hasher::write_u8(&mut state, key.identity_type.code());
        std::hash::Hasher::write(&mut state, key.value.as_bytes());
        std::hash::Hasher::finish(&state)
    }

    fn bytes(&self, id: u32) -> &[u8] {
        let idx = id as usize;
        let start = if idx == 0 { 0 } else { self.ends[idx - 1] as usize };
        &self.arena[start..self.ends[idx] as usize]
    }

    fn matches(bytes: &[u8], key: Key<'_>) -> bool {
        bytes.len() == KEY_PREFIX_LEN + key.value.len()
            && bytes[..2] == key.world.0.to_le_bytes()
            && bytes[2] == key.identity_type.code()
            && &bytes[KEY_PREFIX_LEN..] == key.value.as_bytes()
    }

    /// The id of `key`, if interned.
    pub(crate) fn get(&self, key: Key<'_>) -> Option<IdentityId> {
        let hash = Self::hash(&self.hasher, key);
        self.table.find(hash, |&id| Self::matches(self.bytes(id), key)).map(|&id| IdentityId(id))
    }

    /// The id of `key`, interning it if new. Returns whether it was new.
    pub(crate) fn intern(&mut self, key: Key<'_>) -> Result<(IdentityId, bool), ArenaFull> {
        if let Some(id) = self.get(key) {
            return Ok((id, false));
        }
        let end = self.arena.len() + KEY_PREFIX_LEN + key.value.len();
        let end = u32::try_from(end).map_err(|_| ArenaFull)?;
        let id = u32::try_from(self.ends.len()).map_err(|_| ArenaFull)?;
        self.arena.extend_from_slice(&key.world.0.to_le_bytes());
        self.arena.push(key.identity_type.code());
        self.arena.extend_from_slice(key.value.as_bytes());
        self.ends.push(end);
        let hash = Self::hash(&self.hasher, key);
        let Interner { arena, ends, table, hasher } = self;
        table.insert_unique(hash, id, |&other| {
            let other_key = key_of(arena, ends, other);
            Self::hash(hasher, other_key)
        });
        Ok((IdentityId(id), true))
    }

    /// The key of an interned id.
    pub(crate) fn resolve(&self, id: IdentityId) -> Key<'_> {
        key_of(&self.arena, &self.ends, id.0)
    }

    /// Releases spare capacity.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
        let Interner { arena, ends, table, hasher } = self;
        table.shrink_to_fit(|&id| Self::hash(hasher, key_of(arena, ends, id)));
    }

    /// How many identities are interned.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Heap bytes held, for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.ends.capacity() * 4
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

fn key_of<'a>(arena: &'a [u8], ends: &[u32], id: u32) -> Key<'a> {
    let idx = id as usize;
    let start = if idx == 0 { 0 } else { ends[idx - 1] as usize };
    let bytes = &arena[start..ends[idx] as usize];
    let world = WorldId(u16::from_le_bytes([bytes[0], bytes[1]]));
    let identity_type = IdentityType::from_code(bytes[2]).expect("interned from a valid type");
    let value = std::str::from_utf8(&bytes[KEY_PREFIX_LEN..]).expect("interned from a str");
    Key { world, identity_type, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_keys_round_trip() {
        let mut interner = Interner::default();
        fn key(world: u16, value: &str) -> Key<'_> {
            Key { world: WorldId(world), identity_type: IdentityType::Email, value }
        }
        let (a, new_a) = interner.intern(key(0, "a@x")).unwrap();
        let (b, new_b) = interner.intern(key(1, "a@x")).unwrap();
        let (a2, new_a2) = interner.intern(key(0, "a@x")).unwrap();
        assert!(new_a && new_b && !new_a2);
        assert_eq!(a, a2);
        assert_ne!(a, b, "worlds are separate");
        assert_eq!(interner.resolve(b).value, "a@x");
        assert_eq!(interner.resolve(b).world, WorldId(1));
        assert_eq!(interner.get(key(2, "a@x")), None);
        for n in 0..10_000 {
            let value = format!("user{n}");
            interner.intern(key(0, &value)).unwrap();
        }
        assert_eq!(
            interner.get(key(0, "user777")).map(|id| interner.resolve(id).value),
            Some("user777")
        );
        assert_eq!(interner.len(), 10_002);
    }
}

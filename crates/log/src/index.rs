//! Secondary indexes over the log: which entries touched a profile, and which changed an identity.
//!
//! They let audit read only the entries that matter to a question ("MPID X as of sequence N",
//! "who held `email=a@b.c`") instead of scanning or folding the whole log. They are derived from the
//! entries alone and written by the indexer (`indexer.rs`) behind the writer, off the write path:
//! readers of the indexes first make sure they cover the sequence asked about.
//!
//! An index key is `kind ‖ subject ‖ sequence` (the sequence as u64 big endian), with an empty
//! value; key order is subject order, then log order:
//! - [`IndexKey::ProfileChanged`]: an event of the entry names the MPID (created, an identity
//!   attached or detached, an alias from or to it);
//! - [`IndexKey::ProfileSeen`]: the entry's outcome names the MPID but no event does (an identify
//!   that found the profile and changed nothing). Kept apart so that rebuilding a busy profile
//!   reads only the entries that changed it, while "last seen" stays one seek;
//! - [`IndexKey::Identity`]: an event attaches or detaches the identity (in the entry's identity
//!   scope, any environment). The subject is a 128-bit XXH3 of scope, type and value, so keys
//!   have a fixed size; readers confirm the match on the entry itself.

use idgraph_model::{Entry, EntryView, EventView, Identity, IdentityType, Mpid, Seq};
use xxhash_rust::xxh3::Xxh3;

/// The kind byte of profile-changed keys.
const KIND_PROFILE_CHANGED: u8 = 1;
/// The kind byte of profile-seen keys.
const KIND_PROFILE_SEEN: u8 = 2;
/// The kind byte of identity keys.
const KIND_IDENTITY: u8 = 3;

/// The bytes of a key the `index` memtable hashes on: the kind and the subject's first 8 bytes
/// (all of an MPID, half of an identity hash). Every key prefix is at least this long.
pub(crate) const MEMTABLE_PREFIX_BYTES: usize = 9;

/// The longest key prefix (kind and subject): an identity key.
pub(crate) const PREFIX_BYTES_MAX: usize = 17;

/// What an index entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexKey {
    /// Entries with an event naming the MPID.
    ProfileChanged(Mpid),
    /// Entries whose outcome names the MPID and no event does.
    ProfileSeen(Mpid),
    /// Entries with an event attaching or detaching an identity; see [`IndexKey::identity`].
    Identity(u128),
}

impl IndexKey {
    /// The key of `identity` in the identity scope `scope` (all environments).
    pub fn identity(scope: &str, identity: &Identity) -> IndexKey {
        IndexKey::identity_of(scope, identity.identity_type, &identity.value)
    }

    fn identity_of(scope: &str, identity_type: IdentityType, value: &str) -> IndexKey {
        let mut hasher = Xxh3::new();
        hasher.update(&(scope.len() as u64).to_le_bytes());
        hasher.update(scope.as_bytes());
        hasher.update(&[identity_type.code()]);
        hasher.update(value.as_bytes());
        IndexKey::Identity(hasher.digest128())
    }

    /// The key bytes before the sequence.
    pub(crate) fn prefix(self) -> Prefix {
        let (kind, subject): (u8, &[u8]) = match self {
            IndexKey::ProfileChanged(mpid) => (KIND_PROFILE_CHANGED, &ordered_mpid(mpid)),
            IndexKey::ProfileSeen(mpid) => (KIND_PROFILE_SEEN, &ordered_mpid(mpid)),
            IndexKey::Identity(hash) => (KIND_IDENTITY, &hash.to_be_bytes()),
        };
        let mut bytes = [0u8; PREFIX_BYTES_MAX];
        let source = std::iter::once(&kind).chain(subject);
        for (slot, byte) in bytes.iter_mut().zip(source) {
            *slot = *byte;
        }
        Prefix { bytes, len: 1 + subject.len() }
    }

    /// The full stored key: prefix ‖ sequence.
    pub(crate) fn stored(self, seq: Seq) -> Vec<u8> {
        let prefix = self.prefix();
        let mut key = Vec::with_capacity(prefix.len + 8);
        key.extend_from_slice(prefix.as_bytes());
        key.extend_from_slice(&seq.0.to_be_bytes());
        key
    }
}

/// An MPID as 8 bytes whose big-endian order is signed order (the sign bit flipped).
fn ordered_mpid(mpid: Mpid) -> [u8; 8] {
    ((mpid.get() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The bytes of an index key before its sequence.
pub(crate) struct Prefix {
    bytes: [u8; PREFIX_BYTES_MAX],
    len: usize,
}

impl Prefix {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
}

/// The index keys of one entry, sorted and without duplicates.
pub fn index_keys(entry: &Entry) -> IndexKeys {
    view_index_keys(&EntryView::from(entry))
}

/// [`index_keys`] of a borrowed entry: what the indexer computes, with no allocation per string.
pub(crate) fn view_index_keys(entry: &EntryView<'_>) -> IndexKeys {
    let mut keys = IndexKeys::new();
    for event in &entry.events {
        match event {
            EventView::ProfileCreated { mpid } => keys.push(IndexKey::ProfileChanged(*mpid)),
            EventView::IdentityAttached { mpid, identity }
            | EventView::IdentityDetached { mpid, identity, .. } => {
                keys.push(IndexKey::ProfileChanged(*mpid));
                let scope = entry.request.scope;
                keys.push(IndexKey::identity_of(scope, identity.identity_type, identity.value));
            }
            EventView::AliasRecorded { source, destination, .. } => {
                keys.push(IndexKey::ProfileChanged(*source));
                keys.push(IndexKey::ProfileChanged(*destination));
            }
        }
    }
    if let Some(mpid) = entry.outcome.seen_mpid()
        && !keys.contains(&IndexKey::ProfileChanged(mpid))
    {
        keys.push(IndexKey::ProfileSeen(mpid));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// An entry's index keys: most entries have at most four, kept inline.
pub type IndexKeys = smallvec::SmallVec<[IndexKey; 4]>;

/// The sequence at the end of a stored index key, if it is one.
pub(crate) fn seq_of_stored(key: &[u8]) -> Option<Seq> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(Seq(u64::from_be_bytes(tail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_prefixes_sort_by_signed_mpid_and_kinds_do_not_mix() {
        let low = Mpid::new(-5).unwrap();
        let high = Mpid::new(7).unwrap();
        assert!(
            IndexKey::ProfileChanged(low).stored(Seq(9))
                < IndexKey::ProfileChanged(high).stored(Seq(1))
        );
        assert!(
            IndexKey::ProfileChanged(high).stored(Seq(u64::MAX))
                < IndexKey::ProfileSeen(low).stored(Seq(0))
        );
        assert_eq!(seq_of_stored(&IndexKey::ProfileSeen(low).stored(Seq(42))), Some(Seq(42)));
    }

    #[test]
    fn identity_keys_depend_on_scope_type_and_value() {
        use idgraph_model::IdentityType;
        let email = Identity::new(IdentityType::Email, "a@b.c");
        let key = IndexKey::identity("s", &email);
        assert_eq!(key, IndexKey::identity("s", &email.clone()));
        assert_ne!(key, IndexKey::identity("t", &email));
        assert_ne!(key, IndexKey::identity("s", &Identity::new(IdentityType::Other, "a@b.c")));
        assert_ne!(key, IndexKey::identity("s", &Identity::new(IdentityType::Email, "a@b.d")));
    }
}

//! The two digests of a projection: the running digest, chained over every applied entry (O(1) to
//! compare), and the content digest, recomputed from the graph (what a snapshot is checked
//! against). Both use XXH3-128 over an explicit byte encoding, never `Hash` impls, so they are
//! stable across builds and platforms; both are part of the snapshot format.

use std::fmt;

use idgraph_model::{DetachReason, EventView, Identity, IdentityView, Mpid, Seq, Timestamp};
use smallvec::SmallVec;
use xxhash_rust::xxh3::Xxh3;

use crate::fold::AsEventView;
use crate::{ProfileId, Projection, WorldId};

/// A 128-bit digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub u128);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Projection {
    /// A digest chained over every applied entry: equal for two projections exactly when they
    /// folded the same entries (up to hash collisions). O(1).
    pub fn running_digest(&self) -> Digest {
        self.running_digest
    }

    /// A digest of the content (every world, profile, lookup and alias, in canonical order),
    /// recomputed from the graph. Two projections with equal content digests answer every query
    /// the same way. O(n log n).
    pub fn content_digest(&self) -> Digest {
        content(self)
    }
}

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
/// and the entry's state changes. The bytes are gathered first and hashed in one call (the same
/// value as streaming them, at a fraction of the cost for small pieces).
pub(crate) fn chain<E: AsEventView>(
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
        event.with_view(|event| push_event(out, event));
    }
    if let Some(mpid) = seen {
        out.push(9);
        out.extend_from_slice(&mpid.get().to_le_bytes());
    }
    Digest(xxhash_rust::xxh3::xxh3_128(&buffer))
}

/// The digest encoding of one event: a tag, then its fields.
fn push_event(out: &mut Bytes, event: &EventView<'_>) {
    match event {
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
    }
}

fn content(projection: &Projection) -> Digest {
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
            let identities = projection.identities_of_sorted(ProfileId(idx as u32));
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

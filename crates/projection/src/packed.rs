//! Node and edge packing: what the graph stores per node and per edge, in 4 bytes each, and the
//! 8-byte key of the shared-types index.
//!
//! The graph holds millions of nodes and edges, so its weights are packed: a graph node costs 12
//! bytes, not 16, and an edge 20, not 24. Everything else speaks the unpacked [`Node`] and
//! [`Edge`]; only this module knows the bit layout.

use idgraph_model::IdentityType;

use crate::{IdentityId, ProfileId};

/// What a graph node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Identity(IdentityId),
    Profile(ProfileId),
}

/// What a graph edge stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// identity → profile: the identity (of this type) looks the profile up.
    LooksUp(IdentityType),
    /// source → destination, with the index of the alias record.
    Alias(u32),
}

/// A [`Node`] in 4 bytes (the top bit says which kind), so a graph node costs 12 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedNode(pub(crate) u32);

/// An [`Edge`] in 4 bytes, so a graph edge costs 20 bytes, not 24: from [`LOOKUP_BASE`] up a
/// lookup, whose low byte is the identity's type code (so a profile's identities of one type are
/// counted from its edges alone), below it an alias record's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedEdge(u32);

const PROFILE_BIT: u32 = 1 << 31;
const LOOKUP_BASE: u32 = 0xFFFF_FF00;

/// The key of a (profile, identity type) pair in `Projection::shared_types` (`type_counts.rs`).
pub(crate) fn type_pair(profile: ProfileId, identity_type: IdentityType) -> u64 {
    u64::from(profile.0) << 8 | u64::from(identity_type.code())
}

impl Node {
    pub(crate) fn pack(self) -> PackedNode {
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
    pub(crate) fn unpack(self) -> Node {
        if self.0 & PROFILE_BIT == 0 {
            Node::Identity(IdentityId(self.0))
        } else {
            Node::Profile(ProfileId(self.0 & !PROFILE_BIT))
        }
    }
}

impl Edge {
    pub(crate) fn pack(self) -> PackedEdge {
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
    pub(crate) fn unpack(self) -> Edge {
        match self.lookup_type() {
            Some(identity_type) => Edge::LooksUp(identity_type),
            None => Edge::Alias(self.0),
        }
    }

    pub(crate) fn is_lookup(self) -> bool {
        self.0 >= LOOKUP_BASE
    }

    /// The identity type of a lookup edge (`None` for an alias).
    fn lookup_type(self) -> Option<IdentityType> {
        let code = u8::try_from(self.0.checked_sub(LOOKUP_BASE)?).ok()?;
        Some(IdentityType::from_code(code).expect("packed from a valid type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_edges_unpack_to_what_was_packed() {
        for node in [
            Node::Identity(IdentityId(0)),
            Node::Identity(IdentityId(PROFILE_BIT - 1)),
            Node::Profile(ProfileId(0)),
            Node::Profile(ProfileId(PROFILE_BIT - 1)),
        ] {
            assert_eq!(node.pack().unpack(), node);
        }
        for &identity_type in IdentityType::ALL {
            let edge = Edge::LooksUp(identity_type);
            assert!(edge.pack().is_lookup());
            assert_eq!(edge.pack().unpack(), edge);
        }
        for idx in [0, 1, LOOKUP_BASE - 1] {
            assert!(!Edge::Alias(idx).pack().is_lookup());
            assert_eq!(Edge::Alias(idx).pack().unpack(), Edge::Alias(idx));
        }
        assert_eq!(std::mem::size_of::<PackedNode>(), 4);
        assert_eq!(std::mem::size_of::<PackedEdge>(), 4);
    }
}
